//! Opening the file: pragmas, the version check and migrations.
//!
//! The schema version is SQLite's `PRAGMA user_version`. It is read before anything is
//! written, so that a file from a newer tag-space is refused untouched instead of being
//! "migrated" backwards or wiped. `PRAGMA application_id` marks the file as tag-space's, so a
//! path that points at another program's database is refused too.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use super::CacheError;

/// `'tgsp'`: written into the SQLite header so the file says whose it is.
const APPLICATION_ID: i64 = 0x7467_7370;

/// Migration `i` takes the schema from version `i` to `i + 1`. Append only; never edit one
/// that has shipped.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: the classification cache, runs, and the label ledger.
    "
    CREATE TABLE classifications (
        key           BLOB PRIMARY KEY,   -- CacheKey, 32 bytes
        space         TEXT NOT NULL,      -- the space that stored it last (for `clear --space`)
        labels        TEXT NOT NULL,      -- JSON array of label names
        provider      TEXT NOT NULL,      -- who answered: gemini, openai, rules
        model         TEXT NOT NULL,      -- the model that answered
        input_tokens  INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        created_at    INTEGER NOT NULL    -- unix seconds
    ) WITHOUT ROWID;
    CREATE INDEX classifications_space ON classifications(space);

    CREATE TABLE runs (
        id                INTEGER PRIMARY KEY,
        space             TEXT NOT NULL,
        mode              TEXT NOT NULL,  -- add, sync
        dry_run           INTEGER NOT NULL,
        started_at        INTEGER NOT NULL,
        finished_at       INTEGER,        -- NULL: still running, or interrupted
        hits              INTEGER NOT NULL DEFAULT 0,
        misses            INTEGER NOT NULL DEFAULT 0,
        skipped_unchanged INTEGER NOT NULL DEFAULT 0,
        evictions         INTEGER NOT NULL DEFAULT 0,
        calls             INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX runs_space ON runs(space, id);

    -- Per page: how it was when tag-space last finished it.
    CREATE TABLE pages (
        space        TEXT NOT NULL,
        page_id      TEXT NOT NULL,
        version      INTEGER,             -- NULL when the listing carried none
        content_hash BLOB NOT NULL,       -- ContentHash
        setup        BLOB NOT NULL,       -- SetupHash
        run_id       INTEGER NOT NULL,
        finished_at  INTEGER NOT NULL,
        PRIMARY KEY (space, page_id)
    ) WITHOUT ROWID;

    -- The label ledger: labels tag-space itself put on a page.
    CREATE TABLE labels (
        space   TEXT NOT NULL,
        page_id TEXT NOT NULL,
        label   TEXT NOT NULL,
        status  TEXT NOT NULL CHECK (status IN ('adding', 'added', 'removing', 'dismissed')),
        run_id  INTEGER NOT NULL,
        at      INTEGER NOT NULL,
        PRIMARY KEY (space, page_id, label)
    ) WITHOUT ROWID;
    ",
    // 2: how each run ended. NULL in all three for a run that recorded no end (killed, or
    // still running) and for runs recorded before this migration.
    "
    ALTER TABLE runs ADD COLUMN status TEXT;      -- finished, failed, interrupted
    ALTER TABLE runs ADD COLUMN error TEXT;       -- why it failed, one line
    ALTER TABLE runs ADD COLUMN exit_code INTEGER;
    ",
    // 3: the providers' batch jobs (issue 16). A job row and its requests are written, in
    // state 'creating', before the create call is sent: a create whose answer was lost is
    // then looked up by its display name instead of being sent twice. (Keep this the last
    // migration when merging others: renumber, never reorder.)
    "
    CREATE TABLE batch_jobs (
        id                   INTEGER PRIMARY KEY,  -- `tag-space jobs cancel ID`
        display_name         TEXT NOT NULL UNIQUE, -- sent with the create; found again by it
        provider             TEXT NOT NULL,        -- gemini, openai
        model                TEXT NOT NULL,
        job_id               TEXT,                 -- the provider's id; NULL while creating
        space                TEXT NOT NULL,
        taxonomy_fingerprint TEXT NOT NULL,
        prompt_version       TEXT NOT NULL,
        state                TEXT NOT NULL,        -- creating, not_created, pending, running,
                                                   -- cancelling, succeeded, failed, cancelled,
                                                   -- expired, stale
        collected            INTEGER NOT NULL DEFAULT 0,
        requests             INTEGER NOT NULL,
        pages                INTEGER NOT NULL,
        succeeded            INTEGER NOT NULL DEFAULT 0,
        failed               INTEGER NOT NULL DEFAULT 0,
        error                TEXT,                 -- one line: why it failed or was not created
        created_at           INTEGER NOT NULL,
        updated_at           INTEGER NOT NULL
    );
    CREATE INDEX batch_jobs_space ON batch_jobs(space, id);

    -- What each request key of a job covers: JSON [[page id, cache key hex], ...].
    CREATE TABLE batch_requests (
        job   INTEGER NOT NULL,
        key   TEXT NOT NULL,
        pages TEXT NOT NULL,
        PRIMARY KEY (job, key)
    ) WITHOUT ROWID;
    ",
    // 4: how each OpenAI-compatible or Gemini endpoint and model is asked for JSON (issue 14):
    // the rung of the structured-output ladder that last worked (`crate::llm::structured`),
    // so that the next run starts there instead of re-learning a server's refusals.
    "
    CREATE TABLE structured_output (
        provider   TEXT NOT NULL,   -- gemini, openai
        base_url   TEXT NOT NULL,   -- as configured, without a trailing slash
        model      TEXT NOT NULL,
        rung       TEXT NOT NULL,   -- json_schema, json_object, prompt, response_json_schema, ...
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (provider, base_url, model)
    ) WITHOUT ROWID;
    ",
];

/// The newest schema this build understands.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Makes sure the state file's folder exists and can be written, before anything else
/// (the run lock, SQLite) tries to use it: so that an unusable folder is one line naming the
/// folder, what was tried and why, not a lock-file error.
pub fn prepare_dir(path: &Path) -> Result<(), CacheError> {
    let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(());
    };
    let unwritable = |tried: String, e: std::io::Error| CacheError::Unwritable {
        path: path.to_path_buf(),
        reason: format!("{tried}: {}", io_reason(&e)),
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| unwritable(format!("cannot create the folder {}", dir.display()), e))?;
    // Only a write shows whether the folder can be written (permissions, ACLs, read-only
    // mounts); the probe is removed at once.
    let probe = dir.join(format!(".tag-space-probe-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&probe)
        .map_err(|e| unwritable(format!("cannot create files in {}", dir.display()), e))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// The OS error in words, once ("Permission denied", not "... (os error 13)").
fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Opens (creating if needed) and migrates the file at `path`.
pub(crate) fn open(path: &Path, busy_timeout: Duration) -> Result<Connection, CacheError> {
    let err = |op: &'static str| {
        move |e: rusqlite::Error| CacheError::from_sqlite(path, op, busy_timeout, e)
    };
    if path.is_dir() {
        return Err(CacheError::Unwritable {
            path: path.to_path_buf(),
            reason: "it is a directory".into(),
        });
    }
    prepare_dir(path)?;
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(err("open"))?;
    conn.busy_timeout(busy_timeout)
        .map_err(err("set busy timeout"))?;

    // Read-only checks first: nothing is written to a file we are going to refuse.
    let found = user_version(&conn).map_err(err("read the schema version"))?;
    if found > SCHEMA_VERSION {
        return Err(CacheError::TooNew {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    let app_id: i64 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .map_err(err("read the application id"))?;
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .map_err(err("read the schema"))?;
    if (app_id != 0 && app_id != APPLICATION_ID) || (app_id == 0 && tables > 0) {
        return Err(CacheError::NotOurs {
            path: path.to_path_buf(),
        });
    }

    // WAL: readers never block the writer, and a commit is one append to the log instead of
    // a rewrite of the file plus a rollback journal. With WAL, synchronous=NORMAL fsyncs only
    // at checkpoints, not at each commit: the file can never be corrupted, and a killed
    // process (kill -9, crash) loses nothing, because the log is already in the OS. Only a
    // power cut or OS crash can lose the last commits, which costs re-classifying those
    // pages; an intent lost that way would leave a label tag-space wrote unattributed (so
    // `--sync` would leave it alone, the safe side). FULL would fsync every commit: about a
    // millisecond per page on an SSD, for protection the nightly job does not need.
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .map_err(err("switch to WAL"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(path = %path.display(), %mode, "the file system does not support WAL; using another journal mode");
    }
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(err("set synchronous"))?;

    migrate(&conn, path, busy_timeout)?;
    Ok(conn)
}

fn user_version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
}

/// Applies the missing migrations in one transaction. The version is read again under the
/// write lock, so two processes opening a new file at once migrate it once.
fn migrate(conn: &Connection, path: &Path, busy_timeout: Duration) -> Result<(), CacheError> {
    let err = |op: &'static str| {
        move |e: rusqlite::Error| CacheError::from_sqlite(path, op, busy_timeout, e)
    };
    if user_version(conn).map_err(err("read the schema version"))? == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
        .map_err(err("begin the migration"))?;
    let found = user_version(&tx).map_err(err("read the schema version"))?;
    if found > SCHEMA_VERSION {
        return Err(CacheError::TooNew {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tracing::debug!(path = %path.display(), to = i + 1, "migrating the cache schema");
        tx.execute_batch(sql).map_err(err("migrate the schema"))?;
    }
    tx.pragma_update(None, "application_id", APPLICATION_ID)
        .map_err(err("mark the file"))?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(err("record the schema version"))?;
    tx.commit().map_err(err("commit the migration"))
}
