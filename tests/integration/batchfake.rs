//! Local fakes of Gemini Batch Mode and the OpenAI Batch API, in the services' documented
//! shapes (reference §1.7, §2.5, §6), on wiremock at 127.0.0.1.
//!
//! Each fake keeps its files and jobs in memory. A job moves on each poll of it: pending on
//! the first poll, running for `polls_to_finish - 1` more, then `end` (succeeded, expired,
//! failed). Answers are made from the pages in each request (every page gets `reference` and
//! `git`), written in reverse order; a request whose key is in `fail_keys` gets an error
//! line; an expired job answers only its first half.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub const KEY: &str = "batch-key-7d1e";

/// How every job of a fake behaves.
#[derive(Debug, Clone)]
pub struct Script {
    pub polls_to_finish: usize,
    /// `succeeded`, `expired` or `failed`.
    pub end: &'static str,
    pub fail_keys: HashSet<String>,
}

impl Default for Script {
    fn default() -> Self {
        Self {
            polls_to_finish: 3,
            end: "succeeded",
            fail_keys: HashSet::new(),
        }
    }
}

#[derive(Debug, Default)]
pub struct Job {
    pub id: String,
    pub display_name: String,
    pub requests: Vec<(String, Value)>,
    pub inline: bool,
    pub polls: usize,
    pub cancelled: bool,
}

#[derive(Debug, Default)]
pub struct State {
    pub script: Script,
    pub files: BTreeMap<String, Vec<u8>>,
    pub jobs: Vec<Job>,
    pub creates: usize,
    pub downloads: usize,
    pub interactive_calls: usize,
}

/// Shared by the test and the responder.
#[derive(Clone, Default)]
pub struct Fake(pub Arc<Mutex<State>>);

impl Fake {
    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap()
    }
}

/// The ids of the pages in a request's user text (`<page id="…">`).
pub fn page_ids(text: &str) -> Vec<String> {
    text.split("<page id=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next().map(str::to_string))
        .collect()
}

/// The model's JSON answer for these pages.
pub fn labels_json(ids: &[String]) -> String {
    let map: serde_json::Map<String, Value> = ids
        .iter()
        .map(|id| (id.clone(), json!({"type": ["reference"], "tool": ["git"]})))
        .collect();
    Value::Object(map).to_string()
}

/// How far a job is after `polls` polls, in the fake's own words for the end state.
fn phase(script: &Script, job: &Job) -> &'static str {
    if job.cancelled {
        "cancelled"
    } else if job.polls <= 1 {
        "pending"
    } else if job.polls < script.polls_to_finish {
        "running"
    } else {
        script.end
    }
}

/// Which requests a finished job answered: all, or the first half of an expired one.
fn answered<'a>(end: &str, job: &'a Job) -> &'a [(String, Value)] {
    match end {
        "succeeded" => &job.requests,
        "expired" | "cancelled" => &job.requests[..job.requests.len() / 2],
        _ => &[],
    }
}

// ---- Gemini ---------------------------------------------------------------------------------

pub async fn gemini(script: Script) -> (MockServer, Fake) {
    let server = MockServer::start().await;
    let fake = Fake::default();
    fake.state().script = script;
    Mock::given(wiremock::matchers::any())
        .respond_with(GeminiFake(fake.clone()))
        .mount(&server)
        .await;
    (server, fake)
}

struct GeminiFake(Fake);

fn gemini_state(s: &str) -> String {
    format!("BATCH_STATE_{}", s.to_uppercase())
}

fn gemini_response(ids: &[String]) -> Value {
    json!({
        "candidates": [{"content": {"parts": [{"text": labels_json(ids)}], "role": "model"}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 100, "candidatesTokenCount": 20, "totalTokenCount": 120}
    })
}

fn gemini_answer(request: &Value) -> Value {
    let text = request
        .pointer("/contents/0/parts/0/text")
        .and_then(Value::as_str)
        .unwrap_or("");
    gemini_response(&page_ids(text))
}

impl GeminiFake {
    fn operation(&self, st: &State, job: &Job) -> Value {
        let phase = phase(&st.script, job);
        let done = answered(phase, job);
        let failed = done
            .iter()
            .filter(|(k, _)| st.script.fail_keys.contains(k))
            .count();
        let mut op = json!({
            "name": job.id,
            "metadata": {
                "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
                "model": "models/gemini-2.5-flash",
                "displayName": job.display_name,
                "state": gemini_state(phase),
                "batchStats": {
                    "requestCount": job.requests.len().to_string(),
                    "successfulRequestCount": (done.len() - failed).to_string(),
                    "failedRequestCount": failed.to_string(),
                    "pendingRequestCount": (job.requests.len() - done.len()).to_string()
                }
            }
        });
        if phase == "failed" {
            op["done"] = json!(true);
            op["error"] = json!({"code": 13, "message": "Internal error.", "status": "INTERNAL"});
        } else if matches!(phase, "succeeded" | "expired" | "cancelled") {
            op["done"] = json!(true);
            let lines: Vec<Value> = done
                .iter()
                .rev()
                .map(|(key, req)| {
                    if st.script.fail_keys.contains(key) {
                        json!({"key": key, "error": {"code": 3, "message": "Request contains an invalid argument.", "status": "INVALID_ARGUMENT"}})
                    } else {
                        json!({"key": key, "response": gemini_answer(req)})
                    }
                })
                .collect();
            op["response"] = if job.inline {
                let items: Vec<Value> = lines
                    .into_iter()
                    .map(|mut l| {
                        let key = l["key"].take();
                        l.as_object_mut().unwrap().remove("key");
                        l["metadata"] = json!({"key": key});
                        l
                    })
                    .collect();
                json!({"@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput", "inlinedResponses": {"inlinedResponses": items}})
            } else {
                json!({"@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput", "responsesFile": format!("files/out-{}", &job.id[8..])})
            };
        }
        op
    }

    fn output_file(&self, st: &State, job: &Job) -> String {
        let phase = phase(&st.script, job);
        let mut out = String::new();
        for (key, req) in answered(phase, job).iter().rev() {
            let line = if st.script.fail_keys.contains(key) {
                json!({"key": key, "error": {"code": 3, "message": "Request contains an invalid argument.", "status": "INVALID_ARGUMENT"}})
            } else {
                json!({"key": key, "response": gemini_answer(req)})
            };
            out.push_str(&line.to_string());
            out.push('\n');
        }
        out
    }
}

fn not_found() -> ResponseTemplate {
    ResponseTemplate::new(404).set_body_json(json!({"error": {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND"}}))
}

impl Respond for GeminiFake {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let path = req.url.path().to_string();
        let command = req
            .headers
            .get("x-goog-upload-command")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let upload_id = req
            .url
            .query_pairs()
            .find(|(k, _)| k == "upload_id")
            .map(|(_, v)| v.to_string());
        let keyed = req
            .headers
            .get("x-goog-api-key")
            .and_then(|v| v.to_str().ok())
            == Some(KEY);
        if !keyed && upload_id.is_none() {
            return ResponseTemplate::new(401).set_body_json(json!({"error": {"code": 401, "message": "API key not valid.", "status": "UNAUTHENTICATED"}}));
        }
        let mut st = self.0.state();
        let m = req.method.as_str();
        if m == "POST" && path == "/upload/v1beta/files" && upload_id.is_none() {
            assert_eq!(command, "start");
            assert_eq!(
                req.headers.get("x-goog-upload-protocol").unwrap(),
                "resumable"
            );
            let n = st.files.len();
            let host = req.headers.get("host").unwrap().to_str().unwrap();
            let url = format!(
                "http://{host}/upload/v1beta/files?upload_id=u{n}&upload_protocol=resumable"
            );
            st.files.insert(format!("pending-u{n}"), Vec::new());
            return ResponseTemplate::new(200)
                .insert_header("x-goog-upload-url", url.as_str())
                .insert_header("x-goog-upload-status", "active");
        }
        if m == "POST" && path == "/upload/v1beta/files" {
            assert_eq!(command, "upload, finalize");
            let name = format!("files/in-{}", upload_id.unwrap());
            st.files.insert(name.clone(), req.body.clone());
            return ResponseTemplate::new(200).set_body_json(json!({"file": {"name": name, "mimeType": "application/jsonl", "sizeBytes": req.body.len().to_string(), "state": "ACTIVE"}}));
        }
        if m == "POST" && path.ends_with(":batchGenerateContent") {
            let body: Value = serde_json::from_slice(&req.body).unwrap();
            let batch = &body["batch"];
            let (requests, inline) = match batch
                .pointer("/inputConfig/fileName")
                .and_then(Value::as_str)
            {
                Some(file) => {
                    let Some(bytes) = st.files.get(file) else {
                        return not_found();
                    };
                    let lines = String::from_utf8(bytes.clone()).unwrap();
                    let reqs = lines
                        .lines()
                        .map(|l| {
                            let v: Value = serde_json::from_str(l).unwrap();
                            (v["key"].as_str().unwrap().to_string(), v["request"].clone())
                        })
                        .collect();
                    (reqs, false)
                }
                None => {
                    let items = batch
                        .pointer("/inputConfig/requests/requests")
                        .and_then(Value::as_array)
                        .expect("inline requests");
                    let reqs = items
                        .iter()
                        .map(|i| {
                            (
                                i.pointer("/metadata/key")
                                    .unwrap()
                                    .as_str()
                                    .unwrap()
                                    .to_string(),
                                i["request"].clone(),
                            )
                        })
                        .collect();
                    (reqs, true)
                }
            };
            st.creates += 1;
            let job = Job {
                id: format!("batches/b{}", st.jobs.len()),
                display_name: batch["displayName"].as_str().unwrap().to_string(),
                requests,
                inline,
                ..Job::default()
            };
            let op = self.operation(&st, &job);
            st.jobs.push(job);
            return ResponseTemplate::new(200).set_body_json(op);
        }
        if m == "POST" && path.ends_with(":generateContent") {
            st.interactive_calls += 1;
            let body: Value = serde_json::from_slice(&req.body).unwrap();
            return ResponseTemplate::new(200).set_body_json(gemini_answer(&body));
        }
        if m == "GET" && path == "/v1beta/batches" {
            let ops: Vec<Value> = st
                .jobs
                .iter()
                .rev()
                .map(|j| self.operation(&st, j))
                .collect();
            return ResponseTemplate::new(200).set_body_json(json!({"operations": ops}));
        }
        if let Some(rest) = path.strip_prefix("/v1beta/batches/") {
            let (id, cancel) = match rest.strip_suffix(":cancel") {
                Some(id) => (format!("batches/{id}"), true),
                None => (format!("batches/{rest}"), false),
            };
            let Some(i) = st.jobs.iter().position(|j| j.id == id) else {
                return not_found();
            };
            if cancel {
                st.jobs[i].cancelled = true;
                return ResponseTemplate::new(200).set_body_json(json!({}));
            }
            st.jobs[i].polls += 1;
            let op = self.operation(&st, &st.jobs[i]);
            return ResponseTemplate::new(200).set_body_json(op);
        }
        if let Some(rest) = path.strip_prefix("/download/v1beta/files/out-") {
            assert_eq!(req.url.query(), Some("alt=media"));
            let n = rest.strip_suffix(":download").unwrap();
            let Some(i) = st.jobs.iter().position(|j| j.id == format!("batches/{n}")) else {
                return not_found();
            };
            st.downloads += 1;
            let body = self.output_file(&st, &st.jobs[i]);
            return ResponseTemplate::new(200).set_body_string(body);
        }
        not_found()
    }
}

// ---- OpenAI ---------------------------------------------------------------------------------

pub async fn openai(script: Script) -> (MockServer, Fake) {
    let server = MockServer::start().await;
    let fake = Fake::default();
    fake.state().script = script;
    Mock::given(wiremock::matchers::any())
        .respond_with(OpenAiFake(fake.clone()))
        .mount(&server)
        .await;
    (server, fake)
}

struct OpenAiFake(Fake);

fn openai_status(phase: &str) -> &str {
    match phase {
        "pending" => "validating",
        "running" => "in_progress",
        "succeeded" => "completed",
        other => other, // expired, failed, cancelled
    }
}

fn chat_completion(ids: &[String]) -> Value {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1_760_000_000, "model": "gpt-4.1-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": labels_json(ids), "refusal": null}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
    })
}

fn chat_answer(body: &Value) -> Value {
    let text = body
        .pointer("/messages/1/content")
        .and_then(Value::as_str)
        .unwrap_or("");
    chat_completion(&page_ids(text))
}

/// The file part of a multipart body, and whether `purpose=batch` came with it.
fn multipart_file(req: &Request) -> (Vec<u8>, bool) {
    let ct = req.headers.get("content-type").unwrap().to_str().unwrap();
    let boundary = ct.split("boundary=").nth(1).unwrap();
    let body = String::from_utf8(req.body.clone()).unwrap();
    let purpose = body.contains("name=\"purpose\"\r\n\r\nbatch\r\n");
    let start = body.find("filename=").unwrap();
    let start = start + body[start..].find("\r\n\r\n").unwrap() + 4;
    let end = body.rfind(&format!("\r\n--{boundary}--")).unwrap();
    (body.as_bytes()[start..end].to_vec(), purpose)
}

impl OpenAiFake {
    fn batch(&self, st: &State, job: &Job) -> Value {
        let phase = if job.cancelled && job.polls == 0 {
            "cancelling"
        } else {
            phase(&st.script, job)
        };
        let done = answered(phase, job);
        let failed = done
            .iter()
            .filter(|(k, _)| st.script.fail_keys.contains(k))
            .count();
        let finished = matches!(phase, "succeeded" | "expired" | "cancelled");
        let n = &job.id[6..];
        json!({
            "id": job.id, "object": "batch", "endpoint": "/v1/chat/completions", "errors": null,
            "input_file_id": format!("file-in-{n}"), "completion_window": "24h",
            "status": openai_status(phase),
            "output_file_id": finished.then(|| format!("file-out-{n}")),
            "error_file_id": (finished && failed > 0).then(|| format!("file-err-{n}")),
            "created_at": 1_760_000_000,
            "request_counts": {"total": job.requests.len(), "completed": done.len() - failed, "failed": failed},
            "metadata": {"tag_space_job": job.display_name}
        })
    }

    /// The output (`errors == false`) or error file of a finished job, in reverse order.
    fn file(&self, st: &State, job: &Job, errors: bool) -> String {
        let mut out = String::new();
        for (key, body) in answered(phase(&st.script, job), job).iter().rev() {
            if st.script.fail_keys.contains(key) != errors {
                continue;
            }
            let response = if errors {
                json!({"status_code": 400, "request_id": "req_1", "body": {"error": {"message": "Invalid 'messages': empty.", "type": "invalid_request_error", "param": null, "code": null}}})
            } else {
                json!({"status_code": 200, "request_id": "req_1", "body": chat_answer(body)})
            };
            let line = json!({"id": format!("batch_req_{key}"), "custom_id": key, "response": response, "error": null});
            out.push_str(&line.to_string());
            out.push('\n');
        }
        out
    }
}

impl Respond for OpenAiFake {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let auth = req
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if auth != Some(&format!("Bearer {KEY}")) {
            return ResponseTemplate::new(401).set_body_json(json!({"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}));
        }
        let path = req.url.path().to_string();
        let mut st = self.0.state();
        let missing = || {
            ResponseTemplate::new(404).set_body_json(json!({"error": {"message": "No such object", "type": "invalid_request_error", "param": "id", "code": null}}))
        };
        match (req.method.as_str(), path.as_str()) {
            ("POST", "/v1/files") => {
                let (content, purpose) = multipart_file(req);
                assert!(purpose, "purpose=batch missing");
                let id = format!("file-in-{}", st.files.len());
                let bytes = content.len();
                st.files.insert(id.clone(), content);
                ResponseTemplate::new(200).set_body_json(json!({"id": id, "object": "file", "bytes": bytes, "created_at": 1_760_000_000, "filename": "requests.jsonl", "purpose": "batch"}))
            }
            ("POST", "/v1/batches") => {
                let body: Value = serde_json::from_slice(&req.body).unwrap();
                assert_eq!(body["endpoint"], "/v1/chat/completions");
                assert_eq!(body["completion_window"], "24h");
                let Some(file) = st.files.get(body["input_file_id"].as_str().unwrap()) else {
                    return missing();
                };
                let requests: Vec<(String, Value)> = String::from_utf8(file.clone())
                    .unwrap()
                    .lines()
                    .map(|l| {
                        let v: Value = serde_json::from_str(l).unwrap();
                        assert_eq!(v["method"], "POST");
                        assert_eq!(v["url"], "/v1/chat/completions");
                        (
                            v["custom_id"].as_str().unwrap().to_string(),
                            v["body"].clone(),
                        )
                    })
                    .collect();
                assert!(requests.len() <= 50_000, "over 50,000 requests in one file");
                st.creates += 1;
                let job = Job {
                    id: format!("batch_{}", st.jobs.len()),
                    display_name: body
                        .pointer("/metadata/tag_space_job")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    requests,
                    ..Job::default()
                };
                let b = self.batch(&st, &job);
                st.jobs.push(job);
                ResponseTemplate::new(200).set_body_json(b)
            }
            ("POST", "/v1/chat/completions") => {
                st.interactive_calls += 1;
                let body: Value = serde_json::from_slice(&req.body).unwrap();
                ResponseTemplate::new(200).set_body_json(chat_answer(&body))
            }
            ("GET", "/v1/batches") => {
                let data: Vec<Value> = st.jobs.iter().rev().map(|j| self.batch(&st, j)).collect();
                let last = data.last().map(|b| b["id"].clone());
                ResponseTemplate::new(200).set_body_json(json!({"object": "list", "data": data, "first_id": null, "last_id": last, "has_more": false}))
            }
            ("GET", p) if p.starts_with("/v1/files/") && p.ends_with("/content") => {
                let id = &p["/v1/files/".len()..p.len() - "/content".len()];
                let (errors, n) = match (id.strip_prefix("file-out-"), id.strip_prefix("file-err-"))
                {
                    (Some(n), _) => (false, n),
                    (_, Some(n)) => (true, n),
                    _ => return missing(),
                };
                let Some(i) = st.jobs.iter().position(|j| j.id == format!("batch_{n}")) else {
                    return missing();
                };
                st.downloads += 1;
                let body = self.file(&st, &st.jobs[i], errors);
                ResponseTemplate::new(200).set_body_string(body)
            }
            (m, p) if p.starts_with("/v1/batches/") => {
                let rest = &p["/v1/batches/".len()..];
                let (id, cancel) = match rest.strip_suffix("/cancel") {
                    Some(id) => (id, true),
                    None => (rest, false),
                };
                let Some(i) = st.jobs.iter().position(|j| j.id == id) else {
                    return missing();
                };
                if cancel && m == "POST" {
                    st.jobs[i].cancelled = true;
                    st.jobs[i].polls = 0;
                } else {
                    st.jobs[i].polls += 1;
                }
                let b = self.batch(&st, &st.jobs[i]);
                ResponseTemplate::new(200).set_body_json(b)
            }
            _ => missing(),
        }
    }
}
