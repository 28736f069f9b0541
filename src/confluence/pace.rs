//! The Confluence site's governor: every request to one site passes through one
//! [`SiteGovernor`], shared by every clone of the client, built from the LLM governor's parts
//! ([`crate::governor`]):
//!
//! 1. **Concurrency** ([`Limiter`] sized by [`Aimd`]): at most `TAG_SPACE_CONFLUENCE_CONCURRENCY`
//!    requests in flight, cut ×0.7 on a 429 or when the site says little is left, grown back
//!    one step per window of successes.
//! 2. **Shared cooldown** ([`Cooldown`]): a 429, or a 503 with a wait, pauses every request to
//!    the site until the wait has passed (Atlassian: an early retry "returns the same or a
//!    longer Retry-After"); without a hint, capped exponential backoff with full jitter.
//! 3. **Pacing** ([`Bucket`]): to Data Center's `X-RateLimit-FillRate` per
//!    `X-RateLimit-Interval-Seconds`, and on Cloud, once little is left, to what is left over
//!    the time until `X-RateLimit-Reset`.
//! 4. **Halt**: a quota 429 or a wait above `TAG_SPACE_MAX_COOLDOWN_SECS` stops every
//!    Confluence request of the run ([`Halt`]) and cancels the token from
//!    [`SiteGovernor::halt_token`], so the run ends with what it has done.
//!
//! Retries stay per request (the client's `max_retries`); only the waits are shared. Decisions
//! use tokio's clock, so all of this runs on a paused clock.

use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::ratelimit::{RateHeaders, show_time};
use crate::governor::Jitter;
use crate::governor::bucket::Bucket;
use crate::governor::concurrency::{Aimd, Limiter, Permit};
use crate::governor::cooldown::Cooldown;
use crate::retry::Backoff;

/// How one site is governed.
#[derive(Debug, Clone)]
pub struct PaceConfig {
    /// `TAG_SPACE_CONFLUENCE_CONCURRENCY`: requests in flight at most.
    pub concurrency: usize,
    /// `TAG_SPACE_MAX_COOLDOWN_SECS`: a longer requested wait halts the run's Confluence work.
    pub max_cooldown: Duration,
    /// The pause after a 429 without a hint, and a request's own wait after a 5xx or a
    /// transport failure.
    pub backoff: Backoff,
    pub jitter: Jitter,
    /// Pace at this share of a reported rate.
    pub headroom: f64,
}

/// The default number of Confluence requests in flight.
pub const DEFAULT_CONCURRENCY: usize = 4;

impl Default for PaceConfig {
    fn default() -> Self {
        Self {
            concurrency: DEFAULT_CONCURRENCY,
            max_cooldown: Duration::from_secs(60),
            backoff: super::client::DEFAULT_BACKOFF,
            jitter: Jitter::random(),
            headroom: 0.97,
        }
    }
}

/// Why the run's Confluence work stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Halt {
    /// A quota (not a burst limit) is spent: nothing gets through until `until`.
    Quota {
        until: Option<SystemTime>,
        reason: Option<String>,
        /// [`RateHeaders::absurd_note`].
        note: String,
    },
    /// The site asked for a wait above the ceiling.
    TooLong {
        status: u16,
        wait: Duration,
        ceiling: Duration,
        note: String,
    },
}

impl Halt {
    /// The HTTP status that stopped the work.
    pub fn status(&self) -> u16 {
        match self {
            Halt::Quota { .. } => 429,
            Halt::TooLong { status, .. } => *status,
        }
    }
}

impl Halt {
    /// What stopped the work, without what to do about it.
    pub fn cause(&self) -> String {
        match self {
            Halt::Quota {
                until,
                reason,
                note,
            } => {
                let until = until.map_or(String::new(), |at| format!(" until {}", show_time(at)));
                let reason = reason
                    .as_ref()
                    .map_or(String::new(), |r| format!(" (RateLimit-Reason: {r})"));
                format!("Confluence quota spent{until}{reason}{note}")
            }
            Halt::TooLong {
                status,
                wait,
                ceiling,
                note,
            } => format!(
                "HTTP {status}: Confluence asked to wait {}s, longer than TAG_SPACE_MAX_COOLDOWN_SECS ({}s){note}",
                wait.as_secs(),
                ceiling.as_secs()
            ),
        }
    }

    /// When trying again can work: after a quota's reset, or later.
    pub fn when(&self) -> &'static str {
        match self {
            Halt::Quota { .. } => "after that",
            Halt::TooLong { .. } => "later",
        }
    }
}

impl fmt::Display for Halt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: Confluence work stopped for this run; run again {}",
            self.cause(),
            self.when()
        )
    }
}

/// What the governor did, for benchmarks and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SiteStats {
    /// Requests sent (retries included).
    pub requests: u64,
    /// 429 answers.
    pub throttled: u64,
    /// Time requests spent waiting for the shared cooldown, for pacing, for a slot.
    pub cooldown_wait: Duration,
    pub pacing_wait: Duration,
    pub slot_wait: Duration,
    /// The most requests in flight at once.
    pub peak_in_flight: usize,
    /// Bytes of the answers' bodies received (listings, bodies, labels; errors included).
    pub bytes: u64,
}

/// A request admitted by the governor: it holds a slot until it is answered.
pub struct Ticket<'a> {
    _permit: Permit<'a>,
    sent_at: Instant,
}

/// What the client does after a 429, a 5xx or a transport failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Throttle {
    /// Retry (within the request's own bound) after this request's own wait; a shared pause,
    /// if one was set, is waited for in [`SiteGovernor::admit`].
    Retry(Duration),
    /// Do not retry: the run's Confluence work has stopped.
    Halt(Halt),
}

/// One site's governor. Share it (the client holds it in an `Arc`).
#[derive(Debug)]
pub struct SiteGovernor {
    config: PaceConfig,
    limiter: Limiter,
    core: Mutex<Core>,
    halted: CancellationToken,
}

#[derive(Debug)]
struct Core {
    cooldown: Cooldown,
    aimd: Aimd,
    /// Pacing from the site's headers, when they ask for it.
    pace: Option<Bucket>,
    /// Requests sent before the last cut do not cut again, nor count towards growth.
    last_cut: Option<Instant>,
    halt: Option<Halt>,
    stats: SiteStats,
}

impl SiteGovernor {
    pub fn new(config: PaceConfig) -> Self {
        let aimd = Aimd::new(config.concurrency, config.concurrency);
        Self {
            limiter: Limiter::new(aimd.limit()),
            core: Mutex::new(Core {
                cooldown: Cooldown::default(),
                aimd,
                pace: None,
                last_cut: None,
                halt: None,
                stats: SiteStats::default(),
            }),
            config,
            halted: CancellationToken::new(),
        }
    }

    pub fn config(&self) -> &PaceConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn stats(&self) -> SiteStats {
        self.lock().stats
    }

    /// Requests that may be in flight now.
    pub fn concurrency(&self) -> usize {
        self.limiter.limit()
    }

    /// The requests a minute paced to, when the site's headers asked for pacing.
    pub fn paced_per_minute(&self) -> Option<f64> {
        self.lock().pace.as_ref().map(Bucket::rate_per_minute)
    }

    /// Why the run's Confluence work stopped, once it has.
    pub fn halted(&self) -> Option<Halt> {
        self.lock().halt.clone()
    }

    /// Counts the body of an answer received.
    pub fn record_bytes(&self, n: usize) {
        self.lock().stats.bytes += n as u64;
    }

    /// Cancelled when the run's Confluence work stops.
    pub fn halt_token(&self) -> CancellationToken {
        self.halted.clone()
    }

    /// Waits for a slot, the shared cooldown and the pace; `Err` once the work has halted.
    pub async fn admit(&self) -> Result<Ticket<'_>, Halt> {
        let start = Instant::now();
        let permit = match self.limiter.try_acquire() {
            Some(p) => p,
            None => {
                let p = self.limiter.acquire().await;
                self.lock().stats.slot_wait += start.elapsed();
                p
            }
        };
        let mut reserved: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let wait = {
                let mut core = self.lock();
                if let Some(h) = &core.halt {
                    return Err(h.clone());
                }
                if let Some(until) = core.cooldown.until(now) {
                    Some((until, true))
                } else {
                    let at = *reserved.get_or_insert_with(|| {
                        core.pace.as_mut().map_or(now, |b| b.reserve(1.0, now))
                    });
                    (at > now).then_some((at, false))
                }
            };
            match wait {
                None => break,
                Some((until, cooldown)) => {
                    sleep_until(until).await;
                    let mut core = self.lock();
                    let waited = until.saturating_duration_since(now);
                    if cooldown {
                        core.stats.cooldown_wait += waited;
                    } else {
                        core.stats.pacing_wait += waited;
                    }
                }
            }
        }
        let sent_at = Instant::now();
        let busy = self
            .limiter
            .limit()
            .saturating_sub(self.limiter.available());
        let mut core = self.lock();
        core.stats.requests += 1;
        core.stats.peak_in_flight = core.stats.peak_in_flight.max(busy);
        drop(core);
        Ok(Ticket {
            _permit: permit,
            sent_at,
        })
    }

    /// The request was answered with a success (or a status no retry will change): learn
    /// from the headers and give the slot back.
    pub fn on_answer(&self, ticket: Ticket<'_>, h: &RateHeaders) {
        let now = Instant::now();
        let sent_at = ticket.sent_at;
        // Its slot is free before the headers are read: it no longer counts as in flight.
        drop(ticket);
        let mut core = self.lock();
        core.cooldown.clear_streak();
        let fresh = core.last_cut.is_none_or(|c| sent_at > c);
        if h.running_low() && fresh {
            self.cut(&mut core, now);
            tracing::info!(
                remaining = h.remaining,
                limit = h.limit,
                concurrency = core.aimd.limit(),
                "Confluence says little of its rate limit is left: slowing down"
            );
        } else if fresh {
            let limit = core.aimd.on_success();
            self.limiter.set_limit(limit);
        }
        self.adopt_pace(&mut core, h, now);
    }

    /// Pacing from the headers: Data Center's fill rate; on Cloud, once little is left, what
    /// is left spread over the time until the reset (dropped once plenty is left again).
    fn adopt_pace(&self, core: &mut Core, h: &RateHeaders, now: Instant) {
        let headroom = self.config.headroom;
        if let Some(rpm) = h.fill_per_minute() {
            let b = core.pace.get_or_insert_with(|| {
                Bucket::per_minute(h.limit.map_or(rpm, |l| l as f64), 1.0, now)
            });
            b.set_rate_per_minute(rpm * headroom, now);
            if let Some(r) = h.remaining {
                let in_flight = self
                    .limiter
                    .limit()
                    .saturating_sub(self.limiter.available());
                b.set_remaining(r as f64, in_flight as f64, now);
            }
            return;
        }
        let wall = SystemTime::now();
        match (h.running_low(), h.remaining, h.reset) {
            (true, Some(left), Some(reset)) => {
                let secs = reset.duration_since(wall).unwrap_or_default().as_secs_f64();
                if secs > 0.0 {
                    let rpm = (left as f64 * 60.0 / secs).max(1.0) * headroom;
                    match core.pace.as_mut() {
                        Some(b) => b.set_rate_per_minute(rpm, now),
                        None => core.pace = Some(Bucket::empty_per_minute(rpm, 1.0, now)),
                    }
                }
            }
            (false, Some(_), _) if h.limit.is_some() => core.pace = None,
            _ => {}
        }
    }

    /// A 429, a 5xx or a transport failure (`status` `None`) on attempt `attempt` (0-based).
    pub fn on_throttle(
        &self,
        ticket: Ticket<'_>,
        status: Option<u16>,
        h: &RateHeaders,
        attempt: u32,
    ) -> Throttle {
        let now = Instant::now();
        let wall = SystemTime::now();
        let sent_at = ticket.sent_at;
        // The slot is given back only after the pause is set (the guard below drops first):
        // a request waiting for it must find the pause.
        let _slot = ticket;
        let mut core = self.lock();
        if let Some(halt) = &core.halt {
            return Throttle::Halt(halt.clone());
        }
        let ceiling = self.config.max_cooldown;
        let hint = h.retry_after.filter(|w| !w.is_zero());
        if status == Some(429) {
            core.stats.throttled += 1;
            if h.is_quota(ceiling, wall) {
                let until = h.reset.or_else(|| hint.map(|w| wall + w));
                return self.halt(
                    &mut core,
                    Halt::Quota {
                        until,
                        reason: h.reason.clone(),
                        note: h.absurd_note(),
                    },
                );
            }
        }
        let unit = self.config.jitter.sample();
        match (status, hint) {
            (Some(status @ (429 | 503)), Some(wait)) if wait > ceiling => self.halt(
                &mut core,
                Halt::TooLong {
                    status,
                    wait,
                    ceiling,
                    note: h.absurd_note(),
                },
            ),
            (Some(status @ 429), hint) | (Some(status @ 503), hint @ Some(_)) => {
                let wait =
                    hint.unwrap_or_else(|| core.cooldown.unhinted_wait(&self.config.backoff, unit));
                self.pause_all(&mut core, status, wait, sent_at, h, now);
                Throttle::Retry(Duration::ZERO)
            }
            (_, hint) => Throttle::Retry(
                hint.unwrap_or_else(|| self.config.backoff.full_jitter(attempt, unit)),
            ),
        }
    }

    /// Pauses every request for `wait` (a later end wins), and cuts the concurrency once per
    /// throttled wave: only for a request sent after the last cut.
    fn pause_all(
        &self,
        core: &mut Core,
        status: u16,
        wait: Duration,
        sent_at: Instant,
        h: &RateHeaders,
        now: Instant,
    ) {
        let extended = core.cooldown.extend(wait, now);
        if core.last_cut.is_none_or(|c| sent_at > c) {
            self.cut(core, now);
        }
        if !extended {
            return;
        }
        if let Some(b) = core.pace.as_mut() {
            b.empty_at(now + wait, now);
        }
        tracing::warn!(
            status,
            wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            concurrency = core.aimd.limit(),
            reason = h.reason.as_deref(),
            "Confluence is rate limiting: pausing every request to it"
        );
    }

    fn cut(&self, core: &mut Core, now: Instant) {
        let limit = core.aimd.on_congestion();
        self.limiter.set_limit(limit);
        core.last_cut = Some(now);
    }

    fn halt(&self, core: &mut Core, halt: Halt) -> Throttle {
        tracing::error!(reason = %halt, "stopping the run's Confluence work");
        core.halt = Some(halt.clone());
        self.halted.cancel();
        Throttle::Halt(halt)
    }
}

#[cfg(test)]
#[path = "pace_tests.rs"]
mod tests;
