//! [`Governed`]: one provider behind pacing, the shared cooldown, adaptive concurrency, bounded
//! retries and a circuit. The decisions live in the pure modules; this is the thin async loop.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::{Instant, sleep_until};

use super::budget::RetryBudget;
use super::circuit::{Admit, Circuit, Unavailable};
use super::concurrency::{Aimd, Limiter};
use super::config::GovernorConfig;
use super::pacer::Pacer;
use super::stats::{ProviderStats, WaitReason};
use crate::events::{Event, EventSink};
use crate::llm::{Answer, Climb, LlmError, LlmErrorKind, OutputBudget, PageText, Provider, Usage};

mod call;
mod failure;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A provider client behind its governor. Implements [`Provider`], so it drops in wherever a
/// raw client would go; share it (e.g. in an `Arc`) so that every request passes through it.
pub struct Governed<P> {
    inner: P,
    config: GovernorConfig,
    limiter: Limiter,
    core: Mutex<Core>,
    /// Where waits, retries and unavailability are told ([`crate::events`]).
    events: EventSink,
}

struct Core {
    pacer: Pacer,
    aimd: Aimd,
    circuit: Circuit,
    budget: RetryBudget,
    stats: ProviderStats,
    /// When concurrency was last cut: failures of requests sent before it don't cut again, and
    /// their successes don't count towards growth.
    last_cut: Option<Instant>,
    /// The last error a call returned, for saying why the provider is down.
    last_error: Option<LlmError>,
    /// The paced rate last told as an [`Event::Pacing`], rounded to whole requests a minute.
    told_rpm: Option<f64>,
}

/// What a batch does after a failed call.
enum Next {
    Return(LlmError),
    Split,
    /// Retry, after this request's own backoff if any (a 429's wait is the shared cooldown).
    Retry(Option<Duration>),
}

/// A call that failed, with what the pacer needs to book it.
struct Failure {
    err: LlmError,
    sent_at: Instant,
    tokens: f64,
}

/// How one attempt ended.
enum Attempt {
    Answered(Answer),
    Failed(Failure),
    /// Not sent: the provider became unavailable while this request waited.
    Refused(LlmError),
    /// The structured-output ladder stepped down: ask again at once, as a new request.
    Reask(Climb),
}

impl<P: Provider> Governed<P> {
    pub fn new(inner: P, config: GovernorConfig) -> Self {
        let now = Instant::now();
        let core = Core {
            pacer: Pacer::new(config.quota.rpm, config.quota.tpm, config.headroom, now),
            aimd: Aimd::new(config.initial_concurrency, config.max_concurrency),
            circuit: Circuit::new(config.failure_threshold, config.probe_after),
            budget: RetryBudget::new(config.retry_budget_ratio, config.retry_budget_floor),
            stats: ProviderStats::new(inner.name()),
            last_cut: None,
            last_error: None,
            told_rpm: None,
        };
        let limiter = Limiter::new(core.aimd.limit());
        Self {
            inner,
            config,
            limiter,
            core: Mutex::new(core),
            events: EventSink::none(),
        }
    }

    /// Tells this governor's events to `events` (a [`super::Chain`] gives all its providers
    /// one sink).
    pub fn set_events(&mut self, events: EventSink) {
        self.events = events;
    }

    pub fn events(&self) -> &EventSink {
        &self.events
    }

    pub fn inner(&self) -> &P {
        &self.inner
    }

    pub fn config(&self) -> &GovernorConfig {
        &self.config
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ProviderStats {
        let now = Instant::now();
        let core = self.lock();
        let mut s = core.stats.clone();
        s.concurrency_limit = core.aimd.limit();
        s.paced_rpm = core.pacer.rate_per_minute();
        s.unavailable = core.circuit.peek(now).map(|u| describe(u, now));
        s
    }

    /// Why the provider would not be called now, if it would not.
    pub fn unavailable(&self) -> Option<Unavailable> {
        self.lock().circuit.peek(Instant::now())
    }

    /// One line saying why this provider cannot be used, if it cannot and has never
    /// answered in this run: its key was refused or its quota is gone, it asked to wait
    /// beyond the ceiling, or it failed on every call until its circuit opened (unreachable,
    /// failing server). `None` while it is usable, probing, or once it answered a call.
    pub fn down_reason(&self) -> Option<String> {
        let now = Instant::now();
        let core = self.lock();
        if core.stats.successes > 0 {
            return None;
        }
        let why = core.circuit.peek(now)?;
        let name = self.inner.name();
        let last = core.last_error.as_ref();
        Some(match (why, last) {
            (Unavailable::Probing, _) => return None,
            // The error says it all: "quota exhausted", "not authorised: check the API key".
            (Unavailable::Dead { .. }, Some(e)) => e.to_string(),
            (Unavailable::Open { rate_limited, .. }, Some(e)) => {
                let state = if rate_limited {
                    "asked to wait longer than the ceiling"
                } else {
                    "failed on every call"
                };
                // The error's own text, without its "provider: " prefix.
                let text = e.to_string();
                let text = text
                    .strip_prefix(&format!("{name}: "))
                    .unwrap_or(&text)
                    .to_string();
                format!("{name}: {state}: {text}")
            }
            (why, None) => format!("{name}: {}", describe(why, now)),
        })
    }

    /// The chain handed a batch of `pages` this provider failed (or refused) to `to`.
    pub fn record_fallback(&self, to: &'static str, pages: usize) {
        self.lock().stats.fallbacks += 1;
        self.events.emit(Event::Fallback {
            from: self.inner.name(),
            to,
            pages,
        });
    }

    /// Tells that a request waits for `reason` (until `until`, when known).
    fn tell_wait(&self, reason: WaitReason, until: Option<Instant>) {
        self.events.emit(Event::Wait {
            provider: self.inner.name(),
            reason,
            until,
        });
    }

    /// Tells that the provider became unavailable, if it did.
    fn tell_unavailable(&self, core: &Core, now: Instant) {
        if let Some(why) = core.circuit.peek(now) {
            self.events.emit(Event::Unavailable {
                provider: self.inner.name(),
                reason: describe(why, now),
            });
        }
    }

    fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn unavailable_error(&self, why: Unavailable, now: Instant) -> LlmError {
        let kind = match why {
            Unavailable::Dead { quota: true } => LlmErrorKind::QuotaExhausted,
            Unavailable::Dead { quota: false } => LlmErrorKind::Auth,
            Unavailable::Open {
                until,
                rate_limited: true,
            } => LlmErrorKind::RateLimited {
                retry_after: Some(until - now),
            },
            Unavailable::Open {
                until,
                rate_limited: false,
            } => LlmErrorKind::Overloaded {
                retry_after: Some(until - now),
            },
            Unavailable::Probing => LlmErrorKind::Overloaded { retry_after: None },
        };
        LlmError::new(
            self.inner.name(),
            kind,
            None,
            format!("not called: {}", describe(why, now)),
        )
    }

    /// One batch: admission, attempts with retries, split on "too large".
    fn run<'a>(&'a self, batch: &'a [PageText]) -> BoxFuture<'a, Result<Answer, LlmError>> {
        Box::pin(async move {
            let now = Instant::now();
            let probe = {
                let mut core = self.lock();
                match core.circuit.admit(now) {
                    Admit::Call => false,
                    Admit::Probe => true,
                    Admit::Refuse(why) => {
                        core.stats.skipped += 1;
                        return Err(self.unavailable_error(why, now));
                    }
                }
            };
            if probe {
                tracing::info!(provider = self.inner.name(), "probing provider again");
            }
            let mut guard = ProbeGuard {
                gov: self,
                armed: probe,
            };
            let result = self.attempts(batch, probe).await;
            guard.armed = false;
            result
        })
    }

    async fn attempts(&self, batch: &[PageText], probe: bool) -> Result<Answer, LlmError> {
        let name = self.inner.name();
        let chars: usize = batch
            .iter()
            .map(|p| p.title.chars().count() + p.text.chars().count())
            .sum();
        let budget = self.inner.output_budget(batch);
        let mut cap = budget.map(|b| b.tokens);
        let mut widened = false;
        self.lock().budget.deposit();
        let (mut attempt, mut climb) = (0, None);
        loop {
            let failure = match self.attempt(batch, chars, cap, climb.take(), probe).await {
                Attempt::Answered(a) => return Ok(a),
                Attempt::Refused(err) => return Err(err),
                // Not a failed attempt: the re-ask is admitted like any request, nothing more.
                Attempt::Reask(at) => {
                    climb = Some(at);
                    continue;
                }
                Attempt::Failed(failure) => failure,
            };
            attempt += 1;
            // Cut off at the cap: once, ask again with twice the cap before splitting.
            if failure.err.kind == LlmErrorKind::Truncated && !widened {
                if let Some(wider) = budget.and_then(OutputBudget::widened) {
                    widened = true;
                    self.on_truncated(&failure, wider);
                    cap = Some(wider);
                    continue;
                }
            }
            let now = Instant::now();
            match self.after_failure(failure, batch.len(), attempt, probe, now) {
                Next::Return(err) => return Err(err),
                Next::Split => {
                    tracing::warn!(
                        provider = name,
                        pages = batch.len(),
                        "request too large: splitting the batch"
                    );
                    let (a, b) = batch.split_at(batch.len() / 2);
                    let (a, b) = futures::future::join(self.run(a), self.run(b)).await;
                    return Ok(merge(a?, b?));
                }
                Next::Retry(wait) => {
                    if let Some(wait) = wait.filter(|w| !w.is_zero()) {
                        self.tell_wait(WaitReason::Backoff5xx, Some(now + wait));
                        sleep_until(now + wait).await;
                        self.lock().stats.record_wait(WaitReason::Backoff5xx, wait);
                    }
                }
            }
        }
    }

    /// Books a truncated answer that will be asked again with `wider` as the output cap. It
    /// spends no retry budget: it happens at most once per batch, and only after an answer.
    fn on_truncated(&self, f: &Failure, wider: u32) {
        let (err, mut core) = (&f.err, self.lock());
        core.stats.record_failure(err.kind);
        core.pacer.on_error(f.sent_at, f.tokens);
        core.circuit.on_success(); // it answered: the provider is alive
        core.stats.retries += 1;
        core.stats.truncation_retries += 1;
        tracing::warn!(provider = self.inner.name(), max_output_tokens = wider, error = %err, "answer cut off: asking again with twice the output cap");
    }
}

/// Gives the probe back if the probing batch is dropped before it decided anything.
struct ProbeGuard<'a, P: Provider> {
    gov: &'a Governed<P>,
    armed: bool,
}

impl<P: Provider> Drop for ProbeGuard<'_, P> {
    fn drop(&mut self) {
        if self.armed {
            self.gov.lock().circuit.release_probe(Instant::now());
        }
    }
}

impl<P: Provider> Provider for Governed<P> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn classify(&self, batch: &[PageText]) -> Result<Answer, LlmError> {
        self.run(batch).await
    }
}

/// The answers for two halves of a split batch, as one.
fn merge(mut a: Answer, b: Answer) -> Answer {
    a.labels.extend(b.labels);
    a.usage = match (a.usage, b.usage) {
        (Some(x), Some(y)) => Some(Usage {
            input_tokens: x.input_tokens + y.input_tokens,
            output_tokens: x.output_tokens + y.output_tokens,
            cached_input_tokens: x.cached_input_tokens + y.cached_input_tokens,
        }),
        (x, y) => x.or(y),
    };
    a.rate_limits = b.rate_limits;
    a
}

fn describe(why: Unavailable, now: Instant) -> String {
    let secs = |until: Instant| until.saturating_duration_since(now).as_secs_f64();
    match why {
        Unavailable::Dead { quota: true } => "quota exhausted earlier in this run".into(),
        Unavailable::Dead { quota: false } => "key refused earlier in this run".into(),
        Unavailable::Open {
            until,
            rate_limited: true,
        } => format!(
            "asked to wait longer than the ceiling; probing again in {:.1}s",
            secs(until)
        ),
        Unavailable::Open {
            until,
            rate_limited: false,
        } => format!("failing repeatedly; probing again in {:.1}s", secs(until)),
        Unavailable::Probing => "a probe call is deciding whether it is back".into(),
    }
}
