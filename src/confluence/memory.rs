//! A [`PageSource`] held in memory: the bundled demo space, the benchmark's space, and the
//! pipeline tests' fake. It behaves like Confluence where it matters: labels are de-duplicated
//! on add, an unknown page is a 404, an unknown space is `SpaceNotFound`.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::mpsc;

use super::{ConfluenceError, Label, Page, PageSource};

/// Pages of one space, in memory. Records every label write so tests can check them.
#[derive(Debug)]
pub struct MemorySource {
    space_key: String,
    pages: Vec<Page>,
    labels: Mutex<HashMap<String, Vec<Label>>>,
    writes: Mutex<Vec<(String, Vec<String>)>>,
}

impl MemorySource {
    /// A space `space_key` holding `pages`; each page's `labels` (if any) are its current labels.
    pub fn new(space_key: impl Into<String>, pages: Vec<Page>) -> Self {
        let labels = pages
            .iter()
            .map(|p| (p.id.clone(), p.labels.clone().unwrap_or_default()))
            .collect();
        Self {
            space_key: space_key.into(),
            pages,
            labels: Mutex::new(labels),
            writes: Mutex::new(Vec::new()),
        }
    }

    /// Every `add_labels` call so far, in order: (page id, names as sent).
    pub fn writes(&self) -> Vec<(String, Vec<String>)> {
        self.writes.lock().expect("writes lock poisoned").clone()
    }

    /// The labels a page has now.
    pub fn current_labels(&self, page_id: &str) -> Vec<Label> {
        self.labels.lock().expect("labels lock poisoned").get(page_id).cloned().unwrap_or_default()
    }

    fn not_found(what: &'static str, page_id: &str) -> ConfluenceError {
        ConfluenceError::Status {
            what,
            status: 404,
            page_id: Some(page_id.to_string()),
            hint: "the page no longer exists or the account cannot see it",
            snippet: String::new(),
        }
    }
}

impl PageSource for MemorySource {
    async fn stream_pages(&self, space_key: &str, tx: mpsc::Sender<Page>) -> Result<u64, ConfluenceError> {
        if space_key != self.space_key {
            return Err(ConfluenceError::SpaceNotFound {
                key: space_key.to_string(),
                base: "the in-memory source".to_string(),
            });
        }
        let mut sent = 0;
        for page in &self.pages {
            // Like the real client, the listing does not carry labels unless it was given them.
            if tx.send(page.clone()).await.is_err() {
                break; // the pipeline stopped reading (--limit)
            }
            sent += 1;
        }
        Ok(sent)
    }

    async fn labels(&self, page_id: &str) -> Result<Vec<Label>, ConfluenceError> {
        self.labels
            .lock()
            .expect("labels lock poisoned")
            .get(page_id)
            .cloned()
            .ok_or_else(|| Self::not_found("read labels", page_id))
    }

    async fn add_labels(&self, page_id: &str, names: &[String]) -> Result<(), ConfluenceError> {
        let mut labels = self.labels.lock().expect("labels lock poisoned");
        let current = labels.get_mut(page_id).ok_or_else(|| Self::not_found("add labels", page_id))?;
        for name in names {
            let label = Label::global(name.clone());
            if !current.contains(&label) {
                current.push(label);
            }
        }
        self.writes.lock().expect("writes lock poisoned").push((page_id.to_string(), names.to_vec()));
        Ok(())
    }
}
