//! The run lock: one run at a time per Confluence site and space, whatever state file each
//! run uses, so that two overlapping runs never both classify and write the same space (and
//! never both claim the same labels in two ledgers).
//!
//! An OS advisory lock (`flock` on Unix, `LockFileEx` on Windows) on
//! `<lock dir>/<SPACE>-<hash>.lock`, the hash taken over the normalised base URL and the
//! space key ([`lock_path`]); the lock dir is `TAG_SPACE_LOCK_DIR` or the user's cache
//! directory's `tag-space/locks` (chosen by `config`). The OS releases the lock when the
//! holder exits, however it exits, so a killed run never leaves a stale lock behind. The
//! file's content is only informative: the holder's pid, for the message the second run
//! prints.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use fs4::FileExt;
use tokio_util::sync::CancellationToken;

/// A held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct RunLock {
    // Kept open: closing the file is what releases the lock.
    _file: File,
    path: PathBuf,
}

impl RunLock {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another tag-space run{} is already working on this space (lock file {}); wait for it to finish, or pass --wait-lock to wait",
        holder.map(|p| format!(" (pid {p})")).unwrap_or_default(),
        path.display()
    )]
    Held { path: PathBuf, holder: Option<u32> },
    /// The lock file cannot be created or locked. `reason` is the OS error's text, kept as
    /// text so that the message names it once, before what to do.
    #[error(
        "cannot use the lock file {}: {reason}; set TAG_SPACE_LOCK_DIR to a writable directory",
        path.display()
    )]
    Io { path: PathBuf, reason: String },
    #[error("interrupted while waiting for the lock file {}", path.display())]
    Cancelled { path: PathBuf },
}

/// The lock file for `space` of the site at `base_url`, in `dir`: `<SPACE>-<hash>.lock`.
/// The hash (64 bits of SHA-256, hex) covers the normalised base URL ([`site_key`]) and the
/// space key without case (Cloud finds a space whatever its case), so each site and space
/// has exactly one lock; the readable prefix is the key uppercased, keeping only
/// `[A-Z0-9_-]` (personal spaces are `~name`).
pub fn lock_path(dir: &Path, base_url: &str, space: &str) -> PathBuf {
    use sha2::{Digest, Sha256};
    // Uppercase, like the hash without case: `eng` and `ENG` must name one file.
    let name: String = space
        .to_uppercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut h = Sha256::new();
    h.update(site_key(base_url).as_bytes());
    h.update(b"\n");
    h.update(space.to_lowercase().as_bytes());
    let digest = h.finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    dir.join(format!("{name}-{hex}.lock"))
}

/// The base URL as one string per site: scheme and host lowercased, default port dropped,
/// no trailing `/` or `/wiki` (Cloud's `https://acme.atlassian.net/wiki` is the same site as
/// `https://acme.atlassian.net`), no query.
pub fn site_key(base_url: &str) -> String {
    let trimmed = base_url.trim().trim_end_matches('/');
    let trimmed = trimmed.strip_suffix("/wiki").unwrap_or(trimmed);
    match url::Url::parse(trimmed) {
        Ok(mut url) => {
            url.set_query(None);
            url.set_fragment(None);
            url.as_str().trim_end_matches('/').to_string()
        }
        Err(_) => trimmed.to_ascii_lowercase(),
    }
}

/// Takes the lock at `path` now, or says who holds it.
pub fn try_acquire(path: &Path) -> Result<RunLock, LockError> {
    let io = |e: std::io::Error| LockError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    // Not truncated on open: the holder's pid must survive a failed attempt.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io)?;
    // Called through the trait: since Rust 1.89 `File` has an inherent `try_lock` too.
    match FileExt::try_lock(&file) {
        Ok(()) => {}
        Err(fs4::TryLockError::WouldBlock) => {
            return Err(LockError::Held {
                path: path.to_path_buf(),
                holder: read_holder(path),
            });
        }
        Err(fs4::TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    file.flush().map_err(io)?;
    Ok(RunLock {
        _file: file,
        path: path.to_path_buf(),
    })
}

/// Takes the lock, waiting (polling every `poll`) while another run holds it. `on_wait` is
/// called once, with the holder's error, when the first attempt finds the lock held.
/// Cancelling gives up. Polling rather than a blocking `flock` keeps Ctrl-C responsive.
pub async fn acquire_waiting(
    path: &Path,
    poll: Duration,
    cancel: &CancellationToken,
    mut on_wait: impl FnMut(&LockError),
) -> Result<RunLock, LockError> {
    let mut told = false;
    loop {
        match try_acquire(path) {
            Err(e @ LockError::Held { .. }) => {
                if !told {
                    on_wait(&e);
                    told = true;
                }
            }
            other => return other,
        }
        tokio::select! {
            () = cancel.cancelled() => return Err(LockError::Cancelled { path: path.to_path_buf() }),
            () = tokio::time::sleep(poll) => {}
        }
    }
}

/// The pid the holder wrote, if it can be read (advisory locks do not stop reads).
fn read_holder(path: &Path) -> Option<u32> {
    let mut s = String::new();
    File::open(path).ok()?.read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SITE: &str = "https://acme.atlassian.net";

    #[test]
    fn lock_file_names_are_safe_and_keyed_by_site_and_space() {
        let d = Path::new("/x");
        let name = |p: PathBuf| p.file_name().unwrap().to_string_lossy().into_owned();
        let eng = lock_path(d, SITE, "ENG");
        assert_eq!(eng.parent(), Some(d));
        assert!(name(eng.clone()).starts_with("ENG-"), "{eng:?}");
        assert!(name(lock_path(d, SITE, "~jane.doe")).starts_with("_JANE_DOE-"));
        assert!(name(lock_path(d, SITE, "../etc")).starts_with("___ETC-"));
        assert_eq!(lock_path(d, SITE, "../etc").parent(), Some(d));
        // One site, written several ways: one lock.
        for same in [
            "https://ACME.atlassian.net/wiki/",
            "https://acme.atlassian.net:443",
            " https://acme.atlassian.net/ ",
        ] {
            assert_eq!(lock_path(d, same, "ENG"), eng, "{same}");
        }
        assert_eq!(lock_path(d, SITE, "eng"), eng, "space keys without case");
        // Another site or space: another lock.
        assert_ne!(lock_path(d, "https://other.atlassian.net", "ENG"), eng);
        assert_ne!(lock_path(d, SITE, "OPS"), eng);
        assert_ne!(
            lock_path(d, "https://c.acme.test/confluence", "ENG"),
            lock_path(d, "https://c.acme.test/other", "ENG")
        );
    }

    #[test]
    fn an_unusable_lock_dir_is_one_line_with_a_next_step() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the directory should be: creating the directory fails.
        let blocker = dir.path().join("locks");
        std::fs::write(&blocker, b"").unwrap();
        let err = try_acquire(&lock_path(&blocker, SITE, "ENG")).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, LockError::Io { .. }), "{msg}");
        assert!(std::error::Error::source(&err).is_none(), "{msg}");
        assert!(
            msg.contains("TAG_SPACE_LOCK_DIR") && msg.contains("locks"),
            "{msg}"
        );
        assert_eq!(msg.lines().count(), 1, "{msg}");
        assert_eq!(msg.matches("os error").count(), 1, "{msg}");
    }

    #[test]
    fn a_second_lock_is_refused_with_the_holders_pid_then_freed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = lock_path(&dir.path().join("locks"), SITE, "ENG");
        let held = try_acquire(&path).unwrap();
        match try_acquire(&path) {
            Err(LockError::Held { holder, path: p }) => {
                assert_eq!(holder, Some(std::process::id()));
                assert_eq!(p, path);
            }
            other => panic!("expected Held, got {other:?}"),
        }
        let msg = try_acquire(&path).unwrap_err().to_string();
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        assert!(
            msg.contains(&path.display().to_string()) && msg.contains("--wait-lock"),
            "{msg}"
        );
        drop(held);
        try_acquire(&path).expect("free again once dropped");
    }

    #[tokio::test]
    async fn waiting_takes_the_lock_once_it_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = lock_path(dir.path(), SITE, "ENG");
        let held = try_acquire(&path).unwrap();
        let cancel = CancellationToken::new();
        let mut waited = 0;
        let releaser = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(held);
        };
        let (got, ()) = tokio::join!(
            acquire_waiting(&path, Duration::from_millis(10), &cancel, |_| waited += 1),
            releaser
        );
        got.unwrap();
        assert_eq!(waited, 1);
    }

    #[tokio::test]
    async fn waiting_stops_when_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let path = lock_path(dir.path(), SITE, "ENG");
        let _held = try_acquire(&path).unwrap();
        let cancel = CancellationToken::new();
        cancel.cancel();
        let r = acquire_waiting(&path, Duration::from_millis(10), &cancel, |_| {}).await;
        assert!(matches!(r, Err(LockError::Cancelled { .. })));
    }
}
