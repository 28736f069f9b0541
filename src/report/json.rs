//! The JSON report (`--report FILE.json`, `--format json`): a stable document described in
//! `docs/report.md` and by the JSON Schema `docs/report.schema.json`.
//!
//! The shape is defined here by private structs, not by the model, so that the model can
//! change without the document changing. Durations are seconds as numbers (to the
//! millisecond), rates are 0..=1, costs are US dollars, missing figures are `null`.

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde::Serialize;

use super::model::{
    PageCounts, PageView, ProviderMetrics, RunReport, SCHEMA_VERSION, Settings, SpaceSummary,
    rfc3339, seconds, status_str,
};
use crate::governor::{Latency, WaitReason, WaitStats};
use crate::pipeline::Status;

/// Writes the JSON report, pretty-printed, with a final newline.
pub fn write_json(out: &mut impl Write, r: &RunReport) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, &document(r)).map_err(io::Error::other)?;
    writeln!(out)
}

/// The JSON report as a value (for tests and for embedding).
pub fn to_json_value(r: &RunReport) -> serde_json::Value {
    serde_json::to_value(document(r)).expect("the report serializes")
}

#[derive(Serialize)]
struct Document<'a> {
    schema_version: u32,
    run: Run<'a>,
    settings: &'a Settings,
    /// Each space of the run (one in a single-space run).
    spaces: Vec<SpaceOut>,
    /// `None` when the report kept counts only.
    pages: Option<Vec<Page<'a>>>,
    metrics: Metrics<'a>,
}

#[derive(Serialize)]
struct Run<'a> {
    /// `None` in a run over several spaces.
    space: Option<&'a str>,
    spaces: Vec<String>,
    mode: &'static str,
    dry_run: bool,
    started: String,
    finished: Option<String>,
    version: &'a str,
    status: &'static str,
    error: Option<&'a str>,
    pages_listed: Option<u64>,
}

#[derive(Serialize)]
struct Page<'a> {
    space: &'a str,
    id: &'a str,
    title: &'a str,
    url: Option<&'a str>,
    status: &'static str,
    labels_before: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    labels_added: Option<Vec<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    labels_proposed: Option<Vec<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    labels_removed: Option<Vec<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    labels_to_remove: Option<Vec<&'a str>>,
    provider: Option<&'static str>,
    error: Option<&'a str>,
    skip_reason: Option<&'a str>,
}

#[derive(Serialize)]
struct Metrics<'a> {
    pages: Pages,
    providers: Vec<Provider<'a>>,
    cache: Option<Cache>,
    confluence: Option<ConfluenceOut>,
    waits: BTreeMap<&'static str, WaitOut>,
    estimated_cost_usd: Option<f64>,
    elapsed_seconds: Option<f64>,
}

/// One space's end and counts.
#[derive(Serialize)]
struct SpaceOut {
    space: String,
    status: &'static str,
    error: Option<String>,
    pages_listed: Option<u64>,
    pages: Pages,
    elapsed_seconds: Option<f64>,
}

#[derive(Serialize)]
struct Pages {
    seen: u64,
    tagged: u64,
    unchanged: u64,
    no_label: u64,
    skipped: u64,
    failed: u64,
    stale: u64,
    labels: u64,
    labels_removed: u64,
}

#[derive(Serialize)]
struct Provider<'a> {
    provider: &'a str,
    model: Option<&'a str>,
    calls: u64,
    successes: u64,
    success_rate: Option<f64>,
    failures: &'a BTreeMap<&'static str, u64>,
    rate_limited: u64,
    retries: u64,
    reasks: u64,
    budget_exhausted: u64,
    splits: u64,
    fallbacks: u64,
    skipped: u64,
    tokens_in: u64,
    tokens_out: u64,
    tokens_cached: u64,
    latency: LatencyOut,
    waits: BTreeMap<&'static str, WaitOut>,
    concurrency_limit: usize,
    paced_rpm: Option<f64>,
    unavailable: Option<&'a str>,
    structured_output: Option<&'a str>,
    price: Option<PriceOut>,
    estimated_cost_usd: Option<f64>,
    batch: BatchOut,
}

/// What the provider's batch service answered (`--via batch`), priced at half the rate.
#[derive(Serialize)]
struct BatchOut {
    requests: u64,
    pages: u64,
    tokens_in: u64,
    tokens_out: u64,
}

#[derive(Serialize)]
struct LatencyOut {
    count: u64,
    p50_seconds: Option<f64>,
    p95_seconds: Option<f64>,
    max_seconds: Option<f64>,
}

#[derive(Serialize)]
struct WaitOut {
    count: u64,
    seconds: f64,
}

#[derive(Serialize)]
struct PriceOut {
    input_usd_per_million_tokens: f64,
    output_usd_per_million_tokens: f64,
    cached_input_usd_per_million_tokens: f64,
}

/// The Confluence site's governor's figures.
#[derive(Serialize)]
struct ConfluenceOut {
    requests: u64,
    rate_limited: u64,
    bytes: u64,
    cooldown_seconds: f64,
    pacing_seconds: f64,
    slot_seconds: f64,
    peak_in_flight: usize,
}

#[derive(Serialize)]
struct Cache {
    hits: u64,
    misses: u64,
    hit_rate: Option<f64>,
}

fn document(r: &RunReport) -> Document<'_> {
    let run = r.run();
    let spaces = r.spaces();
    Document {
        schema_version: SCHEMA_VERSION,
        run: Run {
            space: (!r.several_spaces()).then_some(run.space.as_str()),
            spaces: spaces.iter().map(|s| s.space.clone()).collect(),
            mode: run.mode.as_str(),
            dry_run: run.dry_run,
            started: rfc3339(run.started),
            finished: run.finished.map(rfc3339),
            version: &run.version,
            status: run.status.as_str(),
            error: run.error.as_deref(),
            pages_listed: run.pages_listed,
        },
        settings: r.settings(),
        spaces: spaces.into_iter().map(space_out).collect(),
        pages: r.keeps_pages().then(|| {
            r.pages()
                .into_iter()
                .map(|p| page(p, run.dry_run))
                .collect()
        }),
        metrics: Metrics {
            pages: pages(r.counts()),
            providers: r.providers().iter().map(|p| provider(r, p)).collect(),
            cache: r.cache().map(|c| Cache {
                hits: c.hits,
                misses: c.misses,
                hit_rate: c.hit_rate().map(rate),
            }),
            confluence: r.confluence().map(|s| ConfluenceOut {
                requests: s.requests,
                rate_limited: s.throttled,
                bytes: s.bytes,
                cooldown_seconds: seconds(s.cooldown_wait),
                pacing_seconds: seconds(s.pacing_wait),
                slot_seconds: seconds(s.slot_wait),
                peak_in_flight: s.peak_in_flight,
            }),
            waits: waits(|w| r.total_waits().get(&w).copied().unwrap_or_default()),
            estimated_cost_usd: r.total_cost(),
            elapsed_seconds: r.elapsed().map(seconds),
        },
    }
}

fn pages(c: &PageCounts) -> Pages {
    Pages {
        seen: c.seen,
        tagged: c.tagged,
        unchanged: c.unchanged,
        no_label: c.no_label,
        skipped: c.skipped,
        failed: c.failed,
        stale: c.stale,
        labels: c.labels,
        labels_removed: c.labels_removed,
    }
}

fn space_out(s: SpaceSummary) -> SpaceOut {
    SpaceOut {
        status: s.status.as_str(),
        pages: pages(&s.counts),
        pages_listed: s.pages_listed,
        elapsed_seconds: s.elapsed.map(seconds),
        error: s.error,
        space: s.space,
    }
}

fn page(p: PageView<'_>, dry_run: bool) -> Page<'_> {
    let labels = p.labels();
    let removed = p.removed();
    Page {
        space: p.space(),
        id: p.id(),
        title: p.title(),
        url: p.url(),
        status: status_str(p.status()),
        labels_before: p.labels_before(),
        labels_proposed: dry_run.then(|| labels.clone()),
        labels_added: (!dry_run).then_some(labels),
        labels_to_remove: dry_run.then(|| removed.clone()),
        labels_removed: (!dry_run).then_some(removed),
        provider: p.provider(),
        error: (p.status() == Status::Failed).then(|| p.reason().unwrap_or("unknown error")),
        skip_reason: match p.status() {
            Status::Skipped => Some(p.reason().unwrap_or("nothing to classify")),
            Status::Stale => Some(p.reason().unwrap_or("edited since the plan")),
            _ => None,
        },
    }
}

fn provider<'a>(r: &RunReport, p: &'a ProviderMetrics) -> Provider<'a> {
    let s = &p.stats;
    let price = r.prices().get(s.provider, p.model.as_deref());
    Provider {
        provider: s.provider,
        model: p.model.as_deref(),
        calls: s.calls,
        successes: s.successes,
        success_rate: s.success_rate().map(rate),
        failures: &s.failures,
        rate_limited: s.rate_limited,
        retries: s.retries,
        reasks: s.reasks,
        budget_exhausted: s.budget_exhausted,
        splits: s.splits,
        fallbacks: s.fallbacks,
        skipped: s.skipped,
        tokens_in: s.tokens_in,
        tokens_out: s.tokens_out,
        tokens_cached: s.tokens_cached,
        latency: latency(&s.latency()),
        waits: waits(|w| s.wait(w)),
        concurrency_limit: s.concurrency_limit,
        paced_rpm: s.paced_rpm,
        unavailable: s.unavailable.as_deref(),
        structured_output: p.structured_output.as_deref(),
        price: price.map(|x| PriceOut {
            input_usd_per_million_tokens: x.input_per_mtok,
            output_usd_per_million_tokens: x.output_per_mtok,
            cached_input_usd_per_million_tokens: x.cached_input_per_mtok,
        }),
        estimated_cost_usd: r.prices().cost(p),
        batch: BatchOut {
            requests: p.batch.requests,
            pages: p.batch.pages,
            tokens_in: p.batch.tokens_in,
            tokens_out: p.batch.tokens_out,
        },
    }
}

fn latency(l: &Latency) -> LatencyOut {
    LatencyOut {
        count: l.count,
        p50_seconds: l.p50.map(seconds),
        p95_seconds: l.p95.map(seconds),
        max_seconds: l.max.map(seconds),
    }
}

/// Every reason, always, so that a consumer can read `waits.cooldown_429.seconds` blindly.
fn waits(get: impl Fn(WaitReason) -> WaitStats) -> BTreeMap<&'static str, WaitOut> {
    WaitReason::ALL
        .into_iter()
        .map(|w| {
            let t = get(w);
            (
                w.as_str(),
                WaitOut {
                    count: t.count,
                    seconds: seconds(t.total),
                },
            )
        })
        .collect()
}

/// A rate to four decimals, so that 2/3 reads 0.6667 rather than 0.6666666666666666.
fn rate(r: f64) -> f64 {
    (r * 10_000.0).round() / 10_000.0
}
