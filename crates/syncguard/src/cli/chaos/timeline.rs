//! The disturbances of a run and when they happen: a node killed with SIGKILL and restarted,
//! PostgreSQL stopped and started, a provider outage; and the ack latency of the webhook stream
//! around each of them.

use super::traffic::MockControl;
use super::{cluster, front, memory, procs, round1, ChaosArgs};
use anyhow::Context;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// When each disturbance happens, in seconds from the start of the traffic.
pub(super) struct Timeline {
    pub(super) kill_at: u64,
    pub(super) down_for: u64,
    pub(super) store_at: u64,
    pub(super) store_for: u64,
    pub(super) provider_at: u64,
    pub(super) provider_for: u64,
    /// Traffic stops here.
    pub(super) end: u64,
    /// RSS flatness is judged from here (soak only).
    pub(super) warm: Option<u64>,
}

impl Timeline {
    pub(super) fn of(args: &ChaosArgs) -> Timeline {
        if args.short {
            Timeline {
                kill_at: 10,
                down_for: 5,
                store_at: 30,
                store_for: 10,
                provider_at: 55,
                provider_for: 8,
                end: 75,
                warm: None,
            }
        } else {
            Timeline {
                kill_at: 20,
                down_for: 10,
                store_at: 45,
                store_for: 30,
                provider_at: 100,
                provider_for: 20,
                end: if args.soak { 600 } else { 150 },
                warm: args.soak.then_some(240),
            }
        }
    }
}

/// Faults all along: a few provider errors and held-then-504 answers, and some latency.
pub(super) fn background_faults() -> Value {
    json!({"error_rate": 0.03, "error_status": 503, "timeout_rate": 0.01, "timeout_ms": 2000, "latency_ms": 10})
}

pub(super) async fn sleep_until(start: Instant, at_s: u64) {
    let at = start + Duration::from_secs(at_s);
    tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
}

/// A disturbance window, in seconds from the traffic's start.
pub(super) struct Window {
    pub(super) what: &'static str,
    pub(super) from: u64,
    pub(super) to: u64,
}

/// Runs the timeline's kill, store stop and provider outage; returns their windows.
pub(super) async fn disturb(
    tl: &Timeline,
    t0: Instant,
    nodes: &mut [procs::Node],
    pids: &memory::Pids,
    cluster: &Arc<cluster::Cluster>,
    mc: &MockControl,
    say: &impl Fn(&str),
) -> anyhow::Result<Vec<Window>> {
    let mut windows = Vec::new();
    let victim = 1;
    sleep_until(t0, tl.kill_at).await;
    nodes[victim].kill9();
    pids.lock().expect("pids lock")[victim] = None;
    say(&format!("kill -9 {}", nodes[victim].name));
    sleep_until(t0, tl.kill_at + tl.down_for).await;
    nodes[victim].spawn()?;
    nodes[victim].wait_ready(Duration::from_secs(60)).await?;
    pids.lock().expect("pids lock")[victim] = nodes[victim].pid;
    let back = t0.elapsed().as_secs();
    say(&format!("{} restarted and ready", nodes[victim].name));
    windows.push(Window {
        what: "node killed",
        from: tl.kill_at,
        to: back,
    });

    sleep_until(t0, tl.store_at).await;
    say("stopping PostgreSQL (pg_ctl stop -m fast)");
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.stop())
        .await?
        .context("stopping PostgreSQL")?;
    say(&format!(
        "PostgreSQL stopped; starting it again at {} s",
        tl.store_at + tl.store_for
    ));
    sleep_until(t0, tl.store_at + tl.store_for).await;
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.start())
        .await?
        .context("starting PostgreSQL")?;
    say("PostgreSQL started");
    windows.push(Window {
        what: "store stopped",
        from: tl.store_at,
        to: t0.elapsed().as_secs(),
    });

    sleep_until(t0, tl.provider_at).await;
    mc.post("/_mock/faults", json!({"outage_s": tl.provider_for}))
        .await?;
    say(&format!("provider outage for {} s", tl.provider_for));
    windows.push(Window {
        what: "provider outage",
        from: tl.provider_at,
        to: tl.provider_at + tl.provider_for,
    });
    Ok(windows)
}

/// Ack latency of acknowledged deliveries: overall, outside the disturbances (and 10 s after
/// each), and within each disturbance.
pub(super) fn latency_report(ledger: &Arc<Mutex<front::Ledger>>, windows: &[Window]) -> Value {
    let l = ledger.lock().expect("ledger lock");
    let acks: Vec<(u64, u64)> = l
        .samples
        .iter()
        .filter(|s| (200..300).contains(&s.status))
        .map(|s| (s.at_ms / 1000, s.latency_us))
        .collect();
    let stats = |mut v: Vec<u64>| -> Value {
        v.sort_unstable();
        let ms = |us: u64| round1(us as f64 / 1000.0);
        json!({"n": v.len(), "p50": ms(front::percentile(&v, 50.0)), "p99": ms(front::percentile(&v, 99.0)), "max": ms(v.last().copied().unwrap_or(0))})
    };
    let inside = |t: u64, w: &Window| t >= w.from && t <= w.to + 10;
    let all = stats(acks.iter().map(|a| a.1).collect());
    let calm = stats(
        acks.iter()
            .filter(|(t, _)| !windows.iter().any(|w| inside(*t, w)))
            .map(|a| a.1)
            .collect(),
    );
    let mut answers: std::collections::BTreeMap<String, u64> = Default::default();
    for s in &l.samples {
        *answers.entry(s.status.to_string()).or_default() += 1;
    }
    println!(
        "   webhook answers by status: {answers:?}; unanswered attempts: {}",
        l.unanswered
    );
    let mut out = json!({"all": all, "calm": calm, "answers": answers, "unanswered": l.unanswered});
    println!("   ack latency (ms): all {all}; outside disturbances {calm}");
    for w in windows {
        let s = stats(
            acks.iter()
                .filter(|(t, _)| inside(*t, w))
                .map(|a| a.1)
                .collect(),
        );
        println!(
            "   ack latency (ms) around {} [{}–{} s]: {s}",
            w.what,
            w.from,
            w.to + 10
        );
        out[w.what.replace(' ', "_")] = s;
    }
    out
}
