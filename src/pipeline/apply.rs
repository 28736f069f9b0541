//! Apply: brings a page's labels in line with the labels chosen for it. One path for runs
//! with and without a state file; without one, the ledger is empty (nothing is tag-space's,
//! so nothing is ever removed) and nothing is recorded.
//!
//! ```text
//! ledger (read now) ─► plan_add / plan_sync on a fresh read of the page's labels
//!   ─► prepare_labels (write-ahead intent) ─► Confluence add / remove ─► finish_page
//! ```
//!
//! A label a person added is never removed. Labels are planned on a read made immediately
//! before writing (a listing's copy, as Data Center's, may be minutes old): a label a person
//! added meanwhile is not written again and not claimed. Only the labels absent in that read
//! are written and recorded as tag-space's. A store error fails the page (its reason says so)
//! and never lets a label be written without its intent recorded first.

use super::{Ctx, PageMeta, PageOutcome, Provenance, StateCtx, Status, global_names};
use crate::cache::{
    LabelPlan, LabelStatus, PageDone, PageLedger, plan_add, plan_sync, settle_after_failure,
};
use crate::confluence::{ConfluenceError, PageSource};

/// Applies `chosen` to the page (see the module docs).
pub(super) async fn apply<S: PageSource, P>(
    ctx: &Ctx<'_, S, P>,
    meta: &PageMeta,
    chosen: Vec<String>,
    by: Provenance,
) -> PageOutcome {
    apply_within(ctx, meta, chosen, by, None).await
}

/// As [`apply`], with removals limited to `removable` when given: a reviewed plan's
/// (`super::replay`) removes no label it did not list, whatever the ledger would allow.
pub(super) async fn apply_within<S: PageSource, P>(
    ctx: &Ctx<'_, S, P>,
    meta: &PageMeta,
    chosen: Vec<String>,
    by: Provenance,
    removable: Option<&[String]>,
) -> PageOutcome {
    let unread = |reason: String| PageOutcome {
        chosen: chosen.clone(),
        provider: Some(by),
        ..meta.failed(reason)
    };
    // Read now, not when listed: what an earlier page of this run did is already in it.
    let ledger = match &ctx.state {
        Some(st) => match st.store.page_ledger(&st.run.space, &meta.id) {
            Ok(l) => l,
            Err(e) => return unread(e.to_string()),
        },
        // Without a store: add-only, nothing owned.
        None => PageLedger::default(),
    };
    let (before, plan) = match plan_on_fresh_read(ctx, meta, &chosen, &ledger, removable).await {
        Ok(planned) => planned,
        Err(e) => return unread(e.to_string()),
    };
    warn_unconfirmed(&meta.id, &ledger, &plan);
    let base = PageOutcome {
        labels_before: before,
        chosen,
        provider: Some(by),
        ..meta.outcome(Status::Unchanged)
    };
    if let Err(reason) = write(ctx, meta, &plan, by, &base.labels_before).await {
        return PageOutcome {
            status: Status::Failed,
            reason: Some(reason),
            ..base
        };
    }
    if plan.is_noop() {
        return settled(base);
    }
    PageOutcome {
        status: Status::Tagged,
        added: plan.add,
        removed: plan.remove,
        ..base
    }
}

/// The page's labels and the plan for them. A plan that writes is always made on labels read
/// just now (in a dry run the listed labels do).
async fn plan_on_fresh_read<S: PageSource, P>(
    ctx: &Ctx<'_, S, P>,
    meta: &PageMeta,
    chosen: &[String],
    ledger: &PageLedger,
    removable: Option<&[String]>,
) -> Result<(Vec<String>, LabelPlan), ConfluenceError> {
    let sync = ctx.opts.sync && ctx.state.is_some();
    let plan_for = |labels: &[String]| {
        let mut plan = if sync {
            plan_sync(labels, chosen, ledger)
        } else {
            plan_add(labels, chosen, ledger)
        };
        // A page carrying an alias of a tag has its concept already: the tag is not added
        // beside it (and, still chosen, a tag of tag-space's own is not removed either).
        plan.add
            .retain(|tag| !ctx.taxonomy.carried_by_alias(tag, labels));
        if let Some(removable) = removable {
            plan.remove.retain(|l| removable.contains(l));
        }
        plan
    };
    let (before, fresh) = match &meta.labels {
        Some(labels) => (global_names(labels), false),
        None => (global_names(&ctx.source.labels(&meta.id).await?), true),
    };
    let plan = plan_for(&before);
    if plan.is_noop() || fresh || ctx.opts.dry_run {
        return Ok((before, plan));
    }
    let before = global_names(&ctx.source.labels(&meta.id).await?);
    let plan = plan_for(&before);
    Ok((before, plan))
}

/// Records the intent (with a state file), writes the plan (unless a dry run), and records
/// the page as finished. `before` is the read the plan was made on. The error is the page's
/// failure reason.
async fn write<S: PageSource, P>(
    ctx: &Ctx<'_, S, P>,
    meta: &PageMeta,
    plan: &LabelPlan,
    by: Provenance,
    before: &[String],
) -> Result<(), String> {
    let state = ctx.state.as_ref().zip(meta.content_hash);
    if !plan.is_noop() {
        if let Some((st, _)) = state {
            // Write-ahead: the intent is on disk before Confluence hears of it.
            st.store
                .prepare_labels(st.run, &meta.id, plan)
                .map_err(|e| e.to_string())?;
        }
        if !ctx.opts.dry_run {
            if let Err((e, adds_confirmed)) = write_plan(ctx.source, &meta.id, plan).await {
                if let Some((st, _)) = state {
                    // Nothing landed (the additions are the first request): the page is as
                    // read. Settled without a read, which a halted site would refuse too.
                    let known = (e.unacted() && !adds_confirmed).then_some(before);
                    settle_failed_write(ctx.source, st, &meta.id, plan, adds_confirmed, known)
                        .await;
                }
                return Err(e.to_string());
            }
        }
    }
    let Some((st, hash)) = state else {
        return Ok(());
    };
    let done = PageDone {
        version: meta.version,
        content_hash: hash,
        setup: if by == Provenance::StopGap {
            st.stop_gap_hash
        } else {
            st.setup_hash
        },
    };
    // On failure the next run settles the open intents by looking at the page.
    st.store
        .finish_page(st.run, &meta.id, &done, plan)
        .map_err(|e| format!("labels written, but the state file could not record it: {e}"))
}

/// Writes `plan` to Confluence: the additions in one request, then each removal. On failure,
/// also says whether the additions had been confirmed.
async fn write_plan<S: PageSource>(
    source: &S,
    page_id: &str,
    plan: &LabelPlan,
) -> Result<(), (ConfluenceError, bool)> {
    if !plan.add.is_empty() {
        source
            .add_labels(page_id, &plan.add)
            .await
            .map_err(|e| (e, false))?;
    }
    for label in &plan.remove {
        // At the default log level: a deletion is never silent.
        tracing::warn!(page = %page_id, label = %label, "removing a label tag-space added earlier that is no longer chosen (--sync)");
        source
            .remove_label(page_id, label)
            .await
            .map_err(|e| (e, true))?;
    }
    Ok(())
}

/// After a failed write, reads the page at once (unless its labels are `known`) and settles
/// the intents it proves (see [`settle_after_failure`]); the rest stay open for the next run
/// to settle conservatively.
async fn settle_failed_write<S: PageSource>(
    source: &S,
    st: &StateCtx<'_>,
    page_id: &str,
    plan: &LabelPlan,
    adds_confirmed: bool,
    known: Option<&[String]>,
) {
    let read = match known {
        Some(labels) => Ok(labels.to_vec()),
        None => source.labels(page_id).await.map(|l| global_names(&l)),
    };
    let labels = match read {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(page = %page_id, error = %e, "cannot read the page after a failed label write; the next run settles it");
            return;
        }
    };
    let settle = settle_after_failure(plan, &labels, adds_confirmed);
    if let Err(e) = st.store.settle_labels(st.run, page_id, &settle) {
        tracing::warn!(page = %page_id, error = %e, "cannot record what a failed label write left");
    }
}

/// One warning per page whose open intents (from an interrupted run) are settled as not
/// tag-space's: the labels stay as they are on the page, for people to keep or remove.
fn warn_unconfirmed(page_id: &str, ledger: &PageLedger, plan: &LabelPlan) {
    let open: Vec<&str> = plan
        .settle
        .iter()
        .filter(|(l, s)| {
            **s == Some(LabelStatus::Dismissed)
                && matches!(
                    ledger.labels.get(*l),
                    Some(LabelStatus::Adding | LabelStatus::Removing)
                )
        })
        .map(|(l, _)| l.as_str())
        .collect();
    if !open.is_empty() {
        tracing::warn!(
            page = %page_id,
            labels = %open.join(", "),
            "an interrupted run left these label writes unconfirmed; a person may have acted since, so tag-space leaves them as they are on this page for good"
        );
    }
}

/// A page whose labels needed no change: `NoLabel` when the model chose none at all (nothing
/// in the taxonomy fits), else `Unchanged`.
fn settled(base: PageOutcome) -> PageOutcome {
    let status = if base.chosen.is_empty() {
        Status::NoLabel
    } else {
        Status::Unchanged
    };
    PageOutcome { status, ..base }
}

#[cfg(test)]
mod tests {
    use super::super::admit::{Admitted, admit};
    use super::super::testkit::{Kit, labelled, page};
    use super::*;

    fn meta<S, P>(ctx: &Ctx<'_, S, P>, id: &str) -> PageMeta {
        match admit(ctx, page(id, "<p>How to file a Jira ticket</p>")) {
            Admitted::Classify(q) => q.meta,
            other => panic!("{other:?}"),
        }
    }

    fn howto() -> Vec<String> {
        vec!["type-howto".into()]
    }

    #[tokio::test]
    async fn without_a_state_file_only_missing_labels_are_added_on_a_fresh_read() {
        let kit = Kit::new(vec![labelled("1", &[])]);
        let ctx = kit.ctx();
        let m = meta(&ctx, "1");
        // A person added the label after the listing: the fresh read sees it, nothing written.
        kit.source.set_labels("1", &["type-howto"]);
        let o = apply(&ctx, &m, howto(), Provenance::Provider("scripted")).await;
        assert_eq!(o.status, Status::Unchanged);
        assert!(kit.source.writes().is_empty());
        kit.source.set_labels("1", &[]);
        let o = apply(&ctx, &m, howto(), Provenance::Provider("scripted")).await;
        assert_eq!((o.status, o.added), (Status::Tagged, howto()));
        assert_eq!(kit.source.writes().len(), 1);
        let none = apply(&ctx, &m, vec![], Provenance::Cache).await;
        assert_eq!(none.status, Status::NoLabel);
    }

    #[tokio::test]
    async fn with_a_state_file_a_stop_gap_is_finished_under_the_rules_setup() {
        let kit = Kit::with_state(vec![labelled("1", &[])]);
        let ctx = kit.ctx();
        let m = meta(&ctx, "1");
        let o = apply(&ctx, &m, howto(), Provenance::StopGap).await;
        assert_eq!(o.status, Status::Tagged);
        let st = ctx.state.as_ref().unwrap();
        let ledger = st.store.page_ledger(&st.run.space, "1").unwrap();
        assert_eq!(ledger.labels.get("type-howto"), Some(&LabelStatus::Added));
        let listed = Some(vec!["type-howto".to_string()]);
        let unchanged = |setup| {
            crate::cache::is_unchanged(
                &ledger,
                Some(1),
                &m.content_hash.unwrap(),
                setup,
                listed.as_deref(),
            )
        };
        assert!(unchanged(&st.stop_gap_hash) && !unchanged(&st.setup_hash));
    }
}
