//! Replay: applies a reviewed plan (`crate::plan`) to one page, with no model. The page's
//! version as listed now is checked first: a page edited since the plan is `stale` and left
//! alone. Otherwise the planned labels go through the same apply stage as a run's
//! ([`super::apply`]): a fresh read of the page's labels before writing, the ledger's
//! ownership rules (a label a person removed after tag-space added it is not added again,
//! only tag-space's own labels are ever removed), the write-ahead intent and the finished
//! page, so that the next incremental run sees the writes.

use super::apply::apply_within;
use super::{Ctx, PageMeta, PageOutcome, Provenance, RunOptions, StateCtx, Status};
use crate::cache::ContentHash;
use crate::confluence::{Label, PageSource};
use crate::taxonomy::Taxonomy;

/// The reason of a page skipped because it changed since the plan starts with this.
pub const STALE: &str = "stale";

/// Stands where a run has its provider chain: a replay builds none and asks no model.
struct NoModel;

/// One page of a plan, as the apply stage needs it.
#[derive(Debug, Clone)]
pub struct PlannedWrite {
    pub id: String,
    pub title: String,
    pub url: Option<String>,
    /// The version the plan was made on.
    pub version: u64,
    /// The ledger's hash of the page when planned: recorded when the page is finished, so
    /// that an unchanged page is skipped by the next run.
    pub content_hash: ContentHash,
    pub add: Vec<String>,
    pub remove: Vec<String>,
    pub provider: Provenance,
}

/// The page as the site lists it now: `None` when it is gone (or cannot be seen).
#[derive(Debug, Clone, Default)]
pub struct ListedNow {
    pub version: Option<u64>,
    /// The labels when the listing carried them (Data Center).
    pub labels: Option<Vec<Label>>,
}

/// Applies one planned page (see the module docs). `opts.sync` must be the plan's mode.
pub async fn apply_planned<S: PageSource>(
    source: &S,
    taxonomy: &Taxonomy,
    opts: &RunOptions,
    page: &PlannedWrite,
    now: Option<ListedNow>,
) -> PageOutcome {
    let ctx = Ctx {
        source,
        provider: &NoModel,
        taxonomy,
        opts,
        state: opts.state.as_ref().map(StateCtx::of),
    };
    let meta = PageMeta {
        id: page.id.clone(),
        title: page.title.clone(),
        url: page.url.clone(),
        labels: now.as_ref().and_then(|n| n.labels.clone()),
        version: Some(page.version),
        content_hash: Some(page.content_hash),
        key: None,
    };
    let Some(now) = now else {
        return meta
            .failed("the page is gone, or this account cannot see it any more: not applied");
    };
    if now.version != Some(page.version) {
        let current = now.version.map_or("unknown".into(), |v| v.to_string());
        return PageOutcome {
            reason: Some(format!(
                "{STALE}: edited since the plan (version {} planned, {current} now); not applied, make a new plan",
                page.version
            )),
            version: now.version,
            ..meta.outcome(Status::Skipped)
        };
    }
    apply_within(
        &ctx,
        &meta,
        page.add.clone(),
        page.provider,
        Some(&page.remove),
    )
    .await
}
