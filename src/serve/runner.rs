//! The seam between the service and a run: the service hands a [`TaskRunner`] a task's
//! request, a cancellation token and a [`TaskEvents`] handle, and gets back how it ended.
//! The binary's runner (`crate::app::serve_cmd`) runs the real pipeline over one shared
//! provider chain; tests use fakes.

use futures::future::BoxFuture;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::task::TaskEvents;

/// `add` (only add labels) or `sync` (also remove tag-space's own labels that no longer
/// apply), as `--sync` in the CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Add,
    Sync,
}

/// What a task is asked to do: the body of `POST /bulk/tag-space/{space}`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRequest {
    pub space: String,
    pub dry_run: bool,
    pub mode: Mode,
    pub limit: Option<u64>,
    pub batch_size: Option<usize>,
}

/// How a run ended, as the runner saw it. Stopped or interrupted is decided by the service
/// (it cancelled the token); the runner only says whether the run itself failed.
#[derive(Debug, Clone, Default)]
pub struct RunEnd {
    /// Why the run failed as a whole (space not found, every provider down), on one line;
    /// no secret in it.
    pub error: Option<String>,
    /// The run's `metrics`, as in the JSON report.
    pub metrics: Option<serde_json::Value>,
}

/// Runs one task to its end. Emits the run's events (pages, total, waits...) on `events`;
/// stops taking new work when `cancel` fires, giving requests in flight their grace.
pub trait TaskRunner: Send + Sync + 'static {
    fn run(
        &self,
        request: TaskRequest,
        cancel: CancellationToken,
        events: TaskEvents,
    ) -> BoxFuture<'static, RunEnd>;

    /// The shared providers' figures for `/metrics`, already in the Prometheus text format
    /// (empty when the runner has none).
    fn provider_metrics(&self) -> String {
        String::new()
    }
}
