//! The pipeline with in-memory fakes: a `MemorySource` for Confluence and a scripted provider.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tag_space::confluence::{Label, MemorySource, Page};
use tag_space::events::Event;
use tag_space::llm::{Answer, LlmError, LlmErrorKind, PageText, Provider, RateLimitHints};
use tag_space::pipeline::{PageOutcome, RunOptions, Status, run};
use tag_space::taxonomy::{Category, Tag, Taxonomy};
use tokio::sync::mpsc::UnboundedReceiver;

pub fn taxonomy() -> Taxonomy {
    let tag = |n: &str| Tag {
        name: n.into(),
        description: format!("about {n}"),
        keywords: vec![],
    };
    Taxonomy::new(
        vec![
            Category {
                name: "type".into(),
                description: "kind".into(),
                max_per_page: 1,
                tags: vec![tag("type-howto"), tag("type-runbook")],
            },
            Category {
                name: "tool".into(),
                description: "tools".into(),
                max_per_page: 3,
                tags: vec![tag("tool-jira"), tag("tool-github")],
            },
        ],
        4,
        "test",
    )
    .unwrap()
}

pub fn page(id: &str, body: &str, labels: Option<&[&str]>) -> Page {
    Page {
        id: id.into(),
        title: format!("Page {id}"),
        version: Some(1),
        body: Some(body.into()),
        labels: labels.map(|ls| ls.iter().map(|l| Label::global(*l)).collect()),
        url: Some(format!("https://wiki.test/pages/{id}")),
    }
}

/// Answers each batch with a function of the batch; records every batch it was asked.
pub struct Scripted<F> {
    answer: F,
    pub calls: Mutex<Vec<Vec<String>>>,
}

impl<F> Scripted<F>
where
    F: Fn(&[PageText]) -> Result<BTreeMap<String, Vec<String>>, LlmError> + Send + Sync,
{
    pub fn new(answer: F) -> Self {
        Self {
            answer,
            calls: Mutex::new(Vec::new()),
        }
    }
    pub fn calls(&self) -> Vec<Vec<String>> {
        self.calls.lock().unwrap().clone()
    }
}

impl<F> Provider for Scripted<F>
where
    F: Fn(&[PageText]) -> Result<BTreeMap<String, Vec<String>>, LlmError> + Send + Sync,
{
    fn name(&self) -> &'static str {
        "scripted"
    }
    async fn classify(&self, batch: &[PageText]) -> Result<Answer, LlmError> {
        self.calls
            .lock()
            .unwrap()
            .push(batch.iter().map(|p| p.id.clone()).collect());
        let labels = (self.answer)(batch)?;
        Ok(Answer {
            provider: "scripted",
            model: "m".into(),
            labels,
            usage: None,
            rate_limits: RateLimitHints::default(),
        })
    }
}

fn labels(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    pairs
        .iter()
        .map(|(id, ls)| (id.to_string(), ls.iter().map(|l| l.to_string()).collect()))
        .collect()
}

fn opts(dry_run: bool) -> RunOptions {
    RunOptions {
        space: "ENG".into(),
        dry_run,
        limit: None,
        batch_size: 2,
        max_batch_chars: 100_000,
        max_page_chars: 1000,
        max_in_flight: 3,
        ..RunOptions::default()
    }
}

async fn run_all<F>(
    source: &MemorySource,
    provider: &Scripted<F>,
    opts: &RunOptions,
) -> (Result<u64, String>, BTreeMap<String, PageOutcome>)
where
    F: Fn(&[PageText]) -> Result<BTreeMap<String, Vec<String>>, LlmError> + Send + Sync,
{
    let mut outcomes = BTreeMap::new();
    let tax = taxonomy();
    let listed = run(source, provider, &tax, opts, |o| {
        assert!(
            outcomes.insert(o.id.clone(), o).is_none(),
            "a page got two outcomes"
        );
    })
    .await
    .map_err(|e| e.to_string());
    (listed, outcomes)
}

/// The total the run told once it would take no more pages (its `ListingEnded` event).
fn listing_total(events: &mut UnboundedReceiver<Event>) -> Option<u64> {
    let mut total = None;
    while let Ok(event) = events.try_recv() {
        if let Event::ListingEnded { total: t } = event {
            total = Some(t);
        }
    }
    total
}

/// Every page answers `type-howto` + `tool-jira`.
fn howto_jira(batch: &[PageText]) -> Result<BTreeMap<String, Vec<String>>, LlmError> {
    Ok(batch
        .iter()
        .map(|p| {
            (
                p.id.clone(),
                vec!["type-howto".to_string(), "tool-jira".to_string()],
            )
        })
        .collect())
}

#[tokio::test]
async fn writes_only_missing_labels_and_never_removes_one() {
    let source = MemorySource::new(
        "ENG",
        vec![
            page("1", "<p>How to file a Jira ticket</p>", None),
            page("2", "<p>More Jira</p>", Some(&["tool-jira", "team-blue"])),
            page(
                "3",
                "<p>Everything there</p>",
                Some(&["type-howto", "tool-jira"]),
            ),
        ],
    );
    let provider = Scripted::new(howto_jira);
    let (listed, out) = run_all(&source, &provider, &opts(false)).await;
    assert_eq!(listed, Ok(3));
    assert_eq!(out["1"].status, Status::Tagged);
    assert_eq!(out["1"].added, ["type-howto", "tool-jira"]);
    assert_eq!(out["2"].status, Status::Tagged);
    assert_eq!(out["2"].added, ["type-howto"]);
    assert_eq!(out["2"].labels_before, ["tool-jira", "team-blue"]);
    assert_eq!(out["3"].status, Status::Unchanged);
    assert_eq!(
        source.writes(),
        [
            (
                "1".to_string(),
                vec!["type-howto".to_string(), "tool-jira".to_string()]
            ),
            ("2".to_string(), vec!["type-howto".to_string()])
        ]
    );
    let names: Vec<String> = source
        .current_labels("2")
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(
        names,
        ["tool-jira", "team-blue", "type-howto"],
        "the person's label stays"
    );
    assert_eq!(provider.calls(), [vec!["1", "2"], vec!["3"]]);
}

#[tokio::test]
async fn dry_run_writes_nothing_and_reports_what_it_would_add() {
    let source = MemorySource::new("ENG", vec![page("1", "<p>text</p>", None)]);
    let provider = Scripted::new(howto_jira);
    let (_, out) = run_all(&source, &provider, &opts(true)).await;
    assert_eq!(out["1"].status, Status::Tagged);
    assert_eq!(out["1"].added, ["type-howto", "tool-jira"]);
    assert!(source.writes().is_empty());
}

#[tokio::test]
async fn a_page_given_no_label_is_its_own_outcome_in_every_report() {
    use tag_space::report::model::{Mode, RunInfo, RunReport};
    let source = MemorySource::new(
        "ENG",
        vec![
            page("1", "<p>lunch menu</p>", None),
            page("2", "<p>done</p>", Some(&["type-howto", "tool-jira"])),
        ],
    );
    let provider = Scripted::new(|batch: &[PageText]| {
        Ok(batch
            .iter()
            .map(|p| {
                let labels = if p.id == "1" {
                    vec![]
                } else {
                    vec!["type-howto".to_string(), "tool-jira".to_string()]
                };
                (p.id.clone(), labels)
            })
            .collect())
    });
    let (_, out) = run_all(&source, &provider, &opts(false)).await;
    assert_eq!(out["1"].status, Status::NoLabel);
    assert_eq!(out["2"].status, Status::Unchanged);

    let args =
        <tag_space::cli::Args as clap::Parser>::try_parse_from(["tag-space", "--demo"]).unwrap();
    let config = tag_space::config::Config::from_sources(&args, |_| None).unwrap();
    let mut report = RunReport::new(
        RunInfo::new("ENG", Mode::Add, false, std::time::SystemTime::UNIX_EPOCH),
        tag_space::app::report_settings(&config, "fp"),
    );
    for o in out.values() {
        report.record(o);
    }
    assert_eq!(
        (report.counts().no_label, report.counts().unchanged),
        (1, 1)
    );
    let json = tag_space::report::json::to_json_value(&report);
    assert_eq!(json["metrics"]["pages"]["no_label"], 1);
    assert_eq!(json["pages"][0]["status"], "no_label");
    let mut line = Vec::new();
    tag_space::report::write_page_line(&mut line, &out["1"], false).unwrap();
    assert!(
        String::from_utf8(line)
            .unwrap()
            .starts_with("no label   1 ")
    );
    let mut table = Vec::new();
    tag_space::report::table::write_metrics_table(&mut table, &report, false).unwrap();
    let table = String::from_utf8(table).unwrap();
    assert!(table.contains("| no label |"), "{table}");
    let mut md = Vec::new();
    tag_space::report::markdown::write_markdown(&mut md, &report, &Default::default()).unwrap();
    let md = String::from_utf8(md).unwrap();
    assert!(
        md.contains("1 unchanged, 1 with no label that fits"),
        "{md}"
    );
}

#[tokio::test]
async fn a_page_without_text_is_skipped_and_never_sent() {
    let source = MemorySource::new(
        "ENG",
        vec![
            page("1", "<p>text</p>", None),
            page("2", "<p> </p><ac:structured-macro ac:name=\"toc\"/>", None),
            page("3", "", None),
        ],
    );
    let provider = Scripted::new(howto_jira);
    let (_, out) = run_all(&source, &provider, &opts(false)).await;
    assert_eq!(out["2"].status, Status::Skipped);
    assert_eq!(out["3"].status, Status::Skipped);
    assert_eq!(provider.calls(), [vec!["1"]]);
}

#[tokio::test]
async fn a_page_left_out_of_the_answer_is_asked_for_alone() {
    let source = MemorySource::new(
        "ENG",
        vec![page("1", "<p>a</p>", None), page("2", "<p>b</p>", None)],
    );
    // The batch answer forgets page 2; asked alone, it answers.
    let provider = Scripted::new(|batch: &[PageText]| {
        Ok(if batch.len() == 2 {
            labels(&[("1", &["tool-github"])])
        } else {
            labels(&[("2", &["type-runbook"])])
        })
    });
    let (_, out) = run_all(&source, &provider, &opts(false)).await;
    assert_eq!(out["1"].added, ["tool-github"]);
    assert_eq!(out["2"].added, ["type-runbook"]);
    assert_eq!(provider.calls(), [vec!["1", "2"], vec!["2"]]);
}

#[tokio::test]
async fn a_page_left_out_twice_fails_alone() {
    let source = MemorySource::new(
        "ENG",
        vec![page("1", "<p>a</p>", None), page("2", "<p>b</p>", None)],
    );
    let provider = Scripted::new(|_: &[PageText]| Ok(labels(&[("1", &["tool-github"])])));
    let (_, out) = run_all(&source, &provider, &opts(false)).await;
    assert_eq!(out["1"].status, Status::Tagged);
    assert_eq!(out["2"].status, Status::Failed);
    assert!(
        out["2"]
            .reason
            .as_deref()
            .unwrap()
            .contains("left this page out")
    );
}

#[tokio::test]
async fn off_taxonomy_tags_and_unknown_ids_never_reach_confluence() {
    let source = MemorySource::new("ENG", vec![page("1", "<p>a</p>", None)]);
    let provider = Scripted::new(|_: &[PageText]| {
        Ok(labels(&[
            ("1", &["tool-jira", "urgent", "Tool-GitHub; drop table"]),
            ("999", &["tool-jira"]),
        ]))
    });
    let (_, out) = run_all(&source, &provider, &opts(false)).await;
    assert_eq!(out["1"].added, ["tool-jira"]);
    assert_eq!(
        source.writes(),
        [("1".to_string(), vec!["tool-jira".to_string()])]
    );
    assert_eq!(out.len(), 1);
}

#[tokio::test]
async fn a_failed_batch_fails_its_pages_and_the_run_goes_on() {
    let source = MemorySource::new(
        "ENG",
        vec![
            page("1", "<p>a</p>", None),
            page("2", "<p>b</p>", None),
            page("3", "<p>c</p>", None),
        ],
    );
    let provider = Scripted::new(|batch: &[PageText]| {
        if batch.iter().any(|p| p.id == "1") {
            Err(LlmError::new(
                "scripted",
                LlmErrorKind::BadAnswer,
                Some(200),
                "finishReason SAFETY",
            ))
        } else {
            howto_jira(batch)
        }
    });
    let (listed, out) = run_all(&source, &provider, &opts(false)).await;
    assert_eq!(listed, Ok(3));
    assert_eq!(out["1"].status, Status::Failed);
    assert_eq!(out["2"].status, Status::Failed);
    assert!(out["1"].reason.as_deref().unwrap().contains("SAFETY"));
    assert_eq!(out["3"].status, Status::Tagged);
}

#[tokio::test]
async fn limit_stops_the_listing() {
    let pages = (1..=20)
        .map(|i| page(&i.to_string(), "<p>x</p>", None))
        .collect();
    let source = MemorySource::new("ENG", pages);
    let provider = Scripted::new(howto_jira);
    let mut o = opts(true);
    o.limit = Some(5);
    let mut events = o.events.subscribe();
    let (_, out) = run_all(&source, &provider, &o).await;
    assert_eq!(out.len(), 5);
    let asked: usize = provider.calls().iter().map(Vec::len).sum();
    assert_eq!(asked, 5);
    assert_eq!(
        listing_total(&mut events),
        Some(5),
        "the progress total is what was taken"
    );
}

#[tokio::test]
async fn an_unknown_space_is_an_error() {
    let source = MemorySource::new("ENG", vec![page("1", "<p>a</p>", None)]);
    let provider = Scripted::new(howto_jira);
    let mut o = opts(false);
    o.space = "NOPE".into();
    let (listed, out) = run_all(&source, &provider, &o).await;
    assert!(listed.unwrap_err().contains("space 'NOPE' was not found"));
    assert!(out.is_empty());
    assert!(provider.calls().is_empty());
}

#[tokio::test]
async fn a_label_write_that_fails_fails_only_that_page() {
    // A page with known labels whose id the source does not know: the write gets a 404,
    // as it would for a page deleted between listing and labelling.
    let source = MemorySource::new("ENG", vec![page("1", "<p>a</p>", None)]);
    struct Gone<'a>(&'a MemorySource, Page);
    impl tag_space::confluence::PageSource for Gone<'_> {
        async fn stream_pages(
            &self,
            key: &str,
            tx: tokio::sync::mpsc::Sender<Page>,
        ) -> Result<u64, tag_space::confluence::ConfluenceError> {
            tx.send(self.1.clone()).await.ok();
            self.0.stream_pages(key, tx).await.map(|n| n + 1)
        }
        async fn labels(
            &self,
            id: &str,
        ) -> Result<Vec<Label>, tag_space::confluence::ConfluenceError> {
            self.0.labels(id).await
        }
        async fn pages_with_label(
            &self,
            key: &str,
            name: &str,
        ) -> Result<std::collections::HashSet<String>, tag_space::confluence::ConfluenceError>
        {
            self.0.pages_with_label(key, name).await
        }
        async fn add_labels(
            &self,
            id: &str,
            names: &[String],
        ) -> Result<(), tag_space::confluence::ConfluenceError> {
            self.0.add_labels(id, names).await
        }
        async fn remove_label(
            &self,
            id: &str,
            name: &str,
        ) -> Result<(), tag_space::confluence::ConfluenceError> {
            self.0.remove_label(id, name).await
        }
    }
    let gone = Gone(&source, page("404", "<p>deleted meanwhile</p>", Some(&[])));
    let provider = Scripted::new(howto_jira);
    let tax = taxonomy();
    let mut out = BTreeMap::new();
    let listed = run(&gone, &provider, &tax, &opts(false), |o| {
        out.insert(o.id.clone(), o);
    })
    .await
    .unwrap();
    assert_eq!(listed, 2);
    assert_eq!(out["404"].status, Status::Failed);
    assert!(out["404"].reason.as_deref().unwrap().contains("HTTP 404"));
    assert_eq!(out["1"].status, Status::Tagged);
}

#[tokio::test]
async fn limit_counts_pages_sent_for_classification_not_skipped_ones() {
    let source = MemorySource::new(
        "ENG",
        vec![
            page("1", "<p>a</p>", None),
            page("2", "", None),
            page("3", "<p>c</p>", None),
        ],
    );
    let provider = Scripted::new(howto_jira);
    let mut o = opts(false);
    o.batch_size = 5;
    o.limit = Some(2);
    let mut events = o.events.subscribe();
    let (_, out) = run_all(&source, &provider, &o).await;
    // The empty page 2 is skipped without counting: pages 1 and 3 are classified.
    assert_eq!(out.len(), 3);
    assert_eq!(out["1"].status, Status::Tagged);
    assert_eq!(out["2"].status, Status::Skipped);
    assert_eq!(out["3"].status, Status::Tagged);
    assert_eq!(provider.calls().concat(), ["1", "3"], "one batch, finished");
    assert_eq!(listing_total(&mut events), Some(3));
}

/// A provider that takes `delay` (tokio time) per call.
struct Slow(std::time::Duration, Mutex<u32>);

impl Provider for Slow {
    fn name(&self) -> &'static str {
        "slow"
    }
    async fn classify(&self, batch: &[PageText]) -> Result<Answer, LlmError> {
        *self.1.lock().unwrap() += 1;
        tokio::time::sleep(self.0).await;
        Ok(Answer {
            provider: "slow",
            model: "m".into(),
            labels: howto_jira(batch)?,
            usage: None,
            rate_limits: RateLimitHints::default(),
        })
    }
}

async fn run_cancelled_after(
    delay: std::time::Duration,
    grace: std::time::Duration,
) -> (BTreeMap<String, PageOutcome>, u32, std::time::Duration) {
    let pages = (1..=40)
        .map(|i| page(&i.to_string(), "<p>x</p>", None))
        .collect();
    let source = MemorySource::new("ENG", pages);
    let provider = Slow(delay, Mutex::new(0));
    let tax = taxonomy();
    let mut o = opts(false);
    o.max_in_flight = 2;
    o.grace = grace;
    let cancel = o.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        cancel.cancel();
    });
    let started = tokio::time::Instant::now();
    let mut out = BTreeMap::new();
    run(&source, &provider, &tax, &o, |o| {
        out.insert(o.id.clone(), o);
    })
    .await
    .unwrap();
    let calls = *provider.1.lock().unwrap();
    (out, calls, started.elapsed())
}

#[tokio::test(start_paused = true)]
async fn interruption_lets_in_flight_batches_finish_and_takes_no_new_work() {
    // Two batches of 2 start at t=0 and take 2 s; the interruption comes at 0.5 s; the grace
    // (5 s) is long enough: both finish, nothing else starts.
    let (out, calls, elapsed) = run_cancelled_after(
        std::time::Duration::from_secs(2),
        std::time::Duration::from_secs(5),
    )
    .await;
    assert_eq!(calls, 2);
    assert_eq!(out.len(), 4);
    assert!(out.values().all(|o| o.status == Status::Tagged));
    assert_eq!(elapsed, std::time::Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn interruption_abandons_batches_that_outlast_the_grace() {
    let (out, calls, elapsed) = run_cancelled_after(
        std::time::Duration::from_secs(60),
        std::time::Duration::from_secs(5),
    )
    .await;
    assert_eq!(calls, 2);
    assert!(out.is_empty());
    assert_eq!(elapsed, std::time::Duration::from_millis(5500));
}

// ---- with the state file: cache, ledger, --sync ---------------------------------------------

mod with_state {
    use super::*;
    use std::sync::Arc;
    use tag_space::cache::{RunCounters, RunMode, Setup, Store, StoreOptions};
    use tag_space::pipeline::{CACHE_PROVIDER, RunState, UNCHANGED_SINCE_LAST_RUN};

    /// One run as a separate process would do it: opens the file, begins, runs, finishes.
    async fn run_with_state<P: Provider>(
        db: &std::path::Path,
        source: &MemorySource,
        provider: &P,
        read: bool,
        dry_run: bool,
        sync: bool,
    ) -> (BTreeMap<String, PageOutcome>, RunCounters) {
        let (out, counters, _) =
            run_with_state_limited(db, source, provider, read, dry_run, sync, None).await;
        (out, counters)
    }

    /// [`run_with_state`] with a `--limit`; also returns the total the progress line got.
    async fn run_with_state_limited<P: Provider>(
        db: &std::path::Path,
        source: &MemorySource,
        provider: &P,
        read: bool,
        dry_run: bool,
        sync: bool,
        limit: Option<u64>,
    ) -> (BTreeMap<String, PageOutcome>, RunCounters, Option<u64>) {
        let store = Arc::new(
            Store::open(
                db,
                StoreOptions {
                    read,
                    ..StoreOptions::default()
                },
            )
            .unwrap(),
        );
        let mode = if sync { RunMode::Sync } else { RunMode::Add };
        let tax = taxonomy();
        let st = RunState {
            run: store.begin_run("ENG", mode, dry_run).unwrap(),
            store: store.clone(),
            setup: Setup::new(
                tax.fingerprint(),
                tag_space::llm::prompt::PROMPT_VERSION,
                "gemini/test",
            ),
        };
        let mut o = opts(dry_run);
        o.state = Some(st.clone());
        o.sync = sync;
        o.limit = limit;
        let mut out = BTreeMap::new();
        let mut events = o.events.subscribe();
        run(source, provider, &tax, &o, |p| {
            assert!(out.insert(p.id.clone(), p).is_none(), "two outcomes");
        })
        .await
        .unwrap();
        let counters = store.finish_run(&st.run).unwrap();
        (out, counters, listing_total(&mut events))
    }

    #[tokio::test]
    async fn a_nightly_limit_run_moves_on_to_the_next_pages() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let source = space(8, false);
        let mut done = 0;
        for (night, want) in [&["1", "2", "3"][..], &["4", "5", "6"], &["7", "8"]]
            .into_iter()
            .enumerate()
        {
            let provider = Scripted::new(howto_jira);
            let (out, c, total) =
                run_with_state_limited(&db, &source, &provider, true, false, false, Some(3)).await;
            let mut asked: Vec<String> = provider.calls().concat();
            asked.sort();
            assert_eq!(asked, want, "night {night}");
            // The pages finished on earlier nights are passed over, and do not count.
            assert_eq!(c.skipped_unchanged, done, "night {night}");
            done += want.len() as u64;
            // The progress total is what the run took: never the limit alone.
            assert_eq!(total, Some(out.len() as u64), "night {night}");
            assert_eq!(out.len() as u64, done.min(8), "night {night}");
        }
    }

    fn space(n: usize, labels_listed: bool) -> MemorySource {
        let pages = (1..=n)
            .map(|i| {
                page(
                    &i.to_string(),
                    &format!("<p>Page {i} text</p>"),
                    labels_listed.then_some(&[][..]),
                )
            })
            .collect();
        MemorySource::new("ENG", pages)
    }

    fn names(source: &MemorySource, id: &str) -> Vec<String> {
        let mut v: Vec<String> = source
            .current_labels(id)
            .into_iter()
            .map(|l| l.name)
            .collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn a_second_run_over_an_unchanged_space_asks_nothing_and_writes_nothing() {
        for labels_listed in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let db = dir.path().join("state.db");
            let source = space(6, labels_listed);
            let first = Scripted::new(howto_jira);
            let (out, c) = run_with_state(&db, &source, &first, true, false, false).await;
            assert!(out.values().all(|o| o.status == Status::Tagged));
            assert_eq!((c.misses, c.skipped_unchanged, c.calls), (6, 0, 3));
            let writes = source.writes().len();
            assert_eq!(writes, 6);

            let second = Scripted::new(howto_jira);
            let (out, c) = run_with_state(&db, &source, &second, true, false, false).await;
            assert!(second.calls().is_empty(), "asked the model again");
            assert_eq!(source.writes().len(), writes, "wrote a label again");
            assert_eq!(c.skipped_unchanged, 6);
            // Skipped before extraction: not even a cache lookup was made.
            assert_eq!((c.hits, c.misses, c.calls), (0, 0, 0));
            for o in out.values() {
                assert_eq!(o.status, Status::Unchanged);
                assert_eq!(o.reason.as_deref(), Some(UNCHANGED_SINCE_LAST_RUN));
            }
        }
    }

    #[tokio::test]
    async fn only_edited_pages_are_classified_again() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let source = space(8, false);
        run_with_state(&db, &source, &Scripted::new(howto_jira), true, false, false).await;
        source.edit_page("3", "<p>Page 3, rewritten</p>");
        source.edit_page("7", "<p>Page 7, rewritten</p>");
        let provider = Scripted::new(howto_jira);
        let (out, c) = run_with_state(&db, &source, &provider, true, false, false).await;
        let mut asked: Vec<String> = provider.calls().concat();
        asked.sort();
        assert_eq!(asked, ["3", "7"]);
        assert_eq!(c.skipped_unchanged, 6);
        // Same labels chosen, already on the pages: nothing written.
        assert_eq!(out["3"].status, Status::Unchanged);
        assert_eq!(source.writes().len(), 8);
    }

    #[tokio::test]
    async fn a_dry_run_fills_the_cache_but_never_lets_a_real_run_skip_a_page() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let source = space(4, false);
        let (out, _) =
            run_with_state(&db, &source, &Scripted::new(howto_jira), true, true, false).await;
        assert!(out.values().all(|o| o.status == Status::Tagged));
        assert!(source.writes().is_empty());

        // The real run finds every answer in the cache (no model call) and writes every page.
        let provider = Scripted::new(howto_jira);
        let (out, c) = run_with_state(&db, &source, &provider, true, false, false).await;
        assert!(provider.calls().is_empty());
        assert_eq!((c.hits, c.misses, c.skipped_unchanged), (4, 0, 0));
        assert_eq!(source.writes().len(), 4);
        for o in out.values() {
            assert_eq!(o.status, Status::Tagged);
            assert_eq!(o.provider.map(|p| p.name()), Some(CACHE_PROVIDER));
            assert_eq!(o.added, ["type-howto", "tool-jira"]);
        }
    }

    #[tokio::test]
    async fn no_cache_asks_the_model_for_every_page_but_writes_nothing_twice() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let source = space(4, false);
        run_with_state(&db, &source, &Scripted::new(howto_jira), true, false, false).await;
        let provider = Scripted::new(howto_jira);
        let (out, c) = run_with_state(&db, &source, &provider, false, false, false).await;
        assert_eq!(
            provider.calls().concat().len(),
            4,
            "--no-cache must ask again"
        );
        assert_eq!((c.hits, c.skipped_unchanged), (0, 0));
        assert!(out.values().all(|o| o.status == Status::Unchanged));
        assert_eq!(source.writes().len(), 4);
        // Its answers were stored: a normal run after it finds them... and skips anyway.
        let provider = Scripted::new(howto_jira);
        let (_, c) = run_with_state(&db, &source, &provider, true, false, false).await;
        assert!(provider.calls().is_empty());
        assert_eq!(c.skipped_unchanged, 4);
    }

    /// Chooses `type-runbook` for every page.
    fn runbook(batch: &[PageText]) -> Result<BTreeMap<String, Vec<String>>, LlmError> {
        Ok(batch
            .iter()
            .map(|p| (p.id.clone(), vec!["type-runbook".to_string()]))
            .collect())
    }

    #[tokio::test]
    async fn sync_removes_only_what_tag_space_added_and_never_a_persons_label() {
        for sync in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let db = dir.path().join("state.db");
            let source = MemorySource::new(
                "ENG",
                vec![page("1", "<p>How to use Jira</p>", Some(&["team-blue"]))],
            );
            run_with_state(&db, &source, &Scripted::new(howto_jira), true, false, sync).await;
            assert_eq!(
                names(&source, "1"),
                ["team-blue", "tool-jira", "type-howto"]
            );
            // A person adds a taxonomy tag tag-space will not choose, then the page changes
            // and the model now chooses something else.
            source.set_labels(
                "1",
                &["team-blue", "tool-jira", "type-howto", "tool-github"],
            );
            source.edit_page("1", "<p>Runbook: restart the service</p>");
            let (out, _) =
                run_with_state(&db, &source, &Scripted::new(runbook), true, false, sync).await;
            if sync {
                let mut removed = source.removals();
                removed.sort();
                assert_eq!(
                    removed,
                    [
                        ("1".to_string(), "tool-jira".to_string()),
                        ("1".to_string(), "type-howto".to_string())
                    ]
                );
                assert_eq!(
                    names(&source, "1"),
                    ["team-blue", "tool-github", "type-runbook"]
                );
                assert_eq!(out["1"].status, Status::Tagged);
                assert_eq!(out["1"].added, ["type-runbook"]);
                let mut gone = out["1"].removed.clone();
                gone.sort();
                assert_eq!(gone, ["tool-jira", "type-howto"]);
                assert_eq!(out["1"].reason, None);
            } else {
                assert!(source.removals().is_empty(), "add-only removed a label");
                assert_eq!(
                    names(&source, "1"),
                    [
                        "team-blue",
                        "tool-github",
                        "tool-jira",
                        "type-howto",
                        "type-runbook"
                    ]
                );
            }
            // Run again unchanged: nothing more happens.
            let provider = Scripted::new(runbook);
            let writes = (source.writes().len(), source.removals().len());
            run_with_state(&db, &source, &provider, true, false, sync).await;
            assert!(provider.calls().is_empty());
            assert_eq!((source.writes().len(), source.removals().len()), writes);
        }
    }

    #[tokio::test]
    async fn a_sync_dry_run_removes_nothing_and_records_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let source = MemorySource::new("ENG", vec![page("1", "<p>a</p>", None)]);
        run_with_state(&db, &source, &Scripted::new(howto_jira), true, false, false).await;
        source.edit_page("1", "<p>b</p>");
        let (out, _) =
            run_with_state(&db, &source, &Scripted::new(runbook), true, true, true).await;
        assert!(source.removals().is_empty());
        assert_eq!(out["1"].added, ["type-runbook"]);
        let mut would_remove = out["1"].removed.clone();
        would_remove.sort();
        assert_eq!(would_remove, ["tool-jira", "type-howto"]);
        // The real sync run after it still does the work.
        run_with_state(&db, &source, &Scripted::new(runbook), true, false, true).await;
        assert_eq!(source.removals().len(), 2);
        assert_eq!(names(&source, "1"), ["type-runbook"]);
    }

    #[tokio::test]
    async fn a_label_a_person_removed_is_not_put_back() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let source = MemorySource::new("ENG", vec![page("1", "<p>a</p>", None)]);
        run_with_state(&db, &source, &Scripted::new(howto_jira), true, false, false).await;
        source.set_labels("1", &["type-howto"]);
        source.edit_page("1", "<p>a, edited</p>");
        let (out, _) =
            run_with_state(&db, &source, &Scripted::new(howto_jira), true, false, false).await;
        assert_eq!(out["1"].status, Status::Unchanged);
        assert_eq!(names(&source, "1"), ["type-howto"]);
        assert_eq!(source.writes().len(), 1);
    }

    /// Answers as the offline rules provider would, as a fallback.
    struct RulesFallback(Mutex<u32>);
    impl Provider for RulesFallback {
        fn name(&self) -> &'static str {
            "chain"
        }
        async fn classify(&self, batch: &[PageText]) -> Result<Answer, LlmError> {
            *self.0.lock().unwrap() += 1;
            Ok(Answer {
                provider: "rules",
                model: "keywords".into(),
                labels: howto_jira(batch)?,
                usage: None,
                rate_limits: RateLimitHints::default(),
            })
        }
    }

    #[tokio::test]
    async fn a_rules_stop_gap_answer_is_applied_but_the_llm_is_asked_next_time() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let source = MemorySource::new("ENG", vec![page("1", "<p>a</p>", None)]);
        let rules = RulesFallback(Mutex::new(0));
        let (out, c) = run_with_state(&db, &source, &rules, true, false, false).await;
        assert_eq!(out["1"].status, Status::Tagged);
        assert_eq!(c.calls, 1);
        // Not cached, not finished under the primary: the next run asks again.
        let provider = Scripted::new(runbook);
        let (out, c) = run_with_state(&db, &source, &provider, true, false, false).await;
        assert_eq!(provider.calls(), [vec!["1"]]);
        assert_eq!((c.hits, c.skipped_unchanged), (0, 0));
        assert_eq!(out["1"].added, ["type-runbook"]);
        // And now the primary's answer is the one kept.
        let provider = Scripted::new(runbook);
        run_with_state(&db, &source, &provider, true, false, false).await;
        assert!(provider.calls().is_empty());
    }

    #[tokio::test]
    async fn a_broken_state_file_mid_run_fails_pages_without_writing_labels() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let source = space(2, false);
        let store = Arc::new(Store::open(&db, StoreOptions::default()).unwrap());
        let tax = taxonomy();
        let st = RunState {
            run: store.begin_run("ENG", RunMode::Add, false).unwrap(),
            store: store.clone(),
            setup: Setup::new(tax.fingerprint(), "p", "gemini/test"),
        };
        // Another connection drops the ledger's table: every ledger call now fails.
        let other = rusqlite_drop_labels(&db);
        assert!(other, "could not break the file");
        let mut o = opts(false);
        o.state = Some(st);
        let mut out = BTreeMap::new();
        run(&source, &Scripted::new(howto_jira), &tax, &o, |p| {
            out.insert(p.id.clone(), p);
        })
        .await
        .unwrap();
        assert!(
            out.values().all(|o| o.status == Status::Failed
                && o.reason.as_deref().unwrap_or("").contains("state.db")),
            "{out:?}"
        );
        assert!(
            source.writes().is_empty(),
            "wrote a label without its intent on disk"
        );
    }

    fn rusqlite_drop_labels(db: &std::path::Path) -> bool {
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.execute_batch("DROP TABLE labels").is_ok()
    }
}
