//! Flags of `tag-space eval` and `tag-space taxonomy init`: commands that read a space and
//! write nothing to it.

use std::path::PathBuf;

use clap::Subcommand;

use super::FallbackArg;

/// `tag-space eval`
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["space", "demo"])))]
pub struct EvalArgs {
    /// The space whose human labels are the answer key (another case is taken when exactly
    /// one key the account can see matches it).
    #[arg(short, long, value_name = "KEY")]
    pub space: Option<String>,
    /// Evaluate on the bundled EVAL space with the keyword rules provider: offline.
    #[arg(long)]
    pub demo: bool,
    /// With --demo: the configured LLM (GEMINI_*/OPENAI_*) answers instead of the keyword
    /// rules; the bundled pages are sent to it. Measures a model or a prompt switch.
    #[arg(long, requires = "demo")]
    pub llm: bool,
    /// Classify at most N of the pages that carry human taxonomy labels.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// A reproducible random subset of N such pages (see --seed).
    #[arg(long, value_name = "N")]
    pub sample: Option<u64>,
    /// The seed of --sample: the same seed picks the same pages.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
    /// Also write the scores: FILE.json (docs/eval.md) or FILE.md. Repeatable.
    #[arg(long, value_name = "FILE")]
    pub report: Vec<PathBuf>,
    /// Exit 1 when the micro-averaged F1 is below X (0 to 1): a CI guard for a prompt,
    /// model or taxonomy change.
    #[arg(long, value_name = "X", value_parser = parse_f1)]
    pub min_f1: Option<f64>,
    /// Taxonomy file (TOML) replacing the built-in one [env: TAG_SPACE_TAXONOMY].
    #[arg(long, value_name = "FILE")]
    pub taxonomy: Option<PathBuf>,
    /// Add a last-resort provider after Gemini/OpenAI (`rules`: offline keywords).
    #[arg(long, value_name = "PROVIDER")]
    pub fallback: Option<FallbackArg>,
    /// State file [env: TAG_SPACE_CACHE_PATH]: answers are cached as in a run.
    #[arg(long, value_name = "PATH")]
    pub cache_path: Option<PathBuf>,
    /// Read settings from this env file instead of ./.env [env: TAG_SPACE_ENV_FILE].
    #[arg(long, value_name = "PATH")]
    pub env_file: Option<PathBuf>,
    /// Pages per LLM request [env: TAG_SPACE_BATCH_SIZE; default 5].
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Show the model a few labelled pages of the space beside each batch, chosen by word
    /// overlap, never a page of the batch (the default) [env: TAG_SPACE_FEW_SHOT].
    #[arg(long, overrides_with = "no_few_shot")]
    pub few_shot: bool,
    /// No few-shot examples, whatever TAG_SPACE_FEW_SHOT says.
    #[arg(long, overrides_with = "few_shot")]
    pub no_few_shot: bool,
    /// Ask for a short reason before each page's tags [env: TAG_SPACE_REASON].
    #[arg(long, overrides_with = "no_reason")]
    pub reason: bool,
    /// No reason field, whatever TAG_SPACE_REASON says.
    #[arg(long, overrides_with = "reason")]
    pub no_reason: bool,
}

impl EvalArgs {
    /// A switch's flags over its setting: `--x` on, `--no-x` off, neither the setting.
    pub fn switch(on: bool, off: bool, setting: bool) -> bool {
        (setting || on) && !off
    }
}

fn parse_f1(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        _ => Err("must be a number from 0 to 1 (e.g. --min-f1 0.7)".into()),
    }
}

/// `tag-space taxonomy ...`
#[derive(Debug, Clone, Subcommand)]
pub enum TaxonomyCommand {
    /// Draft a taxonomy from the labels a space already uses: prefix categories, aliases for
    /// near-duplicates, usage counts as comments, placeholder descriptions to write.
    Init(TaxonomyInitArgs),
}

/// `tag-space taxonomy init`
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["space", "demo"])))]
pub struct TaxonomyInitArgs {
    /// The space whose labels are read.
    #[arg(short, long, value_name = "KEY")]
    pub space: Option<String>,
    /// Read the bundled EVAL space instead: offline.
    #[arg(long)]
    pub demo: bool,
    /// Write the taxonomy to this file (refused if it exists, unless --force) instead of
    /// stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Overwrite the --output file.
    #[arg(long, requires = "output")]
    pub force: bool,
    /// Have the configured LLM (GEMINI_*/OPENAI_*) write each tag's description from a few
    /// titles of its pages, paced like a run. With --demo: a template of the titles, no model.
    #[arg(long)]
    pub describe: bool,
    /// With --describe: print the prompt's size (estimated tokens) and make no call.
    #[arg(long, requires = "describe")]
    pub dry_run: bool,
    /// Keep a label (with its aliases) only when at least N pages carry it.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub min_pages: u64,
    /// Read settings from this env file instead of ./.env [env: TAG_SPACE_ENV_FILE].
    #[arg(long, value_name = "PATH")]
    pub env_file: Option<PathBuf>,
}
