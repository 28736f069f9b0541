//! The state file end to end, through the built binary: a run killed with SIGKILL half-way
//! resumes without redoing or losing work; a broken state file is one clear line (exit 2)
//! unless `--no-cache`; `cache stats` and `cache clear`.
//!
//! Confluence here is a stateful fake (labels read back what was written), the LLM an
//! OpenAI-compatible fake that answers every page of a request and takes its time.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::harness::fakes::cloud_space;
use crate::harness::{BIN, OutputBounded, Running};

#[derive(Default)]
struct Site {
    /// Page id to its labels now.
    labels: BTreeMap<String, BTreeSet<String>>,
    /// Every (page, label) a POST carried, in order.
    posted: Vec<(String, String)>,
}

type Shared = Arc<Mutex<Site>>;

struct ReadLabels(Shared);
impl Respond for ReadLabels {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let id = req
            .url
            .path()
            .split('/')
            .nth(5)
            .unwrap_or_default()
            .to_string();
        let site = self.0.lock().unwrap();
        let results: Vec<Value> = site
            .labels
            .get(&id)
            .into_iter()
            .flatten()
            .map(|l| json!({"id": "1", "name": l, "prefix": "global"}))
            .collect();
        ResponseTemplate::new(200).set_body_json(json!({"results": results, "_links": {}}))
    }
}

struct AddLabels(Shared);
impl Respond for AddLabels {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        // /wiki/rest/api/content/{id}/label
        let id = req
            .url
            .path()
            .split('/')
            .nth(5)
            .unwrap_or_default()
            .to_string();
        let body: Vec<Value> = serde_json::from_slice(&req.body).unwrap();
        let mut site = self.0.lock().unwrap();
        for l in &body {
            let name = l["name"].as_str().unwrap().to_string();
            site.posted.push((id.clone(), name.clone()));
            site.labels.entry(id.clone()).or_default().insert(name);
        }
        ResponseTemplate::new(200).set_body_json(json!({"results": body}))
    }
}

/// Answers `type-howto` + `tool-jira` for every page id the request's schema requires,
/// after `delay`; from the request numbered `stall_from` on (counted from 0), never (the
/// answer would come in an hour), so that a run cannot finish before the test kills it.
struct Llm {
    delay: Duration,
    asked: Arc<Mutex<Vec<Vec<String>>>>,
    stall_from: Arc<AtomicUsize>,
}
impl Respond for Llm {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        let ids: Vec<String> = body["response_format"]["json_schema"]["schema"]["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        let answer: serde_json::Map<String, Value> = ids
            .iter()
            .map(|id| {
                (
                    id.clone(),
                    json!({"type": ["type-howto"], "tool": ["tool-jira"]}),
                )
            })
            .collect();
        let delay = {
            let mut asked = self.asked.lock().unwrap();
            asked.push(ids);
            if asked.len() > self.stall_from.load(Ordering::SeqCst) {
                Duration::from_secs(3600)
            } else {
                self.delay
            }
        };
        ResponseTemplate::new(200)
            .set_delay(delay)
            .set_body_json(json!({
                "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
                "choices": [{"index": 0, "message": {"role": "assistant",
                    "content": Value::Object(answer).to_string(), "refusal": null},
                    "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
            }))
    }
}

struct Fakes {
    confluence: MockServer,
    llm: MockServer,
    site: Shared,
    asked: Arc<Mutex<Vec<Vec<String>>>>,
    stall_from: Arc<AtomicUsize>,
}

async fn fakes(pages: usize, llm_delay: Duration) -> Fakes {
    let site: Shared = Arc::default();
    let results: Vec<Value> = (1..=pages)
        .map(|i| {
            json!({
                "id": i.to_string(), "status": "current", "title": format!("How to do thing {i}"),
                "spaceId": "98765", "version": {"number": 1},
                "body": {"storage": {"representation": "storage",
                    "value": format!("<p>Step 1 for thing {i}: open Jira.</p>")}},
                "_links": {"webui": format!("/spaces/ENG/pages/{i}")}
            })
        })
        .collect();
    let confluence = cloud_space(results).await;
    Mock::given(method("GET"))
        .and(path_regex(r"^/wiki/api/v2/pages/\d+/labels$"))
        .respond_with(ReadLabels(site.clone()))
        .mount(&confluence)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/wiki/rest/api/content/\d+/label$"))
        .respond_with(AddLabels(site.clone()))
        .mount(&confluence)
        .await;
    let llm = MockServer::start().await;
    let asked = Arc::default();
    let stall_from = Arc::new(AtomicUsize::new(usize::MAX));
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(Llm {
            delay: llm_delay,
            asked: Arc::clone(&asked),
            stall_from: Arc::clone(&stall_from),
        })
        .mount(&llm)
        .await;
    Fakes {
        confluence,
        llm,
        site,
        asked,
        stall_from,
    }
}

fn command(dir: &Path, f: &Fakes, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(dir)
        .env_clear()
        .env("NO_COLOR", "1")
        .env(
            "CONFLUENCE_BASE_URL",
            format!("{}/wiki", f.confluence.uri()),
        )
        .env("CONFLUENCE_EMAIL", "bot@acme.test")
        .env("CONFLUENCE_API_TOKEN", "tok")
        .env("OPENAI_API_KEY", "k")
        .env("OPENAI_BASE_URL", format!("{}/v1", f.llm.uri()))
        .env("TAG_SPACE_BATCH_SIZE", "2")
        .env("TAG_SPACE_AI_CONCURRENCY", "2")
        .env("TAG_SPACE_MAX_AI_CONCURRENCY", "2")
        .env("TAG_SPACE_CACHE_PATH", dir.join("state.db"))
        .env("TAG_SPACE_LOCK_DIR", dir.join("locks"));
    cmd
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn labelled(site: &Shared) -> usize {
    site.lock()
        .unwrap()
        .labels
        .values()
        .filter(|l| l.len() == 2)
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_killed_half_way_resumes_with_no_label_written_twice() {
    const PAGES: usize = 40;
    let f = fakes(PAGES, Duration::from_millis(250)).await;
    let dir = tempfile::tempdir().unwrap();

    // Run 1: killed (SIGKILL) once a quarter of the pages carry their labels. Its model
    // answers stop after 15 requests (30 pages): it cannot finish before the kill, however
    // slowly the test looks.
    f.stall_from.store(15, Ordering::SeqCst);
    let mut run_1 = Running::start(&mut command(dir.path(), &f, &["--space", "ENG", "-q"]));
    run_1
        .until("a quarter of the pages labelled", || {
            labelled(&f.site) >= PAGES / 4
        })
        .await;
    run_1.kill_9();
    f.stall_from.store(usize::MAX, Ordering::SeqCst);
    let done_in_run_1: BTreeSet<String> = f
        .site
        .lock()
        .unwrap()
        .labels
        .iter()
        .filter(|(_, l)| !l.is_empty())
        .map(|(id, _)| id.clone())
        .collect();
    assert!(done_in_run_1.len() <= 30, "{done_in_run_1:?}");
    let asked_in_run_1 = f.asked.lock().unwrap().len();

    // Run 2: finishes the rest.
    let out = command(dir.path(), &f, &["--space", "ENG", "--format", "json"]).output_bounded();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();

    let site = f.site.lock().unwrap();
    // A page whose write was cut off by the kill (its intent recorded, its POST not landed)
    // cannot be told from one whose label a person removed meanwhile, so it is left to
    // people (see `cache::decide`); at most the two batches being applied at the kill.
    let want: BTreeSet<String> = ["tool-jira", "type-howto"].map(String::from).into();
    let cut_off: Vec<usize> = (1..=PAGES)
        .filter(|i| site.labels.get(&i.to_string()) != Some(&want))
        .collect();
    assert!(
        cut_off.len() <= 2,
        "pages without their labels: {cut_off:?}"
    );
    for i in &cut_off {
        assert!(
            site.labels.get(&i.to_string()).is_none_or(|l| l.is_empty()),
            "page {i}"
        );
        assert!(!done_in_run_1.contains(&i.to_string()), "page {i}");
    }
    let mut seen = BTreeSet::new();
    for p in &site.posted {
        assert!(seen.insert(p.clone()), "{p:?} was written twice");
    }
    assert_eq!(site.posted.len(), (PAGES - cut_off.len()) * 2);
    // The model was asked again only for pages run 1 had not finished.
    let asked_in_run_2: Vec<String> = f.asked.lock().unwrap()[asked_in_run_1..].concat();
    for id in &asked_in_run_2 {
        assert!(
            !done_in_run_1.contains(id),
            "page {id} was finished, yet asked again"
        );
    }
    // Every page is either written by run 2 or left as it is (finished by run 1, or cut off).
    // The snapshot `done_in_run_1` may miss a label POST that was in the server's socket when
    // the child was killed and was handled just after the snapshot (seen in CI under load):
    // run 2 finds that page labelled with an open intent and leaves it, so it counts as
    // unchanged too. At most the two batches in flight at the kill can be such pages.
    let pages = &report["metrics"]["pages"];
    let unchanged = pages["unchanged"].as_u64().unwrap() as usize;
    let tagged = pages["tagged"].as_u64().unwrap() as usize;
    assert_eq!(unchanged + tagged, PAGES, "{report}");
    let left_as_is = done_in_run_1.len() + cut_off.len();
    assert!(
        (left_as_is..=left_as_is + 2).contains(&unchanged),
        "unchanged {unchanged}, finished or cut off by run 1 {left_as_is}: {report}"
    );
    drop(site);

    // Run 3: nothing left to do: no model call, no write.
    let asked = f.asked.lock().unwrap().len();
    let posted = f.site.lock().unwrap().posted.len();
    let out = command(dir.path(), &f, &["--space", "ENG", "-q"]).output_bounded();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(f.asked.lock().unwrap().len(), asked);
    assert_eq!(f.site.lock().unwrap().posted.len(), posted);
}

fn run_in(dir: &Path, f: &Fakes, args: &[&str]) -> Output {
    command(dir, f, args).output_bounded()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_state_file_is_one_line_and_exit_2_unless_no_cache() {
    let f = fakes(3, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("state.db"), b"this is not a database, not even close....................................................................").unwrap();
    let out = run_in(dir.path(), &f, &["--space", "ENG"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("tag-space: cache "), "{stderr}");
    assert!(
        stderr.contains("state.db") && stderr.contains("--no-cache"),
        "{stderr}"
    );
    assert!(f.asked.lock().unwrap().is_empty());
    assert!(f.site.lock().unwrap().posted.is_empty());

    let out = run_in(dir.path(), &f, &["--space", "ENG", "--no-cache"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: cannot use the state file")
            && !stderr.contains("run with --no-cache"),
        "{stderr}"
    );
    assert_eq!(f.site.lock().unwrap().posted.len(), 6);
    // The file was left as it was.
    assert!(
        std::fs::read(dir.path().join("state.db"))
            .unwrap()
            .starts_with(b"this is not a database")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cache_stats_and_clear() {
    let f = fakes(3, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    // Nothing yet: says so and creates nothing.
    let out = run_in(dir.path(), &f, &["cache", "stats"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("no state file at "));
    assert!(!dir.path().join("state.db").exists());

    for _ in 0..2 {
        let out = run_in(dir.path(), &f, &["--space", "ENG", "-q"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    let out = run_in(dir.path(), &f, &["cache", "stats"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(stdout.contains("entries     3 cached answers"), "{stdout}");
    assert!(
        stdout.contains("space ENG: 3 cached answers, 3 pages done, 6 labels added by tag-space"),
        "{stdout}"
    );
    let runs: Vec<&str> = stdout.lines().filter(|l| l.contains(" add ")).collect();
    assert_eq!(runs.len(), 2, "{stdout}");
    // Newest first: the second run skipped all three pages and looked nothing up.
    assert!(
        runs[0].split_whitespace().rev().nth(1) == Some("3"),
        "{stdout}"
    );
    assert!(runs[1].contains("0%") && runs[1].ends_with("2"), "{stdout}");

    let out = run_in(dir.path(), &f, &["cache", "clear", "--space", "ENG"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout)
            .starts_with("cleared space ENG: 3 cached answers, 3 finished pages, 2 runs"),
        "{}",
        text(&out.stdout)
    );
    // After clearing, the next run asks the model again but writes nothing twice.
    let asked = f.asked.lock().unwrap().len();
    let out = run_in(dir.path(), &f, &["--space", "ENG", "-q"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(f.asked.lock().unwrap().len() > asked);
    assert_eq!(f.site.lock().unwrap().posted.len(), 6);

    // A plain run without a subcommand still needs --space.
    let out = run_in(dir.path(), &f, &[]);
    assert_eq!(out.status.code(), Some(2));
}
