//! The output budget through the governor, on tokio's paused clock with a scripted provider:
//! the cap each call asks for, what it reserves from the TPM bucket, the one retry at twice
//! the cap after a truncated answer, and the split after that.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tag_space::governor::Quota;
use tag_space::governor::{Governed, GovernorConfig, Jitter};
use tag_space::llm::{
    Answer, LlmError, LlmErrorKind, OutputBudget, PageText, Provider, RateLimitHints,
};
use tokio::time::Instant;

/// A provider whose answers need `need_per_page` output tokens per page: a call whose cap is
/// smaller is cut off (`Truncated`). Its budget is `budget_per_page` per page plus a fixed
/// [`MARGIN`], within `ceiling`. Records the (pages, cap) of every call and when it was sent.
struct Capped {
    need_per_page: u32,
    budget_per_page: u32,
    ceiling: u32,
    calls: Mutex<Vec<(usize, u32, Instant)>>,
}

impl Capped {
    fn new(need_per_page: u32, budget_per_page: u32, ceiling: u32) -> Arc<Self> {
        Arc::new(Self {
            need_per_page,
            budget_per_page,
            ceiling,
            calls: Mutex::new(Vec::new()),
        })
    }

    fn calls(&self) -> Vec<(usize, u32)> {
        let calls = self.calls.lock().unwrap();
        calls.iter().map(|&(n, cap, _)| (n, cap)).collect()
    }
}

impl Provider for Capped {
    fn name(&self) -> &'static str {
        "openai"
    }

    async fn classify(&self, batch: &[PageText]) -> Result<Answer, LlmError> {
        let cap = self.output_budget(batch).unwrap().tokens;
        self.classify_capped(batch, cap).await
    }

    fn output_budget(&self, batch: &[PageText]) -> Option<OutputBudget> {
        Some(OutputBudget::new(
            self.budget_per_page * batch.len() as u32 + MARGIN,
            self.ceiling,
        ))
    }

    async fn classify_capped(&self, batch: &[PageText], cap: u32) -> Result<Answer, LlmError> {
        self.calls
            .lock()
            .unwrap()
            .push((batch.len(), cap, Instant::now()));
        if self.need_per_page * batch.len() as u32 > cap {
            return Err(LlmError::new(
                "openai",
                LlmErrorKind::Truncated,
                Some(200),
                "finish_reason length",
            ));
        }
        Ok(Answer {
            provider: "openai",
            model: "m".into(),
            labels: batch
                .iter()
                .map(|p| (p.id.clone(), vec!["label".to_string()]))
                .collect::<BTreeMap<_, _>>(),
            usage: None,
            rate_limits: RateLimitHints::default(),
        })
    }
}

const MARGIN: u32 = 40;

fn pages(n: usize) -> Vec<PageText> {
    (0..n)
        .map(|i| PageText {
            id: format!("p{i}"),
            title: String::new(),
            text: "x".repeat(400),
        })
        .collect()
}

fn config() -> GovernorConfig {
    GovernorConfig {
        headroom: 1.0,
        jitter: Jitter::fixed(1.0),
        // What a provider without a budget would reserve: must not be used here.
        max_output_tokens: 100_000,
        ..GovernorConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_call_asks_for_its_budget_and_reserves_it_not_the_configured_cap() {
    let fake = Capped::new(10, 50, 4096);
    // TPM 10,000: a batch of 5 pages of 400 chars reserves ≈ 500 input tokens + its 290-token
    // budget, so three go at once; reserving the configured 100,000-token cap, the second
    // would wait for the bucket to refill.
    let gov = Governed::new(
        fake.clone(),
        GovernorConfig {
            quota: Quota {
                rpm: None,
                tpm: Some(10_000),
            },
            ..config()
        },
    );
    let t0 = Instant::now();
    for _ in 0..3 {
        let a = gov.classify(&pages(5)).await.unwrap();
        assert_eq!(a.labels.len(), 5);
    }
    assert_eq!(fake.calls(), [(5, 290), (5, 290), (5, 290)]);
    let sent: Vec<Instant> = fake.calls.lock().unwrap().iter().map(|c| c.2).collect();
    assert_eq!(sent, [t0, t0, t0], "no call waited for tokens");
    let s = gov.stats();
    assert_eq!((s.retries, s.truncation_retries, s.splits), (0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_truncated_answer_is_asked_again_once_with_twice_the_cap() {
    // Needs 80 per page, the budget gives 50 (+40): 290 is cut off, 580 is enough.
    let fake = Capped::new(80, 50, 4096);
    let gov = Governed::new(fake.clone(), config());
    let a = gov.classify(&pages(5)).await.unwrap();
    assert_eq!(a.labels.len(), 5, "no page loses its answer");
    assert_eq!(fake.calls(), [(5, 290), (5, 580)]);
    let s = gov.stats();
    assert_eq!((s.retries, s.truncation_retries, s.splits), (1, 1, 0));
    assert_eq!((s.calls, s.successes), (2, 1));
    assert_eq!(s.failures.get("truncated"), Some(&1));
}

#[tokio::test(start_paused = true)]
async fn still_truncated_at_twice_the_cap_splits_the_batch() {
    // Needs 130 per page: for 4 pages (520) the caps 240 and 480 are both short; for each half
    // of 2 pages (260), 140 is short and twice that is enough (the margin is per request).
    let fake = Capped::new(130, 50, 4096);
    let gov = Governed::new(fake.clone(), config());
    let a = gov.classify(&pages(4)).await.unwrap();
    assert_eq!(a.labels.len(), 4, "no page loses its answer");
    let mut calls = fake.calls();
    assert_eq!(calls[..2], [(4, 240), (4, 480)]);
    calls[2..].sort_unstable();
    assert_eq!(calls[2..], [(2, 140), (2, 140), (2, 280), (2, 280)]);
    let s = gov.stats();
    assert_eq!((s.truncation_retries, s.splits), (3, 1));
}

#[tokio::test(start_paused = true)]
async fn at_the_ceiling_there_is_no_wider_retry_and_one_page_fails() {
    // The budget is already the ceiling: asking again would change nothing.
    let fake = Capped::new(500, 400, 300);
    let gov = Governed::new(fake.clone(), config());
    let e = gov.classify(&pages(1)).await.unwrap_err();
    assert_eq!(e.kind, LlmErrorKind::Truncated);
    assert_eq!(fake.calls(), [(1, 300)]);
    let s = gov.stats();
    assert_eq!((s.truncation_retries, s.retries, s.splits), (0, 0, 0));
}
