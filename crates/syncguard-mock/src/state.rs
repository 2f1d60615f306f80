//! [`MockState`]: everything a running mock knows, behind one cheap-to-clone handle.
//!
//! The HTTP handlers and the background tasks use it, and so can tests, in-process: inject
//! faults, mutate records (with webhooks), read what the APIs would return, expire tokens.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::clock::now_ms;
use crate::config::MockConfig;
use crate::faults::{Faults, FaultsPatch, FaultsView, Plan};
use crate::limiter::Limiter;
use crate::mutation::{Mutation, Wms};
use crate::stats::{Counters, Stats};
use crate::store::ebay::EbayStore;
use crate::store::Resource;
use crate::webhook::{Emitter, WebhookConfig};

/// The field schema drift adds to every object the APIs return.
pub const DRIFT_FIELD: &str = "x_unexpected_field";

/// Shared state of one mock server. Clones share everything.
#[derive(Clone)]
pub struct MockState(Arc<Inner>);

struct Inner {
    cfg: MockConfig,
    /// Set once the listener is bound; eBay list links are absolute.
    base_url: OnceLock<String>,
    wms: Mutex<Wms>,
    ebay: Mutex<EbayStore>,
    limiter: Limiter,
    faults: Mutex<Faults>,
    counters: Counters,
    emitter: Emitter,
    /// Mutations per second of the background driver (0 = stopped).
    mutation_rate: watch::Sender<f64>,
    /// Flips to `true` once when the server stops; wakes held requests and background tasks.
    stop: watch::Sender<bool>,
}

impl std::fmt::Debug for MockState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockState")
            .field("cfg", &self.0.cfg)
            .finish_non_exhaustive()
    }
}

impl MockState {
    /// Generates the seeded data; nothing runs until the state is served.
    pub fn new(cfg: MockConfig) -> Self {
        let start = now_ms();
        Self(Arc::new(Inner {
            wms: Mutex::new(Wms::new(&cfg, start)),
            ebay: Mutex::new(EbayStore::default()),
            limiter: Limiter::new(cfg.rate_limit_rps, cfg.rate_limit_burst),
            faults: Mutex::new(Faults::new(cfg.timeout_hold_ms)),
            counters: Counters::default(),
            emitter: Emitter::new(),
            mutation_rate: watch::Sender::new(0.0),
            stop: watch::Sender::new(false),
            base_url: OnceLock::new(),
            cfg,
        }))
    }

    pub fn config(&self) -> &MockConfig {
        &self.0.cfg
    }

    pub fn stats(&self) -> Stats {
        self.0.counters.snapshot()
    }

    // ---- records -------------------------------------------------------------------------

    /// Every live object of `resource` as the API returns it (`orders`, `products`, `inventory`,
    /// `inbound-shipments`, or `inventory_item` for the eBay side), in listing order.
    /// Schema drift is not applied: this is the ground truth tests compare against.
    pub fn records(&self, resource: &str) -> Option<Vec<Value>> {
        if resource == "inventory_item" {
            return Some(self.ebay().all());
        }
        let res = Resource::parse(resource)?;
        Some(self.wms().store.table(res).all())
    }

    pub fn record(&self, res: Resource, id: &str) -> Option<Value> {
        self.wms().store.table(res).get(id).cloned()
    }

    // ---- mutations -----------------------------------------------------------------------

    /// Applies `n` random mutations now (emitting webhooks if configured).
    pub fn mutate(&self, n: usize) -> Vec<Mutation> {
        let applied: Vec<Mutation> = {
            let mut wms = self.wms();
            (0..n).map(|_| wms.random(&self.0.cfg, now_ms())).collect()
        };
        self.publish(&applied);
        applied
    }

    /// Creates one new object of `res`.
    pub fn create(&self, res: Resource) -> Mutation {
        let m = self.wms().create(res, now_ms());
        self.publish(std::slice::from_ref(&m));
        m
    }

    /// A plausible random change to one object (an order moves along its lifecycle, a stock
    /// level changes, …).
    pub fn touch(&self, res: Resource, id: &str) -> Option<Mutation> {
        let m = self.wms().random_update(res, id, now_ms())?;
        self.publish(std::slice::from_ref(&m));
        Some(m)
    }

    /// Sets the top-level fields of `patch` (an object) on one object.
    pub fn update(&self, res: Resource, id: &str, patch: &Map<String, Value>) -> Option<Mutation> {
        let m = self.wms().patch(res, id, patch, now_ms())?;
        self.publish(std::slice::from_ref(&m));
        Some(m)
    }

    /// Deletes one object: it leaves lists and records, and a `*.deleted` webhook is sent.
    pub fn delete(&self, res: Resource, id: &str) -> Option<Mutation> {
        let m = self.wms().delete(res, id)?;
        self.publish(std::slice::from_ref(&m));
        Some(m)
    }

    /// Applies a mutation that produces `event_type` (e.g. `order.shipment.created`,
    /// `inventory.updated`, `product.deleted`). `None` for an unknown event type.
    pub fn mutate_for_event(&self, event_type: &str) -> Option<Mutation> {
        let (noun, action) = event_type.split_once('.')?;
        let res = Resource::ALL.into_iter().find(|r| r.event_noun() == noun)?;
        match action {
            "created" => Some(self.create(res)),
            "updated" | "deleted" => {
                let existing = self.wms().random_id(res);
                let id = existing.unwrap_or_else(|| self.create(res).id);
                if action == "deleted" {
                    self.delete(res, &id)
                } else {
                    self.touch(res, &id)
                }
            }
            "shipment.created" if res == Resource::Orders => {
                let m = self.wms().ship_order(now_ms());
                self.publish(std::slice::from_ref(&m));
                Some(m)
            }
            _ => None,
        }
    }

    /// Starts (rate > 0), changes or stops (0) the background mutation driver.
    pub fn set_mutation_rate(&self, per_s: f64) {
        let rate = if per_s.is_finite() {
            per_s.max(0.0)
        } else {
            0.0
        };
        self.0.mutation_rate.send_replace(rate);
    }

    pub fn mutation_rate_per_s(&self) -> f64 {
        *self.0.mutation_rate.borrow()
    }

    /// Counts and announces applied mutations (outside the records lock).
    fn publish(&self, applied: &[Mutation]) {
        for m in applied {
            crate::stats::bump(&self.0.counters.mutations);
            self.0.emitter.emit(
                &self.0.cfg,
                &m.event_type,
                m.data.clone(),
                m.previous_attributes.clone(),
            );
        }
    }

    // ---- faults and rate limit -----------------------------------------------------------

    pub fn faults(&self) -> FaultsView {
        let faults = self.0.faults.lock().expect("faults lock");
        faults.view(Instant::now(), self.0.limiter.settings())
    }

    /// Changes fault settings; absent fields keep their values.
    pub fn set_faults(&self, patch: &FaultsPatch) -> Result<FaultsView, String> {
        patch.validate()?;
        self.0
            .faults
            .lock()
            .expect("faults lock")
            .apply(patch, Instant::now());
        self.0
            .limiter
            .set(patch.rate_limit_rps, patch.rate_limit_burst);
        Ok(self.faults())
    }

    /// No faults, and the configured rate limit.
    pub fn reset_faults(&self) -> FaultsView {
        *self.0.faults.lock().expect("faults lock") = Faults::new(self.0.cfg.timeout_hold_ms);
        self.0.limiter.set(
            Some(self.0.cfg.rate_limit_rps),
            Some(self.0.cfg.rate_limit_burst),
        );
        self.faults()
    }

    /// Changes the per-token limit at run time (`rps` 0 disables it).
    pub fn set_rate_limit(&self, rps: f64, burst: Option<u32>) {
        self.0.limiter.set(Some(rps), burst);
    }

    /// `(rps, burst)` now in force.
    pub fn rate_limit(&self) -> (f64, u32) {
        self.0.limiter.settings()
    }

    // ---- eBay ----------------------------------------------------------------------------

    /// Expires every eBay access token, so the next call with one answers 401.
    pub fn expire_tokens(&self) -> usize {
        self.ebay().expire_tokens(now_ms())
    }

    pub fn inventory_item(&self, sku: &str) -> Option<Value> {
        self.ebay().get(sku).cloned()
    }

    /// Changes an item as someone else would (not through the API, not counted as a write):
    /// what reconciliation should find as `external_only` drift.
    pub fn set_inventory_item(&self, sku: &str, value: Value) {
        self.ebay().set(sku, value);
    }

    pub fn remove_inventory_item(&self, sku: &str) -> bool {
        self.ebay().remove(sku)
    }

    // ---- webhooks ------------------------------------------------------------------------

    /// Starts (or reconfigures) webhook emission for every later mutation.
    pub fn configure_webhooks(&self, cfg: WebhookConfig) -> Result<(), String> {
        cfg.validate()?;
        self.0.emitter.configure(Some(cfg));
        Ok(())
    }

    pub fn stop_webhooks(&self) {
        self.0.emitter.configure(None);
    }

    pub fn webhooks_enabled(&self) -> bool {
        self.0.emitter.enabled()
    }

    /// Sends one explicit event (not tied to a mutation); false when webhooks are off.
    pub fn emit_webhook(&self, event_type: &str, data: Value, previous_attributes: Value) -> bool {
        self.0
            .emitter
            .emit(&self.0.cfg, event_type, data, previous_attributes)
    }

    // ---- crate internals -----------------------------------------------------------------

    pub(crate) fn wms(&self) -> MutexGuard<'_, Wms> {
        self.0.wms.lock().expect("wms lock")
    }

    pub(crate) fn ebay(&self) -> MutexGuard<'_, EbayStore> {
        self.0.ebay.lock().expect("ebay lock")
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.0.counters
    }

    pub(crate) fn limiter(&self) -> &Limiter {
        &self.0.limiter
    }

    pub(crate) fn emitter(&self) -> &Emitter {
        &self.0.emitter
    }

    pub(crate) fn issue_ebay_token(&self) -> (String, u64) {
        let ttl = self.0.cfg.token_ttl_s;
        (self.ebay().issue_token(now_ms(), ttl), ttl)
    }

    pub(crate) fn ebay_token_valid(&self, token: &str) -> bool {
        self.ebay().token_valid(token, now_ms())
    }

    pub(crate) fn fault_plan(&self) -> Plan {
        let faults = self.0.faults.lock().expect("faults lock");
        faults.plan(Instant::now(), &mut rand::thread_rng())
    }

    /// An object as the API returns it now: with the drift field while schema drift is on.
    pub(crate) fn present(&self, mut value: Value) -> Value {
        if self.0.faults.lock().expect("faults lock").schema_drift {
            if let Some(obj) = value.as_object_mut() {
                obj.insert(
                    DRIFT_FIELD.into(),
                    Value::String("added by schema drift".into()),
                );
            }
        }
        value
    }

    pub(crate) fn set_base_url(&self, url: String) {
        let _ = self.0.base_url.set(url);
    }

    pub(crate) fn base_url(&self) -> &str {
        self.0.base_url.get().map_or("", String::as_str)
    }

    pub(crate) fn mutation_rate(&self) -> watch::Receiver<f64> {
        self.0.mutation_rate.subscribe()
    }

    pub(crate) fn signal_stop(&self) {
        self.0.stop.send_replace(true);
    }

    pub(crate) fn is_stopped(&self) -> bool {
        *self.0.stop.borrow()
    }

    /// Resolves once the server is stopping.
    pub(crate) async fn stopped(&self) {
        let mut rx = self.0.stop.subscribe();
        // The sender lives as long as `self`, so this only returns once the flag is set.
        let _ = rx.wait_for(|stopped| *stopped).await;
    }

    /// Sleeps for `d` unless the server stops first; returns false if it did.
    pub(crate) async fn sleep(&self, d: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(d) => true,
            () = self.stopped() => false,
        }
    }
}
