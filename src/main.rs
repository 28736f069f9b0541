//! The `tag-space` binary: parse flags, start the runtime, run, map the outcome to an exit
//! code (0 all pages fine, 1 some pages failed, 2 usage/configuration/fatal error).

use std::process::ExitCode;

use clap::Parser;
use tag_space::{app, cli::Args, report};

fn main() -> ExitCode {
    // clap prints usage errors itself and exits with 2.
    let args = Args::parse();
    report::logging::init(args.quiet, args.verbose);
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
    match runtime.block_on(app::run(args)) {
        Ok(report) if report.counts().failed == 0 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            report::error_line(&format!("{e:#}"));
            ExitCode::from(2)
        }
    }
}
