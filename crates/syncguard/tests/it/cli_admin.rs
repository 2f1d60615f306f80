//! The admin commands of SPEC §4.2 for connections, circuits and events, run as a user runs
//! them: the `syncguard` binary against a live server. Also the completion scripts and the
//! manual page.

use crate::helpers::*;
use crate::sync::{mock, tenant};
use serde_json::{json, Value};
use std::process::{Command, Output};
use syncguard_store::Backend;

crate::on_both_stores!(connections_circuits_and_events_from_the_command_line);

/// `syncguard <args> --url … --api-key …` with no other SYNCGUARD_* variable.
fn syncguard(app: &TestApp, key: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_syncguard"));
    cmd.args(args).args(["--url", &app.url, "--api-key", key]);
    for (k, _) in std::env::vars() {
        if k.starts_with("SYNCGUARD_") {
            cmd.env_remove(k);
        }
    }
    cmd.output().unwrap()
}

/// Runs a `--json` command that must succeed; returns its answer.
fn json_of(app: &TestApp, key: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = syncguard(app, key, &all);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{args:?}: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {stdout}"))
}

async fn connections_circuits_and_events_from_the_command_line(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_t, admin) = tenant(&app).await;
    let mock = mock(10).await;
    let config = json!({ "base_url": mock.base_url, "resources": ["orders"] }).to_string();
    let created = json_of(
        &app,
        &admin,
        &[
            "connections",
            "create",
            "--provider",
            "trackstar",
            "--name",
            "brand_cli",
            "--credentials",
            r#"{"api_key": "tsk_test", "access_token": "tat_cli"}"#,
            "--connection-config",
            &config,
        ],
    );
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["status"], "active", "{created}");
    let listed = json_of(&app, &admin, &["connections", "list"]);
    assert_eq!(listed["data"][0]["id"], id.as_str(), "{listed}");
    // The table for people names the connection too.
    let table = syncguard(&app, &admin, &["connections", "get", &id]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("brand_cli"));

    let paused = json_of(&app, &admin, &["connections", "pause", &id]);
    assert_eq!(paused["status"], "paused");
    let resumed = json_of(&app, &admin, &["connections", "resume", &id]);
    assert_eq!(resumed["status"], "active");

    let key = format!("{id}:trackstar");
    let forced = json_of(&app, &admin, &["circuits", "force", &key, "--mode", "open"]);
    assert_eq!(
        (forced["state"].as_str(), forced["forced"].as_str()),
        (Some("open"), Some("open")),
        "{forced}"
    );
    let circuits = json_of(&app, &admin, &["circuits", "list", "--state", "open"]);
    assert_eq!(circuits["data"][0]["key"], key.as_str(), "{circuits}");
    json_of(&app, &admin, &["circuits", "force", &key, "--mode", "auto"]);

    let events = json_of(&app, &admin, &["events", "list", "--connection-id", &id]);
    assert_eq!(events["data"], json!([]), "{events}");
    let replay = json_of(
        &app,
        &admin,
        &["events", "replay", "--connection-id", &id, "--dry-run"],
    );
    assert_eq!(
        (replay["matched"].as_u64(), replay["dry_run"].as_bool()),
        (Some(0), Some(true))
    );

    let gone = json_of(&app, &admin, &["connections", "disconnect", &id]);
    assert_eq!(gone["connection"]["status"], "disconnected", "{gone}");

    // A refused call exits non-zero with the server's reason; bad JSON is named.
    let refused = syncguard(&app, &admin, &["connections", "get", "con_missing"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("404"));
    let bad = syncguard(
        &app,
        &admin,
        &[
            "connections",
            "create",
            "--provider",
            "trackstar",
            "--name",
            "x",
            "--connection-config",
            "{",
        ],
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--connection-config is not valid JSON"));
    mock.shutdown().await;
    app.stop().await;
}

#[test]
fn completions_and_the_manual_page_cover_every_command() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_syncguard"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let bash = run(&["completions", "bash"]);
    for command in ["connections", "circuits", "events", "dlq", "serve"] {
        assert!(bash.contains(command), "bash completion lacks {command}");
    }
    assert!(run(&["completions", "zsh"]).contains("#compdef syncguard"));
    let man = run(&["man"]);
    assert!(
        man.starts_with(".ie") || man.contains(".TH syncguard"),
        "{man}"
    );
    assert!(man.contains("connections"));
}
