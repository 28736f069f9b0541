//! [`Governed`]: one provider behind pacing, the shared cooldown, adaptive concurrency, bounded
//! retries and a circuit. The decisions live in the pure modules; this is the thin async loop.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::{Instant, sleep_until};

use super::action::{Action, action};
use super::budget::RetryBudget;
use super::circuit::{Admit, Circuit, Unavailable};
use super::concurrency::{Aimd, Limiter};
use super::config::GovernorConfig;
use super::pacer::{Pacer, Step};
use super::stats::{ProviderStats, WaitReason};
use crate::llm::{Answer, LlmError, LlmErrorKind, OutputBudget, PageText, Provider, Usage};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A provider client behind its governor. Implements [`Provider`], so it drops in wherever a
/// raw client would go; share it (e.g. in an `Arc`) so that every request passes through it.
pub struct Governed<P> {
    inner: P,
    config: GovernorConfig,
    limiter: Limiter,
    core: Mutex<Core>,
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
}

/// What a batch does after a failed call.
enum Next {
    Return(LlmError),
    Split,
    /// Retry, after this request's own backoff if any (a 429's wait is the shared cooldown).
    Retry(Option<Duration>),
}

/// How one attempt ended.
enum Attempt {
    Answered(Answer),
    Failed {
        err: LlmError,
        sent_at: Instant,
        tokens: f64,
    },
    /// Not sent: the provider became unavailable while this request waited.
    Refused(LlmError),
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
        };
        let limiter = Limiter::new(core.aimd.limit());
        Self {
            inner,
            config,
            limiter,
            core: Mutex::new(core),
        }
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

    /// The chain handed a batch this provider failed (or refused) to the next provider.
    pub fn record_fallback(&self) {
        self.lock().stats.fallbacks += 1;
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
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let (err, sent_at, tokens) = match self.attempt(batch, chars, cap, probe).await {
                Attempt::Answered(a) => return Ok(a),
                Attempt::Refused(err) => return Err(err),
                Attempt::Failed {
                    err,
                    sent_at,
                    tokens,
                } => (err, sent_at, tokens),
            };
            // Cut off at the cap: once, ask again with twice the cap before splitting.
            if err.kind == LlmErrorKind::Truncated && !widened {
                if let Some(wider) = budget.and_then(OutputBudget::widened) {
                    widened = true;
                    self.on_truncated(&err, sent_at, tokens, wider);
                    cap = Some(wider);
                    continue;
                }
            }
            let now = Instant::now();
            match self.after_failure(err, sent_at, tokens, batch.len(), attempt, probe, now) {
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
                        sleep_until(now + wait).await;
                        self.lock().stats.record_wait(WaitReason::Backoff5xx, wait);
                    }
                }
            }
        }
    }

    /// Books a truncated answer that will be asked again with `wider` as the output cap. It
    /// spends no retry budget: it happens at most once per batch, and only after an answer.
    fn on_truncated(&self, err: &LlmError, sent_at: Instant, tokens: f64, wider: u32) {
        let mut core = self.lock();
        core.stats.record_failure(err.kind);
        core.pacer.on_error(sent_at, tokens);
        core.circuit.on_success(); // it answered: the provider is alive
        core.stats.retries += 1;
        core.stats.truncation_retries += 1;
        tracing::warn!(provider = self.inner.name(), max_output_tokens = wider, error = %err, "answer cut off: asking again with twice the output cap");
    }

    /// Books a failed call and decides what comes next (synchronously, under the lock).
    #[allow(clippy::too_many_arguments)]
    fn after_failure(
        &self,
        err: LlmError,
        sent_at: Instant,
        tokens: f64,
        batch_len: usize,
        attempt: u32,
        probe: bool,
        now: Instant,
    ) -> Next {
        let name = self.inner.name();
        let mut core = self.lock();
        core.stats.record_failure(err.kind);
        core.last_error = Some(err.clone());
        let backoff_wait = match action(err.kind, batch_len, self.config.max_cooldown) {
            Action::CoolDown { hint } => {
                let n = core.pacer.consecutive_429s();
                let wait = hint.unwrap_or_else(|| {
                    self.config
                        .backoff
                        .full_jitter(n, self.config.jitter.sample())
                });
                if core.pacer.on_rate_limited(sent_at, tokens, wait, now) {
                    let limit = core.aimd.on_congestion();
                    self.limiter.set_limit(limit);
                    core.last_cut = Some(now);
                    tracing::warn!(
                        provider = name,
                        wait_ms = wait.as_millis() as u64,
                        concurrency = limit,
                        rpm = core
                            .pacer
                            .rate_per_minute()
                            .map(|r| (r * 10.0).round() / 10.0),
                        "rate limited: pausing the provider"
                    );
                }
                None
            }
            Action::SlowDown { hint } => {
                if core.pacer.on_slow_down(sent_at, tokens, now) {
                    let limit = core.aimd.on_congestion();
                    self.limiter.set_limit(limit);
                    core.last_cut = Some(now);
                    tracing::warn!(
                        provider = name,
                        concurrency = limit,
                        rpm = core
                            .pacer
                            .rate_per_minute()
                            .map(|r| (r * 10.0).round() / 10.0),
                        "asked to slow down: lowering the pace"
                    );
                }
                Some(hint.unwrap_or_else(|| {
                    self.config
                        .backoff
                        .full_jitter(attempt - 1, self.config.jitter.sample())
                }))
            }
            Action::Backoff { hint } => {
                core.pacer.on_error(sent_at, tokens);
                if matches!(
                    err.kind,
                    LlmErrorKind::Overloaded { .. } | LlmErrorKind::Timeout
                ) && core.last_cut.is_none_or(|c| sent_at > c)
                {
                    let limit = core.aimd.on_congestion();
                    self.limiter.set_limit(limit);
                    core.last_cut = Some(now);
                }
                Some(hint.unwrap_or_else(|| {
                    self.config
                        .backoff
                        .full_jitter(attempt - 1, self.config.jitter.sample())
                }))
            }
            Action::Unavailable { wait } => {
                core.pacer.on_error(sent_at, tokens);
                core.circuit.open_until(now + wait);
                tracing::warn!(
                    provider = name,
                    wait_s = wait.as_secs_f64(),
                    ceiling_s = self.config.max_cooldown.as_secs_f64(),
                    "provider asked for a wait above the ceiling: unavailable until then"
                );
                return Next::Return(err);
            }
            Action::Dead { quota } => {
                core.pacer.on_error(sent_at, tokens);
                core.circuit.kill(quota);
                tracing::warn!(provider = name, error = %err, "provider unavailable for the rest of the run");
                return Next::Return(err);
            }
            Action::Split => {
                core.pacer.on_error(sent_at, tokens);
                core.circuit.on_success(); // it answered: the provider is alive
                core.stats.splits += 1;
                return Next::Split;
            }
            Action::Fail => {
                core.pacer.on_error(sent_at, tokens);
                if probe {
                    core.circuit.on_success();
                }
                return Next::Return(err);
            }
        };
        if attempt >= self.config.max_attempts || !core.budget.try_withdraw() {
            if attempt < self.config.max_attempts {
                core.stats.budget_exhausted += 1;
                tracing::warn!(provider = name, error = %err, "retry budget spent: not retrying");
            }
            if core.circuit.on_failure(now) {
                tracing::warn!(provider = name, error = %err, probe_after_s = self.config.probe_after.as_secs_f64(), "provider failing repeatedly: skipping it until a probe");
            }
            return Next::Return(err);
        }
        core.stats.retries += 1;
        // One line per retry at the default level: a person watching a slow run sees why.
        tracing::warn!(provider = name, attempt, error = %err, "retrying");
        Next::Retry(backoff_wait)
    }

    /// Waits for a slot, the cooldown and the quota, then makes one call.
    /// `cap`: the output cap to ask for (`None`: the provider sends none of its own).
    async fn attempt(
        &self,
        batch: &[PageText],
        chars: usize,
        cap: Option<u32>,
        probe: bool,
    ) -> Attempt {
        let start = Instant::now();
        let permit = match self.limiter.try_acquire() {
            Some(p) => p,
            None => {
                let p = self.limiter.acquire().await;
                self.lock()
                    .stats
                    .record_wait(WaitReason::Concurrency, start.elapsed());
                p
            }
        };
        let tokens = self
            .lock()
            .pacer
            .estimate_tokens(chars, cap.unwrap_or(self.config.max_output_tokens));
        let mut reservation = None;
        let sent_at = loop {
            let now = Instant::now();
            let step = {
                let mut core = self.lock();
                match core.circuit.peek(now) {
                    Some(why @ (Unavailable::Dead { .. } | Unavailable::Open { .. })) if !probe => {
                        core.stats.skipped += 1;
                        return Attempt::Refused(self.unavailable_error(why, now));
                    }
                    _ => {}
                }
                let step = core.pacer.next_step(&mut reservation, tokens, now);
                if step == Step::Go {
                    core.stats.calls += 1;
                }
                step
            };
            match step {
                Step::Go => break now,
                Step::Wait(until, reason) => {
                    sleep_until(until).await;
                    self.lock().stats.record_wait(reason, until - now);
                }
            }
        };
        let result = match cap {
            Some(cap) => self.inner.classify_capped(batch, cap).await,
            None => self.inner.classify(batch).await,
        };
        let now = Instant::now();
        let mut core = self.lock();
        core.stats.latencies.push(now - sent_at);
        match result {
            Ok(answer) => {
                core.pacer.on_success(
                    sent_at,
                    tokens,
                    chars,
                    answer.usage,
                    &answer.rate_limits,
                    now,
                );
                core.circuit.on_success();
                core.stats.successes += 1;
                if let Some(u) = answer.usage {
                    core.stats.tokens_in += u.input_tokens;
                    core.stats.tokens_cached += u.cached_input_tokens;
                    core.stats.tokens_out += u.output_tokens;
                }
                if core.last_cut.is_none_or(|c| sent_at > c) {
                    let limit = core.aimd.on_success();
                    self.limiter.set_limit(limit);
                }
                drop(permit);
                Attempt::Answered(answer)
            }
            Err(err) => Attempt::Failed {
                err,
                sent_at,
                tokens,
            },
        }
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
