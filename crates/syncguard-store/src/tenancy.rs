//! Tenants and API keys. Keys are stored as SHA-256 hashes; the clear key exists only in the
//! answer to the request that created it.
//!
//! A key sees and revokes only keys no broader than itself ([`KeyBounds`]): in its tenant,
//! with a role not above its own, and, when it is limited to some connections, limited to a
//! subset of them. So a connection-scoped admin cannot list or revoke the tenant's
//! unrestricted keys.

use crate::audit::{insert_audit, NewAudit};
use crate::new_id;
use crate::page::{decode_cursor, Page, PageRequest};
use crate::row::{DbRow, FromDbRow, RowResult};
use crate::sql::{bind_all, Bind, Conditions};
use crate::{on_reader, on_writer, Backend, Millis, Result, Scope, Store, StoreError};
use serde::Serialize;
use syncguard_core::ids::{hash_api_key, last4};
use syncguard_core::role::Role;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub created_at: Millis,
}

impl FromDbRow for Tenant {
    fn from_row(r: &impl DbRow) -> RowResult<Self> {
        Ok(Tenant {
            id: r.string("id")?,
            name: r.string("name")?,
            created_at: r.i64("created_at")?,
        })
    }
}

/// A stored API key (never the key itself).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    /// `None` for platform keys.
    pub tenant_id: Option<String>,
    pub role: Role,
    pub name: String,
    /// The last four characters, so a person can tell keys apart.
    pub last4: String,
    /// When set, the key sees only these connections ("brand filtering").
    pub connections: Option<Vec<String>>,
    pub created_at: Millis,
    pub revoked_at: Option<Millis>,
}

impl FromDbRow for ApiKey {
    fn from_row(r: &impl DbRow) -> RowResult<Self> {
        let role: String = r.string("role")?;
        let connections = r
            .opt_string("connections")?
            .map(|s| serde_json::from_str(&s).unwrap_or_default());
        Ok(ApiKey {
            id: r.string("id")?,
            tenant_id: r.opt_string("tenant_id")?,
            role: role
                .parse()
                .map_err(|e: String| sqlx::Error::Decode(e.into()))?,
            name: r.string("name")?,
            last4: r.string("key_last4")?,
            connections,
            created_at: r.i64("created_at")?,
            revoked_at: r.opt_i64("revoked_at")?,
        })
    }
}

impl ApiKey {
    /// The rows this key may see. Only a platform key sees every tenant; any other key without
    /// a tenant (which the API never creates, but a hand-edited row could hold) sees nothing,
    /// so a missing tenant fails closed instead of widening the key to the whole platform.
    pub fn scope(&self) -> Scope {
        match (&self.role, &self.tenant_id) {
            (Role::Platform, _) => Scope::All,
            (_, Some(t)) => Scope::Tenant(t.clone()),
            (_, None) => Scope::Nothing,
        }
    }
}

/// The broadest keys a caller may see and revoke: those whose role is not above `role` and,
/// when `connections` is set, whose own connection list is a subset of it (an unrestricted key
/// is broader than any list).
#[derive(Debug, Clone, Copy)]
pub struct KeyBounds<'a> {
    pub role: Role,
    pub connections: Option<&'a [String]>,
}

impl<'a> KeyBounds<'a> {
    /// The bounds `key` sets for what it may see.
    pub fn of(key: &'a ApiKey) -> KeyBounds<'a> {
        KeyBounds {
            role: key.role,
            connections: key.connections.as_deref(),
        }
    }

    fn conditions(&self, backend: Backend, c: &mut Conditions) {
        let roles: Vec<String> = [Role::Viewer, Role::Operator, Role::Admin, Role::Platform]
            .into_iter()
            .filter(|r| *r <= self.role)
            .map(|r| r.as_str().to_string())
            .collect();
        c.and_in_list(backend, "role", &roles);
        if let Some(mine) = self.connections {
            let json = serde_json::to_string(mine).expect("strings serialize");
            let cond = match backend {
                Backend::Sqlite => "connections IS NOT NULL AND NOT EXISTS (SELECT 1 FROM json_each(connections) AS k WHERE k.value NOT IN (SELECT value FROM json_each(?)))",
                Backend::Postgres => "connections IS NOT NULL AND NOT EXISTS (SELECT 1 FROM json_array_elements_text(CAST(connections AS json)) AS k(v) WHERE k.v NOT IN (SELECT json_array_elements_text(CAST(? AS json))))",
            };
            c.and(cond, vec![Bind::Str(json)]);
        }
    }
}

/// Where a bootstrap platform key came from; stored in `api_keys.bootstrap` so a start can
/// find the keys it installed before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootstrapSource {
    /// `SYNCGUARD_BOOTSTRAP_KEY`: revoked once the variable names another key or none.
    Env,
    /// Generated for an empty store and shown once: kept until revoked through the API.
    Generated,
}

impl BootstrapSource {
    fn as_str(self) -> &'static str {
        match self {
            BootstrapSource::Env => "env",
            BootstrapSource::Generated => "generated",
        }
    }
}

/// What installing a bootstrap key did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootstrapInstall {
    /// A new key row; earlier bootstrap keys were revoked.
    Installed,
    /// The key was already there and live: nothing changed.
    Kept,
    /// The key was there and revoked: it stays revoked (revocation is never undone by a start).
    Revoked,
}

/// What a caller asks for when creating a key.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub id: Option<String>,
    pub tenant_id: Option<String>,
    pub role: Role,
    pub name: String,
    pub connections: Option<Vec<String>>,
}

const KEY_COLUMNS: &str =
    "id, tenant_id, role, name, key_last4, connections, created_at, revoked_at";

impl Store {
    /// Creates a tenant; a taken name is a conflict.
    pub async fn create_tenant(&self, name: &str, now: Millis) -> Result<Tenant> {
        self.create_tenant_audited(name, None, now).await
    }

    /// As [`Store::create_tenant`], writing `audit` (its tenant and target set to the new
    /// tenant) in the same transaction.
    pub async fn create_tenant_audited(
        &self,
        name: &str,
        audit: Option<NewAudit<'_>>,
        now: Millis,
    ) -> Result<Tenant> {
        let t = Tenant {
            id: new_id("ten", now),
            name: name.to_string(),
            created_at: now,
        };
        let audit = audit.map(|a| NewAudit {
            tenant_id: Some(&t.id),
            target: Some(&t.id),
            ..a
        });
        on_writer!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)")
                .bind(&t.id)
                .bind(&t.name)
                .bind(t.created_at)
                .execute(&mut *tx)
                .await
                .map_err(|e| match StoreError::from(e) {
                    StoreError::Conflict(_) => StoreError::Conflict(format!("a tenant named `{name}` already exists")),
                    other => other,
                })?;
            if let Some(a) = &audit {
                insert_audit!(&mut *tx, a, now)?;
            }
            tx.commit().await?;
        });
        Ok(t)
    }

    pub async fn get_tenant(&self, scope: &Scope, id: &str) -> Result<Option<Tenant>> {
        on_reader!(self, p => {
            let row = sqlx::query("SELECT id, name, created_at FROM tenants WHERE id = $1 AND (CAST($2 AS TEXT) IS NULL OR id = $2)")
                .bind(id)
                .bind(scope.tenant())
                .fetch_optional(p)
                .await?;
            Ok(row.as_ref().map(Tenant::from_row).transpose()?)
        })
    }

    pub async fn list_tenants(&self, scope: &Scope, page: &PageRequest) -> Result<Page<Tenant>> {
        let after = page
            .after
            .as_deref()
            .and_then(decode_cursor)
            .unwrap_or_default();
        on_reader!(self, p => {
            let rows = sqlx::query("SELECT id, name, created_at FROM tenants WHERE id > $1 AND (CAST($2 AS TEXT) IS NULL OR id = $2) ORDER BY id LIMIT $3")
                .bind(&after)
                .bind(scope.tenant())
                .bind(page.limit + 1)
                .fetch_all(p)
                .await?;
            let items = rows.iter().map(Tenant::from_row).collect::<RowResult<Vec<_>>>()?;
            Ok(Page::from_overfetch(items, page.limit, |t| t.id.clone()))
        })
    }

    /// Stores a new key and returns it with the clear key, which is never retrievable again.
    pub async fn create_api_key(
        &self,
        new: NewApiKey,
        clear_key: &str,
        now: Millis,
    ) -> Result<ApiKey> {
        self.create_api_key_audited(new, clear_key, None, now).await
    }

    /// As [`Store::create_api_key`], writing `audit` (its target set to the new key's id) in
    /// the same transaction.
    pub async fn create_api_key_audited(
        &self,
        new: NewApiKey,
        clear_key: &str,
        audit: Option<NewAudit<'_>>,
        now: Millis,
    ) -> Result<ApiKey> {
        let key = ApiKey {
            id: new.id.unwrap_or_else(|| new_id("key", now)),
            tenant_id: new.tenant_id,
            role: new.role,
            name: new.name,
            last4: last4(clear_key),
            connections: new.connections,
            created_at: now,
            revoked_at: None,
        };
        let connections = key
            .connections
            .as_ref()
            .map(|c| serde_json::to_string(c).expect("strings serialize"));
        let audit = audit.map(|a| NewAudit {
            target: Some(&key.id),
            ..a
        });
        on_writer!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query("INSERT INTO api_keys (id, tenant_id, role, name, key_hash, key_last4, connections, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
                .bind(&key.id)
                .bind(&key.tenant_id)
                .bind(key.role.as_str())
                .bind(&key.name)
                .bind(hash_api_key(clear_key))
                .bind(&key.last4)
                .bind(connections)
                .bind(key.created_at)
                .execute(&mut *tx)
                .await?;
            if let Some(a) = &audit {
                insert_audit!(&mut *tx, a, now)?;
            }
            tx.commit().await?;
        });
        Ok(key)
    }

    /// Installs the bootstrap platform key from the environment (see [`Self::install_bootstrap_key`]).
    pub async fn upsert_bootstrap_key(
        &self,
        clear_key: &str,
        now: Millis,
    ) -> Result<BootstrapInstall> {
        self.install_bootstrap_key(clear_key, BootstrapSource::Env, now)
            .await
    }

    /// Makes `clear_key` the live bootstrap platform key, unless it was revoked: a revoked key
    /// stays revoked across restarts. A key new to the store revokes every other live bootstrap
    /// key (the environment names exactly one; a generated one is replaced by it too), all in
    /// one transaction.
    pub async fn install_bootstrap_key(
        &self,
        clear_key: &str,
        source: BootstrapSource,
        now: Millis,
    ) -> Result<BootstrapInstall> {
        let hash = hash_api_key(clear_key);
        let outcome: Result<BootstrapInstall> = on_writer!(self, p => {
            let mut tx = p.begin().await?;
            let existing: Option<(Option<i64>,)> =
                sqlx::query_as("SELECT revoked_at FROM api_keys WHERE key_hash = $1")
                    .bind(&hash)
                    .fetch_optional(&mut *tx)
                    .await?;
            let outcome = match existing {
                Some((Some(_),)) => BootstrapInstall::Revoked,
                Some((None,)) => {
                    // A key from before bootstrap keys were marked is claimed by the variable
                    // that names it, so removing the variable later revokes it.
                    sqlx::query("UPDATE api_keys SET bootstrap = $1 WHERE key_hash = $2 AND bootstrap IS NOT NULL")
                        .bind(source.as_str())
                        .bind(&hash)
                        .execute(&mut *tx)
                        .await?;
                    BootstrapInstall::Kept
                }
                None => {
                    sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE bootstrap IS NOT NULL AND revoked_at IS NULL")
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("INSERT INTO api_keys (id, tenant_id, role, name, key_hash, key_last4, created_at, bootstrap) VALUES ($1, NULL, 'platform', 'bootstrap', $2, $3, $4, $5)")
                        .bind(new_id("key", now))
                        .bind(&hash)
                        .bind(last4(clear_key))
                        .bind(now)
                        .bind(source.as_str())
                        .execute(&mut *tx)
                        .await?;
                    BootstrapInstall::Installed
                }
            };
            tx.commit().await?;
            Ok(outcome)
        });
        match outcome {
            // Another node installed the same key at the same moment.
            Err(StoreError::Conflict(_)) => Ok(BootstrapInstall::Kept),
            other => other,
        }
    }

    /// Revokes every live bootstrap key installed from the environment (the variable was
    /// removed); returns how many. Generated keys stay.
    pub async fn revoke_env_bootstrap_keys(&self, now: Millis) -> Result<u64> {
        on_writer!(self, p => {
            let done = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE bootstrap = 'env' AND revoked_at IS NULL")
                .bind(now)
                .execute(p)
                .await?;
            Ok(done.rows_affected())
        })
    }

    /// How many keys exist at all, revoked or not (an empty store gets a generated bootstrap key).
    pub async fn count_api_keys(&self) -> Result<i64> {
        on_reader!(self, p => {
            let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM api_keys").fetch_one(p).await?;
            Ok(n)
        })
    }

    /// The live key whose clear text is `clear_key`, if any.
    pub async fn authenticate(&self, clear_key: &str) -> Result<Option<ApiKey>> {
        let hash = hash_api_key(clear_key);
        on_reader!(self, p => {
            let row = sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL"))
                .bind(hash)
                .fetch_optional(p)
                .await?;
            Ok(row.as_ref().map(ApiKey::from_row).transpose()?)
        })
    }

    pub async fn list_api_keys(&self, scope: &Scope, page: &PageRequest) -> Result<Page<ApiKey>> {
        self.list_api_keys_within(scope, None, page).await
    }

    /// The keys in `scope` no broader than `bounds` (every key in scope without bounds).
    pub async fn list_api_keys_within(
        &self,
        scope: &Scope,
        bounds: Option<KeyBounds<'_>>,
        page: &PageRequest,
    ) -> Result<Page<ApiKey>> {
        let mut c = self.key_conditions(scope, bounds);
        if let Some(after) = page.after.as_deref().and_then(decode_cursor) {
            c.and("id > ?", vec![Bind::Str(after)]);
        }
        let limit = c.push_bind(Bind::I64(page.limit + 1));
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM api_keys{} ORDER BY id LIMIT {limit}",
            c.where_clause()
        );
        on_reader!(self, p => {
            let rows = bind_all!(sqlx::query(&sql), &c.binds).fetch_all(p).await?;
            let items = rows.iter().map(ApiKey::from_row).collect::<RowResult<Vec<_>>>()?;
            Ok(Page::from_overfetch(items, page.limit, |k| k.id.clone()))
        })
    }

    fn key_conditions(&self, scope: &Scope, bounds: Option<KeyBounds<'_>>) -> Conditions {
        let mut c = Conditions::default();
        if let Some(t) = scope.tenant() {
            c.and("tenant_id = ?", vec![Bind::Str(t.to_string())]);
        }
        if let Some(b) = bounds {
            b.conditions(self.backend(), &mut c);
        }
        c
    }

    /// Revokes a key visible in `scope`; `NotFound` when there is none to revoke.
    pub async fn revoke_api_key(&self, scope: &Scope, id: &str, now: Millis) -> Result<ApiKey> {
        self.revoke_api_key_audited(scope, None, id, None, now)
            .await
    }

    /// Revokes a live key in `scope` no broader than `bounds` (`NotFound` otherwise), writing
    /// `audit` (its tenant set to the key's) in the same transaction.
    pub async fn revoke_api_key_audited(
        &self,
        scope: &Scope,
        bounds: Option<KeyBounds<'_>>,
        id: &str,
        audit: Option<NewAudit<'_>>,
        now: Millis,
    ) -> Result<ApiKey> {
        let mut c = self.key_conditions(scope, bounds);
        let set = c.push_bind(Bind::I64(now));
        c.and("id = ?", vec![Bind::Str(id.to_string())]);
        c.and("revoked_at IS NULL", vec![]);
        let sql = format!(
            "UPDATE api_keys SET revoked_at = {set}{} RETURNING {KEY_COLUMNS}",
            c.where_clause()
        );
        on_writer!(self, p => {
            let mut tx = p.begin().await?;
            let row = bind_all!(sqlx::query(&sql), &c.binds).fetch_optional(&mut *tx).await?;
            let key = row.as_ref().map(ApiKey::from_row).transpose()?.ok_or(StoreError::NotFound)?;
            if let Some(a) = audit {
                let a = NewAudit { tenant_id: key.tenant_id.as_deref(), ..a };
                insert_audit!(&mut *tx, &a, now)?;
            }
            tx.commit().await?;
            Ok(key)
        })
    }
}
