//! Fault injection: the whole pipeline with the real Confluence, Gemini and OpenAI clients
//! against fakes on 127.0.0.1 that answer 429 (with and without a wait), 500, 503, answer too
//! late, reset the connection, or cut a body off mid-way. Real clock, tiny waits, short
//! client timeouts (set through the library API: the binary's timeouts are 60 s and 120 s
//! and no setting shortens them).
//!
//! Faults are keyed by request (method, URL and body), not by arrival order, so that the
//! same request fails the same way whatever the concurrency: the nth arrival of a request
//! gets the nth fault of its plan, later arrivals are served normally.
//!
//! What every test checks: every page ends tagged (or, under a storm that never ends, failed
//! with a reason) and the run ends; each page's labels are written exactly once more than
//! the number of writes whose answer was lost; no request arrives before a `Retry-After`
//! (or `retryDelay`, `retry-after-ms`) has passed; the number of requests is exactly what
//! the faults explain.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tag_space::confluence::{ConfluenceAuth, ConfluenceSettings};
use tag_space::confluence::{ConfluenceClient, Flavor};
use tag_space::governor::{Chain, Governed, GovernorConfig};
use tag_space::llm::AnyProvider;
use tag_space::llm::ProviderSettings;
use tag_space::llm::gemini::GeminiProvider;
use tag_space::llm::openai::OpenAiProvider;
use tag_space::pipeline::{PageOutcome, RunOptions, Status, run};
use tag_space::retry::Backoff;
use tag_space::secret::Secret;
use tag_space::taxonomy::Taxonomy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::fakesite::CloudSite;
use super::pipeline::taxonomy;
use crate::harness::proc::POLL_PATIENCE;

/// The client timeout of every test here: any answer but a `Slow` fault's comes well within
/// it, even on a loaded machine (at 400 ms, a normal answer served late was a timeout the
/// fake did not plan, and "one retry per fault" failed). A `Slow` fault's answer never
/// comes while the test runs.
const TIMEOUT: Duration = Duration::from_secs(2);
const SLOW: Duration = Duration::from_secs(3600);
/// What the fake models choose for every page, and so what every page must end with.
const CHOSEN: [&str; 2] = ["type-howto", "tool-jira"];

// ---- Faults at the HTTP level (wiremock) ----------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// 429, with the provider's way of saying how long to wait, or without.
    TooMany(Option<Duration>),
    Status(u16),
    /// The normal answer, after the client has given up.
    Slow,
}

#[derive(Debug, Clone, Copy)]
enum Dialect {
    Confluence,
    Gemini,
    OpenAi,
}

impl Dialect {
    fn template(self, fault: Fault, normal: ResponseTemplate) -> ResponseTemplate {
        let json = |status: u16, body: Value| {
            ResponseTemplate::new(status).set_body_raw(body.to_string(), "application/json")
        };
        match (self, fault) {
            (_, Fault::Slow) => normal.set_delay(SLOW),
            (Dialect::Confluence, Fault::TooMany(wait)) => {
                let t = json(
                    429,
                    json!({"statusCode": 429, "message": "Rate limit exceeded"}),
                );
                match wait {
                    Some(w) => t.insert_header("Retry-After", format!("{}", w.as_secs_f64())),
                    None => t,
                }
            }
            (Dialect::Confluence, Fault::Status(s)) => json(
                s,
                json!({"statusCode": s, "message": "com.atlassian.confluence: internal error"}),
            ),
            (Dialect::Gemini, Fault::TooMany(wait)) => {
                let mut details = vec![
                    json!({"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaId": "GenerateRequestsPerMinutePerProjectPerModel"}]}),
                ];
                if let Some(w) = wait {
                    details.push(json!({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": format!("{}s", w.as_secs_f64())}));
                }
                json(
                    429,
                    json!({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "Resource has been exhausted (e.g. check quota).", "details": details}}),
                )
            }
            (Dialect::Gemini, Fault::Status(s)) => json(
                s,
                json!({"error": {"code": s, "status": "UNAVAILABLE", "message": "The model is overloaded. Please try again later."}}),
            ),
            (Dialect::OpenAi, Fault::TooMany(wait)) => {
                let t = json(
                    429,
                    json!({"error": {"message": "Rate limit reached for requests", "type": "requests", "param": null, "code": "rate_limit_exceeded"}}),
                );
                match wait {
                    Some(w) => t.insert_header("retry-after-ms", w.as_millis().to_string()),
                    None => t,
                }
            }
            (Dialect::OpenAi, Fault::Status(s)) => json(
                s,
                json!({"error": {"message": "The server had an error while processing your request.", "type": "server_error", "param": null, "code": null}}),
            ),
        }
    }
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
struct Hit {
    at: Instant,
    method: String,
    /// Path and query.
    url: String,
    /// Method, URL and body: what identifies "the same request" across retries.
    key: String,
    body: Vec<u8>,
    fault: Option<Fault>,
}

type Plan = Box<dyn Fn(&Request) -> Vec<Fault> + Send + Sync>;

/// Serves `inner`, except that the nth arrival of a request gets the nth fault of its plan.
struct Flaky<R> {
    inner: R,
    dialect: Dialect,
    plan: Plan,
    seen: Mutex<HashMap<String, usize>>,
    log: Arc<Mutex<Vec<Hit>>>,
}

impl<R: Respond> Respond for Flaky<R> {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let at = Instant::now();
        let url = match req.url.query() {
            Some(q) => format!("{}?{q}", req.url.path()),
            None => req.url.path().to_string(),
        };
        let key = format!(
            "{} {url} {}",
            req.method,
            String::from_utf8_lossy(&req.body)
        );
        let n = {
            let mut seen = self.seen.lock().unwrap();
            let n = seen.entry(key.clone()).or_insert(0);
            *n += 1;
            *n - 1
        };
        let fault = (self.plan)(req).get(n).copied();
        self.log.lock().unwrap().push(Hit {
            at,
            method: req.method.to_string(),
            url,
            key,
            body: req.body.clone(),
            fault,
        });
        let normal = self.inner.respond(req);
        match fault {
            None => normal,
            Some(f) => self.dialect.template(f, normal),
        }
    }
}

async fn flaky<R: Respond + 'static>(
    inner: R,
    dialect: Dialect,
    plan: impl Fn(&Request) -> Vec<Fault> + Send + Sync + 'static,
) -> (MockServer, Arc<Mutex<Vec<Hit>>>) {
    let server = MockServer::start().await;
    let log = Arc::new(Mutex::new(Vec::new()));
    Mock::given(any())
        .respond_with(Flaky {
            inner,
            dialect,
            plan: Box::new(plan),
            seen: Mutex::new(HashMap::new()),
            log: log.clone(),
        })
        .mount(&server)
        .await;
    (server, log)
}

/// The page ids a request asks labels for, from its response schema's `required`.
fn batch_ids(body: &Value) -> Vec<String> {
    let schema = body
        .pointer("/generationConfig/responseJsonSchema")
        .or_else(|| body.pointer("/generationConfig/responseSchema"))
        .or_else(|| body.pointer("/response_format/json_schema/schema"))
        .expect("a response schema");
    schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn answer_for(req: &Request) -> String {
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    let labels: serde_json::Map<String, Value> = batch_ids(&body)
        .into_iter()
        .map(|id| (id, json!({"type": [CHOSEN[0]], "tool": [CHOSEN[1]]})))
        .collect();
    Value::Object(labels).to_string()
}

/// A Gemini model that labels every page of a batch with [`CHOSEN`].
struct GeminiModel;
impl Respond for GeminiModel {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_json(json!({
            "candidates": [{"content": {"role": "model", "parts": [{"text": answer_for(req)}]}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 100, "candidatesTokenCount": 20, "totalTokenCount": 120}
        }))
    }
}

/// An OpenAI model that labels every page of a batch with [`CHOSEN`].
struct OpenAiModel;
impl Respond for OpenAiModel {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_json(json!({
            "id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4.1-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer_for(req), "refusal": null}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
        }))
    }
}

// ---- The rig -------------------------------------------------------------------------------

fn confluence_client(root: String) -> ConfluenceClient {
    ConfluenceClient::new(ConfluenceSettings {
        root,
        flavor: Flavor::Cloud,
        auth: ConfluenceAuth::Basic {
            email: "bot@acme.test".into(),
            token: Secret::new("tok"),
        },
        timeout: TIMEOUT,
        max_retries: 4,
    })
    .unwrap()
    .with_backoff(Backoff::new(
        Duration::from_millis(1),
        Duration::from_millis(10),
    ))
    .with_page_limit(5)
}

fn provider_settings(base_url: String, model: &str) -> ProviderSettings {
    ProviderSettings {
        api_key: Some(Secret::new("llm-key")),
        model: model.into(),
        base_url,
        timeout: TIMEOUT,
        max_output_tokens: 512,
    }
}

fn governor() -> GovernorConfig {
    GovernorConfig {
        initial_concurrency: 2,
        max_concurrency: 3,
        max_attempts: 4,
        retry_budget_floor: 100,
        backoff: Backoff::new(Duration::from_millis(5), Duration::from_millis(50)),
        failure_threshold: 100,
        probe_after: Duration::from_millis(100),
        max_cooldown: Duration::from_secs(5),
        ..GovernorConfig::default()
    }
}

fn chain(gemini: Option<String>, openai: Option<String>) -> Chain<AnyProvider> {
    let tax = Arc::new(taxonomy());
    let mut providers = Vec::new();
    if let Some(url) = gemini {
        let p = GeminiProvider::new(provider_settings(url, "gemini-2.5-flash"), tax.clone());
        providers.push(Governed::new(AnyProvider::Gemini(p.unwrap()), governor()));
    }
    if let Some(url) = openai {
        let p = OpenAiProvider::new(provider_settings(url, "gpt-4.1-mini"), tax.clone());
        providers.push(Governed::new(AnyProvider::OpenAi(p.unwrap()), governor()));
    }
    Chain::new(providers)
}

fn options(batch_size: usize) -> RunOptions {
    RunOptions {
        space: "ENG".into(),
        batch_size,
        max_batch_chars: 60_000,
        max_page_chars: 4_000,
        max_in_flight: 6,
        grace: Duration::from_secs(1),
        ..RunOptions::default()
    }
}

async fn run_all(
    source: &ConfluenceClient,
    chain: &Chain<AnyProvider>,
    batch_size: usize,
) -> (u64, BTreeMap<u64, PageOutcome>) {
    let tax: Taxonomy = taxonomy();
    let mut outcomes = BTreeMap::new();
    let opts = options(batch_size);
    let listed = run(source, chain, &tax, &opts, |o| {
        let id: u64 = o.id.parse().unwrap();
        assert!(outcomes.insert(id, o).is_none(), "one outcome per page");
    });
    // A deadline, not a speed claim: retries that never end fail the test in a minute.
    let listed = tokio::time::timeout(POLL_PATIENCE, listed)
        .await
        .unwrap_or_else(|_| panic!("the run did not end within {POLL_PATIENCE:?}"))
        .expect("the listing finishes");
    (listed, outcomes)
}

fn query_of(req: &Request, name: &str) -> Option<String> {
    req.url
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The numeric page id in `/…/pages/{id}/labels` or `/…/content/{id}/label`.
fn page_in_path(path: &str) -> Option<u64> {
    let mut parts = path.split('/').rev();
    parts.next()?;
    parts.next()?.parse().ok()
}

/// Every request that met a 429 with a wait was not repeated before the wait had passed.
fn assert_waits_respected(log: &[Hit]) {
    for (i, hit) in log.iter().enumerate() {
        let Some(Fault::TooMany(Some(wait))) = hit.fault else {
            continue;
        };
        let again = log[i + 1..]
            .iter()
            .find(|h| h.key == hit.key)
            .unwrap_or_else(|| panic!("{} {} was never retried", hit.method, hit.url));
        let gap = again.at - hit.at;
        assert!(
            gap >= wait,
            "{} {} retried after {gap:?}, before its Retry-After of {wait:?}",
            hit.method,
            hit.url
        );
    }
}

/// Requests per key, and how many of them were faults.
fn per_key(log: &[Hit]) -> HashMap<String, (usize, usize)> {
    let mut m: HashMap<String, (usize, usize)> = HashMap::new();
    for h in log {
        let e = m.entry(h.key.clone()).or_default();
        e.0 += 1;
        e.1 += usize::from(h.fault.is_some());
    }
    m
}

fn expected_write() -> Value {
    json!(CHOSEN.map(|n| json!({"prefix": "global", "name": n})))
}

/// The Confluence faults of the main test, by request.
fn confluence_plan(req: &Request) -> Vec<Fault> {
    use Fault::*;
    let ms = Duration::from_millis;
    let path = req.url.path();
    match req.method.as_str() {
        "GET" if path.ends_with("/spaces") => vec![Status(502)],
        "GET" if path.ends_with("/pages") => match query_of(req, "cursor").as_deref() {
            None => vec![TooMany(Some(ms(200)))],
            Some("10") => vec![Status(503), Status(500)],
            Some("15") => vec![Slow],
            Some("20") => vec![TooMany(None)],
            _ => vec![],
        },
        "GET" => match page_in_path(path).unwrap() % 6 {
            1 => vec![TooMany(None)],
            2 => vec![Status(500)],
            3 => vec![Slow],
            4 => vec![TooMany(Some(ms(0)))],
            _ => vec![],
        },
        "POST" => match page_in_path(path).unwrap() % 5 {
            0 => vec![TooMany(Some(ms(0)))],
            1 => vec![Status(503)],
            2 => vec![Slow],
            3 => vec![TooMany(Some(ms(200))), Status(500)],
            _ => vec![],
        },
        _ => vec![],
    }
}

/// The Gemini faults, by the batch's first page: 1-4, 5-8, … with batches of 4.
fn gemini_plan(req: &Request) -> Vec<Fault> {
    use Fault::*;
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    let first: u64 = batch_ids(&body)[0].parse().unwrap();
    match (first - 1) / 4 {
        0 => vec![TooMany(Some(Duration::from_millis(300)))],
        1 => vec![Status(503)],
        2 => vec![Status(500), TooMany(None)],
        3 => vec![Slow],
        // More failures than attempts: this batch goes to OpenAI.
        4 => vec![Status(503); 4],
        _ => vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_failing_intermittently_still_tags_every_page_exactly_once() {
    const PAGES: u64 = 24;
    let (confluence, clog) = flaky(
        CloudSite {
            pages: PAGES,
            per_page: 250,
        },
        Dialect::Confluence,
        confluence_plan,
    )
    .await;
    let (gemini, glog) = flaky(GeminiModel, Dialect::Gemini, gemini_plan).await;
    let (openai, olog) = flaky(OpenAiModel, Dialect::OpenAi, |_| {
        vec![Fault::TooMany(Some(Duration::from_millis(100)))]
    })
    .await;
    let source = confluence_client(confluence.uri());
    let chain = chain(Some(gemini.uri()), Some(format!("{}/v1", openai.uri())));

    let (listed, outcomes) = run_all(&source, &chain, 4).await;

    // Every page tagged, by the provider the faults say.
    assert_eq!(listed, PAGES);
    assert_eq!(outcomes.len() as u64, PAGES);
    for (id, o) in &outcomes {
        assert_eq!(o.status, Status::Tagged, "page {id}: {o:?}");
        assert_eq!(o.added, CHOSEN, "page {id}");
        let by = if (17..=20).contains(id) {
            "openai"
        } else {
            "gemini"
        };
        assert_eq!(o.provider.map(|p| p.name()), Some(by), "page {id}");
    }

    // Confluence: exactly one answered write per page, with the chosen labels; every other
    // write to that page is one the plan failed. (A `Slow` write may have landed on the
    // server and was then repeated: adding a label a page has is a no-op in Confluence.)
    let clog = clog.lock().unwrap().clone();
    for id in 1..=PAGES {
        let writes: Vec<&Hit> = clog
            .iter()
            .filter(|h| h.method == "POST" && page_in_path(&h.url) == Some(id))
            .collect();
        let answered: Vec<&&Hit> = writes.iter().filter(|h| h.fault.is_none()).collect();
        assert_eq!(answered.len(), 1, "page {id}: {writes:?}");
        let body: Value = serde_json::from_slice(&answered[0].body).unwrap();
        assert_eq!(body, expected_write(), "page {id}");
    }
    // No request came again before its wait, and each request was sent exactly once more
    // than it failed: no retry beyond what the faults explain, none given up.
    assert_waits_respected(&clog);
    for (key, (sent, failed)) in per_key(&clog) {
        assert_eq!(sent, failed + 1, "{key}");
    }

    // Gemini: one answer per batch it served, retries only for its faults; the batch that
    // failed four times (max_attempts) went to OpenAI, which waited out its 429.
    let glog = glog.lock().unwrap().clone();
    assert_waits_respected(&glog);
    let g = per_key(&glog);
    assert_eq!(g.len(), 6, "six batches: {:?}", g.keys());
    assert_eq!(
        g.values().map(|(sent, _)| sent).sum::<usize>(),
        6 + 1 + 1 + 2 + 1 + 4 - 1
    );
    // The shared cooldown: after the 300 ms 429, no other Gemini request went out either
    // (100 ms of slack for requests already on their way).
    for (i, hit) in glog.iter().enumerate() {
        if let Some(Fault::TooMany(Some(wait))) = hit.fault {
            let early = glog[i + 1..]
                .iter()
                .find(|h| h.at > hit.at + Duration::from_millis(100) && h.at < hit.at + wait);
            assert!(early.is_none(), "sent during the cooldown: {early:?}");
        }
    }
    let olog = olog.lock().unwrap().clone();
    assert_waits_respected(&olog);
    assert_eq!(olog.len(), 2, "one 429, one answer");

    let stats = chain.stats();
    assert_eq!(stats[0].fallbacks, 1);
    assert_eq!(stats[1].rate_limited, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_that_never_ends_fails_pages_with_a_reason_after_bounded_retries() {
    const PAGES: u64 = 12;
    let (confluence, clog) = flaky(
        CloudSite {
            pages: PAGES,
            per_page: 250,
        },
        Dialect::Confluence,
        |_| vec![],
    )
    .await;
    let (gemini, glog) = flaky(GeminiModel, Dialect::Gemini, |_| {
        vec![Fault::Status(503); 1000]
    })
    .await;
    let (openai, olog) = flaky(OpenAiModel, Dialect::OpenAi, |_| {
        vec![Fault::TooMany(Some(Duration::from_millis(20))); 1000]
    })
    .await;
    let source = confluence_client(confluence.uri());
    let chain = chain(Some(gemini.uri()), Some(format!("{}/v1", openai.uri())));
    let (_, outcomes) = run_all(&source, &chain, 4).await;
    assert_eq!(outcomes.len() as u64, PAGES);
    for o in outcomes.values() {
        assert_eq!(o.status, Status::Failed, "{o:?}");
        let reason = o.reason.as_deref().unwrap();
        assert!(reason.starts_with("openai: rate limited"), "{reason}");
    }
    // Three batches, at most `max_attempts` requests each per provider, and no write.
    let sent = |log: &Arc<Mutex<Vec<Hit>>>| log.lock().unwrap().len();
    assert!(sent(&glog) <= 3 * 4, "gemini: {}", sent(&glog));
    assert!(sent(&olog) <= 3 * 4, "openai: {}", sent(&olog));
    assert!(clog.lock().unwrap().iter().all(|h| h.method == "GET"));
}

// ---- Faults below HTTP: resets and bodies cut off (a raw TCP proxy) -------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum RawFault {
    /// Read the request, then reset the connection (RST) without answering.
    Reset,
    /// Forward the request, then send the answer's head and half its body, and close.
    HalfThenClose,
    /// Forward the request, then send the head and half the body, and stall.
    HalfThenStall,
}

type RawPlan = Arc<dyn Fn(&str, &[u8]) -> Vec<RawFault> + Send + Sync>;

/// A proxy on 127.0.0.1:0 in front of `upstream` that forwards one request per connection
/// (`connection: close` both ways) and breaks the ones its plan says, by request line and
/// body, as [`Flaky`] does.
async fn raw_proxy(upstream: SocketAddr, plan: RawPlan) -> (String, Arc<Mutex<Vec<RawFault>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
    let done = Arc::new(Mutex::new(Vec::new()));
    let log = done.clone();
    tokio::spawn(async move {
        loop {
            let Ok((conn, _)) = listener.accept().await else {
                return;
            };
            let (plan, seen, log) = (plan.clone(), seen.clone(), log.clone());
            tokio::spawn(async move {
                let _ = proxy_one(conn, upstream, plan, seen, log).await;
            });
        }
    });
    (format!("http://{addr}"), done)
}

fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// The head with any `connection` header replaced by `connection: close`.
fn close_head(head: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut out = String::new();
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("connection: close\r\n\r\n");
    out.into_bytes()
}

async fn proxy_one(
    mut conn: TcpStream,
    upstream: SocketAddr,
    plan: RawPlan,
    seen: Arc<Mutex<HashMap<String, usize>>>,
    log: Arc<Mutex<Vec<RawFault>>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let end = loop {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = head_end(&buf) {
            break end;
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < end + length {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = head.lines().next().unwrap_or_default().to_string();
    let body = &buf[end..end + length];
    let n = {
        let mut seen = seen.lock().unwrap();
        let n = seen
            .entry(format!("{line} {}", String::from_utf8_lossy(body)))
            .or_insert(0);
        *n += 1;
        *n - 1
    };
    let fault = plan(&line, body).get(n).copied();
    if let Some(f) = fault {
        log.lock().unwrap().push(f);
    }
    if fault == Some(RawFault::Reset) {
        conn.set_zero_linger()?;
        return Ok(());
    }
    let mut up = TcpStream::connect(upstream).await?;
    up.write_all(&close_head(&buf[..end])).await?;
    up.write_all(body).await?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer).await?;
    let Some(aend) = head_end(&answer) else {
        return Ok(());
    };
    conn.write_all(&close_head(&answer[..aend])).await?;
    let abody = &answer[aend..];
    match fault {
        None => conn.write_all(abody).await?,
        Some(_) => {
            conn.write_all(&abody[..abody.len() / 2]).await?;
            conn.flush().await?;
            if fault == Some(RawFault::HalfThenStall) {
                tokio::time::sleep(SLOW * 2).await;
            }
        }
    }
    conn.shutdown().await
}

fn upstream_addr(server: &MockServer) -> SocketAddr {
    *server.address()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_and_bodies_cut_off_mid_way_are_retried_and_nothing_is_lost() {
    use RawFault::*;
    const PAGES: u64 = 10;
    let (confluence, clog) = flaky(
        CloudSite {
            pages: PAGES,
            per_page: 250,
        },
        Dialect::Confluence,
        |_| vec![],
    )
    .await;
    let confluence_plan: RawPlan = Arc::new(|line: &str, _: &[u8]| {
        let path = line.split(' ').nth(1).unwrap_or_default();
        let path = path.split('?').next().unwrap_or_default();
        let id = page_in_path(path).unwrap_or(0);
        if line.starts_with("GET") && path.ends_with("/pages") && !line.contains("cursor") {
            vec![Reset, HalfThenClose]
        } else if line.starts_with("GET") && path.ends_with("/labels") && id % 3 == 0 {
            vec![HalfThenStall]
        } else if line.starts_with("POST") {
            match id % 4 {
                0 => vec![Reset],
                1 => vec![HalfThenClose],
                2 => vec![HalfThenStall, Reset],
                _ => vec![],
            }
        } else {
            vec![]
        }
    });
    let (conf_url, conf_faults) = raw_proxy(upstream_addr(&confluence), confluence_plan).await;
    let (gemini, glog) = flaky(GeminiModel, Dialect::Gemini, |_| vec![]).await;
    let gemini_plan: RawPlan = Arc::new(|_: &str, body: &[u8]| {
        let body: Value = serde_json::from_slice(body).unwrap();
        match batch_ids(&body)[0].as_str() {
            "1" => vec![Reset],
            "4" => vec![HalfThenClose],
            "7" => vec![HalfThenStall, Reset],
            _ => vec![],
        }
    });
    let (gemini_url, gemini_faults) = raw_proxy(upstream_addr(&gemini), gemini_plan).await;

    let source = confluence_client(conf_url);
    let chain = chain(Some(gemini_url), None);
    let (listed, outcomes) = run_all(&source, &chain, 3).await;
    assert_eq!(listed, PAGES);
    for (id, o) in &outcomes {
        assert_eq!(o.status, Status::Tagged, "page {id}: {o:?}");
        assert_eq!(o.added, CHOSEN, "page {id}");
    }
    assert_eq!(outcomes.len() as u64, PAGES);

    // Every write reached Confluence once, plus once per write whose answer was cut off after
    // it had been forwarded (a reset one never arrived): repeated, never lost.
    let clog = clog.lock().unwrap().clone();
    for id in 1..=PAGES {
        let writes: Vec<&Hit> = clog
            .iter()
            .filter(|h| h.method == "POST" && page_in_path(&h.url) == Some(id))
            .collect();
        let cut_off = match id % 4 {
            1 | 2 => 1,
            _ => 0,
        };
        assert_eq!(writes.len(), 1 + cut_off, "page {id}");
        for w in writes {
            let body: Value = serde_json::from_slice(&w.body).unwrap();
            assert_eq!(body, expected_write(), "page {id}");
        }
    }
    let faults = conf_faults.lock().unwrap().clone();
    assert!(
        faults.contains(&Reset)
            && faults.contains(&HalfThenClose)
            && faults.contains(&HalfThenStall)
    );
    // Gemini: four batches, four faults, each batch answered once.
    assert_eq!(gemini_faults.lock().unwrap().len(), 4);
    let answered = glog.lock().unwrap().len();
    // Reset requests never reach the model; cut-off ones do: 4 batches + 1 + 1.
    assert_eq!(answered, 4 + 2);
}
