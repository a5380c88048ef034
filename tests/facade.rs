//! Every atomic, `UnsafeCell` and lock must come from `src/sync.rs` (and its
//! own parts in `src/sync/`), so that
//! loom checks the production code. This test fails if another module
//! reaches for them directly.

use std::path::Path;

const FORBIDDEN: &[&str] = &[
    "std::sync::atomic",
    "core::sync::atomic",
    "core::cell::UnsafeCell",
    "std::cell::UnsafeCell",
    "parking_lot::",
    "std::sync::Mutex",
    "std::sync::RwLock",
    "std::thread_local!",
];

fn scan(dir: &Path, hits: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            scan(&path, hits);
        } else if path.extension().is_some_and(|e| e == "rs")
            && !path.ends_with("src/sync.rs")
            // The facade's own parts (its lock).
            && !path.parent().is_some_and(|d| d.ends_with("src/sync"))
        {
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for f in FORBIDDEN {
                    if code.contains(f) {
                        hits.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                    }
                }
            }
        }
    }
}

#[test]
fn only_the_sync_facade_touches_atomics_cells_and_locks() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut hits = Vec::new();
    scan(&src, &mut hits);
    assert!(
        hits.is_empty(),
        "bypasses of src/sync.rs:\n{}",
        hits.join("\n")
    );
}

#[test]
fn the_scan_sees_a_bypass() {
    // The scanner itself must be able to fail: plant a bypass and look.
    let dir = std::env::temp_dir().join(format!("homeslab-facade-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("bad.rs"), "use core::sync::atomic::AtomicUsize;\n").unwrap();
    let mut hits = Vec::new();
    scan(&dir, &mut hits);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(hits.len(), 1);
}
