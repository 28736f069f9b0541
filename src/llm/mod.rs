//! Asking an LLM to pick labels for a batch of pages.
//!
//! [`Provider`] is the seam. The HTTP clients ([`gemini::GeminiProvider`],
//! [`openai::OpenAiProvider`]) make exactly one request per [`Provider::classify_once`] call
//! and classify what went wrong into an [`LlmError`], or say to ask again a rung lower on the
//! structured-output ladder ([`Unsettled::Reask`]); pacing, retries, cooldowns and fallback
//! wrap them (see `crate::governor`), so there is one retry loop in the whole program and
//! every request, re-asks included, passes the governor.

mod any;
pub mod batch;
pub mod budget;
pub mod describe;
mod error;
pub mod examples;
pub mod gemini;
pub mod openai;
mod pacific;
pub mod prompt;
pub mod rules;
pub mod schema;
mod settings;
pub mod structured;
#[cfg(test)]
mod switches_tests;
pub mod validate;
mod wire;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

pub use any::AnyProvider;
pub use budget::OutputBudget;
pub use error::{LlmError, LlmErrorKind};
pub use settings::ProviderSettings;
pub use structured::{Climb, Unsettled};
pub use wire::parse_go_duration;

/// One page as the model sees it: id, title and extracted plain text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageText {
    pub id: String,
    pub title: String,
    pub text: String,
}

/// Tokens a call consumed, as the provider reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Of `input_tokens`, those read from the provider's prompt cache (a repeated prefix),
    /// billed at the cached rate: Gemini `cachedContentTokenCount`, OpenAI
    /// `prompt_tokens_details.cached_tokens`.
    pub cached_input_tokens: u64,
}

/// Rate-limit state a provider reported in its response headers (OpenAI-style
/// `x-ratelimit-*`). Each field is optional: many servers send none of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimitHints {
    pub limit_requests: Option<u64>,
    pub limit_tokens: Option<u64>,
    pub remaining_requests: Option<u64>,
    pub remaining_tokens: Option<u64>,
    /// Time until the request bucket is full again.
    pub reset_requests: Option<Duration>,
    /// Time until the token bucket is full again.
    pub reset_tokens: Option<Duration>,
}

/// A provider's answer for one batch, before validation: for each page id the model
/// answered for, the labels it chose, as it wrote them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Which provider answered ("gemini", "openai", "rules").
    pub provider: &'static str,
    pub model: String,
    pub labels: BTreeMap<String, Vec<String>>,
    pub usage: Option<Usage>,
    pub rate_limits: RateLimitHints,
}

/// Something that picks labels for a batch of pages.
pub trait Provider: Send + Sync {
    /// A short lowercase name for logs and metrics ("gemini", "openai", "rules").
    fn name(&self) -> &'static str;

    /// Classifies the batch in one call. The answer is not yet validated.
    fn classify(&self, batch: &[PageText])
    -> impl Future<Output = Result<Answer, LlmError>> + Send;

    /// The output cap a call for this batch asks for, and its ceiling; `None` for providers
    /// that send none (the governor then reserves its configured cap).
    fn output_budget(&self, _batch: &[PageText]) -> Option<OutputBudget> {
        None
    }

    /// Classifies the batch in one call with `max_output_tokens` as the output cap instead of
    /// [`Provider::output_budget`]'s (the retry after a truncated answer). Providers without
    /// a cap ignore it.
    fn classify_capped(
        &self,
        batch: &[PageText],
        _max_output_tokens: u32,
    ) -> impl Future<Output = Result<Answer, LlmError>> + Send {
        self.classify(batch)
    }

    /// One request for the batch, with `cap` as the output cap (`None`: the provider's own),
    /// continuing the call `climb` left off (`None`: a new call). A step down the
    /// structured-output ladder comes back as [`Unsettled::Reask`]: the governor admits the re-ask
    /// as a request of its own ([`structured`]). Providers without a ladder make one
    /// [`Provider::classify`] (or [`Provider::classify_capped`]) call.
    fn classify_once(
        &self,
        batch: &[PageText],
        cap: Option<u32>,
        _climb: Option<Climb>,
    ) -> impl Future<Output = Result<Answer, Unsettled>> + Send {
        async move {
            match cap {
                Some(cap) => self.classify_capped(batch, cap).await,
                None => self.classify(batch).await,
            }
            .map_err(Unsettled::Failed)
        }
    }
}

impl<P: Provider> Provider for std::sync::Arc<P> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn classify(
        &self,
        batch: &[PageText],
    ) -> impl Future<Output = Result<Answer, LlmError>> + Send {
        (**self).classify(batch)
    }
    fn output_budget(&self, batch: &[PageText]) -> Option<OutputBudget> {
        (**self).output_budget(batch)
    }
    fn classify_capped(
        &self,
        batch: &[PageText],
        max_output_tokens: u32,
    ) -> impl Future<Output = Result<Answer, LlmError>> + Send {
        (**self).classify_capped(batch, max_output_tokens)
    }
    fn classify_once(
        &self,
        batch: &[PageText],
        cap: Option<u32>,
        climb: Option<Climb>,
    ) -> impl Future<Output = Result<Answer, Unsettled>> + Send {
        (**self).classify_once(batch, cap, climb)
    }
}
