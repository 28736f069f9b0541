//! Peak memory of a run over a large space: `cargo bench --bench memory [-- N ...]`.
//!
//! Serves a generated Confluence Cloud space of N pages (default 1k, 10k and 100k) from the
//! stateful Cloud fake of the ownership tests (`tests/integration/livesite.rs`) on 127.0.0.1,
//! which answers as Confluence does: the listing (250 a request) carries bodies only when
//! asked (`body-format=storage`), and bodies come in bulk (`GET /wiki/api/v2/pages?id=…`, up
//! to 250 ids). Runs the release binary over it under `/usr/bin/time -v` as a dry run with the
//! offline rules provider (no LLM configured, `--fallback rules`; no state file, as `HOME` is
//! cleared, so every body is read), and prints N, peak RSS, wall time and the requests and
//! bytes the fake served. Bodies are 5-20 KB of storage format (12.5 KB on average, as in
//! `benches/rerun.rs`); `MEMORY_BENCH_BODIES=small` makes them one line (~100 bytes).
//! `MEMORY_BENCH_ARGS="--report r.json"` adds flags to every run. Results are in
//! HARDENING.md. Needs GNU time (`apt-get install time`).

#[path = "../tests/integration/livesite.rs"]
mod livesite;

use std::process::Command;
use std::time::Instant;

use livesite::{Flavor, LiveSite};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer};

const BIN: &str = env!("CARGO_BIN_EXE_tag-space");

fn field<'a>(report: &'a str, name: &str) -> &'a str {
    report
        .lines()
        .find_map(|l| l.trim().strip_prefix(name))
        .map(str::trim)
        .unwrap_or("?")
}

/// Runs the binary over the site at `base` under GNU time: its stdout, stderr and wall time.
fn run_binary(base: &str, extra: &str) -> (String, String, f64) {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    // The server runs on the runtime's workers while this thread waits for the child.
    let out = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(BIN)
        .args([
            "--space",
            "ENG",
            "--dry-run",
            "--fallback",
            "rules",
            "--quiet",
        ])
        .args(extra.split_whitespace())
        .current_dir(dir.path())
        .env_clear()
        .env("NO_COLOR", "1")
        .env("CONFLUENCE_BASE_URL", base)
        .env("CONFLUENCE_EMAIL", "bot@acme.test")
        .env("CONFLUENCE_API_TOKEN", "bench-token")
        .output()
        .expect("run /usr/bin/time (apt-get install time)");
    let wall = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    (stdout, stderr, wall)
}

fn main() {
    let sizes: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1_000, 10_000, 100_000]
    } else {
        sizes
    };
    // More flags for every run, e.g. MEMORY_BENCH_ARGS="--report r.json".
    let extra = std::env::var("MEMORY_BENCH_ARGS").unwrap_or_default();
    let small = std::env::var("MEMORY_BENCH_BODIES").is_ok_and(|b| b == "small");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let bodies = if small { "~100 B" } else { "5-20 KB" };
    println!("bodies {bodies}; flags: {extra:?}");
    println!(
        "| pages | peak RSS (MiB) | wall (s) | requests | requests/s | downloaded (MB) | requests by kind |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---|");
    for pages in sizes {
        let site = LiveSite::new(Flavor::Cloud, pages, 250);
        let site = if small { site } else { site.sized() };
        let server = rt.block_on(async {
            let server = MockServer::builder()
                .disable_request_recording()
                .start()
                .await;
            Mock::given(any())
                .respond_with(site.clone())
                .mount(&server)
                .await;
            server
        });
        let (stdout, stderr, wall) = run_binary(&site.base_url(&server), &extra);
        // The table's first row: seen and tagged, with thousands separators.
        let row = format!("| {pages} | {pages} |");
        assert!(
            stdout
                .replace(',', "")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .contains(&row),
            "every one of the {pages} pages is seen and tagged: {stdout}"
        );
        let kb: f64 = field(&stderr, "Maximum resident set size (kbytes):")
            .parse()
            .unwrap_or(f64::NAN);
        let st = site.state();
        // The product's path: the listing without bodies, then every body in bulk.
        assert_eq!(
            st.requests("bodies"),
            pages.div_ceil(250),
            "bodies read in bulk, 250 a request"
        );
        let requests: u64 = st.requests.values().sum();
        let bytes: u64 = st.bytes.values().sum();
        let kinds: Vec<String> = st
            .requests
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!(
            "| {pages} | {:.1} | {wall:.1} | {requests} | {:.0} | {:.1} | {} |",
            kb / 1024.0,
            requests as f64 / wall,
            bytes as f64 / 1e6,
            kinds.join(", ")
        );
        drop(st);
        drop(server);
    }
}
