//! Test harness: spawn the app in-process on port 0, talk to it over real HTTP.

#![allow(dead_code)]

use reqwest::{Method, RequestBuilder};
use serde_json::{json, Value};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use syncguard::app::Handlers;
use syncguard::app::{self, App};
use syncguard::clock::{SharedClock, SystemClock};
use syncguard::config::Config;
use syncguard_store::testkit::{self, TestDb};
use syncguard_store::Backend;
use tokio_util::sync::CancellationToken;

/// Declares each listed `async fn name(backend: Backend)` as `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(syncguard_store::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(syncguard_store::Backend::Postgres).await
                }
            )*
        }
    };
}

/// The platform key every test app accepts.
pub const PLATFORM_KEY: &str = "sg_live_test_platform_key_000000000000";

pub struct TestApp {
    pub url: String,
    pub app: App,
    pub db: TestDb,
    pub client: reqwest::Client,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// A test configuration: quick polling so tests do not wait on idle workers.
pub fn test_config(db: &TestDb) -> Config {
    let mut c = Config {
        database_url: db.url.clone(),
        ..Config::default()
    };
    c.queue.poll_interval_ms = 50;
    c.queue.rescue_interval_ms = 200;
    c.queue.shutdown_grace_ms = 2_000;
    c
}

pub fn test_sealer() -> syncguard_core::seal::Sealer {
    syncguard_core::seal::Sealer::new(
        syncguard_core::seal::MasterKey::from_bytes(&[7u8; 32]).unwrap(),
        vec![],
    )
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        TestApp::spawn_with(backend, |_| {}, Arc::new(SystemClock), Handlers::builtin()).await
    }

    pub async fn spawn_with(
        backend: Backend,
        tweak: impl FnOnce(&mut Config),
        clock: SharedClock,
        handlers: Handlers,
    ) -> TestApp {
        let db = testkit::fresh(backend).await;
        let mut config = test_config(&db);
        tweak(&mut config);
        db.store
            .upsert_bootstrap_key(PLATFORM_KEY, clock.now_ms())
            .await
            .unwrap();
        let app = App::new(config, db.store.clone(), clock, test_sealer()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        let task = tokio::spawn(app::run(app.clone(), listener, handlers, async move {
            stop.cancelled().await
        }));
        TestApp {
            url,
            app,
            db,
            client: reqwest::Client::new(),
            cancel,
            task,
        }
    }

    pub fn req(&self, method: Method, path: &str, key: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(key)
    }

    pub async fn get(&self, path: &str, key: &str) -> (u16, Value) {
        send(self.req(Method::GET, path, key)).await
    }

    pub async fn post(&self, path: &str, key: &str, body: Value) -> (u16, Value) {
        send(self.req(Method::POST, path, key).json(&body)).await
    }

    pub async fn delete(&self, path: &str, key: &str) -> (u16, Value) {
        send(self.req(Method::DELETE, path, key)).await
    }

    /// Creates a tenant and a key of `role` in it; returns (tenant id, key).
    pub async fn tenant_with_key(&self, name: &str, role: &str) -> (String, String) {
        let (s, t) = self
            .post("/v1/tenants", PLATFORM_KEY, json!({ "name": name }))
            .await;
        assert_eq!(s, 201, "{t}");
        let tenant = t["id"].as_str().unwrap().to_string();
        let key = self.key_for(&tenant, role, None).await;
        (tenant, key)
    }

    /// A key of `role` in `tenant`, optionally limited to `connections`.
    pub async fn key_for(
        &self,
        tenant: &str,
        role: &str,
        connections: Option<Vec<&str>>,
    ) -> String {
        let mut body = json!({ "tenant_id": tenant, "role": role, "name": format!("{role} key") });
        if let Some(c) = connections {
            body["connections"] = json!(c);
        }
        let (s, k) = self.post("/v1/keys", PLATFORM_KEY, body).await;
        assert_eq!(s, 201, "{k}");
        k["key"].as_str().unwrap().to_string()
    }

    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }

    /// Stops the app and returns its database, with a fresh store on it (the app closes its own).
    pub async fn stop_keeping_db(self) -> (TestDb, syncguard_store::Store) {
        self.cancel.cancel();
        let _ = self.task.await;
        let store = syncguard_store::Store::connect(&self.db.url, &Default::default())
            .await
            .unwrap();
        (self.db, store)
    }
}

/// Sends a request and returns (status, JSON body or Null).
pub async fn send(req: RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

/// Polls `check` until it yields a value or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A tiny external service that counts the side effects of jobs: `POST /touch {"job_id"}`.
/// It can be told to answer the first `fail_first` touches with `fail_status`.
#[derive(Clone, Default)]
pub struct Touches {
    pub counts: Arc<std::sync::Mutex<std::collections::HashMap<i64, u32>>>,
    pub fail_first: Arc<std::sync::atomic::AtomicU32>,
    pub fail_status: Arc<std::sync::atomic::AtomicU32>,
}

impl Touches {
    /// Serves on 127.0.0.1:0; returns the state and the touch URL.
    pub async fn serve() -> (Touches, String) {
        use axum::routing::post;
        let t = Touches::default();
        let state = t.clone();
        let app = axum::Router::new().route(
            "/touch",
            post(move |axum::Json(body): axum::Json<Value>| {
                let state = state.clone();
                async move {
                    use std::sync::atomic::Ordering;
                    if state.fail_first.load(Ordering::SeqCst) > 0 {
                        state.fail_first.fetch_sub(1, Ordering::SeqCst);
                        let code = state.fail_status.load(Ordering::SeqCst) as u16;
                        return axum::http::StatusCode::from_u16(code).unwrap();
                    }
                    let id = body["job_id"].as_i64().unwrap_or(-1);
                    *state.counts.lock().unwrap().entry(id).or_default() += 1;
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/touch", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (t, url)
    }

    pub fn count(&self, job: i64) -> u32 {
        self.counts.lock().unwrap().get(&job).copied().unwrap_or(0)
    }

    pub fn snapshot(&self) -> std::collections::HashMap<i64, u32> {
        self.counts.lock().unwrap().clone()
    }
}

/// Waits until job `id` is in `state`; returns it.
pub async fn job_in_state(
    store: &syncguard_store::Store,
    id: i64,
    state: syncguard_store::queue::JobState,
    timeout: Duration,
) -> syncguard_store::queue::Job {
    eventually(timeout, &format!("job {id} to be {state}"), || async {
        store
            .get_job(&syncguard_store::Scope::All, None, id)
            .await
            .unwrap()
            .filter(|j| j.state == state)
    })
    .await
}

/// POSTs a chunked body that never ends to `path` over a raw socket and returns the status
/// line of the answer: only a server that stops reading at its limit can answer at all.
/// Writes fail once the server hangs up; the answer is read regardless.
pub async fn endless_chunked_post(base: &str, path: &str, extra_headers: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://").to_string();
    let (mut rd, mut wr) = tokio::net::TcpStream::connect(&addr)
        .await
        .unwrap()
        .into_split();
    let head = format!("POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n{extra_headers}transfer-encoding: chunked\r\n\r\n");
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        let chunk = [
            format!("{:x}\r\n", 64 * 1024).into_bytes(),
            vec![b' '; 64 * 1024],
            b"\r\n".to_vec(),
        ]
        .concat();
        loop {
            wr.write_all(&chunk).await?;
        }
        #[allow(unreachable_code)]
        Ok::<(), std::io::Error>(())
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    writer.abort();
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}
