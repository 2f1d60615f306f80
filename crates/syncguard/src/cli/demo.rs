//! `syncguard demo`: the engine and the mock provider in one process, on a fresh embedded
//! SQLite file, end to end over real HTTP.
//!
//! It creates a tenant and a Trackstar-shaped connection through the link flow, backfills it
//! with a progress bar, then streams the mock's changes as signed webhooks (with duplicates and
//! reordering) while a live line shows the connection's health. A short provider outage makes
//! the circuit breaker open and close again. Ctrl-C (or `--duration`) stops it; before exiting
//! it checks the local mirror against the provider's data and says what it found.
//!
//! Everything the demo does to the engine goes through the public API, with the keys it prints,
//! so a user can poke at the same API while it runs.

use crate::app::Handlers;
use crate::app::{self, App};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use anyhow::{bail, Context};
use base64::Engine;
use indicatif::{ProgressBar, ProgressStyle};
use rand::RngCore;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use syncguard_mock::{FaultsPatch, MockConfig, WebhookConfig};
use tokio_util::sync::CancellationToken;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub duration: Option<u64>,
    /// Address of the engine's API; a free port is taken when this one is busy.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Directory for the demo's SQLite file and log (default: a fresh temporary directory,
    /// removed on exit). An earlier demo database in it is replaced.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Objects per mock resource (orders, products, inventory, inbound shipments).
    #[arg(long, default_value_t = 2_500)]
    pub records: usize,
    /// Changes per second the mock makes (and announces by webhook) after the backfill.
    #[arg(long, default_value_t = 5.0)]
    pub changes_per_s: f64,
}

/// The demo's calls to its own engine, with one key.
struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("calling {path}"))?;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!(
                "{path} answered {status}: {}",
                v["detail"].as_str().unwrap_or("")
            );
        }
        Ok(v)
    }
    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(reqwest::Method::GET, path, None).await
    }
    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }
}

/// Where the demo keeps its files.
enum Place {
    Temp(tempfile::TempDir),
    Given(PathBuf),
}

impl Place {
    fn path(&self) -> PathBuf {
        match self {
            Place::Temp(t) => t.path().to_path_buf(),
            Place::Given(p) => p.clone(),
        }
    }
}

fn random_b64(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let deadline = args
        .duration
        .map(|s| Instant::now() + Duration::from_secs(s));
    // The first Ctrl-C ends the scenario; a second one skips the final check.
    let (stop, skip) = (CancellationToken::new(), CancellationToken::new());
    {
        let (stop, skip) = (stop.clone(), skip.clone());
        tokio::spawn(async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                if stop.is_cancelled() {
                    skip.cancel();
                    break;
                }
                stop.cancel();
            }
        });
    }
    let place = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(d.join(format!("syncguard-demo.db{suffix}")));
            }
            Place::Given(d.clone())
        }
        None => Place::Temp(tempfile::tempdir().context("creating a temporary directory")?),
    };
    let dir = place.path();
    let db = dir.join("syncguard-demo.db");
    init_log(&dir.join("syncguard-demo.log"))?;

    // The provider: Trackstar-shaped, 10 requests per second per token, as the real one.
    let mock = syncguard_mock::spawn(MockConfig {
        records: args.records,
        ..Default::default()
    })
    .await?;
    let ms = mock.state();

    // The engine, on a fresh SQLite file, with a platform key made for this run.
    let mut config = Config {
        database_url: format!("sqlite://{}", db.display()),
        listen: args.listen.clone(),
        ..Config::default()
    };
    config.queue.poll_interval_ms = 100;
    let store = app::open_store(&config).await?;
    let clock = Arc::new(SystemClock);
    let platform_key = syncguard_core::ids::new_api_key(&mut rand::rngs::OsRng);
    store
        .upsert_bootstrap_key(&platform_key, clock.now_ms())
        .await?;
    let listener = match tokio::net::TcpListener::bind(&args.listen).await {
        Ok(l) => l,
        Err(_) => tokio::net::TcpListener::bind("127.0.0.1:0").await?,
    };
    let url = format!("http://{}", listener.local_addr()?);
    let engine = App::new(config, store, clock, super::bench::ephemeral_sealer())?;
    let engine_stop = CancellationToken::new();
    let server = {
        let s = engine_stop.clone();
        tokio::spawn(app::run(
            engine.clone(),
            listener,
            Handlers::builtin(),
            async move { s.cancelled().await },
        ))
    };
    let kept = match &place {
        Place::Temp(_) => "a fresh temporary directory, removed on exit",
        Place::Given(_) => "kept after exit",
    };
    println!("\nsyncguard demo: the engine and a mock provider in one process\n");
    println!("  API           {url}    (OpenAPI: {url}/v1/openapi.json)");
    println!("  platform key  {platform_key}");
    println!("  store         {} (SQLite; {kept})", db.display());
    println!(
        "  log           {}",
        dir.join("syncguard-demo.log").display()
    );
    println!(
        "  mock provider {} (Trackstar-shaped, {} objects per resource, 10 requests/s)",
        mock.base_url, args.records
    );
    println!("\n  try:  curl -s -H 'Authorization: Bearer {platform_key}' {url}/v1/health\n");

    let connection = Arc::new(std::sync::Mutex::new(None::<String>));
    let outcome = tokio::select! {
        r = scenario(&args, &url, &platform_key, &mock.base_url, &ms, deadline, connection.clone()) => r,
        _ = stop.cancelled() => Ok(()),
    };
    // Whatever happened, stop changes first, then the engine, then the mock.
    ms.set_mutation_rate(0.0);
    ms.stop_webhooks();
    let connection = connection.lock().expect("demo connection").clone();
    let outcome = match (outcome, connection) {
        (Ok(()), Some(id)) => verify(&url, &platform_key, &id, &ms, &skip).await,
        (other, _) => other,
    };
    engine_stop.cancel();
    let _ = server.await;
    let stats = mock.stats();
    mock.shutdown().await;
    println!("\n  provider calls {} · 429s {} (rate-limit violations {}) · webhooks delivered {} · changes made {}",
        stats.requests_total, stats.by_status.get("429").copied().unwrap_or(0), stats.rate_limit_violations,
        stats.webhooks_sent, stats.mutations);
    println!(
        "  stopped cleanly.{}",
        if matches!(place, Place::Given(_)) {
            format!(" The database stays in {}.", db.display())
        } else {
            String::new()
        }
    );
    drop(place);
    outcome
}

async fn scenario(
    args: &DemoArgs,
    url: &str,
    platform_key: &str,
    mock_url: &str,
    ms: &syncguard_mock::MockState,
    deadline: Option<Instant>,
    connection: Arc<std::sync::Mutex<Option<String>>>,
) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let platform = Api {
        http: http.clone(),
        base: url.into(),
        key: platform_key.into(),
    };
    let tenant = platform
        .post("/v1/tenants", json!({ "name": "demo-3pl" }))
        .await?;
    let tenant_id = tenant["id"].as_str().unwrap_or_default().to_string();
    let key = platform
        .post(
            "/v1/keys",
            json!({ "tenant_id": tenant_id, "role": "admin", "name": "demo admin" }),
        )
        .await?;
    let admin = Api {
        http,
        base: url.into(),
        key: key["key"].as_str().unwrap_or_default().into(),
    };
    println!(
        "1. tenant `demo-3pl` ({tenant_id}) with an admin key {}",
        admin.key
    );

    // The link flow: a link token opens the provider's widget, the widget hands back a code.
    let account = json!({ "api_key": "demo_account_key" });
    let lt = admin.post("/v1/connections/link-token", json!({ "provider": "trackstar", "credentials": account, "config": { "base_url": mock_url } })).await?;
    let code = format!("code_demo_{}", &random_b64(9).replace(['/', '+', '='], "x"));
    println!("2. link token {} issued; the warehouse's user connects in the widget, which returns {code}", lt["link_token"].as_str().unwrap_or("?"));
    let secret = format!("whsec_{}", random_b64(24));
    let conn = admin.post("/v1/connections", json!({
        "provider": "trackstar", "name": "brand_demo", "auth_code": code, "credentials": account,
        "config": {
            "base_url": mock_url, "sync_interval_s": 60,
            "webhook": { "secrets": [secret] },
            // A short open period, so the breaker visibly closes again within the demo.
            "circuit": { "open_for_s": 8 }
        }
    })).await?;
    let id = conn["id"].as_str().unwrap_or_default().to_string();
    *connection.lock().expect("demo connection") = Some(id.clone());
    println!("3. connection {id} is {}: backfilling the last 30 days of orders, products, inventory and inbound shipments", conn["status"].as_str().unwrap_or("?"));

    if !backfill(&admin, &id, args.records * 4, deadline).await? {
        return Ok(());
    }

    // Live: the mock changes objects and sends each change as a signed webhook.
    ms.configure_webhooks(WebhookConfig {
        duplicate_rate: 0.05,
        reorder: true,
        ..WebhookConfig::new(format!("{url}/v1/webhooks/{id}"), secret)
    })
    .map_err(anyhow::Error::msg)?;
    ms.set_mutation_rate(args.changes_per_s);
    println!("5. streaming {} changes/s as webhooks (5 % delivered twice, reordered); an incremental sync every 20 s.", args.changes_per_s);
    println!(
        "   In 10 s the provider goes down for 15 s: watch the circuit open, probe and close.\n"
    );
    live(&admin, &id, ms, deadline).await
}

/// Waits for the backfill with a progress bar; false when the deadline came first.
async fn backfill(
    api: &Api,
    id: &str,
    expected: usize,
    deadline: Option<Instant>,
) -> anyhow::Result<bool> {
    let bar = ProgressBar::new(expected as u64).with_style(
        ProgressStyle::with_template(
            "   backfill [{bar:40}] {pos}/{len} records  {per_sec}  {elapsed}",
        )?
        .progress_chars("=> "),
    );
    let started = Instant::now();
    loop {
        let cps = api
            .get(&format!("/v1/connections/{id}/checkpoints"))
            .await?;
        let cps = cps["data"].as_array().cloned().unwrap_or_default();
        let done = !cps.is_empty() && cps.iter().all(|c| c["backfill_done"] == true);
        let seen: i64 = cps
            .iter()
            .map(|c| {
                if c["backfill_done"] == true {
                    c["items_total"].as_i64().unwrap_or(0)
                } else {
                    c["run"]["items"].as_i64().unwrap_or(0)
                }
            })
            .sum();
        bar.set_position(seen as u64);
        if done {
            bar.finish();
            let secs = started.elapsed().as_secs_f64();
            println!("4. backfill done: {seen} records in {secs:.1} s ({:.0}/s; the provider's limit allows 10 pages of 1000 per second)", seen as f64 / secs);
            return Ok(true);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            bar.abandon();
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The live phase: a health line every second, the outage, periodic incremental syncs.
async fn live(
    api: &Api,
    id: &str,
    ms: &syncguard_mock::MockState,
    deadline: Option<Instant>,
) -> anyhow::Result<()> {
    let line =
        ProgressBar::new_spinner().with_style(ProgressStyle::with_template("   {spinner} {msg}")?);
    let started = Instant::now();
    let (mut outage_at, mut outage_ends, mut next_sync) = (
        Some(started + Duration::from_secs(10)),
        None::<Instant>,
        started + Duration::from_secs(20),
    );
    let (mut after, mut changes, mut circuit, mut ticks) =
        (0i64, 0usize, "closed".to_string(), 0u64);
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            line.finish_and_clear();
            return Ok(());
        }
        if outage_at.is_some_and(|t| Instant::now() >= t) {
            outage_at = None;
            outage_ends = Some(Instant::now() + Duration::from_secs(15));
            // Every call fails at once (no Retry-After to wait out): the breaker counts them.
            ms.set_faults(&FaultsPatch {
                error_rate: Some(1.0),
                error_status: Some(503),
                ..Default::default()
            })
            .map_err(anyhow::Error::msg)?;
            say(&line, "   !! provider outage: every call answers 503 for 15 s; a sync starts now and meets it".into());
            let _ = api
                .post(&format!("/v1/connections/{id}/sync"), json!({}))
                .await;
        }
        if outage_ends.is_some_and(|t| Instant::now() >= t) {
            outage_ends = None;
            ms.set_faults(&FaultsPatch {
                error_rate: Some(0.0),
                ..Default::default()
            })
            .map_err(anyhow::Error::msg)?;
            say(
                &line,
                "   !! provider back: the next probe through the breaker will succeed".into(),
            );
        }
        if Instant::now() >= next_sync {
            next_sync += Duration::from_secs(20);
            let _ = api
                .post(&format!("/v1/connections/{id}/sync"), json!({}))
                .await;
        }
        loop {
            let page = api
                .get(&format!(
                    "/v1/changes?connection_id={id}&after={after}&limit=500"
                ))
                .await?;
            let items = page["data"].as_array().cloned().unwrap_or_default();
            changes += items.len();
            if let Some(last) = items.last() {
                after = last["seq"].as_i64().unwrap_or(after);
            }
            if items.len() < 500 {
                break;
            }
        }
        // A new connection joins the health snapshot at its next refresh (every 5 s).
        let h = api
            .get(&format!("/v1/connections/{id}/health"))
            .await
            .unwrap_or(Value::Null);
        let state = h["circuit"]["state"]
            .as_str()
            .unwrap_or("closed")
            .to_string();
        if state != circuit {
            say(
                &line,
                format!(
                    "   -> circuit {circuit} → {state} (failures in window: {})",
                    h["circuit"]["failures"]
                ),
            );
            circuit = state;
        }
        let secs = |v: &Value| v.as_f64().map(|s| format!("{s:.0}s")).unwrap_or("-".into());
        let stats = ms.stats();
        let status = format!(
            "{} · sync lag {} · webhook lag {} · p95 {} ms · errors 24h {} · circuit {} · burn {} · changes {changes} · webhooks {} · 429s {}",
            h["status"].as_str().unwrap_or("(health: first snapshot pending)"),
            secs(&h["sync_lag_s"]),
            secs(&h["webhook_lag_s"]),
            h["webhook_latency_ms"]["p95"].as_f64().map(|v| format!("{v:.0}")).unwrap_or("-".into()),
            h["error_rate_24h"].as_f64().map(|r| format!("{:.1}%", r * 100.0)).unwrap_or("-".into()),
            circuit,
            h["burn"]["alert"].as_str().unwrap_or("?"),
            stats.webhooks_sent,
            stats.by_status.get("429").copied().unwrap_or(0),
        );
        if line.is_hidden() {
            // Not a terminal: a plain line every 5 s instead of a live one.
            if ticks % 5 == 0 {
                println!("   {status}");
            }
        } else {
            line.set_message(status);
            line.tick();
        }
        ticks += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Prints above the live line, or plainly when there is no terminal to draw it on.
fn say(line: &ProgressBar, msg: String) {
    if line.is_hidden() {
        println!("{msg}");
    } else {
        line.println(msg);
    }
}

/// Lets in-flight work settle, syncs once more, and compares the mirror with the provider.
async fn verify(
    url: &str,
    key: &str,
    id: &str,
    ms: &syncguard_mock::MockState,
    skip: &CancellationToken,
) -> anyhow::Result<()> {
    let api = Api {
        http: reqwest::Client::new(),
        base: url.into(),
        key: key.into(),
    };
    println!("\n6. stopping: changes off; letting webhooks settle, then a last incremental sync (Ctrl-C again skips)…");
    ms.reset_faults();
    let settle = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let before: Vec<Value> = api
            .get(&format!("/v1/connections/{id}/checkpoints"))
            .await?["data"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        api.post(&format!("/v1/connections/{id}/sync"), json!({}))
            .await?;
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now: Vec<Value> = api
                .get(&format!("/v1/connections/{id}/checkpoints"))
                .await?["data"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let all = now.iter().all(|c| {
                c["run"].is_null()
                    && before.iter().any(|b| {
                        b["resource"] == c["resource"]
                            && b["last_success_at"] != c["last_success_at"]
                    })
            });
            if all {
                return anyhow::Ok(());
            }
        }
    };
    let settled = tokio::select! {
        r = tokio::time::timeout(Duration::from_secs(60), settle) => matches!(r, Ok(Ok(()))),
        _ = skip.cancelled() => false,
    };
    let (mut same, mut differ) = (0usize, 0usize);
    for resource in ["orders", "products", "inventory", "inbound-shipments"] {
        let truth = ms.records(resource).unwrap_or_default();
        let mut local = std::collections::HashMap::new();
        let mut cursor: Option<String> = None;
        loop {
            let q = cursor
                .as_ref()
                .map(|c| format!("&cursor={c}"))
                .unwrap_or_default();
            let page = api
                .get(&format!(
                    "/v1/connections/{id}/records/{resource}?limit=500{q}"
                ))
                .await?;
            for r in page["data"].as_array().into_iter().flatten() {
                if r["deleted"] != true {
                    local.insert(
                        r["external_id"].as_str().unwrap_or_default().to_string(),
                        r["hash"].as_str().unwrap_or_default().to_string(),
                    );
                }
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        for item in &truth {
            let hash = syncguard_core::canonical::content_hash(item);
            match local.remove(item["id"].as_str().unwrap_or_default()) {
                Some(h) if h == hash => same += 1,
                _ => differ += 1,
            }
        }
        differ += local.len();
    }
    if differ == 0 {
        println!(
            "   the local mirror equals the provider: {same} objects, every content hash the same"
        );
    } else {
        let why = if settled {
            ""
        } else {
            " (work was still in flight when it stopped)"
        };
        println!("   {same} objects match the provider, {differ} differ{why}");
    }
    Ok(())
}

/// Logs go to a file: the terminal is the demo's.
fn init_log(path: &std::path::Path) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let writer = crate::logging::RedactingMakeWriter::new(std::sync::Mutex::new(file));
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(writer)
        .try_init();
    Ok(())
}
