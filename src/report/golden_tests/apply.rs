//! What `tag-space apply` adds to the reports: stale pages with their own status and count,
//! and (as any run against a site) the Confluence figures in the Markdown.

use super::*;

/// The report of an apply over ENG: page 7 written, page 8 edited since the plan.
fn applied() -> RunReport {
    let mut run = RunInfo::new("ENG", Mode::Add, false, at(STARTED));
    run.version = "t".into();
    let mut r = RunReport::new(run, report_settings(&config(false), "fp"));
    r.record(&outcome(
        "7",
        "Runbook",
        Status::Tagged,
        &[],
        &["type-howto"],
        None,
    ));
    r.record(&outcome(
        "8",
        "Edited page",
        Status::Stale,
        &[],
        &[],
        Some("edited since the plan (version 3 planned, 4 now); not applied, make a new plan"),
    ));
    r
}

#[test]
fn a_stale_page_has_its_own_status_and_count_in_the_json() {
    let doc = to_json_value(&applied());
    assert_valid(&doc);
    assert_eq!(doc["schema_version"], 4);
    let pages = &doc["metrics"]["pages"];
    assert_eq!((&pages["stale"], &pages["skipped"]), (&1.into(), &0.into()));
    assert_eq!(doc["spaces"][0]["pages"]["stale"], 1);
    let page = doc["pages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "8");
    let page = page.unwrap();
    assert_eq!(page["status"], "stale", "{page:#}");
    assert!(
        page["skip_reason"]
            .as_str()
            .is_some_and(|r| r.contains("version 3 planned, 4 now")),
        "{page:#}"
    );
    assert_eq!(page["error"], serde_json::Value::Null);
}

#[test]
fn a_stale_page_is_counted_and_named_in_the_markdown_and_the_table() {
    let r = applied();
    let md = render_md(&r, &MarkdownOptions::default());
    assert!(
        md.contains("0 skipped, **0** failed, **1** stale (edited or gone since the plan);"),
        "{md}"
    );
    assert!(
        md.contains("### Stale: edited or gone since the plan, not applied (1)")
            && md.contains("Edited page")
            && md.contains("version 3 planned, 4 now"),
        "{md}"
    );
    let table = render_table(&r, false);
    let header = table.lines().find(|l| l.contains("seen")).unwrap();
    assert!(header.trim_end().ends_with("| stale |"), "{table}");
    // A run with no stale page keeps its line and its table as they were.
    let run = render_md(&sample(false), &MarkdownOptions::default());
    assert!(!run.contains("stale"), "{run}");
    assert!(!render_table(&sample(false), false).contains("stale"));
}

#[test]
fn the_markdown_has_the_confluence_figures_only_when_the_run_had_a_site() {
    let mut r = applied();
    let demo = render_md(&r, &MarkdownOptions::default());
    assert!(!demo.contains("### Confluence"), "{demo}");
    r.set_confluence(crate::confluence::pace::SiteStats {
        requests: 1_204,
        throttled: 3,
        cooldown_wait: Duration::from_secs(12),
        pacing_wait: Duration::ZERO,
        slot_wait: Duration::from_millis(2_500),
        peak_in_flight: 4,
        bytes: 2_048,
    });
    let md = render_md(&r, &MarkdownOptions::default());
    let rows: Vec<&str> = md
        .lines()
        .skip_while(|l| *l != "### Confluence")
        .filter(|l| l.starts_with('|'))
        .take(3)
        .collect();
    assert_eq!(
        rows,
        [
            "| Requests | 429s | Downloaded | Wait: cooldown | Wait: pacing | Wait: slot | Peak in flight |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            "| 1,204 | 3 | 2.0 kB | 12.0s | 0ms | 2.5s | 4 |",
        ],
        "{md}"
    );
}
