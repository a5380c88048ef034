//! Layers, not a web: no module of `src/` may use a module that (directly or
//! through others) uses it back. A module is a top-level file or folder of
//! `src/` (`src/heap.rs`; `src/pool_core.rs` with `src/pool_core/`); `A -> B` when
//! A's code (comments aside) names `crate::B`. Unit-test files (`tests.rs`)
//! are skipped. `HOMESLAB_LAYERS_SRC=path/to/src` checks another tree.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "tests") {
                files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs")
            && path.file_name().is_some_and(|n| n != "tests.rs")
        {
            out.push(path);
        }
    }
}

/// The module a file belongs to (its first component under `src`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let first = file.strip_prefix(src).ok()?.components().next()?;
    let name = first.as_os_str().to_str()?;
    let name = name.strip_suffix(".rs").unwrap_or(name);
    (name != "lib" && name != "main").then(|| name.to_string())
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// Every name after `crate::`, including each one in a `crate::{…}` group.
fn named(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let end = group
                .char_indices()
                .find(|&(_, c)| {
                    depth += i32::from(c == '{') - i32::from(c == '}');
                    depth == 0
                })
                .map_or(group.len(), |(i, _)| i);
            let inner = &group[..end];
            let mut rest = inner;
            while let Some(i) = rest.find(|c: char| c.is_alphanumeric() || c == '_') {
                let id = ident(&rest[i..]);
                out.push(id.to_string());
                rest = &rest[i + id.len()..];
            }
        } else {
            out.push(ident(rest).to_string());
        }
    }
    out
}

fn graph(src: &Path) -> Graph {
    let mut paths = Vec::new();
    files(src, &mut paths);
    let mut g = Graph::new();
    let mut texts = Vec::new();
    for p in &paths {
        if let Some(m) = module_of(src, p) {
            g.entry(m.clone()).or_default();
            texts.push((m, std::fs::read_to_string(p).unwrap()));
        }
    }
    for (m, text) in texts {
        let code: String = text
            .lines()
            .map(|l| l.split("//").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        for n in named(&code) {
            if n != m && g.contains_key(&n) {
                g.get_mut(&m).unwrap().insert(n);
            }
        }
    }
    g
}

/// The modules that sit on a cycle (each reaches itself).
fn on_cycles(g: &Graph) -> Vec<String> {
    let reaches = |from: &String| {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<&String> = g[from].iter().collect();
        while let Some(m) = stack.pop() {
            if seen.insert(m.clone()) {
                stack.extend(g[m].iter());
            }
        }
        seen
    };
    g.keys()
        .filter(|m| reaches(m).contains(*m))
        .cloned()
        .collect()
}

fn render(g: &Graph) -> String {
    g.iter()
        .map(|(m, uses)| {
            format!(
                "{m:12} -> {}",
                uses.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn src_modules_form_layers_not_a_web() {
    let src = std::env::var_os("HOMESLAB_LAYERS_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let g = graph(&src);
    assert!(
        g.len() >= 10,
        "found only {} modules in {}",
        g.len(),
        src.display()
    );
    let cycle = on_cycles(&g);
    assert!(
        cycle.is_empty(),
        "modules on an import cycle: {}\n{}",
        cycle.join(", "),
        render(&g)
    );
}

#[test]
fn the_scan_sees_a_cycle() {
    // The check itself must be able to fail: plant a cycle through a group
    // import and a path, beside an acyclic module, and look.
    let dir = std::env::temp_dir().join(format!("homeslab-layers-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("b")).unwrap();
    std::fs::write(dir.join("a.rs"), "use crate::{b::X, sync};\n").unwrap();
    std::fs::write(dir.join("b.rs"), "mod inner;\n").unwrap();
    std::fs::write(dir.join("b/inner.rs"), "fn f() { crate::a::g() }\n").unwrap();
    std::fs::write(dir.join("sync.rs"), "// crate::a in a comment\n").unwrap();
    std::fs::write(dir.join("tests.rs"), "use crate::sync;\n").unwrap();
    let g = graph(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(on_cycles(&g), ["a", "b"], "{}", render(&g));
    assert!(g["sync"].is_empty(), "comments are not imports");
}
