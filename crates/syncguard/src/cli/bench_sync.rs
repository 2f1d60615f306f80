//! `syncguard bench sync`: how close sync gets to a provider's rate limit (SPEC §6: ≥ 95 % of
//! the limit's record ceiling, zero 429s).
//!
//! The mock serves `--records` objects per resource at `--rps` requests per second per token;
//! one Trackstar connection backfills them all with the engine's workers, on a fresh store. The
//! ceiling is what the limit allows: pages of 1 000 at `rps` per second, plus the limiter's
//! initial burst. The answer: records per second, their share of that ceiling, and the 429s
//! the mock answered (and how many of those were calls beyond its limit).

use super::bench::{ephemeral_sealer, StoreKind};
use crate::app::App;
use crate::app::Handlers;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::services::sync::{start_syncs, Reason};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use syncguard_core::connection::ConnectionStatus;
use syncguard_store::connections::NewConnection;
use syncguard_store::testkit;
use syncguard_store::Backend;
use tokio_util::sync::CancellationToken;

#[derive(Debug, clap::Args)]
pub struct SyncBenchArgs {
    /// Objects per resource (four resources).
    #[arg(long, default_value_t = 50_000)]
    pub records: usize,
    /// The provider's limit, requests per second per token (the mock's and the connection's).
    #[arg(long, default_value_t = 10.0)]
    pub rps: f64,
    /// Store to sync into: a fresh temporary SQLite file, or a fresh database on the PostgreSQL
    /// server of SYNCGUARD_TEST_POSTGRES_URL.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub store: StoreKind,
    /// Print one JSON object on the last line.
    #[arg(long)]
    pub json: bool,
}

/// Trackstar's page size (`providers/trackstar.toml`).
const PAGE: f64 = 1_000.0;
/// The connection's limiter burst: calls it lets out at once before the sustained rate.
const BURST: u32 = 5;

pub async fn run(args: SyncBenchArgs) -> anyhow::Result<()> {
    let backend = match args.store {
        StoreKind::Sqlite => Backend::Sqlite,
        StoreKind::Postgres => Backend::Postgres,
    };
    let db = testkit::fresh(backend).await;
    let mock = syncguard_mock::spawn(syncguard_mock::MockConfig {
        records: args.records,
        rate_limit_rps: args.rps,
        ..Default::default()
    })
    .await?;
    let total: usize = ["orders", "products", "inventory", "inbound-shipments"]
        .iter()
        .map(|r| mock.state().records(r).map_or(0, |v| v.len()))
        .sum();
    eprintln!(
        "bench sync: {total} records from the mock at {} req/s, pages of {PAGE}, into {} ({})",
        args.rps,
        backend.as_str(),
        syncguard_store::redact_url(&db.url)
    );
    let config = Config {
        database_url: db.url.clone(),
        ..Config::default()
    };
    let clock = Arc::new(SystemClock);
    let app = App::new(config, db.store.clone(), clock.clone(), ephemeral_sealer())?;
    let tenant = db.store.create_tenant("bench", clock.now_ms()).await?;
    let id = crate::clock::new_id("con");
    let creds = json!({ "api_key": "bench", "access_token": format!("tat_{id}") });
    let conn = db
        .store
        .create_connection(
            NewConnection {
                id: id.clone(),
                tenant_id: tenant.id,
                provider: "trackstar".into(),
                name: "bench".into(),
                status: ConnectionStatus::Active.into(),
                config: json!({ "base_url": mock.base_url, "rate_limit": { "rps": args.rps, "burst": BURST } }),
                credentials: Some(app.sealer.seal(creds.to_string().as_bytes(), &id, &mut rand::rngs::OsRng)),
                webhook_secrets: None,
            },
            clock.now_ms(),
        )
        .await?;
    let cancel = CancellationToken::new();
    let engine = crate::app::start_engine(&app, Handlers::builtin(), cancel.clone());
    let bar = ProgressBar::new(total as u64).with_style(
        ProgressStyle::with_template("{msg:>6} [{bar:40}] {pos}/{len} {per_sec}")?
            .progress_chars("=> "),
    );
    bar.set_message("sync");
    let started = Instant::now();
    start_syncs(&app, &conn, &[], Reason::Connect, false).await?;
    let elapsed = loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let cps = db
            .store
            .list_checkpoints(&syncguard_store::Scope::All, &id)
            .await?;
        let items: i64 = cps
            .iter()
            .map(|c| {
                if c.backfill_done {
                    c.items_total
                } else {
                    c.run.as_ref().map_or(0, |r| r.items)
                }
            })
            .sum();
        bar.set_position(items as u64);
        if cps.len() == 4 && cps.iter().all(|c| c.backfill_done) {
            break started.elapsed();
        }
        if started.elapsed() > Duration::from_secs(3_600) {
            anyhow::bail!("the backfill did not finish within an hour");
        }
    };
    bar.finish_and_clear();
    cancel.cancel();
    engine.join().await;
    let stats = mock.stats();
    mock.shutdown().await;
    let secs = elapsed.as_secs_f64();
    let pages = stats
        .by_endpoint
        .iter()
        .filter(|(k, _)| k.starts_with("GET /wms/"))
        .map(|(_, v)| *v)
        .sum::<u64>();
    let per_s = total as f64 / secs;
    let ceiling_per_s = args.rps * PAGE;
    // What the limit lets through in that time: the burst at once, then `rps` pages a second.
    let allowed = (f64::from(BURST) + args.rps * secs) * PAGE;
    let out = json!({
        "bench": "sync",
        "store": backend.as_str(),
        "records": total,
        "pages": pages,
        "page_size": PAGE,
        "rps": args.rps,
        "elapsed_s": (secs * 100.0).round() / 100.0,
        "records_per_s": per_s.round(),
        "ceiling_per_s": ceiling_per_s,
        "fraction_of_ceiling": ((total as f64 / allowed) * 1000.0).round() / 1000.0,
        "responses_429": stats.by_status.get("429").copied().unwrap_or(0),
        "rate_limit_violations": stats.rate_limit_violations,
    });
    eprintln!(
        "{total} records in {secs:.1} s: {per_s:.0}/s = {:.1} % of the ceiling ({ceiling_per_s:.0}/s, plus a burst of {BURST} pages) · {} calls · 429s: {} ({} beyond the limit)",
        out["fraction_of_ceiling"].as_f64().unwrap_or(0.0) * 100.0,
        pages,
        out["responses_429"],
        out["rate_limit_violations"],
    );
    if args.json {
        println!("{out}");
    }
    db.store.close().await;
    Ok(())
}
