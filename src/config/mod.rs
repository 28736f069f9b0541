//! Settings from flags, the environment and an optional `.env` file (flag beats environment
//! beats `.env` beats default). The only module that reads the process environment
//! ([`sources`]).
//!
//! Each module owns its settings type ([`ConfluenceSettings`] in `confluence`,
//! [`ProviderSettings`] in `llm`, [`Quota`] in `governor`, [`CacheSettings`] in `cache`,
//! [`ReportFile`] in `report`); this module only builds them, and [`Config`] carries them
//! down from the composition root (`app`). No client module imports this one.

mod cache;
mod confluence;
mod providers;
mod reports;
pub mod serve;
mod sources;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

use crate::cache::CacheSettings;
use crate::cli::{Args, FallbackArg, ViaArg};
use crate::confluence::ConfluenceSettings;
use crate::governor::Quota;
use crate::llm::ProviderSettings;
use crate::llm::structured::StructuredMode;
use crate::report::logging::LogSettings;
use crate::report::{OutputFormat, ReportFile};

pub use cache::DEMO_STATE_FILE;
pub use providers::{
    DEFAULT_GEMINI_BASE_URL, DEFAULT_GEMINI_MODEL, DEFAULT_OPENAI_BASE_URL, DEFAULT_OPENAI_MODEL,
};
pub use serve::{ServeConfig, serve_config};
use sources::setting;

/// Every environment variable tag-space reads; `--help` and `.env.example` name each one.
pub const VARIABLES: &[&str] = &[
    "CONFLUENCE_BASE_URL",
    "CONFLUENCE_EMAIL",
    "CONFLUENCE_API_TOKEN",
    "CONFLUENCE_PAT",
    "CONFLUENCE_FLAVOR",
    "GEMINI_API_KEY",
    "GEMINI_MODEL",
    "GEMINI_BASE_URL",
    "OPENAI_API_KEY",
    "OPENAI_MODEL",
    "OPENAI_BASE_URL",
    "TAG_SPACE_AI_CONCURRENCY",
    "TAG_SPACE_MAX_AI_CONCURRENCY",
    "TAG_SPACE_BATCH_SIZE",
    "TAG_SPACE_GEMINI_RPM",
    "TAG_SPACE_GEMINI_TPM",
    "TAG_SPACE_OPENAI_RPM",
    "TAG_SPACE_OPENAI_TPM",
    "TAG_SPACE_OPENAI_TIMEOUT_SECS",
    "TAG_SPACE_OPENAI_STRUCTURED",
    "TAG_SPACE_MAX_COOLDOWN_SECS",
    "TAG_SPACE_CONFLUENCE_CONCURRENCY",
    "TAG_SPACE_SPACE_CONCURRENCY",
    "TAG_SPACE_MAX_PAGE_CHARS",
    "TAG_SPACE_TAXONOMY",
    "TAG_SPACE_REASON",
    "TAG_SPACE_FEW_SHOT",
    "TAG_SPACE_CACHE_ENABLED",
    "TAG_SPACE_CACHE_SIZE",
    "TAG_SPACE_CACHE_PATH",
    "TAG_SPACE_BATCH_POLL_SECS",
    "TAG_SPACE_SERVE_TOKEN",
    "TAG_SPACE_SERVE_TASKS",
    "TAG_SPACE_SERVE_RETENTION_DAYS",
];

/// Names the env file to read instead of `./.env`; read from the process environment only.
pub const ENV_FILE_VARIABLE: &str = "TAG_SPACE_ENV_FILE";

/// Conventions tag-space honours that are not its own settings (documented, not in .env.example).
pub const CONVENTIONS: &[&str] = &["NO_COLOR", "RUST_LOG", "XDG_CACHE_HOME", "HOME"];

/// A setting that cannot be used. The message names the variable (or flag) and shows a valid
/// example, so that one line tells a person what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} is not set: {hint}")]
    Missing {
        name: &'static str,
        hint: &'static str,
    },
    #[error("{name}={value:?} is invalid: {reason} (e.g. {name}={example})")]
    Invalid {
        name: String,
        value: String,
        reason: String,
        example: &'static str,
    },
    #[error(
        "no LLM provider is configured: set GEMINI_API_KEY and/or OPENAI_API_KEY (or OPENAI_BASE_URL for a local OpenAI-compatible server), or try --demo"
    )]
    NoProvider,
    /// The env file is broken or missing; the message never shows a value from it.
    #[error(transparent)]
    EnvFile(#[from] crate::envfile::EnvFileError),
    /// Flags that cannot go together, or a flag this setup cannot honour.
    #[error("{0}")]
    Usage(String),
    #[error(
        "Confluence credentials are not set: set CONFLUENCE_EMAIL and CONFLUENCE_API_TOKEN (Cloud) or CONFLUENCE_PAT (Data Center)"
    )]
    NoCredentials,
}

/// Everything a run needs, validated: the parts' settings, what the run does and how it
/// shows it. `app` reads this, never the flags.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The space to label (`DEMO` in demo mode): with several spaces, the one a space's own
    /// run works on (`app` sets it per space from [`Config::spaces`]).
    pub space: String,
    /// Every space the run labels: the keys given (`--space`, repeatable), or all the
    /// credentials can see (`--all-spaces`).
    pub spaces: Spaces,
    /// `--space-concurrency`: spaces labelled at once in a run over several.
    pub space_concurrency: usize,
    /// `None` in demo mode: the bundled space stands in for Confluence.
    pub confluence: Option<ConfluenceSettings>,
    pub gemini: Option<ProviderSettings>,
    pub openai: Option<ProviderSettings>,
    /// The governor's quotas for Gemini and OpenAI; `None` fields are learnt from the
    /// providers' answers.
    pub gemini_quota: Quota,
    pub openai_quota: Quota,
    /// `TAG_SPACE_OPENAI_STRUCTURED`: how the OpenAI-compatible server is asked for JSON.
    pub openai_structured: StructuredMode,
    /// Use the offline keyword rules provider: alone (demo) or as the last fallback.
    pub rules: bool,
    pub demo: bool,
    /// `--demo-edit`: demo pages "edited" by a person before this run.
    pub demo_edit: usize,
    /// `--demo-delay-ms`: how long each request to the demo's rules provider takes.
    pub demo_delay: Duration,
    pub dry_run: bool,
    pub limit: Option<u64>,
    pub batch_size: usize,
    pub concurrency: usize,
    pub max_concurrency: usize,
    /// A server-requested wait longer than this marks the provider unavailable for the run,
    /// and stops the run's Confluence work.
    pub max_cooldown: Duration,
    /// `TAG_SPACE_CONFLUENCE_CONCURRENCY`: Confluence requests in flight at most.
    pub confluence_concurrency: usize,
    /// Characters of a page's text sent to the LLM.
    pub max_page_chars: usize,
    pub taxonomy_path: Option<PathBuf>,
    /// `TAG_SPACE_REASON`: each page's answer starts with a short reason (docs/eval.md).
    pub reason: bool,
    /// `TAG_SPACE_FEW_SHOT`: `tag-space eval` shows the model labelled pages of the space
    /// (`None`, unset: on, see docs/eval.md); a labelling run has no such pool yet and warns
    /// when it is set to true.
    pub few_shot: Option<bool>,
    pub cache: CacheSettings,
    /// `--sync`: also remove labels tag-space added that no longer apply.
    pub sync: bool,
    /// Reports to write at the end of the run.
    pub reports: Vec<ReportFile>,
    pub format: OutputFormat,
    /// `NO_COLOR` is set: no colour even on a terminal.
    pub no_color: bool,
    /// `-q` (only errors, the final table and failed pages), `-v`/`-vv`, `--log-format`.
    pub log: LogSettings,
    /// `--wait-lock`: wait for another run's lock instead of exiting with 2.
    pub wait_lock: bool,
    /// Where run locks live: `TAG_SPACE_LOCK_DIR`, else the user's cache directory's
    /// `tag-space/locks`; `None` when none of `TAG_SPACE_LOCK_DIR`, `XDG_CACHE_HOME` or
    /// `HOME` is set. Never derived from the state file's path.
    pub lock_dir: Option<PathBuf>,
    /// Things worth a warning that do not stop the run (e.g. plain HTTP to a remote host).
    pub warnings: Vec<String>,
    /// `--via batch`, `--wait`, `--follow-up-job` and the poll interval.
    pub batch: BatchSettings,
    /// `--plan FILE` (dry runs only): where to save what the run would write.
    pub plan: Option<PathBuf>,
}

/// The spaces a run labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spaces {
    /// These keys, as typed, in order, each once.
    Keys(Vec<String>),
    /// `--all-spaces`: every global, current space the credentials can see, but these keys.
    All { exclude: Vec<String> },
}

impl Spaces {
    /// More than one space (or all of them): a run over several spaces, whose reports have a
    /// per-space breakdown and in which one failing space does not stop the others.
    pub fn several(&self) -> bool {
        match self {
            Spaces::Keys(keys) => keys.len() > 1,
            Spaces::All { .. } => true,
        }
    }
}

/// `--via batch`: the pages that need the model go to the primary provider's batch service.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BatchSettings {
    pub enabled: bool,
    /// `--wait`: poll the jobs and apply their labels in the same run.
    pub wait: bool,
    /// `--follow-up-job`: a job's failed pages go into the next job, not the interactive chain.
    pub follow_up_job: bool,
    /// `TAG_SPACE_BATCH_POLL_SECS`: between two polls of the open jobs under `--wait`.
    pub poll: Duration,
}

/// The run's numeric limits, each flag > variable > default and range-checked.
struct Limits {
    batch_size: usize,
    concurrency: usize,
    max_concurrency: usize,
    max_cooldown: Duration,
    confluence_concurrency: usize,
    max_page_chars: usize,
    space_concurrency: usize,
}

/// What the run talks to: the space, Confluence and the LLM providers (none in the demo).
struct Target {
    spaces: Spaces,
    confluence: Option<ConfluenceSettings>,
    gemini: Option<ProviderSettings>,
    openai: Option<ProviderSettings>,
}

impl Config {
    /// Reads the process environment and the env file (if present) under `args`.
    pub fn load(args: &Args) -> Result<Self, ConfigError> {
        Self::from_sources(args, sources::process(args)?)
    }

    /// Pure: builds the configuration from flags and a variable lookup (environment, then
    /// `.env`). Tests pass a map instead of touching the real environment.
    pub fn from_sources(
        args: &Args,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let get = sources::trimmed(get);
        let mut warnings = Vec::new();
        let limits = Limits::read(args, &get)?;
        let cache = cache::cache_settings(args, &get)?;
        let (gemini_quota, openai_quota) = providers::quotas(&get)?;
        let reports = reports::report_files(args)?;
        let rules = args.demo || args.fallback == Some(FallbackArg::Rules);
        let target = Target::read(args, &get, rules, &mut warnings)?;
        let batch = batch_settings(args, &get, &target, cache.enabled)?;
        Ok(Config {
            plan: plan_path(args)?,
            batch,
            space: match &target.spaces {
                Spaces::Keys(keys) => keys[0].clone(),
                Spaces::All { .. } => String::new(),
            },
            space_concurrency: limits.space_concurrency,
            spaces: target.spaces,
            confluence: target.confluence,
            gemini: target.gemini,
            openai: target.openai,
            gemini_quota,
            openai_quota,
            openai_structured: providers::structured_mode(&get)?,
            rules,
            demo: args.demo,
            demo_edit: args.demo_edit.unwrap_or(0),
            demo_delay: Duration::from_millis(args.demo_delay_ms.unwrap_or(0)),
            dry_run: args.dry_run,
            limit: args.limit,
            batch_size: limits.batch_size,
            concurrency: limits.concurrency,
            max_concurrency: limits.max_concurrency,
            max_cooldown: limits.max_cooldown,
            confluence_concurrency: limits.confluence_concurrency,
            max_page_chars: limits.max_page_chars,
            taxonomy_path: args
                .taxonomy
                .clone()
                .or_else(|| get("TAG_SPACE_TAXONOMY").map(PathBuf::from)),
            reason: sources::parse_bool("TAG_SPACE_REASON", get("TAG_SPACE_REASON"), false)?,
            few_shot: get("TAG_SPACE_FEW_SHOT")
                .map(|v| sources::parse_bool("TAG_SPACE_FEW_SHOT", Some(v), true))
                .transpose()?,
            cache,
            sync: args.sync,
            reports,
            format: reports::output_format(args.format),
            no_color: get("NO_COLOR").is_some(),
            log: log_settings(args),
            wait_lock: args.wait_lock,
            lock_dir: cache::lock_dir(&get),
            warnings,
        })
    }
}

impl Config {
    /// `eval --demo --llm`: the bundled space, answered by the configured LLM providers
    /// (`GEMINI_*`, `OPENAI_*`) instead of the keyword rules, to measure a model or a prompt
    /// switch offline from Confluence. The rules stay only with `--fallback rules`.
    pub fn with_demo_llm(mut self, args: &Args) -> Result<Self, ConfigError> {
        let get = sources::trimmed(sources::process(args)?);
        self.gemini = providers::gemini_settings(&get, &mut self.warnings)?;
        self.openai = providers::openai_settings(&get, &mut self.warnings)?;
        self.rules = args.fallback == Some(FallbackArg::Rules);
        if self.gemini.is_none() && self.openai.is_none() {
            return Err(ConfigError::NoProvider);
        }
        Ok(self)
    }
}

/// `--via batch` needs a provider with a batch service as the primary (the demo and the
/// rules provider have none); `--wait` and `--follow-up-job` need `--via batch`.
fn batch_settings(
    args: &Args,
    get: &impl Fn(&str) -> Option<String>,
    target: &Target,
    cache_reads: bool,
) -> Result<BatchSettings, ConfigError> {
    let enabled = args.via == ViaArg::Batch;
    if !enabled && (args.wait || args.follow_up_job) {
        let flag = if args.wait {
            "--wait"
        } else {
            "--follow-up-job"
        };
        return Err(ConfigError::Usage(format!(
            "{flag} needs --via batch (e.g. tag-space --space ENG --via batch {flag})"
        )));
    }
    if enabled && target.spaces.several() {
        return Err(ConfigError::Usage(
            "--via batch takes one space at a time: run it once per space (e.g. tag-space --space ENG --via batch)".into(),
        ));
    }
    if enabled && args.demo {
        return Err(ConfigError::Usage(
            "--via batch cannot be used with --demo: the demo's rules provider has no batch service".into(),
        ));
    }
    if enabled && target.gemini.is_none() && target.openai.is_none() {
        return Err(ConfigError::Usage(
            "--via batch needs Gemini or OpenAI as the primary provider (set GEMINI_API_KEY or OPENAI_API_KEY): the rules provider has no batch service".into(),
        ));
    }
    if enabled && !cache_reads {
        return Err(ConfigError::Usage(
            "--via batch needs the cache (collected answers are read from it): drop --no-cache or set TAG_SPACE_CACHE_ENABLED=true".into(),
        ));
    }
    let poll: f64 = setting(
        None,
        "",
        "TAG_SPACE_BATCH_POLL_SECS",
        get,
        60.0,
        0.01,
        86_400.0,
        "60",
    )?;
    Ok(BatchSettings {
        enabled,
        wait: args.wait,
        follow_up_job: args.follow_up_job,
        poll: Duration::from_secs_f64(poll),
    })
}

/// `--plan FILE`: only on a dry run (as `terraform plan -out`: a run that writes has nothing
/// left to apply), on a Confluence site, with every page classified now.
fn plan_path(args: &Args) -> Result<Option<PathBuf>, ConfigError> {
    let Some(path) = &args.plan else {
        return Ok(None);
    };
    let refuse = |why: &str| Err(ConfigError::Usage(format!("--plan {why}")));
    if !args.dry_run {
        return refuse(
            "needs --dry-run: a plan is what a run would write, saved for review (e.g. tag-space --space ENG --dry-run --plan plan.json, then tag-space apply plan.json)",
        );
    }
    if args.demo {
        return refuse(
            "cannot be used with --demo: the demo has no Confluence site to apply it to",
        );
    }
    if args.via == ViaArg::Batch {
        return refuse(
            "cannot be used with --via batch: a plan holds labels chosen in this run, and a batch run classifies later",
        );
    }
    Ok(Some(path.clone()))
}

/// The log settings alone: flags only, so that logging can start before the rest of the
/// configuration is read (and report its errors in the chosen format).
pub fn log_settings(args: &Args) -> LogSettings {
    LogSettings {
        quiet: args.quiet,
        verbose: args.verbose,
        format: reports::log_format(args.log_format),
    }
}

/// Only the state file's settings, for `tag-space cache ...`: reads the environment and the
/// env file like [`Config::load`], but needs no Confluence or provider settings.
pub fn cache_settings(args: &Args) -> Result<CacheSettings, ConfigError> {
    let get = sources::trimmed(sources::process(args)?);
    cache::cache_settings(args, &get)
}

impl Limits {
    fn read(args: &Args, get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let batch_size = setting(
            args.batch_size,
            "--batch-size",
            "TAG_SPACE_BATCH_SIZE",
            get,
            5,
            1,
            100,
            "5",
        )?;
        let (concurrency, max_concurrency) = concurrency(args, get)?;
        let max_cooldown_secs: u64 = setting(
            None,
            "",
            "TAG_SPACE_MAX_COOLDOWN_SECS",
            get,
            60,
            1,
            86_400,
            "60",
        )?;
        let confluence_concurrency: usize = setting(
            None,
            "",
            "TAG_SPACE_CONFLUENCE_CONCURRENCY",
            get,
            4,
            1,
            64,
            "4",
        )?;
        let max_page_chars: usize = setting(
            None,
            "",
            "TAG_SPACE_MAX_PAGE_CHARS",
            get,
            8000,
            200,
            1_000_000,
            "8000",
        )?;
        let space_concurrency: usize = setting(
            args.space_concurrency,
            "--space-concurrency",
            "TAG_SPACE_SPACE_CONCURRENCY",
            get,
            1,
            1,
            16,
            "2",
        )?;
        Ok(Limits {
            space_concurrency,
            batch_size,
            concurrency,
            max_concurrency,
            max_cooldown: Duration::from_secs(max_cooldown_secs),
            confluence_concurrency,
            max_page_chars,
        })
    }
}

/// The starting LLM concurrency and its ceiling, which may not be below it.
fn concurrency(
    args: &Args,
    get: &impl Fn(&str) -> Option<String>,
) -> Result<(usize, usize), ConfigError> {
    let concurrency = setting(
        args.concurrency,
        "--concurrency",
        "TAG_SPACE_AI_CONCURRENCY",
        get,
        3,
        1,
        64,
        "3",
    )?;
    let max_concurrency = setting(
        args.max_concurrency,
        "--max-concurrency",
        "TAG_SPACE_MAX_AI_CONCURRENCY",
        get,
        6,
        1,
        64,
        "6",
    )?;
    if max_concurrency < concurrency {
        return Err(ConfigError::Invalid {
            name: "TAG_SPACE_MAX_AI_CONCURRENCY".into(),
            value: max_concurrency.to_string(),
            reason: format!("it is below the starting concurrency {concurrency}"),
            example: "6",
        });
    }
    Ok((concurrency, max_concurrency))
}

impl Target {
    fn read(
        args: &Args,
        get: &impl Fn(&str) -> Option<String>,
        rules: bool,
        warnings: &mut Vec<String>,
    ) -> Result<Self, ConfigError> {
        if args.demo {
            // The demo is offline by design: it never reads credentials or opens a socket.
            return Ok(Target {
                spaces: Spaces::Keys(vec![crate::demo::SPACE_KEY.to_string()]),
                confluence: None,
                gemini: None,
                openai: None,
            });
        }
        let spaces = spaces(args)?;
        let confluence = confluence::confluence_settings(get, warnings)?;
        let gemini = providers::gemini_settings(get, warnings)?;
        let openai = providers::openai_settings(get, warnings)?;
        if gemini.is_none() && openai.is_none() && !rules {
            return Err(ConfigError::NoProvider);
        }
        Ok(Target {
            spaces,
            confluence: Some(confluence),
            gemini,
            openai,
        })
    }
}

/// The spaces of `--space` (repeatable, comma-separated; each key once, in order) or
/// `--all-spaces` with its `--exclude-space` keys.
fn spaces(args: &Args) -> Result<Spaces, ConfigError> {
    let keys = |given: &[String]| -> Result<Vec<String>, ConfigError> {
        let mut keys: Vec<String> = Vec::new();
        for key in given.iter().map(|k| k.trim()) {
            if key.is_empty() {
                return Err(ConfigError::Usage(
                    "an empty space key was given: name each space, e.g. --space ENG,OPS".into(),
                ));
            }
            if !keys.iter().any(|k| k == key) {
                keys.push(key.to_string());
            }
        }
        Ok(keys)
    };
    if !args.all_spaces && !args.exclude_space.is_empty() {
        return Err(ConfigError::Usage(
            "--exclude-space needs --all-spaces (e.g. tag-space --all-spaces --exclude-space ARCHIVE)".into(),
        ));
    }
    if args.all_spaces {
        return Ok(Spaces::All {
            exclude: keys(&args.exclude_space)?,
        });
    }
    let keys = keys(&args.space)?;
    if keys.is_empty() {
        return Err(ConfigError::Missing {
            name: "--space",
            hint: "name the space to label, e.g. --space ENG (or --all-spaces, or try --demo)",
        });
    }
    Ok(Spaces::Keys(keys))
}
