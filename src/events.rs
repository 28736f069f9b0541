//! One stream of run events: what the pipeline and the governor tell whoever watches a run.
//!
//! The pipeline (pages listed, taken, finished) and the governor (waits, retries, fallbacks,
//! providers becoming unavailable) emit [`Event`]s on an [`EventSink`]; the terminal progress
//! bar ([`crate::report::progress`]) is one consumer, and any other front end subscribes the
//! same way. Nothing here reads a log line: renaming a log field changes no consumer.
//!
//! An [`EventSink`] is a cheap handle: clone it into every producer. It fans each event out
//! to every subscriber, each with its own unbounded queue, so a slow subscriber never makes a
//! producer wait and never loses an event; a subscriber that drops its receiver is forgotten.
//! With no subscriber (the default, and in most tests) emitting costs a lock and nothing else.
//! A governor shared by several runs sends its events to every subscriber of its sink.

use std::fmt;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::governor::WaitReason;
use crate::llm::LlmErrorKind;
use crate::pipeline::PageOutcome;

/// Something that happened in a run.
#[derive(Debug, Clone)]
pub enum Event {
    /// The run took a page from the listing: `taken` pages so far.
    Listed { taken: u64 },
    /// The run takes no more pages (the listing ended, or `--limit` was reached): `total`
    /// pages taken. Not sent when the run is stopped first.
    ListingEnded { total: u64 },
    /// A page goes for classification: to the model, or answered from the cache.
    Classifying { id: String },
    /// A page's outcome.
    Page(Arc<PageOutcome>),
    /// A request waits before it is sent: until `until` (`None`: until a concurrency slot
    /// frees up).
    Wait {
        provider: &'static str,
        reason: WaitReason,
        until: Option<Instant>,
    },
    /// A request went to the provider.
    Sent { provider: &'static str },
    /// A request's answer (or error) came back.
    Answered { provider: &'static str, ok: bool },
    /// A failed request is tried again (`attempt` is the one that failed).
    Retry {
        provider: &'static str,
        attempt: u32,
        kind: LlmErrorKind,
    },
    /// A batch `from` could not serve goes to `to`.
    Fallback {
        from: &'static str,
        to: &'static str,
        pages: usize,
    },
    /// The provider will not be called for a while, or for the rest of the run: `reason`.
    Unavailable {
        provider: &'static str,
        reason: String,
    },
    /// The request rate the provider is paced to changed.
    Pacing { provider: &'static str, rpm: f64 },
    /// The run is over: `taken` pages taken from the listing, `done` with an outcome.
    Finished { taken: u64, done: u64 },
    /// `--via batch --wait`: the open batch jobs after a poll, by their request counts
    /// (`total` requests, `succeeded` and `failed` so far, in `jobs` jobs still running).
    BatchJobs {
        jobs: usize,
        total: u64,
        succeeded: u64,
        failed: u64,
    },
}

/// Where events go: a cloneable handle shared by every producer of a run (see the module
/// docs). `EventSink::default()` has no subscriber.
#[derive(Clone, Default)]
pub struct EventSink {
    subscribers: Arc<Mutex<Vec<mpsc::UnboundedSender<Event>>>>,
}

impl fmt::Debug for EventSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventSink")
            .field("subscribers", &self.lock().len())
            .finish()
    }
}

impl EventSink {
    /// A sink nobody listens to (for tests and for runs without a front end).
    pub fn none() -> Self {
        Self::default()
    }

    /// A new receiver of every event emitted from now on.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<Event> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().push(tx);
        rx
    }

    /// Whether anyone listens; producers skip building costly events when nobody does.
    pub fn is_watched(&self) -> bool {
        !self.lock().is_empty()
    }

    /// Sends `event` to every subscriber; forgets those that dropped their receiver.
    pub fn emit(&self, event: Event) {
        let mut subs = self.lock();
        match subs.len() {
            0 => {}
            1 => {
                if subs[0].send(event).is_err() {
                    subs.clear();
                }
            }
            _ => subs.retain(|tx| tx.send(event.clone()).is_ok()),
        }
    }

    /// Sends the event `make` builds, only if anyone listens.
    pub fn emit_with(&self, make: impl FnOnce() -> Event) {
        if self.is_watched() {
            self.emit(make());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<mpsc::UnboundedSender<Event>>> {
        self.subscribers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subscriber_gets_every_event_and_a_dropped_one_is_forgotten() {
        let sink = EventSink::none();
        sink.emit(Event::Listed { taken: 1 }); // nobody listens: dropped
        let mut a = sink.subscribe();
        let b = sink.subscribe();
        let producer = sink.clone();
        producer.emit(Event::ListingEnded { total: 2 });
        assert!(matches!(a.try_recv(), Ok(Event::ListingEnded { total: 2 })));
        drop(b);
        producer.emit(Event::Finished { taken: 2, done: 2 });
        assert!(matches!(a.try_recv(), Ok(Event::Finished { .. })));
        assert!(a.try_recv().is_err());
        assert_eq!(sink.lock().len(), 1);
        drop(a);
        sink.emit(Event::Listed { taken: 3 });
        assert!(!sink.is_watched());
    }

    #[test]
    fn nothing_is_built_for_nobody() {
        let sink = EventSink::none();
        sink.emit_with(|| panic!("built an event nobody listens to"));
    }
}
