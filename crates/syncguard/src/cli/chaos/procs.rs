//! The real processes of a chaos run: `syncguard serve` nodes and the `syncguard mock`
//! provider, started from this very binary, each logging to its own file in the run directory.
//!
//! Every pid is also written to `pids` in the run directory, so the wrapper script can end
//! them by id if this driver itself dies.

use anyhow::{bail, Context};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Base64 of 32 fixed bytes: every node must unseal what another sealed.
pub const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// Accepted as given by every node (`SYNCGUARD_BOOTSTRAP_KEY`).
pub const PLATFORM_KEY: &str = "sg_live_chaos_platform_key_0000000000000";

/// A free TCP port of 127.0.0.1 (released at once; a race with another process is unlikely
/// and shows as a clear bind error).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn record_pid(dir: &Path, pid: u32) {
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("pids"))
    {
        let _ = writeln!(f, "{pid}");
    }
}

fn log_file(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

/// One `syncguard serve` node; keeps its port across restarts.
pub struct Node {
    pub name: String,
    pub url: String,
    port: u16,
    log: PathBuf,
    env: Vec<(String, String)>,
    db_url: String,
    dir: PathBuf,
    child: Option<Child>,
    /// Pid of the current process, for RSS samples.
    pub pid: Option<u32>,
}

impl Node {
    pub fn new(
        index: usize,
        dir: &Path,
        db_url: &str,
        env: Vec<(String, String)>,
    ) -> anyhow::Result<Node> {
        let port = free_port()?;
        Ok(Node {
            name: format!("node-{index}"),
            url: format!("http://127.0.0.1:{port}"),
            port,
            log: dir.join(format!("node-{index}.log")),
            env,
            db_url: db_url.to_string(),
            dir: dir.to_path_buf(),
            child: None,
            pid: None,
        })
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Spawns the process; [`Node::wait_ready`] waits for it to answer.
    pub fn spawn(&mut self) -> anyhow::Result<()> {
        let file = log_file(&self.log)?;
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{}", self.port),
            "--database-url",
            &self.db_url,
        ])
        .current_dir(&self.dir)
        .env("SYNCGUARD_BOOTSTRAP_KEY", PLATFORM_KEY)
        .env("SYNCGUARD_MASTER_KEY", MASTER_KEY)
        .env_remove("SYNCGUARD_CONFIG")
        .stdout(file.try_clone()?)
        .stderr(file)
        .stdin(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().context("starting syncguard serve")?;
        record_pid(&self.dir, child.id());
        self.pid = Some(child.id());
        self.child = Some(child);
        Ok(())
    }

    /// Waits for `/readyz` (store reachable, migrations applied).
    pub async fn wait_ready(&mut self, within: Duration) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + within;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "{} exited during start ({status}); see {}",
                        self.name,
                        self.log.display()
                    );
                }
            }
            let ready = http
                .get(format!("{}/readyz", self.url))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} not ready within {within:?}; see {}",
                    self.name,
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGKILL, no goodbye: running jobs keep their leases until they expire.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.pid = None;
    }

    /// SIGTERM and wait (bounded) for the exit; then SIGKILL. Returns the exit code if it
    /// exited by itself.
    pub async fn terminate(&mut self, within: Duration) -> Option<i32> {
        let mut child = self.child.take()?;
        self.pid = None;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `VmRSS` from `/proc/{pid}/status`.
pub fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The `syncguard mock` process.
pub struct Mock {
    pub url: String,
    child: Child,
}

pub struct MockSettings {
    pub records: usize,
    pub rate_limit_rps: f64,
    pub webhook_max_attempts: u32,
    pub webhook_retry_base_ms: u64,
}

impl Mock {
    pub async fn start(dir: &Path, s: &MockSettings) -> anyhow::Result<Mock> {
        let port = free_port()?;
        let file = log_file(&dir.join("mock.log"))?;
        let child = Command::new(std::env::current_exe()?)
            .args([
                "mock",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--records",
                &s.records.to_string(),
                "--rate-limit-rps",
                &s.rate_limit_rps.to_string(),
                "--webhook-max-attempts",
                &s.webhook_max_attempts.to_string(),
                "--webhook-retry-base-ms",
                &s.webhook_retry_base_ms.to_string(),
            ])
            .env("RUST_LOG", "warn")
            .stdout(file.try_clone()?)
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .context("starting syncguard mock")?;
        record_pid(dir, child.id());
        let mock = Mock {
            url: format!("http://127.0.0.1:{port}"),
            child,
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while http
            .get(format!("{}/_mock/stats", mock.url))
            .send()
            .await
            .is_err()
        {
            if Instant::now() > deadline {
                bail!("the mock provider did not start; see mock.log");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(mock)
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
