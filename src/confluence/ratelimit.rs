//! Confluence's rate-limit headers, read into one [`RateHeaders`] (pure; the caller passes the
//! wall-clock `now`).
//!
//! - **Cloud**: `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset` (ISO 8601,
//!   e.g. `2026-12-02T10:00Z`), `X-RateLimit-NearLimit` (`true` under 20% left),
//!   `RateLimit-Reason` on a 429 (`confluence-quota-global-based` is a quota, anything else a
//!   burst limit), `Retry-After`; while a limit is in beta the same come as `Beta-Retry-After`
//!   and `Beta-RateLimit-Policy: "global-app-quota";q=65000;w=3600`.
//! - **Data Center**: a token bucket set by the admin: `X-RateLimit-Limit` (capacity),
//!   `X-RateLimit-Remaining`, `X-RateLimit-FillRate` tokens every `X-RateLimit-Interval-Seconds`,
//!   `Retry-After` (`0` while tokens remain).
//!
//! Values no server means (`Retry-After: 9223372036854775807`, `X-RateLimit-Limit: 0`) are
//! clamped or ignored, and named in [`RateHeaders::absurd`] so that a message can say so.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;

use crate::http::{MAX_SERVER_WAIT, parse_retry_after};

/// Below this share of the limit left, tag-space slows down even without `NearLimit` (the
/// share at which Cloud sets it).
pub const LOW_SHARE: f64 = 0.2;

/// What one answer said about the site's limits. Every field is optional: most answers, and
/// every answer of an unlimited Data Center, carry none of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RateHeaders {
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    /// Cloud: when the current window's budget is whole again.
    pub reset: Option<SystemTime>,
    pub near_limit: bool,
    /// `RateLimit-Reason` (Cloud, on a 429).
    pub reason: Option<String>,
    /// `Retry-After`, else `Beta-Retry-After`; clamped to [`MAX_SERVER_WAIT`].
    pub retry_after: Option<Duration>,
    /// `Beta-RateLimit-Policy`, as sent (for messages).
    pub policy: Option<String>,
    /// Data Center: `X-RateLimit-FillRate` tokens every `X-RateLimit-Interval-Seconds`.
    pub fill_rate: Option<f64>,
    pub interval: Option<Duration>,
    /// Headers whose values were absurd, as `name: value (what was done)`.
    pub absurd: Vec<String>,
}

impl RateHeaders {
    /// Reads the headers of one answer; `now` is the wall clock (for `X-RateLimit-Reset`).
    pub fn parse(headers: &HeaderMap, now: SystemTime) -> Self {
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let mut h = RateHeaders::default();
        let count = |name: &str, h: &mut RateHeaders| -> Option<u64> {
            let raw = get(name)?;
            match raw.parse::<u64>() {
                Ok(n) => Some(n),
                Err(_) => {
                    h.absurd.push(format!("{name}: {raw} (ignored)"));
                    None
                }
            }
        };
        h.limit = count("x-ratelimit-limit", &mut h);
        h.remaining = count("x-ratelimit-remaining", &mut h);
        if h.limit == Some(0) {
            // A limit of nothing would forbid every call; seen beside an absurd Retry-After.
            h.absurd.push("X-RateLimit-Limit: 0 (ignored)".into());
            h.limit = None;
        }
        if let (Some(l), Some(r)) = (h.limit, h.remaining) {
            if r > l {
                h.absurd.push(format!(
                    "X-RateLimit-Remaining: {r} above the limit {l} (ignored)"
                ));
                h.remaining = None;
            }
        }
        h.reset = get("x-ratelimit-reset").and_then(|v| {
            let at = parse_reset(v, now);
            if at.is_none() {
                h.absurd.push(format!("X-RateLimit-Reset: {v} (ignored)"));
            }
            at
        });
        h.near_limit = get("x-ratelimit-nearlimit").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        h.reason = get("ratelimit-reason").map(str::to_string);
        h.policy = get("beta-ratelimit-policy").map(str::to_string);
        for name in ["retry-after", "beta-retry-after"] {
            if let Some(raw) = get(name) {
                h.retry_after = retry_after(name, raw, now, &mut h.absurd);
                if h.retry_after.is_some() {
                    break;
                }
            }
        }
        h.fill_rate = get("x-ratelimit-fillrate")
            .and_then(|v| positive(v, "X-RateLimit-FillRate", &mut h.absurd));
        h.interval = get("x-ratelimit-interval-seconds")
            .and_then(|v| positive(v, "X-RateLimit-Interval-Seconds", &mut h.absurd))
            .map(crate::http::clamped_secs);
        h
    }

    /// A 429 for a quota (not a burst): `RateLimit-Reason` names one, or the budget is gone
    /// and comes back only after `far` from `now`.
    pub fn is_quota(&self, far: Duration, now: SystemTime) -> bool {
        let named = self
            .reason
            .as_deref()
            .is_some_and(|r| r.to_ascii_lowercase().contains("quota"));
        let distant = self.remaining == Some(0)
            && self
                .reset
                .is_some_and(|r| r.duration_since(now).is_ok_and(|d| d > far));
        named || distant
    }

    /// Data Center's refill rate in requests a minute, when both halves were sent.
    pub fn fill_per_minute(&self) -> Option<f64> {
        let secs = self.interval?.as_secs_f64();
        (secs > 0.0)
            .then(|| self.fill_rate.unwrap_or(0.0) * 60.0 / secs)
            .filter(|r| *r > 0.0)
    }

    /// Little is left: Cloud says so (`NearLimit`), or `Remaining` is under [`LOW_SHARE`] of
    /// `Limit`.
    pub fn running_low(&self) -> bool {
        self.near_limit
            || matches!((self.remaining, self.limit), (Some(r), Some(l)) if (r as f64) < l as f64 * LOW_SHARE)
    }

    /// The absurd values, for the end of a message (empty when there were none).
    pub fn absurd_note(&self) -> String {
        if self.absurd.is_empty() {
            String::new()
        } else {
            format!(
                " (absurd values from the server: {})",
                self.absurd.join(", ")
            )
        }
    }
}

/// A `Retry-After` value; one beyond [`MAX_SERVER_WAIT`] is clamped to it and named.
fn retry_after(
    name: &str,
    raw: &str,
    now: SystemTime,
    absurd: &mut Vec<String>,
) -> Option<Duration> {
    let shown = if name == "retry-after" {
        "Retry-After"
    } else {
        "Beta-Retry-After"
    };
    let wait = parse_retry_after(raw, now);
    match wait {
        None => absurd.push(format!("{shown}: {raw} (ignored)")),
        Some(w) if w >= MAX_SERVER_WAIT => absurd.push(format!(
            "{shown}: {raw} (read as {} days)",
            MAX_SERVER_WAIT.as_secs() / 86_400
        )),
        Some(_) => {}
    }
    wait
}

fn positive(raw: &str, name: &str, absurd: &mut Vec<String>) -> Option<f64> {
    match raw.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Some(v),
        _ => {
            absurd.push(format!("{name}: {raw} (ignored)"));
            None
        }
    }
}

/// `X-RateLimit-Reset`: ISO 8601 in UTC (`2026-12-02T10:00Z`, with or without seconds or
/// fraction, `Z` or `+00:00`), or an HTTP date. A time in the past is `now`.
pub fn parse_reset(value: &str, now: SystemTime) -> Option<SystemTime> {
    let v = value.trim();
    let v = v
        .strip_suffix("+00:00")
        .map_or(v.to_string(), |s| format!("{s}Z"));
    let at = humantime::parse_rfc3339_weak(&v)
        .ok()
        .or_else(|| {
            // Minutes only (`yyyy-MM-ddTHH:mmZ`, the form Atlassian documents).
            let core = v.strip_suffix('Z')?;
            (core.len() == 16)
                .then(|| humantime::parse_rfc3339_weak(&format!("{core}:00Z")).ok())?
        })
        .or_else(|| httpdate::parse_http_date(&v).ok())?;
    Some(at.max(now))
}

/// A wall-clock time for messages: `2026-12-02T10:00:00Z`.
pub fn show_time(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn at(s: &str) -> SystemTime {
        humantime::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn cloud_headers_with_an_iso_reset_in_minutes() {
        let now = at("2026-12-02T09:59:30Z");
        let h = RateHeaders::parse(
            &headers(&[
                ("X-RateLimit-Limit", "100"),
                ("X-RateLimit-Remaining", "12"),
                ("X-RateLimit-Reset", "2026-12-02T10:00Z"),
                ("X-RateLimit-NearLimit", "true"),
            ]),
            now,
        );
        assert_eq!((h.limit, h.remaining), (Some(100), Some(12)));
        assert_eq!(h.reset, Some(at("2026-12-02T10:00:00Z")));
        assert!(h.near_limit && h.running_low());
        assert!(h.absurd.is_empty(), "{:?}", h.absurd);
        // Seconds, a fraction and an offset are read too; a past reset is now.
        for v in [
            "2026-12-02T10:00:00Z",
            "2026-12-02T10:00:00.000Z",
            "2026-12-02T10:00:00+00:00",
        ] {
            assert_eq!(parse_reset(v, now), Some(at("2026-12-02T10:00:00Z")), "{v}");
        }
        assert_eq!(parse_reset("2026-12-01T10:00Z", now), Some(now));
        assert_eq!(parse_reset("tomorrow", now), None);
    }

    #[test]
    fn quota_429_by_reason_or_by_a_distant_reset() {
        let now = at("2026-12-02T09:00:00Z");
        let far = Duration::from_secs(60);
        let h = RateHeaders::parse(
            &headers(&[
                ("RateLimit-Reason", "confluence-quota-global-based"),
                ("Retry-After", "1800"),
                (
                    "Beta-RateLimit-Policy",
                    "\"global-app-quota\";q=65000;w=3600",
                ),
            ]),
            now,
        );
        assert!(h.is_quota(far, now));
        assert_eq!(h.retry_after, Some(Duration::from_secs(1800)));
        assert_eq!(
            h.policy.as_deref(),
            Some("\"global-app-quota\";q=65000;w=3600")
        );
        let burst = RateHeaders::parse(
            &headers(&[("RateLimit-Reason", "burst"), ("Retry-After", "2")]),
            now,
        );
        assert!(!burst.is_quota(far, now));
        let spent = RateHeaders::parse(
            &headers(&[
                ("X-RateLimit-Limit", "65000"),
                ("X-RateLimit-Remaining", "0"),
                ("X-RateLimit-Reset", "2026-12-02T10:00Z"),
            ]),
            now,
        );
        assert!(spent.is_quota(far, now));
        assert!(!spent.is_quota(Duration::from_secs(7200), now));
    }

    #[test]
    fn beta_retry_after_when_no_retry_after() {
        let now = SystemTime::UNIX_EPOCH;
        let h = RateHeaders::parse(&headers(&[("Beta-Retry-After", "3")]), now);
        assert_eq!(h.retry_after, Some(Duration::from_secs(3)));
        let h = RateHeaders::parse(
            &headers(&[("Retry-After", "1"), ("Beta-Retry-After", "3")]),
            now,
        );
        assert_eq!(h.retry_after, Some(Duration::from_secs(1)));
    }

    #[test]
    fn data_center_bucket_and_zero_retry_after() {
        let h = RateHeaders::parse(
            &headers(&[
                ("X-RateLimit-Limit", "20"),
                ("X-RateLimit-Remaining", "19"),
                ("X-RateLimit-Interval-Seconds", "1"),
                ("X-RateLimit-FillRate", "5"),
                ("Retry-After", "0"),
            ]),
            SystemTime::UNIX_EPOCH,
        );
        assert_eq!(h.fill_per_minute(), Some(300.0));
        assert_eq!(h.retry_after, Some(Duration::ZERO));
        assert!(!h.running_low());
        assert!(h.absurd.is_empty());
    }

    #[test]
    fn missing_headers_are_nothing() {
        let h = RateHeaders::parse(&HeaderMap::new(), SystemTime::UNIX_EPOCH);
        assert_eq!(h, RateHeaders::default());
        assert!(!h.running_low() && h.fill_per_minute().is_none());
        assert_eq!(h.absurd_note(), "");
    }

    #[test]
    fn absurd_values_are_clamped_or_ignored_and_named() {
        let h = RateHeaders::parse(
            &headers(&[
                ("Retry-After", "9223372036854775807"),
                ("X-RateLimit-Limit", "0"),
                ("X-RateLimit-Remaining", "0"),
                ("X-RateLimit-FillRate", "0"),
                ("X-RateLimit-Interval-Seconds", "-5"),
            ]),
            SystemTime::UNIX_EPOCH,
        );
        assert_eq!(h.retry_after, Some(MAX_SERVER_WAIT));
        assert_eq!(h.limit, None);
        assert_eq!(h.fill_per_minute(), None);
        let note = h.absurd_note();
        for part in [
            "Retry-After: 9223372036854775807 (read as 365 days)",
            "X-RateLimit-Limit: 0 (ignored)",
            "X-RateLimit-FillRate: 0 (ignored)",
            "X-RateLimit-Interval-Seconds: -5 (ignored)",
        ] {
            assert!(note.contains(part), "{note}");
        }
        let h = RateHeaders::parse(
            &headers(&[("X-RateLimit-Limit", "10"), ("X-RateLimit-Remaining", "99")]),
            SystemTime::UNIX_EPOCH,
        );
        assert_eq!(h.remaining, None);
        assert!(h.absurd_note().contains("above the limit"));
    }
}
