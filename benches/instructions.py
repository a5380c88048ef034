#!/usr/bin/env python3
"""Instructions per alloc+free pair on the one-thread groups (`local`,
`larson_t1`, and the same two in a program's shape, `user_local_t1` and
`user_larson_t1`), counted with valgrind's callgrind (standard library only;
needs `valgrind`).

    python3 benches/instructions.py [--groups g1,g2] [--subjects s1,s2]
                                    [--profile P] [--shape S]

`--profile release-lto` counts the build a user makes (thin LTO, one
codegen unit; Cargo.toml); the default is cargo bench's `bench` profile.
`--shape` is passed to the bench binary: the shape of the `user_*` groups
(`user`, the default, `bench`, or factors joined by `+`, e.g. `read+reverse`;
see `benches/interleaved.rs`).

Instruction counts do not depend on what else the machine is doing, so
they compare subjects (and commits) where timings on a shared host cannot.
They are not time: a cache miss costs one instruction here.

For every group and subject this runs the `interleaved` bench binary twice
under callgrind with `--once N` (exactly N iterations, nothing else timed)
for two values of N, and divides the difference in instructions by the
difference in alloc+free pairs, so thread start-up, set-up and teardown
cancel out. Only one-thread groups: under valgrind threads are serialised,
so a two-thread workload would count its waiting.
"""

import os
import re
import subprocess
import sys
import tempfile

GROUPS = ["local_t1", "local_t1_16B", "local_t1_256B", "local_t1_1024B",
          "local_pools_k1", "local_pools_k2", "local_pools_k3", "local_pools_k8",
          "larson_t1", "user_local_t1", "user_larson_t1"]
SHORT, LONG = 50, 550  # iterations (of 1024 pairs; 1000 replacements on larson_t1)


def executable(profile):
    out = subprocess.run(
        ["cargo", "bench", "--bench", "interleaved", "--no-run", "--profile", profile],
        capture_output=True,
        text=True,
        check=True,
    )
    m = re.search(r"Executable .*\((.*)\)", out.stderr)
    if not m:
        sys.exit("could not find the interleaved bench executable:\n" + out.stderr)
    return m.group(1)


def subjects_of(exe):
    """The subjects the bench binary runs, in its order (one quick pass)."""
    out = subprocess.run(
        [exe, "--once", "1", "--groups", GROUPS[0]],
        capture_output=True,
        text=True,
        check=True,
    )
    return [line.split()[1] for line in out.stdout.splitlines() if line.strip()]


def count(exe, group, subject, iters, shape):
    """Total instructions of one `--once` run, and its pairs; None if the
    group has no such subject (`floor` is only in the one-thread `local`
    groups)."""
    with tempfile.TemporaryDirectory() as d:
        cg = os.path.join(d, "cg.out")
        run = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={cg}",
             exe, "--once", str(iters), "--groups", group, "--subjects", subject,
             "--shape", shape],
            capture_output=True,
            text=True,
        )
        if run.returncode != 0:
            sys.exit(f"{group}/{subject} failed:\n{run.stderr[-2000:]}")
        fields = run.stdout.split()
        if not fields:
            return None
        if len(fields) != 5:
            sys.exit(f"{group}/{subject}: unexpected output {run.stdout!r}")
        pairs = int(fields[2]) * int(fields[3])
        with open(cg) as f:
            for line in f:
                if line.startswith(("summary:", "totals:")):
                    return int(line.split()[1]), pairs
    sys.exit(f"{group}/{subject}: no totals in the callgrind output")


def main():
    profile, shape = "bench", "user"
    args = sys.argv[1:]
    rest = []
    while args:
        flag = args.pop(0)
        if flag in ("--profile", "--shape") and args:
            if flag == "--profile":
                profile = args.pop(0)
            else:
                shape = args.pop(0)
        else:
            rest.append(flag)
    exe = executable(profile)
    known = subjects_of(exe)
    groups, subjects = GROUPS, known
    args = rest
    while args:
        flag = args.pop(0)
        if flag in ("--groups", "--subjects") and args:
            vals = args.pop(0).split(",")
            bad = [v for v in vals if v not in (GROUPS if flag == "--groups" else known)]
            if bad:
                sys.exit(f"unknown {flag[2:]}: {', '.join(bad)}")
            if flag == "--groups":
                groups = vals
            else:
                subjects = vals
        else:
            sys.exit(__doc__)
    print(f"Instructions per alloc+free pair (callgrind, profile {profile}, "
          f"user_* shape {shape}; lower is better):\n")
    print("| workload | " + " | ".join(subjects) + " |")
    print("|---|" + "---:|" * len(subjects))
    for g in groups:
        row = []
        for s in subjects:
            short = count(exe, g, s, SHORT, shape)
            if short is None:
                row.append("–")
                continue
            (i1, p1), (i2, p2) = short, count(exe, g, s, LONG, shape)
            row.append(f"{(i2 - i1) / (p2 - p1):.1f}")
            print(f"  {g}/{s}: {row[-1]}", file=sys.stderr)
        print(f"| `{g}` | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
