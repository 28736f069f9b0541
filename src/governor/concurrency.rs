//! Adaptive concurrency: additive increase, multiplicative decrease (Netflix concurrency-limits'
//! AIMD, as a client). [`Aimd`] is the pure decision; [`Limiter`] applies it to a FIFO
//! semaphore whose size can shrink without cancelling calls already in flight.

use std::sync::Mutex;

use tokio::sync::{Semaphore, SemaphorePermit};

/// The AIMD rule: one step up after a full window of successes (`limit` of them), a cut by
/// `BETA` (never below 1) on a congestion signal (429, overload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aimd {
    limit: usize,
    max: usize,
    successes: usize,
}

impl Aimd {
    /// Multiplicative decrease factor (CUBIC's β; Netflix uses 0.9, TCP 0.5).
    pub const BETA: f64 = 0.7;

    pub fn new(initial: usize, max: usize) -> Self {
        let max = max.max(1);
        Self {
            limit: initial.clamp(1, max),
            max,
            successes: 0,
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// A call succeeded; returns the new limit.
    pub fn on_success(&mut self) -> usize {
        self.successes += 1;
        if self.successes >= self.limit && self.limit < self.max {
            self.limit += 1;
            self.successes = 0;
        }
        self.limit
    }

    /// The provider pushed back; returns the new limit.
    pub fn on_congestion(&mut self) -> usize {
        self.limit = ((self.limit as f64 * Self::BETA).floor() as usize).max(1);
        self.successes = 0;
        self.limit
    }
}

/// A semaphore whose size follows [`Aimd`]. Waiters are served first come, first served.
#[derive(Debug)]
pub struct Limiter {
    sem: Semaphore,
    state: Mutex<LimiterState>,
}

#[derive(Debug)]
struct LimiterState {
    limit: usize,
    /// Permits to swallow as they come back, after the limit was cut below what is in use.
    debt: usize,
}

/// A slot to call the provider; returning it honours a cut made meanwhile.
pub struct Permit<'a> {
    permit: Option<SemaphorePermit<'a>>,
    limiter: &'a Limiter,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        let mut state = self.limiter.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.debt > 0 {
            state.debt -= 1;
            permit.forget();
        }
    }
}

impl Limiter {
    pub fn new(limit: usize) -> Self {
        let limit = limit.max(1);
        Self {
            sem: Semaphore::new(limit),
            state: Mutex::new(LimiterState { limit, debt: 0 }),
        }
    }

    /// Slots immediately free (for tests and metrics).
    pub fn available(&self) -> usize {
        self.sem.available_permits()
    }

    pub fn limit(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).limit
    }

    /// A slot without waiting, if one is free.
    pub fn try_acquire(&self) -> Option<Permit<'_>> {
        self.sem.try_acquire().ok().map(|p| Permit {
            permit: Some(p),
            limiter: self,
        })
    }

    pub async fn acquire(&self) -> Permit<'_> {
        // The semaphore is never closed.
        let permit = self.sem.acquire().await.ok();
        Permit {
            permit,
            limiter: self,
        }
    }

    /// Resizes to `limit`: grows by adding permits (first cancelling debt), shrinks by taking
    /// free permits away and owing the rest until calls in flight return theirs.
    pub fn set_limit(&self, limit: usize) {
        let limit = limit.max(1);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if limit > state.limit {
            let mut grow = limit - state.limit;
            let cancel = grow.min(state.debt);
            state.debt -= cancel;
            grow -= cancel;
            self.sem.add_permits(grow);
        } else {
            for _ in limit..state.limit {
                match self.sem.try_acquire() {
                    Ok(p) => p.forget(),
                    Err(_) => state.debt += 1,
                }
            }
        }
        state.limit = limit;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aimd_grows_one_per_window_up_to_max_and_cuts_by_beta() {
        let mut a = Aimd::new(3, 6);
        assert_eq!((0..2).map(|_| a.on_success()).last(), Some(3));
        assert_eq!(a.on_success(), 4);
        for _ in 0..100 {
            a.on_success();
        }
        assert_eq!(a.limit(), 6);
        assert_eq!(a.on_congestion(), 4);
        assert_eq!(a.on_congestion(), 2);
        assert_eq!(a.on_congestion(), 1);
        assert_eq!(a.on_congestion(), 1);
        assert_eq!(Aimd::new(10, 6).limit(), 6);
        assert_eq!(Aimd::new(0, 6).limit(), 1);
    }

    #[test]
    fn limiter_shrinks_without_cancelling_in_flight_and_grows_back() {
        let l = Limiter::new(3);
        let a = l.try_acquire().unwrap();
        let b = l.try_acquire().unwrap();
        l.set_limit(1); // one free permit taken away, one owed
        assert_eq!(l.available(), 0);
        drop(a); // pays the debt
        assert_eq!(l.available(), 0);
        drop(b);
        assert_eq!(l.available(), 1);
        let c = l.try_acquire().unwrap();
        assert!(l.try_acquire().is_none());
        l.set_limit(3);
        assert_eq!(l.available(), 2);
        drop(c);
        assert_eq!(l.available(), 3);
    }

    #[test]
    fn growing_cancels_debt_first() {
        let l = Limiter::new(2);
        let a = l.try_acquire().unwrap();
        let b = l.try_acquire().unwrap();
        l.set_limit(1);
        l.set_limit(2);
        drop(a);
        drop(b);
        assert_eq!(l.available(), 2);
    }
}
