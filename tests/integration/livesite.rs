//! A stateful Confluence site, Cloud- or Data-Center-shaped, for the label-ownership tests
//! (`ownership.rs`) and the census benchmark (`benches/census.rs`, via `#[path]`).
//!
//! Space `ENG` (Cloud id `1`) holds pages `1..=pages`, generated per request. Labels live in
//! [`State`]: reads return what is there now, `POST`s add (and count a label that was already
//! there as a duplicate), `DELETE`s remove. A person's actions go straight to the state
//! ([`LiveSite::person_adds`], [`LiveSite::person_removes`]) or are scheduled for the moment
//! the LLM fake (`harness/first_tags.rs`) receives its first request ([`State::on_classify`]), never through
//! tag-space's client. Endpoints, with the documented shapes:
//!
//! - Cloud: v2 `GET /spaces?keys=`, `GET /spaces/1/pages` (cursor; bodies only with
//!   `body-format=storage`, as Confluence), `GET /pages?id=1,2,…&body-format=storage` (bodies in
//!   bulk, up to 250 ids), `GET /pages/{id}/labels`,
//!   `GET /labels/{id}/pages?space-id=` (cursor); v1 `GET /label?name=` (`LabelDetails`, 404
//!   for an unknown label), `POST`/`DELETE /content/{id}/label`.
//! - Data Center: `GET /rest/api/space/ENG`, `GET /rest/api/content` (start/limit, labels
//!   expanded inline, bodies only when `expand` names `body.storage`), `GET
//!   /rest/api/content/{id}` (one page), `GET|POST|DELETE /rest/api/content/{id}/label`,
//!   `GET /rest/api/content/search?cql=label = "x" and space = "ENG" ...` (start/limit).
//!
//! Pages are at version 1 until [`LiveSite::edit`] raises one (its body changes with it);
//! [`LiveSite::sized`] gives them realistic bodies (5-20 KB of storage format) instead of one
//! line. [`State::bytes`] counts the bytes of every answer's body, by request kind.
//!
//! [`LiveSite::delete_page`] takes a page away (deleted, moved out, or no longer readable: the
//! same to the API): absent from listings and bulk reads, 404 on its reads and label writes.
//! [`LiveSite::with_ops`] adds a second space, `OPS` (Cloud id `2`), holding the next pages
//! (Cloud only). [`State::quota_after`] spends the site's budget: the label write after that
//! many is refused with a 429, and so is every request after it, until the test lifts it; on
//! Cloud a quota 429 (`RateLimit-Reason: confluence-quota-global-based`, `Retry-After:
//! 1800`), on Data Center an empty token bucket (`Retry-After: 1800`, its `X-RateLimit-*`).
//! [`State::near_limit_on`] sends Cloud's `X-RateLimit-NearLimit` headers on the answer to
//! that label write (counted from 1), as a site nearly out of budget does, and on no other.
//!
//! Faults for the kill -9 tests: [`State::hold_posts`] (a write that never lands, its answer
//! never comes) and [`State::hang_after_delete`] (a removal that lands, its answer never comes).
//! [`State::hold_post`] holds each write's answer for a while, and [`State::post_arrivals`]
//! says when writes arrived, for counting the writes in flight.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Cloud,
    Dc,
}

/// Something a person does in the web UI.
#[derive(Debug, Clone)]
pub enum Person {
    Adds(u64, &'static str),
    Removes(u64, &'static str),
}

#[derive(Debug, Default)]
pub struct State {
    /// Page id to its `global` labels now.
    pub labels: BTreeMap<u64, BTreeSet<String>>,
    /// Every (page, label) a POST carried, in order (held ones included).
    pub posted: Vec<(u64, String)>,
    /// POSTed while already on the page: a label written twice.
    pub duplicates: Vec<(u64, String)>,
    /// Every (page, label) a DELETE named.
    pub deleted: Vec<(u64, String)>,
    /// POSTs are recorded but not applied, and their answer never comes.
    pub hold_posts: bool,
    /// DELETEs are applied, but their answer never comes.
    pub hang_after_delete: bool,
    /// Each POST's answer is held this long (by page id) after the POST arrives.
    pub hold_post: Option<fn(u64) -> Duration>,
    /// When each POST arrived and how long its answer was held.
    pub post_arrivals: Vec<(std::time::Instant, Duration)>,
    /// Done (in order) when the LLM fake receives its first request.
    pub on_classify: Vec<Person>,
    /// Requests by kind: "list", "read", "post", "delete", "lookup", "census", "space", and
    /// "llm" for the LLM fake's.
    pub requests: BTreeMap<&'static str, u64>,
    /// Bytes of the answers' bodies, by the same kinds as `requests`.
    pub bytes: BTreeMap<&'static str, u64>,
    /// Page id to its version, for pages edited since they were made (the others are at 1).
    pub versions: BTreeMap<u64, u64>,
    /// Pages taken away ([`LiveSite::delete_page`]).
    pub gone: BTreeSet<u64>,
    /// The label write after this many, and every request after it, gets a quota 429.
    pub quota_after: Option<u64>,
    /// The quota is spent (set by the write [`State::quota_after`] refused).
    quota_spent: bool,
    /// The answer to this label write (from 1) says little is left.
    pub near_limit_on: Option<u64>,
    /// Label name to its id (a label's id is the same on every page).
    ids: BTreeMap<String, u64>,
}

impl State {
    pub fn count(&mut self, kind: &'static str) {
        *self.requests.entry(kind).or_default() += 1;
    }
    fn id_of(&mut self, name: &str) -> u64 {
        let next = self.ids.len() as u64 + 1001;
        *self.ids.entry(name.to_string()).or_insert(next)
    }
    pub fn apply(&mut self, p: &Person) {
        match p {
            Person::Adds(page, l) => {
                self.id_of(l);
                self.labels.entry(*page).or_default().insert(l.to_string());
            }
            Person::Removes(page, l) => {
                self.labels.entry(*page).or_default().remove(*l);
            }
        }
    }
    pub fn has(&self, page: u64, label: &str) -> bool {
        self.labels.get(&page).is_some_and(|l| l.contains(label))
    }
    pub fn requests(&self, kind: &str) -> u64 {
        self.requests.get(kind).copied().unwrap_or(0)
    }
    pub fn version(&self, page: u64) -> u64 {
        self.versions.get(&page).copied().unwrap_or(1)
    }
    /// A 200 with `body` as JSON, its size counted under `kind`.
    fn ok(&mut self, kind: &'static str, body: Value) -> ResponseTemplate {
        let raw = serde_json::to_vec(&body).expect("JSON values serialise");
        *self.bytes.entry(kind).or_default() += raw.len() as u64;
        ResponseTemplate::new(200).set_body_raw(raw, "application/json")
    }
}

#[derive(Clone)]
pub struct LiveSite {
    pub flavor: Flavor,
    pub pages: u64,
    /// Pages of the second space, `OPS` (ids `pages + 1..=pages + ops`); 0: no such space.
    pub ops: u64,
    /// The most results one list request returns, whatever `limit` asks.
    pub per_page: u64,
    /// Bodies of 5-20 KB of storage-format XHTML (by page id) instead of one line.
    pub sized: bool,
    pub state: Arc<Mutex<State>>,
}

impl LiveSite {
    pub fn new(flavor: Flavor, pages: u64, per_page: u64) -> Self {
        Self {
            flavor,
            pages,
            ops: 0,
            per_page,
            sized: false,
            state: Arc::default(),
        }
    }

    /// With realistic bodies: 5-20 KB of storage format a page.
    pub fn sized(mut self) -> Self {
        self.sized = true;
        self
    }

    /// With a second space, `OPS`, of `pages` pages (Cloud).
    pub fn with_ops(mut self, pages: u64) -> Self {
        self.ops = pages;
        self
    }

    /// The page is deleted (or moved out of its space, or its view restricted).
    pub fn delete_page(&self, page: u64) {
        self.state().gone.insert(page);
    }

    /// The Cloud space id of a page that is there now.
    fn space_of(&self, st: &State, page: u64) -> Option<u64> {
        if st.gone.contains(&page) {
            return None;
        }
        match page {
            p if (1..=self.pages).contains(&p) => Some(1),
            p if p > self.pages && p <= self.pages + self.ops => Some(2),
            _ => None,
        }
    }

    /// An edit in the web UI: the page's version goes up and its body changes.
    pub fn edit(&self, page: u64) {
        let mut st = self.state();
        let v = st.version(page) + 1;
        st.versions.insert(page, v);
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    pub fn person_adds(&self, page: u64, label: &'static str) {
        self.state().apply(&Person::Adds(page, label));
    }

    pub fn person_removes(&self, page: u64, label: &'static str) {
        self.state().apply(&Person::Removes(page, label));
    }

    /// Starts a server answering as this site.
    pub async fn serve(&self) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(wiremock::matchers::any())
            .respond_with(self.clone())
            .mount(&server)
            .await;
        server
    }

    /// The `CONFLUENCE_BASE_URL` for a server of this site.
    pub fn base_url(&self, server: &MockServer) -> String {
        match self.flavor {
            Flavor::Cloud => format!("{}/wiki", server.uri()),
            Flavor::Dc => server.uri(),
        }
    }
}

fn query(req: &Request, name: &str) -> Option<String> {
    req.url
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The answer when the budget is spent: on Cloud a quota (not a burst limit); on Data
/// Center, whose limit is a token bucket, an empty bucket refilled too slowly for the wait to
/// be worth it (one token every half hour).
fn quota_spent(flavor: Flavor) -> ResponseTemplate {
    let answer = ResponseTemplate::new(429).insert_header("Retry-After", "1800");
    match flavor {
        Flavor::Cloud => answer
            .insert_header("RateLimit-Reason", "confluence-quota-global-based")
            .set_body_json(json!({"statusCode": 429, "message": "Rate limit exceeded."})),
        Flavor::Dc => answer
            .insert_header("X-RateLimit-Limit", "20")
            .insert_header("X-RateLimit-Remaining", "0")
            .insert_header("X-RateLimit-FillRate", "1")
            .insert_header("X-RateLimit-Interval-Seconds", "1800")
            .set_body_json(json!({"statusCode": 429, "message": "Too many requests"})),
    }
}

/// `X-RateLimit-Reset`: five seconds from now, as Cloud writes it.
fn reset_soon() -> String {
    let at = std::time::SystemTime::now() + Duration::from_secs(5);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// A page that is not there (v2 and v1 say the same).
fn no_page(page: u64) -> ResponseTemplate {
    ResponseTemplate::new(404).set_body_json(
        json!({"statusCode": 404, "message": format!("No content found with id: {page}")}),
    )
}

fn not_found() -> ResponseTemplate {
    ResponseTemplate::new(404)
        .set_body_json(json!({"statusCode": 404, "message": "no such fake endpoint"}))
}

/// A reply that never comes in a test's lifetime.
fn never() -> ResponseTemplate {
    ResponseTemplate::new(200)
        .set_body_json(json!({"results": []}))
        .set_delay(Duration::from_secs(600))
}

/// Paragraphs of storage format repeated to fill a sized body (ASCII, so any cut is a char
/// boundary).
const FILLER: &str = "<p>Open the <strong>deploy</strong> dashboard, check the build, then follow the runbook.</p><ac:structured-macro ac:name=\"code\" ac:schema-version=\"1\"><ac:parameter ac:name=\"language\">bash</ac:parameter><ac:plain-text-body><![CDATA[kubectl rollout status deploy/web]]></ac:plain-text-body></ac:structured-macro><ul><li><p>Step: restart the service</p></li><li><p>Step: confirm on the <ac:link><ri:page ri:content-title=\"Status page\" /></ac:link></p></li></ul>";

fn body_of(id: u64, version: u64, sized: bool) -> String {
    let head = if version == 1 {
        format!(
            "<h1>Deploy service {id}</h1><p>Step 1: build the image. Step 2: open a ticket.</p>"
        )
    } else {
        format!(
            "<h1>Deploy service {id}, revision {version}</h1><p>Step 1: build the image. Step 2: open a ticket.</p>"
        )
    };
    if !sized {
        return head;
    }
    // 5,000 to 20,000 bytes, spread over the ids.
    let size = 5_000 + (id * 7_919 % 15_000) as usize;
    let mut body = head;
    while body.len() < size {
        body.push_str(FILLER);
    }
    body.truncate(size);
    body
}

/// The page id in `/.../content/{id}/label` or `/.../pages/{id}/labels`.
fn page_in(path: &str, before: &str) -> Option<u64> {
    let segs: Vec<&str> = path.split('/').collect();
    let i = segs.iter().position(|s| *s == before)?;
    segs.get(i + 1)?.parse().ok()
}

impl LiveSite {
    fn label_json(&self, st: &mut State, name: &str) -> Value {
        let id = st.id_of(name);
        json!({"prefix": "global", "name": name, "id": id.to_string(), "label": name})
    }

    fn labels_of(&self, st: &mut State, page: u64) -> Vec<Value> {
        let names: Vec<String> = st
            .labels
            .get(&page)
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        names.iter().map(|n| self.label_json(st, n)).collect()
    }

    /// A v2 page, its body in storage format when asked for.
    fn v2_page(&self, st: &State, id: u64, body: bool) -> Value {
        let version = st.version(id);
        let mut page = json!({
            "id": id.to_string(), "status": "current", "title": format!("How to deploy service {id}"),
            "spaceId": self.space_of(st, id).unwrap_or(1).to_string(), "version": {"number": version},
            "_links": {"webui": format!("/spaces/{}/pages/{id}", if id > self.pages { "OPS" } else { "ENG" })}
        });
        if body {
            page["body"] = json!({"storage": {"representation": "storage", "value": body_of(id, version, self.sized)}});
        }
        page
    }

    /// A Data Center content object, its body when asked for, its labels inline in a listing.
    fn dc_page(&self, st: &mut State, id: u64, body: bool, labels: bool) -> Value {
        let version = st.version(id);
        let mut page = json!({
            "id": id.to_string(), "type": "page", "status": "current",
            "title": format!("How to deploy service {id}"),
            "version": {"number": version},
            "_links": {"webui": format!("/pages/viewpage.action?pageId={id}")}
        });
        if body {
            page["body"] = json!({"storage": {"value": body_of(id, version, self.sized), "representation": "storage"}});
        }
        if labels {
            let labels = self.labels_of(st, id);
            page["metadata"] = json!({"labels": {"results": labels, "start": 0, "limit": 200, "size": labels.len(), "_links": {}}});
        }
        page
    }

    /// `(from, to)` of a list request: offset `start`/`cursor`, `limit` capped at `per_page`.
    fn window(&self, req: &Request, offset_param: &str, total: u64) -> (u64, u64) {
        let from: u64 = query(req, offset_param)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let limit: u64 = query(req, "limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(25)
            .clamp(1, self.per_page);
        (from, (from + limit).min(total))
    }

    fn post(&self, st: &mut State, page: u64, req: &Request) -> ResponseTemplate {
        st.count("post");
        let body: Vec<Value> = serde_json::from_slice(&req.body).unwrap_or_default();
        let names: Vec<String> = body
            .iter()
            .filter_map(|l| l["name"].as_str().map(str::to_string))
            .collect();
        for n in &names {
            st.posted.push((page, n.clone()));
            if st.has(page, n) {
                st.duplicates.push((page, n.clone()));
            }
        }
        // Recorded above all the same: a write attempted on a page that is gone.
        if st.gone.contains(&page) {
            return no_page(page);
        }
        if st.hold_posts {
            return never();
        }
        for n in &names {
            st.id_of(n);
            st.labels.entry(page).or_default().insert(n.clone());
        }
        let results = self.labels_of(st, page);
        let held = st.hold_post.map_or(Duration::ZERO, |d| d(page));
        st.post_arrivals.push((std::time::Instant::now(), held));
        st.ok(
            "post",
            json!({"results": results, "start": 0, "limit": 200, "size": results.len()}),
        )
        .set_delay(held)
    }

    fn delete(&self, st: &mut State, page: u64, req: &Request) -> ResponseTemplate {
        st.count("delete");
        let name = query(req, "name").unwrap_or_default();
        st.deleted.push((page, name.clone()));
        if st.gone.contains(&page) {
            return no_page(page);
        }
        st.labels.entry(page).or_default().remove(&name);
        if st.hang_after_delete {
            return never();
        }
        ResponseTemplate::new(204)
    }

    /// Pages carrying `name`, in id order.
    fn carrying(st: &State, name: &str) -> Vec<u64> {
        st.labels
            .iter()
            .filter(|(_, l)| l.contains(name))
            .map(|(p, _)| *p)
            .collect()
    }

    fn cloud(&self, st: &mut State, req: &Request) -> ResponseTemplate {
        let path = req.url.path().to_string();
        match (req.method.as_str(), path.as_str()) {
            ("GET", "/wiki/api/v2/spaces") => {
                st.count("space");
                let results = match query(req, "keys").as_deref() {
                    Some("ENG") => {
                        json!([{"id": "1", "key": "ENG", "name": "Engineering", "type": "global", "status": "current"}])
                    }
                    Some("OPS") if self.ops > 0 => {
                        json!([{"id": "2", "key": "OPS", "name": "Operations", "type": "global", "status": "current"}])
                    }
                    _ => json!([]),
                };
                st.ok("space", json!({"results": results, "_links": {}}))
            }
            ("GET", p @ ("/wiki/api/v2/spaces/1/pages" | "/wiki/api/v2/spaces/2/pages")) => {
                st.count("list");
                let (space, first, count) = match p {
                    "/wiki/api/v2/spaces/1/pages" => (1, 0, self.pages),
                    _ => (2, self.pages, self.ops),
                };
                let bodies = query(req, "body-format").as_deref() == Some("storage");
                let (from, to) = self.window(req, "cursor", count);
                let results: Vec<Value> = (first + from + 1..=first + to)
                    .filter(|id| !st.gone.contains(id))
                    .map(|id| self.v2_page(st, id, bodies))
                    .collect();
                let mut links = json!({});
                if to < count {
                    let format = if bodies { "&body-format=storage" } else { "" };
                    links["next"] = json!(format!(
                        "/wiki/api/v2/spaces/{space}/pages?cursor={to}&limit={}{format}&status=current",
                        to - from
                    ));
                }
                st.ok("list", json!({"results": results, "_links": links}))
            }
            ("GET", "/wiki/api/v2/pages") => {
                st.count("bodies");
                let bodies = query(req, "body-format").as_deref() == Some("storage");
                let ids: Vec<u64> = query(req, "id")
                    .unwrap_or_default()
                    .split(',')
                    .filter_map(|i| i.parse().ok())
                    .filter(|i| self.space_of(st, *i).is_some())
                    .collect();
                assert!(
                    ids.len() <= 250,
                    "the v2 id parameter takes at most 250 ids"
                );
                let results: Vec<Value> =
                    ids.iter().map(|&id| self.v2_page(st, id, bodies)).collect();
                st.ok("bodies", json!({"results": results, "_links": {}}))
            }
            ("GET", p) if p.starts_with("/wiki/api/v2/pages/") && p.ends_with("/labels") => {
                st.count("read");
                let page = page_in(p, "pages").unwrap_or(0);
                if st.gone.contains(&page) {
                    return no_page(page);
                }
                let results = self.labels_of(st, page);
                st.ok("read", json!({"results": results, "_links": {}}))
            }
            ("GET", "/wiki/rest/api/label") => {
                st.count("lookup");
                let name = query(req, "name").unwrap_or_default();
                if !st.ids.contains_key(&name) {
                    return ResponseTemplate::new(404).set_body_json(json!({
                        "statusCode": 404, "message": format!("No label found with name: {name}")
                    }));
                }
                let label = self.label_json(st, &name);
                st.ok(
                    "lookup",
                    json!({"label": label, "associatedContents": {"results": [], "start": 0, "limit": 1, "size": 0}}),
                )
            }
            ("GET", p) if p.starts_with("/wiki/api/v2/labels/") && p.ends_with("/pages") => {
                st.count("census");
                let space: u64 = query(req, "space-id")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let id: u64 = page_in(p, "labels").unwrap_or(0);
                let name = st
                    .ids
                    .iter()
                    .find(|(_, v)| **v == id)
                    .map(|(n, _)| n.clone())
                    .unwrap_or_default();
                let pages: Vec<u64> = Self::carrying(st, &name)
                    .into_iter()
                    .filter(|p| self.space_of(st, *p) == Some(space))
                    .collect();
                let (from, to) = self.window(req, "cursor", pages.len() as u64);
                let results: Vec<Value> = pages[from as usize..to as usize]
                    .iter()
                    .map(|id| json!({"id": id.to_string(), "status": "current", "title": format!("How to deploy service {id}"), "spaceId": space.to_string()}))
                    .collect();
                let mut links = json!({});
                if (to as usize) < pages.len() {
                    links["next"] = json!(format!(
                        "/wiki/api/v2/labels/{id}/pages?space-id={space}&cursor={to}&limit={}",
                        to - from
                    ));
                }
                st.ok("census", json!({"results": results, "_links": links}))
            }
            ("POST", p) if p.starts_with("/wiki/rest/api/content/") && p.ends_with("/label") => {
                let page = page_in(p, "content").unwrap_or(0);
                self.post(st, page, req)
            }
            ("DELETE", p) if p.starts_with("/wiki/rest/api/content/") && p.ends_with("/label") => {
                let page = page_in(p, "content").unwrap_or(0);
                self.delete(st, page, req)
            }
            _ => not_found(),
        }
    }

    fn dc(&self, st: &mut State, req: &Request) -> ResponseTemplate {
        let path = req.url.path().to_string();
        match (req.method.as_str(), path.as_str()) {
            ("GET", "/rest/api/space/ENG") => {
                st.count("space");
                st.ok(
                    "space",
                    json!({"id": 1, "key": "ENG", "name": "Engineering", "type": "global"}),
                )
            }
            ("GET", "/rest/api/content") => {
                st.count("list");
                let bodies = query(req, "expand").is_some_and(|e| e.contains("body.storage"));
                let (from, to) = self.window(req, "start", self.pages);
                let there: Vec<u64> = (from + 1..=to).filter(|id| !st.gone.contains(id)).collect();
                let results: Vec<Value> = there
                    .into_iter()
                    .map(|id| self.dc_page(st, id, bodies, true))
                    .collect();
                let mut links = json!({});
                if to < self.pages {
                    links["next"] = json!(format!("/rest/api/content?spaceKey=ENG&start={to}"));
                }
                st.ok(
                    "list",
                    json!({"results": results, "start": from, "limit": to - from, "size": to - from, "_links": links}),
                )
            }
            ("GET", "/rest/api/content/search") => {
                st.count("census");
                let cql = query(req, "cql").unwrap_or_default();
                let label = cql
                    .split("label = \"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .unwrap_or_default()
                    .to_string();
                let pages = if cql.contains("space = \"ENG\"") {
                    Self::carrying(st, &label)
                } else {
                    Vec::new()
                };
                let (from, to) = self.window(req, "start", pages.len() as u64);
                let results: Vec<Value> = pages[from as usize..to as usize]
                    .iter()
                    .map(|id| json!({"id": id.to_string(), "type": "page", "status": "current", "title": format!("How to deploy service {id}")}))
                    .collect();
                let mut links = json!({});
                if (to as usize) < pages.len() {
                    links["next"] = json!(format!("/rest/api/content/search?start={to}"));
                }
                st.ok(
                    "census",
                    json!({"results": results, "start": from, "limit": to - from, "size": to - from, "_links": links}),
                )
            }
            ("GET", p) if p.starts_with("/rest/api/content/") && p.ends_with("/label") => {
                st.count("read");
                let page = page_in(p, "content").unwrap_or(0);
                if st.gone.contains(&page) {
                    return no_page(page);
                }
                let results = self.labels_of(st, page);
                st.ok(
                    "read",
                    json!({"results": results, "start": 0, "limit": 200, "size": results.len(), "_links": {}}),
                )
            }
            ("GET", p) if p.starts_with("/rest/api/content/") => {
                st.count("bodies");
                let there = |id: &u64| (1..=self.pages).contains(id) && !st.gone.contains(id);
                match page_in(p, "content").filter(there) {
                    Some(id) => {
                        let bodies =
                            query(req, "expand").is_some_and(|e| e.contains("body.storage"));
                        let page = self.dc_page(st, id, bodies, false);
                        st.ok("bodies", page)
                    }
                    None => not_found(),
                }
            }
            ("POST", p) if p.starts_with("/rest/api/content/") && p.ends_with("/label") => {
                let page = page_in(p, "content").unwrap_or(0);
                self.post(st, page, req)
            }
            ("DELETE", p) if p.starts_with("/rest/api/content/") && p.ends_with("/label") => {
                let page = page_in(p, "content").unwrap_or(0);
                self.delete(st, page, req)
            }
            _ => not_found(),
        }
    }
}

impl Respond for LiveSite {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut st = self.state.lock().unwrap();
        let post = req.method.as_str() == "POST";
        let spent = match st.quota_after {
            Some(k) => st.quota_spent || (post && st.requests("post") >= k),
            None => false,
        };
        st.quota_spent = spent;
        if spent {
            st.count("throttled");
            return quota_spent(self.flavor);
        }
        let answer = match self.flavor {
            Flavor::Cloud => self.cloud(&mut st, req),
            Flavor::Dc => self.dc(&mut st, req),
        };
        match st.near_limit_on {
            // 50 of 1000 left, whole again in 5 s: a client paces what is left over that time
            // (about 10 requests a second).
            Some(k) if post && st.requests("post") == k => answer
                .insert_header("X-RateLimit-Limit", "1000")
                .insert_header("X-RateLimit-Remaining", "50")
                .insert_header("X-RateLimit-NearLimit", "true")
                .insert_header("X-RateLimit-Reset", reset_soon()),
            _ => answer,
        }
    }
}
