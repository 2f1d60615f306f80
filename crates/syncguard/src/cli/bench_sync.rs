//! `syncguard bench sync`. Being built.

#[derive(Debug, clap::Args)]
pub struct SyncBenchArgs {
    /// Print one JSON object on the last line.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(_args: SyncBenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("bench sync is not available yet")
}
