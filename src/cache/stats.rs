//! `cache stats` and `cache clear`: what the file holds, and forgetting it.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, TransactionBehavior, params};

use super::CacheError;
use super::runs::{RunCounters, RunMode, RunRecord, run_end};
use super::schema;
use super::store::Store;

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

impl Store {
    /// Entries, file size, and per space the last `last_runs` runs (newest first).
    pub fn stats(&self, last_runs: usize) -> Result<Stats, CacheError> {
        let op = "read the statistics";
        let conn = self.conn();
        let entries =
            count(&conn, "SELECT count(*) FROM classifications", None).map_err(self.err(op))?;
        let spaces: Vec<String> = conn
            .prepare(
                "SELECT space FROM classifications UNION SELECT space FROM pages
                 UNION SELECT space FROM runs UNION SELECT space FROM labels ORDER BY 1",
            )
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(self.err(op))?;
        let spaces = spaces
            .into_iter()
            .map(|space| space_stats(&conn, space, last_runs))
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.err(op))?;
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        Ok(Stats {
            path: self.path.clone(),
            file_bytes: size(&self.path) + size(Path::new(&wal)),
            entries,
            schema_version: schema::SCHEMA_VERSION,
            spaces,
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
}

/// `SELECT count(*) …`, of one space (`?1`) or of all.
fn count(conn: &Connection, sql: &str, space: Option<&str>) -> rusqlite::Result<u64> {
    match space {
        Some(s) => conn.query_row(sql, [s], |r| r.get(0)),
        None => conn.query_row(sql, [], |r| r.get(0)),
    }
}

/// One space's entries, finished pages, tag-space's labels and last runs.
fn space_stats(conn: &Connection, space: String, last_runs: usize) -> rusqlite::Result<SpaceStats> {
    let s = Some(space.as_str());
    Ok(SpaceStats {
        entries: count(
            conn,
            "SELECT count(*) FROM classifications WHERE space = ?1",
            s,
        )?,
        pages_done: count(conn, "SELECT count(*) FROM pages WHERE space = ?1", s)?,
        labels_added: count(
            conn,
            "SELECT count(*) FROM labels WHERE space = ?1 AND status = 'added'",
            s,
        )?,
        runs: run_records(conn, &space, last_runs)?,
        space,
    })
}

/// The last `last_runs` runs over `space`, newest first.
fn run_records(
    conn: &Connection,
    space: &str,
    last_runs: usize,
) -> rusqlite::Result<Vec<RunRecord>> {
    let mut st = conn.prepare_cached(
        "SELECT id, mode, dry_run, started_at, finished_at,
                hits, misses, skipped_unchanged, evictions, calls,
                status, error, exit_code
         FROM runs WHERE space = ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    st.query_map(params![space, last_runs as i64], |r| {
        Ok(RunRecord {
            id: r.get(0)?,
            space: space.to_string(),
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
}
