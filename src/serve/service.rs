//! The service's tasks: started on request (one per space at a time), run at most
//! `max_tasks` at once, stopped on request or at shutdown, recorded in the state file.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::runner::{TaskRequest, TaskRunner};
use super::task::{Summary, Task, TaskEvents, TaskStatus, now_ms};
use crate::cache::{Store, TaskRow};

/// Ended tasks whose whole event stream is kept; older ones keep their end only.
const EVENTS_KEPT: usize = 16;

/// How the service runs its tasks.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// Tasks running at once (others wait, `queued`).
    pub max_tasks: usize,
    /// Ended tasks older than this are forgotten.
    pub retention: Duration,
    /// How long a stopped task's requests in flight get before the task is given up.
    pub grace: Duration,
}

/// Why a task was not started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartError {
    /// A task for the space is queued or running: its id.
    Busy(String),
    /// The service is shutting down.
    Closing,
}

struct Entry {
    task: Arc<Task>,
    cancel: CancellationToken,
    /// Stopped on request (`stopped`), not by the shutdown (`interrupted`).
    stop_requested: AtomicBool,
}

/// Every task this service knows, newest last.
pub struct Service {
    runner: Arc<dyn TaskRunner>,
    store: Option<Arc<Store>>,
    settings: ServiceSettings,
    slots: Arc<Semaphore>,
    entries: Mutex<Vec<Arc<Entry>>>,
    drivers: Mutex<Vec<JoinHandle<()>>>,
    closing: AtomicBool,
}

impl Service {
    /// The service over `store` (if any): tasks an earlier service left queued or running are
    /// marked `interrupted`, ended tasks past the retention are forgotten, the rest listed.
    pub fn new(
        runner: Arc<dyn TaskRunner>,
        store: Option<Arc<Store>>,
        settings: ServiceSettings,
    ) -> Result<Arc<Self>, crate::cache::CacheError> {
        let mut entries = Vec::new();
        if let Some(store) = &store {
            let now = now_ms();
            store.interrupt_tasks(now)?;
            store.prune_tasks(now - settings.retention.as_millis() as i64)?;
            for row in store.tasks()?.into_iter().rev() {
                match restore(&row) {
                    Some(task) => entries.push(Arc::new(Entry {
                        task: Arc::new(task),
                        cancel: CancellationToken::new(),
                        stop_requested: AtomicBool::new(false),
                    })),
                    None => {
                        tracing::warn!(task = %row.id, "a recorded task cannot be read: not listed")
                    }
                }
            }
        }
        Ok(Arc::new(Self {
            runner,
            store,
            slots: Arc::new(Semaphore::new(settings.max_tasks.max(1))),
            settings,
            entries: Mutex::new(entries),
            drivers: Mutex::new(Vec::new()),
            closing: AtomicBool::new(false),
        }))
    }

    pub fn runner(&self) -> &dyn TaskRunner {
        self.runner.as_ref()
    }

    /// Starts a task, unless one for the same space is queued or running.
    pub fn start(self: &Arc<Self>, request: TaskRequest) -> Result<Arc<Task>, StartError> {
        let entry = {
            let mut entries = lock(&self.entries);
            if self.closing.load(Ordering::SeqCst) {
                return Err(StartError::Closing);
            }
            let busy = entries.iter().find(|e| {
                e.task.request.space.eq_ignore_ascii_case(&request.space)
                    && !e.task.status().is_over()
            });
            if let Some(e) = busy {
                return Err(StartError::Busy(e.task.id.clone()));
            }
            let id = format!("{:016x}", rand::random::<u64>());
            let entry = Arc::new(Entry {
                task: Arc::new(Task::new(id, request)),
                cancel: CancellationToken::new(),
                stop_requested: AtomicBool::new(false),
            });
            entries.push(entry.clone());
            entry
        };
        self.save(&entry.task);
        tracing::info!(task = %entry.task.id, space = %entry.task.request.space, "task queued");
        let driver = tokio::spawn(self.clone().drive(entry.clone()));
        let mut drivers = lock(&self.drivers);
        drivers.retain(|h| !h.is_finished());
        drivers.push(driver);
        Ok(entry.task.clone())
    }

    /// Runs the task once a slot is free, then records how it ended.
    async fn drive(self: Arc<Self>, entry: Arc<Entry>) {
        let task = entry.task.clone();
        let permit = tokio::select! {
            p = self.slots.clone().acquire_owned() => p.ok(),
            () = entry.cancel.cancelled() => None,
        };
        if permit.is_none() {
            task.end(self.cancelled_status(&entry), None, None);
            self.save(&task);
            return;
        }
        task.set_running();
        self.save(&task);
        tracing::info!(task = %task.id, space = %task.request.space, "task running");
        let run = self.runner.run(
            task.request.clone(),
            entry.cancel.clone(),
            TaskEvents(task.clone()),
        );
        let end = self.checkpointed(&task, run).await;
        let status = if entry.cancel.is_cancelled() {
            self.cancelled_status(&entry)
        } else if end.error.is_some() {
            TaskStatus::Failed
        } else {
            TaskStatus::Finished
        };
        task.end(status, end.error, end.metrics);
        drop(permit);
        self.save(&task);
        tracing::info!(task = %task.id, status = status.as_str(), "task over");
        self.prune();
        self.compact();
    }

    /// Keeps the events of the most recently ended tasks only (see [`Task::compact`]).
    fn compact(&self) {
        let mut ended: Vec<Arc<Task>> = lock(&self.entries)
            .iter()
            .filter(|e| e.task.status().is_over())
            .map(|e| e.task.clone())
            .collect();
        ended.sort_by_key(|t| std::cmp::Reverse(t.finished_ms()));
        for t in ended.iter().skip(EVENTS_KEPT) {
            t.compact();
        }
    }

    /// Awaits the run, recording the task's summary now and then so that a crash loses
    /// little of it.
    async fn checkpointed(
        &self,
        task: &Task,
        run: impl Future<Output = super::runner::RunEnd>,
    ) -> super::runner::RunEnd {
        let mut run = std::pin::pin!(run);
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        tick.tick().await;
        loop {
            tokio::select! {
                end = &mut run => return end,
                _ = tick.tick() => self.save(task),
            }
        }
    }

    fn cancelled_status(&self, entry: &Entry) -> TaskStatus {
        if entry.stop_requested.load(Ordering::SeqCst) {
            TaskStatus::Stopped
        } else {
            TaskStatus::Interrupted
        }
    }

    pub fn get(&self, id: &str) -> Option<Arc<Task>> {
        lock(&self.entries)
            .iter()
            .find(|e| e.task.id == id)
            .map(|e| e.task.clone())
    }

    /// The tasks, newest first.
    pub fn list(&self) -> Vec<Arc<Task>> {
        let mut tasks: Vec<_> = lock(&self.entries).iter().map(|e| e.task.clone()).collect();
        tasks.reverse();
        tasks.sort_by_key(|t| std::cmp::Reverse(t.created_ms));
        tasks
    }

    /// Stops the task as Ctrl-C stops a run; `None` when there is no such task.
    pub fn stop(&self, id: &str) -> Option<Arc<Task>> {
        let entries = lock(&self.entries);
        let entry = entries.iter().find(|e| e.task.id == id)?;
        if !entry.task.status().is_over() {
            entry.stop_requested.store(true, Ordering::SeqCst);
            entry.cancel.cancel();
            tracing::info!(task = %id, "task stop requested");
        }
        Some(entry.task.clone())
    }

    /// Takes no new task, interrupts the running ones (their requests in flight get the
    /// grace) and waits until each is recorded, at most the grace and a little more.
    pub async fn shutdown(&self) {
        let drivers = {
            let entries = lock(&self.entries);
            self.closing.store(true, Ordering::SeqCst);
            for e in entries.iter() {
                e.cancel.cancel();
            }
            std::mem::take(&mut *lock(&self.drivers))
        };
        let all = futures::future::join_all(drivers);
        if tokio::time::timeout(self.settings.grace + Duration::from_secs(2), all)
            .await
            .is_err()
        {
            tracing::warn!(
                "some tasks did not stop within the grace: recording them as interrupted"
            );
            for e in lock(&self.entries).iter() {
                if !e.task.status().is_over() {
                    e.task.end(TaskStatus::Interrupted, None, None);
                    self.save(&e.task);
                }
            }
        }
    }

    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// Forgets ended tasks past the retention, here and in the state file.
    fn prune(&self) {
        let before = now_ms() - self.settings.retention.as_millis() as i64;
        lock(&self.entries).retain(|e| e.task.finished_ms().is_none_or(|f| f >= before));
        if let Some(store) = &self.store
            && let Err(e) = store.prune_tasks(before)
        {
            tracing::warn!(error = %e, "cannot prune old tasks");
        }
    }

    fn save(&self, task: &Task) {
        let Some(store) = &self.store else { return };
        let summary = task.summary();
        let row = TaskRow {
            id: task.id.clone(),
            space: task.request.space.clone(),
            status: summary.status.as_str().to_string(),
            created_at: task.created_ms,
            finished_at: task.finished_ms(),
            summary: serde_json::to_string(&summary).unwrap_or_default(),
        };
        if let Err(e) = store.save_task(&row) {
            tracing::warn!(task = %task.id, error = %e, "cannot record the task in the state file");
        }
    }
}

/// A recorded task, with the status its row says (`interrupted` after a restart).
fn restore(row: &TaskRow) -> Option<Task> {
    let mut summary: Summary = serde_json::from_str(&row.summary).ok()?;
    summary.status = TaskStatus::parse(&row.status)?;
    if summary.finished_at.is_none()
        && let Some(ms) = row.finished_at
    {
        summary.finished_at = Some(
            humantime::format_rfc3339_millis(
                std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64),
            )
            .to_string(),
        );
    }
    Some(Task::restored(summary, row.created_at, row.finished_at))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
