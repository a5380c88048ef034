#!/usr/bin/env python3
"""Tables and an SVG chart from criterion's results (standard library only).

    python3 benches/plot.py [CRITERION_DIR] [--svg OUT.svg] [--json OUT.json]

Reads CRITERION_DIR/<group>/<subject>/new/{benchmark,estimates}.json
(default target/criterion), prints Markdown tables of median throughput and of
the ratios quoted in docs/BENCHMARKS.md, and writes a grouped bar chart
(log scale, Melem/s = million alloc+free pairs per second).
"""

import json
import math
import os
import sys

SUBJECTS = [
    "homeslab",
    "homeslab-hardened",
    "box-system",
    "mimalloc",
    "jemalloc",
    "sharded-slab",
    "lockfree-object-pool",
    "mutex-slab",
    "floor",
]
# `floor` is no allocator (benches/common/subjects.rs): a bound, not a peer.
PEERS = [s for s in SUBJECTS if not s.startswith("homeslab") and s != "floor"]
GROUPS = [
    ("local_t1", "local, 1 thread"),
    ("local_t2", "local, 2 threads"),
    ("xthread_1p1c", "xthread, 1P+1C"),
    ("larson_t1", "larson, 1 thread"),
    ("larson_t2", "larson, 2 threads"),
    ("larson_t4", "larson, 4 threads"),
    ("larson_churn_t2", "larson churn, 2 threads"),
    ("cache_scratch_t2", "scratch, 2 threads"),
    ("cache_scratch_t2_writes_only", "scratch: writes only"),
    ("cache_scratch_t2_handoff_only", "scratch: hand-off only"),
    ("local_t1_16B", "local 16 B"),
    ("local_t1_256B", "local 256 B"),
    ("local_t1_1024B", "local 1024 B"),
    ("local_pools_k1", "local, 1 pool"),
    ("local_pools_k2", "local, 2 pools"),
    ("local_pools_k3", "local, 3 pools"),
    ("local_pools_k8", "local, 8 pools"),
]
# `local_pools_k{K}`: one thread, K pools of K distinct 64-byte types in turn.
POOL_KS = [1, 2, 3, 8]
COLORS = {
    "homeslab": "#1b7837",
    "homeslab-hardened": "#7fbf7b",
    "box-system": "#762a83",
    "mimalloc": "#2166ac",
    "jemalloc": "#67a9cf",
    "sharded-slab": "#d6604d",
    "lockfree-object-pool": "#f4a582",
    "mutex-slab": "#878787",
    "floor": "#252525",
}


def load(root):
    """{group: {subject: (median_ns_per_iter, elements_per_iter, lo, hi)}}"""
    out = {}
    for group, _ in GROUPS:
        for subject in SUBJECTS:
            d = os.path.join(root, group, subject, "new")
            try:
                with open(os.path.join(d, "benchmark.json")) as f:
                    bench = json.load(f)
                with open(os.path.join(d, "estimates.json")) as f:
                    est = json.load(f)
            except FileNotFoundError:
                continue
            elems = bench.get("throughput", {}).get("Elements", 1)
            med = est["median"]
            ci = med["confidence_interval"]
            out.setdefault(group, {})[subject] = (
                med["point_estimate"],
                elems,
                ci["lower_bound"],
                ci["upper_bound"],
            )
    return out


def melems(entry):
    ns, elems = entry[0], entry[1]
    return elems / ns * 1e3  # elements per ns -> million per second


def fmt(x):
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def tables(data):
    lines = []
    lines.append("Median throughput, Melem/s (million alloc+free pairs per second; higher is better):")
    lines.append("")
    lines.append("| workload | " + " | ".join(SUBJECTS) + " |")
    lines.append("|---" * (len(SUBJECTS) + 1) + "|")
    for group, label in GROUPS:
        row = data.get(group, {})
        cells = []
        best = max((melems(v) for k, v in row.items() if k != "floor"), default=0)
        for s in SUBJECTS:
            if s in row:
                v = melems(row[s])
                c = fmt(v)
                cells.append(f"**{c}**" if v == best else c)
            else:
                cells.append("–")
        lines.append(f"| {label} (`{group}`) | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Ratios (throughput of homeslab ÷ throughput of the other; > 1 means homeslab is faster):")
    lines.append("")
    cols = [
        "best peer",
        "÷ best peer",
        "÷ mimalloc",
        "÷ jemalloc",
        "÷ box-system",
        "÷ sharded-slab",
        "÷ lockfree-object-pool",
        "÷ mutex-slab",
        "hardened ÷ plain",
    ]
    lines.append("| workload | " + " | ".join(cols) + " |")
    lines.append("|---" * (len(cols) + 1) + "|")
    for group, label in GROUPS:
        row = data.get(group, {})
        if "homeslab" not in row:
            continue
        h = melems(row["homeslab"])
        peers = [(melems(row[p]), p) for p in PEERS if p in row]
        best_v, best_p = max(peers) if peers else (float("nan"), "–")

        def r(p):
            return f"{h / melems(row[p]):.2f}×" if p in row else "–"

        hard = (
            f"{melems(row['homeslab-hardened']) / h:.2f}×"
            if "homeslab-hardened" in row
            else "–"
        )
        cells = [
            best_p,
            f"{h / best_v:.2f}×",
            r("mimalloc"),
            r("jemalloc"),
            r("box-system"),
            r("sharded-slab"),
            r("lockfree-object-pool"),
            r("mutex-slab"),
            hard,
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "The floor (the one-thread `local` workload with no allocator; "
        "an allocator would have to cost less than its pop and push to exceed it):"
    )
    lines.append("")
    lines.append(
        "| workload | floor | homeslab ÷ floor | mimalloc ÷ floor "
        "| floor ÷ sharded-slab | floor ÷ lockfree-object-pool |"
    )
    lines.append("|---|---|---|---|---|---|")
    for group, label in GROUPS:
        row = data.get(group, {})
        if "floor" not in row:
            continue
        f = melems(row["floor"])

        def q(a, b):
            if a in row and b in row:
                return f"{melems(row[a]) / melems(row[b]):.2f}×"
            return "–"

        lines.append(
            f"| {label} | {fmt(f)} | {q('homeslab', 'floor')} | {q('mimalloc', 'floor')} "
            f"| {q('floor', 'sharded-slab')} | {q('floor', 'lockfree-object-pool')} |"
        )
    if any(f"local_pools_k{k}" in data for k in POOL_KS):
        lines.append("")
        lines.append(
            "k pools of k types ÷ 1 pool, each subject against itself (target for homeslab: "
            "within 10% at every k; criterion measures one after another, so quote "
            "`benches/interleaved.rs -- local_pools_k`, which takes the ratio within each round):"
        )
        lines.append("")
        ks = POOL_KS[1:]
        lines.append("| subject | " + " | ".join(f"k={k} ÷ k=1" for k in ks) + " |")
        lines.append("|---" * (len(ks) + 1) + "|")
        base = data.get("local_pools_k1", {})
        for s in SUBJECTS:
            if s not in base:
                continue
            cells = []
            for k in ks:
                row = data.get(f"local_pools_k{k}", {})
                cells.append(f"{melems(row[s]) / melems(base[s]):.2f}×" if s in row else "–")
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def svg(data):
    groups = [(g, l) for g, l in GROUPS if g in data]
    n = len(SUBJECTS)
    bar, gap = 9, 22
    left, top, right, bottom = 70, 50, 20, 120
    gw = n * bar + gap
    width = left + right + gw * len(groups)
    height = 460
    ph = height - top - bottom
    vals = [melems(v) for g, _ in groups for v in data[g].values()]
    lo = 10 ** math.floor(math.log10(min(vals))) if vals else 0.1
    hi = 10 ** math.ceil(math.log10(max(vals))) if vals else 1000

    def y(v):
        return top + ph - (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * ph

    o = []
    o.append(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="11">'
    )
    o.append(f'<rect width="{width}" height="{height}" fill="white"/>')
    o.append(
        f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14">'
        "homeslab vs peers: median throughput (Melem/s, log scale, higher is better)</text>"
    )
    d = lo
    while d <= hi * 1.0001:
        yy = y(d)
        o.append(f'<line x1="{left}" x2="{width - right}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#ddd"/>')
        o.append(f'<text x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end">{fmt(d)}</text>')
        d *= 10
    o.append(
        f'<text x="16" y="{top + ph / 2}" transform="rotate(-90 16 {top + ph / 2})" '
        'text-anchor="middle">Melem/s</text>'
    )
    for gi, (g, label) in enumerate(groups):
        x0 = left + gi * gw + gap / 2
        for si, s in enumerate(SUBJECTS):
            if s not in data[g]:
                continue
            v = melems(data[g][s])
            x = x0 + si * bar
            yy = y(v)
            o.append(
                f'<rect x="{x:.1f}" y="{yy:.1f}" width="{bar - 1}" height="{top + ph - yy:.1f}" '
                f'fill="{COLORS[s]}"><title>{esc(g)}/{esc(s)}: {fmt(v)} Melem/s</title></rect>'
            )
        cx = x0 + n * bar / 2
        o.append(
            f'<text x="{cx:.1f}" y="{top + ph + 14}" text-anchor="end" '
            f'transform="rotate(-35 {cx:.1f} {top + ph + 14})">{esc(label)}</text>'
        )
    lx, ly = left, height - 28
    for i, s in enumerate(SUBJECTS):
        xx = lx + (i % 4) * 170
        yy = ly + (i // 4) * 14
        o.append(f'<rect x="{xx}" y="{yy - 9}" width="10" height="10" fill="{COLORS[s]}"/>')
        o.append(f'<text x="{xx + 14}" y="{yy}">{esc(s)}</text>')
    o.append("</svg>")
    return "\n".join(o) + "\n"


def main(argv):
    root = "target/criterion"
    out_svg = None
    out_json = None
    args = list(argv)
    while args:
        a = args.pop(0)
        if a == "--svg":
            out_svg = args.pop(0)
        elif a == "--json":
            out_json = args.pop(0)
        elif a in ("-h", "--help"):
            print(__doc__)
            return 0
        else:
            root = a
    data = load(root)
    if not data:
        print(f"no criterion results under {root}", file=sys.stderr)
        return 1
    print(tables(data))
    tuning = os.path.join(root, "local_t2_homeslab_retained")
    if os.path.isdir(tuning):
        print("\nhomeslab alone, local_t2, by `retained_empty_slabs` (Melem/s):\n")
        for name in sorted(os.listdir(tuning)):
            d = os.path.join(tuning, name, "new")
            try:
                with open(os.path.join(d, "benchmark.json")) as f:
                    elems = json.load(f).get("throughput", {}).get("Elements", 1)
                with open(os.path.join(d, "estimates.json")) as f:
                    ns = json.load(f)["median"]["point_estimate"]
            except (FileNotFoundError, KeyError):
                continue
            print(f"- `{name}`: {fmt(elems / ns * 1e3)}")
    if out_svg:
        tmp = out_svg + ".tmp"
        with open(tmp, "w") as f:
            f.write(svg(data))
        os.replace(tmp, out_svg)
        print(f"\nwrote {out_svg}", file=sys.stderr)
    if out_json:
        flat = {
            g: {s: {"median_ns_per_iter": v[0], "elements": v[1], "melem_per_s": melems(v)} for s, v in row.items()}
            for g, row in data.items()
        }
        with open(out_json, "w") as f:
            json.dump(flat, f, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
