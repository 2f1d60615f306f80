//! Real `syncguard serve` processes: crashes (kill -9), graceful SIGTERM, several nodes on one
//! PostgreSQL, and start-up refusals.

use crate::helpers::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use syncguard_store::queue::{JobState, NewJob};
use syncguard_store::testkit;
use syncguard_store::Backend;

crate::on_both_stores!(
    killed_worker_job_is_picked_up_after_lease_and_completes_once,
    sigterm_finishes_running_jobs_and_exits_zero,
    sigterm_mid_retry_exits_zero_promptly
);

/// Base64 of 32 bytes, so nodes share one master key.
pub const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

pub struct Serve {
    pub child: Child,
    pub url: String,
    pub log: PathBuf,
}

impl Serve {
    /// Starts `syncguard serve` on a free port of 127.0.0.1 and waits for `/livez`.
    pub async fn start(db_url: &str, dir: &Path, env: &[(&str, &str)]) -> Serve {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = dir.join(format!("serve-{port}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_syncguard"));
        cmd.args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database-url",
            db_url,
        ])
        .current_dir(dir)
        .env("SYNCGUARD_BOOTSTRAP_KEY", PLATFORM_KEY)
        .env("SYNCGUARD_MASTER_KEY", MASTER_KEY)
        .env("SYNCGUARD_QUEUE_LEASE_MS", "2000")
        .env("SYNCGUARD_QUEUE_RESCUE_INTERVAL_MS", "300")
        .env("SYNCGUARD_QUEUE_POLL_INTERVAL_MS", "100")
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("syncguard binary starts");
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let live = format!("{url}/livez");
        let log_path = log.clone();
        eventually(Duration::from_secs(30), "serve to answer /livez", || {
            let (client, live) = (client.clone(), live.clone());
            async move {
                client
                    .get(&live)
                    .send()
                    .await
                    .ok()
                    .filter(|r| r.status() == 200)
                    .map(|_| ())
            }
        })
        .await;
        let _ = log_path;
        Serve { child, url, log }
    }

    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `syncguard_jobs_total{kind, outcome}` as this node reports it.
    pub async fn jobs_total(&self, kind: &str, outcome: &str) -> u64 {
        let text = reqwest::get(format!("{}/metrics", self.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let needle = format!("syncguard_jobs_total{{kind=\"{kind}\",outcome=\"{outcome}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&needle))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn killed_worker_job_is_picked_up_after_lease_and_completes_once(backend: Backend) {
    let db = testkit::fresh(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let (touches, url) = Touches::serve().await;
    let mut first = Serve::start(&db.url, dir.path(), &[]).await;
    let id = db
        .store
        .enqueue(
            &NewJob::new("noop", json!({ "sleep_ms": 1500, "touch_url": url })),
            now(),
        )
        .await
        .unwrap()
        .id;
    let running = job_in_state(&db.store, id, JobState::Running, Duration::from_secs(20)).await;
    assert!(running.locked_by.is_some());
    first.kill9();
    assert_eq!(touches.count(id), 0, "killed before its effect");

    let second = Serve::start(&db.url, dir.path(), &[]).await;
    let done = job_in_state(&db.store, id, JobState::Succeeded, Duration::from_secs(30)).await;
    assert_eq!(done.attempts, 2, "the crashed attempt counts");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(touches.count(id), 1, "the effect happened exactly once");
    assert!(
        second
            .log_text()
            .contains("rescued jobs whose worker stopped"),
        "{}",
        second.log_text()
    );
}

async fn sigterm_finishes_running_jobs_and_exits_zero(backend: Backend) {
    let db = testkit::fresh(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let (touches, url) = Touches::serve().await;
    let mut node = Serve::start(&db.url, dir.path(), &[]).await;
    let id = db
        .store
        .enqueue(
            &NewJob::new("noop", json!({ "sleep_ms": 700, "touch_url": url })),
            now(),
        )
        .await
        .unwrap()
        .id;
    job_in_state(&db.store, id, JobState::Running, Duration::from_secs(20)).await;
    let pid = node.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::task::spawn_blocking(move || {
        let status = node.child.wait().unwrap();
        (status, node)
    })
    .await
    .unwrap()
    .0;
    assert_eq!(status.code(), Some(0), "clean exit on SIGTERM");
    let j = db
        .store
        .get_job(&syncguard_store::Scope::All, None, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        j.state,
        JobState::Succeeded,
        "the running job finished within the grace period"
    );
    assert_eq!(touches.count(id), 1);
}

/// Jobs in the middle of retrying (one failing over and over, one whose handler sleeps for a
/// minute) do not hold up a stop: the process exits 0 within the grace and hands both back
/// without spending an attempt on the stop.
async fn sigterm_mid_retry_exits_zero_promptly(backend: Backend) {
    let db = testkit::fresh(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let mut node = Serve::start(
        &db.url,
        dir.path(),
        &[
            ("SYNCGUARD_QUEUE_SHUTDOWN_GRACE_MS", "2000"),
            ("SYNCGUARD_QUEUE_RETRY_BASE_MS", "50"),
            ("SYNCGUARD_QUEUE_RETRY_CAP_MS", "100"),
        ],
    )
    .await;
    let mut failing = NewJob::new("noop", json!({ "fail": "transient" }));
    failing.max_attempts = 1_000;
    let failing = db.store.enqueue(&failing, now()).await.unwrap().id;
    let sleeper = db
        .store
        .enqueue(&NewJob::new("noop", json!({ "sleep_ms": 60_000 })), now())
        .await
        .unwrap()
        .id;
    job_in_state(
        &db.store,
        sleeper,
        JobState::Running,
        Duration::from_secs(20),
    )
    .await;
    eventually(Duration::from_secs(20), "a few retries", || async {
        let j = db
            .store
            .get_job(&syncguard_store::Scope::All, None, failing)
            .await
            .unwrap()?;
        (j.attempts >= 3).then_some(())
    })
    .await;
    let pid = node.child.id().to_string();
    let t = std::time::Instant::now();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::task::spawn_blocking(move || {
        let status = node.child.wait().unwrap();
        (status, node)
    })
    .await
    .unwrap()
    .0;
    let took = t.elapsed();
    assert_eq!(status.code(), Some(0), "clean exit on SIGTERM");
    assert!(
        took < Duration::from_millis(2_000 + 2_000),
        "exited in {took:?}, grace 2 s"
    );
    let get = |id| {
        let store = db.store.clone();
        async move {
            store
                .get_job(&syncguard_store::Scope::All, None, id)
                .await
                .unwrap()
                .unwrap()
        }
    };
    let s = get(sleeper).await;
    assert_eq!(
        (s.state, s.attempts),
        (JobState::Available, 0),
        "the sleeper is handed back"
    );
    let f = get(failing).await;
    assert!(
        matches!(f.state, JobState::Available | JobState::Retryable),
        "the failing job waits for its next attempt: {:?}",
        f.state
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_postgres_run_each_job_exactly_once() {
    let db = testkit::fresh(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let (touches, url) = Touches::serve().await;
    let a = Serve::start(&db.url, dir.path(), &[]).await;
    let b = Serve::start(&db.url, dir.path(), &[]).await;
    const N: usize = 5_000;
    for chunk in 0..(N / 1_000) {
        let jobs: Vec<NewJob> = (0..1_000)
            .map(|i| NewJob::new("noop", json!({ "touch_url": url, "n": chunk * 1_000 + i })))
            .collect();
        db.store.enqueue_many(&jobs, now()).await.unwrap();
    }
    eventually(Duration::from_secs(180), "5000 jobs to succeed", || async {
        let counts = db.store.job_counts().await.unwrap();
        let done = counts
            .iter()
            .find(|(s, _)| *s == JobState::Succeeded)
            .map(|(_, n)| *n)
            .unwrap_or(0);
        (done as usize >= N).then_some(())
    })
    .await;
    let effects = touches.snapshot();
    assert_eq!(effects.len(), N, "every job had its effect");
    let twice: Vec<_> = effects.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "effects repeated: {twice:?}");
    let (on_a, on_b) = (
        a.jobs_total("noop", "succeeded").await,
        b.jobs_total("noop", "succeeded").await,
    );
    assert_eq!(on_a + on_b, N as u64);
    assert!(on_a > 0 && on_b > 0, "both nodes worked: {on_a} + {on_b}");
}

#[test]
fn invalid_config_stops_the_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("syncguard.toml");
    std::fs::write(&cfg, "[queue]\nworkers = \"many\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_syncguard"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("queue.workers"), "{err}");
    assert!(
        !dir.path().join("syncguard.db").exists(),
        "nothing was created"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_without_arguments_announces_listener_store_and_config() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_syncguard"))
        .arg("serve")
        .current_dir(dir.path())
        .env("SYNCGUARD_LISTEN", format!("127.0.0.1:{port}"))
        .env_remove("SYNCGUARD_DATABASE_URL")
        .env_remove("SYNCGUARD_MASTER_KEY")
        .env_remove("SYNCGUARD_BOOTSTRAP_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/readyz");
    eventually(Duration::from_secs(30), "readyz", || {
        let url = url.clone();
        async move {
            reqwest::get(&url)
                .await
                .ok()
                .filter(|r| r.status() == 200)
                .map(|_| ())
        }
    })
    .await;
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let out = tokio::task::spawn_blocking(move || {
        let status = child.wait().unwrap();
        let mut err = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
        (status, err)
    })
    .await
    .unwrap();
    assert_eq!(out.0.code(), Some(0));
    let err = out.1;
    assert!(
        err.contains(&format!("listening on http://127.0.0.1:{port}")),
        "{err}"
    );
    assert!(err.contains("store:  sqlite://syncguard.db"), "{err}");
    assert!(err.contains("config: built-in defaults"), "{err}");
    assert!(err.contains("bootstrap platform key (shown once"), "{err}");
    assert!(dir.path().join("syncguard.db").exists() && dir.path().join("syncguard.key").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_retry_intervals_and_refuses_a_bad_file() {
    let db = testkit::fresh(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("syncguard.toml");
    std::fs::write(&cfg, "[queue]\nretry_base_ms = 1000\nretry_cap_ms = 1000\n").unwrap();
    let node = Serve::start(
        &db.url,
        dir.path(),
        &[("SYNCGUARD_CONFIG", cfg.to_str().unwrap())],
    )
    .await;
    let mut job = NewJob::new("noop", json!({ "fail": "transient" }));
    job.max_attempts = 5;
    let id = db.store.enqueue(&job, now()).await.unwrap().id;
    let first = eventually(Duration::from_secs(20), "first failure", || async {
        db.store
            .get_job(&syncguard_store::Scope::All, None, id)
            .await
            .unwrap()
            .filter(|j| j.attempts == 1 && j.state == JobState::Retryable)
    })
    .await;
    assert!(first.run_at - first.updated_at <= 1_000);

    std::fs::write(
        &cfg,
        "[queue]\nretry_base_ms = 600000\nretry_cap_ms = 600000\n",
    )
    .unwrap();
    let hup = |pid: u32| {
        assert!(Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap()
            .success())
    };
    hup(node.child.id());
    eventually(Duration::from_secs(10), "reload logged", || async {
        node.log_text()
            .contains("configuration reloaded")
            .then_some(())
    })
    .await;
    let second = eventually(Duration::from_secs(20), "second failure", || async {
        db.store
            .get_job(&syncguard_store::Scope::All, None, id)
            .await
            .unwrap()
            .filter(|j| j.attempts == 2 && j.state == JobState::Retryable)
    })
    .await;
    let delay = second.run_at - second.updated_at;
    assert!(
        (300_000..=600_000).contains(&delay),
        "the reloaded base applies: {delay} ms"
    );

    std::fs::write(&cfg, "[queue]\nretry_base_ms = \"soon\"\n").unwrap();
    hup(node.child.id());
    eventually(Duration::from_secs(10), "refusal logged", || async {
        node.log_text()
            .contains("configuration reload refused")
            .then_some(())
    })
    .await;
    assert!(node.log_text().contains("queue.retry_base_ms"));
    let live = reqwest::get(format!("{}/livez", node.url)).await.unwrap();
    assert_eq!(
        live.status(),
        200,
        "still serving on the previous configuration"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_config_file_is_reloaded_without_a_signal_and_a_bad_one_refused() {
    let db = testkit::fresh(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("syncguard.toml");
    std::fs::write(&cfg, "[queue]\nretry_base_ms = 1000\nretry_cap_ms = 1000\n").unwrap();
    let node = Serve::start(
        &db.url,
        dir.path(),
        &[("SYNCGUARD_CONFIG", cfg.to_str().unwrap())],
    )
    .await;
    // Written, not signalled: the running node notices the new content.
    std::fs::write(
        &cfg,
        "[queue]\nretry_base_ms = 600000\nretry_cap_ms = 600000\n",
    )
    .unwrap();
    eventually(Duration::from_secs(10), "reload logged", || async {
        node.log_text()
            .contains("configuration reloaded")
            .then_some(())
    })
    .await;
    assert!(node.log_text().contains("file change"));
    let mut job = NewJob::new("noop", json!({ "fail": "transient" }));
    job.max_attempts = 5;
    let id = db.store.enqueue(&job, now()).await.unwrap().id;
    let first = eventually(Duration::from_secs(20), "first failure", || async {
        db.store
            .get_job(&syncguard_store::Scope::All, None, id)
            .await
            .unwrap()
            .filter(|j| j.attempts == 1 && j.state == JobState::Retryable)
    })
    .await;
    let delay = first.run_at - first.updated_at;
    assert!(
        (300_000..=600_000).contains(&delay),
        "the reloaded base applies: {delay} ms"
    );

    std::fs::write(&cfg, "[queue]\nretry_base_ms = \"soon\"\n").unwrap();
    eventually(Duration::from_secs(10), "refusal logged", || async {
        node.log_text()
            .contains("configuration reload refused")
            .then_some(())
    })
    .await;
    assert!(node.log_text().contains("queue.retry_base_ms"));
    // The running configuration stays: another job still waits the reloaded base.
    let id = db.store.enqueue(&job, now()).await.unwrap().id;
    let first = eventually(
        Duration::from_secs(20),
        "failure after the refusal",
        || async {
            db.store
                .get_job(&syncguard_store::Scope::All, None, id)
                .await
                .unwrap()
                .filter(|j| j.attempts == 1 && j.state == JobState::Retryable)
        },
    )
    .await;
    let delay = first.run_at - first.updated_at;
    assert!((300_000..=600_000).contains(&delay), "kept: {delay} ms");
}
