//! `syncguard chaos` (hidden; run it through `scripts/chaos`): the reliability suite of
//! RELIABILITY.md, with real processes.
//!
//! Three `syncguard serve` nodes share a private PostgreSQL cluster; the `syncguard mock`
//! provider streams signed webhooks to them through a small load balancer ([`front`]), while
//! the run PUTs desired states to an eBay-shaped connection and asks for syncs of a
//! Trackstar-shaped one ([`traffic`]). Light provider faults run all along. On a timeline it
//! then kills one node with SIGKILL and restarts it, stops PostgreSQL and starts it again, and
//! gives the provider an outage. Afterwards [`verify`] checks the guarantees and [`memory`] the
//! resident memory; any broken guarantee makes the exit code non-zero.
//!
//! # Layout
//! - [`cluster`]: the private PostgreSQL (initdb, pg_ctl).
//! - [`procs`]: the node and mock processes.
//! - [`front`]: the webhook load balancer that records acknowledgements and their latency.
//! - [`traffic`]: API client with failover, the publisher and the syncer, the mock's control.
//! - [`verify`]: settling and the end checks.
//! - [`memory`]: RSS sampling, soak flatness, the many-connections peak.

mod cluster;
mod front;
mod memory;
mod procs;
mod setup;
mod timeline;
mod traffic;
mod verify;

use serde_json::json;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timeline::Timeline;
use tokio_util::sync::CancellationToken;
use traffic::{Api, MockControl, PublishLedger};
use verify::Findings;

#[derive(Debug, clap::Args)]
pub struct ChaosArgs {
    /// The CI version: shorter outages (store 10 s, provider 8 s), under three minutes.
    #[arg(long, conflicts_with = "soak")]
    pub short: bool,
    /// Ten minutes: the full timeline, then steady traffic; each node's RSS must stay flat.
    #[arg(long)]
    pub soak: bool,
    /// Create this many extra Trackstar connections before the traffic starts, and report the
    /// nodes' peak RSS (goal: ≤ 150 MB at 1 000).
    #[arg(long, default_value_t = 0)]
    pub connections: usize,
    /// No kill, no outages, no background faults (for memory measurements).
    #[arg(long)]
    pub calm: bool,
    /// Directory for the cluster, logs and pids (default: a fresh temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// PostgreSQL's bin directory (default: the newest /usr/lib/postgresql/*/bin).
    #[arg(long)]
    pub pg_bin: Option<PathBuf>,
    /// Objects per WMS resource at the provider.
    #[arg(long, default_value_t = 300)]
    pub records: usize,
    /// Provider changes per second, each announced by a signed webhook.
    #[arg(long, default_value_t = 10.0)]
    pub webhooks_per_s: f64,
    /// Desired-state PUTs per second.
    #[arg(long, default_value_t = 4.0)]
    pub publishes_per_s: f64,
}

const NODES: usize = 3;
const SKUS: usize = 40;

pub async fn run(args: ChaosArgs) -> anyhow::Result<()> {
    let (_temp, dir) = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            (None, d.clone())
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("syncguard-chaos.")
                .tempdir()?;
            let p = t.path().to_path_buf();
            (Some(t), p)
        }
    };
    let started = Instant::now();
    let say = move |msg: &str| println!("[{:>5.1} s] {msg}", started.elapsed().as_secs_f64());
    let mode = if args.short {
        "short"
    } else if args.soak {
        "soak"
    } else {
        "full"
    };
    say(&format!("chaos run ({mode}); files in {}", dir.display()));

    let pg_port = procs::free_port()?;
    let cluster = Arc::new(cluster::Cluster::init(
        args.pg_bin.as_deref(),
        &dir,
        pg_port,
    )?);
    let _cluster_guard = ClusterGuard(cluster.clone());
    cluster.start()?;
    say(&format!("private PostgreSQL on 127.0.0.1:{pg_port}"));

    let mock = procs::Mock::start(
        &dir,
        &procs::MockSettings {
            records: args.records,
            rate_limit_rps: 10.0,
            // Retries at 0.5, 2, 8 and 32 s: a provider that rides out a 30 s receiver outage.
            webhook_max_attempts: 5,
            webhook_retry_base_ms: 500,
        },
    )
    .await?;
    let mc = MockControl::new(&mock.url);
    say(&format!("mock provider on {}", mock.url));

    let env: Vec<(String, String)> = [
        ("SYNCGUARD_QUEUE_LEASE_MS", "10000"),
        ("SYNCGUARD_QUEUE_RESCUE_INTERVAL_MS", "1000"),
        ("RUST_LOG", "info,sqlx=warn"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut nodes = Vec::new();
    for i in 0..NODES {
        let mut n = procs::Node::new(i, &dir, &cluster.url(), env.clone())?;
        n.spawn()?;
        // The first node applies the migrations; the others start against a ready schema.
        if i == 0 {
            n.wait_ready(Duration::from_secs(60)).await?;
        }
        nodes.push(n);
    }
    for n in nodes.iter_mut() {
        n.wait_ready(Duration::from_secs(60)).await?;
    }
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    let pids: memory::Pids = Arc::new(Mutex::new(nodes.iter().map(|n| n.pid).collect()));
    say(&format!("{NODES} nodes ready: {}", urls.join(" ")));

    let api = Api::new(urls.clone(), procs::PLATFORM_KEY)?;
    let setup = setup::setup(&api, &mc, &args).await?;
    say(&format!(
        "tenant {}, trackstar connection {}, ebay connection {}; backfill done",
        setup.tenant, setup.wms, setup.ebay
    ));
    if args.connections > 0 {
        setup::many_connections(&api, &mc, &setup.tenant, args.connections, &say).await?;
    }

    // Traffic.
    let traffic_started = Instant::now();
    let front = front::start(urls.clone(), traffic_started).await?;
    let mutations_before = mc.stats().await?.mutations;
    mc.post(
        "/_mock/webhooks",
        json!({
            "target_url": format!("{}/v1/webhooks/{}", front.url, setup.wms),
            "secret": setup.secret, "duplicate_rate": 0.05, "reorder": true,
        }),
    )
    .await?;
    if !args.calm {
        mc.post("/_mock/faults", timeline::background_faults())
            .await?;
    }
    mc.post("/_mock/mutate", json!({"rate_per_s": args.webhooks_per_s}))
        .await?;
    let stop = CancellationToken::new();
    let publish_ledger = Arc::new(Mutex::new(PublishLedger::default()));
    let rss = Arc::new(Mutex::new(Vec::new()));
    let tasks = vec![
        tokio::spawn(traffic::publisher(
            api.clone(),
            setup.ebay.clone(),
            SKUS,
            Duration::from_secs_f64(1.0 / args.publishes_per_s.max(0.1)),
            publish_ledger.clone(),
            stop.clone(),
        )),
        tokio::spawn(traffic::syncer(
            api.clone(),
            setup.wms.clone(),
            Duration::from_secs(20),
            stop.clone(),
        )),
        tokio::spawn(memory::sample(
            pids.clone(),
            traffic_started,
            rss.clone(),
            stop.clone(),
        )),
    ];
    say(&format!(
        "traffic: {} webhooks/s (5 % sent twice, reordered), {} desired PUTs/s over {SKUS} SKUs, a sync asked every 20 s",
        args.webhooks_per_s, args.publishes_per_s
    ));

    let tl = Timeline::of(&args);
    let windows = if args.calm {
        Vec::new()
    } else {
        timeline::disturb(&tl, traffic_started, &mut nodes, &pids, &cluster, &mc, &say).await?
    };
    timeline::sleep_until(traffic_started, tl.end).await;
    stop.cancel();
    for t in tasks {
        let _ = t.await;
    }
    mc.post("/_mock/mutate", json!({"rate_per_s": 0})).await?;
    mc.post(
        "/_mock/faults",
        json!({"error_rate": 0, "timeout_rate": 0, "latency_ms": 0, "outage_s": 0}),
    )
    .await?;
    let traffic_s = traffic_started.elapsed().as_secs();
    say("traffic stopped; settling");

    let mut f = Findings::default();
    let settled = verify::settle_webhooks(
        &mc,
        &front.ledger,
        mutations_before,
        Duration::from_secs(60),
        &mut f,
    )
    .await?;
    say("webhooks settled");
    verify::settle_jobs(&api, Duration::from_secs(120), &mut f).await?;
    say("jobs settled; a last incremental sync");
    verify::final_sync(&api, &setup.wms, &mut f).await?;
    verify::settle_jobs(&api, Duration::from_secs(60), &mut f).await?;
    say("checking");
    let (acked, events) = verify::events(&api, &setup.wms, &front.ledger, &mut f).await?;
    let compared = if settled {
        verify::mirror(&api, &mc, &setup.wms, &front.ledger, &mut f).await?
    } else {
        f.note("the mirror is not compared: changes were still on their way");
        0
    };
    let skus = verify::publishes(&api, &mc, &setup.ebay, &publish_ledger, &mut f).await?;
    let stats = mc.stats().await?;
    if stats.duplicate_writes != 0 {
        f.violation(format!(
            "the provider saw {} duplicate write(s) (writes applied: {})",
            stats.duplicate_writes, stats.writes_applied
        ));
    }
    let server_errors = {
        let from_webhooks = front
            .ledger
            .lock()
            .expect("ledger lock")
            .samples
            .iter()
            .filter(|s| s.status >= 500 && s.status != 503)
            .count() as u64;
        let from_puts: u64 = publish_ledger
            .lock()
            .expect("publish ledger")
            .refused
            .iter()
            .filter(|(s, _)| **s >= 500 && **s != 503)
            .map(|(_, n)| n)
            .sum();
        (from_webhooks, from_puts)
    };
    if server_errors != (0, 0) {
        f.violation(format!(
            "the API answered 5xx other than 503 to {} webhook(s) and {} desired PUT(s); a store outage must be a 503 with Retry-After (SPEC §3.9); see the nodes' `store error` lines",
            server_errors.0, server_errors.1
        ));
    }
    if stats.webhooks_failed > 0 {
        f.note(format!(
            "the provider gave up on {} webhook(s) after its last retry (never acknowledged)",
            stats.webhooks_failed
        ));
    }
    front.stop();

    let latency = timeline::latency_report(&front.ledger, &windows);
    let rss_samples = rss.lock().expect("rss lock").clone();
    let flat = tl
        .warm
        .map(|w| memory::flatness(&rss_samples, NODES, w, &mut f))
        .unwrap_or_default();
    let peaks = memory::peaks(&rss_samples, NODES, 0);
    for (node, peak) in &peaks {
        println!("   node-{node}: peak RSS {:.1} MB", memory::mb(*peak));
    }
    if args.connections >= 1000 {
        if let Some((node, peak)) = peaks.iter().max_by_key(|(_, p)| *p) {
            if *peak > 150 * 1_048_576 {
                f.violation(format!(
                    "node-{node} peaked at {:.1} MB RSS with {} connections; the goal is ≤ 150 MB",
                    memory::mb(*peak),
                    args.connections + 2
                ));
            }
        }
    }

    // A graceful stop: every node must exit 0 on SIGTERM.
    for n in nodes.iter_mut() {
        match n.terminate(Duration::from_secs(40)).await {
            Some(0) => {}
            other => f.violation(format!(
                "{} did not exit 0 on SIGTERM ({other:?}); see {}",
                n.name,
                n.log_path().display()
            )),
        }
    }
    drop(mock);
    cluster.shutdown();

    let publish = publish_ledger.lock().expect("publish ledger");
    let summary = json!({
        "chaos": mode,
        "passed": f.violations.is_empty(),
        "violations": f.violations,
        "notes": f.notes,
        "traffic_s": traffic_s,
        "webhooks_acknowledged": acked,
        "events_stored": events,
        "ack_latency_ms": latency,
        "objects_compared": compared,
        "skus": skus,
        "desired_puts": {"acknowledged": publish.acked, "unanswered": publish.ambiguous, "refused": publish.refused},
        "provider": {"requests": stats.requests_total, "writes_applied": stats.writes_applied,
                     "duplicate_writes": stats.duplicate_writes, "rate_limit_violations": stats.rate_limit_violations,
                     "webhooks_sent": stats.webhooks_sent, "webhook_attempts": stats.webhook_attempts,
                     "webhooks_failed": stats.webhooks_failed, "faults_injected": stats.faults_injected},
        "rss_peak_mb": peaks.iter().map(|(n, p)| json!({"node": n, "mb": round1(memory::mb(*p))})).collect::<Vec<_>>(),
        "rss_flat": flat.iter().map(|(n, b, l)| json!({"node": n, "after_warmup_mb": round1(memory::mb(*b)), "end_mb": round1(memory::mb(*l))})).collect::<Vec<_>>(),
        "connections": args.connections + 2,
    });
    println!();
    if f.violations.is_empty() {
        say("CHAOS PASSED");
    } else {
        say(&format!(
            "CHAOS FAILED: {} violation(s)",
            f.violations.len()
        ));
        for v in &f.violations {
            println!("  - {v}");
        }
        println!("  logs: {}", dir.display());
    }
    println!("{summary}");
    if f.violations.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{} guarantee(s) broken", f.violations.len())
    }
}

pub(crate) fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Stops the private cluster however the run ends.
struct ClusterGuard(Arc<cluster::Cluster>);

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        self.0.shutdown();
    }
}
