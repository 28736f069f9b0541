//! `tag-space apply` over a plan of 500 pages against a Confluence-shaped site whose every
//! answer takes a fixed time: one page after another (as `apply` did before it wrote pages at
//! once) against several pages at a time within the site's concurrency (issue 15's follow-up).
//!
//! ```text
//! cargo bench --profile dev --bench apply                       # 500 pages, 20 ms an answer
//! APPLY_BENCH_PAGES=200 APPLY_BENCH_LATENCY_MS=50 cargo bench --profile dev --bench apply
//! ```
//!
//! The site is the stateful Cloud fake of the ownership tests (`tests/integration/livesite.rs`)
//! on 127.0.0.1, request recording off, each answer after `APPLY_BENCH_LATENCY_MS` (default
//! 20). Each variant gets a fresh site and a fresh state file. The plan adds `type-howto` to
//! every page. What is measured is the product's path: the real `ConfluenceClient` and its
//! site governor (`TAG_SPACE_CONFLUENCE_CONCURRENCY` = `APPLY_BENCH_CONCURRENCY`, default 4),
//! the metadata listing apply compares versions against, then
//! [`tag_space::pipeline::apply_plan`] (a fresh read of each page's labels, the write-ahead
//! intent, the write, the finished page in the ledger). "one page at a time" is `apply_plan`
//! with 1 page in flight, which is what the loop over `apply_planned` did; "at once" is the
//! site's concurrency, as `tag-space apply` now runs.

#[path = "../tests/integration/livesite.rs"]
mod livesite;
#[path = "support/site.rs"]
mod site;
use site::{client, env, serve};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use livesite::{Flavor, LiveSite};
use tag_space::cache::{ContentHash, RunMode, Setup, Store, StoreOptions};
use tag_space::confluence::pace::PaceConfig;
use tag_space::confluence::{ConfluenceClient, Page, PageSource};
use tag_space::pipeline::{
    self, ListedNow, PlannedWrite, Provenance, RunOptions, RunState, Status,
};
use tag_space::taxonomy::Taxonomy;
use tokio::sync::mpsc;

/// The plan: `type-howto` on every page, planned at version 1.
fn plan(pages: u64) -> Vec<PlannedWrite> {
    (1..=pages)
        .map(|id| PlannedWrite {
            id: id.to_string(),
            title: format!("How to deploy service {id}"),
            url: None,
            version: 1,
            content_hash: ContentHash::of_page(&format!("How to deploy service {id}"), ""),
            add: vec!["type-howto".into()],
            remove: Vec::new(),
            provider: Provenance::Provider("rules"),
        })
        .collect()
}

/// The pages as listed now (metadata only), as `apply` lists them before writing.
async fn listed(source: &ConfluenceClient) -> HashMap<String, ListedNow> {
    let (tx, mut rx) = mpsc::channel::<Page>(64);
    let gather = async {
        let mut now = HashMap::new();
        while let Some(p) = rx.recv().await {
            let listed = ListedNow {
                version: p.version,
                labels: p.labels,
            };
            now.insert(p.id, listed);
        }
        now
    };
    let (listing, now) = tokio::join!(source.stream_metadata("ENG", tx), gather);
    listing.expect("the listing");
    now
}

struct Measured {
    wall: Duration,
    tagged: u64,
    requests: u64,
    peak_in_flight: usize,
    in_order: bool,
}

/// One apply of the plan, `in_flight` pages at a time, on a fresh site and state file.
async fn one_apply(pages: u64, latency: Duration, site_limit: usize, in_flight: usize) -> Measured {
    let site = LiveSite::new(Flavor::Cloud, pages, 250);
    let server = serve(&site, latency).await;
    let dir = tempfile::tempdir().unwrap();
    let tax = Taxonomy::embedded();
    let store =
        Arc::new(Store::open(dir.path().join("state.db"), StoreOptions::default()).unwrap());
    let state = RunState {
        run: store.begin_run("ENG", RunMode::Add, false).unwrap(),
        store: store.clone(),
        setup: Setup::new(tax.fingerprint(), "plan", "rules"),
    };
    let opts = RunOptions {
        space: "ENG".into(),
        state: Some(state.clone()),
        ..RunOptions::default()
    };
    let writes = plan(pages);
    let source = client(&server).with_pace(PaceConfig {
        concurrency: site_limit,
        ..PaceConfig::default()
    });
    let started = Instant::now();
    let now = listed(&source).await;
    let (mut tagged, mut order) = (0, Vec::new());
    let mut sink = |o: pipeline::PageOutcome| {
        tagged += u64::from(o.status == Status::Tagged);
        order.push(o.id);
    };
    pipeline::apply_plan(&source, &tax, &opts, &writes, now, in_flight, &mut sink).await;
    store.finish_run(&state.run).unwrap();
    let wall = started.elapsed();
    let stats = source.site_stats().unwrap_or_default();
    Measured {
        wall,
        tagged,
        requests: stats.requests,
        peak_in_flight: stats.peak_in_flight,
        in_order: order.iter().eq(writes.iter().map(|w| &w.id)),
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let pages: u64 = env("APPLY_BENCH_PAGES", 500);
    let latency = Duration::from_millis(env("APPLY_BENCH_LATENCY_MS", 20));
    let limit: usize = env("APPLY_BENCH_CONCURRENCY", 4);
    println!(
        "apply: {pages} planned pages, {} ms an answer, TAG_SPACE_CONFLUENCE_CONCURRENCY={limit}",
        latency.as_millis()
    );
    println!(
        "| variant | pages tagged | requests | peak in flight | wall | pages/s | plan order |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | --- |");
    for (name, in_flight) in [
        ("one page at a time", 1),
        ("at once (site concurrency)", limit),
    ] {
        let m = one_apply(pages, latency, limit, in_flight).await;
        println!(
            "| {name} | {} | {} | {} | {:.2} s | {:.1} | {} |",
            m.tagged,
            m.requests,
            m.peak_in_flight,
            m.wall.as_secs_f64(),
            pages as f64 / m.wall.as_secs_f64(),
            if m.in_order { "yes" } else { "NO" },
        );
    }
}
