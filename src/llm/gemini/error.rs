//! What a failed Gemini answer means: the error classes of the module table in `mod.rs`.

use std::time::SystemTime;

use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use super::NAME;
use crate::llm::pacific;
use crate::llm::wire::{self, wait_in_message};
use crate::llm::{LlmError, LlmErrorKind};
use crate::secret::Secret;

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ApiError,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ApiError {
    message: String,
    status: String,
    details: Vec<Value>,
}

/// Classifies a non-2xx answer (see the module table).
pub(crate) fn classify_error(
    status: u16,
    headers: &HeaderMap,
    body: &str,
    key: Option<&Secret>,
) -> LlmError {
    classify_error_at(status, headers, body, key, SystemTime::now())
}

/// [`classify_error`] at `now` (a daily quota's message names when it resets).
pub(super) fn classify_error_at(
    status: u16,
    headers: &HeaderMap,
    body: &str,
    key: Option<&Secret>,
    now: SystemTime,
) -> LlmError {
    let api = serde_json::from_str::<ErrorEnvelope>(body)
        .map(|e| e.error)
        .unwrap_or_default();
    let message = if api.message.is_empty() {
        body.to_string()
    } else {
        api.message.clone()
    };
    let detail = if api.status.is_empty() {
        message.clone()
    } else {
        format!("{}: {message}", api.status)
    };
    let of_type = |suffix: &'static str| {
        api.details.iter().filter(move |d| {
            d.get("@type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.ends_with(suffix))
        })
    };
    let lower = message.to_lowercase();
    let kind = match status {
        429 => match daily_quota(&of_type, now) {
            Some(daily) => {
                let detail = format!("{daily}: {detail}");
                return wire::error(
                    NAME,
                    LlmErrorKind::QuotaExhausted,
                    Some(status),
                    &detail,
                    key,
                );
            }
            None if has_limit_zero(&message) => LlmErrorKind::QuotaExhausted,
            None => LlmErrorKind::RateLimited {
                retry_after: rate_limit_wait(&of_type, &message, headers),
            },
        },
        413 => LlmErrorKind::TooLarge,
        400 if is_too_long(&lower) => LlmErrorKind::TooLarge,
        400 if lower.contains("api key not valid")
            || of_type("ErrorInfo")
                .any(|d| d.get("reason").and_then(Value::as_str) == Some("API_KEY_INVALID")) =>
        {
            LlmErrorKind::Auth
        }
        401 | 403 => LlmErrorKind::Auth,
        408 => LlmErrorKind::Timeout,
        500..=599 => LlmErrorKind::Overloaded {
            retry_after: crate::http::retry_after(headers),
        },
        _ => LlmErrorKind::BadRequest,
    };
    wire::error(NAME, kind, Some(status), &detail, key)
}

/// "limit: 0" as a whole number (not "limit: 05"): the model is not available on this tier.
pub(super) fn has_limit_zero(message: &str) -> bool {
    message
        .match_indices("limit: 0")
        .any(|(i, m)| !message[i + m.len()..].starts_with(|c: char| c.is_ascii_digit()))
}

/// A 400 that says the input is more than the model takes.
fn is_too_long(lower: &str) -> bool {
    (lower.contains("token count") && lower.contains("exceed"))
        || lower.contains("exceeds the maximum number of tokens")
        || lower.contains("too long")
        || lower.contains("payload size exceeds")
}

/// A 429 for a daily quota: what to say about it (which quota, when it resets at midnight
/// Pacific), or `None` for a per-minute limit.
/// A 429's wait: Google's `RetryInfo.retryDelay`, else "retry in Xs" in the message, else
/// `Retry-After`.
fn rate_limit_wait<'a, I>(
    of_type: &impl Fn(&'static str) -> I,
    message: &str,
    headers: &HeaderMap,
) -> Option<std::time::Duration>
where
    I: Iterator<Item = &'a Value>,
{
    let retry_info = of_type("RetryInfo").find_map(|d| {
        d.get("retryDelay")
            .and_then(Value::as_str)
            .and_then(wire::parse_go_duration)
    });
    retry_info
        .or_else(|| wait_in_message(message))
        .or_else(|| crate::http::retry_after(headers))
}

fn daily_quota<'a, I>(of_type: &impl Fn(&'static str) -> I, now: SystemTime) -> Option<String>
where
    I: Iterator<Item = &'a Value>,
{
    let per_day_id = of_type("QuotaFailure")
        .filter_map(|d| d.get("violations").and_then(Value::as_array))
        .flatten()
        .filter_map(|v| v.get("quotaId").and_then(Value::as_str))
        .find(|id| id.contains("PerDay"));
    // Older bodies: ErrorInfo with metadata.quota_limit "...RequestsPerDay...".
    let per_day_info = of_type("ErrorInfo").any(|d| {
        d.get("metadata")
            .and_then(Value::as_object)
            .is_some_and(|m| {
                m.values()
                    .any(|v| v.as_str().is_some_and(|s| s.contains("PerDay")))
            })
    });
    if per_day_id.is_none() && !per_day_info {
        return None;
    }
    let reset = pacific::next_midnight(now);
    let left = reset.duration_since(now).unwrap_or_default().as_secs();
    Some(format!(
        "daily quota {}used up until it resets at midnight Pacific, {} (in {}h {:02}m)",
        per_day_id.map(|id| format!("{id} ")).unwrap_or_default(),
        pacific::utc_minute(reset),
        left / 3600,
        left % 3600 / 60,
    ))
}
