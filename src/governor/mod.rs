//! The governor: every request to a provider passes through one, so that tag-space runs as
//! close to the provider's quota as it allows without 429 storms and falls back only when it
//! must.
//!
//! Per provider ([`Governed`]), in the order a request meets them:
//! 1. **Adaptive concurrency** ([`concurrency`]): a slot among `limit` (starts at
//!    `initial_concurrency`, never above `max_concurrency`), cut ×0.7 on a 429 or overload,
//!    +1 after a window of successes (AIMD).
//! 2. **Shared cooldown** ([`pacer`]): after a 429 nobody is sent until the server's hint (or
//!    capped exponential backoff with full jitter) has passed; a hint above `max_cooldown`
//!    makes the provider unavailable until then instead.
//! 3. **Proactive pacing** ([`bucket`], [`pacer`]): continuously refilled RPM/TPM buckets
//!    (capacity one minute, so an initial burst is allowed), from the provider's
//!    `x-ratelimit-*` report, else the configured quota, else a rate learned from 429s.
//! 4. **Error classes** ([`action`]): each [`crate::llm::LlmErrorKind`] has one response;
//!    retries are bounded per request (`max_attempts`) and per run ([`budget`]).
//! 5. **Circuit** ([`circuit`]) and [`Chain`]: an unavailable provider refuses at once so
//!    batches go straight to the fallback; it is probed again later unless quota or key is gone.
//!
//! A request that steps down the structured-output ladder ([`crate::llm::Unsettled::Reask`])
//! is none of these failures: its re-ask is a request of its own that meets steps 1 to 3 like
//! any other, with no backoff, retry budget, circuit strike or fallback.
//!
//! Every wait is accounted to a [`WaitReason`]; [`ProviderStats`] is the snapshot for the
//! summary. Only tokio's clock is used for decisions, so all of it runs on a paused clock.
//! (This module shadows the `governor` crate, which tag-space does not use.)

pub mod action;
pub mod bucket;
pub mod budget;
mod chain;
pub mod circuit;
pub mod concurrency;
mod config;
pub mod cooldown;
mod governed;
pub mod pacer;
mod stats;

pub use chain::Chain;
pub use circuit::Unavailable;
pub use config::{GovernorConfig, Jitter, Quota};
pub use governed::Governed;
pub use stats::{Latency, ProviderStats, WaitReason, WaitStats, kind_name, quantile};
