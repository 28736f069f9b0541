//! `--via batch` through `app::run`: a generated Confluence site (`fakesite.rs`) and the
//! Gemini batch fake (`batchfake.rs`, which also answers interactive calls and counts them),
//! all on 127.0.0.1. Real sockets, so real time: `--wait` polls every 50 ms.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use clap::Parser;
use tag_space::app::{self, Session};
use tag_space::cache::{Store, StoreOptions};
use tag_space::cli::Args;
use tag_space::config::Config;
use tag_space::pipeline::{IN_OPEN_JOB, SENT_TO_BATCH};
use tag_space::report::model::RunReport;
use wiremock::{Mock, MockServer};

use super::batchfake::{self, Fake, KEY, Script};
use super::fakesite::CloudSite;
use crate::harness::OutputBounded;

struct Env {
    dir: tempfile::TempDir,
    confluence: MockServer,
    gemini: MockServer,
    fake: Fake,
}

impl Env {
    async fn new(pages: u64, script: Script) -> Self {
        let confluence = MockServer::start().await;
        Mock::given(wiremock::matchers::any())
            .respond_with(CloudSite {
                pages,
                per_page: 250,
            })
            .mount(&confluence)
            .await;
        let (gemini, fake) = batchfake::gemini(script).await;
        Self {
            dir: tempfile::tempdir().unwrap(),
            confluence,
            gemini,
            fake,
        }
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("state.db")
    }

    fn report_path(&self, n: usize) -> PathBuf {
        self.dir.path().join(format!("run{n}.json"))
    }

    fn config(&self, args: &[&str], vars: &[(&str, &str)]) -> Config {
        let db = self.db();
        let taxonomy = self.dir.path().join("taxonomy.toml");
        if !taxonomy.exists() {
            std::fs::write(&taxonomy, super::batchrun::taxonomy("")).unwrap();
        }
        let mut argv = vec!["tag-space", "--space", "ENG", "-q", "--via", "batch"];
        argv.extend(["--cache-path", db.to_str().unwrap()]);
        if !args.contains(&"--taxonomy") {
            argv.extend(["--taxonomy", taxonomy.to_str().unwrap()]);
        }
        argv.extend(args);
        let args = Args::try_parse_from(argv).unwrap();
        let mut map: HashMap<String, String> = [
            (
                "CONFLUENCE_BASE_URL",
                format!("{}/wiki", self.confluence.uri()),
            ),
            ("CONFLUENCE_EMAIL", "bot@example.test".into()),
            ("CONFLUENCE_API_TOKEN", "confluence-FAKE-token".into()),
            ("GEMINI_API_KEY", KEY.into()),
            ("GEMINI_BASE_URL", self.gemini.uri()),
            (
                "TAG_SPACE_LOCK_DIR",
                self.dir.path().join("locks").display().to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        map.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Config::from_sources(&args, |k| map.get(k).cloned()).unwrap()
    }

    /// One run with a JSON report `run{n}.json`.
    async fn run(&self, n: usize, args: &[&str], vars: &[(&str, &str)]) -> RunReport {
        let report = self.report_path(n);
        let mut all = vec!["--report", report.to_str().unwrap()];
        all.extend(args);
        app::run(self.config(&all, vars), Session::default())
            .await
            .unwrap()
    }

    fn report_json(&self, n: usize) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.report_path(n)).unwrap()).unwrap()
    }

    async fn label_writes(&self) -> usize {
        self.confluence
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.method.as_str() == "POST" && r.url.path().ends_with("/label"))
            .count()
    }

    /// The provider moves every job on: its next poll finds it finished.
    fn time_passes(&self) {
        let mut st = self.fake.state();
        let polls = st.script.polls_to_finish - 1;
        for job in &mut st.jobs {
            job.polls = polls;
        }
    }

    fn store(&self) -> Store {
        Store::open(self.db(), StoreOptions::default()).unwrap()
    }
}

/// Pages per reason in a JSON report.
fn reasons(report: &serde_json::Value) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for p in report["pages"].as_array().unwrap() {
        let r = p["skip_reason"]
            .as_str()
            .unwrap_or(p["status"].as_str().unwrap());
        *out.entry(r.to_string()).or_default() += 1;
    }
    out
}

/// `tag-space jobs` through the built binary.
fn jobs_listing(db: &Path) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tag-space"))
        .args(["jobs", "--cache-path", db.to_str().unwrap()])
        .env_clear()
        .env("NO_COLOR", "1")
        .output_bounded();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_12000_page_space_goes_through_submit_then_collect_with_one_job_per_chunk() {
    const PAGES: u64 = 12_000;
    // Request r7 of the job fails at the provider: its 5 pages go through the chain.
    let script = Script {
        polls_to_finish: 2,
        fail_keys: ["r7".to_string()].into(),
        ..Script::default()
    };
    let env = Env::new(PAGES, script).await;

    // Run 1: everything needs the model: one job, nothing written, no interactive call.
    let r = env.run(1, &[], &[]).await;
    assert_eq!((r.counts().skipped, r.counts().tagged), (PAGES, 0));
    assert_eq!(reasons(&env.report_json(1))[SENT_TO_BATCH], PAGES as usize);
    let jobs = env.store().jobs(Some("ENG")).unwrap();
    let requests = PAGES.div_ceil(5);
    assert_eq!(jobs.len(), 1, "one job per planned chunk");
    assert_eq!((jobs[0].requests, jobs[0].pages), (requests, PAGES));
    {
        let st = env.fake.state();
        assert_eq!((st.creates, st.interactive_calls), (1, 0));
        assert_eq!(st.jobs[0].requests.len() as u64, requests);
    }
    assert_eq!(env.label_writes().await, 0);

    // Run 2: the job is still pending: its pages are neither asked nor submitted again.
    let r = env.run(2, &[], &[]).await;
    assert_eq!(r.counts().skipped, PAGES);
    assert_eq!(reasons(&env.report_json(2))[IN_OPEN_JOB], PAGES as usize);
    {
        let st = env.fake.state();
        assert_eq!((st.creates, st.interactive_calls), (1, 0));
    }

    // Run 3: the job succeeded: every page is labelled; only r7's pages went interactive.
    let r = env.run(3, &[], &[]).await;
    assert_eq!(r.counts().tagged, PAGES, "{:?}", r.counts());
    assert_eq!(r.counts().failed, 0);
    assert_eq!(env.label_writes().await, PAGES as usize);
    let st = env.fake.state();
    assert_eq!(st.creates, 1, "no second job");
    assert_eq!(
        st.interactive_calls, 1,
        "one call for the 5 pages of the failed line"
    );
    drop(st);
    let gemini = &env.report_json(3)["metrics"]["providers"][0];
    assert_eq!(gemini["batch"]["pages"], PAGES - 5);
    assert_eq!(gemini["batch"]["requests"], requests - 1);
    assert_eq!(gemini["calls"], 1);
    println!("{}", jobs_listing(&env.db()));
    let mut table = Vec::new();
    tag_space::report::table::write_metrics_table(&mut table, &r, false).unwrap();
    let table = String::from_utf8(table).unwrap();
    println!("{table}");
    assert!(
        table.contains("(11,995 pages through a batch job, at half price)"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_collect_proposes_and_writes_nothing_then_a_real_run_applies_from_the_cache() {
    let env = Env::new(
        30,
        Script {
            polls_to_finish: 2,
            ..Script::default()
        },
    )
    .await;
    env.run(1, &[], &[]).await;
    env.time_passes();
    // Nothing is submitted by a dry run, and nothing is written.
    let r = env.run(2, &["--dry-run"], &[]).await;
    assert_eq!(r.counts().tagged, 30, "{:?}", r.counts());
    assert!(r.counts().labels > 0);
    assert_eq!(env.label_writes().await, 0, "a dry run writes no label");
    let store = env.store();
    assert!(
        store.page_ledger("ENG", "1").unwrap().labels.is_empty(),
        "nor the ledger"
    );
    drop(store);
    // The answers were paid for: the real run applies them without any model call.
    let r = env.run(3, &[], &[]).await;
    assert_eq!(r.counts().tagged, 30);
    assert_eq!(env.label_writes().await, 30);
    let st = env.fake.state();
    assert_eq!((st.creates, st.interactive_calls), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_made_with_another_taxonomy_is_not_applied_and_its_pages_go_to_a_new_job() {
    let env = Env::new(
        20,
        Script {
            polls_to_finish: 2,
            ..Script::default()
        },
    )
    .await;
    env.run(1, &[], &[]).await;
    let other = env.dir.path().join("other.toml");
    std::fs::write(&other, taxonomy(", as edited since")).unwrap();
    let r = env
        .run(2, &["--taxonomy", other.to_str().unwrap()], &[])
        .await;
    assert_eq!(
        r.counts().tagged,
        0,
        "the stale job's answers are not applied"
    );
    assert_eq!(r.counts().skipped, 20);
    assert_eq!(env.label_writes().await, 0);
    let jobs = env.store().jobs(Some("ENG")).unwrap();
    let states: Vec<&str> = jobs.iter().map(|j| j.state.as_str()).collect();
    assert!(states.contains(&"stale"), "{states:?}");
    let st = env.fake.state();
    assert_eq!(st.creates, 2, "its pages are submitted again");
    assert_eq!(st.interactive_calls, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_submits_polls_and_applies_in_the_same_run() {
    let env = Env::new(
        40,
        Script {
            polls_to_finish: 3,
            fail_keys: ["r1".to_string()].into(),
            ..Script::default()
        },
    )
    .await;
    let r = env
        .run(1, &["--wait"], &[("TAG_SPACE_BATCH_POLL_SECS", "0.05")])
        .await;
    assert_eq!(r.counts().tagged, 40, "{:?}", r.counts());
    assert_eq!(r.counts().seen, 40, "each page reported once");
    assert_eq!(env.label_writes().await, 40);
    let st = env.fake.state();
    assert_eq!((st.creates, st.interactive_calls), (1, 1));
    assert!(st.jobs[0].polls >= 3, "it waited for the job to finish");
    drop(st);
    let report = env.report_json(1);
    assert_eq!(report["metrics"]["providers"][0]["batch"]["pages"], 35);
    let cache = &report["metrics"]["cache"];
    assert_eq!(
        (cache["hits"].as_u64(), cache["misses"].as_u64()),
        (Some(35), Some(5)),
        "the scan's lookups are not counted: {cache}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_up_job_sends_the_failed_lines_to_a_new_job() {
    let env = Env::new(
        10,
        Script {
            polls_to_finish: 2,
            fail_keys: ["r0".to_string()].into(),
            ..Script::default()
        },
    )
    .await;
    env.run(1, &[], &[]).await;
    env.time_passes();
    let r = env.run(2, &["--follow-up-job"], &[]).await;
    assert_eq!((r.counts().tagged, r.counts().skipped), (5, 5));
    let st = env.fake.state();
    assert_eq!((st.creates, st.interactive_calls), (2, 0));
    assert_eq!(st.jobs[1].requests.len(), 1);
}

/// The tags the batch fake answers with (`reference`, `git`), in a taxonomy file.
fn taxonomy(extra: &str) -> String {
    format!(
        r#"
max_labels_per_page = 3

[[category]]
name = "type"
description = "What kind of page it is{extra}."
max_per_page = 1

[[category.tag]]
name = "how-to"
description = "Step-by-step instructions."

[[category.tag]]
name = "reference"
description = "Facts to look up."

[[category]]
name = "tool"
description = "Tools the page is about."
max_per_page = 2

[[category.tag]]
name = "git"
description = "Git."

[[category.tag]]
name = "docker"
description = "Docker."
"#
    )
}
