//! How close to a provider's quota the governor runs, against a local simulated provider.
//!
//! ```text
//! cargo bench --bench quota                         # 500 pages per scenario, ~7 minutes
//! QUOTA_BENCH_PAGES=100 cargo bench --bench quota   # quicker, fewer pages
//! cargo bench --bench quota -- --quick              # same as 100 pages
//! ```
//!
//! The simulator speaks the OpenAI chat-completions shape on 127.0.0.1 (a wiremock `Respond`
//! with shared state): an RPM (and optionally TPM) bucket that is full at start, refills
//! continuously, and answers 429 + `Retry-After` (whole seconds, rounded up) at once when
//! empty; accepted requests answer after a fixed latency (300 ms). It counts requests that
//! arrive while a `Retry-After` it gave has not passed ("violations"; requests arriving within
//! 5 ms of the 429 are in-flight races, not counted). A second simulator without limits is the
//! fallback provider.
//!
//! tag-space itself is driven: its real pipeline (`tag_space::pipeline::run`, dry run) reads N
//! pages from an in-memory space, extracts their text, batches them by 5 and sends each batch
//! through the provider under test, which wraps the real `OpenAiProvider` (structured
//! `json_schema` requests, the built-in taxonomy) pointed at the simulator. The simulator
//! answers every page id the request's schema requires. Scenarios: the governor with RPM
//! configured, without a quota at 60 and 30 RPM, and the fixed-rule policy tag-space replaces
//! at 60 and 30 RPM.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tag_space::confluence::{MemorySource, Page};
use tag_space::governor::Quota;
use tag_space::governor::{Chain, Governed, GovernorConfig, ProviderStats, WaitReason};
use tag_space::llm::ProviderSettings;
use tag_space::llm::openai::OpenAiProvider;
use tag_space::llm::{Answer, LlmError, LlmErrorKind, PageText, Provider};
use tag_space::pipeline::{self, RunOptions};
use tag_space::secret::Secret;
use tag_space::taxonomy::Taxonomy;
use tokio::sync::Semaphore;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const LATENCY: Duration = Duration::from_millis(300);
const BATCH: usize = 5;
const MAX_OUTPUT_TOKENS: u32 = 200;

// ---------------------------------------------------------------------------------------------
// The simulated provider

#[derive(Debug, Clone, Copy)]
struct Limits {
    rpm: Option<f64>,
    tpm: Option<f64>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    requests: u64,
    accepted: u64,
    refused: u64,
    violations: u64,
}

struct SimState {
    requests_level: f64,
    tokens_level: f64,
    updated: Instant,
    /// Each `Retry-After` still running: when it was given, and until when.
    blocked: Vec<(Instant, Instant)>,
    counts: Counts,
}

#[derive(Clone)]
struct Sim {
    limits: Limits,
    state: Arc<Mutex<SimState>>,
}

impl Sim {
    fn new(limits: Limits) -> Self {
        let state = SimState {
            requests_level: limits.rpm.unwrap_or(0.0),
            tokens_level: limits.tpm.unwrap_or(0.0),
            updated: Instant::now(),
            blocked: Vec::new(),
            counts: Counts::default(),
        };
        Self {
            limits,
            state: Arc::new(Mutex::new(state)),
        }
    }

    fn counts(&self) -> Counts {
        self.state.lock().unwrap().counts
    }
}

impl Respond for Sim {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let prompt_tokens = (req.body.len() as f64 / 4.0).ceil();
        let now = Instant::now();
        let mut s = self.state.lock().unwrap();
        s.counts.requests += 1;
        s.blocked.retain(|&(_, until)| until > now);
        if s.blocked.iter().any(|&(given, until)| {
            now < until && now.duration_since(given) > Duration::from_millis(5)
        }) {
            s.counts.violations += 1;
        }
        let dt = now.duration_since(s.updated).as_secs_f64();
        s.updated = now;
        if let Some(rpm) = self.limits.rpm {
            s.requests_level = (s.requests_level + dt * rpm / 60.0).min(rpm);
        }
        if let Some(tpm) = self.limits.tpm {
            s.tokens_level = (s.tokens_level + dt * tpm / 60.0).min(tpm);
        }
        let cost = prompt_tokens + MAX_OUTPUT_TOKENS as f64;
        let short_requests = self.limits.rpm.is_some_and(|_| s.requests_level < 1.0);
        let short_tokens = self.limits.tpm.is_some_and(|_| s.tokens_level < cost);
        if short_requests || short_tokens {
            let wait_req = self
                .limits
                .rpm
                .map_or(0.0, |rpm| (1.0 - s.requests_level).max(0.0) * 60.0 / rpm);
            let wait_tok = self
                .limits
                .tpm
                .map_or(0.0, |tpm| (cost - s.tokens_level).max(0.0) * 60.0 / tpm);
            let secs = wait_req.max(wait_tok).ceil().max(1.0);
            let until = now + Duration::from_secs_f64(secs);
            s.blocked.push((now, until));
            s.counts.refused += 1;
            let kind = if short_requests { "requests" } else { "tokens" };
            return ResponseTemplate::new(429).insert_header("retry-after", format!("{secs}")).set_body_json(json!({
                "error": {"message": format!("Rate limit reached on {kind} per min. Please try again in {secs}s."), "type": kind, "param": null, "code": "rate_limit_exceeded"}
            }));
        }
        if self.limits.rpm.is_some() {
            s.requests_level -= 1.0;
        }
        if self.limits.tpm.is_some() {
            s.tokens_level -= cost;
        }
        s.counts.accepted += 1;
        drop(s);
        // The real client's schema requires exactly the batch's page ids.
        let ids: Vec<String> = body["response_format"]["json_schema"]["schema"]["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|id| id.as_str().map(String::from))
            .collect();
        let labels: BTreeMap<String, Value> = ids
            .iter()
            .map(|id| (id.clone(), json!({"topic": ["topic-incident-response"]})))
            .collect();
        let completion_tokens = 12 * ids.len() as u64;
        ResponseTemplate::new(200).set_delay(LATENCY).set_body_json(json!({
            "id": "chatcmpl-sim", "object": "chat.completion", "model": "sim-1",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": json!(labels).to_string()}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens as u64, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens as u64 + completion_tokens}
        }))
    }
}

async fn start_sim(limits: Limits) -> (MockServer, Sim) {
    let server = MockServer::start().await;
    let sim = Sim::new(limits);
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(sim.clone())
        .mount(&server)
        .await;
    (server, sim)
}

// ---------------------------------------------------------------------------------------------
// The real client, pointed at a simulator

fn client(base: &str, taxonomy: &Arc<Taxonomy>) -> OpenAiProvider {
    let settings = ProviderSettings {
        api_key: Some(Secret::new("sim-key")),
        model: "sim-1".into(),
        base_url: format!("{base}/v1"),
        timeout: Duration::from_secs(30),
        max_output_tokens: MAX_OUTPUT_TOKENS,
    };
    OpenAiProvider::new(settings, taxonomy.clone()).expect("client")
}

// ---------------------------------------------------------------------------------------------
// The fixed-rule policy tag-space replaces

/// Pause 5 s after every 12 successes; pause 10 s after 3 consecutive 429s; concurrency 3
/// rising by one per 12 successes to 6; back off 1/2/4 s on a 429 (Retry-After ignored); after
/// that, the batch goes to the fallback.
struct FixedRules<P, F> {
    inner: P,
    fallback: F,
    slots: Semaphore,
    state: Mutex<FixedState>,
    calls: AtomicU64,
    refused: AtomicU64,
    fallbacks: AtomicU64,
    tokens: AtomicU64,
}

#[derive(Default)]
struct FixedState {
    successes: u64,
    consecutive_429s: u32,
    concurrency: usize,
    paused_until: Option<tokio::time::Instant>,
}

impl<P: Provider, F: Provider> FixedRules<P, F> {
    fn new(inner: P, fallback: F) -> Self {
        let state = FixedState {
            concurrency: 3,
            ..FixedState::default()
        };
        Self {
            inner,
            fallback,
            slots: Semaphore::new(3),
            state: Mutex::new(state),
            calls: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
            tokens: AtomicU64::new(0),
        }
    }

    async fn wait_pause(&self) {
        loop {
            let until = self.state.lock().unwrap().paused_until;
            match until {
                Some(u) if u > tokio::time::Instant::now() => tokio::time::sleep_until(u).await,
                _ => return,
            }
        }
    }
}

impl<P: Provider, F: Provider> Provider for FixedRules<P, F> {
    fn name(&self) -> &'static str {
        "fixed-rules"
    }

    async fn classify(&self, batch: &[PageText]) -> Result<Answer, LlmError> {
        let backoff = [1u64, 2, 4];
        for attempt in 0..=backoff.len() {
            self.wait_pause().await;
            let permit = self.slots.acquire().await.expect("open");
            self.calls.fetch_add(1, Ordering::Relaxed);
            let result = self.inner.classify(batch).await;
            drop(permit);
            match result {
                Ok(a) => {
                    let usage = a.usage.unwrap_or_default();
                    self.tokens
                        .fetch_add(usage.input_tokens + usage.output_tokens, Ordering::Relaxed);
                    let mut s = self.state.lock().unwrap();
                    s.consecutive_429s = 0;
                    s.successes += 1;
                    if s.successes % 12 == 0 {
                        s.paused_until = Some(tokio::time::Instant::now() + Duration::from_secs(5));
                        if s.concurrency < 6 {
                            s.concurrency += 1;
                            self.slots.add_permits(1);
                        }
                    }
                    return Ok(a);
                }
                Err(e) if matches!(e.kind, LlmErrorKind::RateLimited { .. }) => {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                    {
                        let mut s = self.state.lock().unwrap();
                        s.consecutive_429s += 1;
                        if s.consecutive_429s >= 3 {
                            s.consecutive_429s = 0;
                            s.paused_until =
                                Some(tokio::time::Instant::now() + Duration::from_secs(10));
                        }
                    }
                    if let Some(&secs) = backoff.get(attempt) {
                        tokio::time::sleep(Duration::from_secs(secs)).await;
                    }
                }
                Err(_) => break,
            }
        }
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        let a = self.fallback.classify(batch).await?;
        let usage = a.usage.unwrap_or_default();
        self.tokens
            .fetch_add(usage.input_tokens + usage.output_tokens, Ordering::Relaxed);
        Ok(a)
    }
}

// ---------------------------------------------------------------------------------------------
// Driving and reporting

fn make_space(n: usize) -> MemorySource {
    let pages = (0..n)
        .map(|i| Page {
            id: format!("{}", 10_000 + i),
            title: format!("Page {i}"),
            version: Some(1),
            body: Some(format!(
                "<h2>On-call</h2><p>{}</p>",
                "How we run the on-call rotation and what to do when the pager goes off. "
                    .repeat(10)
            )),
            labels: Some(Vec::new()),
            url: None,
        })
        .collect();
    MemorySource::new("BENCH", pages)
}

/// Runs tag-space's pipeline over `pages` pages through `p`; returns wall time and failed pages.
async fn drive(p: &impl Provider, pages: usize, taxonomy: &Taxonomy) -> (Duration, usize) {
    let source = make_space(pages);
    let opts = RunOptions {
        space: "BENCH".into(),
        dry_run: true,
        batch_size: BATCH,
        max_batch_chars: 60_000,
        max_page_chars: 8000,
        // As app.rs does: twice the governor's ceiling, so the governor limits, not the pipeline.
        max_in_flight: 12,
        ..RunOptions::default()
    };
    let start = Instant::now();
    let mut failed = 0;
    pipeline::run(&source, p, taxonomy, &opts, |o| {
        failed += usize::from(o.status == pipeline::Status::Failed);
    })
    .await
    .expect("the listing cannot fail");
    (start.elapsed(), failed)
}

struct Row {
    name: String,
    wall: Duration,
    ideal: Duration,
    calls: u64,
    refused: u64,
    violations: u64,
    fallbacks: u64,
    failed: usize,
    tokens_per_page: f64,
    notes: String,
}

fn ideal(batches: usize, rpm: f64) -> Duration {
    Duration::from_secs_f64((batches as f64 - rpm).max(0.0) * 60.0 / rpm) + LATENCY
}

fn waits(s: &ProviderStats) -> String {
    WaitReason::ALL
        .iter()
        .filter_map(|&r| {
            let w = s.wait(r);
            (w.count > 0).then(|| format!("{r} {}×/{:.0}s", w.count, w.total.as_secs_f64()))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

async fn governor_scenario(name: &str, server_rpm: f64, quota: Quota, pages: usize) -> Row {
    let (primary_srv, sim) = start_sim(Limits {
        rpm: Some(server_rpm),
        tpm: None,
    })
    .await;
    let (fallback_srv, fallback_sim) = start_sim(Limits {
        rpm: None,
        tpm: None,
    })
    .await;
    let config = GovernorConfig {
        quota,
        max_output_tokens: MAX_OUTPUT_TOKENS,
        ..GovernorConfig::default()
    };
    let taxonomy = Arc::new(Taxonomy::embedded());
    let chain = Chain::new(vec![
        Governed::new(client(&primary_srv.uri(), &taxonomy), config.clone()),
        Governed::new(client(&fallback_srv.uri(), &taxonomy), config),
    ]);
    let n = pages.div_ceil(BATCH);
    let (wall, failed) = drive(&chain, pages, &taxonomy).await;
    let stats = chain.stats();
    let (p, f) = (&stats[0], &stats[1]);
    let c = sim.counts();
    let notes = format!(
        "p50 {:.0} ms, p95 {:.0} ms; waits: {}; final concurrency {}, paced at {}",
        p.latency_quantile(0.5).unwrap_or_default().as_secs_f64() * 1000.0,
        p.latency_quantile(0.95).unwrap_or_default().as_secs_f64() * 1000.0,
        waits(p),
        p.concurrency_limit,
        p.paced_rpm.map_or("—".into(), |r| format!("{r:.1} RPM")),
    );
    assert_eq!(fallback_sim.counts().requests, f.calls);
    Row {
        name: name.into(),
        wall,
        ideal: ideal(n, server_rpm),
        calls: c.requests,
        refused: c.refused,
        violations: c.violations,
        fallbacks: p.fallbacks,
        failed,
        tokens_per_page: (p.tokens_in + p.tokens_out + f.tokens_in + f.tokens_out) as f64
            / pages as f64,
        notes,
    }
}

async fn fixed_rules_scenario(name: &str, server_rpm: f64, pages: usize) -> Row {
    let (primary_srv, sim) = start_sim(Limits {
        rpm: Some(server_rpm),
        tpm: None,
    })
    .await;
    let (fallback_srv, fallback_sim) = start_sim(Limits {
        rpm: None,
        tpm: None,
    })
    .await;
    let taxonomy = Arc::new(Taxonomy::embedded());
    let fixed = FixedRules::new(
        client(&primary_srv.uri(), &taxonomy),
        client(&fallback_srv.uri(), &taxonomy),
    );
    let n = pages.div_ceil(BATCH);
    let (wall, failed) = drive(&fixed, pages, &taxonomy).await;
    let c = sim.counts();
    Row {
        name: name.into(),
        wall,
        ideal: ideal(n, server_rpm),
        calls: c.requests,
        refused: c.refused,
        violations: c.violations,
        fallbacks: fixed.fallbacks.load(Ordering::Relaxed),
        failed,
        tokens_per_page: fixed.tokens.load(Ordering::Relaxed) as f64 / pages as f64,
        notes: format!(
            "{} of the fallback's requests",
            fallback_sim.counts().requests
        ),
    }
}

fn print(rows: &[Row]) {
    println!();
    println!(
        "| scenario | wall | ideal | wall/ideal | calls | 429s | 429s % | Retry-After violations | fallbacks | failed | tokens/page |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {:.1} s | {:.1} s | {:.2} | {} | {} | {:.1} % | {} | {} | {} | {:.0} |",
            r.name,
            r.wall.as_secs_f64(),
            r.ideal.as_secs_f64(),
            r.wall.as_secs_f64() / r.ideal.as_secs_f64(),
            r.calls,
            r.refused,
            100.0 * r.refused as f64 / r.calls.max(1) as f64,
            r.violations,
            r.fallbacks,
            r.failed,
            r.tokens_per_page
        );
    }
    println!();
    for r in rows {
        println!("- {}: {}", r.name, r.notes);
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let pages: usize = std::env::var("QUOTA_BENCH_PAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 100 } else { 500 });
    let only: Option<String> = std::env::var("QUOTA_BENCH_ONLY").ok();
    if std::env::var("RUST_LOG").is_ok() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    println!(
        "{pages} pages, batches of {BATCH}, {} ms latency",
        LATENCY.as_millis()
    );
    let wanted = |key: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|k| k == key))
    };
    let mut rows = Vec::new();
    if wanted("a") {
        rows.push(
            governor_scenario(
                "(a) governor, RPM 60 configured, provider 60 RPM",
                60.0,
                Quota {
                    rpm: Some(60),
                    tpm: None,
                },
                pages,
            )
            .await,
        );
    }
    if wanted("b") {
        rows.push(
            governor_scenario(
                "(b) governor, no quota, provider 60 RPM",
                60.0,
                Quota::default(),
                pages,
            )
            .await,
        );
    }
    if wanted("c") {
        rows.push(
            governor_scenario(
                "(c) governor, no quota, provider 30 RPM",
                30.0,
                Quota::default(),
                pages,
            )
            .await,
        );
    }
    if wanted("d") {
        rows.push(fixed_rules_scenario("(d) fixed rules, provider 60 RPM", 60.0, pages).await);
    }
    if wanted("e") {
        rows.push(fixed_rules_scenario("(e) fixed rules, provider 30 RPM", 30.0, pages).await);
    }
    print(&rows);
}
