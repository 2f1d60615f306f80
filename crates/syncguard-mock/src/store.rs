//! In-memory WMS records and their listing order.
//!
//! Each resource is a [`Table`] ordered by `(updated_ms, id)`, and lists are keyset-paginated
//! over that order. A write moves a record to the end, so plain keyset pagination would return
//! a record twice when it moves after being listed. To make listings exactly-once, each listing
//! in progress is remembered (its id travels in the page token) together with the records that
//! moved after it had already returned them; later pages of that listing skip those. A record
//! that moves before the listing reaches it is simply returned once, at its new place at the end.
//!
//! Listings idle for [`LISTING_IDLE_MS`] are forgotten; a token of a forgotten listing still
//! works, as plain keyset pagination (at-least-once).

pub(crate) mod ebay;

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;

use base64::Engine;
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{Map, Value};

use crate::clock::format_rfc3339_ms;

/// A WMS resource, named as in its URL (`/wms/{name}`) and in `/_mock/records/{name}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    Orders,
    Products,
    Inventory,
    InboundShipments,
}

impl Resource {
    pub const ALL: [Resource; 4] = [
        Resource::Orders,
        Resource::Products,
        Resource::Inventory,
        Resource::InboundShipments,
    ];

    /// The URL segment: `orders`, `products`, `inventory`, `inbound-shipments`.
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Orders => "orders",
            Resource::Products => "products",
            Resource::Inventory => "inventory",
            Resource::InboundShipments => "inbound-shipments",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// The noun used in webhook event types (`order.updated`, `inbound_shipment.created`).
    pub(crate) fn event_noun(self) -> &'static str {
        match self {
            Resource::Orders => "order",
            Resource::Products => "product",
            Resource::Inventory => "inventory",
            Resource::InboundShipments => "inbound_shipment",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl serde::Serialize for Resource {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Listings idle longer than this are forgotten.
const LISTING_IDLE_MS: i64 = 15 * 60 * 1000;
/// At most this many listings are remembered per resource; the least recently used goes first.
const MAX_LISTINGS: usize = 1024;

/// A position in the listing order.
type Key = (i64, String);

#[derive(Debug)]
struct Record {
    body: Value,
    updated_ms: i64,
    /// Index into [`Table::ids`], for O(1) removal.
    pos: usize,
}

/// A listing in progress.
#[derive(Debug)]
struct Listing {
    /// The furthest position any page of this listing has returned.
    served_up_to: Key,
    gte: Option<i64>,
    /// Records that moved after this listing returned them, with the position they were
    /// returned at.
    moved: HashMap<String, Key>,
    last_used_ms: i64,
}

/// Where a listing stands: decoded from and encoded into the opaque `page_token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cursor {
    listing: u64,
    last_ms: i64,
    last_id: String,
    /// The `updated_date[gte]` filter of the listing, so later pages need not repeat it.
    gte: Option<i64>,
}

impl Cursor {
    pub(crate) fn encode(&self) -> String {
        let gte = self.gte.map_or_else(|| "-".to_owned(), |g| g.to_string());
        let raw = format!(
            "v1.{:x}.{}.{gte}.{}",
            self.listing, self.last_ms, self.last_id
        );
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    }

    pub(crate) fn decode(token: &str) -> Option<Self> {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .ok()?;
        let raw = String::from_utf8(raw).ok()?;
        let mut parts = raw.splitn(5, '.');
        if parts.next()? != "v1" {
            return None;
        }
        let listing = u64::from_str_radix(parts.next()?, 16).ok()?;
        let last_ms = parts.next()?.parse().ok()?;
        let gte = match parts.next()? {
            "-" => None,
            g => Some(g.parse().ok()?),
        };
        let last_id = parts.next()?.to_owned();
        Some(Self {
            listing,
            last_ms,
            last_id,
            gte,
        })
    }

    pub(crate) fn gte(&self) -> Option<i64> {
        self.gte
    }

    fn key(&self) -> Key {
        (self.last_ms, self.last_id.clone())
    }
}

/// One page of a listing.
pub(crate) struct Page {
    pub(crate) data: Vec<Value>,
    pub(crate) next: Option<Cursor>,
}

/// The live records of one resource.
#[derive(Debug)]
pub(crate) struct Table {
    records: HashMap<String, Record>,
    order: BTreeSet<Key>,
    /// Ids in a deterministic order, so seeded random picks do not depend on hash order.
    ids: Vec<String>,
    listings: HashMap<u64, Listing>,
    /// Starts at a random value so a token from an earlier run of the mock cannot name a
    /// listing of this one.
    next_listing: u64,
}

impl Default for Table {
    fn default() -> Self {
        Self {
            records: HashMap::new(),
            order: BTreeSet::new(),
            ids: Vec::new(),
            listings: HashMap::new(),
            next_listing: rand::thread_rng().gen::<u32>().into(),
        }
    }
}

impl Table {
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    pub(crate) fn get(&self, id: &str) -> Option<&Value> {
        self.records.get(id).map(|r| &r.body)
    }

    pub(crate) fn random_id(&self, rng: &mut StdRng) -> Option<String> {
        (!self.ids.is_empty()).then(|| self.ids[rng.gen_range(0..self.ids.len())].clone())
    }

    /// Every record in insertion order (deterministic, unlike listing order, which depends on
    /// wall-clock update times).
    pub(crate) fn values(&self) -> impl Iterator<Item = &Value> {
        self.ids.iter().map(|id| &self.records[id].body)
    }

    /// Every record in listing order.
    pub(crate) fn all(&self) -> Vec<Value> {
        self.order
            .iter()
            .map(|(_, id)| self.records[id].body.clone())
            .collect()
    }

    /// A page of records with `updated_ms >= gte`, in `(updated_ms, id)` order: the first page
    /// of a new listing without `cursor`, the next page of one with it.
    pub(crate) fn page(
        &mut self,
        gte: Option<i64>,
        limit: usize,
        cursor: Option<&Cursor>,
        now_ms: i64,
    ) -> Page {
        let (listing_id, gte, after) = match cursor {
            Some(c) => (c.listing, c.gte, Some(c.key())),
            None => {
                self.next_listing = self.next_listing.wrapping_add(1);
                (self.next_listing, gte, None)
            }
        };
        let moved = self.listings.get(&listing_id).map(|l| &l.moved);
        let lower = match &after {
            Some(key) => Bound::Excluded(key.clone()),
            None => Bound::Included((gte.unwrap_or(i64::MIN), String::new())),
        };
        let mut data = Vec::new();
        let mut last: Option<&Key> = None;
        let mut more = false;
        for key in self.order.range((lower, Bound::Unbounded)) {
            let (ms, id) = key;
            // Skip what this listing returned before it moved: at a position the client has
            // acknowledged by presenting a later token.
            let returned = moved
                .and_then(|m| m.get(id))
                .is_some_and(|at| after.as_ref().is_some_and(|a| at <= a));
            if gte.is_some_and(|g| *ms < g) || returned {
                continue;
            }
            if data.len() == limit {
                more = true;
                break;
            }
            data.push(self.records[id].body.clone());
            last = Some(key);
        }
        let next = last.filter(|_| more).cloned();
        match &next {
            Some(position) => {
                self.remember(listing_id, position, gte, now_ms);
                // A retried token re-serves a range: records that moved out of it since they
                // were first served were not in this answer, so they are due at their new place.
                let listing = self.listings.get_mut(&listing_id).expect("just remembered");
                listing
                    .moved
                    .retain(|_, at| after.as_ref().is_some_and(|a| &*at <= a) || &*at > position);
            }
            None => {
                self.listings.remove(&listing_id);
            }
        }
        Page {
            data,
            next: next.map(|(last_ms, last_id)| Cursor {
                listing: listing_id,
                last_ms,
                last_id,
                gte,
            }),
        }
    }

    fn remember(&mut self, listing_id: u64, position: &Key, gte: Option<i64>, now_ms: i64) {
        if !self.listings.contains_key(&listing_id) && self.listings.len() >= MAX_LISTINGS {
            self.listings
                .retain(|_, l| now_ms - l.last_used_ms < LISTING_IDLE_MS);
            let oldest = self
                .listings
                .iter()
                .min_by_key(|(_, l)| l.last_used_ms)
                .map(|(id, _)| *id);
            if let Some(oldest) = oldest.filter(|_| self.listings.len() >= MAX_LISTINGS) {
                self.listings.remove(&oldest);
            }
        }
        let listing = self.listings.entry(listing_id).or_insert_with(|| Listing {
            served_up_to: position.clone(),
            gte,
            moved: HashMap::new(),
            last_used_ms: now_ms,
        });
        listing.served_up_to = listing.served_up_to.clone().max(position.clone());
        listing.last_used_ms = now_ms;
    }

    fn insert(&mut self, mut body: Value, created_ms: i64, updated_ms: i64) -> Value {
        let id = body["id"]
            .as_str()
            .expect("records carry a string id")
            .to_owned();
        set_date(&mut body, "created_date", created_ms);
        set_date(&mut body, "updated_date", updated_ms);
        self.order.insert((updated_ms, id.clone()));
        self.ids.push(id.clone());
        let record = Record {
            body: body.clone(),
            updated_ms,
            pos: self.ids.len() - 1,
        };
        self.records.insert(id, record);
        body
    }

    fn replace(&mut self, id: &str, mut body: Value, now_ms: i64) -> Option<Value> {
        let rec = self.records.get_mut(id)?;
        let old: Key = (rec.updated_ms, id.to_owned());
        // Strictly increasing, so every change is visible to an `updated_date` cursor even
        // when two writes land in the same millisecond.
        let updated_ms = now_ms.max(rec.updated_ms + 1);
        set_date(&mut body, "updated_date", updated_ms);
        rec.updated_ms = updated_ms;
        rec.body = body.clone();
        self.order.remove(&old);
        self.order.insert((updated_ms, id.to_owned()));
        for listing in self.listings.values_mut() {
            let filtered_out = matches!(listing.gte, Some(g) if old.0 < g);
            if !filtered_out && old <= listing.served_up_to {
                listing.moved.insert(id.to_owned(), old.clone());
            }
        }
        Some(body)
    }

    fn remove(&mut self, id: &str) -> Option<Value> {
        let rec = self.records.remove(id)?;
        self.order.remove(&(rec.updated_ms, id.to_owned()));
        self.ids.swap_remove(rec.pos);
        if let Some(moved) = self.ids.get(rec.pos) {
            self.records.get_mut(moved).expect("ids mirror records").pos = rec.pos;
        }
        Some(rec.body)
    }
}

fn set_date(body: &mut Value, field: &str, ms: i64) {
    if let Some(obj) = body.as_object_mut() {
        obj.insert(field.to_owned(), Value::String(format_rfc3339_ms(ms)));
    }
}

/// All WMS tables.
#[derive(Debug)]
pub(crate) struct WmsStore {
    tables: [Table; 4],
    /// Next human-facing number per resource (order numbers, skus), never reused.
    numbers: [u64; 4],
}

impl WmsStore {
    pub(crate) fn new() -> Self {
        Self {
            tables: Default::default(),
            numbers: [1; 4],
        }
    }

    pub(crate) fn table(&self, res: Resource) -> &Table {
        &self.tables[res.index()]
    }

    pub(crate) fn table_mut(&mut self, res: Resource) -> &mut Table {
        &mut self.tables[res.index()]
    }

    /// Reserves the next number of `res` (e.g. for `SO-000123` or `SKU-00042`).
    pub(crate) fn next_number(&mut self, res: Resource) -> u64 {
        let n = self.numbers[res.index()];
        self.numbers[res.index()] += 1;
        n
    }

    /// Inserts a new record; the store sets `created_date` and `updated_date`.
    pub(crate) fn insert(
        &mut self,
        res: Resource,
        body: Value,
        created_ms: i64,
        updated_ms: i64,
    ) -> Value {
        self.tables[res.index()].insert(body, created_ms, updated_ms)
    }

    /// Applies `change` to a copy of the record and stores it with a bumped `updated_date`.
    /// Returns `(before, after)`.
    pub(crate) fn update(
        &mut self,
        res: Resource,
        id: &str,
        now_ms: i64,
        change: impl FnOnce(&mut Map<String, Value>),
    ) -> Option<(Value, Value)> {
        let before = self.tables[res.index()].get(id)?.clone();
        let mut after = before.clone();
        if let Some(obj) = after.as_object_mut() {
            change(obj);
        }
        let after = self.tables[res.index()].replace(id, after, now_ms)?;
        Some((before, after))
    }

    pub(crate) fn delete(&mut self, res: Resource, id: &str) -> Option<Value> {
        self.tables[res.index()].remove(id)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn store_with(n: usize) -> WmsStore {
        let mut store = WmsStore::new();
        for i in 0..n {
            let body = json!({ "id": format!("p{i:03}") });
            store.insert(Resource::Products, body, 0, 1000 + i as i64);
        }
        store
    }

    fn ids(values: &[Value]) -> Vec<String> {
        values
            .iter()
            .map(|v| v["id"].as_str().unwrap().to_owned())
            .collect()
    }

    fn touch(store: &mut WmsStore, id: &str, now: i64) {
        store.update(Resource::Products, id, now, |o| {
            o.insert("name".into(), json!(now));
        });
    }

    /// Lists everything with `limit`, calling `between` after each page.
    fn list_all(
        store: &mut WmsStore,
        limit: usize,
        between: impl Fn(&mut WmsStore, usize),
    ) -> Vec<String> {
        let mut seen = Vec::new();
        let mut cursor = None;
        for page_no in 0.. {
            let page = store
                .table_mut(Resource::Products)
                .page(None, limit, cursor.as_ref(), 0);
            seen.extend(ids(&page.data));
            match page.next {
                Some(next) => cursor = Some(Cursor::decode(&next.encode()).unwrap()),
                None => break,
            }
            between(store, page_no);
        }
        seen
    }

    fn assert_each_once(seen: &[String], n: usize) {
        let mut sorted = seen.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!((sorted.len(), seen.len()), (n, n), "{seen:?}");
    }

    #[test]
    fn cursor_round_trips() {
        let c = Cursor {
            listing: 7,
            last_ms: -3,
            last_id: "a.b.c".into(),
            gte: Some(9),
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c.clone()));
        let c = Cursor { gte: None, ..c };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        assert_eq!(Cursor::decode("not a token"), None);
    }

    #[test]
    fn pages_cover_everything_once() {
        let mut store = store_with(25);
        let seen = list_all(&mut store, 10, |_, _| {});
        let expected: Vec<_> = (0..25).map(|i| format!("p{i:03}")).collect();
        assert_eq!(seen, expected);
        assert!(
            store.table(Resource::Products).listings.is_empty(),
            "finished listings are dropped"
        );
    }

    #[test]
    fn exactly_once_while_records_move() {
        let mut store = store_with(30);
        let seen = list_all(&mut store, 10, |s, page_no| match page_no {
            // After p000..p009: one record already returned, one not yet.
            0 => {
                touch(s, "p003", 5000);
                touch(s, "p015", 5001);
            }
            // Move both again (p015 still unreturned) and one returned on page 1.
            1 => {
                touch(s, "p003", 6000);
                touch(s, "p015", 6001);
                touch(s, "p012", 6002);
            }
            _ => {}
        });
        assert_each_once(&seen, 30);
        // p015 moved before the listing reached it: returned once, at the end. p003 and p012
        // moved after being returned: not returned again.
        assert_eq!(seen.last().unwrap(), "p015");
    }

    #[test]
    fn a_retried_page_token_returns_the_same_records() {
        let mut store = store_with(20);
        let table = store.table_mut(Resource::Products);
        let first = table.page(None, 5, None, 0);
        let token = first.next.unwrap();
        let second = table.page(None, 5, Some(&token), 0);
        // The answer to `second` got lost; a record of it moves; the client retries.
        touch(&mut store, "p007", 9000);
        let table = store.table_mut(Resource::Products);
        let retried = table.page(None, 5, Some(&token), 0);
        assert_eq!(ids(&second.data), ["p005", "p006", "p007", "p008", "p009"]);
        assert_eq!(ids(&retried.data), ["p005", "p006", "p008", "p009", "p010"]);
        let mut seen = ids(&first.data);
        seen.extend(ids(&retried.data));
        let mut cursor = retried.next;
        while let Some(c) = cursor {
            let page = store
                .table_mut(Resource::Products)
                .page(None, 5, Some(&c), 0);
            seen.extend(ids(&page.data));
            cursor = page.next;
        }
        assert_each_once(&seen, 20);
        assert_eq!(seen.last().unwrap(), "p007");
    }

    #[test]
    fn gte_filters_and_deletes_vanish() {
        let mut store = store_with(10);
        store.delete(Resource::Products, "p007");
        let page = store
            .table_mut(Resource::Products)
            .page(Some(1005), 100, None, 0);
        assert_eq!(ids(&page.data), ["p005", "p006", "p008", "p009"]);
        assert!(page.next.is_none());
        assert_eq!(store.table(Resource::Products).len(), 9);
    }

    #[test]
    fn updates_strictly_increase_updated_date() {
        let mut store = store_with(1);
        let (_, after) = store.update(Resource::Products, "p000", 0, |_| {}).unwrap();
        assert_eq!(after["updated_date"], format_rfc3339_ms(1001));
    }
}
