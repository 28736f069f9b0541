//! `tag-space taxonomy init` and `tag-space eval` (issue 12) against Cloud- and Data-Center-
//! shaped fakes that record every write, and aliases in the pipeline.

use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use tag_space::confluence::MemorySource;
use tag_space::pipeline::{RunOptions, run};
use tag_space::taxonomy::Taxonomy;
use wiremock::MockServer;

use crate::harness::{BIN, OutputBounded};
use crate::livesite::{FirstTags, Flavor, LiveSite};
use crate::pipeline::{Scripted, page, taxonomy};

fn command(
    site: &LiveSite,
    confluence: &MockServer,
    llm: Option<&MockServer>,
    dir: &std::path::Path,
) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("NO_COLOR", "1")
        .env("CONFLUENCE_BASE_URL", site.base_url(confluence))
        .env("TAG_SPACE_CACHE_PATH", dir.join("state.db"))
        .env("TAG_SPACE_LOCK_DIR", dir.join("locks"))
        .current_dir(dir)
        .stdin(Stdio::null());
    if let Some(llm) = llm {
        cmd.env("OPENAI_API_KEY", "k")
            .env("OPENAI_BASE_URL", format!("{}/v1", llm.uri()));
    }
    match site.flavor {
        Flavor::Cloud => cmd
            .env("CONFLUENCE_EMAIL", "bot@acme.test")
            .env("CONFLUENCE_API_TOKEN", "tok"),
        Flavor::Dc => cmd.env("CONFLUENCE_PAT", "pat"),
    };
    cmd
}

/// Runs `cmd` off the async runtime's threads (the fakes answer on it).
async fn output(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output_bounded())
        .await
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn taxonomy_init_on_cloud_and_dc_drafts_from_every_page_and_writes_nothing() {
    for flavor in [Flavor::Cloud, Flavor::Dc] {
        // 7 pages, at most 3 per list answer: the listing takes three requests.
        let site = LiveSite::new(flavor, 7, 3);
        for p in 1..=3 {
            site.person_adds(p, "tool-kubernetes");
        }
        site.person_adds(4, "kubernetes");
        site.person_adds(1, "tool-jira");
        site.person_adds(2, "tool-jira");
        site.person_adds(5, "runbook");
        site.person_adds(6, "runbooks");
        site.person_adds(7, "fun");
        site.person_adds(7, "Bad Label");
        let server = site.serve().await;
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = command(&site, &server, None, dir.path());
        cmd.args([
            "taxonomy",
            "init",
            "--space",
            "ENG",
            "-o",
            "tax.toml",
            "--min-pages",
            "2",
        ]);
        let out = output(cmd).await;
        let stderr = text(&out.stderr);
        assert!(out.status.success(), "{flavor:?}: {stderr}");
        let tax = Taxonomy::load(&dir.path().join("tax.toml")).unwrap();
        let file = std::fs::read_to_string(dir.path().join("tax.toml")).unwrap();
        assert_eq!(
            tax.canonical("kubernetes"),
            Some("tool-kubernetes"),
            "{file}"
        );
        // One page each: the tie goes to the shorter spelling.
        assert_eq!(tax.canonical("runbooks"), Some("runbook"), "{file}");
        assert!(tax.contains("tool-jira"));
        assert!(!tax.contains("fun"), "on 1 page only");
        assert!(file.contains("#   fun (1)"), "{file}");
        assert!(
            file.contains("\"Bad Label\" (on 1 pages) contains whitespace"),
            "{file}"
        );
        assert!(stderr.contains("\"Bad Label\""), "{stderr}");
        assert!(file.contains("# on 4 pages"), "{file}");
        {
            let st = site.state();
            assert!(
                st.posted.is_empty() && st.deleted.is_empty(),
                "{flavor:?}: wrote to Confluence"
            );
            assert_eq!(st.requests("post") + st.requests("delete"), 0);
            assert_eq!(
                st.requests("list"),
                3,
                "{flavor:?}: every listing page followed"
            );
            // Data Center expands labels inline; Cloud needs one read per page.
            let reads = if flavor == Flavor::Cloud { 7 } else { 0 };
            assert_eq!(st.requests("read"), reads, "{flavor:?}");
        }
        // An existing file is not overwritten without --force.
        let mut again = command(&site, &server, None, dir.path());
        again.args(["taxonomy", "init", "--space", "ENG", "-o", "tax.toml"]);
        let out = output(again).await;
        assert_eq!(out.status.code(), Some(2));
        assert!(
            text(&out.stderr).contains("--force"),
            "{}",
            text(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn eval_on_cloud_scores_human_labels_writes_nothing_and_a_rerun_makes_no_call() {
    let site = LiveSite::new(Flavor::Cloud, 6, 4);
    site.person_adds(1, "type-howto");
    site.person_adds(2, "type-howto");
    site.person_adds(2, "tool-jira");
    site.person_adds(3, "fun");
    let server = site.serve().await;
    let llm = FirstTags::serve(&site, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let eval = |extra: &[&str]| {
        let mut cmd = command(&site, &server, Some(&llm), dir.path());
        cmd.args(["eval", "--space", "ENG", "--report", "eval.json"])
            .args(extra);
        cmd
    };
    let out = output(eval(&[])).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("micro avg") && stdout.contains("type-howto"),
        "{stdout}"
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("eval.json")).unwrap())
            .unwrap();
    assert_eq!(report["schema_version"], 1);
    assert_eq!(report["pages"]["listed"], 6);
    assert_eq!(
        report["pages"]["selected"], 2,
        "only pages 1 and 2 carry human taxonomy labels"
    );
    assert_eq!(report["pages"]["without_human_labels"], 4);
    let micro = &report["scores"]["micro"];
    // The fake proposes the first tag of every category: type-howto on both pages is right.
    assert_eq!(
        (micro["tp"].as_u64(), micro["fn"].as_u64()),
        (Some(2), Some(1)),
        "{report}"
    );
    assert_eq!(
        micro["fp"].as_u64().unwrap() as usize,
        report["scores"]["to_review"].as_array().unwrap().len()
    );
    let calls = site.state().requests("llm");
    assert!(calls >= 1);
    // Below the threshold: exit 1, and a rerun of the unchanged space asks the model nothing.
    let out = output(eval(&["--min-f1", "0.95"])).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("below --min-f1 0.95"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        site.state().requests("llm"),
        calls,
        "answered from the cache"
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("eval.json")).unwrap())
            .unwrap();
    assert_eq!(report["calls"], 0);
    let out = output(eval(&["--min-f1", "0.1"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let st = site.state();
    assert!(
        st.posted.is_empty() && st.deleted.is_empty(),
        "eval wrote to Confluence"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn eval_demo_runs_offline_and_reports_in_both_formats() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(BIN)
            .env_clear()
            .env("NO_COLOR", "1")
            .env("TAG_SPACE_CACHE_PATH", dir.path())
            .env("TAG_SPACE_LOCK_DIR", dir.path().join("locks"))
            .current_dir(dir.path())
            .args(["eval", "--demo"])
            .args(args)
            .output_bounded()
    };
    let out = run(&["--report", "e.json", "--report", "e.md"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("space EVAL (rules/keywords; dry run: nothing written)"));
    let md = std::fs::read_to_string(dir.path().join("e.md")).unwrap();
    assert!(md.contains("| **micro avg** |"), "{md}");
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("e.json")).unwrap()).unwrap();
    assert_eq!(json["space"], "EVAL");
    assert!(json["scores"]["micro"]["f1"].as_f64().unwrap() > 0.5);
    let out = run(&["--min-f1", "0.99"]);
    assert_eq!(out.status.code(), Some(1));
    let out = run(&["--report", "e.txt"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("e.txt"), "{}", text(&out.stderr));
    let out = run(&["--min-f1", "2"]);
    assert_eq!(out.status.code(), Some(2), "clap refuses it");
}

#[tokio::test]
async fn a_page_carrying_an_alias_does_not_get_the_tag_added() {
    let tax = taxonomy()
        .with_aliases([("type-howto".to_string(), vec!["howto".to_string()])], "t")
        .unwrap();
    let source = MemorySource::new(
        "ENG",
        vec![
            page("1", "<p>How to</p>", Some(&["howto"])),
            page("2", "<p>How to</p>", None),
        ],
    );
    let provider = Scripted::new(|batch: &[tag_space::llm::PageText]| {
        Ok(batch
            .iter()
            .map(|p| {
                (
                    p.id.clone(),
                    vec!["type-howto".to_string(), "tool-jira".to_string()],
                )
            })
            .collect::<BTreeMap<_, _>>())
    });
    let opts = RunOptions {
        space: "ENG".into(),
        batch_size: 2,
        max_batch_chars: 100_000,
        max_page_chars: 1000,
        max_in_flight: 2,
        ..RunOptions::default()
    };
    let mut out = BTreeMap::new();
    run(&source, &provider, &tax, &opts, |o| {
        out.insert(o.id.clone(), o);
    })
    .await
    .unwrap();
    assert_eq!(out["1"].added, ["tool-jira"], "no second label for how-to");
    assert_eq!(out["1"].chosen, ["type-howto", "tool-jira"]);
    assert_eq!(out["2"].added, ["type-howto", "tool-jira"]);
}

/// Answers each tag of a description request with "Described <tag>."; keeps the bodies.
#[derive(Clone, Default)]
struct Describer {
    bodies: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
}

impl wiremock::Respond for Describer {
    fn respond(&self, req: &wiremock::Request) -> wiremock::ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        self.bodies.lock().unwrap().push(body.clone());
        let schema = &body["response_format"]["json_schema"]["schema"];
        let answer: serde_json::Map<String, Value> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                let t = t.as_str().unwrap();
                (
                    t.to_string(),
                    serde_json::json!({"description": format!("Described {t}.")}),
                )
            })
            .collect();
        wiremock::ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant",
                "content": Value::Object(answer).to_string(), "refusal": null},
                "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
        }))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn taxonomy_init_describe_asks_the_model_with_the_titles_and_writes_a_loadable_file() {
    let site = LiveSite::new(Flavor::Dc, 4, 10);
    site.person_adds(1, "tool-kafka");
    site.person_adds(2, "tool-kafka");
    site.person_adds(3, "k8s");
    site.person_adds(4, "k8s");
    let server = site.serve().await;
    let llm = MockServer::start().await;
    let describer = Describer::default();
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .and(wiremock::matchers::path("/v1/chat/completions"))
        .respond_with(describer.clone())
        .mount(&llm)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let init = |extra: &[&str]| {
        let mut cmd = command(&site, &server, Some(&llm), dir.path());
        cmd.args([
            "taxonomy",
            "init",
            "--space",
            "ENG",
            "-o",
            "tax.toml",
            "--describe",
        ])
        .args(extra);
        cmd
    };
    // A dry run prints the prompt's size, asks nothing and writes nothing.
    let out = output(init(&["--dry-run"])).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("2 tags in 1 request(s), about"),
        "{}",
        text(&out.stderr)
    );
    assert!(describer.bodies.lock().unwrap().is_empty());
    assert!(!dir.path().join("tax.toml").exists());

    let out = output(init(&[])).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let bodies = describer.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1);
    let user = bodies[0]["messages"][1]["content"].as_str().unwrap();
    for id in 1..=4 {
        assert!(
            user.contains(&format!("- How to deploy service {id}")),
            "{user}"
        );
    }
    let tax = Taxonomy::load(&dir.path().join("tax.toml")).unwrap();
    let file = std::fs::read_to_string(dir.path().join("tax.toml")).unwrap();
    assert!(
        file.contains("description = \"Described tool-kafka.\""),
        "{file}"
    );
    assert!(file.contains("description = \"Described k8s.\""), "{file}");
    assert!(tax.contains("tool-kafka") && tax.contains("k8s"));
    let st = site.state();
    assert!(
        st.posted.is_empty() && st.deleted.is_empty(),
        "wrote to Confluence"
    );
}
