//! `syncguard bench ingest`: durable webhook ingest over real HTTP (SPEC §6).
//!
//! Starts a server on loopback with a fresh store (or targets one with `--url`), creates a
//! tenant and a connection through its API, then runs three phases of `--seconds` each:
//! 1. `/livez` as fast as `--concurrency` clients can go: the same server's no-op rate;
//! 2. signed webhooks at a fixed `--rate`, each one's latency measured from the moment it was
//!    due (so a stalled server cannot hide its queue: no coordinated omission);
//! 3. signed webhooks as fast as `--concurrency` clients can go: acknowledgements per second.
//!
//! Every webhook is unique, Standard-Webhooks signed, verified, committed with its job and
//! acknowledged, exactly as in production. The run is bounded by `--max-webhooks` and time.

use super::bench::{ephemeral_sealer, StoreKind};
use crate::app::Handlers;
use crate::app::{self, App};
use crate::clock::SystemClock;
use crate::config::{Config, NodeRole};
use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use syncguard_core::signature::sign_standard;
use syncguard_store::testkit;
use syncguard_store::Backend;
use tokio::sync::{oneshot, Semaphore};

#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// Store of the server the bench starts: a fresh temporary SQLite file, or a fresh database
    /// on the PostgreSQL server of SYNCGUARD_TEST_POSTGRES_URL.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub store: StoreKind,
    /// Target a running server instead (loopback addresses only); needs --key.
    #[arg(long)]
    pub url: Option<String>,
    /// A platform API key of the server given by --url.
    #[arg(long, env = "SYNCGUARD_BENCH_KEY")]
    pub key: Option<String>,
    /// Webhooks per second of the latency phase.
    #[arg(long, default_value_t = 5_000)]
    pub rate: u64,
    /// Seconds each phase runs.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Concurrent clients of the throughput phases. Group commit shares one fsync among the
    /// deliveries in flight, so ingest throughput grows with this (as with many providers
    /// delivering at once).
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Most webhooks the whole run sends.
    #[arg(long, default_value_t = 300_000)]
    pub max_webhooks: u64,
    /// Size of each webhook body, in bytes.
    #[arg(long, default_value_t = 512)]
    pub body_bytes: usize,
    /// What the started server runs: `all` processes the webhooks while it takes them, as a
    /// single node does; `api` only takes them.
    #[arg(long, value_enum, default_value = "all")]
    pub role: NodeRole,
    /// Print one JSON object on the last line.
    #[arg(long)]
    pub json: bool,
}

/// The platform key of a server the bench starts itself.
const LOCAL_KEY: &str = "sg_live_bench_platform_key_0000000000";
/// Requests of the fixed-rate phase allowed in flight; beyond, the server is not keeping up
/// and sends are counted as skipped instead of piling up without bound.
const MAX_IN_FLIGHT: usize = 8_192;

/// What the webhooks go to.
struct Target {
    hook_url: String,
    secret: String,
    /// Numbers the deliveries, so each one is new.
    next: AtomicU64,
    body_bytes: usize,
}

impl Target {
    fn webhook(&self, client: &reqwest::Client) -> reqwest::RequestBuilder {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = format!("bench_{n}");
        let pad = "x".repeat(self.body_bytes.saturating_sub(96));
        let body = json!({ "event_type": "bench.ping", "data": { "id": id, "n": n, "pad": pad } })
            .to_string();
        let ts = now_s();
        let signature = sign_standard(&self.secret, &id, ts, body.as_bytes());
        client
            .post(&self.hook_url)
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signature)
            .body(body)
    }
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A server started for the run, on a thread and runtime of its own so that client and server
/// tasks do not share worker threads (the machine's cores they share, as two processes would).
struct LocalServer {
    url: String,
    stop: oneshot::Sender<()>,
    thread: std::thread::JoinHandle<anyhow::Result<()>>,
}

impl LocalServer {
    async fn start(backend: Backend, role: NodeRole) -> anyhow::Result<LocalServer> {
        let (ready_tx, ready) = oneshot::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("bench-server".into())
            .spawn(move || {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()?
                    .block_on(serve(backend, role, ready_tx, stopped))
            })?;
        let url = ready.await.context("the bench server did not start")?;
        Ok(LocalServer { url, stop, thread })
    }

    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        let thread = self.thread;
        tokio::task::spawn_blocking(move || thread.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the bench server panicked"))?
    }
}

/// The server's life: a fresh store, the bench's platform key, the app until `stopped`.
async fn serve(
    backend: Backend,
    role: NodeRole,
    ready: oneshot::Sender<String>,
    stopped: oneshot::Receiver<()>,
) -> anyhow::Result<()> {
    let db = testkit::fresh(backend).await;
    let config = Config {
        database_url: db.url.clone(),
        role,
        ..Config::default()
    };
    let now = crate::clock::Clock::now_ms(&SystemClock);
    db.store.upsert_bootstrap_key(LOCAL_KEY, now).await?;
    let app = App::new(
        config,
        db.store.clone(),
        Arc::new(SystemClock),
        ephemeral_sealer(),
    )?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let _ = ready.send(format!("http://{}", listener.local_addr()?));
    app::run(app, listener, Handlers::builtin(), async {
        let _ = stopped.await;
    })
    .await?;
    drop(db); // removes the temporary SQLite directory
    Ok(())
}

fn is_loopback(url: &str) -> bool {
    let rest = url.strip_prefix("http://").unwrap_or("");
    ["127.0.0.1:", "localhost:", "[::1]:"]
        .iter()
        .any(|p| rest.starts_with(p))
}

pub async fn run(args: IngestArgs) -> anyhow::Result<()> {
    if args.rate == 0 || args.seconds == 0 || args.concurrency == 0 {
        bail!("--rate, --seconds and --concurrency must be positive");
    }
    let (server, url, key, store) = match &args.url {
        Some(url) => {
            if !is_loopback(url) {
                bail!("--url must be a loopback http address (127.0.0.1, localhost, [::1]) with a port");
            }
            let key = args
                .key
                .clone()
                .context("--url needs --key (a platform API key)")?;
            (None, url.trim_end_matches('/').to_string(), key, "external")
        }
        None => {
            let backend = match args.store {
                StoreKind::Sqlite => Backend::Sqlite,
                StoreKind::Postgres => Backend::Postgres,
            };
            let server = LocalServer::start(backend, args.role).await?;
            let url = server.url.clone();
            (Some(server), url, LOCAL_KEY.to_string(), backend.as_str())
        }
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency.max(256))
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()?;
    let target = Arc::new(setup(&client, &url, &key, args.body_bytes).await?);
    let phase = Duration::from_secs(args.seconds);
    eprintln!(
        "bench ingest: {url} ({store}, role {:?}), {} s per phase, {} clients, fixed rate {}/s",
        args.role, args.seconds, args.concurrency, args.rate
    );
    let budget = Arc::new(AtomicU64::new(args.max_webhooks));

    // Warm up connections and code paths; not measured.
    let _ = closed_loop(
        &client,
        args.concurrency,
        Duration::from_secs(1),
        None,
        |c| target.webhook(c),
    )
    .await;

    let livez_url = format!("{url}/livez");
    let livez = closed_loop(&client, args.concurrency, phase, None, |c| {
        c.get(&livez_url)
    })
    .await;
    let livez_per_s = livez.ok as f64 / livez.elapsed_s;
    eprintln!("  livez:  {livez_per_s:.0}/s ({} errors)", livez.errors);

    let fixed = fixed_rate(&client, &target, args.rate, phase, &budget).await;
    eprintln!(
        "  fixed {}/s: {} acknowledged, p50 {:.2} ms, p99 {:.2} ms ({} errors, {} skipped)",
        args.rate,
        fixed.ok,
        percentile(&fixed.latencies_ms, 0.50),
        percentile(&fixed.latencies_ms, 0.99),
        fixed.errors,
        fixed.skipped
    );

    let max = closed_loop(&client, args.concurrency, phase, Some(&budget), |c| {
        target.webhook(c)
    })
    .await;
    let acks_per_s = max.ok as f64 / max.elapsed_s;
    eprintln!(
        "  ingest: {acks_per_s:.0}/s acknowledged ({} errors), {:.0} % of /livez",
        max.errors,
        100.0 * acks_per_s / livez_per_s.max(1.0)
    );

    if let Some(server) = server {
        server.stop().await?;
    }
    let round2 = |v: f64| (v * 100.0).round() / 100.0;
    let out = json!({
        "bench": "ingest",
        "store": store,
        "accepted": fixed.ok + max.ok,
        "acks_per_s": acks_per_s.round(),
        "livez_per_s": livez_per_s.round(),
        "p50_ms": round2(percentile(&fixed.latencies_ms, 0.50)),
        "p99_ms": round2(percentile(&fixed.latencies_ms, 0.99)),
        "rate": args.rate,
        "rate_acknowledged": fixed.ok,
        "rate_skipped": fixed.skipped,
        "errors": livez.errors + fixed.errors + max.errors,
        "ratio_to_livez": round2(acks_per_s / livez_per_s.max(1.0)),
        "concurrency": args.concurrency,
        "seconds": args.seconds,
        "role": format!("{:?}", args.role).to_lowercase(),
    });
    if args.json {
        println!("{out}");
    }
    Ok(())
}

/// Creates a tenant and a connection with a fresh webhook secret through the API.
async fn setup(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    body_bytes: usize,
) -> anyhow::Result<Target> {
    let post = |path: &'static str, body: Value| {
        let req = client
            .post(format!("{url}{path}"))
            .bearer_auth(key)
            .json(&body);
        async move {
            let resp = req.send().await?;
            let status = resp.status();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            if !status.is_success() {
                bail!("{path} answered {status}: {body}");
            }
            Ok::<Value, anyhow::Error>(body)
        }
    };
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let tenant = post("/v1/tenants", json!({ "name": format!("bench-{suffix}") })).await?;
    let mut raw = [0u8; 24];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut raw);
    let secret = format!(
        "whsec_{}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, raw)
    );
    let conn = post(
        "/v1/connections",
        json!({ "tenant_id": tenant["id"], "provider": "trackstar", "name": format!("bench-{suffix}"),
                "config": { "webhook": { "secrets": [secret] } } }),
    )
    .await?;
    let id = conn["id"].as_str().context("the connection has no id")?;
    Ok(Target {
        hook_url: format!("{url}/v1/webhooks/{id}"),
        secret,
        next: AtomicU64::new(0),
        body_bytes,
    })
}

struct ClosedLoop {
    ok: u64,
    errors: u64,
    elapsed_s: f64,
}

/// `concurrency` clients each sending the next request as soon as the last one is answered,
/// for `duration` (or until `budget` runs out).
async fn closed_loop<F>(
    client: &reqwest::Client,
    concurrency: usize,
    duration: Duration,
    budget: Option<&Arc<AtomicU64>>,
    request: F,
) -> ClosedLoop
where
    F: Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync,
{
    let (ok, errors) = (AtomicU64::new(0), AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let client_loop = || async {
        while Instant::now() < deadline {
            if let Some(b) = budget {
                if b.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_err()
                {
                    break;
                }
            }
            match request(client).send().await {
                Ok(r) if r.status().is_success() => ok.fetch_add(1, Ordering::Relaxed),
                _ => errors.fetch_add(1, Ordering::Relaxed),
            };
        }
    };
    futures::future::join_all((0..concurrency).map(|_| client_loop())).await;
    ClosedLoop {
        ok: ok.into_inner(),
        errors: errors.into_inner(),
        elapsed_s: started.elapsed().as_secs_f64(),
    }
}

struct FixedRate {
    ok: u64,
    errors: u64,
    skipped: u64,
    latencies_ms: Vec<f64>,
}

/// Sends `rate` webhooks per second for `duration`, each at its due time whatever happened to
/// the earlier ones; latency is measured from that due time.
async fn fixed_rate(
    client: &reqwest::Client,
    target: &Arc<Target>,
    rate: u64,
    duration: Duration,
    budget: &Arc<AtomicU64>,
) -> FixedRate {
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let total = (rate * duration.as_secs()).min(budget.load(Ordering::Relaxed));
    budget.fetch_sub(total, Ordering::Relaxed);
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    let mut skipped = 0;
    let start = tokio::time::Instant::now();
    for i in 0..total {
        let due = start + period * i as u32;
        tokio::time::sleep_until(due).await;
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            skipped += 1;
            continue;
        };
        let req = target.webhook(client);
        tasks.spawn(async move {
            let answered = req.send().await.map(|r| r.status().is_success());
            drop(permit);
            (
                answered.unwrap_or(false),
                due.elapsed().as_secs_f64() * 1000.0,
            )
        });
    }
    let mut out = FixedRate {
        ok: 0,
        errors: 0,
        skipped,
        latencies_ms: Vec::with_capacity(total as usize),
    };
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((true, ms)) => {
                out.ok += 1;
                out.latencies_ms.push(ms);
            }
            _ => out.errors += 1,
        }
    }
    out.latencies_ms
        .sort_by(|a, b| a.partial_cmp(b).expect("latencies are finite"));
    out
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets() {
        assert!(is_loopback("http://127.0.0.1:8080"));
        assert!(is_loopback("http://localhost:8080/"));
        assert!(!is_loopback("http://10.0.0.1:8080"));
        assert!(!is_loopback("https://127.0.0.1:8080"));
        assert!(!is_loopback("http://127.0.0.1.example.com:80"));
    }
}
