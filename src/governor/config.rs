//! Settings of one provider's governor.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::retry::Backoff;

/// Optional per-minute quotas of a provider; `None` means unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
}

/// A source of random numbers in `[0, 1)` for backoff jitter; tests pass a constant.
#[derive(Clone)]
pub struct Jitter(Arc<dyn Fn() -> f64 + Send + Sync>);

impl Jitter {
    /// `rand::random()`.
    pub fn random() -> Self {
        Self(Arc::new(rand::random::<f64>))
    }

    /// Always `unit` (clamped to `[0, 1]`): `fixed(1.0)` waits the full backoff ceiling.
    pub fn fixed(unit: f64) -> Self {
        let unit = unit.clamp(0.0, 1.0);
        Self(Arc::new(move || unit))
    }

    pub fn sample(&self) -> f64 {
        (self.0)()
    }
}

impl fmt::Debug for Jitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Jitter")
    }
}

/// How one provider is governed. [`GovernorConfig::default`] is what the issue asks for.
#[derive(Debug, Clone)]
pub struct GovernorConfig {
    /// Configured RPM/TPM; `None`s mean "learn from 429s and headers".
    pub quota: Quota,
    /// Pace at this share of the quota (1.0 = exactly the quota), so that timing jitter between
    /// us and the server does not turn into 429s.
    pub headroom: f64,
    /// `TAG_SPACE_AI_CONCURRENCY`.
    pub initial_concurrency: usize,
    /// `TAG_SPACE_MAX_AI_CONCURRENCY`.
    pub max_concurrency: usize,
    /// A server-suggested wait above this makes the provider unavailable until it has passed
    /// (batches go to the fallback) instead of being slept through.
    pub max_cooldown: Duration,
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// Retries allowed per run: `retry_budget_ratio` of first attempts …
    pub retry_budget_ratio: f64,
    /// … plus this many.
    pub retry_budget_floor: u64,
    /// Backoff for 429s without a hint and for 5xx/timeouts/transport errors.
    pub backoff: Backoff,
    pub jitter: Jitter,
    /// The output cap each request reserves from the TPM bucket.
    pub max_output_tokens: u32,
    /// Consecutive failed batches that take the provider out of rotation …
    pub failure_threshold: u32,
    /// … for this long, before one probe call.
    pub probe_after: Duration,
}

impl Default for GovernorConfig {
    fn default() -> Self {
        Self {
            quota: Quota::default(),
            headroom: 0.97,
            initial_concurrency: 3,
            max_concurrency: 6,
            max_cooldown: Duration::from_secs(60),
            max_attempts: 3,
            retry_budget_ratio: 0.1,
            retry_budget_floor: 10,
            backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(30)),
            jitter: Jitter::random(),
            max_output_tokens: 1024,
            failure_threshold: 3,
            probe_after: Duration::from_secs(30),
        }
    }
}
