//! The Markdown report (`--report FILE.md`): a summary fit for a pull-request comment or
//! `$GITHUB_STEP_SUMMARY`.
//!
//! Every piece of text that comes from Confluence, a model or a server (titles, labels,
//! failure reasons, URLs) goes through [`escape`] or [`link_target`], so that a title such as
//! `a | b`, `*x*`, `[x](y)`, `` `x` ``, `<img src=x>` or `@team` shows as written and cannot
//! break a table, inject markup or mention anyone. The output is bounded whatever the size of
//! the space: see [`MarkdownOptions`].

use std::collections::BTreeMap;
use std::io::{self, Write};

use super::model::{Mode, PageView, RunReport, rfc3339};
use super::units;
use crate::pipeline::Status;

mod figures;

/// Bounds on the Markdown report. The defaults keep a report of any space well under
/// GitHub's 65,536-character limit for a comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkdownOptions {
    /// Pages listed under one label; the rest are counted ("and 12 more").
    pub max_pages_per_label: usize,
    /// Pages listed under all labels together; after that, labels show their count only.
    pub max_pages_listed: usize,
    /// Failed pages listed; the rest are counted.
    pub max_failures: usize,
    /// Longer titles and reasons are cut, with "…".
    pub max_text_chars: usize,
}

impl Default for MarkdownOptions {
    fn default() -> Self {
        MarkdownOptions {
            max_pages_per_label: 10,
            max_pages_listed: 150,
            max_failures: 30,
            max_text_chars: 100,
        }
    }
}

/// Writes the Markdown report.
pub fn write_markdown(
    out: &mut impl Write,
    r: &RunReport,
    opts: &MarkdownOptions,
) -> io::Result<()> {
    let run = r.run();
    write_heading(out, r, opts)?;
    if r.several_spaces() {
        write_spaces(out, r, opts)?;
    }
    let pages = r.pages();
    if !r.keeps_pages() {
        writeln!(out)?;
        writeln!(out, "_Pages were not kept for this report._")?;
    } else {
        if run.mode == Mode::Sync || r.counts().labels_removed > 0 {
            write_removals(out, &pages, run.dry_run, opts)?;
        }
        write_labels(out, &pages, run.dry_run, opts)?;
        write_failures(out, &pages, opts)?;
        write_stale(out, &pages, opts)?;
    }
    figures::write_providers(out, r)?;
    if let Some(site) = r.confluence() {
        figures::write_confluence(out, site)?;
    }
    writeln!(out)?;
    write_footer(out, r)
}

/// The title, why the run stopped (if it did), and the page counts.
fn write_heading(out: &mut impl Write, r: &RunReport, opts: &MarkdownOptions) -> io::Result<()> {
    let run = r.run();
    let c = r.counts();
    let dry = run.dry_run;
    // The first line says when the run did not finish, so that a partial report is never
    // read as a whole space.
    let end = r
        .end_note()
        .map(|n| format!(": **{}**", escape(&upper_first(&n))))
        .unwrap_or_default();
    writeln!(
        out,
        "## tag-space: {} ({}{}){end}",
        escape(&match r.several_spaces() {
            true => r.space_title(),
            false => run.space.clone(),
        }),
        run.mode.as_str(),
        if dry { ", dry run" } else { "" }
    )?;
    if let Some(e) = &run.error {
        writeln!(out)?;
        writeln!(
            out,
            "Stopped by: {}",
            escape(&cut(e, opts.max_text_chars * 3))
        )?;
    }
    writeln!(out)?;
    // Only `tag-space apply` has stale pages: other runs' line stays as it was.
    let stale = match c.stale {
        0 => String::new(),
        n => format!(
            ", **{}** stale (edited or gone since the plan)",
            units::count(n)
        ),
    };
    writeln!(
        out,
        "**{}** pages seen: **{}** tagged, {} unchanged, {} with no label that fits, {} skipped, **{}** failed{stale}; **{}** labels {}, **{}** {}.",
        units::count(c.seen),
        units::count(c.tagged),
        units::count(c.unchanged),
        units::count(c.no_label),
        units::count(c.skipped),
        units::count(c.failed),
        units::count(c.labels),
        if dry { "to add" } else { "added" },
        units::count(c.labels_removed),
        if dry { "to remove" } else { "removed" },
    )
}

/// A run over several spaces: one row per space, with why a failed space failed.
fn write_spaces(out: &mut impl Write, r: &RunReport, opts: &MarkdownOptions) -> io::Result<()> {
    let dry = r.run().dry_run;
    writeln!(out)?;
    writeln!(out, "### Spaces")?;
    writeln!(out)?;
    writeln!(
        out,
        "| space | ended | seen | tagged | unchanged | failed | labels {} | labels {} | why |",
        if dry { "to add" } else { "added" },
        if dry { "to remove" } else { "removed" },
    )?;
    writeln!(
        out,
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    )?;
    for s in r.spaces() {
        let c = s.counts;
        let why = s
            .error
            .as_deref()
            .map_or_else(String::new, |e| escape(&cut(e, opts.max_text_chars * 3)));
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {why} |",
            escape(&s.space),
            s.status.as_str(),
            units::count(c.seen),
            units::count(c.tagged),
            units::count(c.unchanged),
            units::count(c.failed),
            units::count(c.labels),
            units::count(c.labels_removed),
        )?;
    }
    Ok(())
}

/// One small line: time, cache, cost, version, taxonomy, start.
fn write_footer(out: &mut impl Write, r: &RunReport) -> io::Result<()> {
    let run = r.run();
    let mut footer = vec![format!("elapsed {}", units::opt_duration(r.elapsed()))];
    footer.push(format!(
        "cache hit rate {}",
        units::percent(r.cache().and_then(|c| c.hit_rate()))
    ));
    footer.push(format!("est. cost {}", units::usd(r.total_cost())));
    if r.batch_pages() > 0 {
        footer.push(format!(
            "{} pages through a batch job (half price)",
            units::count(r.batch_pages())
        ));
    }
    footer.push(format!("tag-space {}", escape(&run.version)));
    let fp = &r.settings().taxonomy.fingerprint;
    footer.push(format!(
        "taxonomy {}",
        escape(&fp.chars().take(12).collect::<String>())
    ));
    footer.push(format!("started {}", rfc3339(run.started)));
    writeln!(out, "<sub>{}</sub>", footer.join(" · "))
}

/// The changes grouped by label: label → pages, bounded.
fn write_labels(
    out: &mut impl Write,
    pages: &[PageView<'_>],
    dry: bool,
    opts: &MarkdownOptions,
) -> io::Result<()> {
    let mut by_label: BTreeMap<&str, Vec<PageView<'_>>> = BTreeMap::new();
    for p in pages {
        for l in p.labels() {
            by_label.entry(l).or_default().push(*p);
        }
    }
    writeln!(out)?;
    writeln!(
        out,
        "### {}",
        if dry { "Labels to add" } else { "Labels added" }
    )?;
    writeln!(out)?;
    if by_label.is_empty() {
        writeln!(out, "No labels {}.", if dry { "to add" } else { "added" })?;
        return Ok(());
    }
    let mut budget = opts.max_pages_listed;
    for (label, mut ps) in by_label {
        sort_by_title(&mut ps);
        let n = ps.len();
        writeln!(
            out,
            "- **{}** ({} {})",
            escape(label),
            units::count(n as u64),
            if n == 1 { "page" } else { "pages" }
        )?;
        let shown = n.min(opts.max_pages_per_label).min(budget);
        budget -= shown;
        for p in &ps[..shown] {
            writeln!(out, "  - {}", page_link(p, opts))?;
        }
        if shown > 0 && shown < n {
            writeln!(out, "  - and {} more", units::count((n - shown) as u64))?;
        }
    }
    Ok(())
}

/// Every removal, grouped by label like the additions but never cut short: a reviewer must
/// see each deletion before it happens.
fn write_removals(
    out: &mut impl Write,
    pages: &[PageView<'_>],
    dry: bool,
    opts: &MarkdownOptions,
) -> io::Result<()> {
    let mut by_label: BTreeMap<&str, Vec<PageView<'_>>> = BTreeMap::new();
    for p in pages {
        for l in p.removed() {
            by_label.entry(l).or_default().push(*p);
        }
    }
    let heading = if dry {
        "Labels to remove"
    } else {
        "Labels removed"
    };
    writeln!(out)?;
    writeln!(out, "### {heading}")?;
    writeln!(out)?;
    if by_label.is_empty() {
        writeln!(
            out,
            "No labels {}.",
            if dry { "to remove" } else { "removed" }
        )?;
        return Ok(());
    }
    for (label, mut ps) in by_label {
        sort_by_title(&mut ps);
        let n = ps.len();
        writeln!(
            out,
            "- **{}** ({} {})",
            escape(label),
            units::count(n as u64),
            if n == 1 { "page" } else { "pages" }
        )?;
        for p in &ps {
            writeln!(out, "  - {}", page_link(p, opts))?;
        }
    }
    Ok(())
}

fn sort_by_title(ps: &mut [PageView<'_>]) {
    ps.sort_by(|a, b| {
        a.title()
            .to_lowercase()
            .cmp(&b.title().to_lowercase())
            .then_with(|| a.id().cmp(b.id()))
    });
}

fn write_failures(
    out: &mut impl Write,
    pages: &[PageView<'_>],
    opts: &MarkdownOptions,
) -> io::Result<()> {
    let failed: Vec<&PageView<'_>> = pages
        .iter()
        .filter(|p| p.status() == Status::Failed)
        .collect();
    write_reasons(out, "Failures", &failed, opts)
}

/// `tag-space apply`: the planned pages left alone because they were edited or gone since the plan,
/// named, so that the reviewer knows which ones need a new plan.
fn write_stale(
    out: &mut impl Write,
    pages: &[PageView<'_>],
    opts: &MarkdownOptions,
) -> io::Result<()> {
    let stale: Vec<&PageView<'_>> = pages
        .iter()
        .filter(|p| p.status() == Status::Stale)
        .collect();
    write_reasons(
        out,
        "Stale: edited or gone since the plan, not applied",
        &stale,
        opts,
    )
}

/// A table of pages and their reasons under `heading`, cut at `max_failures` rows.
fn write_reasons(
    out: &mut impl Write,
    heading: &str,
    failed: &[&PageView<'_>],
    opts: &MarkdownOptions,
) -> io::Result<()> {
    if failed.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    writeln!(out, "### {heading} ({})", units::count(failed.len() as u64))?;
    writeln!(out)?;
    writeln!(out, "| Page | Reason |")?;
    writeln!(out, "| --- | --- |")?;
    let shown = failed.len().min(opts.max_failures);
    for p in &failed[..shown] {
        writeln!(
            out,
            "| {} | {} |",
            page_link(p, opts),
            escape(&cut(
                p.reason().unwrap_or("unknown error"),
                opts.max_text_chars * 3
            ))
        )?;
    }
    if shown < failed.len() {
        writeln!(
            out,
            "| and {} more | |",
            units::count((failed.len() - shown) as u64)
        )?;
    }
    Ok(())
}

/// `[title](url)`, or the escaped title and id when the page has no usable URL.
fn page_link(p: &PageView<'_>, opts: &MarkdownOptions) -> String {
    let title = if p.title().trim().is_empty() {
        "(untitled)".to_string()
    } else {
        escape(&cut(p.title(), opts.max_text_chars))
    };
    match p.url().and_then(link_target) {
        Some(url) => format!("[{title}]({url})"),
        None => format!("{title} (id {})", escape(p.id())),
    }
}

/// `s` with its first letter in upper case.
fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// `s` cut to `max` characters, with "…" when cut.
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Text shown as written in Markdown (GitHub Flavored), inline, including inside a table
/// cell or a link's text: HTML-significant characters become entities, Markdown punctuation
/// is backslash-escaped (`|` too, which GFM tables need even inside code), line breaks and
/// other control characters become spaces, and `@` gets an invisible word joiner so that
/// `@team` mentions no one.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '(' | ')' | '{' | '}' | '#' | '!' | '|' | '~'
            | '$' | '^' => {
                out.push('\\');
                out.push(c);
            }
            '@' => out.push_str("@\u{2060}"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A URL usable as a link target: `http(s)` only (no `javascript:`), with the characters
/// that would end the target or split a table cell percent-encoded. `None` otherwise.
pub fn link_target(url: &str) -> Option<String> {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://")) {
        return None;
    }
    let mut out = String::with_capacity(url.len());
    for c in url.chars() {
        match c {
            ' ' | '(' | ')' | '<' | '>' | '|' | '"' | '`' | '\\' | '[' | ']' | '{' | '}' | '^' => {
                out.push_str(&format!("%{:02X}", c as u32))
            }
            c if c.is_control() => {
                for b in c.encode_utf8(&mut [0; 4]).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            c => out.push(c),
        }
    }
    Some(out)
}
