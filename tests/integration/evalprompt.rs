//! The prompt switches of issue 12 end to end: `tag-space eval --demo --llm` against a local
//! OpenAI-compatible fake that records every request. Few-shot examples never show a page its
//! own labels; the reason is asked before the tags and written nowhere; each switch is a new
//! prompt version, so answers cached under another one are not reused.

use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::harness::{BIN, OutputBounded};

/// Written into every reason; must not appear in any output of tag-space.
const REASON_MARK: &str = "REASON-MARK-7f3";

/// Answers every page with `type-runbook` (and a reason when the schema asks for one), and
/// keeps each request body.
#[derive(Clone, Default)]
struct Recorder {
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Respond for Recorder {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        self.bodies.lock().unwrap().push(body.clone());
        let schema =
            tag_space::llm::schema::inline_refs(&body["response_format"]["json_schema"]["schema"]);
        let mut answer = serde_json::Map::new();
        for (id, page) in schema["properties"].as_object().unwrap() {
            let tags = json!({"type": ["type-runbook"], "tool": [], "topic": []});
            let value = if page["properties"].get("reason").is_some() {
                json!({"reason": format!("{REASON_MARK} about page {id}"), "tags": tags})
            } else {
                tags
            };
            answer.insert(id.clone(), value);
        }
        ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant",
                "content": Value::Object(answer).to_string(), "refusal": null},
                "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
        }))
    }
}

async fn llm() -> (MockServer, Recorder) {
    let server = MockServer::start().await;
    let rec = Recorder::default();
    Mock::given(wiremock::matchers::method("POST"))
        .and(wiremock::matchers::path("/v1/chat/completions"))
        .respond_with(rec.clone())
        .mount(&server)
        .await;
    (server, rec)
}

async fn eval(server: &MockServer, dir: &std::path::Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("NO_COLOR", "1")
        .env("OPENAI_BASE_URL", format!("{}/v1", server.uri()))
        .env("OPENAI_MODEL", "m")
        .env("TAG_SPACE_CACHE_PATH", dir)
        .env("TAG_SPACE_LOCK_DIR", dir.join("locks"))
        .current_dir(dir)
        .stdin(Stdio::null())
        .args(["eval", "--demo", "--llm", "--report", "e.json"])
        .args(args);
    let out = tokio::task::spawn_blocking(move || cmd.output_bounded())
        .await
        .unwrap();
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn user(body: &Value) -> &str {
    body["messages"][1]["content"].as_str().unwrap()
}

/// The title of every `<page>` and every `<example>` of one request's user content.
fn titles(user: &str, block: &str) -> Vec<String> {
    user.split(&format!("<{block}"))
        .skip(1)
        .filter_map(|b| {
            let start = b.find("<title>")? + "<title>".len();
            let end = b.find("</title>")?;
            Some(b[start..end].to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn few_shot_examples_never_show_a_page_its_own_labels() {
    let (server, rec) = llm().await;
    let dir = tempfile::tempdir().unwrap();
    eval(&server, dir.path(), &["--few-shot", "--batch-size", "3"]).await;
    let bodies = rec.bodies.lock().unwrap().clone();
    assert!(bodies.len() >= 5, "15 pages, 3 per request");
    let mut shown = 0;
    for body in &bodies {
        let user = user(body);
        let pages = titles(user, "page ");
        let examples = titles(user, "example>");
        assert!(!pages.is_empty(), "{user}");
        for e in &examples {
            assert!(
                !pages.contains(e),
                "a page shown as its own example: {e}\n{user}"
            );
        }
        shown += examples.len();
        assert!(examples.len() <= tag_space::llm::examples::MAX_EXAMPLES);
        // Only taxonomy tags, aliases as their tag: `k8s` is shown as `tool-kubernetes`.
        assert!(
            !user.contains("<tags>k8s") && !user.contains(", k8s"),
            "{user}"
        );
        assert!(
            body["messages"][0]["content"]
                .as_str()
                .unwrap()
                .contains("<example>")
        );
    }
    assert!(shown > 0, "no example was ever shown");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("e.json")).unwrap()).unwrap();
    let version = report["prompt_version"].as_str().unwrap();
    assert!(version.contains("+few-shot:"), "{version}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_reason_is_asked_first_scored_past_and_written_nowhere() {
    let (server, rec) = llm().await;
    let dir = tempfile::tempdir().unwrap();
    let out = eval(
        &server,
        dir.path(),
        &["--reason", "--report", "e.md", "--no-few-shot"],
    )
    .await;
    let body = rec.bodies.lock().unwrap()[0].clone();
    let schema =
        tag_space::llm::schema::inline_refs(&body["response_format"]["json_schema"]["schema"]);
    let first = schema["required"][0].as_str().unwrap();
    assert_eq!(
        schema["properties"][first]["required"],
        json!(["reason", "tags"])
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("e.json")).unwrap()).unwrap();
    assert_eq!(report["pages"]["failed"], 0, "{report}");
    // Every page got type-runbook: the reason did not become a label or a failure.
    let runbook = report["scores"]["labels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["label"] == "type-runbook")
        .unwrap();
    assert_eq!(
        runbook["tp"].as_u64().unwrap() + runbook["fp"].as_u64().unwrap(),
        15
    );
    // Nowhere: stdout, stderr, the reports, the state file.
    let mut everything = out.stdout.clone();
    everything.extend(&out.stderr);
    for entry in walk(dir.path()) {
        everything.extend(std::fs::read(entry).unwrap());
    }
    let text = String::from_utf8_lossy(&everything);
    assert!(
        !text.contains(REASON_MARK),
        "the reason was written somewhere"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_switch_is_a_new_prompt_version_and_answers_of_another_are_not_reused() {
    let (server, rec) = llm().await;
    let dir = tempfile::tempdir().unwrap();
    let calls = || rec.bodies.lock().unwrap().len();
    eval(&server, dir.path(), &["--no-few-shot"]).await;
    let base = calls();
    assert!(base > 0);
    eval(&server, dir.path(), &["--no-few-shot"]).await;
    assert_eq!(calls(), base, "unchanged: answered from the cache");
    eval(&server, dir.path(), &["--no-few-shot", "--reason"]).await;
    let reasoned = calls();
    assert!(
        reasoned > base,
        "the baseline's answers were reused for --reason"
    );
    eval(&server, dir.path(), &["--no-few-shot", "--reason"]).await;
    assert_eq!(calls(), reasoned);
    // Few-shot is on by default.
    eval(&server, dir.path(), &[]).await;
    assert!(
        calls() > reasoned,
        "the baseline's answers were reused for few-shot"
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("e.json")).unwrap()).unwrap();
    assert_eq!(
        report["calls"].as_u64().unwrap() as usize,
        calls() - reasoned
    );
    let version = report["prompt_version"].as_str().unwrap();
    assert!(version.contains("+few-shot:"), "on by default: {version}");
}

/// A labelling run has no pool of human-labelled pages: it says so instead of silently
/// ignoring the setting.
#[test]
fn a_labelling_run_warns_that_it_ignores_few_shot() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .env_clear()
        .env("NO_COLOR", "1")
        .env("TAG_SPACE_FEW_SHOT", "true")
        .env("TAG_SPACE_CACHE_PATH", dir.path())
        .env("TAG_SPACE_LOCK_DIR", dir.path().join("locks"))
        .current_dir(dir.path())
        .args(["--demo", "--dry-run"])
        .output_bounded();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("TAG_SPACE_FEW_SHOT is used by tag-space eval only"),
        "{stderr}"
    );
}
