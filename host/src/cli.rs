//! The command line: `run`, `validate`, `receive`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::{CONFIG_ENV, Config, ConfigError};
use crate::config::secret::Secret;
use crate::deliver::signing::SigningKey;
use crate::telemetry::LogFormat;

/// Routes Kubeflow Pipelines run events to webhooks, through WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "kfp-event-router", version, about)]
pub struct Cli {
    /// How log lines are written (to stderr).
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the router.
    Run {
        /// The config file.
        #[arg(long, env = CONFIG_ENV)]
        config: PathBuf,
        /// Print each payload with its endpoint instead of sending it; store nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Check a config file without running; problems are printed as `file:line:col: message`.
    Validate {
        /// The config file.
        #[arg(long, env = CONFIG_ENV)]
        config: PathBuf,
    },
    /// Receive webhooks and print them: a stand-in endpoint for trying the router out.
    Receive {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Environment variable holding the signing secret, to check signatures.
        #[arg(long)]
        secret_env: Option<String>,
        /// Exit after this many requests.
        #[arg(long)]
        exit_after: Option<u64>,
    },
}

/// Exit status when deliveries were given up (written to the dead-letter file).
pub const EXIT_DEAD_LETTERS: u8 = 3;

/// Runs the command; errors are for `main` to print.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run { config, dry_run } => {
            let config = load(&config)?;
            if dry_run {
                let mut stdout = std::io::stdout();
                crate::router::dry_run(config, &mut stdout).await?;
                return Ok(ExitCode::SUCCESS);
            }
            let summary = crate::router::run(config, shutdown_signal()).await?;
            tracing::info!(events = summary.events, dead_lettered = summary.dead_lettered, "router stopped");
            Ok(match summary.dead_lettered {
                0 => ExitCode::SUCCESS,
                _ => ExitCode::from(EXIT_DEAD_LETTERS),
            })
        }
        Command::Validate { config } => match Config::load(&config) {
            Ok(config) => {
                println!("{}: ok ({} endpoints)", config.path.display(), config.endpoints.len());
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Receive { listen, secret_env, exit_after } => {
            let key = secret_env
                .map(|name| {
                    let value = std::env::var(&name).with_context(|| format!("environment variable {name} is not set"))?;
                    SigningKey::from_secret(&Secret::new(value)).map_err(anyhow::Error::msg)
                })
                .transpose()?;
            crate::receive::serve(listen, key, exit_after, shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn load(path: &std::path::Path) -> anyhow::Result<Config> {
    Config::load(path).map_err(|e| match e {
        ConfigError::Invalid(_) => anyhow::anyhow!("invalid config:\n{e}"),
        ConfigError::Read { .. } => anyhow::Error::new(e),
    })
}

/// A token cancelled on SIGTERM or SIGINT.
fn shutdown_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        cancel.cancel();
    });
    token
}
