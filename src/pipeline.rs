//! The run: pages in, labels out.
//!
//! A producer task streams the space's pages into a bounded channel; the consumer extracts
//! each page's text, packs pages into batches, and keeps up to `max_in_flight` batches being
//! classified at once (the provider's governor decides how many requests really go out).
//! Each finished batch is validated, pages the model left out are asked for once more on
//! their own, and only labels a page does not already have are written. Memory holds what is
//! in flight, never the whole space. Every page ends in exactly one [`PageOutcome`], handed
//! to the caller's sink as soon as it is known.
//!
//! With a state file ([`RunOptions::state`], see [`crate::cache`]) each page goes:
//!
//! ```text
//! listed ─► ledger: same version + content + setup, labels in place? ─► Unchanged (no work)
//!        ─► extract text ─► cache lookup ─ hit ─► apply (no model call)
//!                                       └ miss ─► batch ─► model ─► validate ─► store_batch
//! apply:  plan_add / plan_sync (ledger) ─► prepare_labels (write-ahead intent)
//!         ─► Confluence add / remove ─► finish_page (confirmed, page done)
//! ```
//!
//! A store error fails the page it happened on (its reason says so) and never lets a label be
//! written without its intent recorded first: a label tag-space wrote must never look like a
//! person's on the next run.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::Either;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::cache::{
    CacheKey, Classification, ContentHash, LabelPlan, LabelStatus, PageDone, PageLedger, Run,
    Setup, SetupHash, Store, is_unchanged, plan_add, plan_sync, settle_after_failure,
};
use crate::confluence::{ConfluenceError, LABEL_PREFIX, Label, Page, PageSource};
use crate::llm::validate::validate;
use crate::llm::{PageText, Provider};
use crate::taxonomy::Taxonomy;

/// The reason given for a page skipped because nothing changed since tag-space finished it.
pub const UNCHANGED_SINCE_LAST_RUN: &str = "unchanged since the last run";

/// The provider named in the outcome of a page whose labels came from the cache.
pub const CACHE_PROVIDER: &str = "cache";

/// The persistent state a run uses: opened and begun by the caller, finished by the caller.
#[derive(Debug, Clone)]
pub struct RunState {
    pub store: Arc<Store>,
    /// From [`Store::begin_run`]; its `dry_run` keeps the ledger untouched in a dry run.
    pub run: Run,
    /// The setup answers are cached and pages finished under: the taxonomy fingerprint,
    /// [`crate::llm::prompt::PROMPT_VERSION`] and the configured primary model
    /// (`gemini/<model>`, `openai/<model>`, or [`RULES_MODEL`]).
    ///
    /// An answer from an LLM fallback (OpenAI when Gemini is primary) is cached under this
    /// same setup, recording who answered: it is a real model's answer, and asking again
    /// would cost the next run what the cache is there to save. An answer from the offline
    /// `rules` fallback, when rules is not the primary, is a stop-gap: its labels are applied
    /// (and attributed to tag-space in the ledger), but it is not cached and the page is
    /// finished under the rules setup, so the next run asks the LLM again.
    pub setup: Setup,
}

/// The model name the `rules` provider is keyed under.
pub const RULES_MODEL: &str = "rules/keywords";

/// What a run does; `config` says where each value comes from.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub space: String,
    pub dry_run: bool,
    /// Stop after this many pages are sent for classification (to the model or answered from
    /// the cache); pages unchanged since the last run and pages without text do not count.
    pub limit: Option<u64>,
    pub batch_size: usize,
    /// Characters of page text (titles included) in one request.
    pub max_batch_chars: usize,
    /// Characters of one page's text sent to the model.
    pub max_page_chars: usize,
    /// Batches being classified at once. Keep it at or above the provider's maximum
    /// concurrency so that the governor, not the pipeline, is what limits requests.
    pub max_in_flight: usize,
    /// Cancelling stops the run taking new work: no more pages are read, pages waiting for a
    /// batch are dropped (a later run does them), batches already being classified get
    /// `grace` to finish, then are abandoned.
    pub cancel: CancellationToken,
    pub grace: Duration,
    /// Counts pages as the listing delivers them, for a progress display.
    pub listed: Arc<AtomicU64>,
    /// Set once the run will take no more pages (the listing ended, or `limit` was reached):
    /// how many it took. Until then there is no honest total to show.
    pub total: Arc<std::sync::OnceLock<u64>>,
    /// The classification cache and label ledger; `None` runs without them (add-only, every
    /// page classified).
    pub state: Option<RunState>,
    /// `--sync`: also remove labels tag-space added earlier that are no longer chosen. Needs
    /// `state` (only the ledger knows which labels are tag-space's); without it nothing is
    /// ever removed.
    pub sync: bool,
}

/// How one page ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Labels were added or (with `--sync`) removed (in a dry run: would be).
    Tagged,
    /// The page already carries every label chosen for it, or (reason
    /// [`UNCHANGED_SINCE_LAST_RUN`]) nothing changed since tag-space last finished it.
    Unchanged,
    /// The model was asked and chose no label at all: nothing in the taxonomy fits the page.
    /// Kept apart from `Unchanged` so that a space full of them shows as a taxonomy gap.
    NoLabel,
    /// Not sent to the model: the page has no text.
    Skipped,
    /// Something went wrong for this page; `reason` says what. The run goes on.
    Failed,
}

/// The result for one page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageOutcome {
    pub id: String,
    pub title: String,
    pub url: Option<String>,
    pub status: Status,
    /// The page's `global` labels before the run (when they were read).
    pub labels_before: Vec<String>,
    /// The labels the model chose, after validation.
    pub chosen: Vec<String>,
    /// The labels added; in a dry run, the labels that would be added.
    pub added: Vec<String>,
    /// With `--sync`: the labels removed (tag-space's own, no longer chosen); in a dry run,
    /// the labels that would be removed. Every report shows them: a deletion is never silent.
    pub removed: Vec<String>,
    /// Which provider chose the labels ([`CACHE_PROVIDER`] for a cached answer).
    pub provider: Option<&'static str>,
    /// Why the page was skipped, failed, or is unchanged.
    pub reason: Option<String>,
}

/// A page without its body: what the pipeline keeps while the page is in flight.
#[derive(Debug, Clone)]
struct PageMeta {
    id: String,
    title: String,
    url: Option<String>,
    labels: Option<Vec<Label>>,
    version: Option<u64>,
    /// With a store: the page as listed, and the key of its classification.
    content_hash: Option<ContentHash>,
    key: Option<CacheKey>,
}

impl PageMeta {
    fn outcome(&self, status: Status) -> PageOutcome {
        PageOutcome {
            id: self.id.clone(),
            title: self.title.clone(),
            url: self.url.clone(),
            status,
            labels_before: Vec::new(),
            chosen: Vec::new(),
            added: Vec::new(),
            removed: Vec::new(),
            provider: None,
            reason: None,
        }
    }

    fn failed(&self, reason: impl Into<String>) -> PageOutcome {
        PageOutcome {
            reason: Some(reason.into()),
            ..self.outcome(Status::Failed)
        }
    }
}

type Batch = Vec<(PageMeta, PageText)>;

/// Everything the stages share, borrowed for the run.
struct Ctx<'a, S, P> {
    source: &'a S,
    provider: &'a P,
    taxonomy: &'a Taxonomy,
    opts: &'a RunOptions,
    state: Option<StateCtx<'a>>,
}

struct StateCtx<'a> {
    store: &'a Store,
    run: &'a Run,
    setup: &'a Setup,
    setup_hash: SetupHash,
    /// Pages answered by the `rules` fallback are finished under this, so that the next run
    /// asks the LLM again; equal to `setup_hash` when rules is the primary.
    stop_gap_hash: SetupHash,
    rules_is_primary: bool,
}

/// What became of a listed page.
enum Admitted {
    /// Needs the model.
    Classify(PageText),
    /// The cache knows its labels.
    Cached(Box<(PageMeta, Classification)>),
    /// Finished already (reported).
    Done,
}

/// Runs the whole space through `provider` and hands every page's outcome to `sink`.
///
/// Returns how many pages the source listed. A failure of the listing itself (space not
/// found, Confluence unreachable) is returned as an error after the pages already read have
/// been finished and reported.
pub async fn run<S, P>(
    source: &S,
    provider: &P,
    taxonomy: &Taxonomy,
    opts: &RunOptions,
    mut sink: impl FnMut(PageOutcome),
) -> Result<u64, ConfluenceError>
where
    S: PageSource,
    P: Provider,
{
    let ctx = Ctx {
        source,
        provider,
        taxonomy,
        opts,
        state: opts.state.as_ref().map(|st| {
            let rules_is_primary = st.setup.model == RULES_MODEL;
            let mut stop_gap = st.setup.clone();
            stop_gap.model = RULES_MODEL.to_string();
            StateCtx {
                store: &st.store,
                run: &st.run,
                setup: &st.setup,
                setup_hash: st.setup.hash(),
                stop_gap_hash: stop_gap.hash(),
                rules_is_primary,
            }
        }),
    };
    let ctx = &ctx;
    if let Some(st) = &opts.state {
        // Before anything is written: see `crate::observe` for why and what it costs.
        crate::observe::census(source, &st.store, &st.run, &opts.cancel).await;
    }
    let max_in_flight = opts.max_in_flight.max(1);
    let (tx, mut rx) = mpsc::channel::<Page>(opts.batch_size.max(1) * max_in_flight);
    let producer = async {
        let listing = source.stream_pages(&opts.space, tx);
        tokio::pin!(listing);
        tokio::select! {
            listed = &mut listing => listed,
            // Once cancelled, a listing request still in the air gets the same grace as the
            // batches, then is dropped.
            () = async { opts.cancel.cancelled().await; tokio::time::sleep(opts.grace).await } => Ok(0),
        }
    };

    let consumer = async {
        let mut batcher = crate::batch::Batcher::new(opts.batch_size, opts.max_batch_chars);
        // Metadata of pages waiting in the batcher, by id, until their batch is cut.
        let mut waiting: BTreeMap<String, PageMeta> = BTreeMap::new();
        // Ids of pages admitted and not yet reported: a page listed twice meanwhile is
        // handled once (so its labels are never planned, or written, twice).
        let mut active: HashSet<String> = HashSet::new();
        let mut in_flight = FuturesUnordered::new();
        let mut seen: u64 = 0;
        // Pages sent for classification (to the model, or answered from the cache).
        let mut classified: u64 = 0;
        let mut input_open = true;
        let cut = |batch: Vec<PageText>, waiting: &mut BTreeMap<String, PageMeta>| -> Batch {
            batch
                .into_iter()
                .map(|t| {
                    (
                        waiting
                            .remove(&t.id)
                            .expect("every batched page has metadata"),
                        t,
                    )
                })
                .collect()
        };

        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            // Done when nothing more will be read and nothing is being classified.
            if !input_open && in_flight.is_empty() {
                break;
            }
            tokio::select! {
                biased;
                () = opts.cancel.cancelled(), if deadline.is_none() => {
                    deadline = Some(tokio::time::Instant::now() + opts.grace);
                    if input_open {
                        rx.close();
                        input_open = false;
                    }
                    let dropped = batcher.flush().map_or(0, |b| b.len());
                    waiting.clear();
                    tracing::warn!(in_flight = in_flight.len(), dropped, "stopping: finishing the batches in flight");
                }
                () = sleep_until_or_never(deadline), if deadline.is_some() => {
                    tracing::warn!(abandoned = in_flight.len(), "stopping: abandoning the batches still in flight");
                    break;
                }
                Some(outcomes) = in_flight.next(), if !in_flight.is_empty() => {
                    let outcomes: Vec<PageOutcome> = outcomes;
                    for o in outcomes {
                        active.remove(&o.id);
                        sink(o);
                    }
                }
                page = rx.recv(), if input_open && in_flight.len() < max_in_flight => {
                    match page {
                        Some(page) => {
                            seen += 1;
                            opts.listed.fetch_add(1, Ordering::Relaxed);
                            match admit(ctx, page, &mut waiting, &mut active, &mut sink) {
                                Admitted::Classify(text) => {
                                    classified += 1;
                                    if let Some(batch) = batcher.push(text) {
                                        in_flight.push(Either::Left(process_batch(ctx, cut(batch, &mut waiting))));
                                    }
                                }
                                Admitted::Cached(hit) => {
                                    classified += 1;
                                    let (meta, hit) = *hit;
                                    in_flight.push(Either::Right(apply_cached(ctx, meta, hit)));
                                }
                                Admitted::Done => {}
                            }
                            // `--limit` counts pages classified, not pages skipped as unchanged
                            // or empty: a nightly `--limit N` run moves on to the next N.
                            if opts.limit.is_some_and(|limit| classified >= limit) {
                                // Stop the listing: the producer sees the closed channel and
                                // returns; pages already buffered in the channel are not read.
                                rx.close();
                                input_open = false;
                            }
                        }
                        None => input_open = false,
                    }
                    if !input_open {
                        // No page will be taken any more: the real total, for the progress line.
                        let _ = opts.total.set(seen);
                    }
                    if !input_open && deadline.is_none() {
                        if let Some(batch) = batcher.flush() {
                            in_flight.push(Either::Left(process_batch(ctx, cut(batch, &mut waiting))));
                        }
                    }
                }
                // Unreachable (the check above ends the loop first), but a select with every
                // branch disabled would panic.
                else => break,
            }
        }
    };

    let (listed, ()) = tokio::join!(producer, consumer);
    listed
}

async fn sleep_until_or_never(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The page's `global` label names, lowercase.
fn global_names(labels: &[Label]) -> Vec<String> {
    labels
        .iter()
        .filter(|l| l.prefix == LABEL_PREFIX)
        .map(|l| l.name.to_lowercase())
        .collect()
}

/// Decides what a listed page needs, cheapest test first: the ledger (no extraction), then
/// the text (a page without text is skipped), then the cache. A page the listing returned
/// twice while the first is still being handled is handled once.
fn admit<S, P>(
    ctx: &Ctx<'_, S, P>,
    page: Page,
    waiting: &mut BTreeMap<String, PageMeta>,
    active: &mut HashSet<String>,
    sink: &mut impl FnMut(PageOutcome),
) -> Admitted {
    if active.contains(&page.id) {
        tracing::warn!(page = %page.id, "the listing returned this page twice; handling it once");
        return Admitted::Done;
    }
    let mut meta = PageMeta {
        id: page.id,
        title: page.title,
        url: page.url,
        labels: page.labels,
        version: page.version,
        content_hash: None,
        key: None,
    };
    if let Some(st) = &ctx.state {
        let hash = ContentHash::of_page(&meta.title, &page.body);
        meta.content_hash = Some(hash);
        // Under --no-cache (reads off) every page is looked at again; the ledger is still
        // read when labels are planned, so attribution and a person's removals still hold.
        if st.store.reads_enabled() {
            let ledger = match st.store.page_ledger(&st.run.space, &meta.id) {
                Ok(l) => l,
                Err(e) => {
                    sink(meta.failed(e.to_string()));
                    return Admitted::Done;
                }
            };
            let listed = meta.labels.as_deref().map(global_names);
            if is_unchanged(
                &ledger,
                meta.version,
                &hash,
                &st.setup_hash,
                listed.as_deref(),
            ) {
                st.store.count_skipped();
                sink(PageOutcome {
                    labels_before: listed.unwrap_or_default(),
                    reason: Some(UNCHANGED_SINCE_LAST_RUN.into()),
                    ..meta.outcome(Status::Unchanged)
                });
                return Admitted::Done;
            }
        }
    }
    let text = crate::text::extract(&page.body, ctx.opts.max_page_chars);
    if text.trim().is_empty() {
        if let (Some(st), Some(hash)) = (&ctx.state, meta.content_hash) {
            // Nothing to classify, now or until it changes: finished as it is.
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
        sink(PageOutcome {
            reason: Some("the page has no text".into()),
            ..meta.outcome(Status::Skipped)
        });
        return Admitted::Done;
    }
    if let Some(st) = &ctx.state {
        let key = CacheKey::new(st.setup, &meta.title, &text);
        meta.key = Some(key);
        match st.store.lookup(&key) {
            Ok(Some(hit)) => {
                active.insert(meta.id.clone());
                return Admitted::Cached(Box::new((meta, hit)));
            }
            Ok(None) => {}
            Err(e) => {
                sink(meta.failed(e.to_string()));
                return Admitted::Done;
            }
        }
    }
    let text = PageText {
        id: meta.id.clone(),
        title: meta.title.clone(),
        text,
    };
    active.insert(meta.id.clone());
    waiting.insert(meta.id.clone(), meta);
    Admitted::Classify(text)
}

/// Applies a cached answer: no model call.
async fn apply_cached<S: PageSource, P>(
    ctx: &Ctx<'_, S, P>,
    meta: PageMeta,
    hit: Classification,
) -> Vec<PageOutcome> {
    // Never a stop-gap: `store_answers` caches a `rules` answer only when rules is primary.
    vec![apply(ctx, &meta, hit.labels, CACHE_PROVIDER, false).await]
}

/// Classifies one batch, stores the answers, and applies them to each of its pages.
async fn process_batch<S: PageSource, P: Provider>(
    ctx: &Ctx<'_, S, P>,
    batch: Batch,
) -> Vec<PageOutcome> {
    let texts: Vec<PageText> = batch.iter().map(|(_, t)| t.clone()).collect();
    let mut chosen: BTreeMap<String, (Vec<String>, &'static str)> = BTreeMap::new();
    let mut errors: BTreeMap<String, String> = BTreeMap::new();
    // What to store once the batch is settled: page id to its classification.
    let mut answers: Vec<(String, Classification)> = Vec::new();
    let mut record =
        |labels: &BTreeMap<String, Vec<String>>, answer: &crate::llm::Answer, pages: usize| {
            let usage = answer.usage.unwrap_or_default();
            let share = |t: u64| t / pages.max(1) as u64;
            for (id, l) in labels {
                answers.push((
                    id.clone(),
                    Classification::new(
                        l.clone(),
                        answer.provider,
                        answer.model.clone(),
                        share(usage.input_tokens),
                        share(usage.output_tokens),
                    ),
                ));
            }
        };
    let count_call = || {
        if let Some(st) = &ctx.state {
            st.store.count_calls(1);
        }
    };
    count_call();
    let missing = match ctx.provider.classify(&texts).await {
        Ok(answer) => {
            let v = validate(&texts, &answer, ctx.taxonomy);
            log_rejections(&v, answer.provider);
            record(&v.labels, &answer, texts.len());
            for (id, labels) in v.labels {
                chosen.insert(id, (labels, answer.provider));
            }
            v.missing
        }
        Err(e) => {
            tracing::warn!(error = %e, pages = texts.len(), "batch failed");
            for t in &texts {
                errors.insert(t.id.clone(), e.to_string());
            }
            Vec::new()
        }
    };
    // A page the model left out is asked for once more, alone.
    for id in missing {
        let Some(text) = texts.iter().find(|t| t.id == id) else {
            continue;
        };
        tracing::info!(page = %id, "the answer left this page out; asking for it alone");
        let single = std::slice::from_ref(text);
        count_call();
        match ctx.provider.classify(single).await {
            Ok(answer) => {
                let mut v = validate(single, &answer, ctx.taxonomy);
                log_rejections(&v, answer.provider);
                record(&v.labels, &answer, 1);
                match v.labels.remove(&id) {
                    Some(labels) => {
                        chosen.insert(id, (labels, answer.provider));
                    }
                    None => {
                        errors.insert(
                            id,
                            "the model left this page out of its answer twice".into(),
                        );
                    }
                }
            }
            Err(e) => {
                errors.insert(id, e.to_string());
            }
        }
    }
    if let Some(st) = &ctx.state {
        store_answers(st, &batch, answers);
    }

    let mut outcomes = Vec::with_capacity(batch.len());
    for (meta, _) in &batch {
        let outcome = match (chosen.remove(&meta.id), errors.remove(&meta.id)) {
            (Some((labels, by)), _) => {
                let stop_gap =
                    by == "rules" && ctx.state.as_ref().is_some_and(|st| !st.rules_is_primary);
                apply(ctx, meta, labels, by, stop_gap).await
            }
            (None, Some(reason)) => meta.failed(reason),
            (None, None) => meta.failed("no answer for this page"),
        };
        outcomes.push(outcome);
    }
    outcomes
}

/// Stores a batch's validated answers under each page's key, in one transaction, before any
/// label is written: a run killed after this point asks the model for none of them again.
/// A `rules` stop-gap answer is not stored (see [`RunState::setup`]). A failure to store is
/// a warning: the labels can still be applied; the next run asks again.
fn store_answers(st: &StateCtx<'_>, batch: &Batch, answers: Vec<(String, Classification)>) {
    let keys: BTreeMap<&str, CacheKey> = batch
        .iter()
        .filter_map(|(m, _)| Some((m.id.as_str(), m.key?)))
        .collect();
    let entries: Vec<(CacheKey, Classification)> = answers
        .into_iter()
        .filter(|(_, c)| st.rules_is_primary || c.provider != "rules")
        .filter_map(|(id, c)| Some((*keys.get(id.as_str())?, c)))
        .collect();
    if entries.is_empty() {
        return;
    }
    if let Err(e) = st.store.store_batch(st.run, &entries) {
        tracing::warn!(error = %e, pages = entries.len(), "cannot store the batch's answers; the next run asks again");
    }
}

/// One warning per label the model chose that cannot be used, and per id it made up.
fn log_rejections(v: &crate::llm::validate::Validated, provider: &'static str) {
    for d in &v.dropped {
        tracing::warn!(provider, "dropped a label from the answer: {d}");
    }
    for id in &v.unknown_ids {
        tracing::warn!(provider, page = %id, "the answer names a page that is not in the batch; ignored");
    }
}

/// Brings the page's labels in line with `chosen`: adds the chosen labels it lacks and, in
/// `--sync` with a store, removes tag-space's own labels that are no longer chosen. A label
/// a person added is never removed.
///
/// Labels are planned on a read made immediately before writing (a listing's copy, as Data
/// Center's, may be minutes old): a label a person added meanwhile is not written again and
/// not claimed. Only the labels absent in that read are written and recorded as tag-space's.
async fn apply<S: PageSource, P>(
    ctx: &Ctx<'_, S, P>,
    meta: &PageMeta,
    chosen: Vec<String>,
    provider: &'static str,
    stop_gap: bool,
) -> PageOutcome {
    let unread = |reason: String| PageOutcome {
        chosen: chosen.clone(),
        provider: Some(provider),
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
    let sync = ctx.opts.sync && ctx.state.is_some();
    let plan_for = |labels: &[String]| {
        if sync {
            plan_sync(labels, &chosen, &ledger)
        } else {
            plan_add(labels, &chosen, &ledger)
        }
    };
    let dry_run = ctx.opts.dry_run;
    let (mut before, mut fresh) = match &meta.labels {
        Some(labels) => (global_names(labels), false),
        None => match ctx.source.labels(&meta.id).await {
            Ok(labels) => (global_names(&labels), true),
            Err(e) => return unread(e.to_string()),
        },
    };
    let mut plan = plan_for(&before);
    if !plan.is_noop() && !fresh && !dry_run {
        match ctx.source.labels(&meta.id).await {
            Ok(labels) => {
                before = global_names(&labels);
                fresh = true;
                plan = plan_for(&before);
            }
            Err(e) => return unread(e.to_string()),
        }
    }
    debug_assert!(fresh || plan.is_noop() || dry_run);
    warn_unconfirmed(&meta.id, &ledger, &plan);
    let base = PageOutcome {
        labels_before: before,
        chosen: chosen.clone(),
        provider: Some(provider),
        ..meta.outcome(Status::Unchanged)
    };
    let failed = |reason: String| PageOutcome {
        status: Status::Failed,
        reason: Some(reason),
        ..base.clone()
    };

    let (Some(st), Some(hash)) = (&ctx.state, meta.content_hash) else {
        // Without a store: add-only, nothing to record.
        if plan.add.is_empty() {
            return settled(base);
        }
        if !dry_run {
            if let Err(e) = ctx.source.add_labels(&meta.id, &plan.add).await {
                return failed(e.to_string());
            }
        }
        return PageOutcome {
            status: Status::Tagged,
            added: plan.add,
            ..base
        };
    };

    if !plan.is_noop() {
        // Write-ahead: the intent is on disk before Confluence hears of it.
        if let Err(e) = st.store.prepare_labels(st.run, &meta.id, &plan) {
            return failed(e.to_string());
        }
        if !dry_run {
            if let Err((e, adds_confirmed)) = write_plan(ctx.source, &meta.id, &plan).await {
                settle_failed_write(ctx.source, st, &meta.id, &plan, adds_confirmed).await;
                return failed(e.to_string());
            }
        }
    }
    let done = PageDone {
        version: meta.version,
        content_hash: hash,
        setup: if stop_gap {
            st.stop_gap_hash
        } else {
            st.setup_hash
        },
    };
    if let Err(e) = st.store.finish_page(st.run, &meta.id, &done, &plan) {
        // The next run settles the open intents by looking at the page.
        return failed(format!(
            "labels written, but the state file could not record it: {e}"
        ));
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

/// After a failed write, reads the page at once and settles the intents it proves (see
/// [`settle_after_failure`]); the rest stay open for the next run to settle conservatively.
async fn settle_failed_write<S: PageSource>(
    source: &S,
    st: &StateCtx<'_>,
    page_id: &str,
    plan: &LabelPlan,
    adds_confirmed: bool,
) {
    let labels = match source.labels(page_id).await {
        Ok(l) => global_names(&l),
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
