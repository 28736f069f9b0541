//! Replay: applies a reviewed plan (`crate::plan`), with no model: a space's planned pages
//! several at a time ([`apply_plan`]), each one as [`apply_planned`]. The page's version as
//! listed now is checked first: a page edited since the plan is [`Status::Stale`] and left
//! alone. Otherwise the planned labels go through the same apply stage as a run's
//! ([`super::apply`]): a fresh read of the page's labels before writing, the ledger's
//! ownership rules (a label a person removed after tag-space added it is not added again,
//! only tag-space's own labels are ever removed), the write-ahead intent and the finished
//! page, so that the next incremental run sees the writes.

use std::collections::HashMap;

use futures::stream::{self, StreamExt};

use super::apply::apply_within;
use super::{Ctx, PageMeta, PageOutcome, Provenance, RunOptions, StateCtx, Status};
use crate::cache::ContentHash;
use crate::confluence::{Label, PageSource};
use crate::taxonomy::Taxonomy;

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

/// How [`apply_plan`] went over a space's planned pages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Pages handed to the sink (stale ones included).
    pub handed: usize,
    /// Pages under way when the site halted the run's Confluence work, whose requests were
    /// refused for it: not applied, and not handed on as failed (one line says why for all).
    pub halted: usize,
}

/// Applies a space's planned pages, `concurrency` pages at a time, and hands each outcome to
/// `sink` in the order of `writes` (the plan's), whatever order they finish in, so that the
/// page lines and the report read the same on every run. `now` is the space as listed now
/// ([`ListedNow`] by page id). Once `opts.cancel` is cancelled, or the site halts the run's
/// Confluence work (a quota spent, a wait above the ceiling: `source.halt_token()`), no page
/// is started; the pages already started are finished and handed on, except those the halt
/// refused ([`Replayed::halted`]): one error repeated on every page would hide the reason.
///
/// Each page is a fresh read of its labels and one or two writes: the site's governor, not
/// this bound, is what keeps the site's requests within `TAG_SPACE_CONFLUENCE_CONCURRENCY`;
/// pages in flight are bounded by the same number so that none waits long for a slot while
/// holding its place in the order.
pub async fn apply_plan<S: PageSource>(
    source: &S,
    taxonomy: &Taxonomy,
    opts: &RunOptions,
    writes: &[PlannedWrite],
    mut now: HashMap<String, ListedNow>,
    concurrency: usize,
    sink: &mut dyn FnMut(PageOutcome),
) -> Replayed {
    let cancel = &opts.cancel;
    let halt = source.halt_token();
    let stopped = || cancel.is_cancelled() || halt.as_ref().is_some_and(|h| h.is_cancelled());
    let mut outcomes = stream::iter(writes)
        .take_while(|_| std::future::ready(!stopped()))
        .map(|w| apply_planned(source, taxonomy, opts, w, now.remove(&w.id)))
        // In plan order: `buffered`, not `buffer_unordered`.
        .buffered(concurrency.max(1));
    let mut done = Replayed::default();
    while let Some(o) = outcomes.next().await {
        if refused_by_halt(source, &o) {
            done.halted += 1;
            continue;
        }
        sink(o);
        done.handed += 1;
    }
    done
}

/// The page failed because the site halted the run's Confluence work: its reason carries
/// the halt's (a request's error names it, see `ConfluenceError::Halted`).
fn refused_by_halt<S: PageSource>(source: &S, o: &PageOutcome) -> bool {
    let Some(halt) = source.halted() else {
        return false;
    };
    o.status == Status::Failed && o.reason.as_deref().is_some_and(|r| r.contains(&halt))
}

/// The start of the reason of a planned page that is gone.
pub const GONE: &str = "gone since the plan";

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
    // Deleted, moved to another space, or no longer readable by this account: the listing
    // of the space no longer has it. As for an edited page, nothing is written (a write
    // would fail, or land on a page the plan was not reviewed for).
    let Some(now) = now else {
        return PageOutcome {
            reason: Some(format!(
                "{GONE} (deleted, moved out of the space, or no longer readable by this account); not applied"
            )),
            ..meta.outcome(Status::Stale)
        };
    };
    if now.version != Some(page.version) {
        let current = now.version.map_or("unknown".into(), |v| v.to_string());
        return PageOutcome {
            reason: Some(format!(
                "edited since the plan (version {} planned, {current} now); not applied, make a new plan",
                page.version
            )),
            version: now.version,
            ..meta.outcome(Status::Stale)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::testkit::{Kit, page};

    fn planned(id: &str, version: u64) -> PlannedWrite {
        PlannedWrite {
            id: id.into(),
            title: format!("Page {id}"),
            url: None,
            version,
            content_hash: ContentHash::of_page(id, ""),
            add: vec!["type-howto".into()],
            remove: Vec::new(),
            provider: Provenance::Provider("rules"),
        }
    }

    fn listed(ids: &[&str]) -> HashMap<String, ListedNow> {
        let now = ListedNow {
            version: Some(1),
            labels: None,
        };
        ids.iter().map(|id| (id.to_string(), now.clone())).collect()
    }

    /// Plan order, a stale page among them, and a stop: the pages started are finished and
    /// handed on, no other is started.
    #[tokio::test]
    async fn planned_pages_come_in_plan_order_and_a_stop_starts_no_other() {
        let ids = ["3", "1", "4", "2", "5"];
        let kit = Kit::new(ids.iter().map(|id| page(id, "<p>x</p>")).collect());
        let mut writes: Vec<PlannedWrite> = ids.iter().map(|id| planned(id, 1)).collect();
        writes[1].version = 0;
        let mut got = Vec::new();
        let mut sink = |o: PageOutcome| got.push((o.id, o.status));
        let tax = &kit.taxonomy;
        let done = apply_plan(
            &kit.source,
            tax,
            &kit.opts,
            &writes,
            listed(&ids),
            2,
            &mut sink,
        );
        assert_eq!(done.await.handed, 5);
        let order: Vec<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(order, ids);
        assert_eq!(got[1].1, Status::Stale);
        assert!(
            got.iter()
                .filter(|(id, _)| id != "1")
                .all(|(_, s)| *s == Status::Tagged)
        );

        let kit = Kit::new(ids.iter().map(|id| page(id, "<p>x</p>")).collect());
        let cancel = kit.opts.cancel.clone();
        let mut first = Vec::new();
        let mut sink = |o: PageOutcome| {
            cancel.cancel();
            first.push(o.id);
        };
        let done = apply_plan(
            &kit.source,
            tax,
            &kit.opts,
            &writes,
            listed(&ids),
            2,
            &mut sink,
        );
        // Two were under way when the first came back and stopped the run.
        assert_eq!(done.await.handed, 2);
        assert_eq!(first, ["3", "1"]);
        assert_eq!(
            kit.source.writes().len(),
            1,
            "page 1 is stale: only page 3 written"
        );
    }
}
