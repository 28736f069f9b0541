//! Backfills through the batch services: `tag_space::backfill::{submit, collect}` driving
//! the Gemini and OpenAI batch clients against the fakes in `batchfake.rs` (127.0.0.1 only,
//! real clock: jobs move on each poll, not with time), with a real state file.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tag_space::backfill::{self, BatchPage, Collected, JobsCtx};
use tag_space::cache::{CacheKey, Run, RunMode, Setup, Store, StoreOptions};
use tag_space::llm::ProviderSettings;
use tag_space::llm::batch::{BatchRequest, BatchService, GeminiBatch, Limits, OpenAiBatch};
use tag_space::llm::gemini::GeminiProvider;
use tag_space::llm::prompt::PROMPT_VERSION;
use tag_space::llm::{PageText, Provider};
use tag_space::secret::Secret;
use tag_space::taxonomy::{Category, Tag, Taxonomy};

use super::batchfake::{self, KEY, Script};

const SPACE: &str = "ENG";

pub(super) fn taxonomy(extra: &str) -> Arc<Taxonomy> {
    let tag = |name: &str| Tag {
        name: name.into(),
        description: format!("about {name}{extra}"),
        keywords: vec![],
    };
    let categories = vec![
        Category {
            name: "type".into(),
            description: "what kind of document".into(),
            max_per_page: 1,
            tags: vec![tag("how-to"), tag("reference")],
        },
        Category {
            name: "tool".into(),
            description: "tools".into(),
            max_per_page: 2,
            tags: vec![tag("git"), tag("docker")],
        },
    ];
    Arc::new(Taxonomy::new(categories, 3, "test").unwrap())
}

pub(super) fn settings(base_url: String, model: &str) -> ProviderSettings {
    ProviderSettings {
        api_key: Some(Secret::new(KEY)),
        model: model.into(),
        base_url,
        timeout: Duration::from_secs(10),
        max_output_tokens: 512,
    }
}

pub(super) struct Harness {
    pub(super) _dir: tempfile::TempDir,
    pub(super) store: Store,
    pub(super) setup: Setup,
    pub(super) run: Run,
    pub(super) taxonomy: Arc<Taxonomy>,
}

impl Harness {
    pub(super) fn new(taxonomy: Arc<Taxonomy>, model: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("state.db"), StoreOptions::default()).unwrap();
        let setup = Setup::new(taxonomy.fingerprint(), PROMPT_VERSION, model);
        let run = store.begin_run(SPACE, RunMode::Add, false).unwrap();
        Harness {
            _dir: dir,
            store,
            setup,
            run,
            taxonomy,
        }
    }

    pub(super) fn ctx(&self) -> JobsCtx<'_> {
        JobsCtx {
            store: &self.store,
            space: SPACE,
            setup: &self.setup,
        }
    }

    /// `n` pages in batches of `size`, each page with its cache key.
    pub(super) fn batches(&self, n: usize, size: usize) -> Vec<Vec<BatchPage>> {
        let pages: Vec<BatchPage> = (0..n)
            .map(|i| {
                let text = PageText {
                    id: (10_000 + i).to_string(),
                    title: format!("Page {i}"),
                    text: format!("How we use git, part {i}."),
                };
                let key = CacheKey::new(&self.setup, &text.title, &text.text);
                BatchPage { text, key }
            })
            .collect();
        pages.chunks(size).map(<[BatchPage]>::to_vec).collect()
    }

    /// Collects until no job is running (each call polls every open job once).
    pub(super) async fn collect_all<S: BatchService>(&self, svc: &S) -> Collected {
        let mut all = Collected::default();
        for _ in 0..20 {
            let c = backfill::collect(svc, &self.ctx(), &self.run, &self.taxonomy)
                .await
                .unwrap();
            all.labels.extend(c.labels);
            all.retry.extend(c.retry);
            all.stale.extend(c.stale);
            all.ended.extend(c.ended);
            all.requests += c.requests;
            all.tokens_in += c.tokens_in;
            all.tokens_out += c.tokens_out;
            if c.running.is_empty() {
                return all;
            }
        }
        panic!("jobs never finished");
    }

    /// Every page of `batches` has `reference` + `git` in the cache, except `except`.
    pub(super) fn assert_cached(&self, batches: &[Vec<BatchPage>], except: &HashSet<String>) {
        for p in batches.iter().flatten() {
            let hit = self.store.lookup(&p.key).unwrap();
            if except.contains(&p.text.id) {
                assert!(hit.is_none(), "page {} should not be cached", p.text.id);
            } else {
                let hit = hit.unwrap_or_else(|| panic!("page {} not cached", p.text.id));
                assert_eq!(hit.labels, ["reference", "git"], "page {}", p.text.id);
            }
        }
    }
}

pub(super) fn ids_of(batch: &[BatchPage]) -> HashSet<String> {
    batch.iter().map(|p| p.text.id.clone()).collect()
}

#[tokio::test]
async fn gemini_inline_job_goes_from_submit_to_labels_and_failed_lines_are_asked_interactively() {
    let script = Script {
        fail_keys: HashSet::from(["r1".to_string()]),
        ..Script::default()
    };
    let (server, fake) = batchfake::gemini(script).await;
    let h = Harness::new(taxonomy(""), "gemini/gemini-2.5-flash");
    let settings = settings(server.uri(), "gemini-2.5-flash");
    let svc = GeminiBatch::new(settings.clone(), h.taxonomy.clone()).unwrap();
    let batches = h.batches(12, 5);

    let s = backfill::submit(&svc, &h.ctx(), batches.clone())
        .await
        .unwrap();
    assert_eq!((s.jobs.len(), s.requests, s.pages), (1, 3, 12));
    let job = &h.store.jobs(Some(SPACE)).unwrap()[0];
    assert_eq!(
        (job.state.as_str(), job.job_id.as_deref()),
        ("pending", Some("batches/b0"))
    );
    assert!(fake.state().jobs[0].inline, "12 small pages go inline");

    // The first collect sees it running; nothing is applied yet.
    let first = backfill::collect(&svc, &h.ctx(), &h.run, &h.taxonomy)
        .await
        .unwrap();
    assert_eq!((first.running.len(), first.labels.len()), (1, 0));
    let c = h.collect_all(&svc).await;
    assert_eq!(c.labels.len(), 7);
    let failed = ids_of(&batches[1]);
    let retry: HashSet<String> = c.retry.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(retry, failed);
    assert!(
        c.retry[0].1.contains("request failed in the batch"),
        "{:?}",
        c.retry
    );
    h.assert_cached(&batches, &failed);

    // The seam: the failed line's pages go through the interactive client, and only they.
    let interactive = GeminiProvider::new(settings, h.taxonomy.clone()).unwrap();
    let retry_pages: Vec<PageText> = batches[1].iter().map(|p| p.text.clone()).collect();
    let answer = interactive.classify(&retry_pages).await.unwrap();
    assert_eq!(answer.labels.len(), 5);
    let st = fake.state();
    assert_eq!((st.creates, st.interactive_calls), (1, 1));
    let job = &h.store.jobs(Some(SPACE)).unwrap()[0];
    assert!(job.collected && job.state == "succeeded");
    assert_eq!((job.succeeded, job.failed), (2, 1));
}

#[tokio::test]
async fn gemini_large_input_is_uploaded_as_a_file_and_the_results_file_downloaded() {
    let (server, fake) = batchfake::gemini(Script::default()).await;
    let h = Harness::new(taxonomy(""), "gemini/gemini-2.5-flash");
    let svc = GeminiBatch::new(
        settings(server.uri(), "gemini-2.5-flash"),
        h.taxonomy.clone(),
    )
    .unwrap()
    .with_limits(
        Limits {
            max_requests: usize::MAX,
            max_bytes: usize::MAX,
        },
        1,
    );
    let batches = h.batches(40, 5);
    backfill::submit(&svc, &h.ctx(), batches.clone())
        .await
        .unwrap();
    {
        let st = fake.state();
        assert!(!st.jobs[0].inline);
        let uploaded = &st.files["files/in-u0"];
        let first: Value =
            serde_json::from_slice(uploaded.split(|b| *b == b'\n').next().unwrap()).unwrap();
        assert_eq!(first["key"], "r0");
        // The same request as the interactive path: the $defs schema for a current model,
        // and an output cap.
        let generation = &first["request"]["generationConfig"];
        assert!(
            generation["responseJsonSchema"]["$defs"].is_object(),
            "{generation}"
        );
        assert!(generation["maxOutputTokens"].as_u64().unwrap() > 0);
    }
    let c = h.collect_all(&svc).await;
    assert_eq!((c.labels.len(), c.retry.len()), (40, 0));
    assert_eq!(fake.state().downloads, 1);
    h.assert_cached(&batches, &HashSet::new());
}

#[tokio::test]
async fn openai_out_of_order_output_and_error_file_join_on_custom_id() {
    let script = Script {
        fail_keys: HashSet::from(["r0".to_string()]),
        ..Script::default()
    };
    let (server, fake) = batchfake::openai(script).await;
    let h = Harness::new(taxonomy(""), "openai/gpt-4.1-mini");
    let svc = OpenAiBatch::new(
        settings(format!("{}/v1", server.uri()), "gpt-4.1-mini"),
        h.taxonomy.clone(),
    )
    .unwrap();
    let batches = h.batches(20, 5);
    backfill::submit(&svc, &h.ctx(), batches.clone())
        .await
        .unwrap();
    let c = h.collect_all(&svc).await;
    let failed = ids_of(&batches[0]);
    assert_eq!(c.labels.len(), 15);
    assert_eq!(
        c.retry
            .iter()
            .map(|(id, _)| id.clone())
            .collect::<HashSet<_>>(),
        failed
    );
    assert!(c.retry[0].1.contains("HTTP 400"), "{:?}", c.retry[0]);
    assert_eq!((c.requests, c.tokens_in), (3, 300));
    h.assert_cached(&batches, &failed);
    assert_eq!(fake.state().downloads, 2, "output and error files");
}

#[tokio::test]
async fn an_expired_job_gives_its_finished_part_and_the_rest_is_asked_again() {
    let script = Script {
        end: "expired",
        ..Script::default()
    };
    let (server, _fake) = batchfake::openai(script).await;
    let h = Harness::new(taxonomy(""), "openai/gpt-4.1-mini");
    let svc = OpenAiBatch::new(
        settings(format!("{}/v1", server.uri()), "gpt-4.1-mini"),
        h.taxonomy.clone(),
    )
    .unwrap();
    let batches = h.batches(20, 5); // 4 requests: the fake answers the first 2
    backfill::submit(&svc, &h.ctx(), batches.clone())
        .await
        .unwrap();
    let c = h.collect_all(&svc).await;
    assert_eq!(c.labels.len(), 10);
    let rest: HashSet<String> = ids_of(&batches[2])
        .union(&ids_of(&batches[3]))
        .cloned()
        .collect();
    assert_eq!(
        c.retry
            .iter()
            .map(|(id, _)| id.clone())
            .collect::<HashSet<_>>(),
        rest
    );
    assert!(c.retry[0].1.contains("expired"), "{:?}", c.retry[0]);
    assert_eq!(c.ended.len(), 1);
    h.assert_cached(&batches, &rest);
    assert_eq!(h.store.jobs(None).unwrap()[0].state, "expired");
}

#[tokio::test]
async fn a_failed_gemini_job_sends_every_page_back() {
    let script = Script {
        end: "failed",
        ..Script::default()
    };
    let (server, fake) = batchfake::gemini(script).await;
    let h = Harness::new(taxonomy(""), "gemini/gemini-2.5-flash");
    let svc = GeminiBatch::new(
        settings(server.uri(), "gemini-2.5-flash"),
        h.taxonomy.clone(),
    )
    .unwrap();
    backfill::submit(&svc, &h.ctx(), h.batches(10, 5))
        .await
        .unwrap();
    let c = h.collect_all(&svc).await;
    assert_eq!((c.labels.len(), c.retry.len(), c.ended.len()), (0, 10, 1));
    assert_eq!(fake.state().downloads, 0);
}

#[tokio::test]
async fn results_for_a_stale_taxonomy_fingerprint_are_not_applied() {
    let (server, fake) = batchfake::openai(Script {
        polls_to_finish: 1,
        ..Script::default()
    })
    .await;
    let old = Harness::new(taxonomy(""), "openai/gpt-4.1-mini");
    let svc = OpenAiBatch::new(
        settings(format!("{}/v1", server.uri()), "gpt-4.1-mini"),
        old.taxonomy.clone(),
    )
    .unwrap();
    let batches = old.batches(10, 5);
    backfill::submit(&svc, &old.ctx(), batches.clone())
        .await
        .unwrap();

    // The taxonomy changed before the collect (same state file).
    let changed = taxonomy(" (edited)");
    assert_ne!(changed.fingerprint(), old.taxonomy.fingerprint());
    let setup = Setup::new(changed.fingerprint(), PROMPT_VERSION, "openai/gpt-4.1-mini");
    let ctx = JobsCtx {
        store: &old.store,
        space: SPACE,
        setup: &setup,
    };
    let c = backfill::collect(&svc, &ctx, &old.run, &changed)
        .await
        .unwrap();
    assert_eq!((c.labels.len(), c.stale.len()), (0, 1));
    old.assert_cached(&batches, &ids_of(&batches.concat()));
    assert_eq!(
        fake.state().downloads,
        0,
        "a stale job's results are not even downloaded"
    );
    let job = &old.store.jobs(None).unwrap()[0];
    assert_eq!(job.state, "stale");
    assert!(job.error.as_deref().unwrap().contains("another taxonomy"));
    // And they are not pending for the new setup: its submit sends the pages again.
    let new_batches = {
        let h2 = JobsCtx {
            store: &old.store,
            space: SPACE,
            setup: &setup,
        };
        let s = backfill::submit(&svc, &h2, batches.clone()).await.unwrap();
        s.pages
    };
    assert_eq!(new_batches, 10);
}

#[tokio::test]
async fn pages_of_an_open_job_are_not_submitted_twice() {
    let (server, fake) = batchfake::gemini(Script::default()).await;
    let h = Harness::new(taxonomy(""), "gemini/gemini-2.5-flash");
    let svc = GeminiBatch::new(
        settings(server.uri(), "gemini-2.5-flash"),
        h.taxonomy.clone(),
    )
    .unwrap();
    let batches = h.batches(10, 5);
    backfill::submit(&svc, &h.ctx(), batches.clone())
        .await
        .unwrap();
    let again = backfill::submit(&svc, &h.ctx(), batches).await.unwrap();
    assert_eq!((again.jobs.len(), again.already_pending), (0, 10));
    assert_eq!(fake.state().creates, 1);
}

#[tokio::test]
async fn a_cancelled_job_is_reported_and_its_finished_part_used() {
    let (server, _fake) = batchfake::openai(Script::default()).await;
    let h = Harness::new(taxonomy(""), "openai/gpt-4.1-mini");
    let svc = OpenAiBatch::new(
        settings(format!("{}/v1", server.uri()), "gpt-4.1-mini"),
        h.taxonomy.clone(),
    )
    .unwrap();
    let batches = h.batches(20, 5);
    backfill::submit(&svc, &h.ctx(), batches.clone())
        .await
        .unwrap();
    let job = h.store.jobs(None).unwrap().remove(0);
    let line = backfill::cancel_job(&svc, &h.store, &job).await.unwrap();
    assert!(line.contains("cancelling"), "{line}");
    let c = h.collect_all(&svc).await;
    assert_eq!((c.labels.len(), c.retry.len(), c.ended.len()), (10, 10, 1));
    assert!(c.retry[0].1.contains("cancelled"));
}

/// The done-when of issue 16 on the fakes: 12,000 pages, 5 per request, through submit and
/// collect; with 1,000 requests per job (standing in for OpenAI's 50,000, which the planner
/// test covers at full size) that is exactly 3 jobs, and no interactive call at all.
#[tokio::test]
async fn a_12000_page_space_goes_through_one_job_per_planned_chunk() {
    let (server, fake) = batchfake::openai(Script {
        polls_to_finish: 2,
        ..Script::default()
    })
    .await;
    let h = Harness::new(taxonomy(""), "openai/gpt-4.1-mini");
    let limits = Limits {
        max_requests: 1000,
        max_bytes: 200 * 1024 * 1024,
    };
    let svc = OpenAiBatch::new(
        settings(format!("{}/v1", server.uri()), "gpt-4.1-mini"),
        h.taxonomy.clone(),
    )
    .unwrap()
    .with_limits(limits);
    let batches = h.batches(12_000, 5);
    let sizes: Vec<usize> = batches
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let pages = b.iter().map(|p| p.text.clone()).collect();
            svc.encode(&BatchRequest {
                key: format!("r{i}"),
                pages,
            })
            .to_string()
            .len()
                + 1
        })
        .collect();
    let planned = backfill::plan(&sizes, limits).len();
    let s = backfill::submit(&svc, &h.ctx(), batches.clone())
        .await
        .unwrap();
    assert_eq!(
        (planned, s.jobs.len(), s.requests, s.pages),
        (3, 3, 2400, 12_000)
    );
    let c = h.collect_all(&svc).await;
    assert_eq!((c.labels.len(), c.retry.len()), (12_000, 0));
    let st = fake.state();
    assert_eq!((st.creates, st.interactive_calls), (3, 0));
    let per_job: Vec<usize> = st.jobs.iter().map(|j| j.requests.len()).collect();
    assert_eq!(per_job, [1000, 1000, 400]);
    drop(st);
    h.assert_cached(&batches, &HashSet::new());
    let listing = {
        let mut out = Vec::new();
        backfill::write_jobs(
            &mut out,
            &h.store.jobs(None).unwrap(),
            h.store.jobs(None).unwrap()[0].created_at + 90,
        )
        .unwrap();
        String::from_utf8(out).unwrap()
    };
    println!("{listing}");
    assert_eq!(listing.matches("succeeded*").count(), 3, "{listing}");
}

/// Batch requests are priced at half the interactive rate in the report model, from what
/// `collect` counted.
#[tokio::test]
async fn batch_tokens_cost_half_in_the_report() {
    use tag_space::report::model::{Prices, ProviderMetrics};
    let (server, _fake) = batchfake::openai(Script {
        polls_to_finish: 1,
        ..Script::default()
    })
    .await;
    let h = Harness::new(taxonomy(""), "openai/gpt-4.1-mini");
    let svc = OpenAiBatch::new(
        settings(format!("{}/v1", server.uri()), "gpt-4.1-mini"),
        h.taxonomy.clone(),
    )
    .unwrap();
    backfill::submit(&svc, &h.ctx(), h.batches(50, 5))
        .await
        .unwrap();
    let c = h.collect_all(&svc).await;
    assert_eq!((c.requests, c.tokens_in, c.tokens_out), (10, 1000, 200));

    let prices = Prices::default();
    let model = Some("gpt-4.1-mini".to_string());
    let mut interactive = ProviderMetrics::new("openai", model.clone());
    interactive.stats.tokens_in = 1_000_000;
    interactive.stats.tokens_out = 1_000_000;
    let mut batch = ProviderMetrics::new("openai", model.clone());
    batch.add_batch(10, 50, 1_000_000, 1_000_000);
    assert_eq!(
        batch.stats.tokens_in, 1_000_000,
        "batch tokens count in the totals"
    );
    let full = prices.cost(&interactive).unwrap();
    assert!(full > 0.0);
    assert_eq!(prices.cost(&batch), Some(full / 2.0));
    // Mixed: half of the tokens through a job.
    let mut mixed = ProviderMetrics::new("openai", model);
    mixed.stats.tokens_in = 500_000;
    mixed.stats.tokens_out = 500_000;
    mixed.add_batch(c.requests, 50, 500_000, 500_000);
    assert_eq!(prices.cost(&mixed), Some(full * 0.75));
}
