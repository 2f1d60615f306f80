//! `syncguard secrets …`. Being built.

#[derive(Debug, clap::Subcommand)]
pub enum SecretsCommand {
    /// Re-seal every stored secret under the current master key.
    Rotate,
}

pub async fn run(_cmd: SecretsCommand) -> anyhow::Result<()> {
    anyhow::bail!("secrets rotate is not available yet")
}
