//! The run: pages in, labels out.
//!
//! A producer task streams the space's pages into a bounded channel; the consumer extracts
//! each page's text, packs pages into batches, and keeps up to `max_in_flight` batches being
//! classified at once (the provider's governor decides how many requests really go out).
//! Each finished batch is validated, pages the model left out are asked for once more on
//! their own, and only labels a page does not already have are written. Memory holds what is
//! in flight, never the whole space. Every page ends in exactly one [`PageOutcome`], handed
//! to the caller's sink as soon as it is known.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::confluence::{ConfluenceError, LABEL_PREFIX, Label, Page, PageSource};
use crate::llm::validate::validate;
use crate::llm::{PageText, Provider};
use crate::taxonomy::Taxonomy;

/// What a run does; see [`crate::config::Config`] for where each value comes from.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub space: String,
    pub dry_run: bool,
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
}

/// How one page ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Labels were added (in a dry run: would be added).
    Tagged,
    /// The page already carries every label chosen for it.
    Unchanged,
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
    /// Which provider chose the labels.
    pub provider: Option<&'static str>,
    /// Why the page was skipped or failed.
    pub reason: Option<String>,
}

/// A page without its body: what the pipeline keeps while the page is in flight.
#[derive(Debug, Clone)]
struct PageMeta {
    id: String,
    title: String,
    url: Option<String>,
    labels: Option<Vec<Label>>,
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
        let mut in_flight = FuturesUnordered::new();
        let mut seen: u64 = 0;
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
                    tracing::warn!(in_flight = in_flight.len(), dropped, "interrupted: finishing the batches in flight");
                }
                () = sleep_until_or_never(deadline), if deadline.is_some() => {
                    tracing::warn!(abandoned = in_flight.len(), "interrupted: abandoning the batches still in flight");
                    break;
                }
                Some(outcomes) = in_flight.next(), if !in_flight.is_empty() => {
                    for o in outcomes {
                        sink(o);
                    }
                }
                page = rx.recv(), if input_open && in_flight.len() < max_in_flight => {
                    match page {
                        Some(page) => {
                            seen += 1;
                            opts.listed.fetch_add(1, Ordering::Relaxed);
                            if opts.limit.is_some_and(|limit| seen >= limit) {
                                // Stop the listing: the producer sees the closed channel and
                                // returns; pages already buffered in the channel are not read.
                                rx.close();
                                input_open = false;
                            }
                            if let Some(text) = admit(page, opts.max_page_chars, &mut waiting, &mut sink) {
                                if let Some(batch) = batcher.push(text) {
                                    in_flight.push(process_batch(source, provider, taxonomy, opts.dry_run, cut(batch, &mut waiting)));
                                }
                            }
                        }
                        None => input_open = false,
                    }
                    if !input_open && deadline.is_none() {
                        if let Some(batch) = batcher.flush() {
                            in_flight.push(process_batch(source, provider, taxonomy, opts.dry_run, cut(batch, &mut waiting)));
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

/// Extracts a listed page's text. A page without text is reported as skipped; a page the
/// listing returned twice is classified once. Otherwise the page waits for its batch.
fn admit(
    page: Page,
    max_page_chars: usize,
    waiting: &mut BTreeMap<String, PageMeta>,
    sink: &mut impl FnMut(PageOutcome),
) -> Option<PageText> {
    let text = crate::text::extract(&page.body, max_page_chars);
    let meta = PageMeta {
        id: page.id,
        title: page.title,
        url: page.url,
        labels: page.labels,
    };
    if text.trim().is_empty() {
        sink(PageOutcome {
            reason: Some("the page has no text".into()),
            ..meta.outcome(Status::Skipped)
        });
        return None;
    }
    if waiting.contains_key(&meta.id) {
        tracing::warn!(page = %meta.id, "the listing returned this page twice; classifying it once");
        return None;
    }
    let text = PageText {
        id: meta.id.clone(),
        title: meta.title.clone(),
        text,
    };
    waiting.insert(meta.id.clone(), meta);
    Some(text)
}

/// Classifies one batch and applies the result to each of its pages.
async fn process_batch<S: PageSource, P: Provider>(
    source: &S,
    provider: &P,
    taxonomy: &Taxonomy,
    dry_run: bool,
    batch: Batch,
) -> Vec<PageOutcome> {
    let texts: Vec<PageText> = batch.iter().map(|(_, t)| t.clone()).collect();
    let mut chosen: BTreeMap<String, (Vec<String>, &'static str)> = BTreeMap::new();
    let mut errors: BTreeMap<String, String> = BTreeMap::new();
    let missing = match provider.classify(&texts).await {
        Ok(answer) => {
            let v = validate(&texts, &answer, taxonomy);
            log_rejections(&v, answer.provider);
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
        match provider.classify(single).await {
            Ok(answer) => {
                let mut v = validate(single, &answer, taxonomy);
                log_rejections(&v, answer.provider);
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

    let mut outcomes = Vec::with_capacity(batch.len());
    for (meta, _) in &batch {
        let outcome = match (chosen.remove(&meta.id), errors.remove(&meta.id)) {
            (Some((labels, by)), _) => apply(source, dry_run, meta, labels, by).await,
            (None, Some(reason)) => meta.failed(reason),
            (None, None) => meta.failed("no answer for this page"),
        };
        outcomes.push(outcome);
    }
    outcomes
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

/// Adds the chosen labels the page does not have yet (add-only: nothing is ever removed).
async fn apply<S: PageSource>(
    source: &S,
    dry_run: bool,
    meta: &PageMeta,
    chosen: Vec<String>,
    provider: &'static str,
) -> PageOutcome {
    let current = match &meta.labels {
        Some(labels) => labels.clone(),
        None => match source.labels(&meta.id).await {
            Ok(labels) => labels,
            Err(e) => {
                return PageOutcome {
                    chosen,
                    provider: Some(provider),
                    ..meta.failed(e.to_string())
                };
            }
        },
    };
    let before: Vec<String> = current
        .iter()
        .filter(|l| l.prefix == LABEL_PREFIX)
        .map(|l| l.name.to_lowercase())
        .collect();
    let have: HashSet<&str> = before.iter().map(String::as_str).collect();
    let to_add: Vec<String> = chosen
        .iter()
        .filter(|l| !have.contains(l.as_str()))
        .cloned()
        .collect();
    let base = PageOutcome {
        labels_before: before.clone(),
        chosen: chosen.clone(),
        provider: Some(provider),
        ..meta.outcome(Status::Unchanged)
    };
    if to_add.is_empty() {
        return base;
    }
    if !dry_run {
        if let Err(e) = source.add_labels(&meta.id, &to_add).await {
            return PageOutcome {
                status: Status::Failed,
                reason: Some(e.to_string()),
                ..base
            };
        }
    }
    PageOutcome {
        status: Status::Tagged,
        added: to_add,
        ..base
    }
}
