//! No import cycles between the modules of one crate.
//!
//! A crate's top-level modules (`src/x.rs` or `src/x/`, a submodule counting as its
//! top-level parent) form a graph: `x` depends on `y` when its code names `crate::y`,
//! or an item the crate root re-exports from `y` (`crate::Error` is `error`'s), or,
//! from a top-level file, `super::y`. Test code (`tests.rs` files, and a file's code
//! from its first `#[cfg(test)]` on) and comments are left out. The graph must have no
//! cycle: a module that imports one which imports it back cannot be read, tested or
//! moved on its own.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

const CRATES: [&str; 4] = ["sync-core", "sync-runtime", "sync-server", "sync-derive"];

/// The code of a file that counts: no comments, no test code.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// Every non-test source file below `dir`.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") && path.file_name().is_some_and(|n| n != "tests.rs") {
            out.push(path);
        }
    }
}

/// The first path segment of each path after `prefix` in `text`: `crate::a::B` gives
/// `a`, `crate::{a, b::c, d::{e, f}}` gives `a`, `b` and `d`.
fn names_after(text: &str, prefix: &str) -> Vec<String> {
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        let part_of_a_word = rest[..i].chars().next_back().is_some_and(is_word);
        rest = &rest[i + prefix.len()..];
        if part_of_a_word {
            continue;
        }
        let Some(group) = rest.strip_prefix('{') else {
            let word: String = rest.chars().take_while(|c| is_word(*c)).collect();
            out.extend(Some(word).filter(|w| !w.is_empty()));
            continue;
        };
        let (mut depth, mut expect_name, mut word) = (0, true, String::new());
        for c in group.chars() {
            if depth == 0 && is_word(c) {
                if expect_name {
                    word.push(c);
                }
                continue;
            }
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
                expect_name = false;
            }
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => expect_name = true,
                _ => {}
            }
        }
        out.extend(Some(word).filter(|w| !w.is_empty()));
    }
    out
}

/// The module graph of one crate.
fn graph(krate: &str) -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(krate).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let top = |path: &Path| -> Option<(String, bool)> {
        let rel = path.strip_prefix(&src).ok()?;
        let mut parts = rel.iter();
        let first = parts.next()?.to_str()?;
        let nested = parts.next().is_some();
        let name = first.trim_end_matches(".rs");
        (!matches!(name, "lib" | "main") || nested).then(|| (name.to_owned(), !nested))
    };
    let modules: BTreeSet<String> = all.iter().filter_map(|p| top(p)).map(|(m, _)| m).collect();

    // Items the root re-exports: `pub use module::{A, B}` (and `pub use module::A`).
    let mut reexported: HashMap<String, String> = HashMap::new();
    for root in ["lib.rs", "main.rs"] {
        let path = src.join(root);
        if !path.exists() {
            continue;
        }
        let text = code(&path);
        for line in text.split(';') {
            let Some(rest) = line.trim().strip_prefix("pub use ") else { continue };
            let Some((module, items)) = rest.split_once("::") else { continue };
            if !modules.contains(module) {
                continue;
            }
            for item in items.split(|c: char| !(c.is_alphanumeric() || c == '_')).filter(|w| !w.is_empty()) {
                reexported.insert(item.to_owned(), module.to_owned());
            }
        }
    }

    let mut edges: BTreeMap<String, BTreeSet<String>> = modules.iter().map(|m| (m.clone(), BTreeSet::new())).collect();
    for path in &all {
        let Some((module, is_top_file)) = top(path) else { continue };
        let text = code(path);
        let mut names = names_after(&text, "crate::");
        if is_top_file {
            names.extend(names_after(&text, "super::"));
        }
        for name in names {
            let target = if modules.contains(&name) { Some(name) } else { reexported.get(&name).cloned() };
            if let Some(target) = target.filter(|t| *t != module) {
                edges.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    edges
}

/// The modules on some cycle, each with the path back to itself.
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    fn path_to(edges: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> Option<Vec<String>> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![vec![from.to_owned()]];
        while let Some(path) = stack.pop() {
            let last = path.last().cloned().unwrap_or_default();
            if last == to {
                return Some(path);
            }
            for next in edges.get(&last).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push(longer);
                }
            }
        }
        None
    }
    let mut out = Vec::new();
    for (module, targets) in edges {
        for target in targets {
            if let Some(mut back) = path_to(edges, target, module) {
                back.insert(0, module.clone());
                out.push(back);
                break;
            }
        }
    }
    out
}

#[test]
fn no_crate_has_an_import_cycle_between_its_modules() {
    let mut found = Vec::new();
    for krate in CRATES {
        for cycle in cycles(&graph(krate)) {
            found.push(format!("{krate}: {}", cycle.join(" -> ")));
        }
    }
    assert!(found.is_empty(), "import cycles between modules:\n{}", found.join("\n"));
}

#[test]
fn the_checker_sees_an_edge_and_a_cycle() {
    assert_eq!(names_after("use crate::{a, b::c}; x crate::d::E; notcrate::z", "crate::"), ["a", "b", "d"]);
    let edges: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["a".to_owned()])),
        ("c".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]
    .into();
    assert_eq!(cycles(&edges), [vec!["a", "b", "a"], vec!["b", "a", "b"]]);
    // The checker reads the sources: the store depends on the error type, directly and
    // through the root's re-export (`crate::Result`).
    let runtime = graph("sync-runtime");
    assert!(runtime["store"].contains("error") && runtime["client"].contains("store"), "{runtime:?}");
}
