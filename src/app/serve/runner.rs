//! The service's [`TaskRunner`]: the CLI's run (space lookup, run lock, state file, pipeline,
//! run history), without the terminal, over ONE provider chain built at start and shared by
//! every task, so that every task is paced by the same governors.

use std::sync::Arc;

use anyhow::Context;
use futures::FutureExt;
use futures::future::{BoxFuture, LocalBoxFuture};
use tokio::sync::mpsc;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::super::space_run::{Front, SpaceRun};
use super::super::{Session, build_chain, lock, run_end, space, statedir};
use crate::config::Config;
use crate::confluence::PageSource;
use crate::ending::{one_line, record_end};
use crate::events::Event;
use crate::governor::Chain;
use crate::llm::AnyProvider;
use crate::pipeline::{self, PageOutcome};
use crate::report::model::status_str;
use crate::report::progress::Progress;
use crate::serve::{Mode, PageDetail, RunEnd, TaskEvent, TaskEvents, TaskRequest, TaskRunner};
use crate::taxonomy::Taxonomy;

/// Runs tasks through the pipeline over one shared provider chain.
///
/// The pipeline's future is not `Send` (its batches are local futures), so every task runs
/// on one thread of the runner's own, each as a local task there, while the HTTP side stays
/// on the multi-threaded runtime. The work is waiting on the network; one thread keeps up.
pub struct PipelineRunner {
    config: Config,
    chain: Arc<Chain<AnyProvider>>,
    taxonomy: Arc<Taxonomy>,
    jobs: mpsc::UnboundedSender<Job>,
}

/// A task for the runner's thread: builds its future there.
type Job = Box<dyn FnOnce() -> LocalBoxFuture<'static, ()> + Send>;

impl PipelineRunner {
    /// Checks the state file's folder, loads the taxonomy and builds the provider chain, once.
    pub fn new(mut config: Config) -> anyhow::Result<Self> {
        statedir::check(&mut config)?;
        let taxonomy = Arc::new(match &config.taxonomy_path {
            Some(path) => Taxonomy::load(path)?,
            None => Taxonomy::embedded(),
        });
        let chain = Arc::new(build_chain(&config, &taxonomy, config.demo_delay)?);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the tasks' runtime")?;
        let (jobs, mut rx) = mpsc::unbounded_channel::<Job>();
        std::thread::Builder::new()
            .name("tag-space-tasks".into())
            .spawn(move || {
                let local = tokio::task::LocalSet::new();
                local.block_on(&runtime, async move {
                    while let Some(job) = rx.recv().await {
                        tokio::task::spawn_local(job());
                    }
                });
            })
            .context("cannot start the tasks' thread")?;
        Ok(Self {
            config,
            chain,
            taxonomy,
            jobs,
        })
    }

    /// The run settings (state file path included) the tasks start from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The shared providers' figures.
    pub fn stats(&self) -> Vec<crate::governor::ProviderStats> {
        self.chain.stats()
    }
}

impl TaskRunner for PipelineRunner {
    fn run(
        &self,
        request: TaskRequest,
        cancel: CancellationToken,
        events: TaskEvents,
    ) -> BoxFuture<'static, RunEnd> {
        let config = task_config(&self.config, &request);
        let chain = self.chain.clone();
        let taxonomy = self.taxonomy.clone();
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            async move {
                let end = match run_task(config, &chain, &taxonomy, cancel, &events).await {
                    Ok(end) => end,
                    Err(e) => RunEnd {
                        error: Some(one_line(&e)),
                        metrics: None,
                    },
                };
                let _ = tx.send(end);
            }
            .boxed_local()
        });
        let sent = self.jobs.send(job).is_ok();
        async move {
            match rx.await {
                Ok(end) if sent => end,
                _ => RunEnd {
                    error: Some("the tasks' thread stopped".into()),
                    metrics: None,
                },
            }
        }
        .boxed()
    }

    fn provider_metrics(&self) -> String {
        crate::serve::metrics::providers(&self.chain.stats())
    }
}

/// The service's run settings with the request's space, dry run, mode, limit and batch size.
fn task_config(base: &Config, request: &TaskRequest) -> Config {
    let mut config = base.clone();
    config.space.clone_from(&request.space);
    config.dry_run = request.dry_run;
    config.sync = request.mode == Mode::Sync;
    config.limit = request.limit;
    if let Some(n) = request.batch_size {
        config.batch_size = n;
    }
    config.reports.clear();
    config
}

/// The space on its site (or the demo's), under its run lock.
async fn run_task(
    mut config: Config,
    chain: &Chain<AnyProvider>,
    taxonomy: &Taxonomy,
    cancel: CancellationToken,
    events: &TaskEvents,
) -> anyhow::Result<RunEnd> {
    if config.demo && config.space != crate::demo::SPACE_KEY {
        anyhow::bail!(
            "space {} is not served by the demo: the demo has only space {}",
            config.space,
            crate::demo::SPACE_KEY
        );
    }
    let client = if config.demo {
        None
    } else {
        Some(space::connect(&mut config).await?)
    };
    let _lock = lock::take(&config, &cancel).await?;
    let run = TaskRun {
        config: &config,
        chain,
        taxonomy,
        cancel,
        events,
    };
    match client {
        None => {
            let source = statedir::demo_source(&config, config.demo_edit);
            run.execute(&source).await
        }
        Some(source) => run.execute(&source).await,
    }
}

struct TaskRun<'a> {
    config: &'a Config,
    chain: &'a Chain<AnyProvider>,
    taxonomy: &'a Taxonomy,
    cancel: CancellationToken,
    events: &'a TaskEvents,
}

impl TaskRun<'_> {
    /// The CLI's space run ([`SpaceRun`]), with the task's events instead of the terminal,
    /// and its end recorded in the run history.
    async fn execute<S: PageSource>(&self, source: &S) -> anyhow::Result<RunEnd> {
        let session = Session {
            cancel: self.cancel.clone(),
            // Hidden: a task shows nothing on the service's terminal.
            progress: Progress::new(),
        };
        let dry_run = self.config.dry_run;
        let forward = |event: Event| {
            if let Some(e) = task_event(event, dry_run) {
                self.events.emit(e);
            }
        };
        let run = SpaceRun {
            config: self.config,
            chain: self.chain,
            taxonomy: self.taxonomy,
            session: &session,
            front: Front::Task(&forward),
            plan: &Default::default(),
        };
        let end = run.run(source).await?;
        if let Some(state) = &end.state {
            record_end(state, &run_end(end.failure.as_ref(), &end.report));
        }
        let json = crate::report::json::to_json_value(&end.report);
        Ok(RunEnd {
            error: end.failure.as_ref().map(one_line),
            metrics: json.get("metrics").cloned(),
        })
    }
}

/// The run event as a task's event stream tells it; `None` for those it leaves out (each
/// request sent and answered, pacing changes: `/metrics` counts them).
fn task_event(event: Event, dry_run: bool) -> Option<TaskEvent> {
    Some(match event {
        Event::Listed { taken } => TaskEvent::Listed { taken },
        Event::ListingEnded { total } => TaskEvent::Total { total },
        Event::Page(o) => TaskEvent::Page(detail(&o, dry_run)),
        Event::Wait {
            provider,
            reason,
            until,
        } => TaskEvent::Wait {
            provider: provider.into(),
            reason: reason.as_str().into(),
            ms: until.map(|u| {
                u.saturating_duration_since(tokio::time::Instant::now())
                    .as_millis() as u64
            }),
        },
        Event::Retry {
            provider,
            attempt,
            kind,
        } => TaskEvent::Retry {
            provider: provider.into(),
            attempt,
            kind: crate::governor::kind_name(kind).into(),
        },
        Event::Fallback { from, to, pages } => TaskEvent::Fallback {
            from: from.into(),
            to: to.into(),
            pages,
        },
        Event::Unavailable { provider, reason } => TaskEvent::Unavailable {
            provider: provider.into(),
            reason,
        },
        Event::Classifying { .. }
        | Event::Sent { .. }
        | Event::Answered { .. }
        | Event::Pacing { .. }
        | Event::Finished { .. }
        | Event::BatchJobs { .. } => return None,
    })
}

/// One page's outcome in the old field names.
fn detail(o: &PageOutcome, dry_run: bool) -> PageDetail {
    let failed = o.status == pipeline::Status::Failed;
    PageDetail {
        id: o.id.clone(),
        title: o.title.clone(),
        status: status_str(o.status).into(),
        labels_before: o.labels_before.clone(),
        added: if dry_run { Vec::new() } else { o.added.clone() },
        proposed: if dry_run { o.added.clone() } else { Vec::new() },
        removed: o.removed.clone(),
        provider: o.provider.map(|p| p.name().to_string()),
        error: o.reason.clone().filter(|_| failed),
        reason: o.reason.clone().filter(|_| !failed),
    }
}
