//! `syncguard bench ingest`. Being built.

#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// Print one JSON object on the last line.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(_args: IngestArgs) -> anyhow::Result<()> {
    anyhow::bail!("bench ingest is not available yet")
}
