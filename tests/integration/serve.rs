//! The HTTP service in process, over real sockets on 127.0.0.1 (port 0), with a fake task
//! runner that emits a page every `delay` of real time (no paused clock: real sockets).
//! The real pipeline behind the service is tested in `servecli.rs`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use tag_space::cache::{Store, StoreOptions};
use tag_space::secret::Secret;
use tag_space::serve::{
    self, PageDetail, RunEnd, Service, ServiceSettings, TaskEvent, TaskEvents, TaskRequest,
    TaskRunner,
};
use tokio_util::sync::CancellationToken;

use crate::harness::proc::{POLL_PATIENCE, until};

/// Emits `pages` pages, one every `delay`; space `BROKEN` fails after its first page, and
/// space `SLOW` takes an hour a page (it ends only when cancelled or its runtime is dropped).
pub struct FakeRunner {
    pub pages: u64,
    pub delay: Duration,
}

impl TaskRunner for FakeRunner {
    fn run(
        &self,
        request: TaskRequest,
        cancel: CancellationToken,
        events: TaskEvents,
    ) -> BoxFuture<'static, RunEnd> {
        let (pages, delay) = (self.pages, self.delay);
        let delay = if request.space == "SLOW" {
            Duration::from_secs(3600)
        } else {
            delay
        };
        async move {
            for i in 1..=pages {
                events.emit(TaskEvent::Listed { taken: i });
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = cancel.cancelled() => return RunEnd::default(),
                }
                events.emit(TaskEvent::Page(detail(i, request.dry_run)));
                if request.space == "BROKEN" {
                    return RunEnd {
                        error: Some("space BROKEN: listing failed".into()),
                        metrics: None,
                    };
                }
            }
            events.emit(TaskEvent::Total { total: pages });
            RunEnd {
                error: None,
                metrics: Some(json!({ "pages": { "seen": pages } })),
            }
        }
        .boxed()
    }
}

fn detail(i: u64, dry_run: bool) -> PageDetail {
    let labels = vec![format!("type-howto-{i}")];
    PageDetail {
        id: i.to_string(),
        title: format!("Page {i}"),
        status: if i == 2 { "skipped" } else { "tagged" }.into(),
        labels_before: vec!["person-label".into()],
        added: if dry_run { vec![] } else { labels.clone() },
        proposed: if dry_run { labels } else { vec![] },
        removed: vec![],
        provider: Some("rules".into()),
        error: None,
        reason: None,
    }
}

pub struct Server {
    pub base: String,
    pub shutdown: CancellationToken,
    pub done: tokio::task::JoinHandle<std::io::Result<()>>,
}

fn settings() -> ServiceSettings {
    ServiceSettings {
        max_tasks: 2,
        retention: Duration::from_secs(86_400),
        grace: Duration::from_secs(1),
    }
}

/// The service on 127.0.0.1:0 with `runner`, its tasks kept in `state` (if any).
pub async fn start(
    runner: Arc<dyn TaskRunner>,
    state: Option<&Path>,
    token: Option<&str>,
) -> Server {
    let store = state.map(|p| Arc::new(Store::open(p, StoreOptions::default()).unwrap()));
    let service = Service::new(runner, store, settings()).unwrap();
    let token = token.map(Secret::new);
    let listener = serve::bind("127.0.0.1:0".parse().unwrap(), token.as_ref())
        .await
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let done = tokio::spawn(serve::serve(listener, service, token, shutdown.clone()));
    Server {
        base,
        shutdown,
        done,
    }
}

fn fake(pages: u64, delay_ms: u64) -> Arc<dyn TaskRunner> {
    Arc::new(FakeRunner {
        pages,
        delay: Duration::from_millis(delay_ms),
    })
}

/// Every request with a deadline: a service that never answers fails the test in a minute.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(POLL_PATIENCE)
        .build()
        .unwrap()
}

async fn post(base: &str, path: &str, body: &str) -> (u16, Value) {
    let r = client()
        .post(format!("{base}{path}"))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get(base: &str, path: &str) -> (u16, Value) {
    let r = client().get(format!("{base}{path}")).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Polls the task until it is over (at most a minute: a hang fails the test).
pub async fn until_over(base: &str, id: &str) -> Value {
    let deadline = Instant::now() + POLL_PATIENCE;
    loop {
        let (_, t) = get(base, &format!("/bulk/tasks/{id}")).await;
        if !matches!(t["status"].as_str(), Some("queued" | "running")) {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "task {id} did not end within {POLL_PATIENCE:?}: {t}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls the task until `done` holds of it (at most a minute).
async fn until_task(base: &str, id: &str, what: &str, done: impl Fn(&Value) -> bool) {
    let done = &done;
    until(what, move || async move {
        let (_, t) = get(base, &format!("/bulk/tasks/{id}")).await;
        done(&t)
    })
    .await;
}

/// Reads an SSE stream to its end: (id, event name, data) of each event.
pub async fn read_events(base: &str, id: &str) -> Vec<(u64, String, Value)> {
    read_to_end(open_events(base, id).await).await
}

/// Opens a task's event stream (its answer's head received: the service follows it now).
async fn open_events(base: &str, id: &str) -> reqwest::Response {
    let r = client()
        .get(format!("{base}/bulk/tasks/{id}/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    r
}

async fn read_to_end(mut r: reqwest::Response) -> Vec<(u64, String, Value)> {
    let mut text = String::new();
    while let Some(chunk) = r.chunk().await.unwrap() {
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    parse_sse(&text)
}

pub fn parse_sse(text: &str) -> Vec<(u64, String, Value)> {
    text.split("\n\n")
        .filter_map(|block| {
            let (mut id, mut name, mut data) = (None, None, None);
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = v.parse().ok();
                } else if let Some(v) = line.strip_prefix("event: ") {
                    name = Some(v.to_string());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(v).ok();
                }
            }
            Some((id?, name?, data?))
        })
        .collect()
}

#[tokio::test]
async fn a_task_starts_streams_its_events_and_ends_with_its_summary() {
    let s = start(fake(3, 20), None, None).await;
    let (status, started) = post(&s.base, "/bulk/tag-space/ENG", r#"{"dry_run": true}"#).await;
    assert_eq!(status, 202, "{started}");
    let id = started["task_id"].as_str().unwrap().to_string();
    assert_eq!(started["space"], "ENG");
    assert!(matches!(
        started["status"].as_str(),
        Some("queued" | "running")
    ));
    assert_eq!(
        started["links"]["events"],
        format!("/bulk/tasks/{id}/events")
    );
    assert_eq!(started["links"]["stop"], format!("/bulk/tasks/{id}/stop"));

    let events = read_events(&s.base, &id).await;
    let ids: Vec<u64> = events.iter().map(|e| e.0).collect();
    assert_eq!(
        ids,
        (0..events.len() as u64).collect::<Vec<_>>(),
        "no event lost"
    );
    let names: Vec<&str> = events.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(
        names,
        [
            "listed", "page", "listed", "page", "listed", "page", "total", "end"
        ]
    );
    assert_eq!(events[1].2["title"], "Page 1");
    assert_eq!(events[7].2["status"], "finished");

    let t = until_over(&s.base, &id).await;
    assert_eq!(t["status"], "finished");
    assert_eq!(t["task_id"], id.as_str());
    assert_eq!(
        (t["total"].as_u64(), t["processed"].as_u64()),
        (Some(3), Some(3))
    );
    assert_eq!(
        (t["success"].as_u64(), t["skipped"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(t["errors"], 0);
    assert_eq!(t["skipped_by_whitelist"], 0);
    assert_eq!(t["whitelist_enabled"], true);
    assert_eq!(
        (t["dry_run"].as_bool(), t["mode"].as_str()),
        (Some(true), Some("add"))
    );
    let d = &t["details"][0];
    assert_eq!(d["labels_before"], json!(["person-label"]));
    assert_eq!(d["proposed"], json!(["type-howto-1"]));
    assert_eq!(d["added"], json!([]));
    assert_eq!(t["metrics"]["pages"]["seen"], 3);
    assert!(t["started_at"].is_string() && t["finished_at"].is_string());

    let (_, list) = get(&s.base, "/bulk/tasks").await;
    assert_eq!(list["tasks"][0]["task_id"], id.as_str());
    assert_eq!(list["total_tasks"], 1);
    s.shutdown.cancel();
    s.done.await.unwrap().unwrap();
}

#[tokio::test]
async fn total_is_null_until_the_listing_ends() {
    let s = start(fake(3, 200), None, None).await;
    let (_, started) = post(&s.base, "/bulk/tag-space/ENG", "").await;
    let id = started["task_id"].as_str().unwrap();
    let (_, t) = get(&s.base, &format!("/bulk/tasks/{id}")).await;
    assert!(t["total"].is_null(), "{t}");
    assert_eq!(t["dry_run"], true, "dry_run defaults to true");
    let t = until_over(&s.base, id).await;
    assert_eq!(t["total"], 3);
}

#[tokio::test]
async fn wait_true_answers_the_final_summary() {
    let s = start(fake(2, 10), None, None).await;
    let (status, t) = post(
        &s.base,
        "/bulk/tag-space/ENG?wait=true",
        r#"{"dry_run": false, "mode": "sync", "limit": 5, "batch_size": 2}"#,
    )
    .await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["status"], "finished");
    assert_eq!(t["processed"], 2);
    assert_eq!(
        (t["mode"].as_str(), t["dry_run"].as_bool()),
        (Some("sync"), Some(false))
    );
    assert_eq!(
        (t["limit"].as_u64(), t["batch_size"].as_u64()),
        (Some(5), Some(2))
    );
    assert_eq!(t["details"][0]["added"], json!(["type-howto-1"]));
}

#[tokio::test]
async fn a_failed_run_is_failed_with_its_reason() {
    let s = start(fake(3, 1), None, None).await;
    let (_, t) = post(&s.base, "/bulk/tag-space/BROKEN?wait=true", "{}").await;
    assert_eq!(t["status"], "failed");
    assert_eq!(t["error"], "space BROKEN: listing failed");
    assert_eq!(t["processed"], 1);
}

#[tokio::test]
async fn bad_requests_get_400_naming_the_field() {
    let s = start(fake(1, 1), None, None).await;
    let cases = [
        (r#"{"dry_run": true, "colour": "red"}"#, "colour"),
        (r#"{"dry_run": "yes"}"#, "dry_run"),
        (r#"{"mode": "replace"}"#, "mode"),
        (r#"{"limit": -1}"#, "limit"),
        (r#"{"limit": 0}"#, "limit"),
        (r#"{"batch_size": 1000}"#, "batch_size"),
        (r#"{"dry_run": tru"#, "body"),
        ("[1, 2]", "body"),
    ];
    for (body, field) in cases {
        let (status, e) = post(&s.base, "/bulk/tag-space/ENG", body).await;
        assert_eq!(status, 400, "{body}: {e}");
        assert_eq!(e["field"], field, "{body}: {e}");
        assert!(e["error"].as_str().unwrap().len() > 10, "{e}");
    }
    let (status, e) = post(&s.base, "/bulk/tag-space/ENG?wait=maybe", "{}").await;
    assert_eq!((status, e["field"].as_str()), (400, Some("wait")));
    let (status, e) = post(&s.base, "/bulk/tag-space/EN%20G", "{}").await;
    assert_eq!((status, e["field"].as_str()), (400, Some("space")));
    // Nothing was started by any of them.
    let (_, list) = get(&s.base, "/bulk/tasks").await;
    assert_eq!(list["total_tasks"], 0);
    let big = format!(r#"{{"dry_run": true, "x": "{}"}}"#, "a".repeat(100_000));
    let r = client()
        .post(format!("{}/bulk/tag-space/ENG", s.base))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
}

#[tokio::test]
async fn unknown_tasks_and_routes_are_404_and_a_busy_space_is_409() {
    let s = start(fake(50, 20), None, None).await;
    for path in ["/bulk/tasks/nope", "/bulk/tasks/nope/events", "/nothing"] {
        let (status, e) = get(&s.base, path).await;
        assert_eq!(status, 404, "{path}");
        assert!(e["error"].is_string(), "{path}: {e}");
    }
    let (status, _) = post(&s.base, "/bulk/tasks/nope/stop", "").await;
    assert_eq!(status, 404);
    let (_, first) = post(&s.base, "/bulk/tag-space/ENG", "{}").await;
    let (status, e) = post(&s.base, "/bulk/tag-space/ENG", "{}").await;
    assert_eq!(status, 409, "{e}");
    assert_eq!(e["task_id"], first["task_id"]);
    // Another space is not busy.
    let (status, _) = post(&s.base, "/bulk/tag-space/OPS", "{}").await;
    assert_eq!(status, 202);
}

#[tokio::test]
async fn with_a_token_every_endpoint_but_healthz_needs_it() {
    let token = "s3cret-test-token-0123456789";
    let s = start(fake(1, 1), None, Some(token)).await;
    let c = client();
    for (method, path) in [
        ("POST", "/bulk/tag-space/ENG"),
        ("GET", "/bulk/tasks"),
        ("GET", "/bulk/tasks/x"),
        ("GET", "/bulk/tasks/x/events"),
        ("POST", "/bulk/tasks/x/stop"),
        ("GET", "/metrics"),
    ] {
        for auth in [
            None,
            Some("Bearer wrong"),
            Some(token),
            Some("Basic czNjcmV0"),
        ] {
            let mut req = c.request(method.parse().unwrap(), format!("{}{path}", s.base));
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 401, "{method} {path} {auth:?}");
            assert_eq!(r.headers()["www-authenticate"], "Bearer");
            let body = r.text().await.unwrap();
            assert!(!body.contains(token), "the token leaked: {body}");
        }
    }
    let r = c.get(format!("{}/healthz", s.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .post(format!("{}/bulk/tag-space/ENG?wait=true", s.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .get(format!("{}/metrics", s.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_stopped_task_ends_stopped_with_what_it_did() {
    // Pages without end: the task is still running when the stop comes, however late.
    let s = start(fake(u64::MAX, 20), None, None).await;
    let (_, started) = post(&s.base, "/bulk/tag-space/ENG", "{}").await;
    let id = started["task_id"].as_str().unwrap();
    until_task(&s.base, id, "two pages done", |t| {
        t["processed"].as_u64() >= Some(2)
    })
    .await;
    let (status, r) = post(&s.base, &format!("/bulk/tasks/{id}/stop"), "").await;
    assert_eq!(status, 202, "{r}");
    let t = until_over(&s.base, id).await;
    assert_eq!(t["status"], "stopped");
    let done = t["processed"].as_u64().unwrap();
    assert!(done >= 2, "{done}");
    assert!(t["total"].is_null(), "a stopped listing has no total");
    let events = read_events(&s.base, id).await;
    assert_eq!(events.last().unwrap().2["status"], "stopped");
    // The space is free again.
    let (status, _) = post(&s.base, "/bulk/tag-space/ENG", "{}").await;
    assert_eq!(status, 202);
}

#[tokio::test]
async fn metrics_count_tasks_by_status_and_pages_by_outcome() {
    let s = start(fake(3, 1), None, None).await;
    post(&s.base, "/bulk/tag-space/ENG?wait=true", "{}").await;
    let r = client()
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = r.text().await.unwrap();
    assert!(
        text.contains("tag_space_tasks{status=\"finished\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("tag_space_tasks{status=\"running\"} 0\n"),
        "{text}"
    );
    assert!(
        text.contains("tag_space_pages_total{outcome=\"tagged\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains("tag_space_pages_total{outcome=\"skipped\"} 1\n"),
        "{text}"
    );
}

#[tokio::test]
async fn the_shutdown_interrupts_running_tasks_records_them_and_ends_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    // Pages without end: still running at the shutdown, however late it comes.
    let s = start(fake(u64::MAX, 20), Some(&db), None).await;
    let (_, started) = post(&s.base, "/bulk/tag-space/ENG", "{}").await;
    let id = started["task_id"].as_str().unwrap().to_string();
    // Following before the shutdown (not a sleep: a follower not yet connected by then
    // would be refused).
    let events = open_events(&s.base, &id).await;
    let follower = tokio::spawn(read_to_end(events));
    s.shutdown.cancel();
    s.done.await.unwrap().unwrap();
    let events = follower.await.unwrap();
    assert_eq!(events.last().unwrap().2["status"], "interrupted");
    let store = Store::open(&db, StoreOptions::default()).unwrap();
    let rows = store.tasks().unwrap();
    assert_eq!(rows[0].status, "interrupted");
    assert!(rows[0].finished_at.is_some());
}

/// Service A runs a task to its end and is killed with another running (its runtime
/// dropped: nothing is recorded at the end); service B on the same state file lists both.
#[test]
fn after_a_restart_finished_tasks_are_listed_and_a_running_one_is_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let rt = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    };
    let a = rt();
    let (finished, running) = a.block_on(async {
        let s = start(fake(2, 1), Some(&db), None).await;
        let (_, f) = post(&s.base, "/bulk/tag-space/ENG?wait=true", "{}").await;
        // A task that cannot end by itself before the service is killed: with a fast one, the
        // poll below could miss its "running" and wait forever.
        let (_, r) = post(&s.base, "/bulk/tag-space/SLOW", "{}").await;
        let id = r["task_id"].as_str().unwrap().to_string();
        // Until it runs (at most a minute: a hang fails the test).
        until_task(&s.base, &id, "task SLOW running", |t| {
            t["status"] == "running"
        })
        .await;
        (f["task_id"].as_str().unwrap().to_string(), id)
    });
    a.shutdown_background();

    let b = rt();
    b.block_on(async {
        let s = start(fake(2, 1), Some(&db), None).await;
        let (_, list) = get(&s.base, "/bulk/tasks").await;
        let tasks = list["tasks"].as_array().unwrap();
        assert_eq!(tasks.len(), 2, "{list}");
        assert_eq!(tasks[0]["task_id"], running.as_str(), "newest first");
        assert_eq!(tasks[0]["status"], "interrupted");
        assert!(tasks[0]["finished_at"].is_string());
        assert_eq!(tasks[1]["task_id"], finished.as_str());
        assert_eq!(tasks[1]["status"], "finished");
        let (_, t) = get(&s.base, &format!("/bulk/tasks/{finished}")).await;
        assert_eq!(t["processed"], 2);
        assert_eq!(t["details"].as_array().unwrap().len(), 2);
        // Its event stream is its end.
        let events = read_events(&s.base, &finished).await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].2["status"], "finished");
        // Paginated.
        let (_, p2) = get(&s.base, "/bulk/tasks?per_page=1&page=2").await;
        assert_eq!(p2["tasks"][0]["task_id"], finished.as_str());
        let (status, _) = get(&s.base, "/bulk/tasks?per_page=0").await;
        assert_eq!(status, 400);
    });
}

#[tokio::test]
async fn a_non_loopback_address_without_a_token_is_refused() {
    let e = serve::bind("0.0.0.0:0".parse().unwrap(), None)
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("0.0.0.0:0") && msg.contains("TAG_SPACE_SERVE_TOKEN"),
        "{msg}"
    );
    assert!(serve::check_bind("[::1]:8080".parse().unwrap(), None).is_ok());
    assert!(serve::check_bind("10.0.0.1:8080".parse().unwrap(), Some(&Secret::new("t"))).is_ok());
}
