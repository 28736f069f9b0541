//! `--via batch`: the run with the primary provider's batch service (README, "Large spaces").
//!
//! ```text
//! prepare   collect the finished jobs (their answers go into the cache)
//!           --wait: scan the space for what a run would send, submit it, poll until done
//!           route: pages still needing the model go to a job, except the ones a job
//!                  failed (interactive, unless --follow-up-job); pages an open job covers
//!                  are left alone
//! the run   the normal pipeline: collected pages are cache hits, applied (or proposed)
//! finish    submit what the run routed (never in a dry run) and say so
//! ```

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::Context;
use serde_json::Value;

use super::Session;
use crate::backfill::{self, BatchPage, Collected, JobsCtx, Submitted, WaitOptions};
use crate::config::Config;
use crate::confluence::PageSource;
use crate::governor::Chain;
use crate::llm::AnyProvider;
use crate::llm::batch::{
    BatchError, BatchRequest, BatchService, GeminiBatch, JobResults, JobStatus, Limits, OpenAiBatch,
};
use crate::pipeline::{self, BatchRoute, RunOptions, RunState};
use crate::report;
use crate::report::model::ProviderMetrics;
use crate::taxonomy::Taxonomy;

/// The primary provider's batch service.
pub(super) enum AnyBatch {
    Gemini(GeminiBatch),
    OpenAi(OpenAiBatch),
}

/// Gemini when it is configured (it is the primary), else OpenAI.
fn service(config: &Config, taxonomy: &Taxonomy) -> anyhow::Result<AnyBatch> {
    let taxonomy = Arc::new(taxonomy.clone());
    if let Some(s) = &config.gemini {
        let svc = GeminiBatch::new(s.clone(), taxonomy)
            .context("cannot set up the Gemini batch client")?;
        return Ok(AnyBatch::Gemini(svc));
    }
    let s = config
        .openai
        .as_ref()
        .context("--via batch needs Gemini or OpenAI as the primary provider")?;
    let svc =
        OpenAiBatch::new(s.clone(), taxonomy).context("cannot set up the OpenAI batch client")?;
    Ok(AnyBatch::OpenAi(svc))
}

/// What a `--via batch` run did with the batch service, for its ending and its report.
pub(super) struct BatchRun {
    svc: AnyBatch,
    route: BatchRoute,
    collected: Collected,
}

/// Before the run (see the module docs): sets `opts.batch_route`.
pub(super) async fn prepare<S: PageSource>(
    config: &Config,
    source: &S,
    chain: &Chain<AnyProvider>,
    taxonomy: &Taxonomy,
    opts: &mut RunOptions,
    session: &Session,
) -> anyhow::Result<BatchRun> {
    let state = opts.state.clone().context(
        "--via batch needs the state file (its jobs are recorded there): set TAG_SPACE_CACHE_PATH",
    )?;
    let svc = service(config, taxonomy)?;
    let ctx = jobs_ctx(&state, &config.space);
    let mut collected = backfill::collect(&svc, &ctx, &state.run, taxonomy).await?;
    if config.batch.wait {
        let route = route(config, opts, &collected, &svc, &ctx)?;
        let scan = RunOptions {
            events: Default::default(),
            ..opts.clone()
        };
        pipeline::scan(source, chain, taxonomy, &scan, &route).await?;
        // The scan looked every page up: the run's figures count the run's own lookups.
        state.store.reset_counters();
        if !config.dry_run {
            submit(&svc, &ctx, route.take().batches).await?;
        }
        collected.absorb(wait(config, &svc, &ctx, &state, taxonomy, opts, session).await?);
    }
    tell_collected(&collected, &svc);
    let route = route(config, opts, &collected, &svc, &ctx)?;
    opts.batch_route = Some(route.clone());
    Ok(BatchRun {
        svc,
        route,
        collected,
    })
}

fn jobs_ctx<'a>(state: &'a RunState, space: &'a str) -> JobsCtx<'a> {
    JobsCtx {
        store: &state.store,
        space,
        setup: &state.setup,
    }
}

/// Where the pages needing the model go: the ones a job failed through the chain (unless
/// `--follow-up-job`), the ones an open job covers nowhere, the rest to a new job.
fn route(
    config: &Config,
    opts: &RunOptions,
    collected: &Collected,
    svc: &AnyBatch,
    ctx: &JobsCtx<'_>,
) -> anyhow::Result<BatchRoute> {
    let interactive: HashSet<String> = if config.batch.follow_up_job {
        HashSet::new()
    } else {
        collected.retry.iter().map(|(id, _)| id.clone()).collect()
    };
    let pending = backfill::pending_keys(svc, ctx).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(BatchRoute::new(
        opts.batch_size,
        opts.max_batch_chars,
        interactive,
        pending,
        config.dry_run,
    ))
}

async fn submit(
    svc: &AnyBatch,
    ctx: &JobsCtx<'_>,
    batches: Vec<Vec<BatchPage>>,
) -> anyhow::Result<Submitted> {
    if batches.is_empty() {
        return Ok(Submitted::default());
    }
    let done = backfill::submit(svc, ctx, batches).await?;
    if !done.jobs.is_empty() {
        let jobs = if done.jobs.len() == 1 { "job" } else { "jobs" };
        report::notice_line(&format!(
            "submitted {} pages ({} requests) in {} {} batch {jobs}; a later `tag-space --space {} --via batch` run collects them (see `tag-space jobs`)",
            done.pages,
            done.requests,
            done.jobs.len(),
            svc.name(),
            ctx.space,
        ));
    }
    Ok(done)
}

/// `--wait`: polls until no job is running, the bar showing the jobs' request counts.
async fn wait(
    config: &Config,
    svc: &AnyBatch,
    ctx: &JobsCtx<'_>,
    state: &RunState,
    taxonomy: &Taxonomy,
    opts: &RunOptions,
    session: &Session,
) -> anyhow::Result<Collected> {
    let wait_opts = WaitOptions {
        poll: config.batch.poll,
        events: opts.events.clone(),
        cancel: session.cancel.clone(),
    };
    let mut events = opts.events.subscribe();
    let progress = &session.progress;
    progress.start(!config.log.quiet, !config.no_color);
    let waited = tokio::select! {
        waited = backfill::wait(svc, ctx, &state.run, taxonomy, &wait_opts) => waited,
        never = progress.follow(&mut events) => match never {},
    };
    progress.drain(&mut events);
    Ok(waited?)
}

/// One line per job whose results are not (all) applied, and for the pages asked again.
fn tell_collected(c: &Collected, svc: &AnyBatch) {
    for job in &c.stale {
        report::warning_line(&format!(
            "batch job {} ({}) was made with another taxonomy, prompt or model: its results are not applied; its pages are classified again",
            job.id, job.spec.display_name
        ));
    }
    for job in &c.ended {
        report::warning_line(&format!(
            "batch job {} ({}) ended {}: its finished part is applied, the rest classified again",
            job.id, job.spec.display_name, job.state
        ));
    }
    if !c.labels.is_empty() {
        report::notice_line(&format!(
            "collected {} pages ({} requests) from {} batch jobs",
            c.labels.len(),
            c.requests,
            svc.name()
        ));
    }
    if !c.retry.is_empty() {
        report::warning_line(&format!(
            "{} pages got no usable answer from their batch job: they are classified again",
            c.retry.len()
        ));
    }
    if !c.running.is_empty() {
        report::notice_line(&format!(
            "{} batch jobs still running: a later --via batch run collects them",
            c.running.len()
        ));
    }
}

impl BatchRun {
    /// After the run: submits what it routed (a dry run says what it would submit).
    pub(super) async fn finish(&self, config: &Config, state: &RunState) -> anyhow::Result<()> {
        let routed = self.route.take();
        if routed.in_open_jobs > 0 {
            report::notice_line(&format!(
                "{} pages wait for open batch jobs (see `tag-space jobs`)",
                routed.in_open_jobs
            ));
        }
        if config.dry_run {
            let pages: usize = routed.batches.iter().map(Vec::len).sum();
            if pages > 0 {
                report::notice_line(&format!(
                    "dry run: {pages} pages ({} requests) would be submitted as batch jobs; none was",
                    routed.batches.len()
                ));
            }
            return Ok(());
        }
        let ctx = jobs_ctx(state, &config.space);
        submit(&self.svc, &ctx, routed.batches).await?;
        Ok(())
    }

    /// The batch service's answers in the provider's figures, priced at the batch rate.
    pub(super) fn add_usage(&self, providers: &mut [ProviderMetrics]) {
        let c = &self.collected;
        if let Some(p) = providers
            .iter_mut()
            .find(|p| p.provider() == self.svc.name())
        {
            p.add_batch(c.requests, c.labels.len() as u64, c.tokens_in, c.tokens_out);
        }
    }
}

impl BatchService for AnyBatch {
    fn name(&self) -> &'static str {
        match self {
            Self::Gemini(s) => s.name(),
            Self::OpenAi(s) => s.name(),
        }
    }

    fn model(&self) -> &str {
        match self {
            Self::Gemini(s) => s.model(),
            Self::OpenAi(s) => s.model(),
        }
    }

    fn limits(&self) -> Limits {
        match self {
            Self::Gemini(s) => s.limits(),
            Self::OpenAi(s) => s.limits(),
        }
    }

    fn encode(&self, request: &BatchRequest) -> Value {
        match self {
            Self::Gemini(s) => s.encode(request),
            Self::OpenAi(s) => s.encode(request),
        }
    }

    async fn create(&self, display_name: &str, lines: &[Value]) -> Result<JobStatus, BatchError> {
        match self {
            Self::Gemini(s) => s.create(display_name, lines).await,
            Self::OpenAi(s) => s.create(display_name, lines).await,
        }
    }

    async fn find(&self, display_name: &str) -> Result<Option<JobStatus>, BatchError> {
        match self {
            Self::Gemini(s) => s.find(display_name).await,
            Self::OpenAi(s) => s.find(display_name).await,
        }
    }

    async fn status(&self, id: &str) -> Result<JobStatus, BatchError> {
        match self {
            Self::Gemini(s) => s.status(id).await,
            Self::OpenAi(s) => s.status(id).await,
        }
    }

    async fn results(&self, id: &str) -> Result<JobResults, BatchError> {
        match self {
            Self::Gemini(s) => s.results(id).await,
            Self::OpenAi(s) => s.results(id).await,
        }
    }

    async fn cancel(&self, id: &str) -> Result<JobStatus, BatchError> {
        match self {
            Self::Gemini(s) => s.cancel(id).await,
            Self::OpenAi(s) => s.cancel(id).await,
        }
    }
}
