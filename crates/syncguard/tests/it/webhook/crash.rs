//! The durability rule with a real process: `syncguard serve` is killed with SIGKILL while
//! signed webhooks stream in; after a restart on the same store every delivery it had
//! acknowledged is there and gets processed.

use super::*;
use base64::Engine;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use syncguard_store::testkit;

crate::on_both_stores!(kill_9_loses_no_acknowledged_webhook);

/// Senders posting at once, to have deliveries in flight when the process dies.
const SENDERS: usize = 8;
/// Acknowledgements to collect before pulling the plug.
const ACKS_BEFORE_KILL: usize = 300;

struct Server {
    child: Child,
    url: String,
}

/// Starts the real binary on a free port, with a fixed master key so connections created
/// through the API can still be unsealed after a restart.
async fn start(db_url: &str, dir: &Path) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::fs::File::create(dir.join(format!("serve-{port}.log"))).unwrap();
    let master_key = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    let child = Command::new(env!("CARGO_BIN_EXE_syncguard"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database-url",
            db_url,
        ])
        .current_dir(dir)
        .env_remove("SYNCGUARD_CONFIG")
        .env("SYNCGUARD_BOOTSTRAP_KEY", PLATFORM_KEY)
        .env("SYNCGUARD_MASTER_KEY", master_key)
        // A killed worker's leases expire fast, so the restarted node takes its jobs over soon.
        .env("SYNCGUARD_QUEUE_LEASE_MS", "2000")
        .env("SYNCGUARD_QUEUE_RESCUE_INTERVAL_MS", "200")
        .env("SYNCGUARD_QUEUE_POLL_INTERVAL_MS", "50")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("the syncguard binary starts");
    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    eventually(
        Duration::from_secs(30),
        "the server answers /livez",
        || async {
            let r = client.get(format!("{url}/livez")).send().await.ok()?;
            r.status().is_success().then_some(())
        },
    )
    .await;
    Server { child, url }
}

/// One signed delivery; `Some(status)` when the server answered.
async fn post(client: &reqwest::Client, url: &str, id: &str, body: Vec<u8>) -> Option<u16> {
    let mut req = client.post(url).header("content-type", "application/json");
    for (k, v) in standard_headers(SECRET, id, &body) {
        req = req.header(k, v);
    }
    req.body(body)
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

async fn kill_9_loses_no_acknowledged_webhook(backend: Backend) {
    let db = testkit::fresh(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(&db.url, dir.path()).await;
    let client = reqwest::Client::new();
    let api = |path: &str| format!("{}{path}", server.url);
    let (s, t) = send(
        client
            .post(api("/v1/tenants"))
            .bearer_auth(PLATFORM_KEY)
            .json(&json!({ "name": "acme" })),
    )
    .await;
    assert_eq!(s, 201, "{t}");
    let body = json!({ "tenant_id": t["id"], "provider": "trackstar", "name": "brand_1", "config": { "webhook": { "secrets": [SECRET] } } });
    let (s, c) = send(
        client
            .post(api("/v1/connections"))
            .bearer_auth(PLATFORM_KEY)
            .json(&body),
    )
    .await;
    assert_eq!(s, 201, "{c}");
    let conn = c["id"].as_str().unwrap().to_string();
    let hook_url = api(&format!("/v1/webhooks/{conn}"));

    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..SENDERS)
        .map(|w| {
            let (client, url, acked, stop) = (
                client.clone(),
                hook_url.clone(),
                acked.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let id = format!("msg_{w}_{n}");
                    match post(&client, &url, &id, ping_body(w * 1_000_000 + n)).await {
                        Some(202) => acked.lock().unwrap().push(id),
                        Some(status) => panic!("unexpected answer {status} before the kill"),
                        None => break, // the server is gone: this one was never acknowledged
                    }
                }
            })
        })
        .collect();
    eventually(
        Duration::from_secs(60),
        "enough acknowledgements",
        || async { (acked.lock().unwrap().len() >= ACKS_BEFORE_KILL).then_some(()) },
    )
    .await;
    server.child.kill().unwrap(); // SIGKILL: no shutdown, no flush
    server.child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    let mut server = start(&db.url, dir.path()).await;
    let f = EventFilter {
        connection_id: Some(conn.clone()),
        ..Default::default()
    };
    let stored_ids = |events: &[InboundEvent]| -> std::collections::HashSet<String> {
        events
            .iter()
            .filter(|e| e.status != EventStatus::Duplicate)
            .filter_map(|e| e.delivery_id.clone())
            .collect()
    };
    let all = |store: syncguard_store::Store, f: EventFilter| async move {
        let mut out = Vec::new();
        let mut page = PageRequest {
            after: None,
            limit: 500,
        };
        loop {
            let p = store.list_events(&Scope::All, &f, &page).await.unwrap();
            out.extend(p.items);
            match p.next_cursor {
                Some(c) => page.after = Some(c),
                None => return out,
            }
        }
    };
    let after_restart = all(db.store.clone(), f.clone()).await;
    let present = stored_ids(&after_restart);
    let lost: Vec<_> = acked.iter().filter(|id| !present.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged deliveries lost: {lost:?}",
        lost.len(),
        acked.len()
    );

    // Every acknowledged delivery gets processed by the restarted node, including those whose
    // jobs were running when the first one died.
    eventually(
        Duration::from_secs(60),
        "acknowledged deliveries processed",
        || async {
            let events = all(db.store.clone(), f.clone()).await;
            let processed: std::collections::HashSet<String> = events
                .iter()
                .filter(|e| e.status == EventStatus::Processed)
                .filter_map(|e| e.delivery_id.clone())
                .collect();
            acked.iter().all(|id| processed.contains(id)).then_some(())
        },
    )
    .await;
    // The connection's sealed secrets still open: the restarted node verifies new deliveries.
    let status = post(
        &client,
        &format!("{}/v1/webhooks/{conn}", server.url),
        "msg_after",
        ping_body(9_999_999),
    )
    .await;
    assert_eq!(status, Some(202));
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}
