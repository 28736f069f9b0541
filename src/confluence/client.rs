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
//! Every request passes through the site's governor ([`super::pace`]): a bounded number in
//! flight, a 429 pauses all of them, the site's rate-limit headers pace them. Each request is
//! retried on 429, 5xx and transport failures (timeouts included) at most `max_retries` times;
//! other statuses fail at once with a message that says what to do.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::pace::{PaceConfig, SiteGovernor};
use super::wire::LabelCreate;
use super::{ConfluenceAuth, ConfluenceSettings};
use super::{ConfluenceError, Flavor, LABEL_PREFIX, Label, Page, PageSource};
use crate::http::snippet;
use crate::retry::Backoff;

mod bodies;
pub use bodies::IDS_PER_REQUEST;
mod credentials;
mod listing;
mod spaces;
mod transport;

use transport::decode;
pub(crate) use transport::next_start;

/// How long connecting may take, within the total `settings.timeout`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default retry schedule: up to 0.5 s, 1 s, 2 s, … capped at 30 s, with full jitter.
pub const DEFAULT_BACKOFF: Backoff =
    Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
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
    /// Every request to the site passes through it; shared by clones.
    gov: Arc<SiteGovernor>,
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
            gov: Arc::new(SiteGovernor::new(PaceConfig::default())),
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

    /// Replaces the retry schedule (tests use a base of about 1 ms): the pause after a 429
    /// without a wait, and a request's own wait after a 5xx or a transport failure.
    pub fn with_backoff(self, backoff: Backoff) -> Self {
        let config = PaceConfig {
            backoff,
            ..self.gov.config().clone()
        };
        self.with_pace(config)
    }

    /// Governs the site with `config` (a fresh governor: call before cloning the client).
    pub fn with_pace(mut self, config: PaceConfig) -> Self {
        self.gov = Arc::new(SiteGovernor::new(config));
        self
    }

    /// The site's governor (shared by every clone of this client).
    pub fn governor(&self) -> &SiteGovernor {
        &self.gov
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
}

impl PageSource for ConfluenceClient {
    async fn stream_pages(
        &self,
        space_key: &str,
        tx: mpsc::Sender<Page>,
    ) -> Result<u64, ConfluenceError> {
        match self.flavor {
            Flavor::Cloud => self.cloud_stream(space_key, &tx, true).await,
            Flavor::DataCenter => self.dc_stream(space_key, &tx, true).await,
        }
    }

    async fn stream_metadata(
        &self,
        space_key: &str,
        tx: mpsc::Sender<Page>,
    ) -> Result<u64, ConfluenceError> {
        match self.flavor {
            Flavor::Cloud => self.cloud_stream(space_key, &tx, false).await,
            Flavor::DataCenter => self.dc_stream(space_key, &tx, false).await,
        }
    }

    async fn bodies(&self, ids: &[String]) -> Result<HashMap<String, String>, ConfluenceError> {
        match self.flavor {
            Flavor::Cloud => self.cloud_bodies(ids).await,
            Flavor::DataCenter => self.dc_bodies(ids).await,
        }
    }

    fn halted(&self) -> Option<String> {
        self.gov.halted().map(|h| h.to_string())
    }

    fn halt_token(&self) -> Option<CancellationToken> {
        Some(self.gov.halt_token())
    }

    fn site_stats(&self) -> Option<super::pace::SiteStats> {
        Some(self.gov.stats())
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

#[cfg(test)]
mod tests {
    use super::transport::retryable;
    use super::*;
    use crate::confluence::wire::{V2List, V2Page};
    use crate::secret::Secret;
    use reqwest::StatusCode;

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
