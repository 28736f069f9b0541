//! `tag-space jobs` and `tag-space jobs cancel ID` through the built binary, with a state file
//! written by `backfill::submit` against the Gemini batch fake (127.0.0.1 only).

use std::sync::Arc;
use std::time::Duration;

use tag_space::backfill::{self, BatchPage, JobsCtx};
use tag_space::cache::{CacheKey, Setup, Store, StoreOptions};
use tag_space::llm::PageText;
use tag_space::llm::ProviderSettings;
use tag_space::llm::batch::GeminiBatch;
use tag_space::llm::prompt::PROMPT_VERSION;
use tag_space::secret::Secret;
use tag_space::taxonomy::Taxonomy;

use super::batchfake::{self, KEY, Script};
use crate::harness::proc::run_in as tag_space;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_lists_the_recorded_jobs_and_cancel_reaches_the_provider() {
    let (server, fake) = batchfake::gemini(Script::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let taxonomy = Arc::new(Taxonomy::embedded());
    let setup = Setup::new(
        taxonomy.fingerprint(),
        PROMPT_VERSION,
        "gemini/gemini-2.5-flash",
    );
    {
        let store = Store::open(&db, StoreOptions::default()).unwrap();
        let settings = ProviderSettings {
            api_key: Some(Secret::new(KEY)),
            model: "gemini-2.5-flash".into(),
            base_url: server.uri(),
            timeout: Duration::from_secs(10),
            max_output_tokens: 512,
        };
        let svc = GeminiBatch::new(settings, taxonomy.clone()).unwrap();
        let pages: Vec<BatchPage> = (0..6)
            .map(|i| {
                let text = PageText {
                    id: i.to_string(),
                    title: format!("P{i}"),
                    text: "git".into(),
                };
                let key = CacheKey::new(&setup, &text.title, &text.text);
                BatchPage { text, key }
            })
            .collect();
        let ctx = JobsCtx {
            store: &store,
            space: "ENG",
            setup: &setup,
        };
        backfill::submit(
            &svc,
            &ctx,
            pages.chunks(5).map(<[BatchPage]>::to_vec).collect(),
        )
        .await
        .unwrap();
    }
    let path = db.to_str().unwrap();
    let out = tag_space(dir.path(), &["jobs", "--cache-path", path], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{stdout}");
    let line = stdout.lines().nth(1).unwrap();
    assert!(
        line.contains("ENG") && line.contains("gemini/gemini-2.5-flash"),
        "{stdout}"
    );
    assert!(
        line.contains("pending") && line.contains("0/0/2") && line.ends_with("batches/b0"),
        "{stdout}"
    );

    // Unknown id: one line that says what to do, exit 2.
    let out = tag_space(
        dir.path(),
        &["jobs", "cancel", "99", "--cache-path", path],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no batch job 99") && stderr.contains("tag-space jobs"),
        "{stderr}"
    );

    let vars = [
        ("CONFLUENCE_BASE_URL", "http://127.0.0.1:9/wiki".to_string()),
        ("CONFLUENCE_PAT", "confluence-FAKE-PAT".to_string()),
        ("GEMINI_API_KEY", KEY.to_string()),
        ("GEMINI_BASE_URL", server.uri()),
    ];
    let out = tag_space(
        dir.path(),
        &["jobs", "cancel", "1", "--cache-path", path],
        &vars,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("job 1 (batches/b0): cancelled"), "{stdout}");
    assert!(fake.state().jobs[0].cancelled);
    assert!(!stdout.contains(KEY) && !String::from_utf8_lossy(&out.stderr).contains(KEY));
    let out = tag_space(dir.path(), &["jobs", "--cache-path", path], &[]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("cancelled"));
}
