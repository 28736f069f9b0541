//! Sending one request through the site's governor, with its retries, and turning what came
//! back into a typed answer or a [`ConfluenceError`] that says what to do.

use std::time::SystemTime;

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use url::Url;

use super::super::pace::Throttle;
use super::super::ratelimit::RateHeaders;
use super::super::wire::ErrorBody;
use super::super::{ConfluenceAuth, ConfluenceError, Flavor};
use super::ConfluenceClient;
use crate::http::snippet;

/// What one try of a request came to.
enum Try {
    /// A 2xx body with its content type, or a failure not worth another try; with the
    /// answer's rate-limit headers when an answer came (the governor hears of it).
    Done(
        Result<(String, Option<String>), ConfluenceError>,
        Option<RateHeaders>,
    ),
    /// A failure worth another try (429, 5xx, transport), with the status when there was one.
    Again(Option<StatusCode>, RateHeaders, ConfluenceError),
}

impl ConfluenceClient {
    pub(in crate::confluence) fn request(
        &self,
        method: Method,
        url: Url,
    ) -> reqwest::RequestBuilder {
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
    pub(in crate::confluence) async fn fetch(
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
    pub(in crate::confluence) async fn fetch_typed(
        &self,
        what: &'static str,
        page_id: Option<&str>,
        method: Method,
        url: &Url,
        json: Option<&[u8]>,
    ) -> Result<(String, Option<String>), ConfluenceError> {
        let halted = |halt, unacted| ConfluenceError::Halted {
            what,
            page_id: page_id.map(str::to_string),
            halt,
            unacted,
        };
        let mut attempt: u32 = 0;
        // A try that failed otherwise than with a 429 (a 5xx, a timeout) may have been acted on.
        let mut unacted = true;
        loop {
            let ticket = self.gov.admit().await.map_err(|h| halted(h, unacted))?;
            let (status, limits, err) = match self.try_once(what, page_id, &method, url, json).await
            {
                Try::Done(result, limits) => {
                    if let Some(limits) = limits {
                        self.gov.on_answer(ticket, &limits);
                    }
                    return result;
                }
                Try::Again(status, limits, err) => (status, limits, err),
            };
            let code = status.map(|s| s.as_u16());
            unacted &= code == Some(429);
            let wait = match self.gov.on_throttle(ticket, code, &limits, attempt) {
                Throttle::Halt(halt) => return Err(halted(halt, unacted)),
                Throttle::Retry(wait) => wait,
            };
            if attempt >= self.max_retries {
                return Err(err);
            }
            attempt += 1;
            tracing::warn!(
                what,
                page_id,
                status = code,
                wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                attempt,
                max_retries = self.max_retries,
                error = %err,
                "confluence request failed; retrying"
            );
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
    }

    /// One try of a request: its answer, or why another try is worth it.
    async fn try_once(
        &self,
        what: &'static str,
        page_id: Option<&str>,
        method: &Method,
        url: &Url,
        json: Option<&[u8]>,
    ) -> Try {
        let mut req = self.request(method.clone(), url.clone());
        if let Some(body) = json {
            req = req
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_vec());
        }
        let resp = match req.send().await {
            Ok(resp) => resp,
            Err(source) if source.is_builder() => {
                return Try::Done(Err(self.transport(what, url, source)), None);
            }
            Err(source) => {
                let err = self.transport(what, url, source);
                return Try::Again(None, RateHeaders::default(), err);
            }
        };
        let status = resp.status();
        let content_type = content_type(resp.headers());
        let limits = RateHeaders::parse(resp.headers(), SystemTime::now());
        if status.is_success() {
            return match resp.text().await {
                Ok(text) => {
                    self.gov.record_bytes(text.len());
                    Try::Done(Ok((text, content_type)), Some(limits))
                }
                // The body broke off (reset, timeout): as retryable as a failed send.
                Err(source) => Try::Again(None, limits, self.transport(what, url, source)),
            };
        }
        let text = resp.text().await.unwrap_or_default();
        self.gov.record_bytes(text.len());
        let err = self.status_error(what, status, page_id, &text, content_type.as_deref());
        if retryable(status) {
            Try::Again(Some(status), limits, err)
        } else {
            Try::Done(Err(err), Some(limits))
        }
    }

    pub(in crate::confluence) fn transport(
        &self,
        what: &'static str,
        url: &Url,
        source: reqwest::Error,
    ) -> ConfluenceError {
        // The URL carries no credentials (they travel in a header; root may not hold any).
        let mut shown = url.clone();
        shown.set_query(None);
        ConfluenceError::Transport {
            what,
            url: shown.to_string(),
            reason: crate::http::transport_causes(&source.without_url()),
        }
    }

    pub(in crate::confluence) fn status_error(
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
        let confluence_body =
            summary.is_some() && content_type.is_some_and(super::super::probe::is_json);
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
}

/// The media type of an answer, lowercase, without parameters.
pub(crate) fn content_type(headers: &reqwest::header::HeaderMap) -> Option<String> {
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
pub(crate) fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// The offset of the next DC list page. `got` is what actually arrived (the server may cap
/// `limit`), which by definition equals the reported `size`.
pub(crate) fn next_start(
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
pub(crate) fn decode<T: DeserializeOwned>(
    what: &'static str,
    text: &str,
) -> Result<T, ConfluenceError> {
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
pub(crate) fn hint(status: u16, flavor: Flavor) -> &'static str {
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
