//! The master key that seals credentials and webhook secrets at rest.
//!
//! Looked up in order: `SYNCGUARD_MASTER_KEY` (base64 of 32 bytes), then the key file of
//! `master_key_file` (default `syncguard.key`). Outside production a missing key file is
//! generated (mode 0600) and announced; in production a missing key stops the start, because a
//! key nobody backed up makes every stored credential unreadable after a move.

use crate::config::{Config, Environment};
use anyhow::{bail, Context};
use std::path::Path;
use syncguard_core::seal::{MasterKey, Sealer};

/// Where the key came from, for the startup lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Env,
    File(String),
    Generated(String),
}

pub fn load_sealer(config: &Config) -> anyhow::Result<(Sealer, KeySource)> {
    let previous = config
        .previous_master_keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            MasterKey::from_base64(k)
                .with_context(|| format!("`previous_master_keys[{i}]`: not base64 of 32 bytes"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if let Ok(text) = std::env::var("SYNCGUARD_MASTER_KEY") {
        let key = MasterKey::from_base64(&text)
            .context("SYNCGUARD_MASTER_KEY must be base64 of 32 bytes")?;
        return Ok((Sealer::new(key, previous), KeySource::Env));
    }
    let path = Path::new(&config.master_key_file);
    if path.exists() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading master key file {}", path.display()))?;
        let key = MasterKey::from_base64(&text).with_context(|| {
            format!(
                "master key file {} must hold base64 of 32 bytes",
                path.display()
            )
        })?;
        return Ok((
            Sealer::new(key, previous),
            KeySource::File(path.display().to_string()),
        ));
    }
    if config.environment == Environment::Production {
        bail!("no master key: set SYNCGUARD_MASTER_KEY or `master_key_file` (production never generates one)");
    }
    let text = MasterKey::generate_base64(&mut rand::rngs::OsRng);
    write_private(path, &text)
        .with_context(|| format!("writing new master key file {}", path.display()))?;
    let key = MasterKey::from_base64(&text).expect("generated key is valid");
    Ok((
        Sealer::new(key, previous),
        KeySource::Generated(path.display().to_string()),
    ))
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")
}
