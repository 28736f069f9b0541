//! Moves WAL checkpoints off the caller's path.
//!
//! By default SQLite checkpoints inside the commit that pushes the log past 1000 pages: that
//! one commit copies the log into the file and fsyncs it, which `benches/store.rs` measured at
//! tens of milliseconds (p99 of a batch write 45 ms, max 117 ms), a stall of a tokio worker.
//! Instead a thread with a second connection runs a PASSIVE checkpoint every second, and the
//! store's own connection checkpoints only as a backstop, at 8192 log pages (32 MiB) instead of
//! 1000. PASSIVE never waits for the writer, so commits stay a plain append to the log. The
//! last connection to close checkpoints whatever is left.

use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

const EVERY: Duration = Duration::from_secs(1);
/// Log pages (4 KiB each) at which a commit checkpoints by itself after all.
const BACKSTOP_PAGES: i64 = 8192;

/// The background checkpointer; stops and joins on drop.
pub(crate) struct Checkpointer {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread, or returns `None` (the connection keeps automatic checkpoints)
    /// when a second connection or the thread cannot be had.
    pub(crate) fn start(main: &Connection, path: &Path, busy_timeout: Duration) -> Option<Self> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).ok()?;
        conn.busy_timeout(busy_timeout).ok()?;
        let (stop, rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("tag-space-checkpoint".into())
            .spawn(move || {
                // Ends when stop is sent or the store (holding the sender) is gone.
                while let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(EVERY) {
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::debug!(error = %e, "background checkpoint failed; will retry");
                    }
                }
            })
            .ok()?;
        // A backstop, not the rule: under back-to-back writes the log is never completely
        // copied at the moment a write starts, so it is never rewound and would keep growing.
        // At this size a commit checkpoints itself, which is cheap by then (the thread has
        // copied nearly all of it), and the file is cut back to the limit.
        for (pragma, value) in [
            ("wal_autocheckpoint", BACKSTOP_PAGES),
            ("journal_size_limit", BACKSTOP_PAGES * 4096),
        ] {
            if let Err(e) = main.pragma_update(None, pragma, value) {
                tracing::debug!(error = %e, pragma, "cannot set");
            }
        }
        Some(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
