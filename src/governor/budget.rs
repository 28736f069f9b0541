//! The per-run retry budget (Google SRE "Handling Overload"; tower's `TpsBudget`): retries may
//! be at most `ratio` of first attempts plus a small floor, so a sick provider cannot turn a
//! run into a retry storm.

/// Counts first attempts and retries; a retry is allowed while it stays within the budget.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryBudget {
    ratio: f64,
    floor: u64,
    requests: u64,
    retries: u64,
}

impl RetryBudget {
    pub fn new(ratio: f64, floor: u64) -> Self {
        Self {
            ratio: ratio.max(0.0),
            floor,
            requests: 0,
            retries: 0,
        }
    }

    /// A first attempt was made.
    pub fn deposit(&mut self) {
        self.requests += 1;
    }

    /// Spends one retry if the budget allows it.
    pub fn try_withdraw(&mut self) -> bool {
        let allowed = self.floor as f64 + self.ratio * self.requests as f64;
        if (self.retries + 1) as f64 <= allowed {
            self.retries += 1;
            true
        } else {
            false
        }
    }

    pub fn retries(&self) -> u64 {
        self.retries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_then_ten_percent_of_requests() {
        let mut b = RetryBudget::new(0.1, 2);
        assert!(b.try_withdraw());
        assert!(b.try_withdraw());
        assert!(!b.try_withdraw());
        for _ in 0..10 {
            b.deposit();
        }
        assert!(b.try_withdraw());
        assert!(!b.try_withdraw());
        assert_eq!(b.retries(), 3);
    }
}
