//! Several spaces in one run (issue 15): `--space A,B`, `--all-spaces` with
//! `--exclude-space`, one governor for all of them under one RPM quota, a missing, locked or
//! outage-stopped space, and the per-space breakdown in every report. Confluence is a
//! Cloud- or Data-Center-shaped fake with several spaces on 127.0.0.1; the LLM is the offline
//! keyword rules, or the quota simulator of `servecli.rs`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use clap::Parser;
use serde_json::{Value, json};
use tag_space::app::{self, Session};
use tag_space::cache::{Store, StoreOptions};
use tag_space::cli::Args;
use tag_space::config::Config;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::multisite::{Flavor, Space, serve, vars};
use super::servecli::{QuotaSim, SimState};
use crate::harness::proc::run_at_home as run_in;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn json_file(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `(space, status)` of each entry of the report's `spaces`.
fn ends(report: &Value) -> Vec<(String, String)> {
    report["spaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let f = |k: &str| s[k].as_str().unwrap_or_default().to_string();
            (f("space"), f("status"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_space_is_reported_and_the_others_are_labelled_exit_1() {
    let spaces = vec![
        Space("ENG", "11", "global", "current"),
        Space("OPS", "22", "global", "current"),
    ];
    let (site, seen) = serve(Flavor::Cloud, spaces, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args = [
        "--space",
        "ENG,NOPE",
        "--space",
        "OPS",
        "--fallback",
        "rules",
        "--report",
        "r.json",
        "--report",
        "r.md",
    ];

    let out = run_in(d, &args, &vars(Flavor::Cloud, &site));

    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("NOPE") && l.contains("not found")),
        "{stderr}"
    );
    // Both other spaces were listed and labelled, each page of each.
    assert_eq!(seen.lock().unwrap().listed, ["ENG", "OPS"]);
    let mut pages: Vec<String> = seen
        .lock()
        .unwrap()
        .posted
        .iter()
        .map(|(p, _)| p.clone())
        .collect();
    pages.sort();
    pages.dedup();
    assert_eq!(pages, ["11001", "11002", "22001", "22002"]);
    assert!(stdout.contains("[ENG] added      11001"), "{stdout}");
    assert!(
        stdout.contains("tag-space: spaces ENG, NOPE, OPS (add)"),
        "{stdout}"
    );
    assert!(stdout.contains("Spaces"), "{stdout}");

    let report = json_file(&d.join("r.json"));
    let schema: Value =
        serde_json::from_str(include_str!("../../docs/report.schema.json")).unwrap();
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&report)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "the report does not match its schema: {errors:?}"
    );
    assert_eq!(report["schema_version"], 4);
    assert_eq!(report["run"]["space"], Value::Null);
    assert_eq!(report["run"]["spaces"], json!(["ENG", "NOPE", "OPS"]));
    assert_eq!(report["run"]["status"], "finished");
    let by_space: Vec<(String, String)> = ends(&report);
    assert_eq!(
        by_space,
        [
            ("ENG".into(), "finished".into()),
            ("NOPE".into(), "failed".into()),
            ("OPS".into(), "finished".into())
        ]
    );
    let nope = &report["spaces"][1];
    assert!(nope["error"].as_str().unwrap().contains("NOPE"), "{nope}");
    assert_eq!(report["spaces"][0]["pages"]["tagged"], 2, "{report}");
    assert_eq!(report["spaces"][2]["pages"]["seen"], 2, "{report}");
    assert_eq!(report["metrics"]["pages"]["tagged"], 4, "{report}");
    let page_spaces: Vec<(&str, &str)> = report["pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["space"].as_str().unwrap()))
        .collect();
    assert_eq!(
        page_spaces,
        [
            ("11001", "ENG"),
            ("11002", "ENG"),
            ("22001", "OPS"),
            ("22002", "OPS")
        ]
    );
    let md = std::fs::read_to_string(d.join("r.md")).unwrap();
    assert!(
        md.starts_with("## tag-space: spaces ENG, NOPE, OPS (add)"),
        "{md}"
    );
    assert!(md.contains("| NOPE | failed |"), "{md}");

    // The run history has each space's run, the missing one as failed.
    let store = Store::open(d.join(".cache/tag-space/state.db"), StoreOptions::default()).unwrap();
    let stats = store.stats(5).unwrap();
    let runs: Vec<(String, Option<String>)> = stats
        .spaces
        .iter()
        .map(|s| {
            let end = s.runs[0]
                .end
                .as_ref()
                .map(|e| e.status.as_str().to_string());
            (s.space.clone(), end)
        })
        .collect();
    assert_eq!(
        runs,
        [
            ("ENG".into(), Some("finished".into())),
            ("NOPE".into(), Some("failed".into())),
            ("OPS".into(), Some("finished".into()))
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_space_whose_lock_is_held_is_reported_and_the_others_go_on() {
    let spaces = vec![
        Space("ENG", "11", "global", "current"),
        Space("OPS", "22", "global", "current"),
    ];
    let (site, seen) = serve(Flavor::Cloud, spaces, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let locks = d.join("locks");
    std::fs::create_dir_all(&locks).unwrap();
    let mut v = vars(Flavor::Cloud, &site);
    let site_root = site.uri();
    let held = tag_space::lock::try_acquire(&tag_space::lock::lock_path(&locks, &site_root, "ENG"));
    let _held = held.expect("the test holds ENG's lock");
    v.push(("TAG_SPACE_LOCK_DIR", locks.display().to_string()));

    let out = run_in(
        d,
        &[
            "--space",
            "ENG,OPS",
            "--fallback",
            "rules",
            "--dry-run",
            "--format",
            "json",
        ],
        &v,
    );

    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("space ENG") && l.contains("lock")),
        "{stderr}"
    );
    assert_eq!(seen.lock().unwrap().listed, ["OPS"]);
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        ends(&report),
        [
            ("ENG".into(), "failed".into()),
            ("OPS".into(), "finished".into())
        ]
    );
    assert_eq!(report["spaces"][1]["pages"]["tagged"], 1, "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn all_spaces_on_cloud_takes_team_spaces_and_leaves_out_personal_archived_and_excluded() {
    let spaces = vec![
        Space("OPS", "22", "collaboration", "current"),
        Space("~jdoe", "33", "personal", "current"),
        Space("ENG", "11", "global", "current"),
        Space("OLD", "44", "global", "archived"),
        Space("ARCH", "55", "global", "current"),
        Space("KB", "66", "knowledge_base", "current"),
        Space("SYS", "77", "system", "current"),
    ];
    let (site, seen) = serve(Flavor::Cloud, spaces, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args = [
        "--all-spaces",
        "--exclude-space",
        "arch",
        "--fallback",
        "rules",
        "--dry-run",
        "--report",
        "r.json",
        "--plan",
        "plan.json",
    ];

    let out = run_in(d, &args, &vars(Flavor::Cloud, &site));

    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("--all-spaces: 3 spaces to label (2 personal, archived or system spaces left out, 1 excluded)"),
        "{stderr}"
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.listed, ["ENG", "KB", "OPS"]);
    assert!(
        seen.space_lists
            .iter()
            .all(|q| q.contains("status=current")),
        "{:?}",
        seen.space_lists
    );
    assert_eq!(seen.space_lists.len(), 2, "both listing pages were read");
    assert!(seen.posted.is_empty(), "a dry run writes nothing");
    let report = json_file(&d.join("r.json"));
    assert_eq!(report["run"]["spaces"], json!(["ENG", "KB", "OPS"]));
    // One plan for the run, one entry per space, each with its page.
    let plan = json_file(&d.join("plan.json"));
    let planned: Vec<(&str, usize)> = plan["spaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["key"].as_str().unwrap(),
                s["pages"].as_array().unwrap().len(),
            )
        })
        .collect();
    assert_eq!(planned, [("ENG", 1), ("KB", 1), ("OPS", 1)], "{plan}");
    assert_eq!(report["metrics"]["pages"]["tagged"], 3, "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn all_spaces_on_data_center_asks_for_global_current_spaces_and_excludes() {
    let spaces = vec![
        Space("ENG", "11", "global", "current"),
        Space("~jdoe", "33", "personal", "current"),
        Space("OLD", "44", "global", "archived"),
        Space("TEAM", "55", "global", "current"),
        Space("OPS", "22", "global", "current"),
    ];
    let (site, seen) = serve(Flavor::Dc, spaces, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args = [
        "--all-spaces",
        "--exclude-space",
        "TEAM",
        "--fallback",
        "rules",
        "--report",
        "r.json",
        "--space-concurrency",
        "2",
    ];

    let out = run_in(d, &args, &vars(Flavor::Dc, &site));

    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let seen = seen.lock().unwrap();
    let mut listed = seen.listed.clone();
    listed.sort();
    assert_eq!(listed, ["ENG", "OPS"]);
    assert!(
        seen.space_lists
            .iter()
            .all(|q| q.contains("type=global") && q.contains("status=current")),
        "{:?}",
        seen.space_lists
    );
    let mut pages: Vec<&str> = seen.posted.iter().map(|(p, _)| p.as_str()).collect();
    pages.sort();
    pages.dedup();
    assert_eq!(pages.len(), 2, "{:?}", seen.posted);
    let report = json_file(&d.join("r.json"));
    assert_eq!(report["run"]["spaces"], json!(["ENG", "OPS"]));
    assert_eq!(report["metrics"]["pages"]["tagged"], 2, "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_total_llm_outage_stops_every_space_with_exit_2() {
    let spaces = vec![
        Space("ENG", "11", "global", "current"),
        Space("OPS", "22", "global", "current"),
    ];
    let (site, seen) = serve(Flavor::Cloud, spaces, 2).await;
    let llm = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}}),
        ))
        .mount(&llm)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut v = vars(Flavor::Cloud, &site);
    v.push(("OPENAI_API_KEY", "openai-made-up-key".into()));
    v.push(("OPENAI_BASE_URL", format!("{}/v1", llm.uri())));

    let out = run_in(d, &["--space", "ENG,OPS", "--report", "r.json"], &v);

    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stderr.contains("no LLM provider can be used"), "{stderr}");
    assert_eq!(seen.lock().unwrap().listed, ["ENG"], "OPS was not started");
    let report = json_file(&d.join("r.json"));
    assert_eq!(report["run"]["status"], "failed");
    assert_eq!(
        ends(&report),
        [
            ("ENG".into(), "failed".into()),
            ("OPS".into(), "failed".into())
        ]
    );
    assert!(
        report["spaces"][1]["error"]
            .as_str()
            .unwrap()
            .starts_with("not started: "),
        "{report}"
    );
}

const RPM: u32 = 30;
/// Pages per space: together more than one minute's quota, so that two governors (one per
/// space, each with a full minute's burst) would overrun it.
const PAGES: u64 = 17;

/// Two spaces at once, one page per request, one RPM quota: the run's one governor keeps
/// them together within it (no 429), where one governor per space would not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_spaces_at_once_share_one_governor_within_one_rpm_quota() {
    let spaces = vec![
        Space("ENG", "11", "global", "current"),
        Space("OPS", "22", "global", "current"),
    ];
    let (site, _) = serve(Flavor::Cloud, spaces, PAGES).await;
    let sim = Arc::new(Mutex::new(SimState::default()));
    let llm = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(QuotaSim {
            rpm: f64::from(RPM),
            state: sim.clone(),
        })
        .mount(&llm)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let args = Args::parse_from([
        "tag-space",
        "--space",
        "ENG,OPS",
        "--space-concurrency",
        "2",
        "--dry-run",
        "--batch-size",
        "1",
        "--concurrency",
        "2",
        "--max-concurrency",
        "4",
        "--quiet",
        "--cache-path",
        dir.path().join("state.db").to_str().unwrap(),
        "--format",
        "json",
    ]);
    let mut env: HashMap<&str, String> = vars(Flavor::Cloud, &site).into_iter().collect();
    env.insert("OPENAI_API_KEY", "openai-made-up-key".into());
    env.insert("OPENAI_BASE_URL", format!("{}/v1", llm.uri()));
    env.insert("TAG_SPACE_OPENAI_RPM", RPM.to_string());
    env.insert(
        "TAG_SPACE_LOCK_DIR",
        dir.path().join("locks").display().to_string(),
    );
    let config = Config::from_sources(&args, |k| env.get(k).cloned()).unwrap();

    let report = app::run(config, Session::default()).await.unwrap();

    let (calls, refused) = {
        let s = sim.lock().unwrap();
        (s.calls, s.refused)
    };
    assert_eq!(
        refused, 0,
        "the simulator refused {refused} of {calls} requests"
    );
    assert_eq!(calls, 2 * PAGES);
    assert_eq!(report.counts().tagged, 2 * PAGES);
    let spaces: Vec<(String, u64)> = report
        .spaces()
        .iter()
        .map(|s| (s.space.clone(), s.counts.tagged))
        .collect();
    assert_eq!(spaces, [("ENG".into(), PAGES), ("OPS".into(), PAGES)]);
    // One provider, so one governor: its figures cover both spaces' requests.
    assert_eq!(report.providers().len(), 1);
    assert_eq!(report.providers()[0].stats.calls, 2 * PAGES);
}
