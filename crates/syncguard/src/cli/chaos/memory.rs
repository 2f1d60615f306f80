//! Resident memory of the nodes: sampled every 10 s through a run, reported per node, and
//! judged two ways — flat under a soak (SPEC §6: less than 5 % growth after warm-up) and within
//! the goal at many connections (≤ 150 MB).

use super::procs::rss_of;
use super::verify::Findings;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
pub struct RssSample {
    pub node: usize,
    pub pid: u32,
    pub at_s: u64,
    pub rss: u64,
}

/// The pid of each node's current process (`None` while it is down).
pub type Pids = Arc<Mutex<Vec<Option<u32>>>>;

pub async fn sample(
    pids: Pids,
    started: Instant,
    out: Arc<Mutex<Vec<RssSample>>>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        let now: Vec<(usize, u32)> = pids
            .lock()
            .expect("pids lock")
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.map(|p| (i, p)))
            .collect();
        let at_s = started.elapsed().as_secs();
        let mut line = format!("   [{at_s:>4} s] rss");
        for (node, pid) in now {
            if let Some(rss) = rss_of(pid) {
                out.lock().expect("rss lock").push(RssSample {
                    node,
                    pid,
                    at_s,
                    rss,
                });
                line.push_str(&format!("  node-{node} {:.1} MB", mb(rss)));
            }
        }
        println!("{line}");
    }
}

pub fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// Per node, the samples of its last process.
fn last_process(samples: &[RssSample], node: usize) -> Vec<RssSample> {
    let Some(pid) = samples.iter().rev().find(|s| s.node == node).map(|s| s.pid) else {
        return Vec::new();
    };
    samples
        .iter()
        .filter(|s| s.node == node && s.pid == pid)
        .copied()
        .collect()
}

/// Growth of each node's RSS from just after `warm_s` to the end: the median of the first six
/// samples after warm-up against the median of the last six. Returns `(node, baseline, final)`.
pub fn flatness(
    samples: &[RssSample],
    nodes: usize,
    warm_s: u64,
    f: &mut Findings,
) -> Vec<(usize, u64, u64)> {
    let mut out = Vec::new();
    for node in 0..nodes {
        let mine: Vec<RssSample> = last_process(samples, node)
            .into_iter()
            .filter(|s| s.at_s >= warm_s)
            .collect();
        if mine.len() < 12 {
            f.note(format!(
                "node-{node}: only {} RSS samples after warm-up; flatness not judged",
                mine.len()
            ));
            continue;
        }
        let base = median(mine.iter().take(6).map(|s| s.rss).collect());
        let last = median(mine.iter().rev().take(6).map(|s| s.rss).collect());
        let growth = last as f64 / base.max(1) as f64 - 1.0;
        println!(
            "   node-{node}: RSS {:.1} MB after warm-up → {:.1} MB at the end ({:+.1} %)",
            mb(base),
            mb(last),
            growth * 100.0
        );
        if growth > 0.05 {
            f.violation(format!(
                "node-{node}: RSS grew {:.1} % after warm-up ({:.1} → {:.1} MB); the soak allows 5 %",
                growth * 100.0,
                mb(base),
                mb(last)
            ));
        }
        out.push((node, base, last));
    }
    out
}

/// Peak RSS of each node's last process since `from_s`.
pub fn peaks(samples: &[RssSample], nodes: usize, from_s: u64) -> Vec<(usize, u64)> {
    (0..nodes)
        .filter_map(|node| {
            last_process(samples, node)
                .iter()
                .filter(|s| s.at_s >= from_s)
                .map(|s| s.rss)
                .max()
                .map(|peak| (node, peak))
        })
        .collect()
}
