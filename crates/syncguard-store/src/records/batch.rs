//! Deciding a batch of record writes, before any SQL: which writes change something (hash
//! gating, stale-write protection), what each record ends up as, and which changes to append.
//! Pure, so the rule is tested without a store; [`super::apply_on`] executes the result.

use super::{ChangeKind, RecordKey, RecordWrite};
use crate::Millis;
use std::collections::HashMap;
use syncguard_core::canonical::content_hash;

/// What is stored of a record, as far as deciding a write needs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Stored {
    pub hash: String,
    pub deleted: bool,
    pub remote_updated_at: Option<Millis>,
}

/// What `write` does to a record in state `stored`: the rule of hash gating and stale-write
/// protection. `new_hash` is the content hash of an upsert's data.
pub(crate) fn decide(
    stored: Option<&Stored>,
    write: &RecordWrite,
    new_hash: &str,
) -> Option<ChangeKind> {
    match write {
        RecordWrite::Upsert {
            remote_updated_at, ..
        } => match stored {
            Some(s) if !s.deleted && s.hash == new_hash => None,
            Some(s) if matches!((remote_updated_at, s.remote_updated_at), (Some(new), Some(old)) if *new < old) => {
                None
            }
            Some(s) if !s.deleted => Some(ChangeKind::Updated),
            _ => Some(ChangeKind::Created),
        },
        RecordWrite::Delete => match stored {
            Some(s) if !s.deleted => Some(ChangeKind::Deleted),
            _ => None,
        },
    }
}

/// The writes of a batch that target one (connection, resource), by position in the batch.
#[derive(Debug, PartialEq)]
pub(crate) struct Group<'w> {
    pub connection_id: &'w str,
    pub resource: &'w str,
    pub indices: Vec<usize>,
}

impl<'w> Group<'w> {
    /// The distinct external ids the group touches.
    pub fn external_ids(&self, writes: &'w [(RecordKey<'w>, RecordWrite)]) -> Vec<&'w str> {
        let mut seen = std::collections::HashSet::new();
        self.indices
            .iter()
            .map(|&i| writes[i].0.external_id)
            .filter(|id| seen.insert(*id))
            .collect()
    }
}

/// Splits a batch by (connection, resource), keeping the order of writes within each group.
pub(crate) fn groups<'w>(writes: &'w [(RecordKey<'w>, RecordWrite)]) -> Vec<Group<'w>> {
    let mut out: Vec<Group<'w>> = Vec::new();
    for (i, (k, _)) in writes.iter().enumerate() {
        match out
            .iter_mut()
            .find(|g| g.connection_id == k.connection_id && g.resource == k.resource)
        {
            Some(g) => g.indices.push(i),
            None => out.push(Group {
                connection_id: k.connection_id,
                resource: k.resource,
                indices: vec![i],
            }),
        }
    }
    out
}

/// The state one batch leaves a record in, when it changed it.
#[derive(Debug, PartialEq)]
pub(crate) struct FinalRow<'w> {
    pub tenant_id: &'w str,
    pub external_id: &'w str,
    /// New content, hash and updated-at; `None` when only the deleted flag changed.
    pub content: Option<(&'w serde_json::Value, String, Option<Millis>)>,
    pub deleted: bool,
}

/// A change to append for write number `index` of the batch.
#[derive(Debug, PartialEq)]
pub(crate) struct PendingChange {
    pub index: usize,
    pub kind: ChangeKind,
    pub hash: String,
}

/// What a group of writes amounts to: rows to store (one per record, its last state) and
/// changes to append (one per write that changed something).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Plan<'w> {
    pub rows: Vec<FinalRow<'w>>,
    pub changes: Vec<PendingChange>,
}

/// Decides every write of `group` in order against `stored` (which it keeps current, so two
/// writes of one record in a batch see each other). Pure.
pub(crate) fn plan<'w>(
    writes: &'w [(RecordKey<'w>, RecordWrite)],
    group: &Group<'w>,
    stored: &mut HashMap<String, Stored>,
) -> Plan<'w> {
    let mut plan = Plan::default();
    let mut row_of: HashMap<&'w str, usize> = HashMap::new();
    for &i in &group.indices {
        let (k, write) = (&writes[i].0, &writes[i].1);
        let id = k.external_id;
        let new_hash = match write {
            RecordWrite::Upsert { data, .. } => content_hash(data),
            RecordWrite::Delete => String::new(),
        };
        let Some(kind) = decide(stored.get(id), write, &new_hash) else {
            continue;
        };
        let slot = *row_of.entry(id).or_insert_with(|| {
            plan.rows.push(FinalRow {
                tenant_id: k.tenant_id,
                external_id: id,
                content: None,
                deleted: false,
            });
            plan.rows.len() - 1
        });
        let row = &mut plan.rows[slot];
        let hash = match write {
            RecordWrite::Upsert {
                data,
                remote_updated_at,
            } => {
                row.content = Some((data, new_hash.clone(), *remote_updated_at));
                row.deleted = false;
                stored.insert(
                    id.to_string(),
                    Stored {
                        hash: new_hash.clone(),
                        deleted: false,
                        remote_updated_at: *remote_updated_at,
                    },
                );
                new_hash
            }
            RecordWrite::Delete => {
                row.deleted = true;
                let s = stored
                    .get_mut(id)
                    .expect("decide deletes only stored records");
                s.deleted = true;
                s.hash.clone()
            }
        };
        plan.changes.push(PendingChange {
            index: i,
            kind,
            hash,
        });
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(id: &str) -> RecordKey<'_> {
        RecordKey {
            tenant_id: "ten",
            connection_id: "con",
            resource: "orders",
            external_id: id,
        }
    }

    fn upsert(v: i64, at: Option<Millis>) -> RecordWrite {
        RecordWrite::Upsert {
            data: json!({ "v": v }),
            remote_updated_at: at,
        }
    }

    fn stored(v: i64, deleted: bool, at: Option<Millis>) -> Stored {
        Stored {
            hash: content_hash(&json!({ "v": v })),
            deleted,
            remote_updated_at: at,
        }
    }

    #[test]
    fn decisions_follow_hash_and_time() {
        let h = |v: i64| content_hash(&json!({ "v": v }));
        assert_eq!(
            decide(None, &upsert(1, None), &h(1)),
            Some(ChangeKind::Created)
        );
        let live = stored(1, false, Some(10));
        assert_eq!(
            decide(Some(&live), &upsert(1, Some(20)), &h(1)),
            None,
            "same hash"
        );
        assert_eq!(
            decide(Some(&live), &upsert(2, Some(5)), &h(2)),
            None,
            "older"
        );
        assert_eq!(
            decide(Some(&live), &upsert(2, None), &h(2)),
            Some(ChangeKind::Updated)
        );
        assert_eq!(
            decide(Some(&live), &upsert(2, Some(10)), &h(2)),
            Some(ChangeKind::Updated)
        );
        let gone = stored(1, true, Some(10));
        assert_eq!(
            decide(Some(&gone), &upsert(1, Some(11)), &h(1)),
            Some(ChangeKind::Created)
        );
        assert_eq!(
            decide(Some(&gone), &upsert(1, Some(9)), &h(1)),
            None,
            "older than the deletion's state"
        );
        assert_eq!(
            decide(Some(&live), &RecordWrite::Delete, ""),
            Some(ChangeKind::Deleted)
        );
        assert_eq!(decide(Some(&gone), &RecordWrite::Delete, ""), None);
        assert_eq!(decide(None, &RecordWrite::Delete, ""), None);
    }

    #[test]
    fn a_batch_sees_its_own_writes_and_keeps_one_row_per_record() {
        let writes = vec![
            (key("a"), upsert(1, Some(1))),
            (key("a"), upsert(1, Some(2))),
            (key("b"), RecordWrite::Delete),
            (key("a"), upsert(2, Some(3))),
            (key("a"), RecordWrite::Delete),
        ];
        let mut known = HashMap::from([("b".to_string(), stored(7, false, None))]);
        let groups = groups(&writes);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].external_ids(&writes), ["a", "b"]);
        let p = plan(&writes, &groups[0], &mut known);
        let kinds: Vec<_> = p.changes.iter().map(|c| (c.index, c.kind)).collect();
        assert_eq!(
            kinds,
            [
                (0, ChangeKind::Created),
                (2, ChangeKind::Deleted),
                (3, ChangeKind::Updated),
                (4, ChangeKind::Deleted)
            ]
        );
        assert_eq!(p.rows.len(), 2);
        let a = &p.rows[0];
        assert_eq!((a.external_id, a.deleted), ("a", true));
        assert_eq!(a.content.as_ref().unwrap().0, &json!({ "v": 2 }));
        assert_eq!(
            (
                p.rows[1].external_id,
                p.rows[1].content.is_none(),
                p.rows[1].deleted
            ),
            ("b", true, true)
        );
        assert_eq!(
            p.changes[1].hash,
            content_hash(&json!({ "v": 7 })),
            "a deletion names the last hash"
        );
    }

    #[test]
    fn batches_split_by_target_in_order() {
        let mut other = key("x");
        other.resource = "products";
        let writes = vec![
            (key("a"), upsert(1, None)),
            (other, upsert(1, None)),
            (key("b"), upsert(1, None)),
        ];
        let g = groups(&writes);
        assert_eq!(
            g.iter()
                .map(|g| (g.resource, g.indices.clone()))
                .collect::<Vec<_>>(),
            [("orders", vec![0, 2]), ("products", vec![1])]
        );
    }
}
