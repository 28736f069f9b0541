//! The driver: reads pages, hands each to [`super::admit`], packs the ones that need the model
//! into batches, keeps up to `max_in_flight` batches (and cache answers) being finished at
//! once, and reports every outcome. A run goes through named [`Phase`]s.

use std::collections::HashSet;
use std::sync::Arc;

use futures::future::{FutureExt, LocalBoxFuture};
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::admit::{Admitted, admit};
use super::{Ctx, PageOutcome, Queued, apply, classify};
use crate::batch::Batcher;
use crate::confluence::{ConfluenceError, Page, PageSource};
use crate::events::Event;
use crate::llm::Provider;

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Taking pages from the listing and batching them.
    Reading,
    /// No page will be taken any more (the listing ended, or `--limit` was reached): the
    /// work in flight finishes.
    Finishing,
    /// Cancelled: no page is taken, pages waiting for a batch are dropped (a later run does
    /// them), and the work in flight has until `deadline` to finish.
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
        let listing = ctx.source.stream_pages(&opts.space, tx);
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
        taken: 0,
        classified: 0,
        done: 0,
    };
    let (listed, ()) = tokio::join!(producer, driver.consume());
    listed
}

/// Work being finished: a batch at the provider, or a cached answer being applied.
type Work<'c> = LocalBoxFuture<'c, Vec<PageOutcome>>;

struct Driver<'c, 'a, S, P, F> {
    ctx: &'c Ctx<'a, S, P>,
    rx: mpsc::Receiver<Page>,
    sink: F,
    max_in_flight: usize,
    phase: Phase,
    batcher: Batcher<Queued>,
    /// Ids of pages admitted and not yet reported: a page listed twice meanwhile is handled
    /// once (so its labels are never planned, or written, twice).
    active: HashSet<String>,
    in_flight: FuturesUnordered<Work<'c>>,
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
            let idle = self.in_flight.is_empty();
            match self.phase {
                Phase::Abandoning => break,
                Phase::Finishing | Phase::Draining { .. } if idle => break,
                _ => {}
            }
            let ctx = self.ctx;
            let cancel = &ctx.opts.cancel;
            let draining = self.phase.deadline();
            let reading = self.phase == Phase::Reading && self.in_flight.len() < self.max_in_flight;
            tokio::select! {
                biased;
                () = cancel.cancelled(), if draining.is_none() => self.start_draining(),
                () = sleep_until_or_never(draining), if draining.is_some() => {
                    tracing::warn!(abandoned = self.in_flight.len(), "stopping: abandoning the batches still in flight");
                    self.phase = Phase::Abandoning;
                }
                Some(outcomes) = self.in_flight.next(), if !idle => {
                    for o in outcomes {
                        self.report(o);
                    }
                }
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

    /// Cancelled: stop reading, drop the pages waiting for a batch, give the rest the grace.
    fn start_draining(&mut self) {
        let opts = self.ctx.opts;
        self.rx.close();
        let dropped = self.batcher.flush().map_or(0, |b| b.len());
        self.phase = Phase::Draining {
            deadline: Instant::now() + opts.grace,
        };
        tracing::warn!(
            in_flight = self.in_flight.len(),
            dropped,
            "stopping: finishing the batches in flight"
        );
    }

    /// A page from the listing, or its end.
    fn take(&mut self, page: Option<Page>) {
        let events = &self.ctx.opts.events;
        match page {
            Some(page) => {
                self.taken += 1;
                events.emit(Event::Listed { taken: self.taken });
                self.admit(page);
                // `--limit` counts pages classified, not pages skipped as unchanged or empty:
                // a nightly `--limit N` run moves on to the next N.
                if self.ctx.opts.limit.is_some_and(|l| self.classified >= l) {
                    // Stop the listing: the producer sees the closed channel and returns;
                    // pages already buffered in the channel are not read.
                    self.rx.close();
                    self.stop_reading();
                }
            }
            None => self.stop_reading(),
        }
    }

    /// No page will be taken any more: the real total, and the last partial batch.
    fn stop_reading(&mut self) {
        self.phase = Phase::Finishing;
        self.ctx
            .opts
            .events
            .emit(Event::ListingEnded { total: self.taken });
        if let Some(batch) = self.batcher.flush() {
            self.in_flight.push(batch_work(self.ctx, batch));
        }
    }

    fn admit(&mut self, page: Page) {
        if self.active.contains(&page.id) {
            tracing::warn!(page = %page.id, "the listing returned this page twice; handling it once");
            return;
        }
        let work = match admit(self.ctx, page) {
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
mod tests {
    use std::time::Duration;

    use super::super::testkit::{Kit, labelled};
    use super::*;
    use crate::pipeline::Status;

    fn pages(n: usize) -> Vec<Page> {
        (1..=n).map(|i| labelled(&i.to_string(), &[])).collect()
    }

    fn drain(events: &mut mpsc::UnboundedReceiver<Event>) -> Vec<Event> {
        std::iter::from_fn(|| events.try_recv().ok()).collect()
    }

    #[tokio::test]
    async fn the_limit_ends_reading_and_the_events_tell_the_total_then_the_end() {
        let mut kit = Kit::new(pages(6));
        kit.opts.limit = Some(2);
        kit.opts.batch_size = 5;
        let mut events = kit.opts.events.subscribe();
        let mut out = Vec::new();
        let ctx = kit.ctx();
        drive(&ctx, |o| out.push(o)).await.unwrap();
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|o| o.status == Status::Tagged));
        assert_eq!(
            kit.calls(),
            vec![2],
            "the last partial batch is sent once reading ends"
        );
        let kinds: Vec<String> = drain(&mut events)
            .iter()
            .map(|e| match e {
                Event::Listed { taken } => format!("listed {taken}"),
                Event::Classifying { id } => format!("classifying {id}"),
                Event::ListingEnded { total } => format!("ended {total}"),
                Event::Page(o) => format!("page {}", o.id),
                Event::Finished { taken, done } => format!("finished {taken} {done}"),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "listed 1",
                "classifying 1",
                "listed 2",
                "classifying 2",
                "ended 2",
                "page 1",
                "page 2",
                "finished 2 2"
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_run_drains_for_the_grace_then_abandons_what_is_in_flight() {
        let mut kit = Kit::new(pages(6)).slow(Duration::from_secs(60));
        kit.opts.batch_size = 1;
        kit.opts.grace = Duration::from_secs(5);
        let mut events = kit.opts.events.subscribe();
        let cancel = kit.opts.cancel.clone();
        let mut out = Vec::new();
        let start = Instant::now();
        let ctx = kit.ctx();
        let stop = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            cancel.cancel();
        };
        let (listed, ()) = tokio::join!(drive(&ctx, |o| out.push(o)), stop);
        assert!(listed.is_ok(), "{listed:?}");
        assert!(out.is_empty(), "nothing finished within the grace");
        assert_eq!(start.elapsed(), Duration::from_secs(6));
        // Two batches went out (max_in_flight), then reading waited and was stopped.
        assert_eq!(kit.calls(), vec![1, 1]);
        let events = drain(&mut events);
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, Event::ListingEnded { .. }))
        );
        assert!(matches!(
            events.last(),
            Some(Event::Finished { taken: 2, done: 0 })
        ));
    }
}
