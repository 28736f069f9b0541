//! Incremental runs over a 500-page space: `cargo bench --bench incremental` (release build).
//!
//! The real pipeline and a real state file (temp dir) over an in-memory space that is read as
//! the product reads Confluence: the listing carries metadata only (ids, titles, versions),
//! costing `LIST_MS` per listing request of 250 pages (default 300 ms), and bodies come in
//! bulk, up to 250 a request, costing `BODY_MS` per request (default 300 ms); a counting
//! provider answers every page (`LLM_MS` per request, default 800 ms). Prints, per run: body
//! requests and the pages they read, LLM calls, pages asked, label writes, cache hits/misses,
//! pages skipped unchanged, and wall time next to the time of the metadata listing alone.
//!
//! Targets: the second run over the unchanged space reads no body and makes 0 LLM calls and 0
//! label writes, taking about as long as the listing; after 10 pages are edited, exactly those
//! 10 bodies are read and classified again. What a rerun downloads over HTTP is
//! `benches/rerun.rs`; the kill -9 target is `tests/integration/resume.rs`, which runs the
//! binary.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tag_space::cache::{RunCounters, RunMode, Setup, Store, StoreOptions};
use tag_space::confluence::{ConfluenceError, Label, MemorySource, Page, PageSource};
use tag_space::llm::{Answer, LlmError, PageText, Provider, RateLimitHints};
use tag_space::pipeline::{RunOptions, RunState, run};
use tag_space::taxonomy::Taxonomy;
use tokio::sync::mpsc;

const PAGES: usize = 500;
const EDITED: usize = 10;

fn env_ms(var: &str, default: u64) -> Duration {
    Duration::from_millis(
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

/// A `MemorySource` that costs what Confluence does: `list` per listing request of 250 pages
/// (with or without bodies), `body` per bulk body request (up to 250 ids, as Cloud's
/// `GET /pages?id=…`).
struct Slow {
    inner: MemorySource,
    list: Duration,
    body: Duration,
}

impl Slow {
    /// Passes the inner listing on, waiting `self.list` before each 250 pages.
    async fn paced(
        &self,
        key: &str,
        tx: mpsc::Sender<Page>,
        bodies: bool,
    ) -> Result<u64, ConfluenceError> {
        let (itx, mut irx) = mpsc::channel(PAGES + 1);
        let n = if bodies {
            self.inner.stream_pages(key, itx).await?
        } else {
            self.inner.stream_metadata(key, itx).await?
        };
        let mut sent = 0;
        while let Some(p) = irx.recv().await {
            if sent % 250 == 0 {
                tokio::time::sleep(self.list).await;
            }
            if tx.send(p).await.is_err() {
                break;
            }
            sent += 1;
        }
        Ok(n.min(sent))
    }
}

impl PageSource for Slow {
    async fn stream_pages(
        &self,
        key: &str,
        tx: mpsc::Sender<Page>,
    ) -> Result<u64, ConfluenceError> {
        self.paced(key, tx, true).await
    }
    // What the pipeline calls: ids, titles and versions, no bodies.
    async fn stream_metadata(
        &self,
        key: &str,
        tx: mpsc::Sender<Page>,
    ) -> Result<u64, ConfluenceError> {
        self.paced(key, tx, false).await
    }
    async fn bodies(&self, ids: &[String]) -> Result<HashMap<String, String>, ConfluenceError> {
        tokio::time::sleep(self.body).await;
        self.inner.bodies(ids).await
    }
    async fn labels(&self, id: &str) -> Result<Vec<Label>, ConfluenceError> {
        self.inner.labels(id).await
    }
    async fn pages_with_label(
        &self,
        key: &str,
        name: &str,
    ) -> Result<std::collections::HashSet<String>, ConfluenceError> {
        self.inner.pages_with_label(key, name).await
    }
    async fn add_labels(&self, id: &str, names: &[String]) -> Result<(), ConfluenceError> {
        self.inner.add_labels(id, names).await
    }
    async fn remove_label(&self, id: &str, name: &str) -> Result<(), ConfluenceError> {
        self.inner.remove_label(id, name).await
    }
}

/// Answers two taxonomy tags for every page after `delay`; counts calls and pages.
struct Counting {
    delay: Duration,
    tags: Vec<String>,
    calls: AtomicU64,
    pages: Mutex<Vec<String>>,
}

impl Provider for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }
    async fn classify(&self, batch: &[PageText]) -> Result<Answer, LlmError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.pages
            .lock()
            .unwrap()
            .extend(batch.iter().map(|p| p.id.clone()));
        tokio::time::sleep(self.delay).await;
        Ok(Answer {
            provider: "gemini",
            model: "bench".into(),
            labels: batch
                .iter()
                .map(|p| (p.id.clone(), self.tags.clone()))
                .collect::<BTreeMap<_, _>>(),
            usage: None,
            rate_limits: RateLimitHints::default(),
        })
    }
}

struct Measured {
    calls: u64,
    asked: Vec<String>,
    /// Bulk body requests, and the pages whose body they read (sorted).
    body_requests: usize,
    bodies: Vec<String>,
    writes: usize,
    counters: RunCounters,
    wall: Duration,
}

async fn one_run(db: &std::path::Path, source: &Slow, tax: &Taxonomy, llm: Duration) -> Measured {
    let tags: Vec<String> = tax.tag_names().take(2).map(String::from).collect();
    let provider = Counting {
        delay: llm,
        tags,
        calls: AtomicU64::new(0),
        pages: Mutex::new(Vec::new()),
    };
    let writes_before = source.inner.writes().len();
    let body_requests_before = source.inner.body_requests().len();
    let started = Instant::now();
    // As the binary does it: open the file, begin, run, finish.
    let store = Arc::new(Store::open(db, StoreOptions::default()).expect("open the state file"));
    let state = RunState {
        run: store.begin_run("BENCH", RunMode::Add, false).unwrap(),
        store: store.clone(),
        setup: Setup::new(
            tax.fingerprint(),
            tag_space::llm::prompt::PROMPT_VERSION,
            "gemini/bench",
        ),
    };
    let opts = RunOptions {
        space: "BENCH".into(),
        batch_size: 5,
        max_batch_chars: 60_000,
        max_page_chars: 8000,
        max_in_flight: 12,
        state: Some(state.clone()),
        ..RunOptions::default()
    };
    let mut failed = 0;
    run(source, &provider, tax, &opts, |o| {
        if o.status == tag_space::pipeline::Status::Failed {
            failed += 1;
        }
    })
    .await
    .expect("the run");
    assert_eq!(failed, 0);
    let counters = store.finish_run(&state.run).unwrap();
    drop(store);
    let wall = started.elapsed();
    let mut asked = provider.pages.into_inner().unwrap();
    asked.sort_by_key(|id| id.parse::<u64>().unwrap_or(0));
    let body_requests = source.inner.body_requests()[body_requests_before..].to_vec();
    let mut bodies: Vec<String> = body_requests.iter().flatten().cloned().collect();
    bodies.sort_by_key(|id| id.parse::<u64>().unwrap_or(0));
    Measured {
        calls: provider.calls.load(Ordering::Relaxed),
        asked,
        body_requests: body_requests.len(),
        bodies,
        writes: source.inner.writes().len() - writes_before,
        counters,
        wall,
    }
}

async fn listing_alone(source: &Slow) -> Duration {
    let started = Instant::now();
    let (tx, mut rx) = mpsc::channel(64);
    let drain = async { while rx.recv().await.is_some() {} };
    let (n, ()) = tokio::join!(source.stream_metadata("BENCH", tx), drain);
    assert_eq!(n.unwrap(), PAGES as u64);
    started.elapsed()
}

fn print(name: &str, m: &Measured, listing: Duration) {
    let c = &m.counters;
    println!(
        "{name:<28} body requests {:>2} ({:>3} pages)  llm calls {:>3}  pages asked {:>3}  label writes {:>3}  hits {:>3}  misses {:>3}  unchanged {:>3}  wall {:>8.1} ms  (listing alone {:.1} ms)",
        m.body_requests,
        m.bodies.len(),
        m.calls,
        m.asked.len(),
        m.writes,
        c.hits,
        c.misses,
        c.skipped_unchanged,
        m.wall.as_secs_f64() * 1e3,
        listing.as_secs_f64() * 1e3
    );
}

fn main() {
    let list = env_ms("LIST_MS", 300);
    let body = env_ms("BODY_MS", 300);
    let llm = env_ms("LLM_MS", 800);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let tax = Taxonomy::embedded();
        let pages = (1..=PAGES)
            .map(|i| Page {
                id: i.to_string(),
                title: format!("Runbook {i}: restart the billing service"),
                version: Some(1),
                body: Some(format!(
                    "<h2>Steps</h2><p>Page {i}. Open the Jira ticket, check the dashboard, restart the service, then confirm on the status page.</p>"
                )
                .repeat(8)),
                labels: None,
                url: None,
            })
            .collect();
        let source = Slow {
            inner: MemorySource::new("BENCH", pages),
            list,
            body,
        };
        println!(
            "{PAGES} pages, listing {} ms per 250 pages (metadata), bodies {} ms per request of up to 250, LLM {} ms per request of 5 pages",
            list.as_millis(),
            body.as_millis(),
            llm.as_millis()
        );
        let listing = listing_alone(&source).await;

        let first = one_run(&db, &source, &tax, llm).await;
        print("run 1 (empty state file)", &first, listing);
        assert_eq!(first.asked.len(), PAGES);
        assert_eq!(first.bodies.len(), PAGES, "run 1 reads every body");

        let second = one_run(&db, &source, &tax, llm).await;
        print("run 2 (unchanged)", &second, listing);
        assert_eq!((second.calls, second.writes), (0, 0), "target: 0 calls, 0 writes");
        assert_eq!(second.counters.skipped_unchanged, PAGES as u64);
        assert_eq!(second.body_requests, 0, "target: an unchanged space reads no body");

        let edited: Vec<String> = (1..=EDITED).map(|k| (k * 47).to_string()).collect();
        for id in &edited {
            source
                .inner
                .edit_page(id, &format!("<p>Postmortem of the outage on page {id}.</p>"));
        }
        let third = one_run(&db, &source, &tax, llm).await;
        print("run 3 (10 pages edited)", &third, listing);
        let mut want = edited.clone();
        want.sort_by_key(|id| id.parse::<u64>().unwrap_or(0));
        assert_eq!(third.asked, want, "target: exactly the edited pages");
        assert_eq!(third.bodies, want, "target: only the edited pages' bodies are read");
        println!("run 3 asked for pages {:?}", third.asked);
    });
}
