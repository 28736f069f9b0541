//! What a governed provider does after a failed call: one response per error class
//! ([`action`]), booked under the lock, and bounded retries.

use std::sync::MutexGuard;
use std::time::Duration;

use tokio::time::Instant;

use super::{Core, Failure, Governed, Next};
use crate::events::Event;
use crate::governor::action::{Action, action};
use crate::llm::{LlmError, LlmErrorKind, Provider};

impl<P: Provider> Governed<P> {
    /// Books a failed call and decides what comes next (synchronously, under the lock).
    pub(super) fn after_failure(
        &self,
        f: Failure,
        batch_len: usize,
        attempt: u32,
        probe: bool,
        now: Instant,
    ) -> Next {
        let mut core = self.lock();
        core.stats.record_failure(f.err.kind);
        core.last_error = Some(f.err.clone());
        let backoff = match action(f.err.kind, batch_len, self.config.max_cooldown) {
            Action::CoolDown { hint } => {
                self.cool_down(&mut core, &f, hint, now);
                None
            }
            Action::Backoff { hint } => Some(self.back_off(&mut core, &f, hint, attempt, now)),
            Action::SlowDown { hint } => Some(self.slow_down(&mut core, &f, hint, attempt, now)),
            other => return self.stop(&mut core, other, f, probe, now),
        };
        self.retry_or_give_up(core, f.err, backoff, attempt, now)
    }

    /// A 429: the whole provider pauses (the shared cooldown), and concurrency is cut once
    /// per pause. The request itself retries after the pause.
    fn cool_down(&self, core: &mut Core, f: &Failure, hint: Option<Duration>, now: Instant) {
        let n = core.pacer.consecutive_429s();
        let wait = hint.unwrap_or_else(|| {
            self.config
                .backoff
                .full_jitter(n, self.config.jitter.sample())
        });
        if core.pacer.on_rate_limited(f.sent_at, f.tokens, wait, now) {
            let limit = core.aimd.on_congestion();
            self.limiter.set_limit(limit);
            core.last_cut = Some(now);
            tracing::warn!(
                provider = self.inner.name(),
                wait_ms = wait.as_millis() as u64,
                concurrency = limit,
                rpm = core
                    .pacer
                    .rate_per_minute()
                    .map(|r| (r * 10.0).round() / 10.0),
                "rate limited: pausing the provider"
            );
        }
        self.tell_pace(core);
    }

    /// A 5xx, timeout or transport error: this request backs off; an overload or timeout of
    /// a request sent after the last cut cuts concurrency.
    fn back_off(
        &self,
        core: &mut Core,
        f: &Failure,
        hint: Option<Duration>,
        attempt: u32,
        now: Instant,
    ) -> Duration {
        core.pacer.on_error(f.sent_at, f.tokens);
        let congested = matches!(
            f.err.kind,
            LlmErrorKind::Overloaded { .. } | LlmErrorKind::Timeout
        );
        if congested && core.last_cut.is_none_or(|c| f.sent_at > c) {
            let limit = core.aimd.on_congestion();
            self.limiter.set_limit(limit);
            core.last_cut = Some(now);
        }
        hint.unwrap_or_else(|| {
            self.config
                .backoff
                .full_jitter(attempt - 1, self.config.jitter.sample())
        })
    }

    /// OpenAI `slow_down`: the pace is lowered (the request rate halved, concurrency cut, once
    /// per event) instead of pausing the provider; this request backs off, then retries.
    fn slow_down(
        &self,
        core: &mut Core,
        f: &Failure,
        hint: Option<Duration>,
        attempt: u32,
        now: Instant,
    ) -> Duration {
        if core.pacer.on_slow_down(f.sent_at, f.tokens, now) {
            let limit = core.aimd.on_congestion();
            self.limiter.set_limit(limit);
            core.last_cut = Some(now);
            tracing::warn!(
                provider = self.inner.name(),
                concurrency = limit,
                rpm = core
                    .pacer
                    .rate_per_minute()
                    .map(|r| (r * 10.0).round() / 10.0),
                "asked to slow down: lowering the pace"
            );
            self.tell_pace(core);
        }
        hint.unwrap_or_else(|| {
            self.config
                .backoff
                .full_jitter(attempt - 1, self.config.jitter.sample())
        })
    }

    /// The responses that end the attempt at once: unavailable, dead, split, fail.
    fn stop(&self, core: &mut Core, act: Action, f: Failure, probe: bool, now: Instant) -> Next {
        let name = self.inner.name();
        core.pacer.on_error(f.sent_at, f.tokens);
        match act {
            Action::Unavailable { wait } => {
                core.circuit.open_until(now + wait);
                tracing::warn!(
                    provider = name,
                    wait_s = wait.as_secs_f64(),
                    ceiling_s = self.config.max_cooldown.as_secs_f64(),
                    "provider asked for a wait above the ceiling: unavailable until then"
                );
                self.tell_unavailable(core, now);
            }
            Action::Dead { quota } => {
                core.circuit.kill(quota);
                tracing::warn!(provider = name, error = %f.err, "provider unavailable for the rest of the run");
                self.tell_unavailable(core, now);
            }
            Action::Split => {
                core.circuit.on_success(); // it answered: the provider is alive
                core.stats.splits += 1;
                return Next::Split;
            }
            Action::Fail
            | Action::CoolDown { .. }
            | Action::Backoff { .. }
            | Action::SlowDown { .. } => {
                if probe {
                    core.circuit.on_success();
                }
            }
        }
        Next::Return(f.err)
    }

    /// Retries unless this request's attempts or the run's retry budget are spent; a
    /// provider failing repeatedly has its circuit opened.
    fn retry_or_give_up(
        &self,
        mut core: MutexGuard<'_, Core>,
        err: LlmError,
        backoff: Option<Duration>,
        attempt: u32,
        now: Instant,
    ) -> Next {
        let name = self.inner.name();
        if attempt >= self.config.max_attempts || !core.budget.try_withdraw() {
            if attempt < self.config.max_attempts {
                core.stats.budget_exhausted += 1;
                tracing::warn!(provider = name, error = %err, "retry budget spent: not retrying");
            }
            if core.circuit.on_failure(now) {
                tracing::warn!(provider = name, error = %err, probe_after_s = self.config.probe_after.as_secs_f64(), "provider failing repeatedly: skipping it until a probe");
                self.tell_unavailable(&core, now);
            }
            return Next::Return(err);
        }
        core.stats.retries += 1;
        // One line per retry at the default level: a person watching a slow run sees why.
        tracing::warn!(provider = name, attempt, error = %err, "retrying");
        self.events.emit(Event::Retry {
            provider: name,
            attempt,
            kind: err.kind,
        });
        Next::Retry(backoff)
    }

    /// Tells the paced rate when it moved to another whole number of requests a minute.
    pub(super) fn tell_pace(&self, core: &mut Core) {
        let Some(rpm) = core.pacer.rate_per_minute() else {
            return;
        };
        if core.told_rpm != Some(rpm.round()) {
            core.told_rpm = Some(rpm.round());
            self.events.emit(Event::Pacing {
                provider: self.inner.name(),
                rpm,
            });
        }
    }
}
