//! Bearer-token check for every route but `/healthz` when `TAG_SPACE_SERVE_TOKEN` is set.
//! Both sides are hashed first and compared in constant time (`subtle`), so that neither
//! the token's bytes nor its length can be learnt from how long a refusal takes.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::api::ApiError;
use crate::secret::Secret;

/// The token's hash, or `None`: no check.
#[derive(Clone)]
pub struct Expected(Option<[u8; 32]>);

impl Expected {
    pub fn new(token: Option<&Secret>) -> Self {
        Self(token.map(|t| Sha256::digest(t.expose().as_bytes()).into()))
    }
}

/// The middleware: answers 401 unless the request carries the token.
pub async fn check(State(expected): State<Expected>, req: Request, next: Next) -> Response {
    let ok = match &expected.0 {
        None => true,
        Some(expected) => bearer(&req).is_some_and(|given| {
            let given: [u8; 32] = Sha256::digest(given.as_bytes()).into();
            bool::from(given.ct_eq(expected))
        }),
    };
    if ok {
        next.run(req).await
    } else {
        ApiError::unauthorized().into_response()
    }
}

fn bearer(req: &Request) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}
