//! Plan files through the built binary (issue 15): `--dry-run --plan FILE`, then
//! `tag-space apply FILE`, against the stateful Cloud and Data Center fakes of `livesite.rs`
//! (whose record of every label write is the check) and an LLM fake that picks the first tag
//! of each category. A person's edits and label changes go to the fake's state directly.
//!
//! Taxonomies: FULL (`type-howto`, `status-draft`), REDUCED (`type-howto`), ALT
//! (`type-howto`, `tool-jira`).

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use wiremock::MockServer;

use crate::harness::OutputBounded;
pub use crate::harness::labels::{Env, PAGES};
use crate::livesite::Flavor;

pub async fn env(flavor: Flavor) -> Env {
    env_of(flavor, PAGES).await
}

/// As [`env`], with `pages` pages.
pub async fn env_of(flavor: Flavor, pages: u64) -> Env {
    Env::with_pages(flavor, pages, Duration::ZERO).await
}

impl Env {
    pub fn command(&self, taxonomy: &str, args: &[&str]) -> Command {
        self.tag_space(taxonomy, args)
    }

    /// `tag-space --space ENG --taxonomy <taxonomy>.toml <extra>`
    fn run(&self, taxonomy: &str, extra: &[&str]) -> Output {
        let mut args = vec!["--space", "ENG"];
        args.extend_from_slice(extra);
        let out = self.command(taxonomy, &args).output_bounded();
        assert_eq!(out.status.code(), Some(0), "{extra:?}: {}", stderr(&out));
        out
    }

    /// A dry run under `taxonomy` writing `plan.json` (and `plan.md`).
    pub fn plan(&self, taxonomy: &str, extra: &[&str]) -> Value {
        let mut args = vec!["--dry-run", "--plan", "plan.json", "--report", "plan.md"];
        args.extend_from_slice(extra);
        self.run(taxonomy, &args);
        serde_json::from_str(&std::fs::read_to_string(self.path("plan.json")).unwrap()).unwrap()
    }

    /// `tag-space apply plan.json --taxonomy <taxonomy>.toml <extra>`
    pub fn apply(&self, taxonomy: &str, extra: &[&str]) -> Output {
        let mut args = vec!["apply", "plan.json"];
        args.extend_from_slice(extra);
        self.command(taxonomy, &args).output_bounded()
    }

    fn posted(&self) -> Vec<(u64, String)> {
        let mut p = self.site.state().posted.clone();
        p.sort();
        p
    }
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The (page, label) pairs a plan adds.
fn planned_adds(plan: &Value) -> Vec<(u64, String)> {
    let mut v = Vec::new();
    for space in plan["spaces"].as_array().unwrap() {
        for page in space["pages"].as_array().unwrap() {
            for l in page["add"].as_array().unwrap() {
                let id: u64 = page["id"].as_str().unwrap().parse().unwrap();
                v.push((id, l["label"].as_str().unwrap().to_string()));
            }
        }
    }
    v.sort();
    v
}

/// Validates `doc` against `docs/plan.schema.json`.
pub fn assert_schema_valid(doc: &Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/plan.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let validator = jsonschema::draft202012::new(&schema).expect("the schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "plan does not match its schema: {errors:#?}\n{doc:#}"
    );
}

/// The Markdown report of a run against a site has the site's figures: a "Confluence" table
/// whose request count is that of a run that listed pages and read their labels.
fn assert_confluence_figures(md: &str) {
    let mut rows = md
        .lines()
        .skip_while(|l| *l != "### Confluence")
        .filter(|l| l.starts_with('|'));
    let header = rows
        .next()
        .unwrap_or_else(|| panic!("no Confluence table in\n{md}"));
    assert!(
        header.starts_with("| Requests | 429s | Downloaded |"),
        "{md}"
    );
    let figures = rows.nth(1).unwrap_or_else(|| panic!("no figures in\n{md}"));
    let requests: u64 = figures.split('|').nth(1).unwrap().trim().parse().unwrap();
    assert!(requests >= 2, "{md}");
}

// ---- the round trip -------------------------------------------------------------------

/// The dry run writes nothing and plans both tags on every page; apply writes exactly the
/// plan with no model call; the next incremental run finds every page finished.
async fn round_trip(flavor: Flavor) {
    let e = env(flavor).await;
    let plan = e.plan("full", &[]);
    assert!(e.posted().is_empty(), "a dry run with --plan wrote labels");
    assert_schema_valid(&plan);
    let expected: Vec<(u64, String)> = (1..=PAGES)
        .flat_map(|p| [(p, "status-draft".into()), (p, "type-howto".into())])
        .collect();
    assert_eq!(planned_adds(&plan), expected);
    assert_eq!(plan["mode"], "add");
    assert_eq!(
        plan["spaces"][0]["pages"][0]["add"][0]["provider"],
        "openai"
    );
    let md = std::fs::read_to_string(e.path("plan.md")).unwrap();
    assert!(md.contains("type-howto"), "{md}");
    assert_confluence_figures(&md);

    let asked = e.site.state().requests("llm");
    let out = e.apply("full", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        e.posted(),
        expected,
        "apply wrote other labels than planned"
    );
    assert_eq!(
        e.site.state().requests("llm"),
        asked,
        "apply asked the model"
    );

    // The ledger has the writes: the next run does nothing.
    let out = e.run("full", &["--format", "json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["metrics"]["pages"]["unchanged"], PAGES, "{report:#}");
    assert_eq!(
        e.site.state().requests("llm"),
        asked,
        "the next run asked the model"
    );
    assert_eq!(e.posted(), expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn cloud_apply_writes_exactly_the_plan_and_the_next_run_sees_it() {
    round_trip(Flavor::Cloud).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dc_apply_writes_exactly_the_plan_and_the_next_run_sees_it() {
    round_trip(Flavor::Dc).await;
}

// ---- stale pages ----------------------------------------------------------------------

async fn edited_page_is_stale(flavor: Flavor) {
    let e = env(flavor).await;
    e.plan("full", &[]);
    e.site.edit(2);
    let out = e.apply(
        "full",
        &["--report", "applied.json", "--report", "applied.md"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        e.posted().iter().all(|(p, _)| *p != 2),
        "a stale page was written: {:?}",
        e.posted()
    );
    assert!(e.has(1, "type-howto") && e.has(3, "status-draft"));
    assert!(
        stderr(&out).contains("stale pages (edited since the plan, so left alone): 1"),
        "{}",
        stderr(&out)
    );
    let line = stdout(&out);
    assert!(
        line.contains(
            "stale      2 \"How to deploy service 2\": edited since the plan (version 1 planned, 2 now)"
        ),
        "{line}"
    );
    let md = std::fs::read_to_string(e.path("applied.md")).unwrap();
    assert!(
        md.contains("### Stale: edited since the plan, not applied (1)")
            && md.contains("How to deploy service 2"),
        "{md}"
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(e.path("applied.json")).unwrap()).unwrap();
    let page2 = report["pages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "2")
        .unwrap();
    assert_eq!(page2["status"], "stale", "{page2:#}");
    assert!(
        page2["skip_reason"]
            .as_str()
            .unwrap()
            .starts_with("edited since the plan (version 1 planned, 2 now)"),
        "{page2:#}"
    );
    let pages = &report["metrics"]["pages"];
    assert_eq!((&pages["stale"], &pages["skipped"]), (&1.into(), &0.into()));
    assert!(md.contains("**1** stale (edited since the plan)"), "{md}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cloud_a_page_edited_after_the_plan_is_stale_and_untouched() {
    edited_page_is_stale(Flavor::Cloud).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dc_a_page_edited_after_the_plan_is_stale_and_untouched() {
    edited_page_is_stale(Flavor::Dc).await;
}

// ---- a person's removals --------------------------------------------------------------

/// Run 1 adds `type-howto`; the plan (FULL) adds `status-draft` beside it; a person then
/// removes `type-howto` from page 1. Apply adds `status-draft` and does not put
/// `type-howto` back (the plan never said to add it: it was there).
async fn person_removal_respected(flavor: Flavor) {
    let e = env(flavor).await;
    e.run("reduced", &[]);
    let plan = e.plan("full", &[]);
    assert_eq!(
        planned_adds(&plan),
        (1..=PAGES)
            .map(|p| (p, "status-draft".to_string()))
            .collect::<Vec<_>>()
    );
    e.site.person_removes(1, "type-howto");
    let before = e.posted();
    let out = e.apply("full", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(e.has(1, "status-draft"));
    assert!(
        !e.has(1, "type-howto"),
        "apply put back a label a person removed"
    );
    let new: Vec<_> = e
        .posted()
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert!(new.iter().all(|(_, l)| l == "status-draft"), "{new:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cloud_a_label_a_person_removed_after_the_plan_is_not_added_again() {
    person_removal_respected(Flavor::Cloud).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dc_a_label_a_person_removed_after_the_plan_is_not_added_again() {
    person_removal_respected(Flavor::Dc).await;
}

/// A `--sync` plan (ALT after a FULL run) removes tag-space's `status-draft` and adds
/// `tool-jira`; a person's own `keep-me` on page 2 is in no plan. Before apply, a person
/// removes `status-draft` from page 1 themselves. Apply sends no removal for page 1 (the
/// fresh read sees it gone), removes `status-draft` elsewhere, and leaves `keep-me`. The
/// schema holds for a plan with removals.
async fn sync_plan(flavor: Flavor) {
    let e = env(flavor).await;
    e.run("full", &[]);
    e.site.person_adds(2, "keep-me");
    let plan = e.plan("alt", &["--sync"]);
    assert_schema_valid(&plan);
    assert_eq!(plan["mode"], "sync");
    let page = &plan["spaces"][0]["pages"][0];
    assert_eq!(page["remove"][0]["label"], "status-draft", "{plan:#}");
    e.site.person_removes(1, "status-draft");
    let out = e.apply("alt", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let deleted = e.site.state().deleted.clone();
    assert!(
        deleted.iter().all(|(p, l)| *p != 1 && l == "status-draft"),
        "{deleted:?}"
    );
    assert!(e.has(2, "keep-me") && e.has(1, "tool-jira") && !e.has(2, "status-draft"));
}

#[tokio::test(flavor = "multi_thread")]
async fn cloud_a_sync_plan_removes_only_what_it_lists_and_is_still_tag_spaces() {
    sync_plan(Flavor::Cloud).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dc_a_sync_plan_removes_only_what_it_lists_and_is_still_tag_spaces() {
    sync_plan(Flavor::Dc).await;
}

// ---- applied twice, dry-run apply -----------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn an_applied_plan_applied_again_writes_nothing_and_a_dry_run_apply_writes_nothing() {
    let e = env(Flavor::Cloud).await;
    e.plan("full", &[]);
    let out = e.apply("full", &["--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(e.posted().is_empty(), "a dry-run apply wrote");
    assert!(stdout(&out).contains("would add"), "{}", stdout(&out));
    let out = e.apply("full", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let written = e.posted();
    assert_eq!(written.len(), 2 * PAGES as usize);
    // Adding labels does not move a page's version on: the pages are not stale, and
    // already carry every planned label.
    let out = e.apply("full", &["--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(e.posted(), written, "applied twice");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["metrics"]["pages"]["unchanged"], PAGES, "{report:#}");
}

// ---- refusals -------------------------------------------------------------------------

/// Exit 2, one line on stderr naming the plan, nothing written.
fn assert_refused(e: &Env, out: &Output, says: &str) {
    assert_eq!(out.status.code(), Some(2), "{}", stderr(out));
    let err = stderr(out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("plan.json") && err.contains(says), "{err}");
    assert!(e.posted().is_empty(), "a refused plan wrote labels");
}

fn edit_plan(e: &Env, f: impl FnOnce(&str) -> String) {
    let text = std::fs::read_to_string(e.path("plan.json")).unwrap();
    std::fs::write(e.path("plan.json"), f(&text)).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_foreign_future_and_unparseable_plans_are_refused() {
    let e = env(Flavor::Cloud).await;
    e.plan("full", &[]);
    let good = std::fs::read_to_string(e.path("plan.json")).unwrap();

    edit_plan(&e, |t| t.replacen("status-draft", "type-howto", 1));
    let out = e.apply("full", &[]);
    assert_refused(&e, &out, "checksum does not match");

    edit_plan(&e, |_| {
        good.replace("\"plan_version\": 1", "\"plan_version\": 2")
    });
    let out = e.apply("full", &[]);
    assert_refused(&e, &out, "a plan of version 2");

    edit_plan(&e, |_| "{\"plan_version\": 1, \"spaces\": [".into());
    let out = e.apply("full", &[]);
    assert_refused(&e, &out, "is not a tag-space plan");

    edit_plan(&e, |_| good.clone());
    let out = e.apply("reduced", &[]);
    assert_refused(&e, &out, "another taxonomy");

    let other = MockServer::start().await;
    let out = e
        .command("full", &["apply", "plan.json"])
        .env("CONFLUENCE_BASE_URL", format!("{}/wiki", other.uri()))
        .output_bounded();
    assert_refused(&e, &out, "not for the configured site");
    assert!(other.received_requests().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_needs_a_dry_run() {
    let e = env(Flavor::Cloud).await;
    let out = e
        .command("full", &["--space", "ENG", "--plan", "plan.json"])
        .output_bounded();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--plan needs --dry-run"),
        "{}",
        stderr(&out)
    );
    assert!(!e.path("plan.json").exists());
    assert!(e.posted().is_empty());
}
