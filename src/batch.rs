//! The micro-batcher: packs pages into batches of at most `max_pages` pages and at most
//! `max_chars` characters of text, so one request never outgrows the prompt budget. Pure and
//! synchronous; the pipeline decides when to flush.
//!
//! Generic over what travels in a batch, so that the pipeline's pages carry their metadata
//! along with their text: a batch comes out as the very items that went in.

use crate::llm::PageText;

/// Something a batch holds: its size in characters is what the budget counts.
pub trait BatchItem {
    fn chars(&self) -> usize;
}

impl BatchItem for PageText {
    fn chars(&self) -> usize {
        self.title.chars().count() + self.text.chars().count()
    }
}

#[derive(Debug)]
pub struct Batcher<T> {
    max_pages: usize,
    max_chars: usize,
    pending: Vec<T>,
    chars: usize,
}

impl<T: BatchItem> Batcher<T> {
    /// `max_pages` and `max_chars` are at least 1.
    pub fn new(max_pages: usize, max_chars: usize) -> Self {
        Self {
            max_pages: max_pages.max(1),
            max_chars: max_chars.max(1),
            pending: Vec::new(),
            chars: 0,
        }
    }

    /// Adds a page. Returns a batch when one is ready: the pending pages when this page would
    /// overflow the character budget (the page then starts the next batch), or the pending
    /// pages including this one when they reach `max_pages`. A page larger than the whole
    /// budget travels alone.
    pub fn push(&mut self, page: T) -> Option<Vec<T>> {
        let size = page.chars();
        let overflow = !self.pending.is_empty() && self.chars + size > self.max_chars;
        let ready = if overflow { self.take() } else { None };
        self.chars += size;
        self.pending.push(page);
        if ready.is_some() {
            return ready;
        }
        (self.pending.len() >= self.max_pages)
            .then(|| self.take())
            .flatten()
    }

    /// The pending pages, if any, as a last partial batch.
    pub fn flush(&mut self) -> Option<Vec<T>> {
        self.take()
    }

    /// Items waiting for their batch.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    fn take(&mut self) -> Option<Vec<T>> {
        self.chars = 0;
        (!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(id: &str, chars: usize) -> PageText {
        PageText {
            id: id.into(),
            title: String::new(),
            text: "x".repeat(chars),
        }
    }

    fn ids(batch: Option<Vec<PageText>>) -> Vec<String> {
        batch
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.id)
            .collect()
    }

    #[test]
    fn fills_to_max_pages() {
        let mut b = Batcher::new(2, 1000);
        assert!(b.push(page("1", 10)).is_none());
        assert_eq!(ids(b.push(page("2", 10))), ["1", "2"]);
        assert!(b.push(page("3", 10)).is_none());
        assert_eq!(ids(b.flush()), ["3"]);
        assert!(b.flush().is_none());
    }

    #[test]
    fn character_budget_closes_a_batch_early() {
        let mut b = Batcher::new(5, 100);
        assert!(b.push(page("1", 60)).is_none());
        assert_eq!(ids(b.push(page("2", 60))), ["1"]);
        assert_eq!(ids(b.push(page("3", 500))), ["2"]);
        assert_eq!(ids(b.push(page("4", 1))), ["3"]);
        assert_eq!(ids(b.flush()), ["4"]);
    }
}
