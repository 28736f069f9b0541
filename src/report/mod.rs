//! Everything a run shows a person. With `main.rs`, the only code that writes to the
//! terminal: per-page lines and the end-of-run table (or JSON) on stdout, logs on stderr.
//!
//! Aggregation ([`model::RunReport`]) is pure; rendering writes to any `impl Write`, so tests render
//! into a buffer.

pub mod json;
pub mod logging;
pub mod markdown;
mod metrics;
pub mod model;
mod prices;
pub mod progress;
mod settings;
pub mod table;
mod units;

#[cfg(test)]
mod golden_tests;

use std::io::{self, IsTerminal, Write};

use std::path::PathBuf;

use model::RunReport;

use crate::pipeline::{PageOutcome, Status};

/// What the run prints on stdout at the end (`--format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OutputFormat {
    /// Per-page lines and a metrics table.
    #[default]
    Table,
    /// The JSON report only.
    Json,
}

/// The kind of a `--report` file, from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    Json,
    Markdown,
}

/// A report to write at the end of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportFile {
    pub path: PathBuf,
    pub kind: ReportKind,
}

/// One line for a page that changed, was skipped, failed or got no label; nothing for an
/// unchanged page. A changed page shows every label added (`+label`) and removed (`-label`).
pub fn write_page_line(out: &mut impl Write, o: &PageOutcome, dry_run: bool) -> io::Result<()> {
    let title = o.title.escape_debug();
    match o.status {
        Status::Tagged => {
            let verb = match (dry_run, o.removed.is_empty(), o.added.is_empty()) {
                (true, true, _) => "would add",
                (true, false, true) => "would remove",
                (true, false, false) => "would change",
                (false, true, _) => "added",
                (false, false, true) => "removed",
                (false, false, false) => "changed",
            };
            let labels: Vec<String> = o
                .added
                .iter()
                .map(|l| format!("+{l}"))
                .chain(o.removed.iter().map(|l| format!("-{l}")))
                .collect();
            let by = o.provider.map(|p| format!("  [{p}]")).unwrap_or_default();
            writeln!(
                out,
                "{verb:<10} {id} \"{title}\": {}{by}",
                labels.join(" "),
                id = o.id
            )
        }
        Status::NoLabel => writeln!(
            out,
            "{:<10} {} \"{title}\": the model chose no label{}",
            "no label",
            o.id,
            o.provider.map(|p| format!("  [{p}]")).unwrap_or_default()
        ),
        Status::Skipped => writeln!(
            out,
            "{:<10} {} \"{title}\": {}",
            "skipped",
            o.id,
            o.reason.as_deref().unwrap_or("nothing to classify")
        ),
        Status::Failed => writeln!(
            out,
            "{:<10} {} \"{title}\": {}",
            "failed",
            o.id,
            o.reason.as_deref().unwrap_or("unknown error")
        ),
        Status::Stale => writeln!(
            out,
            "{:<10} {} \"{title}\": {}",
            "stale",
            o.id,
            o.reason.as_deref().unwrap_or("edited since the plan")
        ),
        Status::Unchanged => Ok(()),
    }
}

/// A fatal error on stderr, in the program's voice (with `--log-format json`, a JSON log
/// line like every other line on stderr). A message of several lines (a headline, then one
/// line per provider) gives one prefixed line each.
pub fn error_line(message: &str) {
    for line in message.lines() {
        if logging::json_logs() {
            tracing::error!("{line}");
            continue;
        }
        progress::suspend(|| {
            let _ = writeln!(io::stderr().lock(), "tag-space: {line}");
        });
    }
}

/// A non-fatal warning on stderr.
pub fn warning_line(message: &str) {
    if logging::json_logs() {
        tracing::warn!("{message}");
        return;
    }
    progress::suspend(|| {
        let _ = writeln!(io::stderr().lock(), "tag-space: warning: {message}");
    });
}

/// A line that says what the run did besides its pages (e.g. the batch jobs it submitted,
/// or where `tag-space serve` listens), on stderr like the warnings.
pub fn notice_line(message: &str) {
    if logging::json_logs() {
        tracing::info!("{message}");
        return;
    }
    progress::suspend(|| {
        let _ = writeln!(io::stderr().lock(), "tag-space: {message}");
    });
}

/// Writes a page line on stdout, ignoring a closed pipe (`| head`).
/// Written with the progress bar cleared, so that the line does not tear it.
/// In a run over several spaces, `space` is the page's, and the line starts with `[KEY] `.
pub fn print_page_line(space: Option<&str>, o: &PageOutcome, dry_run: bool) {
    progress::suspend(|| {
        let mut out = io::stdout().lock();
        if let Some(space) = space {
            let _ = write!(out, "[{space}] ");
        }
        let _ = write_page_line(&mut out, o, dry_run);
    });
}

/// The end-of-run output on stdout: the metrics table, or the JSON report.
/// The progress bar is cleared first: the table replaces it.
pub fn print_final(report: &RunReport, format: OutputFormat, no_color: bool) -> io::Result<()> {
    progress::clear();
    let mut out = io::stdout().lock();
    match format {
        OutputFormat::Table => {
            let color = !no_color && io::stdout().is_terminal();
            writeln!(out)?;
            table::write_metrics_table(&mut out, report, color)
        }
        OutputFormat::Json => json::write_json(&mut out, report),
    }
}

/// Writes a `--report` file.
pub fn write_report_file(file: &ReportFile, report: &RunReport) -> io::Result<()> {
    let mut out = io::BufWriter::new(std::fs::File::create(&file.path)?);
    match file.kind {
        ReportKind::Json => json::write_json(&mut out, report)?,
        ReportKind::Markdown => {
            markdown::write_markdown(&mut out, report, &markdown::MarkdownOptions::default())?
        }
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(id: &str, status: Status, added: &[&str], reason: Option<&str>) -> PageOutcome {
        PageOutcome {
            id: id.into(),
            title: format!("Title \"{id}\""),
            url: None,
            status,
            labels_before: vec![],
            chosen: added.iter().map(|s| s.to_string()).collect(),
            added: added.iter().map(|s| s.to_string()).collect(),
            removed: vec![],
            provider: Some(crate::pipeline::Provenance::Provider("gemini")),
            reason: reason.map(Into::into),
            version: None,
            content_hash: None,
        }
    }

    #[test]
    fn page_lines_are_stable() {
        let pages = [
            outcome("1", Status::Tagged, &["type-howto", "tool-jira"], None),
            outcome("2", Status::Unchanged, &[], None),
            outcome("3", Status::Skipped, &[], Some("the page has no text")),
            outcome(
                "4",
                Status::Failed,
                &[],
                Some("gemini: quota exhausted (HTTP 429)"),
            ),
        ];
        let mut buf = Vec::new();
        for p in &pages {
            write_page_line(&mut buf, p, true).unwrap();
        }
        let expected = r#"would add  1 "Title \"1\"": +type-howto +tool-jira  [gemini]
skipped    3 "Title \"3\"": the page has no text
failed     4 "Title \"4\"": gemini: quota exhausted (HTTP 429)
"#;
        assert_eq!(String::from_utf8(buf).unwrap(), expected);
    }
}
