//! `tag-space apply` writes several pages at once (issue 15's follow-up): against the Cloud
//! fake of `livesite.rs`, whose label writes are held a while each, the writes in flight
//! reach more than one and never more than `TAG_SPACE_CONFLUENCE_CONCURRENCY`, and the page
//! lines come in the plan's order whatever order the writes finish in.
//!
//! The writes in flight are counted from the fake's side, from when each write arrived and
//! how long its answer was held: a write that arrives while an earlier one's answer is still
//! held was sent while that one was in flight. That count can only be lower than the truth
//! (never higher), so `> 1` proves overlap and the bound is also checked on the client's own
//! count (`metrics.confluence.peak_in_flight`).

use std::time::Duration;

use serde_json::Value;

use crate::harness::OutputBounded;
use crate::livesite::Flavor;
use crate::plan::{env_of, stderr, stdout};

const PAGES: u64 = 12;
const CONCURRENCY: usize = 3;

/// Page 1's write is held longest, page 12's shortest, so that writes started together finish
/// in the reverse of the plan's order.
fn held(page: u64) -> Duration {
    Duration::from_millis(300 + (PAGES - page.min(PAGES)) * 25)
}

/// The most writes whose answers were held at once: for each arrival, the earlier writes
/// still held then, itself included.
fn peak(arrivals: &[(std::time::Instant, Duration)]) -> usize {
    arrivals
        .iter()
        .map(|(at, _)| {
            arrivals
                .iter()
                .filter(|(t, hold)| t <= at && *at < *t + *hold)
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// The page ids of stdout's `added` lines, in their order.
fn added_ids(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.starts_with("added "))
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_writes_pages_at_once_within_the_site_concurrency_in_plan_order() {
    let e = env_of(Flavor::Cloud, PAGES).await;
    let plan = e.plan("full", &[]);
    let planned: Vec<String> = plan["spaces"][0]["pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(planned.len(), PAGES as usize, "{plan:#}");
    e.site.state().hold_post = Some(held);

    let out = e
        .command("full", &["apply", "plan.json", "--report", "applied.json"])
        .env("TAG_SPACE_CONFLUENCE_CONCURRENCY", CONCURRENCY.to_string())
        .output_bounded();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let arrivals = e.site.state().post_arrivals.clone();
    assert_eq!(arrivals.len(), PAGES as usize, "one write a page");
    let at_once = peak(&arrivals);
    assert!(
        at_once > 1 && at_once <= CONCURRENCY,
        "{at_once} writes in flight at most, want 2..={CONCURRENCY}"
    );
    assert_eq!(added_ids(&stdout(&out)), planned, "{}", stdout(&out));
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(e.path("applied.json")).unwrap()).unwrap();
    let site = &report["metrics"]["confluence"];
    let client_peak = site["peak_in_flight"].as_u64().unwrap();
    assert!((2..=CONCURRENCY as u64).contains(&client_peak), "{site:#}");
    assert_eq!(report["metrics"]["pages"]["tagged"], PAGES, "{report:#}");
}
