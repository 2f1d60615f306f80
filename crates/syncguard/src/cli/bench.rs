//! `syncguard bench …`: reproduces the figures of the performance targets (SPEC §6).
//! Each prints progress on stderr and, with `--json`, one JSON object on its last line.

use crate::app::App;
use crate::app::{Handlers, JobContext};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::engine::handler::JobError;
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use syncguard_store::queue::NewJob;
use syncguard_store::testkit::{self, TestDb};
use syncguard_store::Backend;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Enqueue N no-op jobs, drain them with the default worker pool, measure pickup latency.
    Queue(QueueArgs),
    /// Drive signed webhooks at a server over real HTTP: acks/s, latency at a fixed rate, and the
    /// same server's /livez rate.
    Ingest(super::bench_ingest::IngestArgs),
    /// Records per second synced from the mock provider at its rate limit.
    Sync(super::bench_sync::SyncBenchArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

#[derive(Debug, Args)]
pub struct QueueArgs {
    /// Jobs to enqueue and drain.
    #[arg(long, default_value_t = 20_000)]
    pub jobs: usize,
    /// Store to measure: a fresh temporary SQLite file, or a fresh database on the PostgreSQL
    /// server of SYNCGUARD_TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test).
    #[arg(long, value_enum, default_value = "sqlite")]
    pub store: StoreKind,
    /// Worker pool size (default: the configured default).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Jobs claimed ahead per fetch (default: the configured default).
    #[arg(long)]
    pub fetch_batch: Option<usize>,
    /// Jobs enqueued one at a time to measure pickup latency.
    #[arg(long, default_value_t = 500)]
    pub pickup_samples: usize,
    /// Print one JSON object on the last line.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Queue(args) => queue(args).await,
        BenchCommand::Ingest(args) => super::bench_ingest::run(args).await,
        BenchCommand::Sync(args) => super::bench_sync::run(args).await,
    }
}

/// A throwaway key: benchmarks seal nothing that outlives them.
pub fn ephemeral_sealer() -> syncguard_core::seal::Sealer {
    let key = syncguard_core::seal::MasterKey::from_base64(
        &syncguard_core::seal::MasterKey::generate_base64(&mut rand::rngs::OsRng),
    )
    .expect("generated key is valid");
    syncguard_core::seal::Sealer::new(key, Vec::new())
}

const PICKUP: &str = "bench.pickup";

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

async fn queue(args: QueueArgs) -> anyhow::Result<()> {
    let backend = match args.store {
        StoreKind::Sqlite => Backend::Sqlite,
        StoreKind::Postgres => Backend::Postgres,
    };
    let db: TestDb = testkit::fresh(backend).await;
    let mut config = Config {
        database_url: db.url.clone(),
        ..Config::default()
    };
    if let Some(w) = args.workers {
        config.queue.workers = w;
    }
    if let Some(b) = args.fetch_batch {
        config.queue.fetch_batch = b;
    }
    let workers = config.queue.workers;
    eprintln!(
        "bench queue: {} jobs on {} ({}), {workers} workers",
        args.jobs,
        backend.as_str(),
        syncguard_store::redact_url(&db.url)
    );
    let clock = Arc::new(SystemClock);
    let app = App::new(config, db.store.clone(), clock.clone(), ephemeral_sealer())?;

    // 1. Enqueue, in batches of 1000 jobs per transaction.
    let bar = ProgressBar::new(args.jobs as u64).with_style(
        ProgressStyle::with_template("{msg:>8} [{bar:40}] {pos}/{len} {per_sec}")
            .expect("template")
            .progress_chars("=> "),
    );
    bar.set_message("enqueue");
    let started = Instant::now();
    let mut left = args.jobs;
    while left > 0 {
        let n = left.min(1_000);
        let batch: Vec<NewJob> = (0..n)
            .map(|_| NewJob::new("noop", serde_json::json!({})))
            .collect();
        db.store.enqueue_many(&batch, clock.now_ms()).await?;
        left -= n;
        bar.inc(n as u64);
    }
    let enqueue_s = started.elapsed().as_secs_f64();
    bar.finish_and_clear();

    // 2. Drain with the worker pool.
    // Pickup latency is measured from the moment the enqueue committed to the moment a worker
    // started the job, matched by job id (a worker may even start before enqueue returns).
    let started_at = Arc::new(Mutex::new(HashMap::<i64, Instant>::new()));
    let mut handlers = Handlers::builtin();
    let sink = started_at.clone();
    handlers.register(PICKUP, move |ctx: JobContext| {
        let sink = sink.clone();
        async move {
            sink.lock()
                .expect("pickup lock")
                .insert(ctx.job.id, Instant::now());
            Ok::<(), JobError>(())
        }
    });
    let cancel = CancellationToken::new();
    let bar = ProgressBar::new(args.jobs as u64).with_style(
        ProgressStyle::with_template("{msg:>8} [{bar:40}] {pos}/{len}")
            .expect("template")
            .progress_chars("=> "),
    );
    bar.set_message("drain");
    let started = Instant::now();
    let engine = crate::app::start_engine(&app, handlers, cancel.clone());
    let succeeded = app
        .metrics
        .jobs_total
        .with_label_values(&["noop", "succeeded"]);
    let completed = loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let done = succeeded.get();
        bar.set_position(done);
        if done as usize >= args.jobs || started.elapsed() > Duration::from_secs(600) {
            break done;
        }
    };
    let drain_s = started.elapsed().as_secs_f64();
    bar.finish_and_clear();

    // 3. Pickup latency: jobs enqueued one at a time into an idle pool.
    let mut committed = HashMap::with_capacity(args.pickup_samples);
    for _ in 0..args.pickup_samples {
        let job = NewJob::new(PICKUP, serde_json::json!({}));
        let id = db.store.enqueue(&job, clock.now_ms()).await?.id;
        committed.insert(id, Instant::now());
        app.job_notify.notify_one();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let wait_until = Instant::now() + Duration::from_secs(30);
    while started_at.lock().expect("pickup lock").len() < args.pickup_samples
        && Instant::now() < wait_until
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cancel.cancel();
    engine.join().await;
    let started_map = started_at.lock().expect("pickup lock").clone();
    let mut lat: Vec<f64> = committed
        .iter()
        .filter_map(|(id, c)| {
            started_map
                .get(id)
                .map(|s| s.saturating_duration_since(*c).as_secs_f64() * 1000.0)
        })
        .collect();
    lat.sort_by(|a, b| a.partial_cmp(b).expect("latencies are finite"));

    let out = serde_json::json!({
        "bench": "queue",
        "store": backend.as_str(),
        "jobs": args.jobs,
        "completed": completed,
        "workers": workers,
        "enqueue_per_s": (args.jobs as f64 / enqueue_s).round(),
        "drain_per_s": (completed as f64 / drain_s).round(),
        "pickup_p50_ms": (percentile(&lat, 0.50) * 100.0).round() / 100.0,
        "pickup_p99_ms": (percentile(&lat, 0.99) * 100.0).round() / 100.0,
        "pickup_samples": lat.len(),
    });
    eprintln!(
        "enqueue {:.0}/s · drain {:.0}/s · pickup p50 {} ms, p99 {} ms",
        out["enqueue_per_s"].as_f64().unwrap_or(0.0),
        out["drain_per_s"].as_f64().unwrap_or(0.0),
        out["pickup_p50_ms"],
        out["pickup_p99_ms"]
    );
    if args.json {
        println!("{out}");
    }
    db.store.close().await;
    Ok(())
}
