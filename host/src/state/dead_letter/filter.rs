//! Which dead letters a `list` or `redrive` means, and pages of a list.

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::letter::{StoredLetter, Summary};

/// Conditions a dead letter must all meet; an empty filter takes every one.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Filter {
    /// Its endpoint's name.
    pub(crate) endpoint: Option<String>,
    /// Its event's reason, e.g. `WorkflowFailed` (as `reasons` on endpoints).
    pub(crate) reason: Option<String>,
    /// Given up at or after this.
    pub(crate) since: Option<Timestamp>,
    /// Given up at or before this.
    pub(crate) until: Option<Timestamp>,
    /// Text its last error contains.
    pub(crate) error: Option<String>,
}

impl Filter {
    /// Whether `letter` meets every condition. A letter whose time does not parse meets no
    /// `since` or `until`.
    pub(crate) fn matches(&self, letter: &StoredLetter) -> bool {
        let time = || letter.time.parse::<Timestamp>().ok();
        self.endpoint.as_ref().is_none_or(|e| *e == letter.endpoint)
            && self
                .reason
                .as_ref()
                .is_none_or(|r| *r == letter.event.event.reason)
            && self.since.is_none_or(|s| time().is_some_and(|t| t >= s))
            && self.until.is_none_or(|u| time().is_some_and(|t| t <= u))
            && self
                .error
                .as_ref()
                .is_none_or(|e| letter.last_error.contains(e.as_str()))
    }
}

/// Reads a `since` or `until`: an RFC 3339 time (`2026-05-01T12:00:00Z`), or a duration
/// (`2h`, `30m`, `1day`) meaning that long before `now`.
pub(crate) fn parse_time(text: &str, now: Timestamp) -> Result<Timestamp, String> {
    if let Ok(time) = text.parse::<Timestamp>() {
        return Ok(time);
    }
    let ago = humantime::parse_duration(text).map_err(|_| {
        format!("{text:?} is neither an RFC 3339 time (2026-05-01T12:00:00Z) nor a duration (2h)")
    })?;
    SignedDuration::try_from(ago)
        .ok()
        .and_then(|ago| now.checked_sub(ago).ok())
        .ok_or_else(|| format!("{text:?} reaches too far back"))
}

/// One page of a list, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Page {
    /// The dead letters on it.
    pub(crate) dead_letters: Vec<Summary>,
    /// When there are more: the `after` that asks for the next page (opaque).
    pub(crate) next: Option<String>,
}

/// The position of a letter in a list: its time, then its id (opaque to clients).
pub(super) fn cursor(summary: &Summary) -> String {
    format!("{}|{}", summary.time, summary.id)
}

/// Whether the letter with `summary` comes after the cursor `after`.
pub(super) fn is_after(summary: &Summary, after: &str) -> bool {
    let Some((time, id)) = after.rsplit_once('|') else {
        return true;
    };
    order_key(&summary.time, &summary.id) > order_key(time, id)
}

/// The order of a list: by time (parsed, so that `…00.5Z` comes after `…00Z`), then id.
pub(super) fn order_key(time: &str, id: &str) -> (Option<Timestamp>, String) {
    (time.parse().ok(), id.to_owned())
}
