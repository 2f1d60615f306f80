//! The run's tenant and connections: a Trackstar-shaped connection fed by webhooks and syncs,
//! an eBay-shaped one for publishes, and optionally many more connections for memory figures.

use super::traffic::{Api, MockControl};
use super::{verify, ChaosArgs};
use base64::Engine;
use futures::StreamExt;
use rand::RngCore;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

pub(super) struct Setup {
    pub(super) tenant: String,
    pub(super) wms: String,
    pub(super) ebay: String,
    pub(super) secret: String,
}

fn random_b64(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn wms_connection(
    tenant: &str,
    name: &str,
    mock: &str,
    secret: &str,
    token: &str,
    sync_interval_s: u64,
) -> Value {
    json!({
        "tenant_id": tenant, "provider": "trackstar", "name": name,
        "credentials": {"api_key": "chaos_account", "access_token": token},
        "config": {
            "base_url": mock, "sync_interval_s": sync_interval_s,
            "webhook": {"secrets": [secret]},
            // Outages open the breaker; a short open period lets the run see it close again.
            "circuit": {"open_for_s": 10},
        },
    })
}

pub(super) async fn setup(api: &Api, mc: &MockControl, args: &ChaosArgs) -> anyhow::Result<Setup> {
    let tenant = api
        .post("/v1/tenants", json!({"name": "chaos-3pl"}))
        .await?["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let secret = format!("whsec_{}", random_b64(24));
    let wms = api
        .post(
            "/v1/connections",
            wms_connection(
                &tenant,
                "brand_chaos",
                mc.url(),
                &secret,
                "chaos_token_main",
                60,
            ),
        )
        .await?["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let ebay = api
        .post(
            "/v1/connections",
            json!({
                "tenant_id": tenant, "provider": "ebay", "name": "ebay_chaos",
                "credentials": {"client_id": "chaos-app", "client_secret": "chaos-secret", "refresh_token": "v^1.1#chaos"},
                "config": {"base_url": mc.url(), "circuit": {"open_for_s": 10}},
            }),
        )
        .await?["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let cps = api
            .get(&format!("/v1/connections/{wms}/checkpoints"))
            .await?["data"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if cps.len() == verify::WMS_RESOURCES.len()
            && cps.iter().all(|c| c["backfill_done"] == true)
        {
            break;
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "the backfill of {} objects did not finish in 120 s: {cps:?}",
                args.records * 4
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(Setup {
        tenant,
        wms,
        ebay,
        secret,
    })
}

/// Creates `n` more Trackstar connections (each its own access token, so its own rate-limit
/// bucket at the provider) and waits for their backfills.
pub(super) async fn many_connections(
    api: &Api,
    mc: &MockControl,
    tenant: &str,
    n: usize,
    say: &impl Fn(&str),
) -> anyhow::Result<()> {
    say(&format!("creating {n} more connections"));
    let secret = format!("whsec_{}", random_b64(24));
    // Sixteen creations in flight: a thousand one after the other would take minutes.
    let created = futures::stream::iter(0..n)
        .map(|i| {
            let body = wms_connection(
                tenant,
                &format!("brand_{i:05}"),
                mc.url(),
                &secret,
                &format!("chaos_token_{i:05}"),
                300,
            );
            async move { create(api, &body).await }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    for c in created {
        c?;
    }
    say(&format!(
        "{n} connections created; waiting for their backfills"
    ));
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let now = verify::now_ms();
        let mut due = api.list_all("/v1/jobs?state=running").await?.len();
        for state in ["available", "retryable"] {
            due += api
                .list_all(&format!("/v1/jobs?state={state}"))
                .await?
                .iter()
                .filter(|j| {
                    j["run_at"]
                        .as_str()
                        .and_then(syncguard_mock::parse_rfc3339)
                        .is_some_and(|t| t <= now)
                })
                .count();
        }
        if due == 0 || Instant::now() > deadline {
            say(&format!("backfills settled ({due} jobs still queued)"));
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Creates a connection; a 409 means an earlier attempt whose answer was lost created it.
async fn create(api: &Api, body: &Value) -> anyhow::Result<()> {
    for _ in 0..120 {
        match api
            .call(reqwest::Method::POST, "/v1/connections", Some(body))
            .await
        {
            super::traffic::Answer::Got(s, _) if (200..300).contains(&s) || s == 409 => {
                return Ok(())
            }
            super::traffic::Answer::Got(s, v) if s < 500 => {
                anyhow::bail!("creating a connection answered {s}: {v}")
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    anyhow::bail!("creating a connection kept failing")
}
