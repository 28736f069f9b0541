//! The text `tag-space cache stats` and `tag-space cache clear` print. Pure: the caller
//! hands in the writer (stdout), so the output is tested byte for byte.

use std::io::{self, Write};
use std::time::{Duration, UNIX_EPOCH};

use super::runs::{RunMode, RunRecord, RunStatus};
use super::stats::{Cleared, Stats};

/// `cache stats`: the file, then per space its share and its last runs, newest first.
pub fn write_stats(out: &mut impl Write, s: &Stats) -> io::Result<()> {
    writeln!(out, "state file  {}", s.path.display())?;
    writeln!(
        out,
        "size        {} (schema {})",
        bytes(s.file_bytes),
        s.schema_version
    )?;
    writeln!(out, "entries     {} cached answers", s.entries)?;
    if s.spaces.is_empty() {
        writeln!(out, "\nno run has been recorded yet")?;
    }
    for sp in &s.spaces {
        writeln!(
            out,
            "\nspace {}: {} cached answers, {} pages done, {} labels added by tag-space",
            sp.space, sp.entries, sp.pages_done, sp.labels_added
        )?;
        if sp.runs.is_empty() {
            continue;
        }
        writeln!(
            out,
            "  {:>5}  {:<20}  {:<12}  {:<11}  {:>4}  {:>6}  {:>6}  {:>8}  {:>9}  {:>6}",
            "run",
            "started (UTC)",
            "mode",
            "result",
            "exit",
            "hits",
            "misses",
            "hit rate",
            "unchanged",
            "calls"
        )?;
        for r in &sp.runs {
            write_run(out, r)?;
        }
    }
    Ok(())
}

fn write_run(out: &mut impl Write, r: &RunRecord) -> io::Result<()> {
    let mode = match (r.mode, r.dry_run) {
        (RunMode::Add, false) => "add",
        (RunMode::Add, true) => "add dry-run",
        (RunMode::Sync, false) => "sync",
        (RunMode::Sync, true) => "sync dry-run",
    };
    // A run records its end on the way out; one that recorded none was killed (or crashed,
    // or is still running). Runs from before outcomes were kept say only that they ended.
    let (result, exit) = match (&r.end, r.finished_at) {
        (Some(end), _) => (end.status.as_str(), end.exit_code.to_string()),
        (None, Some(_)) => ("ended", "?".to_string()),
        (None, None) => ("no end", "-".to_string()),
    };
    let rate = r
        .counters
        .hit_rate()
        .map_or_else(|| "-".to_string(), |h| format!("{:.0}%", h * 100.0));
    let c = &r.counters;
    writeln!(
        out,
        "  {:>5}  {:<20}  {:<12}  {:<11}  {:>4}  {:>6}  {:>6}  {:>8}  {:>9}  {:>6}",
        r.id,
        time(r.started_at),
        mode,
        result,
        exit,
        c.hits,
        c.misses,
        rate,
        c.skipped_unchanged,
        c.calls
    )?;
    match &r.end {
        Some(end) if end.status == RunStatus::Failed => writeln!(
            out,
            "         failed: {}",
            end.error.as_deref().unwrap_or("no reason recorded")
        ),
        _ => Ok(()),
    }
}

/// `cache clear`: what went, and what stayed.
pub fn write_cleared(out: &mut impl Write, space: Option<&str>, c: &Cleared) -> io::Result<()> {
    let scope = space.map_or_else(|| "every space".to_string(), |s| format!("space {s}"));
    writeln!(
        out,
        "cleared {scope}: {} cached answers, {} finished pages, {} runs; the next run classifies every page again",
        c.entries, c.pages, c.runs
    )?;
    writeln!(
        out,
        "kept which labels tag-space added, so --sync can still tell them from a person's"
    )
}

fn time(unix: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).unwrap_or(0));
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_string()
}

fn bytes(n: u64) -> String {
    const KIB: f64 = 1024.0;
    let f = n as f64;
    if f < KIB {
        format!("{n} B")
    } else if f < KIB * KIB {
        format!("{:.1} KiB", f / KIB)
    } else {
        format!("{:.1} MiB", f / KIB / KIB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{RunCounters, RunEnd, SpaceStats};
    use std::path::PathBuf;

    #[test]
    fn stats_are_stable() {
        let s = Stats {
            path: PathBuf::from("/var/cache/tag-space/state.db"),
            file_bytes: 3 * 1024 * 1024 / 2,
            entries: 500,
            schema_version: 1,
            spaces: vec![SpaceStats {
                space: "ENG".into(),
                entries: 500,
                pages_done: 498,
                labels_added: 1200,
                runs: vec![
                    RunRecord {
                        id: 3,
                        space: "ENG".into(),
                        mode: RunMode::Add,
                        dry_run: false,
                        started_at: 1_751_448_600,
                        finished_at: Some(1_751_448_601),
                        end: Some(RunEnd {
                            status: RunStatus::Failed,
                            error: Some("cannot reach Confluence: connection refused".into()),
                            exit_code: 2,
                        }),
                        counters: RunCounters::default(),
                    },
                    RunRecord {
                        id: 2,
                        space: "ENG".into(),
                        mode: RunMode::Add,
                        dry_run: false,
                        started_at: 1_751_362_200,
                        finished_at: Some(1_751_362_260),
                        end: Some(RunEnd::finished()),
                        counters: RunCounters {
                            hits: 10,
                            misses: 0,
                            skipped_unchanged: 490,
                            ..RunCounters::default()
                        },
                    },
                    RunRecord {
                        id: 1,
                        space: "ENG".into(),
                        mode: RunMode::Sync,
                        dry_run: true,
                        started_at: 1_751_275_800,
                        finished_at: None,
                        end: None,
                        counters: RunCounters {
                            misses: 4,
                            hits: 1,
                            calls: 1,
                            ..RunCounters::default()
                        },
                    },
                ],
            }],
        };
        let mut out = Vec::new();
        write_stats(&mut out, &s).unwrap();
        let want = "\
state file  /var/cache/tag-space/state.db
size        1.5 MiB (schema 1)
entries     500 cached answers

space ENG: 500 cached answers, 498 pages done, 1200 labels added by tag-space
    run  started (UTC)         mode          result       exit    hits  misses  hit rate  unchanged   calls
      3  2025-07-02 09:30:00   add           failed          2       0       0         -          0       0
         failed: cannot reach Confluence: connection refused
      2  2025-07-01 09:30:00   add           finished        0      10       0      100%        490       0
      1  2025-06-30 09:30:00   sync dry-run  no end          -       1       4       20%          0       1
";
        assert_eq!(String::from_utf8(out).unwrap(), want);
    }

    #[test]
    fn clear_says_what_went_and_what_stayed() {
        let mut out = Vec::new();
        let c = Cleared {
            entries: 3,
            pages: 2,
            runs: 1,
        };
        write_cleared(&mut out, Some("ENG"), &c).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("cleared space ENG: 3 cached answers, 2 finished pages, 1 runs"));
        assert!(text.contains("kept which labels tag-space added"));
    }
}
