//! `--via batch --wait`: poll the space's open jobs until none is running, collecting each
//! one as it finishes, with the jobs' request counts told as [`Event::BatchJobs`].

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{BackfillError, Collected, JobsCtx, collect};
use crate::cache::{CacheError, Run};
use crate::events::{Event, EventSink};
use crate::llm::batch::BatchService;
use crate::taxonomy::Taxonomy;

/// How often and where to tell progress, and what stops the wait early.
#[derive(Debug, Clone)]
pub struct WaitOptions {
    /// Between two polls.
    pub poll: Duration,
    pub events: EventSink,
    /// Stops waiting (the jobs go on at the provider; a later run collects them).
    pub cancel: CancellationToken,
}

/// Collects the space's jobs every `poll` until none is running (or the wait is cancelled:
/// then `running` lists the jobs still open). What each poll collected is added up.
pub async fn wait<S: BatchService>(
    svc: &S,
    ctx: &JobsCtx<'_>,
    run: &Run,
    taxonomy: &Taxonomy,
    opts: &WaitOptions,
) -> Result<Collected, BackfillError> {
    let mut all = Collected::default();
    loop {
        let polled = collect(svc, ctx, run, taxonomy).await?;
        let running = !polled.running.is_empty();
        all.absorb(polled);
        if !running {
            return Ok(all);
        }
        let event = open_counts(svc, ctx)?;
        if let Event::BatchJobs {
            jobs,
            total,
            succeeded,
            failed,
        } = &event
        {
            tracing::info!(jobs, total, succeeded, failed, "waiting for batch jobs");
        }
        opts.events.emit(event);
        tokio::select! {
            () = tokio::time::sleep(opts.poll) => {}
            () = opts.cancel.cancelled() => return Ok(all),
        }
    }
}

/// The request counts of this provider's open jobs for the space, as last polled.
fn open_counts<S: BatchService>(svc: &S, ctx: &JobsCtx<'_>) -> Result<Event, CacheError> {
    let open: Vec<_> = ctx
        .store
        .jobs(Some(ctx.space))?
        .into_iter()
        .filter(|j| !j.collected && j.job_id.is_some() && j.spec.provider == svc.name())
        .collect();
    Ok(Event::BatchJobs {
        jobs: open.len(),
        total: open.iter().map(|j| j.requests).sum(),
        succeeded: open.iter().map(|j| j.succeeded).sum(),
        failed: open.iter().map(|j| j.failed).sum(),
    })
}

impl Collected {
    /// Adds what a later poll collected; `running` is the later poll's.
    pub fn absorb(&mut self, later: Collected) {
        self.labels.extend(later.labels);
        self.retry.extend(later.retry);
        self.running = later.running;
        self.stale.extend(later.stale);
        self.ended.extend(later.ended);
        self.requests += later.requests;
        self.tokens_in += later.tokens_in;
        self.tokens_out += later.tokens_out;
    }
}
