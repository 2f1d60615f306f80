//! The audit log: who did which admin action, when, to what, with which parameters.
//!
//! An admin action and its entry are written in one transaction: the store methods that make
//! such changes take the entry along (see [`insert_audit`]), so that a change is never left
//! unaudited and an entry never describes a change that did not happen. Entries name the
//! connection they concern, so that a key limited to some connections reads only theirs.

use crate::page::{decode_cursor, Page, PageRequest};
use crate::row::{DbRow, FromDbRow, RowResult};
use crate::sql::{bind_all, Bind, Conditions};
use crate::{on_reader, on_writer, Millis, Result, Scope, Store};
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuditEntry {
    pub id: i64,
    pub tenant_id: Option<String>,
    /// The connection the action concerned, if one.
    pub connection_id: Option<String>,
    /// The API key id that acted (or `system`).
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub params: serde_json::Value,
    pub request_id: Option<String>,
    pub at: Millis,
}

impl FromDbRow for AuditEntry {
    fn from_row(r: &impl DbRow) -> RowResult<Self> {
        Ok(AuditEntry {
            id: r.i64("id")?,
            tenant_id: r.opt_string("tenant_id")?,
            connection_id: r.opt_string("connection_id")?,
            actor: r.string("actor")?,
            action: r.string("action")?,
            target: r.opt_string("target")?,
            params: serde_json::from_str(&r.string("params")?).unwrap_or_default(),
            request_id: r.opt_string("request_id")?,
            at: r.i64("at")?,
        })
    }
}

/// An entry to append.
#[derive(Debug, Clone, Default)]
pub struct NewAudit<'a> {
    pub tenant_id: Option<&'a str>,
    /// The connection the action concerns; what a connection-scoped key may read.
    pub connection_id: Option<&'a str>,
    pub actor: &'a str,
    pub action: &'a str,
    pub target: Option<&'a str>,
    pub params: serde_json::Value,
    pub request_id: Option<&'a str>,
}

impl NewAudit<'_> {
    /// Adds `key: value` to the params (an object), for outcomes known only inside the
    /// transaction that writes the entry.
    pub(crate) fn add_param(&mut self, key: &str, value: serde_json::Value) {
        if !self.params.is_object() {
            self.params = serde_json::json!({});
        }
        self.params[key] = value;
    }
}

/// Inserts a [`NewAudit`] on `$ex` (a transaction of either backend), so that the entry
/// commits or rolls back with the change it records.
macro_rules! insert_audit {
    ($ex:expr, $e:expr, $now:expr) => {{
        let e: &$crate::audit::NewAudit<'_> = $e;
        sqlx::query("INSERT INTO audit_log (tenant_id, connection_id, actor, action, target, params, request_id, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
            .bind(e.tenant_id)
            .bind(e.connection_id)
            .bind(e.actor)
            .bind(e.action)
            .bind(e.target)
            .bind(e.params.to_string())
            .bind(e.request_id)
            .bind($now)
            .execute($ex)
            .await
    }};
}
pub(crate) use insert_audit;

impl Store {
    /// Appends an entry on its own, for events that are not a store change of their own
    /// (system transitions, integrity findings).
    pub async fn append_audit(&self, e: NewAudit<'_>, now: Millis) -> Result<()> {
        on_writer!(self, p => {
            insert_audit!(p, &e, now)?;
        });
        Ok(())
    }

    /// Newest first. With `visible`, only entries about those connections.
    pub async fn list_audit(
        &self,
        scope: &Scope,
        visible: Option<&[String]>,
        action: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<AuditEntry>> {
        let before: i64 = page
            .after
            .as_deref()
            .and_then(decode_cursor)
            .and_then(|s| s.parse().ok())
            .unwrap_or(i64::MAX);
        let mut c = Conditions::default();
        c.and("id < ?", vec![Bind::I64(before)]);
        if let Some(t) = scope.tenant() {
            c.and("tenant_id = ?", vec![Bind::Str(t.to_string())]);
        }
        if let Some(v) = visible {
            c.and_in_list(self.backend(), "connection_id", v);
        }
        if let Some(a) = action {
            c.and("action = ?", vec![Bind::Str(a.to_string())]);
        }
        let limit = c.push_bind(Bind::I64(page.limit + 1));
        let sql = format!(
            "SELECT id, tenant_id, connection_id, actor, action, target, params, request_id, at FROM audit_log{} ORDER BY id DESC LIMIT {limit}",
            c.where_clause()
        );
        on_reader!(self, p => {
            let rows = bind_all!(sqlx::query(&sql), &c.binds).fetch_all(p).await?;
            let items = rows.iter().map(AuditEntry::from_row).collect::<RowResult<Vec<_>>>()?;
            Ok(Page::from_overfetch(items, page.limit, |e| e.id.to_string()))
        })
    }
}
