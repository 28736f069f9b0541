//! The run lock: one run at a time per space (and per state directory), so that two
//! overlapping cron runs never both classify and write the same space.
//!
//! An OS advisory lock (`flock` on Unix, `LockFileEx` on Windows) on
//! `<state dir>/locks/<SPACE>.lock`: the OS releases it when the holder exits, however it
//! exits, so a killed run never leaves a stale lock behind. The file's content is only
//! informative: the holder's pid, for the message the second run prints.

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
    #[error("cannot use the lock file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("interrupted while waiting for the lock file {}", path.display())]
    Cancelled { path: PathBuf },
}

/// The lock file for `space` in `dir`. Characters outside `[A-Za-z0-9_-]` (personal spaces
/// are `~name`) become `_`, so the key is always one safe file name.
pub fn lock_path(dir: &Path, space: &str) -> PathBuf {
    let name: String = space
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(format!("{name}.lock"))
}

/// Takes the lock at `path` now, or says who holds it.
pub fn try_acquire(path: &Path) -> Result<RunLock, LockError> {
    let io = |source| LockError::Io {
        path: path.to_path_buf(),
        source,
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

    #[test]
    fn lock_file_names_are_safe() {
        let d = Path::new("/x");
        assert_eq!(lock_path(d, "ENG"), Path::new("/x/ENG.lock"));
        assert_eq!(lock_path(d, "~jane.doe"), Path::new("/x/_jane_doe.lock"));
        assert_eq!(lock_path(d, "../etc"), Path::new("/x/___etc.lock"));
    }

    #[test]
    fn a_second_lock_is_refused_with_the_holders_pid_then_freed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = lock_path(&dir.path().join("locks"), "ENG");
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
            msg.contains("ENG.lock") && msg.contains("--wait-lock"),
            "{msg}"
        );
        drop(held);
        try_acquire(&path).expect("free again once dropped");
    }

    #[tokio::test]
    async fn waiting_takes_the_lock_once_it_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = lock_path(dir.path(), "ENG");
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
        let path = lock_path(dir.path(), "ENG");
        let _held = try_acquire(&path).unwrap();
        let cancel = CancellationToken::new();
        cancel.cancel();
        let r = acquire_waiting(&path, Duration::from_millis(10), &cancel, |_| {}).await;
        assert!(matches!(r, Err(LockError::Cancelled { .. })));
    }
}
