//! The figures a report shows per provider and for the cache. A provider's figures are the
//! governor's own [`ProviderStats`], not a copy: the report only adds the model asked (for
//! its price) and what the provider's batch service answered.

use crate::governor::{ProviderStats, WaitReason, WaitStats};

/// One provider's figures for the run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProviderMetrics {
    /// What the provider's governor counted, including the batch service's tokens
    /// ([`ProviderMetrics::add_batch`]).
    pub stats: ProviderStats,
    /// The model asked; `None` for `rules`. Used to look up the price.
    pub model: Option<String>,
    /// What the provider's batch service answered, priced at
    /// [`super::model::BATCH_PRICE_FACTOR`] of the interactive rate.
    pub batch: BatchUsage,
    /// How the provider was asked for JSON at the end of the run (its structured-output rung:
    /// `json_schema`, `json_object`, `prompt`, `response_json_schema`, `response_schema`);
    /// `None` for `rules`.
    pub structured_output: Option<String>,
}

/// Requests answered by a provider's batch service and their tokens (also counted in the
/// provider's totals).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchUsage {
    /// Requests answered by a batch job, and the pages they covered.
    pub requests: u64,
    pub pages: u64,
    pub tokens_in: u64,
    pub tokens_out: u64,
}

impl ProviderMetrics {
    /// A provider that did nothing yet.
    pub fn new(provider: &'static str, model: Option<String>) -> Self {
        Self::from_stats(ProviderStats::new(provider), model)
    }

    /// The governor's figures for a provider asking `model`.
    pub fn from_stats(stats: ProviderStats, model: Option<String>) -> Self {
        Self {
            stats,
            model,
            batch: BatchUsage::default(),
            structured_output: None,
        }
    }

    pub fn provider(&self) -> &'static str {
        self.stats.provider
    }

    pub fn wait(&self, reason: WaitReason) -> WaitStats {
        self.stats.wait(reason)
    }

    /// Counts what a batch job answered: its tokens join the provider's totals and are
    /// priced at the batch rate.
    pub fn add_batch(&mut self, requests: u64, pages: u64, tokens_in: u64, tokens_out: u64) {
        self.batch.requests += requests;
        self.batch.pages += pages;
        self.batch.tokens_in += tokens_in;
        self.batch.tokens_out += tokens_out;
        self.stats.tokens_in += tokens_in;
        self.stats.tokens_out += tokens_out;
    }
}

/// The classification cache's counters for the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheMetrics {
    pub hits: u64,
    pub misses: u64,
}

impl CacheMetrics {
    /// Hits out of lookups, 0..=1; `None` when nothing was looked up.
    pub fn hit_rate(&self) -> Option<f64> {
        let lookups = self.hits + self.misses;
        (lookups > 0).then(|| self.hits as f64 / lookups as f64)
    }
}
