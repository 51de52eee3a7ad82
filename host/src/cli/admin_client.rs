//! A client of a running router's admin API, for `dead-letters --admin URL`. The token goes
//! in the `Authorization` header only: never into an error or a log line.

use std::time::Duration;

use anyhow::Context as _;
use reqwest::StatusCode;
use url::Url;

use crate::model::secret::Secret;
use crate::server::admin::api::{ErrorBody, FilterParams, MAX_LIMIT, RedriveRequest};
use crate::state::dead_letter::{Page, Redriven, StoredLetter, Summary};

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(60);

/// The admin API of one router.
pub(crate) struct AdminClient {
    base: String,
    token: Secret,
    http: reqwest::Client,
}

impl AdminClient {
    /// A client of the router at `url` (its `server.listen`), sending `token`.
    pub(crate) fn new(url: Url, token: String) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .context("cannot make an HTTP client")?;
        Ok(Self {
            base: format!("{}/admin/dead-letters", url.as_str().trim_end_matches('/')),
            token: Secret::new(token),
            http,
        })
    }

    /// Every dead letter `filter` matches (page after page), `limit` at most.
    pub(crate) async fn list(
        &self,
        filter: &FilterParams,
        limit: Option<usize>,
    ) -> anyhow::Result<Vec<Summary>> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let want = limit.map_or(MAX_LIMIT, |l| (l - all.len()).min(MAX_LIMIT));
            if want == 0 {
                return Ok(all);
            }
            let mut query = filter.pairs();
            query.push(("limit", want.to_string()));
            if let Some(after) = after.take() {
                query.push(("after", after));
            }
            let mut url = Url::parse(&self.base).context("the admin URL")?;
            url.query_pairs_mut().extend_pairs(&query);
            let request = self.http.get(url);
            let page: Page = expect_found(self.send(request).await?)?.json().await?;
            all.extend(page.dead_letters);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// The dead letter `id`, or `None`.
    pub(crate) async fn show(&self, id: &str) -> anyhow::Result<Option<StoredLetter>> {
        let mut url = Url::parse(&self.base).context("the admin URL")?;
        url.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("the admin URL cannot take a path"))?
            .push(id);
        match self.send(self.http.get(url)).await? {
            Some(response) => Ok(Some(response.json().await?)),
            None => Ok(None),
        }
    }

    /// Asks for a redrive.
    pub(crate) async fn redrive(&self, request: &RedriveRequest) -> anyhow::Result<Redriven> {
        let url = format!("{}/redrive", self.base);
        let response = self.send(self.http.post(url).json(request)).await?;
        Ok(expect_found(response)?.json().await?)
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request.bearer_auth(self.token.expose())
    }

    /// Sends `request` with the token: the response when 2xx, `None` when the API answered
    /// 404 for a dead letter it does not have, an error saying what it means otherwise.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<Option<reqwest::Response>> {
        let response = self
            .authorized(request)
            .send()
            .await
            .context("cannot reach the router's admin API")?;
        let status = response.status();
        if status.is_success() {
            return Ok(Some(response));
        }
        let said = response
            .json::<ErrorBody>()
            .await
            .map(|b| b.error)
            .unwrap_or_default();
        match status {
            StatusCode::UNAUTHORIZED => {
                anyhow::bail!("the router refused the admin token (401): check it")
            }
            StatusCode::NOT_FOUND if said.is_empty() => anyhow::bail!(
                "the router has no admin API (404): set server.admin_token in its config"
            ),
            StatusCode::NOT_FOUND => Ok(None),
            _ => anyhow::bail!("the admin API answered {status}: {said}"),
        }
    }
}

/// The response of a request that cannot be answered "not found".
fn expect_found(response: Option<reqwest::Response>) -> anyhow::Result<reqwest::Response> {
    response.ok_or_else(|| anyhow::anyhow!("the admin API answered 404"))
}
