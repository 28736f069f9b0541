//! The HTTP client for Confluence Cloud and Data Center. STUB.

use tokio::sync::mpsc;

use super::{ConfluenceError, Flavor, Label, Page, PageSource};
use crate::config::ConfluenceSettings;

/// Talks to one Confluence site.
#[derive(Debug, Clone)]
pub struct ConfluenceClient {
    settings: ConfluenceSettings,
}

impl ConfluenceClient {
    pub fn new(settings: ConfluenceSettings) -> Result<Self, ConfluenceError> {
        Ok(Self { settings })
    }
    pub fn flavor(&self) -> Flavor {
        self.settings.flavor
    }
}

impl PageSource for ConfluenceClient {
    async fn stream_pages(
        &self,
        _space_key: &str,
        _tx: mpsc::Sender<Page>,
    ) -> Result<u64, ConfluenceError> {
        todo!()
    }
    async fn labels(&self, _page_id: &str) -> Result<Vec<Label>, ConfluenceError> {
        todo!()
    }
    async fn add_labels(&self, _page_id: &str, _names: &[String]) -> Result<(), ConfluenceError> {
        todo!()
    }
}
