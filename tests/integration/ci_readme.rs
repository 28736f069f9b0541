//! The README's "In CI" examples work as written (issue 15): the shell lines of each example
//! (the `run: |` blocks of the GitHub Actions workflow, the `script:` lists of the GitLab
//! CI file, between the `<!-- ci-example:NAME -->` markers) run in order through `sh`, with
//! the built binary first on `PATH`, against the local Confluence and LLM fakes. The CI's
//! own environment (the fakes' URLs and credentials, the state file, `$GITHUB_STEP_SUMMARY`)
//! is what the test provides; the commands are the README's, unchanged.

use std::path::Path;
use std::process::Command;

use crate::harness::{BIN, OutputBounded};
use crate::livesite::Flavor;
use crate::plan::{env, stderr};

/// The fenced block between `<!-- ci-example:NAME -->` and `<!-- /ci-example:NAME -->`.
fn example(name: &str) -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = format!("<!-- ci-example:{name} -->");
    let end = format!("<!-- /ci-example:{name} -->");
    let from = readme.find(&start).expect("the README has the example") + start.len();
    let to = from + readme[from..].find(&end).expect("the example ends");
    readme[from..to].to_string()
}

/// The shell lines of a CI file: the lines under a `run: |` key (indented deeper than it),
/// and the items of a `script:` list.
fn shell_lines(yaml: &str) -> Vec<String> {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut lines = Vec::new();
    let mut block: Option<usize> = None;
    for line in yaml.lines() {
        let t = line.trim();
        if let Some(depth) = block {
            if !t.is_empty() && indent(line) > depth {
                lines.push(t.strip_prefix("- ").unwrap_or(t).to_string());
                continue;
            }
            block = None;
        }
        if t == "script:" || t.ends_with("run: |") {
            block = Some(indent(line));
        }
    }
    lines
}

#[test]
fn the_examples_have_the_commands_the_readme_says() {
    let github = shell_lines(&example("github"));
    assert_eq!(
        github,
        [
            "tag-space --space ENG --dry-run --plan plan.json --report plan.md",
            "cat plan.md >> \"$GITHUB_STEP_SUMMARY\"",
            "tag-space apply plan.json --report applied.md",
            "cat applied.md >> \"$GITHUB_STEP_SUMMARY\"",
        ]
    );
    let gitlab = shell_lines(&example("gitlab"));
    assert_eq!(
        gitlab,
        [
            "tag-space --space ENG --dry-run --plan plan.json --report plan.md",
            "tag-space apply plan.json --report applied.md",
        ]
    );
}

/// Runs the example's shell lines in order against fresh fakes: each exits 0, the dry run
/// writes nothing, and after `apply` every page carries the labels the plan listed.
async fn runs_as_written(name: &str, flavor: Flavor) {
    let e = env(flavor).await;
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let summary = e.path("step-summary.md");
    for line in shell_lines(&example(name)) {
        if line.starts_with("tag-space apply") {
            assert!(
                e.site.state().posted.is_empty(),
                "{name}: the dry run wrote labels"
            );
        }
        let out = Command::new("sh")
            .args(["-c", &line])
            .current_dir(e.dir.path())
            .env_clear()
            .envs(e.envs())
            .env("PATH", &path)
            .env("GITHUB_STEP_SUMMARY", &summary)
            .output_bounded();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{name}: `{line}` failed: {}",
            stderr(&out)
        );
    }
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(e.path("plan.json")).unwrap()).unwrap();
    crate::plan::assert_schema_valid(&plan);
    let st = e.site.state();
    let pages = plan["spaces"][0]["pages"].as_array().unwrap();
    assert!(!pages.is_empty(), "{name}: an empty plan proves nothing");
    for page in pages {
        let id: u64 = page["id"].as_str().unwrap().parse().unwrap();
        for l in page["add"].as_array().unwrap() {
            assert!(st.has(id, l["label"].as_str().unwrap()), "{name}: {page:#}");
        }
    }
    let applied = std::fs::read_to_string(e.path("applied.md")).unwrap();
    assert!(!applied.is_empty());
    if name == "github" {
        let summary = std::fs::read_to_string(summary).unwrap();
        assert!(summary.contains(&applied), "{summary}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_github_actions_example_runs_as_written() {
    runs_as_written("github", Flavor::Cloud).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gitlab_ci_example_runs_as_written() {
    runs_as_written("gitlab", Flavor::Dc).await;
}
