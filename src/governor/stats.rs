//! What each provider's governor did, for the end-of-run summary.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::llm::LlmErrorKind;

/// Why a request waited before it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WaitReason {
    /// Quota pacing: the RPM/TPM bucket (configured, reported or learned) could not pay yet.
    Preflight,
    /// The provider-wide pause after a 429.
    Cooldown429,
    /// This request's backoff after a 5xx, timeout or transport error.
    Backoff5xx,
    /// All adaptive-concurrency slots were busy.
    Concurrency,
}

impl WaitReason {
    pub const ALL: [WaitReason; 4] = [
        Self::Preflight,
        Self::Cooldown429,
        Self::Backoff5xx,
        Self::Concurrency,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Preflight => "preflight",
            Self::Cooldown429 => "cooldown_429",
            Self::Backoff5xx => "backoff_5xx",
            Self::Concurrency => "concurrency",
        }
    }
}

impl fmt::Display for WaitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How often and how long requests waited for one reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WaitStats {
    pub count: u64,
    pub total: Duration,
}

/// A snapshot of one provider's counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProviderStats {
    pub provider: &'static str,
    /// Requests sent to the provider (first attempts, retries and split halves).
    pub calls: u64,
    pub successes: u64,
    /// Failed calls by kind ([`kind_name`]).
    pub failures: BTreeMap<&'static str, u64>,
    /// Calls answered 429 (rate limited or quota exhausted).
    pub rate_limited: u64,
    pub retries: u64,
    /// Of `retries`, those made with twice the output cap after a truncated answer.
    pub truncation_retries: u64,
    /// Retries refused because the run's retry budget was spent.
    pub budget_exhausted: u64,
    /// Batches split in two after "request too large".
    pub splits: u64,
    /// Batches this provider handed to the next provider in the chain.
    pub fallbacks: u64,
    /// Batches refused without a call because the provider was unavailable.
    pub skipped: u64,
    pub tokens_in: u64,
    /// Of `tokens_in`, those the provider read from its prompt cache.
    pub tokens_cached: u64,
    pub tokens_out: u64,
    pub waits: BTreeMap<WaitReason, WaitStats>,
    /// Latency of each call that got an answer (success or error), in order.
    pub latencies: Vec<Duration>,
    /// The adaptive concurrency limit at snapshot time.
    pub concurrency_limit: usize,
    /// The request rate being paced to (configured, reported or learned), if any.
    pub paced_rpm: Option<f64>,
    /// Why the provider is not being called, if it is not.
    pub unavailable: Option<String>,
}

impl ProviderStats {
    pub fn new(provider: &'static str) -> Self {
        Self {
            provider,
            ..Self::default()
        }
    }

    pub fn failed_calls(&self) -> u64 {
        self.failures.values().sum()
    }

    pub fn wait(&self, reason: WaitReason) -> WaitStats {
        self.waits.get(&reason).copied().unwrap_or_default()
    }

    pub(crate) fn record_wait(&mut self, reason: WaitReason, d: Duration) {
        if d.is_zero() {
            return;
        }
        let w = self.waits.entry(reason).or_default();
        w.count += 1;
        w.total += d;
    }

    pub(crate) fn record_failure(&mut self, kind: LlmErrorKind) {
        *self.failures.entry(kind_name(kind)).or_default() += 1;
        if matches!(
            kind,
            LlmErrorKind::RateLimited { .. } | LlmErrorKind::QuotaExhausted
        ) {
            self.rate_limited += 1;
        }
    }

    /// The `q` quantile (0..=1) of call latency, nearest rank.
    pub fn latency_quantile(&self, q: f64) -> Option<Duration> {
        if self.latencies.is_empty() {
            return None;
        }
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
        Some(sorted[rank.saturating_sub(1).min(sorted.len() - 1)])
    }
}

/// A stable short name for an error kind, for metrics.
pub fn kind_name(kind: LlmErrorKind) -> &'static str {
    match kind {
        LlmErrorKind::RateLimited { .. } => "rate_limited",
        LlmErrorKind::QuotaExhausted => "quota_exhausted",
        LlmErrorKind::TooLarge => "too_large",
        LlmErrorKind::SlowDown { .. } => "slow_down",
        LlmErrorKind::Overloaded { .. } => "overloaded",
        LlmErrorKind::Timeout => "timeout",
        LlmErrorKind::Transport => "transport",
        LlmErrorKind::Auth => "auth",
        LlmErrorKind::BadRequest => "bad_request",
        LlmErrorKind::BadAnswer => "bad_answer",
        LlmErrorKind::Truncated => "truncated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_waits_and_failures() {
        let mut s = ProviderStats::new("x");
        s.latencies = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(s.latency_quantile(0.5), Some(Duration::from_millis(50)));
        assert_eq!(s.latency_quantile(0.95), Some(Duration::from_millis(95)));
        assert_eq!(ProviderStats::new("y").latency_quantile(0.5), None);
        s.record_wait(WaitReason::Preflight, Duration::from_secs(1));
        s.record_wait(WaitReason::Preflight, Duration::from_secs(2));
        s.record_wait(WaitReason::Preflight, Duration::ZERO);
        assert_eq!(
            s.wait(WaitReason::Preflight),
            WaitStats {
                count: 2,
                total: Duration::from_secs(3)
            }
        );
        s.record_failure(LlmErrorKind::RateLimited { retry_after: None });
        s.record_failure(LlmErrorKind::Auth);
        assert_eq!((s.rate_limited, s.failed_calls()), (1, 2));
        assert_eq!(WaitReason::Cooldown429.to_string(), "cooldown_429");
    }
}
