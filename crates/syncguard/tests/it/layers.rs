//! The app crate's layers, held by a test: every `crate::<module>` reference in `src/` (a `use`,
//! a path in code, a doc link) between two top-level modules must point down the layer order
//! below, and the top-level module graph must have no cycle. ARCHITECTURE.md draws the same
//! picture; change both together.
//!
//! Inline `#[cfg(test)] mod tests { … }` blocks at the end of a file are not counted: a test may
//! reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level modules by layer, highest first. A module may import only from layers after its
/// own; the foundation (the last layer) may import within itself, without cycles.
const LAYERS: &[&[&str]] = &[
    &["cli"],
    &["app"],
    &["api"],
    &["services"],
    // The runtime and the provider client: neither knows the other.
    &["engine", "provider"],
    &[
        "env",
        "config",
        "egress",
        "secrets",
        "store_probe",
        "workers",
        "metrics",
        "logging",
        "clock",
    ],
];

/// Edges `from -> to` (with one place each is made) between top-level modules of `src`.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut graph: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap();
            let first = rel.components().next().unwrap().as_os_str();
            let top = first.to_str().unwrap().trim_end_matches(".rs").to_string();
            if top == "lib" || top == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let text = strip_inline_tests(&text);
            let edges = graph.entry(top.clone()).or_default();
            for (line_no, line) in text.lines().enumerate() {
                for to in referenced_modules(line) {
                    if to != top {
                        edges
                            .entry(to)
                            .or_insert_with(|| format!("{}:{}", rel.display(), line_no + 1));
                    }
                }
            }
        }
    }
    graph
}

/// The text before a trailing `#[cfg(test)] mod tests {`.
fn strip_inline_tests(text: &str) -> &str {
    match text.find("#[cfg(test)]\nmod tests {") {
        Some(at) => &text[..at],
        None => text,
    }
}

/// Top-level modules a line names as `crate::x` or inside `crate::{x, y::z}`.
fn referenced_modules(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().last();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `syncguard_crate::…` or similar: not this crate's path.
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name = item.trim().split("::").next().unwrap_or("").trim();
                if is_ident(name) && name != "self" {
                    found.push(name.to_string());
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if is_ident(&name) {
                found.push(name);
            }
        }
    }
    found
}

fn is_ident(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// What is wrong with `graph`: modules no layer names, edges that point up or across, cycles.
fn problems(graph: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<String> {
    let mut out = Vec::new();
    let foundation = LAYERS.len() - 1;
    for (from, edges) in graph {
        let Some(lf) = layer_of(from) else {
            out.push(format!("module `{from}` is in no layer: add it to LAYERS"));
            continue;
        };
        for (to, at) in edges {
            let Some(lt) = layer_of(to) else {
                out.push(format!(
                    "`{from}` names `crate::{to}`, which is no module ({at})"
                ));
                continue;
            };
            if lt < lf || (lt == lf && lf != foundation) {
                out.push(format!("`{from}` must not import `{to}` ({at})"));
            }
        }
    }
    for cycle in cycles(graph) {
        out.push(format!("cycle: {}", cycle.join(" -> ")));
    }
    out
}

/// One cycle through each strongly connected part of `graph` that has more than one module.
fn cycles(graph: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut done: BTreeSet<String> = BTreeSet::new();
    for start in graph.keys() {
        if done.contains(start) {
            continue;
        }
        // Depth-first search for a path back to `start`.
        let mut path = vec![start.clone()];
        let mut seen = BTreeSet::from([start.clone()]);
        if let Some(cycle) = back_to(graph, start, &mut path, &mut seen) {
            done.extend(cycle.iter().cloned());
            found.push(cycle);
        }
        done.insert(start.clone());
    }
    found
}

fn back_to(
    graph: &BTreeMap<String, BTreeMap<String, String>>,
    start: &str,
    path: &mut Vec<String>,
    seen: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    let here = path.last().unwrap().clone();
    for next in graph.get(&here).into_iter().flat_map(|e| e.keys()) {
        if next == start {
            let mut cycle = path.clone();
            cycle.push(start.to_string());
            return Some(cycle);
        }
        if seen.insert(next.clone()) {
            path.push(next.clone());
            if let Some(c) = back_to(graph, start, path, seen) {
                return Some(c);
            }
            path.pop();
        }
    }
    None
}

#[test]
fn top_level_modules_follow_the_layers_without_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    assert!(graph.contains_key("services") && graph.contains_key("engine"));
    let problems = problems(&graph);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Layers below the HTTP layer never name axum: HTTP shapes stay in `api`.
#[test]
fn nothing_below_the_http_layer_names_axum() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let below_http = ["services", "engine", "provider", "env.rs"];
    let mut found = Vec::new();
    let mut stack: Vec<_> = below_http.iter().map(|m| src.join(m)).collect();
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
        } else if path.extension().and_then(|e| e.to_str()) == Some("rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, line) in strip_inline_tests(&text).lines().enumerate() {
                if line.contains("axum::") || line.contains("use axum") {
                    found.push(format!("{}:{}", path.display(), n + 1));
                }
            }
        }
    }
    assert!(found.is_empty(), "axum below the HTTP layer: {found:?}");
}

#[test]
fn the_check_sees_grouped_imports_upward_edges_and_cycles() {
    assert_eq!(
        referenced_modules("use crate::{engine::handler::JobError, provider, self};"),
        ["engine", "provider"]
    );
    assert_eq!(referenced_modules("/// see [`crate::app::App`]"), ["app"]);
    assert!(referenced_modules("use syncguard_crate::x;").is_empty());
    let edge = |pairs: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (a, b) in pairs {
            g.entry(a.to_string())
                .or_default()
                .insert(b.to_string(), "here".into());
            g.entry(b.to_string()).or_default();
        }
        g
    };
    assert!(problems(&edge(&[("api", "services"), ("engine", "env")])).is_empty());
    let up = problems(&edge(&[("engine", "app")]));
    assert_eq!(up, ["`engine` must not import `app` (here)"]);
    let across = problems(&edge(&[("provider", "engine")]));
    assert_eq!(across, ["`provider` must not import `engine` (here)"]);
    let cycle = problems(&edge(&[("config", "clock"), ("clock", "config")]));
    assert_eq!(cycle, ["cycle: clock -> config -> clock"]);
    let unknown = problems(&edge(&[("dashboard", "env")]));
    assert_eq!(
        unknown,
        ["module `dashboard` is in no layer: add it to LAYERS"]
    );
}
