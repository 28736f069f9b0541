//! The tasks of `tag-space serve` in the state file (schema migration 4): one row per task,
//! its summary kept as the JSON the service answers, so that finished tasks are still listed
//! after a restart and a task that was running then is shown as interrupted.

use rusqlite::params;

use super::{CacheError, Store};

/// One task as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRow {
    pub id: String,
    pub space: String,
    /// `queued`, `running`, `finished`, `failed`, `stopped` or `interrupted`.
    pub status: String,
    /// Unix milliseconds.
    pub created_at: i64,
    pub finished_at: Option<i64>,
    /// The task's summary, as JSON text.
    pub summary: String,
}

impl Store {
    /// Records the task, replacing what was recorded for its id.
    pub fn save_task(&self, t: &TaskRow) -> Result<(), CacheError> {
        self.conn()
            .execute(
                "INSERT INTO serve_tasks (id, space, status, created_at, finished_at, summary)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(id) DO UPDATE SET status = ?3, finished_at = ?5, summary = ?6",
                params![
                    t.id,
                    t.space,
                    t.status,
                    t.created_at,
                    t.finished_at,
                    t.summary
                ],
            )
            .map_err(self.err("record a serve task"))?;
        Ok(())
    }

    /// Every recorded task, newest first.
    pub fn tasks(&self) -> Result<Vec<TaskRow>, CacheError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT id, space, status, created_at, finished_at, summary FROM serve_tasks
                 ORDER BY created_at DESC, rowid DESC",
            )
            .map_err(self.err("read the serve tasks"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(TaskRow {
                    id: r.get(0)?,
                    space: r.get(1)?,
                    status: r.get(2)?,
                    created_at: r.get(3)?,
                    finished_at: r.get(4)?,
                    summary: r.get(5)?,
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(self.err("read the serve tasks"))?;
        Ok(rows)
    }

    /// Marks every task recorded as queued or running (by a service that stopped without
    /// recording their end) as `interrupted`, at `now_ms`; returns how many.
    pub fn interrupt_tasks(&self, now_ms: i64) -> Result<usize, CacheError> {
        self.conn()
            .execute(
                "UPDATE serve_tasks SET status = 'interrupted', finished_at = ?1
                 WHERE status IN ('queued', 'running')",
                [now_ms],
            )
            .map_err(self.err("mark the serve tasks interrupted"))
    }

    /// Forgets the tasks that ended before `before_ms`; returns how many.
    pub fn prune_tasks(&self, before_ms: i64) -> Result<usize, CacheError> {
        self.conn()
            .execute(
                "DELETE FROM serve_tasks WHERE finished_at IS NOT NULL AND finished_at < ?1",
                [before_ms],
            )
            .map_err(self.err("prune the serve tasks"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::StoreOptions;

    fn row(id: &str, status: &str, created_at: i64, finished_at: Option<i64>) -> TaskRow {
        TaskRow {
            id: id.into(),
            space: "ENG".into(),
            status: status.into(),
            created_at,
            finished_at,
            summary: format!("{{\"task_id\":\"{id}\"}}"),
        }
    }

    #[test]
    fn tasks_are_kept_newest_first_interrupted_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s.db"), StoreOptions::default()).unwrap();
        store.save_task(&row("a", "finished", 1, Some(2))).unwrap();
        store.save_task(&row("b", "running", 3, None)).unwrap();
        store
            .save_task(&row("c", "finished", 4, Some(100)))
            .unwrap();
        // An update keeps the row, changes its status.
        store.save_task(&row("c", "stopped", 4, Some(100))).unwrap();
        let ids: Vec<_> = store.tasks().unwrap().into_iter().map(|t| t.id).collect();
        assert_eq!(ids, ["c", "b", "a"]);
        assert_eq!(store.interrupt_tasks(50).unwrap(), 1);
        assert_eq!(
            store.prune_tasks(60).unwrap(),
            2,
            "a (2) and b (50) ended before 60"
        );
        let left = store.tasks().unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(
            (left[0].id.as_str(), left[0].status.as_str()),
            ("c", "stopped")
        );
    }
}
