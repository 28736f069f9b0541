//! One call of a governed provider: a concurrency slot, the cooldown and the quota, then the
//! request, booked when it comes back.

use tokio::time::{Instant, sleep_until};

use super::{Attempt, Core, Failure, Governed};
use crate::events::Event;
use crate::governor::circuit::Unavailable;
use crate::governor::concurrency::Permit;
use crate::governor::pacer::Step;
use crate::governor::stats::WaitReason;
use crate::llm::structured::Reask;
use crate::llm::{Answer, Climb, PageText, Provider, Unsettled};

impl<P: Provider> Governed<P> {
    /// Waits for a slot, the cooldown and the quota, then makes one call (one request).
    /// `cap`: the output cap to ask for (`None`: the provider sends none of its own);
    /// `climb`: where the previous request of this batch left the structured-output ladder,
    /// when it asked again.
    pub(super) async fn attempt(
        &self,
        batch: &[PageText],
        chars: usize,
        cap: Option<u32>,
        climb: Option<Climb>,
        probe: bool,
    ) -> Attempt {
        let permit = self.slot().await;
        let tokens = self
            .lock()
            .pacer
            .estimate_tokens(chars, cap.unwrap_or(self.config.max_output_tokens));
        let sent_at = match self.clearance(tokens, probe).await {
            Ok(sent_at) => sent_at,
            Err(refused) => return refused,
        };
        let name = self.inner.name();
        self.events.emit(Event::Sent { provider: name });
        let result = self.inner.classify_once(batch, cap, climb).await;
        let now = Instant::now();
        let ok = result.is_ok();
        self.events.emit(Event::Answered { provider: name, ok });
        let mut core = self.lock();
        core.stats.latencies.push(now - sent_at);
        match result {
            Ok(answer) => {
                self.on_answer(&mut core, &answer, sent_at, tokens, chars, now);
                drop(permit);
                Attempt::Answered(answer)
            }
            Err(Unsettled::Reask(r)) => {
                self.on_reask(&mut core, &r, sent_at, tokens, chars, now);
                Attempt::Reask(r.climb)
            }
            Err(Unsettled::Failed(err)) => Attempt::Failed(Failure {
                err,
                sent_at,
                tokens,
            }),
        }
    }

    /// A concurrency slot, at once or after a wait.
    async fn slot(&self) -> Permit<'_> {
        if let Some(p) = self.limiter.try_acquire() {
            return p;
        }
        let start = Instant::now();
        self.tell_wait(WaitReason::Concurrency, None);
        let p = self.limiter.acquire().await;
        self.lock()
            .stats
            .record_wait(WaitReason::Concurrency, start.elapsed());
        p
    }

    /// Waits out the cooldown and the quota; returns when the call may go, or the refusal if
    /// the provider became unavailable meanwhile (a probe goes anyway).
    async fn clearance(&self, tokens: f64, probe: bool) -> Result<Instant, Attempt> {
        let mut reservation = None;
        loop {
            let now = Instant::now();
            let step = {
                let mut core = self.lock();
                match core.circuit.peek(now) {
                    Some(why @ (Unavailable::Dead { .. } | Unavailable::Open { .. })) if !probe => {
                        core.stats.skipped += 1;
                        return Err(Attempt::Refused(self.unavailable_error(why, now)));
                    }
                    _ => {}
                }
                let step = core.pacer.next_step(&mut reservation, tokens, now);
                if step == Step::Go {
                    core.stats.calls += 1;
                    self.tell_pace(&mut core);
                }
                step
            };
            match step {
                Step::Go => return Ok(now),
                Step::Wait(until, reason) => {
                    self.tell_wait(reason, Some(until));
                    sleep_until(until).await;
                    self.lock().stats.record_wait(reason, until - now);
                }
            }
        }
    }

    /// Books an answer: pacing learns from it, the circuit closes, concurrency may grow.
    fn on_answer(
        &self,
        core: &mut Core,
        answer: &Answer,
        sent_at: Instant,
        tokens: f64,
        chars: usize,
        now: Instant,
    ) {
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
        core.stats.record_usage(answer.usage);
        if core.last_cut.is_none_or(|c| sent_at > c) {
            let limit = core.aimd.on_success();
            self.limiter.set_limit(limit);
        }
        self.tell_pace(core);
    }

    /// Books a request that stepped the structured-output ladder down. It was sent, so it
    /// counts (its request, its tokens, a refusal among the failures), but it is no failure
    /// of the provider: no backoff, no retry budget, no circuit-breaker strike.
    fn on_reask(
        &self,
        core: &mut Core,
        r: &Reask,
        sent_at: Instant,
        tokens: f64,
        chars: usize,
        now: Instant,
    ) {
        core.stats.reasks += 1;
        match &r.refusal {
            Some(err) => {
                core.stats.record_failure(err.kind);
                core.pacer.on_error(sent_at, tokens);
            }
            None => {
                let hints = &r.rate_limits;
                core.pacer
                    .on_success(sent_at, tokens, chars, r.usage, hints, now);
                core.stats.record_usage(r.usage);
            }
        }
    }
}
