//! Fakes several test files share: a Cloud site with one space, and an OpenAI-compatible
//! LLM whose answers wait until the test opens a gate (so that a signal is sent while a
//! request is in flight on every interleaving, however slowly the machine runs).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::State;
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::watch;
use wiremock::matchers::{method, path, path_regex, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::proc::{BIN, PATIENCE};

/// A Cloud site with space ENG (id 98765) listing `pages` in one answer; the caller mounts
/// what its labels do.
pub async fn cloud_space(pages: Vec<Value>) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/wiki/api/v2/spaces"))
        .and(query_param("keys", "ENG"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "results": [{"id": "98765", "key": "ENG", "name": "Engineering", "type": "global", "status": "current"}],
            "_links": {}
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/wiki/api/v2/spaces/98765/pages"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"results": pages, "_links": {}})),
        )
        .mount(&server)
        .await;
    server
}

/// [`cloud_space`] whose pages carry no labels (reads only: for dry runs).
pub async fn unlabelled_space(pages: Vec<Value>) -> MockServer {
    let server = cloud_space(pages).await;
    Mock::given(method("GET"))
        .and(path_regex(r"^/wiki/api/v2/pages/\d+/labels$"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"results": [], "_links": {}})),
        )
        .mount(&server)
        .await;
    server
}

/// `tag-space --space ENG --dry-run` in `dir` against [`cloud_space`] at `confluence` and an
/// OpenAI-compatible LLM at `llm` (no key: add one if the test needs it), one page per request
/// and one request at a time (so that request counts are exact), its state in
/// `state/state.db` and locks under `locks/`, with nothing else in its environment.
pub fn dry_run_one_page_a_request(dir: &Path, confluence: &MockServer, llm: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "--space",
        "ENG",
        "--dry-run",
        "--batch-size",
        "1",
        "--concurrency",
        "1",
        "--max-concurrency",
        "1",
        "--cache-path",
        "state/state.db",
    ])
    .current_dir(dir)
    .env_clear()
    .env("CONFLUENCE_BASE_URL", format!("{}/wiki", confluence.uri()))
    .env("CONFLUENCE_EMAIL", "bot@acme.test")
    .env("CONFLUENCE_API_TOKEN", "confluence-FAKE-TOKEN")
    .env("OPENAI_BASE_URL", format!("{llm}/v1"))
    .env("TAG_SPACE_LOCK_DIR", "locks");
    cmd
}

/// Page `i` of [`cloud_space`]: a short how-to.
pub fn howto_page(i: usize) -> Value {
    json!({
        "id": format!("{i}"), "status": "current", "title": format!("How to do thing {i}"),
        "spaceId": "98765", "version": {"number": 1},
        "body": {"storage": {"representation": "storage", "value": format!("<p>Step {i}: open the form.</p>")}},
    })
}

/// An OpenAI chat completion labelling every page of the request `body` `type-howto`.
pub fn howto_answer(body: &str) -> Value {
    let mut answer = serde_json::Map::new();
    for part in body.split("<page id=\\\"").skip(1) {
        // Not the system prompt's `<page id="...">`: a key outside the schema would
        // move the structured-output ladder down.
        if let Some(id) = part.split("\\\"").next().filter(|id| *id != "...") {
            answer.insert(id.to_string(), json!({"type": ["type-howto"], "tool": []}));
        }
    }
    json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4.1-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": Value::Object(answer).to_string()}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
    })
}

/// An OpenAI-compatible `/v1/chat/completions` on 127.0.0.1 answering [`howto_answer`], each
/// answer held until [`GatedLlm::open`] (or, so that nothing waits for ever, [`PATIENCE`]).
/// Served on the test's runtime: the test must be multi-threaded.
pub struct GatedLlm {
    uri: String,
    asked: Arc<AtomicUsize>,
    gate: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct Gate {
    asked: Arc<AtomicUsize>,
    open: watch::Receiver<bool>,
}

async fn answer(State(mut g): State<Gate>, body: String) -> axum::Json<Value> {
    g.asked.fetch_add(1, Ordering::SeqCst);
    let _ = tokio::time::timeout(PATIENCE, g.open.wait_for(|open| *open)).await;
    axum::Json(howto_answer(&body))
}

impl GatedLlm {
    pub async fn start() -> Self {
        let asked = Arc::new(AtomicUsize::new(0));
        let (gate, open) = watch::channel(false);
        let app = axum::Router::new()
            .route("/v1/chat/completions", post(answer))
            .with_state(Gate {
                asked: Arc::clone(&asked),
                open,
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            uri,
            asked,
            gate,
            server,
        }
    }

    pub fn uri(&self) -> String {
        self.uri.clone()
    }

    /// Requests received so far (answered or held).
    pub fn asked(&self) -> usize {
        self.asked.load(Ordering::SeqCst)
    }

    /// Lets every held answer and every later one go.
    pub fn open(&self) {
        self.gate.send_replace(true);
    }
}

impl Drop for GatedLlm {
    fn drop(&mut self) {
        self.server.abort();
    }
}
