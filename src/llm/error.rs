//! LLM errors, classified by what the caller should do about them.

use std::time::Duration;

/// What kind of failure a provider call was; each kind has its own response (see
/// `crate::governor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlmErrorKind {
    /// 429 for a short-term rate (RPM/TPM): cool down, then retry.
    RateLimited { retry_after: Option<Duration> },
    /// Quota gone for the day or the account (`PerDay`, `limit: 0`, `insufficient_quota`):
    /// stop using this provider for the run and fall back at once.
    QuotaExhausted,
    /// The request can never fit (e.g. OpenAI "Request too large", Gemini input too long):
    /// split the batch and retry the halves.
    TooLarge,
    /// OpenAI `slow_down` (429 or 503): the traffic ramped up too fast. Lower the pace (the
    /// request rate is halved) and retry; not a provider-wide pause.
    SlowDown { retry_after: Option<Duration> },
    /// 500/502/503/504: retry with backoff.
    Overloaded { retry_after: Option<Duration> },
    /// No answer in time: retry.
    Timeout,
    /// Connection refused/reset, or the body stalled: retry.
    Transport,
    /// 401/403: wrong or revoked key. Never retried.
    Auth,
    /// Any other 4xx (bad schema, unknown model): never retried.
    BadRequest,
    /// A 200 whose content is unusable: malformed JSON, `SAFETY`, a blocked prompt, a
    /// refusal. An error of this batch, not retried on the same provider.
    BadAnswer,
    /// A 200 cut off at the output cap (`finishReason: MAX_TOKENS`, `finish_reason: length`):
    /// retried once with twice the cap, then the batch is split.
    Truncated,
}

/// A failed provider call: which provider, what happened, and a short piece of what it said.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{provider}: {}{}{}", self.describe(), status.map(|s| format!(" (HTTP {s})")).unwrap_or_default(), if detail.is_empty() { String::new() } else { format!(": {detail}") })]
pub struct LlmError {
    pub provider: &'static str,
    pub kind: LlmErrorKind,
    pub status: Option<u16>,
    /// At most [`crate::http::SNIPPET_CHARS`] characters of the provider's message or body.
    pub detail: String,
}

impl LlmError {
    pub fn new(
        provider: &'static str,
        kind: LlmErrorKind,
        status: Option<u16>,
        detail: impl AsRef<str>,
    ) -> Self {
        Self {
            provider,
            kind,
            status,
            detail: crate::http::snippet(detail.as_ref()),
        }
    }

    /// Worth trying again on the same provider (after a wait).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            LlmErrorKind::RateLimited { .. }
                | LlmErrorKind::SlowDown { .. }
                | LlmErrorKind::Overloaded { .. }
                | LlmErrorKind::Timeout
                | LlmErrorKind::Transport
        )
    }

    /// The wait the server asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.kind {
            LlmErrorKind::RateLimited { retry_after }
            | LlmErrorKind::SlowDown { retry_after }
            | LlmErrorKind::Overloaded { retry_after } => retry_after,
            _ => None,
        }
    }

    /// The provider cannot serve anything more in this run.
    pub fn is_provider_dead(&self) -> bool {
        matches!(self.kind, LlmErrorKind::QuotaExhausted | LlmErrorKind::Auth)
    }

    fn describe(&self) -> String {
        match self.kind {
            LlmErrorKind::RateLimited {
                retry_after: Some(d),
            } => format!("rate limited, retry after {:.1}s", d.as_secs_f64()),
            LlmErrorKind::RateLimited { retry_after: None } => "rate limited".into(),
            LlmErrorKind::QuotaExhausted => "quota exhausted".into(),
            LlmErrorKind::TooLarge => "request too large".into(),
            LlmErrorKind::SlowDown { .. } => "asked to slow down".into(),
            LlmErrorKind::Overloaded { .. } => "server error".into(),
            LlmErrorKind::Timeout => "timed out".into(),
            LlmErrorKind::Transport => "connection failed".into(),
            LlmErrorKind::Auth => "not authorised: check the API key".into(),
            LlmErrorKind::BadRequest => "request rejected".into(),
            LlmErrorKind::BadAnswer => "unusable answer".into(),
            LlmErrorKind::Truncated => "answer cut off at the output cap".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_provider_status_and_detail() {
        let e = LlmError::new(
            "gemini",
            LlmErrorKind::QuotaExhausted,
            Some(429),
            "PerDay\nquota",
        );
        assert_eq!(
            e.to_string(),
            "gemini: quota exhausted (HTTP 429): PerDay quota"
        );
        assert!(!e.is_retryable());
        assert!(e.is_provider_dead());
        let e = LlmError::new(
            "openai",
            LlmErrorKind::RateLimited {
                retry_after: Some(Duration::from_millis(1500)),
            },
            Some(429),
            "",
        );
        assert_eq!(
            e.to_string(),
            "openai: rate limited, retry after 1.5s (HTTP 429)"
        );
        assert!(e.is_retryable());
        assert_eq!(e.retry_after(), Some(Duration::from_millis(1500)));
    }
}
