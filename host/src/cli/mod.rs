//! The command line: `run`, `validate`, `receive`, `record`, `dead-letters list|show|redrive`,
//! `plugin test|check|diff|new`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::{CONFIG_ENV, Config, ConfigError};
use crate::deliver::signing::Verifier;
use crate::model::secret::Secret;
use crate::payload::format::Format;
use crate::pipeline::plugin_check;
use crate::pipeline::plugin_diff::{self, DiffOptions};
use crate::pipeline::plugin_test::{self, TestOptions};
use crate::telemetry::LogFormat;
use scaffold::Lang;

mod admin_client;
mod dead_letters;
mod scaffold;

pub use dead_letters::{ADMIN_TOKEN_ENV, DeadLettersArgs, DeadLettersCommand, FilterArgs};

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
        /// Check everything but the files and environment variables the config names
        /// (secrets, plugins, subscribers, recordings), which may exist only in the pod.
        #[arg(long)]
        offline: bool,
    },
    /// Receive webhooks and print them: a stand-in endpoint for trying the router out.
    Receive {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Environment variable holding the signing secret (`whsec_…`) or the ed25519 public
        /// key (`whpk_…`), to check signatures.
        #[arg(long)]
        secret_env: Option<String>,
        /// Exit after this many requests.
        #[arg(long)]
        exit_after: Option<u64>,
    },
    /// Record a namespace's live Workflows and workflow-controller Events as a recording that
    /// `source.kind = "replay"` reads: what exists first (as ADDED), then every change, until
    /// Ctrl-C or `--duration`. Uses KUBECONFIG / ~/.kube/config, or the pod's ServiceAccount.
    Record {
        /// The namespace; defaults to POD_NAMESPACE, else the kubeconfig context's.
        #[arg(long, short = 'n')]
        namespace: Option<String>,
        /// The file to write (JSON Lines); `-` for standard output.
        #[arg(long, short = 'o')]
        output: PathBuf,
        /// Stop after this long, e.g. `10m`; runs until Ctrl-C otherwise.
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<std::time::Duration>,
    },
    /// List, show and redrive dead letters: deliveries given up after their retries. Works on
    /// the state of a stopped router (`--config`), a shared PostgreSQL state, or a running
    /// router through its admin API (`--admin URL`).
    DeadLetters(DeadLettersArgs),
    /// Work with WebAssembly plugins.
    Plugin {
        /// What to do with plugins.
        #[command(subcommand)]
        command: PluginCommand,
    },
}

/// The `plugin` subcommands.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Write a new plugin project that builds and tests on its own: Rust (with the SDK crate),
    /// Python (componentize-py) or JavaScript (componentize-js), each with `build.sh`, a
    /// README and a test over a recorded run.
    New {
        /// The plugin's name: lower-case letters, digits and `-`.
        name: String,
        /// The language.
        #[arg(long, value_enum)]
        lang: Lang,
        /// The folder to write; `./<name>` by default. It must not exist or be empty.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Run a plugin over a recording and print, per event, the facts it is given, the input
    /// payload, its action and the time it took, and its output. Exits with 1 when a call
    /// failed.
    Test {
        /// The plugin component (`.wasm`).
        plugin: PathBuf,
        /// A recording: the JSON Lines of Kubernetes objects that `replay` reads.
        #[arg(long)]
        events: PathBuf,
        /// A TOML file with the plugin's configuration, or a router config whose
        /// `[plugins.config.<name>]` and limits (`[plugins]`, `[plugins.settings.<name>]`)
        /// are used; `{}` and the default limits when absent.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The payload format rendered before the plugin: `kfp`, `extended` or `cloudevents`.
        #[arg(long, default_value = "kfp", value_parser = parse_format)]
        format: Format,
        /// The endpoint name the plugin is told about.
        #[arg(long, default_value = "test")]
        endpoint: String,
    },
    /// Report a plugin's contract version, imports, exports and size, and whether the router
    /// would run it. Exits with 1 when it would not.
    Check {
        /// The plugin component (`.wasm`).
        plugin: PathBuf,
        /// The plugin's configuration, as for `plugin test`; its init is checked with it.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run two versions of a plugin over a recording and show, per event, where they decide
    /// or render differently. Exits with 1 when they differ.
    Diff {
        /// The version running now (`.wasm`).
        old: PathBuf,
        /// The version to compare it with (`.wasm`).
        new: PathBuf,
        /// A recording: the JSON Lines of Kubernetes objects that `replay` reads.
        #[arg(long)]
        events: PathBuf,
        /// The plugins' configuration, as for `plugin test`; in a router config, each version
        /// gets that of its file name, NEW that of OLD's when it has none of its own.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The payload format rendered before the plugins.
        #[arg(long, default_value = "kfp", value_parser = parse_format)]
        format: Format,
        /// The endpoint name the plugins are told about.
        #[arg(long, default_value = "test")]
        endpoint: String,
    },
}

fn parse_format(text: &str) -> Result<Format, String> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|_| format!("unknown format {text:?}: use kfp, extended or cloudevents"))
}

/// Exit status when the config cannot be used (unreadable or invalid), under `run` and
/// `validate` alike.
pub const EXIT_INVALID_CONFIG: u8 = 1;

/// Exit status when a replay ended with deliveries given up (dead-lettered). A router stopped
/// by SIGTERM or SIGINT exits 0 whatever it dead-lettered: the dead letters are its record.
pub const EXIT_DEAD_LETTERS: u8 = 3;

/// Runs the command; errors are for `main` to print.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run { config, dry_run } => {
            let config = match Config::load(&config) {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("error: {}", invalid(&e));
                    return Ok(ExitCode::from(EXIT_INVALID_CONFIG));
                }
            };
            if dry_run {
                let mut stdout = std::io::stdout();
                crate::pipeline::dry_run(config, &mut stdout).await?;
                return Ok(ExitCode::SUCCESS);
            }
            let shutdown = shutdown_signal();
            let summary = crate::pipeline::run(config, shutdown.clone()).await?;
            tracing::info!(
                events = summary.events,
                dead_lettered = summary.dead_lettered,
                "router stopped"
            );
            Ok(match summary.dead_lettered {
                _ if shutdown.is_cancelled() => ExitCode::SUCCESS,
                0 => ExitCode::SUCCESS,
                _ => ExitCode::from(EXIT_DEAD_LETTERS),
            })
        }
        Command::Validate { config, offline } => {
            let checked = match offline {
                true => Config::load_offline(&config),
                false => Config::load(&config),
            };
            match checked {
                Ok(config) => {
                    let how = match offline {
                        true => ", offline: the files and variables it names were not read",
                        false => "",
                    };
                    println!(
                        "{}: ok ({} endpoints{how})",
                        config.path.display(),
                        config.endpoints.len()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("{e}");
                    Ok(ExitCode::from(EXIT_INVALID_CONFIG))
                }
            }
        }
        Command::Receive {
            listen,
            secret_env,
            exit_after,
        } => {
            let key = secret_env
                .map(|name| {
                    let value = std::env::var(&name)
                        .with_context(|| format!("environment variable {name} is not set"))?;
                    Verifier::from_secret(&Secret::new(value)).map_err(anyhow::Error::msg)
                })
                .transpose()?;
            crate::receive::serve(listen, key, exit_after, shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Record {
            namespace,
            output,
            duration,
        } => {
            let options = crate::source::kubernetes::record::RecordOptions {
                namespace,
                output,
                duration,
            };
            let path = options.output.clone();
            let summary =
                crate::source::kubernetes::record::record(options, shutdown_signal()).await?;
            eprintln!(
                "{}: {} Workflow and {} Event lines",
                path.display(),
                summary.workflows,
                summary.events
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::DeadLetters(args) => dead_letters::run(args).await,
        Command::Plugin {
            command:
                PluginCommand::Test {
                    plugin,
                    events,
                    config,
                    format,
                    endpoint,
                },
        } => {
            let options = TestOptions {
                plugin,
                events,
                config,
                format,
                endpoint,
                timings: true,
            };
            let summary = plugin_test::run(options, &mut std::io::stdout()).await?;
            Ok(match summary.failed {
                0 => ExitCode::SUCCESS,
                _ => ExitCode::FAILURE,
            })
        }
        Command::Plugin {
            command: PluginCommand::New { name, lang, dir },
        } => {
            let dir = scaffold::scaffold(&name, lang, dir)?;
            println!(
                "wrote {}: run ./build.sh there, then ./test.sh; see its README.md",
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin {
            command: PluginCommand::Check { plugin, config },
        } => {
            let runs = plugin_check::run(&plugin, config.as_ref(), &mut std::io::stdout()).await?;
            Ok(if runs {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Plugin {
            command:
                PluginCommand::Diff {
                    old,
                    new,
                    events,
                    config,
                    format,
                    endpoint,
                },
        } => {
            let options = DiffOptions {
                old,
                new,
                events,
                config,
                format,
                endpoint,
            };
            let summary = plugin_diff::run(options, &mut std::io::stdout()).await?;
            Ok(match summary.same == summary.events {
                true => ExitCode::SUCCESS,
                false => ExitCode::FAILURE,
            })
        }
    }
}

/// How a config error is printed.
fn invalid(e: &ConfigError) -> String {
    match e {
        ConfigError::Invalid(_) => format!("invalid config:\n{e}"),
        ConfigError::Read { .. } => e.to_string(),
    }
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
