//! Store overhead per page at 100k entries: `cargo bench --bench store` (release build).
//!
//! Fills a fresh file in a temp dir with 100,000 classifications and 100,000 finished pages
//! (each with one ledger label), then times each operation the pipeline makes per page or per
//! batch and prints mean, p50, p99 and max. Target: every per-page cost under 1 ms.
//! `STORE_BENCH_ENTRIES=N` changes the size.

use std::time::{Duration, Instant};

use tag_space::cache::{
    CacheKey, Classification, ContentHash, PageDone, RunMode, Setup, Store, StoreOptions, plan_add,
};

const SAMPLES: usize = 5_000;
const BATCH: usize = 5; // TAG_SPACE_BATCH_SIZE's default

fn main() {
    let entries: usize = std::env::var("STORE_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state.db");
    let setup = Setup::new("taxonomy-fingerprint", "p1", "gemini/gemini-2.5-flash");
    let key = |i: usize| {
        CacheKey::new(
            &setup,
            &format!("Page {i}"),
            &format!("text {i} ").repeat(40),
        )
    };
    let class = || {
        Classification::new(
            vec!["howto".into(), "kubernetes".into(), "team-platform".into()],
            "gemini",
            "gemini-2.5-flash",
            900,
            40,
        )
    };
    let labels = vec!["howto".to_string()];
    let done = |i: usize| PageDone {
        version: Some(i as u64),
        content_hash: ContentHash::of_page(&format!("Page {i}"), "body"),
        setup: setup.hash(),
    };

    // Fill: 100k classifications in batches of 100, 100k finished pages with one label each.
    let t = Instant::now();
    let store = Store::open(&path, StoreOptions::default()).expect("open");
    let run = store.begin_run("BENCH", RunMode::Add, false).expect("run");
    for chunk in (0..entries).collect::<Vec<_>>().chunks(100) {
        let batch: Vec<_> = chunk.iter().map(|&i| (key(i), class())).collect();
        store.store_batch(&run, &batch).expect("fill");
    }
    for i in 0..entries {
        let page = format!("{i}");
        let ledger = store.page_ledger("BENCH", &page).expect("ledger");
        let plan = plan_add(&[], &labels, &ledger);
        store.prepare_labels(&run, &page, &plan).expect("intent");
        store
            .finish_page(&run, &page, &done(i), &plan)
            .expect("done");
    }
    drop(store);
    println!(
        "filled {entries} classifications + {entries} ledger pages in {:.1?}; file {} MB",
        t.elapsed(),
        size(&path) / 1_000_000
    );

    // Reopen, as a new nightly run would: memory is cold.
    let store = Store::open(&path, StoreOptions::default()).expect("reopen");
    let run = store.begin_run("BENCH", RunMode::Add, false).expect("run");
    let mut rng = Lcg(0x9E37_79B9_7F4A_7C15);
    println!(
        "\n{:<44}{:>10}{:>10}{:>10}{:>10}",
        "operation (100k entries)", "mean", "p50", "p99", "max"
    );

    let mut r = Vec::new();
    r.push(time(
        "lookup hit, from the file (cold memory)",
        SAMPLES,
        || {
            let k = key(rng.below(entries));
            assert!(store.lookup(&k).unwrap().is_some());
        },
    ));
    // Warm a small working set (all in the 1000-entry LRU), then hit it.
    let hot: Vec<CacheKey> = (0..500).map(key).collect();
    for k in &hot {
        store.lookup(k).unwrap();
    }
    let mut n = 0;
    r.push(time("lookup hit, from memory (LRU)", SAMPLES, || {
        n += 1;
        assert!(store.lookup(&hot[n % hot.len()]).unwrap().is_some());
    }));
    let mut n = entries;
    r.push(time("lookup miss", SAMPLES, || {
        n += 1;
        assert!(store.lookup(&key(n)).unwrap().is_none());
    }));
    let mut n = 2 * entries;
    let per_batch = time(
        &format!("store_batch, {BATCH} new pages (one transaction)"),
        SAMPLES / BATCH,
        || {
            let batch: Vec<_> = (0..BATCH)
                .map(|_| {
                    n += 1;
                    (key(n), class())
                })
                .collect();
            store.store_batch(&run, &batch).unwrap();
        },
    );
    r.push(per_batch);
    r.push(time("page_ledger read (skip check)", SAMPLES, || {
        let page = format!("{}", rng.below(entries));
        assert!(store.page_ledger("BENCH", &page).unwrap().done.is_some());
    }));
    let mut n = 2 * entries;
    r.push(time(
        "ledger write: prepare_labels + finish_page",
        SAMPLES,
        || {
            n += 1;
            let page = format!("{n}");
            let ledger = store.page_ledger("BENCH", &page).unwrap();
            let plan = plan_add(&[], &labels, &ledger);
            store.prepare_labels(&run, &page, &plan).unwrap();
            store.finish_page(&run, &page, &done(n), &plan).unwrap();
        },
    ));
    store.finish_run(&run).unwrap();

    let worst_per_page = r
        .iter()
        .map(|(name, mean)| {
            if name.starts_with("store_batch") {
                *mean / BATCH as u32
            } else {
                *mean
            }
        })
        .max()
        .unwrap();
    println!(
        "\nworst mean per page: {worst_per_page:.1?} (target < 1 ms); file {} MB",
        size(&path) / 1_000_000
    );
}

/// Runs `f` `samples` times after a short warm-up, prints the line, returns (name, mean).
fn time(name: &str, samples: usize, mut f: impl FnMut()) -> (String, Duration) {
    for _ in 0..samples / 20 {
        f();
    }
    let mut d: Vec<Duration> = (0..samples)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    d.sort();
    let mean = d.iter().sum::<Duration>() / d.len() as u32;
    let pct = |p: f64| d[((d.len() as f64 * p) as usize).min(d.len() - 1)];
    println!(
        "{name:<44}{:>10}{:>10}{:>10}{:>10}",
        fmt(mean),
        fmt(pct(0.50)),
        fmt(pct(0.99)),
        fmt(*d.last().unwrap())
    );
    (name.to_string(), mean)
}

fn fmt(d: Duration) -> String {
    format!("{:.1}µs", d.as_secs_f64() * 1e6)
}

fn size(path: &std::path::Path) -> u64 {
    let wal = format!("{}-wal", path.display());
    [path.to_path_buf(), wal.into()]
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum()
}

/// A tiny deterministic generator: the benchmark needs spread-out keys, not good randomness.
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}
