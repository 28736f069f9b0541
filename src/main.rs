//! The `tag-space` binary: parse flags, resolve the configuration, start the runtime, watch
//! for Ctrl-C/SIGTERM, run, and map the outcome to an exit code: 0 all pages fine, 1 some
//! pages failed, 2 usage/configuration/fatal error (or another run holds the lock), 130
//! interrupted. Errors are printed with their causes (`{e:#}`), each once.

use std::process::ExitCode;

use clap::Parser;
use tag_space::app::{self, Session};
use tag_space::cli::{ApplyArgs, Args, Command};
use tag_space::config::{self, Config};
use tag_space::ending::{EXIT_INTERRUPTED, exit_code};
use tag_space::report::progress::{self, Progress};
use tag_space::signals::{self, Signals};
use tag_space::{plan, report};

fn main() -> ExitCode {
    // clap prints usage errors itself and exits with 2.
    let args = Args::parse();
    if let Some(Command::Cache(cmd)) = &args.command {
        return match app::cache_command(&args, cmd) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        };
    }
    if let Some(Command::Jobs(cmd)) = &args.command {
        return match app::jobs_command(&args, cmd) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        };
    }
    if let Some(Command::Taxonomy(cmd)) = &args.command {
        return match app::taxonomy_command(&args, cmd) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        };
    }
    if let Some(Command::Eval(cmd)) = &args.command {
        return match app::eval_command(&args, cmd) {
            Ok(code) => ExitCode::from(code),
            Err(e) => fail(&e),
        };
    }
    if let Some(Command::Serve(cmd)) = &args.command {
        return match app::serve_command(&args, cmd) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        };
    }
    let progress = Progress::new();
    progress.install();
    if let Some(Command::Apply(a)) = &args.command {
        return apply(a, progress);
    }
    // Before the rest of the configuration, whose errors then come in the chosen format.
    report::logging::init(&config::log_settings(&args));
    let config = match Config::load(&args) {
        Ok(config) => config,
        Err(e) => return fail(&e.into()),
    };
    on_runtime(progress, |session| async move {
        let report = app::run(config, session).await?;
        // The same rule the run history records (`tag_space::ending`).
        Ok(exit_code(report.run().status, report.failures()))
    })
}

/// `tag-space apply FILE`: the plan is read and checked before anything else.
fn apply(a: &ApplyArgs, progress: Progress) -> ExitCode {
    report::logging::init(&config::log_settings(&a.run_args("", false)));
    let plan = match plan::read(&a.file) {
        Ok(plan) => plan,
        Err(e) => return fail(&e.into()),
    };
    let config = match app::apply_config(a, &plan) {
        Ok(config) => config,
        Err(e) => return fail(&e.into()),
    };
    let path = a.file.clone();
    on_runtime(progress, |session| app::apply(config, plan, path, session))
}

/// Runs `work` (a run, or applying a plan) on a multi-threaded runtime, with the signal
/// handler beside it; `Ok` carries the exit code.
fn on_runtime<F, Fut>(progress: Progress, work: F) -> ExitCode
where
    F: FnOnce(Session) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<u8>>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return fail(&anyhow::Error::new(e).context("cannot start the async runtime"));
        }
    };
    let session = Session {
        cancel: Default::default(),
        progress: progress.clone(),
    };
    let cancel = session.cancel.clone();
    let outcome = runtime.block_on(async {
        // Registered before the run starts, so that no early Ctrl-C kills it outright.
        let watch = tokio::spawn(signals::watch(Signals::new(), cancel.clone(), progress));
        let outcome = work(session).await;
        watch.abort();
        outcome
    });
    progress::clear();
    if let Err(e) = &outcome {
        report::error_line(&format!("{e:#}"));
    }
    // Don't wait for a listing or provider request abandoned after the grace.
    runtime.shutdown_background();
    match outcome {
        _ if cancel.is_cancelled() => ExitCode::from(EXIT_INTERRUPTED),
        Ok(code) => ExitCode::from(code),
        Err(_) => ExitCode::from(2),
    }
}

/// Prints the error with its causes, each once, and exits with 2.
fn fail(e: &anyhow::Error) -> ExitCode {
    report::error_line(&format!("{e:#}"));
    ExitCode::from(2)
}
