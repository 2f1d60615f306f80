//! The app crate's layers, held by a test: every `crate::<module>` reference in `src/` (a `use`,
//! a path in code, a doc link) between two top-level modules must point down the layer order
//! below, and the top-level module graph must have no cycle. ARCHITECTURE.md draws the same
//! picture; change both together.
//!
//! The graph is read by the workspace's shared checker (`syncguard-core/tests/support/
//! modgraph.rs`: paths, `use` groups, doc comments; not a trailing `#[cfg(test)] mod tests`,
//! since a test may reach anywhere); this file adds the layer order.

#[path = "../../../syncguard-core/tests/support/modgraph.rs"]
mod modgraph;

use modgraph::Graph;
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

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// What is wrong with `graph`: modules no layer names, edges that point up or across, cycles.
fn problems(graph: &Graph) -> Vec<String> {
    let mut out = Vec::new();
    let foundation = LAYERS.len() - 1;
    for (from, edges) in graph {
        let Some(lf) = layer_of(from) else {
            out.push(format!("module `{from}` is in no layer: add it to LAYERS"));
            continue;
        };
        for (to, files) in edges {
            let lt = layer_of(to).unwrap_or(foundation);
            if lt < lf || (lt == lf && lf != foundation) {
                let at: Vec<_> = files.iter().cloned().collect();
                out.push(format!(
                    "`{from}` must not import `{to}` ({})",
                    at.join(", ")
                ));
            }
        }
    }
    for cycle in modgraph::cycles(graph) {
        out.push(format!("cycle: {}", cycle.join(" <-> ")));
    }
    out
}

#[test]
fn top_level_modules_follow_the_layers_without_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = modgraph::graph_of(&src);
    assert!(graph.contains_key("services") && graph.contains_key("engine"));
    let problems = problems(&graph);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The text before a trailing `#[cfg(test)] mod tests {`.
fn before_test_module(text: &str) -> &str {
    text.find("#[cfg(test)]\nmod tests {")
        .map_or(text, |at| &text[..at])
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
            for (n, line) in before_test_module(&text).lines().enumerate() {
                if line.contains("axum::") || line.contains("use axum") {
                    found.push(format!("{}:{}", path.display(), n + 1));
                }
            }
        }
    }
    assert!(found.is_empty(), "axum below the HTTP layer: {found:?}");
}

#[test]
fn the_check_refuses_upward_and_cross_edges_cycles_and_unplaced_modules() {
    let edge = |pairs: &[(&str, &str)]| {
        let mut g = Graph::new();
        for (a, b) in pairs {
            g.entry(a.to_string())
                .or_default()
                .entry(b.to_string())
                .or_default()
                .insert("here".into());
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
    assert_eq!(cycle, ["cycle: clock <-> config"]);
    let unknown = problems(&edge(&[("dashboard", "env")]));
    assert_eq!(
        unknown,
        ["module `dashboard` is in no layer: add it to LAYERS"]
    );
    assert!(
        modgraph::crate_refs("use crate::{engine::handler::JobError, provider};")
            .contains("provider")
    );
}
