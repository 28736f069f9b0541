//! The built binary end to end, against local fakes of Confluence and the LLM providers.
//! Each test runs `tag-space` in an empty temporary directory (so no `.env` is read) with a
//! cleared environment, and checks the exit code, the output and what reached the fakes.

use std::process::Output;

use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path, path_regex, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::harness::proc::run_in as tag_space_in;

const GEMINI_KEY: &str = "gemini-FAKE-KEY-4f1d";
const OPENAI_KEY: &str = "openai-FAKE-KEY-9a2c";
const CONFLUENCE_TOKEN: &str = "confluence-FAKE-TOKEN-77e0";
const CONFLUENCE_PAT: &str = "confluence-FAKE-PAT-31b5";

fn tag_space(args: &[&str], vars: &[(&str, String)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    tag_space_in(dir.path(), args, vars)
}

/// Runs with `--report report.json` and returns the parsed report too (`Null` if none).
fn tag_space_with_report(args: &[&str], vars: &[(&str, String)]) -> (Output, Value) {
    let dir = tempfile::tempdir().unwrap();
    let mut argv = args.to_vec();
    argv.extend(["--report", "report.json"]);
    let out = tag_space_in(dir.path(), &argv, vars);
    let report = std::fs::read_to_string(dir.path().join("report.json"))
        .map(|s| serde_json::from_str(&s).expect("the report is JSON"))
        .unwrap_or(Value::Null);
    (out, report)
}

/// seen, tagged, unchanged, skipped, failed
fn counts(report: &Value) -> [u64; 5] {
    let p = &report["metrics"]["pages"];
    ["seen", "tagged", "unchanged", "skipped", "failed"].map(|k| p[k].as_u64().unwrap_or(u64::MAX))
}

fn provider<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["metrics"]["providers"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["provider"] == name))
        .unwrap_or(&Value::Null)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn storage(title: &str, body: &str) -> String {
    format!("<h1>{title}</h1><p>{body}</p>")
}

/// A Cloud site with space ENG (id 98765) holding three pages over two listing pages.
/// Page 102 already carries `tool-jira`, added by a person.
async fn cloud_site() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/wiki/api/v2/spaces"))
        .and(query_param("keys", "ENG"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "results": [{"id": "98765", "key": "ENG", "name": "Engineering", "type": "global", "status": "current"}],
            "_links": {"base": format!("{}/wiki", server.uri())}
        })))
        .mount(&server)
        .await;
    let page = |id: &str, title: &str, body: &str| {
        json!({
            "id": id, "status": "current", "title": title, "spaceId": "98765",
            "version": {"number": 3, "createdAt": "2026-10-01T10:00:00.000Z"},
            "body": {"storage": {"representation": "storage", "value": storage(title, body)}},
            "_links": {"webui": format!("/spaces/ENG/pages/{id}")}
        })
    };
    Mock::given(method("GET"))
        .and(path("/wiki/api/v2/spaces/98765/pages"))
        .and(query_param("cursor", "c2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "results": [page("103", "Postmortem: login outage", "Root cause and timeline of the outage.")],
            "_links": {}
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/wiki/api/v2/spaces/98765/pages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "results": [
                page("101", "How to request a Jira project", "Step 1: open the form."),
                page("102", "Jira workflow reference", "Fields and states."),
            ],
            "_links": {"next": "/wiki/api/v2/spaces/98765/pages?cursor=c2&limit=250&body-format=storage"}
        })))
        .mount(&server)
        .await;
    for (id, labels) in [("101", vec![]), ("102", vec!["tool-jira"]), ("103", vec![])] {
        let results: Vec<Value> = labels
            .iter()
            .map(|l| json!({"id": "1", "name": l, "prefix": "global"}))
            .collect();
        Mock::given(method("GET"))
            .and(path(format!("/wiki/api/v2/pages/{id}/labels")))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"results": results, "_links": {}})),
            )
            .mount(&server)
            .await;
    }
    server
}

fn cloud_vars(confluence: &MockServer) -> Vec<(&'static str, String)> {
    vec![
        ("CONFLUENCE_BASE_URL", format!("{}/wiki", confluence.uri())),
        ("CONFLUENCE_EMAIL", "bot@acme.test".into()),
        ("CONFLUENCE_API_TOKEN", CONFLUENCE_TOKEN.into()),
    ]
}

/// The model's answer: labels per page id, as a JSON object of category arrays.
fn model_answer() -> Value {
    json!({
        "101": {"type": ["type-howto"], "tool": ["tool-jira"]},
        "102": {"type": ["type-reference"], "tool": ["tool-jira"]},
        "103": {"type": ["type-postmortem"], "tool": []}
    })
}

fn gemini_ok() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "candidates": [{
            "content": {"role": "model", "parts": [{"text": model_answer().to_string()}]},
            "finishReason": "STOP", "index": 0
        }],
        "usageMetadata": {"promptTokenCount": 900, "candidatesTokenCount": 40, "totalTokenCount": 940},
        "modelVersion": "gemini-2.5-flash"
    }))
}

fn openai_ok() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4.1-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": model_answer().to_string(), "refusal": null}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 800, "completion_tokens": 30, "total_tokens": 830}
    }))
}

async fn gemini() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1beta/models/gemini-2.5-flash:generateContent"))
        .and(header("x-goog-api-key", GEMINI_KEY))
        .respond_with(gemini_ok())
        .mount(&server)
        .await;
    server
}

fn gemini_vars(server: &MockServer) -> Vec<(&'static str, String)> {
    vec![
        ("GEMINI_API_KEY", GEMINI_KEY.into()),
        ("GEMINI_BASE_URL", server.uri()),
    ]
}

async fn label_posts(server: &MockServer) -> Vec<(String, Value)> {
    let mut posts: Vec<(String, Value)> = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r: &Request| r.method == wiremock::http::Method::POST)
        .map(|r| {
            (
                r.url.path().to_string(),
                serde_json::from_slice(&r.body).unwrap(),
            )
        })
        .collect();
    posts.sort_by(|a, b| a.0.cmp(&b.0));
    posts
}

#[tokio::test(flavor = "multi_thread")]
async fn cloud_dry_run_proposes_labels_and_writes_nothing() {
    let confluence = cloud_site().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&confluence)
        .await;
    let llm = gemini().await;
    let vars = [cloud_vars(&confluence), gemini_vars(&llm)].concat();
    let (out, report) = tag_space_with_report(&["--space", "ENG", "--dry-run"], &vars);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains(
            r#"would add  101 "How to request a Jira project": +type-howto +tool-jira  [gemini]"#
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(r#"would add  102 "Jira workflow reference": +type-reference  [gemini]"#),
        "{stdout}"
    );
    assert!(stdout.contains("+type-postmortem"), "{stdout}");
    assert_eq!(counts(&report), [3, 3, 0, 0, 0]);
    assert_eq!(report["run"]["dry_run"], true);
    let page_102 = report["pages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "102")
        .unwrap();
    assert_eq!(page_102["labels_before"], json!(["tool-jira"]));
    assert_eq!(page_102["labels_proposed"], json!(["type-reference"]));
    assert!(label_posts(&confluence).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn cloud_write_mode_adds_only_the_missing_labels() {
    let confluence = cloud_site().await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/wiki/rest/api/content/\d+/label$"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"results": [], "start": 0, "limit": 200, "size": 0})),
        )
        .expect(3)
        .mount(&confluence)
        .await;
    let llm = gemini().await;
    let vars = [cloud_vars(&confluence), gemini_vars(&llm)].concat();
    let out = tag_space(&["--space", "ENG"], &vars);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(
        label_posts(&confluence).await,
        [
            (
                "/wiki/rest/api/content/101/label".to_string(),
                json!([{"prefix": "global", "name": "type-howto"}, {"prefix": "global", "name": "tool-jira"}])
            ),
            (
                "/wiki/rest/api/content/102/label".to_string(),
                json!([{"prefix": "global", "name": "type-reference"}])
            ),
            (
                "/wiki/rest/api/content/103/label".to_string(),
                json!([{"prefix": "global", "name": "type-postmortem"}])
            ),
        ]
    );
    // Basic auth, and the key never in a URL.
    let reqs = llm.received_requests().await.unwrap();
    assert!(reqs.iter().all(|r| !r.url.as_str().contains(GEMINI_KEY)));
}

#[tokio::test(flavor = "multi_thread")]
async fn datacenter_with_openai_only() {
    let confluence = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/confluence/rest/api/space/OPS"))
        .and(header(
            "authorization",
            format!("Bearer {CONFLUENCE_PAT}").as_str(),
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": 1, "key": "OPS", "name": "Ops", "type": "global"})),
        )
        .mount(&confluence)
        .await;
    let content = |id: &str, title: &str, labels: &[&str]| {
        json!({
            "id": id, "type": "page", "status": "current", "title": title,
            "version": {"number": 7},
            "body": {"storage": {"value": storage(title, "Steps to follow."), "representation": "storage"}},
            "metadata": {"labels": {"results": labels.iter().map(|l| json!({"prefix": "global", "name": l, "id": "9"})).collect::<Vec<_>>(), "start": 0, "limit": 200, "size": labels.len()}},
            "_links": {"webui": format!("/pages/viewpage.action?pageId={id}")}
        })
    };
    Mock::given(method("GET"))
        .and(path("/confluence/rest/api/content"))
        .and(query_param("spaceKey", "OPS"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "results": [content("101", "How to rotate keys", &[]), content("102", "Reference", &["tool-jira", "type-reference"]), content("103", "Outage", &["type-postmortem"])],
            "start": 0, "limit": 25, "size": 3,
            "_links": {"base": format!("{}/confluence", confluence.uri()), "context": "/confluence"}
        })))
        .mount(&confluence)
        .await;
    // Read again just before writing: the listing's copy may be stale.
    Mock::given(method("GET"))
        .and(path("/confluence/rest/api/content/101/label"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"results": [], "start": 0, "limit": 200, "size": 0, "_links": {}}),
        ))
        .expect(1)
        .mount(&confluence)
        .await;
    Mock::given(method("POST"))
        .and(path("/confluence/rest/api/content/101/label"))
        .and(body_json(json!([{"prefix": "global", "name": "type-howto"}, {"prefix": "global", "name": "tool-jira"}])))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"results": [], "start": 0, "limit": 200, "size": 0})))
        .expect(1)
        .mount(&confluence)
        .await;
    let openai = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header(
            "authorization",
            format!("Bearer {OPENAI_KEY}").as_str(),
        ))
        .respond_with(openai_ok())
        .mount(&openai)
        .await;
    let vars = vec![
        (
            "CONFLUENCE_BASE_URL",
            format!("{}/confluence", confluence.uri()),
        ),
        ("CONFLUENCE_PAT", CONFLUENCE_PAT.into()),
        ("OPENAI_API_KEY", OPENAI_KEY.into()),
        ("OPENAI_BASE_URL", format!("{}/v1", openai.uri())),
    ];
    let (out, report) = tag_space_with_report(&["--space", "OPS"], &vars);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {}",
        text(&out.stderr)
    );
    assert_eq!(counts(&report), [3, 1, 2, 0, 0]);
    assert_eq!(provider(&report, "openai")["calls"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn gemini_quota_exhausted_falls_back_to_openai_and_a_failed_write_exits_1() {
    let confluence = cloud_site().await;
    // Page 103 was deleted between listing and labelling.
    Mock::given(method("POST"))
        .and(path("/wiki/rest/api/content/103/label"))
        .respond_with(
            ResponseTemplate::new(404).set_body_json(
                json!({"statusCode": 404, "message": "No content found with id 103"}),
            ),
        )
        .mount(&confluence)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/wiki/rest/api/content/10[12]/label$"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"results": [], "start": 0, "limit": 200, "size": 0})),
        )
        .expect(2)
        .mount(&confluence)
        .await;
    let llm = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1beta/models/gemini-2.5-flash:generateContent"))
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({"error": {
            "code": 429, "status": "RESOURCE_EXHAUSTED",
            "message": "You exceeded your current quota, please check your plan and billing details.",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests", "quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier", "quotaValue": "250"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}
            ]}})))
        .expect(1)
        .mount(&llm)
        .await;
    let openai = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(openai_ok())
        .mount(&openai)
        .await;
    let vars = [
        cloud_vars(&confluence),
        gemini_vars(&llm),
        vec![
            ("OPENAI_API_KEY", OPENAI_KEY.into()),
            ("OPENAI_BASE_URL", format!("{}/v1", openai.uri())),
        ],
    ]
    .concat();
    let (out, report) = tag_space_with_report(&["--space", "ENG", "--batch-size", "10"], &vars);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {stdout}\nstderr: {}",
        text(&out.stderr)
    );
    assert!(stdout.contains("[openai]"), "{stdout}");
    assert!(stdout.contains("failed     103"), "{stdout}");
    assert!(stdout.contains("HTTP 404"), "{stdout}");
    assert_eq!(counts(&report), [3, 2, 0, 0, 1]);
    assert_eq!(provider(&report, "gemini")["fallbacks"], 1);
    assert!(
        provider(&report, "gemini")["unavailable"]
            .as_str()
            .is_some(),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_space_exits_2_with_one_clear_line() {
    let confluence = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/wiki/api/v2/spaces"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"results": [], "_links": {}})),
        )
        .mount(&confluence)
        .await;
    let llm = gemini().await;
    let vars = [cloud_vars(&confluence), gemini_vars(&llm)].concat();
    let out = tag_space(&["--space", "NOPE"], &vars);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("space 'NOPE' was not found"), "{stderr}");
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.starts_with("tag-space:"))
            .count(),
        1,
        "{stderr}"
    );
    assert!(llm.received_requests().await.unwrap().is_empty());
}

#[test]
fn missing_configuration_exits_2_naming_the_variable() {
    let out = tag_space(&["--space", "ENG"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("tag-space: CONFLUENCE_BASE_URL is not set"),
        "{stderr}"
    );
}

#[test]
fn a_malformed_setting_exits_2_with_an_example() {
    let out = tag_space(
        &["--space", "ENG"],
        &[
            (
                "CONFLUENCE_BASE_URL",
                "https://acme.atlassian.net/wiki".into(),
            ),
            ("CONFLUENCE_PAT", "x".into()),
            ("GEMINI_API_KEY", "x".into()),
            ("TAG_SPACE_BATCH_SIZE", "lots".into()),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("TAG_SPACE_BATCH_SIZE=\"lots\" is invalid")
            && stderr.contains("e.g. TAG_SPACE_BATCH_SIZE=5"),
        "{stderr}"
    );
}

#[test]
fn a_bad_taxonomy_exits_2_naming_the_tag() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tax.toml"),
        include_str!("../fixtures/e2e/bad-taxonomy.toml"),
    )
    .unwrap();
    let out = tag_space_in(dir.path(), &["--demo", "--taxonomy", "tax.toml"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("Tool Jira"), "{stderr}");
}

#[test]
fn a_dotenv_file_is_read_and_the_environment_beats_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "CONFLUENCE_BASE_URL=https://from-dotenv.test/wiki\nTAG_SPACE_BATCH_SIZE=0\n",
    )
    .unwrap();
    // .env alone: its bad batch size is reported.
    let out = tag_space_in(dir.path(), &["--space", "ENG"], &[]);
    assert!(
        text(&out.stderr).contains("TAG_SPACE_BATCH_SIZE"),
        "{}",
        text(&out.stderr)
    );
    // The environment wins over .env.
    let out = tag_space_in(
        dir.path(),
        &["--space", "ENG"],
        &[("TAG_SPACE_BATCH_SIZE", "4".into())],
    );
    assert!(
        text(&out.stderr).contains("Confluence credentials are not set"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn the_demo_runs_offline_and_exits_0() {
    let out = tag_space(&["--demo"], &[]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {}",
        text(&out.stderr)
    );
    assert!(stdout.contains("space DEMO"), "{stdout}");
    assert!(
        stdout.contains("| seen | tagged |"),
        "the metrics table is printed: {stdout}"
    );
    assert!(stdout.contains("added"), "{stdout}");
    assert!(stdout.contains("skipped"), "{stdout}");
    assert!(stdout.contains("rules"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_never_appear_in_any_output_even_at_debug_level() {
    let confluence = cloud_site().await;
    let llm = MockServer::start().await;
    // A 401 whose body echoes the key, as some gateways do: the snippet must not leak it
    // through our messages (we never log bodies of requests, only short response snippets).
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": {"code": 401, "message": "API key not valid.", "status": "UNAUTHENTICATED"}})))
        .mount(&llm)
        .await;
    let vars = [cloud_vars(&confluence), gemini_vars(&llm)].concat();
    let out = tag_space(&["--space", "ENG", "--dry-run", "-vv"], &vars);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    // The only provider refuses its key: a total outage, so the run stops (exit 2).
    assert_eq!(out.status.code(), Some(2), "{all}");
    for secret in [GEMINI_KEY, CONFLUENCE_TOKEN] {
        assert!(!all.contains(secret), "{secret} leaked:\n{all}");
    }
    assert!(all.contains("gemini: not authorised"), "{all}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gemini_429_with_retry_info_is_waited_out_then_retried() {
    let confluence = cloud_site().await;
    let llm = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1beta/models/gemini-2.5-flash:generateContent"))
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({"error": {
            "code": 429, "status": "RESOURCE_EXHAUSTED",
            "message": "You exceeded your current quota. Please retry in 0.2s.",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaId": "GenerateRequestsPerMinutePerProjectPerModel"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.2s"}
            ]}})))
        .up_to_n_times(1)
        .expect(1)
        .mount(&llm)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1beta/models/gemini-2.5-flash:generateContent"))
        .respond_with(gemini_ok())
        .expect(1)
        .mount(&llm)
        .await;
    let vars = [cloud_vars(&confluence), gemini_vars(&llm)].concat();
    let started = std::time::Instant::now();
    let (out, report) = tag_space_with_report(
        &["--space", "ENG", "--dry-run", "--batch-size", "10"],
        &vars,
    );
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {}",
        text(&out.stderr)
    );
    assert_eq!(counts(&report), [3, 3, 0, 0, 0]);
    let gemini = provider(&report, "gemini");
    assert_eq!(
        (
            &gemini["rate_limited"],
            &gemini["retries"],
            &gemini["fallbacks"]
        ),
        (&json!(1), &json!(1), &json!(0)),
        "{gemini}"
    );
    assert_eq!(gemini["waits"]["cooldown_429"]["count"], 1, "{gemini}");
    // The retry waited for the server's 0.2 s.
    let reqs = llm.received_requests().await.unwrap();
    assert_eq!(reqs.len(), 2);
    assert!(started.elapsed() >= std::time::Duration::from_millis(200));
}
