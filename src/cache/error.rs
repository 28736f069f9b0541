//! What can go wrong with the state file, worded so that one line tells a person what to do.

use std::path::PathBuf;
use std::time::Duration;

/// The state file cannot be used. Every message names the file; those a person can act on say
/// how to let the run continue without it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// The file was written by a newer tag-space. It is left exactly as it was.
    #[error(
        "cache {path} has schema version {found}, but this tag-space understands versions up to {supported}: upgrade tag-space, or point TAG_SPACE_CACHE_PATH (--cache-path) at another file (the file was not changed)"
    )]
    TooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },

    /// Not a SQLite database, or a damaged one. `reason` is SQLite's message, kept as text
    /// (not as the `source()`) so that the one line names it once, before what to do.
    #[error(
        "cache {path} is damaged or is not a SQLite file ({reason}): move it away, or run with --no-cache or another TAG_SPACE_CACHE_PATH to continue without it"
    )]
    Corrupt { path: PathBuf, reason: String },

    /// A SQLite database, but another program's.
    #[error(
        "{path} is a SQLite database but not a tag-space cache (it was not changed): point TAG_SPACE_CACHE_PATH (--cache-path) at another file"
    )]
    NotOurs { path: PathBuf },

    /// The file or its folder cannot be created or written.
    #[error(
        "cannot use the state file {path} ({reason}): fix the permissions, set TAG_SPACE_CACHE_PATH (--cache-path) to a writable place, or run with --no-cache to go on without it"
    )]
    Unwritable { path: PathBuf, reason: String },

    /// Another process held the write lock for longer than the busy timeout.
    #[error(
        "cache {path} stayed locked by another process for more than {waited:?} (another tag-space run?): wait for it to finish, or use another TAG_SPACE_CACHE_PATH"
    )]
    Busy { path: PathBuf, waited: Duration },

    /// Anything else SQLite reported, with what the store was doing; `reason` is SQLite's
    /// message (as text, like [`CacheError::Corrupt`]'s).
    #[error("cache {path}: {op} failed: {reason}")]
    Sqlite {
        path: PathBuf,
        op: &'static str,
        reason: String,
    },
}

impl CacheError {
    /// What is wrong with the file, without advice: for a warning when the run goes on
    /// without it anyway (`--no-cache`), where "run with --no-cache" would be no help.
    pub fn reason(&self) -> String {
        match self {
            CacheError::TooNew {
                found, supported, ..
            } => format!("schema version {found}, newer than the {supported} this tag-space reads"),
            CacheError::Corrupt { .. } => "damaged, or not a SQLite file".into(),
            CacheError::NotOurs { .. } => "another program's SQLite database".into(),
            CacheError::Unwritable { reason, .. } => reason.clone(),
            CacheError::Busy { .. } => "locked by another process".into(),
            CacheError::Sqlite { op, reason, .. } => format!("{op} failed: {reason}"),
        }
    }

    /// The file this is about.
    pub fn path(&self) -> &std::path::Path {
        match self {
            CacheError::TooNew { path, .. }
            | CacheError::Corrupt { path, .. }
            | CacheError::NotOurs { path }
            | CacheError::Unwritable { path, .. }
            | CacheError::Busy { path, .. }
            | CacheError::Sqlite { path, .. } => path,
        }
    }

    /// Sorts a SQLite error into the variant a person can act on.
    pub(crate) fn from_sqlite(
        path: &std::path::Path,
        op: &'static str,
        busy_timeout: Duration,
        source: rusqlite::Error,
    ) -> Self {
        use rusqlite::ErrorCode as C;
        let path = path.to_path_buf();
        match source.sqlite_error_code() {
            Some(C::NotADatabase | C::DatabaseCorrupt) => CacheError::Corrupt {
                path,
                reason: source.to_string(),
            },
            Some(C::ReadOnly | C::CannotOpen | C::PermissionDenied | C::DiskFull) => {
                CacheError::Unwritable {
                    path,
                    reason: source.to_string(),
                }
            }
            Some(C::DatabaseBusy | C::DatabaseLocked) => CacheError::Busy {
                path,
                waited: busy_timeout,
            },
            _ => CacheError::Sqlite {
                path,
                op,
                reason: source.to_string(),
            },
        }
    }
}
