//! The OpenAI Batch API (reference §2.5 and §6 "Batch API").
//!
//! | step | call |
//! |---|---|
//! | upload | `POST /v1/files` multipart, `purpose=batch`, JSONL of `{custom_id, method, url, body}` lines |
//! | create | `POST /v1/batches` `{input_file_id, endpoint: /v1/chat/completions, completion_window: 24h, metadata}` |
//! | poll | `GET /v1/batches/{id}`: `status`, `request_counts {total, completed, failed}` |
//! | find | `GET /v1/batches?limit=100&after=…` → `data[]`, matched on `metadata.tag_space_job` |
//! | results | `output_file_id` and `error_file_id`, read with `GET /v1/files/{id}/content`; lines `{custom_id, response: {status_code, body}, error}` in any order |
//! | cancel | `POST /v1/batches/{id}/cancel` |
//!
//! At most 50,000 requests and 200 MB per file, one model per file.

use std::sync::Arc;

use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use super::http::{self, jsonl};
use super::{BatchError, BatchRequest, BatchService, JobResults, JobState, JobStatus, Limits};
use super::{RequestCounts, int};
use crate::llm::ProviderSettings;
use crate::llm::openai::{self as interactive, OpenAiProvider};
use crate::llm::{Answer, LlmError, LlmErrorKind, RateLimitHints, wire};
use crate::secret::Secret;
use crate::taxonomy::Taxonomy;

const NAME: &str = "openai";

/// Requests per input file.
pub const MAX_REQUESTS: usize = 50_000;
/// Bytes per input file (200 MB).
pub const MAX_BYTES: usize = 200 * 1024 * 1024;

/// The metadata key under which a job's display name is stored.
pub const NAME_KEY: &str = "tag_space_job";

/// Pages of the list call: how far back [`BatchService::find`] looks.
const FIND_MAX_PAGES: usize = 20;

/// The OpenAI Batch API for one model.
#[derive(Debug)]
pub struct OpenAiBatch {
    builder: OpenAiProvider,
    http: reqwest::Client,
    key: Option<Secret>,
    model: String,
    base: String,
    limits: Limits,
}

impl OpenAiBatch {
    /// Fails only if the HTTP client cannot be built.
    pub fn new(settings: ProviderSettings, taxonomy: Arc<Taxonomy>) -> Result<Self, LlmError> {
        let builder = OpenAiProvider::new(settings.clone(), taxonomy)?;
        Ok(Self {
            builder,
            http: wire::http_client(NAME, settings.timeout)?,
            key: settings.api_key.clone().filter(|k| !k.expose().is_empty()),
            model: settings.model.clone(),
            base: settings.base_url.trim_end_matches('/').to_string(),
            limits: Limits {
                max_requests: MAX_REQUESTS,
                max_bytes: MAX_BYTES,
            },
        })
    }

    /// Other limits (tests, or a compatible server with smaller ones).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    async fn call(&self, mut request: reqwest::RequestBuilder) -> Result<String, LlmError> {
        if let Some(key) = &self.key {
            request = request.bearer_auth(key.expose());
        }
        let (_, body) = http::send(
            NAME,
            request,
            self.key.as_ref(),
            interactive::classify_error,
        )
        .await?;
        Ok(body)
    }

    fn json(&self, body: &str) -> Result<Value, BatchError> {
        serde_json::from_str(body).map_err(|e| BatchError::protocol(NAME, format!("{e}: {body}")))
    }

    async fn upload(&self, display_name: &str, bytes: &[u8]) -> Result<String, BatchError> {
        let (content_type, body) = http::multipart(
            &[("purpose", "batch")],
            "file",
            &format!("{display_name}.jsonl"),
            "application/jsonl",
            bytes,
        );
        let request = self
            .http
            .post(format!("{}/files", self.base))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        let answer = self.call(request).await.map_err(BatchError::Upload)?;
        self.json(&answer)?["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| BatchError::protocol(NAME, format!("no file id in {answer}")))
    }

    async fn content(&self, file_id: &str) -> Result<String, BatchError> {
        let url = format!("{}/files/{file_id}/content", self.base);
        self.call(self.http.get(url))
            .await
            .map_err(BatchError::Call)
    }

    async fn batch(&self, id: &str) -> Result<Value, BatchError> {
        let body = self
            .call(self.http.get(format!("{}/batches/{id}", self.base)))
            .await
            .map_err(BatchError::Call)?;
        self.json(&body)
    }

    /// One output or error line: the chat completion read by the interactive parser, or
    /// the error classified as the interactive client would have.
    fn answer(&self, line: &Value) -> Result<Answer, LlmError> {
        if let Some(e) = line.get("error").filter(|e| !e.is_null()) {
            let code = e["code"].as_str().unwrap_or("error");
            let message = e["message"].as_str().unwrap_or("no message");
            return Err(LlmError::new(
                NAME,
                LlmErrorKind::BadRequest,
                None,
                format!("{code}: {message}"),
            ));
        }
        let response = &line["response"];
        let status = response["status_code"]
            .as_u64()
            .and_then(|s| u16::try_from(s).ok())
            .unwrap_or(0);
        let body = response["body"].to_string();
        if !(200..300).contains(&status) {
            let key = self.key.as_ref();
            return Err(interactive::classify_error(
                status,
                &HeaderMap::new(),
                &body,
                key,
            ));
        }
        let (labels, usage) = interactive::parse_response(&body, self.key.as_ref())?;
        Ok(Answer {
            provider: NAME,
            model: self.model.clone(),
            labels,
            usage,
            rate_limits: RateLimitHints::default(),
        })
    }
}

impl BatchService for OpenAiBatch {
    fn name(&self) -> &'static str {
        NAME
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn limits(&self) -> Limits {
        self.limits
    }

    fn encode(&self, request: &BatchRequest) -> Value {
        json!({
            "custom_id": request.key,
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": self.builder.request_body(&request.pages, super::line_cap(&self.builder, &request.pages)),
        })
    }

    async fn create(&self, display_name: &str, lines: &[Value]) -> Result<JobStatus, BatchError> {
        let file_id = self.upload(display_name, &jsonl(lines)).await?;
        let body = json!({
            "input_file_id": file_id,
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
            "metadata": {NAME_KEY: display_name},
        });
        let request = self.http.post(format!("{}/batches", self.base)).json(&body);
        let answer = self.call(request).await.map_err(BatchError::Create)?;
        parse_batch(&self.json(&answer)?)
    }

    async fn find(&self, display_name: &str) -> Result<Option<JobStatus>, BatchError> {
        let mut after: Option<String> = None;
        for _ in 0..FIND_MAX_PAGES {
            let mut url = format!("{}/batches?limit=100", self.base);
            if let Some(a) = &after {
                url.push_str(&format!("&after={a}"));
            }
            let body = self
                .call(self.http.get(url))
                .await
                .map_err(BatchError::Call)?;
            let page = self.json(&body)?;
            let data = page["data"].as_array().cloned().unwrap_or_default();
            if let Some(b) = data.iter().find(|b| {
                b.pointer(&format!("/metadata/{NAME_KEY}"))
                    .and_then(Value::as_str)
                    == Some(display_name)
            }) {
                return parse_batch(b).map(Some);
            }
            match (
                page["has_more"].as_bool(),
                data.last().and_then(|b| b["id"].as_str()),
            ) {
                (Some(true), Some(last)) => after = Some(last.to_string()),
                _ => return Ok(None),
            }
        }
        Ok(None)
    }

    async fn status(&self, id: &str) -> Result<JobStatus, BatchError> {
        parse_batch(&self.batch(id).await?)
    }

    async fn results(&self, id: &str) -> Result<JobResults, BatchError> {
        let batch = self.batch(id).await?;
        let mut out = JobResults::new();
        // Errors first, so that a request in both files keeps its answer.
        for field in ["error_file_id", "output_file_id"] {
            let Some(file) = batch[field].as_str().filter(|f| !f.is_empty()) else {
                continue;
            };
            for line in self.content(file).await?.lines() {
                let Ok(item) = serde_json::from_str::<Value>(line) else {
                    continue; // an unreadable line: its key counts as missing
                };
                if let Some(key) = item["custom_id"].as_str() {
                    out.insert(key.to_string(), self.answer(&item));
                }
            }
        }
        Ok(out)
    }

    async fn cancel(&self, id: &str) -> Result<JobStatus, BatchError> {
        let request = self.http.post(format!("{}/batches/{id}/cancel", self.base));
        let body = self.call(request).await.map_err(BatchError::Call)?;
        parse_batch(&self.json(&body)?)
    }
}

/// A Batch object as a [`JobStatus`].
fn parse_batch(b: &Value) -> Result<JobStatus, BatchError> {
    let id = b["id"]
        .as_str()
        .ok_or_else(|| BatchError::protocol(NAME, format!("no batch id in {b}")))?;
    let state = match b["status"].as_str().unwrap_or_default() {
        "validating" => JobState::Pending,
        "in_progress" | "finalizing" => JobState::Running,
        "cancelling" => JobState::Cancelling,
        "completed" => JobState::Succeeded,
        "failed" => JobState::Failed,
        "cancelled" => JobState::Cancelled,
        "expired" => JobState::Expired,
        other => {
            return Err(BatchError::protocol(
                NAME,
                format!("unknown status {other:?}"),
            ));
        }
    };
    let counts = &b["request_counts"];
    Ok(JobStatus {
        id: id.to_string(),
        display_name: b
            .pointer(&format!("/metadata/{NAME_KEY}"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        state,
        counts: RequestCounts {
            total: int(counts.get("total")),
            succeeded: int(counts.get("completed")),
            failed: int(counts.get("failed")),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_object_reads_as_a_status() {
        let b = json!({
            "id": "batch_abc", "object": "batch", "endpoint": "/v1/chat/completions",
            "status": "finalizing", "input_file_id": "file-1", "completion_window": "24h",
            "request_counts": {"total": 3, "completed": 2, "failed": 1},
            "metadata": {"tag_space_job": "tag-space-ENG-1-0"}
        });
        let s = parse_batch(&b).unwrap();
        assert_eq!(s.state, JobState::Running);
        assert_eq!(s.display_name, "tag-space-ENG-1-0");
        assert_eq!(s.counts.failed, 1);
        assert!(parse_batch(&json!({"id": "b", "status": "weird"})).is_err());
    }
}
