//! A generated Confluence Cloud site: any number of pages, made on the fly per listing
//! request, so that a 100k-page space costs the fake nothing. Shared by the fault suite
//! (`faults.rs`) and the memory benchmark (`benches/memory.rs`, via `#[path]`).
//!
//! Space `ENG` has id `1`; pages are `1..=pages`, listed `limit` at a time (at most
//! `per_page`), with `_links.next` a cursor. Every page has no labels; every label write
//! succeeds.

#![allow(dead_code)]

use wiremock::{Request, Respond, ResponseTemplate};

pub struct CloudSite {
    pub pages: u64,
    pub per_page: u64,
}

pub const SPACE_PATH: &str = "/wiki/api/v2/spaces";
pub const PAGES_PATH: &str = "/wiki/api/v2/spaces/1/pages";

fn query(req: &Request, name: &str) -> Option<String> {
    req.url
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn json(body: String) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body, "application/json")
}

/// A small storage-format body the keyword rules recognise (a how-to about Docker and Jira).
pub fn body_of(id: u64) -> String {
    format!(
        "<h1>Deploy service {id}</h1><p>Step 1: build the docker image.</p><p>Step 2: open a jira ticket.</p>"
    )
}

pub fn page_json(id: u64) -> String {
    let body = serde_json::to_string(&body_of(id)).unwrap();
    format!(
        r#"{{"id":"{id}","status":"current","title":"How to deploy service {id}","spaceId":"1","version":{{"number":1}},"body":{{"storage":{{"representation":"storage","value":{body}}}}},"_links":{{"webui":"/spaces/ENG/pages/{id}"}}}}"#
    )
}

impl Respond for CloudSite {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let path = req.url.path();
        match (req.method.as_str(), path) {
            ("GET", SPACE_PATH) => {
                if query(req, "keys").as_deref() == Some("ENG") {
                    json(
                        r#"{"results":[{"id":"1","key":"ENG","name":"Engineering","type":"global","status":"current"}],"_links":{}}"#
                            .into(),
                    )
                } else {
                    json(r#"{"results":[],"_links":{}}"#.into())
                }
            }
            ("GET", PAGES_PATH) => {
                let from: u64 = query(req, "cursor")
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                let limit: u64 = query(req, "limit")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(25)
                    .min(self.per_page)
                    .max(1);
                let to = (from + limit).min(self.pages);
                let results: Vec<String> = (from + 1..=to).map(page_json).collect();
                let next = if to < self.pages {
                    format!(
                        r#""next":"{PAGES_PATH}?cursor={to}&limit={limit}&body-format=storage&status=current""#
                    )
                } else {
                    String::new()
                };
                json(format!(
                    r#"{{"results":[{}],"_links":{{{next}}}}}"#,
                    results.join(",")
                ))
            }
            ("GET", p) if p.starts_with("/wiki/api/v2/pages/") && p.ends_with("/labels") => {
                json(r#"{"results":[],"_links":{}}"#.into())
            }
            ("POST", p) if p.starts_with("/wiki/rest/api/content/") && p.ends_with("/label") => {
                json(r#"{"results":[],"start":0,"limit":200,"size":0}"#.into())
            }
            _ => ResponseTemplate::new(404).set_body_raw(
                r#"{"statusCode":404,"message":"no such fake endpoint"}"#,
                "application/json",
            ),
        }
    }
}
