//! The configuration from the command line: `config check|show`, and `serve` started in a shell
//! that also holds the command-line variables.

use crate::helpers::*;
use crate::process::Serve;
use std::path::Path;
use std::process::{Command, Output};
use syncguard_store::testkit;
use syncguard_store::Backend;

crate::on_both_stores!(serve_starts_with_the_command_line_variables_set);

/// `syncguard <args>` in `dir` with no SYNCGUARD_* variable but `env`.
fn syncguard(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_syncguard"));
    cmd.args(args).current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("SYNCGUARD_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

async fn serve_starts_with_the_command_line_variables_set(backend: Backend) {
    let db = testkit::fresh(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let node = Serve::start(
        &db.url,
        dir.path(),
        &[
            ("SYNCGUARD_API_KEY", "x"),
            ("SYNCGUARD_URL", "http://127.0.0.1:1"),
            ("SYNCGUARD_BENCH_KEY", "y"),
            ("SYNCGUARD_TEST_POSTGRES_URL", "postgres://nowhere/none"),
        ],
    )
    .await;
    let r = reqwest::Client::new()
        .get(format!("{}/v1/tenants", node.url))
        .bearer_auth(PLATFORM_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(!node.log_text().contains("names no configuration key"));
    // The process exports its build and process metrics.
    let metrics = reqwest::get(format!("{}/metrics", node.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let build = format!("version=\"{}\"", env!("CARGO_PKG_VERSION"));
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("syncguard_build_info{")
                && l.contains(&build)
                && l.ends_with(" 1")),
        "{metrics}"
    );
    let rss: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
        .expect("process_resident_memory_bytes")
        .parse()
        .unwrap();
    assert!(rss > 1_000_000.0, "{rss}");
}

#[test]
fn config_check_accepts_a_valid_file_and_names_the_key_of_an_invalid_one() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("syncguard.toml");
    std::fs::write(&cfg, "[queue]\nworkers = 4\n").unwrap();
    let cfg_s = cfg.to_str().unwrap();
    let out = syncguard(
        dir.path(),
        &["config", "check", "--config", cfg_s],
        &[("SYNCGUARD_API_KEY", "x")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("configuration is valid"));

    // The environment is checked too, and an unknown variable is named but not fatal.
    let out = syncguard(
        dir.path(),
        &["config", "check", "--json"],
        &[("SYNCGUARD_CONFIG", cfg_s), ("SYNCGUARD_QUEUE_WOKERS", "3")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(
        v["ignored_variables"],
        serde_json::json!(["SYNCGUARD_QUEUE_WOKERS"])
    );
    let out = syncguard(
        dir.path(),
        &["config", "check", "--config", cfg_s],
        &[("SYNCGUARD_QUEUE_LEASE_MS", "5")],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("queue.lease_ms"),
        "{}",
        text(&out.stderr)
    );

    std::fs::write(&cfg, "[queue]\nworkers = \"many\"\n").unwrap();
    let out = syncguard(dir.path(), &["config", "check", "--config", cfg_s], &[]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("queue.workers"),
        "{}",
        text(&out.stderr)
    );
    let out = syncguard(
        dir.path(),
        &["config", "check", "--json", "--config", cfg_s],
        &[],
    );
    assert!(!out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert!(
        v["error"].as_str().unwrap().contains("queue.workers"),
        "{v}"
    );

    let out = syncguard(
        dir.path(),
        &["config", "check", "--config", "/nonexistent/syncguard.toml"],
        &[],
    );
    assert!(!out.status.success());
}

#[test]
fn config_show_prints_the_effective_configuration_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("syncguard.toml"),
        "database_url = \"postgres://sg:hunter2@db.internal/sg\"\n[queue]\nworkers = 4\n",
    )
    .unwrap();
    let env = [
        (
            "SYNCGUARD_PREVIOUS_MASTER_KEYS",
            "b2xkLWtleS0x,b2xkLWtleS0y",
        ),
        ("SYNCGUARD_QUEUE_KINDS_WEBHOOK_PROCESS_MAX_ATTEMPTS", "9"),
        ("SYNCGUARD_API_KEY", "x"),
    ];
    let out = syncguard(dir.path(), &["config", "show"], &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(
        !shown.contains("hunter2") && !shown.contains("b2xkLWtleS0"),
        "{shown}"
    );
    let t: toml::Table = toml::from_str(&shown).unwrap();
    assert_eq!(
        t["database_url"].as_str(),
        Some("postgres://sg:***@db.internal/sg")
    );
    assert_eq!(t["queue"]["workers"].as_integer(), Some(4));
    assert_eq!(
        t["queue"]["kinds"]["webhook.process"]["max_attempts"].as_integer(),
        Some(9)
    );
    assert_eq!(t["previous_master_keys"].as_array().unwrap().len(), 2);
    assert_eq!(t["api"]["max_connections"].as_integer(), Some(1024));

    let out = syncguard(dir.path(), &["config", "show", "--json"], &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["database_url"], "postgres://sg:***@db.internal/sg");
    assert_eq!(v["previous_master_keys"], serde_json::json!(["***", "***"]));
    assert_eq!(v["queue"]["workers"], 4);
}
