//! Dependency direction between the top-level modules of a crate, checked from its source.
//!
//! A file `src/x.rs` or any file under `src/x/` belongs to module `x` (`lib.rs` and `main.rs`
//! belong to none). Module `x` depends on `y` when any of its files names `crate::y` — in a
//! path, a `use crate::{y, …}` group, a macro's `$crate::y` or a doc comment alike, so that a
//! doc link cannot hide an upward reference — outside a trailing `#[cfg(test)] mod tests`.
//! [`assert_acyclic`] fails when two or more modules reach each other.
//!
//! Dev-only and dependency-free, so that every crate's tests can include it:
//! `#[path = "<…>/syncguard-core/tests/support/modgraph.rs"] mod modgraph;`.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module → (module it names → the files that name it).
pub type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

/// Panics, naming the modules and the files behind each edge, when the top-level modules of
/// the crate at `crate_dir` (its `Cargo.toml` directory) form a cycle.
pub fn assert_acyclic(crate_dir: &str) {
    let graph = graph_of(&Path::new(crate_dir).join("src"));
    assert!(graph.len() > 1, "no modules found under {crate_dir}/src");
    let cycles = cycles(&graph);
    if cycles.is_empty() {
        return;
    }
    let mut msg = format!("import cycles between top-level modules of {crate_dir}:\n");
    for comp in &cycles {
        msg.push_str(&format!("  cycle: {}\n", comp.join(" <-> ")));
        for from in comp {
            for (to, files) in &graph[from] {
                if comp.contains(to) {
                    let files: Vec<_> = files.iter().cloned().collect();
                    msg.push_str(&format!("    {from} -> {to} ({})\n", files.join(", ")));
                }
            }
        }
    }
    panic!("{msg}");
}

/// The dependency graph of the top-level modules under `src`.
pub fn graph_of(src: &Path) -> Graph {
    let mut files = Vec::new();
    collect(src, &mut files);
    let mut graph = Graph::new();
    for file in files {
        let rel = file.strip_prefix(src).expect("under src");
        let first = rel
            .components()
            .next()
            .expect("a path")
            .as_os_str()
            .to_string_lossy()
            .into_owned();
        let module = first.strip_suffix(".rs").unwrap_or(&first).to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read source");
        let entry = graph.entry(module.clone()).or_default();
        for dep in crate_refs(&text) {
            if dep != module {
                let name = rel.display().to_string();
                entry.entry(dep).or_default().insert(name);
            }
        }
    }
    // Only edges to modules of this crate count (not `crate::SomeType` re-exports or macros).
    let names: BTreeSet<String> = graph.keys().cloned().collect();
    for deps in graph.values_mut() {
        deps.retain(|d, _| names.contains(d));
    }
    graph
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The first path segment after every `crate::` in `text` (lowercase names only: modules),
/// up to a trailing `#[cfg(test)] mod tests`.
pub fn crate_refs(text: &str) -> BTreeSet<String> {
    let text = strip_test_module(text);
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut at = 0;
    while let Some(found) = text[at..].find("crate::") {
        let start = at + found;
        at = start + "crate::".len();
        let before = start.checked_sub(1).map(|i| bytes[i]);
        if before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_') {
            continue; // e.g. `syncguard_crate::`
        }
        if text[at..].starts_with('{') {
            for item in group_items(&text[at + 1..]) {
                out.extend(module_name(item));
            }
        } else {
            out.extend(module_name(&text[at..]));
        }
    }
    out
}

/// A leading lowercase identifier (a module name), if any.
fn module_name(s: &str) -> Option<String> {
    let s = s.trim_start();
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    let ident = &s[..end];
    let first = ident.chars().next()?;
    (first.is_ascii_lowercase() || first == '_')
        .then(|| ident.to_string())
        .filter(|i| i != "self")
}

/// The items of a `{…}` group whose opening brace was just consumed, at depth 0.
fn group_items(s: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&s[start..i]);
                return items;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items
}

fn strip_test_module(text: &str) -> &str {
    let mut search = 0;
    while let Some(found) = text[search..].find("#[cfg(test)]") {
        let at = search + found;
        let rest = text[at + "#[cfg(test)]".len()..].trim_start();
        if rest.starts_with("mod tests") {
            return &text[..at];
        }
        search = at + 1;
    }
    text
}

/// Every strongly connected set of two or more modules, each sorted.
pub fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct Tarjan<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        out: Vec<Vec<String>>,
    }
    impl<'g> Tarjan<'g> {
        fn visit(&mut self, v: &'g str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.graph[v].keys() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut comp = Vec::new();
                loop {
                    let w = self.stack.pop().expect("on stack");
                    self.on_stack.remove(w);
                    comp.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if comp.len() > 1 {
                    comp.sort();
                    self.out.push(comp);
                }
            }
        }
    }
    let mut t = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.out
}
