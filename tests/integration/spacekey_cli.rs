//! A space key typed in another case, through the built binary (issue 18): the run uses the
//! real key everywhere (notice, table, JSON and Markdown reports, state file), an
//! ambiguous or unknown key ends the run with exit 2, and `cache clear --space` matches the
//! recorded spaces the same way. Offline keyword rules stand in for the LLM; Confluence is a
//! wiremock fake on 127.0.0.1.

use serde_json::{Value, json};
use tag_space::cache::{RunMode, Store, StoreOptions};
use wiremock::matchers::{method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::harness::proc::run_at_home as run_in;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn cloud_vars(server: &MockServer) -> Vec<(&'static str, String)> {
    vec![
        ("CONFLUENCE_BASE_URL", format!("{}/wiki", server.uri())),
        ("CONFLUENCE_EMAIL", "bot@acme.test".into()),
        ("CONFLUENCE_API_TOKEN", "made-up-token".into()),
    ]
}

fn ok(body: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(body)
}

fn bulk(id: &str, key: &str) -> Value {
    json!({"id": id, "key": key, "name": key, "type": "global", "status": "current", "_links": {"webui": format!("/spaces/{key}")}})
}

/// A Cloud site whose spaces are `keys` (the one named ENG has id 98765 and one page), with
/// a `keys=` filter that is case-sensitive and a listing of two cursor pages.
async fn cloud_site(keys: &[&str]) -> MockServer {
    let server = MockServer::start().await;
    let spaces: Vec<Value> = keys
        .iter()
        .map(|k| bulk(if *k == "ENG" { "98765" } else { "1" }, k))
        .collect();
    for key in keys {
        Mock::given(method("GET"))
            .and(path("/wiki/api/v2/spaces"))
            .and(query_param("keys", *key))
            .respond_with(ok(json!({"results": [bulk("98765", key)], "_links": {}})))
            .mount(&server)
            .await;
    }
    let (first, second) = spaces.split_at(spaces.len() / 2);
    Mock::given(method("GET"))
        .and(path("/wiki/api/v2/spaces"))
        .and(query_param_is_missing("keys"))
        .and(query_param("cursor", "c2"))
        .respond_with(ok(json!({"results": second, "_links": {}})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/wiki/api/v2/spaces"))
        .and(query_param_is_missing("keys"))
        .and(query_param_is_missing("cursor"))
        .respond_with(ok(json!({"results": first, "_links": {"next": "/wiki/api/v2/spaces?cursor=c2&limit=250"}})))
        .mount(&server)
        .await;
    // Any other key: not there.
    Mock::given(method("GET"))
        .and(path("/wiki/api/v2/spaces"))
        .respond_with(ok(json!({"results": [], "_links": {}})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/wiki/api/v2/spaces/98765/pages"))
        .respond_with(ok(json!({
            "results": [{
                "id": "101", "status": "current", "title": "How to deploy", "spaceId": "98765",
                "version": {"number": 3},
                "body": {"storage": {"representation": "storage", "value": "<h1>How to deploy</h1><p>Step 1: run the deploy job in Jenkins.</p>"}},
                "_links": {"webui": "/spaces/ENG/pages/101"}
            }],
            "_links": {}
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/wiki/api/v2/pages/101/labels"))
        .respond_with(ok(json!({"results": [], "_links": {}})))
        .mount(&server)
        .await;
    server
}

/// The lookups of a space by key that reached the site.
async fn lookups(server: &MockServer, key: &str) -> usize {
    let wanted = format!("keys={key}");
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| {
            r.url
                .query()
                .is_some_and(|q| q.split('&').any(|p| p == wanted))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_with_a_lowercase_key_runs_on_the_real_one_and_says_so() {
    let site = cloud_site(&["OPS", "ENG", "DOCS"]).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args = [
        "--space",
        "eng",
        "--dry-run",
        "--fallback",
        "rules",
        "--report",
        "r.json",
        "--report",
        "r.md",
    ];

    let out = run_in(d, &args, &cloud_vars(&site));

    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let notices: Vec<&str> = stderr.lines().filter(|l| l.contains("using ENG")).collect();
    assert_eq!(notices.len(), 1, "{stderr}");
    assert!(notices[0].contains("'eng'"), "{stderr}");
    assert!(
        stdout.contains("tag-space: space ENG (add, dry run"),
        "{stdout}"
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("r.json")).unwrap()).unwrap();
    assert_eq!(report["run"]["space"], "ENG");
    assert_eq!(report["metrics"]["pages"]["seen"], 1, "{report}");
    let md = std::fs::read_to_string(d.join("r.md")).unwrap();
    assert!(md.starts_with("## tag-space: ENG ("), "{md}");
    // The state file carries the real key too. (The run lock does whatever the case: its
    // file name folds case, so `eng` and `ENG` are one lock.)
    let stats = run_in(d, &["cache", "stats"], &[]);
    let stats = text(&stats.stdout);
    assert!(
        stats.contains("\nspace ENG: ") && !stats.contains("space eng"),
        "{stats}"
    );
    // The exact lookup of ENG was never made: the listing told its id.
    assert_eq!(lookups(&site, "ENG").await, 0);
    assert_eq!(lookups(&site, "eng").await, 1);

    // `cache clear` finds the recorded space the same way.
    let out = run_in(d, &["cache", "clear", "--space", "eng"], &[]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("clearing ENG"), "{stderr}");
    assert!(stdout.starts_with("cleared space ENG: "), "{stdout}");
    assert!(stdout.contains(", 1 runs;"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_differing_only_in_case_exit_2_listing_both_and_the_run_is_recorded_failed() {
    let site = cloud_site(&["eng", "OPS", "ENG"]).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let out = run_in(
        d,
        &[
            "--space",
            "Eng",
            "--fallback",
            "rules",
            "--report",
            "r.json",
        ],
        &cloud_vars(&site),
    );

    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("tag-space:"))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains(
            "several keys differ from it only in case: ENG, eng; pass the exact one with --space"
        ),
        "{stderr}"
    );
    // Ended like any run that cannot list its space: recorded as failed under the typed key
    // (and, no page seen, no report).
    let stats = text(&run_in(d, &["cache", "stats", "--runs", "1"], &[]).stdout);
    let eng = stats
        .split("\nspace Eng: ")
        .nth(1)
        .unwrap_or_else(|| panic!("{stats}"));
    assert!(
        eng.contains(" failed ") && eng.contains("several keys differ"),
        "{stats}"
    );
    assert!(!d.join("r.json").exists());
    // One lookup: the deferred failure was not asked again.
    assert_eq!(lookups(&site, "Eng").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_typo_exits_2_with_the_closest_keys() {
    let site = cloud_site(&["ENG", "OPS", "DOCS", "HR"]).await;
    let dir = tempfile::tempdir().unwrap();

    let out = run_in(
        dir.path(),
        &["--space", "ENJ", "--fallback", "rules"],
        &cloud_vars(&site),
    );

    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("space 'ENJ' was not found on ")
            && stderr.contains(
                "even ignoring case (closest of the 4 keys the account can see: ENG, HR, OPS, DOCS)"
            ),
        "{stderr}"
    );
}

#[test]
fn cache_clear_refuses_a_key_that_matches_several_recorded_spaces() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.db");
    let store = Store::open(&state, StoreOptions::default()).unwrap();
    for space in ["ENG", "eng"] {
        store.begin_run(space, RunMode::Add, true).unwrap();
    }
    drop(store);
    let vars = [("TAG_SPACE_CACHE_PATH", state.display().to_string())];

    let out = run_in(dir.path(), &["cache", "clear", "--space", "Eng"], &vars);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("several recorded spaces differ from it only in case: ENG, eng"),
        "{stderr}"
    );
    assert!(text(&out.stdout).is_empty());

    // The exact key clears only itself.
    let out = run_in(dir.path(), &["cache", "clear", "--space", "eng"], &vars);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).is_empty(), "{}", text(&out.stderr));
    let stats = text(&run_in(dir.path(), &["cache", "stats"], &vars).stdout);
    assert!(
        stats.contains("\nspace ENG: ") && !stats.contains("\nspace eng: "),
        "{stats}"
    );
}
