//! `syncguard secrets …`: master key rotation for sealed credentials (SPEC §3.3).

use crate::config::{Config, Overrides};
use anyhow::{bail, Context};
use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
pub enum SecretsCommand {
    /// Re-seal every stored secret under the current master key.
    #[command(long_about = ROTATE_HELP)]
    Rotate(RotateArgs),
}

const ROTATE_HELP: &str = "Re-seal every stored secret (connection credentials and webhook secrets) under the current master key.

Every sealed value names the key that sealed it, so a rotation runs while nodes keep serving:

  1. Generate a new key:   openssl rand -base64 32
  2. On every node, make it current (SYNCGUARD_MASTER_KEY, or the file of `master_key_file`)
     and list the old key in `previous_master_keys` (syncguard.toml); restart the nodes.
     They now seal with the new key and still open values sealed with the old one.
  3. Run `syncguard secrets rotate` with the same configuration (or give the old key with
     --previous-key-file instead of listing it in the configuration).
  4. When it reports no failures, remove the old key from `previous_master_keys`.

A value is replaced only if it is still what was read, so secrets changed meanwhile are never
overwritten (they are re-read and retried). Secrets are never printed. Exits non-zero when any
connection could not be re-sealed (e.g. sealed with a key that was not provided).";

#[derive(Debug, clap::Args)]
pub struct RotateArgs {
    /// Store URL: sqlite://path or postgres://user@host/db (SYNCGUARD_DATABASE_URL).
    #[arg(long)]
    pub database_url: Option<String>,
    /// A file holding an old master key (base64 of 32 bytes), in addition to
    /// `previous_master_keys`. Repeatable.
    #[arg(long = "previous-key-file", value_name = "FILE")]
    pub previous_key_files: Vec<PathBuf>,
    /// Count what would be re-sealed without writing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs `cmd` with the configuration file of the global `--config` (or `SYNCGUARD_CONFIG`).
pub async fn run(config_file: Option<&std::path::Path>, cmd: SecretsCommand) -> anyhow::Result<()> {
    match cmd {
        SecretsCommand::Rotate(args) => rotate(config_file, args).await,
    }
}

async fn rotate(config_file: Option<&std::path::Path>, args: RotateArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        database_url: args.database_url.clone(),
        ..Default::default()
    };
    let mut config = Config::load(config_file, &overrides)?.config;
    for file in &args.previous_key_files {
        let key = std::fs::read_to_string(file)
            .with_context(|| format!("reading previous key file {}", file.display()))?;
        config.previous_master_keys.push(key.trim().to_string());
    }
    // Loading the sealer generates a key when none exists; rotating onto a key that no node
    // has would make every credential unreadable, so a current key must already be configured.
    if std::env::var_os("SYNCGUARD_MASTER_KEY").is_none()
        && !std::path::Path::new(&config.master_key_file).exists()
    {
        bail!(
            "no current master key: set SYNCGUARD_MASTER_KEY or create `master_key_file` ({}) first",
            config.master_key_file
        );
    }
    let (sealer, _) = crate::secrets::load_sealer(&config)?;
    let store = syncguard_store::Store::connect(&config.database_url, &Default::default()).await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let report = crate::provider::credentials::reseal_all(&store, &sealer, args.dry_run, now).await;
    store.close().await;
    let report = report.context("re-sealing secrets")?;
    if args.json {
        let mut out = serde_json::to_value(&report)?;
        out["key_id"] = sealer.current_key_id().into();
        out["dry_run"] = args.dry_run.into();
        println!("{out}");
    } else {
        let verb = if args.dry_run {
            "would re-seal"
        } else {
            "re-sealed"
        };
        eprintln!(
            "{}: {verb} {} of {} connections under key {} ({} already current)",
            syncguard_store::redact_url(&config.database_url),
            report.resealed,
            report.connections,
            sealer.current_key_id(),
            report.current
        );
        for f in &report.failed {
            eprintln!("  failed {}: {}", f.connection_id, f.error);
        }
    }
    if !report.failed.is_empty() {
        bail!(
            "{} connection(s) could not be re-sealed",
            report.failed.len()
        );
    }
    Ok(())
}
