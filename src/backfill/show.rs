//! `tag-space jobs` (the listing, pure: the caller hands in the writer) and
//! `tag-space jobs cancel ID`.

use std::io::{self, Write};

use super::{BackfillError, service_err};
use crate::cache::{JobRecord, Store};
use crate::llm::batch::BatchService;

/// One line per job, newest first: local id, space, provider/model, state, request counts,
/// pages, age, and the provider's id (or why there is none).
pub fn write_jobs(out: &mut impl Write, jobs: &[JobRecord], now: i64) -> io::Result<()> {
    if jobs.is_empty() {
        return writeln!(out, "no batch job has been recorded");
    }
    writeln!(
        out,
        "{:>4}  {:<8}  {:<28}  {:<11}  {:>17}  {:>7}  {:>5}  job",
        "id", "space", "provider/model", "state", "done/failed/total", "pages", "age"
    )?;
    for j in jobs {
        let state = match (j.state.as_str(), j.collected) {
            ("stale", _) => "stale".to_string(),
            (s, true) => format!("{s}*"),
            (s, false) => s.to_string(),
        };
        let counts = format!("{}/{}/{}", j.succeeded, j.failed, j.requests);
        let model = format!("{}/{}", j.spec.provider, j.spec.model);
        let job = match (&j.job_id, &j.error) {
            (Some(id), _) => id.clone(),
            (None, Some(why)) => format!("- ({why})"),
            (None, None) => "- (being created)".to_string(),
        };
        writeln!(
            out,
            "{:>4}  {:<8}  {:<28}  {:<11}  {:>17}  {:>7}  {:>5}  {job}",
            j.id,
            j.spec.space,
            model,
            state,
            counts,
            j.pages,
            age(now - j.created_at)
        )?;
        if let (Some(_), Some(why)) = (&j.job_id, &j.error) {
            writeln!(out, "      {why}")?;
        }
    }
    writeln!(out, "* results collected")
}

/// `45s`, `12m`, `5h`, `3d`.
fn age(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// Asks the provider to cancel the job and records its new state. The finished part of a
/// cancelled job is still collected by the next run.
pub async fn cancel_job<S: BatchService>(
    svc: &S,
    store: &Store,
    job: &JobRecord,
) -> Result<String, BackfillError> {
    let name = job.spec.display_name.as_str();
    let Some(id) = &job.job_id else {
        return Ok(format!(
            "job {} has no provider id ({}): nothing to cancel",
            job.id, job.state
        ));
    };
    let status = svc.cancel(id).await.map_err(service_err(name))?;
    let c = status.counts;
    store.update_job(job.id, status.state.as_str(), c.succeeded, c.failed)?;
    Ok(format!(
        "job {} ({id}): {} ({} of {} requests done)",
        job.id,
        status.state.as_str(),
        c.succeeded,
        c.total
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::JobSpec;

    fn job(id: i64, state: &str, job_id: Option<&str>, error: Option<&str>) -> JobRecord {
        JobRecord {
            id,
            spec: JobSpec {
                display_name: format!("tag-space-ENG-1-{id}"),
                provider: "gemini".into(),
                model: "gemini-2.5-flash".into(),
                space: "ENG".into(),
                taxonomy_fingerprint: "fp".into(),
                prompt_version: "p".into(),
            },
            job_id: job_id.map(Into::into),
            state: state.into(),
            collected: state == "succeeded",
            requests: 2400,
            pages: 12_000,
            succeeded: if state == "succeeded" { 2399 } else { 0 },
            failed: if state == "succeeded" { 1 } else { 0 },
            error: error.map(Into::into),
            created_at: 1000,
            updated_at: 1000,
        }
    }

    #[test]
    fn the_listing_shows_state_counts_age_and_ids() {
        let jobs = [
            job(2, "running", Some("batches/b2"), None),
            job(1, "succeeded", Some("batches/b1"), None),
            job(3, "not_created", None, Some("request rejected (HTTP 400)")),
        ];
        let mut out = Vec::new();
        write_jobs(&mut out, &jobs, 1000 + 3 * 3600).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("  id  space"), "{text}");
        assert!(
            lines[1].contains("running ")
                && lines[1].contains("0/0/2400")
                && lines[1].contains("3h  batches/b2"),
            "{text}"
        );
        assert!(
            lines[2].contains("succeeded*") && lines[2].contains("2399/1/2400"),
            "{text}"
        );
        assert!(
            lines[3].contains("- (request rejected (HTTP 400))"),
            "{text}"
        );
        assert_eq!(lines[4], "* results collected");
        let mut out = Vec::new();
        write_jobs(&mut out, &[], 0).unwrap();
        assert_eq!(out, b"no batch job has been recorded\n");
    }
}
