//! The waits providers and Confluence write as text (`Retry-After`, `retry-after-ms`, Go and
//! protobuf durations, `x-ratelimit-*`), Gemini's schema conversion and model switch, and the
//! error snippet: never panic, whatever the header or body says.
#![no_main]

use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use reqwest::header::{HeaderMap, HeaderValue};
use tag_space::http::{SNIPPET_CHARS, parse_retry_after, retry_after};
use tag_space::llm::gemini::{thinking_config, to_gemini_schema};
use tag_space::llm::openai::parse_rate_limits;
use tag_space::llm::{LlmError, LlmErrorKind, parse_go_duration};

fuzz_target!(|text: &str| {
    // A fixed "now" keeps runs reproducible: 2026-11-22T10:00:00Z.
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_341_600);
    // Every parsed wait is clamped so that `Instant + wait` cannot overflow.
    if let Some(d) = parse_retry_after(text, now) {
        assert!(d <= tag_space::http::MAX_SERVER_WAIT);
    }
    if let Some(d) = parse_go_duration(text) {
        assert!(d <= tag_space::http::MAX_SERVER_WAIT);
    }
    if let Ok(value) = HeaderValue::from_str(text) {
        let mut headers = HeaderMap::new();
        for name in [
            "retry-after",
            "x-ratelimit-limit-requests",
            "x-ratelimit-remaining-tokens",
            "x-ratelimit-reset-requests",
            "x-ratelimit-reset-tokens",
        ] {
            headers.insert(name, value.clone());
        }
        let _ = retry_after(&headers);
        let _ = parse_rate_limits(&headers);
        headers.insert("retry-after-ms", value);
        let _ = retry_after(&headers);
    }
    if let Ok(schema) = serde_json::from_str::<serde_json::Value>(text) {
        let _ = to_gemini_schema(&schema);
    }
    let _ = thinking_config(text);
    let e = LlmError::new("fuzz", LlmErrorKind::BadAnswer, Some(200), text);
    assert!(e.detail.chars().count() <= SNIPPET_CHARS + 1);
    assert!(!e.detail.chars().any(char::is_control));
    let _ = e.to_string();
});
