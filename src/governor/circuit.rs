//! Whether a provider may be called now: the circuit in front of the fallback.

use std::time::Duration;

use tokio::time::Instant;

/// Why a provider is not being called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// Quota gone or key refused: not called again in this run.
    Dead { quota: bool },
    /// It asked for a wait above the ceiling, or kept failing: skipped until `until`, then
    /// probed with one call. `rate_limited` says which.
    Open { until: Instant, rate_limited: bool },
    /// The probe call is in flight; others go to the fallback until it answers.
    Probing,
}

/// Closed (calls go through), open (skipped until a probe), or dead for the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Circuit {
    state: State,
    consecutive_failures: u32,
    threshold: u32,
    probe_after: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open { until: Instant, rate_limited: bool },
    HalfOpen,
    Dead { quota: bool },
}

/// What [`Circuit::admit`] allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Call,
    /// The one call that decides whether the provider is back.
    Probe,
    Refuse(Unavailable),
}

impl Circuit {
    /// Opens after `threshold` consecutive failed batches, for `probe_after`.
    pub fn new(threshold: u32, probe_after: Duration) -> Self {
        Self {
            state: State::Closed,
            consecutive_failures: 0,
            threshold: threshold.max(1),
            probe_after,
        }
    }

    /// May a call start at `now`? Turns an expired open state into one probe.
    pub fn admit(&mut self, now: Instant) -> Admit {
        match self.state {
            State::Closed => Admit::Call,
            State::Dead { quota } => Admit::Refuse(Unavailable::Dead { quota }),
            State::HalfOpen => Admit::Refuse(Unavailable::Probing),
            State::Open {
                until,
                rate_limited,
            } if now < until => Admit::Refuse(Unavailable::Open {
                until,
                rate_limited,
            }),
            State::Open { .. } => {
                self.state = State::HalfOpen;
                Admit::Probe
            }
        }
    }

    /// Refusal without side effects (the chain asks before dispatching).
    pub fn peek(&self, now: Instant) -> Option<Unavailable> {
        match self.state {
            State::Closed => None,
            State::Dead { quota } => Some(Unavailable::Dead { quota }),
            State::HalfOpen => Some(Unavailable::Probing),
            State::Open {
                until,
                rate_limited,
            } => (now < until).then_some(Unavailable::Open {
                until,
                rate_limited,
            }),
        }
    }

    pub fn is_dead(&self) -> bool {
        matches!(self.state, State::Dead { .. })
    }

    /// A call answered: the provider is healthy.
    pub fn on_success(&mut self) {
        self.consecutive_failures = 0;
        if !self.is_dead() {
            self.state = State::Closed;
        }
    }

    /// A batch finally failed on this provider for a reason that says something about the
    /// provider (not about the batch). Returns true if that opened the circuit.
    pub fn on_failure(&mut self, now: Instant) -> bool {
        self.consecutive_failures += 1;
        let opens = match self.state {
            State::HalfOpen => true,
            State::Closed => self.consecutive_failures >= self.threshold,
            _ => false,
        };
        if opens {
            self.state = State::Open {
                until: now + self.probe_after,
                rate_limited: false,
            };
        }
        opens
    }

    /// The provider asked for a wait above the ceiling: skip it until `until`.
    pub fn open_until(&mut self, until: Instant) {
        if !self.is_dead() {
            let until = match self.state {
                State::Open { until: u, .. } => u.max(until),
                _ => until,
            };
            self.state = State::Open {
                until,
                rate_limited: true,
            };
        }
    }

    /// A probe that ended without an answer either way (e.g. cancelled): allow another.
    pub fn release_probe(&mut self, now: Instant) {
        if self.state == State::HalfOpen {
            self.state = State::Open {
                until: now,
                rate_limited: false,
            };
        }
    }

    pub fn kill(&mut self, quota: bool) {
        self.state = State::Dead { quota };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_then_probes_once_and_closes_on_success() {
        let t0 = Instant::now();
        let mut c = Circuit::new(2, Duration::from_secs(30));
        assert!(!c.on_failure(t0));
        assert_eq!(c.admit(t0), Admit::Call);
        assert!(c.on_failure(t0));
        let until = t0 + Duration::from_secs(30);
        assert_eq!(
            c.admit(t0),
            Admit::Refuse(Unavailable::Open {
                until,
                rate_limited: false
            })
        );
        assert_eq!(c.admit(until), Admit::Probe);
        assert_eq!(c.admit(until), Admit::Refuse(Unavailable::Probing));
        c.on_success();
        assert_eq!(c.admit(until), Admit::Call);
    }

    #[test]
    fn failed_probe_reopens_and_dead_stays_dead() {
        let t0 = Instant::now();
        let mut c = Circuit::new(5, Duration::from_secs(10));
        c.open_until(t0 + Duration::from_secs(90));
        assert_eq!(c.admit(t0 + Duration::from_secs(90)), Admit::Probe);
        assert!(c.on_failure(t0 + Duration::from_secs(90)));
        assert_eq!(
            c.peek(t0 + Duration::from_secs(99)),
            Some(Unavailable::Open {
                until: t0 + Duration::from_secs(100),
                rate_limited: false
            })
        );
        c.kill(true);
        c.on_success();
        c.open_until(t0);
        assert_eq!(
            c.admit(t0 + Duration::from_secs(1000)),
            Admit::Refuse(Unavailable::Dead { quota: true })
        );
    }
}
