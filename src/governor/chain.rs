//! [`Chain`]: providers in priority order; a batch the first cannot serve goes to the next.

use super::governed::Governed;
use super::stats::ProviderStats;
use crate::events::EventSink;
use crate::llm::{Answer, LlmError, PageText, Provider};

/// Governed providers, primary first. A provider that is unavailable (quota gone, key
/// refused, asked for a wait above the ceiling, failing repeatedly) refuses at once, so the
/// batch goes straight to the next one; any error a provider finally returns for a batch
/// (after its own retries) sends the batch on too. Each hand-over is counted and logged.
pub struct Chain<P> {
    providers: Vec<Governed<P>>,
    events: EventSink,
}

impl<P: Provider> Chain<P> {
    /// The providers all tell their events to one new sink, [`Chain::events`].
    ///
    /// # Panics
    /// If `providers` is empty.
    pub fn new(providers: Vec<Governed<P>>) -> Self {
        Self::with_events(providers, EventSink::none())
    }

    /// [`Chain::new`], telling the providers' events to `events` (e.g. a service's sink that
    /// several runs share with this chain).
    ///
    /// # Panics
    /// If `providers` is empty.
    pub fn with_events(mut providers: Vec<Governed<P>>, events: EventSink) -> Self {
        assert!(!providers.is_empty(), "a chain needs at least one provider");
        for p in &mut providers {
            p.set_events(events.clone());
        }
        Self { providers, events }
    }

    /// Where the providers tell their waits, retries, fallbacks and unavailability.
    pub fn events(&self) -> &EventSink {
        &self.events
    }

    pub fn providers(&self) -> &[Governed<P>] {
        &self.providers
    }

    /// When no provider can be used and none has answered a single call in this run (a total
    /// outage: every key refused, every quota gone, every server unreachable), one line per
    /// provider saying why; `None` otherwise. A run seeing this should stop: every page
    /// after would fail the same way.
    pub fn outage(&self) -> Option<Vec<String>> {
        self.providers.iter().map(Governed::down_reason).collect()
    }

    /// One snapshot per provider, in priority order.
    pub fn stats(&self) -> Vec<ProviderStats> {
        self.providers.iter().map(Governed::stats).collect()
    }
}

impl<P: Provider> Provider for Chain<P> {
    /// The primary's name.
    fn name(&self) -> &'static str {
        self.providers[0].name()
    }

    async fn classify(&self, batch: &[PageText]) -> Result<Answer, LlmError> {
        let mut providers = self.providers.iter().peekable();
        while let Some(p) = providers.next() {
            let err = match p.classify(batch).await {
                Ok(answer) => return Ok(answer),
                Err(err) => err,
            };
            let Some(next) = providers.peek() else {
                return Err(err);
            };
            p.record_fallback(next.name(), batch.len());
            tracing::warn!(from = p.name(), to = next.name(), error = %err, pages = batch.len(), "falling back");
        }
        unreachable!("the chain is never empty")
    }
}
