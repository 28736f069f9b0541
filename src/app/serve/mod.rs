//! `tag-space serve`: the settings, the shared runner, the tasks' store, the listener and
//! the signal handler, put together. The edge, so `anyhow` is fine here.

mod runner;

use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

pub use runner::PipelineRunner;

use crate::cache::{Store, StoreOptions};
use crate::cli::{Args, ServeArgs};
use crate::config::{self, ServeConfig};
use crate::report;
use crate::serve::{self, Service, ServiceSettings};
use crate::signals::Signals;

/// Runs the service until SIGTERM/Ctrl-C; `Err` (exit 2) when it cannot start.
pub fn serve_command(args: &Args, cmd: &ServeArgs) -> anyhow::Result<()> {
    let run_args = config::serve::run_args(args, cmd);
    report::logging::init(&config::log_settings(&run_args));
    let settings = config::serve_config(args, cmd)?;
    // Before anything else: an open address without a token is refused outright.
    serve::check_bind(settings.bind, settings.token.as_ref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let served = runtime.block_on(run(settings));
    // Don't wait for a provider request abandoned after the grace.
    runtime.shutdown_background();
    served
}

async fn run(settings: ServeConfig) -> anyhow::Result<()> {
    for w in &settings.run.warnings {
        report::warning_line(w);
    }
    let runner = PipelineRunner::new(settings.run)?;
    let store = match &runner.config().cache.path {
        Some(path) => Some(Arc::new(
            Store::open(path, StoreOptions::from_settings(&runner.config().cache))
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        )),
        None => {
            report::warning_line("no state file: tasks are not kept across a restart");
            None
        }
    };
    let service = Service::new(
        Arc::new(runner),
        store,
        ServiceSettings {
            max_tasks: settings.tasks,
            retention: settings.retention,
            grace: super::INTERRUPT_GRACE,
        },
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let signals = Signals::new();
    let listener = serve::bind(settings.bind, settings.token.as_ref()).await?;
    let addr = listener.local_addr().unwrap_or(settings.bind);
    report::notice_line(&format!(
        "serving on http://{addr} ({}, at most {} tasks at once); SIGTERM or Ctrl-C stops it",
        if settings.token.is_some() {
            "bearer token required"
        } else {
            "no token: loopback only"
        },
        settings.tasks
    ));
    let shutdown = CancellationToken::new();
    let watch = tokio::spawn(watch_signals(signals, shutdown.clone()));
    serve::serve(listener, service, settings.token, shutdown)
        .await
        .context("the service stopped")?;
    watch.abort();
    report::notice_line("stopped (tasks that were running are recorded as interrupted)");
    Ok(())
}

/// The first SIGTERM/Ctrl-C stops the service (tasks get their grace); a second one exits
/// at once with 130.
async fn watch_signals(signals: std::io::Result<Signals>, shutdown: CancellationToken) {
    let mut signals = match signals {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch for SIGTERM/Ctrl-C");
            return;
        }
    };
    let first = signals.next().await;
    report::notice_line(&format!(
        "{first}: taking no new request, stopping the running tasks (at most {}s)",
        super::INTERRUPT_GRACE.as_secs()
    ));
    shutdown.cancel();
    let second = signals.next().await;
    report::error_line(&format!("{second} again: stopping now"));
    std::process::exit(crate::ending::EXIT_INTERRUPTED.into());
}
