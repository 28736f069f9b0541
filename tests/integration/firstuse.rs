//! What a first user hit (issue 9), through the built binary: a broken `.env` that must not
//! leak its keys, `--limit`, a wrong base URL, an odd state directory, the offline demo's
//! state. Each test runs `tag-space` in its own temporary directory with a cleared
//! environment; every HTTP peer is a wiremock fake on 127.0.0.1.

use std::path::Path;
use std::process::Output;

use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::harness::proc::run_at_home as run_in;

// Made up, but shaped like the real thing: what a leak check must not find.
const TOKEN: &str = "ATATT3xFfGF0T4kE-made-up-9f2c81d0aa17";
const GEMINI_KEY: &str = "AIzaSyD4-made-up-gemini-key-4b7e0c1";
const OPENAI_KEY: &str = "sk-proj-MadeUpOpenAIKey81d0f00dT3BlbkFJ";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn all_output(out: &Output) -> String {
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

fn tagged_line_count(stdout: &str) -> usize {
    stdout
        .lines()
        .filter(|l| l.starts_with("added") || l.starts_with("would add"))
        .count()
}

fn report(dir: &Path, name: &str) -> Value {
    let s = std::fs::read_to_string(dir.join(name)).expect("the report was written");
    serde_json::from_str(&s).expect("the report is JSON")
}

/// seen, tagged, unchanged, skipped, failed
fn counts(report: &Value) -> [u64; 5] {
    let p = &report["metrics"]["pages"];
    ["seen", "tagged", "unchanged", "skipped", "failed"].map(|k| p[k].as_u64().unwrap_or(u64::MAX))
}

// ---- defect 2: a broken .env never prints a value ----------------------------------------

fn broken_env() -> String {
    format!(
        "# tag-space settings\nCONFLUENCE_BASE_URL=https://acme.atlassian.net/wiki\nCONFLUENCE_EMAIL=bot@acme.test\n\nCONFLUENCE_API_TOKEN=\"{TOKEN}\nGEMINI_API_KEY={GEMINI_KEY}\nOPENAI_API_KEY={OPENAI_KEY}\nTAG_SPACE_BATCH_SIZE=5\n"
    )
}

fn assert_no_secret(out: &Output, what: &str) {
    let all = all_output(out);
    for secret in [TOKEN, GEMINI_KEY, OPENAI_KEY] {
        // Any recognisable piece of a key is a leak, not only the whole key.
        for piece in [secret, &secret[..12], &secret[secret.len() - 12..]] {
            assert!(
                !all.contains(piece),
                "{what}: output shows {piece:?}:\n{all}"
            );
        }
    }
}

#[test]
fn a_broken_env_file_names_line_and_variable_and_never_a_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), broken_env()).unwrap();
    std::fs::write(dir.path().join("cron.env"), broken_env()).unwrap();
    let cron_env = dir.path().join("cron.env").display().to_string();
    type Run<'a> = (&'a str, Vec<&'a str>, Vec<(&'a str, String)>);
    let runs: [Run; 6] = [
        ("text logs", vec!["--space", "ENG"], vec![]),
        (
            "json logs",
            vec!["--space", "ENG", "--log-format", "json", "-vv"],
            vec![],
        ),
        (
            "dry run, debug",
            vec!["--space", "ENG", "--dry-run", "-vv"],
            vec![],
        ),
        ("cache stats", vec!["cache", "stats"], vec![]),
        (
            "--env-file",
            vec!["--space", "ENG", "--env-file", "cron.env"],
            vec![],
        ),
        (
            "TAG_SPACE_ENV_FILE",
            vec!["--space", "ENG", "--log-format", "json"],
            vec![("TAG_SPACE_ENV_FILE", cron_env.clone())],
        ),
    ];
    for (what, args, vars) in runs {
        let out = run_in(dir.path(), &args, &vars);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
        assert_no_secret(&out, what);
        // A real line number (line 5 of the file), the variable, and what to do.
        assert!(
            stderr.contains("line 5: cannot parse the value of CONFLUENCE_API_TOKEN"),
            "{what}: {stderr}"
        );
        assert!(!stderr.contains("line index"), "{what}: {stderr}");
        if what.contains("json") {
            for line in stderr.lines() {
                serde_json::from_str::<Value>(line)
                    .unwrap_or_else(|e| panic!("{what}: not a JSON line ({e}): {line}"));
            }
        } else {
            assert_eq!(stderr.lines().count(), 1, "{what}: one line: {stderr}");
        }
    }
}

#[test]
fn an_env_file_given_for_cron_is_read_instead_of_the_current_directory() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let env = elsewhere.path().join("tag-space.env");
    // Only reachable through the named file: a batch size that is refused names its origin.
    std::fs::write(&env, "TAG_SPACE_BATCH_SIZE=lots\n").unwrap();
    std::fs::write(dir.path().join(".env"), "TAG_SPACE_BATCH_SIZE=7\n").unwrap();
    let env_s = env.display().to_string();
    for (args, vars) in [
        (vec!["--demo", "--env-file", env_s.as_str()], vec![]),
        (vec!["--demo"], vec![("TAG_SPACE_ENV_FILE", env_s.clone())]),
    ] {
        let out = run_in(dir.path(), &args, &vars);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("TAG_SPACE_BATCH_SIZE=\"lots\" is invalid"),
            "{stderr}"
        );
    }
    // A named file that is not there is an error, not silently nothing.
    let out = run_in(dir.path(), &["--demo", "--env-file", "nope.env"], &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot read the env file nope.env (no such file)"),
        "{stderr}"
    );
}

// ---- defect 7: a wrong base URL is not a wrong space -------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_says_base_url_not_space_for_a_data_center_url_without_context_path() {
    let server = MockServer::start().await;
    Mock::given(path_regex("^/rest/"))
        .respond_with(
            ResponseTemplate::new(404)
                .set_body_raw("<html><body>Not Found</body></html>", "text/html"),
        )
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let vars = [
        ("CONFLUENCE_BASE_URL", server.uri()),
        ("CONFLUENCE_PAT", "pat-made-up".to_string()),
        ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1".to_string()),
    ];
    let out = run_in(dir.path(), &["--space", "OPS", "--dry-run"], &vars);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("answered, but not like Confluence"),
        "{stderr}"
    );
    assert!(stderr.contains("context path"), "{stderr}");
    assert!(!stderr.contains("was not found"), "{stderr}");
}

// ---- defect 8: the state directory ----------------------------------------------------------

/// A Cloud site with space ENG: two pages a keyword rule labels, no labels yet; label writes
/// are accepted.
async fn small_site() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/wiki/api/v2/spaces"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "results": [{"id": "98765", "key": "ENG", "name": "Engineering", "type": "global", "status": "current"}],
            "_links": {}
        })))
        .mount(&server)
        .await;
    let page = |id: &str, title: &str, body: &str| {
        json!({
            "id": id, "status": "current", "title": title, "spaceId": "98765",
            "version": {"number": 2},
            "body": {"storage": {"representation": "storage", "value": format!("<p>{body}</p>")}},
            "_links": {"webui": format!("/spaces/ENG/pages/{id}")}
        })
    };
    Mock::given(method("GET"))
        .and(path("/wiki/api/v2/spaces/98765/pages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "results": [
                page("201", "Runbook: restart Kafka", "Steps to restart the Kafka brokers when consumer lag alerts fire."),
                page("202", "How to rotate Postgres passwords", "How to rotate the Postgres database passwords, step by step."),
            ],
            "_links": {}
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path_regex("^/wiki/api/v2/pages/[0-9]+/labels$"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"results": [], "_links": {}})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path_regex("^/wiki/rest/api/content/[0-9]+/label$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"results": [], "size": 0})))
        .mount(&server)
        .await;
    server
}

fn site_vars(site: &MockServer) -> Vec<(&'static str, String)> {
    vec![
        ("CONFLUENCE_BASE_URL", format!("{}/wiki", site.uri())),
        ("CONFLUENCE_EMAIL", "bot@acme.test".into()),
        ("CONFLUENCE_API_TOKEN", "tok-made-up".into()),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cache_path_that_is_a_directory_keeps_the_state_file_inside_it() {
    let site = small_site().await;
    let root = tempfile::tempdir().unwrap();
    let state_dir = root.path().join("state-dir");
    std::fs::create_dir(&state_dir).unwrap();
    let mut vars = site_vars(&site);
    vars.push(("TAG_SPACE_CACHE_PATH", state_dir.display().to_string()));
    for extra in [&["--no-cache"][..], &[]] {
        let mut args = vec!["--space", "ENG", "--dry-run", "--fallback", "rules"];
        args.extend(extra);
        let out = run_in(root.path(), &args, &vars);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{extra:?}: {stderr}");
        assert!(state_dir.join("state.db").is_file(), "{extra:?}");
        // Nothing beside the directory: it was not taken for a file whose parent gets a
        // `locks/` folder. (The run lock lives in HOME's cache directory, which this test
        // points at `root`: `.cache/tag-space/locks`, never beside the state file.)
        let beside: Vec<_> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name != ".cache")
            .collect();
        assert_eq!(beside, ["state-dir"], "{extra:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unusable_state_folder_is_one_line_and_no_cache_really_goes_on() {
    let site = small_site().await;
    let root = tempfile::tempdir().unwrap();
    // A file where the state folder should be: this fails even for root, unlike chmod.
    std::fs::write(root.path().join("not-a-dir"), "x").unwrap();
    let state = root
        .path()
        .join("not-a-dir")
        .join("tag-space")
        .join("state.db");
    let mut vars = site_vars(&site);
    vars.push(("TAG_SPACE_CACHE_PATH", state.display().to_string()));

    let out = run_in(
        root.path(),
        &["--space", "ENG", "--fallback", "rules"],
        &vars,
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    // The path, what was tried, why (once), and what to do.
    assert!(
        stderr.contains(&format!("cannot use the state file {}", state.display())),
        "{stderr}"
    );
    assert!(stderr.contains("cannot create the folder"), "{stderr}");
    assert_eq!(stderr.matches("Not a directory").count(), 1, "{stderr}");
    assert!(
        !stderr.contains("os error") && !stderr.contains(".lock"),
        "{stderr}"
    );
    assert!(
        stderr.contains("TAG_SPACE_CACHE_PATH") && stderr.contains("--no-cache"),
        "{stderr}"
    );
    assert!(
        site.received_requests().await.unwrap().is_empty(),
        "nothing was read"
    );

    let out = run_in(
        root.path(),
        &["--space", "ENG", "--fallback", "rules", "--no-cache"],
        &vars,
    );
    let stderr = text(&out.stderr);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("going on without it, so incremental runs are off"),
        "{stderr}"
    );
    assert!(!stderr.contains("run with --no-cache"), "{stderr}");
    assert_eq!(tagged_line_count(&stdout), 2, "{stdout}");
}

// ---- defect 9: the offline demo keeps its state ---------------------------------------------

fn provider_calls(report: &Value, name: &str) -> u64 {
    report["metrics"]["providers"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["provider"] == name))
        .and_then(|p| p["calls"].as_u64())
        .unwrap_or(u64::MAX)
}

#[test]
fn a_second_demo_run_is_incremental_and_edits_are_simulated() {
    let dir = tempfile::tempdir().unwrap();
    let demo = |extra: &[&str]| {
        let mut args = vec!["--demo", "--report", "r.json"];
        args.extend(extra);
        let out = run_in(dir.path(), &args, &[]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        (out, report(dir.path(), "r.json"))
    };
    let (out, first) = demo(&[]);
    assert_eq!(counts(&first), [32, 29, 0, 1, 0]);
    assert!(provider_calls(&first, "rules") > 0);
    assert_eq!(tagged_line_count(&text(&out.stdout)), 29);
    // Its own state file, in the cache directory beside the real one's place.
    let state = dir.path().join(".cache/tag-space/demo.db");
    assert!(state.is_file());
    assert!(!dir.path().join(".cache/tag-space/state.db").exists());

    // Nothing changed: every page unchanged, no provider call, nothing written.
    let (out, second) = demo(&["-v"]);
    assert_eq!(counts(&second), [32, 0, 32, 0, 0]);
    assert_eq!(provider_calls(&second, "rules"), 0);
    assert_eq!(tagged_line_count(&text(&out.stdout)), 0);
    // -v logs as in a real run: the cache line of the run.
    assert!(
        text(&out.stderr).contains("cache hits=0 misses=0 skipped_unchanged=32"),
        "{}",
        text(&out.stderr)
    );

    // Three pages edited: exactly those are looked at again.
    let (out, edited) = demo(&["--demo-edit", "3", "-v"]);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("misses=3 skipped_unchanged=29"), "{stderr}");
    assert!(provider_calls(&edited, "rules") >= 1);
    assert_eq!(counts(&edited)[0], 32);
    // The edits are kept: the next plain run has nothing to do again.
    let (_, after) = demo(&[]);
    assert_eq!(counts(&after), [32, 0, 32, 0, 0]);
    assert_eq!(provider_calls(&after, "rules"), 0);
}

#[test]
fn the_demo_uses_the_state_file_given_and_a_dry_run_records_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "--demo",
            "--cache-path",
            "here/demo-state.db",
            "--format",
            "json",
        ];
        args.extend(extra);
        let out = run_in(dir.path(), &args, &[]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    assert_eq!(counts(&run(&["--dry-run"])), [32, 29, 0, 1, 0]);
    assert!(dir.path().join("here/demo-state.db").is_file());
    assert!(
        !dir.path().join(".cache").exists(),
        "the default was not used"
    );
    // The dry run wrote no ledger: the real run still has the work to do, then it is done.
    assert_eq!(counts(&run(&[])), [32, 29, 0, 1, 0]);
    assert_eq!(counts(&run(&[])), [32, 0, 32, 0, 0]);
}

// ---- defect 10 / defect 3 through the binary ----------------------------------------------

#[test]
fn the_demo_can_be_slowed_and_limit_zero_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(
        dir.path(),
        &["--demo", "--demo-delay-ms", "1", "--dry-run"],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(tagged_line_count(&text(&out.stdout)), 29);
    for args in [
        &["--demo", "--limit", "0"][..],
        &["--space", "ENG", "--limit", "0"],
    ] {
        let out = run_in(dir.path(), args, &[]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("must be at least 1"), "{stderr}");
        assert!(out.stdout.is_empty(), "nothing was labelled");
    }
    // --limit 1 on the demo: one page sent, reported as such.
    let out = run_in(dir.path(), &["--demo", "--limit", "1", "--dry-run"], &[]);
    assert_eq!(tagged_line_count(&text(&out.stdout)), 1);
}
