//! The pipeline with in-memory fakes: a `MemorySource` for Confluence and a scripted provider.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tag_space::confluence::{Label, MemorySource, Page};
use tag_space::llm::{Answer, LlmError, LlmErrorKind, PageText, Provider, RateLimitHints};
use tag_space::pipeline::{PageOutcome, RunOptions, Status, run};
use tag_space::taxonomy::{Category, Tag, Taxonomy};

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
        body: body.into(),
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
    let (_, out) = run_all(&source, &provider, &o).await;
    assert_eq!(out.len(), 5);
    let asked: usize = provider.calls().iter().map(Vec::len).sum();
    assert_eq!(asked, 5);
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
async fn limit_landing_on_a_skipped_page_still_finishes_the_pending_batch() {
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
    let (_, out) = run_all(&source, &provider, &o).await;
    assert_eq!(out.len(), 2);
    assert_eq!(out["1"].status, Status::Tagged);
    assert_eq!(out["2"].status, Status::Skipped);
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
