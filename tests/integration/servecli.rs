//! `tag-space serve` with the real pipeline behind it: two spaces at once under one RPM
//! quota (an OpenAI-compatible simulator that counts), and the real binary (the demo,
//! SIGTERM, a restart, the non-loopback refusal). Real clock and real sockets on 127.0.0.1.

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{Value, json};
use tag_space::app::PipelineRunner;
use tag_space::cache::{Store, StoreOptions};
use tag_space::cli::Args;
use tag_space::config::Config;
use tag_space::serve::{Service, ServiceSettings};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::serve::{client, until_over};
use crate::harness::proc::POLL_PATIENCE;
use crate::harness::{BIN, OutputBounded, Running};

/// A Cloud site with spaces ENG (id 1) and OPS (id 2), `pages` unlabelled pages each.
struct TwoSpaces {
    pages: u64,
}

impl Respond for TwoSpaces {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let q: HashMap<String, String> = req.url.query_pairs().into_owned().collect();
        let p = req.url.path();
        let ok = |v: Value| ResponseTemplate::new(200).set_body_json(v);
        let spaces = [("ENG", "1"), ("OPS", "2")];
        if p == "/wiki/api/v2/spaces" {
            let found: Vec<Value> = spaces
                .iter()
                .filter(|(k, _)| q.get("keys").map(String::as_str) == Some(*k))
                .map(|(k, id)| json!({"id": id, "key": k, "name": k, "type": "global", "status": "current"}))
                .collect();
            return ok(json!({"results": found, "_links": {}}));
        }
        for (_, sid) in spaces {
            if p == format!("/wiki/api/v2/spaces/{sid}/pages") {
                let pages: Vec<Value> = (1..=self.pages)
                    .map(|i| {
                        let id = format!("{sid}{i:04}");
                        json!({
                            "id": id, "status": "current", "title": format!("How to do thing {id}"),
                            "spaceId": sid, "version": {"number": 1},
                            "body": {"storage": {"representation": "storage", "value": format!("<p>Step {id}: open the form.</p>")}},
                        })
                    })
                    .collect();
                return ok(json!({"results": pages, "_links": {}}));
            }
        }
        if p.starts_with("/wiki/api/v2/pages/") && p.ends_with("/labels") {
            return ok(json!({"results": [], "_links": {}}));
        }
        ResponseTemplate::new(404)
            .set_body_json(json!({"statusCode": 404, "message": "no such fake endpoint"}))
    }
}

/// An OpenAI-compatible server with a requests-per-minute quota, enforced as providers do:
/// a bucket of one minute's requests, refilled continuously; a request over it gets 429.
/// It counts every request and every 429. (Also used by `multispace.rs`.)
///
/// The bucket forgives [`ARRIVAL_JITTER`] of lateness: the client paces by when it sends,
/// the simulator by when a request arrives, and on a loaded machine the first request can
/// arrive late, starting the simulator's clock after the client's, so that a client sending
/// exactly on its schedule is a fraction of a token early (seen: 1 refused of 35 under load).
/// One governor per task or space overruns the quota by whole requests, and is still refused.
pub struct QuotaSim {
    pub rpm: f64,
    pub state: Arc<Mutex<SimState>>,
}

#[derive(Default)]
pub struct SimState {
    level: Option<(f64, Instant)>,
    pub calls: u64,
    pub refused: u64,
}

impl Respond for QuotaSim {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut s = self.state.lock().unwrap();
        s.calls += 1;
        let now = Instant::now();
        let (level, at) = s.level.unwrap_or((self.rpm, now));
        let level = (level + now.duration_since(at).as_secs_f64() * self.rpm / 60.0).min(self.rpm);
        if level < 1.0 - ARRIVAL_JITTER.as_secs_f64() * self.rpm / 60.0 {
            s.refused += 1;
            s.level = Some((level, now));
            return ResponseTemplate::new(429)
                .insert_header("retry-after", "2")
                .set_body_json(json!({"error": {"message": "Rate limit reached for requests", "type": "requests", "code": "rate_limit_exceeded"}}));
        }
        s.level = Some((level - 1.0, now));
        let body = String::from_utf8_lossy(&req.body);
        let mut answer = serde_json::Map::new();
        for part in body.split("<page id=\\\"").skip(1) {
            // Only the batch's pages (numeric ids), not the id of the prompt's example.
            if let Some(id) = part.split("\\\"").next()
                && id.bytes().all(|b| b.is_ascii_digit())
            {
                answer.insert(id.to_string(), json!({"type": ["type-howto"], "tool": []}));
            }
        }
        ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4.1-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": Value::Object(answer).to_string()}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
        }))
    }
}

/// Scheduling and delivery delay the quota simulator forgives (see [`QuotaSim`]).
const ARRIVAL_JITTER: Duration = Duration::from_secs(1);

const RPM: u32 = 30;
/// Pages per space: together more than one minute's quota, so that two governors (one
/// per task, each with a full minute's burst) would overrun it.
const PAGES: u64 = 17;

/// Two tasks on two spaces at once, one page per request: the service's one governor keeps
/// them together within the quota (no 429), where one governor per task would not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_spaces_at_once_stay_within_one_rpm_quota() {
    let dir = tempfile::tempdir().unwrap();
    let site = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(TwoSpaces { pages: PAGES })
        .mount(&site)
        .await;
    let state = Arc::new(Mutex::new(SimState::default()));
    let llm = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(QuotaSim {
            rpm: f64::from(RPM),
            state: state.clone(),
        })
        .mount(&llm)
        .await;
    let db = dir.path().join("state.db");
    let args = Args::parse_from([
        "tag-space",
        "--space",
        "SERVE",
        "--batch-size",
        "1",
        "--concurrency",
        "2",
        "--max-concurrency",
        "4",
        "--cache-path",
        db.to_str().unwrap(),
    ]);
    let env: HashMap<&str, String> = HashMap::from([
        ("CONFLUENCE_BASE_URL", format!("{}/wiki", site.uri())),
        ("CONFLUENCE_EMAIL", "bot@acme.test".into()),
        ("CONFLUENCE_API_TOKEN", "confluence-FAKE-TOKEN".into()),
        ("OPENAI_API_KEY", "openai-FAKE-KEY".into()),
        ("OPENAI_BASE_URL", format!("{}/v1", llm.uri())),
        ("TAG_SPACE_OPENAI_RPM", RPM.to_string()),
        (
            "TAG_SPACE_LOCK_DIR",
            dir.path().join("locks").display().to_string(),
        ),
    ]);
    let config = Config::from_sources(&args, |k| env.get(k).cloned()).unwrap();
    let runner = Arc::new(PipelineRunner::new(config).unwrap());
    let store = Arc::new(Store::open(&db, StoreOptions::default()).unwrap());
    let settings = ServiceSettings {
        max_tasks: 2,
        retention: Duration::from_secs(86_400),
        grace: Duration::from_secs(1),
    };
    let service = Service::new(runner, Some(store), settings).unwrap();
    let listener = tag_space::serve::bind("127.0.0.1:0".parse().unwrap(), None)
        .await
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(tag_space::serve::serve(
        listener,
        service,
        None,
        shutdown.clone(),
    ));

    let c = client();
    let started = Instant::now();
    let mut ids = Vec::new();
    for space in ["ENG", "OPS"] {
        let r: Value = c
            .post(format!("{base}/bulk/tag-space/{space}"))
            .body(r#"{"dry_run": true}"#)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(r["task_id"].as_str().unwrap().to_string());
    }
    let mut tasks = Vec::new();
    for id in &ids {
        tasks.push(until_over_slow(&base, id).await);
    }
    let wall = started.elapsed();
    for t in &tasks {
        assert_eq!(t["status"], "finished", "{t}");
        assert_eq!(t["processed"], PAGES, "{t}");
        assert_eq!(t["success"], PAGES, "{t}");
    }
    let (calls, refused) = {
        let s = state.lock().unwrap();
        (s.calls, s.refused)
    };
    eprintln!(
        "two spaces x {PAGES} pages, quota {RPM} rpm: {} requests, {} refused (429), {:.1}s",
        calls,
        refused,
        wall.as_secs_f64()
    );
    assert_eq!(refused, 0, "the simulator refused {refused} requests");
    assert_eq!(calls, 2 * PAGES);
    shutdown.cancel();
    server.await.unwrap().unwrap();
}

/// As `until_over`, for a run paced over several seconds (at most a minute: a hang fails).
async fn until_over_slow(base: &str, id: &str) -> Value {
    let deadline = Instant::now() + POLL_PATIENCE;
    loop {
        let t: Value = client()
            .get(format!("{base}/bulk/tasks/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if !matches!(t["status"].as_str(), Some("queued" | "running")) {
            return t;
        }
        assert!(Instant::now() < deadline, "task {id} did not end: {t}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `tag-space serve --demo` on 127.0.0.1:0 with its state in `dir`; returns the child and
/// its base URL (read from its "serving on" line).
async fn spawn_demo(dir: &std::path::Path, extra: &[&str]) -> (Running, String) {
    let mut child = Running::start(
        Command::new(BIN)
            .args([
                "serve",
                "--demo",
                "--bind",
                "127.0.0.1:0",
                "--cache-path",
                "demo.db",
            ])
            .args(extra)
            .current_dir(dir)
            .env_clear()
            .env("HOME", dir),
    );
    child.until_stderr_shows("serving on ").await;
    let stderr = child.stderr_so_far();
    let base = stderr
        .split("serving on ")
        .nth(1)
        .and_then(|r| r.split([' ', '\n']).next())
        .unwrap_or_else(|| panic!("no address in {stderr:?}"))
        .to_string();
    (child, base)
}

/// SIGTERM, then the exit code (the end waited for with a deadline).
async fn sigterm(mut child: Running) -> Option<i32> {
    child.signal(libc::SIGTERM);
    child.finish().await.status.code()
}

async fn post_json(base: &str, path: &str, body: &str) -> Value {
    client()
        .post(format!("{base}{path}"))
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The demo through the real binary: a task runs to its end offline; SIGTERM during a
/// second one exits 0 and records it; after a restart both are listed, the second
/// interrupted.
#[tokio::test(flavor = "multi_thread")]
async fn the_binary_serves_the_demo_stops_on_sigterm_and_keeps_its_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let (child, base) = spawn_demo(dir.path(), &[]).await;
    let done = post_json(
        &base,
        "/bulk/tag-space/DEMO?wait=true",
        r#"{"dry_run": true, "limit": 3}"#,
    )
    .await;
    assert_eq!(done["status"], "finished", "{done}");
    assert_eq!(done["processed"].as_u64(), done["total"].as_u64());
    assert!(
        done["details"][0]["proposed"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{done}"
    );
    assert!(
        done["metrics"]["providers"].is_array() || done["metrics"].is_object(),
        "{done}"
    );
    assert_eq!(sigterm(child).await, Some(0));

    // Each answer takes an hour: the task is still running at the SIGTERM, however slowly
    // the test gets there (with a fast one it could end first).
    let (child, base) = spawn_demo(dir.path(), &["--demo-delay-ms", "3600000"]).await;
    let running = post_json(&base, "/bulk/tag-space/DEMO", r#"{"dry_run": true}"#).await;
    let running = running["task_id"].as_str().unwrap().to_string();
    let (b, r) = (&base, &running);
    crate::harness::proc::until("the task running", move || async move {
        let t = client()
            .get(format!("{b}/bulk/tasks/{r}"))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        t["status"] == "running"
    })
    .await;
    assert_eq!(sigterm(child).await, Some(0));

    let (child, base) = spawn_demo(dir.path(), &[]).await;
    let list: Value = client()
        .get(format!("{base}/bulk/tasks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["tasks"][0]["task_id"], running.as_str(), "{list}");
    assert_eq!(list["tasks"][0]["status"], "interrupted");
    assert_eq!(list["tasks"][1]["status"], "finished");
    // A space the demo does not have fails, naming it.
    let other = post_json(&base, "/bulk/tag-space/ENG", "").await;
    let other = until_over(&base, other["task_id"].as_str().unwrap()).await;
    assert_eq!(other["status"], "failed");
    assert!(other["error"].as_str().unwrap().contains("ENG"), "{other}");
    assert_eq!(sigterm(child).await, Some(0));
}

#[test]
fn the_binary_refuses_a_non_loopback_address_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--demo", "--bind", "0.0.0.0:0"])
        .current_dir(dir.path())
        .env_clear()
        .env("HOME", dir.path())
        .output_bounded();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("0.0.0.0:0") && err.contains("TAG_SPACE_SERVE_TOKEN"),
        "{err}"
    );
}
