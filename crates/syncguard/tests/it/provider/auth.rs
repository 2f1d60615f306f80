//! Authentication and credentials: an expired OAuth2 token is refreshed once and a second 401
//! is permanent; writes carry idempotency keys; ciphertexts hold no plaintext and
//! `syncguard secrets rotate` leaves every credential usable.

use super::*;
use crate::helpers::*;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use syncguard::app::App;
use syncguard::clock::SystemClock;
use syncguard_core::class::ErrorClass;
use syncguard_store::Backend;

crate::on_both_stores!(
    an_expired_oauth_token_is_refreshed_once_and_a_second_401_is_permanent,
    credentials_are_sealed_and_rotation_keeps_them_usable,
);

async fn an_expired_oauth_token_is_refreshed_once_and_a_second_401_is_permanent(backend: Backend) {
    let mock = mock(0.0, 5).await;
    mock.state()
        .set_inventory_item("SKU-1", json!({"product": {"title": "Mug"}}));
    // A provider that refuses every token it grants.
    let (grants, calls) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (g, c) = (grants.clone(), calls.clone());
    let refusing = serve(
        axum::Router::new()
            .route("/token", post(move || async move { axum::Json(json!({"access_token": format!("tok-{}", g.fetch_add(1, Ordering::SeqCst)), "expires_in": 3600})) }))
            .route("/items/{id}", get(move || async move { c.fetch_add(1, Ordering::SeqCst); StatusCode::UNAUTHORIZED })),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let oauth = "[auth]\ntype = \"oauth2\"\ntoken_url = \"/token\"\n";
    let keyed_ebay = include_str!("../../../../../providers/ebay.toml")
        .replace("name = \"ebay\"", "name = \"ebay_keyed\"")
        .replace("path = \"/sell/inventory/v1/inventory_item/{id}\"\n\n[writes.delete", "path = \"/sell/inventory/v1/inventory_item/{id}\"\nidempotency_header = \"Idempotency-Key\"\n\n[writes.delete");
    let files = definitions(&dir, &[
        ("refusing", format!("name = \"refusing\"\nbase_url = \"http://127.0.0.1:1\"\n{oauth}{LIMIT}[pagination]\nstyle = \"link\"\n[resources.items]\npath = \"/items\"\nget = \"/items/{{id}}\"\n")),
        ("ebay_keyed", keyed_ebay),
    ]);
    let app = spawn_with_definitions(backend, files).await;
    let (_, admin) = app.tenant_with_key("acme", "admin").await;
    let creds = json!({"client_id": "app-id", "client_secret": "app-secret", "refresh_token": "v^1.1#r^1#refresh"});
    let id = connect(
        &app,
        &admin,
        "ebay",
        creds.clone(),
        json!({"base_url": mock.base_url}),
    )
    .await;
    let ebay = client(&app.app, &id).await;
    let grants_at_mock = || {
        mock.stats()
            .by_endpoint
            .get("POST /identity/v1/oauth2/token")
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(
        ebay.get("inventory_item", "SKU-1").await.unwrap().unwrap()["sku"],
        "SKU-1"
    );
    assert_eq!(grants_at_mock(), 1);
    mock.state().expire_tokens();
    assert_eq!(
        ebay.get("inventory_item", "SKU-1").await.unwrap().unwrap()["sku"],
        "SKU-1",
        "refreshed once, then served"
    );
    assert_eq!(
        (grants_at_mock(), mock.stats().by_status.get("401").copied()),
        (2, Some(1))
    );
    assert!(
        ebay.get("inventory_item", "NOPE").await.unwrap().is_none(),
        "404 reads as absent"
    );
    assert_eq!(grants_at_mock(), 2, "the token is cached");
    // Writes, with the idempotency key where the definition names a header.
    let item = json!({"product": {"title": "Cup"}});
    let keyed = client(
        &app.app,
        &connect(
            &app,
            &admin,
            "ebay_keyed",
            creds,
            json!({"base_url": mock.base_url}),
        )
        .await,
    )
    .await;
    assert_eq!(
        keyed
            .write("upsert_inventory_item", "SKU-2", Some(&item), Some("pub-1"))
            .await
            .unwrap()
            .status,
        201
    );
    assert_eq!(
        keyed
            .write("upsert_inventory_item", "SKU-2", Some(&item), Some("pub-1"))
            .await
            .unwrap()
            .status,
        201,
        "replayed"
    );
    assert_eq!(
        (mock.stats().writes_applied, mock.stats().duplicate_writes),
        (1, 1)
    );
    assert_eq!(
        ebay.write("delete_inventory_item", "SKU-2", None, None)
            .await
            .unwrap()
            .status,
        204
    );
    assert_eq!(
        ebay.write("delete_inventory_item", "SKU-2", None, None)
            .await
            .unwrap()
            .status,
        404,
        "a repeated delete succeeds"
    );
    assert_eq!(
        ebay.write("nope", "x", None, None).await.unwrap_err().class,
        ErrorClass::Permanent
    );
    // A second 401, after one refresh, is permanent.
    let id = connect(
        &app,
        &admin,
        "refusing",
        json!({"client_id": "a", "client_secret": "b"}),
        json!({"base_url": refusing}),
    )
    .await;
    let e = client(&app.app, &id)
        .await
        .get("items", "x")
        .await
        .unwrap_err();
    assert_eq!(
        (e.class, e.status),
        (ErrorClass::Permanent, Some(401)),
        "{e}"
    );
    assert!(e.message.contains("after refreshing the token"), "{e}");
    assert_eq!(
        (grants.load(Ordering::SeqCst), calls.load(Ordering::SeqCst)),
        (2, 2)
    );
    app.stop().await;
    mock.shutdown().await;
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Runs `syncguard secrets rotate` as a real process with `key` as the current master key.
/// The store and the old key come from flags, or with `via_config` from a configuration file
/// named by the global `--config` (outside the working directory, so only the flag finds it).
async fn rotate(
    db_url: &str,
    key: &str,
    previous_file: &std::path::Path,
    dry_run: bool,
    via_config: bool,
) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let config = elsewhere.path().join("syncguard.toml");
    let old_key = std::fs::read_to_string(previous_file).unwrap();
    std::fs::write(
        &config,
        format!(
            "database_url = \"{db_url}\"\nprevious_master_keys = [\"{}\"]\n",
            old_key.trim()
        ),
    )
    .unwrap();
    let mut args = vec!["secrets", "rotate", "--json"];
    if via_config {
        args.extend(["--config", config.to_str().unwrap()]);
    } else {
        args.extend([
            "--database-url",
            db_url,
            "--previous-key-file",
            previous_file.to_str().unwrap(),
        ]);
    }
    if dry_run {
        args.push("--dry-run");
    }
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_syncguard"))
        .args(&args)
        .env("SYNCGUARD_MASTER_KEY", key)
        .env_remove("SYNCGUARD_CONFIG")
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "rotate failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

async fn credentials_are_sealed_and_rotation_keeps_them_usable(backend: Backend) {
    use syncguard_core::seal::{MasterKey, Sealer};
    let mock = mock(0.0, 5).await;
    let app = TestApp::spawn(backend).await;
    let (_, admin) = app.tenant_with_key("acme", "admin").await;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let config = json!({"base_url": mock.base_url, "webhook": {"secrets": [secret]}});
    let id = connect(&app, &admin, "trackstar", trackstar_creds(), config).await;
    let plain = [
        "tsk_test_key_000001",
        "tat_test_token_000001",
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    ];
    let sealed = app.db.store.connection_secrets(&id).await.unwrap().unwrap();
    for bytes in [
        sealed.credentials.as_ref().unwrap(),
        sealed.webhook_secrets.as_ref().unwrap(),
    ] {
        let text = String::from_utf8_lossy(bytes);
        assert!(
            plain
                .iter()
                .all(|p| !text.contains(p) && !text.contains(&p[..8])),
            "plaintext in a ciphertext"
        );
    }
    let (_, view) = app.get(&format!("/v1/connections/{id}"), &admin).await;
    assert!(
        plain.iter().all(|p| !view.to_string().contains(p)),
        "{view}"
    );

    let dir = tempfile::tempdir().unwrap();
    let old_file = dir.path().join("old.key");
    std::fs::write(&old_file, b64(&[7u8; 32])).unwrap();
    let new_key = b64(&[9u8; 32]);
    let report = rotate(&app.db.url, &new_key, &old_file, false, false).await;
    assert_eq!(
        (
            report["connections"].as_u64(),
            report["resealed"].as_u64(),
            report["failed"].as_array().map(Vec::len)
        ),
        (Some(1), Some(1), Some(0)),
        "{report}"
    );
    let report = rotate(&app.db.url, &new_key, &old_file, true, true).await;
    assert_eq!(
        (report["resealed"].as_u64(), report["current"].as_u64()),
        (Some(0), Some(1)),
        "{report}"
    );

    // Only the new key is needed now.
    let new_only = Sealer::new(MasterKey::from_base64(&new_key).unwrap(), vec![]);
    let sealed = app.db.store.connection_secrets(&id).await.unwrap().unwrap();
    let creds: Value = serde_json::from_slice(
        &new_only
            .open(sealed.credentials.as_ref().unwrap(), &id)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(creds, trackstar_creds());
    let hooks: Value = serde_json::from_slice(
        &new_only
            .open(sealed.webhook_secrets.as_ref().unwrap(), &id)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(hooks, json!([secret]));
    let store = syncguard_store::Store::connect(&app.db.url, &Default::default())
        .await
        .unwrap();
    let node = App::new(test_config(&app.db), store, Arc::new(SystemClock), new_only).unwrap();
    assert_eq!(
        client(&node, &id)
            .await
            .list_page("orders", None, None)
            .await
            .unwrap()
            .items
            .len(),
        5
    );
    // A node without the new key cannot open them (and says so, without the secret).
    let e = app
        .app
        .providers
        .client_by_id(&app.app, &id)
        .await
        .err()
        .unwrap();
    assert_eq!(e.class, ErrorClass::Permanent);
    assert!(
        e.message.contains("cannot be opened") && plain.iter().all(|p| !e.message.contains(p)),
        "{e}"
    );
    app.stop().await;
    mock.shutdown().await;
}
