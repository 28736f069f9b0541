//! The providers' batch jobs in the state file (schema migration 3).
//!
//! The order of writes is what makes a crash harmless:
//!
//! ```text
//! record_job(spec, requests)      state 'creating', job_id NULL, every request key and pages
//! create call to the provider     may be lost (crash, timeout) after reaching the provider
//! job_created(id, job id, state)  or job_not_created(id, why) after a clear refusal
//! ```
//!
//! A row still 'creating' on the next run is looked up at the provider by its display name
//! before anything is sent again (`crate::backfill`).

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::store::now;
use super::{CacheError, CacheKey, Store};

/// A job about to be created: where it comes from and what it asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    pub display_name: String,
    pub provider: String,
    pub model: String,
    pub space: String,
    pub taxonomy_fingerprint: String,
    pub prompt_version: String,
}

/// One request of a job and the pages it covers, each with its cache key (so that the
/// answer is stored under the key the pipeline will look up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub key: String,
    pub pages: Vec<(String, CacheKey)>,
}

/// A job as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    /// The local id (`tag-space jobs cancel ID`).
    pub id: i64,
    pub spec: JobSpec,
    /// The provider's id; `None` while 'creating' or when it was never created.
    pub job_id: Option<String>,
    /// `creating`, `not_created`, `stale`, or a `crate::llm::batch::JobState` name.
    pub state: String,
    /// Its results were taken (stored in the cache, or refused as stale).
    pub collected: bool,
    pub requests: u64,
    pub pages: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub error: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, display_name, provider, model, job_id, space, taxonomy_fingerprint, \
     prompt_version, state, collected, requests, pages, succeeded, failed, error, created_at, \
     updated_at";

fn read_job(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRecord> {
    Ok(JobRecord {
        id: r.get(0)?,
        spec: JobSpec {
            display_name: r.get(1)?,
            provider: r.get(2)?,
            model: r.get(3)?,
            space: r.get(5)?,
            taxonomy_fingerprint: r.get(6)?,
            prompt_version: r.get(7)?,
        },
        job_id: r.get(4)?,
        state: r.get(8)?,
        collected: r.get(9)?,
        requests: r.get(10)?,
        pages: r.get(11)?,
        succeeded: r.get(12)?,
        failed: r.get(13)?,
        error: r.get(14)?,
        created_at: r.get(15)?,
        updated_at: r.get(16)?,
    })
}

impl Store {
    /// Records a job and its requests in state 'creating', in one transaction, before the
    /// create call is sent. Returns the local id.
    pub fn record_job(
        &self,
        spec: &JobSpec,
        requests: &[RequestRecord],
    ) -> Result<i64, CacheError> {
        let pages: usize = requests.iter().map(|r| r.pages.len()).sum();
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.err("begin recording a batch job"))?;
        let at = now();
        tx.execute(
            "INSERT INTO batch_jobs (display_name, provider, model, space, taxonomy_fingerprint,
             prompt_version, state, requests, pages, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'creating', ?7, ?8, ?9, ?9)",
            params![
                spec.display_name,
                spec.provider,
                spec.model,
                spec.space,
                spec.taxonomy_fingerprint,
                spec.prompt_version,
                requests.len() as u64,
                pages as u64,
                at
            ],
        )
        .map_err(self.err("record a batch job"))?;
        let id = tx.last_insert_rowid();
        {
            let mut stmt = tx
                .prepare_cached("INSERT INTO batch_requests (job, key, pages) VALUES (?1, ?2, ?3)")
                .map_err(self.err("record a batch request"))?;
            for r in requests {
                let pages: Vec<(&str, String)> = r
                    .pages
                    .iter()
                    .map(|(id, k)| (id.as_str(), k.to_string()))
                    .collect();
                let pages = serde_json::to_string(&pages).expect("pairs of strings serialise");
                stmt.execute(params![id, r.key, pages])
                    .map_err(self.err("record a batch request"))?;
            }
        }
        tx.commit().map_err(self.err("commit a batch job"))?;
        Ok(id)
    }

    /// The provider accepted the job (or it was found again by its display name).
    pub fn job_created(&self, id: i64, job_id: &str, state: &str) -> Result<(), CacheError> {
        self.conn()
            .execute(
                "UPDATE batch_jobs SET job_id = ?2, state = ?3, error = NULL, updated_at = ?4
                 WHERE id = ?1",
                params![id, job_id, state, now()],
            )
            .map_err(self.err("record a created batch job"))?;
        Ok(())
    }

    /// The provider refused the create, or a lost create was not found: no job exists.
    pub fn job_not_created(&self, id: i64, why: &str) -> Result<(), CacheError> {
        self.set_job_state(id, "not_created", Some(why))
    }

    /// A new state (and counts) from a poll.
    pub fn update_job(
        &self,
        id: i64,
        state: &str,
        succeeded: u64,
        failed: u64,
    ) -> Result<(), CacheError> {
        self.conn()
            .execute(
                "UPDATE batch_jobs SET state = ?2, succeeded = ?3, failed = ?4, updated_at = ?5
                 WHERE id = ?1",
                params![id, state, succeeded, failed, now()],
            )
            .map_err(self.err("update a batch job"))?;
        Ok(())
    }

    /// The job's results were taken, or refused (`state` 'stale' with why).
    pub fn job_collected(
        &self,
        id: i64,
        state: Option<&str>,
        why: Option<&str>,
    ) -> Result<(), CacheError> {
        let conn = self.conn();
        conn.execute(
            "UPDATE batch_jobs SET collected = 1, state = COALESCE(?2, state),
             error = COALESCE(?3, error), updated_at = ?4 WHERE id = ?1",
            params![id, state, why, now()],
        )
        .map_err(self.err("record a collected batch job"))?;
        Ok(())
    }

    fn set_job_state(&self, id: i64, state: &str, why: Option<&str>) -> Result<(), CacheError> {
        self.conn()
            .execute(
                "UPDATE batch_jobs SET state = ?2, error = ?3, updated_at = ?4 WHERE id = ?1",
                params![id, state, why, now()],
            )
            .map_err(self.err("update a batch job"))?;
        Ok(())
    }

    /// Every recorded job (of one space, or all), newest first.
    pub fn jobs(&self, space: Option<&str>) -> Result<Vec<JobRecord>, CacheError> {
        let conn = self.conn();
        let sql = format!(
            "SELECT {COLUMNS} FROM batch_jobs WHERE ?1 IS NULL OR space = ?1 ORDER BY id DESC"
        );
        let mut stmt = conn.prepare(&sql).map_err(self.err("list batch jobs"))?;
        let rows = stmt
            .query_map([space], read_job)
            .map_err(self.err("list batch jobs"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.err("list batch jobs"))
    }

    /// One job by its local id or the provider's id.
    pub fn job(&self, id: &str) -> Result<Option<JobRecord>, CacheError> {
        let conn = self.conn();
        let sql = format!(
            "SELECT {COLUMNS} FROM batch_jobs WHERE job_id = ?1 OR CAST(id AS TEXT) = ?1
             ORDER BY id DESC LIMIT 1"
        );
        conn.query_row(&sql, [id], read_job)
            .optional()
            .map_err(self.err("read a batch job"))
    }

    /// The requests of a job and the pages each covers.
    pub fn job_requests(&self, id: i64) -> Result<Vec<RequestRecord>, CacheError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT key, pages FROM batch_requests WHERE job = ?1 ORDER BY key")
            .map_err(self.err("read batch requests"))?;
        let rows = stmt
            .query_map([id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(self.err("read batch requests"))?;
        let mut out = Vec::new();
        for row in rows {
            let (key, pages) = row.map_err(self.err("read batch requests"))?;
            let pairs: Vec<(String, String)> = serde_json::from_str(&pages).unwrap_or_default();
            let pages = pairs
                .into_iter()
                .filter_map(|(id, hex)| Some((id, parse_key(&hex)?)))
                .collect();
            out.push(RequestRecord { key, pages });
        }
        Ok(out)
    }
}

/// A cache key from its hex form; `None` if it is not 64 hex digits.
fn parse_key(hex: &str) -> Option<CacheKey> {
    if hex.len() != 64 {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(CacheKey::from_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{Setup, StoreOptions};

    fn spec(name: &str) -> JobSpec {
        JobSpec {
            display_name: name.into(),
            provider: "openai".into(),
            model: "gpt-4.1-mini".into(),
            space: "ENG".into(),
            taxonomy_fingerprint: "fp".into(),
            prompt_version: "p1".into(),
        }
    }

    #[test]
    fn a_job_is_recorded_creating_then_created_with_its_requests() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s.db"), StoreOptions::default()).unwrap();
        let key = CacheKey::new(&Setup::new("fp", "p1", "m"), "t", "x");
        let requests = vec![RequestRecord {
            key: "r0".into(),
            pages: vec![("1".into(), key), ("2".into(), key)],
        }];
        let id = store.record_job(&spec("job-a"), &requests).unwrap();
        let job = store.job(&id.to_string()).unwrap().unwrap();
        assert_eq!(
            (job.state.as_str(), job.job_id.as_deref()),
            ("creating", None)
        );
        assert_eq!((job.requests, job.pages), (1, 2));
        assert_eq!(store.job_requests(id).unwrap(), requests);
        store.job_created(id, "batch_1", "pending").unwrap();
        let job = store.job("batch_1").unwrap().unwrap();
        assert_eq!((job.id, job.state.as_str()), (id, "pending"));
        // A display name is never reused: it is how a lost create is found again.
        assert!(store.record_job(&spec("job-a"), &requests).is_err());
        store
            .job_collected(id, Some("stale"), Some("taxonomy changed"))
            .unwrap();
        let jobs = store.jobs(Some("ENG")).unwrap();
        assert_eq!(jobs.len(), 1);
        assert!(jobs[0].collected && jobs[0].state == "stale");
        assert!(store.jobs(Some("OPS")).unwrap().is_empty());
    }
}
