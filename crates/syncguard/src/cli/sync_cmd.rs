//! `syncguard sync` and `syncguard health`: clients of a running server's API (`--url`,
//! `--api-key`), like the other admin commands.

use super::admin::Remote;
use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    /// Connection to sync.
    pub connection_id: String,
    /// A resource to sync (repeatable; default: all of the connection's).
    #[arg(long = "resource")]
    pub resources: Vec<String>,
    /// List everything again instead of reading from the cursor.
    #[arg(long)]
    pub full: bool,
    /// Wait until every started sync has completed, showing progress.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub remote: Remote,
}

#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    /// Only this connection.
    #[arg(long)]
    pub connection_id: Option<String>,
    /// Print again every 5 s until Ctrl-C.
    #[arg(long)]
    pub watch: bool,
    #[command(flatten)]
    pub remote: Remote,
}

/// One API call; the problem document's detail on failure.
async fn call(
    remote: &Remote,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let url = format!("{}{path}", remote.url.trim_end_matches('/'));
    let mut req = reqwest::Client::new()
        .request(method, &url)
        .bearer_auth(&remote.api_key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.with_context(|| format!("calling {url}"))?;
    let status = resp.status();
    let value: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!(
            "{status}: {}",
            value.get("detail").and_then(Value::as_str).unwrap_or("")
        );
    }
    Ok(value)
}

pub async fn sync(args: SyncArgs) -> anyhow::Result<()> {
    let r = &args.remote;
    let id = &args.connection_id;
    let before = checkpoints(r, id).await?;
    let resources = if args.resources.is_empty() {
        Value::Null
    } else {
        json!(args.resources)
    };
    let started = call(
        r,
        reqwest::Method::POST,
        &format!("/v1/connections/{id}/sync"),
        Some(json!({ "resources": resources, "full": args.full })),
    )
    .await?;
    if r.json && !args.wait {
        println!("{started}");
        return Ok(());
    }
    let jobs = started["jobs"].as_array().cloned().unwrap_or_default();
    for j in &jobs {
        let dedup = if j["deduplicated"].as_bool() == Some(true) {
            " (joined a sync already queued or running)"
        } else {
            ""
        };
        eprintln!(
            "{:<20} job {}{dedup}",
            j["resource"].as_str().unwrap_or("?"),
            j["job_id"]
        );
    }
    if !args.wait {
        return Ok(());
    }
    // Done when each resource's last success is newer than before the request.
    let wanted: Vec<String> = jobs
        .iter()
        .filter_map(|j| j["resource"].as_str().map(String::from))
        .collect();
    let started_at = Instant::now();
    loop {
        let now = checkpoints(r, id).await?;
        let done: Vec<&String> = wanted
            .iter()
            .filter(|res| succeeded_since(&before, &now, res))
            .collect();
        let items: i64 = now
            .iter()
            .filter(|c| {
                wanted
                    .iter()
                    .any(|w| Some(w.as_str()) == c["resource"].as_str())
            })
            .map(|c| c["run"]["items"].as_i64().unwrap_or(0))
            .sum();
        eprint!(
            "\r{}/{} resources done, {items} items in runs in progress, {:.0} s   ",
            done.len(),
            wanted.len(),
            started_at.elapsed().as_secs_f64()
        );
        if done.len() == wanted.len() {
            eprintln!();
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let after = checkpoints(r, id).await?;
    if r.json {
        println!("{}", json!({ "connection_id": id, "checkpoints": after }));
    } else {
        for c in &after {
            println!(
                "{:<20} cursor {:<26} last success {:<26} items {}",
                c["resource"].as_str().unwrap_or("?"),
                text(&c["cursor"]),
                text(&c["last_success_at"]),
                c["items_total"]
            );
        }
    }
    Ok(())
}

async fn checkpoints(r: &Remote, id: &str) -> anyhow::Result<Vec<Value>> {
    let v = call(
        r,
        reqwest::Method::GET,
        &format!("/v1/connections/{id}/checkpoints"),
        None,
    )
    .await?;
    Ok(v["data"].as_array().cloned().unwrap_or_default())
}

fn succeeded_since(before: &[Value], now: &[Value], resource: &str) -> bool {
    let of = |list: &[Value]| {
        list.iter()
            .find(|c| c["resource"].as_str() == Some(resource))
            .and_then(|c| c["last_success_at"].as_str().map(String::from))
    };
    let (b, n) = (of(before), of(now));
    n.is_some()
        && n != b
        && now
            .iter()
            .any(|c| c["resource"].as_str() == Some(resource) && c["run"].is_null())
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub async fn health(args: HealthArgs) -> anyhow::Result<()> {
    loop {
        let path = match &args.connection_id {
            Some(id) => format!("/v1/connections/{id}/health"),
            None => "/v1/health".to_string(),
        };
        let v = call(&args.remote, reqwest::Method::GET, &path, None).await?;
        if args.remote.json {
            println!("{v}");
        } else if args.connection_id.is_some() {
            print_table(&[v]);
        } else {
            let a = &v["aggregate"];
            let q = &a["queue"];
            println!("{}  {} connections: {} healthy, {} degraded, {} unhealthy · queue: {} available, {} running, {} retryable, {} dead",
                text(&v["generated_at"]), a["total"], a["healthy"], a["degraded"], a["unhealthy"],
                q["available"], q["running"], q["retryable"], q["dead"]);
            print_table(
                v["connections"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or(&[]),
            );
        }
        if !args.watch {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => println!(),
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

const HEADERS: [&str; 11] = [
    "ID",
    "NAME",
    "STATUS",
    "CONN",
    "SYNC_LAG",
    "HOOK_LAG",
    "ERR_24H",
    "FAILS",
    "QUEUE",
    "P95_MS",
    "CIRCUIT/BURN",
];

/// One connection's row, in the order of [`HEADERS`].
fn row(c: &Value) -> Vec<String> {
    let secs = |v: &Value| v.as_f64().map_or("-".into(), |s| format!("{s:.0}s"));
    vec![
        text(&c["id"]),
        text(&c["name"]),
        text(&c["status"]),
        text(&c["connection_status"]),
        secs(&c["sync_lag_s"]),
        secs(&c["webhook_lag_s"]),
        c["error_rate_24h"]
            .as_f64()
            .map_or("-".into(), |r| format!("{:.2}%", r * 100.0)),
        text(&c["recent_failures"]),
        text(&c["queue_depth"]),
        c["webhook_latency_ms"]["p95"]
            .as_f64()
            .map_or("-".into(), |v| format!("{v:.0}")),
        format!(
            "{}/{}",
            text(&c["circuit"]["state"]),
            text(&c["burn"]["alert"])
        ),
    ]
}

fn print_table(rows: &[Value]) {
    let cells: Vec<Vec<String>> = rows.iter().map(row).collect();
    let widths: Vec<usize> = HEADERS
        .iter()
        .enumerate()
        .map(|(i, h)| {
            cells
                .iter()
                .map(|r| r[i].len())
                .max()
                .unwrap_or(0)
                .max(h.len())
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
    println!("{}", line(HEADERS.iter().map(|h| h.to_string()).collect()));
    for r in cells {
        println!("{}", line(r));
    }
    for r in rows {
        if let Some(reasons) = r["reasons"].as_array().filter(|a| !a.is_empty()) {
            let why: Vec<String> = reasons.iter().map(text).collect();
            println!("  {}: {}", text(&r["id"]), why.join("; "));
        }
    }
}
