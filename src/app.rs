//! The composition root: turns flags and settings into concrete parts (page source,
//! provider chain, taxonomy), runs the pipeline and reports. With `main.rs` and `ending.rs`,
//! the only place that uses `anyhow`.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::cache::{self, RunEnd, RunMode, Setup, Store, StoreOptions};
use crate::cli::{Args, CacheCommand, OutputFormat};
use crate::config::{Config, ProviderSettings};
use crate::confluence::PageSource;
use crate::ending::{OutageWatch, exit_code, one_line, record_end, write_reports};
use crate::governor::ProviderStats;
use crate::governor::{Chain, Governed, GovernorConfig};
use crate::llm::AnyProvider;
use crate::llm::gemini::GeminiProvider;
use crate::llm::openai::OpenAiProvider;
use crate::llm::rules::RulesProvider;
use crate::pipeline::{self, RunOptions, RunState};
use crate::report;
use crate::report::model::{
    CacheMetrics, Mode, ProviderMetrics, RunInfo, RunReport, RunStatus, Settings,
};
use crate::report::progress::Progress;
use crate::taxonomy::Taxonomy;

mod space;
mod statedir;

/// Characters of page text in one request: enough for a full batch of full pages, bounded so
/// that one request stays well inside every provider's context window.
const MAX_BATCH_CHARS: usize = 60_000;

/// After an interruption, batches already with a provider get this long to finish.
pub const INTERRUPT_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// What the binary hands a run besides its flags: the token its signal handler cancels on
/// Ctrl-C/SIGTERM, and the progress bar.
#[derive(Clone, Default)]
pub struct Session {
    pub cancel: CancellationToken,
    pub progress: Progress,
}

/// Runs tag-space with these flags. `Ok` carries the run's report (the caller maps failed
/// pages to exit 1); `Err` is a usage, configuration or fatal error (exit 2).
pub async fn run(args: Args) -> anyhow::Result<RunReport> {
    run_with(args, Session::default()).await
}

/// [`run`], interruptible through `session.cancel` and showing `session.progress`.
pub async fn run_with(args: Args, session: Session) -> anyhow::Result<RunReport> {
    let mut config = Config::load(&args)?;
    for w in &config.warnings {
        report::warning_line(w);
    }
    statedir::check(&mut config)?;
    let taxonomy = Arc::new(match &config.taxonomy_path {
        Some(path) => Taxonomy::load(path)?,
        None => Taxonomy::embedded(),
    });
    let demo_delay = std::time::Duration::from_millis(args.demo_delay_ms.unwrap_or(0));
    let chain = build_chain(&config, &taxonomy, demo_delay)?;
    // Before the lock: the lock, the state file and the reports use the key as the site
    // spells it.
    let client = if config.demo {
        None
    } else {
        Some(space::connect(&mut config).await?)
    };
    let _lock = take_lock(&config, &args, &session.cancel).await?;
    match client {
        None => {
            let source = statedir::demo_source(&config, args.demo_edit.unwrap_or(0));
            execute(&config, &args, &source, &chain, &taxonomy, &session).await
        }
        Some(source) => execute(&config, &args, &source, &chain, &taxonomy, &session).await,
    }
}

/// The providers in priority order (Gemini, then OpenAI, then the keyword rules), each behind
/// its own governor.
fn build_chain(
    config: &Config,
    taxonomy: &Arc<Taxonomy>,
    rules_delay: std::time::Duration,
) -> anyhow::Result<Chain<AnyProvider>> {
    let governed = |inner: AnyProvider, settings: Option<&ProviderSettings>| {
        let defaults = GovernorConfig::default();
        Governed::new(
            inner,
            GovernorConfig {
                initial_concurrency: config.concurrency,
                max_concurrency: config.max_concurrency,
                max_cooldown: config.max_cooldown,
                quota: settings.map_or(defaults.quota, |s| s.quota),
                max_output_tokens: settings
                    .map_or(defaults.max_output_tokens, |s| s.max_output_tokens),
                ..defaults
            },
        )
    };
    let mut providers = Vec::new();
    if let Some(s) = &config.gemini {
        let p = GeminiProvider::new(s.clone(), taxonomy.clone())
            .context("cannot set up the Gemini client")?;
        providers.push(governed(AnyProvider::Gemini(p), Some(s)));
    }
    if let Some(s) = &config.openai {
        let p = OpenAiProvider::new(s.clone(), taxonomy.clone())
            .context("cannot set up the OpenAI client")?
            .with_structured(config.openai_structured);
        providers.push(governed(AnyProvider::OpenAi(p), Some(s)));
    }
    if config.rules {
        providers.push(governed(
            AnyProvider::Rules(RulesProvider::new(taxonomy.clone()).with_delay(rules_delay)),
            None,
        ));
    }
    Ok(Chain::new(providers))
}

async fn execute<S: PageSource>(
    config: &Config,
    args: &Args,
    source: &S,
    chain: &Chain<AnyProvider>,
    taxonomy: &Taxonomy,
    session: &Session,
) -> anyhow::Result<RunReport> {
    let progress = &session.progress;
    let started = Instant::now();
    // Every page of a request repeats every tag in the schema; keep the schema inside what
    // providers accept.
    let schema_cap = crate::llm::prompt::max_pages_per_request(taxonomy);
    if config.batch_size > schema_cap {
        report::warning_line(&format!(
            "batch size {} lowered to {schema_cap}: with {} tags a larger request's schema is too big for the providers",
            config.batch_size,
            taxonomy.tag_names().count()
        ));
    }
    let state = open_state(config, taxonomy)?;
    if let Some(state) = &state {
        resume_rungs(chain, state);
    }
    // Stopped by Ctrl-C (through the session's token) or by a total LLM outage (this one).
    let stop = session.cancel.child_token();
    let llm = OutageWatch::new(chain, stop.clone());
    let opts = RunOptions {
        state: state.clone(),
        sync: config.sync,
        space: config.space.clone(),
        dry_run: config.dry_run,
        limit: config.limit,
        batch_size: config.batch_size.min(schema_cap),
        max_batch_chars: MAX_BATCH_CHARS,
        max_page_chars: config.max_page_chars,
        // Twice the governor's ceiling: the governor, not the pipeline, limits requests.
        max_in_flight: config.max_concurrency * 2,
        grace: INTERRUPT_GRACE,
        cancel: stop,
        listed: progress.listed_counter(),
        total: progress.total_cell(),
    };
    let mut run_report = RunReport::new(
        RunInfo::new(
            &config.space,
            if config.sync { Mode::Sync } else { Mode::Add },
            config.dry_run,
            SystemTime::now(),
        ),
        Settings::from_config(config, taxonomy.fingerprint()),
    );
    if config.reports.is_empty() && config.format == OutputFormat::Table {
        // Only the table is wanted: keep counts, not a record per page.
        run_report = run_report.counts_only();
    }
    let page_lines = config.format == OutputFormat::Table;
    progress.start(!args.quiet, !config.no_color);
    let run = pipeline::run(source, &llm, taxonomy, &opts, |outcome| {
        progress.page_done();
        run_report.record(&outcome);
        if page_lines && (!args.quiet || outcome.status == pipeline::Status::Failed) {
            report::print_page_line(&outcome, config.dry_run);
        }
    });
    let listed = tokio::select! {
        listed = run => listed,
        never = tick_progress(progress, chain) => match never {},
    };
    if let Some(state) = &state {
        remember_rungs(chain, state);
    }
    run_report.set_providers(
        chain
            .providers()
            .iter()
            .map(|p| {
                let mut m = provider_metrics(&p.stats(), config);
                m.structured_output = p.inner().ladder().map(|l| l.current_name().to_string());
                m
            })
            .collect(),
    );
    run_report.set_pages_listed(opts.listed.load(std::sync::atomic::Ordering::Relaxed));
    // The user's stop wins (exit 130): what failed after it may be the stop's doing.
    let failure: Option<anyhow::Error> = if session.cancel.is_cancelled() {
        None
    } else if let Err(e) = listed {
        Some(
            anyhow::Error::new(e)
                .context(format!("the run over space {} stopped early", config.space)),
        )
    } else {
        llm.outage().map(|o| anyhow::anyhow!("{}", o.lines()))
    };
    let status = match (&failure, session.cancel.is_cancelled()) {
        (_, true) => RunStatus::Interrupted,
        (Some(_), false) => RunStatus::Failed,
        (None, false) => RunStatus::Finished,
    };
    run_report.set_end(status, failure.as_ref().map(one_line));
    if let Some(state) = &state {
        run_report.set_cache(cache_metrics(state));
    }
    run_report.finish(SystemTime::now(), started.elapsed());

    let written = write_reports(config, &run_report);
    let failure = failure.or(written.err());
    if let Some(state) = &state {
        let end = match &failure {
            Some(e) => RunEnd {
                status: cache::RunStatus::Failed,
                error: Some(one_line(e)),
                exit_code: 2,
            },
            None => RunEnd {
                status: match status {
                    RunStatus::Interrupted => cache::RunStatus::Interrupted,
                    _ => cache::RunStatus::Finished,
                },
                error: None,
                exit_code: exit_code(status, run_report.counts().failed),
            },
        };
        record_end(state, &end);
    }
    if session.cancel.is_cancelled() {
        report::warning_line(
            "interrupted: the summary covers only the pages finished before the stop; run again to do the rest",
        );
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(run_report),
    }
}

/// Each HTTP provider starts at the structured-output rung an earlier run found working for
/// its base URL and model (unless `TAG_SPACE_OPENAI_STRUCTURED` forces one).
fn resume_rungs(chain: &Chain<AnyProvider>, state: &RunState) {
    for p in chain.providers() {
        let (Some(ladder), Some(at)) = (p.inner().ladder(), endpoint(p.inner())) else {
            continue;
        };
        match state.store.structured_rung(at) {
            Ok(Some(rung)) => ladder.resume_at(&rung),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the structured-output rung"),
        }
    }
}

/// Records the rung each HTTP provider ended on, when an answer there followed the schema.
fn remember_rungs(chain: &Chain<AnyProvider>, state: &RunState) {
    for p in chain.providers() {
        let (Some(ladder), Some(at)) = (p.inner().ladder(), endpoint(p.inner())) else {
            continue;
        };
        if !ladder.is_trusted() {
            continue;
        }
        if let Err(e) = state.store.remember_rung(at, ladder.current_name()) {
            tracing::warn!(error = %e, "cannot record the structured-output rung");
        }
    }
}

fn endpoint(p: &AnyProvider) -> Option<cache::Endpoint<'_>> {
    let s = p.settings()?;
    Some(cache::Endpoint {
        provider: crate::llm::Provider::name(p),
        base_url: &s.base_url,
        model: &s.model,
    })
}

/// The governor's figures for one provider, as the reports show them.
fn provider_metrics(s: &ProviderStats, config: &Config) -> ProviderMetrics {
    let model = match s.provider {
        "gemini" => config.gemini.as_ref().map(|p| p.model.clone()),
        "openai" => config.openai.as_ref().map(|p| p.model.clone()),
        _ => None,
    };
    let mut m = ProviderMetrics::new(s.provider, model);
    m.calls = s.calls;
    m.successes = s.successes;
    m.failures = s
        .failures
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    m.rate_limited = s.rate_limited;
    m.retries = s.retries;
    m.budget_exhausted = s.budget_exhausted;
    m.splits = s.splits;
    m.fallbacks = s.fallbacks;
    m.skipped = s.skipped;
    m.tokens_in = s.tokens_in;
    m.tokens_out = s.tokens_out;
    m.tokens_cached = s.tokens_cached;
    m.concurrency_limit = s.concurrency_limit;
    m.paced_rpm = s.paced_rpm;
    m.unavailable = s.unavailable.clone();
    m.set_latencies(&s.latencies);
    for (reason, w) in &s.waits {
        if let Ok(wait) = reason.as_str().parse() {
            m.add_wait(wait, w.count, w.total);
        }
    }
    m
}

/// Redraws the progress line from the providers' counters, until dropped.
async fn tick_progress(
    progress: &Progress,
    chain: &Chain<AnyProvider>,
) -> std::convert::Infallible {
    loop {
        progress.update(&chain.stats());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The run lock for this space ([`crate::lock`]): taken before any page is read or anything
/// is written (only the space lookup comes first, so that the lock has the key as the site
/// spells it), dry runs included (they still spend the provider quota and, with a state
/// file, write it). The demo writes nothing anywhere and takes none. One lock per site and
/// space, whatever the state file; without a place for it (no `TAG_SPACE_LOCK_DIR`,
/// `XDG_CACHE_HOME` or `HOME`) the run goes on unlocked, with a warning.
async fn take_lock(
    config: &Config,
    args: &Args,
    cancel: &CancellationToken,
) -> anyhow::Result<Option<crate::lock::RunLock>> {
    use crate::lock::{self, LockError};
    if config.demo {
        return Ok(None);
    }
    let Some(dir) = &config.lock_dir else {
        tracing::warn!(
            "no place for the run lock (TAG_SPACE_LOCK_DIR, XDG_CACHE_HOME and HOME are unset): running without it, so an overlapping run is not prevented"
        );
        return Ok(None);
    };
    let site = config.confluence.as_ref().map_or("", |c| c.root.as_str());
    // Absolute, so that the message tells a cron user exactly which file.
    let path = lock::lock_path(dir, site, &config.space);
    let path = std::path::absolute(&path).unwrap_or(path);
    let held = if args.wait_lock {
        lock::acquire_waiting(&path, std::time::Duration::from_millis(200), cancel, |e| {
            if let LockError::Held { path, holder } = e {
                let pid = holder.map(|p| format!(" (pid {p})")).unwrap_or_default();
                tracing::warn!(
                    lock = %path.display(),
                    "another run{pid} holds the lock for space {}: waiting (--wait-lock)",
                    config.space
                );
            }
        })
        .await?
    } else {
        lock::try_acquire(&path)?
    };
    tracing::debug!(lock = %held.path().display(), "holding the run lock");
    Ok(Some(held))
}

// ---- the state file (cache, label ledger, runs) -------------------------------------------

/// The model a run's answers are cached and its pages finished under: the first provider
/// that is asked, as configured (see [`RunState::setup`] for fallback answers).
fn primary_model(config: &Config) -> String {
    if let Some(g) = &config.gemini {
        format!("gemini/{}", g.model)
    } else if let Some(o) = &config.openai {
        // Two servers with the same model name must not share answers (issue 14); OpenAI's
        // own API keeps its old key, so that its cache stays valid.
        let base = o.base_url.trim_end_matches('/');
        if base == crate::config::DEFAULT_OPENAI_BASE_URL {
            format!("openai/{}", o.model)
        } else {
            format!("openai/{}@{base}", o.model)
        }
    } else {
        pipeline::RULES_MODEL.to_string()
    }
}

/// Opens the state file and records the start of the run. A file that cannot be used stops
/// the run (exit 2, one line naming the file), unless reads are off (`--no-cache`): then the
/// run goes on without it. The demo has its own file ([`crate::config::DEMO_STATE_FILE`]),
/// from which its space is restored as the last run left it.
fn open_state(config: &Config, taxonomy: &Taxonomy) -> anyhow::Result<Option<RunState>> {
    // No path: `statedir::check` has said why.
    let Some(path) = &config.cache.path else {
        return Ok(None);
    };
    let mode = if config.sync {
        RunMode::Sync
    } else {
        RunMode::Add
    };
    let opened = Store::open(path, StoreOptions::from_settings(&config.cache)).and_then(|store| {
        let run = store.begin_run(&config.space, mode, config.dry_run)?;
        Ok((store, run))
    });
    let (store, run) = match opened {
        Ok(x) => x,
        Err(e) if !config.cache.enabled => {
            statedir::going_on_without(config, &e);
            return Ok(None);
        }
        // The message alone: it already names the file and its cause, on one line.
        Err(e) => return Err(anyhow::anyhow!("{e}")),
    };
    Ok(Some(RunState {
        store: Arc::new(store),
        run,
        setup: Setup::new(
            taxonomy.fingerprint(),
            crate::llm::prompt::PROMPT_VERSION,
            primary_model(config),
        ),
    }))
}

/// The cache's counters for the report (and the log).
fn cache_metrics(state: &RunState) -> CacheMetrics {
    let counters = state.store.counters();
    tracing::info!(
        hits = counters.hits,
        misses = counters.misses,
        skipped_unchanged = counters.skipped_unchanged,
        evictions = counters.evictions,
        calls = counters.calls,
        "cache"
    );
    CacheMetrics {
        hits: counters.hits,
        misses: counters.misses,
    }
}

/// `tag-space cache stats|clear`: synchronous, needs no Confluence or LLM settings.
pub fn cache_command(args: &Args, cmd: &CacheCommand) -> anyhow::Result<()> {
    use std::io::Write;
    let (CacheCommand::Stats { cache_path, .. } | CacheCommand::Clear { cache_path, .. }) = cmd;
    let mut args = args.clone();
    if cache_path.is_some() {
        args.cache_path.clone_from(cache_path);
    }
    let settings = crate::config::CacheSettings::load(&args)?;
    let path = settings.path.clone().context(
        "no state file: set TAG_SPACE_CACHE_PATH (or --cache-path), XDG_CACHE_HOME or HOME",
    )?;
    let mut out = std::io::stdout().lock();
    if !path.exists() {
        // Opening would create it; there is nothing to show or clear.
        writeln!(
            out,
            "no state file at {} yet: nothing recorded",
            path.display()
        )?;
        return Ok(());
    }
    let one_line = |e: crate::cache::CacheError| anyhow::anyhow!("{e}");
    let store = Store::open(&path, StoreOptions::from_settings(&settings)).map_err(one_line)?;
    match cmd {
        CacheCommand::Stats { runs, .. } => {
            let stats = store.stats(*runs).map_err(one_line)?;
            crate::cache::write_stats(&mut out, &stats)?;
        }
        CacheCommand::Clear { space, .. } => {
            let space = match space {
                Some(given) => Some(space::recorded_space(&store, given)?),
                None => None,
            };
            let cleared = store.clear(space.as_deref()).map_err(one_line)?;
            crate::cache::write_cleared(&mut out, space.as_deref(), &cleared)?;
        }
    }
    Ok(())
}
