//! Settings from flags, the environment and an optional `.env` file (flag beats environment
//! beats `.env` beats default). The only module that reads the process environment.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::confluence::Flavor;

/// A secret (API key, token). Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself, for the one place that puts it on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// How to authenticate to Confluence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfluenceAuth {
    /// Cloud: `Authorization: Basic base64(email:api_token)`.
    Basic { email: String, token: Secret },
    /// Data Center: `Authorization: Bearer <personal access token>`.
    Bearer(Secret),
}

/// Where Confluence is and how to talk to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfluenceSettings {
    /// The site root without a trailing slash. Cloud: without the trailing `/wiki`
    /// (`https://acme.atlassian.net`), so that API paths are `{root}/wiki/api/v2/...` and a
    /// `_links.next` (which starts with `/wiki`) is `{root}{next}`. Data Center: with its context
    /// path (`https://confluence.acme.com/confluence`), API paths are `{root}/rest/api/...`.
    pub root: String,
    pub flavor: Flavor,
    pub auth: ConfluenceAuth,
    /// Every request is bounded by this (connect + read).
    pub timeout: Duration,
    /// How many times a 429/5xx/transport failure is retried before giving up.
    pub max_retries: u32,
}

/// Optional per-minute quotas of a provider; `None` means unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
}

/// One LLM provider's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderSettings {
    /// `None` only for OpenAI-compatible local servers that need no key.
    pub api_key: Option<Secret>,
    pub model: String,
    /// Without a trailing slash. Gemini: `https://generativelanguage.googleapis.com`;
    /// OpenAI: `https://api.openai.com/v1`.
    pub base_url: String,
    pub quota: Quota,
    /// Total time allowed for one request.
    pub timeout: Duration,
    /// The output cap sent with each request (`maxOutputTokens` / `max_completion_tokens`).
    pub max_output_tokens: u32,
}

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
    "TAG_SPACE_MAX_PAGE_CHARS",
    "TAG_SPACE_TAXONOMY",
    "TAG_SPACE_CACHE_ENABLED",
    "TAG_SPACE_CACHE_SIZE",
    "TAG_SPACE_CACHE_PATH",
];

/// Names the env file to read instead of `./.env`; read from the process environment only.
pub const ENV_FILE_VARIABLE: &str = "TAG_SPACE_ENV_FILE";

/// Conventions tag-space honours that are not its own settings (documented, not in .env.example).
pub const CONVENTIONS: &[&str] = &["NO_COLOR", "RUST_LOG", "XDG_CACHE_HOME", "HOME"];

pub const DEFAULT_GEMINI_MODEL: &str = "gemini-2.5-flash";
pub const DEFAULT_GEMINI_BASE_URL: &str = "https://generativelanguage.googleapis.com";
pub const DEFAULT_OPENAI_MODEL: &str = "gpt-4.1-mini";
pub const DEFAULT_OPENAI_BASE_URL: &str = "https://api.openai.com/v1";

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
    #[error(
        "Confluence credentials are not set: set CONFLUENCE_EMAIL and CONFLUENCE_API_TOKEN (Cloud) or CONFLUENCE_PAT (Data Center)"
    )]
    NoCredentials,
}

/// The env file's variables: `--env-file`, else `TAG_SPACE_ENV_FILE`, else `./.env`.
fn read_env_file(args: &crate::cli::Args) -> Result<Vec<(String, String)>, ConfigError> {
    let source = crate::envfile::Source::pick(
        args.env_file.as_deref(),
        std::env::var(ENV_FILE_VARIABLE).ok(),
    );
    Ok(crate::envfile::read(&source)?)
}

/// Where the run's state (cache, ledger) lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    /// `false` under `--no-cache` or `TAG_SPACE_CACHE_ENABLED=false`: cached answers are not
    /// read (results are still stored).
    pub enabled: bool,
    pub size: usize,
    /// `--cache-path`, else `TAG_SPACE_CACHE_PATH`, else `$XDG_CACHE_HOME/tag-space/state.db`,
    /// else `$HOME/.cache/tag-space/state.db`; `None` when none of them is set.
    pub path: Option<PathBuf>,
}

impl CacheSettings {
    /// Only the state file's settings, for `tag-space cache ...`: reads the environment and
    /// `./.env` like [`Config::load`], but needs no Confluence or provider settings.
    pub fn load(args: &crate::cli::Args) -> Result<Self, ConfigError> {
        let dotenv = read_env_file(args)?;
        let get = |k: &str| {
            std::env::var(k)
                .ok()
                .or_else(|| dotenv.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        cache_settings(args, &get)
    }
}

/// The state file's settings from flags and a (trimmed, non-empty) variable lookup.
fn cache_settings(
    args: &crate::cli::Args,
    get: &impl Fn(&str) -> Option<String>,
) -> Result<CacheSettings, ConfigError> {
    let size: usize = setting(
        None,
        "",
        "TAG_SPACE_CACHE_SIZE",
        get,
        1000,
        1,
        10_000_000,
        "1000",
    )?;
    let enabled = !args.no_cache
        && parse_bool(
            "TAG_SPACE_CACHE_ENABLED",
            get("TAG_SPACE_CACHE_ENABLED"),
            true,
        )?;
    let flag = args.cache_path.clone().map(state_file_in);
    let path = flag
        .clone()
        .or_else(|| get("TAG_SPACE_CACHE_PATH").map(|p| state_file_in(PathBuf::from(p))))
        .or_else(|| {
            crate::cache::default_path(
                get("XDG_CACHE_HOME").map(PathBuf::from).as_deref(),
                get("HOME").map(PathBuf::from).as_deref(),
            )
        });
    // The demo keeps its own state, beside the real one unless --cache-path names it, so that
    // trying it never mixes with a real space's ledger.
    let path = match (args.demo, flag) {
        (true, Some(flag)) => Some(flag),
        (true, None) => path.map(|p| p.with_file_name(DEMO_STATE_FILE)),
        (false, _) => path,
    };
    Ok(CacheSettings {
        enabled,
        size,
        path,
    })
}

/// The demo's state file, in the directory of the real one.
pub const DEMO_STATE_FILE: &str = "demo.db";

/// A state path that names a directory (one that exists, or written with a trailing `/`)
/// means the state file `state.db` inside it: a directory is never opened as a file, nor its
/// parent used as the state directory.
fn state_file_in(path: PathBuf) -> PathBuf {
    let trailing = path
        .as_os_str()
        .to_str()
        .is_some_and(|s| s.ends_with('/') || s.ends_with(std::path::MAIN_SEPARATOR));
    if trailing || path.is_dir() {
        path.join("state.db")
    } else {
        path
    }
}

/// The kind of a `--report` file, from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    Json,
    Markdown,
}

/// A report to write at the end of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportFile {
    pub path: PathBuf,
    pub kind: ReportKind,
}

/// Everything a run needs, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The space to label (`DEMO` in demo mode).
    pub space: String,
    /// `None` in demo mode: the bundled space stands in for Confluence.
    pub confluence: Option<ConfluenceSettings>,
    pub gemini: Option<ProviderSettings>,
    pub openai: Option<ProviderSettings>,
    /// `TAG_SPACE_OPENAI_STRUCTURED`: how the OpenAI-compatible server is asked for JSON.
    pub openai_structured: crate::llm::structured::StructuredMode,
    /// Use the offline keyword rules provider: alone (demo) or as the last fallback.
    pub rules: bool,
    pub demo: bool,
    pub dry_run: bool,
    pub limit: Option<u64>,
    pub batch_size: usize,
    pub concurrency: usize,
    pub max_concurrency: usize,
    /// A server-requested wait longer than this marks the provider unavailable for the run.
    pub max_cooldown: Duration,
    /// Characters of a page's text sent to the LLM.
    pub max_page_chars: usize,
    pub taxonomy_path: Option<PathBuf>,
    pub cache: CacheSettings,
    /// `--sync`: also remove labels tag-space added that no longer apply.
    pub sync: bool,
    /// Reports to write at the end of the run.
    pub reports: Vec<ReportFile>,
    pub format: crate::cli::OutputFormat,
    /// `NO_COLOR` is set: no colour even on a terminal.
    pub no_color: bool,
    /// Where run locks live: `TAG_SPACE_LOCK_DIR`, else the user's cache directory's
    /// `tag-space/locks` (see [`lock_dir`]); `None` when none of `TAG_SPACE_LOCK_DIR`,
    /// `XDG_CACHE_HOME` or `HOME` is set. Never derived from the state file's path.
    pub lock_dir: Option<PathBuf>,
    /// Things worth a warning that do not stop the run (e.g. plain HTTP to a remote host).
    pub warnings: Vec<String>,
}

impl Config {
    /// Reads the process environment and `./.env` (if present) under `args`. The only
    /// function in the crate that reads the environment.
    pub fn load(args: &crate::cli::Args) -> Result<Self, ConfigError> {
        let dotenv = read_env_file(args)?;
        Self::from_sources(args, |k| {
            std::env::var(k)
                .ok()
                .or_else(|| dotenv.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
        })
    }

    /// Pure: builds the configuration from flags and a variable lookup (environment, then
    /// `.env`). Tests pass a map instead of touching the real environment.
    pub fn from_sources(
        args: &crate::cli::Args,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let mut warnings = Vec::new();

        let batch_size = setting(
            args.batch_size,
            "--batch-size",
            "TAG_SPACE_BATCH_SIZE",
            &get,
            5,
            1,
            100,
            "5",
        )?;
        let concurrency = setting(
            args.concurrency,
            "--concurrency",
            "TAG_SPACE_AI_CONCURRENCY",
            &get,
            3,
            1,
            64,
            "3",
        )?;
        let max_concurrency = setting(
            args.max_concurrency,
            "--max-concurrency",
            "TAG_SPACE_MAX_AI_CONCURRENCY",
            &get,
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
        let max_cooldown_secs: u64 = setting(
            None,
            "",
            "TAG_SPACE_MAX_COOLDOWN_SECS",
            &get,
            60,
            1,
            86_400,
            "60",
        )?;
        let max_page_chars: usize = setting(
            None,
            "",
            "TAG_SPACE_MAX_PAGE_CHARS",
            &get,
            8000,
            200,
            1_000_000,
            "8000",
        )?;
        let cache = cache_settings(args, &get)?;
        let lock_dir = lock_dir(&get);
        let taxonomy_path = args
            .taxonomy
            .clone()
            .or_else(|| get("TAG_SPACE_TAXONOMY").map(PathBuf::from));

        let gemini_quota = Quota {
            rpm: opt_setting("TAG_SPACE_GEMINI_RPM", &get, "60")?,
            tpm: opt_setting("TAG_SPACE_GEMINI_TPM", &get, "250000")?,
        };
        let openai_quota = Quota {
            rpm: opt_setting("TAG_SPACE_OPENAI_RPM", &get, "500")?,
            tpm: opt_setting("TAG_SPACE_OPENAI_TPM", &get, "200000")?,
        };

        let reports = args
            .report
            .iter()
            .map(|path| {
                let ext = path
                    .extension()
                    .and_then(|e| e.to_str())
                    .map(str::to_ascii_lowercase);
                let kind = match ext.as_deref() {
                    Some("json") => ReportKind::Json,
                    Some("md" | "markdown") => ReportKind::Markdown,
                    _ => {
                        return Err(ConfigError::Invalid {
                            name: "--report".into(),
                            value: path.display().to_string(),
                            reason: "the file name must end in .json or .md".into(),
                            example: "report.json",
                        });
                    }
                };
                Ok(ReportFile {
                    path: path.clone(),
                    kind,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;

        let demo = args.demo;
        let rules = demo || args.fallback == Some(crate::cli::FallbackArg::Rules);
        let (space, confluence, gemini, openai) = if demo {
            // The demo is offline by design: it never reads credentials or opens a socket.
            (crate::demo::SPACE_KEY.to_string(), None, None, None)
        } else {
            let space = args.space.clone().ok_or(ConfigError::Missing {
                name: "--space",
                hint: "name the space to label, e.g. --space ENG (or try --demo)",
            })?;
            let confluence = confluence_settings(&get, &mut warnings)?;
            let gemini = gemini_settings(&get, gemini_quota, &mut warnings)?;
            let mut openai = openai_settings(&get, openai_quota, &mut warnings)?;
            if let Some(o) = &mut openai {
                let secs = setting(
                    None,
                    "",
                    "TAG_SPACE_OPENAI_TIMEOUT_SECS",
                    &get,
                    120,
                    1,
                    86_400,
                    "600",
                )?;
                o.timeout = Duration::from_secs(secs);
            }
            if gemini.is_none() && openai.is_none() && !rules {
                return Err(ConfigError::NoProvider);
            }
            (space, Some(confluence), gemini, openai)
        };

        let openai_structured = match get("TAG_SPACE_OPENAI_STRUCTURED") {
            None => Default::default(),
            Some(raw) => raw.parse().map_err(|reason| ConfigError::Invalid {
                name: "TAG_SPACE_OPENAI_STRUCTURED".into(),
                value: raw,
                reason,
                example: "auto",
            })?,
        };

        Ok(Config {
            space,
            confluence,
            gemini,
            openai,
            openai_structured,
            rules,
            demo,
            dry_run: args.dry_run,
            limit: args.limit,
            batch_size,
            concurrency,
            max_concurrency,
            max_cooldown: Duration::from_secs(max_cooldown_secs),
            max_page_chars,
            taxonomy_path,
            cache,
            sync: args.sync,
            reports,
            format: args.format,
            no_color: get("NO_COLOR").is_some(),
            lock_dir,
            warnings,
        })
    }
}

/// The run locks' directory: `TAG_SPACE_LOCK_DIR`, else `$XDG_CACHE_HOME/tag-space/locks`,
/// else `$HOME/.cache/tag-space/locks`. It does not depend on the state file on purpose: two
/// runs over one space must exclude each other whichever state files they use (the lock's
/// name is keyed by site and space, see [`crate::lock::lock_path`]). Not `$XDG_RUNTIME_DIR`:
/// cron jobs often run without it, so a user's cron run and terminal run would lock in
/// different places.
fn lock_dir(get: &impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(dir) = get("TAG_SPACE_LOCK_DIR") {
        return Some(PathBuf::from(dir));
    }
    let state = crate::cache::default_path(
        get("XDG_CACHE_HOME").map(PathBuf::from).as_deref(),
        get("HOME").map(PathBuf::from).as_deref(),
    )?;
    Some(state.parent()?.join("locks"))
}

/// A numeric setting: the flag wins, then the variable, then the default; must lie in
/// `min..=max`.
#[allow(clippy::too_many_arguments)]
fn setting<T>(
    flag_value: Option<T>,
    flag: &str,
    var: &str,
    get: &impl Fn(&str) -> Option<String>,
    default: T,
    min: T,
    max: T,
    example: &'static str,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
{
    let (name, value) = match (flag_value, get(var)) {
        (Some(v), _) => (flag.to_string(), v),
        (None, Some(raw)) => {
            let v = raw.parse::<T>().map_err(|_| ConfigError::Invalid {
                name: var.to_string(),
                value: raw.clone(),
                reason: "not a whole number".into(),
                example,
            })?;
            (var.to_string(), v)
        }
        (None, None) => return Ok(default),
    };
    if value < min || value > max {
        return Err(ConfigError::Invalid {
            name,
            value: value.to_string(),
            reason: format!("must be between {min} and {max}"),
            example,
        });
    }
    Ok(value)
}

/// An optional positive quota; unset means unknown.
fn opt_setting(
    var: &str,
    get: &impl Fn(&str) -> Option<String>,
    example: &'static str,
) -> Result<Option<u32>, ConfigError> {
    let Some(raw) = get(var) else { return Ok(None) };
    match raw.parse::<u32>() {
        Ok(v) if v > 0 => Ok(Some(v)),
        _ => Err(ConfigError::Invalid {
            name: var.to_string(),
            value: raw,
            reason: "must be a whole number of at least 1 (leave it unset if unknown)".into(),
            example,
        }),
    }
}

fn parse_bool(var: &str, raw: Option<String>, default: bool) -> Result<bool, ConfigError> {
    let Some(raw) = raw else { return Ok(default) };
    match raw.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::Invalid {
            name: var.to_string(),
            value: raw,
            reason: "must be true or false".into(),
            example: "true",
        }),
    }
}

/// A base URL: http(s), no query; returned without a trailing slash. Plain HTTP to anything
/// but loopback is allowed (local gateways) but warned about: credentials would travel in clear.
fn base_url(
    var: &str,
    raw: &str,
    example: &'static str,
    warnings: &mut Vec<String>,
) -> Result<String, ConfigError> {
    let invalid = |reason: &str| ConfigError::Invalid {
        name: var.to_string(),
        value: raw.to_string(),
        reason: reason.to_string(),
        example,
    };
    let url = url::Url::parse(raw).map_err(|e| invalid(&format!("not a URL ({e})")))?;
    match url.scheme() {
        "https" => {}
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Domain(d)) => d == "localhost",
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
            if !loopback {
                warnings.push(format!(
                    "{var} uses plain http://: credentials and page content travel unencrypted"
                ));
            }
        }
        _ => return Err(invalid("must start with https:// (or http://)")),
    }
    if url.host().is_none() {
        return Err(invalid("has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("must not have a query or fragment"));
    }
    Ok(raw.trim_end_matches('/').to_string())
}

fn confluence_settings(
    get: &impl Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<ConfluenceSettings, ConfigError> {
    const BASE_HINT: &str = "set the site address, e.g. CONFLUENCE_BASE_URL=https://acme.atlassian.net/wiki (Cloud) or https://confluence.acme.com (Data Center)";
    let raw = get("CONFLUENCE_BASE_URL").ok_or(ConfigError::Missing {
        name: "CONFLUENCE_BASE_URL",
        hint: BASE_HINT,
    })?;
    let base = base_url(
        "CONFLUENCE_BASE_URL",
        &raw,
        "https://acme.atlassian.net/wiki",
        warnings,
    )?;
    let email = get("CONFLUENCE_EMAIL");
    let token = get("CONFLUENCE_API_TOKEN").map(Secret::new);
    let pat = get("CONFLUENCE_PAT").map(Secret::new);

    let flavor = match get("CONFLUENCE_FLAVOR") {
        Some(f) => match f.to_ascii_lowercase().as_str() {
            "cloud" => Flavor::Cloud,
            "datacenter" | "data-center" | "dc" | "server" => Flavor::DataCenter,
            _ => {
                return Err(ConfigError::Invalid {
                    name: "CONFLUENCE_FLAVOR".into(),
                    value: f,
                    reason: "must be cloud or datacenter".into(),
                    example: "cloud",
                })
            }
        },
        None => match (&email, &token, &pat) {
            (_, _, Some(_)) if email.is_none() && token.is_none() => Flavor::DataCenter,
            (_, _, None) if email.is_some() || token.is_some() => Flavor::Cloud,
            (_, _, Some(_)) => {
                return Err(ConfigError::Invalid {
                    name: "CONFLUENCE_FLAVOR".into(),
                    value: String::new(),
                    reason: "both Cloud (CONFLUENCE_EMAIL/CONFLUENCE_API_TOKEN) and Data Center (CONFLUENCE_PAT) credentials are set; say which to use".into(),
                    example: "cloud",
                })
            }
            _ => return Err(ConfigError::NoCredentials),
        },
    };
    let auth = match flavor {
        Flavor::Cloud => ConfluenceAuth::Basic {
            email: email.ok_or(ConfigError::Missing {
                name: "CONFLUENCE_EMAIL",
                hint: "Confluence Cloud needs the account email with the API token, e.g. CONFLUENCE_EMAIL=you@acme.com",
            })?,
            token: token.ok_or(ConfigError::Missing {
                name: "CONFLUENCE_API_TOKEN",
                hint: "create one at id.atlassian.com > Security > API tokens and set CONFLUENCE_API_TOKEN",
            })?,
        },
        Flavor::DataCenter => ConfluenceAuth::Bearer(pat.ok_or(ConfigError::Missing {
            name: "CONFLUENCE_PAT",
            hint: "Data Center needs a personal access token (Profile > Personal Access Tokens), e.g. CONFLUENCE_PAT=...",
        })?),
    };
    // Cloud API paths all start with /wiki; keep the root without it so `_links.next`
    // (which already starts with /wiki) can be appended as is.
    let root = match flavor {
        Flavor::Cloud => base.strip_suffix("/wiki").unwrap_or(&base).to_string(),
        Flavor::DataCenter => base,
    };
    Ok(ConfluenceSettings {
        root,
        flavor,
        auth,
        timeout: Duration::from_secs(60),
        max_retries: 5,
    })
}

fn gemini_settings(
    get: &impl Fn(&str) -> Option<String>,
    quota: Quota,
    warnings: &mut Vec<String>,
) -> Result<Option<ProviderSettings>, ConfigError> {
    let Some(key) = get("GEMINI_API_KEY") else {
        return Ok(None);
    };
    let base = get("GEMINI_BASE_URL").unwrap_or_else(|| DEFAULT_GEMINI_BASE_URL.to_string());
    Ok(Some(ProviderSettings {
        api_key: Some(Secret::new(key)),
        model: get("GEMINI_MODEL").unwrap_or_else(|| DEFAULT_GEMINI_MODEL.to_string()),
        base_url: base_url("GEMINI_BASE_URL", &base, DEFAULT_GEMINI_BASE_URL, warnings)?,
        quota,
        timeout: Duration::from_secs(120),
        max_output_tokens: 4096,
    }))
}

fn openai_settings(
    get: &impl Fn(&str) -> Option<String>,
    quota: Quota,
    warnings: &mut Vec<String>,
) -> Result<Option<ProviderSettings>, ConfigError> {
    let key = get("OPENAI_API_KEY");
    let base = get("OPENAI_BASE_URL");
    // A local OpenAI-compatible server (Ollama, vLLM, llama.cpp) may need no key: setting its
    // base URL is enough to enable it.
    if key.is_none() && base.is_none() {
        return Ok(None);
    }
    let base = base.unwrap_or_else(|| DEFAULT_OPENAI_BASE_URL.to_string());
    Ok(Some(ProviderSettings {
        api_key: key.map(Secret::new),
        model: get("OPENAI_MODEL").unwrap_or_else(|| DEFAULT_OPENAI_MODEL.to_string()),
        base_url: base_url("OPENAI_BASE_URL", &base, DEFAULT_OPENAI_BASE_URL, warnings)?,
        quota,
        timeout: Duration::from_secs(120),
        max_output_tokens: 4096,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Args;
    use clap::Parser;
    use std::collections::HashMap;

    fn load(argv: &[&str], vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let args =
            Args::try_parse_from(std::iter::once("tag-space").chain(argv.iter().copied())).unwrap();
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_sources(&args, |k| map.get(k).cloned())
    }

    const CLOUD: &[(&str, &str)] = &[
        ("CONFLUENCE_BASE_URL", "https://acme.atlassian.net/wiki/"),
        ("CONFLUENCE_EMAIL", "bot@acme.test"),
        ("CONFLUENCE_API_TOKEN", "tok-SECRET-123"),
        ("GEMINI_API_KEY", "gem-SECRET-456"),
    ];

    #[test]
    fn cloud_defaults() {
        let c = load(&["--space", "ENG"], CLOUD).unwrap();
        let conf = c.confluence.as_ref().unwrap();
        assert_eq!(conf.flavor, Flavor::Cloud);
        assert_eq!(conf.root, "https://acme.atlassian.net");
        assert_eq!(c.batch_size, 5);
        assert_eq!((c.concurrency, c.max_concurrency), (3, 6));
        assert!(c.cache.enabled);
        assert_eq!(c.cache.size, 1000);
        let g = c.gemini.as_ref().unwrap();
        assert_eq!(g.model, DEFAULT_GEMINI_MODEL);
        assert_eq!(g.base_url, DEFAULT_GEMINI_BASE_URL);
        assert_eq!(g.quota, Quota::default());
        assert!(c.openai.is_none());
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn the_lock_dir_never_follows_the_state_file() {
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut vars = CLOUD.to_vec();
            vars.extend_from_slice(extra);
            load(&["--space", "ENG"], &vars).unwrap().lock_dir
        };
        // A state path of `/tmp` once put the lock at `/locks/ENG.lock`.
        let home = [("HOME", "/home/a"), ("TAG_SPACE_CACHE_PATH", "/tmp")];
        assert_eq!(
            with(&home),
            Some(PathBuf::from("/home/a/.cache/tag-space/locks"))
        );
        assert_eq!(
            with(&[("HOME", "/home/a"), ("TAG_SPACE_CACHE_PATH", "/x/other.db")]),
            with(&[("HOME", "/home/a")])
        );
        assert_eq!(
            with(&[("XDG_CACHE_HOME", "/c"), ("HOME", "/home/a")]),
            Some(PathBuf::from("/c/tag-space/locks"))
        );
        assert_eq!(
            with(&[("TAG_SPACE_LOCK_DIR", "/run/locks"), ("HOME", "/home/a")]),
            Some(PathBuf::from("/run/locks"))
        );
        assert_eq!(with(&[("TAG_SPACE_CACHE_PATH", "/tmp/s.db")]), None);
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let c = load(&["--space", "ENG"], CLOUD).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("SECRET"), "{dbg}");
        assert!(dbg.contains("Secret(***)"));
    }

    #[test]
    fn datacenter_is_inferred_from_a_pat_and_keeps_its_context_path() {
        let c = load(
            &["--space", "OPS"],
            &[
                (
                    "CONFLUENCE_BASE_URL",
                    "https://confluence.acme.test/confluence/",
                ),
                ("CONFLUENCE_PAT", "pat"),
                ("OPENAI_API_KEY", "k"),
            ],
        )
        .unwrap();
        let conf = c.confluence.unwrap();
        assert_eq!(conf.flavor, Flavor::DataCenter);
        assert_eq!(conf.root, "https://confluence.acme.test/confluence");
        assert!(matches!(conf.auth, ConfluenceAuth::Bearer(_)));
        assert_eq!(c.openai.unwrap().base_url, DEFAULT_OPENAI_BASE_URL);
    }

    #[test]
    fn flags_beat_variables() {
        let mut vars = CLOUD.to_vec();
        vars.push(("TAG_SPACE_BATCH_SIZE", "9"));
        assert_eq!(load(&["--space", "ENG"], &vars).unwrap().batch_size, 9);
        assert_eq!(
            load(&["--space", "ENG", "--batch-size", "2"], &vars)
                .unwrap()
                .batch_size,
            2
        );
    }

    #[test]
    fn bad_values_name_the_setting_and_show_an_example() {
        let mut vars = CLOUD.to_vec();
        vars.push(("TAG_SPACE_BATCH_SIZE", "five"));
        let e = load(&["--space", "ENG"], &vars).unwrap_err().to_string();
        assert_eq!(
            e,
            "TAG_SPACE_BATCH_SIZE=\"five\" is invalid: not a whole number (e.g. TAG_SPACE_BATCH_SIZE=5)"
        );

        let e = load(&["--space", "ENG", "--batch-size", "0"], CLOUD)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--batch-size=\"0\" is invalid: must be between 1 and 100"),
            "{e}"
        );

        let mut vars = CLOUD.to_vec();
        vars.push(("TAG_SPACE_GEMINI_RPM", "0"));
        let e = load(&["--space", "ENG"], &vars).unwrap_err().to_string();
        assert!(
            e.contains("TAG_SPACE_GEMINI_RPM") && e.contains("e.g. TAG_SPACE_GEMINI_RPM=60"),
            "{e}"
        );

        let mut vars = CLOUD.to_vec();
        vars.push(("TAG_SPACE_CACHE_ENABLED", "maybe"));
        assert!(
            load(&["--space", "ENG"], &vars)
                .unwrap_err()
                .to_string()
                .contains("TAG_SPACE_CACHE_ENABLED")
        );

        let mut vars = CLOUD.to_vec();
        vars.push(("TAG_SPACE_AI_CONCURRENCY", "8"));
        assert!(
            load(&["--space", "ENG"], &vars)
                .unwrap_err()
                .to_string()
                .starts_with("TAG_SPACE_MAX_AI_CONCURRENCY")
        );
    }

    #[test]
    fn missing_settings_say_what_to_set() {
        let e = load(&["--space", "ENG"], &[]).unwrap_err().to_string();
        assert!(e.starts_with("CONFLUENCE_BASE_URL is not set"), "{e}");
        let e = load(&["--space", "ENG"], &CLOUD[..1])
            .unwrap_err()
            .to_string();
        assert!(e.contains("CONFLUENCE_PAT"), "{e}");
        let e = load(&["--space", "ENG"], &CLOUD[..3]).unwrap_err();
        assert!(matches!(e, ConfigError::NoProvider));
        let e = load(&["--space", "ENG"], &CLOUD[..2])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("CONFLUENCE_API_TOKEN is not set"), "{e}");
    }

    #[test]
    fn base_urls_are_checked() {
        let mut vars = CLOUD.to_vec();
        vars[0] = ("CONFLUENCE_BASE_URL", "acme.atlassian.net");
        assert!(
            load(&["--space", "ENG"], &vars)
                .unwrap_err()
                .to_string()
                .contains("not a URL")
        );
        vars[0] = ("CONFLUENCE_BASE_URL", "ftp://acme.test");
        assert!(
            load(&["--space", "ENG"], &vars)
                .unwrap_err()
                .to_string()
                .contains("https://")
        );
        vars[0] = ("CONFLUENCE_BASE_URL", "http://wiki.acme.test");
        let c = load(&["--space", "ENG"], &vars).unwrap();
        assert_eq!(c.warnings.len(), 1);
        vars[0] = ("CONFLUENCE_BASE_URL", "http://127.0.0.1:8090");
        assert!(
            load(&["--space", "ENG"], &vars)
                .unwrap()
                .warnings
                .is_empty()
        );
    }

    #[test]
    fn a_local_openai_compatible_server_needs_no_key() {
        let mut vars = CLOUD[..3].to_vec();
        vars.push(("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1/"));
        let c = load(&["--space", "ENG"], &vars).unwrap();
        let o = c.openai.unwrap();
        assert_eq!(o.api_key, None);
        assert_eq!(o.base_url, "http://127.0.0.1:11434/v1");
    }

    #[test]
    fn demo_needs_nothing_and_reads_no_credentials() {
        let c = load(&["--demo"], CLOUD).unwrap();
        assert!(c.demo && c.rules);
        assert_eq!(c.space, "DEMO");
        assert!(c.confluence.is_none() && c.gemini.is_none() && c.openai.is_none());
    }

    #[test]
    fn missing_credentials_read_as_a_sentence() {
        let e = load(&["--space", "ENG"], &CLOUD[..1])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("Confluence credentials are not set: set CONFLUENCE_EMAIL"),
            "{e}"
        );
    }

    #[test]
    fn a_cache_path_that_is_a_directory_holds_the_state_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let mut vars = CLOUD.to_vec();
        vars.push(("TAG_SPACE_CACHE_PATH", d));
        let c = load(&["--space", "ENG"], &vars).unwrap();
        assert_eq!(c.cache.path, Some(dir.path().join("state.db")));
        // The locks never follow the state file (the_lock_dir_never_follows_the_state_file).
        assert_eq!(
            c.lock_dir, None,
            "no TAG_SPACE_LOCK_DIR, XDG_CACHE_HOME or HOME"
        );
        let c = load(&["--space", "ENG", "--cache-path", d], CLOUD).unwrap();
        assert_eq!(c.cache.path, Some(dir.path().join("state.db")));
        // A directory yet to be made, written with a trailing slash.
        let later = format!("{d}/later/");
        let c = load(&["--space", "ENG", "--cache-path", &later], CLOUD).unwrap();
        assert_eq!(
            c.cache.path,
            Some(dir.path().join("later").join("state.db"))
        );
        let file = format!("{d}/mine.db");
        let c = load(&["--space", "ENG", "--cache-path", &file], CLOUD).unwrap();
        assert_eq!(c.cache.path, Some(dir.path().join("mine.db")));
    }

    #[test]
    fn the_demo_keeps_its_own_state_file_or_the_one_given() {
        let c = load(&["--demo"], &[("HOME", "/home/u")]).unwrap();
        assert_eq!(
            c.cache.path,
            Some(PathBuf::from("/home/u/.cache/tag-space/demo.db"))
        );
        let c = load(&["--demo"], &[("TAG_SPACE_CACHE_PATH", "/srv/ts/state.db")]).unwrap();
        assert_eq!(c.cache.path, Some(PathBuf::from("/srv/ts/demo.db")));
        let c = load(&["--demo", "--cache-path", "/tmp/x/demo-state.db"], &[]).unwrap();
        assert_eq!(c.cache.path, Some(PathBuf::from("/tmp/x/demo-state.db")));
    }

    #[test]
    fn rules_fallback_alone_is_a_provider() {
        let c = load(&["--space", "ENG", "--fallback", "rules"], &CLOUD[..3]).unwrap();
        assert!(c.rules && c.gemini.is_none());
    }
}

#[cfg(test)]
mod env_example {
    #[test]
    fn env_example_documents_every_variable() {
        let example = include_str!("../.env.example");
        for var in super::VARIABLES {
            assert!(
                example.lines().any(|l| l.starts_with(&format!("{var}="))),
                ".env.example lacks {var}"
            );
        }
    }
}
