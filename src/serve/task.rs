//! One task: its request, its status, the summary so far (in the field names of the script
//! the service replaces) and every event of its run, kept so that a client that follows the
//! events late, or reconnects, loses none.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::watch;

use super::runner::{Mode, TaskRequest};

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Waiting for one of the service's task slots.
    Queued,
    Running,
    /// The run went through (pages that failed are counted in `errors`).
    Finished,
    /// The run stopped on a fatal error (`error` says which).
    Failed,
    /// Stopped by `POST /bulk/tasks/{id}/stop`.
    Stopped,
    /// The service stopped (SIGTERM, a crash) while the task was queued or running.
    Interrupted,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 6] = [
        Self::Queued,
        Self::Running,
        Self::Finished,
        Self::Failed,
        Self::Stopped,
        Self::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Finished => "finished",
            Self::Failed => "failed",
            Self::Stopped => "stopped",
            Self::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    pub fn is_over(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }
}

/// One page's outcome, as `details` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PageDetail {
    pub id: String,
    pub title: String,
    /// `tagged`, `unchanged`, `no_label`, `skipped` or `failed`.
    pub status: String,
    pub labels_before: Vec<String>,
    /// Labels added (empty in a dry run).
    pub added: Vec<String>,
    /// In a dry run, the labels that would be added (empty otherwise).
    pub proposed: Vec<String>,
    /// Labels removed (`sync`); in a dry run, that would be removed.
    pub removed: Vec<String>,
    pub provider: Option<String>,
    /// Why the page failed.
    pub error: Option<String>,
    /// Why the page was skipped or is unchanged.
    pub reason: Option<String>,
}

/// Something that happened in a task's run, as its event stream sends it.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TaskEvent {
    /// The run took its `taken`-th page from the listing.
    Listed { taken: u64 },
    /// The run will take no more pages: `total` were taken.
    Total { total: u64 },
    /// A page's outcome.
    Page(PageDetail),
    /// A request to `provider` waits (`reason`: quota, cooldown, backoff, concurrency...).
    /// The governor is shared by every task: a wait may be caused by another task.
    Wait {
        provider: String,
        reason: String,
        ms: Option<u64>,
    },
    /// A failed request to `provider` is tried again.
    Retry {
        provider: String,
        attempt: u32,
        kind: String,
    },
    /// Pages `from` could not serve went to `to`.
    Fallback {
        from: String,
        to: String,
        pages: usize,
    },
    /// `provider` will not be called for a while, or for the rest of the run.
    Unavailable { provider: String, reason: String },
    /// The task is over; the last event of its stream.
    End {
        status: TaskStatus,
        error: Option<String>,
    },
}

impl TaskEvent {
    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Listed { .. } => "listed",
            Self::Total { .. } => "total",
            Self::Page(_) => "page",
            Self::Wait { .. } => "wait",
            Self::Retry { .. } => "retry",
            Self::Fallback { .. } => "fallback",
            Self::Unavailable { .. } => "unavailable",
            Self::End { .. } => "end",
        }
    }
}

/// A task's summary: what `GET /bulk/tasks/{id}` answers, and what the state file keeps.
/// The field names are the old script's (`success`, `errors`, `skipped_by_whitelist`...).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Summary {
    pub task_id: String,
    pub space: String,
    pub status: TaskStatus,
    /// Pages the run takes; `null` until the listing is over.
    pub total: Option<u64>,
    /// Pages with an outcome so far.
    pub processed: u64,
    /// Pages tagged, unchanged or given no label.
    pub success: u64,
    /// Pages that failed.
    pub errors: u64,
    /// Pages without text, not sent to a provider.
    pub skipped: u64,
    /// Always 0: the taxonomy is the whitelist, and nothing is skipped by it.
    pub skipped_by_whitelist: u64,
    pub dry_run: bool,
    pub mode: Mode,
    pub limit: Option<u64>,
    pub batch_size: Option<usize>,
    /// Always true: only labels of the taxonomy are ever proposed.
    pub whitelist_enabled: bool,
    pub details: Vec<PageDetail>,
    /// As in the JSON report; `null` until the run is over.
    pub metrics: Option<serde_json::Value>,
    /// Why the run failed, on one line.
    pub error: Option<String>,
    /// RFC 3339 times.
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

struct State {
    summary: Summary,
    finished_ms: Option<i64>,
    /// The events from the `first`-th on (earlier ones were let go with [`Task::compact`]).
    events: Vec<Arc<TaskEvent>>,
    first: usize,
}

/// A task of this service (or, after a restart, one recorded by an earlier one).
pub struct Task {
    pub id: String,
    pub request: TaskRequest,
    pub created_ms: i64,
    state: Mutex<State>,
    /// The number of events so far; changes wake the task's followers.
    seen: watch::Sender<usize>,
}

impl Task {
    pub fn new(id: String, request: TaskRequest) -> Self {
        let created_ms = now_ms();
        let summary = Summary {
            task_id: id.clone(),
            space: request.space.clone(),
            status: TaskStatus::Queued,
            total: None,
            processed: 0,
            success: 0,
            errors: 0,
            skipped: 0,
            skipped_by_whitelist: 0,
            dry_run: request.dry_run,
            mode: request.mode,
            limit: request.limit,
            batch_size: request.batch_size,
            whitelist_enabled: true,
            details: Vec::new(),
            metrics: None,
            error: None,
            created_at: rfc3339(created_ms),
            started_at: None,
            finished_at: None,
        };
        Self::with_state(id, request, created_ms, summary, None)
    }

    /// A task recorded earlier, as the state file kept it.
    pub fn restored(summary: Summary, created_ms: i64, finished_ms: Option<i64>) -> Self {
        let request = TaskRequest {
            space: summary.space.clone(),
            dry_run: summary.dry_run,
            mode: summary.mode,
            limit: summary.limit,
            batch_size: summary.batch_size,
        };
        let task = Self::with_state(
            summary.task_id.clone(),
            request,
            created_ms,
            summary,
            finished_ms,
        );
        // Its stream is only its end: the events themselves were not kept.
        let (status, error) = {
            let s = task.lock();
            (s.summary.status, s.summary.error.clone())
        };
        task.push(TaskEvent::End { status, error });
        task
    }

    fn with_state(
        id: String,
        request: TaskRequest,
        created_ms: i64,
        summary: Summary,
        finished_ms: Option<i64>,
    ) -> Self {
        Self {
            id,
            request,
            created_ms,
            state: Mutex::new(State {
                summary,
                finished_ms,
                events: Vec::new(),
                first: 0,
            }),
            seen: watch::channel(0).0,
        }
    }

    pub fn status(&self) -> TaskStatus {
        self.lock().summary.status
    }

    pub fn summary(&self) -> Summary {
        self.lock().summary.clone()
    }

    pub fn finished_ms(&self) -> Option<i64> {
        self.lock().finished_ms
    }

    /// The summary without `details`, for the task list.
    pub fn brief(&self) -> Summary {
        // Without cloning the details first: a long run has many.
        let s = &self.lock().summary;
        Summary {
            task_id: s.task_id.clone(),
            space: s.space.clone(),
            details: Vec::new(),
            metrics: s.metrics.clone(),
            error: s.error.clone(),
            created_at: s.created_at.clone(),
            started_at: s.started_at.clone(),
            finished_at: s.finished_at.clone(),
            ..*s
        }
    }

    pub fn set_running(&self) {
        let mut s = self.lock();
        s.summary.status = TaskStatus::Running;
        s.summary.started_at = Some(rfc3339(now_ms()));
    }

    /// Ends the task: its status, error and metrics, and the last event of its stream.
    pub fn end(
        &self,
        status: TaskStatus,
        error: Option<String>,
        metrics: Option<serde_json::Value>,
    ) {
        {
            let mut s = self.lock();
            let now = now_ms();
            s.summary.status = status;
            s.summary.error.clone_from(&error);
            s.summary.metrics = metrics;
            s.summary.finished_at = Some(rfc3339(now));
            s.finished_ms = Some(now);
        }
        self.push(TaskEvent::End { status, error });
    }

    /// The id of the first event kept from the `from`-th on, and the events from it.
    pub fn events_from(&self, from: usize) -> (usize, Vec<Arc<TaskEvent>>) {
        let s = self.lock();
        let start = from.max(s.first);
        let kept = s.events.get(start - s.first..).map(<[_]>::to_vec);
        (start, kept.unwrap_or_default())
    }

    /// Lets go of an ended task's events but its end (which keeps its id), so that the
    /// memory of old tasks stays bounded; a follower then gets the end alone.
    pub fn compact(&self) {
        let mut s = self.lock();
        if s.summary.status.is_over() && s.events.len() > 1 {
            let n = s.events.len();
            s.events.drain(..n - 1);
            s.first += n - 1;
        }
    }

    /// Wakes when events were added.
    pub fn follow(&self) -> watch::Receiver<usize> {
        self.seen.subscribe()
    }

    /// Waits until the task is over.
    pub async fn wait_end(&self) {
        let mut rx = self.follow();
        while !self.status().is_over() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    fn push(&self, event: TaskEvent) {
        let n = {
            let mut s = self.lock();
            match &event {
                TaskEvent::Total { total } => s.summary.total = Some(*total),
                TaskEvent::Page(p) => count(&mut s.summary, p),
                _ => {}
            }
            s.events.push(Arc::new(event));
            s.first + s.events.len()
        };
        self.seen.send_replace(n);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn count(summary: &mut Summary, page: &PageDetail) {
    summary.processed += 1;
    match page.status.as_str() {
        "failed" => summary.errors += 1,
        "skipped" => summary.skipped += 1,
        _ => summary.success += 1,
    }
    summary.details.push(page.clone());
}

/// What a runner emits a task's events through; cheap to clone.
#[derive(Clone)]
pub struct TaskEvents(pub(super) Arc<Task>);

impl TaskEvents {
    pub fn emit(&self, event: TaskEvent) {
        // The end is the service's to say, once.
        if !matches!(event, TaskEvent::End { .. }) {
            self.0.push(event);
        }
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compacted_task_keeps_its_end_under_the_same_id() {
        let request = TaskRequest {
            space: "ENG".into(),
            dry_run: true,
            mode: Mode::Add,
            limit: None,
            batch_size: None,
        };
        let task = Task::new("t".into(), request);
        let events = TaskEvents(Arc::new(task));
        for taken in 1..=3 {
            events.emit(TaskEvent::Listed { taken });
        }
        let task = events.0;
        task.compact(); // still running: nothing is let go
        assert_eq!(task.events_from(0).1.len(), 3);
        task.end(TaskStatus::Finished, None, None);
        task.compact();
        let (first, kept) = task.events_from(0);
        assert_eq!((first, kept.len()), (3, 1));
        assert!(matches!(*kept[0], TaskEvent::End { .. }));
        assert_eq!(task.events_from(4).1.len(), 0);
        assert_eq!(task.summary().processed, 0);
    }
}
