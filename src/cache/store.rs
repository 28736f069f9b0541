//! [`Store`]: the state file plus the in-memory LRU in front of it.
//!
//! One SQLite connection behind a `std::sync::Mutex`, called straight from async code. Every
//! operation is a few short statements on indexed keys. `benches/store.rs` at 100k entries
//! (BENCHMARKS.md, "Store"): a memory hit 0.2 µs, a file lookup 13–30 µs, a ledger read
//! 25–37 µs, a ledger write 130 µs and a 5-page batch write 430–560 µs (about 100 µs a page),
//! all means, all far under the 1 ms per page target and under the time a tokio task may
//! reasonably hold a worker. `spawn_blocking` (a thread hop per call) or a dedicated thread
//! with a channel would add cost and code for that. The rare slow commit (an fsync, p99 of
//! writes about 4–8 ms when writing back to back) is kept off the common path by the
//! background checkpointer (`checkpoint.rs`). The lock is never held across an `.await`.
//! The one case that blocks longer is another process holding the write lock: the call then
//! waits up to the busy timeout (default 5 s) instead of failing, which is what a second,
//! overlapping cron run should do.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lru::LruCache;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::CacheSettings;
use super::checkpoint::Checkpointer;
use super::decide::{LabelPlan, LabelStatus, PageDone, PageLedger};
use super::key::{CacheKey, ContentHash, SetupHash};
use super::{CacheError, schema};

/// How to open the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Classifications kept in memory in front of the file (`TAG_SPACE_CACHE_SIZE`).
    pub memory_entries: usize,
    /// `false` for `--no-cache`: every lookup misses, but results are still stored, so the
    /// next run benefits. (If the file cannot be opened and reads are off anyway, the caller
    /// can go on without a store, as the error messages promise.)
    pub read: bool,
    /// How long to wait for another process's write lock before failing.
    pub busy_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            memory_entries: 1000,
            read: true,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

impl StoreOptions {
    pub fn from_settings(settings: &CacheSettings) -> Self {
        Self {
            memory_entries: settings.size,
            read: settings.enabled,
            ..Self::default()
        }
    }
}

/// Where the state file goes when `TAG_SPACE_CACHE_PATH` is not set:
/// `$XDG_CACHE_HOME/tag-space/state.db`, else `$HOME/.cache/tag-space/state.db`. The caller
/// passes the two variables (only `config` reads the environment). A relative
/// `XDG_CACHE_HOME` is ignored, as the XDG spec says.
pub fn default_path(xdg_cache_home: Option<&Path>, home: Option<&Path>) -> Option<PathBuf> {
    let base = match xdg_cache_home.filter(|p| p.is_absolute()) {
        Some(xdg) => xdg.to_path_buf(),
        None => home.filter(|p| !p.as_os_str().is_empty())?.join(".cache"),
    };
    Some(base.join("tag-space").join("state.db"))
}

/// A classification as stored: what the model chose for one page and what it cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    /// The validated labels, as the pipeline would apply them.
    pub labels: Vec<String>,
    /// Who answered ("gemini", "openai", "rules").
    pub provider: String,
    /// The model that answered.
    pub model: String,
    /// This page's share of the batch's tokens (the batch's usage divided by its pages).
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Unix seconds.
    pub created_at: i64,
}

impl Classification {
    /// Stamped now.
    pub fn new(
        labels: Vec<String>,
        provider: impl Into<String>,
        model: impl Into<String>,
        input_tokens: u64,
        output_tokens: u64,
    ) -> Self {
        Self {
            labels,
            provider: provider.into(),
            model: model.into(),
            input_tokens,
            output_tokens,
            created_at: now(),
        }
    }
}

/// Whether a run may remove labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// The default: only adds.
    Add,
    /// `--sync`: also removes labels tag-space added that no longer apply.
    Sync,
}

impl RunMode {
    fn as_str(self) -> &'static str {
        match self {
            RunMode::Add => "add",
            RunMode::Sync => "sync",
        }
    }
    fn parse(s: &str) -> Self {
        if s == "sync" {
            RunMode::Sync
        } else {
            RunMode::Add
        }
    }
}

/// How a run ended, as the run history records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Finished,
    Interrupted,
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Finished => "finished",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Failed => "failed",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        match s {
            "finished" => Some(RunStatus::Finished),
            "interrupted" => Some(RunStatus::Interrupted),
            "failed" => Some(RunStatus::Failed),
            _ => None,
        }
    }
}

/// The end of a run: how it ended, why if it failed, and the process's exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEnd {
    pub status: RunStatus,
    /// One line; for `Failed` only.
    pub error: Option<String>,
    pub exit_code: u8,
}

impl RunEnd {
    /// Every page went through and none failed.
    pub fn finished() -> Self {
        Self {
            status: RunStatus::Finished,
            error: None,
            exit_code: 0,
        }
    }
}

/// A run in progress, from [`Store::begin_run`]. Plain data: clone it freely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub id: i64,
    pub space: String,
    pub mode: RunMode,
    /// In a dry run the ledger is never written (nothing was written to Confluence), but
    /// classifications are still stored: they are real answers.
    pub dry_run: bool,
}

/// The counters of one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunCounters {
    /// Lookups answered from memory or the file.
    pub hits: u64,
    /// Of `hits`, those answered from memory.
    pub memory_hits: u64,
    pub misses: u64,
    /// Pages skipped before any work because [`super::is_unchanged`] said so.
    pub skipped_unchanged: u64,
    /// Entries pushed out of the in-memory LRU.
    pub evictions: u64,
    /// LLM requests made.
    pub calls: u64,
}

impl RunCounters {
    /// Hits over lookups; `None` before the first lookup.
    pub fn hit_rate(&self) -> Option<f64> {
        let lookups = self.hits + self.misses;
        (lookups > 0).then(|| self.hits as f64 / lookups as f64)
    }
}

#[derive(Debug, Default)]
struct Counters {
    memory_hits: AtomicU64,
    disk_hits: AtomicU64,
    misses: AtomicU64,
    skipped: AtomicU64,
    evictions: AtomicU64,
    calls: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> RunCounters {
        let memory_hits = self.memory_hits.load(Ordering::Relaxed);
        RunCounters {
            hits: memory_hits + self.disk_hits.load(Ordering::Relaxed),
            memory_hits,
            misses: self.misses.load(Ordering::Relaxed),
            skipped_unchanged: self.skipped.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            calls: self.calls.load(Ordering::Relaxed),
        }
    }
    fn reset(&self) {
        for c in [
            &self.memory_hits,
            &self.disk_hits,
            &self.misses,
            &self.skipped,
            &self.evictions,
            &self.calls,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// One finished or interrupted run, as `cache stats` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub id: i64,
    pub space: String,
    pub mode: RunMode,
    pub dry_run: bool,
    pub started_at: i64,
    /// When the run recorded its end; `None`: killed (or crashed), or still running.
    pub finished_at: Option<i64>,
    /// How it ended; `None` when no end was recorded, or by a tag-space from before run
    /// outcomes were kept (schema 1).
    pub end: Option<RunEnd>,
    /// As of the last batch written (for an interrupted run) or the end. `memory_hits` is
    /// not kept in the file and reads 0.
    pub counters: RunCounters,
}

/// One space's share of the file.
#[derive(Debug, Clone, PartialEq)]
pub struct SpaceStats {
    pub space: String,
    /// Classifications last stored by a run over this space.
    pub entries: u64,
    /// Pages tag-space has finished (and would skip while unchanged).
    pub pages_done: u64,
    /// Labels the ledger attributes to tag-space (confirmed).
    pub labels_added: u64,
    /// The last runs, newest first.
    pub runs: Vec<RunRecord>,
}

/// What `cache stats` shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    pub path: PathBuf,
    /// The file plus its write-ahead log.
    pub file_bytes: u64,
    /// Classifications in the file.
    pub entries: u64,
    pub schema_version: u32,
    /// In space order.
    pub spaces: Vec<SpaceStats>,
}

/// What [`Store::clear`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cleared {
    pub entries: u64,
    pub pages: u64,
    pub runs: u64,
}

/// The state file: classification cache, label ledger and run history. `Send + Sync`; share
/// it by reference or in an `Arc`. Open one per process.
pub struct Store {
    path: PathBuf,
    conn: Mutex<Connection>,
    memory: Mutex<LruCache<CacheKey, Classification>>,
    read: bool,
    busy_timeout: Duration,
    counters: Counters,
    /// Runs WAL checkpoints off the caller's path (see `checkpoint.rs`); kept for its `Drop`.
    _checkpointer: Option<Checkpointer>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("read", &self.read)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the file, creating it and its folder if needed, and brings its schema up to
    /// date. Refuses, with a [`CacheError`] that names the file, one from a newer tag-space
    /// (left untouched), a damaged one, another program's database, and a path that cannot
    /// be written.
    pub fn open(path: impl AsRef<Path>, opts: StoreOptions) -> Result<Self, CacheError> {
        let path = path.as_ref();
        let conn = schema::open(path, opts.busy_timeout)?;
        let checkpointer = Checkpointer::start(&conn, path, opts.busy_timeout);
        let capacity = NonZeroUsize::new(opts.memory_entries.max(1)).expect("max(1) is non-zero");
        Ok(Self {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            memory: Mutex::new(LruCache::new(capacity)),
            read: opts.read,
            busy_timeout: opts.busy_timeout,
            counters: Counters::default(),
            _checkpointer: checkpointer,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `false` under `--no-cache`.
    pub fn reads_enabled(&self) -> bool {
        self.read
    }

    // ---- runs -------------------------------------------------------------------------

    /// Records the start of a run and resets the counters.
    pub fn begin_run(&self, space: &str, mode: RunMode, dry_run: bool) -> Result<Run, CacheError> {
        self.counters.reset();
        let conn = self.conn();
        conn.execute(
            "INSERT INTO runs (space, mode, dry_run, started_at) VALUES (?1, ?2, ?3, ?4)",
            params![space, mode.as_str(), dry_run, now()],
        )
        .map_err(self.err("record the run"))?;
        Ok(Run {
            id: conn.last_insert_rowid(),
            space: space.to_string(),
            mode,
            dry_run,
        })
    }

    /// Records that the run finished with exit code 0 ([`Store::end_run`] with
    /// [`RunEnd::finished`]).
    pub fn finish_run(&self, run: &Run) -> Result<RunCounters, CacheError> {
        self.end_run(run, &RunEnd::finished())
    }

    /// Records the end of the run (how it ended, and its exit code) and its counters, and
    /// returns them.
    pub fn end_run(&self, run: &Run, end: &RunEnd) -> Result<RunCounters, CacheError> {
        let c = self.counters.snapshot();
        let conn = self.conn();
        write_counters(&conn, run.id, &c).map_err(self.err("record the run's counters"))?;
        conn.execute(
            "UPDATE runs SET finished_at = ?2, status = ?3, error = ?4, exit_code = ?5 WHERE id = ?1",
            params![
                run.id,
                now(),
                end.status.as_str(),
                end.error.as_deref(),
                end.exit_code
            ],
        )
        .map_err(self.err("record the end of the run"))?;
        Ok(c)
    }

    /// Sets the run's counters back to zero: after a look at the space that is not the run
    /// itself (`--via batch --wait` finds the pages to submit first), so that the run's
    /// figures count its own lookups once.
    pub fn reset_counters(&self) {
        self.counters.reset();
    }

    /// The current run's counters.
    pub fn counters(&self) -> RunCounters {
        self.counters.snapshot()
    }

    /// Counts a page skipped because [`super::is_unchanged`] said so.
    pub fn count_skipped(&self) {
        self.counters.skipped.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts LLM requests (one per `Provider::classify` call, retries included if known).
    pub fn count_calls(&self, n: u64) {
        self.counters.calls.fetch_add(n, Ordering::Relaxed);
    }

    // ---- classification cache -----------------------------------------------------------

    /// The stored classification for `key`: memory first, then the file (a file hit is kept
    /// in memory). Always `None` when reads are disabled.
    pub fn lookup(&self, key: &CacheKey) -> Result<Option<Classification>, CacheError> {
        if !self.read {
            self.counters.misses.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        }
        if let Some(hit) = self.memory().get(key).cloned() {
            self.counters.memory_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(hit));
        }
        let found = {
            let conn = self.conn();
            let mut stmt = conn
                .prepare_cached(
                    "SELECT labels, provider, model, input_tokens, output_tokens, created_at
                     FROM classifications WHERE key = ?1",
                )
                .map_err(self.err("look up a classification"))?;
            stmt.query_row([key.as_bytes().as_slice()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    Classification {
                        labels: Vec::new(),
                        provider: r.get(1)?,
                        model: r.get(2)?,
                        input_tokens: r.get(3)?,
                        output_tokens: r.get(4)?,
                        created_at: r.get(5)?,
                    },
                ))
            })
            .optional()
            .map_err(self.err("look up a classification"))?
        };
        let Some((labels, mut c)) = found else {
            self.counters.misses.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        };
        // An entry whose labels do not parse is treated as absent and will be overwritten.
        let Ok(labels) = serde_json::from_str(&labels) else {
            tracing::warn!(key = %key, "unreadable cached labels; classifying again");
            self.counters.misses.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        };
        c.labels = labels;
        self.counters.disk_hits.fetch_add(1, Ordering::Relaxed);
        self.remember(*key, c.clone());
        Ok(Some(c))
    }

    /// Stores a finished batch's classifications in one transaction (and in memory), and
    /// saves the run's counters with them, so that an interrupted run keeps both.
    pub fn store_batch(
        &self,
        run: &Run,
        entries: &[(CacheKey, Classification)],
    ) -> Result<(), CacheError> {
        {
            let mut conn = self.conn();
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(self.err("begin a batch write"))?;
            {
                let mut stmt = tx
                    .prepare_cached(
                        "INSERT OR REPLACE INTO classifications
                         (key, space, labels, provider, model, input_tokens, output_tokens, created_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    )
                    .map_err(self.err("store a classification"))?;
                for (key, c) in entries {
                    let labels =
                        serde_json::to_string(&c.labels).expect("a list of strings serialises");
                    stmt.execute(params![
                        key.as_bytes().as_slice(),
                        run.space,
                        labels,
                        c.provider,
                        c.model,
                        c.input_tokens,
                        c.output_tokens,
                        c.created_at,
                    ])
                    .map_err(self.err("store a classification"))?;
                }
            }
            write_counters(&tx, run.id, &self.counters.snapshot())
                .map_err(self.err("record the run's counters"))?;
            tx.commit().map_err(self.err("commit a batch write"))?;
        }
        if self.read {
            for (key, c) in entries {
                self.remember(*key, c.clone());
            }
        }
        Ok(())
    }

    fn remember(&self, key: CacheKey, c: Classification) {
        if let Some((old, _)) = self.memory().push(key, c) {
            if old != key {
                self.counters.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    // ---- label ledger ---------------------------------------------------------------------

    /// Everything the ledger knows about one page (empty if nothing).
    pub fn page_ledger(&self, space: &str, page_id: &str) -> Result<PageLedger, CacheError> {
        let conn = self.conn();
        let op = "read the ledger";
        let done = conn
            .prepare_cached(
                "SELECT version, content_hash, setup FROM pages WHERE space = ?1 AND page_id = ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![space, page_id], |r| {
                    Ok(PageDone {
                        version: r.get(0)?,
                        content_hash: ContentHash::from_bytes(r.get(1)?),
                        setup: SetupHash::from_bytes(r.get(2)?),
                    })
                })
                .optional()
            })
            .map_err(self.err(op))?;
        let mut stmt = conn
            .prepare_cached("SELECT label, status FROM labels WHERE space = ?1 AND page_id = ?2")
            .map_err(self.err(op))?;
        let rows = stmt
            .query_map(params![space, page_id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(self.err(op))?;
        let mut labels = std::collections::BTreeMap::new();
        for row in rows {
            let (label, status) = row.map_err(self.err(op))?;
            // The CHECK constraint admits only known statuses.
            if let Some(status) = LabelStatus::parse(&status) {
                labels.insert(label, status);
            }
        }
        Ok(PageLedger { done, labels })
    }

    /// Call just before writing `plan` to Confluence: settles what the plan found and records
    /// the write-ahead intents (`Adding`, `Removing`). A no-op in a dry run.
    pub fn prepare_labels(
        &self,
        run: &Run,
        page_id: &str,
        plan: &LabelPlan,
    ) -> Result<(), CacheError> {
        if run.dry_run {
            return Ok(());
        }
        self.ledger_tx("record label intents", |tx, at| {
            settle(tx, run, page_id, plan, at)?;
            for l in &plan.add {
                set_label(tx, run, page_id, l, LabelStatus::Adding, at)?;
            }
            for l in &plan.remove {
                set_label(tx, run, page_id, l, LabelStatus::Removing, at)?;
            }
            Ok(())
        })
    }

    /// Call once Confluence has confirmed every write of `plan` (or when the plan needed
    /// none): confirms the intents and records the page as done in `done`'s state, so that
    /// the next run skips it while it stays unchanged. A no-op in a dry run. If a write
    /// failed, do not call it: the open intents are settled the next time the page is seen.
    pub fn finish_page(
        &self,
        run: &Run,
        page_id: &str,
        done: &PageDone,
        plan: &LabelPlan,
    ) -> Result<(), CacheError> {
        if run.dry_run {
            return Ok(());
        }
        self.ledger_tx("record a finished page", |tx, at| {
            settle(tx, run, page_id, plan, at)?;
            for l in &plan.add {
                set_label(tx, run, page_id, l, LabelStatus::Added, at)?;
            }
            for l in &plan.remove {
                tx.prepare_cached(
                    "DELETE FROM labels WHERE space = ?1 AND page_id = ?2 AND label = ?3",
                )?
                .execute(params![run.space, page_id, l])?;
            }
            tx.prepare_cached(
                "INSERT OR REPLACE INTO pages
                 (space, page_id, version, content_hash, setup, run_id, finished_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                run.space,
                page_id,
                done.version,
                done.content_hash.as_bytes().as_slice(),
                done.setup.as_bytes().as_slice(),
                run.id,
                at,
            ])?;
            Ok(())
        })
    }

    pub(super) fn ledger_tx(
        &self,
        op: &'static str,
        f: impl FnOnce(&rusqlite::Transaction<'_>, i64) -> rusqlite::Result<()>,
    ) -> Result<(), CacheError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.err(op))?;
        f(&tx, now()).map_err(self.err(op))?;
        tx.commit().map_err(self.err(op))
    }

    // ---- stats and clear ------------------------------------------------------------------

    /// Entries, file size, and per space the last `last_runs` runs (newest first).
    pub fn stats(&self, last_runs: usize) -> Result<Stats, CacheError> {
        let op = "read the statistics";
        let conn = self.conn();
        let count = |sql: &str, space: Option<&str>| -> rusqlite::Result<u64> {
            match space {
                Some(s) => conn.query_row(sql, [s], |r| r.get(0)),
                None => conn.query_row(sql, [], |r| r.get(0)),
            }
        };
        let entries = count("SELECT count(*) FROM classifications", None).map_err(self.err(op))?;
        let spaces: Vec<String> = conn
            .prepare(
                "SELECT space FROM classifications UNION SELECT space FROM pages
                 UNION SELECT space FROM runs UNION SELECT space FROM labels ORDER BY 1",
            )
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(self.err(op))?;
        let mut out = Vec::with_capacity(spaces.len());
        for space in spaces {
            let s = Some(space.as_str());
            let runs = conn
                .prepare_cached(
                    "SELECT id, mode, dry_run, started_at, finished_at,
                            hits, misses, skipped_unchanged, evictions, calls,
                            status, error, exit_code
                     FROM runs WHERE space = ?1 ORDER BY id DESC LIMIT ?2",
                )
                .and_then(|mut st| {
                    st.query_map(params![space, last_runs as i64], |r| {
                        Ok(RunRecord {
                            id: r.get(0)?,
                            space: space.clone(),
                            mode: RunMode::parse(&r.get::<_, String>(1)?),
                            dry_run: r.get(2)?,
                            started_at: r.get(3)?,
                            finished_at: r.get(4)?,
                            end: run_end(r.get(10)?, r.get(11)?, r.get(12)?),
                            counters: RunCounters {
                                hits: r.get(5)?,
                                memory_hits: 0,
                                misses: r.get(6)?,
                                skipped_unchanged: r.get(7)?,
                                evictions: r.get(8)?,
                                calls: r.get(9)?,
                            },
                        })
                    })?
                    .collect()
                })
                .map_err(self.err(op))?;
            out.push(SpaceStats {
                entries: count("SELECT count(*) FROM classifications WHERE space = ?1", s)
                    .map_err(self.err(op))?,
                pages_done: count("SELECT count(*) FROM pages WHERE space = ?1", s)
                    .map_err(self.err(op))?,
                labels_added: count(
                    "SELECT count(*) FROM labels WHERE space = ?1 AND status = 'added'",
                    s,
                )
                .map_err(self.err(op))?,
                runs,
                space,
            });
        }
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        Ok(Stats {
            path: self.path.clone(),
            file_bytes: size(&self.path) + size(Path::new(&wal)),
            entries,
            schema_version: schema::SCHEMA_VERSION,
            spaces: out,
        })
    }

    /// Forgets cached classifications, finished-page marks and run history, of one space or
    /// of all, then compacts the file. The next run classifies every page again.
    ///
    /// The label ledger's attribution (which labels tag-space added) is kept on purpose:
    /// without it, tag-space's own labels would look like a person's, and `--sync` could
    /// never clean them up.
    pub fn clear(&self, space: Option<&str>) -> Result<Cleared, CacheError> {
        let op = "clear the cache";
        let cleared = {
            let mut conn = self.conn();
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(self.err(op))?;
            let del = |table: &str| -> rusqlite::Result<u64> {
                let n = match space {
                    Some(s) => tx.execute(&format!("DELETE FROM {table} WHERE space = ?1"), [s])?,
                    None => tx.execute(&format!("DELETE FROM {table}"), [])?,
                };
                Ok(n as u64)
            };
            let cleared = Cleared {
                entries: del("classifications").map_err(self.err(op))?,
                pages: del("pages").map_err(self.err(op))?,
                runs: del("runs").map_err(self.err(op))?,
            };
            tx.commit().map_err(self.err(op))?;
            // Compact: give the space back to the file system.
            conn.execute_batch("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")
                .map_err(self.err("compact the file"))?;
            cleared
        };
        // Memory does not know spaces; dropping it all costs at most a few file reads.
        self.memory().clear();
        Ok(cleared)
    }

    // ---- helpers --------------------------------------------------------------------------

    /// A panic while the lock was held leaves the connection usable (an open transaction
    /// rolls back when dropped), so a poisoned lock is taken over rather than propagated.
    pub(super) fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn memory(&self) -> MutexGuard<'_, LruCache<CacheKey, Classification>> {
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn err(&self, op: &'static str) -> impl Fn(rusqlite::Error) -> CacheError + '_ {
        move |e| CacheError::from_sqlite(&self.path, op, self.busy_timeout, e)
    }
}

/// The recorded end of a run, from its three columns; `None` when it has none.
fn run_end(status: Option<String>, error: Option<String>, exit_code: Option<u8>) -> Option<RunEnd> {
    Some(RunEnd {
        status: RunStatus::parse(status.as_deref()?)?,
        error,
        exit_code: exit_code?,
    })
}

fn write_counters(conn: &Connection, run_id: i64, c: &RunCounters) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE runs SET hits = ?2, misses = ?3, skipped_unchanged = ?4, evictions = ?5,
         calls = ?6 WHERE id = ?1",
    )?
    .execute(params![
        run_id,
        c.hits,
        c.misses,
        c.skipped_unchanged,
        c.evictions,
        c.calls
    ])?;
    Ok(())
}

fn settle(
    tx: &rusqlite::Transaction<'_>,
    run: &Run,
    page_id: &str,
    plan: &LabelPlan,
    at: i64,
) -> rusqlite::Result<()> {
    for (label, status) in &plan.settle {
        match status {
            Some(status) => set_label(tx, run, page_id, label, *status, at)?,
            None => {
                tx.prepare_cached(
                    "DELETE FROM labels WHERE space = ?1 AND page_id = ?2 AND label = ?3",
                )?
                .execute(params![run.space, page_id, label])?;
            }
        }
    }
    Ok(())
}

pub(super) fn set_label(
    tx: &rusqlite::Transaction<'_>,
    run: &Run,
    page_id: &str,
    label: &str,
    status: LabelStatus,
    at: i64,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO labels (space, page_id, label, status, run_id, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        run.space,
        page_id,
        label,
        status.as_str(),
        run.id,
        at
    ])?;
    Ok(())
}

/// Unix seconds, for the record (never for a decision).
pub(super) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_path_prefers_an_absolute_xdg_cache_home() {
        let p = default_path(Some(Path::new("/x/cache")), Some(Path::new("/home/a")));
        assert_eq!(p, Some(PathBuf::from("/x/cache/tag-space/state.db")));
        let p = default_path(Some(Path::new("rel")), Some(Path::new("/home/a")));
        assert_eq!(p, Some(PathBuf::from("/home/a/.cache/tag-space/state.db")));
        assert_eq!(default_path(None, None), None);
        assert_eq!(default_path(None, Some(Path::new(""))), None);
    }

    #[test]
    fn hit_rate_is_hits_over_lookups() {
        let c = RunCounters {
            hits: 3,
            misses: 1,
            ..RunCounters::default()
        };
        assert_eq!(c.hit_rate(), Some(0.75));
        assert_eq!(RunCounters::default().hit_rate(), None);
    }

    #[test]
    fn a_schema_1_file_keeps_its_runs_readable_and_records_how_new_runs_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(schema::MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "application_id", 0x7467_7370)
                .unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute_batch(
                "INSERT INTO runs (space, mode, dry_run, started_at, finished_at)
                 VALUES ('ENG', 'add', 0, 100, 160), ('ENG', 'sync', 1, 200, NULL);",
            )
            .unwrap();
        }
        let store = Store::open(&path, StoreOptions::default()).unwrap();
        let run = store.begin_run("ENG", RunMode::Add, false).unwrap();
        let failed = RunEnd {
            status: RunStatus::Failed,
            error: Some("space 'ENG' was not found".into()),
            exit_code: 2,
        };
        store.end_run(&run, &failed).unwrap();
        let stats = store.stats(10).unwrap();
        assert_eq!(stats.schema_version, schema::SCHEMA_VERSION);
        let runs = &stats.spaces[0].runs;
        assert_eq!(runs.len(), 3);
        assert_eq!(runs[0].end, Some(failed));
        // Old runs: no outcome recorded, their times as they were.
        assert_eq!((runs[1].end.clone(), runs[1].finished_at), (None, None));
        assert_eq!(
            (runs[2].end.clone(), runs[2].finished_at),
            (None, Some(160))
        );
    }

    #[test]
    fn options_follow_the_settings() {
        let o = StoreOptions::from_settings(&CacheSettings {
            enabled: false,
            size: 7,
            path: None,
        });
        assert_eq!((o.memory_entries, o.read), (7, false));
    }
}
