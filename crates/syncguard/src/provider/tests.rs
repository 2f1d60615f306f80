//! Unit tests of definitions: the built-ins load, bad ones are refused naming file, key and
//! reason.

use super::load::{load_all, parse, DefinitionError};
use super::ProviderState;
use crate::config::Config;

#[test]
fn builtin_definitions_load_and_map_webhooks() {
    let state = ProviderState::new(&Config::default(), &prometheus::Registry::new()).unwrap();
    let names: Vec<_> = state.all().map(|(d, _)| d.name.clone()).collect();
    assert_eq!(names, ["ebay", "github", "shopify", "stripe", "trackstar"]);
    let rule = state
        .event_rule("trackstar", "order.shipment.created")
        .unwrap();
    assert_eq!(
        (
            rule.resource.as_str(),
            rule.id_pointer.as_str(),
            rule.data_pointer.as_deref()
        ),
        ("orders", "/data/id", Some("/data"))
    );
    assert_eq!(
        state
            .event_rule("trackstar", "product.deleted")
            .unwrap()
            .action,
        super::definition::EventAction::Delete
    );
    assert_eq!(
        state
            .event_rule("trackstar", "inbound_shipment.updated")
            .unwrap()
            .resource,
        "inbound-shipments"
    );
    assert_eq!(state.webhook_def("stripe").unwrap().scheme, "stripe");
    assert_eq!(
        state
            .event_rule("stripe", "customer.subscription.updated")
            .unwrap()
            .resource,
        "subscriptions"
    );
    assert!(state.event_rule("github", "ping").is_none());
    assert!(state.webhook_def("ebay").is_none());
    let trackstar = state.get("trackstar").unwrap();
    assert_eq!(trackstar.rate_limit.unwrap().rps, 10.0);
    assert_eq!(trackstar.resources.len(), 4);
}

fn err(text: &str) -> DefinitionError {
    parse("custom.toml", text).unwrap_err()
}

const API: &str = "name = \"acme\"\nbase_url = \"https://acme.example\"\n[auth]\ntype = \"bearer\"\n[rate_limit]\nrps = 5\nburst = 2\n[pagination]\nstyle = \"link\"\n";

#[test]
fn bad_definitions_name_file_key_and_reason() {
    parse("custom.toml", API).unwrap();
    let e = err(&format!(
        "{API}[resources.items]\npath = \"/items\"\nid = \"id\"\n"
    ));
    assert_eq!(
        (e.file.as_str(), e.key.as_str()),
        ("custom.toml", "resources.items.id")
    );
    assert!(e.reason.contains("JSON pointer"), "{e}");
    let e = err(&API.replace("rps = 5", "rps = \"fast\""));
    assert_eq!(e.key, "rate_limit.rps", "{e}");
    assert!(
        e.to_string()
            .starts_with("provider definition custom.toml: `rate_limit.rps`:"),
        "{e}"
    );
    assert_eq!(
        err(&API.replace("rps = 5", "rps = 0")).key,
        "rate_limit.rps"
    );
    assert_eq!(
        err(&API.replace("style = \"link\"", "style = \"pages\"")).key,
        "pagination.style"
    );
    assert_eq!(
        err(&API.replace("burst = 2\n", "burst = 2\nbrust = 3\n")).key,
        "rate_limit.brust"
    );
    assert_eq!(
        err(&API.replace("[rate_limit]\nrps = 5\nburst = 2\n", "")).key,
        "rate_limit"
    );
    assert_eq!(
        err(&API.replace("https://acme.example", "ftp://acme")).key,
        "base_url"
    );
    let e = err(&format!("{API}[webhook]\n[[webhook.events]]\nevent = \"a.*\"\nresource = \"nope\"\naction = \"upsert\"\nid_pointer = \"/id\"\ndata_pointer = \"\"\n[resources.items]\npath = \"/items\"\n"));
    assert_eq!(e.key, "webhook.events[0].resource", "{e}");
    let e = err("name = \"hooks\"\n[webhook]\n[[webhook.events]]\nevent = \"x\"\nresource = \"r\"\naction = \"refetch\"\nid_pointer = \"/id\"\n");
    assert_eq!(e.key, "webhook.events[0].action", "{e}");
    assert_eq!(err("name = \"Bad Name\"\n[webhook]\n").key, "name");
    assert_eq!(err("name = \"lonely\"\n").key, "base_url");
    let e = err(&format!(
        "{API}[writes.put]\nresource = \"items\"\nmethod = \"PUT\"\npath = \"/items/{{id}}\"\n"
    ));
    assert_eq!(e.key, "writes.put.resource", "{e}");
}

#[test]
fn provider_files_add_definitions_and_errors_stop_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("acme.toml");
    std::fs::write(&good, API).unwrap();
    let loaded = load_all(&[good.display().to_string()]).unwrap();
    assert_eq!(loaded["acme"].source, "file");
    assert_eq!(loaded["trackstar"].source, "built-in");
    let dup = dir.path().join("dup.toml");
    std::fs::write(&dup, API.replace("acme", "trackstar")).unwrap();
    let e = load_all(&[dup.display().to_string()]).unwrap_err();
    assert_eq!(e.key, "name");
    assert!(e.reason.contains("providers/trackstar.toml"), "{e}");
    let missing = dir.path().join("missing.toml").display().to_string();
    assert_eq!(
        load_all(std::slice::from_ref(&missing)).unwrap_err().file,
        missing
    );
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, API.replace("burst = 2", "burst = -1")).unwrap();
    let config = Config {
        provider_files: vec![bad.display().to_string()],
        ..Config::default()
    };
    let e = ProviderState::new(&config, &prometheus::Registry::new())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("bad.toml") && e.contains("rate_limit.burst"),
        "{e}"
    );
}

#[test]
fn connection_overrides_are_checked_by_field() {
    let state = ProviderState::new(&Config::default(), &prometheus::Registry::new()).unwrap();
    let ok = serde_json::json!({"base_url": "http://127.0.0.1:9", "resources": ["orders"], "rate_limit": {"rps": 20, "burst": 5}, "circuit": {"open_for_s": 5}});
    state.check_connection("trackstar", &ok).unwrap();
    let check = |p: &str, c: serde_json::Value| state.check_connection(p, &c).unwrap_err();
    assert!(check("nope", serde_json::json!({})).contains("`provider`"));
    assert!(
        check("trackstar", serde_json::json!({"resources": ["invoices"]}))
            .contains("config.resources")
    );
    assert!(
        check("trackstar", serde_json::json!({"rate_limit": {"rps": 0}}))
            .contains("config.rate_limit.rps")
    );
    assert!(
        check("trackstar", serde_json::json!({"rate_limit": {"rsp": 1}}))
            .contains("config.rate_limit")
    );
    assert!(check(
        "trackstar",
        serde_json::json!({"circuit": {"min_calls": 0}})
    )
    .contains("config.circuit.min_calls"));
    assert!(
        check("trackstar", serde_json::json!({"base_url": "nowhere"})).contains("config.base_url")
    );
    assert!(
        check("stripe", serde_json::json!({"rate_limit": {"rps": 1}})).contains("webhook-only")
    );
    state
        .check_connection("stripe", &serde_json::json!({}))
        .unwrap();
}
