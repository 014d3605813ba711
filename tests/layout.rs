//! The layout of src/ (docs/ARCHITECTURE.md): no module imports one that
//! imports it back, the shared models import neither process's side, and
//! the daemon never imports the trace side. Read from the source text, so
//! `cargo test --test layout` is the check anyone can run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path ("trace::handler") -> file, for every .rs under src/.
fn modules(root: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read src/") {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = p.strip_prefix(root).expect("under src/").with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(
                parts.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                parts.pop();
            }
            out.insert(parts.join("::"), p);
        }
    }
    out
}

/// The longest module that `path` names.
fn resolve(mods: &BTreeMap<String, PathBuf>, path: &[String]) -> Option<String> {
    (1..=path.len())
        .rev()
        .map(|k| path[..k].join("::"))
        .find(|m| mods.contains_key(m))
}

/// The modules each module imports (crate:: and super:: paths, test modules
/// at the end of a file left out).
fn edges(mods: &BTreeMap<String, PathBuf>) -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for (m, file) in mods {
        let text = std::fs::read_to_string(file).expect("read module");
        let text = text.split("#[cfg(test)]").next().unwrap_or("");
        let own: Vec<String> = if m.is_empty() {
            Vec::new()
        } else {
            m.split("::").map(String::from).collect()
        };
        // A file's `super` is its parent module; mod.rs files are the module itself.
        let is_mod_rs = file.file_name().is_some_and(|f| f == "mod.rs");
        let mut targets = BTreeSet::new();
        for (i, _) in text
            .match_indices("crate::")
            .chain(text.match_indices("super::"))
        {
            let rest = &text[i..];
            let word: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let mut segs: Vec<String> = word
                .split("::")
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            let base: Vec<String> = if segs[0] == "crate" {
                Vec::new()
            } else {
                // `super` from a file module is the parent; from mod.rs, the grandparent.
                let up = if is_mod_rs { 2 } else { 1 };
                own[..own.len().saturating_sub(up)].to_vec()
            };
            segs.remove(0);
            let full: Vec<String> = base.into_iter().chain(segs).collect();
            if let Some(t) = resolve(mods, &full) {
                let related = t.is_empty()
                    || t == *m
                    || t.starts_with(&format!("{m}::"))
                    || m.starts_with(&format!("{t}::"));
                if !related {
                    targets.insert(t);
                }
            }
        }
        out.insert(m.clone(), targets);
    }
    out
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let mods = modules(&root());
    let g = edges(&mods);
    // Every module reachable from each module; a cycle is a module that reaches itself.
    let mut cycles = Vec::new();
    for start in g.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<&String> = g[start].iter().collect();
        while let Some(m) = stack.pop() {
            if seen.insert(m.clone()) {
                stack.extend(g.get(m).into_iter().flatten());
            }
        }
        if seen.contains(start) {
            cycles.push(start.clone());
        }
    }
    assert!(cycles.is_empty(), "modules on an import cycle: {cycles:?}");
}

#[test]
fn models_import_neither_side_and_the_daemon_not_the_trace_side() {
    let mods = modules(&root());
    let g = edges(&mods);
    let side = |m: &str| m.split("::").next().unwrap_or("").to_string();
    let mut wrong = Vec::new();
    for (m, targets) in &g {
        for t in targets {
            let (from, to) = (side(m), side(t));
            let bad = match from.as_str() {
                // The shared models and top-level helpers.
                "policy" | "services" | "protocol" | "config" | "procfs" | "sockdiag" => {
                    to == "trace" || to == "daemon" || to == "cli"
                }
                "daemon" => to == "trace" || to == "cli",
                // `trace --mount` runs the daemon's state inside the trace process.
                "trace" => to == "daemon" && m != "trace::standalone",
                _ => false,
            };
            if bad {
                wrong.push(format!("{m} -> {t}"));
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the layout: {wrong:?}");
}

#[test]
fn the_check_sees_imports() {
    // Guard against a check that passes because it reads nothing.
    let mods = modules(&root());
    let g = edges(&mods);
    assert!(mods.contains_key("trace::handler"), "{:?}", mods.keys());
    assert!(g["trace::handler"].contains("policy"));
    assert!(g["daemon::state"].contains("daemon::health"));
    assert!(g["trace::command"].contains("trace::handler"));
}
