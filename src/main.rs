//! The `tag-space` binary: parse flags, start the runtime, watch for Ctrl-C/SIGTERM, run, and
//! map the outcome to an exit code: 0 all pages fine, 1 some pages failed, 2
//! usage/configuration/fatal error (or another run holds the lock), 130 interrupted.

use std::process::ExitCode;

use clap::Parser;
use tag_space::app::{self, Session};
use tag_space::cli::{Args, Command};
use tag_space::report;
use tag_space::report::progress::{self, Progress};
use tokio_util::sync::CancellationToken;

use tag_space::ending::{EXIT_INTERRUPTED as INTERRUPTED, exit_code};

fn main() -> ExitCode {
    // clap prints usage errors itself and exits with 2.
    let args = Args::parse();
    if let Some(Command::Cache(cmd)) = &args.command {
        return match app::cache_command(&args, cmd) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                report::error_line(&format!("{e:#}"));
                ExitCode::from(2)
            }
        };
    }
    if let Some(Command::Jobs(cmd)) = &args.command {
        return match tag_space::backfill::jobs_command(&args, cmd) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                report::error_line(&format!("{e:#}"));
                ExitCode::from(2)
            }
        };
    }
    let progress = Progress::new();
    progress.install();
    report::logging::init(args.quiet, args.verbose, args.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            report::error_line(&format!("cannot start the async runtime: {e}"));
            return ExitCode::from(2);
        }
    };
    let cancel = CancellationToken::new();
    let session = Session {
        cancel: cancel.clone(),
        progress: progress.clone(),
    };
    let outcome = runtime.block_on(async {
        // Registered before the run starts, so that no early Ctrl-C kills it outright.
        let signals = tokio::spawn(watch_signals(
            Signals::new(),
            cancel.clone(),
            progress.clone(),
        ));
        let outcome = app::run_with(args, session).await;
        signals.abort();
        outcome
    });
    progress::clear();
    if let Err(e) = &outcome {
        report::error_line(&format!("{e:#}"));
    }
    // Don't wait for a listing or provider request abandoned after the grace.
    runtime.shutdown_background();
    match outcome {
        _ if cancel.is_cancelled() => ExitCode::from(INTERRUPTED),
        // The same rule the run history records (`tag_space::ending`).
        Ok(report) => ExitCode::from(exit_code(report.run().status, report.counts().failed)),
        Err(_) => ExitCode::from(2),
    }
}

/// The first Ctrl-C or SIGTERM cancels the run (no new work; requests in flight get the
/// grace; the partial summary and reports are still written); a second one stops at once.
async fn watch_signals(
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
        app::INTERRUPT_GRACE.as_secs()
    );
    cancel.cancel();
    let second = signals.next().await;
    progress::clear();
    report::error_line(&format!("{second} again: stopping now"));
    std::process::exit(INTERRUPTED.into());
}

/// SIGINT and SIGTERM (Ctrl-C/Ctrl-Break on Windows), registered as soon as this is built.
struct Signals {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
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
