//! The pages `eval` classifies, as a [`PageSource`] for the pipeline: the space's listing
//! with every page not selected left out, and with no write ever let through.

use std::collections::{HashMap, HashSet};

use tokio::sync::mpsc;

use crate::confluence::{ConfluenceError, Label, Page, PageSource};

/// Forwards the selected pages of `inner`'s listing.
pub struct Selected<'a, S> {
    inner: &'a S,
    /// Page id to the labels already read from it (so the pipeline reads none again).
    pages: HashMap<String, Vec<Label>>,
}

impl<'a, S: PageSource> Selected<'a, S> {
    pub fn new(inner: &'a S, pages: HashMap<String, Vec<Label>>) -> Self {
        Self { inner, pages }
    }
}

/// `eval` writes nothing; a write reaching this is a bug, refused rather than sent.
fn refused() -> ConfluenceError {
    ConfluenceError::Setup {
        detail: "eval never writes to Confluence (a bug tried to)".into(),
    }
}

impl<S: PageSource> Selected<'_, S> {
    /// Forwards the selected pages of `listing` (which sends into `inner_tx`).
    async fn forward(
        &self,
        listing: impl std::future::Future<Output = Result<u64, ConfluenceError>> + Send,
        mut inner_rx: mpsc::Receiver<Page>,
        tx: mpsc::Sender<Page>,
    ) -> Result<u64, ConfluenceError> {
        let forward = async {
            let mut sent = 0;
            while let Some(mut page) = inner_rx.recv().await {
                let Some(labels) = self.pages.get(&page.id) else {
                    continue;
                };
                page.labels = Some(labels.clone());
                // Every selected page needs an answer: a page finished by an earlier run
                // would otherwise be reported unchanged, with none. Without a version the
                // ledger cannot call it unchanged; its answer still comes from the cache
                // while its text is unchanged, so a rerun costs no call.
                page.version = None;
                if tx.send(page).await.is_err() {
                    break;
                }
                sent += 1;
            }
            sent
        };
        let (listed, sent) = tokio::join!(listing, forward);
        listed.map(|_| sent)
    }
}

impl<S: PageSource> PageSource for Selected<'_, S> {
    async fn stream_pages(
        &self,
        space_key: &str,
        tx: mpsc::Sender<Page>,
    ) -> Result<u64, ConfluenceError> {
        let (inner_tx, inner_rx) = mpsc::channel::<Page>(64);
        let listing = self.inner.stream_pages(space_key, inner_tx);
        self.forward(listing, inner_rx, tx).await
    }

    async fn stream_metadata(
        &self,
        space_key: &str,
        tx: mpsc::Sender<Page>,
    ) -> Result<u64, ConfluenceError> {
        let (inner_tx, inner_rx) = mpsc::channel::<Page>(64);
        let listing = self.inner.stream_metadata(space_key, inner_tx);
        self.forward(listing, inner_rx, tx).await
    }

    async fn bodies(&self, ids: &[String]) -> Result<HashMap<String, String>, ConfluenceError> {
        self.inner.bodies(ids).await
    }

    async fn labels(&self, page_id: &str) -> Result<Vec<Label>, ConfluenceError> {
        match self.pages.get(page_id) {
            Some(l) => Ok(l.clone()),
            None => self.inner.labels(page_id).await,
        }
    }

    async fn pages_with_label(
        &self,
        space_key: &str,
        name: &str,
    ) -> Result<HashSet<String>, ConfluenceError> {
        self.inner.pages_with_label(space_key, name).await
    }

    async fn add_labels(&self, _page_id: &str, _names: &[String]) -> Result<(), ConfluenceError> {
        Err(refused())
    }

    async fn remove_label(&self, _page_id: &str, _name: &str) -> Result<(), ConfluenceError> {
        Err(refused())
    }
}
