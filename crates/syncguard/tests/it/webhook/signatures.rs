//! Every signature scheme of SPEC §3.2 accepts what it should and refuses the rest with a 401
//! that stores nothing; rotation windows; unsigned deliveries outside production only.

use super::*;
use syncguard::app::Handlers;
use syncguard::config::Environment;
use syncguard_core::signature::{
    generate_standard_keypair, sign_github, sign_hmac, sign_shopify, sign_standard_ed25519,
    sign_stripe, Encoding,
};
use syncguard_store::connections::{NewConnection, SealedSecrets};

crate::on_both_stores!(
    every_scheme_accepts_valid_and_refuses_bad_signatures,
    old_and_new_secrets_both_verify_until_the_old_is_removed,
    unsigned_deliveries_only_outside_production,
);

/// Headers of a delivery signed by (secret, delivery id, timestamp, body).
type Signer = fn(&str, &str, i64, &[u8]) -> Vec<(String, String)>;

/// How one scheme signs; each call returns the headers for a delivery.
struct Scheme {
    name: &'static str,
    /// The connection's `config.webhook`.
    config: Value,
    sign: Signer,
    /// The secret the connection holds, and the one a sender uses (they differ for ed25519).
    verify_secret: String,
    sign_secret: String,
    /// A different sender secret that must not verify.
    wrong_secret: String,
    signature_header: &'static str,
    malformed: &'static str,
    timestamped: bool,
}

fn h(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn schemes() -> Vec<Scheme> {
    let (whsk, whpk) = generate_standard_keypair(&mut rand::rngs::OsRng);
    let (other_whsk, _) = generate_standard_keypair(&mut rand::rngs::OsRng);
    let plain = |name, config: Value, sign, header, malformed, timestamped| Scheme {
        name,
        config,
        sign,
        verify_secret: "s3cret-one".into(),
        sign_secret: "s3cret-one".into(),
        wrong_secret: "s3cret-two".into(),
        signature_header: header,
        malformed,
        timestamped,
    };
    vec![
        Scheme {
            verify_secret: SECRET.into(),
            sign_secret: SECRET.into(),
            wrong_secret: "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD".into(),
            ..plain(
                "standard",
                json!({}),
                |s, id, ts, b| {
                    h(&[
                        ("webhook-id", id.into()),
                        ("webhook-timestamp", ts.to_string()),
                        ("webhook-signature", sign_standard(s, id, ts, b)),
                    ])
                },
                "webhook-signature",
                "v1,not-base64!",
                true,
            )
        },
        Scheme {
            verify_secret: whpk,
            sign_secret: whsk,
            wrong_secret: other_whsk,
            ..plain(
                "standard-ed25519",
                json!({}),
                |s, id, ts, b| {
                    // The svix- twins of the headers are accepted too.
                    h(&[
                        ("svix-id", id.into()),
                        ("svix-timestamp", ts.to_string()),
                        (
                            "svix-signature",
                            sign_standard_ed25519(s, id, ts, b).unwrap(),
                        ),
                    ])
                },
                "svix-signature",
                "v1a,AAAA",
                true,
            )
        },
        plain(
            "stripe",
            json!({ "scheme": "stripe" }),
            |s, _, ts, b| h(&[("stripe-signature", sign_stripe(s, ts, b))]),
            "stripe-signature",
            "t=yesterday,v1=00",
            true,
        ),
        plain(
            "shopify",
            json!({ "scheme": "shopify" }),
            |s, id, _, b| {
                h(&[
                    ("x-shopify-hmac-sha256", sign_shopify(s, b)),
                    ("x-shopify-webhook-id", id.into()),
                    ("x-shopify-topic", "orders/create".into()),
                ])
            },
            "x-shopify-hmac-sha256",
            "%%%",
            false,
        ),
        plain(
            "github",
            json!({ "scheme": "github" }),
            |s, id, _, b| {
                h(&[
                    ("x-hub-signature-256", sign_github(s, b)),
                    ("x-github-delivery", id.into()),
                    ("x-github-event", "push".into()),
                ])
            },
            "x-hub-signature-256",
            "sha1=abc",
            false,
        ),
        plain(
            "hmac-sha256 hex",
            json!({ "scheme": "hmac-sha256", "header": "X-Signature", "prefix": "sha256=" }),
            |s, _, _, b| {
                h(&[(
                    "x-signature",
                    format!("sha256={}", sign_hmac(s, b, Encoding::Hex)),
                )])
            },
            "x-signature",
            "sha256=zz",
            false,
        ),
        plain(
            "hmac-sha256 base64",
            json!({ "scheme": "hmac-sha256", "header": "x-sig", "encoding": "base64" }),
            |s, _, _, b| h(&[("x-sig", sign_hmac(s, b, Encoding::Base64))]),
            "x-sig",
            "***",
            false,
        ),
    ]
}

async fn every_scheme_accepts_valid_and_refuses_bad_signatures(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_t, admin) = app.tenant_with_key("acme", "admin").await;
    let (mut bad, mut stale) = (0, 0);
    for (i, scheme) in schemes().into_iter().enumerate() {
        let mut config = scheme.config.clone();
        config["secrets"] = json!([scheme.verify_secret]);
        let conn = connection(&app, &admin, &format!("brand_{i}"), config).await;
        let body = ping_body(i);
        let sign = |secret: &str, ts: i64, body: &[u8]| {
            (scheme.sign)(secret, &format!("msg_{i}"), ts, body)
        };
        let (s, ack) = deliver(
            &app,
            &conn,
            &sign(&scheme.sign_secret, now_s(), &body),
            body.clone(),
        )
        .await;
        assert_eq!(s, 202, "{}: {ack}", scheme.name);

        let mut tampered = body.clone();
        tampered[2] ^= 1;
        let mut cases = vec![
            (
                "tampered body",
                sign(&scheme.sign_secret, now_s(), &body),
                tampered,
            ),
            (
                "wrong secret",
                sign(&scheme.wrong_secret, now_s(), &body),
                body.clone(),
            ),
        ];
        let mut missing = sign(&scheme.sign_secret, now_s(), &body);
        missing.retain(|(k, _)| k != scheme.signature_header);
        cases.push(("missing header", missing, body.clone()));
        let mut malformed = sign(&scheme.sign_secret, now_s(), &body);
        for (k, v) in malformed.iter_mut() {
            if k == scheme.signature_header {
                *v = scheme.malformed.into();
            }
        }
        cases.push(("malformed header", malformed, body.clone()));
        bad += cases.len();
        if scheme.timestamped {
            cases.push((
                "stale timestamp",
                sign(&scheme.sign_secret, now_s() - 400, &body),
                body.clone(),
            ));
            cases.push((
                "future timestamp",
                sign(&scheme.sign_secret, now_s() + 400, &body),
                body.clone(),
            ));
            stale += 2;
        }
        for (what, headers, body) in cases {
            let (s, problem) = deliver(&app, &conn, &headers, body).await;
            assert_eq!(s, 401, "{} / {what}: {problem}", scheme.name);
            assert_eq!(problem["status"], 401);
            if what.contains("timestamp") {
                assert!(
                    problem["detail"].as_str().unwrap().contains("tolerance"),
                    "{problem}"
                );
            }
        }
        let events = stored(&app, &conn).await;
        assert_eq!(
            events.len(),
            1,
            "{}: only the valid delivery is stored",
            scheme.name
        );
        assert_eq!(
            process_jobs(&app, &conn).await.len(),
            1,
            "{}: and only it is processed",
            scheme.name
        );
    }
    assert_eq!(
        received_total(&app, "trackstar", "bad_signature").await,
        bad as u64
    );
    assert_eq!(
        received_total(&app, "trackstar", "stale").await,
        stale as u64
    );
    assert_eq!(
        received_total(&app, "trackstar", "accepted").await,
        schemes().len() as u64
    );
    app.stop().await;
}

async fn old_and_new_secrets_both_verify_until_the_old_is_removed(backend: Backend) {
    const NEW: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let app = TestApp::spawn(backend).await;
    let (_t, _admin, conn) = hooked(&app, "acme", json!({ "secrets": [SECRET, NEW] })).await;
    for (n, secret) in [SECRET, NEW].into_iter().enumerate() {
        let body = ping_body(n);
        let (s, ack) = deliver(
            &app,
            &conn,
            &standard_headers(secret, &format!("msg_{n}"), &body),
            body,
        )
        .await;
        assert_eq!(s, 202, "secret {n}: {ack}");
    }
    let signatures: Vec<String> = stored(&app, &conn)
        .await
        .into_iter()
        .map(|e| e.signature)
        .collect();
    assert_eq!(
        signatures,
        ["standard:secret[1]", "standard:secret[0]"],
        "which secret matched is recorded"
    );
    // The rotation ends: only the new secret stays (as a PATCH of the connection would store
    // it), and the gateway is told.
    let sealed = app.app.sealer.seal(
        json!([NEW]).to_string().as_bytes(),
        &conn,
        &mut rand::rngs::OsRng,
    );
    let secrets = SealedSecrets {
        credentials: None,
        webhook_secrets: Some(sealed),
    };
    app.db
        .store
        .set_connection_secrets(&conn, &secrets, now_s() * 1000)
        .await
        .unwrap();
    app.app.webhooks.invalidate(&conn);
    let body = ping_body(10);
    assert_eq!(
        deliver(
            &app,
            &conn,
            &standard_headers(SECRET, "msg_10", &body),
            body.clone()
        )
        .await
        .0,
        401,
        "the old secret is gone"
    );
    assert_eq!(
        deliver(&app, &conn, &standard_headers(NEW, "msg_11", &body), body)
            .await
            .0,
        202
    );
    app.stop().await;
}

/// A connection that accepts unsigned deliveries, written straight to the store: the API does
/// not accept `allow_unsigned` yet (see the report).
async fn unsigned_connection(app: &TestApp) -> String {
    let t = app
        .db
        .store
        .create_tenant("dev", now_s() * 1000)
        .await
        .unwrap();
    let id = syncguard::clock::new_id("con");
    let c = NewConnection {
        id: id.clone(),
        tenant_id: t.id,
        provider: "trackstar".into(),
        name: "local".into(),
        status: "active".into(),
        config: json!({ "webhook": { "allow_unsigned": true, "secret_count": 0 } }),
        credentials: None,
        webhook_secrets: None,
    };
    app.db
        .store
        .create_connection(c, now_s() * 1000)
        .await
        .unwrap();
    id
}

async fn unsigned_deliveries_only_outside_production(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let conn = unsigned_connection(&app).await;
    let (s, ack) = deliver(
        &app,
        &conn,
        &[("webhook-id".into(), "msg_dev".into())],
        ping_body(1),
    )
    .await;
    assert_eq!(s, 202, "{ack}");
    let e = &stored(&app, &conn).await[0];
    assert!(e.signature.starts_with("unsigned"), "{}", e.signature);
    assert_eq!(e.delivery_id.as_deref(), Some("msg_dev"));
    assert_eq!(
        metric(
            &app,
            "syncguard_webhooks_unsigned_total",
            &[("provider", "trackstar")]
        )
        .await,
        1
    );
    app.stop().await;

    let clock = std::sync::Arc::new(syncguard::clock::SystemClock);
    let prod = TestApp::spawn_with(
        backend,
        |c| c.environment = Environment::Production,
        clock,
        Handlers::builtin(),
    )
    .await;
    let conn = unsigned_connection(&prod).await;
    let (s, problem) = deliver(&prod, &conn, &[], ping_body(1)).await;
    assert_eq!(s, 401, "refused in production: {problem}");
    assert!(stored(&prod, &conn).await.is_empty());
    assert_eq!(received_total(&prod, "trackstar", "bad_signature").await, 1);
    prod.stop().await;
}
