//! `--via batch`: the pages that need the model go to a batch job instead of the provider
//! chain. [`BatchRoute`] sits where the driver would batch a page for the chain: it packs
//! the page with the same micro-batcher (same pages per request, same character budget) for
//! [`crate::backfill::submit`], or leaves it alone when an open job already covers it. Pages
//! a job failed (`interactive`) still go through the chain. [`scan`] finds the same pages
//! without classifying or applying anything, for `--wait` (submit, wait, then one run).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::admit::{Admitted, Listed, admit, listed};
use super::driver::{BODIES_PER_FETCH, Fetched, fetch_bodies};
use super::{Ctx, PageOutcome, Queued, Status};
use crate::backfill::BatchPage;
use crate::batch::{BatchItem, Batcher};
use crate::cache::CacheKey;
use crate::confluence::{ConfluenceError, Page, PageSource};
use crate::llm::Provider;
use crate::taxonomy::Taxonomy;

/// The reason shown for a page packed for a batch job by this run.
pub const SENT_TO_BATCH: &str = "sent to a batch job: a later --via batch run collects it";
/// The reason shown for a page packed in a dry run (no job is submitted).
pub const WOULD_SEND_TO_BATCH: &str = "would be sent to a batch job (dry run: none submitted)";
/// The reason shown for a page an open job already covers.
pub const IN_OPEN_JOB: &str = "waiting for an open batch job: a later --via batch run collects it";

impl BatchItem for BatchPage {
    fn chars(&self) -> usize {
        self.text.chars()
    }
}

/// Where the pages that need the model go in a `--via batch` run (see the module docs). A
/// cheap handle: the driver packs pages into it, the caller takes the batches after the run.
#[derive(Debug, Clone)]
pub struct BatchRoute(Arc<Mutex<Route>>);

#[derive(Debug)]
struct Route {
    /// Page ids to classify through the chain (a job's failed lines).
    interactive: HashSet<String>,
    /// Cache keys an open job covers.
    pending: HashSet<CacheKey>,
    dry_run: bool,
    batcher: Batcher<BatchPage>,
    batches: Vec<Vec<BatchPage>>,
    in_open_jobs: u64,
}

/// What a [`BatchRoute`] gathered.
#[derive(Debug, Default)]
pub struct Routed {
    /// The requests to submit, as the micro-batcher packed them.
    pub batches: Vec<Vec<BatchPage>>,
    /// Pages left alone because an open job covers them.
    pub in_open_jobs: u64,
}

impl BatchRoute {
    /// Packs like the driver does: `batch_size` pages and `max_batch_chars` per request.
    pub fn new(
        batch_size: usize,
        max_batch_chars: usize,
        interactive: HashSet<String>,
        pending: HashSet<CacheKey>,
        dry_run: bool,
    ) -> Self {
        Self(Arc::new(Mutex::new(Route {
            interactive,
            pending,
            dry_run,
            batcher: Batcher::new(batch_size, max_batch_chars),
            batches: Vec::new(),
            in_open_jobs: 0,
        })))
    }

    /// The batches packed so far (the last partial one included), and the count of pages an
    /// open job covers; the route is empty after.
    pub fn take(&self) -> Routed {
        let mut r = self.lock();
        if let Some(last) = r.batcher.flush() {
            r.batches.push(last);
        }
        Routed {
            batches: std::mem::take(&mut r.batches),
            in_open_jobs: std::mem::take(&mut r.in_open_jobs),
        }
    }

    /// A page that needs the model: its outcome when it goes to a batch job (or waits for an
    /// open one), or the page back when it goes through the chain.
    pub(super) fn divert(&self, q: Queued) -> Result<PageOutcome, Box<Queued>> {
        let mut r = self.lock();
        if r.interactive.contains(&q.meta.id) {
            return Err(Box::new(q));
        }
        let Some(key) = q.meta.key else {
            // No state file: no job can be recorded (the caller refuses such a run).
            return Err(Box::new(q));
        };
        let reason = if r.pending.contains(&key) {
            r.in_open_jobs += 1;
            IN_OPEN_JOB
        } else {
            let page = BatchPage { text: q.text, key };
            if let Some(batch) = r.batcher.push(page) {
                r.batches.push(batch);
            }
            if r.dry_run {
                WOULD_SEND_TO_BATCH
            } else {
                SENT_TO_BATCH
            }
        };
        Ok(PageOutcome {
            reason: Some(reason.into()),
            ..q.meta.outcome(Status::Skipped)
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Route> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Lists the space and admits each page as a run would (ledger, then the bodies of the pages
/// it cannot skip in bulk, text, cache), classifying and applying nothing: what `route`
/// gathers is what a run would send to a batch job. `--limit` counts as in a run. Emits no
/// event and reports no outcome.
pub async fn scan<S: PageSource, P: Provider>(
    source: &S,
    provider: &P,
    taxonomy: &Taxonomy,
    opts: &super::RunOptions,
    route: &BatchRoute,
) -> Result<u64, ConfluenceError> {
    let ctx = Ctx::new(source, provider, taxonomy, opts);
    let (tx, mut rx) = mpsc::channel::<Page>(opts.batch_size.max(1) * 4);
    let consume = async {
        let mut scan = Scan {
            ctx: &ctx,
            route,
            classified: 0,
            pending: Vec::new(),
        };
        let mut seen = HashSet::new();
        while let Some(page) = rx.recv().await {
            if opts.cancel.is_cancelled() || scan.limit_reached() {
                rx.close();
                break;
            }
            if !seen.insert(page.id.clone()) {
                continue;
            }
            match listed(&ctx, page) {
                Listed::Admitted(a) => scan.count(a),
                Listed::NeedsBody(page) => scan.pending.push(page),
            }
            // Under a limit, the bodies are read before more pages are taken (as a run does).
            if scan.pending.len() >= BODIES_PER_FETCH || scan.limit_reached() {
                scan.fetch().await;
            }
        }
        while !scan.pending.is_empty() && !opts.cancel.is_cancelled() {
            scan.fetch().await;
        }
    };
    let (listed, ()) = tokio::join!(source.stream_metadata(&opts.space, tx), consume);
    listed
}

/// What [`scan`] keeps while it reads.
struct Scan<'c, 'a, S, P> {
    ctx: &'c Ctx<'a, S, P>,
    route: &'c BatchRoute,
    classified: u64,
    /// Pages listed without their body that need it.
    pending: Vec<Page>,
}

impl<S: PageSource, P: Provider> Scan<'_, '_, S, P> {
    /// Pages classified, and those waiting for their body, cover `--limit`.
    fn limit_reached(&self) -> bool {
        let covered = self.classified + self.pending.len() as u64;
        self.ctx.opts.limit.is_some_and(|l| covered >= l)
    }

    fn count(&mut self, admitted: Admitted) {
        match admitted {
            Admitted::Done(_) => {}
            Admitted::Cached(..) => self.classified += 1,
            Admitted::Classify(q) => {
                self.classified += 1;
                let _ = self.route.divert(q);
            }
        }
    }

    /// Reads the bodies of up to [`BODIES_PER_FETCH`] pending pages and admits them. Pages
    /// whose body cannot be read are left out: the run that follows the batch job reads them.
    async fn fetch(&mut self) {
        let n = self.pending.len().min(BODIES_PER_FETCH);
        let pages: Vec<Page> = self.pending.drain(..n).collect();
        for page in fetch_bodies(self.ctx.source, pages).await {
            match page {
                Fetched::Body(page) => {
                    let admitted = admit(self.ctx, page);
                    self.count(admitted);
                }
                Fetched::Ended(o) => {
                    tracing::warn!(page = %o.id, reason = o.reason.as_deref().unwrap_or(""), "not sent to a batch job")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{Kit, page};
    use super::*;

    #[tokio::test]
    async fn scan_reads_bodies_in_bulk_and_stops_at_the_limit() {
        let pages: Vec<_> = (1..=7)
            .map(|i| page(&i.to_string(), &format!("<p>How to {i}</p>")))
            .collect();
        let mut kit = Kit::with_state(pages);
        let route = BatchRoute::new(5, 10_000, HashSet::new(), HashSet::new(), false);
        scan(&kit.source, &kit.provider, &kit.taxonomy, &kit.opts, &route)
            .await
            .unwrap();
        let routed: Vec<usize> = route.take().batches.iter().map(Vec::len).collect();
        assert_eq!(routed, [5, 2]);
        assert_eq!(
            kit.source.body_requests().len(),
            1,
            "one bulk read for the 7"
        );

        kit.opts.limit = Some(3);
        let route = BatchRoute::new(5, 10_000, HashSet::new(), HashSet::new(), false);
        scan(&kit.source, &kit.provider, &kit.taxonomy, &kit.opts, &route)
            .await
            .unwrap();
        let routed: Vec<usize> = route.take().batches.iter().map(Vec::len).collect();
        assert_eq!(routed, [3]);
        assert_eq!(
            kit.source.body_requests()[1].len(),
            3,
            "no more bodies than the limit"
        );
    }

    #[test]
    fn a_page_goes_to_a_job_unless_a_job_failed_it_or_an_open_job_covers_it() {
        let kit = Kit::with_state(vec![]);
        let ctx = kit.ctx();
        let queued = |id: &str| match admit(&ctx, page(id, &format!("<p>How to {id}</p>"))) {
            Admitted::Classify(q) => q,
            other => panic!("{other:?}"),
        };
        let covered = queued("3").meta.key.unwrap();
        let route = BatchRoute::new(2, 10_000, ["2".into()].into(), [covered].into(), false);
        for id in ["1", "4", "5"] {
            let o = route.divert(queued(id)).unwrap();
            assert_eq!(
                (o.status, o.reason.as_deref()),
                (Status::Skipped, Some(SENT_TO_BATCH))
            );
        }
        assert!(
            route.divert(queued("2")).is_err(),
            "a failed line goes interactive"
        );
        let o = route.divert(queued("3")).unwrap();
        assert_eq!(o.reason.as_deref(), Some(IN_OPEN_JOB));
        let routed = route.take();
        let ids: Vec<Vec<&str>> = routed
            .batches
            .iter()
            .map(|b| b.iter().map(|p| p.text.id.as_str()).collect())
            .collect();
        assert_eq!(
            ids,
            [vec!["1", "4"], vec!["5"]],
            "packed like the driver packs"
        );
        assert_eq!(routed.in_open_jobs, 1);
        assert!(route.take().batches.is_empty());
    }
}
