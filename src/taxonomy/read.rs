//! The labels each page of a space carries, for `taxonomy init` and `eval`: one listing, and
//! one label read per page the listing did not carry labels for (Cloud's listing never does;
//! Data Center's expands them inline, so it costs no extra request). Reads only.

use futures::stream::{self, StreamExt, TryStreamExt};
use tokio::sync::mpsc;

use super::draft::PageLabels;
use crate::confluence::{ConfluenceError, LABEL_PREFIX, Label, PageSource};

/// Label reads in flight at once: enough to hide latency, few enough to stay under
/// Confluence's burst limits (the client still retries a 429 after its `Retry-After`).
const READS_IN_FLIGHT: usize = 8;

/// Every current page of `space` with its `global` labels, as Confluence spells them (a label
/// that breaks the label rules is kept, so that it can be reported).
pub async fn read_space_labels<S: PageSource>(
    source: &S,
    space: &str,
) -> Result<Vec<PageLabels>, ConfluenceError> {
    let (tx, mut rx) = mpsc::channel(256);
    let listing = source.stream_pages(space, tx);
    let collect = async {
        let mut pages = Vec::new();
        while let Some(p) = rx.recv().await {
            // The body is not needed: dropped at once.
            pages.push((p.id, p.title, p.labels));
        }
        pages
    };
    let (listed, pages) = tokio::join!(listing, collect);
    listed?;
    stream::iter(pages)
        .map(|(id, title, labels)| async move {
            let labels = match labels {
                Some(l) => l,
                None => source.labels(&id).await?,
            };
            Ok::<_, ConfluenceError>(PageLabels {
                id,
                title,
                labels: global(labels),
            })
        })
        .buffered(READS_IN_FLIGHT)
        .try_collect()
        .await
}

fn global(labels: Vec<Label>) -> Vec<String> {
    labels
        .into_iter()
        .filter(|l| l.prefix == LABEL_PREFIX)
        .map(|l| l.name)
        .collect()
}
