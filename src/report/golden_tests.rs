//! Tests of the end-of-run reports: golden files rendered from one fixed sample run, the
//! JSON Schema, Markdown escaping and bounds, figures, and the absence of secrets.
//!
//! To accept new output after a deliberate change: `UPDATE_GOLDEN=1 cargo test --lib report`,
//! then review the diff of `src/report/testdata/`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;

use super::json::{to_json_value, write_json};
use super::markdown::{MarkdownOptions, escape, link_target, write_markdown};
use super::model::*;
use super::table::write_metrics_table;
use crate::app::report_settings;
use crate::cli::Args;
use crate::config::Config;
use crate::governor::{Latency, WaitReason, WaitStats, quantile};
use crate::pipeline::Provenance;
use crate::pipeline::{PageOutcome, Status};

mod apply;

// Fake secrets, recognisable anywhere they might leak.
const GEMINI_KEY: &str = "gem-SECRET-KEY-4f1a";
const OPENAI_KEY: &str = "sk-SECRET-KEY-9c2e";
const CONFLUENCE_TOKEN: &str = "atl-SECRET-TOKEN-77b0";
const CONFLUENCE_EMAIL: &str = "robot.secret-mailbox@acme.test";
const URL_PASSWORD: &str = "SECRET-URL-PASSWORD";

fn config(dry_run: bool) -> Config {
    let mut argv = vec!["tag-space", "--space", "ENG", "--fallback", "rules"];
    if dry_run {
        argv.push("--dry-run");
    }
    let args = Args::try_parse_from(argv).unwrap();
    let vars: BTreeMap<&str, String> = [
        (
            "CONFLUENCE_BASE_URL",
            "https://acme.atlassian.net/wiki".into(),
        ),
        ("CONFLUENCE_EMAIL", CONFLUENCE_EMAIL.into()),
        ("CONFLUENCE_API_TOKEN", CONFLUENCE_TOKEN.into()),
        ("GEMINI_API_KEY", GEMINI_KEY.into()),
        ("OPENAI_API_KEY", OPENAI_KEY.into()),
        ("OPENAI_BASE_URL", "https://llm.acme.test/v1/".into()),
        ("TAG_SPACE_GEMINI_RPM", "60".into()),
        ("TAG_SPACE_GEMINI_TPM", "250000".into()),
    ]
    .into_iter()
    .collect();
    Config::from_sources(&args, |k| vars.get(k).cloned()).unwrap()
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// 2025-07-01T09:30:00Z
const STARTED: u64 = 1_751_362_200;

fn outcome(
    id: &str,
    title: &str,
    status: Status,
    before: &[&str],
    added: &[&str],
    reason: Option<&str>,
) -> PageOutcome {
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    PageOutcome {
        id: id.into(),
        title: title.into(),
        url: Some(format!(
            "https://acme.atlassian.net/wiki/spaces/ENG/pages/{id}"
        )),
        status,
        labels_before: strings(before),
        chosen: strings(added),
        added: strings(added),
        removed: vec![],
        provider: match status {
            Status::Tagged | Status::Unchanged => Some(Provenance::Provider("gemini")),
            _ => None,
        },
        reason: reason.map(Into::into),
        version: None,
        content_hash: None,
    }
}

fn sample_pages() -> Vec<PageOutcome> {
    let mut no_url = outcome(
        "1002",
        "Release checklist",
        Status::Tagged,
        &[],
        &["type-howto"],
        None,
    );
    no_url.url = None;
    no_url.provider = Some(Provenance::Provider("openai"));
    vec![
        // Deliberately out of id order: reports sort by id.
        outcome(
            "1010",
            "Deploy | rollback *fast* [draft] `v2` <b>bold</b> @platform-team",
            Status::Tagged,
            &["archived"],
            &["type-howto", "tool-jenkins"],
            None,
        ),
        outcome(
            "998",
            "On-call handbook",
            Status::Tagged,
            &[],
            &["type-reference"],
            None,
        ),
        no_url,
        outcome(
            "1003",
            "Team lunch",
            Status::Unchanged,
            &["type-reference"],
            &[],
            None,
        ),
        outcome(
            "1004",
            "Empty page",
            Status::Skipped,
            &[],
            &[],
            Some("the page has no text"),
        ),
        outcome(
            "1005",
            "Quarterly <script>alert(1)</script> plan",
            Status::Failed,
            &[],
            &[],
            Some("gemini: quota exhausted (HTTP 429) | openai: timeout after 120s"),
        ),
    ]
}

fn sample_providers() -> Vec<ProviderMetrics> {
    let mut g = ProviderMetrics::new("gemini", Some("gemini-2.5-flash".into()));
    g.stats.calls = 12;
    g.stats.successes = 10;
    g.stats.failures = [("rate_limited", 2)].into_iter().collect();
    g.stats.rate_limited = 2;
    g.stats.retries = 2;
    g.stats.reasks = 1;
    g.stats.fallbacks = 1;
    g.stats.tokens_in = 12_345;
    g.stats.tokens_out = 678;
    g.stats.latencies = [
        900, 1100, 1200, 1250, 1300, 1400, 1500, 1700, 2100, 2600, 3400, 800,
    ]
    .map(Duration::from_millis)
    .to_vec();
    let wait = |count, total| WaitStats { count, total };
    g.stats.waits = [
        (WaitReason::Preflight, wait(3, Duration::from_millis(4500))),
        (WaitReason::Cooldown429, wait(1, Duration::from_secs(30))),
    ]
    .into_iter()
    .collect();
    g.stats.concurrency_limit = 3;
    g.stats.paced_rpm = Some(60.0);

    let mut o = ProviderMetrics::new("openai", Some("gpt-4.1-mini".into()));
    o.stats.calls = 1;
    o.stats.successes = 1;
    o.stats.tokens_in = 2_000;
    o.stats.tokens_out = 150;
    o.stats.latencies = vec![Duration::from_millis(2300)];
    o.stats.concurrency_limit = 3;

    let r = ProviderMetrics::new("rules", None);
    vec![g, o, r]
}

/// The fixed sample run behind the golden files.
fn sample(dry_run: bool) -> RunReport {
    let mut run = RunInfo::new("ENG", Mode::Add, dry_run, at(STARTED));
    run.version = "0.0.0-test".into();
    let fingerprint = "3f2a9c0d1b7e4a5f".repeat(4);
    let mut r = RunReport::new(run, report_settings(&config(dry_run), &fingerprint));
    for p in sample_pages() {
        r.record(&p);
    }
    r.set_providers(sample_providers());
    r.set_cache(CacheMetrics {
        hits: 5,
        misses: 15,
    });
    r.set_confluence(crate::confluence::pace::SiteStats {
        requests: 61,
        throttled: 2,
        cooldown_wait: Duration::from_millis(2_000),
        pacing_wait: Duration::from_millis(500),
        slot_wait: Duration::from_millis(1_250),
        peak_in_flight: 4,
        bytes: 1_523_400,
    });
    r.finish(at(STARTED + 125), Duration::from_millis(125_400));
    r
}

fn render_table(r: &RunReport, color: bool) -> String {
    let mut buf = Vec::new();
    write_metrics_table(&mut buf, r, color).unwrap();
    String::from_utf8(buf).unwrap()
}

fn render_json(r: &RunReport) -> String {
    let mut buf = Vec::new();
    write_json(&mut buf, r).unwrap();
    String::from_utf8(buf).unwrap()
}

fn render_md(r: &RunReport, opts: &MarkdownOptions) -> String {
    let mut buf = Vec::new();
    write_markdown(&mut buf, r, opts).unwrap();
    String::from_utf8(buf).unwrap()
}

/// Compares `actual` with the golden file, or rewrites it under `UPDATE_GOLDEN=1`.
fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/report/testdata")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "{name} differs from the golden file, first at line {}:\n--- expected\n{}\n--- actual\n{}\n(UPDATE_GOLDEN=1 to accept)",
            line + 1,
            expected.lines().nth(line).unwrap_or("<end>"),
            actual.lines().nth(line).unwrap_or("<end>"),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Golden files

#[test]
fn table_matches_golden() {
    golden("table.txt", &render_table(&sample(true), false));
}

#[test]
fn table_of_a_real_run_says_added() {
    let t = render_table(&sample(false), false);
    assert!(t.contains("labels added") && !t.contains("dry run"), "{t}");
}

#[test]
fn json_matches_golden() {
    golden("report.json", &render_json(&sample(true)));
}

#[test]
fn markdown_matches_golden() {
    golden(
        "report.md",
        &render_md(&sample(true), &MarkdownOptions::default()),
    );
}

#[test]
fn color_only_adds_bold_around_whole_lines() {
    let plain = render_table(&sample(true), false);
    let colored = render_table(&sample(true), true);
    assert!(!plain.contains('\x1b'));
    assert!(colored.contains("\x1b[1m"));
    assert_eq!(
        colored.replace("\x1b[1m", "").replace("\x1b[0m", ""),
        plain,
        "colour must not change the layout"
    );
    for line in colored.lines().filter(|l| l.contains('\x1b')) {
        assert!(
            line.starts_with("\x1b[1m") && line.ends_with("\x1b[0m"),
            "{line:?}"
        );
    }
}

#[test]
fn table_shows_dashes_for_unknown_figures() {
    let mut run = RunInfo::new("X", Mode::Add, true, at(STARTED));
    run.version = "t".into();
    let mut r = RunReport::new(run, report_settings(&config(true), "fp"));
    let mut p = ProviderMetrics::new("openai", Some("local-llama".into()));
    p.stats.calls = 3;
    p.stats.successes = 3;
    p.stats.tokens_in = 100;
    r.set_providers(vec![
        p,
        ProviderMetrics::new("gemini", Some("gemini-2.5-flash".into())),
    ]);
    let t = render_table(&r, false);
    let row = |name: &str| {
        t.lines()
            .find(|l| l.starts_with(&format!("| {name} ")))
            .unwrap_or_else(|| panic!("no {name} row in\n{t}"))
            .to_string()
    };
    // Unknown model: no cost; no call: no success rate or latency; no cache; not finished.
    let cost = row("est. cost");
    let cells: Vec<&str> = cost.split('|').map(str::trim).collect();
    assert_eq!(cells[1..4], ["est. cost", "-", "$0.0000"], "{t}");
    assert!(
        row("success").contains("100.0%") && row("success").ends_with("- |"),
        "{t}"
    );
    assert!(row("latency p50").matches(" - ").count() == 2, "{t}");
    assert!(row("cache hit rate").contains(" - "), "{t}");
    assert!(row("elapsed").contains(" - "), "{t}");
}

// ---------------------------------------------------------------------------------------------
// JSON and its schema

fn schema() -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/report.schema.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn assert_valid(doc: &serde_json::Value) {
    let schema = schema();
    let validator = jsonschema::draft202012::new(&schema).expect("the schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "report does not match the schema: {errors:#?}"
    );
}

#[test]
fn reports_validate_against_the_schema() {
    let schema = schema();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_valid(&to_json_value(&sample(true)));
    assert_valid(&to_json_value(&sample(false)));
    // The rendered text, not only the value.
    assert_valid(&serde_json::from_str(&render_json(&sample(true))).unwrap());
    // An unfinished run with nothing recorded, and a counts-only report.
    let run = RunInfo::new("E", Mode::Sync, false, at(STARTED));
    let empty = RunReport::new(run, report_settings(&config(false), "fp"));
    assert_valid(&to_json_value(&empty));
    assert_valid(&to_json_value(&empty.clone().counts_only()));
}

#[test]
fn the_schema_rejects_what_it_should() {
    let schema = schema();
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    let good = to_json_value(&sample(true));
    assert!(validator.is_valid(&good));
    type Mutation = Box<dyn Fn(&mut serde_json::Value)>;
    let broken: Vec<(&str, Mutation)> = vec![
        (
            "no schema_version",
            Box::new(|d| {
                d.as_object_mut().unwrap().remove("schema_version");
            }),
        ),
        (
            "schema_version 1",
            Box::new(|d| d["schema_version"] = 1.into()),
        ),
        (
            "no run status",
            Box::new(|d| {
                d["run"].as_object_mut().unwrap().remove("status");
            }),
        ),
        (
            "unknown run status",
            Box::new(|d| d["run"]["status"] = "done".into()),
        ),
        (
            "no labels_to_remove in a dry run",
            Box::new(|d| {
                d["pages"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("labels_to_remove");
            }),
        ),
        (
            "labels_removed in a dry run",
            Box::new(|d| d["pages"][0]["labels_removed"] = serde_json::json!([])),
        ),
        (
            "no labels_removed count",
            Box::new(|d| {
                d["metrics"]["pages"]
                    .as_object_mut()
                    .unwrap()
                    .remove("labels_removed");
            }),
        ),
        (
            "unknown top-level field",
            Box::new(|d| d["extra"] = true.into()),
        ),
        (
            "unknown status",
            Box::new(|d| d["pages"][0]["status"] = "done".into()),
        ),
        (
            "duration as a string",
            Box::new(|d| d["metrics"]["elapsed_seconds"] = "125.4s".into()),
        ),
        (
            "a secret-looking setting",
            Box::new(|d| d["settings"]["providers"][0]["api_key"] = "x".into()),
        ),
        (
            "both label lists",
            Box::new(|d| d["pages"][0]["labels_added"] = serde_json::json!([])),
        ),
        (
            "timestamp not RFC 3339 UTC",
            Box::new(|d| d["run"]["started"] = "2025-07-01 09:30".into()),
        ),
    ];
    for (what, f) in broken {
        let mut d = good.clone();
        f(&mut d);
        assert!(!validator.is_valid(&d), "the schema accepts {what}");
    }
}

#[test]
fn json_pages_say_added_or_proposed_and_why_not() {
    let dry = to_json_value(&sample(true));
    let real = to_json_value(&sample(false));
    let page = |d: &serde_json::Value, id: &str| {
        d["pages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(
        page(&dry, "1010")["labels_proposed"],
        serde_json::json!(["type-howto", "tool-jenkins"])
    );
    assert!(page(&dry, "1010").get("labels_added").is_none());
    assert_eq!(page(&real, "1010")["labels_added"][1], "tool-jenkins");
    assert!(page(&real, "1010").get("labels_proposed").is_none());
    assert_eq!(
        page(&dry, "1005")["error"],
        "gemini: quota exhausted (HTTP 429) | openai: timeout after 120s"
    );
    assert_eq!(page(&dry, "1004")["skip_reason"], "the page has no text");
    assert!(page(&dry, "1004")["error"].is_null());
    // Sorted by id, numerically.
    let ids: Vec<&str> = dry["pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["998", "1002", "1003", "1004", "1005", "1010"]);
    assert_eq!(dry["metrics"]["elapsed_seconds"], 125.4);
    assert_eq!(dry["metrics"]["waits"]["cooldown_429"]["seconds"], 30.0);
    assert_eq!(dry["run"]["started"], "2025-07-01T09:30:00Z");
}

// ---------------------------------------------------------------------------------------------
// Markdown

const HOSTILE: &[&str] = &[
    "a | b | c",
    "*bold* _em_ **strong** ~~gone~~",
    "[click](https://evil.test) ![img](https://evil.test/x.png)",
    "`code` ``more``",
    "<img src=x onerror=alert(1)> <script>alert(1)</script> &amp; &#x41;",
    "line one\nline two\r\n| injected | row |",
    "# heading\\",
    "@octocat and @acme/security please look",
    "$x^2$ math",
    "<!-- comment",
];

#[test]
fn markdown_escapes_hostile_titles() {
    let mut run = RunInfo::new("EN|G*", Mode::Add, true, at(STARTED));
    run.version = "t".into();
    let mut r = RunReport::new(run, report_settings(&config(true), "fp"));
    for (i, t) in HOSTILE.iter().enumerate() {
        let id = (100 + i).to_string();
        r.record(&outcome(&id, t, Status::Tagged, &[], &["type-howto"], None));
        let mut f = outcome(&format!("9{i}"), t, Status::Failed, &[], &[], Some(t));
        f.url = Some(format!("https://wiki.test/p?a=1)&b=<x>|{i}"));
        r.record(&f);
    }
    r.set_providers(vec![ProviderMetrics::new(
        "gemini|x",
        Some("m*`<b>".into()),
    )]);
    let md = render_md(&r, &MarkdownOptions::default());

    assert!(
        !md.contains("<img")
            && !md.contains("<script")
            && !md.contains("<b>")
            && !md.contains("<!--"),
        "{md}"
    );
    assert!(!md.contains("](https://evil.test)"), "{md}");
    assert!(!md.contains("@octocat") && !md.contains("@acme"), "{md}");
    assert!(
        md.contains("&amp;amp;"),
        "an entity in a title shows as written: {md}"
    );
    for line in md.lines() {
        // No raw control characters, and every table row has exactly its columns.
        assert!(!line.chars().any(|c| c.is_control()), "{line:?}");
        if line.starts_with('|') {
            let cells = unescaped_pipes(line);
            assert!(cells == 3 || cells == 11, "{cells} pipes in {line:?}");
        }
        // Nothing a title says may start a line of its own.
        assert!(
            !line.starts_with("line two") && !line.starts_with("# heading"),
            "{line:?}"
        );
    }
    // The escapes are the documented ones.
    assert_eq!(escape("a|b"), "a\\|b");
    assert_eq!(escape("<b>&"), "&lt;b&gt;&amp;");
    assert_eq!(escape("x\ny"), "x y");
    assert_eq!(escape("[a](b)"), "\\[a\\]\\(b\\)");
    assert_eq!(escape("@team"), "@\u{2060}team");
    assert_eq!(escape("plain-title v1.2"), "plain-title v1.2");
    assert_eq!(link_target("javascript:alert(1)"), None);
    assert_eq!(
        link_target("https://w.test/a b(c)|d").as_deref(),
        Some("https://w.test/a%20b%28c%29%7Cd")
    );
}

/// `|` not preceded by an odd number of backslashes: how GFM splits a table row.
fn unescaped_pipes(line: &str) -> usize {
    let mut n = 0;
    let mut backslashes = 0;
    for c in line.chars() {
        if c == '|' && backslashes % 2 == 0 {
            n += 1;
        }
        backslashes = if c == '\\' { backslashes + 1 } else { 0 };
    }
    n
}

#[test]
fn markdown_stays_bounded_for_a_huge_space() {
    let mut run = RunInfo::new("HUGE", Mode::Add, true, at(STARTED));
    run.version = "t".into();
    let mut r = RunReport::new(run, report_settings(&config(true), "fp"));
    let labels = ["type-howto", "type-reference", "tool-jira", "tool-jenkins"];
    let long_title = "A very long page title ".repeat(20);
    for i in 0..20_000 {
        let label = labels[i % labels.len()];
        r.record(&outcome(
            &i.to_string(),
            &long_title,
            Status::Tagged,
            &[],
            &[label],
            None,
        ));
        if i % 10 == 0 {
            r.record(&outcome(
                &format!("f{i}"),
                "x",
                Status::Failed,
                &[],
                &[],
                Some("boom"),
            ));
        }
    }
    let opts = MarkdownOptions::default();
    let md = render_md(&r, &opts);
    assert!(md.len() < 65_536, "{} bytes", md.len());
    assert_eq!(md.matches("  - and 4,990 more").count(), 4, "{md}");
    assert!(md.contains("| and 1,970 more | |"), "{md}");
    assert!(md.contains('…'));

    // The overall budget: later labels show their count only.
    let tight = MarkdownOptions {
        max_pages_listed: 15,
        ..opts
    };
    let md = render_md(&r, &tight);
    let links = md.lines().filter(|l| l.starts_with("  - [")).count();
    assert_eq!(links, 15, "{md}");
}

// ---------------------------------------------------------------------------------------------
// Figures

#[test]
fn percentiles_by_nearest_rank() {
    let ms = Duration::from_millis;
    assert_eq!(Latency::from_samples(&[]), Latency::default());
    let one = Latency::from_samples(&[ms(7)]);
    assert_eq!(
        (one.count, one.p50, one.p95, one.max),
        (1, Some(ms(7)), Some(ms(7)), Some(ms(7)))
    );
    let two = Latency::from_samples(&[ms(20), ms(10)]);
    assert_eq!((two.p50, two.p95), (Some(ms(10)), Some(ms(20))));
    let hundred: Vec<Duration> = (1..=100).rev().map(ms).collect();
    let h = Latency::from_samples(&hundred);
    assert_eq!(
        (h.p50, h.p95, h.max),
        (Some(ms(50)), Some(ms(95)), Some(ms(100)))
    );
    let twenty: Vec<Duration> = (1..=20).map(ms).collect();
    assert_eq!(quantile(&twenty, 0.95), Some(ms(19)));
    assert_eq!(quantile(&twenty, 0.5), Some(ms(10)));
    assert_eq!(quantile(&[], 0.5), None);
    // Nearest rank rounds the rank up: 0.95 × 11 = 10.45 → the 11th value, not the 10th.
    let eleven: Vec<Duration> = (1..=11).map(ms).collect();
    assert_eq!(quantile(&eleven, 0.95), Some(ms(11)));
    assert_eq!(quantile(&eleven[..3], 0.5), Some(ms(2)));
    assert_eq!(quantile(&eleven[..4], 0.5), Some(ms(2)));
    assert_eq!(quantile(&twenty, 0.0), Some(ms(1)));
    assert_eq!(quantile(&twenty, 1.0), Some(ms(20)));
}

#[test]
fn cost_arithmetic() {
    let prices = Prices::default();
    let mut p = ProviderMetrics::new("gemini", Some("gemini-2.5-flash".into()));
    p.stats.tokens_in = 1_000_000;
    p.stats.tokens_out = 1_000_000;
    assert_eq!(prices.cost(&p), Some(2.80));
    p.stats.tokens_in = 12_345;
    p.stats.tokens_out = 678;
    // 12,345 × 0.30 / 1e6 + 678 × 2.50 / 1e6 = 0.0037035 + 0.001695
    assert_eq!(prices.cost(&p), Some(0.005399));
    p.model = Some("gemini-9-ultra".into());
    assert_eq!(prices.cost(&p), None, "an unknown model gets no guess");
    let rules = ProviderMetrics::new("rules", None);
    assert_eq!(prices.cost(&rules), Some(0.0));
    // Cached input at the cached rate: 1,000,000 in of which 800,000 cached, for 2.5 Flash
    // 200,000 × 0.30 + 800,000 × 0.075 = 0.06 + 0.06; a model without a cached price pays
    // its input price for them.
    let mut cached = ProviderMetrics::new("gemini", Some("gemini-2.5-flash".into()));
    cached.stats.tokens_in = 1_000_000;
    cached.stats.tokens_cached = 800_000;
    assert_eq!(prices.cost(&cached), Some(0.12));
    let mut full = Prices::default();
    full.set("gemini", "gemini-2.5-flash", 0.30, 2.50);
    assert_eq!(full.cost(&cached), Some(0.30));

    let mut custom = Prices::default();
    custom
        .parse_overrides("gemini/gemini-9-ultra=1:4,  openai/*=0.5:2.0")
        .unwrap();
    assert_eq!(custom.cost(&p), Some(0.015057)); // 0.012345 + 0.002712
    let o = |model: &str| {
        let mut o = ProviderMetrics::new("openai", Some(model.into()));
        o.stats.tokens_in = 2_000_000;
        o
    };
    assert_eq!(custom.cost(&o("anything")), Some(1.0), "wildcard");
    assert_eq!(
        custom.cost(&o("gpt-4.1-mini")),
        Some(0.8),
        "the exact model beats *"
    );
    for bad in [
        "gemini=1:2",
        "gemini/x=1",
        "gemini/x=a:2",
        "gemini/x=-1:2",
        "/x=1:2",
    ] {
        let e = Prices::default().parse_overrides(bad).unwrap_err();
        assert!(e.contains("e.g. gemini/"), "{bad}: {e}");
    }

    // The run's total counts priced providers only.
    let r = sample(true);
    // gemini 0.005399 + openai (0.0008 + 0.00024) + rules 0
    assert_eq!(r.total_cost(), Some(0.006439));
}

#[test]
fn record_counts_and_interns() {
    let r = sample(true);
    let c = r.counts();
    assert_eq!(
        (c.seen, c.tagged, c.unchanged, c.skipped, c.failed, c.labels),
        (6, 3, 1, 1, 1, 4)
    );
    let pages = r.pages();
    assert_eq!(pages.len(), 6);
    let p = pages.iter().find(|p| p.id() == "1010").unwrap();
    assert_eq!(p.labels(), ["type-howto", "tool-jenkins"]);
    assert_eq!(p.labels_before(), ["archived"]);

    let mut counts_only = RunReport::new(r.run().clone(), r.settings().clone()).counts_only();
    for p in sample_pages() {
        counts_only.record(&p);
    }
    assert_eq!(counts_only.counts(), r.counts());
    assert!(counts_only.pages().is_empty());
    assert!(to_json_value(&counts_only)["pages"].is_null());
}

#[test]
fn wait_reasons_keep_their_report_names() {
    for (name, label, w) in [
        ("preflight", "quota pacing", WaitReason::Preflight),
        ("cooldown_429", "429 cooldown", WaitReason::Cooldown429),
        ("backoff_5xx", "5xx backoff", WaitReason::Backoff5xx),
        ("concurrency", "concurrency", WaitReason::Concurrency),
    ] {
        assert_eq!(
            (w.as_str(), w.to_string().as_str(), w.label()),
            (name, name, label)
        );
    }
    let p = ProviderMetrics::new("x", None);
    assert_eq!(p.wait(WaitReason::Backoff5xx), WaitStats::default());
}

// ---------------------------------------------------------------------------------------------
// Secrets

#[test]
fn no_secret_reaches_any_report() {
    let r = sample(true);
    let outputs = [
        render_table(&r, false),
        render_json(&r),
        render_md(&r, &MarkdownOptions::default()),
        format!("{:?}", r.settings()),
    ];
    for out in &outputs {
        for secret in [
            GEMINI_KEY,
            OPENAI_KEY,
            CONFLUENCE_TOKEN,
            CONFLUENCE_EMAIL,
            URL_PASSWORD,
            "proxy-user",
            "SECRET",
        ] {
            assert!(!out.contains(secret), "{secret} leaked into:\n{out}");
        }
    }
    // The settings still say what was in effect.
    let s = r.settings();
    assert_eq!(
        s.providers[1].base_url.as_deref(),
        Some("https://llm.acme.test/v1")
    );
    assert_eq!(s.confluence.as_ref().unwrap().auth, "basic");
    // And no field is named like a secret.
    fn keys(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    out.push(k.clone());
                    keys(v, out);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| keys(v, out)),
            _ => {}
        }
    }
    let mut names = Vec::new();
    keys(&to_json_value(&r)["settings"], &mut names);
    for k in names {
        let k = k.to_lowercase();
        assert!(
            !["key", "secret", "password", "email", "pat", "credential"]
                .iter()
                .any(|bad| k.split('_').any(|w| w == *bad)),
            "settings field {k:?} looks like a secret"
        );
        assert!(k != "token" && k != "api_token", "{k}");
    }
}

#[test]
fn public_urls_lose_credentials_and_queries() {
    assert_eq!(
        public_url("https://u:p@host.test:8443/v1/?key=abc#frag"),
        "https://host.test:8443/v1"
    );
    assert_eq!(public_url("not a url with key=abc"), "(invalid URL)");
}

#[test]
fn an_unfinished_run_says_so_first_in_every_report() {
    use super::model::RunStatus;
    let mut r = sample(false);
    r.set_pages_listed(9);
    r.set_end(RunStatus::Interrupted, None);
    let json = to_json_value(&r);
    assert_valid(&json);
    assert_eq!(json["run"]["status"], "interrupted");
    assert_eq!(json["run"]["pages_listed"], 9);
    let md = render_md(&r, &MarkdownOptions::default());
    assert_eq!(
        md.lines().next().unwrap(),
        "## tag-space: ENG (add): **Interrupted: 6 of 9 listed pages done**"
    );
    let table = render_table(&r, false);
    assert!(
        table.starts_with("tag-space: space ENG (add): interrupted: 6 of 9 listed pages done\n"),
        "{table}"
    );

    r.set_end(
        RunStatus::Failed,
        Some("no LLM provider can be used".into()),
    );
    let json = to_json_value(&r);
    assert_valid(&json);
    assert_eq!(json["run"]["status"], "failed");
    assert_eq!(json["run"]["error"], "no LLM provider can be used");
    let md = render_md(&r, &MarkdownOptions::default());
    let mut lines = md.lines();
    assert_eq!(
        lines.next().unwrap(),
        "## tag-space: ENG (add): **Failed: 6 of 9 listed pages done**"
    );
    assert_eq!(
        lines.nth(1).unwrap(),
        "Stopped by: no LLM provider can be used"
    );
    // A finished run reads as before.
    assert_eq!(to_json_value(&sample(true))["run"]["status"], "finished");
}

#[test]
fn a_sync_report_lists_every_removal_however_many() {
    let mut run = RunInfo::new("ENG", Mode::Sync, true, at(STARTED));
    run.version = "0.0.0-test".into();
    let mut r = RunReport::new(run, report_settings(&config(true), "fp"));
    for i in 0..40 {
        let mut o = outcome(
            &i.to_string(),
            &format!("Page {i}"),
            Status::Tagged,
            &["tool-kafka"],
            &[],
            None,
        );
        o.removed = vec!["tool-kafka".into()];
        r.record(&o);
    }
    assert_eq!(r.counts().labels_removed, 40);
    let opts = MarkdownOptions {
        max_pages_per_label: 3,
        max_pages_listed: 5,
        ..MarkdownOptions::default()
    };
    let md = render_md(&r, &opts);
    let section = md.split("### Labels to remove").nth(1).unwrap();
    assert!(section.contains("- **tool-kafka** (40 pages)"), "{md}");
    // Never cut short: every page that loses the label is named.
    assert_eq!(section.matches("  - [Page ").count(), 40, "{md}");
    assert!(
        md.contains("**0** labels to add, **40** to remove."),
        "{md}"
    );
    let json = to_json_value(&r);
    assert_valid(&json);
    assert_eq!(
        json["pages"][0]["labels_to_remove"],
        serde_json::json!(["tool-kafka"])
    );
    let table = render_table(&r, false);
    assert!(
        table.contains("| labels to add | labels to remove |"),
        "{table}"
    );
}

#[test]
fn a_batch_run_says_how_many_pages_a_job_answered_in_every_report() {
    let mut r = sample(false);
    let mut providers = sample_providers();
    // 400 requests answered by a job: 1,995 pages, their tokens at half the rate.
    providers[0].add_batch(400, 1_995, 1_000_000, 0);
    r.set_providers(providers);
    let table = render_table(&r, false);
    assert!(table.contains("batch pages"), "{table}");
    assert!(
        table.contains("(1,995 pages through a batch job, at half price)"),
        "{table}"
    );
    let md = render_md(&r, &MarkdownOptions::default());
    assert!(
        md.contains("1,995 pages through a batch job (half price)"),
        "{md}"
    );
    let json: serde_json::Value = serde_json::from_str(&render_json(&r)).unwrap();
    assert_valid(&json);
    let gemini = &json["metrics"]["providers"][0];
    assert_eq!(gemini["batch"]["pages"], 1_995);
    // 1,012,345 in, 1,000,000 of them at 0.15 instead of 0.30: 0.15 + 0.005399.
    assert_eq!(gemini["estimated_cost_usd"], 0.155399);
    // A run without a batch job shows no batch row at all.
    assert!(!render_table(&sample(false), false).contains("batch pages"));
}
