//! The egress policy from outside: unsafe base URLs refused at creation and change (422 naming
//! `config.base_url`), loopback refused in production unless allowlisted (at creation and at
//! call time, literal or resolved), external ids kept in their path segment, and answers over
//! the size limit refused without being read whole.

use super::*;
use crate::helpers::*;
use axum::extract::Request;
use axum::routing::get;
use futures::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use syncguard::app::App;
use syncguard::app::Handlers;
use syncguard::clock::SystemClock;
use syncguard::config::{Config, Environment};
use syncguard_core::class::ErrorClass;
use syncguard_store::Backend;

crate::on_both_stores!(
    unsafe_base_urls_are_refused_at_creation_and_change,
    production_refuses_internal_addresses_unless_allowlisted,
    external_ids_stay_in_their_path_segment,
    answers_over_the_limit_are_refused_without_reading_them_whole,
);

fn production(allow: &[&str]) -> impl FnOnce(&mut Config) {
    let allow: Vec<String> = allow.iter().map(|s| s.to_string()).collect();
    move |c| {
        c.environment = Environment::Production;
        c.egress.allow = allow;
    }
}

async fn create(app: &TestApp, admin: &str, config: Value) -> (u16, Value) {
    let name = format!("c_{}", uuid::Uuid::new_v4().simple());
    let body = json!({"provider": "trackstar", "name": name, "credentials": trackstar_creds(), "config": config});
    app.post("/v1/connections", admin, body).await
}

fn names_base_url(status: u16, problem: &Value) -> bool {
    status == 422
        && problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("config.base_url"))
}

async fn unsafe_base_urls_are_refused_at_creation_and_change(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, admin) = app.tenant_with_key("acme", "admin").await;
    for bad in [
        "http://169.254.169.254/",
        "http://169.254.169.254/latest/meta-data/iam/",
        "http://[::ffff:169.254.169.254]/",
        "http://[fd00:ec2::254]/",
        "http://100.100.100.200/",
        "http://0.0.0.0:8080/",
        "https://api.example.com/?redirect=http://169.254.169.254",
        "https://api.example.com/#frag",
        "https://user:pw@api.example.com/",
        "gopher://api.example.com/",
    ] {
        let (s, p) = create(&app, &admin, json!({"base_url": bad, "resources": []})).await;
        assert!(names_base_url(s, &p), "{bad}: {s} {p}");
    }
    let (s, p) = app
        .post(
            "/v1/connections/link-token",
            &admin,
            json!({"provider": "trackstar", "credentials": {"api_key": "k"}, "config": {"base_url": "http://169.254.169.254"}}),
        )
        .await;
    assert!(names_base_url(s, &p), "link token: {s} {p}");
    // Nothing was created.
    let (_, list) = app.get("/v1/connections", &admin).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0, "{list}");

    // A change to a refused URL is refused too, and changes nothing.
    let good = json!({"base_url": "https://sandbox.example.com/v1", "resources": []});
    let (s, c) = create(&app, &admin, good).await;
    assert_eq!(s, 201, "{c}");
    let id = c["id"].as_str().unwrap();
    for bad in [
        "http://169.254.169.254/",
        "https://sandbox.example.com/v1?x=1",
    ] {
        let patch = app
            .req(Method::PATCH, &format!("/v1/connections/{id}"), &admin)
            .json(&json!({"config": {"base_url": bad}}));
        let (s, p) = send(patch).await;
        assert!(names_base_url(s, &p), "patch {bad}: {s} {p}");
    }
    let (_, now) = app.get(&format!("/v1/connections/{id}"), &admin).await;
    assert_eq!(
        now["config"]["base_url"], "https://sandbox.example.com/v1",
        "{now}"
    );
    app.stop().await;
}

async fn production_refuses_internal_addresses_unless_allowlisted(backend: Backend) {
    let mock = mock(0.0, 3).await;
    let clock = || Arc::new(SystemClock);
    let app = TestApp::spawn_with(backend, production(&[]), clock(), Handlers::builtin()).await;
    let (_, admin) = app.tenant_with_key("acme", "admin").await;
    // A literal loopback address is refused when the connection is made.
    let (s, p) = create(
        &app,
        &admin,
        json!({"base_url": mock.base_url, "resources": []}),
    )
    .await;
    assert!(names_base_url(s, &p), "{s} {p}");
    assert!(
        p["detail"].as_str().unwrap().contains("egress.allow"),
        "{p}"
    );
    // A name can only be judged by its addresses, at call time: `localhost` resolves to
    // loopback, so no call leaves.
    let by_name = mock.base_url.replace("127.0.0.1", "localhost");
    let id = connect(
        &app,
        &admin,
        "trackstar",
        trackstar_creds(),
        json!({"base_url": by_name}),
    )
    .await;
    let e = client(&app.app, &id)
        .await
        .list_page("orders", None, None)
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Permanent, "{e}");
    assert!(
        e.message.contains("egress policy") && e.message.contains("loopback"),
        "{e}"
    );
    assert_eq!(mock.stats().requests_total, 0, "no call reached the mock");
    app.stop().await;

    // Allowlisted, the same addresses are reached, by address and by name.
    let allow = ["127.0.0.0/8", "localhost"];
    let app = TestApp::spawn_with(backend, production(&allow), clock(), Handlers::builtin()).await;
    let (_, admin) = app.tenant_with_key("acme", "admin").await;
    let orders = mock.state().records("orders").unwrap().len();
    let literal = connect(
        &app,
        &admin,
        "trackstar",
        trackstar_creds(),
        json!({"base_url": mock.base_url}),
    )
    .await;
    let named = connect(
        &app,
        &admin,
        "trackstar",
        trackstar_creds(),
        json!({"base_url": by_name}),
    )
    .await;
    for id in [&literal, &named] {
        let page = client(&app.app, id)
            .await
            .list_page("orders", None, None)
            .await
            .unwrap();
        assert_eq!(page.items.len(), orders);
    }
    assert_eq!(mock.stats().requests_total, 2);
    // The policy is applied again at call time: a node without the allowlist refuses the
    // connection made under it, before anything leaves.
    let strict = App::new(
        {
            let mut c = test_config(&app.db);
            production(&[])(&mut c);
            c
        },
        app.db.store.clone(),
        clock(),
        test_sealer(),
    )
    .unwrap();
    let e = match strict.providers.client_by_id(&strict, &literal).await {
        Ok(_) => panic!("a refused base URL gave a client"),
        Err(e) => e,
    };
    assert_eq!(e.class, ErrorClass::Permanent, "{e}");
    assert!(e.message.contains("egress"), "{e}");
    assert_eq!(mock.stats().requests_total, 2);
    app.stop().await;
    mock.shutdown().await;
}

/// A provider on a tiny server that records the raw path of every request, and answers lists
/// larger than the limit: `/big` streams 64 MiB (counting what it produced), `/declared`
/// declares 10 000 bytes.
struct Capture {
    base_url: String,
    paths: Arc<Mutex<Vec<String>>>,
    produced: Arc<AtomicUsize>,
}

const BIG_CHUNK: usize = 64 * 1024;
const BIG_CHUNKS: usize = 1024;

async fn capture_api() -> Capture {
    let paths = Arc::new(Mutex::new(Vec::new()));
    let produced = Arc::new(AtomicUsize::new(0));
    let (seen, made) = (paths.clone(), produced.clone());
    let router = axum::Router::new()
        .route(
            "/big",
            get(move || {
                let made = made.clone();
                async move {
                    let chunks = futures::stream::iter(0..BIG_CHUNKS).map(move |_| {
                        made.fetch_add(BIG_CHUNK, Ordering::SeqCst);
                        Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; BIG_CHUNK]))
                    });
                    axum::body::Body::from_stream(chunks)
                }
            }),
        )
        .route("/declared", get(|| async { vec![b' '; 10_000] }))
        .route(
            "/items/loud",
            get(|| async {
                let page = format!(
                    "<html>\n{}INTERNAL-TAIL</html>",
                    "stack frame\n".repeat(250)
                );
                (axum::http::StatusCode::BAD_REQUEST, page)
            }),
        )
        .fallback(move |req: Request| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(req.uri().path().to_string());
                axum::Json(json!({"id": "x"}))
            }
        });
    Capture {
        base_url: serve(router).await,
        paths,
        produced,
    }
}

fn capture_definition(dir: &tempfile::TempDir) -> Vec<String> {
    let text = format!(
        "name = \"capture\"\nbase_url = \"http://127.0.0.1:1\"\nmax_response_bytes = 4096\n\
         [auth]\ntype = \"bearer\"\nfield = \"token\"\n{LIMIT}[pagination]\nstyle = \"link\"\n\
         [resources.items]\npath = \"/items\"\nget = \"/items/{{id}}\"\n\
         [resources.big]\npath = \"/big\"\n[resources.declared]\npath = \"/declared\"\n\
         [writes.put_item]\nresource = \"items\"\nmethod = \"PUT\"\npath = \"/items/{{id}}\"\n"
    );
    definitions(dir, &[("capture", text)])
}

/// The status line of a PUT sent over a raw socket, so that the path reaches the server exactly
/// as written (HTTP clients resolve `%2E%2E` segments before sending).
async fn raw_put(base: &str, path: &str, key: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = "{\"qty\":1}";
    let req = format!(
        "PUT {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

async fn external_ids_stay_in_their_path_segment(backend: Backend) {
    let api = capture_api().await;
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_with_definitions(backend, capture_definition(&dir)).await;
    let (_, admin) = app.tenant_with_key("acme", "admin").await;
    let id = connect(
        &app,
        &admin,
        "capture",
        json!({"token": "t"}),
        json!({"base_url": api.base_url}),
    )
    .await;
    let c = client(&app.app, &id).await;
    for (external, path) in [
        ("a/b", "/items/a%2Fb"),
        ("a%2Fb", "/items/a%252Fb"),
        ("../secret", "/items/..%2Fsecret"),
        ("%2e%2e", "/items/%252e%252e"),
        ("x?admin=1#f", "/items/x%3Fadmin%3D1%23f"),
    ] {
        c.get("items", external).await.unwrap();
        assert_eq!(
            api.paths.lock().unwrap().pop().as_deref(),
            Some(path),
            "{external}"
        );
        c.write("put_item", external, Some(&json!({})), None)
            .await
            .unwrap();
        assert_eq!(
            api.paths.lock().unwrap().pop().as_deref(),
            Some(path),
            "write {external}"
        );
    }
    for external in ["..", ".", ""] {
        let e = c.get("items", external).await.unwrap_err();
        assert_eq!(e.class, ErrorClass::Permanent, "{external}: {e}");
        let e = c
            .write("put_item", external, Some(&json!({})), None)
            .await
            .unwrap_err();
        assert_eq!(e.class, ErrorClass::Permanent, "{external}: {e}");
    }
    assert!(api.paths.lock().unwrap().is_empty(), "no dot segment left");

    // The API refuses such ids before any job exists.
    let (s, p) = app
        .post(
            "/v1/snapshots",
            &admin,
            json!({"connection_id": id, "resource": "items", "external_id": "..", "of": "remote"}),
        )
        .await;
    assert_eq!(s, 422, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("external_id"), "{p}");
    // A provider's error page comes back as a short excerpt on one line, never whole.
    let (s, p) = app
        .post(
            "/v1/snapshots",
            &admin,
            json!({"connection_id": id, "resource": "items", "external_id": "loud", "of": "remote"}),
        )
        .await;
    let detail = p["detail"].as_str().unwrap();
    assert_eq!(s, 502, "{p}");
    assert!(
        detail.contains("answered 400") && detail.contains("stack frame"),
        "{detail}"
    );
    assert!(
        detail.len() < 400 && !detail.contains("INTERNAL-TAIL") && !detail.contains('\n'),
        "{detail}"
    );
    let put = |segment: &'static str| {
        let (url, id, admin) = (app.url.clone(), id.clone(), admin.clone());
        async move {
            raw_put(
                &url,
                &format!("/v1/connections/{id}/desired/items/{segment}"),
                &admin,
            )
            .await
        }
    };
    assert!(put("%2E%2E").await.contains(" 422 "), "..");
    assert!(put(".").await.contains(" 422 "), ".");
    for stored in ["..", "."] {
        let desired = app
            .app
            .store
            .get_desired(&syncguard_store::Scope::All, &id, "items", stored)
            .await
            .unwrap();
        assert!(desired.is_none(), "`{stored}` was stored");
    }
    // In the worker, a webhook-named object with such an id fails as permanent: dead at once.
    let job = syncguard_store::queue::NewJob {
        connection_id: Some(id.clone()),
        ..syncguard_store::queue::NewJob::new(
            syncguard::services::webhook::REFETCH_KIND,
            json!({"connection_id": id, "resource": "items", "external_id": ".."}),
        )
    };
    let now = app.app.clock.now_ms();
    let job = app.app.store.enqueue(&job, now).await.unwrap().id;
    let dead = job_in_state(
        &app.app.store,
        job,
        syncguard_store::queue::JobState::Dead,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(
        (dead.error_class, dead.attempts),
        (Some(ErrorClass::Permanent), 1),
        "{dead:?}"
    );
    assert!(
        dead.last_error
            .as_deref()
            .unwrap_or("")
            .contains("external id"),
        "{dead:?}"
    );
    assert!(api.paths.lock().unwrap().is_empty());
    app.stop().await;
}

async fn answers_over_the_limit_are_refused_without_reading_them_whole(backend: Backend) {
    let api = capture_api().await;
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_with_definitions(backend, capture_definition(&dir)).await;
    let (_, admin) = app.tenant_with_key("acme", "admin").await;
    let id = connect(
        &app,
        &admin,
        "capture",
        json!({"token": "t"}),
        json!({"base_url": api.base_url}),
    )
    .await;
    let c = client(&app.app, &id).await;
    for resource in ["big", "declared"] {
        let e = c.list_page(resource, None, None).await.unwrap_err();
        assert_eq!(
            (e.class, e.status),
            (ErrorClass::Permanent, Some(200)),
            "{e}"
        );
        assert!(e.message.contains("max_response_bytes"), "{e}");
    }
    // The streamed answer was abandoned early: far less than its 64 MiB was ever produced
    // (socket buffers hold a few MiB at most).
    let produced = api.produced.load(Ordering::SeqCst);
    assert!(
        produced < BIG_CHUNK * BIG_CHUNKS / 4,
        "{produced} bytes produced of {}",
        BIG_CHUNK * BIG_CHUNKS
    );
    // Small answers still pass.
    assert_eq!(
        c.get("items", "one").await.unwrap(),
        Some(json!({"id": "x"}))
    );
    app.stop().await;
}
