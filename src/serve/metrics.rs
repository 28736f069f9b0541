//! `GET /metrics`: the Prometheus text exposition format (version 0.0.4): tasks by status,
//! pages by outcome, and the shared providers' figures from the runner.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::service::Service;
use super::task::TaskStatus;

pub async fn metrics(State(service): State<Arc<Service>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&service),
    )
}

/// The service's figures as Prometheus text.
pub fn render(service: &Service) -> String {
    let mut by_status: BTreeMap<&str, u64> =
        TaskStatus::ALL.iter().map(|s| (s.as_str(), 0)).collect();
    let mut pages: BTreeMap<String, u64> = ["tagged", "unchanged", "no_label", "skipped", "failed"]
        .iter()
        .map(|s| (s.to_string(), 0))
        .collect();
    for task in service.list() {
        let summary = task.summary();
        *by_status.entry(summary.status.as_str()).or_default() += 1;
        for d in &summary.details {
            *pages.entry(d.status.clone()).or_default() += 1;
        }
    }
    let mut out = String::new();
    out.push_str("# HELP tag_space_tasks Tasks the service knows, by status.\n");
    out.push_str("# TYPE tag_space_tasks gauge\n");
    for (status, n) in &by_status {
        let _ = writeln!(out, "tag_space_tasks{{status=\"{status}\"}} {n}");
    }
    out.push_str(
        "# HELP tag_space_pages_total Pages with an outcome, by outcome, over the tasks listed.\n",
    );
    out.push_str("# TYPE tag_space_pages_total counter\n");
    for (outcome, n) in &pages {
        let _ = writeln!(out, "tag_space_pages_total{{outcome=\"{outcome}\"}} {n}");
    }
    out.push_str(&service.runner().provider_metrics());
    out
}

/// Reads one counter of a provider's figures.
type Counter = fn(&crate::governor::ProviderStats) -> u64;

/// Latency histogram buckets, in seconds.
const BUCKETS: [f64; 10] = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

/// The providers' counters: name, help text and how to read it.
const PROVIDER_COUNTERS: [(&str, &str, Counter); 6] = [
    (
        "provider_calls_total",
        "Requests sent to the provider.",
        |s| s.calls,
    ),
    (
        "provider_successes_total",
        "Requests answered with a usable answer.",
        |s| s.successes,
    ),
    (
        "provider_rate_limited_total",
        "Requests answered 429.",
        |s| s.rate_limited,
    ),
    ("provider_retries_total", "Requests tried again.", |s| {
        s.retries
    }),
    (
        "provider_fallbacks_total",
        "Batches handed to the next provider.",
        |s| s.fallbacks,
    ),
    ("provider_tokens_in_total", "Prompt tokens charged.", |s| {
        s.tokens_in
    }),
];

/// The shared providers' counters since the service started.
pub fn providers(stats: &[crate::governor::ProviderStats]) -> String {
    let mut out = String::new();
    for (name, help, get) in PROVIDER_COUNTERS {
        let _ = writeln!(
            out,
            "# HELP tag_space_{name} {help}\n# TYPE tag_space_{name} counter"
        );
        for s in stats {
            let _ = writeln!(
                out,
                "tag_space_{name}{{provider=\"{}\"}} {}",
                s.provider,
                get(s)
            );
        }
    }
    waits(&mut out, stats);
    out.push_str("# HELP tag_space_provider_latency_seconds Latency of answered requests.\n");
    out.push_str("# TYPE tag_space_provider_latency_seconds histogram\n");
    for s in stats {
        histogram(&mut out, s.provider, &s.latencies);
    }
    out
}

/// How many requests waited, and for how long, by provider and reason.
fn waits(out: &mut String, stats: &[crate::governor::ProviderStats]) {
    out.push_str(
        "# HELP tag_space_waits_total Requests that waited before being sent, by reason.\n",
    );
    out.push_str("# TYPE tag_space_waits_total counter\n");
    let mut seconds = String::new();
    for s in stats {
        for (reason, w) in &s.waits {
            let labels = format!("provider=\"{}\",reason=\"{}\"", s.provider, reason.as_str());
            let _ = writeln!(out, "tag_space_waits_total{{{labels}}} {}", w.count);
            let _ = writeln!(
                seconds,
                "tag_space_wait_seconds_total{{{labels}}} {}",
                w.total.as_secs_f64()
            );
        }
    }
    out.push_str("# HELP tag_space_wait_seconds_total Time requests waited, by reason.\n");
    out.push_str("# TYPE tag_space_wait_seconds_total counter\n");
    out.push_str(&seconds);
}

fn histogram(out: &mut String, provider: &str, latencies: &[std::time::Duration]) {
    let name = "tag_space_provider_latency_seconds";
    for le in BUCKETS {
        let n = latencies.iter().filter(|d| d.as_secs_f64() <= le).count();
        let _ = writeln!(
            out,
            "{name}_bucket{{provider=\"{provider}\",le=\"{le}\"}} {n}"
        );
    }
    let sum: f64 = latencies.iter().map(|d| d.as_secs_f64()).sum();
    let _ = writeln!(
        out,
        "{name}_bucket{{provider=\"{provider}\",le=\"+Inf\"}} {}",
        latencies.len()
    );
    let _ = writeln!(out, "{name}_sum{{provider=\"{provider}\"}} {sum}");
    let _ = writeln!(
        out,
        "{name}_count{{provider=\"{provider}\"}} {}",
        latencies.len()
    );
}
