//! Everything a run shows a person. With `main.rs`, the only code that writes to the
//! terminal: per-page lines and the end-of-run summary on stdout, logs on stderr.
//!
//! Aggregation ([`Summary`]) is pure; rendering writes to any `impl Write`, so tests render
//! into a buffer.

pub mod json;
pub mod logging;
pub mod markdown;
pub mod model;
pub mod table;
mod units;

#[cfg(test)]
mod golden_tests;

use std::io::{self, Write};
use std::time::Duration;

use crate::pipeline::{PageOutcome, Status};

/// One provider's figures for the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderLine {
    pub name: &'static str,
    pub calls: u64,
    pub rate_limited: u64,
    pub retries: u64,
    /// Batches this provider handed on to the next one.
    pub fallbacks: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// Counts of a run, built page by page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub space: String,
    pub dry_run: bool,
    pub seen: u64,
    pub tagged: u64,
    pub unchanged: u64,
    pub skipped: u64,
    pub failed: u64,
    /// Labels added (or, in a dry run, proposed).
    pub labels: u64,
    pub providers: Vec<ProviderLine>,
    pub elapsed: Duration,
}

impl Summary {
    pub fn new(space: &str, dry_run: bool) -> Self {
        Self {
            space: space.to_string(),
            dry_run,
            ..Self::default()
        }
    }

    pub fn record(&mut self, o: &PageOutcome) {
        self.seen += 1;
        match o.status {
            Status::Tagged => self.tagged += 1,
            Status::Unchanged => self.unchanged += 1,
            Status::Skipped => self.skipped += 1,
            Status::Failed => self.failed += 1,
        }
        self.labels += o.added.len() as u64;
    }
}

/// One line for a page that changed, was skipped or failed; nothing for an unchanged page.
pub fn write_page_line(out: &mut impl Write, o: &PageOutcome, dry_run: bool) -> io::Result<()> {
    let title = o.title.escape_debug();
    match o.status {
        Status::Tagged => {
            let verb = if dry_run { "would add" } else { "added" };
            let labels: Vec<String> = o.added.iter().map(|l| format!("+{l}")).collect();
            let by = o.provider.map(|p| format!("  [{p}]")).unwrap_or_default();
            writeln!(
                out,
                "{verb:<10} {id} \"{title}\": {}{by}",
                labels.join(" "),
                id = o.id
            )
        }
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
        Status::Unchanged => Ok(()),
    }
}

/// The end-of-run summary.
pub fn write_summary(out: &mut impl Write, s: &Summary) -> io::Result<()> {
    let mode = if s.dry_run {
        " (dry run: nothing written)"
    } else {
        ""
    };
    let verb = if s.dry_run { "to add" } else { "added" };
    writeln!(out)?;
    writeln!(out, "space {}{mode}", s.space)?;
    writeln!(
        out,
        "  pages      {} seen, {} tagged, {} unchanged, {} skipped, {} failed",
        s.seen, s.tagged, s.unchanged, s.skipped, s.failed
    )?;
    writeln!(out, "  labels     {} {verb}", s.labels)?;
    for p in &s.providers {
        writeln!(
            out,
            "  {:<10} {} calls, {} rate-limited (429), {} retries, {} fallbacks, {} tokens in, {} out",
            p.name,
            p.calls,
            p.rate_limited,
            p.retries,
            p.fallbacks,
            p.input_tokens,
            p.output_tokens
        )?;
    }
    writeln!(out, "  elapsed    {:.1}s", s.elapsed.as_secs_f64())
}

/// A fatal error or warning on stderr, in the program's voice.
pub fn error_line(message: &str) {
    let _ = writeln!(io::stderr().lock(), "tag-space: {message}");
}

/// A non-fatal warning on stderr.
pub fn warning_line(message: &str) {
    let _ = writeln!(io::stderr().lock(), "tag-space: warning: {message}");
}

/// Writes a page line on stdout, ignoring a closed pipe (`| head`).
pub fn print_page_line(o: &PageOutcome, dry_run: bool) {
    let _ = write_page_line(&mut io::stdout().lock(), o, dry_run);
}

/// Writes the summary on stdout.
pub fn print_summary(s: &Summary) {
    let _ = write_summary(&mut io::stdout().lock(), s);
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
            provider: Some("gemini"),
            reason: reason.map(Into::into),
        }
    }

    #[test]
    fn page_lines_and_summary_are_stable() {
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
        let mut s = Summary::new("ENG", true);
        let mut buf = Vec::new();
        for p in &pages {
            s.record(p);
            write_page_line(&mut buf, p, true).unwrap();
        }
        s.providers.push(ProviderLine {
            name: "gemini",
            calls: 3,
            rate_limited: 1,
            retries: 1,
            fallbacks: 1,
            input_tokens: 900,
            output_tokens: 60,
        });
        s.providers.push(ProviderLine {
            name: "openai",
            calls: 1,
            ..Default::default()
        });
        s.elapsed = Duration::from_millis(2345);
        write_summary(&mut buf, &s).unwrap();
        let expected = r#"would add  1 "Title \"1\"": +type-howto +tool-jira  [gemini]
skipped    3 "Title \"3\"": the page has no text
failed     4 "Title \"4\"": gemini: quota exhausted (HTTP 429)

space ENG (dry run: nothing written)
  pages      4 seen, 1 tagged, 1 unchanged, 1 skipped, 1 failed
  labels     2 to add
  gemini     3 calls, 1 rate-limited (429), 1 retries, 1 fallbacks, 900 tokens in, 60 out
  openai     1 calls, 0 rate-limited (429), 0 retries, 0 fallbacks, 0 tokens in, 0 out
  elapsed    2.3s
"#;
        assert_eq!(String::from_utf8(buf).unwrap(), expected);
    }
}
