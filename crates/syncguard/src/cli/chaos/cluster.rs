//! A private PostgreSQL cluster for the chaos run: its own data directory, port and socket
//! directory, so the run can stop and start "the database" without touching any server other
//! people use.
//!
//! PostgreSQL refuses to run as root; when the run is root, every server command goes through
//! `runuser -u postgres`, and the directory is handed to that user first.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    /// Holds the Unix socket and the server log; the data directory stays PostgreSQL's.
    run: PathBuf,
    pub port: u16,
    as_postgres: bool,
}

impl Cluster {
    /// `initdb` (trust auth, superuser `postgres`) in `dir/pg`; does not start it.
    pub fn init(bin: Option<&Path>, dir: &Path, port: u16) -> anyhow::Result<Cluster> {
        let bin = match bin {
            Some(b) => b.to_path_buf(),
            None => find_bin()?,
        };
        let as_postgres = is_root();
        let base = dir.join("pg");
        let (data, run) = (base.join("data"), base.join("run"));
        std::fs::create_dir_all(&run).with_context(|| format!("creating {}", run.display()))?;
        if as_postgres {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&base)
                .status()?
                .success();
            if !ok {
                bail!("cannot hand {} to the postgres user", base.display());
            }
        }
        let cluster = Cluster {
            bin,
            data,
            run,
            port,
            as_postgres,
        };
        let out = cluster
            .command("initdb")
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&cluster.data)
            .output()
            .context("running initdb")?;
        if !out.status.success() {
            bail!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(cluster)
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn command(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&self) -> anyhow::Result<()> {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=on -c synchronous_commit=on",
            self.port,
            self.run.display()
        );
        let out = self
            .command("pg_ctl")
            .args(["-w", "-t", "60", "-D"])
            .arg(&self.data)
            .args(["-l"])
            .arg(self.run.join("server.log"))
            .args(["-o", &opts, "start"])
            .output()
            .context("running pg_ctl start")?;
        if !out.status.success() {
            bail!(
                "pg_ctl start failed: {} (log: {})",
                String::from_utf8_lossy(&out.stderr).trim(),
                self.run.join("server.log").display()
            );
        }
        self.wait_ready(Duration::from_secs(30))
    }

    /// `pg_ctl stop -m fast`: open sessions are cut, as when a managed database fails over.
    pub fn stop(&self) -> anyhow::Result<()> {
        let out = self
            .command("pg_ctl")
            .args(["-w", "-t", "60", "-m", "fast", "-D"])
            .arg(&self.data)
            .arg("stop")
            .output()
            .context("running pg_ctl stop")?;
        if !out.status.success() {
            bail!(
                "pg_ctl stop failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    fn wait_ready(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let ready = self
                .command("pg_isready")
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the private PostgreSQL did not become ready");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the server if it runs; errors are ignored (used on the way out).
    pub fn shutdown(&self) {
        let _ = self
            .command("pg_ctl")
            .args(["-w", "-t", "30", "-m", "immediate", "-D"])
            .arg(&self.data)
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The newest `/usr/lib/postgresql/*/bin` with `initdb`, else the directory of `pg_config`.
fn find_bin() -> anyhow::Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    let out = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .context("no /usr/lib/postgresql/*/bin and no pg_config: pass --pg-bin")?;
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}
