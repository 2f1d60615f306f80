//! The OpenAPI document: committed as `docs/openapi.json` (so a change to the contract shows in
//! review, and clients can be generated without a running server), and true to the rules every
//! operation shares.

use serde_json::Value;

const SNAPSHOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");

fn document() -> Value {
    serde_json::to_value(syncguard::api::openapi()).unwrap()
}

#[test]
fn the_document_is_the_committed_snapshot() {
    let doc = serde_json::to_string_pretty(&document()).unwrap() + "\n";
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(SNAPSHOT, &doc).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(SNAPSHOT).unwrap_or_default();
    assert!(
        committed == doc,
        "docs/openapi.json is not the document the server serves; \
         run `UPDATE_OPENAPI=1 cargo test -p syncguard --test it openapi` and review the diff"
    );
}

#[test]
fn every_error_is_a_problem_and_every_keyed_operation_can_be_refused() {
    let doc = document();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            let keyed = op.get("security") != Some(&Value::Array(vec![]));
            if keyed {
                for status in ["401", "403"] {
                    assert!(
                        responses.contains_key(status),
                        "{method} {path}: no {status}"
                    );
                }
            }
            if path.starts_with("/v1/") {
                let unavailable = &responses["503"];
                assert!(
                    unavailable["headers"]["Retry-After"].is_object(),
                    "{method} {path}: 503 without Retry-After"
                );
            }
            for (status, r) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    let content = r["content"].as_object().unwrap();
                    assert_eq!(
                        content.keys().collect::<Vec<_>>(),
                        vec!["application/problem+json"],
                        "{method} {path} {status}"
                    );
                }
            }
            for p in op["parameters"].as_array().into_iter().flatten() {
                if p["name"] == "limit" {
                    assert_eq!(
                        (
                            p["schema"]["minimum"].as_i64(),
                            p["schema"]["maximum"].as_i64()
                        ),
                        (Some(1), Some(500)),
                        "{method} {path}"
                    );
                }
            }
        }
    }
}
