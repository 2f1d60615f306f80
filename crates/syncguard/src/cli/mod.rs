//! The `syncguard` command line (SPEC §4.2): `serve`, `migrate`, `bench`, and admin commands
//! that call a running server's API.

mod admin;
#[cfg(feature = "tools")]
mod bench;
#[cfg(feature = "tools")]
mod bench_ingest;
#[cfg(feature = "tools")]
mod bench_sync;
#[cfg(feature = "tools")]
mod chaos;
mod config_cmd;
#[cfg(feature = "tools")]
mod demo;
#[cfg(feature = "tools")]
mod mock;
mod resources;
mod secrets;
mod serve;
mod sync_cmd;

use crate::config::LogFormat;
use clap::{CommandFactory, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "syncguard",
    version,
    about = "Self-hosted integration sync engine: verified webhooks, a durable job queue, sync, publish and health in one binary.",
    long_about = "syncguard sits between your application and the third-party APIs it integrates with, and makes that integration reliable.\n\nStart with `syncguard serve` (embedded SQLite at sqlite://syncguard.db, API on 127.0.0.1:8080). Configuration comes from syncguard.toml (or --config / SYNCGUARD_CONFIG) and SYNCGUARD_* environment variables."
)]
pub struct Cli {
    /// Configuration file (TOML). Defaults to ./syncguard.toml when present.
    #[arg(long, global = true, env = "SYNCGUARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format for commands that log: json (default) or pretty.
    #[arg(long, global = true, value_parser = ["json", "pretty"])]
    pub log_format: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    #[cfg(feature = "tools")]
    /// Run the engine and the mock provider together on embedded SQLite, end to end.
    Demo(demo::DemoArgs),
    /// Check or show the configuration (file and SYNCGUARD_* environment).
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// Run the HTTP API and the workers.
    Serve(serve::ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate(serve::StoreArgs),
    #[cfg(feature = "tools")]
    /// Measure a figure of the performance targets.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Tenants (platform key).
    #[command(subcommand)]
    Tenants(admin::TenantsCommand),
    /// API keys.
    #[command(subcommand)]
    Keys(admin::KeysCommand),
    /// Jobs in the durable queue.
    #[command(subcommand)]
    Jobs(admin::JobsCommand),
    /// Dead letters: list and replay.
    #[command(subcommand)]
    Dlq(admin::DlqCommand),
    /// Connections: list, show, create, pause, resume, disconnect.
    #[command(subcommand)]
    Connections(resources::ConnectionsCommand),
    /// Circuit breakers: list, force open or closed.
    #[command(subcommand)]
    Circuits(resources::CircuitsCommand),
    /// Inbound webhook events: list, show, replay.
    #[command(subcommand)]
    Events(resources::EventsCommand),
    /// Print a shell completion script: `syncguard completions bash > /etc/bash_completion.d/syncguard`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `syncguard man > /usr/local/share/man/man1/syncguard.1`.
    Man,
    #[cfg(feature = "tools")]
    /// Run the mock provider (Trackstar- and eBay-shaped APIs, webhook emitter, faults).
    Mock(mock::MockArgs),
    /// Start a sync of a connection now.
    Sync(sync_cmd::SyncArgs),
    /// Print the health of every connection.
    Health(sync_cmd::HealthArgs),
    /// Sealed secrets: rotate the master key.
    #[command(subcommand)]
    Secrets(secrets::SecretsCommand),
    #[cfg(feature = "tools")]
    /// The reliability suite of RELIABILITY.md (run it through scripts/chaos).
    #[command(hide = true)]
    Chaos(chaos::ChaosArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    let log_format = match cli.log_format.as_deref() {
        Some("pretty") => Some(LogFormat::Pretty),
        Some(_) => Some(LogFormat::Json),
        None => None,
    };
    let result = runtime.block_on(async move {
        match cli.command {
            #[cfg(feature = "tools")]
            Command::Demo(args) => demo::run(args).await,
            Command::Sync(args) => sync_cmd::sync(args).await,
            Command::Health(args) => sync_cmd::health(args).await,
            Command::Config(cmd) => config_cmd::run(cli.config.as_deref(), cmd),
            Command::Serve(args) => serve::serve(cli.config.as_deref(), log_format, args).await,
            Command::Migrate(args) => serve::migrate(cli.config.as_deref(), log_format, args).await,
            #[cfg(feature = "tools")]
            Command::Bench(cmd) => bench::run(cmd).await,
            Command::Tenants(cmd) => admin::tenants(cmd).await,
            Command::Keys(cmd) => admin::keys(cmd).await,
            Command::Jobs(cmd) => admin::jobs(cmd).await,
            Command::Dlq(cmd) => admin::dlq(cmd).await,
            Command::Connections(cmd) => resources::connections(cmd).await,
            Command::Circuits(cmd) => resources::circuits(cmd).await,
            Command::Events(cmd) => resources::events(cmd).await,
            Command::Completions { shell } => {
                clap_complete::generate(
                    shell,
                    &mut Cli::command(),
                    "syncguard",
                    &mut std::io::stdout(),
                );
                Ok(())
            }
            Command::Man => clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout())
                .map_err(Into::into),
            #[cfg(feature = "tools")]
            Command::Mock(args) => mock::run(args).await,
            Command::Secrets(cmd) => secrets::run(cli.config.as_deref(), cmd).await,
            #[cfg(feature = "tools")]
            Command::Chaos(args) => chaos::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
