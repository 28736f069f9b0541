//! Asking at the ladder's rung: one request at a time, so that each re-ask after a step down
//! is a request of its own, admitted by the governor like any other.

use std::future::Future;

use super::{Ladder, schema_ignored};
use crate::llm::{Answer, LlmError, LlmErrorKind, PageText, RateLimitHints, Usage};
use crate::taxonomy::Taxonomy;

/// What one request brought back: the answer's text, its usage and rate-limit hints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sent {
    pub content: String,
    pub usage: Option<Usage>,
    pub rate_limits: RateLimitHints,
}

/// What a call keeps between its requests, handed from a request that stepped down to its
/// re-ask: where it started (to go back there when the step did not help) and the rungs it
/// has asked at (each at most once). Opaque to the governor, which only hands it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Climb {
    start: usize,
    start_trusted: bool,
    stepped_on_error: bool,
    /// A bit per rung asked at (a ladder has at most three).
    asked: u8,
}

impl Climb {
    fn new(ladder: &Ladder) -> Self {
        Self {
            start: ladder.current(),
            start_trusted: ladder.is_trusted(),
            stepped_on_error: false,
            asked: 0,
        }
    }

    fn has_asked(&self, rung: usize) -> bool {
        self.asked & (1 << rung) != 0
    }
}

/// A request that stepped the ladder down. Not a failure of the provider: ask again now at
/// the new rung, as a new request (no backoff, no circuit-breaker strike, no fallback).
#[derive(Debug, Clone)]
pub struct Reask {
    /// To hand to the re-ask ([`ask_once`]).
    pub climb: Climb,
    /// The server's refusal of the format, when that was the reason (a failed request); `None`
    /// when it answered but ignored the schema.
    pub refusal: Option<LlmError>,
    /// What the discarded answer consumed (it was sent, so it counts).
    pub usage: Option<Usage>,
    pub rate_limits: RateLimitHints,
}

/// Why one request did not give the call its answer.
#[derive(Debug, Clone)]
pub enum Unsettled {
    /// The call failed (the governor decides about retries and fallback by its kind).
    Failed(LlmError),
    /// The ladder stepped down: ask again at the new rung.
    Reask(Reask),
}

impl From<LlmError> for Unsettled {
    fn from(e: LlmError) -> Self {
        Self::Failed(e)
    }
}

/// Sends one request with `send` at the ladder's rung, continuing the call `climb` left off
/// (`None`: a new call). Returns [`Unsettled::Reask`] when the server refused the format or ignored
/// the schema and the ladder moved to a rung this call has not asked at. The text returned may
/// still ignore the schema (at the bottom rung, or a trusted rung's first strike): the caller
/// parses and validates it as usual.
pub async fn ask_once<F, Fut>(
    ladder: &Ladder,
    provider: &str,
    batch: &[PageText],
    taxonomy: &Taxonomy,
    climb: Option<Climb>,
    send: F,
) -> Result<Sent, Unsettled>
where
    F: FnOnce(usize) -> Fut,
    Fut: Future<Output = Result<Sent, LlmError>>,
{
    let mut climb = climb.unwrap_or_else(|| Climb::new(ladder));
    let rung = ladder.current();
    climb.asked |= 1 << rung;
    let sent = match send(rung).await {
        Ok(sent) => sent,
        Err(e) if ladder.refused(rung, &e) => {
            if !ladder.step_down(rung, provider, &e.to_string())
                || climb.has_asked(ladder.current())
            {
                return Err(Unsettled::Failed(e));
            }
            climb.stepped_on_error = true;
            return Err(Unsettled::Reask(Reask {
                climb,
                refusal: Some(e),
                usage: None,
                rate_limits: RateLimitHints::default(),
            }));
        }
        Err(e) => {
            // Refused the same way a rung lower: the format was not the cause.
            if climb.stepped_on_error && e.kind == LlmErrorKind::BadRequest && rung > climb.start {
                ladder.restore(climb.start, climb.start_trusted);
            }
            return Err(Unsettled::Failed(e));
        }
    };
    match schema_ignored(&sent.content, batch, taxonomy) {
        None => ladder.on_followed(rung),
        Some(why) if ladder.on_ignored(rung, provider, &why) => {
            if !climb.has_asked(ladder.current()) {
                return Err(Unsettled::Reask(Reask {
                    climb,
                    refusal: None,
                    usage: sent.usage,
                    rate_limits: sent.rate_limits,
                }));
            }
        }
        Some(_) => {}
    }
    Ok(sent)
}

/// Calls `once` (one request, continuing the given climb) until it no longer asks again: the
/// re-asks go at once, one after the other. Only for a client used without a governor (tests,
/// tools); under a governor each re-ask is admitted as a request of its own. Ends: every
/// re-ask is at a rung the call has not asked at.
pub async fn settle<F, Fut>(mut once: F) -> Result<Answer, LlmError>
where
    F: FnMut(Option<Climb>) -> Fut,
    Fut: Future<Output = Result<Answer, Unsettled>>,
{
    let mut climb = None;
    loop {
        match once(climb).await {
            Ok(answer) => return Ok(answer),
            Err(Unsettled::Failed(e)) => return Err(e),
            Err(Unsettled::Reask(r)) => climb = Some(r.climb),
        }
    }
}
