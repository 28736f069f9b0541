//! The providers' batch services: Gemini Batch Mode and the OpenAI Batch API.
//!
//! They take a file (or an inline list) of requests, answer within 24 hours outside the
//! interactive rate limits, and charge half. [`BatchService`] is the seam: one
//! implementation per provider ([`GeminiBatch`], [`OpenAiBatch`]), driven by
//! `crate::backfill`, which records every job in the state file before it is created.
//!
//! Each request is built by the interactive client's own builder (same prompt, same
//! per-batch schema), and each answer line is read by the interactive client's own parser,
//! so a batch answer is exactly as trustworthy as an interactive one; `crate::backfill`
//! then validates it with [`super::validate::validate`] like the pipeline does.
//!
//! Creating a job is not idempotent on either service: sending the same create twice makes
//! two jobs. So every job carries a display name (Gemini `displayName`, OpenAI
//! `metadata.tag_space_job`) that [`BatchService::find`] can look up after a crash.

mod gemini;
mod http;
mod openai;

use std::collections::BTreeMap;
use std::future::Future;

use serde_json::Value;

pub use gemini::GeminiBatch;
pub use openai::OpenAiBatch;

use super::{Answer, LlmError, PageText};

/// One request of a job: a key unique within the job and the pages it asks about (the same
/// pages one interactive call would carry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRequest {
    pub key: String,
    pub pages: Vec<PageText>,
}

/// What one job may hold: a job over either limit is split by `crate::backfill`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Requests per job (OpenAI: 50,000).
    pub max_requests: usize,
    /// Bytes of the encoded input (OpenAI: 200 MB per file; Gemini: 2 GB per file).
    pub max_bytes: usize,
}

/// A job's state, both services' states mapped onto one list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Accepted, not started (Gemini `PENDING`, OpenAI `validating`).
    Pending,
    /// Running (Gemini `RUNNING`, OpenAI `in_progress` and `finalizing`).
    Running,
    /// A cancel was asked for and is under way (OpenAI `cancelling`).
    Cancelling,
    Succeeded,
    Failed,
    Cancelled,
    /// The 24 h window closed: the finished part can still be downloaded.
    Expired,
}

impl JobState {
    /// No further change will come.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled | JobState::Expired
        )
    }

    /// Results may be downloaded (a cancelled or expired job keeps its finished part).
    pub fn has_results(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Expired | JobState::Cancelled
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Cancelling => "cancelling",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            JobState::Pending,
            JobState::Running,
            JobState::Cancelling,
            JobState::Succeeded,
            JobState::Failed,
            JobState::Cancelled,
            JobState::Expired,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// How far a job got, as the service counts its requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounts {
    pub total: u64,
    pub succeeded: u64,
    pub failed: u64,
}

/// A job as the service reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobStatus {
    /// The service's id: `batches/…` (Gemini) or `batch_…` (OpenAI).
    pub id: String,
    /// The name tag-space gave it when creating it.
    pub display_name: String,
    pub state: JobState,
    pub counts: RequestCounts,
}

/// Per request key, the provider's answer as the interactive client reads it (not yet
/// validated), or why that request has none (an error line, an unreadable answer).
/// Requests absent from the output (an expired or cancelled job) are absent here too.
pub type JobResults = BTreeMap<String, Result<Answer, LlmError>>;

/// A call to a batch service failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BatchError {
    /// The input could not be uploaded: no job exists, sending again is safe.
    #[error("uploading the batch input failed")]
    Upload(#[source] LlmError),
    /// The create call failed. When [`BatchError::may_exist`] says so, the job may exist
    /// anyway (the answer was lost), so look it up before sending the create again.
    #[error("creating the batch job failed")]
    Create(#[source] LlmError),
    /// Any other call (poll, list, download, cancel).
    #[error("batch service call failed")]
    Call(#[source] LlmError),
    /// A 2xx whose body is not what the service documents.
    #[error("{provider}: unexpected batch answer: {detail}")]
    Protocol {
        provider: &'static str,
        detail: String,
    },
}

impl BatchError {
    /// A create whose request may have reached the service: no answer, or a 5xx. (A 429
    /// or any 4xx is a refusal: no job was made.)
    pub fn may_exist(&self) -> bool {
        use super::LlmErrorKind as K;
        matches!(
            self,
            BatchError::Create(LlmError {
                kind: K::Transport | K::Timeout | K::Overloaded { .. },
                ..
            })
        )
    }

    pub(crate) fn protocol(provider: &'static str, detail: impl AsRef<str>) -> Self {
        BatchError::Protocol {
            provider,
            detail: crate::http::snippet(detail.as_ref()),
        }
    }
}

/// A provider's batch service.
pub trait BatchService: Send + Sync {
    /// The provider ("gemini", "openai").
    fn name(&self) -> &'static str;

    /// The model every request of a job asks (one model per job on both services).
    fn model(&self) -> &str;

    /// What one job may hold.
    fn limits(&self) -> Limits;

    /// One request as a line of the service's JSONL input (built with the interactive
    /// client's own request builder). `crate::backfill` measures these to plan jobs.
    fn encode(&self, request: &BatchRequest) -> Value;

    /// Uploads the lines (when needed) and creates one job named `display_name`.
    fn create(
        &self,
        display_name: &str,
        lines: &[Value],
    ) -> impl Future<Output = Result<JobStatus, BatchError>> + Send;

    /// The job tag-space created under `display_name`, if the service has it.
    fn find(
        &self,
        display_name: &str,
    ) -> impl Future<Output = Result<Option<JobStatus>, BatchError>> + Send;

    /// The job's current state and counts.
    fn status(&self, id: &str) -> impl Future<Output = Result<JobStatus, BatchError>> + Send;

    /// The job's answers by request key, out of order on the wire, joined on the key.
    fn results(&self, id: &str) -> impl Future<Output = Result<JobResults, BatchError>> + Send;

    /// Asks the service to cancel the job; the finished part stays downloadable.
    fn cancel(&self, id: &str) -> impl Future<Output = Result<JobStatus, BatchError>> + Send;
}

/// An integer that protobuf JSON may write as a string (`"12"`) or a number.
pub(crate) fn int(v: Option<&Value>) -> u64 {
    match v {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

/// The output cap of one batch line: the interactive budget widened once, since a batch line
/// gets no second try at a larger cap (a truncated line is asked again interactively), and a
/// batch job is billed for the tokens it produces, not for the cap it asks.
pub(crate) fn line_cap(
    provider: &impl crate::llm::Provider,
    pages: &[crate::llm::PageText],
) -> u32 {
    provider
        .output_budget(pages)
        .map_or(1, |b| b.widened().unwrap_or(b.tokens))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_classify() {
        for s in [
            JobState::Pending,
            JobState::Running,
            JobState::Cancelling,
            JobState::Succeeded,
            JobState::Failed,
            JobState::Cancelled,
            JobState::Expired,
        ] {
            assert_eq!(JobState::parse(s.as_str()), Some(s));
        }
        assert!(JobState::Expired.is_terminal() && JobState::Expired.has_results());
        assert!(!JobState::Failed.has_results());
        assert!(!JobState::Running.is_terminal());
    }

    #[test]
    fn only_an_unanswered_create_may_have_made_a_job() {
        use super::super::LlmErrorKind;
        let e = |kind| LlmError::new("gemini", kind, None, "");
        assert!(BatchError::Create(e(LlmErrorKind::Transport)).may_exist());
        assert!(BatchError::Create(e(LlmErrorKind::Timeout)).may_exist());
        assert!(!BatchError::Create(e(LlmErrorKind::BadRequest)).may_exist());
        let limited = LlmErrorKind::RateLimited { retry_after: None };
        assert!(!BatchError::Create(e(limited)).may_exist());
        assert!(!BatchError::Upload(e(LlmErrorKind::Transport)).may_exist());
        assert_eq!(int(Some(&Value::from("12"))), 12);
        assert_eq!(int(Some(&Value::from(7))), 7);
    }
}
