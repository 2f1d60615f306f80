//! Admin commands for connections, circuits and inbound webhook events: thin clients of a
//! running server's API, like the rest of `admin`. Tables for people, `--json` for scripts.

use super::admin::{call, opt, print, Remote};
use anyhow::Context;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

#[derive(Debug, Subcommand)]
pub enum ConnectionsCommand {
    /// List connections.
    List {
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Continue after a previous page.
        #[arg(long)]
        cursor: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Show one connection (secrets are never returned).
    Get {
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Create a connection.
    Create {
        /// A provider name, e.g. `trackstar`.
        #[arg(long)]
        provider: String,
        /// Unique within the tenant, e.g. `brand_123`.
        #[arg(long)]
        name: String,
        /// Tenant (required with a platform key).
        #[arg(long)]
        tenant_id: Option<String>,
        /// Provider credentials as JSON, e.g. '{"api_key": "…", "access_token": "…"}'.
        #[arg(long)]
        credentials: Option<String>,
        /// The connection's configuration as JSON, e.g. '{"resources": ["orders"],
        /// "sync_interval_s": 300}' (`--config` names the configuration file of syncguard).
        #[arg(long, value_name = "JSON")]
        connection_config: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Pause a connection: no syncs are scheduled, its runs stop at a page boundary.
    Pause {
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Resume a paused connection (it syncs at once).
    Resume {
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Disconnect: stop its work, erase its credentials; keep its data unless --purge.
    Disconnect {
        id: String,
        /// Also delete its records, changes and checkpoints.
        #[arg(long)]
        purge: bool,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Debug, Subcommand)]
pub enum CircuitsCommand {
    /// List circuit breakers, one per connection and provider.
    List {
        #[arg(long)]
        connection_id: Option<String>,
        #[arg(long)]
        provider: Option<String>,
        /// closed, open or half_open.
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        remote: Remote,
    },
    /// Force a circuit open or closed, or hand it back to the breaker (`auto`). Admin only.
    Force {
        /// `{connection_id}:{provider}`, as listed.
        key: String,
        /// open, closed or auto.
        #[arg(long, value_parser = ["open", "closed", "auto"])]
        mode: String,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// List inbound webhook events, newest first.
    List {
        #[arg(long)]
        connection_id: Option<String>,
        /// received, processed, failed, dead or duplicate.
        #[arg(long)]
        status: Option<String>,
        /// Event type, e.g. order.updated.
        #[arg(long = "type")]
        event_type: Option<String>,
        /// Received at or after: RFC 3339, or milliseconds since the epoch.
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        remote: Remote,
    },
    /// Show one event.
    Get {
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Process stored events again, by ids or by filter (duplicates are never replayed).
    Replay {
        /// Event ids (repeatable); without ids the filter applies.
        #[arg(long = "id")]
        ids: Vec<String>,
        #[arg(long)]
        connection_id: Option<String>,
        /// received, processed, failed or dead.
        #[arg(long)]
        status: Option<String>,
        #[arg(long = "type")]
        event_type: Option<String>,
        #[arg(long)]
        since: Option<String>,
        /// Report what would be replayed without replaying.
        #[arg(long)]
        dry_run: bool,
        /// Spread the re-runs this many milliseconds apart.
        #[arg(long, default_value_t = 0)]
        stagger_ms: i64,
        #[command(flatten)]
        remote: Remote,
    },
}

const CONNECTION_COLUMNS: &[&str] = &[
    "id",
    "tenant_id",
    "provider",
    "name",
    "status",
    "has_credentials",
    "last_webhook_at",
];

const CIRCUIT_COLUMNS: &[&str] = &[
    "key",
    "state",
    "forced",
    "failures",
    "opened_at",
    "updated_at",
];

const EVENT_COLUMNS: &[&str] = &[
    "id",
    "connection_id",
    "event_type",
    "status",
    "attempts",
    "received_at",
    "note",
];

/// Parses a JSON option, naming it when it is not JSON.
fn json_arg(name: &str, v: Option<String>) -> anyhow::Result<Option<Value>> {
    v.map(|s| serde_json::from_str(&s).with_context(|| format!("--{name} is not valid JSON")))
        .transpose()
}

pub async fn connections(cmd: ConnectionsCommand) -> anyhow::Result<()> {
    let status = |remote: &Remote, id: &str, to: &str| {
        let (remote, path) = (remote.clone(), format!("/v1/connections/{id}"));
        let body = json!({ "status": to });
        async move { call(&remote, Method::PATCH, &path, &[], Some(body)).await }
    };
    match cmd {
        ConnectionsCommand::List {
            limit,
            cursor,
            remote,
        } => {
            let q: Vec<_> = [Some(("limit", limit.to_string())), opt("cursor", &cursor)]
                .into_iter()
                .flatten()
                .collect();
            let v = call(&remote, Method::GET, "/v1/connections", &q, None).await?;
            print(&remote, &v, CONNECTION_COLUMNS);
        }
        ConnectionsCommand::Get { id, remote } => {
            let v = call(
                &remote,
                Method::GET,
                &format!("/v1/connections/{id}"),
                &[],
                None,
            )
            .await?;
            print(&remote, &v, CONNECTION_COLUMNS);
        }
        ConnectionsCommand::Create {
            provider,
            name,
            tenant_id,
            credentials,
            connection_config,
            remote,
        } => {
            let mut body = json!({ "provider": provider, "name": name });
            if let Some(t) = tenant_id {
                body["tenant_id"] = json!(t);
            }
            if let Some(c) = json_arg("credentials", credentials)? {
                body["credentials"] = c;
            }
            if let Some(c) = json_arg("connection-config", connection_config)? {
                body["config"] = c;
            }
            let v = call(&remote, Method::POST, "/v1/connections", &[], Some(body)).await?;
            print(&remote, &v, CONNECTION_COLUMNS);
        }
        ConnectionsCommand::Pause { id, remote } => print(
            &remote,
            &status(&remote, &id, "paused").await?,
            CONNECTION_COLUMNS,
        ),
        ConnectionsCommand::Resume { id, remote } => print(
            &remote,
            &status(&remote, &id, "active").await?,
            CONNECTION_COLUMNS,
        ),
        ConnectionsCommand::Disconnect { id, purge, remote } => {
            let v = call(
                &remote,
                Method::DELETE,
                &format!("/v1/connections/{id}"),
                &[("purge", purge.to_string())],
                None,
            )
            .await?;
            if remote.json {
                print(&remote, &v, &[]);
            } else {
                print(&remote, &v["connection"], CONNECTION_COLUMNS);
                println!("\ncancelled jobs: {}", v["cancelled_jobs"]);
                if !v["purged"].is_null() {
                    println!("purged: {}", v["purged"]);
                }
            }
        }
    }
    Ok(())
}

pub async fn circuits(cmd: CircuitsCommand) -> anyhow::Result<()> {
    match cmd {
        CircuitsCommand::List {
            connection_id,
            provider,
            state,
            limit,
            remote,
        } => {
            let q: Vec<_> = [
                opt("connection_id", &connection_id),
                opt("provider", &provider),
                opt("state", &state),
                Some(("limit", limit.to_string())),
            ]
            .into_iter()
            .flatten()
            .collect();
            let v = call(&remote, Method::GET, "/v1/circuits", &q, None).await?;
            print(&remote, &v, CIRCUIT_COLUMNS);
        }
        CircuitsCommand::Force { key, mode, remote } => {
            let v = call(
                &remote,
                Method::POST,
                &format!("/v1/circuits/{key}/force"),
                &[],
                Some(json!({ "mode": mode })),
            )
            .await?;
            print(&remote, &v, CIRCUIT_COLUMNS);
        }
    }
    Ok(())
}

pub async fn events(cmd: EventsCommand) -> anyhow::Result<()> {
    match cmd {
        EventsCommand::List {
            connection_id,
            status,
            event_type,
            since,
            limit,
            remote,
        } => {
            let q: Vec<_> = [
                opt("connection_id", &connection_id),
                opt("status", &status),
                opt("type", &event_type),
                opt("since", &since),
                Some(("limit", limit.to_string())),
            ]
            .into_iter()
            .flatten()
            .collect();
            let v = call(&remote, Method::GET, "/v1/events", &q, None).await?;
            print(&remote, &v, EVENT_COLUMNS);
        }
        EventsCommand::Get { id, remote } => {
            let v = call(&remote, Method::GET, &format!("/v1/events/{id}"), &[], None).await?;
            print(&remote, &v, EVENT_COLUMNS);
        }
        EventsCommand::Replay {
            ids,
            connection_id,
            status,
            event_type,
            since,
            dry_run,
            stagger_ms,
            remote,
        } => {
            let body = json!({
                "ids": if ids.is_empty() { Value::Null } else { json!(ids) },
                "connection_id": connection_id, "status": status, "type": event_type,
                "since": since, "dry_run": dry_run, "stagger_ms": stagger_ms,
            });
            let v = call(&remote, Method::POST, "/v1/events/replay", &[], Some(body)).await?;
            print(&remote, &v, &["matched", "replayed", "dry_run"]);
        }
    }
    Ok(())
}
