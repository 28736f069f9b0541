//! A Confluence site with several spaces, Cloud- or Data-Center-shaped, for the runs over
//! several spaces (`multispace.rs`): space lookups and listings (with `type` and `status`,
//! as `--all-spaces` reads them), page listings, label reads and writes. It records what it
//! was asked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Cloud,
    Dc,
}

/// A space of the fake: key, Cloud id, `type`, `status`.
pub struct Space(
    pub &'static str,
    pub &'static str,
    pub &'static str,
    pub &'static str,
);

/// What the fake was asked.
#[derive(Default)]
pub struct Seen {
    /// Page listings, by space key, in order.
    pub listed: Vec<String>,
    /// Queries of the space listings (no `keys=`; Cloud) or `/rest/api/space` (DC).
    pub space_lists: Vec<String>,
    /// (page id, label) of every label POST.
    pub posted: Vec<(String, String)>,
}

/// A Confluence site with several spaces of `pages` pages each (ids `<space id>00<n>`), no
/// labels; every label write succeeds.
struct Site {
    flavor: Flavor,
    spaces: Vec<Space>,
    pages: u64,
    seen: Arc<Mutex<Seen>>,
}

fn ok(v: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(v)
}

fn not_found(message: &str) -> ResponseTemplate {
    ResponseTemplate::new(404).set_body_json(json!({"statusCode": 404, "message": message}))
}

fn page_body(id: &str) -> String {
    format!("<h1>How to deploy {id}</h1><p>Step 1: run the deploy job in Jenkins.</p>")
}

impl Site {
    fn space_json(&self, s: &Space) -> Value {
        json!({"id": s.1, "key": s.0, "name": s.0, "type": s.2, "status": s.3})
    }

    fn page_ids(&self, s: &Space) -> Vec<String> {
        (1..=self.pages).map(|i| format!("{}00{i}", s.1)).collect()
    }

    fn cloud(&self, req: &Request, q: &HashMap<String, String>) -> ResponseTemplate {
        let p = req.url.path();
        let mut seen = self.seen.lock().unwrap();
        if p == "/wiki/rest/api/user/current" {
            return ok(json!({"type": "known", "accountId": "5b10-made-up"}));
        }
        if p == "/wiki/api/v2/spaces" {
            if let Some(key) = q.get("keys") {
                let found: Vec<Value> = self
                    .spaces
                    .iter()
                    .filter(|s| s.0 == key)
                    .map(|s| self.space_json(s))
                    .collect();
                return ok(json!({"results": found, "_links": {}}));
            }
            seen.space_lists
                .push(req.url.query().unwrap_or("").to_string());
            // Two listing pages, by cursor, honouring `status` as Cloud does.
            let all: Vec<Value> = self
                .spaces
                .iter()
                .filter(|s| q.get("status").is_none_or(|st| st == s.3))
                .map(|s| self.space_json(s))
                .collect();
            let half = all.len() / 2;
            return match q.get("cursor") {
                None => ok(
                    json!({"results": all[..half], "_links": {"next": "/wiki/api/v2/spaces?cursor=2&status=current&limit=250"}}),
                ),
                Some(_) => ok(json!({"results": all[half..], "_links": {}})),
            };
        }
        for s in &self.spaces {
            if p == format!("/wiki/api/v2/spaces/{}/pages", s.1) {
                seen.listed.push(s.0.to_string());
                let pages: Vec<Value> = self
                    .page_ids(s)
                    .iter()
                    .map(|id| json!({
                        "id": id, "status": "current", "title": format!("How to deploy {id}"),
                        "spaceId": s.1, "version": {"number": 1},
                        "body": {"storage": {"representation": "storage", "value": page_body(id)}},
                        "_links": {"webui": format!("/spaces/{}/pages/{id}", s.0)}
                    }))
                    .collect();
                return ok(json!({"results": pages, "_links": {}}));
            }
        }
        if p.starts_with("/wiki/api/v2/pages/") && p.ends_with("/labels") {
            return ok(json!({"results": [], "_links": {}}));
        }
        if req.method.as_str() == "POST" && p.starts_with("/wiki/rest/api/content/") {
            return Self::post(&mut seen, p, req);
        }
        not_found("no such fake endpoint")
    }

    fn dc(&self, req: &Request, q: &HashMap<String, String>) -> ResponseTemplate {
        let p = req.url.path();
        let mut seen = self.seen.lock().unwrap();
        if p == "/rest/api/user/current" {
            return ok(json!({"type": "known", "username": "bot"}));
        }
        if p == "/rest/api/space" {
            seen.space_lists
                .push(req.url.query().unwrap_or("").to_string());
            let all: Vec<Value> = self
                .spaces
                .iter()
                .filter(|s| q.get("type").is_none_or(|t| t == s.2))
                .filter(|s| q.get("status").is_none_or(|st| st == s.3))
                .map(|s| json!({"id": 1, "key": s.0, "name": s.0, "type": s.2, "status": s.3}))
                .collect();
            let n = all.len();
            return ok(json!({"results": all, "start": 0, "limit": 25, "size": n, "_links": {}}));
        }
        if let Some(key) = p.strip_prefix("/rest/api/space/") {
            return match self.spaces.iter().find(|s| s.0 == key) {
                Some(s) => ok(json!({"id": 1, "key": s.0, "name": s.0, "type": s.2})),
                None => not_found(&format!("No space with key : {key}")),
            };
        }
        if p == "/rest/api/content" {
            let key = q.get("spaceKey").cloned().unwrap_or_default();
            let Some(s) = self.spaces.iter().find(|s| s.0 == key) else {
                return not_found("No space");
            };
            seen.listed.push(key.clone());
            let pages: Vec<Value> = self
                .page_ids(s)
                .iter()
                .map(|id| json!({
                    "id": id, "type": "page", "status": "current", "title": format!("How to deploy {id}"),
                    "version": {"number": 1},
                    "body": {"storage": {"value": page_body(id), "representation": "storage"}},
                    "metadata": {"labels": {"results": [], "start": 0, "limit": 200, "size": 0, "_links": {}}},
                    "_links": {"webui": format!("/pages/viewpage.action?pageId={id}")}
                }))
                .collect();
            let n = pages.len();
            return ok(json!({"results": pages, "start": 0, "limit": 25, "size": n, "_links": {}}));
        }
        if p.starts_with("/rest/api/content/") && p.ends_with("/label") {
            if req.method.as_str() == "POST" {
                return Self::post(&mut seen, p, req);
            }
            return ok(json!({"results": [], "start": 0, "limit": 200, "size": 0, "_links": {}}));
        }
        not_found("no such fake endpoint")
    }

    fn post(seen: &mut Seen, p: &str, req: &Request) -> ResponseTemplate {
        let page = p.split('/').rev().nth(1).unwrap_or_default().to_string();
        let body: Vec<Value> = serde_json::from_slice(&req.body).unwrap_or_default();
        for l in &body {
            seen.posted
                .push((page.clone(), l["name"].as_str().unwrap_or("").into()));
        }
        ok(json!({"results": body, "start": 0, "limit": 200, "size": body.len()}))
    }
}

impl Respond for Site {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let q: HashMap<String, String> = req.url.query_pairs().into_owned().collect();
        match self.flavor {
            Flavor::Cloud => self.cloud(req, &q),
            Flavor::Dc => self.dc(req, &q),
        }
    }
}

pub async fn serve(
    flavor: Flavor,
    spaces: Vec<Space>,
    pages: u64,
) -> (MockServer, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(Site {
            flavor,
            spaces,
            pages,
            seen: seen.clone(),
        })
        .mount(&server)
        .await;
    (server, seen)
}

pub fn vars(flavor: Flavor, server: &MockServer) -> Vec<(&'static str, String)> {
    match flavor {
        Flavor::Cloud => vec![
            ("CONFLUENCE_BASE_URL", format!("{}/wiki", server.uri())),
            ("CONFLUENCE_EMAIL", "bot@acme.test".into()),
            ("CONFLUENCE_API_TOKEN", "made-up-token".into()),
        ],
        Flavor::Dc => vec![
            ("CONFLUENCE_BASE_URL", server.uri()),
            ("CONFLUENCE_PAT", "made-up-pat".into()),
        ],
    }
}
