//! What a first user hit (issue 9), through the built binary against local fakes: `--sync`
//! removals shown everywhere before and after they happen, run history that records how each
//! run ended, and a total LLM outage that stops the run with exit 2.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::harness::fakes::cloud_space;
use crate::harness::net::ClosedPort;
use crate::harness::{BIN, OutputBounded};

/// Page id to its labels now, and every DELETE as (page, label).
#[derive(Default)]
struct Site {
    labels: BTreeMap<String, BTreeSet<String>>,
    deleted: Vec<(String, String)>,
}
type Shared = Arc<Mutex<Site>>;

/// `/wiki/api/v2/pages/{id}/labels` or `/wiki/rest/api/content/{id}/label`: segment 5.
fn page_id(req: &Request) -> String {
    req.url
        .path()
        .split('/')
        .nth(5)
        .unwrap_or_default()
        .to_string()
}

struct Labels(Shared);
impl Respond for Labels {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let id = page_id(req);
        let mut site = self.0.lock().unwrap();
        match req.method.as_str() {
            "GET" => {
                let results: Vec<Value> = site
                    .labels
                    .get(&id)
                    .into_iter()
                    .flatten()
                    .map(|l| json!({"id": "1", "name": l, "prefix": "global"}))
                    .collect();
                ResponseTemplate::new(200).set_body_json(json!({"results": results, "_links": {}}))
            }
            "POST" => {
                let body: Vec<Value> = serde_json::from_slice(&req.body).unwrap();
                for l in &body {
                    let name = l["name"].as_str().unwrap().to_string();
                    site.labels.entry(id.clone()).or_default().insert(name);
                }
                ResponseTemplate::new(200).set_body_json(json!({"results": body}))
            }
            _ => {
                // DELETE /wiki/rest/api/content/{id}/label?name=...
                let name = req
                    .url
                    .query_pairs()
                    .find(|(k, _)| k == "name")
                    .map(|(_, v)| v.into_owned())
                    .unwrap();
                site.labels.entry(id.clone()).or_default().remove(&name);
                site.deleted.push((id, name));
                ResponseTemplate::new(204)
            }
        }
    }
}

/// A Cloud site with space ENG of `pages` pages (ids 1..), labels kept in `site`.
async fn confluence(pages: usize, site: &Shared) -> MockServer {
    let results: Vec<Value> = (1..=pages)
        .map(|i| {
            json!({
                "id": i.to_string(), "status": "current", "title": format!("Kafka page {i}"),
                "spaceId": "98765", "version": {"number": 1},
                "body": {"storage": {"representation": "storage",
                    "value": format!("<p>Step 1 for thing {i}: restart the Kafka broker.</p>")}},
                "_links": {"webui": format!("/spaces/ENG/pages/{i}")}
            })
        })
        .collect();
    let server = cloud_space(results).await;
    Mock::given(path_regex(
        r"^/wiki/(api/v2/pages/\d+/labels|rest/api/content/\d+/label)$",
    ))
    .respond_with(Labels(site.clone()))
    .mount(&server)
    .await;
    server
}

/// An OpenAI-compatible server answering, for every page of a request, the labels in
/// `answer` (grouped as the schema asks: `type`, `tool`).
struct Llm(Arc<Mutex<Value>>);
impl Respond for Llm {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        let ids = body["response_format"]["json_schema"]["schema"]["required"]
            .as_array()
            .unwrap()
            .clone();
        let each = self.0.lock().unwrap().clone();
        let answer: serde_json::Map<String, Value> = ids
            .iter()
            .map(|id| (id.as_str().unwrap().to_string(), each.clone()))
            .collect();
        ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant",
                "content": Value::Object(answer).to_string(), "refusal": null},
                "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
        }))
    }
}

async fn llm(answer: &Arc<Mutex<Value>>) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(Llm(answer.clone()))
        .mount(&server)
        .await;
    server
}

fn run(dir: &Path, confluence: &str, llm: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("NO_COLOR", "1")
        .env("CONFLUENCE_BASE_URL", format!("{confluence}/wiki"))
        .env("CONFLUENCE_EMAIL", "bot@acme.test")
        .env("CONFLUENCE_API_TOKEN", "confluence-FAKE-TOKEN")
        .env("OPENAI_API_KEY", "openai-FAKE-KEY")
        .env("OPENAI_BASE_URL", format!("{llm}/v1"))
        .env("TAG_SPACE_CACHE_PATH", dir.join("state.db"))
        .output_bounded()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn read_json(dir: &Path, name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap()
}

/// The table row under the header that holds `header`.
fn table_row<'a>(stdout: &'a str, header: &str) -> Vec<&'a str> {
    let lines: Vec<&str> = stdout.lines().collect();
    let at = lines.iter().position(|l| l.contains(header)).unwrap();
    lines[at + 2]
        .split('|')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

/// Checks that the JSON and Markdown reports of a sync run list every removal.
fn assert_reports_show_removals(dir: &Path, pages: usize, dry: bool) {
    let r = read_json(dir, "sync.json");
    assert_eq!(r["schema_version"], 4);
    let (removed_key, added_key) = if dry {
        ("labels_to_remove", "labels_proposed")
    } else {
        ("labels_removed", "labels_added")
    };
    for p in r["pages"].as_array().unwrap() {
        assert_eq!(p["status"], "tagged", "{p}");
        assert_eq!(p[added_key], json!(["type-runbook"]), "{p}");
        let mut gone: Vec<&str> = p[removed_key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        gone.sort_unstable();
        assert_eq!(gone, ["tool-kafka", "type-howto"], "{p}");
    }
    assert_eq!(r["metrics"]["pages"]["labels_removed"], 2 * pages);
    assert_eq!(r["metrics"]["pages"]["labels"], pages);
    let md = std::fs::read_to_string(dir.join("sync.md")).unwrap();
    let heading = if dry {
        "### Labels to remove"
    } else {
        "### Labels removed"
    };
    let section = md.split(heading).nth(1).expect(heading);
    let section = section.split("\n### ").next().unwrap();
    for label in ["tool-kafka", "type-howto"] {
        assert!(
            section.contains(&format!("- **{label}** ({pages} pages)")),
            "{md}"
        );
    }
    for i in 1..=pages {
        assert_eq!(
            section.matches(&format!("[Kafka page {i}](")).count(),
            2,
            "page {i} is listed under each label it loses:\n{md}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_shows_every_removal_in_lines_table_json_and_markdown_before_and_after() {
    const PAGES: usize = 12;
    let site = Shared::default();
    let confluence = confluence(PAGES, &site).await;
    let answer = Arc::new(Mutex::new(
        json!({"type": ["type-howto"], "tool": ["tool-kafka"]}),
    ));
    let llm = llm(&answer).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (c, l) = (confluence.uri(), llm.uri());

    // Run 1 adds two labels to every page.
    let out = run(d, &c, &l, &["--space", "ENG"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(site.lock().unwrap().labels["1"].len(), 2);

    // The model now answers one other label.
    *answer.lock().unwrap() = json!({"type": ["type-runbook"], "tool": []});
    let sync_args = |dry: bool| {
        let mut a = vec![
            "--space",
            "ENG",
            "--sync",
            "--no-cache",
            "--report",
            "sync.json",
            "--report",
            "sync.md",
        ];
        if dry {
            a.push("--dry-run");
        }
        a
    };

    // The dry run removes nothing, and shows every removal it would make.
    let out = run(d, &c, &l, &sync_args(true));
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(site.lock().unwrap().deleted.is_empty());
    for i in 1..=PAGES {
        let line = stdout
            .lines()
            .find(|line| line.contains(&format!(" {i} \"Kafka page {i}\"")))
            .unwrap_or_else(|| panic!("no line for page {i}:\n{stdout}"));
        assert!(
            line.contains("+type-runbook")
                && line.contains("-type-howto")
                && line.contains("-tool-kafka"),
            "{line}"
        );
    }
    let header = table_row(&stdout, "labels to remove");
    assert_eq!(
        header,
        [PAGES.to_string(), (2 * PAGES).to_string()],
        "{stdout}"
    );
    assert_reports_show_removals(d, PAGES, true);

    // The real run removes them, says so on every line, in the table, in the log (by
    // default, naming page and label) and in the reports.
    let out = run(d, &c, &l, &sync_args(false));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let deleted = site.lock().unwrap().deleted.clone();
    assert_eq!(deleted.len(), 2 * PAGES);
    for (page, label) in &deleted {
        assert!(
            stderr.lines().any(|l| l.contains("removing a label")
                && l.contains(&format!("page={page} "))
                && l.contains(&format!("label={label}"))),
            "no log line for {page}/{label}:\n{stderr}"
        );
        assert!(
            stdout.lines().any(
                |line| line.contains(&format!(" {page} \"Kafka page {page}\""))
                    && line.contains(&format!("-{label}"))
            ),
            "{stdout}"
        );
    }
    let row = table_row(&stdout, "labels removed");
    assert_eq!(
        row,
        [PAGES.to_string(), (2 * PAGES).to_string()],
        "{stdout}"
    );
    assert_reports_show_removals(d, PAGES, false);
    for labels in site.lock().unwrap().labels.values() {
        assert_eq!(labels.iter().collect::<Vec<_>>(), ["type-runbook"]);
    }
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/llm")
            .join(name),
    )
    .unwrap()
}

/// `cache stats --runs 10` lines of `space`: its run rows and their "failed:" lines.
fn history(dir: &Path, space: &str) -> Vec<String> {
    let out = Command::new(BIN)
        .args(["cache", "stats", "--runs", "10"])
        .current_dir(dir)
        .env_clear()
        .env("TAG_SPACE_CACHE_PATH", dir.join("state.db"))
        .output_bounded();
    let stdout = text(&out.stdout);
    let section = stdout
        .split("\nspace ")
        .find(|s| s.starts_with(&format!("{space}:")))
        .unwrap_or_else(|| panic!("no space {space}:\n{stdout}"));
    section.lines().skip(2).map(String::from).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn run_history_says_how_each_run_ended_and_with_which_exit_code() {
    let site = Shared::default();
    let confluence = confluence(2, &site).await;
    // JUNK: the server answers, but not with JSON.
    Mock::given(method("GET"))
        .and(path("/wiki/api/v2/spaces"))
        .and(query_param("keys", "JUNK"))
        .respond_with(ResponseTemplate::new(200).set_body_raw("{not json", "application/json"))
        .mount(&confluence)
        .await;
    Mock::given(method("GET"))
        .and(path("/wiki/api/v2/spaces"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"results": [], "_links": {}})),
        )
        .mount(&confluence)
        .await;
    let answer = Arc::new(Mutex::new(json!({"type": ["type-howto"], "tool": []})));
    let llm = llm(&answer).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (c, l) = (confluence.uri(), llm.uri());
    let closed = ClosedPort::new();
    let refused = format!("http://127.0.0.1:{}", closed.port);

    for (base, space) in [(&c, "NOPE"), (&c, "JUNK"), (&refused, "ENG"), (&c, "ENG")] {
        let out = run(d, base, &l, &["--space", space, "-q"]);
        let want = if base == &refused || space != "ENG" {
            2
        } else {
            0
        };
        assert_eq!(
            out.status.code(),
            Some(want),
            "{space}: {}",
            text(&out.stderr)
        );
    }
    let nope = history(d, "NOPE");
    assert!(
        nope[0].contains(" failed ") && nope[0].contains("   2 "),
        "{nope:?}"
    );
    assert!(
        nope[1].trim_start().starts_with("failed: ") && nope[1].contains("NOPE"),
        "{nope:?}"
    );
    let junk = history(d, "JUNK");
    assert!(
        junk[0].contains(" failed ") && junk[0].contains("   2 "),
        "{junk:?}"
    );
    assert!(junk[1].trim_start().starts_with("failed: "), "{junk:?}");
    // Newest first: the good run, then the one that could not connect.
    let eng = history(d, "ENG");
    assert!(
        eng[0].contains(" finished ") && eng[0].contains("   0 "),
        "{eng:?}"
    );
    assert!(
        eng[1].contains(" failed ") && eng[1].contains("   2 "),
        "{eng:?}"
    );
    assert!(eng[2].trim_start().starts_with("failed: "), "{eng:?}");
    for lines in [&nope, &junk, &eng] {
        assert!(
            lines
                .iter()
                .all(|l| !l.contains("finished") || l.contains("   0 ")),
            "a failed run shows as finished: {lines:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_total_llm_outage_stops_early_with_exit_2_and_one_line_per_provider() {
    const PAGES: usize = 40;
    let site = Shared::default();
    let confluence = confluence(PAGES, &site).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let closed = ClosedPort::new();
    let refused = format!("http://127.0.0.1:{}", closed.port);

    // The only provider is unreachable.
    let out = run(
        d,
        &confluence.uri(),
        &refused,
        &[
            "--space",
            "ENG",
            "-q",
            "--batch-size",
            "1",
            "--report",
            "r.json",
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let at = stderr
        .lines()
        .position(|l| l == "tag-space: no LLM provider can be used, so the run stopped:")
        .unwrap_or_else(|| panic!("{stderr}"));
    let why = stderr.lines().nth(at + 1).unwrap();
    assert!(
        why.starts_with("tag-space:   openai: failed on every call: connection failed: ")
            && why.to_lowercase().contains("connection refused"),
        "{stderr}"
    );
    let r = read_json(d, "r.json");
    assert_eq!(r["run"]["status"], "failed", "{r}");
    assert!(
        r["run"]["error"].as_str().unwrap().contains("openai"),
        "{r}"
    );
    let seen = r["metrics"]["pages"]["seen"].as_u64().unwrap();
    assert!(
        seen < PAGES as u64,
        "stopped early: {seen} of {PAGES} pages done"
    );
    for p in r["pages"].as_array().unwrap() {
        let e = p["error"].as_str().unwrap();
        assert!(
            e.chars().count() < 160 && !e.contains("error sending request"),
            "a per-page error stays short: {e}"
        );
    }
    assert!(history(d, "ENG")[0].contains(" failed "));

    // Every provider refused: a key rejected (Gemini) and a quota gone (OpenAI).
    let gemini = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {"code": 400,
            "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]}})))
        .mount(&gemini)
        .await;
    let openai = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).set_body_raw(
            fixture("openai_insufficient_quota.json"),
            "application/json",
        ))
        .mount(&openai)
        .await;
    let out = Command::new(BIN)
        .args(["--space", "ENG", "-q", "--dry-run"])
        .current_dir(d)
        .env_clear()
        .env("CONFLUENCE_BASE_URL", format!("{}/wiki", confluence.uri()))
        .env("CONFLUENCE_EMAIL", "bot@acme.test")
        .env("CONFLUENCE_API_TOKEN", "confluence-FAKE-TOKEN")
        .env("GEMINI_API_KEY", "gemini-FAKE-KEY")
        .env("GEMINI_BASE_URL", gemini.uri())
        .env("OPENAI_API_KEY", "openai-FAKE-KEY")
        .env("OPENAI_BASE_URL", format!("{}/v1", openai.uri()))
        .env("TAG_SPACE_CACHE_PATH", d.join("state.db"))
        .output_bounded();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .skip_while(|l| !l.starts_with("tag-space: no LLM provider can be used"))
        .collect();
    assert!(lines.len() >= 3, "{stderr}");
    assert!(
        lines[1].starts_with("tag-space:   gemini: not authorised"),
        "{stderr}"
    );
    assert!(
        lines[2].starts_with("tag-space:   openai: quota exhausted"),
        "{stderr}"
    );
    // Only the first batches were tried: no request for most of the space.
    assert!(openai.received_requests().await.unwrap().len() < 8);

    // With the offline rules as a fallback there is no outage: the run labels the space.
    let out = run(
        d,
        &confluence.uri(),
        &refused,
        &["--space", "ENG", "-q", "--dry-run", "--fallback", "rules"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}
