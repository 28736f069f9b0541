//! Tokens charged per page, and pages per minute, against a tokens-per-minute-bound simulator.
//!
//! ```text
//! cargo bench --bench tokens                       # 100 pages per scenario, about a minute
//! TOKENS_BENCH_PAGES=50 cargo bench --bench tokens # fewer pages
//! TOKENS_BENCH_ONLY_TPM=1 cargo bench --bench tokens # only issue 11's two TPM-bound rows
//! ```
//!
//! Issue 11's rows, "TPM given" and "no quota given", are the same run with and without
//! `TAG_SPACE_OPENAI_TPM`/`_RPM` configured; "ideal / wall" compares each run's wall with the
//! token-bound ideal (the tokens it was charged, less what the simulator's bucket held when it
//! started, at TPM/60 a second).
//!
//! The simulator speaks the OpenAI chat-completions shape on 127.0.0.1 (a wiremock `Respond`)
//! and charges every request as a TPM-bound provider does before it runs it: the body's size / 4
//! plus the output budget the request asks for (`max_tokens` or `max_completion_tokens`),
//! whether or not the answer uses it. Its token bucket holds one minute, refills continuously
//! and starts full, as a provider's does. A request the bucket cannot pay gets a 429 with
//! `Retry-After` (the time until it can, whole seconds) and is not charged; every answer
//! carries OpenAI's `x-ratelimit-*-tokens` headers. Before the measured run, warm-up runs over
//! other pages (in chunks of 25) until the bucket is drained, so that what is measured is the
//! steady rate a long run gets, `TPM / tokens per page`, not the first minute's free burst.
//!
//! Accepted requests answer after 300 ms, for exactly the page ids the request's schema
//! requires (`required` at its root). Each page gets the most the prompt allows
//! (`max_labels_per_page`, filled category by category with that category's LONGEST tags), or
//! in the "schema max" scenario every category filled to its `maxItems` (more than the prompt
//! allows; a schema-constrained decoder can still write it). The answer is written with a
//! space after every `:` and `,`, and its tokens are counted pessimistically (below); when they
//! exceed the request's output budget the simulator does what providers do: the answer is cut
//! at the budget and `finish_reason` is `length`.
//!
//! tag-space itself is driven: the real pipeline (`pipeline::run`, dry run) over N in-memory
//! pages in batches of 5, through the real `OpenAiProvider` behind the governor (defaults, with
//! the quota configured as a user who knows their tier would: `TAG_SPACE_OPENAI_TPM` = the
//! simulator's TPM, and an RPM far above what is reached, so that tokens are what binds; and
//! 6 attempts per request instead of 3, so that the occasional 429 while pacing, which this
//! bench does not measure, does not cost a page: a page that fails here is a truncation).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tag_space::confluence::{MemorySource, Page};
use tag_space::governor::Quota;
use tag_space::governor::{Governed, GovernorConfig};
use tag_space::llm::ProviderSettings;
use tag_space::llm::openai::OpenAiProvider;
use tag_space::pipeline::{self, RunOptions, Status};
use tag_space::secret::Secret;
use tag_space::taxonomy::Taxonomy;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const LATENCY: Duration = Duration::from_millis(300);
const BATCH: usize = 5;
/// Today's (and the default) output ceiling of `ProviderSettings`.
const MAX_OUTPUT_TOKENS: u32 = 4096;

/// Tokens of `text`, counted pessimistically (more than a BPE tokenizer such as o200k gives
/// for JSON): a run of letters is one token per 4 letters (rounded up), a run of digits one
/// per 3, a run of whitespace one, and every other character (quote, bracket, comma, colon,
/// hyphen) one.
fn pessimistic_tokens(text: &str) -> u64 {
    #[derive(PartialEq, Clone, Copy)]
    enum Run {
        None,
        Alpha,
        Digit,
        Space,
    }
    let (mut tokens, mut run, mut len) = (0u64, Run::None, 0u64);
    let close = |run: Run, len: u64| match run {
        Run::Alpha => len.div_ceil(4),
        Run::Digit => len.div_ceil(3),
        Run::Space => 1,
        Run::None => 0,
    };
    for c in text.chars() {
        let kind = if c.is_alphabetic() {
            Run::Alpha
        } else if c.is_ascii_digit() {
            Run::Digit
        } else if c.is_whitespace() {
            Run::Space
        } else {
            Run::None
        };
        if kind != run || kind == Run::None {
            tokens += close(run, len);
            run = kind;
            len = 0;
            if kind == Run::None {
                tokens += 1;
                continue;
            }
        }
        len += 1;
    }
    tokens + close(run, len)
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    requests: u64,
    accepted: u64,
    refused: u64,
    truncated: u64,
    /// Tokens charged for accepted requests: body / 4 + the output budget.
    charged: u64,
    /// Of which the output budgets.
    budgets: u64,
    body_bytes: u64,
    /// Output tokens the answers used (pessimistic count).
    used_out: u64,
}

struct SimState {
    level: f64,
    updated: Instant,
    counts: Counts,
}

#[derive(Clone)]
struct Sim {
    tpm: f64,
    /// Fill every category to its maxItems instead of stopping at max_labels_per_page.
    schema_max: bool,
    taxonomy: Arc<Taxonomy>,
    state: Arc<Mutex<SimState>>,
}

impl Counts {
    fn since(self, earlier: Counts) -> Counts {
        Counts {
            requests: self.requests - earlier.requests,
            accepted: self.accepted - earlier.accepted,
            refused: self.refused - earlier.refused,
            truncated: self.truncated - earlier.truncated,
            charged: self.charged - earlier.charged,
            budgets: self.budgets - earlier.budgets,
            body_bytes: self.body_bytes - earlier.body_bytes,
            used_out: self.used_out - earlier.used_out,
        }
    }
}

impl Sim {
    fn counts(&self) -> Counts {
        self.state.lock().unwrap().counts
    }

    /// Tokens in the bucket now.
    fn level(&self) -> f64 {
        let s = self.state.lock().unwrap();
        let dt = s.updated.elapsed().as_secs_f64();
        (s.level + dt * self.tpm / 60.0).min(self.tpm)
    }

    /// The labels of one page: the longest tags of each category, up to the limits.
    fn page_answer(&self) -> Value {
        let mut left = if self.schema_max {
            usize::MAX
        } else {
            self.taxonomy.max_labels_per_page()
        };
        let mut page = serde_json::Map::new();
        for c in self.taxonomy.categories() {
            let mut tags: Vec<&str> = c.tags.iter().map(|t| t.name.as_str()).collect();
            tags.sort_by_key(|t| std::cmp::Reverse(t.len()));
            let n = c.max_per_page.min(tags.len()).min(left);
            left -= n;
            page.insert(c.name.clone(), json!(tags[..n]));
        }
        Value::Object(page)
    }

    fn answer(&self, body: &Value, budget: u64) -> (String, &'static str, u64) {
        let schema = &body["response_format"]["json_schema"]["schema"];
        let pages: serde_json::Map<String, Value> = schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|id| (id.to_string(), self.page_answer()))
            .collect();
        // One line, a space after every ':' and ',' (outside strings: tags have neither).
        let text = Value::Object(pages)
            .to_string()
            .replace(':', ": ")
            .replace(',', ", ");
        let used = pessimistic_tokens(&text);
        if used <= budget {
            return (text, "stop", used);
        }
        // Cut at the budget, as a provider does.
        let mut cut = String::new();
        for c in text.chars() {
            cut.push(c);
            if pessimistic_tokens(&cut) > budget {
                cut.pop();
                break;
            }
        }
        (cut, "length", budget)
    }
}

impl Respond for Sim {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let prompt_tokens = (req.body.len() as f64 / 4.0).ceil() as u64;
        let budget = body["max_completion_tokens"]
            .as_u64()
            .or_else(|| body["max_tokens"].as_u64())
            .unwrap_or(MAX_OUTPUT_TOKENS as u64);
        let cost = (prompt_tokens + budget) as f64;
        let now = Instant::now();
        let mut s = self.state.lock().unwrap();
        s.counts.requests += 1;
        let dt = now.duration_since(s.updated).as_secs_f64();
        s.updated = now;
        s.level = (s.level + dt * self.tpm / 60.0).min(self.tpm);
        let headers = |level: f64, t: ResponseTemplate| {
            let reset = (self.tpm - level).max(0.0) * 60.0 / self.tpm;
            t.insert_header("x-ratelimit-limit-tokens", format!("{}", self.tpm as u64))
                .insert_header(
                    "x-ratelimit-remaining-tokens",
                    format!("{}", level.max(0.0) as u64),
                )
                .insert_header("x-ratelimit-reset-tokens", format!("{reset:.3}s"))
        };
        if s.level < cost {
            let secs = ((cost - s.level) * 60.0 / self.tpm).ceil().max(1.0);
            s.counts.refused += 1;
            let level = s.level;
            return headers(level, ResponseTemplate::new(429))
                .insert_header("retry-after", format!("{secs}"))
                .set_body_json(json!({"error": {
                    "message": format!("Rate limit reached on tokens per min (TPM): Limit {}, Requested {cost}. Please try again in {secs}s.", self.tpm),
                    "type": "tokens", "param": null, "code": "rate_limit_exceeded"}}));
        }
        s.level -= cost;
        s.counts.accepted += 1;
        s.counts.charged += cost as u64;
        s.counts.budgets += budget;
        s.counts.body_bytes += req.body.len() as u64;
        let level = s.level;
        drop(s);
        let (content, finish, used) = self.answer(&body, budget);
        {
            let mut s = self.state.lock().unwrap();
            s.counts.used_out += used;
            s.counts.truncated += u64::from(finish == "length");
        }
        headers(level, ResponseTemplate::new(200))
            .set_delay(LATENCY)
            .set_body_json(json!({
                "id": "chatcmpl-sim", "object": "chat.completion", "model": "sim-1",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": null}, "finish_reason": finish}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": used,
                          "total_tokens": prompt_tokens + used}
            }))
    }
}

/// `n` pages with ids from `first`.
fn make_space(first: usize, n: usize) -> MemorySource {
    let pages = (first..first + n)
        .map(|i| Page {
            id: format!("{}", 10_000 + i),
            title: format!("On-call rotation, part {i}"),
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

struct Row {
    name: String,
    pages: usize,
    warm_up_pages: usize,
    wall: Duration,
    counts: Counts,
    answered: usize,
    failed: usize,
    retries: u64,
    splits: u64,
    /// The wall a run limited only by the tokens would take: what it was charged, less what
    /// the simulator's bucket held at its start, at TPM/60 tokens a second.
    ideal: Duration,
}

/// One run; `quota`: whether `TAG_SPACE_OPENAI_TPM` is given (else the governor learns from
/// the `x-ratelimit-*` headers and 429s alone).
async fn scenario(name: &str, tpm: f64, schema_max: bool, pages: usize, quota: bool) -> Row {
    let taxonomy = Arc::new(Taxonomy::embedded());
    let server = MockServer::start().await;
    let sim = Sim {
        tpm,
        schema_max,
        taxonomy: taxonomy.clone(),
        state: Arc::new(Mutex::new(SimState {
            level: tpm,
            updated: Instant::now(),
            counts: Counts::default(),
        })),
    };
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(sim.clone())
        .mount(&server)
        .await;
    let settings = ProviderSettings {
        api_key: Some(Secret::new("sim-key")),
        model: "sim-1".into(),
        base_url: format!("{}/v1", server.uri()),
        timeout: Duration::from_secs(30),
        max_output_tokens: MAX_OUTPUT_TOKENS,
    };
    let client = OpenAiProvider::new(settings, taxonomy.clone()).expect("client");
    let config = GovernorConfig {
        quota: Quota {
            rpm: quota.then_some(10_000),
            tpm: quota.then_some(tpm as u32),
        },
        max_output_tokens: MAX_OUTPUT_TOKENS,
        max_attempts: 6,
        ..GovernorConfig::default()
    };
    let governed = Governed::new(client, config);
    let opts = RunOptions {
        space: "BENCH".into(),
        dry_run: true,
        batch_size: BATCH,
        max_batch_chars: 60_000,
        max_page_chars: 8000,
        max_in_flight: 12,
        ..RunOptions::default()
    };
    // Warm-up over other pages until the simulator's initial full bucket is drained.
    let mut warm = 0;
    while sim.level() > tpm * 0.05 && warm < 100 {
        let source = make_space(100_000 + warm * 25, 25);
        pipeline::run(&source, &governed, &taxonomy, &opts, |_| {})
            .await
            .expect("the listing cannot fail");
        warm += 1;
    }
    let (counts0, stats0, level0) = (sim.counts(), governed.stats(), sim.level());
    let source = make_space(0, pages);
    let (mut answered, mut failed) = (0, 0);
    let start = Instant::now();
    pipeline::run(&source, &governed, &taxonomy, &opts, |o| {
        failed += usize::from(o.status == Status::Failed);
        answered += usize::from(o.status == Status::Tagged && !o.chosen.is_empty());
    })
    .await
    .expect("the listing cannot fail");
    let wall = start.elapsed();
    let stats = governed.stats();
    let counts = sim.counts().since(counts0);
    let ideal = Duration::from_secs_f64((counts.charged as f64 - level0).max(0.0) * 60.0 / tpm);
    Row {
        ideal,
        name: name.into(),
        pages,
        warm_up_pages: warm * 25,
        wall,
        counts,
        answered,
        failed,
        retries: stats.retries - stats0.retries,
        splits: stats.splits - stats0.splits,
    }
}

fn print(rows: &[Row], tpm: f64) {
    println!();
    println!(
        "TPM {tpm:.0}, batches of {BATCH}, {} ms latency",
        LATENCY.as_millis()
    );
    println!();
    println!(
        "| scenario | warm-up pages | pages | tokens charged/page | of which output budget/page | request body bytes/page | output used/page | pages/min | wall | requests | 429s | truncated | retries | splits | pages answered | failed | token-bound ideal | ideal / wall |"
    );
    println!(
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in rows {
        let c = &r.counts;
        let per = |n: u64| n as f64 / r.pages as f64;
        println!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} s | {} | {} | {} | {} | {} | {} | {} | {:.1} s | {:.2} |",
            r.name,
            r.warm_up_pages,
            r.pages,
            per(c.charged),
            per(c.budgets),
            per(c.body_bytes),
            per(c.used_out),
            r.pages as f64 * 60.0 / r.wall.as_secs_f64(),
            r.wall.as_secs_f64(),
            c.requests,
            c.refused,
            c.truncated,
            r.retries,
            r.splits,
            r.answered,
            r.failed,
            r.ideal.as_secs_f64(),
            r.ideal.as_secs_f64() / r.wall.as_secs_f64(),
        );
    }
}

#[tokio::main]
async fn main() {
    let pages: usize = std::env::var("TOKENS_BENCH_PAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let tpm: f64 = std::env::var("TOKENS_BENCH_TPM")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000.0);
    if std::env::var("RUST_LOG").is_ok() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let only_tpm = std::env::var("TOKENS_BENCH_ONLY_TPM").is_ok();
    let mut rows = Vec::new();
    if !only_tpm {
        rows.push(scenario("prompt max (6 labels/page)", tpm, false, pages, true).await);
        rows.push(scenario("schema max (8 labels/page)", tpm, true, pages, true).await);
    }
    // Issue 11: TPM-bound with the quota given, and without (learned from headers and 429s).
    rows.push(scenario("TPM given", tpm, false, pages, true).await);
    rows.push(scenario("no quota given", tpm, false, pages, false).await);
    print(&rows, tpm);
}
