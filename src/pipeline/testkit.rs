//! What the stages' unit tests share: the in-memory source, a scripted provider, a small
//! taxonomy, and (optionally) a state file in a temporary directory.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Ctx, RunOptions, RunState};
use crate::cache::{RunMode, Setup, Store, StoreOptions};
use crate::confluence::{Label, MemorySource, Page};
use crate::llm::{Answer, LlmError, LlmErrorKind, PageText, Provider, RateLimitHints};
use crate::taxonomy::{Category, Tag, Taxonomy};

/// A page with text, as listed with no labels.
pub fn page(id: &str, body: &str) -> Page {
    Page {
        id: id.into(),
        title: format!("Page {id}"),
        version: Some(1),
        body: Some(body.into()),
        labels: Some(Vec::new()),
        url: None,
    }
}

/// A page about Jira, listed with `labels`.
pub fn labelled(id: &str, labels: &[&str]) -> Page {
    Page {
        labels: Some(labels.iter().map(|l| Label::global(*l)).collect()),
        ..page(id, "<p>How to file a Jira ticket</p>")
    }
}

/// Answers `type-howto` for every page, as the provider named `answer_as`; can leave one page
/// out of every answer, or fail every call.
pub struct Script {
    answer_as: &'static str,
    leave_out: Option<String>,
    fail: bool,
    /// How long each call takes (tokio time).
    delay: Duration,
    calls: Mutex<Vec<usize>>,
}

impl Provider for Script {
    fn name(&self) -> &'static str {
        "scripted"
    }

    async fn classify(&self, batch: &[PageText]) -> Result<Answer, LlmError> {
        self.calls.lock().unwrap().push(batch.len());
        tokio::time::sleep(self.delay).await;
        if self.fail {
            let kind = LlmErrorKind::Overloaded { retry_after: None };
            return Err(LlmError::new("scripted", kind, Some(503), "overloaded"));
        }
        let labels: BTreeMap<String, Vec<String>> = batch
            .iter()
            .filter(|p| self.leave_out.as_deref() != Some(p.id.as_str()))
            .map(|p| (p.id.clone(), vec!["type-howto".to_string()]))
            .collect();
        Ok(Answer {
            provider: self.answer_as,
            model: "m".into(),
            labels,
            usage: None,
            rate_limits: RateLimitHints::default(),
        })
    }
}

pub struct Kit {
    pub source: MemorySource,
    pub provider: Script,
    pub taxonomy: Taxonomy,
    pub opts: RunOptions,
    _dir: Option<tempfile::TempDir>,
}

impl Kit {
    /// No state file.
    pub fn new(pages: Vec<Page>) -> Self {
        let taxonomy = taxonomy();
        Self {
            source: MemorySource::new("ENG", pages),
            provider: Script {
                answer_as: "scripted",
                leave_out: None,
                fail: false,
                delay: Duration::ZERO,
                calls: Mutex::new(Vec::new()),
            },
            taxonomy,
            opts: RunOptions {
                space: "ENG".into(),
                batch_size: 10,
                max_batch_chars: 100_000,
                max_page_chars: 1000,
                max_in_flight: 2,
                ..RunOptions::default()
            },
            _dir: None,
        }
    }

    /// With a fresh state file, as a run with an LLM primary opens it.
    pub fn with_state(pages: Vec<Page>) -> Self {
        let mut kit = Self::new(pages);
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("state.db"), StoreOptions::default()).unwrap();
        kit.opts.state = Some(RunState {
            run: store.begin_run("ENG", RunMode::Add, false).unwrap(),
            store: Arc::new(store),
            setup: Setup::new(
                kit.taxonomy.fingerprint(),
                crate::llm::prompt::PROMPT_VERSION,
                "gemini/test",
            ),
        });
        kit._dir = Some(dir);
        kit
    }

    pub fn leaving_out(mut self, id: &str) -> Self {
        self.provider.leave_out = Some(id.into());
        self
    }

    pub fn failing(mut self) -> Self {
        self.provider.fail = true;
        self
    }

    pub fn slow(mut self, delay: Duration) -> Self {
        self.provider.delay = delay;
        self
    }

    pub fn answering_as(mut self, provider: &'static str) -> Self {
        self.provider.answer_as = provider;
        self
    }

    /// The size of each call made, in order.
    pub fn calls(&self) -> Vec<usize> {
        self.provider.calls.lock().unwrap().clone()
    }

    pub fn ctx(&self) -> Ctx<'_, MemorySource, Script> {
        Ctx::new(&self.source, &self.provider, &self.taxonomy, &self.opts)
    }
}

fn taxonomy() -> Taxonomy {
    let tag = |n: &str| Tag {
        name: n.into(),
        description: format!("about {n}"),
        keywords: vec![],
    };
    let category = |name: &str, tags: Vec<Tag>| Category {
        name: name.into(),
        description: name.into(),
        max_per_page: 2,
        tags,
    };
    Taxonomy::new(
        vec![
            category("type", vec![tag("type-howto"), tag("type-runbook")]),
            category("tool", vec![tag("tool-jira")]),
        ],
        4,
        "test",
    )
    .unwrap()
}
