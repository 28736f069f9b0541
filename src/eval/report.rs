//! What `eval` shows: a table on stdout, and the same figures as JSON (documented in
//! `docs/eval.md`) or Markdown.

use std::io::{self, Write};

use comfy_table::{CellAlignment, ContentArrangement, Table, presets};
use serde::Serialize;

use super::score::{Counts, Scores};

/// The version of the JSON document's shape; raised on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// How many "to review" labels the table lists (the reports list them all).
const REVIEW_SHOWN: usize = 10;

/// Pages and how far each got.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PageCounts {
    /// Pages the space listed.
    pub listed: u64,
    /// Pages without any human taxonomy label: not classified.
    pub without_human_labels: u64,
    /// Pages chosen for classification (after `--sample` and `--limit`).
    pub selected: u64,
    /// Selected pages the provider could not answer for (or without text): not scored.
    pub failed: u64,
}

/// One page's two sides, for the report files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PageResult {
    pub id: String,
    pub title: String,
    /// The taxonomy tags people put there (aliases read as their tag).
    pub human: Vec<String>,
    /// The tags proposed; `null` when the page failed.
    pub proposed: Option<Vec<String>>,
}

/// The whole evaluation, as `--report eval.json` writes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport {
    pub schema_version: u32,
    pub space: String,
    /// The model answers are keyed under (`gemini/<model>`, `openai/<model>`, `rules/keywords`).
    pub model: String,
    pub prompt_version: String,
    pub taxonomy_fingerprint: String,
    pub pages: PageCounts,
    /// Model calls made (0 when every answer came from the cache).
    pub calls: u64,
    pub scores: Scores,
    pub page_results: Vec<PageResult>,
}

fn ratio(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{v:.2}"))
}

fn counts_row(name: &str, support: String, c: &Counts) -> Vec<String> {
    vec![
        name.into(),
        support,
        c.tp.to_string(),
        c.fp.to_string(),
        c.fn_.to_string(),
        ratio(c.precision),
        ratio(c.recall),
        ratio(c.f1),
    ]
}

/// The per-label table with the averages, then what to review.
pub fn write_table(out: &mut impl Write, r: &EvalReport) -> io::Result<()> {
    let s = &r.scores;
    writeln!(
        out,
        "tag-space eval: space {} ({}; dry run: nothing written): {} pages scored, {} without human taxonomy labels left out, {} failed",
        r.space, r.model, s.pages_scored, r.pages.without_human_labels, r.pages.failed
    )?;
    let mut t = Table::new();
    t.load_preset(presets::ASCII_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled);
    t.set_header(vec![
        "label",
        "support",
        "tp",
        "fp",
        "fn",
        "precision",
        "recall",
        "f1",
    ]);
    for l in &s.labels {
        t.add_row(counts_row(&l.label, l.support.to_string(), &l.counts));
    }
    t.add_row(counts_row("micro avg", String::new(), &s.micro));
    let m = &s.macro_;
    t.add_row(vec![
        "macro avg".into(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        ratio(m.precision),
        ratio(m.recall),
        ratio(m.f1),
    ]);
    for col in t.column_iter_mut().skip(1) {
        col.set_cell_alignment(CellAlignment::Right);
    }
    writeln!(out, "{t}")?;
    write_review(out, s)
}

fn write_review(out: &mut impl Write, s: &Scores) -> io::Result<()> {
    if s.to_review.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "to review: {} proposed labels no person used on that page (human labels are incomplete: not all are wrong)",
        s.to_review.len()
    )?;
    for r in s.to_review.iter().take(REVIEW_SHOWN) {
        writeln!(out, "  {} \"{}\": {}", r.page_id, r.title, r.label)?;
    }
    if s.to_review.len() > REVIEW_SHOWN {
        writeln!(
            out,
            "  ... {} more in --report",
            s.to_review.len() - REVIEW_SHOWN
        )?;
    }
    Ok(())
}

/// The report as Markdown: the same table, and every label to review.
pub fn write_markdown(out: &mut impl Write, r: &EvalReport) -> io::Result<()> {
    let s = &r.scores;
    writeln!(out, "## tag-space eval: space {}\n", r.space)?;
    writeln!(
        out,
        "Model `{}`, prompt `{}`: {} pages scored, {} without human taxonomy labels left out, {} failed; {} model calls.\n",
        r.model,
        r.prompt_version,
        s.pages_scored,
        r.pages.without_human_labels,
        r.pages.failed,
        r.calls
    )?;
    writeln!(
        out,
        "| label | support | tp | fp | fn | precision | recall | f1 |"
    )?;
    writeln!(
        out,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )?;
    let row = |cells: Vec<String>| format!("| {} |", cells.join(" | "));
    for l in &s.labels {
        writeln!(
            out,
            "{}",
            row(counts_row(
                &format!("`{}`", l.label),
                l.support.to_string(),
                &l.counts
            ))
        )?;
    }
    writeln!(
        out,
        "{}",
        row(counts_row("**micro avg**", String::new(), &s.micro))
    )?;
    let m = &s.macro_;
    writeln!(
        out,
        "| **macro avg** | | | | | {} | {} | {} |",
        ratio(m.precision),
        ratio(m.recall),
        ratio(m.f1)
    )?;
    if !s.to_review.is_empty() {
        writeln!(out, "\n### To review ({})\n", s.to_review.len())?;
        writeln!(
            out,
            "Proposed, but no person used the label on that page:\n"
        )?;
        for rv in &s.to_review {
            writeln!(
                out,
                "- {} {}: `{}`",
                rv.page_id,
                rv.title.replace(['|', '\n'], " "),
                rv.label
            )?;
        }
    }
    Ok(())
}
