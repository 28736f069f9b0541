//! Reading pages from Confluence and writing labels back.
//!
//! [`PageSource`] is the seam: [`client::ConfluenceClient`] speaks to Confluence Cloud (v2 reads,
//! v1 label writes) and Data Center; [`memory::MemorySource`] serves pages from memory for the
//! demo, the benchmark and the pipeline tests.

mod census;
pub mod client;
mod error;
pub mod memory;
pub mod pace;
mod probe;
pub mod ratelimit;
pub mod resolve;
mod settings;
mod wire;

use std::collections::{HashMap, HashSet};
use std::future::Future;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use client::ConfluenceClient;
pub use error::ConfluenceError;
pub use memory::MemorySource;
pub use resolve::ResolvedSpace;
pub use settings::{ConfluenceAuth, ConfluenceSettings};

/// The prefix tag-space writes its labels under (the one the Confluence UI uses).
pub const LABEL_PREFIX: &str = "global";

/// Which Confluence API family a site speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Confluence Cloud: v2 for reads, v1 for label writes, Basic auth with an API token.
    Cloud,
    /// Confluence Data Center / Server: v1 REST, Bearer personal access token.
    DataCenter,
}

impl std::fmt::Display for Flavor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Flavor::Cloud => "cloud",
            Flavor::DataCenter => "datacenter",
        })
    }
}

/// One page of the space, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub id: String,
    pub title: String,
    /// The page's version number, when the listing carried it.
    pub version: Option<u64>,
    /// The body in Confluence storage format (XHTML with `ac:`/`ri:` elements); `None` when
    /// the listing did not carry it ([`PageSource::stream_metadata`]): ask
    /// [`PageSource::bodies`].
    pub body: Option<String>,
    /// The page's labels when the listing carried them (Data Center expands them inline);
    /// `None` means "ask [`PageSource::labels`]".
    pub labels: Option<Vec<Label>>,
    /// The page's address in the web UI, for reports.
    pub url: Option<String>,
}

/// A label as Confluence reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label {
    pub prefix: String,
    pub name: String,
}

impl Label {
    pub fn global(name: impl Into<String>) -> Self {
        Self {
            prefix: LABEL_PREFIX.to_string(),
            name: name.into(),
        }
    }
}

/// Where pages come from and where labels go.
pub trait PageSource: Send + Sync {
    /// Reads every current page of the space `space_key` and sends each into `tx` as soon as
    /// its listing page has arrived, so memory holds only what is in flight. Returns how many
    /// pages were sent. Returns `Ok` early when the receiver is dropped (e.g. `--limit`).
    /// A space that does not exist is [`ConfluenceError::SpaceNotFound`].
    fn stream_pages(
        &self,
        space_key: &str,
        tx: mpsc::Sender<Page>,
    ) -> impl Future<Output = Result<u64, ConfluenceError>> + Send;

    /// As [`Self::stream_pages`], but without bodies (`body` is `None`): the listing asks
    /// for ids, titles, versions (and on Data Center the inline labels) only, so that a run
    /// knows its total early and fetches bodies only for the pages it will classify
    /// ([`Self::bodies`]). A page whose body came anyway (a server that ignores the request's
    /// format) keeps it. The default lists with bodies: a source that cannot list without
    /// them costs what it did, and [`Self::bodies`] is never asked.
    fn stream_metadata(
        &self,
        space_key: &str,
        tx: mpsc::Sender<Page>,
    ) -> impl Future<Output = Result<u64, ConfluenceError>> + Send {
        self.stream_pages(space_key, tx)
    }

    /// The storage-format bodies of the pages `ids`, by id, fetched in bulk (Cloud: up to 250
    /// a request; Data Center: one request a page, several at once within the site's
    /// concurrency). A page that no longer exists or cannot be seen is absent from the map.
    fn bodies(
        &self,
        ids: &[String],
    ) -> impl Future<Output = Result<HashMap<String, String>, ConfluenceError>> + Send {
        let _ = ids;
        async {
            Err(ConfluenceError::Setup {
                detail: "this page source cannot fetch bodies by id".into(),
            })
        }
    }

    /// Why the run's Confluence work stopped (a quota spent, a wait above the ceiling), once
    /// it has: the run then ends with exit code 2 after reporting the pages done.
    fn halted(&self) -> Option<String> {
        None
    }

    /// What the site's governor counted so far (requests, 429s, waits, bytes); `None` for a
    /// source that is not a Confluence site.
    fn site_stats(&self) -> Option<pace::SiteStats> {
        None
    }

    /// Cancelled when the run's Confluence work stops, so that the run stops taking new
    /// pages (none is classified for a write that cannot happen).
    fn halt_token(&self) -> Option<CancellationToken> {
        None
    }

    /// The page's current labels (all prefixes).
    fn labels(
        &self,
        page_id: &str,
    ) -> impl Future<Output = Result<Vec<Label>, ConfluenceError>> + Send;

    /// The ids of the pages of space `space_key` that carry the `global` label `name` now,
    /// every page of the answer followed: the label census. It costs one request per 250
    /// pages carrying the label (plus a lookup or two), where reading each page's labels
    /// costs one request per page. A label no page of the space carries is an empty set.
    fn pages_with_label(
        &self,
        space_key: &str,
        name: &str,
    ) -> impl Future<Output = Result<HashSet<String>, ConfluenceError>> + Send;

    /// Adds `names` to the page under the `global` prefix, in one request. Never removes a label.
    fn add_labels(
        &self,
        page_id: &str,
        names: &[String],
    ) -> impl Future<Output = Result<(), ConfluenceError>> + Send;

    /// Removes the `global` label `name` from the page. Only `--sync` calls it, and only for
    /// labels the ledger attributes to tag-space. A label that is not there is not an error.
    fn remove_label(
        &self,
        page_id: &str,
        name: &str,
    ) -> impl Future<Output = Result<(), ConfluenceError>> + Send;
}
