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
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::confluence::pace::SiteStats;
use crate::governor::{WaitReason, WaitStats};
use crate::pipeline::{PageOutcome, Status};

pub use super::metrics::{BatchUsage, CacheMetrics, ProviderMetrics};
pub use super::prices::{
    BATCH_PRICE_FACTOR, DEFAULT_CACHED_INPUT_PRICES, DEFAULT_PRICES, Price, Prices,
};
mod spaces;

pub use spaces::SpaceSummary;

pub use super::settings::{
    CacheInfo, ConfluenceInfo, ProviderInfo, Settings, TaxonomyInfo, public_url, seconds,
};

/// The version of the JSON report's shape. Raised only when a field changes meaning or is
/// removed; new optional fields keep it.
///
/// 2: pages carry the labels removed (`labels_removed` / `labels_to_remove`), the status
/// `no_label` exists, `run` says how the run ended (`status`, `error`, `pages_listed`), and
/// `metrics.pages` counts `no_label` and `labels_removed`.
///
/// 3: a run may cover several spaces: `run.space` is null when it does, `run.spaces` lists
/// the keys, `spaces[]` breaks the run down per space, and each page names its `space`.
///
/// 4: `tag-space apply`'s pages edited since the plan have the status `stale` (before:
/// `skipped` with a reason starting `stale:`), counted in the new `pages.stale` and no longer
/// in `pages.skipped`; their `skip_reason` says which versions.
pub const SCHEMA_VERSION: u32 = 4;

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
    /// `tag-space apply`: pages edited or gone since the plan, left alone.
    pub stale: u64,
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
        Status::Stale => "stale",
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
    /// The page's space: an index into the run's spaces (0 in a single-space run).
    space: u16,
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
    /// The page's space key.
    pub fn space(&self) -> &'a str {
        self.report.space_of(self.record.space)
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
    /// The Confluence site's governor's figures; `None` for a source that is not a site.
    confluence: Option<SiteStats>,
    prices: Prices,
    elapsed: Option<Duration>,
    /// A run over several spaces ([`RunReport::over_several_spaces`]) and its spaces.
    several: bool,
    space_summaries: Vec<SpaceSummary>,
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
            confluence: None,
            prices: Prices::default(),
            elapsed: None,
            several: false,
            space_summaries: Vec::new(),
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
            Status::Stale => c.stale += 1,
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
            provider: o.provider.map(|p| p.name()),
            reason: o.reason.as_deref().map(Into::into),
            space: 0,
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

    /// The Confluence site's figures (requests, 429s, waits, bytes). Call once the pipeline is
    /// done; leave unset for a source that is not a site (the demo).
    pub fn set_confluence(&mut self, stats: SiteStats) {
        self.confluence = Some(stats);
    }

    pub fn confluence(&self) -> Option<&SiteStats> {
        self.confluence.as_ref()
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

    /// Pages a provider's batch job answered in this run (`--via batch`).
    pub fn batch_pages(&self) -> u64 {
        self.providers.iter().map(|p| p.batch.pages).sum()
    }

    /// The estimated cost of all providers together; `None` when no provider has a price.
    /// Providers without a price count as nothing (the table says which ones). Tokens a
    /// batch job answered are priced at the batch rate.
    pub fn total_cost(&self) -> Option<f64> {
        let costs: Vec<f64> = self
            .providers
            .iter()
            .filter_map(|p| self.prices.cost(p))
            .collect();
        (!costs.is_empty()).then(|| (costs.iter().sum::<f64>() * 1e6).round() / 1e6)
    }

    /// Waits of all providers by reason.
    pub fn total_waits(&self) -> BTreeMap<WaitReason, WaitStats> {
        let mut all = BTreeMap::new();
        for p in &self.providers {
            for (&r, w) in &p.stats.waits {
                let t: &mut WaitStats = all.entry(r).or_default();
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
