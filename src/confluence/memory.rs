//! A [`PageSource`] held in memory: the bundled demo space, the benchmark's space, and the
//! pipeline tests' fake. It behaves like Confluence where it matters: labels are de-duplicated
//! on add, an unknown page is a 404, an unknown space is `SpaceNotFound`.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use tokio::sync::mpsc;

use super::{ConfluenceError, Label, Page, PageSource};

/// Pages of one space, in memory. Records every label write so tests can check them.
#[derive(Debug)]
pub struct MemorySource {
    space_key: String,
    pages: Mutex<Vec<Page>>,
    labels: Mutex<HashMap<String, Vec<Label>>>,
    writes: Mutex<Vec<(String, Vec<String>)>>,
    removals: Mutex<Vec<(String, String)>>,
    /// The ids asked for by each `bodies` call, in order.
    body_requests: Mutex<Vec<Vec<String>>>,
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
            pages: Mutex::new(pages),
            labels: Mutex::new(labels),
            writes: Mutex::new(Vec::new()),
            removals: Mutex::new(Vec::new()),
            body_requests: Mutex::new(Vec::new()),
        }
    }

    /// The ids each [`PageSource::bodies`] call asked for, in order.
    pub fn body_requests(&self) -> Vec<Vec<String>> {
        self.body_requests
            .lock()
            .expect("body requests lock poisoned")
            .clone()
    }

    /// Every `add_labels` call so far, in order: (page id, names as sent).
    pub fn writes(&self) -> Vec<(String, Vec<String>)> {
        self.writes.lock().expect("writes lock poisoned").clone()
    }

    /// Every `remove_label` call so far, in order: (page id, name).
    pub fn removals(&self) -> Vec<(String, String)> {
        self.removals
            .lock()
            .expect("removals lock poisoned")
            .clone()
    }

    /// Sets a page's labels as a person would in the web UI (not recorded as a write).
    pub fn set_labels(&self, page_id: &str, names: &[&str]) {
        self.labels.lock().expect("labels lock poisoned").insert(
            page_id.to_string(),
            names.iter().map(|n| Label::global(*n)).collect(),
        );
    }

    /// Replaces a page's body as an edit in the web UI would, raising its version.
    pub fn edit_page(&self, page_id: &str, body: &str) {
        let mut pages = self.pages.lock().expect("pages lock poisoned");
        let page = pages
            .iter_mut()
            .find(|p| p.id == page_id)
            .expect("edit_page: no such page");
        page.body = Some(body.to_string());
        page.version = Some(page.version.unwrap_or(0) + 1);
    }

    /// The labels a page has now.
    pub fn current_labels(&self, page_id: &str) -> Vec<Label> {
        self.labels
            .lock()
            .expect("labels lock poisoned")
            .get(page_id)
            .cloned()
            .unwrap_or_default()
    }

    fn not_found(what: &'static str, page_id: &str) -> ConfluenceError {
        ConfluenceError::Status {
            what,
            status: 404,
            page_id: Some(page_id.to_string()),
            hint: "the page no longer exists or the account cannot see it",
            snippet: String::new(),
            confluence_body: true,
        }
    }
}

impl MemorySource {
    /// The listing, with bodies or (as Confluence without `body-format`) without.
    async fn stream(
        &self,
        space_key: &str,
        tx: mpsc::Sender<Page>,
        bodies: bool,
    ) -> Result<u64, ConfluenceError> {
        if space_key != self.space_key {
            return Err(ConfluenceError::SpaceNotFound {
                key: space_key.to_string(),
                base: "the in-memory source".to_string(),
                search: None,
            });
        }
        let mut sent = 0;
        for i in 0.. {
            let Some(mut page) = self
                .pages
                .lock()
                .expect("pages lock poisoned")
                .get(i)
                .cloned()
            else {
                break;
            };
            // Like the real client, the listing does not carry labels unless it was given
            // them; when it does, they are the page's labels now.
            if page.labels.is_some() {
                page.labels = Some(self.current_labels(&page.id));
            }
            if bodies {
                page.body.get_or_insert_with(String::new);
            } else {
                page.body = None;
            }
            if tx.send(page).await.is_err() {
                break; // the pipeline stopped reading (--limit)
            }
            sent += 1;
        }
        Ok(sent)
    }
}

impl PageSource for MemorySource {
    async fn stream_pages(
        &self,
        space_key: &str,
        tx: mpsc::Sender<Page>,
    ) -> Result<u64, ConfluenceError> {
        self.stream(space_key, tx, true).await
    }

    async fn stream_metadata(
        &self,
        space_key: &str,
        tx: mpsc::Sender<Page>,
    ) -> Result<u64, ConfluenceError> {
        self.stream(space_key, tx, false).await
    }

    async fn bodies(&self, ids: &[String]) -> Result<HashMap<String, String>, ConfluenceError> {
        self.body_requests
            .lock()
            .expect("body requests lock poisoned")
            .push(ids.to_vec());
        let wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
        let pages = self.pages.lock().expect("pages lock poisoned");
        // Like the real client: a page that is not there is absent from the answer.
        Ok(pages
            .iter()
            .filter(|p| wanted.contains(p.id.as_str()))
            .map(|p| (p.id.clone(), p.body.clone().unwrap_or_default()))
            .collect())
    }

    async fn labels(&self, page_id: &str) -> Result<Vec<Label>, ConfluenceError> {
        self.labels
            .lock()
            .expect("labels lock poisoned")
            .get(page_id)
            .cloned()
            .ok_or_else(|| Self::not_found("read labels", page_id))
    }

    async fn pages_with_label(
        &self,
        space_key: &str,
        name: &str,
    ) -> Result<HashSet<String>, ConfluenceError> {
        if space_key != self.space_key {
            return Err(ConfluenceError::SpaceNotFound {
                key: space_key.to_string(),
                base: "the in-memory source".to_string(),
                search: None,
            });
        }
        let wanted = Label::global(name);
        Ok(self
            .labels
            .lock()
            .expect("labels lock poisoned")
            .iter()
            .filter(|(_, labels)| labels.contains(&wanted))
            .map(|(id, _)| id.clone())
            .collect())
    }

    async fn add_labels(&self, page_id: &str, names: &[String]) -> Result<(), ConfluenceError> {
        let mut labels = self.labels.lock().expect("labels lock poisoned");
        let current = labels
            .get_mut(page_id)
            .ok_or_else(|| Self::not_found("add labels", page_id))?;
        for name in names {
            let label = Label::global(name.clone());
            if !current.contains(&label) {
                current.push(label);
            }
        }
        self.writes
            .lock()
            .expect("writes lock poisoned")
            .push((page_id.to_string(), names.to_vec()));
        Ok(())
    }

    async fn remove_label(&self, page_id: &str, name: &str) -> Result<(), ConfluenceError> {
        let mut labels = self.labels.lock().expect("labels lock poisoned");
        let current = labels
            .get_mut(page_id)
            .ok_or_else(|| Self::not_found("remove a label", page_id))?;
        current.retain(|l| !(l.prefix == super::LABEL_PREFIX && l.name == name));
        self.removals
            .lock()
            .expect("removals lock poisoned")
            .push((page_id.to_string(), name.to_string()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(id: &str, body: &str) -> Page {
        Page {
            id: id.into(),
            title: format!("Page {id}"),
            version: Some(3),
            body: Some(body.into()),
            labels: None,
            url: None,
        }
    }

    #[tokio::test]
    async fn metadata_without_bodies_then_bodies_by_id() {
        let src = MemorySource::new(
            "ENG",
            vec![page("1", "<p>one</p>"), page("2", "<p>two</p>")],
        );
        let (tx, mut rx) = mpsc::channel(8);
        assert_eq!(src.stream_metadata("ENG", tx).await.unwrap(), 2);
        let mut listed = Vec::new();
        while let Some(p) = rx.recv().await {
            listed.push(p);
        }
        assert_eq!(listed.len(), 2);
        assert!(
            listed
                .iter()
                .all(|p| p.body.is_none() && p.version == Some(3))
        );
        let bodies = src.bodies(&["2".into(), "9".into()]).await.unwrap();
        assert_eq!(bodies.len(), 1);
        assert_eq!(bodies["2"], "<p>two</p>");
        assert_eq!(src.body_requests(), [vec!["2".to_string(), "9".into()]]);
    }
}
