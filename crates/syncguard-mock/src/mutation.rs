//! Changes to WMS records: what one random mutation does and the explicit mutations tests ask
//! for (the background driver that applies them at a set rate is in the `tasks` module).
//!
//! Every mutation bumps `updated_date` to now (strictly increasing per record) and yields a
//! [`Mutation`] from which the webhook emitter builds a Trackstar-shaped event.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::config::MockConfig;
use crate::seed;
use crate::store::{Resource, WmsStore};

/// What a mutation did to its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MutationKind {
    Created,
    Updated,
    Deleted,
}

/// One applied change, with everything its webhook needs.
#[derive(Debug, Clone, Serialize)]
pub struct Mutation {
    pub resource: Resource,
    pub id: String,
    pub kind: MutationKind,
    /// Trackstar event type, e.g. `order.updated`, `order.shipment.created`, `product.deleted`.
    pub event_type: String,
    /// The record after the change (for a delete: its last state).
    pub data: Value,
    /// Old values of the top-level fields the change touched (empty for creates and deletes).
    pub previous_attributes: Value,
}

/// The WMS records plus the seeded random stream that decides what mutations do.
#[derive(Debug)]
pub(crate) struct Wms {
    pub(crate) store: WmsStore,
    rng: StdRng,
}

impl Wms {
    pub(crate) fn new(cfg: &MockConfig, start_ms: i64) -> Self {
        Self {
            store: seed::generate(cfg, start_ms),
            // A stream apart from the initial data's, so changing `records` does not change
            // which kinds of mutation follow.
            rng: StdRng::seed_from_u64(cfg.seed ^ 0x6d75_7461_7465),
        }
    }

    /// One random mutation: mostly updates, with `create_ratio` creates and `delete_ratio`
    /// deletes, weighted towards orders and inventory as in a real warehouse.
    pub(crate) fn random(&mut self, cfg: &MockConfig, now_ms: i64) -> Mutation {
        let res = match self.rng.gen_range(0..100) {
            0..=39 => Resource::Orders,
            40..=69 => Resource::Inventory,
            70..=84 => Resource::Products,
            _ => Resource::InboundShipments,
        };
        let roll: f64 = self.rng.gen();
        let Some(id) = self.store.table(res).random_id(&mut self.rng) else {
            return self.create(res, now_ms);
        };
        if roll < cfg.create_ratio {
            self.create(res, now_ms)
        } else if roll < cfg.create_ratio + cfg.delete_ratio {
            self.delete(res, &id).expect("picked from live ids")
        } else {
            self.random_update(res, &id, now_ms)
                .expect("picked from live ids")
        }
    }

    /// A live id of `res`, picked with the seeded stream.
    pub(crate) fn random_id(&mut self, res: Resource) -> Option<String> {
        self.store.table(res).random_id(&mut self.rng)
    }

    /// Ships an open or processing order (creating one if there is none):
    /// `order.shipment.created`.
    pub(crate) fn ship_order(&mut self, now_ms: i64) -> Mutation {
        let shippable = self
            .store
            .table(Resource::Orders)
            .values()
            .find(|o| matches!(o["status"].as_str(), Some("open" | "processing")))
            .and_then(|o| o["id"].as_str().map(str::to_owned));
        let id = shippable.unwrap_or_else(|| self.create(Resource::Orders, now_ms).id);
        let rng = &mut self.rng;
        let (before, after) = self
            .store
            .update(Resource::Orders, &id, now_ms, |obj| {
                obj.insert("status".into(), json!("processing"));
                advance_order(obj, rng, now_ms);
            })
            .expect("order exists");
        updated(Resource::Orders, &id, before, after, true)
    }

    pub(crate) fn create(&mut self, res: Resource, now_ms: i64) -> Mutation {
        let body = seed::new_record(&mut self.store, &mut self.rng, res, now_ms);
        let data = self.store.insert(res, body, now_ms, now_ms);
        Mutation {
            resource: res,
            id: data["id"].as_str().unwrap_or_default().to_owned(),
            kind: MutationKind::Created,
            event_type: format!("{}.created", res.event_noun()),
            data,
            previous_attributes: json!({}),
        }
    }

    pub(crate) fn delete(&mut self, res: Resource, id: &str) -> Option<Mutation> {
        let data = self.store.delete(res, id)?;
        Some(Mutation {
            resource: res,
            id: id.to_owned(),
            kind: MutationKind::Deleted,
            event_type: format!("{}.deleted", res.event_noun()),
            data,
            previous_attributes: json!({}),
        })
    }

    /// Sets the top-level fields of `patch` on the record (ids and dates are the mock's to keep).
    pub(crate) fn patch(
        &mut self,
        res: Resource,
        id: &str,
        patch: &Map<String, Value>,
        now_ms: i64,
    ) -> Option<Mutation> {
        let (before, after) = self.store.update(res, id, now_ms, |obj| {
            for (key, value) in patch {
                if !matches!(key.as_str(), "id" | "created_date" | "updated_date") {
                    obj.insert(key.clone(), value.clone());
                }
            }
        })?;
        let shipped = res == Resource::Orders
            && after["status"] == "shipped"
            && before["status"] != "shipped";
        Some(updated(res, id, before, after, shipped))
    }

    /// A plausible change for the record's kind: an order moves along its lifecycle, a price or
    /// a stock level changes, an inbound shipment arrives.
    pub(crate) fn random_update(
        &mut self,
        res: Resource,
        id: &str,
        now_ms: i64,
    ) -> Option<Mutation> {
        let rng = &mut self.rng;
        let mut shipped = false;
        let (before, after) = self.store.update(res, id, now_ms, |obj| match res {
            Resource::Orders => shipped = advance_order(obj, rng, now_ms),
            Resource::Products => change_product(obj, rng),
            Resource::Inventory => change_stock(obj, rng),
            Resource::InboundShipments => advance_inbound(obj, rng),
        })?;
        Some(updated(res, id, before, after, shipped))
    }
}

fn updated(res: Resource, id: &str, before: Value, after: Value, shipped: bool) -> Mutation {
    let event_type = if shipped {
        "order.shipment.created".to_owned()
    } else {
        format!("{}.updated", res.event_noun())
    };
    Mutation {
        resource: res,
        id: id.to_owned(),
        kind: MutationKind::Updated,
        event_type,
        previous_attributes: previous_attributes(&before, &after),
        data: after,
    }
}

/// Old values of the top-level fields that differ between `before` and `after`.
fn previous_attributes(before: &Value, after: &Value) -> Value {
    let (Some(b), Some(a)) = (before.as_object(), after.as_object()) else {
        return json!({});
    };
    let changed = b
        .iter()
        .filter(|(k, v)| a.get(*k) != Some(v))
        .map(|(k, v)| (k.clone(), v.clone()));
    let added = a
        .keys()
        .filter(|k| !b.contains_key(*k))
        .map(|k| (k.clone(), Value::Null));
    Value::Object(changed.chain(added).collect())
}

/// Moves an order one step along open → processing → shipped → delivered (or cancels it).
/// Returns whether it was shipped, which Trackstar announces as `order.shipment.created`.
fn advance_order(obj: &mut Map<String, Value>, rng: &mut StdRng, now_ms: i64) -> bool {
    let next = match obj.get("status").and_then(Value::as_str) {
        Some("open") if rng.gen_bool(0.15) => "cancelled",
        Some("open") => "processing",
        Some("processing") => "shipped",
        Some("shipped") => "delivered",
        _ => {
            // Finished orders still get touched (support notes, tags), which bumps the date.
            let tag = seed::pick(rng, &["vip", "gift", "priority", "fragile", "reviewed"]);
            obj.insert("tags".into(), json!([tag]));
            return false;
        }
    };
    obj.insert("status".into(), json!(next));
    if next == "shipped" {
        let shipments = obj.entry("shipments").or_insert_with(|| json!([]));
        if let Some(list) = shipments.as_array_mut() {
            list.push(seed::shipment(rng, now_ms));
        }
        return true;
    }
    false
}

fn change_product(obj: &mut Map<String, Value>, rng: &mut StdRng) {
    if rng.gen_bool(0.7) {
        obj.insert("price".into(), json!(seed::price(rng)));
    } else {
        obj.insert(
            "active".into(),
            json!(!obj["active"].as_bool().unwrap_or(true)),
        );
    }
}

fn change_stock(obj: &mut Map<String, Value>, rng: &mut StdRng) {
    let onhand = obj.get("onhand").and_then(Value::as_i64).unwrap_or(0);
    let onhand = (onhand + rng.gen_range(-20..=40)).max(0);
    obj.insert("onhand".into(), json!(onhand));
    obj.insert("fulfillable".into(), json!(rng.gen_range(0..=onhand)));
}

fn advance_inbound(obj: &mut Map<String, Value>, rng: &mut StdRng) {
    match obj.get("status").and_then(Value::as_str) {
        Some("pending") => {
            obj.insert("status".into(), json!("in_transit"));
        }
        Some("in_transit") => {
            obj.insert("status".into(), json!("received"));
            for item in obj["line_items"].as_array_mut().into_iter().flatten() {
                item["received_quantity"] = item["expected_quantity"].clone();
            }
        }
        _ => {
            let warehouse = seed::pick(rng, seed::WAREHOUSES);
            obj.insert("putaway_warehouse_id".into(), json!(warehouse));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wms() -> Wms {
        let cfg = MockConfig {
            records: 30,
            ..MockConfig::default()
        };
        Wms::new(&cfg, 1_700_000_000_000)
    }

    #[test]
    fn random_mutations_are_deterministic() {
        let cfg = MockConfig::default();
        let (mut a, mut b) = (wms(), wms());
        for i in 0..200 {
            let (ma, mb) = (
                a.random(&cfg, 1_700_000_000_000 + i),
                b.random(&cfg, 1_700_000_000_000 + i),
            );
            assert_eq!(
                (ma.id, ma.event_type, ma.data),
                (mb.id, mb.event_type, mb.data)
            );
        }
    }

    #[test]
    fn orders_ship_with_a_shipment_event() {
        let mut w = wms();
        let id = w.create(Resource::Orders, 1).id;
        let patch = json!({ "status": "processing" });
        w.patch(Resource::Orders, &id, patch.as_object().unwrap(), 2)
            .unwrap();
        let m = w.random_update(Resource::Orders, &id, 3).unwrap();
        assert_eq!(m.event_type, "order.shipment.created");
        assert_eq!(m.previous_attributes["status"], "processing");
        assert_eq!(m.data["shipments"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn deletes_remove_and_report_last_state() {
        let mut w = wms();
        let id = w.store.table(Resource::Products).values().next().unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let m = w.delete(Resource::Products, &id).unwrap();
        assert_eq!(m.event_type, "product.deleted");
        assert_eq!(m.data["id"], id.as_str());
        assert!(w.store.table(Resource::Products).get(&id).is_none());
        assert!(w.delete(Resource::Products, &id).is_none());
    }
}
