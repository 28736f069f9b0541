//! The HTTP client for Confluence Cloud and Data Center.
//!
//! - **Cloud** reads with v2 (`/wiki/api/v2/spaces?keys=`, `/spaces/{id}/pages`,
//!   `/pages/{id}/labels`), following `_links.next` as `{root}{next}` (it already starts with
//!   `/wiki`), and writes labels with v1 (`/wiki/rest/api/content/{id}/label`). It never calls a
//!   v1 listing endpoint: those answer 410 on current sites.
//! - **Data Center** uses `/rest/api/...` under the context path in `root`, pages by
//!   `start += results.len()` until `_links.next` is absent (servers cap `limit`), and expands
//!   labels inline.
//!
//! Every request is retried on 429, 5xx and transport failures (timeouts included) after the
//! server's `Retry-After` or capped exponential backoff with full jitter, at most
//! `max_retries` times; other statuses fail at once with a message that says what to do.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use url::Url;

use super::wire::{
    DcContent, DcList, DcSpace, ErrorBody, LabelCreate, Links, V2List, V2Page, V2Space, WireLabel,
};
use super::{ConfluenceAuth, ConfluenceSettings};
use super::{ConfluenceError, Flavor, LABEL_PREFIX, Label, Page, PageSource};
use crate::http::{retry_after, snippet};
use crate::retry::Backoff;

mod spaces;

/// How long connecting may take, within the total `settings.timeout`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default retry schedule: up to 0.5 s, 1 s, 2 s, … capped at 30 s, with full jitter.
pub const DEFAULT_BACKOFF: Backoff =
    Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
/// A `Retry-After` longer than this is not slept through: the request fails instead.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);
/// Items per listing request: the v2 maximum.
pub const DEFAULT_PAGE_LIMIT: u32 = 250;

/// Talks to one Confluence site. Cheap to clone (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct ConfluenceClient {
    http: reqwest::Client,
    /// `settings.root` without a trailing slash (and, on Cloud, without a trailing `/wiki`).
    root: String,
    root_url: Url,
    flavor: Flavor,
    auth: ConfluenceAuth,
    max_retries: u32,
    backoff: Backoff,
    max_retry_after: Duration,
    pub(super) page_limit: u32,
    /// Cloud space ids already resolved by the census, by key (see `census.rs`).
    pub(super) space_ids:
        std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, String>>>,
    /// Spaces resolved by [`Self::resolve_space`], shared by clones.
    spaces: Arc<Mutex<spaces::SpaceMemo>>,
}

impl ConfluenceClient {
    /// A client for the site in `settings`: rustls, connect timeout 10 s, total timeout
    /// `settings.timeout`, user agent `tag-space/<version>`, [`DEFAULT_BACKOFF`].
    pub fn new(settings: ConfluenceSettings) -> Result<Self, ConfluenceError> {
        let mut root = settings.root.trim().trim_end_matches('/').to_string();
        if settings.flavor == Flavor::Cloud && root.ends_with("/wiki") {
            // A pasted `https://acme.atlassian.net/wiki` would give `/wiki/wiki/...` → 404.
            root.truncate(root.len() - "/wiki".len());
        }
        let root_url = Url::parse(&root).map_err(|e| ConfluenceError::Setup {
            detail: format!("the Confluence root URL '{root}' is not a valid URL ({e}); use e.g. https://acme.atlassian.net"),
        })?;
        if !matches!(root_url.scheme(), "http" | "https") || root_url.cannot_be_a_base() {
            return Err(ConfluenceError::Setup {
                detail: format!(
                    "the Confluence root URL '{root}' must start with https:// (or http://)"
                ),
            });
        }
        if !root_url.username().is_empty() || root_url.password().is_some() {
            return Err(ConfluenceError::Setup {
                detail: "the Confluence root URL must not contain a user name or password; use the credential settings".into(),
            });
        }
        if root_url.query().is_some() || root_url.fragment().is_some() {
            return Err(ConfluenceError::Setup {
                detail: format!(
                    "the Confluence root URL '{root}' must not have a query or fragment"
                ),
            });
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(settings.timeout)
            .user_agent(concat!("tag-space/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfluenceError::Setup {
                detail: format!("cannot build the HTTP client: {e}"),
            })?;
        let client = Self {
            http,
            root,
            root_url,
            flavor: settings.flavor,
            auth: settings.auth,
            max_retries: settings.max_retries,
            backoff: DEFAULT_BACKOFF,
            max_retry_after: MAX_RETRY_AFTER,
            page_limit: DEFAULT_PAGE_LIMIT,
            space_ids: Default::default(),
            spaces: Arc::default(),
        };
        // Credentials with characters no HTTP header may carry would fail every request later.
        if client
            .request(Method::GET, client.root_url.clone())
            .build()
            .is_err()
        {
            return Err(ConfluenceError::Setup {
                detail: "the Confluence credentials contain characters an HTTP header cannot carry (a stray newline?)"
                    .into(),
            });
        }
        Ok(client)
    }

    /// Replaces the retry schedule (tests use a base of about 1 ms).
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Replaces the number of items asked for per listing request (default 250; at least 1,
    /// at most 250 on Cloud). The server may still send fewer.
    pub fn with_page_limit(mut self, limit: u32) -> Self {
        self.page_limit = match self.flavor {
            Flavor::Cloud => limit.clamp(1, DEFAULT_PAGE_LIMIT),
            Flavor::DataCenter => limit.max(1),
        };
        self
    }

    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// The site root requests are built on.
    pub fn root(&self) -> &str {
        &self.root
    }

    // ---- URLs -------------------------------------------------------------------------------

    /// `{root}/seg/seg?query`, each segment percent-encoded.
    pub(super) fn api(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.root_url.clone();
        url.path_segments_mut()
            .expect("root was checked to be an http(s) base URL")
            .pop_if_empty()
            .extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// The URL of a Cloud `_links.next`: `{root}{next}` (never `_links.base + next`). A link to
    /// another site is refused, so credentials never leave the configured one.
    fn next_url(&self, what: &'static str, next: &str) -> Result<Url, ConfluenceError> {
        let joined = if next.starts_with('/') {
            format!("{}{next}", self.root)
        } else {
            next.to_string()
        };
        let bad = |detail: String| ConfluenceError::Decode {
            what,
            detail,
            snippet: snippet(next),
        };
        let url = Url::parse(&joined)
            .map_err(|e| bad(format!("the next-page link is not a URL: {e}")))?;
        if url.origin() != self.root_url.origin() {
            return Err(bad(
                "the next-page link points to another site; not following it".into(),
            ));
        }
        Ok(url)
    }

    fn web_url(&self, webui: Option<String>) -> Option<String> {
        let webui = webui.filter(|w| !w.is_empty())?;
        if webui.starts_with("http://") || webui.starts_with("https://") {
            return Some(webui);
        }
        Some(match self.flavor {
            // v2 `webui` is relative to `{root}/wiki` (`_links.base`).
            Flavor::Cloud => format!("{}/wiki{webui}", self.root),
            // DC `webui` is relative to the context path, which is in root.
            Flavor::DataCenter => format!("{}{webui}", self.root),
        })
    }

    // ---- HTTP -------------------------------------------------------------------------------

    fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let req = self
            .http
            .request(method, url)
            .header(ACCEPT, "application/json");
        match &self.auth {
            ConfluenceAuth::Basic { email, token } => req.basic_auth(email, Some(token.expose())),
            ConfluenceAuth::Bearer(pat) => req.bearer_auth(pat.expose()),
        }
    }

    /// Sends one request, retrying 429/5xx/transport failures, and returns the 2xx body.
    async fn fetch(
        &self,
        what: &'static str,
        page_id: Option<&str>,
        method: Method,
        url: &Url,
        json: Option<&[u8]>,
    ) -> Result<String, ConfluenceError> {
        let (body, _content_type) = self.fetch_typed(what, page_id, method, url, json).await?;
        Ok(body)
    }

    /// [`Self::fetch`], also returning the 2xx answer's `Content-Type`.
    async fn fetch_typed(
        &self,
        what: &'static str,
        page_id: Option<&str>,
        method: Method,
        url: &Url,
        json: Option<&[u8]>,
    ) -> Result<(String, Option<String>), ConfluenceError> {
        let mut attempt: u32 = 0;
        loop {
            let mut req = self.request(method.clone(), url.clone());
            if let Some(body) = json {
                req = req
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.to_vec());
            }
            let (status, hint, err) = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let content_type = content_type(resp.headers());
                    if status.is_success() {
                        match resp.text().await {
                            Ok(text) => return Ok((text, content_type)),
                            // The body broke off (reset, timeout): as retryable as a failed send.
                            Err(source) => (None, None, self.transport(what, url, source)),
                        }
                    } else {
                        let hint = retry_after(resp.headers());
                        let text = resp.text().await.unwrap_or_default();
                        let err = self.status_error(
                            what,
                            status,
                            page_id,
                            &text,
                            content_type.as_deref(),
                        );
                        if !retryable(status) {
                            return Err(err);
                        }
                        (Some(status), hint, err)
                    }
                }
                Err(source) if source.is_builder() => return Err(self.transport(what, url, source)),
                Err(source) => (None, None, self.transport(what, url, source)),
            };
            if attempt >= self.max_retries {
                return Err(err);
            }
            if let (Some(status), Some(wait)) = (status, hint) {
                if wait > self.max_retry_after {
                    return Err(ConfluenceError::RetryAfterTooLong {
                        what,
                        status: status.as_u16(),
                        page_id: page_id.map(str::to_string),
                        wait,
                        limit: self.max_retry_after,
                    });
                }
            }
            let wait = self.backoff.delay(attempt, hint, rand::random::<f64>());
            attempt += 1;
            tracing::warn!(
                what,
                page_id,
                status = status.map(|s| s.as_u16()),
                wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                attempt,
                max_retries = self.max_retries,
                error = %err,
                "confluence request failed; retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }

    fn transport(&self, what: &'static str, url: &Url, source: reqwest::Error) -> ConfluenceError {
        // The URL carries no credentials (they travel in a header; root may not hold any).
        let mut shown = url.clone();
        shown.set_query(None);
        ConfluenceError::Transport {
            what,
            url: shown.to_string(),
            reason: crate::http::transport_causes(&source.without_url()),
        }
    }

    fn status_error(
        &self,
        what: &'static str,
        status: StatusCode,
        page_id: Option<&str>,
        body: &str,
        content_type: Option<&str>,
    ) -> ConfluenceError {
        let summary = serde_json::from_str::<ErrorBody>(body)
            .ok()
            .and_then(|b| b.summary());
        let confluence_body = summary.is_some() && content_type.is_some_and(super::probe::is_json);
        let said = summary.unwrap_or_else(|| body.to_string());
        ConfluenceError::Status {
            what,
            status: status.as_u16(),
            page_id: page_id.map(str::to_string),
            hint: hint(status.as_u16(), self.flavor),
            snippet: snippet(&said),
            confluence_body,
        }
    }

    /// The space lookup, the first request of a run: where a wrong base URL shows. A 404 in
    /// Confluence's own error shape is "no such space"; an answer that is not Confluence's
    /// (an HTML page, another content type, JSON of another shape) is a wrong base URL.
    async fn find_space<T: DeserializeOwned>(
        &self,
        key: &str,
        url: &Url,
    ) -> Result<T, ConfluenceError> {
        const WHAT: &str = "find space";
        let not_confluence = |detail: String| ConfluenceError::NotConfluence {
            base: self.root.clone(),
            detail,
            hint: super::probe::base_url_hint(self.flavor),
        };
        let (text, content_type) = match self.fetch_typed(WHAT, None, Method::GET, url, None).await
        {
            Ok(reply) => reply,
            Err(ConfluenceError::Status {
                status: 404,
                confluence_body: true,
                ..
            }) => return Err(self.space_not_found(key)),
            Err(ConfluenceError::Status {
                status: 404,
                snippet,
                ..
            }) => {
                let body = super::probe::describe_body(&snippet);
                return Err(not_confluence(format!("HTTP 404 {body}")));
            }
            Err(e) => return Err(e),
        };
        if let Some(ct) = content_type
            .as_deref()
            .filter(|ct| !super::probe::is_json(ct))
        {
            let body = super::probe::describe_body(&text);
            return Err(not_confluence(format!("HTTP 200 {body}, {ct}")));
        }
        match decode(WHAT, &text) {
            Ok(v) => Ok(v),
            // Cut off on the way: the server may well be Confluence.
            Err(e @ ConfluenceError::Decode { .. }) if super::probe::is_truncated(&text) => Err(e),
            Err(ConfluenceError::Decode { detail, .. }) => Err(not_confluence(detail)),
            Err(e) => Err(e),
        }
    }

    pub(super) async fn get_json<T: DeserializeOwned>(
        &self,
        what: &'static str,
        page_id: Option<&str>,
        url: &Url,
    ) -> Result<T, ConfluenceError> {
        let text = self.fetch(what, page_id, Method::GET, url, None).await?;
        decode(what, &text)
    }

    fn space_not_found(&self, key: &str) -> ConfluenceError {
        ConfluenceError::SpaceNotFound {
            key: key.to_string(),
            base: self.root.clone(),
            search: None,
        }
    }

    // ---- Cloud ------------------------------------------------------------------------------

    /// `GET /wiki/api/v2/spaces?keys=KEY` → the space id (not asked again for a space
    /// [`Self::resolve_space`] has found).
    pub(super) async fn cloud_space_id(&self, key: &str) -> Result<String, ConfluenceError> {
        if let Some(id) = self.resolved_space(key).and_then(|s| s.id) {
            return Ok(id);
        }
        let url = self.api(&["wiki", "api", "v2", "spaces"], &[("keys", key)]);
        let list: V2List<V2Space> = self.find_space(key, &url).await?;
        let exact = list.results.iter().position(|s| s.key == key);
        let folded = || {
            list.results
                .iter()
                .position(|s| s.key.eq_ignore_ascii_case(key))
        };
        match exact.or_else(folded) {
            Some(i) => Ok(list
                .results
                .into_iter()
                .nth(i)
                .expect("index from position")
                .id),
            None => Err(self.space_not_found(key)),
        }
    }

    async fn cloud_stream(
        &self,
        key: &str,
        tx: &mpsc::Sender<Page>,
    ) -> Result<u64, ConfluenceError> {
        const WHAT: &str = "list pages";
        let space_id = match self.remembered_space(key)?.and_then(|s| s.id) {
            Some(id) => id,
            None => self.cloud_space_id(key).await?,
        };
        let limit = self.page_limit.to_string();
        let mut url = self.api(
            &["wiki", "api", "v2", "spaces", &space_id, "pages"],
            &[
                ("body-format", "storage"),
                ("status", "current"),
                ("limit", &limit),
            ],
        );
        let mut sent = 0;
        loop {
            if tx.is_closed() {
                return Ok(sent);
            }
            let list: V2List<V2Page> = self.get_json(WHAT, None, &url).await?;
            for p in list.results {
                let page = Page {
                    id: p.id,
                    title: p.title,
                    version: p.version.and_then(|v| v.number),
                    body: p
                        .body
                        .and_then(|b| b.storage)
                        .map(|s| s.value)
                        .unwrap_or_default(),
                    labels: None,
                    url: self.web_url(p.links.webui),
                };
                if tx.send(page).await.is_err() {
                    return Ok(sent);
                }
                sent += 1;
            }
            match self.advance(WHAT, &url, list.links)? {
                Some(next) => url = next,
                None => return Ok(sent),
            }
        }
    }

    /// The next Cloud list URL, or `None` at the end; a `next` that repeats is an error
    /// rather than an endless loop.
    pub(super) fn advance(
        &self,
        what: &'static str,
        current: &Url,
        links: Links,
    ) -> Result<Option<Url>, ConfluenceError> {
        let Some(next) = links.next.filter(|n| !n.is_empty()) else {
            return Ok(None);
        };
        let url = self.next_url(what, &next)?;
        if &url == current {
            return Err(ConfluenceError::Decode {
                what,
                detail: "the next-page link repeats the current page; pagination would never end"
                    .into(),
                snippet: snippet(&next),
            });
        }
        Ok(Some(url))
    }

    async fn cloud_labels(&self, page_id: &str) -> Result<Vec<Label>, ConfluenceError> {
        const WHAT: &str = "read labels";
        let limit = self.page_limit.to_string();
        let mut url = self.api(
            &["wiki", "api", "v2", "pages", page_id, "labels"],
            &[("limit", &limit)],
        );
        let mut labels = Vec::new();
        loop {
            let list: V2List<WireLabel> = self.get_json(WHAT, Some(page_id), &url).await?;
            labels.extend(list.results.into_iter().map(Label::from));
            match self.advance(WHAT, &url, list.links)? {
                Some(next) => url = next,
                None => return Ok(labels),
            }
        }
    }

    // ---- Data Center ------------------------------------------------------------------------

    async fn dc_stream(&self, key: &str, tx: &mpsc::Sender<Page>) -> Result<u64, ConfluenceError> {
        const WHAT: &str = "list pages";
        if self.remembered_space(key)?.is_none() {
            let url = self.api(&["rest", "api", "space", key], &[]);
            self.find_space::<DcSpace>(key, &url).await?;
        }
        let limit = self.page_limit.to_string();
        let mut start: u64 = 0;
        let mut sent = 0;
        loop {
            if tx.is_closed() {
                return Ok(sent);
            }
            let start_s = start.to_string();
            let url = self.api(
                &["rest", "api", "content"],
                &[
                    ("spaceKey", key),
                    ("type", "page"),
                    ("status", "current"),
                    ("expand", "body.storage,version,metadata.labels"),
                    ("start", &start_s),
                    ("limit", &limit),
                ],
            );
            let list: DcList<DcContent> = self.get_json(WHAT, None, &url).await?;
            let got = list.results.len() as u64;
            for c in list.results {
                // Inline labels are complete only when their own list has no next page.
                let labels = c
                    .metadata
                    .and_then(|m| m.labels)
                    .filter(|l| l.links.next.is_none())
                    .map(|l| l.results.into_iter().map(Label::from).collect());
                let page = Page {
                    id: c.id,
                    title: c.title,
                    version: c.version.and_then(|v| v.number),
                    body: c
                        .body
                        .and_then(|b| b.storage)
                        .map(|s| s.value)
                        .unwrap_or_default(),
                    labels,
                    url: self.web_url(c.links.webui),
                };
                if tx.send(page).await.is_err() {
                    return Ok(sent);
                }
                sent += 1;
            }
            if list.links.next.is_none() {
                return Ok(sent);
            }
            start = next_start(WHAT, start, got, list.size)?;
        }
    }

    async fn dc_labels(&self, page_id: &str) -> Result<Vec<Label>, ConfluenceError> {
        const WHAT: &str = "read labels";
        let limit = self.page_limit.to_string();
        let mut start: u64 = 0;
        let mut labels = Vec::new();
        loop {
            let start_s = start.to_string();
            let url = self.api(
                &["rest", "api", "content", page_id, "label"],
                &[("start", &start_s), ("limit", &limit)],
            );
            let list: DcList<WireLabel> = self.get_json(WHAT, Some(page_id), &url).await?;
            let got = list.results.len() as u64;
            labels.extend(list.results.into_iter().map(Label::from));
            if list.links.next.is_none() {
                return Ok(labels);
            }
            start = next_start(WHAT, start, got, list.size)?;
        }
    }
}

impl PageSource for ConfluenceClient {
    async fn stream_pages(
        &self,
        space_key: &str,
        tx: mpsc::Sender<Page>,
    ) -> Result<u64, ConfluenceError> {
        match self.flavor {
            Flavor::Cloud => self.cloud_stream(space_key, &tx).await,
            Flavor::DataCenter => self.dc_stream(space_key, &tx).await,
        }
    }

    async fn labels(&self, page_id: &str) -> Result<Vec<Label>, ConfluenceError> {
        match self.flavor {
            Flavor::Cloud => self.cloud_labels(page_id).await,
            Flavor::DataCenter => self.dc_labels(page_id).await,
        }
    }

    async fn pages_with_label(
        &self,
        space_key: &str,
        name: &str,
    ) -> Result<HashSet<String>, ConfluenceError> {
        match self.flavor {
            Flavor::Cloud => self.cloud_pages_with_label(space_key, name).await,
            Flavor::DataCenter => self.dc_pages_with_label(space_key, name).await,
        }
    }

    async fn add_labels(&self, page_id: &str, names: &[String]) -> Result<(), ConfluenceError> {
        const WHAT: &str = "add labels";
        if names.is_empty() {
            return Ok(());
        }
        let segments: &[&str] = match self.flavor {
            // v2 has no label write; v1 `addLabelsToContent` is the documented way.
            Flavor::Cloud => &["wiki", "rest", "api", "content", page_id, "label"],
            Flavor::DataCenter => &["rest", "api", "content", page_id, "label"],
        };
        let url = self.api(segments, &[]);
        let body: Vec<LabelCreate<'_>> = names
            .iter()
            .map(|n| LabelCreate {
                prefix: LABEL_PREFIX,
                name: n,
            })
            .collect();
        let body = serde_json::to_vec(&body).expect("a list of string pairs always serialises");
        let text = self
            .fetch(WHAT, Some(page_id), Method::POST, &url, Some(&body))
            .await?;
        // The answer is a LabelArray; anything that is not JSON (a proxy's login page) means
        // the write did not reach Confluence.
        if !text.trim().is_empty() {
            decode::<serde::de::IgnoredAny>(WHAT, &text)?;
        }
        Ok(())
    }

    async fn remove_label(&self, page_id: &str, name: &str) -> Result<(), ConfluenceError> {
        const WHAT: &str = "remove a label";
        // v1 `DELETE .../label?name=` (not `.../label/{name}`): the query form also takes
        // names with a `/`. Cloud and Data Center answer 204.
        let segments: &[&str] = match self.flavor {
            Flavor::Cloud => &["wiki", "rest", "api", "content", page_id, "label"],
            Flavor::DataCenter => &["rest", "api", "content", page_id, "label"],
        };
        let url = self.api(segments, &[("name", name)]);
        match self
            .fetch(WHAT, Some(page_id), Method::DELETE, &url, None)
            .await
        {
            Ok(_) => Ok(()),
            // Not there (already removed, e.g. by a retry whose first answer was lost, or by
            // a person): the label is off the page, which is what was asked.
            Err(ConfluenceError::Status { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// The media type of an answer, lowercase, without parameters.
fn content_type(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let ct = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    Some(
        ct.split(';')
            .next()
            .unwrap_or(ct)
            .trim()
            .to_ascii_lowercase(),
    )
}

/// 429 and 5xx are worth another try; every other failure status is final.
fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// The offset of the next DC list page. `got` is what actually arrived (the server may cap
/// `limit`), which by definition equals the reported `size`.
pub(super) fn next_start(
    what: &'static str,
    start: u64,
    got: u64,
    size: Option<u64>,
) -> Result<u64, ConfluenceError> {
    if got == 0 {
        return Err(ConfluenceError::Decode {
            what,
            detail: format!(
                "the server announced a next page but sent no results at start={start}"
            ),
            snippet: String::new(),
        });
    }
    if let Some(size) = size.filter(|&s| s != got) {
        tracing::debug!(
            what,
            start,
            size,
            got,
            "size disagrees with the number of results; using the results"
        );
    }
    Ok(start + got)
}

/// Decodes a 2xx body, turning HTML or broken JSON into a [`ConfluenceError::Decode`].
fn decode<T: DeserializeOwned>(what: &'static str, text: &str) -> Result<T, ConfluenceError> {
    serde_json::from_str(text).map_err(|e| {
        let t = text.trim_start();
        let detail = if t.is_empty() {
            "empty body where JSON was expected".to_string()
        } else if t.starts_with('<') {
            "HTML instead of JSON; a login page or proxy may be in the way: check the root URL and credentials".to_string()
        } else if e.is_eof() {
            format!("truncated JSON: {e}")
        } else {
            format!("not the documented JSON: {e}")
        };
        ConfluenceError::Decode { what, detail, snippet: snippet(text) }
    })
}

/// What a final status most likely means and what to do about it.
fn hint(status: u16, flavor: Flavor) -> &'static str {
    match (status, flavor) {
        (400, _) => "Confluence rejected the request as invalid (see its message)",
        (401, Flavor::Cloud) => {
            "wrong credentials: check CONFLUENCE_EMAIL and CONFLUENCE_API_TOKEN (an Atlassian API token, not the password)"
        }
        (401, Flavor::DataCenter) => {
            "wrong credentials: check CONFLUENCE_PAT (a personal access token that has not expired or been revoked)"
        }
        (403, _) => {
            "the account has no permission for this: reading needs view permission on the space, adding labels needs edit permission on the page"
        }
        (404, Flavor::Cloud) => {
            "not found, or not visible to this account: check the id and the account's permissions"
        }
        (404, Flavor::DataCenter) => {
            "not found, or not visible to this account: check the id, the account's permissions and that the root URL includes the context path (e.g. /confluence)"
        }
        (410, Flavor::DataCenter) => {
            "this endpoint has been removed: if the site is Confluence Cloud, set CONFLUENCE_FLAVOR=cloud (tag-space then uses the v2 API)"
        }
        (410, Flavor::Cloud) => "Atlassian has removed this endpoint: tag-space needs an update",
        (429, _) => {
            "Confluence is still rate limiting after tag-space's retries: wait a few minutes and run again"
        }
        (500..=599, _) => {
            "Confluence kept failing with a server error after tag-space's retries: try again later"
        }
        _ => "unexpected answer: check the root URL and CONFLUENCE_FLAVOR",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn settings(root: &str, flavor: Flavor) -> ConfluenceSettings {
        ConfluenceSettings {
            root: root.into(),
            flavor,
            auth: ConfluenceAuth::Bearer(Secret::new("pat")),
            timeout: Duration::from_secs(5),
            max_retries: 2,
        }
    }

    #[test]
    fn root_is_normalised_and_urls_are_built_under_it() {
        let c = ConfluenceClient::new(settings("https://acme.atlassian.net/wiki/", Flavor::Cloud))
            .unwrap();
        assert_eq!(c.root(), "https://acme.atlassian.net");
        assert_eq!(
            c.api(&["wiki", "api", "v2", "spaces"], &[("keys", "A B")])
                .as_str(),
            "https://acme.atlassian.net/wiki/api/v2/spaces?keys=A+B"
        );
        assert_eq!(
            c.next_url("x", "/wiki/api/v2/spaces/1/pages?cursor=abc%3D&limit=250")
                .unwrap()
                .as_str(),
            "https://acme.atlassian.net/wiki/api/v2/spaces/1/pages?cursor=abc%3D&limit=250"
        );
        assert!(c.next_url("x", "https://evil.example/wiki/x").is_err());
        assert_eq!(
            c.web_url(Some("/spaces/ENG/pages/1/T".into())).as_deref(),
            Some("https://acme.atlassian.net/wiki/spaces/ENG/pages/1/T")
        );

        let dc = ConfluenceClient::new(settings(
            "https://c.acme.com/confluence/",
            Flavor::DataCenter,
        ))
        .unwrap();
        assert_eq!(
            dc.api(&["rest", "api", "space", "a/b"], &[]).as_str(),
            "https://c.acme.com/confluence/rest/api/space/a%2Fb"
        );
        assert_eq!(
            dc.web_url(Some("/pages/viewpage.action?pageId=9".into()))
                .as_deref(),
            Some("https://c.acme.com/confluence/pages/viewpage.action?pageId=9")
        );
    }

    #[test]
    fn bad_roots_and_credentials_are_setup_errors_without_secrets() {
        for root in [
            "acme.atlassian.net",
            "ftp://x",
            "https://u:p@acme.atlassian.net",
        ] {
            let err = ConfluenceClient::new(settings(root, Flavor::Cloud)).unwrap_err();
            assert!(
                matches!(err, ConfluenceError::Setup { .. }),
                "{root}: {err}"
            );
            assert!(!err.to_string().contains("u:p"));
        }
        let mut s = settings("https://x", Flavor::DataCenter);
        s.auth = ConfluenceAuth::Bearer(Secret::new("tok\nen"));
        let err = ConfluenceClient::new(s).unwrap_err().to_string();
        assert!(err.contains("credentials"), "{err}");
        assert!(!err.contains("tok"), "{err}");
    }

    #[test]
    fn debug_output_never_shows_credentials() {
        let mut s = settings("https://acme.atlassian.net", Flavor::Cloud);
        s.auth = ConfluenceAuth::Basic {
            email: "a@b.example".into(),
            token: Secret::new("tok-secret-1"),
        };
        let cloud = ConfluenceClient::new(s).unwrap();
        let dc = ConfluenceClient::new(settings("https://c.acme.com", Flavor::DataCenter)).unwrap();
        let shown = format!("{cloud:?} {dc:?}");
        assert!(
            !shown.contains("tok-secret-1") && !shown.contains("\"pat\""),
            "{shown}"
        );
    }

    #[test]
    fn only_429_and_5xx_are_retryable() {
        for s in [429, 500, 502, 503, 504] {
            assert!(retryable(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [400, 401, 403, 404, 409, 410] {
            assert!(!retryable(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }

    #[test]
    fn decode_names_html_and_truncation() {
        let e = decode::<V2List<V2Page>>("x", "<html><body>Log in</body></html>")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("confluence x: unreadable response (HTML instead of JSON"),
            "{e}"
        );
        assert!(e.ends_with(": <html><body>Log in</body></html>"), "{e}");
        let e = decode::<V2List<V2Page>>("x", r#"{"results":[{"id":"1""#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("truncated JSON"), "{e}");
    }

    #[test]
    fn dc_start_advances_by_what_arrived() {
        assert_eq!(next_start("x", 0, 100, Some(100)).unwrap(), 100);
        assert_eq!(next_start("x", 100, 3, None).unwrap(), 103);
        assert!(next_start("x", 5, 0, Some(0)).is_err());
    }
}
