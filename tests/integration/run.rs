//! The run experience of the built binary: Ctrl-C/SIGTERM (exit 130 with partial reports),
//! the per-space run lock (exit 2, or `--wait-lock`), `--log-format json`, and no escape
//! codes when not on a terminal. Real clock and real processes; each test takes well under
//! a few seconds.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::harness::fakes::{
    GatedLlm, dry_run_one_page_a_request, howto_answer, howto_page, unlabelled_space,
};
use crate::harness::{BIN, OutputBounded, Running};

const PAGES: usize = 12;

/// A Cloud site with space ENG holding `PAGES` pages, none labelled.
async fn site() -> MockServer {
    unlabelled_space((1..=PAGES).map(howto_page).collect()).await
}

/// An OpenAI-compatible server that labels every page of the request `type-howto`, after
/// `delay`.
struct Labeller {
    delay: Duration,
}

impl Respond for Labeller {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body = String::from_utf8_lossy(&req.body);
        ResponseTemplate::new(200)
            .set_delay(self.delay)
            .set_body_json(howto_answer(&body))
    }
}

async fn llm(delay: Duration) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(Labeller { delay })
        .mount(&server)
        .await;
    server
}

/// `tag-space --space ENG --dry-run` against the fakes (the LLM at `llm`), one page per
/// request, one request at a time, state and locks under `dir`.
fn command(dir: &Path, confluence: &MockServer, llm: &str, extra: &[&str]) -> Command {
    let mut cmd = dry_run_one_page_a_request(dir, confluence, llm);
    cmd.args(extra)
        .env("OPENAI_API_KEY", "openai-FAKE-KEY")
        .stdin(Stdio::null());
    cmd
}

/// The lock a run over `space` of this site takes, with `TAG_SPACE_LOCK_DIR=locks` in `dir`.
fn lock_file(dir: &Path, confluence: &MockServer, space: &str) -> std::path::PathBuf {
    let site = format!("{}/wiki", confluence.uri());
    tag_space::lock::lock_path(&dir.join("locks"), &site, space)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The first signal's line: once it is on stderr the run has taken the signal in, so a
/// second one is not merged with it (signals pending together are delivered once).
const INTERRUPTED: &str = "interrupted: taking no new pages";

/// Starts a run against the held LLM and waits until its first request is in flight.
async fn run_held(dir: &Path, confluence: &MockServer, llm: &GatedLlm) -> Running {
    let mut run = Running::start(&mut command(
        dir,
        confluence,
        &llm.uri(),
        &["--report", "report.json", "--report", "report.md"],
    ));
    run.until("request to the LLM", || llm.asked() > 0).await;
    run
}

fn report_counts(dir: &Path) -> (u64, u64) {
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    let p = &r["metrics"]["pages"];
    (p["seen"].as_u64().unwrap(), p["tagged"].as_u64().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_finishes_in_flight_work_writes_the_partial_report_and_exits_130() {
    let confluence = site().await;
    // The first answer is held until the run has taken the Ctrl-C in: however slowly the
    // machine runs, the signal comes with a request in flight and pages left.
    let held = GatedLlm::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut run = run_held(dir.path(), &confluence, &held).await;
    run.signal(libc::SIGINT);
    run.until_stderr_shows(INTERRUPTED).await;
    held.open();
    let out = run.finish().await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "stderr: {stderr}");
    assert!(
        stderr.contains("interrupted: taking no new pages")
            && stderr.contains("stopping: finishing the batches in flight")
            && stderr.contains("press Ctrl-C again"),
        "{stderr}"
    );
    // The partial summary is still printed and the report written.
    let stdout = text(&out.stdout);
    assert!(stdout.contains("tag-space: space ENG"), "{stdout}");
    let (seen, tagged) = report_counts(dir.path());
    assert!(
        (1..PAGES as u64).contains(&seen) && tagged == seen,
        "seen {seen}, tagged {tagged}"
    );
    // The reports say the run was interrupted and how far it got; the history records it.
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(r["run"]["status"], "interrupted", "{r}");
    let listed = r["run"]["pages_listed"].as_u64().unwrap();
    assert!(listed >= seen, "{r}");
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    let first = md.lines().next().unwrap();
    assert!(
        first.contains(&format!(
            "Interrupted: {seen} of {listed} listed pages done"
        )),
        "{md}"
    );
    let stats = Command::new(BIN)
        .args(["cache", "stats", "--cache-path", "state/state.db"])
        .current_dir(dir.path())
        .env_clear()
        .output_bounded();
    let stats = text(&stats.stdout);
    let run = stats
        .lines()
        .find(|l| l.contains(" sync ") || l.contains(" add "))
        .unwrap();
    assert!(
        run.contains("interrupted") && run.contains(" 130 "),
        "{stats}"
    );

    // The lock went with the process: a rerun does the whole space.
    let fast = llm(Duration::ZERO).await;
    let rerun = command(
        dir.path(),
        &confluence,
        &fast.uri(),
        &["--report", "report.json"],
    )
    .output_bounded();
    assert_eq!(rerun.status.code(), Some(0), "{}", text(&rerun.stderr));
    assert_eq!(report_counts(dir.path()), (PAGES as u64, PAGES as u64));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_interrupts_like_ctrl_c() {
    let confluence = site().await;
    let held = GatedLlm::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut run = run_held(dir.path(), &confluence, &held).await;
    run.signal(libc::SIGTERM);
    run.until_stderr_shows(INTERRUPTED).await;
    held.open();
    let out = run.finish().await;
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("SIGTERM"),
        "{}",
        text(&out.stderr)
    );
    assert!(report_counts(dir.path()).0 < PAGES as u64);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_ctrl_c_stops_at_once() {
    let confluence = site().await;
    // Never answered while the run lives: only a second Ctrl-C ends it before the grace.
    let stuck = GatedLlm::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut run = run_held(dir.path(), &confluence, &stuck).await;
    run.signal(libc::SIGINT);
    run.until_stderr_shows(INTERRUPTED).await;
    run.signal(libc::SIGINT);
    let out = run.finish().await;
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    // Not the end after the grace (which writes the reports): stopped at once.
    assert!(text(&out.stderr).contains("stopping now"));
    assert!(!dir.path().join("report.json").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_overlapping_run_exits_2_naming_the_lock_and_its_holder() {
    let confluence = site().await;
    let fast = llm(Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let held_path = lock_file(dir.path(), &confluence, "ENG");
    let _held = tag_space::lock::try_acquire(&held_path).unwrap();
    let out = command(dir.path(), &confluence, &fast.uri(), &[]).output_bounded();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&held_path.display().to_string())
            && stderr.contains(&format!("pid {}", std::process::id()))
            && stderr.contains("--wait-lock"),
        "{stderr}"
    );
    assert!(fast.received_requests().await.unwrap().is_empty());
    // Another space is not blocked.
    let other = tag_space::lock::try_acquire(&lock_file(dir.path(), &confluence, "OPS"));
    assert!(other.is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn wait_lock_waits_for_the_holder_then_runs() {
    let confluence = site().await;
    let fast = llm(Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let held = tag_space::lock::try_acquire(&lock_file(dir.path(), &confluence, "ENG")).unwrap();
    let mut run = Running::start(&mut command(
        dir.path(),
        &confluence,
        &fast.uri(),
        &["--wait-lock"],
    ));
    // Not a sleep: the run says it waits once it has found the lock held.
    run.until_stderr_shows("waiting (--wait-lock)").await;
    assert!(fast.received_requests().await.unwrap().is_empty());
    drop(held);
    let out = run.finish().await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("waiting (--wait-lock)"), "{stderr}");
    assert_eq!(
        fast.received_requests().await.unwrap().len(),
        PAGES,
        "one request per page"
    );
}

/// An LLM that refuses the key: every batch fails, which logs warnings and exits 1.
async fn refusing_llm() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"error": {"message": "Incorrect API key", "type": "invalid_request_error"}}),
        ))
        .mount(&server)
        .await;
    server
}

#[tokio::test(flavor = "multi_thread")]
async fn log_format_json_writes_only_json_lines_on_stderr() {
    let confluence = site().await;
    let refusing = refusing_llm().await;
    let dir = tempfile::tempdir().unwrap();
    let out = command(
        dir.path(),
        &confluence,
        &refusing.uri(),
        &["--log-format", "json", "--limit", "2"],
    )
    .output_bounded();
    let stderr = text(&out.stderr);
    // The only provider refuses its key: a total outage, so the run stops (exit 2).
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(!lines.is_empty());
    for l in &lines {
        assert!(l["level"].is_string() && l["timestamp"].is_string(), "{l}");
    }
    // The provider becoming unavailable is one event with its provider and reason.
    assert!(
        lines.iter().any(|l| l["fields"]["provider"] == "openai"
            && l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("unavailable"))),
        "{stderr}"
    );
    assert!(!stderr.contains("openai-FAKE-KEY"));
}

#[tokio::test(flavor = "multi_thread")]
async fn no_escape_codes_when_not_on_a_terminal_even_without_no_color() {
    let confluence = site().await;
    let refusing = refusing_llm().await;
    let dir = tempfile::tempdir().unwrap();
    // `command` sets no NO_COLOR: only "not a terminal" keeps colour out.
    let out = command(dir.path(), &confluence, &refusing.uri(), &["--limit", "2"]).output_bounded();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).is_empty());
    for (name, stream) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        assert!(
            !stream.contains(&0x1b),
            "{name} has an escape code: {}",
            text(stream)
        );
    }
}

#[test]
fn help_documents_every_exit_code() {
    let out = Command::new(BIN).arg("--help").output_bounded();
    let help = text(&out.stdout);
    for code in ["0 ", "1 ", "2 ", "130"] {
        assert!(
            help.contains(&format!("\n  {code}")),
            "{code} missing: {help}"
        );
    }
    assert!(help.contains("--wait-lock") && help.contains("--log-format"));
}
