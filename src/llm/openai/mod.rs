//! OpenAI Chat Completions, and any server that speaks it (Ollama, llama.cpp's
//! `llama-server`, vLLM, LM Studio, LiteLLM, Gemini's OpenAI shim).
//!
//! One request per [`Provider::classify_once`] call and no retries here: the governor retries,
//! using the classification below (reference §2.3, §2.4 and §3.8):
//!
//! | answer | kind |
//! |---|---|
//! | `insufficient_quota` (type or code) or a billing code, 402 | `QuotaExhausted` |
//! | message "Request too large…", code `context_length_exceeded`, 413 | `TooLarge` |
//! | code `slow_down` (429 or 503: traffic ramped up too fast) | `SlowDown`: lower the pace |
//! | other 429 | `RateLimited`, wait from `retry-after-ms` / `retry-after`, else "try again in Xs", else the matching `x-ratelimit-reset-*` |
//! | 5xx | `Overloaded` |
//! | 401, 403 | `Auth` |
//! | 408 | `Timeout` |
//! | other 4xx | `BadRequest` |
//! | 200 with `finish_reason: length` | `Truncated` |
//! | 200 not JSON, a refusal, `finish_reason: content_filter`, unreadable JSON | `BadAnswer` |
//!
//! The `x-ratelimit-*` headers are read on every response, success or error: they come back
//! in [`Answer::rate_limits`], and [`OpenAiProvider::last_rate_limits`] keeps the latest.
//!
//! Request choices for compatible servers:
//! - The key is sent only when one is set (local servers often need none).
//! - The output cap is `max_completion_tokens` for OpenAI's own hosts (`max_tokens` is
//!   deprecated there and refused by reasoning models) and `max_tokens` everywhere else,
//!   which is the field every compatible server knows. Without a cap a grammar-constrained
//!   local server can generate for minutes (reference §5). Its value is the batch's output
//!   budget ([`budget::answer_tokens`], plus 2,048 tokens of reasoning for reasoning models),
//!   capped at the configured ceiling: OpenAI counts the cap against TPM up front.
//! - The schema (`json_schema`, strict) states the per-page object once under `$defs`
//!   ([`SchemaForm::Defs`]): OpenAI strict mode, llama.cpp, vLLM and Ollama resolve `$ref`.
//!   Gemini's OpenAI-compatible endpoint gets the expanded form, as nothing says how it
//!   translates `$ref` ([`schema_form`]).
//! - Reasoning models (`o1`, `o3`, `o4…`, `gpt-5…` except `gpt-5-chat…`) refuse any
//!   `temperature` but the default, so they get `reasoning_effort: low` instead of
//!   `temperature: 0`; their reasoning tokens count against the cap.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::ProviderSettings;
use super::schema::SchemaForm;
use super::structured::{self, Ladder, OPENAI_RUNGS, Sent, StructuredMode};
use super::wire;
use super::{
    Answer, Climb, LlmError, LlmErrorKind, OutputBudget, PageText, Provider, RateLimitHints,
    Unsettled, Usage, prompt,
};
use crate::secret::Secret;
use crate::taxonomy::Taxonomy;

const NAME: &str = "openai";

/// The `json_schema.name` sent with every request.
const SCHEMA_NAME: &str = "page_labels";

/// Output tokens a reasoning model may spend reasoning at `reasoning_effort: low` before it
/// answers (they count against `max_completion_tokens`). A truncated answer is retried at
/// twice the cap.
pub const REASONING_ALLOWANCE: u32 = 2048;

/// `presence_penalty` sent to local servers ([`OpenAiProvider::penalise_repeats`]).
const REPEAT_PENALTY: f64 = 0.5;

/// Talks to one model of an OpenAI-compatible server.
#[derive(Debug)]
pub struct OpenAiProvider {
    http: reqwest::Client,
    settings: ProviderSettings,
    taxonomy: Arc<Taxonomy>,
    system: String,
    url: String,
    /// `max_completion_tokens` (OpenAI's own hosts) or `max_tokens` (everything else).
    cap_field: &'static str,
    schema_form: SchemaForm,
    last_rate_limits: Mutex<RateLimitHints>,
    /// How this server is asked for JSON ([`super::structured`]).
    ladder: Ladder,
    /// The reason field and the few-shot examples ([`prompt::PromptOptions`]).
    prompt: prompt::PromptOptions,
}

/// The rungs of [`OPENAI_RUNGS`], by index.
const JSON_SCHEMA: usize = 0;
const JSON_OBJECT: usize = 1;

/// The schema form a server gets: the expanded one for Gemini's OpenAI-compatible endpoint
/// (how it translates `$ref` is not documented), `$defs` for everything else.
pub fn schema_form(base_url: &str) -> SchemaForm {
    let host = url::Url::parse(base_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase));
    if host.as_deref() == Some("generativelanguage.googleapis.com") {
        SchemaForm::Expanded
    } else {
        SchemaForm::Defs
    }
}

impl OpenAiProvider {
    /// Fails only if the HTTP client cannot be built. A missing key is allowed: local
    /// servers need none, and a server that does will answer 401 (`Auth`).
    pub fn new(settings: ProviderSettings, taxonomy: Arc<Taxonomy>) -> Result<Self, LlmError> {
        let http = wire::http_client(NAME, settings.timeout)?;
        let base = settings.base_url.trim_end_matches('/');
        let url = format!("{base}/chat/completions");
        let cap_field = if is_openai_host(base) {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        let system = prompt::system_instruction(&taxonomy);
        let schema_form = schema_form(base);
        Ok(Self {
            http,
            settings,
            taxonomy,
            system,
            url,
            cap_field,
            schema_form,
            last_rate_limits: Mutex::default(),
            ladder: Ladder::new(OPENAI_RUNGS, JSON_SCHEMA, false),
            prompt: prompt::PromptOptions::default(),
        })
    }

    /// Asks with `opts`: the reason field, the few-shot examples.
    pub fn with_prompt(mut self, opts: prompt::PromptOptions) -> Self {
        self.system = prompt::system_instruction_with(&self.taxonomy, &opts);
        self.prompt = opts;
        self
    }

    /// Uses `mode` for structured output (`TAG_SPACE_OPENAI_STRUCTURED`).
    pub fn with_structured(mut self, mode: StructuredMode) -> Self {
        self.ladder = match mode {
            StructuredMode::Auto => Ladder::new(OPENAI_RUNGS, JSON_SCHEMA, false),
            StructuredMode::Forced(rung) => Ladder::new(OPENAI_RUNGS, rung, true),
        };
        self
    }

    /// Where this endpoint stands on the structured-output ladder.
    pub fn ladder(&self) -> &Ladder {
        &self.ladder
    }

    /// The settings this client was built with (base URL and model name the ladder's rung is
    /// remembered under).
    pub fn settings(&self) -> &ProviderSettings {
        &self.settings
    }

    /// The `x-ratelimit-*` hints of the latest response, success or error (all `None` for
    /// servers that send none).
    pub fn last_rate_limits(&self) -> RateLimitHints {
        *self
            .last_rate_limits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The JSON body of a chat completion request for this batch, asking for at most
    /// `max_output_tokens`, at the ladder's current rung.
    pub(crate) fn request_body(&self, batch: &[PageText], max_output_tokens: u32) -> Value {
        self.request_body_at(batch, max_output_tokens, self.ladder.current())
    }

    /// [`Self::request_body`] at `rung` of [`OPENAI_RUNGS`]: `json_schema` (strict), then
    /// `json_object` with the schema beside it (llama-cpp-python reads it there; servers that
    /// do not, drop it), then no `response_format` and the schema in the prompt.
    fn request_body_at(&self, batch: &[PageText], max_output_tokens: u32, rung: usize) -> Value {
        let mut user = prompt::user_content_with(batch, &self.prompt);
        let schema = |form| prompt::answer_schema(batch, &self.taxonomy, form, &self.prompt);
        let response_format = match rung {
            JSON_SCHEMA => Some(json!({
                "type": "json_schema",
                "json_schema": {
                    "name": SCHEMA_NAME,
                    "strict": true,
                    "schema": schema(self.schema_form),
                },
            })),
            // The expanded form: the servers reached here resolve `$ref` least reliably.
            JSON_OBJECT => Some(json!({
                "type": "json_object",
                "schema": schema(SchemaForm::Expanded),
            })),
            _ => {
                let schema = schema(SchemaForm::Defs);
                user.push_str(&format!(
                    "\nAnswer with one JSON object that follows this JSON Schema, and nothing else:\n{schema}\n"
                ));
                None
            }
        };
        let mut body = json!({
            "model": self.settings.model,
            "messages": [
                {"role": "system", "content": self.system},
                {"role": "user", "content": user},
            ],
        });
        if let Some(format) = response_format {
            body["response_format"] = format;
        }
        body[self.cap_field] = json!(max_output_tokens);
        if is_reasoning_model(&self.settings.model) {
            body["reasoning_effort"] = json!("low");
        } else {
            // Explicit: some servers default to 1.0 when none is sent (Ollama).
            body["temperature"] = json!(0);
            if self.penalise_repeats() {
                body["presence_penalty"] = json!(REPEAT_PENALTY);
            }
        }
        body
    }

    /// One request at `rung`: the answer's text, its usage and the rate-limit hints.
    async fn send(
        &self,
        batch: &[PageText],
        max_output_tokens: u32,
        rung: usize,
    ) -> Result<Sent, LlmError> {
        let key = self.key();
        let mut request =
            self.http
                .post(&self.url)
                .json(&self.request_body_at(batch, max_output_tokens, rung));
        if let Some(key) = key {
            request = request.bearer_auth(key.expose());
        }
        let response = request
            .send()
            .await
            .map_err(|e| wire::transport_error(NAME, &e))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let hints = parse_rate_limits(&headers);
        *self
            .last_rate_limits
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = hints;
        let body = response
            .text()
            .await
            .map_err(|e| wire::transport_error(NAME, &e))?;
        if !(200..300).contains(&status) {
            return Err(classify_error(status, &headers, &body, key));
        }
        let (content, usage) = response_content(&body, key)?;
        Ok(Sent {
            content,
            usage,
            rate_limits: hints,
        })
    }

    /// Local servers (not OpenAI's own hosts, not Gemini's endpoint) get a presence penalty:
    /// under a grammar, greedy decoding of a small model can fall into an endless run of
    /// whitespace, which JSON allows between tokens, until the output cap (seen with
    /// llama-server and Gemma 3 270M: 616 tokens of " \t" for one page; with the penalty,
    /// 76 tokens). It also discourages a tag given twice.
    fn penalise_repeats(&self) -> bool {
        self.cap_field == "max_tokens" && self.schema_form == SchemaForm::Defs
    }

    fn key(&self) -> Option<&Secret> {
        self.settings
            .api_key
            .as_ref()
            .filter(|k| !k.expose().is_empty())
    }
}

impl Provider for OpenAiProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    fn output_budget(&self, batch: &[PageText]) -> Option<OutputBudget> {
        let mut tokens = prompt::answer_tokens(batch, &self.taxonomy, &self.prompt);
        if is_reasoning_model(&self.settings.model) {
            tokens = tokens.saturating_add(REASONING_ALLOWANCE);
        }
        Some(OutputBudget::new(tokens, self.settings.max_output_tokens))
    }

    async fn classify(&self, batch: &[PageText]) -> Result<Answer, LlmError> {
        let cap = self.output_budget(batch).map_or(1, |b| b.tokens);
        self.classify_capped(batch, cap).await
    }

    /// Asks at the ladder's rung; steps down and asks again at once when the server refused
    /// the format or ignored the schema (see [`super::structured`]). Under a governor each
    /// re-ask goes through [`Provider::classify_once`] instead.
    async fn classify_capped(
        &self,
        batch: &[PageText],
        max_output_tokens: u32,
    ) -> Result<Answer, LlmError> {
        structured::settle(|climb| self.classify_once(batch, Some(max_output_tokens), climb)).await
    }

    /// One request at the ladder's rung; a step down comes back as [`Unsettled::Reask`].
    async fn classify_once(
        &self,
        batch: &[PageText],
        cap: Option<u32>,
        climb: Option<Climb>,
    ) -> Result<Answer, Unsettled> {
        if batch.is_empty() {
            return Ok(self.answer(BTreeMap::new(), None, RateLimitHints::default()));
        }
        let cap = cap.unwrap_or_else(|| self.output_budget(batch).map_or(1, |b| b.tokens));
        let send = |rung| self.send(batch, cap, rung);
        let sent =
            structured::ask_once(&self.ladder, NAME, batch, &self.taxonomy, climb, send).await?;
        let labels = prompt::parse_answer(&sent.content).map_err(|e| {
            wire::error(
                NAME,
                LlmErrorKind::BadAnswer,
                Some(200),
                &e.to_string(),
                self.key(),
            )
        })?;
        Ok(self.answer(labels, sent.usage, sent.rate_limits))
    }
}

impl OpenAiProvider {
    fn answer(
        &self,
        labels: BTreeMap<String, Vec<String>>,
        usage: Option<Usage>,
        rate_limits: RateLimitHints,
    ) -> Answer {
        Answer {
            provider: NAME,
            model: self.settings.model.clone(),
            labels,
            usage,
            rate_limits,
        }
    }
}

/// OpenAI's own API (and Azure OpenAI), where `max_completion_tokens` is the output cap.
fn is_openai_host(base_url: &str) -> bool {
    url::Url::parse(base_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .is_some_and(|h| h == "api.openai.com" || h.ends_with(".openai.azure.com"))
}

/// Models that refuse `temperature: 0` and take `reasoning_effort` instead.
fn is_reasoning_model(model: &str) -> bool {
    let m = model
        .rsplit('/')
        .next()
        .unwrap_or(model)
        .to_ascii_lowercase();
    let o_series = ["o1", "o3", "o4"]
        .iter()
        .any(|p| m == *p || m.starts_with(&format!("{p}-")));
    o_series || (m.starts_with("gpt-5") && !m.contains("-chat"))
}

mod answer;

pub use answer::parse_rate_limits;
pub(crate) use answer::{classify_error, parse_response, response_content};

#[cfg(test)]
mod tests {
    use super::answer::QUOTA_CODES;
    use super::*;
    use crate::llm::budget;
    use reqwest::header::HeaderMap;
    use reqwest::header::HeaderValue;
    use std::time::Duration;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn kind(status: u16, body: &Value) -> LlmErrorKind {
        classify_error(status, &HeaderMap::new(), &body.to_string(), None).kind
    }

    fn err(message: &str, error_type: &str, code: &str) -> Value {
        json!({"error": {"message": message, "type": error_type, "param": null, "code": code}})
    }

    #[test]
    fn quota_is_told_apart_from_rate_limits() {
        assert_eq!(
            kind(
                429,
                &err(
                    "You exceeded your current quota",
                    "insufficient_quota",
                    "insufficient_quota"
                )
            ),
            LlmErrorKind::QuotaExhausted
        );
        assert_eq!(
            kind(
                429,
                &err(
                    "Spend limit",
                    "insufficient_quota",
                    "project_spend_limit_exceeded"
                )
            ),
            LlmErrorKind::QuotaExhausted
        );
        assert_eq!(
            kind(
                429,
                &err("No credits", "billing", "credit_balance_exhausted")
            ),
            LlmErrorKind::QuotaExhausted
        );
        assert_eq!(
            kind(
                429,
                &err(
                    "Rate limit reached ... Please try again in 1.574s. Visit",
                    "tokens",
                    "rate_limit_exceeded"
                )
            ),
            LlmErrorKind::RateLimited {
                retry_after: Some(Duration::from_millis(1574))
            }
        );
        assert_eq!(
            kind(
                429,
                &err(
                    "... on requests per day (RPD): Limit 200. Please try again in 6m0s.",
                    "requests",
                    "rate_limit_exceeded"
                )
            ),
            LlmErrorKind::RateLimited {
                retry_after: Some(Duration::from_secs(360))
            }
        );
    }

    #[test]
    fn every_billing_code_kills_the_provider_for_the_run() {
        for code in QUOTA_CODES {
            for error_type in ["insufficient_quota", "billing", ""] {
                let e = classify_error(
                    429,
                    &HeaderMap::new(),
                    &err("You exceeded your current quota", error_type, code).to_string(),
                    None,
                );
                assert_eq!(e.kind, LlmErrorKind::QuotaExhausted, "{code} {error_type}");
                assert!(e.is_provider_dead() && !e.is_retryable(), "{code}");
            }
        }
        // The type alone is enough, whatever the code.
        assert_eq!(
            kind(
                429,
                &err("Spend limit", "insufficient_quota", "some_new_limit")
            ),
            LlmErrorKind::QuotaExhausted
        );
    }

    #[test]
    fn slow_down_lowers_the_pace_instead_of_a_plain_cooldown() {
        let body = err(
            "A sudden increase in your request rate is impacting service reliability. Please reduce your request rate.",
            "rate_limit_error",
            "slow_down",
        );
        for status in [429, 503] {
            assert_eq!(
                kind(status, &body),
                LlmErrorKind::SlowDown { retry_after: None }
            );
        }
        let h = headers(&[("retry-after", "2")]);
        let e = classify_error(503, &h, &body.to_string(), None);
        assert_eq!(
            e.kind,
            LlmErrorKind::SlowDown {
                retry_after: Some(Duration::from_secs(2))
            }
        );
        assert!(e.is_retryable() && !e.is_provider_dead());
        assert_eq!(
            e.to_string(),
            format!(
                "openai: asked to slow down (HTTP 503): slow_down: {}",
                body["error"]["message"].as_str().unwrap()
            )
        );
    }

    #[test]
    fn rate_limit_headers_of_minus_one_or_zero_are_unknown() {
        // Azure (openai-dotnet #838): -1 and 0 with no retry-after.
        let h = headers(&[
            ("x-ratelimit-limit-requests", "-1"),
            ("x-ratelimit-remaining-requests", "-1"),
            ("x-ratelimit-reset-requests", "0s"),
            ("x-ratelimit-limit-tokens", "0"),
            ("x-ratelimit-remaining-tokens", "0"),
            ("x-ratelimit-reset-tokens", "0s"),
        ]);
        assert_eq!(parse_rate_limits(&h), RateLimitHints::default());
        let body = err("Rate limit reached.", "", "rate_limit_exceeded").to_string();
        assert_eq!(
            classify_error(429, &h, &body, None).kind,
            LlmErrorKind::RateLimited { retry_after: None }
        );
        // A real limit keeps its remaining count, even 0; a negative remaining is unknown.
        let h = headers(&[
            ("x-ratelimit-limit-requests", "60"),
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-limit-tokens", "150000"),
            ("x-ratelimit-remaining-tokens", "-1"),
        ]);
        let hints = parse_rate_limits(&h);
        assert_eq!(hints.limit_requests, Some(60));
        assert_eq!(hints.remaining_requests, Some(0));
        assert_eq!(hints.limit_tokens, Some(150_000));
        assert_eq!(hints.remaining_tokens, None);
    }

    #[test]
    fn request_too_large_is_split_not_retried() {
        // See: https://github.com/TheR1D/shell_gpt/issues/653
        let body = err(
            "Request too large for gpt-4o on tokens per min (TPM): Limit 30000, Requested 31538.",
            "tokens",
            "rate_limit_exceeded",
        );
        assert_eq!(kind(429, &body), LlmErrorKind::TooLarge);
        let body = err(
            "This model's maximum context length is 128000 tokens.",
            "invalid_request_error",
            "context_length_exceeded",
        );
        assert_eq!(kind(400, &body), LlmErrorKind::TooLarge);
    }

    #[test]
    fn retry_after_headers_beat_the_message_and_reset_headers_come_last() {
        let body = err(
            "Please try again in 1.574s.",
            "tokens",
            "rate_limit_exceeded",
        )
        .to_string();
        let h = headers(&[("retry-after-ms", "250"), ("retry-after", "3")]);
        assert_eq!(
            classify_error(429, &h, &body, None).kind,
            LlmErrorKind::RateLimited {
                retry_after: Some(Duration::from_millis(250))
            }
        );
        let body = err("Rate limit reached.", "tokens", "rate_limit_exceeded").to_string();
        let h = headers(&[
            ("x-ratelimit-reset-tokens", "4m12.172s"),
            ("x-ratelimit-reset-requests", "1s"),
        ]);
        assert_eq!(
            classify_error(429, &h, &body, None).kind,
            LlmErrorKind::RateLimited {
                retry_after: Some(Duration::from_millis(252_172))
            }
        );
        let body = err("Rate limit reached.", "", "rate_limit_exceeded").to_string();
        let h = headers(&[
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "12ms"),
        ]);
        assert_eq!(
            classify_error(429, &h, &body, None).kind,
            LlmErrorKind::RateLimited {
                retry_after: Some(Duration::from_millis(12))
            }
        );
    }

    #[test]
    fn other_statuses_and_body_shapes() {
        assert_eq!(
            kind(
                401,
                &err(
                    "Incorrect API key provided",
                    "invalid_request_error",
                    "invalid_api_key"
                )
            ),
            LlmErrorKind::Auth
        );
        assert_eq!(kind(403, &json!({})), LlmErrorKind::Auth);
        assert_eq!(
            kind(
                400,
                &err(
                    "Invalid schema for response_format 'page_labels'",
                    "invalid_request_error",
                    ""
                )
            ),
            LlmErrorKind::BadRequest
        );
        assert_eq!(
            kind(404, &json!({"error": "model 'x' not found"})),
            LlmErrorKind::BadRequest
        );
        assert_eq!(
            kind(
                402,
                &json!({"error": {"message": "Insufficient credits", "code": 402}})
            ),
            LlmErrorKind::QuotaExhausted
        );
        // llama-cpp-python reports an unsupported response_format as a 500 (reference §5).
        assert_eq!(
            kind(
                500,
                &json!({"error": {"message": "boom", "type": "internal_server_error", "code": 500}})
            ),
            LlmErrorKind::Overloaded { retry_after: None }
        );
        let e = classify_error(
            404,
            &HeaderMap::new(),
            r#"{"error": "model 'x' not found"}"#,
            None,
        );
        assert_eq!(e.detail, "model 'x' not found");
        let e = classify_error(
            502,
            &HeaderMap::new(),
            "<html><body>Bad gateway</body></html>",
            None,
        );
        assert_eq!(e.kind, LlmErrorKind::Overloaded { retry_after: None });
        assert_eq!(e.detail, "<html><body>Bad gateway</body></html>");
    }

    #[test]
    fn rate_limit_headers_are_parsed() {
        let h = headers(&[
            ("x-ratelimit-limit-requests", "60"),
            ("x-ratelimit-limit-tokens", "150000"),
            ("x-ratelimit-remaining-requests", "59"),
            ("x-ratelimit-remaining-tokens", "149984"),
            ("x-ratelimit-reset-requests", "1s"),
            ("x-ratelimit-reset-tokens", "6m0s"),
        ]);
        assert_eq!(
            parse_rate_limits(&h),
            RateLimitHints {
                limit_requests: Some(60),
                limit_tokens: Some(150_000),
                remaining_requests: Some(59),
                remaining_tokens: Some(149_984),
                reset_requests: Some(Duration::from_secs(1)),
                reset_tokens: Some(Duration::from_secs(360)),
            }
        );
        assert_eq!(
            parse_rate_limits(&headers(&[("x-ratelimit-limit-requests", "lots")])),
            RateLimitHints::default()
        );
    }

    #[test]
    fn unusable_200s_are_bad_answers() {
        let ok = |content: &str, finish: &str| {
            json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": null}, "finish_reason": finish}]}).to_string()
        };
        let refusal = json!({"choices": [{"message": {"content": null, "refusal": "I can't help with that."}, "finish_reason": "stop"}]}).to_string();
        for body in [
            refusal,
            ok(r#"{"1": {"tool": ["git"]}}"#, "content_filter"),
            ok("not json", "stop"),
            ok("", "stop"),
            json!({"choices": []}).to_string(),
            "<!DOCTYPE html><html>login</html>".to_string(),
        ] {
            assert_eq!(
                parse_response(&body, None).unwrap_err().kind,
                LlmErrorKind::BadAnswer,
                "{body}"
            );
        }
        let cut = ok(r#"{"1": {"tool": ["git"#, "length");
        assert_eq!(
            parse_response(&cut, None).unwrap_err().kind,
            LlmErrorKind::Truncated
        );
        let (labels, usage) =
            parse_response(&ok(r#"{"1": {"tool": ["git"]}}"#, "stop"), None).unwrap();
        assert_eq!(labels["1"], ["git"]);
        assert_eq!(usage, None);
    }

    #[test]
    fn openai_reasoning_models_get_the_completion_cap_and_no_temperature() {
        use crate::llm::prompt::tests::{page, taxonomy};
        let settings = ProviderSettings {
            api_key: Some(Secret::new("k")),
            model: "gpt-5-mini".into(),
            base_url: "https://api.openai.com/v1/".into(),
            timeout: Duration::from_secs(5),
            max_output_tokens: 9000,
        };
        let p = OpenAiProvider::new(settings, Arc::new(taxonomy())).unwrap();
        assert_eq!(p.url, "https://api.openai.com/v1/chat/completions");
        let batch = [page("1", "t", "x")];
        let cap = p.output_budget(&batch).unwrap().tokens;
        assert_eq!(
            cap,
            budget::answer_tokens(&batch, &taxonomy()) + REASONING_ALLOWANCE
        );
        let body = p.request_body(&batch, cap);
        assert_eq!(body["max_completion_tokens"], cap);
        assert!(body.get("max_tokens").is_none());
        assert!(body.get("temperature").is_none());
        assert!(body.get("presence_penalty").is_none());
        assert_eq!(body["reasoning_effort"], "low");
        assert_eq!(
            body["response_format"]["json_schema"]["schema"]["required"],
            json!(["1"])
        );
    }

    #[test]
    fn hosts_and_models_choose_the_request_fields() {
        assert!(is_openai_host("https://api.openai.com/v1"));
        assert!(is_openai_host(
            "https://acme.openai.azure.com/openai/deployments/x"
        ));
        assert!(!is_openai_host("http://127.0.0.1:8080/v1"));
        assert!(!is_openai_host(
            "https://generativelanguage.googleapis.com/v1beta/openai"
        ));
        for m in [
            "o3",
            "o4-mini",
            "o1-2024-12-17",
            "gpt-5",
            "gpt-5-mini",
            "openai/gpt-5.1",
        ] {
            assert!(is_reasoning_model(m), "{m}");
        }
        for m in [
            "gpt-4o-mini",
            "gpt-4.1",
            "gpt-5-chat-latest",
            "gemma-3-270m",
            "llama3.2",
            "omni",
        ] {
            assert!(!is_reasoning_model(m), "{m}");
        }
    }

    fn provider(base_url: &str, model: &str) -> OpenAiProvider {
        let settings = ProviderSettings {
            api_key: None,
            model: model.into(),
            base_url: base_url.into(),
            timeout: Duration::from_secs(5),
            max_output_tokens: 4096,
        };
        OpenAiProvider::new(settings, Arc::new(crate::llm::prompt::tests::taxonomy())).unwrap()
    }

    #[test]
    fn the_strict_schema_states_the_page_once_under_defs() {
        use crate::llm::prompt::tests::page;
        let p = provider("http://127.0.0.1:8080/v1", "gpt-4.1-mini");
        let body = p.request_body(&[page("7", "t", "x"), page("8", "u", "y")], 300);
        assert_eq!(body["max_tokens"], 300);
        assert_eq!(body["temperature"], 0);
        assert_eq!(body["presence_penalty"], 0.5);
        assert_eq!(body["response_format"]["json_schema"]["strict"], true);
        let s = &body["response_format"]["json_schema"]["schema"];
        assert_eq!(s["type"], "object");
        assert_eq!(s["required"], json!(["7", "8"]));
        assert_eq!(s["additionalProperties"], false);
        assert_eq!(s["properties"]["8"], json!({"$ref": "#/$defs/page"}));
        let page_def = &s["$defs"]["page"];
        assert_eq!(page_def["additionalProperties"], false);
        assert_eq!(page_def["required"], json!(["type", "tool"]));
        assert_eq!(page_def["properties"]["type"]["maxItems"], 1);
    }

    #[test]
    fn geminis_openai_endpoint_gets_the_expanded_schema() {
        use crate::llm::prompt::tests::page;
        let p = provider(
            "https://generativelanguage.googleapis.com/v1beta/openai",
            "gemini-2.5-flash",
        );
        let body = p.request_body(&[page("7", "t", "x")], 300);
        let s = &body["response_format"]["json_schema"]["schema"];
        assert!(body.get("presence_penalty").is_none());
        assert!(!s.to_string().contains("$ref"), "{s}");
        assert_eq!(s["properties"]["7"]["additionalProperties"], false);
        assert_eq!(s["properties"]["7"]["properties"]["tool"]["maxItems"], 2);
    }

    #[test]
    fn the_system_message_is_the_same_for_every_batch() {
        use crate::llm::prompt::tests::page;
        let p = provider("http://127.0.0.1:8080/v1", "gpt-4.1-mini");
        let a = p.request_body(&[page("7", "t", "x")], 300);
        let b = p.request_body(&[page("9", "u", "y"), page("10", "v", "z")], 600);
        assert_eq!(a["messages"][0], b["messages"][0]);
        assert_eq!(a["messages"][0]["role"], "system");
        // Everything that varies is in the user message, after the taxonomy.
        let system = a["messages"][0]["content"].as_str().unwrap();
        assert!(system.contains("Taxonomy:") && system.contains("- docker:"));
        assert!(!system.contains('7') && !system.contains("Pages to label"));
    }

    #[test]
    fn cached_prompt_tokens_are_read() {
        let body = json!({"choices": [{"message": {"content": r#"{"1": {"tool": ["git"]}}"#}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 2006, "completion_tokens": 30, "total_tokens": 2036,
                      "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0}}});
        let (_, usage) = parse_response(&body.to_string(), None).unwrap();
        assert_eq!(
            usage,
            Some(Usage {
                input_tokens: 2006,
                output_tokens: 30,
                cached_input_tokens: 1920,
            })
        );
        // Compatible servers send no details, or null.
        for details in [json!(null), json!({})] {
            let body = json!({"choices": [{"message": {"content": "{}"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 1, "prompt_tokens_details": details}});
            let (_, usage) = parse_response(&body.to_string(), None).unwrap();
            assert_eq!(usage.unwrap().cached_input_tokens, 0);
        }
    }
}
