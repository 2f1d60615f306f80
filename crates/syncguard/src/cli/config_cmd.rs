//! `syncguard config check|show`: the configuration `serve` would run with, from the file and
//! the environment, without starting anything.

use crate::config::{unrecognized_env_vars, Config, Overrides};
use serde_json::json;
use std::path::Path;

#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration file and SYNCGUARD_* environment; exit non-zero naming the
    /// key at fault.
    Check {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the effective configuration (defaults, file, environment) with secrets redacted.
    Show {
        /// Print JSON instead of TOML.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(config: Option<&Path>, cmd: ConfigCommand) -> anyhow::Result<()> {
    let loaded = Config::load(config, &Overrides::default());
    let source = |file: &Option<std::path::PathBuf>| {
        file.as_ref()
            .map(|f| f.display().to_string())
            .unwrap_or_else(|| "built-in defaults and environment".into())
    };
    let ignored = unrecognized_env_vars();
    match cmd {
        ConfigCommand::Check { json } => match loaded {
            Ok(l) => {
                if json {
                    println!(
                        "{}",
                        json!({ "valid": true, "source": source(&l.file), "ignored_variables": ignored })
                    );
                } else {
                    println!("configuration is valid ({})", source(&l.file));
                    for var in &ignored {
                        eprintln!("warning: {var} names no configuration key; it is ignored");
                    }
                }
                Ok(())
            }
            Err(e) => {
                if json {
                    println!(
                        "{}",
                        json!({ "valid": false, "error": e.to_string(), "ignored_variables": ignored })
                    );
                }
                Err(e.into())
            }
        },
        ConfigCommand::Show { json } => {
            let l = loaded?;
            let shown = l.config.redacted();
            if json {
                println!("{}", serde_json::to_string_pretty(&shown)?);
            } else {
                println!(
                    "# effective configuration ({}); secrets redacted",
                    source(&l.file)
                );
                print!("{}", toml::to_string(&shown)?);
            }
            for var in &ignored {
                eprintln!("warning: {var} names no configuration key; it is ignored");
            }
            Ok(())
        }
    }
}
