//! The data behind every end-of-run report: filled while the run goes, read by the renderers.
//!
//! [`RunReport`] is the one value the app keeps. It is created when the run starts, is
//! handed every [`PageOutcome`] through [`RunReport::record`], gets the providers' figures
//! and the cache's counters once the pipeline is done, and is then rendered by
//! [`super::table`], [`super::json`] and [`super::markdown`]. Nothing here does I/O.
//!
//! ```text
//! run starts      RunReport::new(RunInfo::new(space, Mode::Add, dry_run, SystemTime::now()),
//!                                app::report_settings(&config, taxonomy.fingerprint()))
//!                 .counts_only()            // only if no JSON/Markdown report is wanted
//!                 set_prices(..)            // only to override DEFAULT_PRICES
//! every page      record(&outcome)          // in the pipeline's sink
//! pipeline done   set_providers(vec![ProviderMetrics { .. }])   // from the governor's stats
//!                 set_pages_listed(n); set_end(RunStatus::Finished | Interrupted | Failed, error)
//!                 set_cache(CacheMetrics { hits, misses })       // skip without a cache
//!                 finish(SystemTime::now(), started_instant.elapsed())
//! render          table::write_metrics_table(&mut stdout, &report, color)
//!                 json::write_json(&mut w, &report)
//!                 markdown::write_markdown(&mut w, &report, &MarkdownOptions::default())
//! ```
//!
//! `docs/report.md` documents every JSON field.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::pipeline::{PageOutcome, Status};

/// The version of the JSON report's shape. Raised only when a field changes meaning or is
/// removed; new optional fields keep it.
///
/// 2: pages carry the labels removed (`labels_removed` / `labels_to_remove`), the status
/// `no_label` exists, `run` says how the run ended (`status`, `error`, `pages_listed`), and
/// `metrics.pages` counts `no_label` and `labels_removed`.
pub const SCHEMA_VERSION: u32 = 2;

/// What the run does to labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Add missing taxonomy labels; never remove any.
    Add,
    /// `--sync`: also remove labels tag-space added earlier that are no longer chosen.
    Sync,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Add => "add",
            Mode::Sync => "sync",
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// It went through every page it meant to do (some may have failed on their own).
    Finished,
    /// Stopped by Ctrl-C or SIGTERM: the pages after the stop were not done.
    Interrupted,
    /// Stopped by an error that ends the run (Confluence unreachable, space not found, no
    /// LLM provider usable): the pages after it were not done.
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Finished => "finished",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Failed => "failed",
        }
    }
}

/// Who ran what, and when, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInfo {
    pub space: String,
    pub mode: Mode,
    pub dry_run: bool,
    pub started: SystemTime,
    /// Set by [`RunReport::finish`].
    pub finished: Option<SystemTime>,
    /// tag-space's version; [`RunInfo::new`] fills in this build's.
    pub version: String,
    /// Set by [`RunReport::set_end`]; `Finished` until then.
    pub status: RunStatus,
    /// Why the run failed (status `Failed` only).
    pub error: Option<String>,
    /// Pages the listing delivered before the run ended, when known: with an interrupted or
    /// failed run, how far it got is the pages done out of these.
    pub pages_listed: Option<u64>,
}

impl RunInfo {
    pub fn new(space: impl Into<String>, mode: Mode, dry_run: bool, started: SystemTime) -> Self {
        Self {
            space: space.into(),
            mode,
            dry_run,
            started,
            finished: None,
            version: env!("CARGO_PKG_VERSION").to_string(),
            status: RunStatus::Finished,
            error: None,
            pages_listed: None,
        }
    }
}

/// An RFC 3339 UTC timestamp to the second, e.g. `2025-07-01T09:30:00Z`.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

// ---------------------------------------------------------------------------------------------
// Settings

/// The settings a run used, as they appear in the JSON report. Built from the run's
/// configuration by `app::report_settings`, which copies named fields only: no API key, token, personal
/// access token or account email can end up here, and base URLs lose any user, password,
/// query or fragment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    pub demo: bool,
    pub limit: Option<u64>,
    pub batch_size: usize,
    pub concurrency: usize,
    pub max_concurrency: usize,
    pub max_page_chars: usize,
    pub max_cooldown_seconds: f64,
    pub confluence: Option<ConfluenceInfo>,
    /// In the order they are tried.
    pub providers: Vec<ProviderInfo>,
    pub taxonomy: TaxonomyInfo,
    pub cache: CacheInfo,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfluenceInfo {
    pub base_url: String,
    /// `cloud` or `datacenter`.
    pub flavor: &'static str,
    /// `basic` (email + API token) or `bearer` (personal access token): the kind only.
    pub auth: &'static str,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderInfo {
    /// `gemini`, `openai` or `rules`.
    pub name: String,
    /// `None` for `rules`.
    pub model: Option<String>,
    pub base_url: Option<String>,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    pub timeout_seconds: Option<f64>,
    pub max_output_tokens: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaxonomyInfo {
    /// The taxonomy file, or `built-in`.
    pub source: String,
    pub fingerprint: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheInfo {
    pub enabled: bool,
    pub size: usize,
}

/// A URL fit to publish: scheme, host, port and path only. Anything unparsable is replaced
/// rather than copied, since it might hold a credential.
pub fn public_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.as_str().trim_end_matches('/').to_string()
        }
        Err(_) => "(invalid URL)".to_string(),
    }
}

/// Seconds as a number, to the millisecond.
pub fn seconds(d: Duration) -> f64 {
    d.as_millis() as f64 / 1000.0
}

// ---------------------------------------------------------------------------------------------
// Provider metrics

/// Why requests waited before they were sent; mirrors the governor's `WaitReason` and has
/// the same names (`WaitReason::as_str` parses with [`str::parse`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Wait {
    /// Quota pacing (RPM/TPM).
    Preflight,
    /// The provider-wide pause after a 429.
    Cooldown429,
    /// A request's backoff after a 5xx, timeout or transport error.
    Backoff5xx,
    /// All concurrency slots were busy.
    Concurrency,
}

impl Wait {
    pub const ALL: [Wait; 4] = [
        Wait::Preflight,
        Wait::Cooldown429,
        Wait::Backoff5xx,
        Wait::Concurrency,
    ];

    /// The name used in the JSON report.
    pub fn as_str(self) -> &'static str {
        match self {
            Wait::Preflight => "preflight",
            Wait::Cooldown429 => "cooldown_429",
            Wait::Backoff5xx => "backoff_5xx",
            Wait::Concurrency => "concurrency",
        }
    }

    /// The name shown to a person.
    pub fn label(self) -> &'static str {
        match self {
            Wait::Preflight => "quota pacing",
            Wait::Cooldown429 => "429 cooldown",
            Wait::Backoff5xx => "5xx backoff",
            Wait::Concurrency => "concurrency",
        }
    }
}

impl fmt::Display for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Wait {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Wait::ALL
            .into_iter()
            .find(|w| w.as_str() == s)
            .ok_or_else(|| format!("unknown wait reason {s:?}"))
    }
}

/// How often and how long requests waited for one reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WaitTotal {
    pub count: u64,
    pub total: Duration,
}

/// Call latency, summarised so that the per-call list need not be kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Latency {
    /// Calls measured.
    pub count: u64,
    /// `None` when no call was measured.
    pub p50: Option<Duration>,
    pub p95: Option<Duration>,
    pub max: Option<Duration>,
}

impl Latency {
    pub fn from_samples(samples: &[Duration]) -> Self {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        Latency {
            count: sorted.len() as u64,
            p50: percentile(&sorted, 0.50),
            p95: percentile(&sorted, 0.95),
            max: sorted.last().copied(),
        }
    }
}

/// The `q` quantile (0..=1) of `sorted` by nearest rank: the smallest value with at least
/// `q` of the values at or below it. The same rule as the governor's `latency_quantile`, so
/// both agree. `None` for an empty slice.
pub fn percentile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.saturating_sub(1).min(sorted.len() - 1)])
}

/// One provider's figures for the run: the governor's snapshot in plain values.
///
/// The app maps the governor's `ProviderStats` field by field (the names match), then calls
/// [`ProviderMetrics::set_latencies`] and [`ProviderMetrics::add_wait`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProviderMetrics {
    pub provider: String,
    /// The model asked; `None` for `rules`. Used to look up the price.
    pub model: Option<String>,
    /// Requests sent (first attempts, retries and split halves).
    pub calls: u64,
    pub successes: u64,
    /// Failed calls by kind (`rate_limited`, `timeout`, ...).
    pub failures: BTreeMap<String, u64>,
    /// Calls answered 429.
    pub rate_limited: u64,
    pub retries: u64,
    /// Retries refused because the run's retry budget was spent.
    pub budget_exhausted: u64,
    /// Batches split in two after "request too large".
    pub splits: u64,
    /// Batches handed on to the next provider.
    pub fallbacks: u64,
    /// Batches refused without a call because the provider was unavailable.
    pub skipped: u64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// Of `tokens_in`, those read from the provider's prompt cache (billed at the cached rate).
    pub tokens_cached: u64,
    pub waits: BTreeMap<Wait, WaitTotal>,
    pub latency: Latency,
    /// The adaptive concurrency limit at the end of the run.
    pub concurrency_limit: usize,
    /// The request rate paced to, if any.
    pub paced_rpm: Option<f64>,
    /// Why the provider stopped being called, if it did.
    pub unavailable: Option<String>,
    /// Of `tokens_in` / `tokens_out`, those answered through the provider's batch service,
    /// priced at [`BATCH_PRICE_FACTOR`] of the interactive rate (see
    /// [`ProviderMetrics::add_batch`]).
    pub batch_tokens_in: u64,
    pub batch_tokens_out: u64,
    /// Requests answered by a batch job, and the pages they covered.
    pub batch_requests: u64,
    pub batch_pages: u64,
    /// How the provider was asked for JSON at the end of the run (its structured-output rung:
    /// `json_schema`, `json_object`, `prompt`, `response_json_schema`, `response_schema`);
    /// `None` for `rules`.
    pub structured_output: Option<String>,
}

impl ProviderMetrics {
    pub fn new(provider: impl Into<String>, model: Option<String>) -> Self {
        Self {
            provider: provider.into(),
            model,
            ..Self::default()
        }
    }

    /// Summarises per-call latencies into p50/p95/max.
    pub fn set_latencies(&mut self, samples: &[Duration]) {
        self.latency = Latency::from_samples(samples);
    }

    /// Adds `count` waits totalling `total` for `reason`. Zero counts are ignored.
    pub fn add_wait(&mut self, reason: Wait, count: u64, total: Duration) {
        if count == 0 && total.is_zero() {
            return;
        }
        let w = self.waits.entry(reason).or_default();
        w.count += count;
        w.total += total;
    }

    pub fn wait(&self, reason: Wait) -> WaitTotal {
        self.waits.get(&reason).copied().unwrap_or_default()
    }

    /// Counts what a batch job answered: its tokens join the provider's totals and are
    /// priced at the batch rate.
    pub fn add_batch(&mut self, requests: u64, pages: u64, tokens_in: u64, tokens_out: u64) {
        self.batch_requests += requests;
        self.batch_pages += pages;
        self.batch_tokens_in += tokens_in;
        self.batch_tokens_out += tokens_out;
        self.tokens_in += tokens_in;
        self.tokens_out += tokens_out;
    }

    pub fn failed_calls(&self) -> u64 {
        self.failures.values().sum()
    }

    /// Successful calls out of calls sent, 0..=1; `None` before any call.
    pub fn success_rate(&self) -> Option<f64> {
        (self.calls > 0).then(|| self.successes as f64 / self.calls as f64)
    }
}

/// The classification cache's counters for the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheMetrics {
    pub hits: u64,
    pub misses: u64,
}

impl CacheMetrics {
    /// Hits out of lookups, 0..=1; `None` when nothing was looked up.
    pub fn hit_rate(&self) -> Option<f64> {
        let lookups = self.hits + self.misses;
        (lookups > 0).then(|| self.hits as f64 / lookups as f64)
    }
}

// ---------------------------------------------------------------------------------------------
// Prices

/// A model's price in US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    /// Input read from the provider's prompt cache; the input price when none is known.
    pub cached_input_per_mtok: f64,
}

impl Price {
    /// The cost in US dollars of the tokens, rounded to a millionth of a dollar.
    /// `tokens_cached` is the part of `tokens_in` billed at the cached rate.
    pub fn cost(&self, tokens_in: u64, tokens_cached: u64, tokens_out: u64) -> f64 {
        let cached = tokens_cached.min(tokens_in);
        let usd = ((tokens_in - cached) as f64 * self.input_per_mtok
            + cached as f64 * self.cached_input_per_mtok
            + tokens_out as f64 * self.output_per_mtok)
            / 1_000_000.0;
        (usd * 1_000_000.0).round() / 1_000_000.0
    }
}

/// Default prices: `(provider, model, input $/M tokens, output $/M tokens)`; model `*`
/// matches any model of that provider.
///
/// These are the providers' published LIST prices for the standard (pay-as-you-go) tier,
/// text input, prompts under 200k tokens, as of 2025-07-01. They are only an estimate: they
/// change, and batch, cached-input, free-tier and negotiated prices differ. Override them
/// with [`Prices::set`] or [`Prices::parse_overrides`]. A model not listed here gets no
/// estimate ("-" in the table, `null` in JSON), never a guess.
pub const DEFAULT_PRICES: &[(&str, &str, f64, f64)] = &[
    ("gemini", "gemini-2.5-flash", 0.30, 2.50),
    ("gemini", "gemini-2.5-flash-lite", 0.10, 0.40),
    ("gemini", "gemini-2.5-pro", 1.25, 10.00),
    ("gemini", "gemini-2.0-flash", 0.10, 0.40),
    ("openai", "gpt-4.1", 2.00, 8.00),
    ("openai", "gpt-4.1-mini", 0.40, 1.60),
    ("openai", "gpt-4.1-nano", 0.10, 0.40),
    ("openai", "gpt-4o", 2.50, 10.00),
    ("openai", "gpt-4o-mini", 0.15, 0.60),
    // Offline keyword rules: free.
    ("rules", "*", 0.0, 0.0),
];

/// What a batch-service request costs relative to the interactive price: Gemini Batch Mode
/// and the OpenAI Batch API both charge half (reference §1.7, §2.5).
pub const BATCH_PRICE_FACTOR: f64 = 0.5;

/// Default prices of input read from the prompt cache (Gemini implicit caching, OpenAI prompt
/// caching): `(provider, model, cached input $/M tokens)`, list prices of the same date as
/// [`DEFAULT_PRICES`]. A model not listed here pays its input price for cached tokens.
pub const DEFAULT_CACHED_INPUT_PRICES: &[(&str, &str, f64)] = &[
    ("gemini", "gemini-2.5-flash", 0.075),
    ("gemini", "gemini-2.5-flash-lite", 0.025),
    ("gemini", "gemini-2.5-pro", 0.31),
    ("gemini", "gemini-2.0-flash", 0.025),
    ("openai", "gpt-4.1", 0.50),
    ("openai", "gpt-4.1-mini", 0.10),
    ("openai", "gpt-4.1-nano", 0.025),
    ("openai", "gpt-4o", 1.25),
    ("openai", "gpt-4o-mini", 0.075),
];

/// Prices by provider and model.
#[derive(Debug, Clone, PartialEq)]
pub struct Prices {
    by_model: BTreeMap<(String, String), Price>,
}

impl Default for Prices {
    fn default() -> Self {
        let mut p = Prices::empty();
        for &(provider, model, i, o) in DEFAULT_PRICES {
            p.set(provider, model, i, o);
        }
        for &(provider, model, c) in DEFAULT_CACHED_INPUT_PRICES {
            p.set_cached_input(provider, model, c);
        }
        p
    }
}

impl Prices {
    /// No prices at all: every cost is unknown.
    pub fn empty() -> Self {
        Prices {
            by_model: BTreeMap::new(),
        }
    }

    /// Sets (or replaces) a price, cached input at the input price. `model` `*` matches any
    /// model of `provider`.
    pub fn set(&mut self, provider: &str, model: &str, input_per_mtok: f64, output_per_mtok: f64) {
        self.by_model.insert(
            (provider.to_string(), model.to_string()),
            Price {
                input_per_mtok,
                output_per_mtok,
                cached_input_per_mtok: input_per_mtok,
            },
        );
    }

    /// Sets the cached-input price of a model already priced with [`Prices::set`].
    pub fn set_cached_input(&mut self, provider: &str, model: &str, cached_input_per_mtok: f64) {
        if let Some(p) = self
            .by_model
            .get_mut(&(provider.to_string(), model.to_string()))
        {
            p.cached_input_per_mtok = cached_input_per_mtok;
        }
    }

    /// Applies overrides written `provider/model=INPUT:OUTPUT`, separated by commas or
    /// whitespace, e.g. `gemini/gemini-2.5-flash=0.30:2.50, openai/*=0.4:1.6`. Prices are US
    /// dollars per million tokens. Meant for a setting such as `TAG_SPACE_PRICES`.
    pub fn parse_overrides(&mut self, spec: &str) -> Result<(), String> {
        for item in spec
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
        {
            let bad = |why: &str| {
                format!("price {item:?}: {why} (e.g. gemini/gemini-2.5-flash=0.30:2.50)")
            };
            let (key, value) = item.split_once('=').ok_or_else(|| bad("no '='"))?;
            let (provider, model) = key
                .split_once('/')
                .filter(|(p, m)| !p.is_empty() && !m.is_empty())
                .ok_or_else(|| bad("expected provider/model before '='"))?;
            let (i, o) = value
                .split_once(':')
                .ok_or_else(|| bad("expected INPUT:OUTPUT after '='"))?;
            let num = |s: &str| {
                s.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .ok_or_else(|| bad("prices must be numbers of at least 0"))
            };
            self.set(provider, model, num(i)?, num(o)?);
        }
        Ok(())
    }

    /// The price of `model` at `provider`: the exact model first, then `provider/*`.
    pub fn get(&self, provider: &str, model: Option<&str>) -> Option<Price> {
        let key = |m: &str| (provider.to_string(), m.to_string());
        model
            .and_then(|m| self.by_model.get(&key(m)))
            .or_else(|| self.by_model.get(&key("*")))
            .copied()
    }

    /// The estimated cost of a provider's tokens; `None` when the model has no price.
    /// Tokens answered through a batch job cost [`BATCH_PRICE_FACTOR`] of the rate.
    pub fn cost(&self, p: &ProviderMetrics) -> Option<f64> {
        self.get(&p.provider, p.model.as_deref()).map(|price| {
            let batch_in = p.batch_tokens_in.min(p.tokens_in);
            let batch_out = p.batch_tokens_out.min(p.tokens_out);
            // Cached input is counted on interactive calls only; batch jobs report none here.
            let interactive = price.cost(
                p.tokens_in - batch_in,
                p.tokens_cached,
                p.tokens_out - batch_out,
            );
            let batch = Price {
                input_per_mtok: price.input_per_mtok * BATCH_PRICE_FACTOR,
                output_per_mtok: price.output_per_mtok * BATCH_PRICE_FACTOR,
                cached_input_per_mtok: price.cached_input_per_mtok * BATCH_PRICE_FACTOR,
            }
            .cost(batch_in, 0, batch_out);
            ((interactive + batch) * 1e6).round() / 1e6
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Pages

/// Page counts of the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageCounts {
    pub seen: u64,
    pub tagged: u64,
    pub unchanged: u64,
    /// Pages the model gave no label at all.
    pub no_label: u64,
    pub skipped: u64,
    pub failed: u64,
    /// Labels added (in a dry run: proposed).
    pub labels: u64,
    /// Labels removed by `--sync` (in a dry run: to be removed).
    pub labels_removed: u64,
}

/// The name of a status in reports.
pub fn status_str(s: Status) -> &'static str {
    match s {
        Status::Tagged => "tagged",
        Status::Unchanged => "unchanged",
        Status::NoLabel => "no_label",
        Status::Skipped => "skipped",
        Status::Failed => "failed",
    }
}

type LabelId = u32;

/// One page as kept for the reports: boxed strings and interned labels, no body.
#[derive(Debug, Clone)]
struct PageRecord {
    id: Box<str>,
    title: Box<str>,
    url: Option<Box<str>>,
    status: Status,
    before: Box<[LabelId]>,
    labels: Box<[LabelId]>,
    removed: Box<[LabelId]>,
    provider: Option<&'static str>,
    reason: Option<Box<str>>,
}

/// A page as the renderers see it.
#[derive(Debug, Clone, Copy)]
pub struct PageView<'a> {
    report: &'a RunReport,
    record: &'a PageRecord,
}

impl<'a> PageView<'a> {
    pub fn id(&self) -> &'a str {
        &self.record.id
    }
    pub fn title(&self) -> &'a str {
        &self.record.title
    }
    pub fn url(&self) -> Option<&'a str> {
        self.record.url.as_deref()
    }
    pub fn status(&self) -> Status {
        self.record.status
    }
    /// The page's labels before the run.
    pub fn labels_before(&self) -> Vec<&'a str> {
        self.report.names(&self.record.before)
    }
    /// The labels added (in a dry run: proposed).
    pub fn labels(&self) -> Vec<&'a str> {
        self.report.names(&self.record.labels)
    }
    /// The labels removed by `--sync` (in a dry run: to be removed).
    pub fn removed(&self) -> Vec<&'a str> {
        self.report.names(&self.record.removed)
    }
    pub fn provider(&self) -> Option<&'static str> {
        self.record.provider
    }
    /// Why the page was skipped or failed.
    pub fn reason(&self) -> Option<&'a str> {
        self.record.reason.as_deref()
    }
}

// ---------------------------------------------------------------------------------------------
// The report

/// Everything the end-of-run reports show. See the module docs for the order in which the
/// app fills it.
#[derive(Debug, Clone)]
pub struct RunReport {
    run: RunInfo,
    settings: Settings,
    counts: PageCounts,
    keep_pages: bool,
    pages: Vec<PageRecord>,
    label_names: Vec<Box<str>>,
    label_ids: HashMap<Box<str>, LabelId>,
    providers: Vec<ProviderMetrics>,
    cache: Option<CacheMetrics>,
    prices: Prices,
    elapsed: Option<Duration>,
}

impl RunReport {
    /// Starts the report of a run; call it before the first page.
    pub fn new(run: RunInfo, settings: Settings) -> Self {
        RunReport {
            run,
            settings,
            counts: PageCounts::default(),
            keep_pages: true,
            pages: Vec::new(),
            label_names: Vec::new(),
            label_ids: HashMap::new(),
            providers: Vec::new(),
            cache: None,
            prices: Prices::default(),
            elapsed: None,
        }
    }

    /// Keeps counts only, not each page: enough for the metrics table. Use it when neither a
    /// JSON nor a Markdown report is asked for, so that a huge space costs no memory here.
    pub fn counts_only(mut self) -> Self {
        self.keep_pages = false;
        self
    }

    /// Takes one page's outcome. Keeps a compact copy (no body; labels interned).
    pub fn record(&mut self, o: &PageOutcome) {
        let c = &mut self.counts;
        c.seen += 1;
        match o.status {
            Status::Tagged => c.tagged += 1,
            Status::Unchanged => c.unchanged += 1,
            Status::NoLabel => c.no_label += 1,
            Status::Skipped => c.skipped += 1,
            Status::Failed => c.failed += 1,
        }
        c.labels += o.added.len() as u64;
        c.labels_removed += o.removed.len() as u64;
        if !self.keep_pages {
            return;
        }
        let before = self.intern_all(&o.labels_before);
        let labels = self.intern_all(&o.added);
        let removed = self.intern_all(&o.removed);
        self.pages.push(PageRecord {
            id: o.id.as_str().into(),
            title: o.title.as_str().into(),
            url: o.url.as_deref().map(Into::into),
            status: o.status,
            before,
            labels,
            removed,
            provider: o.provider,
            reason: o.reason.as_deref().map(Into::into),
        });
    }

    fn intern_all(&mut self, labels: &[String]) -> Box<[LabelId]> {
        labels.iter().map(|l| self.intern(l)).collect()
    }

    fn intern(&mut self, label: &str) -> LabelId {
        if let Some(&id) = self.label_ids.get(label) {
            return id;
        }
        let id = self.label_names.len() as LabelId;
        self.label_names.push(label.into());
        self.label_ids.insert(label.into(), id);
        id
    }

    fn names(&self, ids: &[LabelId]) -> Vec<&str> {
        ids.iter()
            .map(|&i| &*self.label_names[i as usize])
            .collect()
    }

    /// The providers' figures, in the order they are tried. Call once the pipeline is done.
    pub fn set_providers(&mut self, providers: Vec<ProviderMetrics>) {
        self.providers = providers;
    }

    /// The cache's counters; leave unset when no cache was used (shown as "-").
    pub fn set_cache(&mut self, cache: CacheMetrics) {
        self.cache = Some(cache);
    }

    /// Replaces the default prices ([`DEFAULT_PRICES`]).
    pub fn set_prices(&mut self, prices: Prices) {
        self.prices = prices;
    }

    /// How the run ended (see [`RunStatus`]); `error` says why a failed run failed.
    pub fn set_end(&mut self, status: RunStatus, error: Option<String>) {
        self.run.status = status;
        self.run.error = error;
    }

    /// How many pages the listing delivered: with [`RunReport::counts`]`().seen`, how far an
    /// interrupted or failed run got.
    pub fn set_pages_listed(&mut self, listed: u64) {
        self.run.pages_listed = Some(listed);
    }

    /// For a run that did not finish: how it ended and how far it got, e.g.
    /// `interrupted: 3 of 7 listed pages done`. `None` for a finished run. (Why a failed run
    /// failed is [`RunInfo::error`].)
    pub fn end_note(&self) -> Option<String> {
        let how_far = match self.run.pages_listed {
            Some(listed) => format!("{} of {listed} listed pages done", self.counts.seen),
            None => format!("{} pages done", self.counts.seen),
        };
        match self.run.status {
            RunStatus::Finished => None,
            status => Some(format!("{}: {how_far}", status.as_str())),
        }
    }

    /// Marks the end of the run: wall-clock end time and elapsed time (measured with an
    /// `Instant`, so that a clock change cannot make it negative).
    pub fn finish(&mut self, finished: SystemTime, elapsed: Duration) {
        self.run.finished = Some(finished);
        self.elapsed = Some(elapsed);
    }

    pub fn run(&self) -> &RunInfo {
        &self.run
    }
    pub fn settings(&self) -> &Settings {
        &self.settings
    }
    pub fn counts(&self) -> &PageCounts {
        &self.counts
    }
    pub fn providers(&self) -> &[ProviderMetrics] {
        &self.providers
    }
    pub fn cache(&self) -> Option<&CacheMetrics> {
        self.cache.as_ref()
    }
    pub fn prices(&self) -> &Prices {
        &self.prices
    }
    /// `None` until [`RunReport::finish`].
    pub fn elapsed(&self) -> Option<Duration> {
        self.elapsed
    }
    /// Whether [`RunReport::record`] keeps each page (see [`RunReport::counts_only`]).
    pub fn keeps_pages(&self) -> bool {
        self.keep_pages
    }

    /// The pages kept, sorted by id (numeric ids in numeric order), so that two reports of
    /// the same space compare line by line whatever order the pages finished in.
    pub fn pages(&self) -> Vec<PageView<'_>> {
        let mut v: Vec<PageView<'_>> = self
            .pages
            .iter()
            .map(|record| PageView {
                report: self,
                record,
            })
            .collect();
        v.sort_by(|a, b| id_order(a.id(), b.id()));
        v
    }

    /// The estimated cost of all providers together; `None` when no provider has a price.
    /// Providers without a price count as nothing (the table says which ones).
    pub fn total_cost(&self) -> Option<f64> {
        let costs: Vec<f64> = self
            .providers
            .iter()
            .filter_map(|p| self.prices.cost(p))
            .collect();
        (!costs.is_empty()).then(|| (costs.iter().sum::<f64>() * 1e6).round() / 1e6)
    }

    /// Waits of all providers by reason.
    pub fn total_waits(&self) -> BTreeMap<Wait, WaitTotal> {
        let mut all = BTreeMap::new();
        for p in &self.providers {
            for (&r, w) in &p.waits {
                let t: &mut WaitTotal = all.entry(r).or_default();
                t.count += w.count;
                t.total += w.total;
            }
        }
        all
    }
}

/// Numeric ids in numeric order (shorter first), then by text.
fn id_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}
