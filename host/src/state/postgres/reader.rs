//! The reader: runs the outbox's reads on a connection of its own, each as its own task (they
//! share the connection, pipelined), for callers that block on the answer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use super::link::{Backoff, Link, describe, is_transient, needs_new_session};
use crate::state::outbox::{OutboxError, Result};

/// A read to run: called with the reader, it answers its caller itself.
pub(super) type Job = Box<dyn FnOnce(Arc<Reader>) -> BoxFuture<'static, ()> + Send>;

/// Holds the read connection, reconnecting when it is lost.
pub(super) struct Reader {
    link: Link,
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
    closing: CancellationToken,
}

impl Reader {
    /// A reader connecting through `link` (on its first read); `closing` ends its waits.
    pub(super) fn new(link: Link, closing: CancellationToken) -> Self {
        Self {
            link,
            client: tokio::sync::Mutex::new(None),
            closing,
        }
    }

    /// Runs each job as a task, until every sender is gone.
    pub(super) async fn run(self: Arc<Self>, mut jobs: mpsc::UnboundedReceiver<Job>) {
        while let Some(job) = jobs.recv().await {
            tokio::spawn(job(Arc::clone(&self)));
        }
    }

    /// Runs `query` until it succeeds, fails for real, `patience` has passed (when the server
    /// is down) or the outbox closes.
    pub(super) async fn retrying<T, F, Fut>(&self, patience: Duration, query: F) -> Result<T>
    where
        F: Fn(Arc<Client>) -> Fut,
        Fut: Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let last_error = Mutex::new(String::new());
        let attempts = async {
            let mut backoff = Backoff::default();
            loop {
                let (error, transient) = match self.client().await {
                    Ok(client) => match query(Arc::clone(&client)).await {
                        Ok(answer) => return Ok(answer),
                        Err(e) => {
                            let transient = is_transient(&e, &client);
                            (e, transient)
                        }
                    },
                    Err(e) => (e, true),
                };
                if !transient {
                    return Err(OutboxError::from(error));
                }
                if needs_new_session(&error) {
                    *self.client.lock().await = None;
                }
                *last_error.lock().unwrap_or_else(|e| e.into_inner()) = describe(&error);
                tokio::time::sleep(backoff.next()).await;
            }
        };
        tokio::select! {
            answer = attempts => answer,
            () = tokio::time::sleep(patience) => Err(OutboxError::Postgres(format!(
                "no answer within {patience:?}: {}",
                last_error.lock().unwrap_or_else(|e| e.into_inner())
            ))),
            () = self.closing.cancelled() => Err(OutboxError::Stopped),
        }
    }

    /// The connection, made again when it was lost.
    async fn client(&self) -> Result<Arc<Client>, tokio_postgres::Error> {
        let mut held = self.client.lock().await;
        if let Some(client) = held.as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(client));
        }
        let client = Arc::new(self.link.connect().await?);
        *held = Some(Arc::clone(&client));
        Ok(client)
    }
}
