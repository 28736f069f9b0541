//! The driver: lists the space's metadata, hands each page to [`super::admit`], fetches in
//! bulk the bodies of the pages the ledger cannot skip, packs the ones that need the model
//! into batches, keeps up to `max_in_flight` batches (and cache answers) being finished at
//! once, and reports every outcome. A run goes through named [`Phase`]s.
//!
//! The listing is read as fast as it comes (metadata only: ids, titles, versions) until
//! [`LOOK_AHEAD`] pages wait for their body, so the total is known early for most spaces and
//! memory stays flat for larger ones; pages that need their body wait in `pending` (metadata,
//! small). One bulk fetch at a time takes up to [`BODIES_PER_FETCH`] of them, when that many
//! wait, when the listing is over, or when `--limit` is covered; its pages wait in `ready`
//! until there is room in flight, and the next fetch starts when a round of work is left of
//! them. Bodies held: at most two fetches' worth.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use futures::future::{FutureExt, LocalBoxFuture};
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::admit::{Admitted, Listed, admit, listed, meta_of};
use super::{Ctx, PageOutcome, Queued, Status, apply, classify};
use crate::batch::Batcher;
use crate::confluence::{ConfluenceError, Page, PageSource};
use crate::events::Event;
use crate::llm::Provider;

/// Pages per bulk body fetch: the most Cloud takes in one request.
pub(super) const BODIES_PER_FETCH: usize = crate::confluence::client::IDS_PER_REQUEST;

/// How many listed pages may wait for their body (`pending`, the fetch under way and `ready`)
/// before the listing is paused: 40 bulk fetches. Each waiting page holds its metadata, about
/// 0.3 KiB measured (`cargo bench --bench memory`, HARDENING.md §4), so this costs at most
/// ~3 MiB, while a space of up to about this many pages still has its total (and ETA) known
/// from the start. Beyond it the listing waits (the bounded channel holds the producer back)
/// and memory stays flat; pages skipped as unchanged never wait here, so an unchanged rerun
/// lists at full speed. At least one fetch's worth, or no fetch would ever be due.
pub(super) const LOOK_AHEAD: usize = 40 * BODIES_PER_FETCH;
const _: () = assert!(LOOK_AHEAD >= BODIES_PER_FETCH);

/// The reason given for a page that is gone by the time its body is read.
pub const GONE_SINCE_LISTED: &str = "deleted, or no longer visible, since the listing";

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Taking pages from the listing, fetching bodies and batching them.
    Reading,
    /// No page will be taken any more (the listing ended, or `--limit` was reached): the
    /// pages waiting for their body and the work in flight finish.
    Finishing,
    /// Cancelled: no page is taken, pages waiting for their body or a batch are dropped (a
    /// later run does them), and the work in flight has until `deadline` to finish.
    Draining { deadline: Instant },
    /// The grace is over: whatever is still in flight is abandoned.
    Abandoning,
}

impl Phase {
    fn deadline(self) -> Option<Instant> {
        match self {
            Phase::Draining { deadline } => Some(deadline),
            _ => None,
        }
    }
}

/// Runs the producer (the listing) and the consumer (the phases below) together.
pub(super) async fn drive<S: PageSource, P: Provider>(
    ctx: &Ctx<'_, S, P>,
    sink: impl FnMut(PageOutcome),
) -> Result<u64, ConfluenceError> {
    let opts = ctx.opts;
    let max_in_flight = opts.max_in_flight.max(1);
    let (tx, rx) = mpsc::channel::<Page>(opts.batch_size.max(1) * max_in_flight);
    let producer = async {
        let listing = ctx.source.stream_metadata(&opts.space, tx);
        tokio::pin!(listing);
        tokio::select! {
            listed = &mut listing => listed,
            // Once cancelled, a listing request still in the air gets the same grace as the
            // batches, then is dropped.
            () = async { opts.cancel.cancelled().await; tokio::time::sleep(opts.grace).await } => Ok(0),
        }
    };
    let mut driver = Driver {
        ctx,
        rx,
        sink,
        max_in_flight,
        phase: Phase::Reading,
        batcher: Batcher::new(opts.batch_size, opts.max_batch_chars),
        active: HashSet::new(),
        in_flight: FuturesUnordered::new(),
        pending: VecDeque::new(),
        fetching: FuturesUnordered::new(),
        fetching_pages: 0,
        ready: VecDeque::new(),
        bodies_listed: false,
        taken: 0,
        classified: 0,
        done: 0,
    };
    let (listed, ()) = tokio::join!(producer, driver.consume());
    listed
}

/// Work being finished: a batch at the provider, or a cached answer being applied.
type Work<'c> = LocalBoxFuture<'c, Vec<PageOutcome>>;

/// A bulk body fetch: each page with its body, or its outcome.
type Fetch<'c> = LocalBoxFuture<'c, Vec<Fetched>>;

/// One page of a bulk body fetch.
pub(super) enum Fetched {
    /// With its body.
    Body(Page),
    /// Gone since the listing, or the fetch failed: its outcome.
    Ended(PageOutcome),
}

struct Driver<'c, 'a, S, P, F> {
    ctx: &'c Ctx<'a, S, P>,
    rx: mpsc::Receiver<Page>,
    sink: F,
    max_in_flight: usize,
    phase: Phase,
    batcher: Batcher<Queued>,
    /// Ids of pages taken and not yet reported: a page listed twice meanwhile is handled
    /// once (so its labels are never planned, or written, twice).
    active: HashSet<String>,
    in_flight: FuturesUnordered<Work<'c>>,
    /// Pages listed without their body that need it, in listing order.
    pending: VecDeque<Page>,
    /// The bulk body fetch under way (at most one), and how many pages it carries.
    fetching: FuturesUnordered<Fetch<'c>>,
    fetching_pages: usize,
    /// Pages with their body, waiting for room in flight.
    ready: VecDeque<Page>,
    /// The listing carries bodies (see [`Self::room_to_read`]).
    bodies_listed: bool,
    /// Pages taken from the listing.
    taken: u64,
    /// Pages sent for classification (to the model, or answered from the cache).
    classified: u64,
    /// Pages reported.
    done: u64,
}

impl<'c, 'a: 'c, S: PageSource, P: Provider, F: FnMut(PageOutcome)> Driver<'c, 'a, S, P, F> {
    async fn consume(&mut self) {
        loop {
            self.admit_ready();
            self.fetch_if_due();
            self.flush_if_all_read();
            let idle = self.in_flight.is_empty() && self.fetching.is_empty();
            let drained = idle && self.pending.is_empty() && self.ready.is_empty();
            match self.phase {
                Phase::Abandoning => break,
                Phase::Finishing | Phase::Draining { .. } if drained => break,
                _ => {}
            }
            let ctx = self.ctx;
            let cancel = &ctx.opts.cancel;
            let draining = self.phase.deadline();
            let reading = self.phase == Phase::Reading && self.room_to_read();
            tokio::select! {
                biased;
                () = cancel.cancelled(), if draining.is_none() => self.start_draining(),
                () = sleep_until_or_never(draining), if draining.is_some() => {
                    tracing::warn!(abandoned = self.in_flight.len(), "stopping: abandoning the batches still in flight");
                    self.phase = Phase::Abandoning;
                }
                Some(outcomes) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    for o in outcomes {
                        self.report(o);
                    }
                }
                Some(fetched) = self.fetching.next(), if !self.fetching.is_empty() => self.fetched(fetched),
                page = self.rx.recv(), if reading => self.take(page),
                // Unreachable (the checks above end the loop first), but a select with every
                // branch disabled would panic.
                else => break,
            }
        }
        self.ctx.opts.events.emit(Event::Finished {
            taken: self.taken,
            done: self.done,
        });
    }

    /// Cancelled: stop reading, drop the pages waiting for their body or a batch, give the
    /// rest the grace.
    fn start_draining(&mut self) {
        let opts = self.ctx.opts;
        self.rx.close();
        let dropped = self.batcher.flush().map_or(0, |b| b.len())
            + self.pending.len()
            + self.ready.len()
            + self.fetching_pages;
        self.pending.clear();
        self.ready.clear();
        // A fetch only reads: dropping it loses nothing.
        self.fetching = FuturesUnordered::new();
        self.fetching_pages = 0;
        self.phase = Phase::Draining {
            deadline: Instant::now() + opts.grace,
        };
        tracing::warn!(
            in_flight = self.in_flight.len(),
            dropped,
            "stopping: finishing the batches in flight"
        );
    }

    /// Pages taken that wait for their body.
    fn outstanding(&self) -> usize {
        self.pending.len() + self.fetching_pages + self.ready.len()
    }

    /// Whether `--limit` leaves room for one more page: pages waiting for their body count
    /// as classified until they are admitted (so that no more bodies are read than the limit
    /// can use).
    fn room_under_limit(&self) -> bool {
        self.ctx
            .opts
            .limit
            .is_none_or(|l| self.classified + (self.outstanding() as u64) < l)
    }

    /// Whether the next page may be taken from the listing. A listing without bodies is read
    /// as fast as it comes (metadata is small, and the total comes sooner) while fewer than
    /// [`LOOK_AHEAD`] pages wait for their body; one that carries them (a source that cannot
    /// list without) only when the page can be admitted at once, so that bodies are never
    /// piled up. Not reading leaves the listing blocked on the full channel.
    fn room_to_read(&self) -> bool {
        let room = if self.bodies_listed {
            self.ready.is_empty() && self.in_flight.len() < self.max_in_flight
        } else {
            self.outstanding() < LOOK_AHEAD
        };
        room && self.room_under_limit()
    }

    /// A page from the listing, or its end.
    fn take(&mut self, page: Option<Page>) {
        let Some(page) = page else {
            return self.stop_reading();
        };
        self.taken += 1;
        self.ctx
            .opts
            .events
            .emit(Event::Listed { taken: self.taken });
        if self.active.contains(&page.id) {
            tracing::warn!(page = %page.id, "the listing returned this page twice; handling it once");
            return;
        }
        if page.body.is_some() {
            self.bodies_listed = true;
            self.active.insert(page.id.clone());
            self.ready.push_back(page);
            return self.admit_ready();
        }
        match listed(self.ctx, page) {
            Listed::NeedsBody(page) => {
                self.active.insert(page.id.clone());
                self.pending.push_back(page);
            }
            Listed::Admitted(admitted) => self.admitted(admitted),
        }
        self.stop_at_limit();
    }

    /// `--limit` counts pages classified, not pages skipped as unchanged or empty: a nightly
    /// `--limit N` run moves on to the next N.
    fn stop_at_limit(&mut self) {
        if self.phase == Phase::Reading && self.ctx.opts.limit.is_some_and(|l| self.classified >= l)
        {
            // Stop the listing: the producer sees the closed channel and returns; pages
            // already buffered in the channel are not read.
            self.rx.close();
            self.stop_reading();
        }
    }

    /// No page will be taken any more: the real total.
    fn stop_reading(&mut self) {
        self.phase = Phase::Finishing;
        self.ctx
            .opts
            .events
            .emit(Event::ListingEnded { total: self.taken });
    }

    /// Once every page taken has been admitted: the last partial batch.
    fn flush_if_all_read(&mut self) {
        if self.phase == Phase::Finishing && self.outstanding() == 0 {
            if let Some(batch) = self.batcher.flush() {
                self.in_flight.push(batch_work(self.ctx, batch));
            }
        }
    }

    /// Whether a bulk body fetch could start: pages wait for one, none is under way, and no
    /// more than a round of work in flight is left of the last one's pages (so the next
    /// bodies arrive while those are classified).
    fn may_fetch(&self) -> bool {
        let low = self.max_in_flight * self.ctx.opts.batch_size.max(1);
        matches!(self.phase, Phase::Reading | Phase::Finishing)
            && !self.pending.is_empty()
            && self.fetching.is_empty()
            && self.ready.len() <= low
    }

    /// Starts the next bulk body fetch when one is due: a full chunk waits, the listing is
    /// over, or `--limit` is covered. Not sooner: bodies are read in as few requests as the
    /// listing allows, since requests, not bytes, are what a site's rate limit counts.
    fn fetch_if_due(&mut self) {
        let due = self.pending.len() >= BODIES_PER_FETCH
            || self.phase == Phase::Finishing
            || !self.room_under_limit();
        if due && self.may_fetch() {
            self.start_fetch();
        }
    }

    fn start_fetch(&mut self) {
        let n = self.pending.len().min(BODIES_PER_FETCH);
        let pages: Vec<Page> = self.pending.drain(..n).collect();
        self.fetching_pages = n;
        self.fetching.push(fetch_bodies(self.ctx.source, pages));
    }

    /// A bulk fetch came back: its pages wait for room in flight; a page gone or unread is
    /// reported.
    fn fetched(&mut self, fetched: Vec<Fetched>) {
        self.fetching_pages = 0;
        for page in fetched {
            match page {
                Fetched::Body(page) => self.ready.push_back(page),
                Fetched::Ended(outcome) => self.report(outcome),
            }
        }
    }

    /// Admits the pages with their body while there is room in flight.
    fn admit_ready(&mut self) {
        while matches!(self.phase, Phase::Reading | Phase::Finishing)
            && self.in_flight.len() < self.max_in_flight
        {
            let Some(page) = self.ready.pop_front() else {
                break;
            };
            let admitted = admit(self.ctx, page);
            self.admitted(admitted);
            self.stop_at_limit();
        }
    }

    fn admitted(&mut self, admitted: Admitted) {
        let work = match admitted {
            Admitted::Done(outcome) => return self.report(outcome),
            Admitted::Classify(queued) => {
                self.start(&queued.meta.id);
                let queued = match &self.ctx.opts.batch_route {
                    Some(route) => match route.divert(queued) {
                        Ok(outcome) => return self.report(outcome),
                        Err(queued) => *queued,
                    },
                    None => queued,
                };
                self.batcher
                    .push(queued)
                    .map(|batch| batch_work(self.ctx, batch))
            }
            Admitted::Cached(meta, hit) => {
                self.start(&meta.id);
                let ctx = self.ctx;
                // Never a stop-gap: a stop-gap answer is never cached.
                let labels = hit.labels;
                Some(
                    async move {
                        vec![apply::apply(ctx, &meta, labels, super::Provenance::Cache).await]
                    }
                    .boxed_local(),
                )
            }
        };
        if let Some(work) = work {
            self.in_flight.push(work);
        }
    }

    /// A page goes for classification.
    fn start(&mut self, id: &str) {
        self.classified += 1;
        self.active.insert(id.to_string());
        self.ctx
            .opts
            .events
            .emit_with(|| Event::Classifying { id: id.to_string() });
    }

    fn report(&mut self, outcome: PageOutcome) {
        self.active.remove(&outcome.id);
        self.done += 1;
        self.ctx
            .opts
            .events
            .emit_with(|| Event::Page(Arc::new(outcome.clone())));
        (self.sink)(outcome);
    }
}

/// Reads the bodies of `pages` in one bulk call. A page absent from the answer was deleted
/// (or hidden) since the listing: skipped, as a later listing would have left it out. A
/// failed call fails its pages (reads are retried inside the client already).
pub(super) fn fetch_bodies<S: PageSource>(source: &S, pages: Vec<Page>) -> Fetch<'_> {
    async move {
        let ids: Vec<String> = pages.iter().map(|p| p.id.clone()).collect();
        match source.bodies(&ids).await {
            Ok(mut bodies) => pages
                .into_iter()
                .map(|mut page| match bodies.remove(&page.id) {
                    Some(body) => {
                        page.body = Some(body);
                        Fetched::Body(page)
                    }
                    None => {
                        let (meta, _) = meta_of(page);
                        Fetched::Ended(PageOutcome {
                            reason: Some(GONE_SINCE_LISTED.into()),
                            ..meta.outcome(Status::Skipped)
                        })
                    }
                })
                .collect(),
            Err(e) => {
                let reason = e.to_string();
                pages
                    .into_iter()
                    .map(|page| Fetched::Ended(meta_of(page).0.failed(reason.clone())))
                    .collect()
            }
        }
    }
    .boxed_local()
}

/// Classifies one batch and applies each page's answer, the pages' label reads and writes
/// at once: the Confluence site governor bounds how many are in flight (each page's own
/// read-then-write order is kept).
fn batch_work<'c, S: PageSource, P: Provider>(
    ctx: &'c Ctx<'_, S, P>,
    batch: Vec<Queued>,
) -> Work<'c> {
    async move {
        let mut answers = classify::classify(ctx, &batch).await;
        let pages: Vec<_> = batch
            .into_iter()
            .map(|Queued { meta, .. }| {
                let answer = answers.remove(&meta.id);
                (meta, answer)
            })
            .collect();
        let applies = pages.into_iter().map(|(meta, answer)| async move {
            match answer {
                Some(Ok(chosen)) => apply::apply(ctx, &meta, chosen.labels, chosen.by).await,
                Some(Err(reason)) => meta.failed(reason),
                None => meta.failed("no answer for this page"),
            }
        });
        futures::future::join_all(applies).await
    }
    .boxed_local()
}

async fn sleep_until_or_never(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
#[path = "driver_tests.rs"]
mod tests;
