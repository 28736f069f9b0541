//! Real failures through the binary print their chain of causes with each cause once: no
//! error message repeats the error it wraps (`main` prints `{e:#}`, which appends every
//! `source()`; a message that also formats its source would show it twice).

use std::process::Output;

use crate::harness::net::ClosedPort;
use crate::harness::proc::run_at_home as tag_space_in;

/// The one error line: exit 2, and each of `causes` in it exactly once.
fn assert_each_cause_once(out: &Output, causes: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("tag-space: ") && !l.starts_with("tag-space: warning"))
        .collect();
    assert_eq!(errors.len(), 1, "one error line: {stderr}");
    // Whatever the wording: no link of the chain comes twice.
    let links: Vec<&str> = errors[0].split(": ").collect();
    for (i, link) in links.iter().enumerate() {
        assert!(
            !links[i + 1..].contains(link),
            "{link:?} comes twice in: {}",
            errors[0]
        );
    }
    for cause in causes {
        assert_eq!(
            errors[0].matches(cause).count(),
            1,
            "{cause:?} should appear exactly once in: {}",
            errors[0]
        );
    }
}

/// A site and a local OpenAI-compatible provider that need no key; nothing listens there.
fn site_at(port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("CONFLUENCE_BASE_URL", format!("http://127.0.0.1:{port}")),
        ("CONFLUENCE_PAT", "fake-pat".into()),
        ("OPENAI_BASE_URL", format!("http://127.0.0.1:{port}/v1")),
    ]
}

#[test]
fn a_missing_taxonomy_file_names_the_file_and_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere").join("taxonomy.toml");
    // The operating system's own words for it, as the chain prints them.
    let os = std::fs::read(&missing).unwrap_err().to_string();
    let out = tag_space_in(
        dir.path(),
        &["--demo", "--taxonomy", missing.to_str().unwrap()],
        &[],
    );
    assert_each_cause_once(&out, &["cannot read taxonomy", &os]);
}

// "Not a directory" is the Unix wording.
#[cfg(unix)]
#[test]
fn an_unusable_state_file_names_the_file_and_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    // A folder that cannot be made, whoever runs the test (root ignores permissions): its
    // parent is a file.
    std::fs::write(dir.path().join("a-file"), "not a folder").unwrap();
    let out = tag_space_in(
        dir.path(),
        &[
            "--space",
            "ENG",
            "--cache-path",
            "a-file/state/state.db",
            "-q",
        ],
        &site_at(ClosedPort::new().port),
    );
    assert_each_cause_once(
        &out,
        &[
            "cannot use the state file a-file/state/state.db",
            "cannot create the folder a-file/state",
            "Not a directory",
        ],
    );

    // A file that is not a database, through `cache stats`.
    std::fs::write(dir.path().join("junk.db"), "garbage, not SQLite").unwrap();
    let out = tag_space_in(
        dir.path(),
        &["cache", "stats", "--cache-path", "junk.db"],
        &[],
    );
    assert_each_cause_once(
        &out,
        &["cache junk.db is damaged", "file is not a database"],
    );
}

#[test]
fn an_unreachable_confluence_names_the_request_and_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let closed = ClosedPort::new();
    let port = closed.port;
    let refused = std::net::TcpStream::connect(("127.0.0.1", port))
        .unwrap_err()
        .to_string();
    let out = tag_space_in(dir.path(), &["--space", "ENG", "-q"], &site_at(port));
    assert_each_cause_once(
        &out,
        &[
            "the run over space ENG stopped early",
            "cannot reach http://127.0.0.1",
            &refused,
            "check CONFLUENCE_BASE_URL, and that this machine can reach the site",
        ],
    );
}
