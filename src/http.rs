//! Small HTTP helpers shared by the Confluence and LLM clients.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;

/// The longest piece of a response body an error message carries.
pub const SNIPPET_CHARS: usize = 200;

/// Why a request got no HTTP answer, short: reqwest's own message ("error sending request
/// for url (...)") hides the cause and the layers below repeat one another ("client error
/// (Connect)", "tcp connect error: Connection refused", "Connection refused"), so this keeps
/// the causes that add something, once each. Kept as text by the errors that carry it, so
/// that their message names the cause once and no `source()` repeats it.
pub fn transport_causes(err: &reqwest::Error) -> String {
    let causes: Vec<String> = std::iter::successors(std::error::Error::source(err), |e| e.source())
        .map(|e| e.to_string())
        .collect();
    let mut kept: Vec<&str> = Vec::new();
    for (i, c) in causes.iter().enumerate() {
        let repeated = kept.iter().any(|k| k.contains(c.as_str()));
        // A wrapper that only names its layer, when a cause below says more.
        let wrapper = c.starts_with("client error (") && i + 1 < causes.len();
        if !repeated && !wrapper && !c.is_empty() {
            kept.push(c);
        }
    }
    if kept.is_empty() {
        err.to_string()
    } else {
        kept.join(": ")
    }
}

/// One line of at most [`SNIPPET_CHARS`] characters from a response body, for error messages.
///
/// Whitespace runs (newlines included) collapse to one space so that a message stays one line.
pub fn snippet(body: &str) -> String {
    let mut out = String::new();
    let mut count = 0;
    let mut last_space = true;
    for c in body.chars() {
        let c = if c.is_whitespace() || c.is_control() {
            ' '
        } else {
            c
        };
        if c == ' ' && last_space {
            continue;
        }
        last_space = c == ' ';
        if count == SNIPPET_CHARS {
            out.push('…');
            return out.trim_end().to_string();
        }
        out.push(c);
        count += 1;
    }
    out.trim_end().to_string()
}

/// The wait a server asks for, from `retry-after-ms` (OpenAI, milliseconds) or `Retry-After`
/// (seconds, possibly fractional, or an HTTP date).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        if ms.is_finite() && ms >= 0.0 {
            return Some(clamped_secs(ms / 1000.0));
        }
    }
    get("retry-after").and_then(|v| parse_retry_after(v, SystemTime::now()))
}

/// The longest wait a server can ask for that tag-space represents: a year. Anything longer
/// (`Retry-After: 1e47`) means the same thing, "not in this run", and clamping keeps
/// `Instant + wait` from overflowing anywhere downstream.
pub const MAX_SERVER_WAIT: Duration = Duration::from_secs(365 * 24 * 3600);

/// Seconds as a `Duration`, clamped to `[0, MAX_SERVER_WAIT]`; NaN counts as zero.
pub fn clamped_secs(secs: f64) -> Duration {
    if secs.is_nan() || secs <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(secs).map_or(MAX_SERVER_WAIT, |d| d.min(MAX_SERVER_WAIT))
}

/// Parses a `Retry-After` value: delta-seconds (`"30"`, `"1.5"`) or an HTTP date, relative to
/// `now`. A date in the past means "now" (zero).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| clamped_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn snippet_is_one_bounded_line() {
        assert_eq!(snippet("  a\n\n b\tc  "), "a b c");
        let long = "x".repeat(500);
        let s = snippet(&long);
        assert_eq!(s.chars().count(), SNIPPET_CHARS + 1);
        assert!(s.ends_with('…'));
    }

    #[test]
    fn retry_after_prefers_milliseconds_then_seconds_then_dates() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert("retry-after-ms", HeaderValue::from_static("1500"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(1500)));

        let now = httpdate::parse_http_date("Sun, 22 Nov 2026 10:00:00 GMT").unwrap();
        assert_eq!(
            parse_retry_after("Sun, 22 Nov 2026 10:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 22 Nov 2026 09:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("0.25", now),
            Some(Duration::from_millis(250))
        );
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
