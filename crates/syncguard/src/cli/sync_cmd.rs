//! `syncguard sync` and `syncguard health`. Being built.

#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    /// Connection to sync.
    pub connection_id: String,
}

pub async fn sync(_args: SyncArgs) -> anyhow::Result<()> {
    anyhow::bail!("sync is not available yet")
}

#[derive(Debug, clap::Args)]
pub struct HealthArgs {}

pub async fn health(_args: HealthArgs) -> anyhow::Result<()> {
    anyhow::bail!("health is not available yet")
}
