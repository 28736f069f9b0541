//! A wrong base URL is not a wrong space (issue 9, defect 7): `ConfluenceClient` against
//! wiremock, Cloud and Data Center shapes. Real clock, no retries.

use std::time::Duration;

use tag_space::confluence::{ConfluenceAuth, ConfluenceSettings};
use tag_space::confluence::{ConfluenceClient, ConfluenceError, Flavor, PageSource};
use tag_space::secret::Secret;
use wiremock::matchers::{path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// What Tomcat (Data Center's server) or an nginx in front answers for a path it has no
/// application for.
const HTML_404: &str = "<!doctype html><html lang=\"en\"><head><title>HTTP Status 404 \u{2013} Not Found</title></head><body><h1>HTTP Status 404 \u{2013} Not Found</h1></body></html>";
const LOGIN_PAGE: &str = "<!DOCTYPE html><html><head><title>Log in - Acme Portal</title></head><body><form action=\"/login\"></form></body></html>";

fn client(root: String, flavor: Flavor) -> ConfluenceClient {
    let auth = match flavor {
        Flavor::Cloud => ConfluenceAuth::Basic {
            email: "bot@acme.test".into(),
            token: Secret::new("tok"),
        },
        Flavor::DataCenter => ConfluenceAuth::Bearer(Secret::new("pat")),
    };
    ConfluenceClient::new(ConfluenceSettings {
        root,
        flavor,
        auth,
        timeout: Duration::from_secs(5),
        max_retries: 0,
    })
    .unwrap()
}

async fn list(client: &ConfluenceClient, key: &str) -> ConfluenceError {
    let (tx, _rx) = tokio::sync::mpsc::channel(8);
    client.stream_pages(key, tx).await.unwrap_err()
}

fn html(status: u16, body: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body, "text/html;charset=utf-8")
}

fn json(status: u16, body: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body, "application/json")
}

fn assert_not_confluence(err: &ConfluenceError, base: &str, detail: &str, hint: &str) {
    let msg = err.to_string();
    assert!(
        matches!(err, ConfluenceError::NotConfluence { .. }),
        "{detail}: {err:?}"
    );
    assert!(
        msg.starts_with(&format!(
            "the server at {base} answered, but not like Confluence ("
        )),
        "{msg}"
    );
    assert!(msg.contains(detail), "{msg}");
    assert!(
        msg.contains("check CONFLUENCE_BASE_URL") && msg.contains(hint),
        "{msg}"
    );
    assert!(
        !msg.contains("was not found") && !msg.contains("--space"),
        "{msg}"
    );
}

#[tokio::test]
async fn data_center_without_its_context_path_is_a_base_url_problem() {
    let server = MockServer::start().await;
    // Confluence lives under /confluence; everything else is the server's HTML 404.
    Mock::given(path("/confluence/rest/api/space/DOCS"))
        .respond_with(json(
            200,
            r#"{"id":65537,"key":"DOCS","name":"Documentation","type":"global"}"#,
        ))
        .mount(&server)
        .await;
    Mock::given(path("/confluence/rest/api/space/NOPE"))
        .respond_with(json(
            404,
            r#"{"statusCode":404,"data":{"authorized":false,"valid":true,"errors":[],"successful":false},"message":"No space found with key : NOPE","reason":"Not Found"}"#,
        ))
        .mount(&server)
        .await;
    Mock::given(path("/confluence/rest/api/content"))
        .respond_with(json(
            200,
            r#"{"results":[],"start":0,"limit":250,"size":0,"_links":{}}"#,
        ))
        .mount(&server)
        .await;
    Mock::given(path_regex("^/rest/"))
        .respond_with(html(404, HTML_404))
        .mount(&server)
        .await;

    let wrong = server.uri();
    let err = list(&client(wrong.clone(), Flavor::DataCenter), "DOCS").await;
    assert_not_confluence(&err, &wrong, "HTTP 404 with an HTML page", "context path");

    let right = format!("{}/confluence", server.uri());
    let err = list(&client(right.clone(), Flavor::DataCenter), "NOPE").await;
    assert!(
        matches!(&err, ConfluenceError::SpaceNotFound { key, .. } if key == "NOPE"),
        "{err:?}"
    );
    let (tx, _rx) = tokio::sync::mpsc::channel(8);
    let listed = client(right, Flavor::DataCenter)
        .stream_pages("DOCS", tx)
        .await;
    assert_eq!(listed.unwrap(), 0);
}

#[tokio::test]
async fn data_center_answers_of_another_kind_are_not_a_missing_space() {
    for (answer, detail) in [
        (
            html(200, LOGIN_PAGE),
            "HTTP 200 with an HTML page, text/html",
        ),
        (json(200, r#"{"status":"UP"}"#), "missing field `key`"),
        (
            json(404, r#"{"detail":"no route"}"#),
            "HTTP 404 with JSON that is not a Confluence answer",
        ),
        (ResponseTemplate::new(404), "HTTP 404 with an empty body"),
    ] {
        let server = MockServer::start().await;
        Mock::given(path("/rest/api/space/DOCS"))
            .respond_with(answer)
            .mount(&server)
            .await;
        let err = list(&client(server.uri(), Flavor::DataCenter), "DOCS").await;
        assert_not_confluence(&err, &server.uri(), detail, "context path");
    }
}

#[tokio::test]
async fn cloud_answers_of_another_kind_are_not_a_missing_space() {
    for (answer, detail) in [
        (html(404, HTML_404), "HTTP 404 with an HTML page"),
        (
            html(200, LOGIN_PAGE),
            "HTTP 200 with an HTML page, text/html",
        ),
        (json(200, r#"{"ok":true}"#), "missing field `results`"),
    ] {
        let server = MockServer::start().await;
        Mock::given(path("/wiki/api/v2/spaces"))
            .respond_with(answer)
            .mount(&server)
            .await;
        let err = list(&client(server.uri(), Flavor::Cloud), "ENG").await;
        assert_not_confluence(
            &err,
            &server.uri(),
            detail,
            "https://acme.atlassian.net/wiki",
        );
    }
    // Confluence's own answers still mean "no such space".
    for answer in [
        json(200, r#"{"results":[],"_links":{}}"#),
        json(
            404,
            r#"{"errors":[{"status":404,"code":"NOT_FOUND","title":"Not Found","detail":null}]}"#,
        ),
    ] {
        let server = MockServer::start().await;
        Mock::given(path("/wiki/api/v2/spaces"))
            .respond_with(answer)
            .mount(&server)
            .await;
        let err = list(&client(server.uri(), Flavor::Cloud), "ENG").await;
        assert!(
            matches!(err, ConfluenceError::SpaceNotFound { .. }),
            "{err:?}"
        );
    }
}
