//! What to do about a failed call: the error kind decides (see `crate::llm::LlmErrorKind`).

use std::time::Duration;

use crate::llm::LlmErrorKind;

/// The response to one failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// 429: pause the whole provider (for the hint, else backoff), then retry.
    CoolDown { hint: Option<Duration> },
    /// OpenAI `slow_down`: lower the pace (halve the request rate), then retry after the
    /// backoff; the provider is not paused.
    SlowDown { hint: Option<Duration> },
    /// 5xx, timeout, transport: this request backs off (for the hint, else backoff), then retries.
    Backoff { hint: Option<Duration> },
    /// The provider asked for a wait above the ceiling: skip it until then; fall back.
    Unavailable { wait: Duration },
    /// Quota gone (`quota`) or key refused: never call it again in this run; fall back.
    Dead { quota: bool },
    /// Too large for one request: split the batch and retry the halves.
    Split,
    /// Fail the batch on this provider without retrying (the next provider may try it).
    Fail,
}

/// Decides the response to a failure of kind `kind` for a batch of `batch_len` pages.
pub fn action(kind: LlmErrorKind, batch_len: usize, max_cooldown: Duration) -> Action {
    match kind {
        LlmErrorKind::RateLimited {
            retry_after: Some(d),
        }
        | LlmErrorKind::SlowDown {
            retry_after: Some(d),
        }
        | LlmErrorKind::Overloaded {
            retry_after: Some(d),
        } if d > max_cooldown => Action::Unavailable { wait: d },
        LlmErrorKind::RateLimited { retry_after } => Action::CoolDown { hint: retry_after },
        LlmErrorKind::SlowDown { retry_after } => Action::SlowDown { hint: retry_after },
        LlmErrorKind::Overloaded { retry_after } => Action::Backoff { hint: retry_after },
        LlmErrorKind::Timeout | LlmErrorKind::Transport => Action::Backoff { hint: None },
        LlmErrorKind::QuotaExhausted => Action::Dead { quota: true },
        LlmErrorKind::Auth => Action::Dead { quota: false },
        // A truncated answer reaches here after its one retry at twice the cap (`Governed`).
        LlmErrorKind::TooLarge | LlmErrorKind::Truncated if batch_len > 1 => Action::Split,
        LlmErrorKind::TooLarge
        | LlmErrorKind::Truncated
        | LlmErrorKind::BadRequest
        | LlmErrorKind::BadAnswer => Action::Fail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_response() {
        let max = Duration::from_secs(60);
        let s = Duration::from_secs;
        let rl = |d| LlmErrorKind::RateLimited { retry_after: d };
        assert_eq!(
            action(rl(Some(s(5))), 4, max),
            Action::CoolDown { hint: Some(s(5)) }
        );
        assert_eq!(action(rl(None), 4, max), Action::CoolDown { hint: None });
        assert_eq!(
            action(rl(Some(s(60))), 4, max),
            Action::CoolDown { hint: Some(s(60)) }
        );
        assert_eq!(
            action(rl(Some(s(61))), 4, max),
            Action::Unavailable { wait: s(61) }
        );
        assert_eq!(
            action(
                LlmErrorKind::Overloaded {
                    retry_after: Some(s(600))
                },
                4,
                max
            ),
            Action::Unavailable { wait: s(600) }
        );
        let slow = |d| LlmErrorKind::SlowDown { retry_after: d };
        assert_eq!(action(slow(None), 4, max), Action::SlowDown { hint: None });
        assert_eq!(
            action(slow(Some(s(2))), 4, max),
            Action::SlowDown { hint: Some(s(2)) }
        );
        assert_eq!(
            action(slow(Some(s(61))), 4, max),
            Action::Unavailable { wait: s(61) }
        );
        assert_eq!(
            action(LlmErrorKind::Overloaded { retry_after: None }, 4, max),
            Action::Backoff { hint: None }
        );
        assert_eq!(
            action(LlmErrorKind::Timeout, 4, max),
            Action::Backoff { hint: None }
        );
        assert_eq!(
            action(LlmErrorKind::Transport, 4, max),
            Action::Backoff { hint: None }
        );
        assert_eq!(
            action(LlmErrorKind::QuotaExhausted, 4, max),
            Action::Dead { quota: true }
        );
        assert_eq!(
            action(LlmErrorKind::Auth, 4, max),
            Action::Dead { quota: false }
        );
        assert_eq!(action(LlmErrorKind::TooLarge, 2, max), Action::Split);
        assert_eq!(action(LlmErrorKind::TooLarge, 1, max), Action::Fail);
        assert_eq!(action(LlmErrorKind::BadRequest, 4, max), Action::Fail);
        assert_eq!(action(LlmErrorKind::BadAnswer, 4, max), Action::Fail);
        assert_eq!(action(LlmErrorKind::Truncated, 4, max), Action::Split);
        assert_eq!(action(LlmErrorKind::Truncated, 1, max), Action::Fail);
    }
}
