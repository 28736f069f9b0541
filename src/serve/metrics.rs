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
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
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
    out.push_str("# HELP tag_space_pages_total Pages with an outcome, by outcome, over the tasks listed.\n");
    out.push_str("# TYPE tag_space_pages_total counter\n");
    for (outcome, n) in &pages {
        let _ = writeln!(out, "tag_space_pages_total{{outcome=\"{outcome}\"}} {n}");
    }
    out.push_str(&service.runner().provider_metrics());
    out
}
