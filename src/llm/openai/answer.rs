//! What an OpenAI-compatible answer means: the labels of a 200, the class of an error (the
//! module table in `mod.rs`) and the `x-ratelimit-*` headers of either.

use std::time::Duration;

use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use super::NAME;
use crate::llm::wire::{self, parse_go_duration, wait_in_message};
use crate::llm::{LlmError, LlmErrorKind, RateLimitHints, Usage, prompt};
use crate::secret::Secret;

/// Billing codes reported under the `insufficient_quota` type (reference §2.3): permanent.
pub(super) const QUOTA_CODES: &[&str] = &[
    "insufficient_quota",
    "credit_balance_exhausted",
    "organization_spend_limit_exceeded",
    "project_spend_limit_exceeded",
    "organization_usage_limit_exceeded",
    "billing_hard_limit_reached",
];

/// Reads `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`; a missing or unreadable
/// header is `None`, and so is a negative one, or a whole bucket whose limit is `0` or `-1`.
pub fn parse_rate_limits(headers: &HeaderMap) -> RateLimitHints {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let num = |name: &str| get(name).and_then(|v| v.parse::<i64>().ok());
    let dur = |name: &str| get(name).and_then(parse_go_duration);
    // Azure has sent `-1` and `0` as limits (openai-dotnet #838): a limit that is not
    // positive says nothing, and neither do the remaining count and reset beside it.
    let bucket = |kind: &str| {
        let limit = num(&format!("x-ratelimit-limit-{kind}"));
        let remaining = num(&format!("x-ratelimit-remaining-{kind}"));
        let reset = dur(&format!("x-ratelimit-reset-{kind}"));
        match limit {
            Some(l) if l <= 0 => (None, None, None),
            _ => (
                limit.map(|l| l as u64),
                remaining.and_then(|r| u64::try_from(r).ok()),
                reset,
            ),
        }
    };
    let (limit_requests, remaining_requests, reset_requests) = bucket("requests");
    let (limit_tokens, remaining_tokens, reset_tokens) = bucket("tokens");
    RateLimitHints {
        limit_requests,
        limit_tokens,
        remaining_requests,
        remaining_tokens,
        reset_requests,
        reset_tokens,
    }
}

#[derive(Deserialize)]
struct ChatResponse {
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<ChatUsage>,
}

#[derive(Deserialize)]
struct Choice {
    message: Option<Message>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Message {
    content: Option<String>,
    refusal: Option<String>,
}

#[derive(Deserialize)]
struct ChatUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    /// Absent on many compatible servers, and `null` on some.
    #[serde(default)]
    prompt_tokens_details: Option<PromptTokensDetails>,
}

#[derive(Deserialize, Default)]
struct PromptTokensDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

/// Reads a 200 body: the labels in `choices[0].message.content`, and the usage.
pub(crate) fn parse_response(body: &str, key: Option<&Secret>) -> Result<wire::Parsed, LlmError> {
    let (content, usage) = response_content(body, key)?;
    let labels = prompt::parse_answer(&content).map_err(|e| {
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

/// Reads a 200 body: the text of `choices[0].message.content`, not empty, and the usage.
pub(crate) fn response_content(
    body: &str,
    key: Option<&Secret>,
) -> Result<(String, Option<Usage>), LlmError> {
    let bad = |detail: &str| wire::error(NAME, LlmErrorKind::BadAnswer, Some(200), detail, key);
    let response: ChatResponse = serde_json::from_str(body).map_err(|e| {
        bad(&format!(
            "not a chat completion ({e}): {}",
            crate::http::snippet(body)
        ))
    })?;
    let usage = response.usage.map(|u| Usage {
        input_tokens: u.prompt_tokens,
        output_tokens: u.completion_tokens,
        cached_input_tokens: u
            .prompt_tokens_details
            .and_then(|d| d.cached_tokens)
            .unwrap_or(0)
            .min(u.prompt_tokens),
    });
    let Some(choice) = response.choices.into_iter().next() else {
        return Err(bad("no choices in the answer"));
    };
    let message = choice.message.unwrap_or(Message {
        content: None,
        refusal: None,
    });
    if let Some(refusal) = message.refusal.filter(|r| !r.trim().is_empty()) {
        return Err(bad(&format!("refused: {refusal}")));
    }
    match choice.finish_reason.as_deref() {
        Some("length") => {
            let used = usage
                .map(|u| format!(" after {} output tokens", u.output_tokens))
                .unwrap_or_default();
            return Err(wire::error(
                NAME,
                LlmErrorKind::Truncated,
                Some(200),
                &format!("finish_reason length: the answer was cut off{used}"),
                key,
            ));
        }
        Some("content_filter") => return Err(bad("finish_reason content_filter")),
        _ => {}
    }
    let content = message.content.unwrap_or_default();
    if content.trim().is_empty() {
        return Err(bad("empty answer"));
    }
    Ok((content, usage))
}

/// Classifies a non-2xx answer (see the module table).
pub(crate) fn classify_error(
    status: u16,
    headers: &HeaderMap,
    body: &str,
    key: Option<&Secret>,
) -> LlmError {
    let fields = ErrorFields::read(body);
    let detail = if fields.code.is_empty() {
        fields.message.clone()
    } else {
        format!("{}: {}", fields.code, fields.message)
    };
    let kind = error_kind(status, headers, &fields);
    wire::error(NAME, kind, Some(status), &detail, key)
}

/// The parts of an error body the classification reads.
struct ErrorFields {
    message: String,
    error_type: String,
    code: String,
}

impl ErrorFields {
    fn read(body: &str) -> Self {
        let value: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        let error = value.get("error").unwrap_or(&Value::Null);
        let text = |v: Option<&Value>| match v {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        // `{"error": {"message": ...}}` (OpenAI), `{"error": "..."}` (some local servers),
        // `{"detail": ...}` / `{"message": ...}` (proxies), or whatever the body is.
        let message = text(error.get("message"))
            .or_else(|| text(Some(error)))
            .or_else(|| text(value.get("detail")))
            .or_else(|| text(value.get("message")))
            .unwrap_or_else(|| body.to_string());
        ErrorFields {
            message,
            error_type: text(error.get("type")).unwrap_or_default(),
            code: text(error.get("code")).unwrap_or_default(),
        }
    }
}

fn error_kind(status: u16, headers: &HeaderMap, e: &ErrorFields) -> LlmErrorKind {
    if e.error_type == "insufficient_quota"
        || QUOTA_CODES.contains(&e.code.as_str())
        || status == 402
    {
        LlmErrorKind::QuotaExhausted
    } else if e.message.trim_start().starts_with("Request too large")
        || e.code == "context_length_exceeded"
        || status == 413
    {
        LlmErrorKind::TooLarge
    } else if e.code == "slow_down" {
        LlmErrorKind::SlowDown {
            retry_after: crate::http::retry_after(headers),
        }
    } else {
        match status {
            429 => LlmErrorKind::RateLimited {
                retry_after: rate_limit_wait(headers, e),
            },
            401 | 403 => LlmErrorKind::Auth,
            408 => LlmErrorKind::Timeout,
            500..=599 => LlmErrorKind::Overloaded {
                retry_after: crate::http::retry_after(headers),
            },
            _ => LlmErrorKind::BadRequest,
        }
    }
}

/// A 429's wait: `retry-after(-ms)`, else "try again in Xs" in the message, else the reset of
/// the bucket the error names (or the one that is empty).
fn rate_limit_wait(headers: &HeaderMap, e: &ErrorFields) -> Option<Duration> {
    let hints = parse_rate_limits(headers);
    let reset = match e.error_type.as_str() {
        "tokens" => hints.reset_tokens,
        "requests" => hints.reset_requests,
        _ if hints.remaining_tokens == Some(0) => hints.reset_tokens,
        _ if hints.remaining_requests == Some(0) => hints.reset_requests,
        _ => None,
    };
    crate::http::retry_after(headers)
        .or_else(|| wait_in_message(&e.message))
        .or(reset)
}
