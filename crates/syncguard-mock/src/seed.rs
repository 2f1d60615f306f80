//! Deterministic data: the initial WMS records and the bodies of objects created later.
//!
//! Everything is drawn from one seeded `StdRng`, in a fixed order, so a seed always yields the
//! same ids and fields. Only the timestamps move: they are relative to the mock's start.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::clock::format_rfc3339_ms;
use crate::config::MockConfig;
use crate::store::{Resource, WmsStore};

const DAY_MS: i64 = 86_400_000;

const ADJECTIVES: &[&str] = &[
    "Classic", "Organic", "Compact", "Deluxe", "Rugged", "Slim", "Vintage", "Ultra", "Eco",
    "Premium",
];
const NOUNS: &[&str] = &[
    "Mug",
    "Backpack",
    "Lamp",
    "Notebook",
    "Water Bottle",
    "Hoodie",
    "Candle",
    "Sneakers",
    "Headphones",
    "Yoga Mat",
];
const FIRST_NAMES: &[&str] = &[
    "Ada", "Grace", "Alan", "Linus", "Margaret", "Dennis", "Barbara", "Ken", "Frances", "Tim",
];
const LAST_NAMES: &[&str] = &[
    "Lovelace",
    "Hopper",
    "Turing",
    "Torvalds",
    "Hamilton",
    "Ritchie",
    "Liskov",
    "Thompson",
    "Allen",
    "Berners-Lee",
];
const CITIES: &[&str] = &[
    "Austin", "Denver", "Columbus", "Portland", "Raleigh", "Tucson", "Omaha", "Boise",
];
const CARRIERS: &[&str] = &["UPS", "USPS", "FedEx", "DHL"];
pub(crate) const WAREHOUSES: &[&str] = &["wh_east", "wh_west", "wh_central"];
pub(crate) const ORDER_STATUSES: &[&str] =
    &["open", "processing", "shipped", "delivered", "cancelled"];
const INBOUND_STATUSES: &[&str] = &["pending", "in_transit", "received"];

/// The initial store: `cfg.records` objects per resource, updated within the 30 days before
/// `start_ms`.
pub(crate) fn generate(cfg: &MockConfig, start_ms: i64) -> WmsStore {
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut store = WmsStore::new();

    let mut skus = Vec::with_capacity(cfg.records);
    for _ in 0..cfg.records {
        let (created, updated) = past_dates(&mut rng, start_ms);
        let body = product(&mut store, &mut rng);
        skus.push(body["sku"].as_str().unwrap_or_default().to_owned());
        store.insert(Resource::Products, body, created, updated);
    }
    for _ in 0..cfg.records {
        let (created, updated) = past_dates(&mut rng, start_ms);
        let sku = skus.choose(&mut rng).cloned().unwrap_or_default();
        let body = inventory(&mut store, &mut rng, &sku);
        store.insert(Resource::Inventory, body, created, updated);
    }
    for _ in 0..cfg.records {
        let (created, updated) = past_dates(&mut rng, start_ms);
        let body = order(&mut store, &mut rng, &skus, updated);
        store.insert(Resource::Orders, body, created, updated);
    }
    for _ in 0..cfg.records {
        let (created, updated) = past_dates(&mut rng, start_ms);
        let body = inbound_shipment(&mut store, &mut rng, &skus, updated);
        store.insert(Resource::InboundShipments, body, created, updated);
    }
    store
}

/// `(created, updated)`: updated within the last 30 days, created up to 10 days before that.
fn past_dates(rng: &mut StdRng, start_ms: i64) -> (i64, i64) {
    let updated = start_ms - rng.gen_range(1..30 * DAY_MS);
    (updated - rng.gen_range(0..10 * DAY_MS), updated)
}

/// A new record body for `res` (without dates; the store sets those). Used by the mutation
/// driver, with its own random stream.
pub(crate) fn new_record(
    store: &mut WmsStore,
    rng: &mut StdRng,
    res: Resource,
    now_ms: i64,
) -> Value {
    let skus = known_skus(store);
    match res {
        Resource::Products => product(store, rng),
        Resource::Inventory => {
            let sku = skus
                .choose(rng)
                .cloned()
                .unwrap_or_else(|| "SKU-00000".into());
            inventory(store, rng, &sku)
        }
        Resource::Orders => order(store, rng, &skus, now_ms),
        Resource::InboundShipments => inbound_shipment(store, rng, &skus, now_ms),
    }
}

/// Skus of the live products, in the table's deterministic order.
fn known_skus(store: &WmsStore) -> Vec<String> {
    store
        .table(Resource::Products)
        .values()
        .filter_map(|p| p["sku"].as_str().map(str::to_owned))
        .collect()
}

fn product(store: &mut WmsStore, rng: &mut StdRng) -> Value {
    let n = store.next_number(Resource::Products);
    json!({
        "id": fresh_id(store, rng, Resource::Products, "prod_"),
        "sku": format!("SKU-{n:05}"),
        "name": format!("{} {}", pick(rng, ADJECTIVES), pick(rng, NOUNS)),
        "price": price(rng),
        "active": true,
    })
}

fn inventory(store: &mut WmsStore, rng: &mut StdRng, sku: &str) -> Value {
    let onhand: u32 = rng.gen_range(0..500);
    json!({
        "id": fresh_id(store, rng, Resource::Inventory, "inv_"),
        "sku": sku,
        "onhand": onhand,
        "fulfillable": rng.gen_range(0..=onhand),
        "warehouse_id": pick(rng, WAREHOUSES),
    })
}

fn order(store: &mut WmsStore, rng: &mut StdRng, skus: &[String], at_ms: i64) -> Value {
    let n = store.next_number(Resource::Orders);
    let status = pick(rng, ORDER_STATUSES);
    let mut body = json!({
        "id": fresh_id(store, rng, Resource::Orders, "ord_"),
        "order_number": format!("SO-{:06}", 100_000 + n),
        "status": status,
        "warehouse_id": pick(rng, WAREHOUSES),
        "line_items": line_items(rng, skus, "quantity"),
        "ship_to": {
            "name": format!("{} {}", pick(rng, FIRST_NAMES), pick(rng, LAST_NAMES)),
            "address1": format!("{} Main St", rng.gen_range(1..9999)),
            "city": pick(rng, CITIES),
            "country": "US",
        },
        "shipments": [],
    });
    if matches!(status, "shipped" | "delivered") {
        body["shipments"] = json!([shipment(rng, at_ms)]);
    }
    body
}

fn inbound_shipment(store: &mut WmsStore, rng: &mut StdRng, skus: &[String], at_ms: i64) -> Value {
    let n = store.next_number(Resource::InboundShipments);
    let status = pick(rng, INBOUND_STATUSES);
    let mut items = line_items(rng, skus, "expected_quantity");
    for item in items.as_array_mut().into_iter().flatten() {
        let received = if status == "received" {
            item["expected_quantity"].clone()
        } else {
            json!(0)
        };
        item["received_quantity"] = received;
    }
    json!({
        "id": fresh_id(store, rng, Resource::InboundShipments, "ib_"),
        "reference": format!("PO-{:06}", 500_000 + n),
        "status": status,
        "warehouse_id": pick(rng, WAREHOUSES),
        "expected_date": format_rfc3339_ms(at_ms + rng.gen_range(1..14) * DAY_MS),
        "line_items": items,
    })
}

pub(crate) fn shipment(rng: &mut StdRng, at_ms: i64) -> Value {
    json!({
        "shipment_id": format!("shp_{:012x}", rng.gen::<u64>() >> 16),
        "carrier": pick(rng, CARRIERS),
        "tracking_number": format!("1Z{:016}", rng.gen_range(0..10_u64.pow(16))),
        "shipped_date": format_rfc3339_ms(at_ms),
    })
}

/// 1 to 3 line items over distinct skus, each `{sku, <qty_field>}`.
fn line_items(rng: &mut StdRng, skus: &[String], qty_field: &str) -> Value {
    let count = rng.gen_range(1..=3).min(skus.len().max(1));
    let chosen: Vec<&String> = skus.choose_multiple(rng, count).collect();
    Value::Array(
        chosen
            .into_iter()
            .map(|sku| json!({ "sku": sku, qty_field: rng.gen_range(1..=12) }))
            .collect(),
    )
}

/// A price in whole cents, as a JSON number with two decimals at most.
pub(crate) fn price(rng: &mut StdRng) -> f64 {
    f64::from(rng.gen_range(199_u32..=19_999)) / 100.0
}

pub(crate) fn pick<'a>(rng: &mut StdRng, from: &[&'a str]) -> &'a str {
    from.choose(rng).copied().unwrap_or_default()
}

/// A random id with `prefix`, unique within `res` (collisions are astronomically rare; the
/// loop makes them impossible).
fn fresh_id(store: &WmsStore, rng: &mut StdRng, res: Resource, prefix: &str) -> String {
    loop {
        let id = format!("{prefix}{:016x}", rng.gen::<u64>());
        if store.table(res).get(&id).is_none() {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_data() {
        let cfg = MockConfig {
            records: 20,
            ..MockConfig::default()
        };
        let (a, b) = (
            generate(&cfg, 1_700_000_000_000),
            generate(&cfg, 1_700_000_000_000),
        );
        for res in Resource::ALL {
            assert_eq!(a.table(res).all(), b.table(res).all(), "{res:?}");
            assert_eq!(a.table(res).len(), 20);
        }
        let other = generate(&MockConfig { seed: 7, ..cfg }, 1_700_000_000_000);
        assert_ne!(
            a.table(Resource::Orders).all(),
            other.table(Resource::Orders).all()
        );
    }

    #[test]
    fn dates_fall_in_the_last_thirty_days() {
        let start = 1_700_000_000_000;
        let store = generate(&MockConfig::default(), start);
        for res in Resource::ALL {
            for item in store.table(res).all() {
                let updated = crate::clock::parse_rfc3339(item["updated_date"].as_str().unwrap());
                let created = crate::clock::parse_rfc3339(item["created_date"].as_str().unwrap());
                let (created, updated) = (created.unwrap(), updated.unwrap());
                assert!(updated < start && updated > start - 30 * DAY_MS);
                assert!(created <= updated);
            }
        }
    }
}
