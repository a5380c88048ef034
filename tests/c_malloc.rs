//! The C library (`examples/homeslab_malloc.rs`, a cdylib): real programs
//! of the machine under `LD_PRELOAD` give the same output as without it,
//! and a C program built here with `cc` exercises every exported function
//! and its edge cases.
//!
//! The library is the one `cargo test` built next to this test
//! (`target/<profile>/examples/libhomeslab_malloc.so`), or the file named
//! by `HOMESLAB_MALLOC_SO`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn library() -> PathBuf {
    if let Some(p) = std::env::var_os("HOMESLAB_MALLOC_SO") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/c_malloc-… → target/<profile>/examples/
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let so = dir.join("examples/libhomeslab_malloc.so");
    assert!(
        so.exists(),
        "{} missing: build it with `cargo build --example homeslab_malloc`",
        so.display()
    );
    so
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs `cmd` without and with the library preloaded; both must succeed
/// with the same stdout.
fn same_output(mut make: impl FnMut() -> Command) -> Output {
    let plain = make().output().unwrap();
    let preloaded = make().env("LD_PRELOAD", library()).output().unwrap();
    assert!(plain.status.success(), "without the library: {plain:?}");
    assert!(
        preloaded.status.success(),
        "with the library: {:?}\n{}",
        preloaded.status,
        String::from_utf8_lossy(&preloaded.stderr)
    );
    assert_eq!(
        plain.stdout, preloaded.stdout,
        "output differs under LD_PRELOAD"
    );
    assert!(!plain.stdout.is_empty());
    preloaded
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("homeslab-c-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

const PY_WORKLOAD: &str = r#"
import threading, hashlib, json
def work(seed):
    d = {}
    for i in range(40000):
        d[str(i * seed)] = [i] * (i % 17) + [str(i) * (i % 5)]
    blob = json.dumps(d, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()
out = [None] * 4
def run(i):
    out[i] = work(i + 1)
ts = [threading.Thread(target=run, args=(i,)) for i in range(4)]
[t.start() for t in ts]
[t.join() for t in ts]
big = bytearray(50_000_000)
big[-1] = 7
print(out, sum(len(x) for x in out), big[-1], sorted(set("the quick brown fox")))
"#;

#[test]
fn python_runs_the_same_under_the_library() {
    if !have("python3") {
        eprintln!("skipped: no python3");
        return;
    }
    same_output(|| {
        let mut c = Command::new("python3");
        c.args(["-c", PY_WORKLOAD]);
        c
    });
    // And the library really was the one in use.
    let maps = Command::new("python3")
        .args(["-c", "print(open('/proc/self/maps').read())"])
        .env("LD_PRELOAD", library())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&maps.stdout).contains("libhomeslab_malloc"));
}

#[test]
fn sort_of_a_large_file_is_the_same_under_the_library() {
    let input = tmp("sort-input.txt");
    let mut text = String::new();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..300_000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        text.push_str(&format!(
            "{:x} line {i} {}\n",
            x,
            "pad".repeat((x % 7) as usize)
        ));
    }
    std::fs::write(&input, text).unwrap();
    let out = same_output(|| {
        let mut c = Command::new("sort");
        // Several threads and a small buffer: merges of temporary runs.
        c.args(["--parallel=2", "-S", "8M", "-T"])
            .arg(input.parent().unwrap())
            .arg(&input);
        c.env("LC_ALL", "C");
        c
    });
    assert_eq!(out.stdout.iter().filter(|&&b| b == b'\n').count(), 300_000);
    let _ = std::fs::remove_file(&input);
}

#[test]
fn git_log_is_the_same_under_the_library() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !have("git") || !repo.join(".git").exists() {
        eprintln!("skipped: no git or not a git checkout");
        return;
    }
    same_output(|| {
        let mut c = Command::new("git");
        c.current_dir(repo)
            .args(["log", "--stat", "--format=%H %an %s", "-n", "300"]);
        c
    });
}

#[test]
fn every_exported_function_and_its_edge_cases() {
    if !have("cc") {
        eprintln!("skipped: no C compiler");
        return;
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/exercise.c");
    let exe = tmp("exercise");
    let built = Command::new("cc")
        .args(["-O1", "-pthread", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let out = Command::new(&exe)
        .env("LD_PRELOAD", library())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("ALL OK"),
        "{:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // Without the library the check that it is loaded fails: the program
    // can tell the difference.
    let plain = Command::new(&exe).output().unwrap();
    assert!(!plain.status.success());
}
