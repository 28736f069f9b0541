//! The HTTP routes: start, follow, list, stop tasks; health and metrics. Every answer is
//! JSON (events: Server-Sent Events; metrics: the Prometheus text format), errors included:
//! `{"error": "...", "field"?: "...", "task_id"?: "..."}`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use super::auth;
use super::runner::{Mode, TaskRequest};
use super::service::{Service, StartError};
use super::task::Task;

/// Largest request body accepted: a start request is a few fields.
pub const BODY_LIMIT: usize = 16 * 1024;

/// Tasks per page of `GET /bulk/tasks` unless `per_page` says otherwise (at most 100).
const PER_PAGE: usize = 20;

/// The service's routes; with a token, all but `/healthz` need it.
pub fn router(service: Arc<Service>, token: Option<crate::secret::Secret>) -> Router {
    let guarded = Router::new()
        .route("/bulk/tag-space/{space}", post(start))
        .route("/bulk/tasks", get(list))
        .route("/bulk/tasks/{id}", get(show))
        .route("/bulk/tasks/{id}/events", get(events))
        .route("/bulk/tasks/{id}/stop", post(stop))
        .route("/metrics", get(super::metrics::metrics))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            auth::Expected::new(token.as_ref()),
            auth::check,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(guarded)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(BODY_LIMIT))
        .with_state(service)
}

/// An error answer.
pub struct ApiError {
    status: StatusCode,
    body: serde_json::Value,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            body: json!({ "error": message.into() }),
        }
    }

    fn field(field: &str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            body: json!({ "error": message.into(), "field": field }),
        }
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token: send Authorization: Bearer <TAG_SPACE_SERVE_TOKEN>",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(json!({ "status": "ok" }))
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such endpoint: see docs/serve.openapi.yaml",
    )
}

/// The body of a start request; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    dry_run: Option<bool>,
    mode: Option<Mode>,
    limit: Option<u64>,
    batch_size: Option<usize>,
}

async fn start(
    State(service): State<Arc<Service>>,
    Path(space): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request = start_request(space, &body)?;
    let wait = flag(&query, "wait")?;
    let task = service.start(request).map_err(|e| match e {
        StartError::Busy(id) => ApiError {
            status: StatusCode::CONFLICT,
            body: json!({
                "error": format!("a task for this space is already running: {id} (stop it with POST /bulk/tasks/{id}/stop)"),
                "task_id": id,
            }),
        },
        StartError::Closing => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the service is shutting down")
        }
    })?;
    if wait {
        task.wait_end().await;
        return Ok(axum::Json(task.summary()).into_response());
    }
    let links = links(&task.id);
    let mut r = (
        StatusCode::ACCEPTED,
        axum::Json(json!({
            "task_id": task.id,
            "status": task.status(),
            "space": task.request.space,
            "links": links,
        })),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/bulk/tasks/{}", task.id)) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

fn links(id: &str) -> serde_json::Value {
    json!({
        "self": format!("/bulk/tasks/{id}"),
        "events": format!("/bulk/tasks/{id}/events"),
        "stop": format!("/bulk/tasks/{id}/stop"),
    })
}

/// The validated request: a space key of letters, digits, `_`, `-` or `~`, and the body.
fn start_request(space: String, body: &[u8]) -> Result<TaskRequest, ApiError> {
    let key_ok = !space.is_empty()
        && space.len() <= 255
        && space
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '~'));
    if !key_ok {
        return Err(ApiError::field(
            "space",
            "the space key may hold only letters, digits, '_', '-' and '~' (e.g. ENG)",
        ));
    }
    let body = parse_body(body)?;
    if body.limit == Some(0) {
        return Err(ApiError::field(
            "limit",
            "limit must be at least 1 (use dry_run to look without writing)",
        ));
    }
    if let Some(n) = body.batch_size
        && !(1..=100).contains(&n)
    {
        return Err(ApiError::field(
            "batch_size",
            "batch_size must be from 1 to 100",
        ));
    }
    Ok(TaskRequest {
        space,
        dry_run: body.dry_run.unwrap_or(true),
        mode: body.mode.unwrap_or(Mode::Add),
        limit: body.limit,
        batch_size: body.batch_size,
    })
}

/// The JSON body (empty: every default), or a 400 naming the field that is wrong.
fn parse_body(body: &[u8]) -> Result<StartBody, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(StartBody::default());
    }
    // serde would also take the fields in order from an array.
    if !body.trim_ascii_start().starts_with(b"{") {
        return Err(ApiError::field(
            "body",
            "the body must be a JSON object, e.g. {\"dry_run\": true}",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        // An unknown field's name is only in serde's message: "unknown field `x`, ...".
        let field = match message.split('`').nth(1) {
            // Not JSON at all: no field is to blame.
            _ if inner.is_syntax() || inner.is_eof() => "body".to_string(),
            Some(name) if message.starts_with("unknown field") => name.to_string(),
            _ if path != "." => path,
            _ => "body".to_string(),
        };
        ApiError::field(
            &field,
            format!("{message} (expected e.g. {{\"dry_run\": true, \"mode\": \"add\", \"limit\": 50, \"batch_size\": 5}})"),
        )
    })
}

/// A `true`/`false` query parameter (absent: false).
fn flag(query: &HashMap<String, String>, name: &str) -> Result<bool, ApiError> {
    match query.get(name).map(String::as_str) {
        None | Some("false" | "0") => Ok(false),
        Some("true" | "1" | "") => Ok(true),
        Some(_) => Err(ApiError::field(
            name,
            format!("{name} must be true or false"),
        )),
    }
}

fn find(service: &Service, id: &str) -> Result<Arc<Task>, ApiError> {
    service.get(id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no task {id}: see GET /bulk/tasks"),
        )
    })
}

async fn show(
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let task = find(&service, &id)?;
    Ok(axum::Json(task.summary()).into_response())
}

async fn list(
    State(service): State<Arc<Service>>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let number = |name: &str, default: usize, max: usize| match query.get(name) {
        None => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::field(
                name,
                format!("{name} must be a whole number from 1 to {max}"),
            )),
        },
    };
    let page = number("page", 1, usize::MAX)?;
    let per_page = number("per_page", PER_PAGE, 100)?;
    let tasks = service.list();
    let total = tasks.len();
    let items: Vec<_> = tasks
        .iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .map(|t| t.brief())
        .collect();
    Ok(axum::Json(json!({
        "tasks": items,
        "page": page,
        "per_page": per_page,
        "total_tasks": total,
    }))
    .into_response())
}

async fn stop(
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let task = service.stop(&id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no task {id}: see GET /bulk/tasks"),
        )
    })?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({
            "task_id": task.id,
            "status": task.status(),
            "space": task.request.space,
            "links": links(&task.id),
        })),
    )
        .into_response())
}

/// The task's events from the start (or after `Last-Event-ID`), then as they come, until
/// its `end` event.
async fn events(
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let task = find(&service, &id)?;
    let from = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(0, |n| n + 1);
    let stream = futures::stream::unfold(
        (task.clone(), task.follow(), from, false),
        |(task, mut rx, next, done)| async move {
            if done {
                return None;
            }
            loop {
                rx.borrow_and_update();
                let (next, batch) = task.events_from(next);
                if !batch.is_empty() {
                    let n = batch.len();
                    let ended = batch
                        .iter()
                        .any(|e| matches!(**e, super::task::TaskEvent::End { .. }));
                    let items: Vec<Result<Event, Infallible>> = batch
                        .iter()
                        .enumerate()
                        .map(|(i, e)| Ok(sse_event(next + i, e)))
                        .collect();
                    return Some((futures::stream::iter(items), (task, rx, next + n, ended)));
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        },
    );
    use futures::StreamExt;
    Ok(Sse::new(stream.flatten())
        .keep_alive(KeepAlive::default())
        .into_response())
}

fn sse_event(id: usize, e: &super::task::TaskEvent) -> Event {
    Event::default()
        .id(id.to_string())
        .event(e.name())
        .data(serde_json::to_string(e).unwrap_or_default())
}
