//! Every request to an LLM passes the governor, the structured-output ladder's re-asks
//! included: an in-memory client with a real ladder ([`structured::ask_once`]) behind a real
//! governor, on tokio's paused clock. Exact virtual times, no sockets.

use std::sync::Mutex;
use std::time::Duration;

use tag_space::governor::{Chain, Governed, GovernorConfig, Jitter, Quota, WaitReason};
use tag_space::llm::structured::{self, Ladder, OPENAI_RUNGS, Sent};
use tag_space::llm::{
    Answer, Climb, LlmError, LlmErrorKind, PageText, Provider, RateLimitHints, Unsettled, Usage,
};
use tag_space::retry::Backoff;
use tag_space::taxonomy::{Category, Tag, Taxonomy};
use tokio::time::Instant;

/// What the server answers to its `n`th request (0-based) at a rung (`json_schema`, ...).
type Script = dyn Fn(usize, &str) -> Result<Sent, LlmError> + Send + Sync;

/// An OpenAI-compatible client whose server is a script: asks at its ladder's rung and
/// records when each request went out (relative to its creation) and at which rung.
struct LadderFake {
    name: &'static str,
    ladder: Ladder,
    taxonomy: Taxonomy,
    script: Box<Script>,
    t0: Instant,
    requests: Mutex<Vec<(Duration, &'static str)>>,
}

impl LadderFake {
    fn new(
        name: &'static str,
        script: impl Fn(usize, &str) -> Result<Sent, LlmError> + Send + Sync + 'static,
    ) -> Self {
        Self {
            name,
            ladder: Ladder::new(OPENAI_RUNGS, 0, false),
            taxonomy: taxonomy(),
            script: Box::new(script),
            t0: Instant::now(),
            requests: Mutex::new(Vec::new()),
        }
    }

    fn requests(&self) -> Vec<(Duration, &'static str)> {
        self.requests.lock().unwrap().clone()
    }

    async fn send(&self, rung: usize) -> Result<Sent, LlmError> {
        let name = self.ladder.name(rung);
        let n = {
            let mut requests = self.requests.lock().unwrap();
            requests.push((self.t0.elapsed(), name));
            requests.len() - 1
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        (self.script)(n, name)
    }
}

impl Provider for LadderFake {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn classify(&self, batch: &[PageText]) -> Result<Answer, LlmError> {
        structured::settle(|climb| self.classify_once(batch, None, climb)).await
    }

    async fn classify_once(
        &self,
        batch: &[PageText],
        _cap: Option<u32>,
        climb: Option<Climb>,
    ) -> Result<Answer, Unsettled> {
        let send = |rung| self.send(rung);
        let sent =
            structured::ask_once(&self.ladder, self.name, batch, &self.taxonomy, climb, send)
                .await?;
        Ok(Answer {
            provider: self.name,
            model: "m".into(),
            labels: batch
                .iter()
                .map(|p| (p.id.clone(), vec!["type-how-to".to_string()]))
                .collect(),
            usage: sent.usage,
            rate_limits: sent.rate_limits,
        })
    }
}

fn taxonomy() -> Taxonomy {
    let tag = |name: &str| Tag {
        name: name.into(),
        description: String::new(),
        keywords: Vec::new(),
    };
    let category = Category {
        name: "type".into(),
        description: "what kind of document".into(),
        max_per_page: 1,
        tags: vec![tag("how-to"), tag("reference")],
    };
    Taxonomy::new(vec![category], 3, "test").unwrap()
}

fn batch() -> Vec<PageText> {
    vec![PageText {
        id: "p1".into(),
        title: "How to file a form".into(),
        text: "Open the form, fill it in.".into(),
    }]
}

/// An answer that follows the schema, with `tokens` in and out.
fn good(tokens: u64) -> Result<Sent, LlmError> {
    Ok(Sent {
        content: r#"{"p1": {"type": ["how-to"]}}"#.into(),
        usage: Some(Usage {
            input_tokens: tokens,
            output_tokens: tokens,
            cached_input_tokens: 0,
        }),
        rate_limits: RateLimitHints::default(),
    })
}

/// llama-cpp-python's refusal of `json_schema` (reference §5).
fn refused() -> Result<Sent, LlmError> {
    Err(LlmError::new(
        "openai",
        LlmErrorKind::BadRequest,
        Some(400),
        "response_format.type: Input should be 'text' or 'json_object'",
    ))
}

/// Exact settings: pacing at the quota itself, deterministic jitter, a circuit that opens on
/// the first failed batch (so that a re-ask counted as a failure would show).
fn config(rpm: Option<u32>) -> GovernorConfig {
    GovernorConfig {
        quota: Quota { rpm, tpm: None },
        headroom: 1.0,
        jitter: Jitter::fixed(1.0),
        backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(30)),
        max_output_tokens: 0,
        failure_threshold: 1,
        ..GovernorConfig::default()
    }
}

fn secs(actual: &[(Duration, &'static str)]) -> Vec<(f64, &'static str)> {
    actual
        .iter()
        .map(|(t, rung)| ((t.as_secs_f64() * 10.0).round() / 10.0, *rung))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_reask_after_a_refused_format_waits_for_its_own_rpm_token_and_is_counted() {
    let primary = LadderFake::new("openai", |_, rung| match rung {
        "json_schema" => refused(),
        _ => good(50),
    });
    let fallback = LadderFake::new("other", |_, _| good(1));
    let chain = Chain::new(vec![
        Governed::new(primary, config(Some(1))),
        Governed::new(fallback, config(None)),
    ]);
    let answer = chain.classify(&batch()).await.unwrap();
    // Not a failure: the batch stays with the primary, which answers at the new rung.
    assert_eq!(answer.provider, "openai");
    let p = &chain.providers()[0];
    // One RPM token a minute: the re-ask waits for the next one.
    assert_eq!(
        secs(&p.inner().requests()),
        [(0.0, "json_schema"), (60.0, "json_object")]
    );
    assert_eq!(p.inner().ladder.current_name(), "json_object");
    let s = p.stats();
    assert_eq!((s.calls, s.successes, s.reasks), (2, 1, 1));
    assert_eq!(s.failures.get("bad_request"), Some(&1));
    assert_eq!((s.tokens_in, s.tokens_out), (50, 50));
    // No retry spent, no backoff, no circuit-breaker strike, no fallback.
    assert_eq!(
        (s.retries, s.fallbacks, s.unavailable.as_deref()),
        (0, 0, None)
    );
    assert_eq!(s.wait(WaitReason::Backoff5xx).count, 0);
    assert_eq!(s.wait(WaitReason::Preflight).count, 1);
    assert_eq!(chain.providers()[1].stats().calls, 0);
}

#[tokio::test(start_paused = true)]
async fn answers_that_ignore_the_schema_are_asked_again_as_new_requests_and_their_tokens_count() {
    // A server that answers prose unless the schema is in the prompt.
    let fake = LadderFake::new("openai", |_, rung| match rung {
        "prompt" => good(50),
        _ => Ok(Sent {
            content: "Sure! This page is a how-to guide.".into(),
            usage: Some(Usage {
                input_tokens: 30,
                output_tokens: 10,
                cached_input_tokens: 0,
            }),
            rate_limits: RateLimitHints::default(),
        }),
    });
    let gov = Governed::new(fake, config(Some(1)));
    gov.classify(&batch()).await.unwrap();
    assert_eq!(
        secs(&gov.inner().requests()),
        [
            (0.0, "json_schema"),
            (60.0, "json_object"),
            (120.0, "prompt")
        ]
    );
    let s = gov.stats();
    assert_eq!(
        (s.calls, s.successes, s.reasks, s.failed_calls()),
        (3, 1, 2, 0)
    );
    assert_eq!((s.tokens_in, s.tokens_out), (30 + 30 + 50, 10 + 10 + 50));
}

#[tokio::test(start_paused = true)]
async fn a_429_on_a_reask_cools_the_provider_down_and_leaves_the_ladder_where_it_is() {
    let fake = LadderFake::new("openai", |n, rung| match (n, rung) {
        (_, "json_schema") => refused(),
        (1, _) => Err(LlmError::new(
            "openai",
            LlmErrorKind::RateLimited {
                retry_after: Some(Duration::from_secs(5)),
            },
            Some(429),
            "Rate limit reached for requests; response_format json_object",
        )),
        _ => good(50),
    });
    let gov = Governed::new(fake, config(None));
    gov.classify(&batch()).await.unwrap();
    // The 429 is a 429 (it even names the format): the provider pauses for its hint, and the
    // request is retried at the same rung, not a rung lower.
    assert_eq!(
        secs(&gov.inner().requests()),
        [
            (0.0, "json_schema"),
            (0.1, "json_object"),
            (5.2, "json_object")
        ]
    );
    assert_eq!(gov.inner().ladder.current_name(), "json_object");
    let s = gov.stats();
    assert_eq!((s.calls, s.reasks, s.rate_limited, s.retries), (3, 1, 1, 1));
    assert_eq!(s.wait(WaitReason::Cooldown429).count, 1);
}

/// Through the built binary against wiremock (real clock, nothing asserted about time): the
/// refused `json_schema` request and the `json_object` re-ask are both in the JSON report.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_json_schema_and_its_reask_are_two_requests_in_the_json_report() {
    use super::localmodels::{Server, bodies, llm, mode, report, run_with, site};
    let confluence = site().await;
    let fake = llm(Server::LlamaCppPython).await;
    let dir = tempfile::tempdir().unwrap();
    let out = run_with(
        dir.path(),
        &confluence,
        &fake,
        "local-model",
        &[],
        &["--limit", "1"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let modes: Vec<&str> = bodies(&fake).await.iter().map(mode).collect();
    assert_eq!(modes, ["json_schema", "json_object"], "{stderr}");
    let p = &report(dir.path())["metrics"]["providers"][0];
    assert_eq!(p["provider"], "openai");
    assert_eq!(p["calls"], 2, "{p}");
    assert_eq!(p["successes"], 1, "{p}");
    // The refusal (HTTP 500 naming the format) is the failed one; no retry was spent on it.
    assert_eq!(p["failures"]["overloaded"], 1, "{p}");
    assert_eq!(p["retries"], 0, "{p}");
    assert_eq!(p["reasks"], 1, "{p}");
    // The answered re-ask's usage (the fake reports 120 prompt tokens).
    assert_eq!(p["tokens_in"], 120, "{p}");
}
