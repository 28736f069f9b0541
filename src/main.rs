//! The `tag-space` binary: parse flags, resolve the configuration, start the runtime, watch
//! for Ctrl-C/SIGTERM, run, and map the outcome to an exit code: 0 all pages fine, 1 some
//! pages failed, 2 usage/configuration/fatal error (or another run holds the lock), 130
//! interrupted. Errors are printed with their causes (`{e:#}`), each once.

use std::process::ExitCode;

use clap::Parser;
use tag_space::app::{self, Session};
use tag_space::cli::{Args, Command};
use tag_space::config::{self, Config};
use tag_space::ending::{EXIT_INTERRUPTED, exit_code};
use tag_space::report;
use tag_space::report::progress::{self, Progress};
use tag_space::signals::{self, Signals};

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
    // Before the rest of the configuration, whose errors then come in the chosen format.
    report::logging::init(&config::log_settings(&args));
    let config = match Config::load(&args) {
        Ok(config) => config,
        Err(e) => return fail(&e.into()),
    };
    label(config, progress)
}

/// Labels the space: the run on a multi-threaded runtime, with the signal handler beside it.
fn label(config: Config, progress: Progress) -> ExitCode {
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
        let outcome = app::run(config, session).await;
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
        // The same rule the run history records (`tag_space::ending`).
        Ok(report) => ExitCode::from(exit_code(report.run().status, report.failures())),
        Err(_) => ExitCode::from(2),
    }
}

/// Prints the error with its causes, each once, and exits with 2.
fn fail(e: &anyhow::Error) -> ExitCode {
    report::error_line(&format!("{e:#}"));
    ExitCode::from(2)
}
