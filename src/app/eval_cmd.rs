//! `tag-space eval`: classifies the pages that carry human taxonomy labels through the same
//! pipeline, governor and cache as a run (a dry run: nothing is written to Confluence), and
//! scores the answers against those labels ([`crate::eval`]).

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;

use super::{INTERRUPT_GRACE, MAX_BATCH_CHARS, build_chain_with, lock, space, state, statedir};
use crate::cache::{self, LabelStatus, RunEnd};
use crate::cli::{Args, EvalArgs};
use crate::config::Config;
use crate::confluence::{Label, PageSource};
use crate::demo;
use crate::ending::record_end;
use crate::eval::report::{
    EvalReport, PageCounts, PageResult, SCHEMA_VERSION, write_markdown, write_table,
};
use crate::eval::score::{Observation, score};
use crate::eval::select::select;
use crate::eval::source::Selected;
use crate::governor::Chain;
use crate::llm::AnyProvider;
use crate::llm::examples::ExamplePool;
use crate::llm::prompt::PromptOptions;
use crate::pipeline::{self, RunOptions, RunState, Status};
use crate::taxonomy::Taxonomy;
use crate::taxonomy::draft::PageLabels;
use crate::taxonomy::read::read_space_labels;

/// Runs `eval`; the exit code: 0, or 1 when pages failed or the micro F1 is under `--min-f1`.
pub fn eval_command(args: &Args, cmd: &EvalArgs) -> anyhow::Result<u8> {
    let mut a = args.clone();
    a.command = None;
    a.space.clone_from(&cmd.space);
    a.demo = cmd.demo;
    a.taxonomy.clone_from(&cmd.taxonomy);
    a.fallback = cmd.fallback;
    a.cache_path.clone_from(&cmd.cache_path);
    a.env_file.clone_from(&cmd.env_file);
    a.batch_size = cmd.batch_size;
    a.dry_run = true;
    crate::report::logging::init(&crate::config::log_settings(&a));
    let mut config = Config::load(&a)?;
    if cmd.llm {
        config = config.with_demo_llm(&a)?;
    }
    config.reason = EvalArgs::switch(cmd.reason, cmd.no_reason, config.reason);
    // Few-shot is on unless switched off: it raised micro F1 on the bundled space
    // (BENCHMARKS.md, "Prompt switches on a real local model").
    let few_shot = config.few_shot.unwrap_or(true);
    config.few_shot = Some(EvalArgs::switch(cmd.few_shot, cmd.no_few_shot, few_shot));
    if config.demo {
        config.space = demo::eval::SPACE_KEY.to_string();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(eval(config, cmd))
}

async fn eval(mut config: Config, cmd: &EvalArgs) -> anyhow::Result<u8> {
    statedir::check(&mut config)?;
    let mut taxonomy = match &config.taxonomy_path {
        Some(path) => Taxonomy::load(path)?,
        None => Taxonomy::embedded(),
    };
    if config.demo && config.taxonomy_path.is_none() {
        taxonomy = demo::eval::with_aliases(taxonomy)?;
    }
    let taxonomy = Arc::new(taxonomy);
    let report = if config.demo {
        evaluate(&config, &demo::eval::source(), &taxonomy, cmd).await?
    } else {
        let client = space::connect(&mut config).await?;
        evaluate(&config, &client, &taxonomy, cmd).await?
    };
    write_table(&mut std::io::stdout().lock(), &report)?;
    for path in &cmd.report {
        write_report(path, &report)?;
    }
    let micro = report.scores.micro.f1.unwrap_or(0.0);
    let below = cmd.min_f1.is_some_and(|min| micro < min);
    if let Some(min) = cmd.min_f1.filter(|_| below) {
        crate::report::error_line(&format!("micro F1 {micro:.3} is below --min-f1 {min}"));
    }
    Ok(u8::from(below || report.pages.failed > 0))
}

fn write_report(path: &std::path::Path, report: &EvalReport) -> anyhow::Result<()> {
    let mut out = Vec::new();
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => {
            serde_json::to_writer_pretty(&mut out, report)?;
            out.push(b'\n');
        }
        Some("md") => write_markdown(&mut out, report)?,
        _ => anyhow::bail!("--report {}: name a .json or .md file", path.display()),
    }
    std::fs::write(path, out).with_context(|| format!("cannot write {}", path.display()))
}

/// Reads the human labels, picks the pages, classifies them (dry run) and scores.
async fn evaluate<S: PageSource>(
    config: &Config,
    source: &S,
    taxonomy: &Arc<Taxonomy>,
    cmd: &EvalArgs,
) -> anyhow::Result<EvalReport> {
    let cancel = Default::default();
    let _lock = lock::take(config, &cancel).await?;
    let mut state = state::open(config, taxonomy)?;
    let mut pages = read_space_labels(source, &config.space)
        .await
        .with_context(|| format!("cannot read the labels of space {}", config.space))?;
    let listed = pages.len() as u64;
    if let Some(st) = &state {
        human_only(st, &mut pages)?;
    }
    let prompt = prompt_options(config, taxonomy, &pages);
    if let Some(st) = &mut state {
        st.setup.prompt_version = prompt.version();
    }
    let chain = build_chain_with(config, taxonomy, std::time::Duration::ZERO, &prompt)?;
    let chain = &chain;
    let chosen = select(taxonomy, pages, cmd.sample, cmd.seed, cmd.limit);
    let labels: HashMap<String, Vec<Label>> = chosen
        .pages
        .iter()
        .map(|p| {
            (
                p.id.clone(),
                p.labels.iter().cloned().map(Label::global).collect(),
            )
        })
        .collect();
    let selected = Selected::new(source, labels);
    let opts = eval_options(config, taxonomy, state.clone());
    let proposed = classify(&selected, chain, taxonomy, &opts)
        .await
        .with_context(|| format!("the evaluation of space {} stopped early", config.space))?;
    if let Some(st) = &state {
        record_end(
            st,
            &RunEnd {
                status: cache::RunStatus::Finished,
                error: None,
                exit_code: 0,
            },
        );
    }
    let mut report = build_report(
        config,
        taxonomy,
        chain,
        state.as_ref(),
        listed,
        chosen,
        proposed,
    );
    report.prompt_version = prompt.version();
    Ok(report)
}

/// The prompt of this evaluation: the reason switch, and with few-shot on, every page with
/// human taxonomy labels as the example pool (a page is never shown beside itself: see
/// [`ExamplePool::choose`]).
fn prompt_options(config: &Config, taxonomy: &Taxonomy, pages: &[PageLabels]) -> PromptOptions {
    // The keyword rules read no examples: no pool, and the version says so.
    let llm = config.gemini.is_some() || config.openai.is_some();
    let examples = (config.few_shot == Some(true) && llm).then(|| {
        Arc::new(ExamplePool::new(
            taxonomy,
            pages
                .iter()
                .map(|p| (p.id.as_str(), p.title.as_str(), p.labels.as_slice())),
        ))
    });
    PromptOptions {
        reason: config.reason,
        examples,
        describe: false,
    }
}

/// A dry run over the selected pages, through the same pipeline, governor and cache as a run.
fn eval_options(config: &Config, taxonomy: &Taxonomy, state: Option<RunState>) -> RunOptions {
    RunOptions {
        state,
        space: config.space.clone(),
        dry_run: true,
        batch_size: config
            .batch_size
            .min(crate::llm::prompt::max_pages_per_request(taxonomy)),
        max_batch_chars: MAX_BATCH_CHARS,
        max_page_chars: config.max_page_chars,
        max_in_flight: config.max_concurrency * 2,
        grace: INTERRUPT_GRACE,
        ..RunOptions::default()
    }
}

/// The labels the model proposes for each page it answered.
async fn classify<S: PageSource>(
    source: &S,
    chain: &Chain<AnyProvider>,
    taxonomy: &Taxonomy,
    opts: &RunOptions,
) -> Result<HashMap<String, Vec<String>>, crate::confluence::ConfluenceError> {
    let mut proposed = HashMap::new();
    pipeline::run(source, chain, taxonomy, opts, |o| {
        if matches!(
            o.status,
            Status::Tagged | Status::Unchanged | Status::NoLabel
        ) {
            proposed.insert(o.id, o.chosen);
        }
    })
    .await?;
    Ok(proposed)
}

/// Drops the labels the ledger says tag-space wrote: they are its own answers, not a
/// person's, and would score the model against itself.
fn human_only(st: &RunState, pages: &mut [PageLabels]) -> anyhow::Result<()> {
    for p in pages {
        let ledger = st.store.page_ledger(&st.run.space, &p.id)?;
        p.labels.retain(|l| {
            !matches!(
                ledger.labels.get(&l.to_lowercase()),
                Some(LabelStatus::Added | LabelStatus::Adding | LabelStatus::Removing)
            )
        });
    }
    Ok(())
}

fn build_report(
    config: &Config,
    taxonomy: &Taxonomy,
    chain: &Chain<AnyProvider>,
    state: Option<&RunState>,
    listed: u64,
    chosen: crate::eval::select::Selection,
    mut proposed: HashMap<String, Vec<String>>,
) -> EvalReport {
    let mut observations = Vec::new();
    let mut results = Vec::new();
    for p in chosen.pages {
        let answer = proposed.remove(&p.id);
        let human = taxonomy.tags_carried(p.labels.iter().map(String::as_str));
        results.push(PageResult {
            id: p.id.clone(),
            title: p.title.clone(),
            human: human.iter().map(|s| s.to_string()).collect(),
            proposed: answer.clone(),
        });
        if let Some(answer) = answer {
            observations.push(Observation {
                page_id: p.id,
                title: p.title,
                human: p.labels,
                proposed: answer,
            });
        }
    }
    let selected = results.len() as u64;
    EvalReport {
        schema_version: SCHEMA_VERSION,
        space: config.space.clone(),
        model: state.map_or_else(|| state_model(config), |s| s.setup.model.clone()),
        prompt_version: crate::llm::prompt::PROMPT_VERSION.to_string(),
        taxonomy_fingerprint: taxonomy.fingerprint().to_string(),
        pages: PageCounts {
            listed,
            without_human_labels: chosen.without_human_labels,
            selected,
            failed: selected - observations.len() as u64,
        },
        calls: chain.stats().iter().map(|s| s.calls).sum(),
        scores: score(taxonomy, &observations),
        page_results: results,
    }
}

/// The model named when there is no state file to read it from.
fn state_model(config: &Config) -> String {
    match (&config.gemini, &config.openai) {
        (Some(g), _) => format!("gemini/{}", g.model),
        (None, Some(o)) => format!("openai/{}", o.model),
        (None, None) => pipeline::RULES_MODEL.to_string(),
    }
}
