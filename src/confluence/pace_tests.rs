//! The site governor on tokio's paused clock.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::time::{Instant, timeout};

use super::*;

fn gov(concurrency: usize) -> SiteGovernor {
    SiteGovernor::new(PaceConfig {
        concurrency,
        max_cooldown: Duration::from_secs(60),
        backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(30)),
        jitter: Jitter::fixed(1.0),
        headroom: 1.0,
    })
}

fn hdrs(pairs: &[(&str, &str)]) -> RateHeaders {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    RateHeaders::parse(&h, SystemTime::now())
}

fn secs(n: f64) -> Duration {
    Duration::from_secs_f64(n)
}

#[tokio::test(start_paused = true)]
async fn a_429_on_one_request_holds_every_other_until_its_wait_has_passed() {
    let g = gov(4);
    let t0 = Instant::now();
    let a = g.admit().await.unwrap();
    let b = g.admit().await.unwrap();
    let v = g.on_throttle(a, Some(429), &hdrs(&[("Retry-After", "5")]), 0);
    assert_eq!(v, Throttle::Retry(Duration::ZERO));
    // b was in flight already; it finishes normally, and nobody new goes before 5 s.
    g.on_answer(b, &RateHeaders::default());
    assert!(timeout(secs(4.9), g.admit()).await.is_err());
    let c = g.admit().await.unwrap();
    assert!(Instant::now() >= t0 + secs(5.0));
    let d = g.admit().await.unwrap();
    assert_eq!(
        Instant::now(),
        t0 + secs(5.0),
        "after the pause, no further wait"
    );
    drop((c, d));
    assert_eq!(g.stats().throttled, 1);
    // Concurrency was cut from 4 (×0.7).
    assert_eq!(g.concurrency(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_unhinted_429_pauses_everyone_for_capped_exponential_backoff() {
    let g = gov(4);
    let t0 = Instant::now();
    let a = g.admit().await.unwrap();
    g.on_throttle(a, Some(429), &RateHeaders::default(), 0);
    let b = g.admit().await.unwrap();
    assert_eq!(
        Instant::now(),
        t0 + secs(1.0),
        "base 1 s, full jitter at its ceiling"
    );
    g.on_throttle(b, Some(429), &hdrs(&[("Retry-After", "0")]), 1);
    let c = g.admit().await.unwrap();
    assert_eq!(
        Instant::now(),
        t0 + secs(3.0),
        "the second in a row waits 2 s"
    );
    g.on_answer(c, &RateHeaders::default());
    let d = g.admit().await.unwrap();
    g.on_throttle(d, Some(429), &RateHeaders::default(), 0);
    g.admit().await.unwrap();
    assert_eq!(
        Instant::now(),
        t0 + secs(4.0),
        "a success starts the backoff afresh"
    );
}

#[tokio::test(start_paused = true)]
async fn a_503_without_a_wait_backs_off_alone_with_a_wait_pauses_everyone() {
    let g = gov(4);
    let t0 = Instant::now();
    let a = g.admit().await.unwrap();
    assert_eq!(
        g.on_throttle(a, Some(503), &RateHeaders::default(), 2),
        Throttle::Retry(secs(4.0))
    );
    assert_eq!(
        g.on_throttle(g.admit().await.unwrap(), None, &RateHeaders::default(), 0),
        Throttle::Retry(secs(1.0))
    );
    g.admit().await.unwrap();
    assert_eq!(Instant::now(), t0, "no shared pause");
    let b = g.admit().await.unwrap();
    g.on_throttle(b, Some(503), &hdrs(&[("Retry-After", "2")]), 0);
    g.admit().await.unwrap();
    assert_eq!(Instant::now(), t0 + secs(2.0));
}

#[tokio::test(start_paused = true)]
async fn a_wait_above_the_ceiling_halts_every_request_and_cancels_the_token() {
    let g = gov(4);
    let token = g.halt_token();
    let a = g.admit().await.unwrap();
    let Throttle::Halt(halt) = g.on_throttle(a, Some(429), &hdrs(&[("Retry-After", "3600")]), 0)
    else {
        panic!("not halted")
    };
    assert_eq!(
        halt.to_string(),
        "HTTP 429: Confluence asked to wait 3600s, longer than TAG_SPACE_MAX_COOLDOWN_SECS (60s): \
         Confluence work stopped for this run; run again later"
    );
    assert!(token.is_cancelled());
    assert_eq!(g.admit().await.err(), Some(halt.clone()));
    assert_eq!(g.halted(), Some(halt));
}

#[tokio::test(start_paused = true)]
async fn absurd_values_are_clamped_and_named_in_the_halt() {
    let g = gov(4);
    let a = g.admit().await.unwrap();
    let h = hdrs(&[
        ("Retry-After", "9223372036854775807"),
        ("X-RateLimit-Limit", "0"),
    ]);
    let Throttle::Halt(halt) = g.on_throttle(a, Some(429), &h, 0) else {
        panic!("not halted")
    };
    let text = halt.to_string();
    assert!(
        text.starts_with("HTTP 429: Confluence asked to wait 31536000s, longer than TAG_SPACE_MAX_COOLDOWN_SECS (60s) (absurd values from the server: X-RateLimit-Limit: 0 (ignored), Retry-After: 9223372036854775807 (read as 365 days)):"),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_quota_429_halts_with_the_reset_time_and_is_not_retried() {
    let g = gov(4);
    let reset = SystemTime::now() + Duration::from_secs(7200);
    let reset_iso = humantime::format_rfc3339_seconds(reset).to_string();
    let a = g.admit().await.unwrap();
    let h = hdrs(&[
        ("RateLimit-Reason", "confluence-quota-tenant-based"),
        ("Retry-After", "30"),
        ("X-RateLimit-Reset", &reset_iso),
    ]);
    let Throttle::Halt(halt) = g.on_throttle(a, Some(429), &h, 0) else {
        panic!("a quota 429 must not be retried")
    };
    assert_eq!(
        halt.to_string(),
        format!(
            "Confluence quota spent until {reset_iso} (RateLimit-Reason: confluence-quota-tenant-based): \
             Confluence work stopped for this run; run again after that"
        )
    );
}

#[tokio::test(start_paused = true)]
async fn near_limit_cuts_concurrency_once_and_paces_what_is_left_until_the_reset() {
    let g = gov(4);
    let reset = SystemTime::now() + Duration::from_secs(60);
    let reset_iso = humantime::format_rfc3339_seconds(reset).to_string();
    let low = hdrs(&[
        ("X-RateLimit-Limit", "1000"),
        ("X-RateLimit-Remaining", "30"),
        ("X-RateLimit-Reset", &reset_iso),
        ("X-RateLimit-NearLimit", "true"),
    ]);
    let a = g.admit().await.unwrap();
    let b = g.admit().await.unwrap();
    g.on_answer(a, &low);
    assert_eq!(g.concurrency(), 2);
    // b was sent before the cut: the same event, no second cut.
    g.on_answer(b, &low);
    assert_eq!(g.concurrency(), 2);
    // 30 left for about a minute: about one request every 2 s.
    let rpm = g.paced_per_minute().unwrap();
    assert!((29.0..=31.0).contains(&rpm), "{rpm}");
    let t = Instant::now();
    g.admit().await.unwrap();
    let waited = Instant::now() - t;
    assert!(waited > secs(1.9) && waited < secs(2.1), "{waited:?}");
    // Plenty left again (a new window): no more pacing.
    let c = g.admit().await.unwrap();
    g.on_answer(
        c,
        &hdrs(&[
            ("X-RateLimit-Limit", "1000"),
            ("X-RateLimit-Remaining", "990"),
        ]),
    );
    assert_eq!(g.paced_per_minute(), None);
}

#[tokio::test(start_paused = true)]
async fn near_limit_alone_slows_down_through_concurrency() {
    let g = gov(4);
    let a = g.admit().await.unwrap();
    g.on_answer(a, &hdrs(&[("X-RateLimit-NearLimit", "true")]));
    assert_eq!(g.concurrency(), 2);
    assert_eq!(g.paced_per_minute(), None);
    let plain = RateHeaders::default();
    // Grows back one step per window of successes (of requests sent after the cut).
    tokio::time::advance(secs(0.001)).await;
    for _ in 0..2 {
        let t = g.admit().await.unwrap();
        g.on_answer(t, &plain);
    }
    assert_eq!(g.concurrency(), 3);
}

#[tokio::test(start_paused = true)]
async fn data_center_is_paced_to_its_fill_rate() {
    let g = gov(4);
    let t0 = Instant::now();
    let a = g.admit().await.unwrap();
    g.on_answer(
        a,
        &hdrs(&[
            ("X-RateLimit-Limit", "20"),
            ("X-RateLimit-Remaining", "0"),
            ("X-RateLimit-Interval-Seconds", "1"),
            ("X-RateLimit-FillRate", "4"),
            ("Retry-After", "0"),
        ]),
    );
    assert_eq!(g.paced_per_minute(), Some(240.0));
    for i in 1..=3 {
        let t = g.admit().await.unwrap();
        assert_eq!(Instant::now(), t0 + secs(0.25 * i as f64));
        drop(t);
    }
}

#[tokio::test(start_paused = true)]
async fn concurrency_bounds_any_number_of_callers() {
    let g = std::sync::Arc::new(gov(3));
    let in_flight = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (g, n, peak) = (g.clone(), in_flight.clone(), peak.clone());
            tokio::spawn(async move {
                let t = g.admit().await.unwrap();
                let now = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                peak.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(secs(0.1)).await;
                n.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                g.on_answer(t, &RateHeaders::default());
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(peak.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert_eq!(g.stats().requests, 20);
}
