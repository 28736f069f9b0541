//! Admit: what a listed page needs, cheapest test first. A page is listed without its body
//! ([`listed`]): the ledger says from its version alone whether anything changed since
//! tag-space finished it, and only a page it cannot skip has its body fetched. With the body
//! ([`admit`]): the ledger again (for a page listed without a version, the content hash
//! decides), then the text (a page without text is skipped), then the cache. Returns the
//! decision; reporting is the driver's.

use super::{Ctx, PageMeta, PageOutcome, Queued, Status, UNCHANGED_SINCE_LAST_RUN, global_names};
use crate::cache::{
    CacheKey, Classification, ContentHash, LabelPlan, PageDone, is_unchanged, is_unchanged_version,
};
use crate::confluence::Page;
use crate::llm::PageText;

/// What became of a listed page.
#[derive(Debug)]
pub(super) enum Admitted {
    /// Needs the model.
    Classify(Queued),
    /// The cache knows its labels.
    Cached(PageMeta, Classification),
    /// Finished already, with this outcome.
    Done(PageOutcome),
}

/// What a page listed without its body needs.
#[derive(Debug)]
pub(super) enum Listed {
    /// Decided without the body (or the listing carried it).
    Admitted(Admitted),
    /// Its body is needed: fetch it, then [`admit`] the page.
    NeedsBody(Page),
}

/// Decides what a listed page needs before its body is read: unchanged since tag-space
/// finished it (by version, see [`is_unchanged_version`]), or the body is needed. A page whose
/// body the listing carried is admitted at once.
pub(super) fn listed<S, P>(ctx: &Ctx<'_, S, P>, page: Page) -> Listed {
    if page.body.is_some() {
        return Listed::Admitted(admit(ctx, page));
    }
    let (meta, _) = meta_of(page);
    match unchanged(ctx, &meta) {
        Some(done) => Listed::Admitted(Admitted::Done(done)),
        None => Listed::NeedsBody(meta.into_page()),
    }
}

/// The page's metadata and its body.
pub(super) fn meta_of(page: Page) -> (PageMeta, Option<String>) {
    let meta = PageMeta {
        id: page.id,
        title: page.title,
        url: page.url,
        labels: page.labels,
        version: page.version,
        content_hash: None,
        key: None,
    };
    (meta, page.body)
}

/// Decides what a page with its body needs (see the module docs).
pub(super) fn admit<S, P>(ctx: &Ctx<'_, S, P>, page: Page) -> Admitted {
    let (mut meta, body) = meta_of(page);
    let Some(body) = body else {
        // Never finish a page on a body that was not read: it would be recorded as done.
        return Admitted::Done(meta.failed("the page's body was not read"));
    };
    if ctx.state.is_some() {
        meta.content_hash = Some(ContentHash::of_page(&meta.title, &body));
        if let Some(done) = unchanged(ctx, &meta) {
            return Admitted::Done(done);
        }
    }
    let text = crate::text::extract(&body, ctx.opts.max_page_chars);
    drop(body);
    if text.trim().is_empty() {
        return Admitted::Done(without_text(ctx, &meta));
    }
    if let Some(st) = &ctx.state {
        let key = CacheKey::new(st.setup, &meta.title, &text);
        meta.key = Some(key);
        match st.store.lookup(&key) {
            Ok(Some(hit)) => return Admitted::Cached(meta, hit),
            Ok(None) => {}
            Err(e) => return Admitted::Done(meta.failed(e.to_string())),
        }
    }
    let text = PageText {
        id: meta.id.clone(),
        title: meta.title.clone(),
        text,
    };
    Admitted::Classify(Queued { meta, text })
}

/// With a state file: the outcome of a page nothing happened to since tag-space finished it
/// (or of one whose ledger cannot be read). Without the page's content hash (listed without
/// its body) its version decides. Under `--no-cache` (reads off) every page is looked at
/// again; the ledger is still read when labels are planned, so attribution and a person's
/// removals still hold.
fn unchanged<S, P>(ctx: &Ctx<'_, S, P>, meta: &PageMeta) -> Option<PageOutcome> {
    let st = ctx.state.as_ref()?;
    if !st.store.reads_enabled() {
        return None;
    }
    let ledger = match st.store.page_ledger(&st.run.space, &meta.id) {
        Ok(l) => l,
        Err(e) => return Some(meta.failed(e.to_string())),
    };
    let listed = meta.labels.as_deref().map(global_names);
    let labels = listed.as_deref();
    let same = match &meta.content_hash {
        Some(hash) => is_unchanged(&ledger, meta.version, hash, &st.setup_hash, labels),
        None => is_unchanged_version(&ledger, meta.version, &st.setup_hash, labels),
    };
    if !same {
        return None;
    }
    st.store.count_skipped();
    Some(PageOutcome {
        labels_before: listed.unwrap_or_default(),
        reason: Some(UNCHANGED_SINCE_LAST_RUN.into()),
        ..meta.outcome(Status::Unchanged)
    })
}

/// A page without text: skipped, and (with a state file) finished as it is: nothing to
/// classify, now or until it changes.
fn without_text<S, P>(ctx: &Ctx<'_, S, P>, meta: &PageMeta) -> PageOutcome {
    if let (Some(st), Some(hash)) = (&ctx.state, meta.content_hash) {
        let done = PageDone {
            version: meta.version,
            content_hash: hash,
            setup: st.setup_hash,
        };
        if let Err(e) = st
            .store
            .finish_page(st.run, &meta.id, &done, &LabelPlan::default())
        {
            tracing::warn!(page = %meta.id, error = %e, "cannot record a page without text as done");
        }
    }
    PageOutcome {
        reason: Some("the page has no text".into()),
        ..meta.outcome(Status::Skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{Kit, page};
    use super::*;

    #[test]
    fn a_page_without_text_is_skipped_and_one_with_text_needs_the_model() {
        let kit = Kit::new(vec![]);
        let ctx = kit.ctx();
        match admit(&ctx, page("1", "<p>   </p>")) {
            Admitted::Done(o) => assert_eq!(o.status, Status::Skipped),
            other => panic!("{other:?}"),
        }
        match admit(&ctx, page("2", "<p>How to file a Jira ticket</p>")) {
            Admitted::Classify(q) => {
                assert_eq!((q.meta.id.as_str(), q.text.id.as_str()), ("2", "2"));
                assert!(q.text.text.contains("Jira"));
                assert!(q.meta.key.is_none(), "no state file: no cache key");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn with_a_state_file_a_finished_page_is_unchanged_and_a_cached_one_is_a_hit() {
        let kit = Kit::with_state(vec![]);
        let ctx = kit.ctx();
        let Admitted::Classify(q) = admit(&ctx, page("1", "<p>How to file a Jira ticket</p>"))
        else {
            panic!("a new page needs the model");
        };
        let st = ctx.state.as_ref().unwrap();
        let labels = vec!["type-howto".to_string()];
        let hit = Classification::new(labels.clone(), "scripted", "m", 0, 0);
        st.store
            .store_batch(st.run, &[(q.meta.key.unwrap(), hit)])
            .unwrap();
        match admit(&ctx, page("1", "<p>How to file a Jira ticket</p>")) {
            Admitted::Cached(meta, c) => assert_eq!((meta.id.as_str(), c.labels), ("1", labels)),
            other => panic!("{other:?}"),
        }
        let done = PageDone {
            version: Some(1),
            content_hash: q.meta.content_hash.unwrap(),
            setup: st.setup_hash,
        };
        st.store
            .finish_page(st.run, "1", &done, &LabelPlan::default())
            .unwrap();
        match admit(&ctx, page("1", "<p>How to file a Jira ticket</p>")) {
            Admitted::Done(o) => {
                assert_eq!(o.status, Status::Unchanged);
                assert_eq!(o.reason.as_deref(), Some(UNCHANGED_SINCE_LAST_RUN));
            }
            other => panic!("{other:?}"),
        }
    }
}
