//! The top-level modules of the core depend on each other in one direction only, and the
//! checker that holds this (shared with the other crates' tests) reads what it should.

#[path = "support/modgraph.rs"]
mod modgraph;

#[test]
fn core_modules_form_no_cycle() {
    modgraph::assert_acyclic(env!("CARGO_MANIFEST_DIR"));
}

#[test]
fn references_are_read_from_paths_groups_and_docs() {
    let refs = modgraph::crate_refs(
        "use crate::{a::X, b, c::{d, e}};\nuse crate::f::g;\n//! see [`crate::h`]\n\
         $crate::i!();\nlet x = syncguard_crate::j;\nuse crate::Type;\n\
         #[cfg(test)]\nmod tests { use crate::k; }",
    );
    let refs: Vec<_> = refs.into_iter().collect();
    assert_eq!(refs, ["a", "b", "c", "f", "h", "i"]);
}

#[test]
fn a_cycle_is_found_and_a_chain_is_not() {
    let mut graph = modgraph::Graph::new();
    let edge = |g: &mut modgraph::Graph, a: &str, b: &str| {
        g.entry(a.into()).or_default().entry(b.into()).or_default();
        g.entry(b.into()).or_default();
    };
    edge(&mut graph, "a", "b");
    edge(&mut graph, "b", "c");
    assert!(modgraph::cycles(&graph).is_empty());
    edge(&mut graph, "c", "a");
    edge(&mut graph, "c", "d");
    assert_eq!(modgraph::cycles(&graph), vec![vec!["a", "b", "c"]]);
}
