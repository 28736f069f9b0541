//! One space's run over a provider chain built once: the state file, the pipeline, the
//! report's data and how the run ended, without any end-of-run output. Shared by the three
//! ways a space is run: alone at a terminal (`app::run`), as one space of a run over several
//! (`app/spaces.rs`), and as a task of `tag-space serve` (`app/serve/runner.rs`); they
//! differ only in who follows the run's events ([`Front`]).

use std::cell::RefCell;
use std::time::{Instant, SystemTime};

use super::spaces::RunStop;
use super::{
    Session, batch_size, new_report, plan_out, providers_metrics, run_options, state, via_batch,
};
use crate::config::Config;
use crate::confluence::{ConfluenceError, PageSource};
use crate::ending::{OutageWatch, one_line};
use crate::events::{Event, EventSink};
use crate::governor::Chain;
use crate::llm::AnyProvider;
use crate::pipeline::{self, PageOutcome, RunOptions, RunState};
use crate::plan::Builder;
use crate::report;
use crate::report::OutputFormat;
use crate::report::model::{RunReport, RunStatus};
use crate::taxonomy::Taxonomy;
use tokio_util::sync::CancellationToken;

/// Who follows a space's run.
#[derive(Clone, Copy)]
pub(crate) enum Front<'a> {
    /// A single-space run at a terminal: the progress bar follows this run, page lines.
    Terminal,
    /// One space of a run over several: it stops with the run (its stop is a child of the
    /// run's), page lines name the space, and its pipeline's events go to the callback, which
    /// tells the run's bar (that follows the shared chain's events itself).
    Several(&'a RunStop, &'a dyn Fn(Event)),
    /// A task of `tag-space serve`: its own pipeline events and the shared chain's go to
    /// this callback; nothing to the terminal.
    Task(&'a dyn Fn(Event)),
}

/// One space's run: see the module docs.
pub(crate) struct SpaceRun<'a> {
    pub config: &'a Config,
    pub chain: &'a Chain<AnyProvider>,
    pub taxonomy: &'a Taxonomy,
    /// The stop (Ctrl-C, or a task's stop) and the progress bar (hidden for a task).
    pub session: &'a Session,
    pub front: Front<'a>,
    /// `--dry-run --plan`: the plan this space's pages go into. Alone, the space's run makes
    /// and saves it; with several spaces, the run does, once every space has gone through.
    pub plan: &'a RefCell<Option<Builder>>,
}

/// How one space's run ended, before any end-of-run output.
pub(crate) struct SpaceEnd {
    pub report: RunReport,
    /// Why the space's run failed, if it did.
    pub failure: Option<anyhow::Error>,
    pub state: Option<RunState>,
    /// What stops a run over several spaces (a total LLM outage, the site halting its
    /// work), if it happened here.
    pub fatal: Option<String>,
}

impl SpaceRun<'_> {
    /// Runs the space; `Err` only when the state file cannot be used, or a `--via batch`
    /// run cannot start.
    pub async fn run<S: PageSource>(&self, source: &S) -> anyhow::Result<SpaceEnd> {
        let (config, chain, taxonomy) = (self.config, self.chain, self.taxonomy);
        let started = Instant::now();
        let state = state::open(config, taxonomy)?;
        if let Some(state) = &state {
            state::resume_rungs(chain, state);
        }
        // Stopped by Ctrl-C or the task's stop (the session's token), by a total LLM outage
        // (this one), or with several spaces, by what stopped the whole run.
        let stop = match self.front {
            Front::Several(run, _) => run.token().child_token(),
            _ => self.session.cancel.child_token(),
        };
        let llm = OutageWatch::new(chain, stop.clone());
        let mut opts = self.options(state.clone(), stop);
        let batch = match config.batch.enabled {
            true => Some(
                via_batch::prepare(config, source, chain, taxonomy, &mut opts, self.session)
                    .await?,
            ),
            false => None,
        };
        let mut run_report = new_report(config, taxonomy);
        self.start_plan(state.is_some())?;
        let listed = self
            .follow(source, &llm, &opts, &mut |o| {
                run_report.record(o);
                if let Some(plan) = self.plan.borrow_mut().as_mut() {
                    plan.record(&config.space, o);
                }
            })
            .await;
        if let Some(state) = &state {
            state::remember_rungs(chain, state);
        }
        let submitted = match (&batch, &state) {
            (Some(b), Some(st)) if !self.session.cancel.is_cancelled() => {
                b.finish(config, st).await
            }
            _ => Ok(()),
        };
        run_report.set_providers(providers_metrics(chain, config, batch.as_ref()));
        if let Some(site) = source.site_stats() {
            run_report.set_confluence(site);
        }
        let end = Ended {
            listed,
            submitted,
            outage: llm.outage().map(|o| o.lines()),
            halted: source.halted(),
        };
        Ok(self.close(run_report, state, end, started))
    }

    /// The pipeline's options for this space, stopped by `stop`.
    fn options(&self, state: Option<RunState>, stop: CancellationToken) -> RunOptions {
        RunOptions {
            state,
            batch_size: batch_size(self.config, self.taxonomy),
            cancel: stop,
            // The pipeline and the providers tell one stream; the bar and the report follow
            // it. A task, or one of several spaces, has a stream of its own: other spaces'
            // pages are not its events.
            events: match self.front {
                Front::Terminal => self.chain.events().clone(),
                _ => EventSink::none(),
            },
            ..run_options(self.config)
        }
    }

    /// A run of one space starts the plan (if `--plan` asks for one); one of several adds its
    /// space to the plan the run started.
    fn start_plan(&self, has_state: bool) -> anyhow::Result<()> {
        match self.front {
            Front::Terminal => {
                *self.plan.borrow_mut() = plan_out::builder(self.config, self.taxonomy, has_state)?
            }
            _ => {
                if let Some(plan) = self.plan.borrow_mut().as_mut() {
                    plan.space(&self.config.space);
                }
            }
        }
        Ok(())
    }

    /// The report's end, from how the pipeline and the batch jobs ended.
    fn close(
        &self,
        mut run_report: RunReport,
        state: Option<RunState>,
        end: Ended,
        started: Instant,
    ) -> SpaceEnd {
        match (self.front, &end.listed) {
            (Front::Terminal, _) => {
                run_report.set_pages_listed(self.session.progress.pages_taken())
            }
            (_, Ok(n)) => run_report.set_pages_listed(*n),
            (_, Err(_)) => {}
        }
        let elsewhere = match self.front {
            Front::Several(run, _) => run.stopped_by(),
            _ => None,
        };
        let (failure, status) = ending(
            self.session.cancel.is_cancelled(),
            end.listed,
            end.outage.clone().or(elsewhere),
            end.halted.clone(),
            &self.config.space,
        );
        let (failure, status) = or_failed((failure, status), end.submitted);
        let (failure, status) = match self.front {
            Front::Terminal => {
                let plan = self.plan.borrow_mut().take();
                or_failed((failure, status), plan_out::save(self.config, plan, status))
            }
            _ => (failure, status),
        };
        run_report.set_end(status, failure.as_ref().map(one_line));
        if let Some(state) = &state {
            run_report.set_cache(state::metrics(state));
        }
        run_report.finish(SystemTime::now(), started.elapsed());
        let halted = end.halted;
        let fatal = end
            .outage
            .or_else(|| halted.map(|h| format!("Confluence stopped the run's work: {h}")));
        SpaceEnd {
            report: run_report,
            failure,
            state,
            fatal,
        }
    }

    /// Runs the pipeline: each outcome goes into the report (and, for the table, a page
    /// line) while the front follows the run's events; the front has seen all of them after.
    async fn follow<S: PageSource>(
        &self,
        source: &S,
        llm: &OutageWatch<'_, AnyProvider>,
        opts: &RunOptions,
        record: &mut dyn FnMut(&PageOutcome),
    ) -> Result<u64, crate::confluence::ConfluenceError> {
        let config = self.config;
        let page_lines =
            config.format == OutputFormat::Table && !matches!(self.front, Front::Task(_));
        let space = matches!(self.front, Front::Several(..)).then_some(config.space.as_str());
        let mut events = self.subscribe(opts);
        let run = pipeline::run(source, llm, self.taxonomy, opts, |outcome| {
            record(&outcome);
            if page_lines && (!config.log.quiet || outcome.status == pipeline::Status::Failed) {
                report::print_page_line(space, &outcome, config.dry_run);
            }
        });
        // The site stopped the run's Confluence work (a quota spent, a wait above the
        // ceiling): stop taking pages, as on an LLM outage.
        let halt_watch = async {
            if let Some(halted) = source.halt_token() {
                halted.cancelled().await;
                opts.cancel.cancel();
            }
            std::future::pending::<std::convert::Infallible>().await
        };
        let listed = tokio::select! {
            listed = run => listed,
            never = self.watch(&mut events) => match never {},
            never = halt_watch => match never {},
        };
        self.drain(&mut events);
        listed
    }

    /// The streams this front follows: the run's at a terminal, the space's own with several
    /// spaces (the run's bar follows the chain's), the task's own and the shared chain's for a
    /// task.
    fn subscribe(&self, opts: &RunOptions) -> Vec<tokio::sync::mpsc::UnboundedReceiver<Event>> {
        let config = self.config;
        match self.front {
            Front::Several(..) => vec![opts.events.subscribe()],
            Front::Terminal => {
                let events = opts.events.subscribe();
                self.session
                    .progress
                    .start(!config.log.quiet, !config.no_color);
                vec![events]
            }
            Front::Task(_) => vec![opts.events.subscribe(), self.chain.events().subscribe()],
        }
    }

    async fn watch(
        &self,
        events: &mut [tokio::sync::mpsc::UnboundedReceiver<Event>],
    ) -> std::convert::Infallible {
        match (self.front, events) {
            (Front::Terminal, [events]) => self.session.progress.follow(events).await,
            (Front::Several(_, forward), [own]) => loop {
                match own.recv().await {
                    Some(e) => forward(e),
                    None => std::future::pending().await,
                }
            },
            (Front::Task(forward), [own, shared]) => loop {
                let event = tokio::select! {
                    Some(e) = own.recv() => e,
                    Some(e) = shared.recv() => e,
                    else => std::future::pending().await,
                };
                forward(event);
            },
            _ => std::future::pending().await,
        }
    }

    /// The events sent before the run ended and not yet seen (a task's shared stream is
    /// left: other tasks' waits after this one's end are not its events).
    fn drain(&self, events: &mut [tokio::sync::mpsc::UnboundedReceiver<Event>]) {
        match (self.front, events) {
            (Front::Terminal, [events]) => self.session.progress.drain(events),
            (Front::Task(forward), [own, _]) | (Front::Several(_, forward), [own]) => {
                while let Ok(e) = own.try_recv() {
                    forward(e);
                }
            }
            _ => {}
        }
    }
}

/// How the pipeline and the batch jobs ended, for [`SpaceRun::close`].
struct Ended {
    listed: Result<u64, ConfluenceError>,
    submitted: anyhow::Result<()>,
    outage: Option<String>,
    halted: Option<String>,
}

/// The first failure wins: a later step that fails turns a run that had none into a failed one.
fn or_failed(
    (failure, status): (Option<anyhow::Error>, RunStatus),
    then: anyhow::Result<()>,
) -> (Option<anyhow::Error>, RunStatus) {
    match then {
        Err(e) if failure.is_none() => (Some(e), RunStatus::Failed),
        _ => (failure, status),
    }
}

/// Why the run failed, if it did, and how it ended. The user's stop wins (exit 130): what
/// failed after it may be the stop's doing.
fn ending(
    cancelled: bool,
    listed: Result<u64, ConfluenceError>,
    outage: Option<String>,
    confluence_halt: Option<String>,
    space: &str,
) -> (Option<anyhow::Error>, RunStatus) {
    let failure: Option<anyhow::Error> = if cancelled {
        None
    } else if let Err(e) = listed {
        let failure = match e {
            // No HTTP answer at all: the address, or the way to it, is what to check. (This
            // error carries its cause as text: adding to its message repeats nothing.)
            ConfluenceError::Transport { .. } => anyhow::anyhow!(
                "{e}: check CONFLUENCE_BASE_URL, and that this machine can reach the site"
            ),
            e => anyhow::Error::new(e),
        };
        Some(failure.context(format!("the run over space {space} stopped early")))
    } else if let Some(halt) = confluence_halt {
        Some(anyhow::anyhow!(
            "the run over space {space} stopped early: {halt}"
        ))
    } else {
        outage.map(|o| anyhow::anyhow!("{o}"))
    };
    let status = match (&failure, cancelled) {
        (_, true) => RunStatus::Interrupted,
        (Some(_), false) => RunStatus::Failed,
        (None, false) => RunStatus::Finished,
    };
    (failure, status)
}
