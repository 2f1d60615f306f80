//! The top-level modules of this crate depend on each other in one direction only.

#[path = "../../../syncguard-core/tests/support/modgraph.rs"]
mod modgraph;

#[test]
fn top_level_modules_form_no_cycle() {
    modgraph::assert_acyclic(env!("CARGO_MANIFEST_DIR"));
}
