//! The `dead_letters` table, read back and redriven.

use super::writer::Write;
use super::{Postgres, READ_PATIENCE};
use crate::model::event::RouterEvent;
use crate::state::outbox::{OutboxError, Result};
use tokio::sync::oneshot;

/// A dead letter to redrive: the rows that hold it, and its event to accept again for its
/// endpoint.
pub(crate) struct RedriveLetter {
    /// Its rows in `dead_letters` (more than one when it was written twice).
    pub(crate) rows: Vec<i64>,
    /// The event.
    pub(crate) event: RouterEvent,
    /// The endpoint it goes to again.
    pub(crate) endpoint: String,
}

impl Postgres {
    /// Every row of `dead_letters`, oldest first: (id, the letter's JSON). Blocks: call it on
    /// a blocking thread.
    pub(crate) fn dead_letter_rows(&self) -> Result<Vec<(i64, String)>> {
        self.read(READ_PATIENCE, |client| async move {
            let rows = client
                .query("SELECT id, letter FROM dead_letters ORDER BY id", &[])
                .await?;
            Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
        })
    }

    /// In one transaction, deletes the rows of `letters` and accepts the event of each letter
    /// whose rows were still there (another redrive may have taken them first), notifying
    /// every router's workers. Answers, per letter, whether it was redriven.
    pub(crate) async fn redrive(&self, letters: Vec<RedriveLetter>) -> Result<Vec<bool>> {
        if letters.is_empty() {
            return Ok(Vec::new());
        }
        let (done, wait) = oneshot::channel();
        self.send(Write::Redrive(letters, done))?;
        wait.await.map_err(|_| OutboxError::Stopped)
    }
}
