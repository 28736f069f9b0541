//! A rerun over a Confluence-shaped 10,000-page space: what it downloads and how long it takes
//! when nothing changed, and when 1 % of the pages changed (issue 11, item 4).
//!
//! ```text
//! cargo bench --profile dev --bench rerun                      # 10,000 pages, 100 edited
//! RERUN_BENCH_PAGES=2000 RERUN_BENCH_LATENCY_MS=100 cargo bench --profile dev --bench rerun
//! RERUN_BENCH_MEMORY=100000 cargo bench --profile dev --bench rerun   # peak RSS of a listing
//! ```
//!
//! The site is the stateful Cloud fake of the ownership tests (`tests/integration/livesite.rs`)
//! on 127.0.0.1 with realistic bodies (5-20 KB of storage-format XHTML a page, 12.5 KB on
//! average), request recording off, each answer after `RERUN_BENCH_LATENCY_MS` (default 0).
//! It honours `body-format` as Confluence does, serves bodies in bulk
//! (`GET /wiki/api/v2/pages?id=…`) and counts the bytes of every answer's body by kind.
//! tag-space's real pipeline (keyword rules provider, so the LLM never binds; a real state
//! file in a temp dir; not a dry run) drives the real `ConfluenceClient`: run 1 on an empty
//! state file labels every page; run 2 over the unchanged space; then 1 % of the pages are
//! edited (version and body change) and run 3 goes over them.
//!
//! With `RERUN_BENCH_MEMORY=N` it instead lists the metadata of an N-page space through the
//! client (as a run does first) and prints the process's peak RSS (`VmHWM`, reset through
//! `/proc/self/clear_refs` before the listing).

#[path = "../tests/integration/livesite.rs"]
mod livesite;
#[path = "support/site.rs"]
mod site;
use site::{client, env, serve};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use livesite::{Flavor, LiveSite};
use tag_space::cache::{RunMode, Setup, Store, StoreOptions};
use tag_space::confluence::PageSource;
use tag_space::governor::{Chain, Governed, GovernorConfig};
use tag_space::llm::AnyProvider;
use tag_space::llm::rules::RulesProvider;
use tag_space::pipeline::{self, RULES_MODEL, RunOptions, RunState, Status};
use tag_space::taxonomy::Taxonomy;
use wiremock::MockServer;

#[derive(Default)]
struct Measured {
    wall: Duration,
    outcomes: BTreeMap<&'static str, u64>,
    requests: BTreeMap<&'static str, u64>,
    bytes: BTreeMap<&'static str, u64>,
}

impl Measured {
    fn requests(&self) -> u64 {
        self.requests.values().sum()
    }
    fn bytes(&self) -> u64 {
        self.bytes.values().sum()
    }
}

/// One run as the binary makes it: open the state file, begin, run, finish.
async fn one_run(db: &std::path::Path, site: &LiveSite, server: &MockServer) -> Measured {
    let (requests0, bytes0) = {
        let st = site.state();
        (st.requests.clone(), st.bytes.clone())
    };
    let source = client(server);
    let tax = Arc::new(Taxonomy::embedded());
    let chain = Chain::new(vec![Governed::new(
        AnyProvider::Rules(RulesProvider::new(tax.clone())),
        GovernorConfig::default(),
    )]);
    let started = Instant::now();
    let store = Arc::new(Store::open(db, StoreOptions::default()).expect("open the state file"));
    let state = RunState {
        run: store.begin_run("ENG", RunMode::Add, false).unwrap(),
        store: store.clone(),
        setup: Setup::new(
            tax.fingerprint(),
            tag_space::llm::prompt::PROMPT_VERSION,
            RULES_MODEL,
        ),
    };
    let opts = RunOptions {
        space: "ENG".into(),
        batch_size: 5,
        max_batch_chars: 60_000,
        max_page_chars: 8000,
        max_in_flight: 12,
        state: Some(state.clone()),
        ..RunOptions::default()
    };
    let mut m = Measured::default();
    pipeline::run(&source, &chain, &tax, &opts, |o| {
        let status = match o.status {
            Status::Tagged => "tagged",
            Status::Unchanged
                if o.reason.as_deref() == Some(pipeline::UNCHANGED_SINCE_LAST_RUN) =>
            {
                "skipped unchanged"
            }
            Status::Unchanged => "labels in place",
            Status::NoLabel => "no label",
            Status::Skipped => "skipped",
            Status::Failed => "failed",
            Status::Stale => "stale",
        };
        *m.outcomes.entry(status).or_default() += 1;
    })
    .await
    .expect("the run");
    store.finish_run(&state.run).unwrap();
    drop(store);
    m.wall = started.elapsed();
    let st = site.state();
    let diff = |now: &BTreeMap<&'static str, u64>, before: &BTreeMap<&'static str, u64>| {
        now.iter()
            .map(|(k, v)| (*k, v - before.get(k).copied().unwrap_or(0)))
            .filter(|(_, v)| *v > 0)
            .collect()
    };
    m.requests = diff(&st.requests, &requests0);
    m.bytes = diff(&st.bytes, &bytes0);
    m
}

fn row(name: &str, pages: u64, m: &Measured) {
    let kinds = |map: &BTreeMap<&'static str, u64>| {
        map.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let list_mb = |k: &str| m.bytes.get(k).copied().unwrap_or(0) as f64 / 1e6;
    println!(
        "| {name} | {pages} | {} | {} | {:.1} MB | {:.1} MB | {:.1} MB | {:.2} s | {} |",
        kinds(&m.outcomes),
        m.requests(),
        m.bytes() as f64 / 1e6,
        list_mb("list"),
        list_mb("bodies"),
        m.wall.as_secs_f64(),
        kinds(&m.requests),
    );
}

/// Peak RSS in KiB (`VmHWM`), after resetting it when `reset`.
fn peak_rss_kib(reset: bool) -> u64 {
    if reset {
        // "5" resets the peak to the current RSS (Linux 4.0+).
        let _ = std::fs::write("/proc/self/clear_refs", "5");
    }
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

async fn memory(pages: u64) {
    let site = LiveSite::new(Flavor::Cloud, pages, 250).sized();
    let server = serve(&site, Duration::ZERO).await;
    let source = client(&server);
    let before = peak_rss_kib(true);
    let started = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::channel(256);
    let drain = async {
        let mut n = 0u64;
        while rx.recv().await.is_some() {
            n += 1;
        }
        n
    };
    let (listed, n) = tokio::join!(source.stream_metadata("ENG", tx), drain);
    assert_eq!((listed.expect("the listing"), n), (pages, pages));
    let wall = started.elapsed();
    let after = peak_rss_kib(false);
    let bytes = site.state().bytes.get("list").copied().unwrap_or(0);
    println!(
        "metadata listing of {pages} pages: {} requests, {:.1} MB, {:.2} s; peak RSS {:.1} MiB before, {:.1} MiB during",
        site.state().requests("list"),
        bytes as f64 / 1e6,
        wall.as_secs_f64(),
        before as f64 / 1024.0,
        after as f64 / 1024.0,
    );
}

#[tokio::main]
async fn main() {
    let memory_pages = env("RERUN_BENCH_MEMORY", 0u64);
    if memory_pages > 0 {
        return memory(memory_pages).await;
    }
    let pages = env("RERUN_BENCH_PAGES", 10_000u64);
    let delay = Duration::from_millis(env("RERUN_BENCH_LATENCY_MS", 0u64));
    let site = LiveSite::new(Flavor::Cloud, pages, 250).sized();
    let server = serve(&site, delay).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    println!(
        "{pages} pages, 5-20 KB bodies, {} ms per answer",
        delay.as_millis()
    );
    println!(
        "| run | pages | outcomes | requests | downloaded | of which listing | of which bodies | wall | requests by kind |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|---|");
    let first = one_run(&db, &site, &server).await;
    row("1: empty state file", pages, &first);
    let second = one_run(&db, &site, &server).await;
    row("2: nothing changed", pages, &second);
    assert_eq!(second.outcomes.get("skipped unchanged"), Some(&pages));
    let edited = (pages / 100).max(1);
    for k in 0..edited {
        site.edit(1 + k * (pages / edited));
    }
    let third = one_run(&db, &site, &server).await;
    row(&format!("3: {edited} pages edited"), pages, &third);
    assert_eq!(
        third.outcomes.get("skipped unchanged"),
        Some(&(pages - edited))
    );
    let peak = peak_rss_kib(false);
    println!("peak RSS of the process: {:.1} MiB", peak as f64 / 1024.0);
}
