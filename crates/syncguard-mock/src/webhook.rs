//! The webhook emitter: Trackstar-shaped events, signed with Standard Webhooks (Svix) headers,
//! posted to a target URL with optional duplicates, reordering and retries.
//!
//! Mutations enqueue messages; one dispatcher task (in the `tasks` module) drains the queue in small batches. Within a
//! batch a duplicate (same id and body, re-signed with a fresh timestamp as a real retry would
//! be) may be added and, with `reorder`, the batch is shuffled. A failed first attempt is
//! retried in its own task with exponential backoff so one bad delivery does not hold up the
//! rest.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use rand::distributions::Alphanumeric;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::config::MockConfig;

/// Where and how to send webhooks (the body of `POST /_mock/webhooks`, minus `count`/`events`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookConfig {
    /// Receiver URL, e.g. `http://127.0.0.1:8080/v1/webhooks/{connection_id}`.
    pub target_url: String,
    /// Signing secret, `whsec_<base64>` (or any string, used as raw key bytes).
    pub secret: String,
    /// Probability (0–1) that a message is delivered twice.
    #[serde(default)]
    pub duplicate_rate: f64,
    /// Shuffle deliveries within small batches.
    #[serde(default)]
    pub reorder: bool,
    /// `connection_id` in payloads; defaults to `MockConfig::connection_id`.
    #[serde(default)]
    pub connection_id: Option<String>,
    /// `integration_name` in payloads; defaults to `MockConfig::integration_name`.
    #[serde(default)]
    pub integration_name: Option<String>,
}

impl WebhookConfig {
    pub fn new(target_url: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            target_url: target_url.into(),
            secret: secret.into(),
            duplicate_rate: 0.0,
            reorder: false,
            connection_id: None,
            integration_name: None,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if !(self.target_url.starts_with("http://") || self.target_url.starts_with("https://")) {
            return Err("target_url must be an http(s) URL".into());
        }
        if self.secret.is_empty() {
            return Err("secret must not be empty".into());
        }
        if !(0.0..=1.0).contains(&self.duplicate_rate) {
            return Err("duplicate_rate must be between 0 and 1".into());
        }
        Ok(())
    }
}

/// One message to deliver (and possibly duplicate).
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub(crate) cfg: Arc<WebhookConfig>,
    pub(crate) msg_id: String,
    pub(crate) body: Bytes,
}

/// The emitter's shared half: the current configuration and the queue's sending end.
#[derive(Debug)]
pub(crate) struct Emitter {
    config: Mutex<Option<Arc<WebhookConfig>>>,
    tx: mpsc::UnboundedSender<Outgoing>,
    /// Taken once by the dispatcher task.
    rx: Mutex<Option<mpsc::UnboundedReceiver<Outgoing>>>,
}

impl Emitter {
    pub(crate) fn new() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            config: Mutex::new(None),
            tx,
            rx: Mutex::new(Some(rx)),
        }
    }

    pub(crate) fn configure(&self, cfg: Option<WebhookConfig>) {
        *self.config.lock().expect("emitter lock") = cfg.map(Arc::new);
    }

    /// The queue's receiving end, once: the dispatcher task takes it.
    pub(crate) fn take_receiver(&self) -> Option<mpsc::UnboundedReceiver<Outgoing>> {
        self.rx.lock().expect("emitter lock").take()
    }

    pub(crate) fn enabled(&self) -> bool {
        self.config.lock().expect("emitter lock").is_some()
    }

    /// Queues one event if webhooks are configured; returns whether it was queued.
    pub(crate) fn emit(
        &self,
        defaults: &MockConfig,
        event_type: &str,
        data: Value,
        previous_attributes: Value,
    ) -> bool {
        let Some(cfg) = self.config.lock().expect("emitter lock").clone() else {
            return false;
        };
        let payload = json!({
            "connection_id": cfg.connection_id.as_deref().unwrap_or(&defaults.connection_id),
            "data": data,
            "event_type": event_type,
            "integration_name": cfg.integration_name.as_deref().unwrap_or(&defaults.integration_name),
            "previous_attributes": previous_attributes,
        });
        let msg = Outgoing {
            cfg,
            msg_id: new_msg_id(),
            body: Bytes::from(payload.to_string()),
        };
        self.tx.send(msg).is_ok()
    }
}

/// `msg_` and 27 random alphanumerics, like Svix ids. Random rather than seeded: two runs with
/// the same seed must not collide in an engine's persistent delivery-id dedup table.
fn new_msg_id() -> String {
    let suffix: String = rand::thread_rng()
        .sample_iter(Alphanumeric)
        .take(27)
        .map(char::from)
        .collect();
    format!("msg_{suffix}")
}

/// Adds duplicates (right after their original) and shuffles when asked to.
pub(crate) fn arrange(batch: Vec<Outgoing>, rng: &mut StdRng) -> Vec<Outgoing> {
    let reorder = batch.iter().any(|m| m.cfg.reorder);
    let mut out = Vec::with_capacity(batch.len() * 2);
    for msg in batch {
        let duplicate = msg.cfg.duplicate_rate > 0.0 && rng.gen_bool(msg.cfg.duplicate_rate);
        if duplicate {
            out.push(msg.clone());
        }
        out.push(msg);
    }
    if reorder {
        out.shuffle(rng);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn msg(id: &str, cfg: &Arc<WebhookConfig>) -> Outgoing {
        Outgoing {
            cfg: cfg.clone(),
            msg_id: id.into(),
            body: Bytes::from_static(b"{}"),
        }
    }

    #[test]
    fn duplicates_follow_their_original_unless_reordered() {
        let mut rng = StdRng::seed_from_u64(3);
        let cfg = Arc::new(WebhookConfig {
            duplicate_rate: 1.0,
            ..WebhookConfig::new("http://x", "s")
        });
        let out = arrange(vec![msg("a", &cfg), msg("b", &cfg)], &mut rng);
        let ids: Vec<_> = out.iter().map(|m| m.msg_id.as_str()).collect();
        assert_eq!(ids, ["a", "a", "b", "b"]);

        let cfg = Arc::new(WebhookConfig {
            reorder: true,
            ..WebhookConfig::new("http://x", "s")
        });
        let batch: Vec<_> = (0..8).map(|i| msg(&i.to_string(), &cfg)).collect();
        let out = arrange(batch, &mut rng);
        let mut ids: Vec<_> = out.iter().map(|m| m.msg_id.clone()).collect();
        assert_ne!(
            ids,
            (0..8).map(|i| i.to_string()).collect::<Vec<_>>(),
            "seed 3 shuffles"
        );
        ids.sort();
        assert_eq!(ids.len(), 8);
    }

    #[test]
    fn config_is_validated() {
        assert!(WebhookConfig::new("ftp://x", "s").validate().is_err());
        assert!(WebhookConfig::new("http://x", "").validate().is_err());
        assert!(WebhookConfig::new("http://x", "whsec_abc")
            .validate()
            .is_ok());
    }

    #[test]
    fn message_ids_look_like_svix() {
        let id = new_msg_id();
        assert!(id.starts_with("msg_") && id.len() == 31);
        assert_ne!(id, new_msg_id());
    }
}
