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
use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lru::LruCache;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::CacheSettings;
use super::checkpoint::Checkpointer;
use super::key::CacheKey;
use super::runs::{Counters, Run, write_counters};
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

/// The state file: classification cache, label ledger and run history. `Send + Sync`; share
/// it by reference or in an `Arc`. Open one per process.
pub struct Store {
    pub(super) path: PathBuf,
    conn: Mutex<Connection>,
    memory: Mutex<LruCache<CacheKey, Classification>>,
    read: bool,
    busy_timeout: Duration,
    pub(super) counters: Counters,
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

    // ---- helpers --------------------------------------------------------------------------

    /// A panic while the lock was held leaves the connection usable (an open transaction
    /// rolls back when dropped), so a poisoned lock is taken over rather than propagated.
    pub(super) fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn memory(&self) -> MutexGuard<'_, LruCache<CacheKey, Classification>> {
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn err(&self, op: &'static str) -> impl Fn(rusqlite::Error) -> CacheError + '_ {
        move |e| CacheError::from_sqlite(&self.path, op, self.busy_timeout, e)
    }
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
    use crate::cache::{RunCounters, RunEnd, RunMode, RunStatus};

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
