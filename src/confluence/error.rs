//! What can go wrong talking to Confluence, with what a person needs to act on it.

use super::resolve::SpaceSearch;

/// An error from the Confluence boundary. Each message names the request and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfluenceError {
    /// The space key resolves to nothing (or the credentials cannot see it).
    #[error("space '{key}' was not found on {base}{}", SpaceSearch::advice(search))]
    SpaceNotFound {
        key: String,
        base: String,
        /// What the site's key listing showed (closest keys), when it was read: only
        /// [`super::ConfluenceClient::resolve_space`] reads it.
        search: Option<SpaceSearch>,
    },

    /// No space has exactly this key, and several have it in another case.
    #[error(
        "space '{key}' is not on {base}, but several keys differ from it only in case: {}; pass the exact one with --space",
        candidates.join(", ")
    )]
    SpaceAmbiguous {
        key: String,
        base: String,
        /// The matching keys, sorted.
        candidates: Vec<String>,
    },

    /// A non-success HTTP status that retrying will not fix (or retries ran out).
    #[error("confluence {what}: HTTP {status}{}: {hint}{}", page_id.as_deref().map(|p| format!(" for page {p}")).unwrap_or_default(), if snippet.is_empty() { String::new() } else { format!(" (server said: {snippet})") })]
    Status {
        /// The request in a few words, e.g. "list pages", "add labels".
        what: &'static str,
        status: u16,
        page_id: Option<String>,
        /// What the status most likely means and what to do about it.
        hint: &'static str,
        snippet: String,
        /// The body was a Confluence error (JSON in one of Confluence's error shapes), not a
        /// web server's or proxy's page: a 404 then means the thing is not there, rather than
        /// that the URL is not Confluence's.
        confluence_body: bool,
    },

    /// The server at the base URL answered, but not as Confluence does at this address (an
    /// HTML page, a non-JSON content type, JSON of another shape): the base URL is wrong, not
    /// the space.
    #[error(
        "the server at {base} answered, but not like Confluence ({detail}): check CONFLUENCE_BASE_URL; {hint}"
    )]
    NotConfluence {
        base: String,
        /// What came back, e.g. "HTTP 404 with an HTML page".
        detail: String,
        /// Where the right base URL usually differs, for this flavour.
        hint: &'static str,
    },

    /// The request never got an HTTP answer (DNS, connect, TLS, timeout, reset). `reason`
    /// is the cause as text ([`crate::http::transport_causes`]), not the `source()`, so that a
    /// page's failure line (which shows this message alone) says why, and a printed chain
    /// says it once.
    #[error("confluence {what}: cannot reach {url}: {reason}")]
    Transport {
        what: &'static str,
        url: String,
        reason: String,
    },

    /// The server asked to wait longer (`Retry-After`) than tag-space is willing to sleep.
    #[error("confluence {what}: HTTP {status}{}: the server asked to wait {}s before retrying, longer than tag-space waits ({}s); run again later", page_id.as_deref().map(|p| format!(" for page {p}")).unwrap_or_default(), wait.as_secs(), limit.as_secs())]
    RetryAfterTooLong {
        what: &'static str,
        status: u16,
        page_id: Option<String>,
        wait: std::time::Duration,
        limit: std::time::Duration,
    },

    /// The run's Confluence work has stopped: a quota is spent, or the site asked to wait
    /// longer than the ceiling (see `pace::Halt`).
    #[error("confluence {what}{}: {halt}", page_id.as_deref().map(|p| format!(" for page {p}")).unwrap_or_default())]
    Halted {
        what: &'static str,
        page_id: Option<String>,
        halt: super::pace::Halt,
        /// Confluence did nothing with this request: it was never sent, or every try was
        /// answered 429 (not acted on). A write so refused did not land.
        unacted: bool,
    },

    /// The credentials were not accepted (checked before the listing).
    #[error("confluence credentials: {detail}")]
    Credentials { detail: String },

    /// The client could not be built from the settings (bad root URL, unusable credentials).
    #[error("confluence settings: {detail}")]
    Setup { detail: String },

    /// A 2xx answer whose body is not what the API documents (HTML login page, truncated JSON).
    #[error("confluence {what}: unreadable response ({detail}): {snippet}")]
    Decode {
        what: &'static str,
        detail: String,
        snippet: String,
    },
}

impl ConfluenceError {
    /// The HTTP status, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } | Self::RetryAfterTooLong { status, .. } => Some(*status),
            Self::Halted { halt, .. } => Some(halt.status()),
            _ => None,
        }
    }

    /// The request surely had no effect on the site (see `Halted::unacted`): a failed write
    /// left the page as it was.
    pub fn unacted(&self) -> bool {
        matches!(self, Self::Halted { unacted: true, .. })
    }
}
