//! Sealed credentials (SPEC §3.3): connections' credentials and webhook secrets are stored
//! sealed (XChaCha20-Poly1305, bound to the connection id, naming the key that sealed them) and
//! opened only for the call that needs them. Nothing here logs or returns a secret.
//!
//! Key rotation re-seals every stored secret under the current master key; see
//! `syncguard secrets rotate --help` for the procedure.

use super::auth::Credentials;
use super::error::ProviderError;
use super::ProviderCtx;
use serde::Serialize;
use syncguard_core::seal::Sealer;
use syncguard_store::connections::SealedSecrets;
use syncguard_store::{Millis, Store, StoreError};

/// Opens a connection's credentials (an empty set when it has none).
pub(crate) async fn open(
    app: &ProviderCtx,
    connection_id: &str,
) -> Result<Credentials, ProviderError> {
    let sealed = app
        .store
        .connection_secrets(connection_id)
        .await
        .map_err(ProviderError::store)?;
    match sealed.and_then(|s| s.credentials) {
        None => Ok(Credentials::empty()),
        Some(bytes) => {
            let plain = app.sealer.open(&bytes, connection_id).map_err(|e| {
                // UnknownKey: a node started without the key in `previous_master_keys`.
                ProviderError::permanent(format!(
                    "credentials of {connection_id} cannot be opened: {e}"
                ))
            })?;
            Credentials::from_json(&plain)
        }
    }
}

/// What a rotation did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ResealReport {
    /// Connections holding any sealed secret.
    pub connections: usize,
    /// Connections whose secrets were re-sealed under the current key (or would be, in a dry
    /// run).
    pub resealed: usize,
    /// Connections already sealed under the current key.
    pub current: usize,
    /// Connections that could not be opened, with why (a key missing from
    /// `previous_master_keys`, a damaged value). Their secrets are left as they were.
    pub failed: Vec<Failure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub connection_id: String,
    pub error: String,
}

/// How often one connection is re-read when its secrets change under the rotation.
const ATTEMPTS: usize = 3;

/// Re-seals every stored secret that is not sealed under `sealer`'s current key. Safe while
/// nodes serve: each row is replaced only if it still holds what was read, and a node holding
/// the old key as a previous key opens both old and new values.
pub async fn reseal_all(
    store: &Store,
    sealer: &Sealer,
    dry_run: bool,
    now: Millis,
) -> Result<ResealReport, StoreError> {
    let ids = store.connections_with_secrets().await?;
    let mut report = ResealReport {
        connections: ids.len(),
        ..Default::default()
    };
    for id in ids {
        let mut outcome = Outcome::Changed;
        for _ in 0..ATTEMPTS {
            let Some(old) = store.connection_secrets(&id).await? else {
                outcome = Outcome::Current; // deleted meanwhile: nothing left to rotate
                break;
            };
            outcome = match reseal(sealer, &id, &old) {
                Err(error) => Outcome::Failed(error),
                Ok(None) => Outcome::Current,
                Ok(Some(_)) if dry_run => Outcome::Resealed,
                Ok(Some(new)) => match store
                    .replace_connection_secrets_if_unchanged(&id, &old, &new, now)
                    .await?
                {
                    true => Outcome::Resealed,
                    false => Outcome::Changed,
                },
            };
            if outcome != Outcome::Changed {
                break;
            }
        }
        match outcome {
            Outcome::Resealed => report.resealed += 1,
            Outcome::Current => report.current += 1,
            Outcome::Failed(error) => report.failed.push(Failure {
                connection_id: id,
                error,
            }),
            Outcome::Changed => report.failed.push(Failure {
                connection_id: id,
                error: "its secrets kept changing during the rotation; run it again".into(),
            }),
        }
    }
    Ok(report)
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Resealed,
    Current,
    Changed,
    Failed(String),
}

/// The secrets re-sealed under the current key, or `None` when they already are.
fn reseal(sealer: &Sealer, id: &str, old: &SealedSecrets) -> Result<Option<SealedSecrets>, String> {
    let stale = |v: &Option<Vec<u8>>| v.as_ref().is_some_and(|b| sealer.is_stale(b));
    if !stale(&old.credentials) && !stale(&old.webhook_secrets) {
        return Ok(None);
    }
    let again = |v: &Option<Vec<u8>>, what: &str| -> Result<Option<Vec<u8>>, String> {
        match v {
            Some(b) if sealer.is_stale(b) => {
                let plain = sealer.open(b, id).map_err(|e| format!("{what}: {e}"))?;
                Ok(Some(sealer.seal(&plain, id, &mut rand::rngs::OsRng)))
            }
            other => Ok(other.clone()),
        }
    };
    Ok(Some(SealedSecrets {
        credentials: again(&old.credentials, "credentials")?,
        webhook_secrets: again(&old.webhook_secrets, "webhook secrets")?,
    }))
}
