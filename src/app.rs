//! The composition root: turns flags and settings into concrete parts (page source,
//! provider chain, taxonomy), runs the pipeline and reports. With `main.rs`, the only place
//! that uses `anyhow`.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::cache::{RunMode, Setup, Store, StoreOptions};
use crate::cli::{Args, CacheCommand, OutputFormat};
use crate::config::{Config, ProviderSettings};
use crate::confluence::{ConfluenceClient, PageSource};
use crate::governor::ProviderStats;
use crate::governor::{Chain, Governed, GovernorConfig};
use crate::llm::AnyProvider;
use crate::llm::gemini::GeminiProvider;
use crate::llm::openai::OpenAiProvider;
use crate::llm::rules::RulesProvider;
use crate::pipeline::{self, RunOptions, RunState};
use crate::report;
use crate::report::model::{CacheMetrics, Mode, ProviderMetrics, RunInfo, RunReport, Settings};
use crate::report::progress::Progress;
use crate::taxonomy::Taxonomy;

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
    let config = Config::load(&args)?;
    for w in &config.warnings {
        report::warning_line(w);
    }
    let taxonomy = Arc::new(match &config.taxonomy_path {
        Some(path) => Taxonomy::load(path)?,
        None => Taxonomy::embedded(),
    });
    let chain = build_chain(&config, &taxonomy)?;
    let _lock = take_lock(&config, &args, &session.cancel).await?;
    if config.demo {
        let source = crate::demo::source();
        execute(&config, &args, &source, &chain, &taxonomy, &session).await
    } else {
        let settings = config
            .confluence
            .clone()
            .context("Confluence is not configured")?;
        let source = ConfluenceClient::new(settings)?;
        execute(&config, &args, &source, &chain, &taxonomy, &session).await
    }
}

/// The providers in priority order (Gemini, then OpenAI, then the keyword rules), each behind
/// its own governor.
fn build_chain(config: &Config, taxonomy: &Arc<Taxonomy>) -> anyhow::Result<Chain<AnyProvider>> {
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
            .context("cannot set up the OpenAI client")?;
        providers.push(governed(AnyProvider::OpenAi(p), Some(s)));
    }
    if config.rules {
        providers.push(governed(
            AnyProvider::Rules(RulesProvider::new(taxonomy.clone())),
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
    let source = &ListingEnd {
        inner: source,
        progress,
        limit: config.limit,
    };
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
        cancel: session.cancel.clone(),
        listed: progress.listed_counter(),
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
    let run = pipeline::run(source, chain, taxonomy, &opts, |outcome| {
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
    run_report.set_providers(
        chain
            .stats()
            .iter()
            .map(|s| provider_metrics(s, config))
            .collect(),
    );
    if let Some(state) = &state {
        finish_state(state, &mut run_report);
    }
    run_report.finish(SystemTime::now(), started.elapsed());

    // A run that stopped before its first page (space not found, bad credentials) has
    // nothing to report: the error line says it all.
    if listed.is_ok() || run_report.counts().seen > 0 {
        report::print_final(&run_report, config.format, config.no_color)
            .context("cannot write to stdout")?;
        for file in &config.reports {
            report::write_report_file(file, &run_report)
                .with_context(|| format!("cannot write the report {}", file.path.display()))?;
        }
    }
    if session.cancel.is_cancelled() {
        report::warning_line(
            "interrupted: the summary covers only the pages finished before the stop; run again to do the rest",
        );
    }
    listed.with_context(|| format!("the run over space {} stopped early", config.space))?;
    Ok(run_report)
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

/// A page source that tells the progress bar the real total once the listing has ended.
struct ListingEnd<'a, S> {
    inner: &'a S,
    progress: &'a Progress,
    limit: Option<u64>,
}

impl<S: PageSource> PageSource for ListingEnd<'_, S> {
    async fn stream_pages(
        &self,
        space_key: &str,
        tx: tokio::sync::mpsc::Sender<crate::confluence::Page>,
    ) -> Result<u64, crate::confluence::ConfluenceError> {
        let listed = self.inner.stream_pages(space_key, tx).await;
        if let Ok(n) = listed {
            self.progress
                .set_total(self.limit.map_or(n, |limit| n.min(limit)));
        }
        listed
    }

    async fn labels(
        &self,
        page_id: &str,
    ) -> Result<Vec<crate::confluence::Label>, crate::confluence::ConfluenceError> {
        self.inner.labels(page_id).await
    }

    async fn add_labels(
        &self,
        page_id: &str,
        names: &[String],
    ) -> Result<(), crate::confluence::ConfluenceError> {
        self.inner.add_labels(page_id, names).await
    }

    async fn remove_label(
        &self,
        page_id: &str,
        name: &str,
    ) -> Result<(), crate::confluence::ConfluenceError> {
        self.inner.remove_label(page_id, name).await
    }
}

/// The run lock for this space ([`crate::lock`]): taken before anything is read or written,
/// dry runs included (they still spend the provider quota and, with a state file, write
/// it). The demo writes nothing anywhere and takes none. Without a state directory (no
/// `HOME`, `XDG_CACHE_HOME` or `TAG_SPACE_CACHE_PATH`) the run goes on unlocked, with a
/// warning.
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
            "no state directory (HOME, XDG_CACHE_HOME and TAG_SPACE_CACHE_PATH are unset): running without the run lock, so an overlapping run is not prevented"
        );
        return Ok(None);
    };
    // Absolute, so that the message tells a cron user exactly which file.
    let path = lock::lock_path(dir, &config.space);
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
        format!("openai/{}", o.model)
    } else {
        pipeline::RULES_MODEL.to_string()
    }
}

/// Opens the state file and records the start of the run. A file that cannot be used stops
/// the run (exit 2, one line naming the file), unless reads are off (`--no-cache`): then the
/// run goes on without it. The demo never uses it: its space is rebuilt in memory on every
/// run, so a ledger of it would only mislead.
fn open_state(config: &Config, taxonomy: &Taxonomy) -> anyhow::Result<Option<RunState>> {
    if config.demo {
        return Ok(None);
    }
    let without = |why: &str| {
        if config.sync {
            report::warning_line(
                "--sync without the state file: no label is removed (only the ledger knows which labels are tag-space's)",
            );
        }
        tracing::warn!("{why}: running without the cache and the label ledger");
    };
    let Some(path) = &config.cache.path else {
        without("no place for the state file (set TAG_SPACE_CACHE_PATH, XDG_CACHE_HOME or HOME)");
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
            report::warning_line(&format!(
                "continuing without the state file (cache disabled): {e}"
            ));
            without("the state file cannot be used");
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

/// Records the end of the run in the state file and hands its counters to the report.
fn finish_state(state: &RunState, run_report: &mut RunReport) {
    let counters = match state.store.finish_run(&state.run) {
        Ok(c) => c,
        Err(e) => {
            report::warning_line(&format!("cannot record the end of the run: {e}"));
            state.store.counters()
        }
    };
    tracing::info!(
        hits = counters.hits,
        misses = counters.misses,
        skipped_unchanged = counters.skipped_unchanged,
        evictions = counters.evictions,
        calls = counters.calls,
        "cache"
    );
    run_report.set_cache(CacheMetrics {
        hits: counters.hits,
        misses: counters.misses,
    });
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
            let cleared = store.clear(space.as_deref()).map_err(one_line)?;
            crate::cache::write_cleared(&mut out, space.as_deref(), &cleared)?;
        }
    }
    Ok(())
}
