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
//! The listing carries no bodies ([`PageSource::stream_metadata`]), so the run knows its total
//! as soon as the listing ends; bodies are fetched in bulk ([`PageSource::bodies`], up to 250
//! a request) only for the pages the ledger cannot skip, a chunk at a time, and each body is
//! dropped once its text is extracted. With a state file ([`RunOptions::state`], see
//! [`crate::cache`]) each page goes:
//!
//! ```text
//! listed ─► ledger: same version + setup, labels in place? ─► Unchanged (no body read)
//!        ─► body (bulk) ─► ledger again when the listing had no version (content hash)
//!        ─► extract text ─► cache lookup ─ hit ─► apply (no model call)
//!                                       └ miss ─► batch ─► model ─► validate ─► store_batch
//! apply:  plan_add / plan_sync (ledger) ─► prepare_labels (write-ahead intent)
//!         ─► Confluence add / remove ─► finish_page (confirmed, page done)
//! ```
//!
//! A store error fails the page it happened on (its reason says so) and never lets a label be
//! written without its intent recorded first: a label tag-space wrote must never look like a
//! person's on the next run.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::cache::{CacheKey, ContentHash, Run, Setup, SetupHash, Store};
use crate::confluence::{ConfluenceError, LABEL_PREFIX, Label, Page, PageSource};
use crate::events::EventSink;
use crate::llm::{PageText, Provider};
use crate::taxonomy::Taxonomy;

pub use driver::GONE_SINCE_LISTED;
pub use replay::{GONE, ListedNow, PlannedWrite, Replayed, apply_plan, apply_planned};
pub use route::{BatchRoute, IN_OPEN_JOB, Routed, SENT_TO_BATCH, WOULD_SEND_TO_BATCH, scan};

mod admit;
mod apply;
mod classify;
mod driver;
mod replay;
mod route;
#[cfg(test)]
mod testkit;

/// The reason given for a page skipped because nothing changed since tag-space finished it.
pub const UNCHANGED_SINCE_LAST_RUN: &str = "unchanged since the last run";

/// The name shown for a page whose labels came from the cache ([`Provenance::Cache`]).
pub const CACHE_PROVIDER: &str = "cache";

/// The name the offline keyword provider answers under (`crate::llm::rules`).
const RULES_PROVIDER: &str = "rules";

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
    /// Where the run tells what it does ([`crate::events`]): each page taken, the total
    /// once the run will take no more, each outcome, the end. No subscriber by default.
    pub events: EventSink,
    /// The classification cache and label ledger; `None` runs without them (add-only, every
    /// page classified).
    pub state: Option<RunState>,
    /// `--sync`: also remove labels tag-space added earlier that are no longer chosen. Needs
    /// `state` (only the ledger knows which labels are tag-space's); without it nothing is
    /// ever removed.
    pub sync: bool,
    /// `--via batch`: pages that need the model go here instead of to the provider (except
    /// the ones it sends back); `None` classifies every page through the provider.
    pub batch_route: Option<BatchRoute>,
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
    /// `tag-space apply`: the page was edited since the plan was made, or is gone (deleted,
    /// moved out of the space, unreadable), so the plan's labels were not written; `reason`
    /// says which versions, or starts `gone since the plan`. Apart from `Skipped` so that a report's
    /// reader counts the pages that need a new plan without reading reasons.
    Stale,
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
    /// Who chose the labels.
    pub provider: Option<Provenance>,
    /// Why the page was skipped, failed, or is unchanged.
    pub reason: Option<String>,
    /// The page's version number as listed, when the listing carried it: a plan file
    /// (`crate::plan`) records it so that `apply` can tell an edited page.
    pub version: Option<u64>,
    /// With a state file: the ledger's hash of the page as listed (recorded in a plan).
    pub content_hash: Option<ContentHash>,
}

/// Who produced the labels of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provenance {
    /// A provider's answer: an LLM's (the primary or a fallback), or the `rules` provider's
    /// when it is the primary. Cached, and the page is finished under the run's setup.
    Provider(&'static str),
    /// The classification cache: no model call.
    Cache,
    /// The offline `rules` provider standing in for the configured LLM: applied, never
    /// cached, and the page is finished under the rules setup so the next run asks the LLM.
    StopGap,
}

impl Provenance {
    /// Who answered a provider's call: a stop-gap when the `rules` provider answered for an
    /// LLM primary.
    pub fn of_answer(provider: &'static str, rules_is_primary: bool) -> Self {
        if provider == RULES_PROVIDER && !rules_is_primary {
            Self::StopGap
        } else {
            Self::Provider(provider)
        }
    }

    /// The name reports show: the provider's, [`CACHE_PROVIDER`], or `rules`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Provider(name) => name,
            Self::Cache => CACHE_PROVIDER,
            Self::StopGap => RULES_PROVIDER,
        }
    }
}

impl std::fmt::Display for Provenance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
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
            version: self.version,
            content_hash: self.content_hash,
        }
    }

    fn failed(&self, reason: impl Into<String>) -> PageOutcome {
        PageOutcome {
            reason: Some(reason.into()),
            ..self.outcome(Status::Failed)
        }
    }

    /// Back to the page as listed without its body.
    fn into_page(self) -> Page {
        Page {
            id: self.id,
            title: self.title,
            version: self.version,
            body: None,
            labels: self.labels,
            url: self.url,
        }
    }
}

/// A page waiting for (or in) a batch: its metadata travels with its text.
#[derive(Debug)]
struct Queued {
    meta: PageMeta,
    text: PageText,
}

impl crate::batch::BatchItem for Queued {
    fn chars(&self) -> usize {
        self.text.chars()
    }
}

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
    /// Pages answered by a [`Provenance::StopGap`] are finished under this, so that the next
    /// run asks the LLM again; equal to `setup_hash` when rules is the primary.
    stop_gap_hash: SetupHash,
    rules_is_primary: bool,
}

impl<'a> StateCtx<'a> {
    fn of(st: &'a RunState) -> Self {
        let mut stop_gap = st.setup.clone();
        stop_gap.model = RULES_MODEL.to_string();
        StateCtx {
            store: &st.store,
            run: &st.run,
            setup: &st.setup,
            setup_hash: st.setup.hash(),
            stop_gap_hash: stop_gap.hash(),
            rules_is_primary: st.setup.model == RULES_MODEL,
        }
    }
}

impl<'a, S, P: Provider> Ctx<'a, S, P> {
    fn new(source: &'a S, provider: &'a P, taxonomy: &'a Taxonomy, opts: &'a RunOptions) -> Self {
        let state = opts.state.as_ref().map(StateCtx::of);
        Self {
            source,
            provider,
            taxonomy,
            opts,
            state,
        }
    }

    /// Who an answer from `provider` counts as (see [`Provenance::of_answer`]). Without a
    /// state file the primary is the chain's first provider.
    fn provenance(&self, provider: &'static str) -> Provenance {
        let rules_is_primary = match &self.state {
            Some(st) => st.rules_is_primary,
            None => self.provider.name() == RULES_PROVIDER,
        };
        Provenance::of_answer(provider, rules_is_primary)
    }
}

/// Runs the whole space through `provider` and hands every page's outcome to `sink` (and,
/// as [`crate::events::Event::Page`], to `opts.events`).
///
/// Returns how many pages the source listed. A failure of the listing itself (space not
/// found, Confluence unreachable) is returned as an error after the pages already read have
/// been finished and reported.
pub async fn run<S, P>(
    source: &S,
    provider: &P,
    taxonomy: &Taxonomy,
    opts: &RunOptions,
    sink: impl FnMut(PageOutcome),
) -> Result<u64, ConfluenceError>
where
    S: PageSource,
    P: Provider,
{
    let ctx = Ctx::new(source, provider, taxonomy, opts);
    if let Some(st) = &opts.state {
        // Before anything is written: see `crate::observe` for why and what it costs.
        crate::observe::census(source, &st.store, &st.run, &opts.cancel).await;
    }
    driver::drive(&ctx, sink).await
}

/// The page's `global` label names, lowercase.
fn global_names(labels: &[Label]) -> Vec<String> {
    labels
        .iter()
        .filter(|l| l.prefix == LABEL_PREFIX)
        .map(|l| l.name.to_lowercase())
        .collect()
}
