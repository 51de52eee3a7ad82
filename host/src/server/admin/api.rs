//! The admin API's requests and answers, as JSON: shared by the server and by the
//! `dead-letters` command, which sends them with `--admin` and checks them itself without.

use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::state::dead_letter::{Filter, Selection, parse_time};

/// How many dead letters a list page holds when the request sets no `limit`.
pub(crate) const DEFAULT_LIMIT: usize = 100;

/// The most a list page holds, whatever the request's `limit`.
pub(crate) const MAX_LIMIT: usize = 1000;

/// A filter as written (by a client, or on the command line): every field optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FilterParams {
    /// The endpoint's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) endpoint: Option<String>,
    /// The event's reason, e.g. `WorkflowFailed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
    /// Given up at or after: RFC 3339, or a duration such as `2h` meaning that long ago.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) since: Option<String>,
    /// Given up at or before: RFC 3339, or a duration such as `2h` meaning that long ago.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) until: Option<String>,
    /// Text the last error contains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

impl FilterParams {
    /// The filter these say, times read as of now.
    pub(crate) fn filter(&self) -> Result<Filter, String> {
        let now = Timestamp::now();
        let time = |field: &str, text: &Option<String>| {
            text.as_deref()
                .map(|t| parse_time(t, now).map_err(|e| format!("{field}: {e}")))
                .transpose()
        };
        Ok(Filter {
            endpoint: self.endpoint.clone(),
            reason: self.reason.clone(),
            since: time("since", &self.since)?,
            until: time("until", &self.until)?,
            error: self.error.clone(),
        })
    }

    /// The query pairs that say this filter.
    pub(crate) fn pairs(&self) -> Vec<(&'static str, String)> {
        [
            ("endpoint", &self.endpoint),
            ("reason", &self.reason),
            ("since", &self.since),
            ("until", &self.until),
            ("error", &self.error),
        ]
        .into_iter()
        .filter_map(|(key, value)| value.clone().map(|v| (key, v)))
        .collect()
    }
}

/// `GET /admin/dead-letters`: a filter, and which page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ListQuery {
    /// The filter.
    pub(crate) filter: FilterParams,
    /// The `next` of the previous page.
    pub(crate) after: Option<String>,
    /// At most this many ([`DEFAULT_LIMIT`] when absent, [`MAX_LIMIT`] at most).
    pub(crate) limit: Option<String>,
}

impl ListQuery {
    /// Reads a query string (`endpoint=a&limit=10`); unknown and empty keys are ignored.
    pub(crate) fn parse(query: &str) -> Self {
        let mut parsed = Self::default();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let value = Some(value.into_owned()).filter(|v| !v.is_empty());
            let field = match key.as_ref() {
                "endpoint" => &mut parsed.filter.endpoint,
                "reason" => &mut parsed.filter.reason,
                "since" => &mut parsed.filter.since,
                "until" => &mut parsed.filter.until,
                "error" => &mut parsed.filter.error,
                "after" => &mut parsed.after,
                "limit" => &mut parsed.limit,
                _ => continue,
            };
            *field = value;
        }
        parsed
    }
}

/// `POST /admin/dead-letters/redrive`: ids, a filter, or all, exactly one of them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RedriveRequest {
    /// These dead letters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) ids: Vec<String>,
    /// Every dead letter.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) all: bool,
    /// The dead letters of this endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) endpoint: Option<String>,
    /// ... of this event reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
    /// ... given up at or after this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) since: Option<String>,
    /// ... given up at or before this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) until: Option<String>,
    /// ... whose last error contains this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

impl RedriveRequest {
    /// A request for `ids`, or the dead letters `filter` matches, or all of them.
    pub(crate) fn new(ids: Vec<String>, filter: FilterParams, all: bool) -> Self {
        let FilterParams {
            endpoint,
            reason,
            since,
            until,
            error,
        } = filter;
        Self {
            ids,
            all,
            endpoint,
            reason,
            since,
            until,
            error,
        }
    }

    /// Which dead letters it takes; an error when it names none of ids, a filter or all, or
    /// more than one.
    pub(crate) fn selection(&self) -> Result<Selection, String> {
        let params = FilterParams {
            endpoint: self.endpoint.clone(),
            reason: self.reason.clone(),
            since: self.since.clone(),
            until: self.until.clone(),
            error: self.error.clone(),
        };
        let filtered = params != FilterParams::default();
        match (!self.ids.is_empty(), filtered, self.all) {
            (true, false, false) => Ok(Selection::Ids(self.ids.clone())),
            (false, true, false) => Ok(Selection::Matching(params.filter()?)),
            (false, false, true) => Ok(Selection::Matching(Filter::default())),
            (false, false, false) => Err(
                "say which dead letters to redrive: their ids, a filter (endpoint, reason, \
                 since, until, error) or all"
                    .into(),
            ),
            _ => Err("give ids, a filter or all, not more than one of them".into()),
        }
    }
}

/// The body of an error answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ErrorBody {
    /// What went wrong.
    pub(crate) error: String,
}
