//! The audit log: who did which admin action, when, to what, with which parameters.

use crate::page::{decode_cursor, Page, PageRequest};
use crate::row::{DbRow, FromDbRow, RowResult};
use crate::{on_reader, on_writer, Millis, Result, Scope, Store};
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuditEntry {
    pub id: i64,
    pub tenant_id: Option<String>,
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
#[derive(Debug, Clone)]
pub struct NewAudit<'a> {
    pub tenant_id: Option<&'a str>,
    pub actor: &'a str,
    pub action: &'a str,
    pub target: Option<&'a str>,
    pub params: serde_json::Value,
    pub request_id: Option<&'a str>,
}

impl Store {
    pub async fn append_audit(&self, e: NewAudit<'_>, now: Millis) -> Result<()> {
        on_writer!(self, p => {
            sqlx::query("INSERT INTO audit_log (tenant_id, actor, action, target, params, request_id, at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                .bind(e.tenant_id)
                .bind(e.actor)
                .bind(e.action)
                .bind(e.target)
                .bind(e.params.to_string())
                .bind(e.request_id)
                .bind(now)
                .execute(p)
                .await?;
        });
        Ok(())
    }

    /// Newest first.
    pub async fn list_audit(
        &self,
        scope: &Scope,
        action: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<AuditEntry>> {
        let before: i64 = page
            .after
            .as_deref()
            .and_then(decode_cursor)
            .and_then(|s| s.parse().ok())
            .unwrap_or(i64::MAX);
        on_reader!(self, p => {
            let rows = sqlx::query("SELECT id, tenant_id, actor, action, target, params, request_id, at FROM audit_log
                                    WHERE id < $1 AND (CAST($2 AS TEXT) IS NULL OR tenant_id = $2) AND (CAST($3 AS TEXT) IS NULL OR action = $3)
                                    ORDER BY id DESC LIMIT $4")
                .bind(before)
                .bind(scope.tenant())
                .bind(action)
                .bind(page.limit + 1)
                .fetch_all(p)
                .await?;
            let items = rows.iter().map(AuditEntry::from_row).collect::<RowResult<Vec<_>>>()?;
            Ok(Page::from_overfetch(items, page.limit, |e| e.id.to_string()))
        })
    }
}
