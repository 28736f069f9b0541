//! The governor on tokio's paused clock, with scripted in-memory providers: exact virtual
//! times, no sockets.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tag_space::governor::Quota;
use tag_space::governor::{Chain, Governed, GovernorConfig, Jitter, Unavailable, WaitReason};
use tag_space::llm::{Answer, LlmError, LlmErrorKind, PageText, Provider, RateLimitHints, Usage};
use tag_space::retry::Backoff;
use tokio::time::Instant;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn page(id: usize, chars: usize) -> PageText {
    PageText {
        id: format!("p{id}"),
        title: String::new(),
        text: "x".repeat(chars),
    }
}

fn pages(n: usize) -> Vec<PageText> {
    (0..n).map(|i| page(i, 40)).collect()
}

/// What the scripted provider answers to its `n`th call (0-based) for `batch`.
type Script = dyn Fn(usize, &[PageText]) -> Result<Answer, LlmError> + Send + Sync;

/// An in-memory provider: answers after `latency` by its script, and records when each call
/// started (relative to its creation) and how many were in flight then.
struct Fake {
    name: &'static str,
    latency: Duration,
    script: Box<Script>,
    t0: Instant,
    calls: Mutex<Vec<(Duration, usize, Vec<String>)>>,
    in_flight: AtomicUsize,
}

impl Fake {
    fn new(
        name: &'static str,
        latency: Duration,
        script: impl Fn(usize, &[PageText]) -> Result<Answer, LlmError> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            name,
            latency,
            script: Box::new(script),
            t0: Instant::now(),
            calls: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
        })
    }

    /// Answers every call.
    fn ok(name: &'static str, latency: Duration) -> Arc<Self> {
        Self::new(name, latency, move |_, batch| Ok(answer(name, batch)))
    }

    fn times(&self) -> Vec<Duration> {
        self.calls.lock().unwrap().iter().map(|c| c.0).collect()
    }

    fn count(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    fn max_in_flight(&self) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.1)
            .max()
            .unwrap_or(0)
    }
}

impl Provider for Fake {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn classify(&self, batch: &[PageText]) -> Result<Answer, LlmError> {
        let n = {
            let mut calls = self.calls.lock().unwrap();
            let in_flight = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            calls.push((
                self.t0.elapsed(),
                in_flight,
                batch.iter().map(|p| p.id.clone()).collect(),
            ));
            calls.len() - 1
        };
        tokio::time::sleep(self.latency).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        (self.script)(n, batch)
    }
}

fn answer(provider: &'static str, batch: &[PageText]) -> Answer {
    Answer {
        provider,
        model: "m".into(),
        labels: batch
            .iter()
            .map(|p| (p.id.clone(), vec!["label".to_string()]))
            .collect::<BTreeMap<_, _>>(),
        usage: None,
        rate_limits: RateLimitHints::default(),
    }
}

fn err(provider: &'static str, kind: LlmErrorKind) -> LlmError {
    LlmError::new(provider, kind, None, "")
}

fn rate_limited(after: Option<Duration>) -> LlmErrorKind {
    LlmErrorKind::RateLimited { retry_after: after }
}

/// Exact settings for tests: pacing at the quota itself, deterministic jitter.
fn config() -> GovernorConfig {
    GovernorConfig {
        headroom: 1.0,
        jitter: Jitter::fixed(1.0),
        backoff: Backoff::new(secs(1), secs(30)),
        max_output_tokens: 0,
        ..GovernorConfig::default()
    }
}

fn assert_near(actual: &[Duration], expected: &[f64]) {
    assert_eq!(
        actual.len(),
        expected.len(),
        "calls at {actual:?}, expected {expected:?}"
    );
    for (a, e) in actual.iter().zip(expected) {
        assert!(
            (a.as_secs_f64() - e).abs() < 0.001,
            "calls at {actual:?}, expected {expected:?}"
        );
    }
}

/// Sends every batch at once, as the pipeline does (the governor, not the driver, limits).
async fn drive<P: Provider>(p: &P, batches: Vec<Vec<PageText>>) -> Vec<Result<Answer, LlmError>> {
    futures::stream::iter(batches)
        .map(|b| async move { p.classify(&b).await })
        .buffer_unordered(64)
        .collect()
        .await
}

#[tokio::test(start_paused = true)]
async fn rpm_bucket_allows_a_burst_then_paces_at_the_quota() {
    let fake = Fake::ok("gemini", ms(0));
    let gov = Governed::new(
        fake.clone(),
        GovernorConfig {
            quota: Quota {
                rpm: Some(3),
                tpm: None,
            },
            ..config()
        },
    );
    let out = drive(&gov, (0..6).map(|i| vec![page(i, 40)]).collect()).await;
    assert!(out.iter().all(Result::is_ok));
    assert_near(&fake.times(), &[0.0, 0.0, 0.0, 20.0, 40.0, 60.0]);
    let w = gov.stats().wait(WaitReason::Preflight);
    assert_eq!((w.count, w.total), (3, secs(120)));
}

#[tokio::test(start_paused = true)]
async fn tpm_bucket_is_corrected_from_reported_usage() {
    // 1600 chars → 400 tokens estimated + a 100-token output cap = 500 reserved; the provider
    // reports 400 used, so 100 come back after each call.
    let fake = Fake::new("gemini", ms(0), |_, b| {
        Ok(Answer {
            usage: Some(Usage {
                input_tokens: 400,
                output_tokens: 0,
                cached_input_tokens: 0,
            }),
            ..answer("gemini", b)
        })
    });
    let gov = Governed::new(
        fake.clone(),
        GovernorConfig {
            quota: Quota {
                rpm: None,
                tpm: Some(1000),
            },
            max_output_tokens: 100,
            ..config()
        },
    );
    for i in 0..4 {
        gov.classify(&[page(i, 1600)]).await.unwrap();
    }
    // Without the correction: 0, 0, 30, 60.
    assert_near(&fake.times(), &[0.0, 0.0, 18.0, 42.0]);
    assert_eq!(gov.stats().tokens_in, 1600);
}

#[tokio::test(start_paused = true)]
async fn rate_limit_headers_override_the_configured_quota() {
    // Configured 600 RPM, but the server says: 2 a minute, none left, full again in 30 s.
    let hints = RateLimitHints {
        limit_requests: Some(2),
        remaining_requests: Some(0),
        reset_requests: Some(secs(30)),
        ..RateLimitHints::default()
    };
    let fake = Fake::new("openai", ms(0), move |_, b| {
        Ok(Answer {
            rate_limits: hints,
            ..answer("openai", b)
        })
    });
    let gov = Governed::new(
        fake.clone(),
        GovernorConfig {
            quota: Quota {
                rpm: Some(600),
                tpm: None,
            },
            ..config()
        },
    );
    for i in 0..3 {
        gov.classify(&[page(i, 40)]).await.unwrap();
    }
    assert_near(&fake.times(), &[0.0, 15.0, 30.0]);
}

#[tokio::test(start_paused = true)]
async fn a_429_pauses_every_caller_until_its_retry_after() {
    // Call 0 is refused at t = 0.1 s with retry-after 5 s; the other two were already sent.
    let fake = Fake::new("gemini", ms(100), |n, b| {
        if n == 0 {
            Err(err("gemini", rate_limited(Some(secs(5)))))
        } else {
            Ok(answer("gemini", b))
        }
    });
    let gov = Arc::new(Governed::new(fake.clone(), config()));
    let first = {
        let gov = gov.clone();
        tokio::spawn(async move { drive(&*gov, (0..3).map(|i| vec![page(i, 40)]).collect()).await })
    };
    tokio::time::sleep(secs(1)).await;
    let later = drive(&*gov, (3..5).map(|i| vec![page(i, 40)]).collect()).await;
    assert!(
        first
            .await
            .unwrap()
            .into_iter()
            .chain(later)
            .all(|r| r.is_ok())
    );
    // Nothing between the 429 (0.1 s) and its end (5.1 s); the concurrency cut to 2 lets the
    // third waiting request go when one of the first two answers.
    assert_near(&fake.times(), &[0.0, 0.0, 0.0, 5.1, 5.1, 5.2]);
    let s = gov.stats();
    // Cut to 2 (hence 5.2 s), grown back to 3 by the two successes sent after the cut.
    assert_eq!((s.rate_limited, s.retries, s.concurrency_limit), (1, 1, 3));
    // The retry waited 5 s and one later batch 4.1 s in the cooldown; the other later batch
    // waited 4.2 s for a slot.
    let w = s.wait(WaitReason::Cooldown429);
    assert_eq!((w.count, w.total), (2, ms(9100)));
    let w = s.wait(WaitReason::Concurrency);
    assert_eq!((w.count, w.total), (1, ms(4200)));
}

#[tokio::test(start_paused = true)]
async fn a_429_without_hint_backs_off_exponentially() {
    let fake = Fake::new("gemini", ms(0), |n, b| {
        if n < 2 {
            Err(err("gemini", rate_limited(None)))
        } else {
            Ok(answer("gemini", b))
        }
    });
    let gov = Governed::new(fake.clone(), config());
    gov.classify(&pages(1)).await.unwrap();
    // Full jitter fixed at the ceiling: 1 s, then 2 s.
    assert_near(&fake.times(), &[0.0, 1.0, 3.0]);
    assert_eq!(gov.stats().wait(WaitReason::Cooldown429).total, secs(3));
}

#[tokio::test(start_paused = true)]
async fn a_wait_above_the_ceiling_sends_batches_straight_to_the_fallback_then_the_primary_is_probed()
 {
    let primary = Fake::new("gemini", ms(0), |n, b| {
        if n == 0 {
            Err(err("gemini", rate_limited(Some(secs(120)))))
        } else {
            Ok(answer("gemini", b))
        }
    });
    let fallback = Fake::ok("openai", ms(0));
    let chain = Chain::new(vec![
        Governed::new(primary.clone(), config()),
        Governed::new(fallback.clone(), config()),
    ]);
    let t0 = Instant::now();
    for i in 0..3 {
        assert_eq!(
            chain.classify(&[page(i, 40)]).await.unwrap().provider,
            "openai"
        );
    }
    assert_eq!(
        t0.elapsed(),
        Duration::ZERO,
        "nobody slept through the 120 s"
    );
    assert_eq!((primary.count(), fallback.count()), (1, 3));
    let s = chain.stats();
    assert_eq!((s[0].fallbacks, s[0].skipped, s[0].retries), (3, 2, 0));
    assert!(matches!(
        chain.providers()[0].unavailable(),
        Some(Unavailable::Open {
            rate_limited: true,
            ..
        })
    ));

    tokio::time::sleep(secs(119)).await;
    assert_eq!(chain.classify(&pages(1)).await.unwrap().provider, "openai");
    tokio::time::sleep(secs(1)).await;
    // The hint has passed: one probe, and the primary is back.
    assert_eq!(chain.classify(&pages(1)).await.unwrap().provider, "gemini");
    assert_eq!(chain.classify(&pages(1)).await.unwrap().provider, "gemini");
    assert_eq!(primary.times().len(), 3);
    assert_eq!(chain.stats()[0].unavailable, None);
}

#[tokio::test(start_paused = true)]
async fn quota_exhausted_falls_back_at_once_and_the_primary_is_never_called_again() {
    let primary = Fake::new("gemini", ms(0), |_, _| {
        Err(err("gemini", LlmErrorKind::QuotaExhausted))
    });
    let fallback = Fake::ok("openai", ms(300));
    let chain = Chain::new(vec![
        Governed::new(primary.clone(), config()),
        Governed::new(fallback.clone(), config()),
    ]);
    let t0 = Instant::now();
    let out = drive(&chain, (0..5).map(|i| vec![page(i, 40)]).collect()).await;
    assert!(out.iter().all(|r| r.as_ref().unwrap().provider == "openai"));
    tokio::time::sleep(secs(3600)).await;
    chain.classify(&pages(1)).await.unwrap();
    assert_eq!(primary.count(), 1);
    assert_eq!(fallback.count(), 6);
    let s = chain.stats();
    assert_eq!((s[0].fallbacks, s[0].retries, s[0].rate_limited), (6, 0, 1));
    assert_eq!(
        s[0].unavailable.as_deref(),
        Some("quota exhausted earlier in this run")
    );
    // The first five went to the fallback without waiting on the primary (paced only by the
    // fallback's own concurrency of 3).
    assert_near(&fallback.times()[..5], &[0.0, 0.0, 0.0, 0.3, 0.3]);
    assert!(t0.elapsed() >= secs(3600));
}

#[tokio::test(start_paused = true)]
async fn too_large_splits_the_batch_and_merges_the_halves() {
    let fake = Fake::new("openai", ms(0), |_, b| {
        if b.len() > 2 {
            Err(err("openai", LlmErrorKind::TooLarge))
        } else {
            Ok(answer("openai", b))
        }
    });
    let gov = Governed::new(fake.clone(), config());
    let a = gov.classify(&pages(5)).await.unwrap();
    assert_eq!(
        a.labels.keys().cloned().collect::<Vec<_>>(),
        ["p0", "p1", "p2", "p3", "p4"]
    );
    let sizes: Vec<usize> = fake
        .calls
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.2.len())
        .collect();
    assert_eq!(sizes, [5, 2, 3, 1, 2]);
    let s = gov.stats();
    assert_eq!((s.splits, s.retries, s.successes), (2, 0, 3));
}

#[tokio::test(start_paused = true)]
async fn overloaded_is_retried_with_backoff_then_succeeds() {
    let fake = Fake::new("gemini", ms(0), |n, b| {
        if n < 2 {
            Err(err(
                "gemini",
                LlmErrorKind::Overloaded { retry_after: None },
            ))
        } else {
            Ok(answer("gemini", b))
        }
    });
    let gov = Governed::new(
        fake.clone(),
        GovernorConfig {
            jitter: Jitter::fixed(0.5),
            ..config()
        },
    );
    gov.classify(&pages(1)).await.unwrap();
    assert_near(&fake.times(), &[0.0, 0.5, 1.5]);
    let s = gov.stats();
    assert_eq!(
        (s.retries, s.failures.get("overloaded").copied()),
        (2, Some(2))
    );
    assert_eq!(s.wait(WaitReason::Backoff5xx).total, ms(1500));
    assert_eq!(s.wait(WaitReason::Cooldown429).count, 0);
}

#[tokio::test(start_paused = true)]
async fn auth_is_never_retried_and_the_batch_goes_to_the_fallback() {
    let primary = Fake::new("gemini", ms(0), |_, _| {
        Err(err("gemini", LlmErrorKind::Auth))
    });
    let fallback = Fake::ok("openai", ms(0));
    let chain = Chain::new(vec![
        Governed::new(primary.clone(), config()),
        Governed::new(fallback.clone(), config()),
    ]);
    assert_eq!(chain.classify(&pages(1)).await.unwrap().provider, "openai");
    assert_eq!(chain.classify(&pages(1)).await.unwrap().provider, "openai");
    assert_eq!(primary.count(), 1);
    assert_eq!(chain.stats()[0].retries, 0);
    // Alone, the error comes back as it was.
    let alone = Governed::new(
        Fake::new("gemini", ms(0), |_, _| {
            Err(err("gemini", LlmErrorKind::BadAnswer))
        }),
        config(),
    );
    assert_eq!(
        alone.classify(&pages(1)).await.unwrap_err().kind,
        LlmErrorKind::BadAnswer
    );
    assert_eq!(alone.inner().count(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_retry_budget_caps_retries_under_a_storm() {
    let fake = Fake::new("gemini", ms(10), |_, _| {
        Err(err(
            "gemini",
            LlmErrorKind::Overloaded {
                retry_after: Some(Duration::ZERO),
            },
        ))
    });
    let gov = Governed::new(
        fake.clone(),
        GovernorConfig {
            retry_budget_floor: 2,
            failure_threshold: 1000,
            ..config()
        },
    );
    for i in 0..100 {
        assert!(gov.classify(&[page(i, 40)]).await.is_err());
    }
    // 3 attempts each would be 300 calls; the budget allows 2 + 10% of 100 retries.
    let s = gov.stats();
    assert_eq!((s.retries, fake.count() as u64, s.calls), (12, 112, 112));
    // Every batch but the first ended on a refused retry.
    assert_eq!(s.budget_exhausted, 99);
}

#[tokio::test(start_paused = true)]
async fn repeated_failures_open_the_circuit_until_a_probe() {
    let fake = Fake::new("gemini", ms(0), |n, b| {
        if n < 9 {
            Err(err("gemini", LlmErrorKind::Timeout))
        } else {
            Ok(answer("gemini", b))
        }
    });
    let gov = Governed::new(
        fake.clone(),
        GovernorConfig {
            jitter: Jitter::fixed(0.0),
            failure_threshold: 3,
            probe_after: secs(30),
            ..config()
        },
    );
    for _ in 0..3 {
        assert_eq!(
            gov.classify(&pages(1)).await.unwrap_err().kind,
            LlmErrorKind::Timeout
        );
    }
    assert_eq!(fake.count(), 9);
    // Open: refused without a call.
    assert!(matches!(
        gov.classify(&pages(1)).await.unwrap_err().kind,
        LlmErrorKind::Overloaded { .. }
    ));
    assert_eq!(fake.count(), 9);
    tokio::time::sleep(secs(30)).await;
    gov.classify(&pages(1)).await.unwrap();
    assert_eq!((fake.count(), gov.stats().skipped), (10, 1));
}

#[tokio::test(start_paused = true)]
async fn concurrency_grows_additively_to_the_max_and_is_cut_on_429() {
    let fake = Fake::ok("gemini", secs(1));
    let gov = Governed::new(fake.clone(), config());
    drive(&gov, (0..60).map(|i| vec![page(i, 40)]).collect()).await;
    let in_flight: Vec<usize> = fake.calls.lock().unwrap().iter().map(|c| c.1).collect();
    assert_eq!(in_flight[..3], [1, 2, 3]);
    assert_eq!(fake.max_in_flight(), 6);
    assert_eq!(gov.stats().concurrency_limit, 6);
    // 3 at t=0, 3 more after 1 s, then +1 per window: 3, 3, 4, 5, 6, 6, …
    assert_near(&fake.times()[..7], &[0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]);
    assert!(gov.stats().wait(WaitReason::Concurrency).count > 0);

    let fake = Fake::new("gemini", ms(0), |_, _| {
        Err(err("gemini", rate_limited(Some(ms(10)))))
    });
    let gov = Governed::new(
        fake.clone(),
        GovernorConfig {
            initial_concurrency: 6,
            retry_budget_floor: 100,
            max_attempts: 4,
            ..config()
        },
    );
    assert!(gov.classify(&pages(1)).await.is_err());
    // Four 429s, each to a request sent after the previous cut: 6 → 4 → 2 → 1 → 1.
    assert_eq!((fake.count(), gov.stats().concurrency_limit), (4, 1));
}
