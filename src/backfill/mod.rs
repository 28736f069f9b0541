//! Backfills through the providers' batch services: [`submit`] the pages that need
//! classifying as one or more jobs, and later [`collect`] the answers into the cache.
//!
//! The seam for the pipeline (`--via batch`):
//!
//! ```text
//! submit run   pages = the cache misses, after the ledger, exactly as a normal run finds them
//!              batches = the micro-batcher's batches, each page with its CacheKey
//!              submit(&service, &ctx, batches)         // records, then creates the jobs
//! collect run  c = collect(&service, &ctx, &run, &taxonomy)
//!              c.labels: validated and already in the cache: the normal pipeline then finds
//!                        every one of them as a hit and applies (or proposes) them
//!              c.retry:  failed lines and pages the answers left out: classify interactively
//!              c.running / c.stale / c.ended: report them
//! ```
//!
//! Every job is recorded in the state file before its create call is sent, and a job whose
//! create may have gone through is looked up by its display name before anything is sent
//! again ([`reconcile`]), so a crash never makes two jobs. Pages already covered by an open
//! job are not submitted again.

mod plan;
mod show;
mod wait;

use std::collections::{BTreeMap, HashSet};

use crate::cache::{CacheError, CacheKey, Classification, JobRecord, JobSpec, RequestRecord};
use crate::cache::{Run, Setup, Store};
use crate::llm::batch::{BatchError, BatchRequest, BatchService, JobResults, JobState};
use crate::llm::validate::validate;
use crate::llm::{Answer, PageText};
use crate::taxonomy::Taxonomy;

pub use plan::plan;
pub use show::{cancel_job, write_jobs};
pub use wait::{WaitOptions, wait};

/// A page to classify through a batch job, with the cache key its answer is stored under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchPage {
    pub text: PageText,
    pub key: CacheKey,
}

/// Where the jobs belong: the state file, the space, and the setup the answers are for.
#[derive(Debug, Clone, Copy)]
pub struct JobsCtx<'a> {
    pub store: &'a Store,
    pub space: &'a str,
    /// The taxonomy fingerprint and prompt version the requests are built with.
    pub setup: &'a Setup,
}

/// What [`submit`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Submitted {
    /// The jobs created by this call (local ids).
    pub jobs: Vec<i64>,
    pub requests: usize,
    pub pages: usize,
    /// Pages left out because an open job already covers them.
    pub already_pending: usize,
    /// Jobs whose lost create was found again at the provider by [`reconcile`].
    pub found_again: usize,
}

/// What [`collect`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Collected {
    /// Validated labels per page, already stored in the cache.
    pub labels: BTreeMap<String, Vec<String>>,
    /// Pages to classify again interactively, with why.
    pub retry: Vec<(String, String)>,
    /// Jobs not finished yet.
    pub running: Vec<JobRecord>,
    /// Jobs made for another taxonomy, prompt or model: their results are not applied.
    pub stale: Vec<JobRecord>,
    /// Jobs that ended without results (failed) or with part of them (cancelled, expired).
    pub ended: Vec<JobRecord>,
    /// Requests answered by a job and their tokens, for the report's batch price.
    pub requests: u64,
    pub tokens_in: u64,
    pub tokens_out: u64,
}

/// The state file or a batch service failed.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error(transparent)]
    Store(#[from] CacheError),
    #[error("batch job {display_name}")]
    Service {
        display_name: String,
        #[source]
        source: BatchError,
    },
}

fn service_err(display_name: &str) -> impl FnOnce(BatchError) -> BackfillError + '_ {
    move |source| BackfillError::Service {
        display_name: display_name.to_string(),
        source,
    }
}

/// Settles every job of this space and provider still 'creating' (its create may or may not
/// have reached the provider): found by display name → recorded with its id; not found →
/// 'not_created', so its pages are submitted again. Returns how many were found.
pub async fn reconcile<S: BatchService>(
    svc: &S,
    ctx: &JobsCtx<'_>,
) -> Result<usize, BackfillError> {
    let mut found = 0;
    for job in ctx.store.jobs(Some(ctx.space))? {
        if job.state != "creating" || job.spec.provider != svc.name() {
            continue;
        }
        let name = job.spec.display_name.as_str();
        match svc.find(name).await.map_err(service_err(name))? {
            Some(status) => {
                tracing::info!(job = name, id = %status.id, "a batch job whose create was cut short exists: keeping it");
                ctx.store
                    .job_created(job.id, &status.id, status.state.as_str())?;
                found += 1;
            }
            None => ctx
                .store
                .job_not_created(job.id, "the create never reached the provider")?,
        }
    }
    Ok(found)
}

/// Submits `batches` (each becomes one request, as one interactive call would carry it) as
/// one or more jobs within the service's limits.
pub async fn submit<S: BatchService>(
    svc: &S,
    ctx: &JobsCtx<'_>,
    batches: Vec<Vec<BatchPage>>,
) -> Result<Submitted, BackfillError> {
    let mut out = Submitted {
        found_again: reconcile(svc, ctx).await?,
        ..Submitted::default()
    };
    let pending = pending_keys(svc, ctx)?;
    let mut requests = Vec::new();
    for batch in batches {
        let before = batch.len();
        let batch: Vec<BatchPage> = batch
            .into_iter()
            .filter(|p| !pending.contains(&p.key))
            .collect();
        out.already_pending += before - batch.len();
        if !batch.is_empty() {
            requests.push(batch);
        }
    }
    let lines: Vec<(RequestRecord, serde_json::Value)> = requests
        .into_iter()
        .enumerate()
        .map(|(i, pages)| {
            let key = format!("r{i}");
            let line = svc.encode(&BatchRequest {
                key: key.clone(),
                pages: pages.iter().map(|p| p.text.clone()).collect(),
            });
            let pages = pages.into_iter().map(|p| (p.text.id, p.key)).collect();
            (RequestRecord { key, pages }, line)
        })
        .collect();
    let sizes: Vec<usize> = lines.iter().map(|(_, l)| l.to_string().len() + 1).collect();
    let stamp = format!("{}-{:04x}", unix_now(), rand::random::<u16>());
    for (n, chunk) in plan(&sizes, svc.limits()).into_iter().enumerate() {
        let (records, lines): (Vec<_>, Vec<_>) = lines[chunk].iter().cloned().unzip();
        let spec = JobSpec {
            display_name: format!("tag-space-{}-{stamp}-{n}", ctx.space),
            provider: svc.name().to_string(),
            model: svc.model().to_string(),
            space: ctx.space.to_string(),
            taxonomy_fingerprint: ctx.setup.taxonomy_fingerprint.clone(),
            prompt_version: ctx.setup.prompt_version.clone(),
        };
        out.jobs
            .push(create_one(svc, ctx.store, &spec, &records, &lines).await?);
        out.requests += records.len();
        out.pages += records.iter().map(|r| r.pages.len()).sum::<usize>();
    }
    Ok(out)
}

/// Records one job, then creates it. A create that may have gone through stays 'creating'
/// (the next [`reconcile`] looks it up); a clear refusal is recorded as 'not_created'.
async fn create_one<S: BatchService>(
    svc: &S,
    store: &Store,
    spec: &JobSpec,
    records: &[RequestRecord],
    lines: &[serde_json::Value],
) -> Result<i64, BackfillError> {
    let id = store.record_job(spec, records)?;
    match svc.create(&spec.display_name, lines).await {
        Ok(status) => {
            store.job_created(id, &status.id, status.state.as_str())?;
            tracing::info!(job = %spec.display_name, id = %status.id, requests = records.len(), "batch job created");
            Ok(id)
        }
        Err(e) => {
            if !e.may_exist() {
                store.job_not_created(id, &one_line(&e))?;
            }
            Err(service_err(&spec.display_name)(e))
        }
    }
}

/// Cache keys covered by this space's open jobs (created or maybe created, not collected)
/// of the same setup: submitting them again would pay twice.
pub fn pending_keys<S: BatchService>(
    svc: &S,
    ctx: &JobsCtx<'_>,
) -> Result<HashSet<CacheKey>, CacheError> {
    let mut keys = HashSet::new();
    for job in ctx.store.jobs(Some(ctx.space))? {
        let open = !job.collected && !matches!(job.state.as_str(), "not_created" | "failed");
        if open && is_stale(&job, svc, ctx.setup).is_none() {
            for r in ctx.store.job_requests(job.id)? {
                keys.extend(r.pages.into_iter().map(|(_, k)| k));
            }
        }
    }
    Ok(keys)
}

fn is_stale<S: BatchService>(job: &JobRecord, svc: &S, setup: &Setup) -> Option<String> {
    if job.spec.taxonomy_fingerprint != setup.taxonomy_fingerprint {
        Some("made with another taxonomy".into())
    } else if job.spec.prompt_version != setup.prompt_version {
        Some("made with another prompt version".into())
    } else if job.spec.provider != svc.name() || job.spec.model != svc.model() {
        Some(format!("made for {}/{}", job.spec.provider, job.spec.model))
    } else {
        None
    }
}

/// Polls this space's open jobs once; downloads, validates and stores the answers of the
/// finished ones. Stale jobs are reported and their results never applied.
pub async fn collect<S: BatchService>(
    svc: &S,
    ctx: &JobsCtx<'_>,
    run: &Run,
    taxonomy: &Taxonomy,
) -> Result<Collected, BackfillError> {
    reconcile(svc, ctx).await?;
    let mut out = Collected::default();
    for job in ctx.store.jobs(Some(ctx.space))? {
        let Some(job_id) = job.job_id.clone().filter(|_| !job.collected) else {
            continue;
        };
        if job.spec.provider != svc.name() {
            continue;
        }
        if let Some(why) = is_stale(&job, svc, ctx.setup) {
            tracing::warn!(job = %job.spec.display_name, "batch job {why}: its results are not applied");
            ctx.store.job_collected(job.id, Some("stale"), Some(&why))?;
            out.stale.push(job);
            continue;
        }
        let name = job.spec.display_name.as_str();
        let status = svc.status(&job_id).await.map_err(service_err(name))?;
        let (ok, failed) = (status.counts.succeeded, status.counts.failed);
        ctx.store
            .update_job(job.id, status.state.as_str(), ok, failed)?;
        if !status.state.is_terminal() {
            out.running.push(job);
            continue;
        }
        let results = if status.state.has_results() {
            svc.results(&job_id).await.map_err(service_err(name))?
        } else {
            JobResults::new()
        };
        let why_none = format!("no answer: the batch job {}", status.state.as_str());
        take_results(ctx, run, taxonomy, &job, results, &why_none, &mut out)?;
        let note = (status.state != JobState::Succeeded).then_some(why_none.as_str());
        ctx.store.job_collected(job.id, None, note)?;
        if status.state != JobState::Succeeded {
            out.ended.push(job);
        }
    }
    Ok(out)
}

/// Validates each request's answer against the pages it covers, stores the labels under
/// each page's cache key, and lists the pages to classify again.
fn take_results(
    ctx: &JobsCtx<'_>,
    run: &Run,
    taxonomy: &Taxonomy,
    job: &JobRecord,
    mut results: JobResults,
    why_none: &str,
    out: &mut Collected,
) -> Result<(), CacheError> {
    for request in ctx.store.job_requests(job.id)? {
        let answer = match results.remove(&request.key) {
            Some(Ok(answer)) => answer,
            Some(Err(e)) => {
                let why = one_line(&e);
                out.retry.extend(
                    request
                        .pages
                        .iter()
                        .map(|(id, _)| (id.clone(), why.clone())),
                );
                continue;
            }
            None => {
                out.retry.extend(
                    request
                        .pages
                        .iter()
                        .map(|(id, _)| (id.clone(), why_none.to_string())),
                );
                continue;
            }
        };
        out.requests += 1;
        let entries = validated_entries(taxonomy, &request, &answer, out);
        ctx.store.store_batch(run, &entries)?;
    }
    Ok(())
}

fn validated_entries(
    taxonomy: &Taxonomy,
    request: &RequestRecord,
    answer: &Answer,
    out: &mut Collected,
) -> Vec<(CacheKey, Classification)> {
    // Validation reads only the ids of the batch.
    let batch: Vec<PageText> = request
        .pages
        .iter()
        .map(|(id, _)| PageText {
            id: id.clone(),
            title: String::new(),
            text: String::new(),
        })
        .collect();
    let v = validate(&batch, answer, taxonomy);
    for d in &v.dropped {
        tracing::warn!(provider = answer.provider, "{d}");
    }
    let usage = answer.usage.unwrap_or_default();
    out.tokens_in += usage.input_tokens;
    out.tokens_out += usage.output_tokens;
    let share = |t: u64| t / request.pages.len().max(1) as u64;
    let mut entries = Vec::new();
    for (id, key) in &request.pages {
        match v.labels_for(id) {
            Some(labels) => {
                out.labels.insert(id.clone(), labels.to_vec());
                entries.push((
                    *key,
                    Classification::new(
                        labels.to_vec(),
                        answer.provider,
                        answer.model.clone(),
                        share(usage.input_tokens),
                        share(usage.output_tokens),
                    ),
                ));
            }
            None => out
                .retry
                .push((id.clone(), "the batch answer left this page out".into())),
        }
    }
    entries
}

/// An error and its causes on one line (they are stored and shown in `tag-space jobs`).
fn one_line(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    crate::http::snippet(&s)
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
