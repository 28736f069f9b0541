//! A crash between a job's create call and its recording: the job is found again by its
//! display name (Gemini) or metadata (OpenAI), never created twice; a create that never left
//! is sent again once. Against the fakes in `batchfake.rs` on 127.0.0.1.

use serde_json::Value;
use tag_space::backfill;
use tag_space::llm::batch::{
    BatchError, BatchRequest, BatchService, GeminiBatch, JobResults, JobStatus, Limits, OpenAiBatch,
};
use tag_space::llm::{LlmError, LlmErrorKind};

use super::batch::{Harness, settings, taxonomy};
use super::batchfake::{self, Script};

/// A service whose create reaches the provider and then never returns (the process is
/// killed there), or whose answer is lost (`Transport`), or that fails before sending.
struct Crashing<S> {
    inner: S,
    mode: Crash,
    created: tokio::sync::Notify,
}

#[derive(Clone, Copy, PartialEq)]
enum Crash {
    KilledAfterCreate,
    AnswerLost,
    NeverSent,
}

impl<S: BatchService> BatchService for Crashing<S> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn model(&self) -> &str {
        self.inner.model()
    }
    fn limits(&self) -> Limits {
        self.inner.limits()
    }
    fn encode(&self, request: &BatchRequest) -> Value {
        self.inner.encode(request)
    }
    async fn create(&self, name: &str, lines: &[Value]) -> Result<JobStatus, BatchError> {
        let lost = || {
            BatchError::Create(LlmError::new(
                self.name(),
                LlmErrorKind::Transport,
                None,
                "connection reset",
            ))
        };
        match self.mode {
            Crash::NeverSent => Err(lost()),
            Crash::AnswerLost => {
                self.inner.create(name, lines).await?;
                Err(lost())
            }
            Crash::KilledAfterCreate => {
                self.inner.create(name, lines).await?;
                self.created.notify_one();
                std::future::pending().await
            }
        }
    }
    async fn find(&self, name: &str) -> Result<Option<JobStatus>, BatchError> {
        self.inner.find(name).await
    }
    async fn status(&self, id: &str) -> Result<JobStatus, BatchError> {
        self.inner.status(id).await
    }
    async fn results(&self, id: &str) -> Result<JobResults, BatchError> {
        self.inner.results(id).await
    }
    async fn cancel(&self, id: &str) -> Result<JobStatus, BatchError> {
        self.inner.cancel(id).await
    }
}

#[tokio::test]
async fn a_kill_between_create_and_recording_finds_the_job_again_instead_of_creating_another() {
    let (server, fake) = batchfake::gemini(Script::default()).await;
    let h = Harness::new(taxonomy(""), "gemini/gemini-2.5-flash");
    let svc = || {
        GeminiBatch::new(
            settings(server.uri(), "gemini-2.5-flash"),
            h.taxonomy.clone(),
        )
        .unwrap()
    };
    let crashing = Crashing {
        inner: svc(),
        mode: Crash::KilledAfterCreate,
        created: tokio::sync::Notify::new(),
    };
    let batches = h.batches(10, 5);
    let ctx = h.ctx();
    tokio::select! {
        _ = backfill::submit(&crashing, &ctx, batches.clone()) => panic!("the create never returns"),
        _ = crashing.created.notified() => {} // the submit future is dropped here: the "kill"
    }
    let job = &h.store.jobs(None).unwrap()[0];
    assert_eq!(
        (job.state.as_str(), job.job_id.as_deref()),
        ("creating", None)
    );

    // The next run submits the same pages: the lost job is found by name, nothing is sent.
    let s = backfill::submit(&svc(), &h.ctx(), batches.clone())
        .await
        .unwrap();
    assert_eq!((s.found_again, s.jobs.len(), s.already_pending), (1, 0, 10));
    assert_eq!(fake.state().creates, 1);
    let job = &h.store.jobs(None).unwrap()[0];
    assert_eq!(job.job_id.as_deref(), Some("batches/b0"));
    let c = h.collect_all(&svc()).await;
    assert_eq!(c.labels.len(), 10);
}

#[tokio::test]
async fn a_lost_create_answer_is_looked_up_and_a_create_that_never_left_is_sent_again() {
    let (server, fake) = batchfake::openai(Script::default()).await;
    let h = Harness::new(taxonomy(""), "openai/gpt-4.1-mini");
    let base = format!("{}/v1", server.uri());
    let svc =
        || OpenAiBatch::new(settings(base.clone(), "gpt-4.1-mini"), h.taxonomy.clone()).unwrap();
    let batches = h.batches(10, 5);

    let lost = Crashing {
        inner: svc(),
        mode: Crash::AnswerLost,
        created: tokio::sync::Notify::new(),
    };
    let err = backfill::submit(&lost, &h.ctx(), batches.clone())
        .await
        .unwrap_err();
    assert!(
        format!("{err}").starts_with("batch job tag-space-ENG-"),
        "{err}"
    );
    let s = backfill::collect(&svc(), &h.ctx(), &h.run, &h.taxonomy)
        .await
        .unwrap();
    assert_eq!(s.running.len(), 1, "found by metadata and polled");
    assert_eq!(fake.state().creates, 1);

    // A create that failed before reaching the service: not found, so sent again once.
    let (server2, fake2) = batchfake::openai(Script::default()).await;
    let h2 = Harness::new(taxonomy(""), "openai/gpt-4.1-mini");
    let svc2 = || {
        OpenAiBatch::new(
            settings(format!("{}/v1", server2.uri()), "gpt-4.1-mini"),
            h2.taxonomy.clone(),
        )
        .unwrap()
    };
    let never = Crashing {
        inner: svc2(),
        mode: Crash::NeverSent,
        created: tokio::sync::Notify::new(),
    };
    backfill::submit(&never, &h2.ctx(), batches.clone())
        .await
        .unwrap_err();
    let s = backfill::submit(&svc2(), &h2.ctx(), batches).await.unwrap();
    assert_eq!((s.found_again, s.jobs.len(), s.pages), (0, 1, 10));
    assert_eq!(fake2.state().creates, 1);
    let states: Vec<String> = h2
        .store
        .jobs(None)
        .unwrap()
        .into_iter()
        .map(|j| j.state)
        .collect();
    assert_eq!(states, ["pending", "not_created"]);
}
