//! Observing a person's removals without reading every page: the label census.
//!
//! A page skipped as unchanged is not read, so without this a person's removal of one of
//! tag-space's labels would go unseen, and after they put it back, `--sync` would take it for
//! tag-space's and delete it. Before the listing starts, every run (dry runs and `--sync`
//! included) asks Confluence, for each label tag-space owns somewhere in the space, which
//! pages carry it now ([`PageSource::pages_with_label`]); every owned label found absent is
//! recorded as dismissed at once ([`Store::record_census`]). That is one request stream per
//! owned label instead of one label read per page: on a 10,000-page space, requests in the
//! tens instead of 10,000 (BENCHMARKS.md, "Label census").
//!
//! It runs to completion before the pipeline writes anything, so it never mistakes a label
//! this run adds for a missing one. A census that fails for a label records nothing for it
//! (a warning says so): the pages' own reads before any write still decide, and the next run
//! looks again.

use tokio_util::sync::CancellationToken;

use crate::cache::{Run, Store};
use crate::confluence::PageSource;

/// What a census found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Census {
    /// Labels tag-space owned somewhere in the space, each counted once.
    pub labels: usize,
    /// (page, label) pairs found removed by a person and recorded as dismissed.
    pub dismissed: usize,
    /// Labels whose census failed (nothing recorded for them).
    pub failed: usize,
}

/// Takes the census of every label the ledger says tag-space owns in `run.space`, and records
/// the removals it finds. Stops early (recording what it has) when `cancel` fires.
pub async fn census<S: PageSource>(
    source: &S,
    store: &Store,
    run: &Run,
    cancel: &CancellationToken,
) -> Census {
    let mut out = Census::default();
    let owned = match store.owned_labels(&run.space) {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the ledger for the label census; removals are seen only on pages read this run");
            return out;
        }
    };
    out.labels = owned.len();
    for label in &owned {
        if cancel.is_cancelled() {
            break;
        }
        let present = match source.pages_with_label(&run.space, label).await {
            Ok(p) => p,
            Err(e) => {
                out.failed += 1;
                tracing::warn!(label = %label, error = %e, "label census failed; a person's removal of this label is seen only on pages read this run");
                continue;
            }
        };
        match store.record_census(run, label, &present) {
            Ok(gone) => {
                for page in &gone {
                    tracing::info!(page = %page, label = %label, "a person removed this label tag-space added: it is theirs now and will not be added back");
                }
                out.dismissed += gone.len();
            }
            Err(e) => {
                out.failed += 1;
                tracing::warn!(label = %label, error = %e, "cannot record the label census");
            }
        }
    }
    if out.labels > 0 {
        tracing::info!(
            labels = out.labels,
            dismissed = out.dismissed,
            failed = out.failed,
            "label census"
        );
    }
    out
}
