//! Command-line flags (clap derive). No I/O and no environment reads here: `config` merges
//! these flags over the environment and `.env`.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

mod apply;
mod tools;

pub use apply::ApplyArgs;
pub use tools::{EvalArgs, TaxonomyCommand, TaxonomyInitArgs};

const ENV_HELP: &str = "\
ENVIRONMENT (also read from ./.env, or from the file named by --env-file or
TAG_SPACE_ENV_FILE; a flag beats the environment, which beats the env file):
  Confluence
    CONFLUENCE_BASE_URL           Cloud: https://acme.atlassian.net/wiki
                                  Data Center: https://confluence.acme.com[/context]
    CONFLUENCE_EMAIL              Cloud account email (with CONFLUENCE_API_TOKEN)
    CONFLUENCE_API_TOKEN          Cloud API token (Basic auth)
    CONFLUENCE_PAT                Data Center personal access token (Bearer auth)
    CONFLUENCE_FLAVOR             cloud | datacenter (default: inferred from the credentials)
  Gemini (primary)
    GEMINI_API_KEY                enables Gemini
    GEMINI_MODEL                  default: gemini-2.5-flash
    GEMINI_BASE_URL               default: https://generativelanguage.googleapis.com
  OpenAI or any OpenAI-compatible server (fallback, or the only provider)
    OPENAI_API_KEY                enables OpenAI (optional for a local server)
    OPENAI_MODEL                  default: gpt-4.1-mini
    OPENAI_BASE_URL               default: https://api.openai.com/v1
                                  (a local server: e.g. http://127.0.0.1:11434/v1)
    TAG_SPACE_OPENAI_TIMEOUT_SECS seconds per request (default 120; more for a CPU server)
    TAG_SPACE_OPENAI_STRUCTURED   auto | json_schema | json_object | prompt: how the server
                                  is asked for JSON (default auto: the best it honours)
  Run
    TAG_SPACE_AI_CONCURRENCY      starting LLM concurrency per provider (default 3)
    TAG_SPACE_MAX_AI_CONCURRENCY  ceiling for the adaptive concurrency (default 6)
    TAG_SPACE_BATCH_SIZE          pages per LLM request (default 5)
    TAG_SPACE_GEMINI_RPM          Gemini requests per minute quota (default: unknown)
    TAG_SPACE_GEMINI_TPM          Gemini tokens per minute quota (default: unknown)
    TAG_SPACE_OPENAI_RPM          OpenAI requests per minute quota (default: unknown)
    TAG_SPACE_OPENAI_TPM          OpenAI tokens per minute quota (default: unknown)
    TAG_SPACE_MAX_COOLDOWN_SECS   longest server-requested wait slept through (default 60);
                                  a longer one from Confluence stops the run (exit 2)
    TAG_SPACE_CONFLUENCE_CONCURRENCY
                                  Confluence requests in flight at most (default 4)
    TAG_SPACE_SPACE_CONCURRENCY   spaces labelled at once with several spaces (default 1)
    TAG_SPACE_MAX_PAGE_CHARS      text budget per page sent to the LLM (default 8000)
    TAG_SPACE_TAXONOMY            taxonomy file (default: the built-in one)
    TAG_SPACE_REASON              true | false: each page's answer starts with a short
                                  reason before its tags (default false; docs/eval.md)
    TAG_SPACE_FEW_SHOT            true | false: tag-space eval shows the model labelled pages
                                  of the space (default true; eval only; docs/eval.md)
    TAG_SPACE_CACHE_ENABLED       true | false (default true)
    TAG_SPACE_CACHE_SIZE          in-memory cache entries (default 1000)
    TAG_SPACE_CACHE_PATH          state file, or a directory to keep state.db in (default:
                                  $XDG_CACHE_HOME/tag-space/state.db, else
                                  $HOME/.cache/tag-space/state.db)
    TAG_SPACE_ENV_FILE            env file to read instead of ./.env (--env-file); only from
                                  the environment
    TAG_SPACE_BATCH_POLL_SECS     --via batch --wait: seconds between polls of the jobs
                                  (default 60)
    TAG_SPACE_LOCK_DIR            run locks, one per site and space (default:
                                  $XDG_CACHE_HOME/tag-space/locks, else $HOME/.cache/...)
  Service (tag-space serve; see tag-space serve --help)
    TAG_SPACE_SERVE_TOKEN         bearer token for every endpoint but /healthz
    TAG_SPACE_SERVE_TASKS         tasks running at once (default 2)
    TAG_SPACE_SERVE_RETENTION_DAYS  ended tasks kept this long (default 30)
  Conventions
    NO_COLOR                      no colour in the output
    RUST_LOG                      log filter, overrides -q/-v (e.g. RUST_LOG=tag_space=debug)

EXIT STATUS:
  0    every page fine
  1    the run finished, but some pages failed (or, with several spaces, some spaces
       could not be done: not found, no permission, locked; each is named)
  2    usage, configuration or fatal error; another run holds the space's lock; or no LLM
       provider can be used (all down before one page was classified: one line each says why)
  130  interrupted (Ctrl-C or SIGTERM): the partial table and --report files are written;
       a second Ctrl-C stops at once

CRON:
  One run at a time per site and space, whatever the state file: a run holds an OS lock
  on <lock dir>/<SPACE>-<hash>.lock (TAG_SPACE_LOCK_DIR; released when it exits, even if
  killed). An overlapping run exits 2 naming the lock file and the holder's pid, or waits
  with --wait-lock. Use -q and --log-format json for logs.
  Many spaces: one cron entry with --space A,B,C or --all-spaces, not one per space, so
  that one process paces them all to the providers' quota. A space that cannot be done
  (not found, no permission, locked) is reported and the others go on: exit 1.
  A cron job does not run in your project directory: give it its credentials with
  --env-file /path/to/tag-space.env (or TAG_SPACE_ENV_FILE).

EXAMPLES:
  tag-space --demo                      offline demo: bundled space, keyword rules, no credentials
  tag-space --space ENG --dry-run       show the labels that would be added
  tag-space --space ENG --limit 50      classify at most 50 changed pages (nightly: the next 50)
  tag-space --space ENG,OPS             two spaces in one run (one quota, one state file)
  tag-space --all-spaces --exclude-space ARCHIVE   every global space the account can see
  tag-space --demo --demo-edit 3        the demo again after editing 3 of its pages (simulated)
  tag-space --space ENG --sync          also remove labels tag-space added that no longer apply
  tag-space --space ENG --dry-run --plan plan.json   save the labels for review (docs/plan.md)
  tag-space apply plan.json             write exactly the reviewed plan, no model asked
  tag-space cache stats                 what the state file holds, hit rate of the last runs
  tag-space cache clear --space ENG     classify every page of ENG again on the next run
  tag-space --space ENG --via batch     submit the pages to do as batch jobs (half price);
                                        the next such run collects and applies them
  tag-space --space ENG --via batch --wait   submit, wait for the jobs, apply
  tag-space jobs                        the providers' batch jobs: state, counts, age
  tag-space jobs cancel 3               cancel batch job 3 (its finished part is kept)
  tag-space eval --demo                 precision/recall/F1 against human labels, offline
  tag-space taxonomy init --space ENG -o taxonomy.toml   draft a taxonomy from ENG's labels
  tag-space serve --demo                the bulk-tagging HTTP service (tag-space serve --help)";

/// Label every page of a Confluence space from a controlled taxonomy, with an LLM
/// (Gemini first, OpenAI as fallback) paced to the provider's quota.
#[derive(Debug, Clone, Parser)]
#[command(name = "tag-space", version, about, after_long_help = ENV_HELP, after_help = "Run with --help for the environment variables, exit status and examples.")]
#[command(subcommand_negates_reqs = true, args_conflicts_with_subcommands = true)]
pub struct Args {
    /// Without a command: label the space.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Key of the Confluence space to label (e.g. ENG). Another case (eng) is taken when
    /// exactly one of the keys the account can see matches it. Repeatable, or
    /// comma-separated (--space ENG,OPS): the spaces are labelled in one run, sharing the
    /// providers' quota and the state file.
    #[arg(
        short,
        long,
        value_name = "KEY",
        value_delimiter = ',',
        required_unless_present_any = ["demo", "all_spaces"]
    )]
    pub space: Vec<String>,

    /// Label every global space the credentials can see (not personal `~` spaces, not
    /// archived ones), one run over all of them.
    #[arg(long, conflicts_with_all = ["space", "demo"])]
    pub all_spaces: bool,

    /// With --all-spaces: leave this space out. Repeatable, or comma-separated.
    #[arg(long, value_name = "KEY", value_delimiter = ',')]
    pub exclude_space: Vec<String>,

    /// With several spaces: how many are labelled at once [env: TAG_SPACE_SPACE_CONCURRENCY;
    /// default 1, one after another]. They share the providers' quota either way.
    #[arg(long, value_name = "N")]
    pub space_concurrency: Option<usize>,

    /// Write nothing; print the labels that would be added to each page.
    #[arg(long)]
    pub dry_run: bool,

    /// With --dry-run: also save what the run would write as a plan (docs/plan.md), to be
    /// reviewed and then written exactly with `tag-space apply FILE`.
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,

    /// Stop after sending this many pages for classification (to the model, or answered from
    /// the cache). Pages skipped as unchanged since the last run, or without text, do not
    /// count, so a nightly `--limit N` run moves on to the next N pages. At least 1 (use
    /// --dry-run to look without writing).
    #[arg(long, value_name = "N", value_parser = parse_limit)]
    pub limit: Option<u64>,

    /// Pages per LLM request [env: TAG_SPACE_BATCH_SIZE; default 5].
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,

    /// Taxonomy file (TOML) replacing the built-in one [env: TAG_SPACE_TAXONOMY].
    #[arg(long, value_name = "FILE")]
    pub taxonomy: Option<PathBuf>,

    /// Run offline on the bundled DEMO space with the keyword rules provider: no network,
    /// no credentials.
    #[arg(long, conflicts_with = "space")]
    pub demo: bool,

    /// With --demo: simulate a person editing N pages of the demo space before this run, so
    /// an incremental run can be seen offline (those pages are classified again).
    #[arg(long, value_name = "N", conflicts_with = "space")]
    pub demo_edit: Option<usize>,

    /// With --demo: each request to the demo's rules provider takes this long, as a real
    /// model's would, so that the progress line can be watched.
    #[arg(long, value_name = "MS", conflicts_with = "space")]
    pub demo_delay_ms: Option<u64>,

    /// Read settings from this env file instead of ./.env [env: TAG_SPACE_ENV_FILE].
    #[arg(long, value_name = "PATH")]
    pub env_file: Option<PathBuf>,

    /// Add a last-resort provider after Gemini/OpenAI. `rules` tags from the taxonomy's
    /// keywords and sends no page content anywhere.
    #[arg(long, value_name = "PROVIDER")]
    pub fallback: Option<FallbackArg>,

    /// Starting LLM concurrency per provider [env: TAG_SPACE_AI_CONCURRENCY; default 3].
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,

    /// Ceiling for the adaptive LLM concurrency [env: TAG_SPACE_MAX_AI_CONCURRENCY; default 6].
    #[arg(long, value_name = "N")]
    pub max_concurrency: Option<usize>,

    /// Do not read cached classifications (results are still stored) [env: TAG_SPACE_CACHE_ENABLED=false].
    #[arg(long)]
    pub no_cache: bool,

    /// State file (cache, label ledger, run history), or a directory to keep it in
    /// [env: TAG_SPACE_CACHE_PATH]. With --demo: the demo's own state file.
    #[arg(long, value_name = "PATH")]
    pub cache_path: Option<PathBuf>,

    /// Also remove labels tag-space added earlier that the model no longer chooses for a
    /// page. A label a person added is never removed.
    #[arg(long)]
    pub sync: bool,

    /// Also write a report: FILE.json (the documented JSON document, docs/report.md) or
    /// FILE.md (Markdown for a pull-request comment or $GITHUB_STEP_SUMMARY). Repeatable.
    #[arg(long, value_name = "FILE")]
    pub report: Vec<PathBuf>,

    /// What to print on stdout at the end: a metrics table for people, or the JSON report
    /// for scripts (then no per-page lines are printed).
    #[arg(long, value_name = "FORMAT", default_value = "table")]
    pub format: FormatArg,

    /// Print only errors and the final table.
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,

    /// More log detail (-v: info, -vv: debug). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Log lines on stderr as text for people, or JSON lines for a log shipper.
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    pub log_format: LogFormatArg,

    /// If another run holds this space's lock, wait for it instead of exiting with 2.
    #[arg(long)]
    pub wait_lock: bool,

    /// How the pages that need the model are classified: `interactive` (now, paced to the
    /// quota) or `batch` (the primary provider's batch service, Gemini or OpenAI: half the
    /// price, answered within 24 hours). A `batch` run first collects the finished jobs and
    /// applies their labels, then submits a job for the pages still to do and exits 0; run
    /// it again (e.g. nightly) to collect. See README, "Large spaces".
    #[arg(long, value_name = "HOW", default_value = "interactive")]
    pub via: ViaArg,

    /// With --via batch: wait for the jobs (polling every TAG_SPACE_BATCH_POLL_SECS) and
    /// apply their labels in the same run.
    #[arg(long)]
    pub wait: bool,

    /// With --via batch: pages a job failed or left out go into the next batch job instead
    /// of being classified interactively.
    #[arg(long)]
    pub follow_up_job: bool,
}

/// `--via`: where the pages that need the model go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum ViaArg {
    /// The provider chain, now.
    #[default]
    Interactive,
    /// The primary provider's batch service, at half the price.
    Batch,
}

/// `--limit`: a whole number of at least 1. `--limit 0` used to label a page anyway; it is
/// refused rather than guessed at.
fn parse_limit(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(0) => Err(
            "must be at least 1 (to see what a run would do without writing, use --dry-run)".into(),
        ),
        Ok(n) => Ok(n),
        Err(_) => Err("not a whole number (e.g. --limit 50)".into()),
    }
}

/// How log lines are written on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    /// One readable line per event.
    Text,
    /// One JSON object per line (timestamp, level, fields, message).
    Json,
}

/// Commands besides labelling a space.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Inspect or reset the state file (classification cache, label ledger, run history).
    #[command(subcommand)]
    Cache(CacheCommand),
    /// The providers' batch jobs (backfills at half price): list them with their state,
    /// request counts and age, or cancel one.
    Jobs(JobsArgs),
    /// Measure the labels against the ones people already put on the space's pages:
    /// precision, recall and F1 per label. Writes nothing to Confluence.
    Eval(EvalArgs),
    /// Work on taxonomy files.
    #[command(subcommand)]
    Taxonomy(TaxonomyCommand),
    /// Write exactly the labels of a reviewed plan (`--dry-run --plan FILE`), with no model
    /// call; pages edited since the plan are reported as stale and left alone.
    Apply(ApplyArgs),
    /// Run the bulk-tagging HTTP service: POST /bulk/tag-space/{space} starts a task, GET
    /// /bulk/tasks/{id} follows it (docs/serve.openapi.yaml). Every task shares one
    /// governor per provider, so several spaces share one quota.
    Serve(ServeArgs),
}

/// `tag-space serve`: the settings of the runs it starts come from the environment and the
/// env file, as for a run; these flags are the service's own and the few run flags that
/// make sense for every task.
#[derive(Debug, Clone, clap::Args)]
#[command(after_long_help = SERVE_HELP)]
pub struct ServeArgs {
    /// Address to listen on. Any address but a loopback one needs TAG_SPACE_SERVE_TOKEN.
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:8080")]
    pub bind: std::net::SocketAddr,
    /// Serve the bundled DEMO space with the keyword rules provider: offline, no credentials.
    #[arg(long)]
    pub demo: bool,
    /// With --demo: each request to the rules provider takes this long.
    #[arg(long, value_name = "MS")]
    pub demo_delay_ms: Option<u64>,
    /// Tasks running at once; more wait, queued [env: TAG_SPACE_SERVE_TASKS; default 2].
    #[arg(long, value_name = "N")]
    pub tasks: Option<usize>,
    /// Read settings from this env file instead of ./.env [env: TAG_SPACE_ENV_FILE].
    #[arg(long, value_name = "PATH")]
    pub env_file: Option<PathBuf>,
    /// State file shared by every task (cache, label ledger, tasks) [env: TAG_SPACE_CACHE_PATH].
    #[arg(long, value_name = "PATH")]
    pub cache_path: Option<PathBuf>,
    /// Taxonomy file (TOML) [env: TAG_SPACE_TAXONOMY].
    #[arg(long, value_name = "FILE")]
    pub taxonomy: Option<PathBuf>,
    /// Add a last-resort provider after Gemini/OpenAI (`rules`).
    #[arg(long, value_name = "PROVIDER")]
    pub fallback: Option<FallbackArg>,
    /// More log detail (-v: info, -vv: debug). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Log lines on stderr as text for people, or JSON lines for a log shipper.
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    pub log_format: LogFormatArg,
}

const SERVE_HELP: &str = "\
SERVICE ENVIRONMENT (besides the run's, see tag-space --help):
    TAG_SPACE_SERVE_TOKEN           bearer token every endpoint but /healthz requires;
                                    needed to bind a non-loopback address
    TAG_SPACE_SERVE_TASKS           tasks running at once (default 2)
    TAG_SPACE_SERVE_RETENTION_DAYS  ended tasks are forgotten after this (default 30)

ENDPOINTS (docs/serve.openapi.yaml):
    POST /bulk/tag-space/{space}    start: {\"dry_run\": true, \"mode\": \"add\"|\"sync\", \"limit\": n,
                                    \"batch_size\": n}; ?wait=true answers the final summary
    GET  /bulk/tasks[?page=&per_page=]   tasks, newest first
    GET  /bulk/tasks/{id}           status and summary
    GET  /bulk/tasks/{id}/events    Server-Sent Events until the task ends
    POST /bulk/tasks/{id}/stop      stop as Ctrl-C does
    GET  /healthz, GET /metrics

EXAMPLE:
    tag-space serve --demo &
    curl -s -X POST localhost:8080/bulk/tag-space/DEMO -d '{\"dry_run\": true}'

SIGTERM or Ctrl-C stops taking requests, stops the running tasks (requests in flight get
their grace), records them as interrupted and exits 0.";

/// `tag-space jobs [cancel ID]`
#[derive(Debug, Clone, clap::Args)]
pub struct JobsArgs {
    #[command(subcommand)]
    pub action: Option<JobsAction>,
    /// State file [env: TAG_SPACE_CACHE_PATH].
    #[arg(long, value_name = "PATH", global = true)]
    pub cache_path: Option<PathBuf>,
    /// Only this space's jobs.
    #[arg(long, value_name = "KEY")]
    pub space: Option<String>,
}

/// `tag-space jobs ...`
#[derive(Debug, Clone, Subcommand)]
pub enum JobsAction {
    /// Ask the provider to cancel a job; its finished part is still collected by the next
    /// run. Uses the job's provider settings from the environment, like a run.
    Cancel {
        /// The job's id as `tag-space jobs` lists it, or the provider's id.
        id: String,
    },
}

/// `tag-space cache ...`
#[derive(Debug, Clone, Subcommand)]
pub enum CacheCommand {
    /// Entries, file size, and per space the hit rate of the last runs.
    Stats {
        /// State file [env: TAG_SPACE_CACHE_PATH].
        #[arg(long, value_name = "PATH")]
        cache_path: Option<PathBuf>,
        /// How many recent runs to show per space.
        #[arg(long, value_name = "N", default_value_t = 5)]
        runs: usize,
    },
    /// Forget cached answers, finished pages and run history, so that the next run
    /// classifies every page again. Which labels tag-space added is kept, so `--sync` can
    /// still tell them from a person's.
    Clear {
        /// State file [env: TAG_SPACE_CACHE_PATH].
        #[arg(long, value_name = "PATH")]
        cache_path: Option<PathBuf>,
        /// Only this space (default: every space); another case is taken when exactly one
        /// recorded space matches it.
        #[arg(long, value_name = "KEY")]
        space: Option<String>,
    },
}

/// What the run prints on stdout at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// Per-page lines and a metrics table.
    Table,
    /// The JSON report only.
    Json,
}

/// Providers that can be added as a last resort with `--fallback`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FallbackArg {
    /// Keyword rules from the taxonomy; offline.
    Rules,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn space_is_required_unless_demo() {
        assert!(Args::try_parse_from(["tag-space"]).is_err());
        assert!(Args::try_parse_from(["tag-space", "--demo"]).is_ok());
        assert!(Args::try_parse_from(["tag-space", "--demo", "--space", "X"]).is_err());
        let a =
            Args::try_parse_from(["tag-space", "-s", "ENG", "--dry-run", "--limit", "3"]).unwrap();
        assert_eq!(a.space, ["ENG"]);
        assert!(a.dry_run);
        assert_eq!(a.limit, Some(3));
    }

    #[test]
    fn cache_commands_parse_and_a_plain_run_needs_none() {
        let a = Args::try_parse_from(["tag-space", "cache", "stats"]).unwrap();
        assert!(matches!(
            a.command,
            Some(Command::Cache(CacheCommand::Stats { runs: 5, .. }))
        ));
        let a = Args::try_parse_from([
            "tag-space",
            "cache",
            "clear",
            "--space",
            "ENG",
            "--cache-path",
            "/tmp/s.db",
        ])
        .unwrap();
        match a.command {
            Some(Command::Cache(CacheCommand::Clear { space, cache_path })) => {
                assert_eq!(space.as_deref(), Some("ENG"));
                assert_eq!(cache_path, Some(PathBuf::from("/tmp/s.db")));
            }
            other => panic!("{other:?}"),
        }
        let a = Args::try_parse_from(["tag-space", "--space", "ENG", "--sync"]).unwrap();
        assert!(a.command.is_none() && a.sync);
        assert!(Args::try_parse_from(["tag-space", "cache"]).is_err());
    }

    #[test]
    fn jobs_commands_parse() {
        let a = Args::try_parse_from(["tag-space", "jobs", "--space", "ENG"]).unwrap();
        match a.command {
            Some(Command::Jobs(j)) => {
                assert!(j.action.is_none() && j.space.as_deref() == Some("ENG"))
            }
            other => panic!("{other:?}"),
        }
        let a = Args::try_parse_from([
            "tag-space",
            "jobs",
            "cancel",
            "3",
            "--cache-path",
            "/tmp/s.db",
        ])
        .unwrap();
        match a.command {
            Some(Command::Jobs(j)) => {
                assert!(matches!(j.action, Some(JobsAction::Cancel { ref id }) if id == "3"));
                assert_eq!(j.cache_path, Some(PathBuf::from("/tmp/s.db")));
            }
            other => panic!("{other:?}"),
        }
        assert!(Args::try_parse_from(["tag-space", "jobs", "cancel"]).is_err());
    }

    #[test]
    fn long_help_names_every_variable() {
        let help = Args::command().render_long_help().to_string();
        for var in crate::config::VARIABLES {
            assert!(help.contains(var), "--help does not mention {var}");
        }
        assert!(help.contains(crate::config::ENV_FILE_VARIABLE));
        assert!(help.contains("--env-file"));
    }

    #[test]
    fn limit_zero_is_refused_and_the_help_says_what_limit_counts() {
        let e = Args::try_parse_from(["tag-space", "--space", "ENG", "--limit", "0"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("must be at least 1"), "{e}");
        assert!(Args::try_parse_from(["tag-space", "--demo", "--limit", "x"]).is_err());
        let a = Args::try_parse_from(["tag-space", "--demo", "--limit", "1"]).unwrap();
        assert_eq!(a.limit, Some(1));
        let help = Args::command().render_long_help().to_string();
        let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            flat.contains(
                "Pages skipped as unchanged since the last run, or without text, do not count"
            ),
            "{help}"
        );
    }

    #[test]
    fn demo_flags_need_the_demo() {
        assert!(Args::try_parse_from(["tag-space", "--space", "ENG", "--demo-edit", "2"]).is_err());
        let a = Args::try_parse_from([
            "tag-space",
            "--demo",
            "--demo-edit",
            "2",
            "--demo-delay-ms",
            "50",
        ])
        .unwrap();
        assert_eq!((a.demo_edit, a.demo_delay_ms), (Some(2), Some(50)));
    }

    #[test]
    fn no_help_line_is_wrapped_mid_example() {
        // clap wraps lines longer than the terminal (100 columns when it cannot tell), which
        // cut the OPENAI_BASE_URL example in two.
        let help = Args::command()
            .term_width(100)
            .render_long_help()
            .to_string();
        assert!(
            help.contains("(a local server: e.g. http://127.0.0.1:11434/v1)"),
            "{help}"
        );
        for line in ENV_HELP.lines() {
            assert!(
                line.chars().count() <= 100,
                "clap would wrap this line: {line}"
            );
        }
    }
}
