//! The state file end to end: real SQLite files in temp dirs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tag_space::cache::{
    CacheError, CacheKey, Classification, ContentHash, LabelStatus, PageDone, RunMode,
    SCHEMA_VERSION, Setup, Store, StoreOptions, is_unchanged, plan_add, plan_sync,
};

fn setup() -> Setup {
    Setup::new("tax-fp-1", "p1", "gemini/gemini-2.5-flash")
}

fn key(i: usize) -> CacheKey {
    CacheKey::new(&setup(), &format!("Page {i}"), &format!("text of page {i}"))
}

fn class(labels: &[&str]) -> Classification {
    Classification::new(
        labels.iter().map(|s| s.to_string()).collect(),
        "gemini",
        "gemini-2.5-flash",
        120,
        8,
    )
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn opts(memory_entries: usize, read: bool) -> StoreOptions {
    StoreOptions {
        memory_entries,
        read,
        ..StoreOptions::default()
    }
}

fn db(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("state.db")
}

fn open(path: &Path) -> Store {
    Store::open(path, StoreOptions::default()).expect("open the store")
}

#[test]
fn a_stored_classification_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    {
        let store = open(&path);
        let run = store.begin_run("ENG", RunMode::Add, false).unwrap();
        store
            .store_batch(&run, &[(key(1), class(&["howto"]))])
            .unwrap();
        store.finish_run(&run).unwrap();
    }
    let store = open(&path);
    let got = store
        .lookup(&key(1))
        .unwrap()
        .expect("a hit after reopening");
    assert_eq!(got.labels, s(&["howto"]));
    assert_eq!(
        (got.provider.as_str(), got.input_tokens, got.output_tokens),
        ("gemini", 120, 8)
    );
    assert!(store.lookup(&key(2)).unwrap().is_none());
    let c = store.counters();
    assert_eq!((c.hits, c.memory_hits, c.misses), (1, 0, 1));
}

#[test]
fn the_lru_holds_its_capacity_counts_evictions_and_answers_before_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let store = Store::open(&path, opts(2, true)).unwrap();
    let run = store.begin_run("ENG", RunMode::Add, false).unwrap();
    let batch: Vec<_> = (1..=3).map(|i| (key(i), class(&["howto"]))).collect();
    store.store_batch(&run, &batch).unwrap();
    assert_eq!(store.counters().evictions, 1, "3 entries into 2 slots");

    // Delete every row behind the store's back: what is still found came from memory.
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute("DELETE FROM classifications", []).unwrap();
    assert!(
        store.lookup(&key(2)).unwrap().is_some(),
        "key 2 is in memory"
    );
    assert!(
        store.lookup(&key(3)).unwrap().is_some(),
        "key 3 is in memory"
    );
    assert!(
        store.lookup(&key(1)).unwrap().is_none(),
        "key 1 was evicted"
    );
    let c = store.counters();
    assert_eq!((c.hits, c.memory_hits, c.misses), (2, 2, 1));
}

#[test]
fn a_file_hit_is_kept_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let store = Store::open(&path, opts(1, true)).unwrap();
    let run = store.begin_run("ENG", RunMode::Add, false).unwrap();
    store
        .store_batch(&run, &[(key(1), class(&["a"])), (key(2), class(&["b"]))])
        .unwrap();
    assert!(store.lookup(&key(1)).unwrap().is_some()); // from the file; evicts key 2
    assert!(store.lookup(&key(1)).unwrap().is_some()); // from memory
    let c = store.counters();
    assert_eq!((c.hits, c.memory_hits, c.evictions), (2, 1, 2));
}

#[test]
fn with_reads_disabled_lookups_miss_but_results_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    {
        let store = Store::open(&path, opts(10, false)).unwrap();
        let run = store.begin_run("ENG", RunMode::Add, false).unwrap();
        store
            .store_batch(&run, &[(key(1), class(&["howto"]))])
            .unwrap();
        assert!(
            store.lookup(&key(1)).unwrap().is_none(),
            "--no-cache must miss"
        );
        assert_eq!(store.counters().misses, 1);
    }
    let store = open(&path);
    assert!(
        store.lookup(&key(1)).unwrap().is_some(),
        "but the result was stored"
    );
}

#[test]
fn a_new_taxonomy_or_model_misses_what_the_old_one_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&db(&dir));
    let run = store.begin_run("ENG", RunMode::Add, false).unwrap();
    store
        .store_batch(&run, &[(key(1), class(&["howto"]))])
        .unwrap();
    for other in [
        Setup::new("tax-fp-2", "p1", "gemini/gemini-2.5-flash"),
        Setup::new("tax-fp-1", "p1", "gemini/gemini-2.5-pro"),
        Setup::new("tax-fp-1", "p2", "gemini/gemini-2.5-flash"),
    ] {
        let k = CacheKey::new(&other, "Page 1", "text of page 1");
        assert!(store.lookup(&k).unwrap().is_none(), "{other:?} hit");
    }
    assert!(store.lookup(&key(1)).unwrap().is_some());
}

#[test]
fn an_empty_file_is_migrated_to_the_current_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    std::fs::write(&path, b"").unwrap();
    drop(open(&path));
    let conn = rusqlite::Connection::open(&path).unwrap();
    let v: u32 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, SCHEMA_VERSION);
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    // Opening again is a no-op migration.
    drop(open(&path));
}

#[test]
fn a_folder_that_does_not_exist_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/state.db");
    drop(open(&path));
    assert!(path.is_file());
}

#[test]
fn a_newer_schema_is_refused_and_the_file_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE future (x); PRAGMA user_version = 99;")
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = Store::open(&path, StoreOptions::default()).unwrap_err();
    assert!(
        matches!(err, CacheError::TooNew { found: 99, supported, .. } if supported == SCHEMA_VERSION),
        "{err:?}"
    );
    let msg = err.to_string();
    for needle in [
        path.to_str().unwrap(),
        "99",
        "upgrade tag-space",
        "TAG_SPACE_CACHE_PATH",
    ] {
        assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
    }
    assert!(msg.contains(&format!("up to {SCHEMA_VERSION}")), "{msg}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the file was changed"
    );
}

#[test]
fn a_garbage_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    std::fs::write(&path, vec![0xA5u8; 8192]).unwrap();
    let err = Store::open(&path, StoreOptions::default()).unwrap_err();
    assert!(matches!(err, CacheError::Corrupt { .. }), "{err:?}");
    let msg = err.to_string();
    for needle in [path.to_str().unwrap(), "--no-cache", "TAG_SPACE_CACHE_PATH"] {
        assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
    }
    assert_eq!(std::fs::read(&path).unwrap(), vec![0xA5u8; 8192]);
}

#[test]
fn a_damaged_store_is_a_clear_error_when_the_damage_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    {
        let store = open(&path);
        let run = store.begin_run("ENG", RunMode::Add, false).unwrap();
        let batch: Vec<_> = (0..2000).map(|i| (key(i), class(&["howto"]))).collect();
        store.store_batch(&run, &batch).unwrap();
    } // the last connection to close checkpoints the log into the file
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 16 * 4096, "the store is too small to damage");
    // Keep the header page, garble the rest (the tables' b-trees).
    for b in &mut bytes[4096..] {
        *b = 0x5A;
    }
    std::fs::write(&path, &bytes).unwrap();
    let err = match Store::open(&path, StoreOptions::default()) {
        Err(e) => e,
        Ok(store) => store
            .lookup(&key(1))
            .expect_err("a damaged table read fine"),
    };
    assert!(matches!(err, CacheError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains(path.to_str().unwrap()));
}

#[test]
fn another_programs_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE contacts (name TEXT);")
        .unwrap();
    let err = Store::open(&path, StoreOptions::default()).unwrap_err();
    assert!(matches!(err, CacheError::NotOurs { .. }), "{err:?}");
    assert!(err.to_string().contains(path.to_str().unwrap()));
}

#[test]
fn an_unwritable_path_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    // The parent is a regular file: no folder can be made there (even as root).
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let path = file.join("state.db");
    let err = Store::open(&path, StoreOptions::default()).unwrap_err();
    assert!(matches!(err, CacheError::Unwritable { .. }), "{err:?}");
    let msg = err.to_string();
    for needle in [path.to_str().unwrap(), "--no-cache", "TAG_SPACE_CACHE_PATH"] {
        assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
    }
    // The path is a folder.
    let err = Store::open(dir.path(), StoreOptions::default()).unwrap_err();
    assert!(matches!(err, CacheError::Unwritable { .. }), "{err:?}");
}

#[test]
fn a_second_process_waits_for_the_lock_then_reports_busy() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let with_timeout = |busy_timeout| {
        Store::open(
            &path,
            StoreOptions {
                busy_timeout,
                ..StoreOptions::default()
            },
        )
        .unwrap()
    };
    // Patient enough that a holder starved of CPU still releases in time.
    let patient = with_timeout(Duration::from_secs(60));
    let impatient = with_timeout(Duration::from_millis(300));
    let run = patient.begin_run("ENG", RunMode::Add, false).unwrap();
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();

    // Released within the timeout: the write waits and succeeds. The lock is held from
    // before `t` until at least 100 ms after it, so the write cannot end sooner.
    let t = std::time::Instant::now();
    let holder = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        other.execute_batch("COMMIT").unwrap();
        other
    });
    patient
        .store_batch(&run, &[(key(1), class(&["a"]))])
        .unwrap();
    assert!(t.elapsed() >= Duration::from_millis(100), "it did not wait");
    let other = holder.join().unwrap();

    // Held past the timeout: a clear error.
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let err = impatient
        .store_batch(&run, &[(key(2), class(&["a"]))])
        .unwrap_err();
    assert!(matches!(err, CacheError::Busy { .. }), "{err:?}");
    assert!(err.to_string().contains(path.to_str().unwrap()));
    other.execute_batch("ROLLBACK").unwrap();
}

/// One page through the ledger as the pipeline would drive it (add-only unless `sync`).
fn apply(
    store: &Store,
    run: &tag_space::cache::Run,
    page: &str,
    version: u64,
    current: &mut Vec<String>,
    chosen: &[&str],
) -> tag_space::cache::LabelPlan {
    let ledger = store.page_ledger(&run.space, page).unwrap();
    let chosen = s(chosen);
    let plan = match run.mode {
        RunMode::Add => plan_add(current, &chosen, &ledger),
        RunMode::Sync => plan_sync(current, &chosen, &ledger),
    };
    store.prepare_labels(run, page, &plan).unwrap();
    // "Confluence" confirms.
    current.extend(plan.add.iter().cloned());
    current.retain(|l| !plan.remove.contains(l));
    let done = PageDone {
        version: Some(version),
        content_hash: ContentHash::of_page(page, "body"),
        setup: setup().hash(),
    };
    store.finish_page(run, page, &done, &plan).unwrap();
    plan
}

#[test]
fn the_ledger_attributes_only_tag_space_labels_and_sync_removes_only_those() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&db(&dir));
    // A person put "runbook" (a taxonomy tag) on the page before tag-space ever ran.
    let mut labels = s(&["runbook"]);
    let run = store.begin_run("ENG", RunMode::Add, false).unwrap();
    let plan = apply(&store, &run, "p1", 1, &mut labels, &["howto", "runbook"]);
    assert_eq!(plan.add, s(&["howto"]));
    let ledger = store.page_ledger("ENG", "p1").unwrap();
    assert_eq!(
        ledger.labels.into_iter().collect::<Vec<_>>(),
        vec![("howto".to_string(), LabelStatus::Added)]
    );

    // The page changed; now neither tag applies.
    let run = store.begin_run("ENG", RunMode::Add, false).unwrap();
    let plan = apply(&store, &run, "p1", 2, &mut labels, &["faq"]);
    assert!(plan.remove.is_empty(), "add-only removed {:?}", plan.remove);
    let run = store.begin_run("ENG", RunMode::Sync, false).unwrap();
    let plan = apply(&store, &run, "p1", 3, &mut labels, &["faq"]);
    assert_eq!(plan.remove, s(&["howto"]), "tag-space's own label goes");
    assert!(
        labels.contains(&"runbook".to_string()),
        "the person's label stays"
    );
    assert_eq!(
        store.page_ledger("ENG", "p1").unwrap().labels.get("howto"),
        None
    );
}

#[test]
fn a_kill_between_the_write_and_its_confirmation_repeats_no_write_and_claims_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let chosen = s(&["howto"]);
    {
        let store = open(&path);
        let run = store.begin_run("ENG", RunMode::Add, false).unwrap();
        let plan = plan_add(&[], &chosen, &store.page_ledger("ENG", "p1").unwrap());
        store.prepare_labels(&run, "p1", &plan).unwrap();
        // Confluence wrote "howto" to p1 (or a person added it) ... and the process died
        // before finish_page.
        let plan = plan_add(&[], &chosen, &store.page_ledger("ENG", "p2").unwrap());
        store.prepare_labels(&run, "p2", &plan).unwrap();
        // ... p2's write may or may not have landed; the label is not there now.
    }
    let store = open(&path);
    let run = store.begin_run("ENG", RunMode::Sync, false).unwrap();
    let p1 = store.page_ledger("ENG", "p1").unwrap();
    assert_eq!(p1.labels.get("howto"), Some(&LabelStatus::Adding));
    let hash = ContentHash::of_page("p1", "body");
    assert!(!is_unchanged(&p1, Some(1), &hash, &setup().hash(), None));

    // Present: not written twice, and not claimed (a person may have added it), so even a
    // --sync that no longer chooses it leaves it.
    let plan = plan_sync(&s(&["howto"]), &[], &p1);
    assert!(plan.is_noop(), "{plan:?}");
    let done = PageDone {
        version: Some(1),
        content_hash: hash,
        setup: setup().hash(),
    };
    store.finish_page(&run, "p1", &done, &plan).unwrap();
    assert_eq!(
        store.page_ledger("ENG", "p1").unwrap().labels.get("howto"),
        Some(&LabelStatus::Dismissed),
        "not attributed to tag-space"
    );

    // Absent: a person may have removed what landed; not put back.
    let p2 = store.page_ledger("ENG", "p2").unwrap();
    let plan = plan_add(&[], &chosen, &p2);
    assert!(plan.add.is_empty(), "put back: {:?}", plan.add);
}

#[test]
fn a_dry_run_writes_nothing_to_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&db(&dir));
    let run = store.begin_run("ENG", RunMode::Add, true).unwrap();
    let mut labels = Vec::new();
    apply(&store, &run, "p1", 1, &mut labels, &["howto"]);
    let ledger = store.page_ledger("ENG", "p1").unwrap();
    assert!(
        ledger.done.is_none() && ledger.labels.is_empty(),
        "{ledger:?}"
    );
}

#[test]
fn an_interrupted_run_leaves_exactly_the_unfinished_half_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let pages: Vec<String> = (0..100).map(|i| format!("{i}")).collect();
    let finished = |i: usize| i % 2 == 0; // any half, not a prefix
    {
        let store = open(&path);
        let run = store.begin_run("ENG", RunMode::Add, false).unwrap();
        for (i, p) in pages.iter().enumerate().filter(|(i, _)| finished(*i)) {
            let mut labels = Vec::new();
            apply(&store, &run, p, i as u64, &mut labels, &["howto"]);
        }
        // No finish_run: the process is gone.
    }
    let store = open(&path);
    let setup_hash = setup().hash();
    let todo: Vec<usize> = (0..pages.len())
        .filter(|&i| {
            let ledger = store.page_ledger("ENG", &pages[i]).unwrap();
            let hash = ContentHash::of_page(&pages[i], "body");
            !is_unchanged(
                &ledger,
                Some(i as u64),
                &hash,
                &setup_hash,
                Some(&s(&["howto"])),
            )
        })
        .collect();
    let expected: Vec<usize> = (0..pages.len()).filter(|&i| !finished(i)).collect();
    assert_eq!(todo, expected);

    let stats = store.stats(5).unwrap();
    let run = &stats.spaces[0].runs[0];
    assert_eq!(run.finished_at, None, "the run shows as interrupted");
}

#[test]
fn stats_show_entries_size_and_the_last_runs_per_space() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&db(&dir));
    for (space, n) in [("ENG", 3), ("OPS", 1)] {
        let run = store.begin_run(space, RunMode::Add, false).unwrap();
        let batch: Vec<_> = (0..n)
            .map(|i| {
                (
                    CacheKey::new(&setup(), space, &format!("{i}")),
                    class(&["x"]),
                )
            })
            .collect();
        store.store_batch(&run, &batch).unwrap();
        store.lookup(&batch[0].0).unwrap();
        store.lookup(&key(999)).unwrap();
        store.count_calls(1);
        store.count_skipped();
        store.finish_run(&run).unwrap();
    }
    let run = store.begin_run("ENG", RunMode::Sync, false).unwrap();
    store.finish_run(&run).unwrap();

    let stats = store.stats(1).unwrap();
    assert_eq!(stats.entries, 4);
    assert!(stats.file_bytes > 0);
    assert_eq!(stats.schema_version, SCHEMA_VERSION);
    let spaces: Vec<_> = stats
        .spaces
        .iter()
        .map(|s| (s.space.as_str(), s.entries))
        .collect();
    assert_eq!(spaces, vec![("ENG", 3), ("OPS", 1)]);
    let eng = &stats.spaces[0];
    assert_eq!(eng.runs.len(), 1, "only the last run was asked for");
    assert_eq!(eng.runs[0].mode, RunMode::Sync);

    let stats = store.stats(10).unwrap();
    let eng_first = stats.spaces[0].runs.last().unwrap();
    let c = eng_first.counters;
    assert_eq!(
        (c.hits, c.misses, c.calls, c.skipped_unchanged),
        (1, 1, 1, 1)
    );
    assert_eq!(c.hit_rate(), Some(0.5));
    assert!(eng_first.finished_at.is_some());
}

#[test]
fn clear_forgets_one_space_or_all_but_keeps_label_attribution() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&db(&dir));
    let mut keys = Vec::new();
    for space in ["ENG", "OPS"] {
        let run = store.begin_run(space, RunMode::Add, false).unwrap();
        let k = CacheKey::new(&setup(), space, "text");
        store.store_batch(&run, &[(k, class(&["howto"]))]).unwrap();
        keys.push(k);
        let mut labels = Vec::new();
        apply(&store, &run, "p1", 1, &mut labels, &["howto"]);
        store.finish_run(&run).unwrap();
    }

    let cleared = store.clear(Some("ENG")).unwrap();
    assert_eq!((cleared.entries, cleared.pages, cleared.runs), (1, 1, 1));
    assert!(
        store.lookup(&keys[0]).unwrap().is_none(),
        "ENG's entry survived"
    );
    assert!(
        store.lookup(&keys[1]).unwrap().is_some(),
        "OPS's entry was cleared"
    );
    let eng = store.page_ledger("ENG", "p1").unwrap();
    assert!(eng.done.is_none(), "ENG's page is to be done again");
    assert_eq!(eng.labels.get("howto"), Some(&LabelStatus::Added));
    assert!(store.page_ledger("OPS", "p1").unwrap().done.is_some());

    let cleared = store.clear(None).unwrap();
    assert_eq!((cleared.entries, cleared.pages, cleared.runs), (1, 1, 1));
    assert!(store.lookup(&keys[1]).unwrap().is_none());
    let stats = store.stats(5).unwrap();
    assert_eq!(stats.entries, 0);
    assert!(
        stats
            .spaces
            .iter()
            .all(|s| s.runs.is_empty() && s.pages_done == 0)
    );
    assert_eq!(
        store.page_ledger("OPS", "p1").unwrap().labels.get("howto"),
        Some(&LabelStatus::Added)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tasks_share_one_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&db(&dir)));
    let run = store.begin_run("ENG", RunMode::Add, false).unwrap();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let (store, run) = (store.clone(), run.clone());
        tasks.push(tokio::spawn(async move {
            for b in 0..10 {
                let batch: Vec<_> = (0..5)
                    .map(|i| (key(t * 1000 + b * 10 + i), class(&["a"])))
                    .collect();
                store.store_batch(&run, &batch).unwrap();
                tokio::task::yield_now().await;
                assert!(store.lookup(&batch[0].0).unwrap().is_some());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(store.stats(1).unwrap().entries, 400);
}

// ---- label removal (only --sync calls it) ---------------------------------------------------

mod remove_label {
    use tag_space::confluence::{ConfluenceAuth, ConfluenceSettings};
    use tag_space::confluence::{ConfluenceClient, Flavor, Label, MemorySource, Page, PageSource};
    use tag_space::secret::Secret;
    use wiremock::matchers::{header, method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn client(root: String, flavor: Flavor) -> ConfluenceClient {
        let auth = match flavor {
            Flavor::Cloud => ConfluenceAuth::Basic {
                email: "bot@acme.example".into(),
                token: Secret::new("tok"),
            },
            Flavor::DataCenter => ConfluenceAuth::Bearer(Secret::new("pat")),
        };
        ConfluenceClient::new(ConfluenceSettings {
            root,
            flavor,
            auth,
            timeout: std::time::Duration::from_secs(5),
            max_retries: 0,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn cloud_deletes_by_name_through_v1() {
        let server = MockServer::start().await;
        Mock::given(method("DELETE"))
            .and(path("/wiki/rest/api/content/42/label"))
            .and(query_param("name", "team/ops"))
            .and(header(
                "authorization",
                "Basic Ym90QGFjbWUuZXhhbXBsZTp0b2s=",
            ))
            .respond_with(ResponseTemplate::new(204))
            .expect(1)
            .mount(&server)
            .await;
        let c = client(server.uri(), Flavor::Cloud);
        c.remove_label("42", "team/ops").await.unwrap();
    }

    #[tokio::test]
    async fn datacenter_deletes_by_name_under_its_context_path() {
        let server = MockServer::start().await;
        Mock::given(method("DELETE"))
            .and(path("/confluence/rest/api/content/42/label"))
            .and(query_param("name", "type-howto"))
            .and(header("authorization", "Bearer pat"))
            .respond_with(ResponseTemplate::new(204))
            .expect(1)
            .mount(&server)
            .await;
        let c = client(format!("{}/confluence", server.uri()), Flavor::DataCenter);
        c.remove_label("42", "type-howto").await.unwrap();
    }

    #[tokio::test]
    async fn a_label_already_gone_is_fine_and_a_forbidden_removal_is_an_error() {
        let server = MockServer::start().await;
        Mock::given(method("DELETE"))
            .and(query_param("name", "gone"))
            .respond_with(ResponseTemplate::new(404))
            .mount(&server)
            .await;
        Mock::given(method("DELETE"))
            .and(query_param("name", "locked"))
            .respond_with(ResponseTemplate::new(403))
            .mount(&server)
            .await;
        let c = client(server.uri(), Flavor::Cloud);
        c.remove_label("42", "gone").await.unwrap();
        let e = c
            .remove_label("42", "locked")
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("403"), "{e}");
    }

    #[tokio::test]
    async fn the_memory_source_removes_only_that_global_label() {
        let page = Page {
            id: "1".into(),
            title: "t".into(),
            version: Some(1),
            body: Some("<p>x</p>".into()),
            labels: Some(vec![
                Label::global("a"),
                Label::global("b"),
                Label {
                    prefix: "my".into(),
                    name: "a".into(),
                },
            ]),
            url: None,
        };
        let s = MemorySource::new("ENG", vec![page]);
        s.remove_label("1", "a").await.unwrap();
        assert_eq!(
            s.current_labels("1"),
            [
                Label::global("b"),
                Label {
                    prefix: "my".into(),
                    name: "a".into()
                }
            ]
        );
        assert_eq!(s.removals(), [("1".to_string(), "a".to_string())]);
        assert!(s.remove_label("nope", "a").await.is_err());
    }
}
