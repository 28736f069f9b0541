//! Peak memory of a run over a large space: `cargo bench --bench memory [-- N ...]`.
//!
//! Serves a generated Confluence Cloud space of N pages (default 1k, 10k and 100k; 250 per
//! listing page, small bodies) from a fake on 127.0.0.1, runs the release binary over it
//! under `/usr/bin/time -v` as a dry run with the offline rules provider (no LLM configured,
//! `--fallback rules`), and prints N, peak RSS and wall time. Results are in HARDENING.md.
//! `MEMORY_BENCH_ARGS="--report r.json"` adds flags to every run. Needs GNU time (`apt-get install time`).

#[path = "../tests/integration/fakesite.rs"]
mod fakesite;

use std::process::Command;
use std::time::Instant;

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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("| pages | peak RSS (MiB) | wall (s) | requests/s |");
    println!("|---:|---:|---:|---:|");
    for pages in sizes {
        let server = rt.block_on(async {
            let server = MockServer::builder()
                .disable_request_recording()
                .start()
                .await;
            Mock::given(any())
                .respond_with(fakesite::CloudSite {
                    pages,
                    per_page: 250,
                })
                .mount(&server)
                .await;
            server
        });
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
            .env("CONFLUENCE_BASE_URL", format!("{}/wiki", server.uri()))
            .env("CONFLUENCE_EMAIL", "bot@acme.test")
            .env("CONFLUENCE_API_TOKEN", "bench-token")
            .output()
            .expect("run /usr/bin/time (apt-get install time)");
        let wall = started.elapsed().as_secs_f64();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "exit {:?}\nstdout: {stdout}\nstderr: {stderr}",
            out.status
        );
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
        // One listing request per 250 pages and one label read per page.
        let requests = pages + pages.div_ceil(250) + 1;
        println!(
            "| {pages} | {:.1} | {wall:.1} | {:.0} |",
            kb / 1024.0,
            requests as f64 / wall
        );
        drop(server);
    }
}
