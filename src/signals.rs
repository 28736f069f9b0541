//! Ctrl-C and SIGTERM for the binary: the first one cancels the run (no new work; requests
//! in flight get the grace; the partial summary and reports are still written), a second one
//! stops the process at once with exit code 130.

use tokio_util::sync::CancellationToken;

use crate::ending::EXIT_INTERRUPTED;
use crate::report;
use crate::report::progress::{self, Progress};

/// Watches for Ctrl-C/SIGTERM until dropped (abort the task it runs in). `signals` is built
/// ([`Signals::new`]) before the run starts, so that no early Ctrl-C kills the run outright.
pub async fn watch(
    signals: std::io::Result<Signals>,
    cancel: CancellationToken,
    progress: Progress,
) {
    let mut signals = match signals {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch for Ctrl-C: an interrupted run will stop without its summary");
            return;
        }
    };
    let first = signals.next().await;
    tracing::warn!(
        signal = first,
        "interrupted: taking no new pages, finishing {} requests in flight (at most {}s); press Ctrl-C again to stop now",
        progress.requests_in_flight(),
        crate::app::INTERRUPT_GRACE.as_secs()
    );
    cancel.cancel();
    let second = signals.next().await;
    progress::clear();
    report::error_line(&format!("{second} again: stopping now"));
    std::process::exit(EXIT_INTERRUPTED.into());
}

/// SIGINT and SIGTERM (Ctrl-C/Ctrl-Break on Windows), registered as soon as this is built.
pub struct Signals {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                int: signal(SignalKind::interrupt())?,
                term: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    /// The name of the next signal received.
    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.int.recv() => "SIGINT",
                _ = self.term.recv() => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}
