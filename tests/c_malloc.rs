//! The C library (`examples/homeslab_malloc.rs`, a cdylib): real programs
//! of the machine under `LD_PRELOAD` give the same output as without it,
//! a C program built here with `cc` exercises every exported function
//! and its edge cases, another includes `include/homeslab.h` and calls
//! its entry points, a C++ one calls every `operator new` and `delete`,
//! and the environment options do what README says.
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

/// `tests/c/<name>.c` compiled with `cc` (warnings are errors) against
/// `include/` into an executable of its own for the test `test`, or None
/// without a C compiler.
fn compile(name: &str, test: &str) -> Option<PathBuf> {
    build(
        "cc",
        &["-pthread"],
        &format!("{name}.c"),
        &format!("{name}-{test}"),
        &[],
    )
}

/// `tests/c/<source>` compiled with `compiler` and `flags` (at `-O1`,
/// warnings are errors) against `include/`, linked with `libs`, into the
/// executable `exe` in the test directory; None without the compiler.
fn build(
    compiler: &str,
    flags: &[&str],
    source: &str,
    exe: &str,
    libs: &[&str],
) -> Option<PathBuf> {
    if !have(compiler) {
        eprintln!("skipped: no {compiler}");
        return None;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let exe = tmp(exe);
    let built = Command::new(compiler)
        .args(["-O1", "-Wall", "-Wextra", "-Werror"])
        .args(flags)
        .arg("-I")
        .arg(root.join("include"))
        .arg("-o")
        .arg(&exe)
        .arg(root.join("tests/c").join(source))
        .args(libs)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    Some(exe)
}

/// Runs `exe args` under the library with the environment `env`; it must
/// succeed. Its stdout and stderr.
fn run_preloaded(exe: &Path, args: &[&str], env: &[(&str, &str)]) -> (String, String) {
    let mut c = Command::new(exe);
    c.args(args).env("LD_PRELOAD", library());
    for var in [
        "HOMESLAB_SHOW_STATS",
        "HOMESLAB_VERBOSE",
        "HOMESLAB_PURGE_DELAY_MS",
        "HOMESLAB_HUGE_PAGES",
    ] {
        c.env_remove(var);
    }
    c.envs(env.iter().copied());
    let out = c.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{:?}\n{stdout}\n{stderr}", out.status);
    (stdout, stderr)
}

#[test]
fn the_header_declares_each_entry_point_and_each_works() {
    let Some(exe) = compile("header", "entry-points") else {
        return;
    };
    let (stdout, stderr) = run_preloaded(&exe, &[], &[]);
    assert!(stdout.contains("ALL OK"), "{stdout}\n{stderr}");
    // `homeslab_print_stats`: one line per counter.
    assert!(stderr.contains("homeslab: stats\n"), "{stderr}");
    assert!(stderr.contains("homeslab: double_frees 1\n"), "{stderr}");
    assert_eq!(stderr.matches("homeslab: ").count(), 17, "{stderr}");
    // The header is C++ too, and its weak declarations link without the
    // library.
    if have("c++") {
        let exe = tmp("header-weak");
        let src = "#define HOMESLAB_WEAK\n#include \"homeslab.h\"\n#include <cstdio>\n\
                   int main() { std::printf(\"%d\\n\", homeslab_trim != nullptr); }\n";
        let file = tmp("header-weak.cpp");
        std::fs::write(&file, src).unwrap();
        let built = Command::new("c++")
            .args(["-Wall", "-Werror", "-I"])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("include"))
            .arg("-o")
            .arg(&exe)
            .arg(&file)
            .output()
            .unwrap();
        assert!(built.status.success(), "{built:?}");
        let plain = Command::new(&exe).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&plain.stdout), "0\n");
        let (loaded, _) = run_preloaded(&exe, &[], &[]);
        assert_eq!(loaded, "1\n");
    }
}

/// C++'s `operator new` and `operator delete`, every replaceable form, are
/// the library's own and work as the standard says, failures included
/// (`tests/c/operators.cpp`).
#[test]
fn every_cxx_operator_new_and_delete_is_the_librarys() {
    let Some(exe) = build(
        "c++",
        &["-std=c++17"],
        "operators.cpp",
        "operators",
        &["-ldl"],
    ) else {
        return;
    };
    let (stdout, stderr) = run_preloaded(&exe, &[], &[]);
    assert!(stdout.contains("ALL OK"), "{stdout}\n{stderr}");
}

#[test]
fn show_stats_prints_the_counters_at_exit() {
    let Some(exe) = compile("header", "show-stats") else {
        return;
    };
    let (_, quiet) = run_preloaded(&exe, &["refuse", "2"], &[]);
    assert!(!quiet.contains("homeslab"), "{quiet}");
    let (_, stderr) = run_preloaded(&exe, &["refuse", "2"], &[("HOMESLAB_SHOW_STATS", "1")]);
    assert!(stderr.starts_with("homeslab: stats\n"), "{stderr}");
    // Two frees and a realloc of the foreign pointer.
    assert!(stderr.contains("homeslab: foreign_frees 3\n"), "{stderr}");
    assert!(stderr.contains("homeslab: double_frees 1\n"), "{stderr}");
    // A program of the machine (bash; not one of GNU coreutils, which close
    // stderr before the library's exit runs, nor dash, which leaves with
    // `_exit`), its output unchanged.
    if !have("bash") {
        return;
    }
    let out = Command::new("bash")
        .args(["-c", "echo shown"])
        .env("LD_PRELOAD", library())
        .env("HOMESLAB_SHOW_STATS", "1")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "shown\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("homeslab: allocs "), "{stderr}");
}

#[test]
fn verbose_names_each_refused_free_up_to_a_cap() {
    let Some(exe) = compile("header", "verbose") else {
        return;
    };
    let (_, quiet) = run_preloaded(&exe, &["refuse", "3"], &[]);
    assert!(quiet.is_empty(), "{quiet}");
    let (_, stderr) = run_preloaded(&exe, &["refuse", "3"], &[("HOMESLAB_VERBOSE", "1")]);
    assert_eq!(
        stderr.matches("refused: not a homeslab block\n").count(),
        4,
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("refused: double free\n").count(),
        1,
        "{stderr}"
    );
    assert_eq!(stderr.matches("homeslab: free(0x").count(), 4, "{stderr}");
    assert_eq!(
        stderr.matches("homeslab: realloc(0x").count(),
        1,
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 5, "{stderr}");
    // A flood: the first 100 lines, then one that says the rest are not
    // shown.
    let (_, stderr) = run_preloaded(&exe, &["refuse", "500"], &[("HOMESLAB_VERBOSE", "1")]);
    assert_eq!(stderr.matches(" refused: ").count(), 100, "{stderr}");
    assert_eq!(
        stderr
            .matches("homeslab: more refusals, not shown\n")
            .count(),
        1
    );
    assert_eq!(stderr.lines().count(), 101);
}

#[test]
fn invalid_values_are_ignored_with_a_warning_when_verbose() {
    let Some(exe) = compile("header", "invalid") else {
        return;
    };
    let bad = [
        ("HOMESLAB_PURGE_DELAY_MS", "5s"),
        ("HOMESLAB_SHOW_STATS", "yes"),
        ("HOMESLAB_HUGE_PAGES", "on"),
    ];
    let (stdout, quiet) = run_preloaded(&exe, &[], &bad);
    assert!(stdout.contains("ALL OK"));
    assert!(!quiet.contains("ignored"), "{quiet}");
    let mut env = bad.to_vec();
    env.push(("HOMESLAB_VERBOSE", "1"));
    let (_, stderr) = run_preloaded(&exe, &["refuse", "0"], &env);
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("ignored")).collect();
    assert_eq!(warnings.len(), 3, "{stderr}");
    assert!(warnings[0].starts_with("homeslab: HOMESLAB_SHOW_STATS ignored"));
    assert!(warnings[1].starts_with("homeslab: HOMESLAB_PURGE_DELAY_MS ignored"));
    assert!(warnings[2].starts_with("homeslab: HOMESLAB_HUGE_PAGES ignored"));
    // Not shown at exit: the invalid value is not "1".
    assert!(!stderr.contains("homeslab: stats"), "{stderr}");
}

#[test]
fn the_purge_delay_sets_the_idle_release_period() {
    let Some(exe) = compile("header", "purge") else {
        return;
    };
    let released = |env: &[(&str, &str)]| -> u64 {
        let (stdout, stderr) = run_preloaded(&exe, &["purge"], env);
        stdout
            .trim()
            .strip_prefix("released ")
            .unwrap_or_else(|| panic!("{stdout}\n{stderr}"))
            .parse()
            .unwrap()
    };
    // The default, 5 s: nothing goes back within 300 ms.
    assert_eq!(released(&[]), 0);
    assert!(released(&[("HOMESLAB_PURGE_DELAY_MS", "20")]) >= 1 << 20);
    // 0: never on idle.
    assert_eq!(released(&[("HOMESLAB_PURGE_DELAY_MS", "0")]), 0);
}

/// Large blocks ask for huge pages (`hg` among their mapping's flags) by
/// default and with `HOMESLAB_HUGE_PAGES=1`, not with `0`; an invalid
/// value keeps the default.
#[test]
fn huge_pages_follow_their_option() {
    if !Path::new("/sys/kernel/mm/transparent_hugepage/enabled").exists() {
        return;
    }
    let Some(exe) = compile("header", "flags") else {
        return;
    };
    let advised = |env: &[(&str, &str)]| -> bool {
        let (stdout, stderr) = run_preloaded(&exe, &["flags"], env);
        let flags = stdout
            .trim()
            .strip_prefix("VmFlags:")
            .unwrap_or_else(|| panic!("{stdout}\n{stderr}"));
        flags.split_whitespace().any(|f| f == "hg")
    };
    assert!(advised(&[]));
    assert!(advised(&[("HOMESLAB_HUGE_PAGES", "1")]));
    assert!(!advised(&[("HOMESLAB_HUGE_PAGES", "0")]));
    assert!(advised(&[("HOMESLAB_HUGE_PAGES", "off")]));
}
