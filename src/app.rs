//! The composition root: turns the resolved configuration into concrete parts (page source,
//! provider chain, taxonomy), runs the pipeline and reports. With `main.rs` and `ending.rs`,
//! the only place that uses `anyhow`; with `main.rs`, the only reader of [`Config`].
//!
//! [`run`] is the in-process entry point: `main.rs` calls it with the configuration built
//! from flags, environment and env file, and so can a test.

use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::cache::{self, RunEnd};
use crate::config::Config;
use crate::confluence::PageSource;
use crate::ending::{exit_code, one_line, record_end, write_reports};
use crate::governor::ProviderStats;
use crate::governor::{Chain, Governed, GovernorConfig, Quota};
use crate::llm::gemini::GeminiProvider;
use crate::llm::openai::OpenAiProvider;
use crate::llm::prompt::PromptOptions;
use crate::llm::rules::RulesProvider;
use crate::llm::{AnyProvider, ProviderSettings};
use crate::pipeline::{RunOptions, RunState};
use crate::report;
use crate::report::OutputFormat;
use crate::report::model::{Mode, ProviderMetrics, RunInfo, RunReport, RunStatus};
use crate::report::progress::Progress;
use crate::taxonomy::Taxonomy;

mod apply_cmd;
mod cache_cmd;
mod describe;
mod eval_cmd;
mod jobs_cmd;
mod lock;
mod plan_out;
mod serve;
mod settings;
mod space;
mod space_run;
mod spaces;
mod state;
mod statedir;
mod taxonomy_cmd;
mod via_batch;

pub use apply_cmd::{apply, apply_config};
pub use cache_cmd::cache_command;
pub use eval_cmd::eval_command;
pub use jobs_cmd::jobs_command;
pub use serve::{PipelineRunner, serve_command};
pub use settings::report_settings;
use space_run::{Front, SpaceRun};
pub use taxonomy_cmd::{taxonomy_command, taxonomy_init};

/// Characters of page text in one request: enough for a full batch of full pages, bounded so
/// that one request stays well inside every provider's context window.
const MAX_BATCH_CHARS: usize = 60_000;

/// After an interruption, batches already with a provider get this long to finish.
pub const INTERRUPT_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// What the binary hands a run besides its configuration: the token its signal handler
/// cancels on Ctrl-C/SIGTERM, and the progress bar.
#[derive(Clone, Default)]
pub struct Session {
    pub cancel: CancellationToken,
    pub progress: Progress,
}

/// Runs tag-space with this configuration, interruptible through `session.cancel` and
/// showing `session.progress`. `Ok` carries the run's report (the caller maps failed pages
/// to exit 1); `Err` is a usage, configuration or fatal error (exit 2).
pub async fn run(mut config: Config, session: Session) -> anyhow::Result<RunReport> {
    for w in &config.warnings {
        report::warning_line(w);
    }
    statedir::check(&mut config)?;
    let taxonomy = Arc::new(match &config.taxonomy_path {
        Some(path) => Taxonomy::load(path)?,
        None => Taxonomy::embedded(),
    });
    let chain = build_chain(&config, &taxonomy, config.demo_delay)?;
    if config.spaces.several() {
        return spaces::run_several(&config, &chain, &taxonomy, &session).await;
    }
    // Before the lock: the lock, the state file and the reports use the key as the site
    // spells it.
    let client = if config.demo {
        None
    } else {
        Some(space::connect(&mut config).await?)
    };
    let _lock = lock::take(&config, &session.cancel).await?;
    match client {
        None => {
            let source = statedir::demo_source(&config, config.demo_edit);
            execute(&config, &source, &chain, &taxonomy, &session).await
        }
        Some(source) => execute(&config, &source, &chain, &taxonomy, &session).await,
    }
}

/// The providers in priority order (Gemini, then OpenAI, then the keyword rules), each behind
/// its own governor, asking with [`prompt_options`] (no examples: see `Config::few_shot`).
fn build_chain(
    config: &Config,
    taxonomy: &Arc<Taxonomy>,
    rules_delay: std::time::Duration,
) -> anyhow::Result<Chain<AnyProvider>> {
    if config.few_shot == Some(true) {
        tracing::warn!(
            "TAG_SPACE_FEW_SHOT is used by tag-space eval only: this run shows the model no examples"
        );
    }
    build_chain_with(config, taxonomy, rules_delay, &prompt_options(config))
}

/// The prompt switches of the configuration; examples are added by `eval`, which has them.
fn prompt_options(config: &Config) -> PromptOptions {
    PromptOptions {
        reason: config.reason,
        examples: None,
        describe: false,
    }
}

/// [`build_chain`] with the LLM providers asking with `prompt`.
fn build_chain_with(
    config: &Config,
    taxonomy: &Arc<Taxonomy>,
    rules_delay: std::time::Duration,
    prompt: &PromptOptions,
) -> anyhow::Result<Chain<AnyProvider>> {
    let governed = |inner: AnyProvider, settings: Option<(&ProviderSettings, Quota)>| {
        let defaults = GovernorConfig::default();
        Governed::new(
            inner,
            GovernorConfig {
                initial_concurrency: config.concurrency,
                max_concurrency: config.max_concurrency,
                max_cooldown: config.max_cooldown,
                quota: settings.map_or(defaults.quota, |(_, quota)| quota),
                max_output_tokens: settings
                    .map_or(defaults.max_output_tokens, |(s, _)| s.max_output_tokens),
                ..defaults
            },
        )
    };
    let mut providers = Vec::new();
    if let Some(s) = &config.gemini {
        let p = GeminiProvider::new(s.clone(), taxonomy.clone())
            .context("cannot set up the Gemini client")?
            .with_prompt(prompt.clone());
        providers.push(governed(
            AnyProvider::Gemini(p),
            Some((s, config.gemini_quota)),
        ));
    }
    if let Some(s) = &config.openai {
        let p = OpenAiProvider::new(s.clone(), taxonomy.clone())
            .context("cannot set up the OpenAI client")?
            .with_structured(config.openai_structured)
            .with_prompt(prompt.clone());
        providers.push(governed(
            AnyProvider::OpenAi(p),
            Some((s, config.openai_quota)),
        ));
    }
    if config.rules {
        providers.push(governed(
            AnyProvider::Rules(
                RulesProvider::new(taxonomy.clone())
                    .with_delay(rules_delay)
                    .describing(prompt.describe),
            ),
            None,
        ));
    }
    Ok(Chain::new(providers))
}

async fn execute<S: PageSource>(
    config: &Config,
    source: &S,
    chain: &Chain<AnyProvider>,
    taxonomy: &Taxonomy,
    session: &Session,
) -> anyhow::Result<RunReport> {
    let space = SpaceRun {
        config,
        chain,
        taxonomy,
        session,
        front: Front::Terminal,
        plan: &Default::default(),
    };
    let end = space.run(source).await?;
    conclude(config, end.state.as_ref(), session, end.report, end.failure)
}

/// Each provider's figures for the report, with the rung it asked JSON by and what its
/// batch jobs answered.
fn providers_metrics(
    chain: &Chain<AnyProvider>,
    config: &Config,
    batch: Option<&via_batch::BatchRun>,
) -> Vec<ProviderMetrics> {
    let mut providers: Vec<ProviderMetrics> = chain
        .providers()
        .iter()
        .map(|p| {
            let mut m = provider_metrics(p.stats(), config);
            m.structured_output = p.inner().ladder().map(|l| l.current_name().to_string());
            m
        })
        .collect();
    if let Some(b) = batch {
        b.add_usage(&mut providers);
    }
    providers
}

/// Writes the reports, records how the run ended, and hands back the report or the failure.
fn conclude(
    config: &Config,
    state: Option<&RunState>,
    session: &Session,
    run_report: RunReport,
    failure: Option<anyhow::Error>,
) -> anyhow::Result<RunReport> {
    let written = write_reports(config.format, config.no_color, &config.reports, &run_report);
    let failure = failure.or(written.err());
    if let Some(state) = state {
        record_end(state, &run_end(failure.as_ref(), &run_report));
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

/// The batch size: the configured one, lowered (with a warning) so that a request's schema
/// stays inside what providers accept (every page of a request repeats every tag in it).
fn batch_size(config: &Config, taxonomy: &Taxonomy) -> usize {
    let schema_cap = crate::llm::prompt::max_pages_per_request(taxonomy);
    if config.batch_size > schema_cap {
        report::warning_line(&format!(
            "batch size {} lowered to {schema_cap}: with {} tags a larger request's schema is too big for the providers",
            config.batch_size,
            taxonomy.tag_names().count()
        ));
    }
    config.batch_size.min(schema_cap)
}

/// What the configuration says of the run; the caller adds the state, the batch size, the
/// cancellation token and the event sink.
fn run_options(config: &Config) -> RunOptions {
    RunOptions {
        sync: config.sync,
        space: config.space.clone(),
        dry_run: config.dry_run,
        limit: config.limit,
        max_batch_chars: MAX_BATCH_CHARS,
        max_page_chars: config.max_page_chars,
        // Twice the governor's ceiling: the governor, not the pipeline, limits requests.
        max_in_flight: config.max_concurrency * 2,
        grace: INTERRUPT_GRACE,
        ..RunOptions::default()
    }
}

/// The report of a run starting now.
fn new_report(config: &Config, taxonomy: &Taxonomy) -> RunReport {
    let run_report = RunReport::new(
        RunInfo::new(
            &config.space,
            if config.sync { Mode::Sync } else { Mode::Add },
            config.dry_run,
            SystemTime::now(),
        ),
        report_settings(config, taxonomy.fingerprint()),
    );
    if config.reports.is_empty() && config.format == OutputFormat::Table {
        // Only the table is wanted: keep counts, not a record per page.
        return run_report.counts_only();
    }
    run_report
}

/// How the run ended, for the state file's run history.
fn run_end(failure: Option<&anyhow::Error>, run_report: &RunReport) -> RunEnd {
    let status = run_report.run().status;
    match failure {
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
    }
}

/// The governor's figures for one provider, with the model it was asked for.
fn provider_metrics(s: ProviderStats, config: &Config) -> ProviderMetrics {
    let model = match s.provider {
        "gemini" => config.gemini.as_ref().map(|p| p.model.clone()),
        "openai" => config.openai.as_ref().map(|p| p.model.clone()),
        _ => None,
    };
    ProviderMetrics::from_stats(s, model)
}
