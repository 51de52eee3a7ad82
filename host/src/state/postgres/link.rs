//! Connecting to PostgreSQL, telling a passing failure from a real one, and waiting between
//! tries. Nothing here prints the URL: errors name what failed, never where.

use std::error::Error as _;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, Config};

use super::tls::DatabaseTls;
use crate::model::secret::Secret;

/// How long a connection attempt may take, unless the URL says (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long sent data may stay unacknowledged before the connection is given up, unless the
/// URL says (`tcp_user_timeout`): a server that vanished is noticed within this.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a session of this router may sit idle inside a transaction before the server
/// ends it, unless the URL's `options` set `idle_in_transaction_session_timeout`. Every
/// transaction of the router sends its statements back to back, so only a connection that
/// stalled mid-transaction (a network that drops everything, a frozen process) ever waits
/// this long; ending it releases its locks, which would otherwise hold up every other
/// replica's writes until the server noticed the dead peer, hours later.
const IDLE_IN_TRANSACTION: &str = "5s";

/// The first wait after a failure; it doubles up to [`BACKOFF_MAX`].
const BACKOFF_FIRST: Duration = Duration::from_millis(100);

/// The longest wait between two tries.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Parses a connection URL (or `key=value` string), with this crate's defaults filled in.
/// libpq's `sslmode=verify-ca` and `verify-full` read as `require`: the certificate is always
/// verified (see [`DatabaseTls`]).
pub(super) fn parse_url(url: &Secret) -> Result<Config, String> {
    let url = Secret::new(
        url.expose()
            .replace("sslmode=verify-full", "sslmode=require")
            .replace("sslmode=verify-ca", "sslmode=require"),
    );
    let mut config: Config = url
        .expose()
        .parse()
        .map_err(|e| format!("not a PostgreSQL connection URL: {}", describe(&e)))?;
    if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
        return Err("the PostgreSQL connection URL names no host".into());
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(TCP_USER_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("kfp-event-router");
    }
    Ok(config)
}

/// A notification a listening connection received.
pub(super) struct Note {
    /// The server process (`pg_backend_pid()`) of the session that sent it.
    pub(super) sender: i32,
    /// Its payload.
    pub(super) payload: String,
}

/// Opens connections to one database.
#[derive(Clone)]
pub(super) struct Link {
    config: Config,
    tls: DatabaseTls,
}

impl Link {
    /// Connects with `config` (from [`parse_url`]), over TLS as its `sslmode` says.
    pub(super) fn new(config: Config, tls: DatabaseTls) -> Self {
        Self { config, tls }
    }

    /// Connects once; the connection is driven by a task of the current runtime.
    pub(super) async fn connect(&self) -> Result<Client, tokio_postgres::Error> {
        let (client, connection) = self.config.connect(self.tls.connector()).await?;
        tokio::spawn(async move {
            // Its errors reach the client's calls; nothing else to do with them here.
            let _ = connection.await;
        });
        self.prepare(&client).await?;
        Ok(client)
    }

    /// Connects once and hands over the notifications it receives; the receiver ends when
    /// the connection does.
    pub(super) async fn connect_listening(
        &self,
    ) -> Result<(Client, mpsc::UnboundedReceiver<Note>), tokio_postgres::Error> {
        let (client, mut connection) = self.config.connect(self.tls.connector()).await?;
        let (notes, received) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Ok(message)) =
                std::future::poll_fn(|cx| connection.poll_message(cx)).await
            {
                if let AsyncMessage::Notification(note) = message
                    && notes
                        .send(Note {
                            sender: note.process_id(),
                            payload: note.payload().to_owned(),
                        })
                        .is_err()
                {
                    break;
                }
            }
        });
        self.prepare(&client).await?;
        Ok((client, received))
    }

    /// Sets this router's session defaults on a new connection. A `SET` after connecting
    /// rather than a startup option: connection poolers refuse startup options they do not
    /// know.
    async fn prepare(&self, client: &Client) -> Result<(), tokio_postgres::Error> {
        match session_defaults(&self.config) {
            Some(statement) => client.batch_execute(&statement).await,
            None => Ok(()),
        }
    }
}

/// The `SET` of this router's session defaults ([`IDLE_IN_TRANSACTION`]) that the URL's
/// `options` do not set themselves; `None` when they set them all.
fn session_defaults(config: &Config) -> Option<String> {
    let chosen = config
        .get_options()
        .is_some_and(|options| options.contains("idle_in_transaction_session_timeout"));
    (!chosen).then(|| format!("SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION}'"))
}

/// Whether `e` is a TLS handshake that failed (a certificate not trusted, a protocol
/// mismatch): trying again changes nothing.
pub(super) fn is_tls_refusal(e: &tokio_postgres::Error) -> bool {
    let mut cause = e.source();
    while let Some(error) = cause {
        let tls = error
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .is_some_and(|inner| inner.is::<rustls::Error>());
        if tls || error.is::<rustls::Error>() {
            return true;
        }
        cause = error.source();
    }
    false
}

/// Whether `e` may clear by itself: the connection was lost (the server restarted, the
/// network failed, the server ended the session), a wait was cut short, the server is
/// read-only for now, or the server asked to try again. Anything else is a real error.
pub(super) fn is_transient(e: &tokio_postgres::Error, client: &Client) -> bool {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        return ends_the_session(db)
            // A lock wait cut short by `lock_timeout`, which shared servers often set per role:
            // whoever held the lock lets go.
            || code == "55P03"
            || needs_new_session(e)
            // connection exception, transaction rollback, insufficient resources, operator
            // intervention (shutdown, restart, a statement cancelled), system error.
            || matches!(&code[..2], "08" | "40" | "53" | "57" | "58");
    }
    client.is_closed() || e.is_closed() || e.source().is_some_and(|s| s.is::<std::io::Error>())
}

/// Whether `e` is one this session will go on answering, though a new one may not: the
/// server is read-only (a standby, or a primary demoted during a failover, whose address then
/// leads to the new primary). The caller drops the connection before it tries again.
pub(super) fn needs_new_session(e: &tokio_postgres::Error) -> bool {
    e.as_db_error()
        .is_some_and(|db| db.code().code() == "25006")
}

/// Whether the server ended the session with `db` (severity `FATAL`, e.g. a transaction left
/// idle past `idle_in_transaction_session_timeout` while the network stalled): its transaction
/// was rolled back, and a new session may do what this one could not.
fn ends_the_session(db: &tokio_postgres::error::DbError) -> bool {
    use tokio_postgres::error::Severity;
    matches!(
        db.parsed_severity(),
        Some(Severity::Fatal | Severity::Panic)
    )
}

/// `e` with its causes, e.g. `error connecting to server: Connection refused (os error 111)`
/// or `db error: ERROR: ...`.
pub(super) fn describe(e: &tokio_postgres::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Waits between tries: [`BACKOFF_FIRST`], doubling up to [`BACKOFF_MAX`].
pub(super) struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Self(BACKOFF_FIRST)
    }
}

impl Backoff {
    /// The wait before the next try.
    pub(super) fn next(&mut self) -> Duration {
        let wait = self.0;
        self.0 = (self.0 * 2).min(BACKOFF_MAX);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> Config {
        parse_url(&Secret::new(url.to_owned())).unwrap()
    }

    #[test]
    fn sessions_end_a_stalled_transaction_unless_the_url_says_otherwise() {
        let set = session_defaults(&config("postgresql://u@db.example/router"));
        assert_eq!(
            set.as_deref(),
            Some("SET idle_in_transaction_session_timeout = '5s'")
        );
        let chosen = config(
            "postgresql://u@db.example/router?options=-c%20idle_in_transaction_session_timeout%3D60s",
        );
        assert_eq!(
            session_defaults(&chosen),
            None,
            "the URL's own value stands"
        );
    }
}
