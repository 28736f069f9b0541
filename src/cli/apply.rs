//! Flags of `tag-space apply FILE`, and the run flags they stand for.

use std::path::PathBuf;

use clap::Parser;

use super::{Args, FallbackArg, FormatArg, LogFormatArg};

/// `tag-space apply FILE`
#[derive(Debug, Clone, clap::Args)]
#[command(after_long_help = APPLY_HELP)]
pub struct ApplyArgs {
    /// The plan, as `tag-space --space KEY --dry-run --plan FILE` wrote it.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Write nothing; show what applying the plan would do now.
    #[arg(long)]
    pub dry_run: bool,
    /// Also write a report: FILE.json or FILE.md, as for a run. Repeatable.
    #[arg(long, value_name = "FILE")]
    pub report: Vec<PathBuf>,
    /// What to print on stdout at the end: the table, or the JSON report.
    #[arg(long, value_name = "FORMAT", default_value = "table")]
    pub format: FormatArg,
    /// Read settings from this env file instead of ./.env [env: TAG_SPACE_ENV_FILE].
    #[arg(long, value_name = "PATH")]
    pub env_file: Option<PathBuf>,
    /// State file (label ledger) [env: TAG_SPACE_CACHE_PATH].
    #[arg(long, value_name = "PATH")]
    pub cache_path: Option<PathBuf>,
    /// The taxonomy the plan was made with [env: TAG_SPACE_TAXONOMY].
    #[arg(long, value_name = "FILE")]
    pub taxonomy: Option<PathBuf>,
    /// Print only errors and the final table.
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More log detail (-v: info, -vv: debug). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Log lines on stderr as text for people, or JSON lines for a log shipper.
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    pub log_format: LogFormatArg,
    /// If another run holds a space's lock, wait for it instead of exiting with 2.
    #[arg(long)]
    pub wait_lock: bool,
}

const APPLY_HELP: &str = "\
No model is asked. Each planned page's version is checked first: a page edited since the
plan is reported as stale and left alone, and so is a page gone since the plan (deleted,
moved out of its space, or no longer readable): nothing is written to either. A label a
person removed after tag-space added it is not added again, and only labels tag-space added
are ever removed. The state file records the writes as a run does. Pages are written
TAG_SPACE_CONFLUENCE_CONCURRENCY at a time (one governor for the site, whatever the number
of spaces) and reported in the plan's order. If Confluence stops the work (a quota spent, a
wait above TAG_SPACE_MAX_COOLDOWN_SECS), no other page is started: the pages written are
reported, and one line says how many were not applied and when to apply the same plan
again (it then writes only those).

EXIT STATUS:
  0    every planned page applied (or already as planned)
  1    some pages were stale (edited or gone since the plan) or failed
  2    the plan was refused (not a plan, another plan_version, changed since it was written
       (checksum), another site or taxonomy), Confluence stopped the work, or a
       configuration or fatal error

EXAMPLE:
  tag-space --space ENG --dry-run --plan plan.json --report plan.md
  tag-space apply plan.json";

impl ApplyArgs {
    /// The run flags applying `space` stands for: the same settings a run over it reads
    /// (credentials, state file, lock), in `sync` mode when the plan is. The `rules`
    /// fallback only keeps a configuration without an LLM key valid: no provider is built.
    pub fn run_args(&self, space: &str, sync: bool) -> Args {
        let mut args = Args::parse_from(["tag-space", "--space", space]);
        args.dry_run = self.dry_run;
        args.sync = sync;
        args.report = self.report.clone();
        args.format = self.format;
        args.env_file = self.env_file.clone();
        args.cache_path = self.cache_path.clone();
        args.taxonomy = self.taxonomy.clone();
        args.quiet = self.quiet;
        args.verbose = self.verbose;
        args.log_format = self.log_format;
        args.wait_lock = self.wait_lock;
        args.fallback = Some(FallbackArg::Rules);
        args
    }
}
