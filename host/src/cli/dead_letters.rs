//! `kfp-event-router dead-letters list|show|redrive`: the dead letters of a stopped router's
//! state (the redb folder, opened and locked here), of a shared PostgreSQL state (even while
//! routers run), or, with `--admin URL`, of a running router through its admin API. The output
//! is the same whichever way it went.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use url::Url;

use super::admin_client::AdminClient;
use crate::config::{CONFIG_ENV, Config};
use crate::server::admin::api::{FilterParams, RedriveRequest};
use crate::state::dead_letter::{Page, Redriven, StoredLetter, Summary};
use crate::state::{State, StateError};

/// The environment variable `--admin` reads the admin token from, without
/// `--admin-token-file`.
pub const ADMIN_TOKEN_ENV: &str = "KFP_EVENT_ROUTER_ADMIN_TOKEN";

/// `dead-letters`: where the dead letters are, and what to do with them.
#[derive(Debug, Args)]
pub struct DeadLettersArgs {
    /// The config file: its `[state]` is opened, and its endpoints are those a letter can be
    /// redriven to. Not needed with `--admin`.
    #[arg(long, env = CONFIG_ENV, global = true)]
    pub config: Option<PathBuf>,
    /// Ask the running router at this URL (its `server.listen`, e.g. `http://127.0.0.1:9090`)
    /// instead of opening the state; needs its admin token.
    #[arg(long, global = true)]
    pub admin: Option<Url>,
    /// A file holding the admin token (else `KFP_EVENT_ROUTER_ADMIN_TOKEN`).
    #[arg(long, global = true)]
    pub admin_token_file: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: DeadLettersCommand,
}

/// The `dead-letters` subcommands.
#[derive(Debug, Subcommand)]
pub enum DeadLettersCommand {
    /// Print the dead letters, oldest first, one a line: time, endpoint, id, reason, workflow,
    /// attempts, last error (tab-separated).
    List {
        /// Which ones.
        #[command(flatten)]
        filter: FilterArgs,
        /// Print JSON lines instead.
        #[arg(long)]
        json: bool,
        /// At most this many.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Print one whole dead letter (event, payload, error) as JSON.
    Show {
        /// Its id, as `list` prints it.
        id: String,
    },
    /// Put dead letters back into the outbox for their endpoint, to be delivered again (with
    /// the current plugins, retries and signing, and the same webhook-id), and remove them.
    /// Takes ids, a filter, or --all.
    Redrive {
        /// Their ids, as `list` prints them.
        ids: Vec<String>,
        /// Or those a filter matches.
        #[command(flatten)]
        filter: FilterArgs,
        /// Or every dead letter.
        #[arg(long)]
        all: bool,
    },
}

/// Which dead letters: every condition given must hold.
#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Of this endpoint.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Of events with this reason, e.g. `WorkflowFailed`.
    #[arg(long)]
    pub reason: Option<String>,
    /// Given up at or after: RFC 3339 (`2026-05-01T12:00:00Z`) or a duration ago (`2h`).
    #[arg(long)]
    pub since: Option<String>,
    /// Given up at or before: RFC 3339 or a duration ago.
    #[arg(long)]
    pub until: Option<String>,
    /// Whose last error contains this text.
    #[arg(long)]
    pub error: Option<String>,
}

impl From<FilterArgs> for FilterParams {
    fn from(f: FilterArgs) -> Self {
        Self {
            endpoint: f.endpoint,
            reason: f.reason,
            since: f.since,
            until: f.until,
            error: f.error,
        }
    }
}

/// Where the dead letters are read and redriven.
enum Target {
    /// The state, opened here.
    Direct {
        state: State,
        endpoints: BTreeSet<String>,
    },
    /// A running router's admin API.
    Admin(AdminClient),
}

/// Runs a `dead-letters` command.
pub(crate) async fn run(args: DeadLettersArgs) -> anyhow::Result<ExitCode> {
    let target = match open(&args)? {
        Ok(target) => target,
        Err(code) => return Ok(code),
    };
    let outcome = execute(&target, args.command).await;
    if let Target::Direct { state, .. } = target {
        let outbox = state.outbox.clone();
        drop(state);
        outbox.close().await.context("cannot close the state")?;
    }
    outcome
}

/// Opens the state, or makes the admin API's client; `Err` is the exit code of a bad config.
fn open(args: &DeadLettersArgs) -> anyhow::Result<Result<Target, ExitCode>> {
    if let Some(url) = &args.admin {
        let token = match &args.admin_token_file {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the admin token file {}", path.display()))?
                .trim()
                .to_owned(),
            None => std::env::var(ADMIN_TOKEN_ENV).map_err(|_| {
                anyhow::anyhow!(
                    "--admin needs the admin token: --admin-token-file PATH or {ADMIN_TOKEN_ENV}"
                )
            })?,
        };
        return Ok(Ok(Target::Admin(AdminClient::new(url.clone(), token)?)));
    }
    let Some(path) = &args.config else {
        anyhow::bail!(
            "say where the dead letters are: --config FILE (or {CONFIG_ENV}), or --admin URL"
        );
    };
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {}", super::invalid(&e));
            return Ok(Err(ExitCode::from(super::EXIT_INVALID_CONFIG)));
        }
    };
    let state = match State::open(&config.state) {
        Ok(state) => state,
        Err(StateError::Locked(dir)) => anyhow::bail!(
            "state dir {} is in use by a running kfp-event-router: ask it instead, with \
             --admin URL (its server.listen) and its admin token",
            dir.display()
        ),
        Err(e) => return Err(e.into()),
    };
    Ok(Ok(Target::Direct {
        state,
        endpoints: config.endpoint_names(),
    }))
}

async fn execute(target: &Target, command: DeadLettersCommand) -> anyhow::Result<ExitCode> {
    match command {
        DeadLettersCommand::List {
            filter,
            json,
            limit,
        } => {
            let letters = list(target, filter.into(), limit).await?;
            for summary in &letters {
                match json {
                    true => println!("{}", serde_json::to_string(summary)?),
                    false => println!("{}", line(summary)),
                }
            }
            eprintln!("{} dead letters", letters.len());
            Ok(ExitCode::SUCCESS)
        }
        DeadLettersCommand::Show { id } => match show(target, &id).await? {
            Some(letter) => {
                println!("{}", serde_json::to_string_pretty(&letter)?);
                Ok(ExitCode::SUCCESS)
            }
            None => {
                eprintln!("error: no dead letter {id}");
                Ok(ExitCode::FAILURE)
            }
        },
        DeadLettersCommand::Redrive { ids, filter, all } => {
            let request = RedriveRequest::new(ids, filter.into(), all);
            // Checked here too, so that a bare `redrive` is refused the same way everywhere.
            request.selection().map_err(anyhow::Error::msg)?;
            let report = redrive(target, &request).await?;
            Ok(print_redriven(&report))
        }
    }
}

/// One line of `list`.
fn line(s: &Summary) -> String {
    format!(
        "{}\t{}\t{}\t{}\t{}\t{}\t{}",
        s.time, s.endpoint, s.id, s.reason, s.workflow, s.attempts, s.last_error
    )
}

async fn list(
    target: &Target,
    filter: FilterParams,
    limit: Option<usize>,
) -> anyhow::Result<Vec<Summary>> {
    match target {
        Target::Direct { state, .. } => {
            let filter = filter.filter().map_err(anyhow::Error::msg)?;
            let Page { dead_letters, .. } = state
                .dead_letters
                .list(&filter, None, limit)
                .await
                .context("cannot read the dead letters")?;
            Ok(dead_letters)
        }
        Target::Admin(client) => client.list(&filter, limit).await,
    }
}

async fn show(target: &Target, id: &str) -> anyhow::Result<Option<StoredLetter>> {
    match target {
        Target::Direct { state, .. } => state
            .dead_letters
            .get(id)
            .await
            .context("cannot read the dead letters"),
        Target::Admin(client) => client.show(id).await,
    }
}

async fn redrive(target: &Target, request: &RedriveRequest) -> anyhow::Result<Redriven> {
    match target {
        Target::Direct { state, endpoints } => {
            let selection = request.selection().map_err(anyhow::Error::msg)?;
            state
                .dead_letters
                .redrive(&state.outbox, &selection, |e| endpoints.contains(e))
                .await
                .context("cannot redrive the dead letters")
        }
        Target::Admin(client) => client.redrive(request).await,
    }
}

/// Prints what a redrive did: the count on stdout, what it left on stderr; exits 1 when it
/// left any.
fn print_redriven(report: &Redriven) -> ExitCode {
    let per_endpoint: Vec<String> = report
        .by_endpoint
        .iter()
        .map(|(endpoint, n)| format!("{endpoint}: {n}"))
        .collect();
    match per_endpoint.is_empty() {
        true => println!("redriven {}", report.redriven),
        false => println!("redriven {} ({})", report.redriven, per_endpoint.join(", ")),
    }
    for refused in &report.refused {
        eprintln!("not redriven: {}: {}", refused.id, refused.reason);
    }
    for id in &report.not_found {
        eprintln!("not redriven: {id}: no such dead letter");
    }
    match report.refused.is_empty() && report.not_found.is_empty() {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    }
}
