//! 50 clients against `tag-space serve`'s service for a bounded time: 25 follow the event
//! streams of 4 concurrent tasks (each from its start, reconnecting for the next task), 25
//! poll the tasks and the task list. Checks no HTTP error and no lost event (every stream's
//! ids are 0..n without a gap and end with `end`, n being the task's event count), and
//! reports requests, events and the process's peak RSS. 127.0.0.1 only.
//!
//! `cargo bench --bench serve_load` (results in BENCHMARKS.md; `--profile dev` reuses the
//! debug build). The tasks are a fake runner emitting a page event every millisecond, so
//! that the HTTP side is what is measured.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use tag_space::serve::{
    self, PageDetail, RunEnd, Service, ServiceSettings, TaskEvent, TaskEvents, TaskRequest,
    TaskRunner,
};
use tokio_util::sync::CancellationToken;

const TASKS: usize = 4;
const PAGES: u64 = 200;
const CLIENTS: usize = 50;

struct Pages;

impl TaskRunner for Pages {
    fn run(
        &self,
        r: TaskRequest,
        cancel: CancellationToken,
        ev: TaskEvents,
    ) -> BoxFuture<'static, RunEnd> {
        async move {
            for i in 1..=PAGES {
                if cancel.is_cancelled() {
                    break;
                }
                ev.emit(TaskEvent::Listed { taken: i });
                tokio::time::sleep(Duration::from_millis(1)).await;
                ev.emit(TaskEvent::Page(PageDetail {
                    id: format!("{}-{i}", r.space),
                    title: format!("Page {i}"),
                    status: "tagged".into(),
                    labels_before: vec![],
                    added: vec![],
                    proposed: vec!["type-howto".into()],
                    removed: vec![],
                    provider: Some("rules".into()),
                    error: None,
                    reason: None,
                }));
            }
            ev.emit(TaskEvent::Total { total: PAGES });
            RunEnd::default()
        }
        .boxed()
    }
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Follows one task's stream to its end; returns the number of events, after checking ids.
async fn follow(c: &reqwest::Client, base: &str, id: &str) -> Result<u64, String> {
    let mut r = c
        .get(format!("{base}/bulk/tasks/{id}/events"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !r.status().is_success() {
        return Err(format!("events: {}", r.status()));
    }
    let mut text = String::new();
    while let Some(chunk) = r.chunk().await.map_err(|e| e.to_string())? {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let mut next = 0u64;
    let mut last = String::new();
    for block in text.split("\n\n") {
        let Some(id) = block.lines().find_map(|l| l.strip_prefix("id: ")) else {
            continue;
        };
        if id.parse::<u64>().ok() != Some(next) {
            return Err(format!("event {id} where {next} was due"));
        }
        next += 1;
        last = block
            .lines()
            .find_map(|l| l.strip_prefix("event: "))
            .unwrap_or("")
            .to_string();
    }
    if last != "end" {
        return Err(format!("the stream ended on {last:?}"));
    }
    // Listed + page per page, total, end.
    if next != 2 * PAGES + 2 {
        return Err(format!("{next} events, {} expected", 2 * PAGES + 2));
    }
    Ok(next)
}

async fn run() {
    let service = Service::new(
        Arc::new(Pages),
        None,
        ServiceSettings {
            max_tasks: TASKS,
            retention: Duration::from_secs(3600),
            grace: Duration::from_secs(1),
        },
    )
    .unwrap();
    let listener = serve::bind("127.0.0.1:0".parse().unwrap(), None)
        .await
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve::serve(listener, service, None, shutdown.clone()));
    let c = reqwest::Client::new();
    let rss_before = peak_rss_kb();
    let started = Instant::now();
    let mut ids = Vec::new();
    for t in 0..TASKS {
        let r: serde_json::Value = c
            .post(format!("{base}/bulk/tag-space/S{t}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(r["task_id"].as_str().unwrap().to_string());
    }
    let requests = Arc::new(AtomicU64::new(0));
    let events = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for n in 0..CLIENTS {
        let (c, base, ids) = (c.clone(), base.clone(), ids.clone());
        let (requests, events) = (requests.clone(), events.clone());
        clients.push(tokio::spawn(async move {
            if n % 2 == 0 {
                let id = &ids[n / 2 % ids.len()];
                let got = follow(&c, &base, id).await?;
                requests.fetch_add(1, Ordering::Relaxed);
                events.fetch_add(got, Ordering::Relaxed);
                return Ok::<(), String>(());
            }
            // Pollers: until every task is over.
            loop {
                let mut over = 0;
                for id in &ids {
                    let r = c
                        .get(format!("{base}/bulk/tasks/{id}"))
                        .send()
                        .await
                        .map_err(|e| e.to_string())?;
                    if !r.status().is_success() {
                        return Err(format!("poll: {}", r.status()));
                    }
                    let t: serde_json::Value = r.json().await.map_err(|e| e.to_string())?;
                    requests.fetch_add(1, Ordering::Relaxed);
                    if t["status"] == "finished" {
                        over += 1;
                    }
                }
                let r = c
                    .get(format!("{base}/bulk/tasks?per_page=10"))
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if !r.status().is_success() {
                    return Err(format!("list: {}", r.status()));
                }
                requests.fetch_add(1, Ordering::Relaxed);
                if over == ids.len() {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }
    let mut errors = Vec::new();
    let all = futures::future::join_all(clients);
    match tokio::time::timeout(Duration::from_secs(120), all).await {
        Ok(results) => {
            for r in results {
                if let Err(e) = r.unwrap() {
                    errors.push(e);
                }
            }
        }
        Err(_) => {
            for id in &ids {
                let t: serde_json::Value = c
                    .get(format!("{base}/bulk/tasks/{id}"))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                errors.push(format!(
                    "not done within 120 s: {id} {} {}",
                    t["status"], t["processed"]
                ));
            }
        }
    }
    let wall = started.elapsed();
    shutdown.cancel();
    server.await.unwrap().unwrap();
    println!(
        "| clients | tasks | pages/task | wall | HTTP requests | events delivered | errors | peak RSS before → after |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    println!(
        "| {CLIENTS} | {TASKS} | {PAGES} | {:.1} s | {} | {} | {} | {} MiB → {} MiB |",
        wall.as_secs_f64(),
        requests.load(Ordering::Relaxed),
        events.load(Ordering::Relaxed),
        errors.len(),
        rss_before / 1024,
        peak_rss_kb() / 1024
    );
    for e in errors.iter().take(5) {
        println!("error: {e}");
    }
    assert!(errors.is_empty());
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}
