//! A space key typed in another case still finds its space (issue 18):
//! `ConfluenceClient::resolve_space` against wiremock fakes answering in the Cloud v2
//! (`SpaceBulk`, cursor pages) and Data Center (`Space`, `PageResponse`) shapes. Real clock,
//! no retries.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tag_space::confluence::resolve::MAX_LISTED_KEYS;
use tag_space::confluence::{ConfluenceAuth, ConfluenceSettings};
use tag_space::confluence::{ConfluenceClient, ConfluenceError, Flavor, PageSource};
use tag_space::secret::Secret;
use tokio::sync::mpsc;
use wiremock::matchers::{method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const SPACES: &str = "/wiki/api/v2/spaces";

fn client(server: &MockServer, flavor: Flavor) -> ConfluenceClient {
    let auth = match flavor {
        Flavor::Cloud => ConfluenceAuth::Basic {
            email: "bot@acme.test".into(),
            token: Secret::new("tok"),
        },
        Flavor::DataCenter => ConfluenceAuth::Bearer(Secret::new("pat")),
    };
    ConfluenceClient::new(ConfluenceSettings {
        root: server.uri(),
        flavor,
        auth,
        timeout: Duration::from_secs(5),
        max_retries: 0,
    })
    .unwrap()
}

fn ok(body: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(body)
}

/// A Cloud v2 `SpaceBulk`.
fn bulk(id: u64, key: &str) -> Value {
    let kind = if key.starts_with('~') {
        "personal"
    } else {
        "global"
    };
    json!({
        "id": id.to_string(), "key": key, "name": format!("Space {key}"), "type": kind,
        "status": "current", "authorId": "557058:aaaa", "createdAt": "2024-03-01T09:00:00.000Z",
        "homepageId": "1000", "description": null, "icon": null,
        "_links": {"webui": format!("/spaces/{key}")}
    })
}

/// A Data Center `Space`.
fn dc_space(id: u64, key: &str) -> Value {
    let kind = if key.starts_with('~') {
        "personal"
    } else {
        "global"
    };
    json!({
        "id": id, "key": key, "name": format!("Space {key}"), "type": kind, "status": "current",
        "_links": {"webui": format!("/display/{key}"), "self": format!("http://c.acme.test/rest/api/space/{key}")}
    })
}

/// `GET /wiki/api/v2/spaces?keys=KEY` answering `results`, expected `times` times.
async fn cloud_lookup(server: &MockServer, key: &str, results: Vec<Value>, times: u64) {
    Mock::given(method("GET"))
        .and(path(SPACES))
        .and(query_param("keys", key))
        .respond_with(ok(
            json!({"results": results, "_links": {"base": format!("{}/wiki", server.uri())}}),
        ))
        .expect(times)
        .mount(server)
        .await;
}

/// The Cloud listing over two cursor pages (`limit=250`), each expected `times` times.
async fn cloud_listing(server: &MockServer, first: Vec<Value>, second: Vec<Value>, times: u64) {
    let base = format!("{}/wiki", server.uri());
    Mock::given(method("GET"))
        .and(path(SPACES))
        .and(query_param_is_missing("keys"))
        .and(query_param_is_missing("cursor"))
        .and(query_param("limit", "250"))
        .respond_with(ok(json!({
            "results": first,
            "_links": {"next": "/wiki/api/v2/spaces?cursor=c2&limit=250", "base": base}
        })))
        .expect(times)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path(SPACES))
        .and(query_param_is_missing("keys"))
        .and(query_param("cursor", "c2"))
        .respond_with(ok(json!({"results": second, "_links": {"base": base}})))
        .expect(times)
        .mount(server)
        .await;
}

/// `GET /rest/api/space/{key}`: the space, or Data Center's 404 body.
async fn dc_lookup(server: &MockServer, key: &str, found: Option<Value>, times: u64) {
    let reply = match found {
        Some(space) => ok(space),
        None => ResponseTemplate::new(404).set_body_json(json!({
            "statusCode": 404,
            "data": {"authorized": false, "valid": true, "errors": [], "successful": false},
            "message": format!("No space found with key : {key}"), "reason": "Not Found"
        })),
    };
    Mock::given(method("GET"))
        .and(path(format!("/rest/api/space/{key}")))
        .respond_with(reply)
        .expect(times)
        .mount(server)
        .await;
}

/// The Data Center listing over two `start` pages, each expected `times` times.
async fn dc_listing(server: &MockServer, first: Vec<Value>, second: Vec<Value>, times: u64) {
    let n = first.len();
    for (start, results, next) in [
        (
            0,
            first,
            Some(format!("/rest/api/space?start={n}&limit=250")),
        ),
        (n, second, None),
    ] {
        let size = results.len();
        let mut links = json!({"base": server.uri(), "context": "", "self": format!("{}/rest/api/space", server.uri())});
        if let Some(next) = next {
            links["next"] = json!(next);
        }
        Mock::given(method("GET"))
            .and(path("/rest/api/space"))
            .and(query_param("start", start.to_string()))
            .and(query_param("limit", "250"))
            .respond_with(ok(json!({
                "results": results, "start": start, "limit": 250, "size": size, "_links": links
            })))
            .expect(times)
            .mount(server)
            .await;
    }
}

/// Lists the pages of `key` and returns how many arrived.
async fn list(client: &ConfluenceClient, key: &str) -> u64 {
    let (tx, mut rx) = mpsc::channel(8);
    let drain = async { while rx.recv().await.is_some() {} };
    let (res, ()) = tokio::join!(client.stream_pages(key, tx), drain);
    res.unwrap()
}

async fn cloud_pages(server: &MockServer, space_id: u64) {
    Mock::given(method("GET"))
        .and(path(format!("/wiki/api/v2/spaces/{space_id}/pages")))
        .respond_with(ok(json!({
            "results": [{
                "id": "1001", "status": "current", "title": "Runbook", "spaceId": space_id.to_string(),
                "version": {"number": 2}, "body": {"storage": {"representation": "storage", "value": "<p>x</p>"}},
                "_links": {"webui": "/spaces/ENG/pages/1001"}
            }],
            "_links": {}
        })))
        .expect(1)
        .mount(server)
        .await;
}

async fn dc_pages(server: &MockServer, key: &str) {
    Mock::given(method("GET"))
        .and(path("/rest/api/content"))
        .and(query_param("spaceKey", key))
        .respond_with(ok(json!({
            "results": [{
                "id": "2001", "type": "page", "status": "current", "title": "Runbook",
                "version": {"number": 2}, "body": {"storage": {"value": "<p>x</p>", "representation": "storage"}},
                "metadata": {"labels": {"results": [], "start": 0, "limit": 200, "size": 0, "_links": {}}},
                "_links": {"webui": "/pages/viewpage.action?pageId=2001"}
            }],
            "start": 0, "limit": 250, "size": 1, "_links": {}
        })))
        .expect(1)
        .mount(server)
        .await;
}

// ---- found ---------------------------------------------------------------------------------

#[tokio::test]
async fn cloud_lowercase_key_is_found_through_the_paginated_listing_and_not_looked_up_again() {
    let server = MockServer::start().await;
    cloud_lookup(&server, "eng", vec![], 1).await;
    // The page listing of ENG must not look the space up again.
    cloud_lookup(&server, "ENG", vec![bulk(98304, "ENG")], 0).await;
    cloud_listing(
        &server,
        vec![bulk(1, "OPS"), bulk(2, "~557058abc")],
        vec![bulk(98304, "ENG"), bulk(4, "DOCS")],
        1,
    )
    .await;
    cloud_pages(&server, 98304).await;
    let c = client(&server, Flavor::Cloud);

    let space = c.resolve_space("eng").await.unwrap();

    assert_eq!(
        (space.key.as_str(), space.id.as_deref()),
        ("ENG", Some("98304"))
    );
    assert!(space.case_corrected());
    let notice = space.notice().unwrap();
    assert!(
        notice.contains("'eng'") && notice.contains("using ENG"),
        "{notice}"
    );
    assert_eq!(list(&c, "ENG").await, 1);
}

#[tokio::test]
async fn dc_lowercase_key_is_found_through_the_paginated_listing_and_not_looked_up_again() {
    let server = MockServer::start().await;
    dc_lookup(&server, "eng", None, 1).await;
    dc_lookup(&server, "ENG", Some(dc_space(7, "ENG")), 0).await;
    dc_listing(
        &server,
        vec![dc_space(1, "DOCS"), dc_space(2, "~jsmith")],
        vec![dc_space(7, "ENG")],
        1,
    )
    .await;
    dc_pages(&server, "ENG").await;
    let c = client(&server, Flavor::DataCenter);

    let space = c.resolve_space("eng").await.unwrap();

    assert_eq!((space.key.as_str(), space.id), ("ENG", None));
    assert_eq!(list(&c, "ENG").await, 1);
}

#[tokio::test]
async fn an_exact_key_costs_the_one_lookup_the_listing_made_before() {
    // Cloud: `keys=ENG` once, for the resolution; the page listing reuses it; no key listing.
    let server = MockServer::start().await;
    cloud_lookup(&server, "ENG", vec![bulk(98304, "ENG")], 1).await;
    cloud_listing(&server, vec![bulk(1, "eng")], vec![], 0).await;
    cloud_pages(&server, 98304).await;
    let c = client(&server, Flavor::Cloud);
    let space = c.resolve_space("ENG").await.unwrap();
    assert_eq!((space.key.as_str(), space.notice()), ("ENG", None));
    assert_eq!(list(&c, "ENG").await, 1);
    assert_eq!(server.received_requests().await.unwrap().len(), 2);

    // Data Center: `/rest/api/space/ENG` once, then the content listing.
    let server = MockServer::start().await;
    dc_lookup(&server, "ENG", Some(dc_space(7, "ENG")), 1).await;
    dc_listing(&server, vec![dc_space(1, "eng")], vec![], 0).await;
    dc_pages(&server, "ENG").await;
    let c = client(&server, Flavor::DataCenter);
    assert_eq!(c.resolve_space("ENG").await.unwrap().key, "ENG");
    assert_eq!(list(&c, "ENG").await, 1);
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_lookup_that_ignores_case_answers_without_a_listing() {
    // A Cloud `keys=` or a Data Center `/space/{key}` that matches ignoring case names the
    // real key in its answer: no listing is needed.
    let server = MockServer::start().await;
    cloud_lookup(&server, "eng", vec![bulk(98304, "ENG")], 1).await;
    cloud_listing(&server, vec![], vec![], 0).await;
    let space = client(&server, Flavor::Cloud)
        .resolve_space("eng")
        .await
        .unwrap();
    assert_eq!(
        (space.key.as_str(), space.id.as_deref()),
        ("ENG", Some("98304"))
    );

    let server = MockServer::start().await;
    dc_lookup(&server, "eng", Some(dc_space(7, "ENG")), 1).await;
    dc_listing(&server, vec![], vec![], 0).await;
    let space = client(&server, Flavor::DataCenter)
        .resolve_space("eng")
        .await
        .unwrap();
    assert_eq!(space.key, "ENG");
}

// ---- ambiguous, not found --------------------------------------------------------------------

#[tokio::test]
async fn keys_that_differ_only_in_case_are_listed_and_none_is_taken() {
    let server = MockServer::start().await;
    cloud_lookup(&server, "Eng", vec![], 1).await;
    cloud_listing(
        &server,
        vec![bulk(1, "eng"), bulk(2, "OPS")],
        vec![bulk(3, "ENG")],
        1,
    )
    .await;
    let err = client(&server, Flavor::Cloud)
        .resolve_space("Eng")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ConfluenceError::SpaceAmbiguous { candidates, .. } if candidates == &["ENG", "eng"]),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "space 'Eng' is not on {}, but several keys differ from it only in case: ENG, eng; pass the exact one with --space",
            server.uri()
        )
    );

    // Personal spaces are keys too.
    let server = MockServer::start().await;
    dc_lookup(&server, "~JSMITH", None, 1).await;
    dc_listing(
        &server,
        vec![dc_space(1, "~jsmith")],
        vec![dc_space(2, "~JSmith")],
        1,
    )
    .await;
    let err = client(&server, Flavor::DataCenter)
        .resolve_space("~JSMITH")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains(": ~JSmith, ~jsmith; pass the exact one"),
        "{err}"
    );
}

#[tokio::test]
async fn a_typo_is_not_found_with_the_closest_keys() {
    let keys = [
        "ENG", "ENV", "OPS", "DOCS", "HR", "QA", "FINANCE", "~jsmith",
    ];
    let server = MockServer::start().await;
    cloud_lookup(&server, "emg", vec![], 1).await;
    let (first, second) = keys.split_at(3);
    let bulks = |ks: &[&str]| {
        ks.iter()
            .zip(1..)
            .map(|(k, i)| bulk(i, k))
            .collect::<Vec<_>>()
    };
    cloud_listing(&server, bulks(first), bulks(second), 1).await;
    let err = client(&server, Flavor::Cloud)
        .resolve_space("emg")
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "space 'emg' was not found on {}, even ignoring case (closest of the 8 keys the account can see: ENG, ENV, HR, OPS, QA): check --space and that the account can view it",
            server.uri()
        )
    );

    let server = MockServer::start().await;
    dc_lookup(&server, "DCOS", None, 1).await;
    let spaces = |ks: &[&str]| {
        ks.iter()
            .zip(1..)
            .map(|(k, i)| dc_space(i, k))
            .collect::<Vec<_>>()
    };
    dc_listing(&server, spaces(first), spaces(second), 1).await;
    let err = client(&server, Flavor::DataCenter)
        .resolve_space("DCOS")
        .await
        .unwrap_err();
    let ConfluenceError::SpaceNotFound {
        search: Some(search),
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(search.suggestions[0], "DOCS", "{err}");
    assert_eq!((search.seen, search.truncated), (8, false));
}

#[tokio::test]
async fn an_account_that_sees_no_space_is_told_to_check_its_credentials() {
    let server = MockServer::start().await;
    cloud_lookup(&server, "ENG", vec![], 1).await;
    cloud_listing(&server, vec![], vec![], 1).await;
    let err = client(&server, Flavor::Cloud)
        .resolve_space("ENG")
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("space 'ENG' was not found on "), "{msg}");
    assert!(
        msg.contains("the account can see no space at all; check the credentials"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_wrong_base_url_keeps_its_hint_and_lists_no_spaces() {
    let server = MockServer::start().await;
    Mock::given(path("/rest/api/space/eng"))
        .respond_with(ResponseTemplate::new(404).set_body_raw(
            "<html><body><h1>HTTP Status 404</h1></body></html>",
            "text/html",
        ))
        .expect(1)
        .mount(&server)
        .await;
    dc_listing(&server, vec![dc_space(7, "ENG")], vec![], 0).await;
    let err = client(&server, Flavor::DataCenter)
        .resolve_space("eng")
        .await
        .unwrap_err();
    assert!(
        matches!(err, ConfluenceError::NotConfluence { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("context path"), "{err}");
}

#[tokio::test]
async fn a_listing_that_fails_leaves_the_plain_not_found() {
    let server = MockServer::start().await;
    cloud_lookup(&server, "eng", vec![], 1).await;
    Mock::given(path(SPACES))
        .and(query_param_is_missing("keys"))
        .respond_with(ResponseTemplate::new(500))
        .expect(1)
        .mount(&server)
        .await;
    let err = client(&server, Flavor::Cloud)
        .resolve_space("eng")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ConfluenceError::SpaceNotFound { search: None, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("(keys are case-sensitive)"),
        "{err}"
    );
}

/// Answers every Cloud listing page with 250 new keys and a next link, forever.
struct EndlessSpaces(Arc<AtomicUsize>);

impl Respond for EndlessSpaces {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let page = self.0.fetch_add(1, Ordering::SeqCst);
        let results: Vec<Value> = (0..250).map(|i| bulk(1, &format!("S{page}X{i}"))).collect();
        ok(
            json!({"results": results, "_links": {"next": format!("/wiki/api/v2/spaces?cursor=p{}", page + 1)}}),
        )
    }
}

#[tokio::test]
async fn the_listing_is_bounded_and_says_so() {
    let server = MockServer::start().await;
    cloud_lookup(&server, "eng", vec![], 1).await;
    let pages = Arc::new(AtomicUsize::new(0));
    Mock::given(path(SPACES))
        .and(query_param_is_missing("keys"))
        .respond_with(EndlessSpaces(pages.clone()))
        .mount(&server)
        .await;
    let err = client(&server, Flavor::Cloud)
        .resolve_space("eng")
        .await
        .unwrap_err();
    assert_eq!(pages.load(Ordering::SeqCst), MAX_LISTED_KEYS / 250);
    let ConfluenceError::SpaceNotFound {
        search: Some(search),
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!((search.seen, search.truncated), (MAX_LISTED_KEYS, true));
    assert!(
        err.to_string().contains("closest of the first 10000 keys"),
        "{err}"
    );
}
