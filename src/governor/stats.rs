//! What each provider's governor did: one [`ProviderStats`] per provider, the very figures
//! the end-of-run reports show (`crate::report` adds the model and prices, nothing else).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::llm::{LlmErrorKind, Usage};

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

    /// The name in metrics and the JSON report.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Preflight => "preflight",
            Self::Cooldown429 => "cooldown_429",
            Self::Backoff5xx => "backoff_5xx",
            Self::Concurrency => "concurrency",
        }
    }

    /// The name shown to a person.
    pub fn label(self) -> &'static str {
        match self {
            Self::Preflight => "quota pacing",
            Self::Cooldown429 => "429 cooldown",
            Self::Backoff5xx => "5xx backoff",
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
    /// Of `calls`, those that stepped the structured-output ladder down (a refused format or
    /// an ignored schema) and so were asked again a rung lower, as a new request.
    pub reasks: u64,
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

    /// Adds the tokens a call consumed, as the provider reported them.
    pub(crate) fn record_usage(&mut self, usage: Option<Usage>) {
        if let Some(u) = usage {
            self.tokens_in += u.input_tokens;
            self.tokens_cached += u.cached_input_tokens;
            self.tokens_out += u.output_tokens;
        }
    }

    /// The `q` quantile (0..=1) of call latency, nearest rank ([`quantile`]).
    pub fn latency_quantile(&self, q: f64) -> Option<Duration> {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        quantile(&sorted, q)
    }

    /// Call latency summarised: count, p50, p95, max.
    pub fn latency(&self) -> Latency {
        Latency::from_samples(&self.latencies)
    }

    /// Calls answered out of calls sent, 0..=1; `None` before any call.
    pub fn success_rate(&self) -> Option<f64> {
        (self.calls > 0).then(|| self.successes as f64 / self.calls as f64)
    }
}

/// Call latency, summarised.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Latency {
    /// Calls measured.
    pub count: u64,
    /// `None` when no call was measured.
    pub p50: Option<Duration>,
    pub p95: Option<Duration>,
    pub max: Option<Duration>,
}

impl Latency {
    pub fn from_samples(samples: &[Duration]) -> Self {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        Latency {
            count: sorted.len() as u64,
            p50: quantile(&sorted, 0.50),
            p95: quantile(&sorted, 0.95),
            max: sorted.last().copied(),
        }
    }
}

/// The `q` quantile (0..=1) of `sorted` by nearest rank: the smallest value with at least
/// `q` of the values at or below it. `None` for an empty slice. The one quantile rule of
/// tag-space: the governor's figures and the reports use it alike.
pub fn quantile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.saturating_sub(1).min(sorted.len() - 1)])
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
