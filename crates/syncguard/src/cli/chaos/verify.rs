//! The end of a chaos run: let in-flight work settle, then check what must hold whatever
//! crashed — each finding that breaks a guarantee is a [`Violation`], everything else a note.
//!
//! - every webhook a node acknowledged has exactly one event that is not a duplicate, and that
//!   event is `processed`;
//! - the local mirror equals the provider (`/v1/connections/{id}/records/…` against
//!   `/_mock/records/…`, by content hash), after one last incremental sync;
//! - every SKU's desired state is one the application may have committed, is published, and
//!   equals the provider's item; the provider saw no duplicate write;
//! - no job is left running past its lease, due but untaken, or dead-lettered.

use super::front::Ledger;
use super::traffic::{Api, MockControl, PublishLedger};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use syncguard_core::canonical::content_hash;

pub const WMS_RESOURCES: [&str; 4] = ["orders", "products", "inventory", "inbound-shipments"];

#[derive(Default)]
pub struct Findings {
    pub violations: Vec<String>,
    pub notes: Vec<String>,
}

impl Findings {
    pub fn violation(&mut self, msg: impl Into<String>) {
        let msg = msg.into();
        println!("   VIOLATION: {msg}");
        self.violations.push(msg);
    }

    pub fn note(&mut self, msg: impl Into<String>) {
        let msg = msg.into();
        println!("   note: {msg}");
        self.notes.push(msg);
    }
}

/// Waits until the provider has nothing left to deliver: every message its mutations produced
/// reached the front, and each was acknowledged or given up by the provider. Gives up when
/// nothing moved for `stalled` (a backlog that still drains is waited for, up to 15 minutes).
/// Returns whether it settled.
pub async fn settle_webhooks(
    mock: &MockControl,
    ledger: &Arc<Mutex<Ledger>>,
    mutations_before: u64,
    stalled: Duration,
    f: &mut Findings,
) -> anyhow::Result<bool> {
    let cap = Instant::now() + Duration::from_secs(900);
    let (mut last, mut moved) = ((0, 0), Instant::now());
    loop {
        let stats = mock.stats().await?;
        let (seen, unacked) = {
            let l = ledger.lock().expect("ledger lock");
            let unacked = l.deliveries.values().filter(|d| !d.acked).count() as u64;
            (l.deliveries.len() as u64, unacked)
        };
        let made = stats.mutations - mutations_before;
        if seen >= made && unacked <= stats.webhooks_failed {
            return Ok(true);
        }
        if (seen, stats.webhook_attempts) != last {
            (last, moved) = ((seen, stats.webhook_attempts), Instant::now());
        }
        if moved.elapsed() > stalled || Instant::now() > cap {
            f.violation(format!(
                "webhooks did not settle: {made} made, {seen} reached the front, {unacked} unacknowledged, {} given up by the provider",
                stats.webhooks_failed
            ));
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Jobs by state, counted over the given states' lists.
async fn due_or_running(api: &Api, now_ms: i64) -> anyhow::Result<(Vec<Value>, Vec<Value>)> {
    let running = api.list_all("/v1/jobs?state=running").await?;
    let mut due = Vec::new();
    for state in ["available", "retryable"] {
        for j in api.list_all(&format!("/v1/jobs?state={state}")).await? {
            if ms(&j["run_at"]).is_some_and(|t| t <= now_ms) {
                due.push(j);
            }
        }
    }
    Ok((running, due))
}

/// Waits until no job runs and none is due, then reports any that is stuck or dead.
pub async fn settle_jobs(api: &Api, within: Duration, f: &mut Findings) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    let (mut running, mut due);
    loop {
        (running, due) = due_or_running(api, now_ms()).await?;
        if running.is_empty() && due.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let now = now_ms();
    for j in &running {
        let lapsed = ms(&j["lease_until"]).is_some_and(|t| t < now - 5_000);
        if lapsed {
            f.violation(format!(
                "job {} ({}) still running {} s after its lease ended",
                j["id"],
                j["kind"].as_str().unwrap_or("?"),
                (now - ms(&j["lease_until"]).unwrap_or(now)) / 1000
            ));
        }
    }
    if !running.is_empty() {
        f.note(format!(
            "{} job(s) running at the end: {}",
            running.len(),
            kinds(&running)
        ));
    }
    let stuck: Vec<&Value> = due
        .iter()
        .filter(|j| ms(&j["run_at"]).is_some_and(|t| t < now - 60_000))
        .collect();
    if !stuck.is_empty() {
        let owned: Vec<Value> = stuck.iter().map(|v| (*v).clone()).collect();
        f.violation(format!(
            "{} job(s) due for over a minute and not taken: {}",
            stuck.len(),
            kinds(&owned)
        ));
    }
    let dead = api.list_all("/v1/dead-letters").await?;
    if !dead.is_empty() {
        let mut by: BTreeMap<String, (u64, String)> = BTreeMap::new();
        for j in &dead {
            let e = by
                .entry(j["kind"].as_str().unwrap_or("?").to_string())
                .or_default();
            e.0 += 1;
            e.1 = j["last_error"]
                .as_str()
                .unwrap_or("")
                .chars()
                .take(160)
                .collect();
        }
        for (kind, (n, err)) in by {
            f.violation(format!(
                "{n} {kind} job(s) dead-lettered (last error: {err})"
            ));
        }
    }
    Ok(())
}

fn kinds(jobs: &[Value]) -> String {
    let mut by: BTreeMap<&str, u64> = BTreeMap::new();
    for j in jobs {
        *by.entry(j["kind"].as_str().unwrap_or("?")).or_default() += 1;
    }
    by.iter()
        .map(|(k, n)| format!("{n}× {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Starts an incremental sync and waits until every resource completed a run after it.
pub async fn final_sync(api: &Api, conn: &str, f: &mut Findings) -> anyhow::Result<()> {
    let path = format!("/v1/connections/{conn}/checkpoints");
    let before = api.get(&path).await?["data"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    api.post(
        &format!("/v1/connections/{conn}/sync"),
        serde_json::json!({}),
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = api.get(&path).await?["data"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let done = now.iter().all(|c| {
            c["run"].is_null()
                && before.iter().any(|b| {
                    b["resource"] == c["resource"] && b["last_success_at"] != c["last_success_at"]
                })
        });
        if done {
            return Ok(());
        }
        if Instant::now() > deadline {
            f.violation(format!(
                "the final incremental sync did not complete within 90 s: {now:?}"
            ));
            return Ok(());
        }
    }
}

/// The mirror against the provider, by content hash; deletions the provider never got
/// acknowledged are notes, not violations.
pub async fn mirror(
    api: &Api,
    mock: &MockControl,
    conn: &str,
    ledger: &Arc<Mutex<Ledger>>,
    f: &mut Findings,
) -> anyhow::Result<usize> {
    let (acked_deletes, unacked_deletes) = {
        let l = ledger.lock().expect("ledger lock");
        let mut acked = HashMap::new();
        let mut unacked = HashMap::new();
        for d in l.deliveries.values() {
            if d.event_type.ends_with(".deleted") {
                let m = if d.acked { &mut acked } else { &mut unacked };
                m.insert(d.object_id.clone(), d.event_type.clone());
            }
        }
        (acked, unacked)
    };
    let mut compared = 0;
    for resource in WMS_RESOURCES {
        let truth = mock.get(&format!("/_mock/records/{resource}")).await?["data"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut local: HashMap<String, String> = HashMap::new();
        for r in api
            .list_all(&format!("/v1/connections/{conn}/records/{resource}"))
            .await?
        {
            if r["deleted"] != true {
                local.insert(
                    r["external_id"].as_str().unwrap_or_default().to_string(),
                    r["hash"].as_str().unwrap_or_default().to_string(),
                );
            }
        }
        let (mut missing, mut differ, mut extra, mut excused) =
            (Vec::new(), Vec::new(), Vec::new(), 0);
        for item in &truth {
            let id = item["id"].as_str().unwrap_or_default().to_string();
            compared += 1;
            match local.remove(&id) {
                None => missing.push(id),
                Some(h) if h != content_hash(item) => differ.push(id),
                Some(_) => {}
            }
        }
        for id in local.into_keys() {
            if unacked_deletes.contains_key(&id) && !acked_deletes.contains_key(&id) {
                excused += 1;
            } else {
                extra.push(id);
            }
        }
        let sample = |v: &Vec<String>| v.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
        if !missing.is_empty() {
            f.violation(format!(
                "{resource}: {} object(s) at the provider missing from the mirror (e.g. {})",
                missing.len(),
                sample(&missing)
            ));
        }
        if !differ.is_empty() {
            f.violation(format!(
                "{resource}: {} object(s) differ from the provider (e.g. {})",
                differ.len(),
                sample(&differ)
            ));
        }
        if !extra.is_empty() {
            f.violation(format!(
                "{resource}: {} object(s) in the mirror deleted at the provider (e.g. {})",
                extra.len(),
                sample(&extra)
            ));
        }
        if excused > 0 {
            f.note(format!("{resource}: {excused} object(s) still mirrored whose delete webhook the provider gave up on (never acknowledged)"));
        }
    }
    Ok(compared)
}

/// Every acknowledged delivery has exactly one non-duplicate event, processed.
pub async fn events(
    api: &Api,
    conn: &str,
    ledger: &Arc<Mutex<Ledger>>,
    f: &mut Findings,
) -> anyhow::Result<(usize, usize)> {
    // Acknowledged before the events are listed, so a late acknowledgement cannot look lost.
    let acked: Vec<String> = {
        let l = ledger.lock().expect("ledger lock");
        l.deliveries
            .iter()
            .filter(|(_, d)| d.acked)
            .map(|(id, _)| id.clone())
            .collect()
    };
    let all = api
        .list_all(&format!("/v1/events?connection_id={conn}"))
        .await?;
    let mut by_delivery: HashMap<String, Vec<&Value>> = HashMap::new();
    for e in &all {
        by_delivery
            .entry(e["delivery_id"].as_str().unwrap_or("").to_string())
            .or_default()
            .push(e);
    }
    let (mut lost, mut twice, mut unprocessed, mut reruns) =
        (Vec::new(), Vec::new(), Vec::new(), 0);
    for id in &acked {
        let events = by_delivery.get(id).cloned().unwrap_or_default();
        let originals: Vec<&&Value> = events
            .iter()
            .filter(|e| e["status"] != "duplicate")
            .collect();
        match originals.as_slice() {
            [] => lost.push(id.clone()),
            [one] => {
                if one["status"] != "processed" {
                    unprocessed.push(format!("{id} ({})", one["status"].as_str().unwrap_or("?")));
                }
                if one["attempts"].as_i64().unwrap_or(0) > 1 {
                    reruns += 1;
                }
            }
            many => twice.push(format!("{id} ×{}", many.len())),
        }
    }
    let sample = |v: &Vec<String>| v.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if !lost.is_empty() {
        f.violation(format!(
            "{} acknowledged webhook(s) have no event (lost): {}",
            lost.len(),
            sample(&lost)
        ));
    }
    if !twice.is_empty() {
        f.violation(format!(
            "{} acknowledged webhook(s) stored as more than one non-duplicate event: {}",
            twice.len(),
            sample(&twice)
        ));
    }
    if !unprocessed.is_empty() {
        f.violation(format!(
            "{} acknowledged webhook(s) not processed: {}",
            unprocessed.len(),
            sample(&unprocessed)
        ));
    }
    if reruns > 0 {
        f.note(format!("{reruns} event(s) needed more than one processing run (a crash or outage interrupted the first); effects are idempotent"));
    }
    Ok((acked.len(), all.len()))
}

/// Desired states against what was sent and what the provider holds.
///
/// The provider is read only once every SKU has settled (published, or the wait is over):
/// publishes that failed during the provider outage wait out their backoff or the open
/// circuit as `retryable` jobs that are not yet due, so [`settle_jobs`] returns before they
/// run, and a provider read taken before they ran would show their older state.
pub async fn publishes(
    api: &Api,
    mock: &MockControl,
    conn: &str,
    ledger: &Arc<Mutex<PublishLedger>>,
    f: &mut Findings,
) -> anyhow::Result<usize> {
    let read_remote = || async {
        let items = mock.get("/_mock/records/inventory_item").await?["data"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok::<_, anyhow::Error>(
            items
                .into_iter()
                .map(|r| (r["sku"].as_str().unwrap_or_default().to_string(), r))
                .collect::<HashMap<String, Value>>(),
        )
    };
    let early = read_remote().await?;
    let skus: Vec<(String, Vec<Value>)> = {
        let l = ledger.lock().expect("publish ledger");
        l.skus
            .keys()
            .map(|s| (s.clone(), l.candidates(s)))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut desired_of: Vec<Value> = Vec::with_capacity(skus.len());
    for (sku, _) in &skus {
        let path = format!("/v1/connections/{conn}/desired/inventory_item/{sku}");
        let desired = loop {
            let d = api.get(&path).await?;
            let settled = d["status"] == "published" && d["last_published_hash"] == d["hash"];
            if settled || Instant::now() > deadline {
                break d;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        desired_of.push(desired);
    }
    // Every publish has run (or the wait is over): now the provider's state is final.
    let remote = read_remote().await?;
    let held = |at: &HashMap<String, Value>, sku: &str, desired: &Value| {
        at.get(sku)
            .map(|r| crate::services::publish::classify::project(r, &desired["data"]))
            .as_ref()
            == Some(&desired["data"])
    };
    let (mut wrong, mut unpublished, mut differ) = (Vec::new(), Vec::new(), Vec::new());
    let mut late = 0;
    for ((sku, candidates), desired) in skus.iter().zip(&desired_of) {
        if !candidates.contains(&desired["data"]) {
            wrong.push(sku.clone());
            continue;
        }
        if desired["status"] != "published" || desired["last_published_hash"] != desired["hash"] {
            unpublished.push(format!(
                "{sku} ({})",
                desired["status"].as_str().unwrap_or("?")
            ));
            continue;
        }
        if !held(&remote, sku, desired) {
            // Which document the provider holds instead (`seq` of the run's PUTs).
            let seq = |v: Option<&Value>| {
                v.and_then(|v| v["product"]["aspects"]["batch"][0].as_str())
                    .unwrap_or("none")
                    .to_string()
            };
            differ.push(format!(
                "{sku} (desired #{}, provider #{})",
                seq(Some(&desired["data"])),
                seq(remote.get(sku))
            ));
        } else if !held(&early, sku, desired) {
            late += 1;
        }
    }
    if late > 0 {
        f.note(format!("{late} SKU(s) were still being published when the check began (retries waiting out their backoff or the open circuit); compared once published"));
    }
    let sample = |v: &Vec<String>| v.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if !wrong.is_empty() {
        f.violation(format!("{} SKU(s) whose desired state is none the application acknowledged or may have committed: {}", wrong.len(), sample(&wrong)));
    }
    if !unpublished.is_empty() {
        f.violation(format!(
            "{} SKU(s) not published: {}",
            unpublished.len(),
            sample(&unpublished)
        ));
    }
    if !differ.is_empty() {
        f.violation(format!(
            "{} SKU(s) published but different at the provider: {}",
            differ.len(),
            sample(&differ)
        ));
    }
    Ok(skus.len())
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// An RFC 3339 string of the API as Unix milliseconds.
fn ms(v: &Value) -> Option<i64> {
    syncguard_mock::parse_rfc3339(v.as_str()?)
}
