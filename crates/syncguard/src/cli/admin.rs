//! Admin commands: thin clients of a running server's API (`--url`, `--api-key`).
//! Tables for people, `--json` for scripts.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

#[derive(Debug, Args, Clone)]
pub struct Remote {
    /// Base URL of the syncguard API.
    #[arg(long, env = "SYNCGUARD_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// API key (sg_live_…).
    #[arg(long, env = "SYNCGUARD_API_KEY", hide_env_values = true)]
    pub api_key: String,
    /// Print the raw JSON answer.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
    /// Create a tenant.
    Create {
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// List tenants.
    List {
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create an API key; the key is printed once.
    Create {
        /// admin, operator or viewer.
        #[arg(long)]
        role: String,
        #[arg(long)]
        name: String,
        /// Tenant (required with a platform key).
        #[arg(long)]
        tenant_id: Option<String>,
        /// Limit the key to these connections (repeatable).
        #[arg(long = "connection")]
        connections: Vec<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// List keys.
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// Revoke a key.
    Revoke {
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List jobs, newest first.
    List {
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        connection_id: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        remote: Remote,
    },
    /// Show one job.
    Get {
        id: i64,
        #[command(flatten)]
        remote: Remote,
    },
    /// Run a waiting job now, or replay a dead or cancelled one.
    Retry {
        id: i64,
        #[command(flatten)]
        remote: Remote,
    },
    /// Cancel a job that has not finished.
    Cancel {
        id: i64,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters.
    List {
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        connection_id: Option<String>,
        #[arg(long)]
        error_class: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        remote: Remote,
    },
    /// Replay dead letters as fresh jobs, by ids or by filter.
    Replay {
        /// Dead-letter ids (repeatable); without ids the filter applies.
        #[arg(long = "id")]
        ids: Vec<i64>,
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        connection_id: Option<String>,
        #[arg(long)]
        error_class: Option<String>,
        #[arg(long)]
        max_age_hours: Option<i64>,
        /// Report what would run without running it.
        #[arg(long)]
        dry_run: bool,
        /// Spread re-runs this many milliseconds apart.
        #[arg(long, default_value_t = 0)]
        stagger_ms: i64,
        #[command(flatten)]
        remote: Remote,
    },
}

pub(super) async fn call(
    remote: &Remote,
    method: reqwest::Method,
    path: &str,
    query: &[(&str, String)],
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let url = format!("{}{path}", remote.url.trim_end_matches('/'));
    let mut req = reqwest::Client::new()
        .request(method, &url)
        .bearer_auth(&remote.api_key)
        .query(query);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.with_context(|| format!("calling {url}"))?;
    let status = resp.status();
    let value: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let detail = value.get("detail").and_then(Value::as_str).unwrap_or("");
        bail!("{status}: {detail}");
    }
    Ok(value)
}

pub(super) fn opt(name: &'static str, v: &Option<String>) -> Option<(&'static str, String)> {
    v.as_ref().map(|v| (name, v.clone()))
}

/// Prints `value` as JSON, or its `data` items (or itself) as a table of `columns`.
pub(super) fn print(remote: &Remote, value: &Value, columns: &[&str]) {
    if remote.json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
        return;
    }
    let rows: Vec<&Value> = match value.get("data").and_then(Value::as_array) {
        Some(items) => items.iter().collect(),
        None => vec![value],
    };
    let cell = |v: &Value, c: &str| match v.get(c) {
        None | Some(Value::Null) => "-".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    let widths: Vec<usize> = columns
        .iter()
        .map(|c| {
            rows.iter()
                .map(|r| cell(r, c).len())
                .max()
                .unwrap_or(0)
                .max(c.len())
        })
        .collect();
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
    };
    println!(
        "{}",
        line(columns.iter().map(|c| c.to_uppercase()).collect())
    );
    for r in rows {
        println!("{}", line(columns.iter().map(|c| cell(r, c)).collect()));
    }
    if let Some(next) = value.get("next_cursor").and_then(Value::as_str) {
        eprintln!("(more: --cursor {next})");
    }
}

const JOB_COLUMNS: &[&str] = &[
    "id",
    "kind",
    "state",
    "attempts",
    "connection_id",
    "run_at",
    "error_class",
    "last_error",
];

pub async fn tenants(cmd: TenantsCommand) -> anyhow::Result<()> {
    match cmd {
        TenantsCommand::Create { name, remote } => {
            let v = call(
                &remote,
                reqwest::Method::POST,
                "/v1/tenants",
                &[],
                Some(json!({ "name": name })),
            )
            .await?;
            print(&remote, &v, &["id", "name", "created_at"]);
        }
        TenantsCommand::List { remote } => {
            let v = call(&remote, reqwest::Method::GET, "/v1/tenants", &[], None).await?;
            print(&remote, &v, &["id", "name", "created_at"]);
        }
    }
    Ok(())
}

pub async fn keys(cmd: KeysCommand) -> anyhow::Result<()> {
    let cols = &["id", "tenant_id", "role", "name", "last4", "revoked_at"];
    match cmd {
        KeysCommand::Create {
            role,
            name,
            tenant_id,
            connections,
            remote,
        } => {
            let mut body = json!({ "role": role, "name": name, "tenant_id": tenant_id });
            if !connections.is_empty() {
                body["connections"] = json!(connections);
            }
            let v = call(&remote, reqwest::Method::POST, "/v1/keys", &[], Some(body)).await?;
            print(&remote, &v, cols);
            if !remote.json {
                println!("\nkey (shown once): {}", v["key"].as_str().unwrap_or(""));
            }
        }
        KeysCommand::List { remote } => print(
            &remote,
            &call(&remote, reqwest::Method::GET, "/v1/keys", &[], None).await?,
            cols,
        ),
        KeysCommand::Revoke { id, remote } => print(
            &remote,
            &call(
                &remote,
                reqwest::Method::DELETE,
                &format!("/v1/keys/{id}"),
                &[],
                None,
            )
            .await?,
            cols,
        ),
    }
    Ok(())
}

/// One job-shaped answer, printed as a job row.
async fn job_call(remote: &Remote, method: reqwest::Method, path: &str) -> anyhow::Result<()> {
    print(
        remote,
        &call(remote, method, path, &[], None).await?,
        JOB_COLUMNS,
    );
    Ok(())
}

pub async fn jobs(cmd: JobsCommand) -> anyhow::Result<()> {
    match cmd {
        JobsCommand::List {
            state,
            kind,
            connection_id,
            limit,
            remote,
        } => {
            let q: Vec<_> = [
                opt("state", &state),
                opt("kind", &kind),
                opt("connection_id", &connection_id),
                Some(("limit", limit.to_string())),
            ]
            .into_iter()
            .flatten()
            .collect();
            print(
                &remote,
                &call(&remote, reqwest::Method::GET, "/v1/jobs", &q, None).await?,
                JOB_COLUMNS,
            );
        }
        JobsCommand::Get { id, remote } => {
            job_call(&remote, reqwest::Method::GET, &format!("/v1/jobs/{id}")).await?
        }
        JobsCommand::Retry { id, remote } => {
            job_call(
                &remote,
                reqwest::Method::POST,
                &format!("/v1/jobs/{id}/retry"),
            )
            .await?
        }
        JobsCommand::Cancel { id, remote } => {
            job_call(
                &remote,
                reqwest::Method::POST,
                &format!("/v1/jobs/{id}/cancel"),
            )
            .await?
        }
    }
    Ok(())
}

pub async fn dlq(cmd: DlqCommand) -> anyhow::Result<()> {
    match cmd {
        DlqCommand::List {
            kind,
            connection_id,
            error_class,
            limit,
            remote,
        } => {
            let q: Vec<_> = [
                opt("kind", &kind),
                opt("connection_id", &connection_id),
                opt("error_class", &error_class),
                Some(("limit", limit.to_string())),
            ]
            .into_iter()
            .flatten()
            .collect();
            print(
                &remote,
                &call(&remote, reqwest::Method::GET, "/v1/dead-letters", &q, None).await?,
                &[
                    "id",
                    "kind",
                    "attempts",
                    "connection_id",
                    "error_class",
                    "last_error",
                    "reviewed",
                    "replayed_as",
                ],
            );
        }
        DlqCommand::Replay {
            ids,
            kind,
            connection_id,
            error_class,
            max_age_hours,
            dry_run,
            stagger_ms,
            remote,
        } => {
            let body = json!({
                "ids": if ids.is_empty() { Value::Null } else { json!(ids) },
                "kind": kind, "connection_id": connection_id, "error_class": error_class,
                "max_age_hours": max_age_hours, "dry_run": dry_run, "stagger_ms": stagger_ms,
            });
            let v = call(
                &remote,
                reqwest::Method::POST,
                "/v1/dead-letters/replay",
                &[],
                Some(body),
            )
            .await?;
            print(&remote, &v, &["matched", "replayed", "dry_run"]);
        }
    }
    Ok(())
}
