//! The server's limits from outside, over raw sockets: slow request heads are cut off, slow
//! bodies get 408, connections beyond `api.max_connections` wait for a slot, and a full webhook
//! ingest queue answers 503 at once.

use crate::helpers::*;
use crate::webhook::{hooked, ping_body, standard_headers, SECRET};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use syncguard::app::Handlers;
use syncguard::clock::SystemClock;
use syncguard::config::Config;
use syncguard_store::Backend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

crate::on_both_stores!(
    a_trickled_body_is_cut_off_with_408_and_frees_its_slot,
    a_full_ingest_queue_answers_503_at_once,
);

async fn spawn(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let mut app =
        TestApp::spawn_with(backend, tweak, Arc::new(SystemClock), Handlers::builtin()).await;
    // No pooled keep-alive connection of the harness may sit on a connection slot.
    app.client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    app
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.url.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Everything the server sends until it closes the connection; fails the test if it does not
/// close within `within`.
async fn read_to_close(stream: &mut TcpStream, within: Duration) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read)
        .await
        .expect("the server closes the connection");
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_head_is_cut_off_and_frees_its_slot() {
    let app = spawn(Backend::Sqlite, |c| {
        c.api.header_read_timeout_ms = 300;
        c.api.max_connections = 1;
    })
    .await;
    let mut slow = connect(&app).await;
    // Half a request head, and then nothing.
    slow.write_all(b"GET /livez HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut slow, Duration::from_secs(10)).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer:?}"
    );
    // The only slot is free again.
    let resp = app
        .client
        .get(format!("{}/livez", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_max_connections_new_clients_wait_for_a_slot() {
    let app = spawn(Backend::Sqlite, |c| c.api.max_connections = 1).await;
    // Accepted first (the backlog is served in order), it holds the only slot.
    let holder = connect(&app).await;
    let mut waiting = connect(&app).await;
    waiting
        .write_all(b"GET /livez HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(300), waiting.read(&mut buf)).await;
    assert!(early.is_err(), "served beyond the limit: {early:?}");
    drop(holder);
    let answer = read_to_close(&mut waiting, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    app.stop().await;
}

async fn a_trickled_body_is_cut_off_with_408_and_frees_its_slot(backend: Backend) {
    let app = spawn(backend, |c| {
        c.api.body_read_timeout_ms = 500;
        c.api.max_connections = 1;
    })
    .await;
    let (_t, _admin, conn) = hooked(&app, "acme", json!({ "secrets": [SECRET] })).await;

    for (path, auth) in [
        (format!("/v1/webhooks/{conn}"), String::new()),
        // An API body: the JSON extractor's failure is answered as the timeout it is.
        (
            "/v1/tenants".to_string(),
            format!("authorization: Bearer {PLATFORM_KEY}\r\n"),
        ),
    ] {
        let stream = connect(&app).await;
        let (mut rd, mut wr) = stream.into_split();
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n{auth}content-length: 200\r\n\r\n{{\"name\":"
        );
        // One byte every 100 ms: never the whole body before the deadline.
        let trickle = tokio::spawn(async move {
            wr.write_all(head.as_bytes()).await?;
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                wr.write_all(b" ").await?;
            }
            #[allow(unreachable_code)]
            Ok::<(), std::io::Error>(())
        });
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        let read = async {
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => answer.extend_from_slice(&buf[..n]),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("the server answers and closes the connection");
        trickle.abort();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{path}: {answer}");
        assert!(answer.contains("request_timeout"), "{path}: {answer}");
    }
    assert_eq!(
        crate::webhook::received_total(&app, "trackstar", "timeout").await,
        1
    );
    // The slot is free: a whole delivery goes through.
    let body = ping_body(1);
    let (status, ack) = crate::webhook::deliver(
        &app,
        &conn,
        &standard_headers(SECRET, "msg_after", &body),
        body,
    )
    .await;
    assert_eq!(status, 202, "{ack}");
    app.stop().await;
}

/// A connection of the test's own that holds the store's write lock on inbound events.
enum WriteBlock {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

async fn block_event_writes(app: &TestApp) -> WriteBlock {
    use sqlx::Connection;
    match app.db.backend() {
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&app.db.url).await.unwrap();
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut c)
                .await
                .unwrap();
            WriteBlock::Sqlite(c)
        }
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(&app.db.url).await.unwrap();
            sqlx::query("BEGIN").execute(&mut c).await.unwrap();
            sqlx::query("LOCK TABLE inbound_events IN EXCLUSIVE MODE")
                .execute(&mut c)
                .await
                .unwrap();
            WriteBlock::Postgres(c)
        }
    }
}

async fn release(block: WriteBlock) {
    match block {
        WriteBlock::Sqlite(mut c) => {
            sqlx::query("ROLLBACK").execute(&mut c).await.unwrap();
        }
        WriteBlock::Postgres(mut c) => {
            sqlx::query("ROLLBACK").execute(&mut c).await.unwrap();
        }
    }
}

async fn a_full_ingest_queue_answers_503_at_once(backend: Backend) {
    let app = spawn(backend, |c| {
        c.api.webhook_body_limit_bytes = 2048;
        c.api.webhook_queue_bytes = 2048;
    })
    .await;
    let (_t, _admin, conn) = hooked(&app, "acme", json!({ "secrets": [SECRET] })).await;
    // Two deliveries of about 1.2 KiB each: one fits in the 2 KiB queue, two do not.
    let padded = |n: usize| {
        json!({ "event_type": "test.ping", "data": { "n": n, "pad": "x".repeat(1200) } })
            .to_string()
            .into_bytes()
    };
    let gauge = app.app.webhooks.metrics.queue_bytes.clone();

    let block = block_event_writes(&app).await;
    let first = {
        let (client, url, body) = (
            app.client.clone(),
            format!("{}/v1/webhooks/{conn}", app.url),
            padded(1),
        );
        let headers = standard_headers(SECRET, "msg_first", &body);
        tokio::spawn(async move {
            let mut req = client.post(url).body(body);
            for (k, v) in headers {
                req = req.header(k, v);
            }
            req.send().await.unwrap().status().as_u16()
        })
    };
    eventually(
        Duration::from_secs(10),
        "the first delivery is queued",
        || {
            let queued = gauge.get();
            async move { (queued > 0).then_some(()) }
        },
    )
    .await;

    let body = padded(2);
    let mut req = app
        .client
        .post(format!("{}/v1/webhooks/{conn}", app.url))
        .body(body.clone());
    for (k, v) in standard_headers(SECRET, "msg_second", &body) {
        req = req.header(k, v);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    // Answered while the first still waits for the store: refused, not queued behind it.
    assert!(!first.is_finished());
    assert_eq!(
        crate::webhook::received_total(&app, "trackstar", "overloaded").await,
        1
    );

    release(block).await;
    assert_eq!(first.await.unwrap(), 202);
    assert_eq!(gauge.get(), 0);
    let (status, ack) = crate::webhook::deliver(
        &app,
        &conn,
        &standard_headers(SECRET, "msg_second", &body),
        body,
    )
    .await;
    assert_eq!(status, 202, "{ack}");
    app.stop().await;
}
