//! serde mirrors of the Confluence REST JSON: only the fields tag-space reads.
//!
//! Everything optional that the specs mark optional (or that real sites leave out) is an
//! `Option` or `#[serde(default)]`, so that an extra or missing field never fails a listing.
//! Shapes: Cloud v2 `MultiEntityResult<PageBulk>`, `SpaceBulk`, `Label`; Data Center
//! `PageResponse<Content>`, `Label`, `RestError`; Cloud v2 `{"errors":[...]}` error bodies.

use serde::{Deserialize, Deserializer, Serialize};

use super::{LABEL_PREFIX, Label};

/// `_links` of a list or an entity. Cloud `next` starts with `/wiki`; DC `next` is relative to
/// the context path.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Links {
    pub next: Option<String>,
    pub webui: Option<String>,
}

/// Cloud v2 `MultiEntityResult`: `{ results, _links{next?, base?} }`.
#[derive(Debug, Deserialize)]
pub(crate) struct V2List<T> {
    pub results: Vec<T>,
    #[serde(rename = "_links", default)]
    pub links: Links,
}

/// Cloud v2 `SpaceBulk`.
#[derive(Debug, Deserialize)]
pub(crate) struct V2Space {
    #[serde(deserialize_with = "string_or_number")]
    pub id: String,
    #[serde(default)]
    pub key: String,
    /// `global`, `collaboration`, `knowledge_base`, `personal`, ... (absent on old sites).
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// `current` or `archived`.
    #[serde(default)]
    pub status: Option<String>,
}

/// `version{number}` (v2 `Version`, DC `Version`).
#[derive(Debug, Deserialize)]
pub(crate) struct Version {
    pub number: Option<u64>,
}

/// `body{storage{value}}` (v2 `BodyBulk`, DC `body` with `expand=body.storage`).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Body {
    pub storage: Option<Storage>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Storage {
    #[serde(default)]
    pub value: String,
}

/// Cloud v2 `PageBulk`.
#[derive(Debug, Deserialize)]
pub(crate) struct V2Page {
    #[serde(deserialize_with = "string_or_number")]
    pub id: String,
    #[serde(default)]
    pub title: String,
    pub version: Option<Version>,
    pub body: Option<Body>,
    #[serde(rename = "_links", default)]
    pub links: Links,
}

/// Any entity of which only the id is read: v2 `PageBulk` in `GET /labels/{id}/pages`, DC
/// `Content` in a CQL search.
#[derive(Debug, Deserialize)]
pub(crate) struct IdOnly {
    #[serde(deserialize_with = "string_or_number")]
    pub id: String,
}

/// Cloud v1 `LabelDetails` (`GET /wiki/rest/api/label?name=`): only its `label` is read.
#[derive(Debug, Deserialize)]
pub(crate) struct V1LabelDetails {
    pub label: V1Label,
}

/// Cloud v1 `Label`: `{prefix, name, id, label}`.
#[derive(Debug, Deserialize)]
pub(crate) struct V1Label {
    #[serde(deserialize_with = "string_or_number")]
    pub id: String,
    #[serde(default = "global_prefix")]
    pub prefix: String,
    #[serde(default)]
    pub name: String,
}

/// A label (v2 `Label`, DC `Label`); `id` and DC's `label` are not needed.
#[derive(Debug, Deserialize)]
pub(crate) struct WireLabel {
    #[serde(default = "global_prefix")]
    pub prefix: String,
    pub name: String,
}

fn global_prefix() -> String {
    LABEL_PREFIX.to_string()
}

impl From<WireLabel> for Label {
    fn from(l: WireLabel) -> Self {
        Label {
            prefix: l.prefix,
            name: l.name,
        }
    }
}

/// v1/DC `LabelCreate`, the element of the `POST .../content/{id}/label` array. Field order
/// follows the docs: `{"prefix":"global","name":"..."}`.
#[derive(Debug, Serialize)]
pub(crate) struct LabelCreate<'a> {
    pub prefix: &'a str,
    pub name: &'a str,
}

/// Data Center `PageResponse<T>`: `{ results, start, limit, size, _links{next?} }`.
#[derive(Debug, Deserialize)]
pub(crate) struct DcList<T> {
    pub results: Vec<T>,
    pub size: Option<u64>,
    #[serde(rename = "_links", default)]
    pub links: Links,
}

/// Data Center `Content` with `expand=body.storage,version,metadata.labels`.
#[derive(Debug, Deserialize)]
pub(crate) struct DcContent {
    #[serde(deserialize_with = "string_or_number")]
    pub id: String,
    #[serde(default)]
    pub title: String,
    pub version: Option<Version>,
    pub body: Option<Body>,
    pub metadata: Option<DcMetadata>,
    #[serde(rename = "_links", default)]
    pub links: Links,
}

#[derive(Debug, Deserialize)]
pub(crate) struct DcMetadata {
    pub labels: Option<DcList<WireLabel>>,
}

/// Data Center `Space`, alone or in a `PageResponse<Space>` listing. Decoding it also proves
/// the answer is Confluence's space, not a login page or another server's JSON (a space
/// always has its key).
#[derive(Debug, Deserialize)]
pub(crate) struct DcSpace {
    pub key: String,
    /// `global` or `personal`.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// `current` or `archived`.
    #[serde(default)]
    pub status: Option<String>,
}

/// Any of Confluence's error bodies: Cloud v2 `{"errors":[{status,code,title,detail}]}`,
/// v1/DC `RestError{statusCode, message, reason}`, Jira-style `errorMessages[]`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub errors: Vec<ErrorItem>,
    pub message: Option<String>,
    pub reason: Option<String>,
    #[serde(default)]
    pub error_messages: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ErrorItem {
    pub code: Option<String>,
    pub title: Option<String>,
    pub detail: Option<String>,
}

impl ErrorBody {
    /// The human part of an error body in one line, or `None` when it says nothing useful.
    pub fn summary(&self) -> Option<String> {
        let items: Vec<String> = self
            .errors
            .iter()
            .filter_map(|e| {
                let parts: Vec<&str> = [e.title.as_deref(), e.detail.as_deref()]
                    .into_iter()
                    .flatten()
                    .filter(|s| !s.trim().is_empty())
                    .collect();
                if parts.is_empty() {
                    e.code.clone()
                } else {
                    Some(parts.join(": "))
                }
            })
            .collect();
        if !items.is_empty() {
            return Some(items.join("; "));
        }
        let msgs: Vec<&str> = self.error_messages.iter().map(String::as_str).collect();
        [
            self.message.as_deref(),
            (!msgs.is_empty()).then(|| msgs.join("; ")).as_deref(),
            self.reason.as_deref(),
        ]
        .into_iter()
        .flatten()
        .find(|s| !s.trim().is_empty())
        .map(str::to_string)
    }
}

/// Ids are strings in v2 JSON and in DC JSON, but accept a number too.
fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        S(String),
        N(u64),
    }
    Ok(match Id::deserialize(d)? {
        Id::S(s) => s,
        Id::N(n) => n.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_of_every_family_summarise_to_their_message() {
        let v2: ErrorBody = serde_json::from_str(
            r#"{"errors":[{"status":400,"code":"INVALID_REQUEST_PARAMETER","title":"Bad cursor","detail":"The provided cursor was not valid"}]}"#,
        )
        .unwrap();
        assert_eq!(
            v2.summary().as_deref(),
            Some("Bad cursor: The provided cursor was not valid")
        );

        let v2_null: ErrorBody = serde_json::from_str(
            r#"{"errors":[{"status":404,"code":"NOT_FOUND","title":"Not Found","detail":null}]}"#,
        )
        .unwrap();
        assert_eq!(v2_null.summary().as_deref(), Some("Not Found"));

        let dc: ErrorBody = serde_json::from_str(
            r#"{"statusCode":410,"data":{"authorized":false,"valid":true,"errors":[],"successful":false},"message":"com.atlassian.confluence.api.service.exceptions.GoneException: This deprecated endpoint has been removed."}"#,
        )
        .unwrap();
        assert_eq!(
            dc.summary().as_deref(),
            Some(
                "com.atlassian.confluence.api.service.exceptions.GoneException: This deprecated endpoint has been removed."
            )
        );

        let jira: ErrorBody = serde_json::from_str(r#"{"errorMessages":["a","b"]}"#).unwrap();
        assert_eq!(jira.summary().as_deref(), Some("a; b"));
        let empty: ErrorBody = serde_json::from_str("{}").unwrap();
        assert_eq!(empty.summary(), None);
    }

    #[test]
    fn ids_may_be_numbers_and_label_prefix_defaults_to_global() {
        let s: V2Space = serde_json::from_str(r#"{"id":12345,"key":"ENG"}"#).unwrap();
        assert_eq!(s.id, "12345");
        let l: Label = serde_json::from_str::<WireLabel>(r#"{"name":"x"}"#)
            .unwrap()
            .into();
        assert_eq!(l, Label::global("x"));
    }
}
