//! The run history: a run's mode, its counters, and how it ended.

use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{Connection, params};

use super::CacheError;
use super::store::{Store, now};

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
    pub(super) fn parse(s: &str) -> Self {
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
pub(super) struct Counters {
    pub(super) memory_hits: AtomicU64,
    pub(super) disk_hits: AtomicU64,
    pub(super) misses: AtomicU64,
    pub(super) skipped: AtomicU64,
    pub(super) evictions: AtomicU64,
    pub(super) calls: AtomicU64,
}

impl Counters {
    pub(super) fn snapshot(&self) -> RunCounters {
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
    pub(super) fn reset(&self) {
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

impl Store {
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
}

/// The recorded end of a run, from its three columns; `None` when it has none.
pub(super) fn run_end(
    status: Option<String>,
    error: Option<String>,
    exit_code: Option<u8>,
) -> Option<RunEnd> {
    Some(RunEnd {
        status: RunStatus::parse(status.as_deref()?)?,
        error,
        exit_code: exit_code?,
    })
}

pub(super) fn write_counters(
    conn: &Connection,
    run_id: i64,
    c: &RunCounters,
) -> rusqlite::Result<()> {
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
