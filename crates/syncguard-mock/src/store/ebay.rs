//! eBay-side state: inventory items, idempotency replays and OAuth tokens.
//!
//! Writes report what they did ([`Effect`]) so the caller can count `writes_applied` and
//! `duplicate_writes` without re-deriving it.

use std::collections::{BTreeMap, HashMap};

use axum::http::StatusCode;
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde_json::{json, Map, Value};

/// eBay's documented maximum SKU length.
const MAX_SKU_LEN: usize = 50;
/// Expired tokens are forgotten once the table grows beyond this.
const PRUNE_TOKENS_ABOVE: usize = 10_000;

/// A stored answer: replayed as-is for a repeated idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: Option<Value>,
}

impl Answer {
    fn empty(status: StatusCode) -> Self {
        Self { status, body: None }
    }

    fn error(status: StatusCode, error_id: u32, message: &str) -> Self {
        Self {
            status,
            body: Some(error_body(error_id, message)),
        }
    }
}

/// The body of an eBay Sell API error.
pub(crate) fn error_body(error_id: u32, message: &str) -> Value {
    json!({ "errors": [{
        "errorId": error_id,
        "domain": "API_INVENTORY",
        "category": "REQUEST",
        "message": message,
    }]})
}

pub(crate) fn not_found(sku: &str) -> Answer {
    Answer::error(
        StatusCode::NOT_FOUND,
        25710,
        &format!(
            "We didn't find the entity you are requesting (sku {sku}). Please verify the request"
        ),
    )
}

/// What a write did to provider state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    /// State changed.
    Applied,
    /// A repeat of an earlier write (same idempotency key, or byte-identical PUT of the current
    /// state); nothing changed.
    Duplicate,
    /// Accepted, but the new state equals the old (same JSON, different bytes).
    Unchanged,
    /// Refused (validation error, unknown sku).
    Rejected,
}

#[derive(Debug)]
struct Item {
    value: Value,
    /// The body of the PUT that produced `value` (`None` when set in-process), for
    /// byte-identical duplicate detection.
    raw: Option<Vec<u8>>,
}

#[derive(Debug, Default)]
pub(crate) struct EbayStore {
    items: BTreeMap<String, Item>,
    replays: HashMap<String, Answer>,
    /// Access token → expiry (Unix ms).
    tokens: HashMap<String, i64>,
}

impl EbayStore {
    pub(crate) fn issue_token(&mut self, now_ms: i64, ttl_s: u64) -> String {
        if self.tokens.len() > PRUNE_TOKENS_ABOVE {
            self.tokens.retain(|_, exp| *exp > now_ms);
        }
        let suffix: String = rand::thread_rng()
            .sample_iter(Alphanumeric)
            .take(40)
            .map(char::from)
            .collect();
        let token = format!("v^1.1#i^1#mock#{suffix}");
        let ttl_ms = i64::try_from(ttl_s.saturating_mul(1000)).unwrap_or(i64::MAX);
        self.tokens
            .insert(token.clone(), now_ms.saturating_add(ttl_ms));
        token
    }

    pub(crate) fn token_valid(&self, token: &str, now_ms: i64) -> bool {
        self.tokens.get(token).is_some_and(|exp| *exp > now_ms)
    }

    /// Expires every token issued so far; returns how many were live.
    pub(crate) fn expire_tokens(&mut self, now_ms: i64) -> usize {
        let live = self.tokens.values().filter(|e| **e > now_ms).count();
        self.tokens.values_mut().for_each(|exp| *exp = i64::MIN);
        live
    }

    pub(crate) fn get(&self, sku: &str) -> Option<&Value> {
        self.items.get(sku).map(|i| &i.value)
    }

    /// Items in sku order: `(page, total)`.
    pub(crate) fn list(&self, limit: usize, offset: usize) -> (Vec<Value>, usize) {
        let page = self
            .items
            .values()
            .skip(offset)
            .take(limit)
            .map(|i| i.value.clone())
            .collect();
        (page, self.items.len())
    }

    pub(crate) fn all(&self) -> Vec<Value> {
        self.items.values().map(|i| i.value.clone()).collect()
    }

    /// Sets an item outside the API (a change "behind the engine's back"); not a counted write.
    pub(crate) fn set(&mut self, sku: &str, mut value: Value) {
        if let Some(obj) = value.as_object_mut() {
            obj.insert("sku".into(), json!(sku));
        }
        self.items.insert(sku.to_owned(), Item { value, raw: None });
    }

    pub(crate) fn remove(&mut self, sku: &str) -> bool {
        self.items.remove(sku).is_some()
    }

    /// `createOrReplaceInventoryItem`: 201 on create, 204 on replace.
    pub(crate) fn put(&mut self, sku: &str, key: Option<&str>, raw: &[u8]) -> (Answer, Effect) {
        self.idempotent(key, |store| store.put_once(sku, raw))
    }

    /// `deleteInventoryItem`: 204, or 404 for an unknown sku.
    pub(crate) fn delete(&mut self, sku: &str, key: Option<&str>) -> (Answer, Effect) {
        self.idempotent(key, |store| match store.items.remove(sku) {
            Some(_) => (Answer::empty(StatusCode::NO_CONTENT), Effect::Applied),
            None => (not_found(sku), Effect::Rejected),
        })
    }

    /// Replays the stored answer of an earlier write with the same key, or runs `write` and
    /// stores its answer. Only successful answers are stored: a refused write changed nothing,
    /// so retrying it (fixed) under the same key is not a duplicate.
    fn idempotent(
        &mut self,
        key: Option<&str>,
        write: impl FnOnce(&mut Self) -> (Answer, Effect),
    ) -> (Answer, Effect) {
        if let Some(answer) = key.and_then(|k| self.replays.get(k)) {
            return (answer.clone(), Effect::Duplicate);
        }
        let (answer, effect) = write(self);
        if let Some(k) = key.filter(|_| answer.status.is_success()) {
            self.replays.insert(k.to_owned(), answer.clone());
        }
        (answer, effect)
    }

    fn put_once(&mut self, sku: &str, raw: &[u8]) -> (Answer, Effect) {
        if sku.is_empty() || sku.len() > MAX_SKU_LEN {
            let msg = "This is an invalid value for a SKU. Only alphanumeric characters can be used for SKUs, and their length must not exceed 50 characters";
            return (
                Answer::error(StatusCode::BAD_REQUEST, 25707, msg),
                Effect::Rejected,
            );
        }
        let mut item = match validate_item(raw) {
            Ok(item) => item,
            Err(answer) => return (answer, Effect::Rejected),
        };
        if let Some(current) = self.items.get(sku) {
            if current.raw.as_deref() == Some(raw) {
                return (Answer::empty(StatusCode::NO_CONTENT), Effect::Duplicate);
            }
        }
        item.insert("sku".into(), json!(sku));
        let value = Value::Object(item);
        let previous = self.items.insert(
            sku.to_owned(),
            Item {
                value: value.clone(),
                raw: Some(raw.to_vec()),
            },
        );
        match previous {
            None => (Answer::empty(StatusCode::CREATED), Effect::Applied),
            Some(old) if old.value == value => {
                (Answer::empty(StatusCode::NO_CONTENT), Effect::Unchanged)
            }
            Some(_) => (Answer::empty(StatusCode::NO_CONTENT), Effect::Applied),
        }
    }
}

/// An inventory item body must be a JSON object with a `product` object; a quantity, when
/// given, must be a non-negative integer.
fn validate_item(raw: &[u8]) -> Result<Map<String, Value>, Answer> {
    let invalid = |msg: &str| Answer::error(StatusCode::BAD_REQUEST, 25709, msg);
    let value: Value = serde_json::from_slice(raw).map_err(|_| {
        Answer::error(
            StatusCode::BAD_REQUEST,
            2004,
            "Invalid request. The request body is not valid JSON",
        )
    })?;
    let Value::Object(obj) = value else {
        return Err(invalid(
            "Invalid value for body. The inventory item must be a JSON object",
        ));
    };
    if !obj.get("product").is_some_and(Value::is_object) {
        return Err(invalid(
            "Invalid value for product. A product object is required",
        ));
    }
    let quantity = obj
        .get("availability")
        .and_then(|a| a.get("shipToLocationAvailability"))
        .and_then(|s| s.get("quantity"));
    if quantity.is_some_and(|q| q.as_u64().is_none()) {
        return Err(invalid(
            "Invalid value for availability.shipToLocationAvailability.quantity",
        ));
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"product":{"title":"Mug"},"availability":{"shipToLocationAvailability":{"quantity":3}}}"#;

    #[test]
    fn create_then_replace_then_identical_repeat() {
        let mut s = EbayStore::default();
        assert_eq!(s.put("A1", None, BODY).0.status, StatusCode::CREATED);
        let changed = BODY
            .to_vec()
            .into_iter()
            .map(|b| if b == b'3' { b'4' } else { b })
            .collect::<Vec<_>>();
        assert_eq!(
            s.put("A1", None, &changed),
            (Answer::empty(StatusCode::NO_CONTENT), Effect::Applied)
        );
        assert_eq!(s.put("A1", None, &changed).1, Effect::Duplicate);
        assert_eq!(s.get("A1").unwrap()["sku"], "A1");
    }

    #[test]
    fn idempotency_key_replays_the_first_answer() {
        let mut s = EbayStore::default();
        assert_eq!(s.put("A1", Some("k1"), BODY).1, Effect::Applied);
        assert_eq!(
            s.put("A1", Some("k1"), BODY),
            (Answer::empty(StatusCode::CREATED), Effect::Duplicate)
        );
        assert_eq!(s.delete("A1", Some("k2")).1, Effect::Applied);
        assert_eq!(
            s.delete("A1", Some("k2")),
            (Answer::empty(StatusCode::NO_CONTENT), Effect::Duplicate)
        );
        assert_eq!(s.delete("A1", None).0.status, StatusCode::NOT_FOUND);
    }

    #[test]
    fn invalid_bodies_are_rejected_and_not_stored_for_replay() {
        let mut s = EbayStore::default();
        for bad in [
            &b"[1]"[..],
            b"{}",
            b"not json",
            br#"{"product":{},"availability":{"shipToLocationAvailability":{"quantity":-1}}}"#,
        ] {
            let (answer, effect) = s.put("A1", Some("k"), bad);
            assert_eq!(
                (answer.status, effect),
                (StatusCode::BAD_REQUEST, Effect::Rejected)
            );
            assert!(answer.body.unwrap()["errors"][0]["errorId"].is_u64());
        }
        assert_eq!(s.put("A1", Some("k"), BODY).1, Effect::Applied);
    }

    #[test]
    fn tokens_expire() {
        let mut s = EbayStore::default();
        let t = s.issue_token(1000, 10);
        assert!(s.token_valid(&t, 10_999));
        assert!(!s.token_valid(&t, 11_000));
        let t2 = s.issue_token(2000, 10);
        assert_eq!(s.expire_tokens(2000), 2);
        assert!(!s.token_valid(&t2, 2000));
    }
}
