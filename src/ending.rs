//! How a run ends: the stop on a total LLM outage, the end state every report and the run
//! history record, the exit code that goes with it, and the end-of-run output. With `app`
//! and `main.rs`, the only code that uses `anyhow`.
//!
//! | end | exit code |
//! | --- | --- |
//! | finished, no page failed | 0 |
//! | finished, some pages failed | 1 |
//! | failed: Confluence unreachable, space not found, unreadable listing, no LLM provider usable, a report that cannot be written | 2 |
//! | interrupted (Ctrl-C, SIGTERM) | 130 |

use std::sync::Mutex;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::cache::RunEnd;
use crate::pipeline::RunState;
use crate::report;
use crate::report::model::RunReport;
use crate::report::{OutputFormat, ReportFile};

use crate::governor::Chain;
use crate::llm::{Answer, LlmError, PageText, Provider};
use crate::report::model::RunStatus;

/// 128 + SIGINT, as shells report a run stopped by Ctrl-C.
pub const EXIT_INTERRUPTED: u8 = 130;

/// The exit code of a run that ended this way with `failed_pages` pages failed.
pub fn exit_code(status: RunStatus, failed_pages: u64) -> u8 {
    match status {
        RunStatus::Interrupted => EXIT_INTERRUPTED,
        RunStatus::Failed => 2,
        RunStatus::Finished if failed_pages > 0 => 1,
        RunStatus::Finished => 0,
    }
}

/// No LLM provider can be used: one line per provider saying why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no LLM provider can be used, so the run stopped: {}", .providers.join("; "))]
pub struct Outage {
    pub providers: Vec<String>,
}

impl Outage {
    /// The headline, then one line per provider (for a terminal).
    pub fn lines(&self) -> String {
        let mut s = String::from("no LLM provider can be used, so the run stopped:");
        for p in &self.providers {
            s.push_str("\n  ");
            s.push_str(p);
        }
        s
    }
}

/// The provider chain, watched for a total outage: when a batch fails and
/// [`Chain::outage`] says every provider is down without having answered once, the run is
/// stopped through `stop` (the pipeline's cancellation token) instead of failing every
/// remaining page the same way.
pub struct OutageWatch<'a, P> {
    chain: &'a Chain<P>,
    stop: CancellationToken,
    found: Mutex<Option<Outage>>,
}

impl<'a, P: Provider> OutageWatch<'a, P> {
    pub fn new(chain: &'a Chain<P>, stop: CancellationToken) -> Self {
        Self {
            chain,
            stop,
            found: Mutex::new(None),
        }
    }

    /// The outage that stopped the run, if one did.
    pub fn outage(&self) -> Option<Outage> {
        self.found.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl<P: Provider> Provider for OutageWatch<'_, P> {
    fn name(&self) -> &'static str {
        self.chain.name()
    }

    async fn classify(&self, batch: &[PageText]) -> Result<Answer, LlmError> {
        let result = self.chain.classify(batch).await;
        if result.is_err() {
            if let Some(providers) = self.chain.outage() {
                let mut found = self.found.lock().unwrap_or_else(|e| e.into_inner());
                if found.is_none() {
                    tracing::error!(
                        "no LLM provider can be used: stopping the run ({})",
                        providers.join("; ")
                    );
                    *found = Some(Outage { providers });
                    self.stop.cancel();
                }
            }
        }
        result
    }
}

/// The end-of-run output and the `--report` files. A run that stopped before its first page
/// (space not found, bad credentials) has nothing to report: the error line says it all.
pub fn write_reports(
    format: OutputFormat,
    no_color: bool,
    files: &[ReportFile],
    run_report: &RunReport,
) -> anyhow::Result<()> {
    if run_report.run().status == RunStatus::Failed && run_report.counts().seen == 0 {
        return Ok(());
    }
    report::print_final(run_report, format, no_color).context("cannot write to stdout")?;
    for file in files {
        report::write_report_file(file, run_report)
            .with_context(|| format!("cannot write the report {}", file.path.display()))?;
    }
    Ok(())
}

/// An error as one line, for the run history and the reports.
pub fn one_line(e: &anyhow::Error) -> String {
    crate::http::snippet(&format!("{e:#}"))
}

/// Records how the run ended in the state file's run history.
pub fn record_end(state: &RunState, end: &RunEnd) {
    if let Err(e) = state.store.end_run(&state.run, end) {
        report::warning_line(&format!("cannot record the end of the run: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_end() {
        assert_eq!(exit_code(RunStatus::Finished, 0), 0);
        assert_eq!(exit_code(RunStatus::Finished, 3), 1);
        assert_eq!(exit_code(RunStatus::Failed, 0), 2);
        assert_eq!(exit_code(RunStatus::Interrupted, 5), 130);
    }

    #[test]
    fn an_outage_is_one_line_per_provider() {
        let o = Outage {
            providers: vec![
                "gemini: not authorised: check the API key (HTTP 401)".into(),
                "openai: failed on every call: connection failed: refused (127.0.0.1:9)".into(),
            ],
        };
        assert_eq!(
            o.lines(),
            "no LLM provider can be used, so the run stopped:\n  gemini: not authorised: check the API key (HTTP 401)\n  openai: failed on every call: connection failed: refused (127.0.0.1:9)"
        );
    }
}
