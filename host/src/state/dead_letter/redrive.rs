//! Listing, showing and redriving dead letters, in either backend.
//!
//! A redrive accepts the letter's event into the outbox again, for its endpoint alone, and
//! removes the letter: the deliver stage then sends it as any other delivery (the current
//! plugin chain, retries, signing), with the same `webhook-id`, since that is made from the
//! event's id. With PostgreSQL both happen in one transaction, which takes only rows still
//! there: two redrives at once (two routers, a router and the CLI) deliver a letter once. With
//! redb the event is stored first and the file rewritten after, under the file's lock: a crash
//! in between leaves the letter to be redriven again (at least once, as every delivery).

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::filter::{Filter, Page, cursor, is_after, order_key};
use super::letter::StoredLetter;
use super::{DeadLetterFile, DeadLetters};
use crate::state::outbox::{Accept, AcceptBatch, Outbox};
use crate::state::postgres::RedriveLetter;

/// Which dead letters a redrive takes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Selection {
    /// These ids.
    Ids(Vec<String>),
    /// Those the filter matches; an empty filter takes them all.
    Matching(Filter),
}

/// What a redrive did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Redriven {
    /// Dead letters put back into the outbox (and removed).
    pub(crate) redriven: u64,
    /// The same, per endpoint.
    pub(crate) by_endpoint: BTreeMap<String, u64>,
    /// Dead letters left as they are, and why.
    pub(crate) refused: Vec<Refused>,
    /// Ids asked for that name no dead letter (or one another redrive took first).
    pub(crate) not_found: Vec<String>,
}

/// A dead letter a redrive left where it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Refused {
    /// Its id.
    pub(crate) id: String,
    /// Its endpoint.
    pub(crate) endpoint: String,
    /// Why, e.g. the endpoint is no longer in the config.
    pub(crate) reason: String,
}

/// A letter as read, with its row in `dead_letters` (PostgreSQL).
struct Read {
    letter: StoredLetter,
    row: Option<i64>,
}

/// The letters of one id a redrive takes: the newest, and every row or line that holds it.
struct Chosen<'a> {
    letter: &'a StoredLetter,
    all: Vec<&'a Read>,
}

impl DeadLetters {
    /// The dead letters `filter` matches, oldest first: those after the cursor `after` (a
    /// page's `next`), at most `limit` of them.
    pub(crate) async fn list(
        &self,
        filter: &Filter,
        after: Option<&str>,
        limit: Option<usize>,
    ) -> std::io::Result<Page> {
        let mut summaries: Vec<_> = self
            .read_all()
            .await?
            .iter()
            .filter(|r| filter.matches(&r.letter))
            .map(|r| r.letter.summary())
            .filter(|s| after.is_none_or(|after| is_after(s, after)))
            .collect();
        summaries.sort_by_cached_key(|s| order_key(&s.time, &s.id));
        let mut page = Page::default();
        if let Some(limit) = limit.filter(|l| summaries.len() > *l) {
            summaries.truncate(limit);
            page.next = summaries.last().map(cursor);
        }
        page.dead_letters = summaries;
        Ok(page)
    }

    /// The dead letter `id` names (the newest, should it have been written twice).
    pub(crate) async fn get(&self, id: &str) -> std::io::Result<Option<StoredLetter>> {
        Ok(self
            .read_all()
            .await?
            .into_iter()
            .rev()
            .find(|r| r.letter.id == id)
            .map(|r| r.letter))
    }

    /// Puts the event of each dead letter `selection` takes back into `outbox` for its
    /// endpoint, and removes the letter; letters whose endpoint `configured` does not know are
    /// refused and left. `outbox` must be this state's.
    pub(crate) async fn redrive(
        &self,
        outbox: &Outbox,
        selection: &Selection,
        configured: impl Fn(&str) -> bool,
    ) -> std::io::Result<Redriven> {
        let _turn = match self {
            Self::File(file) => Some(file.redrive_turn().await),
            Self::Postgres(_) => None,
        };
        let read = self.read_all().await?;
        let mut report = Redriven::default();
        let mut chosen: Vec<Chosen<'_>> = Vec::new();
        let mut by_id: HashMap<&str, usize> = HashMap::new();
        for r in &read {
            let wanted = match selection {
                Selection::Ids(ids) => ids.contains(&r.letter.id),
                Selection::Matching(filter) => filter.matches(&r.letter),
            };
            if !wanted {
                continue;
            }
            match by_id.get(r.letter.id.as_str()) {
                Some(&i) => {
                    chosen[i].letter = &r.letter;
                    chosen[i].all.push(r);
                }
                None => {
                    by_id.insert(&r.letter.id, chosen.len());
                    chosen.push(Chosen {
                        letter: &r.letter,
                        all: vec![r],
                    });
                }
            }
        }
        if let Selection::Ids(ids) = selection {
            report.not_found = ids
                .iter()
                .filter(|id| !by_id.contains_key(id.as_str()))
                .cloned()
                .collect();
        }
        chosen.retain(|c| {
            let known = configured(&c.letter.endpoint);
            if !known {
                report.refused.push(Refused {
                    id: c.letter.id.clone(),
                    endpoint: c.letter.endpoint.clone(),
                    reason: format!(
                        "endpoint {:?} is not in the config: add it back to redrive this letter",
                        c.letter.endpoint
                    ),
                });
            }
            known
        });
        let taken = match self {
            Self::File(file) => redrive_file(file, outbox, &chosen).await?,
            Self::Postgres(db) => {
                let letters = chosen
                    .iter()
                    .map(|c| RedriveLetter {
                        rows: c.all.iter().filter_map(|r| r.row).collect(),
                        event: c.letter.event.clone(),
                        endpoint: c.letter.endpoint.clone(),
                    })
                    .collect();
                db.redrive(letters).await.map_err(std::io::Error::other)?
            }
        };
        for (c, taken) in chosen.iter().zip(taken) {
            if taken {
                report.redriven += 1;
                *report
                    .by_endpoint
                    .entry(c.letter.endpoint.clone())
                    .or_default() += 1;
            } else {
                report.not_found.push(c.letter.id.clone());
            }
        }
        Ok(report)
    }

    /// Every letter, oldest first.
    async fn read_all(&self) -> std::io::Result<Vec<Read>> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || match this {
            Self::File(file) => Ok(file
                .read_all()?
                .into_iter()
                .map(|letter| Read { letter, row: None })
                .collect()),
            Self::Postgres(db) => {
                let rows = db.dead_letter_rows().map_err(std::io::Error::other)?;
                Ok(rows
                    .into_iter()
                    .filter_map(|(row, json)| match StoredLetter::parse(&json) {
                        Ok(letter) => Some(Read {
                            letter,
                            row: Some(row),
                        }),
                        Err(e) => {
                            tracing::warn!(row, "dead letter unreadable, skipped: {e}");
                            None
                        }
                    })
                    .collect())
            }
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

/// The redb side of a redrive: stores the events, durably, then removes their lines.
async fn redrive_file(
    file: &DeadLetterFile,
    outbox: &Outbox,
    chosen: &[Chosen<'_>],
) -> std::io::Result<Vec<bool>> {
    if chosen.is_empty() {
        return Ok(Vec::new());
    }
    let batch = AcceptBatch {
        events: chosen
            .iter()
            .map(|c| Accept {
                event: c.letter.event.clone(),
                endpoints: vec![c.letter.endpoint.clone()],
            })
            .collect(),
        ..AcceptBatch::default()
    };
    outbox.accept(batch).await.map_err(std::io::Error::other)?;
    let gone: HashSet<(String, String)> = chosen
        .iter()
        .flat_map(|c| &c.all)
        .map(|r| (r.letter.id.clone(), r.letter.time.clone()))
        .collect();
    let file = file.clone();
    tokio::task::spawn_blocking(move || file.remove(&gone))
        .await
        .map_err(std::io::Error::other)??;
    Ok(vec![true; chosen.len()])
}
