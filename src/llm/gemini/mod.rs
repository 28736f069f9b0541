//! Google Gemini through the Developer API (`v1beta/models/{model}:generateContent`).
//!
//! One request per [`Provider::classify_once`] call and no retries here: the governor retries,
//! using the classification below (reference §1.5 and §3.8):
//!
//! | answer | kind |
//! |---|---|
//! | 429 with a `QuotaFailure` whose `quotaId` has `PerDay` | `QuotaExhausted`, the message naming the reset (midnight Pacific) |
//! | 429 with a message with `limit: 0` | `QuotaExhausted` |
//! | other 429 | `RateLimited`, wait from `RetryInfo.retryDelay`, else "retry in Xs", else `Retry-After` |
//! | 400 "input token count ... exceeds", 413 | `TooLarge` |
//! | 5xx | `Overloaded` |
//! | 401, 403, 400 "API key not valid" | `Auth` |
//! | 408 | `Timeout` |
//! | other 4xx | `BadRequest` |
//! | 200 with `finishReason: MAX_TOKENS` | `Truncated` |
//! | 200 not JSON, no candidates, a blocked prompt, another `finishReason` than `STOP`, unreadable JSON | `BadAnswer` |
//!
//! Structured output ([`schema_field`]): `responseJsonSchema`, real JSON Schema with the
//! per-page object once under `$defs` (reference §6), for Gemini 2.5 and later and any other
//! name. Gemini 1.x and 2.0 get `responseSchema`, the older OpenAPI-subset dialect, which has
//! no `$ref`: the expanded schema converted by [`to_gemini_schema`]. There the one keyword
//! lost is `additionalProperties`; Gemini's decoder only writes declared properties anyway,
//! and validation ignores unknown ids.
//!
//! An endpoint that refuses `responseJsonSchema` (an older proxy or gateway: "Unknown name
//! \"responseJsonSchema\"") moves this client down to `responseSchema` by the same ladder as
//! the OpenAI-compatible servers ([`super::structured`]); the rung is kept in the state file.
//!
//! `maxOutputTokens` is the batch's output budget ([`budget::answer_tokens`]) plus the model's
//! thinking allowance ([`thinking_allowance`]), capped at the configured ceiling.

use std::collections::BTreeMap;
use std::sync::Arc;

#[cfg(test)]
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::ProviderSettings;
use super::schema::SchemaForm;
use super::structured::{self, GEMINI_RUNGS, Ladder, Sent};
use super::wire;
use super::{
    Answer, Climb, LlmError, LlmErrorKind, OutputBudget, PageText, Provider, RateLimitHints,
    Unsettled, Usage, prompt,
};
use crate::secret::Secret;
use crate::taxonomy::Taxonomy;

const NAME: &str = "gemini";

mod error;
pub(crate) use error::classify_error;
#[cfg(test)]
use error::{classify_error_at, has_limit_zero};

/// Talks to one Gemini model.
#[derive(Debug, Clone)]
pub struct GeminiProvider {
    http: reqwest::Client,
    settings: ProviderSettings,
    key: Secret,
    taxonomy: Arc<Taxonomy>,
    system: String,
    url: String,
    /// `responseJsonSchema`, falling back to `responseSchema` for an endpoint that refuses it
    /// ([`GEMINI_RUNGS`], [`super::structured`]).
    ladder: Arc<Ladder>,
    /// The reason field and the few-shot examples ([`prompt::PromptOptions`]).
    prompt: prompt::PromptOptions,
}

/// Which `generationConfig` field carries the answer's schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaField {
    /// `responseJsonSchema`: JSON Schema, `$defs`/`$ref` resolved ([`SchemaForm::Defs`]).
    JsonSchema,
    /// `responseSchema`: the OpenAPI subset, no `$ref` ([`SchemaForm::Expanded`]).
    OpenApi,
}

/// `responseSchema` for Gemini 1.x and 2.0, which predate `responseJsonSchema`;
/// `responseJsonSchema` for everything else (2.5, 3, and aliases such as
/// `gemini-flash-latest`, which point at current models).
pub fn schema_field(model: &str) -> SchemaField {
    let model = model.trim_start_matches("models/");
    if model.starts_with("gemini-1") || model.starts_with("gemini-2.0") {
        SchemaField::OpenApi
    } else {
        SchemaField::JsonSchema
    }
}

impl SchemaField {
    /// Its rung in [`GEMINI_RUNGS`].
    fn rung(self) -> usize {
        match self {
            Self::JsonSchema => 0,
            Self::OpenApi => 1,
        }
    }

    fn of_rung(rung: usize) -> Self {
        if rung == 0 {
            Self::JsonSchema
        } else {
            Self::OpenApi
        }
    }
}

impl GeminiProvider {
    /// Fails without an API key (Gemini always needs one) or if the HTTP client cannot be built.
    pub fn new(settings: ProviderSettings, taxonomy: Arc<Taxonomy>) -> Result<Self, LlmError> {
        let key = settings
            .api_key
            .clone()
            .filter(|k| !k.expose().is_empty())
            .ok_or_else(|| {
                LlmError::new(NAME, LlmErrorKind::Auth, None, "no API key is configured")
            })?;
        let http = wire::http_client(NAME, settings.timeout)?;
        let model = settings.model.trim_start_matches("models/");
        let url = format!(
            "{}/v1beta/models/{model}:generateContent",
            settings.base_url.trim_end_matches('/')
        );
        let system = prompt::system_instruction(&taxonomy);
        let ladder = Arc::new(
            Ladder::new(GEMINI_RUNGS, schema_field(&settings.model).rung(), false).refusals_only(),
        );
        Ok(Self {
            http,
            settings,
            key,
            taxonomy,
            system,
            url,
            ladder,
            prompt: prompt::PromptOptions::default(),
        })
    }

    /// Asks with `opts`: the reason field, the few-shot examples.
    pub fn with_prompt(mut self, opts: prompt::PromptOptions) -> Self {
        self.system = prompt::system_instruction_with(&self.taxonomy, &opts);
        self.prompt = opts;
        self
    }

    /// Where this endpoint stands on the structured-output ladder.
    pub fn ladder(&self) -> &Ladder {
        &self.ladder
    }

    /// The settings this client was built with.
    pub fn settings(&self) -> &ProviderSettings {
        &self.settings
    }

    /// The JSON body of a `generateContent` request for this batch, asking for at most
    /// `max_output_tokens`.
    pub(crate) fn request_body(&self, batch: &[PageText], max_output_tokens: u32) -> Value {
        self.request_body_at(batch, max_output_tokens, self.ladder.current())
    }

    /// [`Self::request_body`] with the schema in the field of `rung` ([`GEMINI_RUNGS`]).
    fn request_body_at(&self, batch: &[PageText], max_output_tokens: u32, rung: usize) -> Value {
        let mut generation = json!({
            "temperature": 0.0,
            "maxOutputTokens": max_output_tokens,
            "responseMimeType": "application/json",
        });
        match SchemaField::of_rung(rung) {
            SchemaField::JsonSchema => {
                generation["responseJsonSchema"] =
                    prompt::answer_schema(batch, &self.taxonomy, SchemaForm::Defs, &self.prompt);
            }
            SchemaField::OpenApi => {
                let expanded = prompt::answer_schema(
                    batch,
                    &self.taxonomy,
                    SchemaForm::Expanded,
                    &self.prompt,
                );
                generation["responseSchema"] = to_gemini_schema(&expanded);
            }
        }
        if let Some(thinking) = thinking_config(&self.settings.model) {
            generation["thinkingConfig"] = thinking;
        }
        json!({
            "systemInstruction": {"parts": [{"text": self.system}]},
            "contents": [{"role": "user", "parts": [{"text": prompt::user_content_with(batch, &self.prompt)}]}],
            "generationConfig": generation,
        })
    }
}

impl Provider for GeminiProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    fn output_budget(&self, batch: &[PageText]) -> Option<OutputBudget> {
        let tokens = prompt::answer_tokens(batch, &self.taxonomy, &self.prompt)
            .saturating_add(thinking_allowance(&self.settings.model));
        Some(OutputBudget::new(tokens, self.settings.max_output_tokens))
    }

    async fn classify(&self, batch: &[PageText]) -> Result<Answer, LlmError> {
        let cap = self.output_budget(batch).map_or(1, |b| b.tokens);
        self.classify_capped(batch, cap).await
    }

    /// Asks at the ladder's rung; steps down and asks again at once when the endpoint refused
    /// the schema field. Under a governor each re-ask goes through
    /// [`Provider::classify_once`] instead.
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
        let answer = |labels, usage| Answer {
            provider: NAME,
            model: self.settings.model.clone(),
            labels,
            usage,
            rate_limits: RateLimitHints::default(), // Gemini sends no rate-limit headers
        };
        if batch.is_empty() {
            return Ok(answer(BTreeMap::new(), None));
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
                Some(&self.key),
            )
        })?;
        Ok(answer(labels, sent.usage))
    }
}

impl GeminiProvider {
    /// One request at `rung`: the answer's text and its usage.
    async fn send(
        &self,
        batch: &[PageText],
        max_output_tokens: u32,
        rung: usize,
    ) -> Result<Sent, LlmError> {
        let response = self
            .http
            .post(&self.url)
            .header("x-goog-api-key", self.key.expose())
            .json(&self.request_body_at(batch, max_output_tokens, rung))
            .send()
            .await
            .map_err(|e| wire::transport_error(NAME, &e))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .text()
            .await
            .map_err(|e| wire::transport_error(NAME, &e))?;
        if !(200..300).contains(&status) {
            return Err(classify_error(status, &headers, &body, Some(&self.key)));
        }
        let (content, usage) = response_text(&body, Some(&self.key))?;
        Ok(Sent {
            content,
            usage,
            rate_limits: RateLimitHints::default(),
        })
    }
}

/// How much the model may think before answering, by model name (pitfall P7: thinking
/// tokens count against `maxOutputTokens` and can leave the JSON cut off).
///
/// - `gemini-3…`: `thinkingLevel: LOW`. Every Gemini 3 model accepts LOW (Pro refuses
///   MINIMAL), and Gemini 3 cannot switch thinking off.
/// - `gemini-2.5…flash…`: `thinkingBudget: 0`, thinking off.
/// - `gemini-2.5-pro…`: `thinkingBudget: 128`, its smallest budget (it cannot switch off).
/// - anything else (2.0, aliases such as `gemini-flash-latest`): nothing. `thinkingLevel` on
///   an older model is a 400, and an alias may point at either generation.
pub fn thinking_config(model: &str) -> Option<Value> {
    let model = model.trim_start_matches("models/");
    if model.starts_with("gemini-3") {
        Some(json!({"thinkingLevel": "LOW"}))
    } else if model.starts_with("gemini-2.5") {
        let budget = if model.contains("pro") { 128 } else { 0 };
        Some(json!({"thinkingBudget": budget}))
    } else {
        None
    }
}

/// Output tokens the model may spend thinking before it answers (they count against
/// `maxOutputTokens`), by model name, as [`thinking_config`] sets it up: none when thinking is
/// off (2.5 Flash, Flash-Lite; 1.x and 2.0 do not think); twice the smallest budget for 2.5
/// Pro (a budget is a target, not a cap); 1,024 at Gemini 3's `LOW` level and for aliases,
/// which may think at an automatic budget. A truncated answer is retried at twice the cap.
pub fn thinking_allowance(model: &str) -> u32 {
    let model = model.trim_start_matches("models/");
    match thinking_config(model) {
        Some(c) if c.get("thinkingBudget") == Some(&json!(0)) => 0,
        Some(c) if c.get("thinkingBudget").is_some() => 256,
        Some(_) => 1024,
        None if model.starts_with("gemini-1") || model.starts_with("gemini-2.0") => 0,
        None => 1024,
    }
}

/// Converts a standard JSON Schema (as [`response_schema`] builds it in the expanded form) to Gemini's
/// `responseSchema` dialect: upper-case types, no `additionalProperties`, and an explicit
/// `propertyOrdering` (taken from `required`, which is in batch and taxonomy order).
pub fn to_gemini_schema(schema: &Value) -> Value {
    let Value::Object(map) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (key, value) in map {
        match (key.as_str(), value) {
            ("additionalProperties", _) => {}
            ("type", Value::String(t)) => {
                out.insert(key.clone(), Value::String(t.to_uppercase()));
            }
            ("properties", Value::Object(props)) => {
                let props = props
                    .iter()
                    .map(|(k, v)| (k.clone(), to_gemini_schema(v)))
                    .collect();
                out.insert(key.clone(), Value::Object(props));
            }
            ("items", v) => {
                out.insert(key.clone(), to_gemini_schema(v));
            }
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    if let Some(Value::Object(props)) = map.get("properties") {
        let mut order: Vec<&str> = match map.get("required") {
            Some(Value::Array(req)) => req
                .iter()
                .filter_map(Value::as_str)
                .filter(|k| props.contains_key(*k))
                .collect(),
            _ => Vec::new(),
        };
        for k in props.keys() {
            if !order.contains(&k.as_str()) {
                order.push(k);
            }
        }
        out.insert("propertyOrdering".into(), json!(order));
    }
    Value::Object(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateResponse {
    #[serde(default)]
    candidates: Vec<Candidate>,
    prompt_feedback: Option<PromptFeedback>,
    usage_metadata: Option<UsageMetadata>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    content: Option<Content>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Content {
    #[serde(default)]
    parts: Vec<Part>,
}

#[derive(Deserialize)]
struct Part {
    text: Option<String>,
    #[serde(default)]
    thought: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    block_reason: Option<String>,
    block_reason_message: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct UsageMetadata {
    prompt_token_count: u64,
    candidates_token_count: u64,
    thoughts_token_count: u64,
    /// Of `prompt_token_count`, those served from the implicit (or an explicit) cache.
    cached_content_token_count: u64,
}

/// Reads a 200 body: the labels of `candidates[0]`, and the usage. Output tokens include
/// thinking tokens, which are billed as output and count against `maxOutputTokens`.
pub(crate) fn parse_response(body: &str, key: Option<&Secret>) -> Result<wire::Parsed, LlmError> {
    let (text, usage) = response_text(body, key)?;
    let labels = prompt::parse_answer(&text).map_err(|e| {
        wire::error(
            NAME,
            LlmErrorKind::BadAnswer,
            Some(200),
            &e.to_string(),
            key,
        )
    })?;
    Ok((labels, usage))
}

/// Reads a 200 body: the answer's text (thoughts left out), not empty, and the usage.
fn response_text(body: &str, key: Option<&Secret>) -> Result<(String, Option<Usage>), LlmError> {
    let bad = |detail: &str| wire::error(NAME, LlmErrorKind::BadAnswer, Some(200), detail, key);
    let response: GenerateResponse = serde_json::from_str(body).map_err(|e| {
        bad(&format!(
            "not a generateContent response ({e}): {}",
            crate::http::snippet(body)
        ))
    })?;
    let meta = response.usage_metadata.unwrap_or_default();
    let usage = Some(Usage {
        input_tokens: meta.prompt_token_count,
        output_tokens: meta
            .candidates_token_count
            .saturating_add(meta.thoughts_token_count),
        cached_input_tokens: meta.cached_content_token_count,
    });
    let Some(candidate) = response.candidates.into_iter().next() else {
        return Err(match response.prompt_feedback {
            Some(PromptFeedback {
                block_reason: Some(reason),
                block_reason_message,
            }) => bad(&format!(
                "prompt blocked: {reason}{}",
                block_reason_message
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            )),
            _ => bad("no candidates in the answer"),
        });
    };
    match candidate.finish_reason.as_deref() {
        None | Some("STOP") => {}
        Some("MAX_TOKENS") => {
            return Err(wire::error(
                NAME,
                LlmErrorKind::Truncated,
                Some(200),
                &format!(
                    "finishReason MAX_TOKENS: the answer was cut off after {} output tokens ({} of them thinking)",
                    meta.candidates_token_count
                        .saturating_add(meta.thoughts_token_count),
                    meta.thoughts_token_count
                ),
                key,
            ));
        }
        Some(other) => return Err(bad(&format!("finishReason {other}"))),
    }
    let text: String = candidate
        .content
        .map(|c| {
            c.parts
                .into_iter()
                .filter(|p| !p.thought)
                .filter_map(|p| p.text)
                .collect()
        })
        .unwrap_or_default();
    if text.trim().is_empty() {
        return Err(bad("empty answer"));
    }
    Ok((text, usage))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::budget;
    use crate::llm::prompt::tests::{page, taxonomy};
    use reqwest::header::HeaderValue;
    use std::time::Duration;

    fn kind(status: u16, body: &str) -> LlmErrorKind {
        classify_error(status, &HeaderMap::new(), body, None).kind
    }

    fn quota_429(quota_id: &str, retry_delay: &str) -> String {
        json!({"error": {"code": 429, "message": "You exceeded your current quota.", "status": "RESOURCE_EXHAUSTED",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaId": quota_id}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay}]}})
        .to_string()
    }

    #[test]
    fn a_daily_quota_is_exhausted_until_midnight_pacific_and_says_when() {
        use std::time::{SystemTime, UNIX_EPOCH};
        // 2026-12-02 01:30 UTC: 17:30 on December 1 in Pacific standard time.
        let now = UNIX_EPOCH + Duration::from_secs(1_796_175_000);
        let body = quota_429("GenerateRequestsPerDayPerProjectPerModel-FreeTier", "1s");
        let e = classify_error_at(429, &HeaderMap::new(), &body, None, now);
        assert_eq!(e.kind, LlmErrorKind::QuotaExhausted);
        assert!(e.is_provider_dead());
        assert_eq!(
            e.detail,
            "daily quota GenerateRequestsPerDayPerProjectPerModel-FreeTier used up until it resets at midnight Pacific, 2026-12-02 08:00 UTC (in 6h 30m): RESOURCE_EXHAUSTED: You exceeded your current quota."
        );
        // A per-minute quota in the same shape stays a short rate limit.
        let body = quota_429("GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "1s");
        let e = classify_error_at(429, &HeaderMap::new(), &body, None, SystemTime::now());
        assert!(matches!(e.kind, LlmErrorKind::RateLimited { .. }));
    }

    #[test]
    fn retry_delay_is_read_from_retry_info() {
        let body = quota_429(
            "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
            "26s",
        );
        assert_eq!(
            kind(429, &body),
            LlmErrorKind::RateLimited {
                retry_after: Some(Duration::from_secs(26))
            }
        );
        let body = quota_429(
            "GenerateContentInputTokensPerModelPerMinute-FreeTier",
            "1.5s",
        );
        assert_eq!(
            kind(429, &body),
            LlmErrorKind::RateLimited {
                retry_after: Some(Duration::from_millis(1500))
            }
        );
    }

    #[test]
    fn retry_delay_falls_back_to_the_message_then_the_header() {
        let body = r#"{"error":{"code":429,"message":"Quota exceeded.\nPlease retry in 47.17s.","status":"RESOURCE_EXHAUSTED"}}"#;
        assert_eq!(
            kind(429, body),
            LlmErrorKind::RateLimited {
                retry_after: Some(Duration::from_millis(47_170))
            }
        );
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("9"));
        let body = r#"{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED"}}"#;
        assert_eq!(
            classify_error(429, &headers, body, None).kind,
            LlmErrorKind::RateLimited {
                retry_after: Some(Duration::from_secs(9))
            }
        );
        assert_eq!(
            kind(429, body),
            LlmErrorKind::RateLimited { retry_after: None }
        );
    }

    #[test]
    fn a_daily_quota_is_exhausted_even_with_a_short_retry_delay() {
        // See: https://github.com/gke-labs/gemini-for-kubernetes-development/issues/1215
        assert_eq!(
            kind(
                429,
                &quota_429("GenerateRequestsPerDayPerProjectPerModel-FreeTier", "1s")
            ),
            LlmErrorKind::QuotaExhausted
        );
        let old = r#"{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"RATE_LIMIT_EXCEEDED","metadata":{"quota_limit":"GenerateRequestsPerDayPerProjectPerModel"}}]}}"#;
        assert_eq!(kind(429, old), LlmErrorKind::QuotaExhausted);
    }

    #[test]
    fn limit_zero_is_exhausted_but_limit_05_is_not() {
        assert!(has_limit_zero(
            "Quota exceeded for metric: x, limit: 0, model: gemini-2.0-flash"
        ));
        assert!(has_limit_zero("limit: 0"));
        assert!(!has_limit_zero("limit: 05, model"));
        assert!(!has_limit_zero("limit: 10"));
    }

    #[test]
    fn other_statuses() {
        let too_long = r#"{"error":{"code":400,"message":"The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).","status":"INVALID_ARGUMENT"}}"#;
        assert_eq!(kind(400, too_long), LlmErrorKind::TooLarge);
        let bad_key = r#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT"}}"#;
        assert_eq!(kind(400, bad_key), LlmErrorKind::Auth);
        let bad_schema = r#"{"error":{"code":400,"message":"Invalid JSON payload received.","status":"INVALID_ARGUMENT"}}"#;
        assert_eq!(kind(400, bad_schema), LlmErrorKind::BadRequest);
        assert_eq!(
            kind(
                404,
                r#"{"error":{"code":404,"message":"models/x is not found"}}"#
            ),
            LlmErrorKind::BadRequest
        );
        assert_eq!(kind(403, "{}"), LlmErrorKind::Auth);
        assert_eq!(
            kind(504, "<html>gateway</html>"),
            LlmErrorKind::Overloaded { retry_after: None }
        );
        let e = classify_error(
            503,
            &HeaderMap::new(),
            r#"{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}"#,
            None,
        );
        assert_eq!(e.detail, "UNAVAILABLE: The model is overloaded.");
    }

    #[test]
    fn success_parses_non_thought_parts_and_usage() {
        let body = json!({
            "candidates": [{"content": {"role": "model", "parts": [
                {"text": "thinking about it", "thought": true},
                {"text": "{\"1\": {\"type\": [\"how-to\"],"},
                {"text": " \"tool\": [\"git\"]}}"}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 120, "candidatesTokenCount": 20, "thoughtsTokenCount": 5, "cachedContentTokenCount": 96}
        });
        let (labels, usage) = parse_response(&body.to_string(), None).unwrap();
        assert_eq!(labels["1"].len(), 2);
        assert_eq!(
            usage,
            Some(Usage {
                input_tokens: 120,
                output_tokens: 25,
                cached_input_tokens: 96,
            })
        );
    }

    #[test]
    fn unusable_200s_are_bad_answers() {
        let cut = json!({"candidates": [{"content": {"parts": [{"text": "{\"1\": {\"ty"}]}, "finishReason": "MAX_TOKENS"}]}).to_string();
        assert_eq!(
            parse_response(&cut, None).unwrap_err().kind,
            LlmErrorKind::Truncated
        );
        for body in [
            json!({"candidates": [{"finishReason": "SAFETY"}]}).to_string(),
            json!({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}}).to_string(),
            json!({"candidates": []}).to_string(),
            json!({"candidates": [{"content": {"parts": [{"text": "no json here"}]}, "finishReason": "STOP"}]}).to_string(),
            "<html>proxy error</html>".to_string(),
        ] {
            let e = parse_response(&body, None).unwrap_err();
            assert_eq!(e.kind, LlmErrorKind::BadAnswer, "{body}");
        }
        let e = parse_response(
            &json!({"promptFeedback": {"blockReason": "SAFETY"}}).to_string(),
            None,
        )
        .unwrap_err();
        assert_eq!(e.detail, "prompt blocked: SAFETY");
    }

    #[test]
    fn thinking_is_chosen_by_model_name() {
        assert_eq!(
            thinking_config("gemini-2.5-flash"),
            Some(json!({"thinkingBudget": 0}))
        );
        assert_eq!(
            thinking_config("models/gemini-2.5-flash-lite"),
            Some(json!({"thinkingBudget": 0}))
        );
        assert_eq!(
            thinking_config("gemini-2.5-pro"),
            Some(json!({"thinkingBudget": 128}))
        );
        assert_eq!(
            thinking_config("gemini-3-flash-preview"),
            Some(json!({"thinkingLevel": "LOW"}))
        );
        assert_eq!(
            thinking_config("gemini-3.5-flash"),
            Some(json!({"thinkingLevel": "LOW"}))
        );
        assert_eq!(thinking_config("gemini-2.0-flash"), None);
        assert_eq!(thinking_config("gemini-flash-latest"), None);
    }

    #[test]
    fn schema_is_converted_to_gemini_dialect() {
        let batch = [page("202", "B", ""), page("101", "A", "")];
        let expanded =
            crate::llm::schema::response_schema(&batch, &taxonomy(), SchemaForm::Expanded);
        let s = to_gemini_schema(&expanded);
        assert_eq!(s["type"], "OBJECT");
        assert!(s.get("additionalProperties").is_none());
        assert_eq!(s["propertyOrdering"], json!(["202", "101"]));
        assert_eq!(s["required"], json!(["202", "101"]));
        let p = &s["properties"]["101"];
        assert_eq!(p["type"], "OBJECT");
        assert!(p.get("additionalProperties").is_none());
        assert_eq!(p["propertyOrdering"], json!(["type", "tool"]));
        assert_eq!(p["properties"]["tool"]["type"], "ARRAY");
        assert_eq!(p["properties"]["tool"]["maxItems"], 2);
        assert_eq!(
            p["properties"]["tool"]["items"],
            json!({"type": "STRING", "enum": ["jira", "git", "docker"]})
        );
        assert!(!s.to_string().contains("additionalProperties"));
    }

    fn provider(model: &str) -> GeminiProvider {
        let settings = ProviderSettings {
            api_key: Some(Secret::new("k")),
            model: model.into(),
            base_url: "http://127.0.0.1:9".into(),
            timeout: Duration::from_secs(5),
            max_output_tokens: 4096,
        };
        GeminiProvider::new(settings, Arc::new(taxonomy())).unwrap()
    }

    #[test]
    fn current_models_get_the_defs_schema_in_response_json_schema() {
        let p = provider("gemini-2.5-flash");
        let batch = [page("202", "B", ""), page("101", "A", "")];
        let body = p.request_body(&batch, 321);
        let g = &body["generationConfig"];
        assert!(g.get("responseSchema").is_none(), "never both fields");
        assert_eq!(g["responseMimeType"], "application/json");
        assert_eq!(g["maxOutputTokens"], 321);
        let s = &g["responseJsonSchema"];
        assert_eq!(s["type"], "object", "no $ref at the root");
        assert_eq!(s["required"], json!(["202", "101"]));
        assert_eq!(s["additionalProperties"], false);
        assert_eq!(s["properties"]["101"], json!({"$ref": "#/$defs/page"}));
        assert_eq!(s["$defs"]["page"]["additionalProperties"], false);
        assert_eq!(s["$defs"]["page"]["properties"]["tool"]["maxItems"], 2);
        assert_eq!(
            s["$defs"]["page"]["properties"]["tool"]["items"]["enum"],
            json!(["jira", "git", "docker"])
        );
        for model in [
            "gemini-3-flash-preview",
            "models/gemini-2.5-pro",
            "gemini-flash-latest",
        ] {
            assert_eq!(schema_field(model), SchemaField::JsonSchema, "{model}");
        }
    }

    #[test]
    fn gemini_2_0_keeps_the_expanded_response_schema() {
        let p = provider("gemini-2.0-flash");
        let body = p.request_body(&[page("1", "A", "")], 100);
        let g = &body["generationConfig"];
        assert!(g.get("responseJsonSchema").is_none());
        let s = &g["responseSchema"];
        assert_eq!(s["type"], "OBJECT");
        assert!(!s.to_string().contains("$ref") && !s.to_string().contains("$defs"));
        assert_eq!(s["properties"]["1"]["properties"]["tool"]["maxItems"], 2);
        assert_eq!(schema_field("gemini-1.5-pro"), SchemaField::OpenApi);
    }

    #[test]
    fn the_output_cap_is_the_batch_budget_plus_thinking_within_the_ceiling() {
        let batch = [page("1", "A", ""), page("2", "B", "")];
        let base = budget::answer_tokens(&batch, &taxonomy());
        let flash = provider("gemini-2.5-flash").output_budget(&batch).unwrap();
        assert_eq!(flash, OutputBudget::new(base, 4096));
        assert!(flash.tokens < 300, "{flash:?}");
        let pro = provider("gemini-2.5-pro").output_budget(&batch).unwrap();
        assert_eq!(pro.tokens, base + 256);
        let three = provider("gemini-3-pro-preview")
            .output_budget(&batch)
            .unwrap();
        assert_eq!(three.tokens, base + 1024);
        assert_eq!(thinking_allowance("gemini-2.0-flash"), 0);
        assert_eq!(thinking_allowance("gemini-flash-latest"), 1024);
    }
}
