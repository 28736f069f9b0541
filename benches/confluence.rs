//! A Confluence-bound run against a local site with a token-bucket burst limit: how close the
//! site governor runs to the bucket, and whether any request lands inside a window the site
//! announced with `Retry-After`.
//!
//! ```text
//! cargo bench --profile dev --bench confluence           # 300 pages, bucket 50/s, burst 20
//! CONFLUENCE_BENCH_PAGES=600 CONFLUENCE_BENCH_RATE=100 cargo bench --profile dev --bench confluence
//! ```
//!
//! The site is the stateful Cloud fake of the ownership tests (`tests/integration/livesite.rs`,
//! on 127.0.0.1), which lists pages without bodies unless asked and serves bodies in bulk as
//! Confluence does, so the run takes the product's path (metadata listing, bulk body reads);
//! it sits behind a token bucket shared by every request, as Atlassian's per-tenant burst
//! limit is: `RATE` tokens a second, `BURST` at most, starting full. A request the bucket cannot
//! pay gets a 429 with `Retry-After` in whole seconds (the time until one token, rounded up, as
//! Atlassian sends it) and `X-RateLimit-*` headers, and is not charged. tag-space's real pipeline
//! (the keyword rules provider, so the LLM never binds; not a dry run: every page is read and
//! written) drives the real `ConfluenceClient` with its default site governor (concurrency 4).
//!
//! Reported: wall against the bucket's ideal (`(requests accepted − BURST) / RATE`), 429s, and
//! requests that arrived inside an announced window: strictly inside (any arrival after the
//! 429 was written and before its `Retry-After` ended), and after the first 100 ms of it
//! (requests already on their way when the 429 was written cannot have known of it).

#[path = "../tests/integration/livesite.rs"]
mod livesite;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tag_space::confluence::{ConfluenceAuth, ConfluenceSettings};
use tag_space::confluence::{ConfluenceClient, Flavor};
use tag_space::governor::{Chain, Governed, GovernorConfig};
use tag_space::llm::AnyProvider;
use tag_space::llm::rules::RulesProvider;
use tag_space::pipeline::{self, RunOptions, Status};
use tag_space::secret::Secret;
use tag_space::taxonomy::Taxonomy;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use livesite::LiveSite;

const IN_FLIGHT: Duration = Duration::from_millis(100);

#[derive(Default)]
struct Seen {
    level: f64,
    updated: Option<Instant>,
    accepted: u64,
    refused: u64,
    arrivals: Vec<Instant>,
    windows: Vec<(Instant, Instant)>,
}

struct Limited {
    site: LiveSite,
    rate: f64,
    burst: f64,
    seen: Arc<Mutex<Seen>>,
}

impl Respond for Limited {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let now = Instant::now();
        let mut s = self.seen.lock().unwrap();
        s.arrivals.push(now);
        let dt = s
            .updated
            .map_or(0.0, |u| now.duration_since(u).as_secs_f64());
        s.level = (s.level + dt * self.rate).min(self.burst);
        s.updated = Some(now);
        if s.level < 1.0 {
            let secs = ((1.0 - s.level) / self.rate).ceil().max(1.0);
            s.refused += 1;
            s.windows.push((now, now + Duration::from_secs_f64(secs)));
            return ResponseTemplate::new(429)
                .insert_header("Retry-After", format!("{secs}"))
                .insert_header("X-RateLimit-Limit", format!("{}", self.burst as u64))
                .insert_header("X-RateLimit-Remaining", "0")
                .set_body_raw(r#"{"message":"Rate limit exceeded."}"#, "application/json");
        }
        s.level -= 1.0;
        s.accepted += 1;
        drop(s);
        self.site.respond(req)
    }
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn one_run(pages: u64, rate: f64, burst: f64) {
    let seen = Arc::new(Mutex::new(Seen {
        level: burst,
        ..Seen::default()
    }));
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(Limited {
            site: LiveSite::new(livesite::Flavor::Cloud, pages, 250),
            rate,
            burst,
            seen: seen.clone(),
        })
        .mount(&server)
        .await;
    let source = ConfluenceClient::new(ConfluenceSettings {
        root: server.uri(),
        flavor: Flavor::Cloud,
        auth: ConfluenceAuth::Basic {
            email: "bench@acme.test".into(),
            token: Secret::new("bench-token"),
        },
        timeout: Duration::from_secs(30),
        max_retries: 5,
    })
    .expect("client");
    let tax = Arc::new(Taxonomy::embedded());
    let chain = Chain::new(vec![Governed::new(
        AnyProvider::Rules(RulesProvider::new(tax.clone())),
        GovernorConfig::default(),
    )]);
    let opts = RunOptions {
        space: "ENG".into(),
        batch_size: 5,
        max_batch_chars: 60_000,
        max_page_chars: 8000,
        max_in_flight: 12,
        ..RunOptions::default()
    };
    let (mut tagged, mut other) = (0u64, 0u64);
    let start = Instant::now();
    pipeline::run(&source, &chain, &tax, &opts, |o| {
        if o.status == Status::Tagged {
            tagged += 1;
        } else {
            other += 1;
        }
    })
    .await
    .expect("the listing finishes");
    let wall = start.elapsed();
    let s = seen.lock().unwrap();
    let ideal = (s.accepted as f64 - burst).max(0.0) / rate;
    let inside = |slack: Duration| {
        s.arrivals
            .iter()
            .filter(|&&t| s.windows.iter().any(|&(a, e)| t > a + slack && t < e))
            .count()
    };
    println!(
        "| {pages} | {rate:.0}/s, burst {burst:.0} | {tagged} | {other} | {} | {:.1} s | {ideal:.1} s | {:.2} | {} | {} | {} |",
        s.accepted,
        wall.as_secs_f64(),
        ideal / wall.as_secs_f64(),
        s.refused,
        inside(Duration::ZERO),
        inside(IN_FLIGHT),
    );
}

#[tokio::main]
async fn main() {
    let pages = env("CONFLUENCE_BENCH_PAGES", 300u64);
    let rate = env("CONFLUENCE_BENCH_RATE", 50.0f64);
    let burst = env("CONFLUENCE_BENCH_BURST", 20.0f64);
    let runs = env("CONFLUENCE_BENCH_RUNS", 3u32);
    println!(
        "| pages | bucket | tagged | not tagged | requests accepted | wall | bucket ideal | ideal / wall | 429s | inside a window | inside, after its first 100 ms |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for _ in 0..runs {
        one_run(pages, rate, burst).await;
    }
}
