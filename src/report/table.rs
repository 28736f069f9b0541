//! The end-of-run metrics table, for a person at a terminal (or a cron mail, or a CI log).
//!
//! Three small tables, each narrow enough for an 80-column terminal with up to three
//! providers: pages, then one column per provider, then the run as a whole. Plain ASCII
//! borders so that it survives any log viewer; ANSI bold for titles and header rows only when
//! `color` is true.

use std::io::{self, Write};

use comfy_table::{Cell, CellAlignment, ContentArrangement, Table, presets};

use super::model::{ProviderMetrics, RunReport};
use super::units::{self, NONE};
use crate::confluence::pace::SiteStats;
use crate::governor::{ProviderStats, WaitReason};

const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

/// Writes the metrics table. `color`: ANSI bold for titles and header rows (pass
/// `stdout().is_terminal()` and honour `NO_COLOR` in the app); never any other escape code.
pub fn write_metrics_table(out: &mut impl Write, r: &RunReport, color: bool) -> io::Result<()> {
    let run = r.run();
    let mode = if run.dry_run {
        format!("{}, dry run: nothing written", run.mode.as_str())
    } else {
        run.mode.as_str().to_string()
    };
    let end = r
        .end_note()
        .map(|n| format!(": {}", plain(&n)))
        .unwrap_or_default();
    title(
        out,
        &format!("tag-space: {} ({mode}){end}", plain(&r.space_title())),
        color,
    )?;
    write_table(out, &pages_table(r), true, color)?;
    write_table(out, &labels_table(r), true, color)?;
    if r.several_spaces() {
        write_spaces(out, r, color)?;
    }
    // Providers: one column each, so that the table grows down, not across.
    if !r.providers().is_empty() {
        writeln!(out)?;
        title(out, "Providers", color)?;
        write_table(out, &providers_table(r), true, color)?;
    }
    if let Some(site) = r.confluence() {
        writeln!(out)?;
        title(out, "Confluence", color)?;
        write_table(out, &confluence_table(site), true, color)?;
    }
    writeln!(out)?;
    title(out, "Run", color)?;
    write_table(out, &run_table(r), false, color)
}

/// Pages by status; a `stale` column only when `tag-space apply` left pages alone (no other
/// run has any), so that a run's table keeps its width.
fn pages_table(r: &RunReport) -> Table {
    let c = r.counts();
    let mut header = vec![
        "seen",
        "tagged",
        "unchanged",
        "no label",
        "skipped",
        "failed",
    ];
    let mut row = vec![
        c.seen,
        c.tagged,
        c.unchanged,
        c.no_label,
        c.skipped,
        c.failed,
    ];
    if c.stale > 0 {
        header.push("stale");
        row.push(c.stale);
    }
    let mut pages = new_table();
    pages.set_header(header);
    pages.add_row(row.into_iter().map(|n| Cell::new(units::count(n))));
    right_align(&mut pages, 0);
    pages
}

/// Labels: removals beside additions, so that no deletion goes unseen. A table of its own
/// keeps both within 80 columns.
fn labels_table(r: &RunReport) -> Table {
    let c = r.counts();
    let mut labels = new_table();
    labels.set_header(if r.run().dry_run {
        ["labels to add", "labels to remove"]
    } else {
        ["labels added", "labels removed"]
    });
    labels.add_row([c.labels, c.labels_removed].map(|n| Cell::new(units::count(n))));
    right_align(&mut labels, 0);
    labels
}

/// A run over several spaces: one row per space, then why each failed space failed.
fn write_spaces(out: &mut impl Write, r: &RunReport, color: bool) -> io::Result<()> {
    let spaces = r.spaces();
    let mut t = new_table();
    let (add, remove) = match r.run().dry_run {
        true => ("to add", "to remove"),
        false => ("added", "removed"),
    };
    t.set_header(vec![
        "space",
        "ended",
        "seen",
        "tagged",
        "unchanged",
        "failed",
        add,
        remove,
    ]);
    for s in &spaces {
        let c = s.counts;
        let mut row = vec![Cell::new(plain(&s.space)), Cell::new(s.status.as_str())];
        row.extend(
            [
                c.seen,
                c.tagged,
                c.unchanged,
                c.failed,
                c.labels,
                c.labels_removed,
            ]
            .map(|n| Cell::new(units::count(n))),
        );
        t.add_row(row);
    }
    right_align(&mut t, 2);
    writeln!(out)?;
    title(out, "Spaces", color)?;
    write_table(out, &t, true, color)?;
    for s in spaces.iter().filter(|s| s.error.is_some()) {
        let why = s.error.as_deref().unwrap_or_default();
        writeln!(out, "{}: {}", plain(&s.space), plain(why))?;
    }
    Ok(())
}

/// One column per provider, one row per figure.
fn providers_table(r: &RunReport) -> Table {
    let providers = r.providers();
    let mut t = new_table();
    let mut header = vec![String::new()];
    header.extend(providers.iter().map(|p| plain(p.provider())));
    t.set_header(header);
    let row = |name: &str, f: &dyn Fn(&ProviderMetrics) -> String| {
        let mut v = vec![name.to_string()];
        v.extend(providers.iter().map(f));
        v
    };
    t.add_row(row("model", &|p| {
        p.model.as_deref().map_or_else(|| NONE.to_string(), plain)
    }));
    if providers.iter().any(|p| p.structured_output.is_some()) {
        t.add_row(row("JSON asked by", &|p| {
            p.structured_output
                .as_deref()
                .map_or_else(|| NONE.to_string(), plain)
        }));
    }
    let figure = |name: &str, f: fn(&ProviderStats) -> String| row(name, &|p| f(&p.stats));
    t.add_row(figure("calls", |s| units::count(s.calls)));
    t.add_row(figure("success", |s| units::percent(s.success_rate())));
    t.add_row(figure("429s", |s| units::count(s.rate_limited)));
    t.add_row(figure("retries", |s| units::count(s.retries)));
    t.add_row(figure("fallbacks", |s| units::count(s.fallbacks)));
    t.add_row(figure("latency p50", |s| {
        units::opt_duration(s.latency().p50)
    }));
    t.add_row(figure("latency p95", |s| {
        units::opt_duration(s.latency().p95)
    }));
    t.add_row(figure("tokens in", |s| units::count(s.tokens_in)));
    t.add_row(figure("tokens cached", |s| units::count(s.tokens_cached)));
    t.add_row(figure("tokens out", |s| units::count(s.tokens_out)));
    t.add_row(row("est. cost", &|p| units::usd(r.prices().cost(p))));
    if providers.iter().any(|p| p.batch.requests > 0) {
        t.add_row(row("batch pages", &|p| units::count(p.batch.pages)));
    }
    for w in WaitReason::ALL {
        if providers.iter().any(|p| p.wait(w).count > 0) {
            t.add_row(row(&format!("wait: {}", w.label()), &|p| {
                wait_cell(p.wait(w).count, p.wait(w).total)
            }));
        }
    }
    if providers.iter().any(|p| p.stats.unavailable.is_some()) {
        t.add_row(figure("unavailable", |s| {
            s.unavailable
                .as_deref()
                .map_or_else(|| NONE.to_string(), plain)
        }));
    }
    right_align(&mut t, 1);
    t
}

/// The site's requests, 429s, bytes and waits (retries included).
fn confluence_table(s: &SiteStats) -> Table {
    let mut t = new_table();
    t.set_header(vec![
        "requests",
        "429s",
        "downloaded",
        "wait: cooldown",
        "wait: pacing",
        "wait: slot",
    ]);
    t.add_row(vec![
        units::count(s.requests),
        units::count(s.throttled),
        units::bytes(s.bytes),
        units::duration(s.cooldown_wait),
        units::duration(s.pacing_wait),
        units::duration(s.slot_wait),
    ]);
    right_align(&mut t, 0);
    t
}

/// The run as a whole.
fn run_table(r: &RunReport) -> Table {
    let mut t = new_table();
    let waits = r.total_waits();
    let waited: std::time::Duration = waits.values().map(|w| w.total).sum();
    t.add_row(vec![
        "cache hit rate".to_string(),
        units::percent(r.cache().and_then(|c| c.hit_rate())),
    ]);
    t.add_row(vec!["est. cost".to_string(), cost_line(r)]);
    t.add_row(vec![
        "time waiting".to_string(),
        if waits.is_empty() {
            units::duration(waited)
        } else {
            let parts: Vec<String> = waits
                .iter()
                .map(|(w, t)| format!("{} {}", w.label(), units::duration(t.total)))
                .collect();
            format!("{} ({})", units::duration(waited), parts.join(", "))
        },
    ]);
    t.add_row(vec![
        "elapsed".to_string(),
        units::opt_duration(r.elapsed()),
    ]);
    t
}

/// The total cost, and how many pages a batch job answered at half the price.
fn cost_line(r: &RunReport) -> String {
    match r.batch_pages() {
        0 => total_cost(r),
        n => format!(
            "{} ({} pages through a batch job, at half price)",
            total_cost(r),
            units::count(n)
        ),
    }
}

/// The total cost, saying when some provider had no price.
fn total_cost(r: &RunReport) -> String {
    let unpriced: Vec<String> = r
        .providers()
        .iter()
        .filter(|p| p.stats.calls > 0 && r.prices().cost(p).is_none())
        .map(|p| plain(p.provider()))
        .collect();
    match (r.total_cost(), unpriced.is_empty()) {
        (total, true) => units::usd(total),
        (None, false) => NONE.to_string(),
        (total, false) => format!(
            "{} + unknown ({} has no price)",
            units::usd(total),
            unpriced.join(", ")
        ),
    }
}

fn wait_cell(count: u64, total: std::time::Duration) -> String {
    if count == 0 {
        NONE.to_string()
    } else {
        format!("{} ({}x)", units::duration(total), units::count(count))
    }
}

fn new_table() -> Table {
    let mut t = Table::new();
    t.load_preset(presets::ASCII_FULL_CONDENSED)
        // Never wrap or measure a terminal: the output must not depend on where it goes.
        .set_content_arrangement(ContentArrangement::Disabled);
    t
}

/// Right-aligns every column from `first` on (figures).
fn right_align(t: &mut Table, first: usize) {
    for col in t.column_iter_mut().skip(first) {
        col.set_cell_alignment(CellAlignment::Right);
    }
}

fn title(out: &mut impl Write, text: &str, color: bool) -> io::Result<()> {
    if color {
        writeln!(out, "{BOLD}{text}{RESET}")
    } else {
        writeln!(out, "{text}")
    }
}

/// Writes the table line by line; with `color` and a header, the header line (the second,
/// under the top border) in bold. Styling whole lines keeps the columns aligned.
fn write_table(out: &mut impl Write, t: &Table, header: bool, color: bool) -> io::Result<()> {
    for (i, line) in t.lines().enumerate() {
        if color && header && i == 1 {
            writeln!(out, "{BOLD}{line}{RESET}")?;
        } else {
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}

/// Text from configuration or a server, made safe for a terminal: control characters
/// (escape sequences, newlines) become spaces.
fn plain(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}
