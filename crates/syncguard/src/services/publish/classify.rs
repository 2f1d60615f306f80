//! Drift classification (pure): how an object's remote state compares with what syncguard
//! wants and with what it last published.
//!
//! Three states meet: the desired state `D`, the last published state `P` (the base; none when
//! never published) and the remote state `R` (none when the provider has no such object).
//! Local changed when `D ≠ P`; remote changed when `R ≠ P`. When `R` equals `D` the two sides
//! agree whatever happened in between: `in_sync`.
//!
//! `R` is compared on the fields syncguard manages: it is first projected onto the shape of the
//! state it is compared with ([`project`]), so that fields the provider adds do not count.

use serde_json::Value;
use syncguard_core::canonical::content_hash;

/// A reconciliation finding's classification (SPEC §1 "drift").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Classification {
    InSync,
    /// Local changed, not published yet.
    InternalOnly,
    /// The provider changed behind our back.
    ExternalOnly,
    Both,
}

impl Classification {
    pub const ALL: [Classification; 4] = [
        Classification::InSync,
        Classification::InternalOnly,
        Classification::ExternalOnly,
        Classification::Both,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Classification::InSync => "in_sync",
            Classification::InternalOnly => "internal_only",
            Classification::ExternalOnly => "external_only",
            Classification::Both => "both",
        }
    }

    pub fn parse(s: &str) -> Option<Classification> {
        Classification::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Whether the provider's state moved away from the last published one.
    pub fn remote_changed(self) -> bool {
        matches!(self, Classification::ExternalOnly | Classification::Both)
    }
}

/// `remote` restricted to the members `shape` has, recursively: objects keep only the shape's
/// keys (a key the remote lacks stays absent, so a removal shows), arrays are projected element
/// by element (extra remote elements stay, so a length change shows), anything else is kept.
pub fn project(remote: &Value, shape: &Value) -> Value {
    match (remote, shape) {
        (Value::Object(r), Value::Object(s)) => Value::Object(
            s.iter()
                .filter_map(|(k, sub)| r.get(k).map(|v| (k.clone(), project(v, sub))))
                .collect(),
        ),
        (Value::Array(r), Value::Array(s)) => Value::Array(
            r.iter()
                .enumerate()
                .map(|(i, v)| s.get(i).map_or_else(|| v.clone(), |sub| project(v, sub)))
                .collect(),
        ),
        _ => remote.clone(),
    }
}

/// The remote state as seen through `shape`, and its content hash.
pub fn remote_view(remote: &Value, shape: &Value) -> (Value, String) {
    let view = project(remote, shape);
    let hash = content_hash(&view);
    (view, hash)
}

/// What reconciliation found for one object.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub classification: Classification,
    /// The remote state projected onto the desired state's shape, with its hash; `None` when
    /// the provider has no such object.
    pub remote: Option<(Value, String)>,
}

/// One object's desired state and its base, as classification needs them.
#[derive(Debug, Clone, Copy)]
pub struct Local<'a> {
    pub desired: &'a Value,
    pub desired_hash: &'a str,
    /// The last published state and its hash. The state may be unknown (its snapshot is gone)
    /// while the hash is known; the desired state's shape is then used to compare.
    pub published: Option<(Option<&'a Value>, &'a str)>,
}

/// Classifies one object.
pub fn classify(local: Local<'_>, remote: Option<&Value>) -> Finding {
    let seen = remote.map(|r| remote_view(r, local.desired));
    let converged = seen
        .as_ref()
        .is_some_and(|(_, h)| h.as_str() == local.desired_hash);
    let local_changed = local.published.map(|(_, h)| h) != Some(local.desired_hash);
    let remote_changed = match (local.published, remote) {
        (Some((base, base_hash)), Some(r)) => {
            remote_view(r, base.unwrap_or(local.desired)).1 != base_hash
        }
        (Some(_), None) => true,
        (None, Some(_)) => true,
        (None, None) => false,
    };
    let classification = match (converged, local_changed, remote_changed) {
        (true, _, _) | (false, false, false) => Classification::InSync,
        (false, true, false) => Classification::InternalOnly,
        (false, false, true) => Classification::ExternalOnly,
        (false, true, true) => Classification::Both,
    };
    Finding {
        classification,
        remote: seen,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn find(d: &Value, p: Option<&Value>, r: Option<&Value>) -> Classification {
        let dh = content_hash(d);
        let ph = p.map(content_hash);
        let local = Local {
            desired: d,
            desired_hash: &dh,
            published: p.zip(ph.as_deref()).map(|(v, h)| (Some(v), h)),
        };
        classify(local, r).classification
    }

    #[test]
    fn projection_ignores_added_fields_and_shows_removed_ones() {
        let shape = json!({"product": {"title": "Mug"}, "tags": [{"k": 1}]});
        let remote = json!({"sku": "A", "product": {"title": "Mug", "id": 9}, "tags": [{"k": 1, "x": 0}, {"k": 2}]});
        assert_eq!(
            project(&remote, &shape),
            json!({"product": {"title": "Mug"}, "tags": [{"k": 1}, {"k": 2}]})
        );
        assert_eq!(
            project(&json!({"product": {}}), &shape),
            json!({"product": {}})
        );
        assert_eq!(project(&json!(3), &shape), json!(3));
    }

    #[test]
    fn the_four_classifications() {
        let p = json!({"q": 1});
        let d_new = json!({"q": 2});
        let r_same = json!({"q": 1, "sku": "A"});
        let r_new = json!({"q": 3, "sku": "A"});
        use Classification::*;
        assert_eq!(find(&p, Some(&p), Some(&r_same)), InSync);
        assert_eq!(find(&d_new, Some(&p), Some(&r_same)), InternalOnly);
        assert_eq!(find(&p, Some(&p), Some(&r_new)), ExternalOnly);
        assert_eq!(find(&d_new, Some(&p), Some(&r_new)), Both);
        // Both sides made the same change: nothing to do.
        assert_eq!(find(&d_new, Some(&p), Some(&json!({"q": 2}))), InSync);
        // Deleted behind our back; never published; never published but already there.
        assert_eq!(find(&p, Some(&p), None), ExternalOnly);
        assert_eq!(find(&p, None, None), InternalOnly);
        assert_eq!(find(&p, None, Some(&r_new)), Both);
        assert_eq!(find(&p, None, Some(&r_same)), InSync);
    }

    #[test]
    fn numbers_compare_by_value_and_keys_by_content() {
        let d = json!({"price": 1.0, "a": {"y": 1, "x": 2}});
        let r: Value = serde_json::from_str(r#"{"a":{"x":2,"y":1},"price":1}"#).unwrap();
        assert_eq!(find(&d, Some(&d), Some(&r)), Classification::InSync);
    }

    #[test]
    fn an_unknown_base_state_compares_on_the_desired_shape() {
        let d = json!({"q": 1});
        let dh = content_hash(&d);
        let local = Local {
            desired: &d,
            desired_hash: &dh,
            published: Some((None, &dh)),
        };
        let f = classify(local, Some(&json!({"q": 5})));
        assert_eq!(f.classification, Classification::ExternalOnly);
        assert_eq!(f.remote.unwrap().0, json!({"q": 5}));
    }
}
