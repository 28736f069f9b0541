//! The Gemini and OpenAI clients against wiremock on 127.0.0.1 (real clock: reqwest times
//! out at once under a paused one). Each test checks the request that went out or the
//! classification of one answer; the fixtures in `tests/fixtures/llm/` are made-up content
//! in the providers' real shapes.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tag_space::llm::ProviderSettings;
use tag_space::llm::budget::answer_tokens;
use tag_space::llm::gemini::GeminiProvider;
use tag_space::llm::openai::OpenAiProvider;
use tag_space::llm::schema::inline_refs;
use tag_space::llm::validate::validate;
use tag_space::llm::{LlmError, LlmErrorKind, PageText, Provider, RateLimitHints, Usage};
use tag_space::secret::Secret;
use tag_space::taxonomy::{Category, Tag, Taxonomy};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::harness::net::ClosedPort;
use crate::harness::proc::POLL_PATIENCE;

const KEY: &str = "test-key-5f3a9c";
const GEMINI_MODEL: &str = "gemini-2.5-flash";
const GEMINI_PATH: &str = "/v1beta/models/gemini-2.5-flash:generateContent";
const OPENAI_PATH: &str = "/v1/chat/completions";

fn fixture(name: &str) -> String {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/llm")
        .join(name);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()))
}

fn taxonomy() -> Arc<Taxonomy> {
    let tag = |name: &str, description: &str| Tag {
        name: name.into(),
        description: description.into(),
        keywords: vec![],
    };
    let categories = vec![
        Category {
            name: "type".into(),
            description: "what kind of document".into(),
            max_per_page: 1,
            tags: vec![
                tag("how-to", "step-by-step instructions"),
                tag("reference", "facts to look up"),
                tag("decision", "a decision record"),
            ],
        },
        Category {
            name: "tool".into(),
            description: "tools the page is about".into(),
            max_per_page: 2,
            tags: vec![
                tag("jira", "Jira"),
                tag("git", "Git"),
                tag("docker", "Docker"),
            ],
        },
    ];
    Arc::new(Taxonomy::new(categories, 3, "test").unwrap())
}

fn batch() -> Vec<PageText> {
    vec![
        PageText {
            id: "101".into(),
            title: "Deploying with Docker".into(),
            text: "Build the image, then push.".into(),
        },
        PageText {
            id: "202".into(),
            title: "Git cheat sheet".into(),
            text: "git log --oneline".into(),
        },
    ]
}

fn settings(
    base_url: String,
    model: &str,
    key: Option<&str>,
    timeout: Duration,
) -> ProviderSettings {
    ProviderSettings {
        api_key: key.map(Secret::new),
        model: model.into(),
        base_url,
        timeout,
        max_output_tokens: 2048,
    }
}

fn gemini(server: &MockServer) -> GeminiProvider {
    GeminiProvider::new(
        settings(
            server.uri(),
            GEMINI_MODEL,
            Some(KEY),
            Duration::from_secs(5),
        ),
        taxonomy(),
    )
    .unwrap()
}

fn openai(server: &MockServer, key: Option<&str>) -> OpenAiProvider {
    let s = settings(
        format!("{}/v1", server.uri()),
        "gpt-4o-mini",
        key,
        Duration::from_secs(5),
    );
    OpenAiProvider::new(s, taxonomy()).unwrap()
}

fn json_response(status: u16, body: String) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body, "application/json")
}

/// Mounts one Gemini answer (only for a request with the key header) and returns the error.
async fn gemini_error(template: ResponseTemplate) -> LlmError {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(GEMINI_PATH))
        .and(header("x-goog-api-key", KEY))
        .respond_with(template)
        .expect(1)
        .mount(&server)
        .await;
    let err = gemini(&server).classify(&batch()).await.unwrap_err();
    assert_eq!(err.provider, "gemini");
    assert!(!err.detail.contains(KEY));
    err
}

/// Mounts one OpenAI answer (only for a request with the bearer key) and returns the error.
async fn openai_error(template: ResponseTemplate) -> (LlmError, RateLimitHints) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(OPENAI_PATH))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .respond_with(template)
        .expect(1)
        .mount(&server)
        .await;
    let provider = openai(&server, Some(KEY));
    let err = provider.classify(&batch()).await.unwrap_err();
    assert_eq!(err.provider, "openai");
    assert!(!err.detail.contains(KEY));
    (err, provider.last_rate_limits())
}

async fn only_request(server: &MockServer) -> Request {
    let mut requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    requests.remove(0)
}

/// Every page is required, and every label array is an enum of its category with a bound
/// (after resolving `$ref`s, in the `$defs` form).
fn assert_schema_is_complete(schema: &Value, type_key: &str, array: &str) {
    let schema = &inline_refs(schema);
    assert_eq!(
        schema["required"],
        serde_json::json!(["101", "202"]),
        "{schema}"
    );
    for id in ["101", "202"] {
        let page = &schema["properties"][id];
        assert_eq!(
            page["required"],
            serde_json::json!(["type", "tool"]),
            "{schema}"
        );
        let tool = &page["properties"]["tool"];
        assert_eq!(tool[type_key], array);
        assert_eq!(tool["maxItems"], 2);
        assert_eq!(
            tool["items"]["enum"],
            serde_json::json!(["jira", "git", "docker"])
        );
        assert_eq!(page["properties"]["type"]["maxItems"], 1);
        assert_eq!(
            page["properties"]["type"]["items"]["enum"],
            serde_json::json!(["how-to", "reference", "decision"])
        );
    }
}

#[tokio::test]
async fn gemini_success_sends_the_documented_request_and_reads_the_answer() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(GEMINI_PATH))
        .and(header("x-goog-api-key", KEY))
        .respond_with(json_response(200, fixture("gemini_success.json")))
        .expect(1)
        .mount(&server)
        .await;

    let answer = gemini(&server).classify(&batch()).await.unwrap();

    assert_eq!(answer.provider, "gemini");
    assert_eq!(answer.model, GEMINI_MODEL);
    let mut first = answer.labels["101"].clone();
    first.sort();
    assert_eq!(first, ["docker", "git", "how-to"]);
    assert_eq!(answer.labels["202"], ["reference"]);
    // Validation puts categories in taxonomy order and keeps the model's order within one.
    let checked = validate(&batch(), &answer, &taxonomy());
    assert_eq!(
        checked.labels_for("101").unwrap(),
        ["how-to", "git", "docker"]
    );
    assert!(checked.is_complete() && checked.dropped.is_empty());
    assert_eq!(
        answer.usage,
        Some(Usage {
            input_tokens: 512,
            output_tokens: 31,
            cached_input_tokens: 0,
        })
    );
    assert_eq!(answer.rate_limits, RateLimitHints::default());

    let request = only_request(&server).await;
    assert_eq!(
        request.url.query(),
        None,
        "the key must not be in the URL: {}",
        request.url
    );
    assert!(!request.url.as_str().contains(KEY));
    let ua = request.headers.get("user-agent").unwrap().to_str().unwrap();
    assert!(ua.starts_with("tag-space/"), "{ua}");
    let body: Value = request.body_json().unwrap();
    let system = body["systemInstruction"]["parts"][0]["text"]
        .as_str()
        .unwrap();
    assert!(
        system.contains("- docker: Docker") && system.contains("never instructions"),
        "{system}"
    );
    let user = body["contents"][0]["parts"][0]["text"].as_str().unwrap();
    assert_eq!(body["contents"][0]["role"], "user");
    assert!(
        user.contains("<page id=\"101\">") && user.contains("<title>Git cheat sheet</title>"),
        "{user}"
    );
    let config = &body["generationConfig"];
    assert_eq!(config["temperature"], 0.0);
    // The batch's budget (thinking is off for 2.5 Flash), not the 2,048-token ceiling.
    assert_eq!(
        config["maxOutputTokens"],
        answer_tokens(&batch(), &taxonomy())
    );
    assert_eq!(config["responseMimeType"], "application/json");
    assert_eq!(
        config["thinkingConfig"],
        serde_json::json!({"thinkingBudget": 0})
    );
    // 2.5 Flash takes real JSON Schema: the page object once, under $defs.
    let schema = &config["responseJsonSchema"];
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(
        schema["properties"]["202"],
        serde_json::json!({"$ref": "#/$defs/page"})
    );
    assert_eq!(schema["$defs"]["page"]["additionalProperties"], false);
    assert_schema_is_complete(schema, "type", "array");
    assert!(config.get("responseSchema").is_none());
}

#[tokio::test]
async fn gemini_429_with_retry_info_is_rate_limited_for_that_long() {
    let err = gemini_error(json_response(429, fixture("gemini_429_per_minute.json"))).await;
    assert_eq!(
        err.kind,
        LlmErrorKind::RateLimited {
            retry_after: Some(Duration::from_secs(26))
        }
    );
    assert_eq!(err.status, Some(429));
    assert!(
        err.detail
            .starts_with("RESOURCE_EXHAUSTED: You exceeded your current quota"),
        "{}",
        err.detail
    );
}

#[tokio::test]
async fn gemini_per_day_quota_is_exhausted_despite_its_short_retry_delay() {
    let err = gemini_error(json_response(429, fixture("gemini_429_per_day.json"))).await;
    assert_eq!(err.kind, LlmErrorKind::QuotaExhausted);
    assert!(err.is_provider_dead());
}

#[tokio::test]
async fn gemini_limit_zero_is_exhausted() {
    // See: https://github.com/langchain-ai/langchain-google/issues/1445
    let err = gemini_error(json_response(429, fixture("gemini_429_limit_zero.json"))).await;
    assert_eq!(err.kind, LlmErrorKind::QuotaExhausted);
}

#[tokio::test]
async fn gemini_truncated_answer_is_truncated() {
    let err = gemini_error(json_response(200, fixture("gemini_max_tokens.json"))).await;
    assert_eq!(err.kind, LlmErrorKind::Truncated);
    assert!(
        err.detail.contains("MAX_TOKENS") && err.detail.contains("240 of them thinking"),
        "{}",
        err.detail
    );
}

#[tokio::test]
async fn gemini_safety_stop_is_a_bad_answer() {
    let err = gemini_error(json_response(200, fixture("gemini_safety.json"))).await;
    assert_eq!(err.kind, LlmErrorKind::BadAnswer);
    assert_eq!(err.detail, "finishReason SAFETY");
}

#[tokio::test]
async fn gemini_blocked_prompt_is_a_bad_answer() {
    let err = gemini_error(json_response(200, fixture("gemini_prompt_blocked.json"))).await;
    assert_eq!(err.kind, LlmErrorKind::BadAnswer);
    assert_eq!(err.detail, "prompt blocked: PROHIBITED_CONTENT");
}

#[tokio::test]
async fn gemini_503_is_overloaded_with_the_servers_wait() {
    let template = json_response(503, fixture("gemini_503.json")).insert_header("retry-after", "2");
    let err = gemini_error(template).await;
    assert_eq!(
        err.kind,
        LlmErrorKind::Overloaded {
            retry_after: Some(Duration::from_secs(2))
        }
    );
    assert!(err.is_retryable());
}

#[tokio::test]
async fn gemini_html_from_a_proxy_is_a_bad_answer() {
    let err = gemini_error(
        ResponseTemplate::new(200).set_body_raw(fixture("proxy_error.html"), "text/html"),
    )
    .await;
    assert_eq!(err.kind, LlmErrorKind::BadAnswer);
    assert!(err.detail.contains("Corporate proxy"), "{}", err.detail);
}

#[tokio::test]
async fn gemini_without_a_key_is_refused_before_any_request() {
    let s = settings(
        "http://127.0.0.1:9".into(),
        GEMINI_MODEL,
        None,
        Duration::from_secs(1),
    );
    let err = GeminiProvider::new(s, taxonomy()).unwrap_err();
    assert_eq!(err.kind, LlmErrorKind::Auth);
}

/// An answer's delay that no test waits for: only a client timeout ends the request.
const NEVER: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn gemini_client_timeout_is_a_timeout() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(json_response(200, fixture("gemini_success.json")).set_delay(NEVER))
        .mount(&server)
        .await;
    let s = settings(
        server.uri(),
        GEMINI_MODEL,
        Some(KEY),
        Duration::from_millis(200),
    );
    let provider = GeminiProvider::new(s, taxonomy()).unwrap();
    let pages = batch();
    let err = provider.classify(&pages);
    // The answer would take an hour: only the client's timeout ends this, long before
    // the test's deadline however slow the machine.
    let err = tokio::time::timeout(POLL_PATIENCE, err)
        .await
        .expect("the client timeout never fired")
        .unwrap_err();
    assert_eq!(err.kind, LlmErrorKind::Timeout, "{err}");
}

#[tokio::test]
async fn refused_connection_is_a_transport_error() {
    // Nothing listens there: connection refused.
    let closed = ClosedPort::new();
    let port = closed.port;
    let s = settings(
        format!("http://127.0.0.1:{port}"),
        GEMINI_MODEL,
        Some(KEY),
        Duration::from_secs(2),
    );
    let err = GeminiProvider::new(s, taxonomy())
        .unwrap()
        .classify(&batch())
        .await
        .unwrap_err();
    assert_eq!(err.kind, LlmErrorKind::Transport, "{err}");
    assert!(!err.detail.contains(KEY));
}

#[tokio::test]
async fn openai_success_reads_labels_usage_and_rate_limit_headers() {
    let server = MockServer::start().await;
    let template = json_response(200, fixture("openai_success.json"))
        .insert_header("x-ratelimit-limit-requests", "500")
        .insert_header("x-ratelimit-limit-tokens", "200000")
        .insert_header("x-ratelimit-remaining-requests", "499")
        .insert_header("x-ratelimit-remaining-tokens", "197312")
        .insert_header("x-ratelimit-reset-requests", "120ms")
        .insert_header("x-ratelimit-reset-tokens", "4m12.172s");
    Mock::given(method("POST"))
        .and(path(OPENAI_PATH))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .respond_with(template)
        .expect(1)
        .mount(&server)
        .await;

    let provider = openai(&server, Some(KEY));
    let answer = provider.classify(&batch()).await.unwrap();

    assert_eq!(answer.provider, "openai");
    assert_eq!(answer.model, "gpt-4o-mini");
    let mut first = answer.labels["101"].clone();
    first.sort();
    assert_eq!(first, ["decision", "jira"]);
    assert_eq!(answer.labels["202"], ["git"]);
    assert_eq!(
        answer.usage,
        Some(Usage {
            input_tokens: 640,
            output_tokens: 28,
            cached_input_tokens: 0,
        })
    );
    let expected = RateLimitHints {
        limit_requests: Some(500),
        limit_tokens: Some(200_000),
        remaining_requests: Some(499),
        remaining_tokens: Some(197_312),
        reset_requests: Some(Duration::from_millis(120)),
        reset_tokens: Some(Duration::from_millis(252_172)),
    };
    assert_eq!(answer.rate_limits, expected);
    assert_eq!(provider.last_rate_limits(), expected);

    let request = only_request(&server).await;
    let body: Value = request.body_json().unwrap();
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(body["messages"][1]["role"], "user");
    assert!(
        body["messages"][1]["content"]
            .as_str()
            .unwrap()
            .contains("<page id=\"202\">")
    );
    assert_eq!(body["temperature"], 0);
    // 127.0.0.1 is not OpenAI's host: the cap goes in the field every compatible server knows.
    assert_eq!(body["max_tokens"], answer_tokens(&batch(), &taxonomy()));
    assert!(body.get("max_completion_tokens").is_none());
    let format = &body["response_format"];
    assert_eq!(format["type"], "json_schema");
    assert_eq!(format["json_schema"]["strict"], true);
    assert_eq!(format["json_schema"]["name"], "page_labels");
    let schema = &format["json_schema"]["schema"];
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(
        schema["properties"]["101"],
        serde_json::json!({"$ref": "#/$defs/page"})
    );
    assert_eq!(schema["$defs"]["page"]["additionalProperties"], false);
    assert_schema_is_complete(schema, "type", "array");
}

#[tokio::test]
async fn openai_without_a_key_sends_no_authorization() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(OPENAI_PATH))
        .respond_with(json_response(200, fixture("openai_success.json")))
        .expect(1)
        .mount(&server)
        .await;
    let answer = openai(&server, None).classify(&batch()).await.unwrap();
    assert_eq!(answer.labels.len(), 2);
    assert_eq!(answer.rate_limits, RateLimitHints::default());
    assert!(
        only_request(&server)
            .await
            .headers
            .get("authorization")
            .is_none()
    );
}

#[tokio::test]
async fn openai_insufficient_quota_is_exhausted() {
    let (err, _) = openai_error(json_response(
        429,
        fixture("openai_insufficient_quota.json"),
    ))
    .await;
    assert_eq!(err.kind, LlmErrorKind::QuotaExhausted);
    assert!(
        err.detail.starts_with("insufficient_quota: You exceeded"),
        "{}",
        err.detail
    );
}

#[tokio::test]
async fn openai_rate_limit_waits_for_retry_after_ms_and_keeps_the_headers() {
    let template = json_response(429, fixture("openai_rate_limit.json"))
        .insert_header("retry-after-ms", "750")
        .insert_header("x-ratelimit-remaining-tokens", "0")
        .insert_header("x-ratelimit-reset-tokens", "1.574s");
    let (err, hints) = openai_error(template).await;
    assert_eq!(
        err.kind,
        LlmErrorKind::RateLimited {
            retry_after: Some(Duration::from_millis(750))
        }
    );
    assert_eq!(hints.remaining_tokens, Some(0));
    assert_eq!(hints.reset_tokens, Some(Duration::from_millis(1574)));
}

#[tokio::test]
async fn openai_rate_limit_without_headers_waits_as_the_message_says() {
    let (err, _) = openai_error(json_response(429, fixture("openai_rate_limit.json"))).await;
    assert_eq!(
        err.kind,
        LlmErrorKind::RateLimited {
            retry_after: Some(Duration::from_millis(1574))
        }
    );
}

#[tokio::test]
async fn openai_request_too_large_is_too_large() {
    let (err, _) = openai_error(json_response(429, fixture("openai_request_too_large.json"))).await;
    assert_eq!(err.kind, LlmErrorKind::TooLarge);
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn openai_refusal_is_a_bad_answer() {
    let (err, _) = openai_error(json_response(200, fixture("openai_refusal.json"))).await;
    assert_eq!(err.kind, LlmErrorKind::BadAnswer);
    assert_eq!(
        err.detail,
        "refused: I'm sorry, I can't help with that request."
    );
}

#[tokio::test]
async fn openai_malformed_content_is_a_bad_answer() {
    // Prose is also the sign of a server that ignores the response format: the structured-
    // output ladder asks once at each of its three rungs before it gives up (localmodels.rs).
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(OPENAI_PATH))
        .respond_with(json_response(200, fixture("openai_malformed_content.json")))
        .expect(3)
        .mount(&server)
        .await;
    let provider = openai(&server, Some(KEY));
    let err = provider.classify(&batch()).await.unwrap_err();
    assert_eq!(provider.ladder().current_name(), "prompt");
    assert_eq!(err.kind, LlmErrorKind::BadAnswer);
    assert!(
        err.detail.contains("no complete JSON object"),
        "{}",
        err.detail
    );
}

#[tokio::test]
async fn openai_html_200_is_a_bad_answer() {
    let (err, _) = openai_error(
        ResponseTemplate::new(200).set_body_raw(fixture("proxy_error.html"), "text/html"),
    )
    .await;
    assert_eq!(err.kind, LlmErrorKind::BadAnswer);
    assert!(
        err.detail.starts_with("not a chat completion"),
        "{}",
        err.detail
    );
}

#[tokio::test]
async fn openai_401_is_auth() {
    let (err, _) = openai_error(json_response(401, fixture("openai_401.json"))).await;
    assert_eq!(err.kind, LlmErrorKind::Auth);
    assert!(err.is_provider_dead());
    assert_eq!(err.status, Some(401));
}

#[tokio::test]
async fn openai_client_timeout_is_a_timeout() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(json_response(200, fixture("openai_success.json")).set_delay(NEVER))
        .mount(&server)
        .await;
    let s = settings(
        format!("{}/v1", server.uri()),
        "gpt-4o-mini",
        None,
        Duration::from_millis(200),
    );
    let provider = OpenAiProvider::new(s, taxonomy()).unwrap();
    let pages = batch();
    let err = provider.classify(&pages);
    // The answer would take an hour: only the client's timeout ends this, long before
    // the test's deadline however slow the machine.
    let err = tokio::time::timeout(POLL_PATIENCE, err)
        .await
        .expect("the client timeout never fired")
        .unwrap_err();
    assert_eq!(err.kind, LlmErrorKind::Timeout, "{err}");
}
