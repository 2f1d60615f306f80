//! `Idempotency-Key` after authentication, bound to the key, sealed at rest; and metric labels
//! that no request can multiply.

use crate::helpers::*;
use rand::Rng;
use reqwest::Method;
use serde_json::{json, Value};
use syncguard_store::Backend;

crate::on_both_stores!(
    idempotency_needs_a_live_key_before_anything_is_stored,
    idempotency_records_are_per_key_and_sealed,
);

async fn idempotency_needs_a_live_key_before_anything_is_stored(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let url = format!("{}/v1/tenants", app.url);
    let body = json!({ "name": "acme" });
    let unauthenticated = app
        .client
        .post(&url)
        .header("idempotency-key", "fresh-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    for (i, auth) in ["Bearer junk", "Bearer sg_live_nope", "Basic eDp5"]
        .iter()
        .enumerate()
    {
        let resp = app
            .client
            .post(&url)
            .header("authorization", *auth)
            .header("idempotency-key", format!("fresh-{}", i + 2))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{auth}");
    }
    assert_eq!(
        app.db.store.count_idempotency_keys().await.unwrap(),
        0,
        "no claim for a caller who is not one"
    );
    assert_eq!(
        app.get("/v1/tenants", PLATFORM_KEY).await.1["data"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    // A valid key does claim (the control that makes the zero above mean something).
    let (s, _) = send(
        app.req(Method::POST, "/v1/tenants", PLATFORM_KEY)
            .header("idempotency-key", "fresh-1")
            .json(&body),
    )
    .await;
    assert_eq!(s, 201);
    assert_eq!(app.db.store.count_idempotency_keys().await.unwrap(), 1);
    app.stop().await;
}

/// Creates a key through the API as `by`; returns (status, answer, replayed).
async fn create_key(app: &TestApp, by: &str, idem: &str, body: &Value) -> (u16, Value, bool) {
    let resp = app
        .req(Method::POST, "/v1/keys", by)
        .header("idempotency-key", idem)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let replayed = resp.headers().contains_key("idempotent-replayed");
    (status, resp.json().await.unwrap_or(Value::Null), replayed)
}

async fn idempotency_records_are_per_key_and_sealed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (s, t) = app
        .post("/v1/tenants", PLATFORM_KEY, json!({ "name": "acme" }))
        .await;
    assert_eq!(s, 201);
    let tenant = t["id"].as_str().unwrap().to_string();
    let mut admins = Vec::new();
    for name in ["a", "b"] {
        let (s, k) = app
            .post(
                "/v1/keys",
                PLATFORM_KEY,
                json!({ "tenant_id": tenant, "role": "admin", "name": name }),
            )
            .await;
        assert_eq!(s, 201);
        admins.push((
            k["id"].as_str().unwrap().to_string(),
            k["key"].as_str().unwrap().to_string(),
        ));
    }
    let (a_id, a) = admins[0].clone();
    let (_, b) = admins[1].clone();
    let body = json!({ "role": "viewer", "name": "ci" });

    let (s, first, replayed) = create_key(&app, &a, "mk-1", &body).await;
    assert_eq!((s, replayed), (201, false), "{first}");
    let minted = first["key"].as_str().unwrap().to_string();
    // At rest the stored answer is sealed: neither the new key nor any clear JSON.
    let stored = app
        .db
        .store
        .stored_idempotent(&a_id, "mk-1")
        .await
        .unwrap()
        .expect("the answer is stored under the key that asked");
    assert_eq!(stored.status, 201);
    let raw = &stored.body;
    let contains = |needle: &[u8]| raw.windows(needle.len()).any(|w| w == needle);
    assert!(
        !contains(minted.as_bytes()),
        "the new key is stored in clear"
    );
    assert!(!contains(b"sg_live_") && !contains(b"\"role\""));

    // The same key replays the same answer, the minted key included.
    let (s, again, replayed) = create_key(&app, &a, "mk-1", &body).await;
    assert_eq!((s, replayed), (201, true));
    assert_eq!(again, first);
    // Another API key with the same Idempotency-Key is another record: a fresh key.
    let (s, other, replayed) = create_key(&app, &b, "mk-1", &body).await;
    assert_eq!((s, replayed), (201, false), "{other}");
    assert_ne!(other["id"], first["id"]);
    // Same key, different body: 422.
    let (s, _, _) = create_key(&app, &a, "mk-1", &json!({ "role": "viewer", "name": "x" })).await;
    assert_eq!(s, 422);

    // Once the key is revoked, its stored answers are out of its reach.
    assert_eq!(
        app.delete(&format!("/v1/keys/{a_id}"), PLATFORM_KEY)
            .await
            .0,
        200
    );
    let (s, refused, replayed) = create_key(&app, &a, "mk-1", &body).await;
    assert_eq!((s, replayed), (401, false), "{refused}");
    assert!(!refused.to_string().contains(&minted));
    app.stop().await;
}

/// The `syncguard_http_request*` series on `/metrics`.
async fn http_series(app: &TestApp) -> Vec<String> {
    let text = app
        .client
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("syncguard_http_request"))
        .map(|l| {
            l.rsplit_once(' ')
                .map_or(l, |(series, _)| series)
                .to_string()
        })
        .collect()
}

fn random_word(rng: &mut impl Rng, len: usize) -> String {
    (0..len)
        .map(|_| rng.gen_range(b'A'..=b'Z') as char)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_methods_and_paths_add_no_metric_series() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let mut rng = rand::thread_rng();
    let request = |rng: &mut rand::rngs::ThreadRng| {
        // `X` first: never one of the standard methods.
        let method = format!("X{}", random_word(rng, 6));
        let path = if rng.gen_bool(0.5) {
            format!(
                "/v1/{}/{}",
                random_word(rng, 8).to_lowercase(),
                rng.gen::<u32>()
            )
        } else {
            format!("/{}", random_word(rng, 10).to_lowercase())
        };
        (Method::from_bytes(method.as_bytes()).unwrap(), path)
    };
    // One of each kind first, so that the series they belong to exist.
    for _ in 0..2 {
        let (m, p) = request(&mut rng);
        app.client
            .request(m, format!("{}{p}", app.url))
            .send()
            .await
            .unwrap();
    }
    // And one scrape, which is counted after it is answered.
    http_series(&app).await;
    let before = http_series(&app).await;
    let mut seen = Vec::new();
    for _ in 0..1_000 {
        let (m, p) = request(&mut rng);
        let resp = app
            .client
            .request(m.clone(), format!("{}{p}", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);
        seen.push((m, p));
    }
    let after = http_series(&app).await;
    assert_eq!(
        before.len(),
        after.len(),
        "new series: {:?}",
        after
            .iter()
            .filter(|s| !before.contains(s))
            .collect::<Vec<_>>()
    );
    assert!(after
        .iter()
        .any(|s| s.contains("method=\"other\"") && s.contains("route=\"unmatched\"")));
    for (m, p) in seen.iter().take(50) {
        assert!(
            !after
                .iter()
                .any(|s| s.contains(m.as_str()) || s.contains(p.as_str())),
            "{m} {p} reached a label"
        );
    }
    app.stop().await;
}
