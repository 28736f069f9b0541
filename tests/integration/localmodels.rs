//! Local model servers (issue 14): fakes of how Ollama, vLLM, llama.cpp's server,
//! llama-cpp-python and LM Studio answer each way of asking for JSON, driving the
//! structured-output ladder to the right rung and the run (the built binary) to completion
//! without a retry storm; the rung kept in the state file; Gemini's fallback from
//! `responseJsonSchema` to `responseSchema`. Real clock and processes, 127.0.0.1 only.

use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tag_space::llm::ProviderSettings;
use tag_space::llm::gemini::GeminiProvider;
use tag_space::llm::{PageText, Provider};
use tag_space::secret::Secret;
use tag_space::taxonomy::Taxonomy;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::harness::OutputBounded;
use crate::harness::fakes::{dry_run_one_page_a_request, howto_page, unlabelled_space};

const PAGES: usize = 4;

/// How a fake server treats each way of asking for JSON.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Server {
    /// llama.cpp's `llama-server`, vLLM, Ollama's `/v1`: `json_schema` constrains decoding.
    HonoursSchema,
    /// llama-cpp-python: `json_schema` is refused with HTTP 500; `json_object` + `schema` works.
    LlamaCppPython,
    /// A server (or chat template) that silently ignores `json_schema` and `json_object` and
    /// answers prose; only the schema written in the prompt gets JSON.
    IgnoresFormats,
    /// Ignores `json_schema` (prose) and refuses `json_object` with LM Studio's 400.
    ProseThenRefusesJsonObject,
    /// vLLM's vague 400 for a schema its grammar engine cannot compile; `json_object` works.
    VagueSchema400,
    /// Answers JSON in any mode, but with its own keys (a format that only asks for "JSON").
    OwnKeysUnlessPrompted,
}

/// The mode a request asked for: `json_schema`, `json_object` or `prompt`.
pub(super) fn mode(body: &Value) -> &'static str {
    match body["response_format"]["type"].as_str() {
        Some("json_schema") => "json_schema",
        Some("json_object") => "json_object",
        Some(_) => "other",
        None => "prompt",
    }
}

fn page_ids(body: &Value) -> Vec<String> {
    let user = body["messages"][1]["content"].as_str().unwrap_or_default();
    user.split("<page id=\"")
        .skip(1)
        .filter_map(|p| p.split('"').next().map(str::to_string))
        .collect()
}

fn completion(content: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "local",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 120, "completion_tokens": 12, "total_tokens": 132}
    }))
}

fn error(status: u16, body: Value) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(body)
}

impl Respond for Server {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        let ids = page_ids(&body);
        let valid = Value::Object(
            ids.iter()
                .map(|id| (id.clone(), json!({"type": ["type-howto"], "tool": []})))
                .collect(),
        )
        .to_string();
        let prose = "Sure! These pages are how-to guides about filling in a form.";
        let m = mode(&body);
        match (self, m) {
            (Server::HonoursSchema, _) => completion(&valid),
            (Server::LlamaCppPython, "json_schema") => error(
                500,
                json!({"error": {"message": "1 validation error for CreateChatCompletionRequest\nresponse_format.type\n  Input should be 'text' or 'json_object' [type=literal_error, input_value='json_schema', input_type=str]", "type": "internal_server_error", "param": null, "code": null}}),
            ),
            (Server::LlamaCppPython, _) => completion(&valid),
            (Server::IgnoresFormats, "prompt") => completion(&valid),
            (Server::IgnoresFormats, _) => completion(prose),
            (Server::ProseThenRefusesJsonObject, "json_schema") => completion(prose),
            (Server::ProseThenRefusesJsonObject, "json_object") => error(
                400,
                json!({"error": "'response_format.type' must be 'json_schema' or 'text'"}),
            ),
            (Server::ProseThenRefusesJsonObject, _) => completion(&valid),
            (Server::VagueSchema400, "json_schema") => error(
                400,
                json!({"object": "error", "message": "Invalid request", "type": "BadRequestError", "param": null, "code": 400}),
            ),
            (Server::VagueSchema400, _) => completion(&valid),
            (Server::OwnKeysUnlessPrompted, "prompt") => completion(&valid),
            (Server::OwnKeysUnlessPrompted, _) => completion(
                &json!({"pages": ids.iter().map(|id| json!({"id": id, "labels": ["type-howto"]})).collect::<Vec<_>>()}).to_string(),
            ),
        }
    }
}

pub(super) async fn llm(server: Server) -> MockServer {
    let fake = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(server)
        .mount(&fake)
        .await;
    fake
}

/// A Cloud site with space ENG holding `PAGES` pages, none labelled.
pub(super) async fn site() -> MockServer {
    unlabelled_space((1..=PAGES).map(howto_page).collect()).await
}

/// A dry run of space ENG against the fakes with a local server (no key), one page per
/// request and one request at a time, so that the request count is exact.
fn run(
    dir: &Path,
    confluence: &MockServer,
    llm: &MockServer,
    model: &str,
    env: &[(&str, &str)],
) -> Output {
    run_with(dir, confluence, llm, model, env, &[])
}

/// [`run`] with more arguments.
pub(super) fn run_with(
    dir: &Path,
    confluence: &MockServer,
    llm: &MockServer,
    model: &str,
    env: &[(&str, &str)],
    args: &[&str],
) -> Output {
    let mut cmd = dry_run_one_page_a_request(dir, confluence, &llm.uri());
    cmd.args(["--report", "report.json"])
        .args(args)
        .env("OPENAI_MODEL", model);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output_bounded()
}

/// The JSON report a run wrote.
pub(super) fn report(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

/// The report's tagged page count and the provider's rung.
fn outcome(dir: &Path) -> (u64, String) {
    let r = report(dir);
    let tagged = r["metrics"]["pages"]["tagged"].as_u64().unwrap();
    let rung = r["metrics"]["providers"][0]["structured_output"]
        .as_str()
        .unwrap_or("null")
        .to_string();
    (tagged, rung)
}

pub(super) async fn bodies(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

/// Runs against `server`, checks every page was labelled at `rung`, and that the requests
/// were exactly the modes in `first` for the first page and then one per page at `rung`.
async fn drives_to(server: Server, first: &[&str], rung: &str) {
    let confluence = site().await;
    let fake = llm(server).await;
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &confluence, &fake, "local-model", &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{server:?}: {stderr}");
    assert_eq!(
        outcome(dir.path()),
        (PAGES as u64, rung.to_string()),
        "{server:?}"
    );
    let modes: Vec<&str> = bodies(&fake).await.iter().map(mode).collect();
    let mut expected: Vec<&str> = first.to_vec();
    expected.extend(std::iter::repeat_n(rung, PAGES - 1));
    assert_eq!(modes, expected, "{server:?}: {stderr}");
    // Every request the server saw, re-asks included, is in the report's metrics.
    let calls = report(dir.path())["metrics"]["providers"][0]["calls"].as_u64();
    assert_eq!(calls, Some(modes.len() as u64), "{server:?}");
    // The step down is said once, at the default level.
    let said = stderr.matches("structured output: stepping down").count();
    assert_eq!(said, first.len() - 1, "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn llama_cpp_python_500_on_json_schema_steps_down_to_json_object() {
    drives_to(
        Server::LlamaCppPython,
        &["json_schema", "json_object"],
        "json_object",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn silently_ignored_formats_answering_prose_step_down_to_the_prompt() {
    drives_to(
        Server::IgnoresFormats,
        &["json_schema", "json_object", "prompt"],
        "prompt",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_400_on_json_object_after_prose_steps_down_to_the_prompt() {
    drives_to(
        Server::ProseThenRefusesJsonObject,
        &["json_schema", "json_object", "prompt"],
        "prompt",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn vllms_vague_400_on_a_schema_steps_down_to_json_object() {
    drives_to(
        Server::VagueSchema400,
        &["json_schema", "json_object"],
        "json_object",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_outside_the_schema_step_down_to_the_prompt() {
    drives_to(
        Server::OwnKeysUnlessPrompted,
        &["json_schema", "json_object", "prompt"],
        "prompt",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_honours_the_schema_stays_on_json_schema() {
    drives_to(Server::HonoursSchema, &["json_schema"], "json_schema").await;
}

/// The rung is remembered per (base URL, model): the same server on a second run starts at
/// the rung that worked, and the cache key includes the base URL.
#[tokio::test(flavor = "multi_thread")]
async fn the_working_rung_is_remembered_for_the_next_run() {
    let confluence = site().await;
    let fake = llm(Server::LlamaCppPython).await;
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &confluence, &fake, "llama3.1:8b", &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fake.received_requests().await.unwrap().len(), PAGES + 1);
    fake.reset().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(Server::LlamaCppPython)
        .mount(&fake)
        .await;
    let out = run(
        dir.path(),
        &confluence,
        &fake,
        "llama3.1:8b",
        &[("TAG_SPACE_CACHE_ENABLED", "false")],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let modes: Vec<&str> = bodies(&fake).await.iter().map(mode).collect();
    assert_eq!(
        modes,
        vec!["json_object"; PAGES],
        "no request at the refused rung"
    );
    assert_eq!(outcome(dir.path()).1, "json_object");
    // Another model on the same server is not assumed to be the same.
    fake.reset().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(Server::LlamaCppPython)
        .mount(&fake)
        .await;
    let out = run(
        dir.path(),
        &confluence,
        &fake,
        "Qwen/Qwen2.5-7B-Instruct",
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let modes: Vec<&str> = bodies(&fake).await.iter().map(mode).collect();
    assert_eq!(modes[..2], ["json_schema", "json_object"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forced_rung_is_used_as_is() {
    let confluence = site().await;
    let fake = llm(Server::VagueSchema400).await;
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        dir.path(),
        &confluence,
        &fake,
        "local-model",
        &[("TAG_SPACE_OPENAI_STRUCTURED", "json_object")],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let modes: Vec<&str> = bodies(&fake).await.iter().map(mode).collect();
    assert_eq!(modes, vec!["json_object"; PAGES]);
    assert_eq!(
        outcome(dir.path()),
        (PAGES as u64, "json_object".to_string())
    );

    // Forced onto a rung the server refuses: the pages fail; nothing steps down or storms.
    let fake = llm(Server::VagueSchema400).await;
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        dir.path(),
        &confluence,
        &fake,
        "local-model",
        &[("TAG_SPACE_OPENAI_STRUCTURED", "json_schema")],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let modes: Vec<&str> = bodies(&fake).await.iter().map(mode).collect();
    assert_eq!(
        modes,
        vec!["json_schema"; PAGES],
        "one request per page, never retried"
    );

    let out = run(
        dir.path(),
        &confluence,
        &fake,
        "m",
        &[("TAG_SPACE_OPENAI_STRUCTURED", "grammar")],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("TAG_SPACE_OPENAI_STRUCTURED")
            && stderr.contains("auto, json_schema, json_object, prompt"),
        "{stderr}"
    );
}

/// What local servers need from every request: the model name as given (with ':' or '/'),
/// no `Authorization` without a key, an explicit temperature, a presence penalty (against
/// endless whitespace under a grammar), and an output cap.
#[tokio::test(flavor = "multi_thread")]
async fn local_servers_get_the_model_as_named_no_key_a_temperature_and_a_cap() {
    let confluence = site().await;
    for model in ["llama3.1:8b", "Qwen/Qwen2.5-7B-Instruct"] {
        let fake = llm(Server::HonoursSchema).await;
        let dir = tempfile::tempdir().unwrap();
        let out = run(dir.path(), &confluence, &fake, model, &[]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for req in fake.received_requests().await.unwrap() {
            assert!(req.headers.get("authorization").is_none());
            let body: Value = serde_json::from_slice(&req.body).unwrap();
            assert_eq!(body["model"], model);
            assert_eq!(body["temperature"], 0);
            assert_eq!(body["presence_penalty"], 0.5);
            assert!(body["max_tokens"].as_u64().unwrap() > 0);
            assert!(body.get("max_completion_tokens").is_none());
        }
    }
}

/// Two servers with the same model name do not share cached answers.
#[tokio::test(flavor = "multi_thread")]
async fn the_cache_key_includes_the_base_url() {
    let confluence = site().await;
    let dir = tempfile::tempdir().unwrap();
    let first = llm(Server::HonoursSchema).await;
    let out = run(dir.path(), &confluence, &first, "llama3.1:8b", &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The same server again: every answer comes from the cache.
    first.reset().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(Server::HonoursSchema)
        .mount(&first)
        .await;
    let out = run(dir.path(), &confluence, &first, "llama3.1:8b", &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(first.received_requests().await.unwrap().len(), 0);
    // Another server with the same model name is asked.
    let second = llm(Server::HonoursSchema).await;
    let out = run(dir.path(), &confluence, &second, "llama3.1:8b", &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(second.received_requests().await.unwrap().len(), PAGES);
}

// ---- Gemini: responseJsonSchema, and responseSchema for an endpoint that refuses it ------

fn gemini(server: &MockServer, model: &str) -> GeminiProvider {
    let settings = ProviderSettings {
        api_key: Some(Secret::new("test-key-5f3a9c")),
        model: model.into(),
        base_url: server.uri(),
        timeout: Duration::from_secs(5),
        max_output_tokens: 2048,
    };
    GeminiProvider::new(settings, Arc::new(Taxonomy::embedded())).unwrap()
}

fn pages() -> Vec<PageText> {
    ["101", "202"]
        .iter()
        .map(|id| PageText {
            id: (*id).into(),
            title: format!("Page {id}"),
            text: "Build the image, then push.".into(),
        })
        .collect()
}

/// A Gemini endpoint that does not know `responseJsonSchema` (an older proxy or a
/// compatible gateway): Google's 400 for an unknown field.
struct NoJsonSchemaField;

impl Respond for NoJsonSchemaField {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        if body["generationConfig"].get("responseJsonSchema").is_some() {
            return error(
                400,
                json!({"error": {"code": 400, "message": "Invalid JSON payload received. Unknown name \"responseJsonSchema\" at 'generation_config': Cannot find field.", "status": "INVALID_ARGUMENT",
                    "details": [{"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [{"field": "generation_config", "description": "Invalid JSON payload received. Unknown name \"responseJsonSchema\" at 'generation_config': Cannot find field."}]}]}}),
            );
        }
        let text = json!({"101": {"type": ["type-howto"]}, "202": {"type": []}}).to_string();
        ResponseTemplate::new(200).set_body_json(json!({
            "candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 300, "candidatesTokenCount": 20, "totalTokenCount": 320}
        }))
    }
}

#[tokio::test]
async fn gemini_sends_response_json_schema_and_falls_back_to_response_schema() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1beta/models/gemini-2.5-flash:generateContent"))
        .respond_with(NoJsonSchemaField)
        .mount(&server)
        .await;
    let p = gemini(&server, "gemini-2.5-flash");
    assert_eq!(p.ladder().current_name(), "response_json_schema");
    let answer = p.classify(&pages()).await.unwrap();
    assert_eq!(answer.labels["101"], ["type-howto"]);
    assert_eq!(p.ladder().current_name(), "response_schema");
    assert!(p.ladder().is_trusted());
    // The next batch goes straight to the field that works.
    p.classify(&pages()).await.unwrap();
    let sent = bodies(&server).await;
    assert_eq!(sent.len(), 3);
    let g: Vec<&Value> = sent.iter().map(|b| &b["generationConfig"]).collect();
    let s = &g[0]["responseJsonSchema"];
    assert_eq!(s["required"], json!(["101", "202"]));
    assert_eq!(s["additionalProperties"], false);
    assert!(s["$defs"]["page"]["properties"].is_object());
    for later in &g[1..] {
        assert!(later.get("responseJsonSchema").is_none());
        assert_eq!(
            later["responseSchema"]["propertyOrdering"],
            json!(["101", "202"])
        );
        assert_eq!(later["responseSchema"]["type"], "OBJECT");
    }
}
