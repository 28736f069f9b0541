//! Gemini Batch Mode (reference §1.7 and §6 "Batch Mode").
//!
//! | step | call |
//! |---|---|
//! | input under 20 MB | inline: `inputConfig.requests.requests[] = {request, metadata.key}` |
//! | larger input | JSONL of `{key, request}` lines, Files API resumable upload (`POST /upload/v1beta/files`, then `upload, finalize`), `inputConfig.fileName` |
//! | create | `POST /v1beta/models/{model}:batchGenerateContent` `{"batch": {displayName, inputConfig}}` → an Operation |
//! | poll | `GET /v1beta/batches/{id}`: `metadata.state` (`BATCH_STATE_*`), `metadata.batchStats` |
//! | find | `GET /v1beta/batches?pageSize=…&pageToken=…` → `operations[]`, matched on `metadata.displayName` |
//! | results | `response.inlinedResponses.inlinedResponses[]` `{response|error, metadata.key}`, or `response.responsesFile` downloaded with `GET /download/v1beta/{file}:download?alt=media`, one `{key, response|error}` per line |
//! | cancel | `POST /v1beta/batches/{id}:cancel` |

use std::sync::Arc;

use serde_json::{Value, json};

use super::http::{self, jsonl};
use super::{BatchError, BatchRequest, BatchService, JobResults, JobState, JobStatus, Limits};
use super::{RequestCounts, int};
use crate::llm::ProviderSettings;
use crate::llm::gemini::{self as interactive, GeminiProvider};
use crate::llm::{Answer, LlmError, LlmErrorKind, RateLimitHints, wire};
use crate::secret::Secret;
use crate::taxonomy::Taxonomy;

const NAME: &str = "gemini";

/// Inline input must stay under 20 MB in total; a margin keeps the envelope under it too.
pub const INLINE_MAX_BYTES: usize = 19_000_000;

/// The Files API takes up to 2 GB per file.
pub const FILE_MAX_BYTES: usize = 2_000_000_000;

/// Pages of the list call: how far back [`BatchService::find`] looks.
const FIND_MAX_PAGES: usize = 20;

/// Gemini Batch Mode for one model.
#[derive(Debug, Clone)]
pub struct GeminiBatch {
    builder: GeminiProvider,
    http: reqwest::Client,
    key: Secret,
    model: String,
    base: String,
    limits: Limits,
    inline_max: usize,
}

impl GeminiBatch {
    /// Fails without an API key or if the HTTP client cannot be built.
    pub fn new(settings: ProviderSettings, taxonomy: Arc<Taxonomy>) -> Result<Self, LlmError> {
        let builder = GeminiProvider::new(settings.clone(), taxonomy)?;
        let key = settings.api_key.clone().unwrap_or_else(|| Secret::new(""));
        Ok(Self {
            builder,
            http: wire::http_client(NAME, settings.timeout)?,
            key,
            model: settings.model.trim_start_matches("models/").to_string(),
            base: settings.base_url.trim_end_matches('/').to_string(),
            limits: Limits {
                max_requests: usize::MAX,
                max_bytes: FILE_MAX_BYTES,
            },
            inline_max: INLINE_MAX_BYTES,
        })
    }

    /// Other limits (tests, or a service with smaller ones).
    pub fn with_limits(mut self, limits: Limits, inline_max_bytes: usize) -> Self {
        self.limits = limits;
        self.inline_max = inline_max_bytes;
        self
    }

    async fn call(&self, request: reqwest::RequestBuilder) -> Result<String, LlmError> {
        let request = request.header("x-goog-api-key", self.key.expose());
        let (_, body) =
            http::send(NAME, request, Some(&self.key), interactive::classify_error).await?;
        Ok(body)
    }

    fn json(&self, body: &str) -> Result<Value, BatchError> {
        serde_json::from_str(body).map_err(|e| BatchError::protocol(NAME, format!("{e}: {body}")))
    }

    /// The Files API's resumable upload in one chunk; returns `files/…`.
    async fn upload(&self, display_name: &str, bytes: Vec<u8>) -> Result<String, BatchError> {
        let start = self
            .http
            .post(format!("{}/upload/v1beta/files", self.base))
            .header("x-goog-api-key", self.key.expose())
            .header("X-Goog-Upload-Protocol", "resumable")
            .header("X-Goog-Upload-Command", "start")
            .header("X-Goog-Upload-Header-Content-Length", bytes.len())
            .header("X-Goog-Upload-Header-Content-Type", "application/jsonl")
            .json(&json!({"file": {"displayName": display_name}}));
        let (headers, _) = http::send(NAME, start, Some(&self.key), interactive::classify_error)
            .await
            .map_err(BatchError::Upload)?;
        let url = headers
            .get("x-goog-upload-url")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                BatchError::protocol(NAME, "the upload start sent no X-Goog-Upload-URL")
            })?
            .to_string();
        let finish = self
            .http
            .post(url)
            .header("X-Goog-Upload-Command", "upload, finalize")
            .header("X-Goog-Upload-Offset", "0")
            .body(bytes);
        let body = self.call(finish).await.map_err(BatchError::Upload)?;
        let file = self.json(&body)?;
        file.pointer("/file/name")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| BatchError::protocol(NAME, format!("no file name in {body}")))
    }

    async fn download(&self, file: &str) -> Result<String, BatchError> {
        let url = format!("{}/download/v1beta/{file}:download?alt=media", self.base);
        self.call(self.http.get(url))
            .await
            .map_err(BatchError::Call)
    }

    async fn operation(&self, id: &str) -> Result<Value, BatchError> {
        let body = self
            .call(self.http.get(format!("{}/v1beta/{id}", self.base)))
            .await
            .map_err(BatchError::Call)?;
        self.json(&body)
    }

    /// One answer: a `GenerateContentResponse` read by the interactive parser, or an error
    /// status.
    fn answer(&self, response: Option<&Value>, error: Option<&Value>) -> Result<Answer, LlmError> {
        if let Some(e) = error.filter(|e| !e.is_null()) {
            return Err(line_error(e));
        }
        let body = response.map(Value::to_string).unwrap_or_default();
        let (labels, usage) = interactive::parse_response(&body, Some(&self.key))?;
        Ok(Answer {
            provider: NAME,
            model: self.model.clone(),
            labels,
            usage,
            rate_limits: RateLimitHints::default(),
        })
    }
}

impl BatchService for GeminiBatch {
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
        json!({"key": request.key, "request": self.builder.request_body(&request.pages, super::line_cap(&self.builder, &request.pages))})
    }

    async fn create(&self, display_name: &str, lines: &[Value]) -> Result<JobStatus, BatchError> {
        let bytes = jsonl(lines);
        let input = if bytes.len() < self.inline_max {
            let requests: Vec<Value> = lines
                .iter()
                .map(|l| json!({"request": l["request"], "metadata": {"key": l["key"]}}))
                .collect();
            json!({"requests": {"requests": requests}})
        } else {
            json!({"fileName": self.upload(display_name, bytes).await?})
        };
        let url = format!(
            "{}/v1beta/models/{}:batchGenerateContent",
            self.base, self.model
        );
        let body = json!({"batch": {"displayName": display_name, "inputConfig": input}});
        let answer = self
            .call(self.http.post(url).json(&body))
            .await
            .map_err(BatchError::Create)?;
        parse_operation(&self.json(&answer)?)
    }

    async fn find(&self, display_name: &str) -> Result<Option<JobStatus>, BatchError> {
        let mut token: Option<String> = None;
        for _ in 0..FIND_MAX_PAGES {
            let mut url = format!("{}/v1beta/batches?pageSize=100", self.base);
            if let Some(t) = &token {
                url.push_str(&format!("&pageToken={}", urlencode(t)));
            }
            let body = self
                .call(self.http.get(url))
                .await
                .map_err(BatchError::Call)?;
            let page = self.json(&body)?;
            for op in page["operations"].as_array().into_iter().flatten() {
                if op.pointer("/metadata/displayName").and_then(Value::as_str) == Some(display_name)
                {
                    return parse_operation(op).map(Some);
                }
            }
            match page["nextPageToken"].as_str().filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t.to_string()),
                None => return Ok(None),
            }
        }
        Ok(None)
    }

    async fn status(&self, id: &str) -> Result<JobStatus, BatchError> {
        parse_operation(&self.operation(id).await?)
    }

    async fn results(&self, id: &str) -> Result<JobResults, BatchError> {
        let op = self.operation(id).await?;
        // The output is the Operation's `response`, and also `metadata.output`.
        let output = ["/response", "/metadata/output"]
            .iter()
            .find_map(|p| op.pointer(p).filter(|v| v.is_object()))
            .cloned()
            .unwrap_or(Value::Null);
        let mut out = JobResults::new();
        if let Some(items) = output
            .pointer("/inlinedResponses/inlinedResponses")
            .and_then(Value::as_array)
        {
            for item in items {
                if let Some(key) = item.pointer("/metadata/key").and_then(Value::as_str) {
                    let answer = self.answer(item.get("response"), item.get("error"));
                    out.insert(key.to_string(), answer);
                }
            }
        } else if let Some(file) = output["responsesFile"].as_str() {
            for line in self.download(file).await?.lines() {
                let Ok(item) = serde_json::from_str::<Value>(line) else {
                    continue; // an unreadable line: its key counts as missing
                };
                if let Some(key) = item["key"].as_str() {
                    let answer = self.answer(item.get("response"), item.get("error"));
                    out.insert(key.to_string(), answer);
                }
            }
        }
        Ok(out)
    }

    async fn cancel(&self, id: &str) -> Result<JobStatus, BatchError> {
        let url = format!("{}/v1beta/{id}:cancel", self.base);
        self.call(self.http.post(url).json(&json!({})))
            .await
            .map_err(BatchError::Call)?;
        self.status(id).await
    }
}

/// A `google.rpc.Status` on a line, as an error of that request.
fn line_error(e: &Value) -> LlmError {
    let code = e["code"].as_u64().and_then(|c| u16::try_from(c).ok());
    let message = e["message"].as_str().unwrap_or("no message");
    // The line's own code is a gRPC code, not HTTP: the request was refused, never retried
    // inside the job.
    LlmError::new(
        NAME,
        LlmErrorKind::BadAnswer,
        None,
        match code {
            Some(c) => format!("request failed in the batch (code {c}): {message}"),
            None => format!("request failed in the batch: {message}"),
        },
    )
}

/// An Operation (create, get, list) as a [`JobStatus`].
fn parse_operation(op: &Value) -> Result<JobStatus, BatchError> {
    let meta = &op["metadata"];
    let id = op["name"]
        .as_str()
        .or_else(|| meta["name"].as_str())
        .ok_or_else(|| BatchError::protocol(NAME, format!("no batch name in {op}")))?;
    let state = match meta["state"].as_str().unwrap_or_default() {
        "BATCH_STATE_PENDING" | "JOB_STATE_PENDING" | "JOB_STATE_QUEUED" => JobState::Pending,
        "BATCH_STATE_RUNNING" | "JOB_STATE_RUNNING" => JobState::Running,
        "BATCH_STATE_SUCCEEDED" | "JOB_STATE_SUCCEEDED" => JobState::Succeeded,
        "BATCH_STATE_FAILED" | "JOB_STATE_FAILED" => JobState::Failed,
        "BATCH_STATE_CANCELLED" | "JOB_STATE_CANCELLED" => JobState::Cancelled,
        "BATCH_STATE_EXPIRED" | "JOB_STATE_EXPIRED" => JobState::Expired,
        other => {
            return Err(BatchError::protocol(
                NAME,
                format!("unknown state {other:?}"),
            ));
        }
    };
    let stats = &meta["batchStats"];
    Ok(JobStatus {
        id: id.to_string(),
        display_name: meta["displayName"].as_str().unwrap_or_default().to_string(),
        state,
        counts: RequestCounts {
            total: int(stats.get("requestCount")),
            succeeded: int(stats.get("successfulRequestCount")),
            failed: int(stats.get("failedRequestCount")),
        },
    })
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operation_reads_as_a_status() {
        let op = json!({
            "name": "batches/abc",
            "metadata": {
                "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
                "displayName": "tag-space-ENG-1-0",
                "state": "BATCH_STATE_RUNNING",
                "batchStats": {"requestCount": "10", "successfulRequestCount": "4", "failedRequestCount": "1", "pendingRequestCount": "5"}
            }
        });
        let s = parse_operation(&op).unwrap();
        assert_eq!(s.id, "batches/abc");
        assert_eq!(s.display_name, "tag-space-ENG-1-0");
        assert_eq!(s.state, JobState::Running);
        assert_eq!(
            s.counts,
            RequestCounts {
                total: 10,
                succeeded: 4,
                failed: 1
            }
        );
        let bad = json!({"name": "batches/x", "metadata": {"state": "WHATEVER"}});
        assert!(parse_operation(&bad).is_err());
    }
}
