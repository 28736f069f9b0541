//! The label census against per-page label reads, in requests, on a 10,000-page space:
//! `cargo bench --bench census` (results in BENCHMARKS.md, "Label census").
//!
//! The site is the stateful fake of the ownership tests (`tests/integration/livesite.rs`),
//! Cloud- and Data-Center-shaped, on 127.0.0.1; the client is tag-space's own. tag-space owns
//! six labels spread as a nightly run would leave them: `type-howto` on every page,
//! `status-draft` on half, two tool tags on a quarter each, two topic tags on a tenth each.
//! The census asks, per owned label, which pages carry it ([`PageSource::pages_with_label`]);
//! the alternative reads every page's labels ([`PageSource::labels`]). Both are run in full
//! and their requests counted at the fake; wall times are for orientation only.

#[path = "../tests/integration/livesite.rs"]
mod livesite;

use std::time::{Duration, Instant};

use livesite::{Flavor, LiveSite};
use tag_space::confluence::{ConfluenceAuth, ConfluenceSettings};
use tag_space::confluence::{ConfluenceClient, Flavor as ClientFlavor, PageSource};
use tag_space::secret::Secret;

const PAGES: u64 = 10_000;

/// (label, every how many pages it is on).
const OWNED: &[(&str, u64)] = &[
    ("type-howto", 1),
    ("status-draft", 2),
    ("tool-jira", 4),
    ("tool-docker", 4),
    ("topic-deploy", 10),
    ("topic-ci", 10),
];

fn client(site: &LiveSite, server: &wiremock::MockServer) -> ConfluenceClient {
    let (flavor, auth) = match site.flavor {
        Flavor::Cloud => (
            ClientFlavor::Cloud,
            ConfluenceAuth::Basic {
                email: "bot@acme.test".into(),
                token: Secret::new("bench-token"),
            },
        ),
        Flavor::Dc => (
            ClientFlavor::DataCenter,
            ConfluenceAuth::Bearer(Secret::new("bench-pat")),
        ),
    };
    ConfluenceClient::new(ConfluenceSettings {
        root: site.base_url(server),
        flavor,
        auth,
        timeout: Duration::from_secs(30),
        max_retries: 0,
    })
    .expect("client")
}

fn requests(site: &LiveSite) -> u64 {
    site.state().requests.values().sum()
}

async fn measure(flavor: Flavor, per_request: u64) {
    let site = LiveSite::new(flavor, PAGES, per_request);
    for (label, every) in OWNED {
        for page in (1..=PAGES).filter(|p| p % every == 0) {
            site.person_adds(page, label);
        }
    }
    let server = site.serve().await;
    let c = client(&site, &server);

    let started = Instant::now();
    let mut pairs = 0;
    for (label, _) in OWNED {
        pairs += c
            .pages_with_label("ENG", label)
            .await
            .expect("census")
            .len();
    }
    let census_time = started.elapsed();
    let census = requests(&site);

    let started = Instant::now();
    let mut seen = 0;
    for page in 1..=PAGES {
        seen += c.labels(&page.to_string()).await.expect("labels").len();
    }
    let reads_time = started.elapsed();
    let reads = requests(&site) - census;
    assert_eq!(pairs, seen, "both ways see the same (page, label) pairs");
    println!(
        "{flavor:?} ({per_request} results/request): census {census} requests ({:.2} s) for {} labels on {pairs} (page, label) pairs; per-page reads {reads} requests ({:.2} s); {:.0}x fewer",
        census_time.as_secs_f64(),
        OWNED.len(),
        reads_time.as_secs_f64(),
        reads as f64 / census as f64
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        measure(Flavor::Cloud, 250).await;
        measure(Flavor::Dc, 250).await;
        // Data Center servers may cap `limit`; caps of 100 are reported.
        measure(Flavor::Dc, 100).await;
    });
}
