//! Classify: one batch to the provider chain. Each answer is validated against the taxonomy;
//! a page the model left out is asked for once more, alone; the answers are stored in the
//! cache (one transaction) before any label is written. Truncated answers are the governor's
//! business (it widens the output cap, then splits the batch): here they are just errors.

use std::collections::BTreeMap;

use super::{Ctx, Provenance, Queued, StateCtx};
use crate::cache::{CacheKey, Classification};
use crate::llm::validate::{Validated, validate};
use crate::llm::{Answer, PageText, Provider};

/// The labels chosen for a page, and who chose them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Chosen {
    pub labels: Vec<String>,
    pub by: Provenance,
}

/// Each page's labels, or why it has none, by page id. A page of the batch missing here got
/// no answer at all.
pub(super) type Answers = BTreeMap<String, Result<Chosen, String>>;

/// Classifies `batch` (see the module docs).
pub(super) async fn classify<S, P: Provider>(ctx: &Ctx<'_, S, P>, batch: &[Queued]) -> Answers {
    let texts: Vec<PageText> = batch.iter().map(|q| q.text.clone()).collect();
    let mut round = Round::new(ctx);
    let missing = round.ask(&texts, true).await;
    // A page the model left out is asked for once more, alone.
    for id in missing {
        let Some(text) = texts.iter().find(|t| t.id == id) else {
            continue;
        };
        tracing::info!(page = %id, "the answer left this page out; asking for it alone");
        let again = round.ask(std::slice::from_ref(text), false).await;
        if again.contains(&id) {
            round.answers.insert(
                id,
                Err("the model left this page out of its answer twice".into()),
            );
        }
    }
    if let Some(st) = &ctx.state {
        store_answers(st, batch, round.to_store);
    }
    round.answers
}

/// The calls made for one batch and what they brought.
struct Round<'c, 'a, S, P> {
    ctx: &'c Ctx<'a, S, P>,
    answers: Answers,
    /// What to store once the batch is settled: page id to its classification.
    to_store: Vec<(String, Classification, Provenance)>,
}

impl<'c, 'a, S, P: Provider> Round<'c, 'a, S, P> {
    fn new(ctx: &'c Ctx<'a, S, P>) -> Self {
        Self {
            ctx,
            answers: Answers::new(),
            to_store: Vec::new(),
        }
    }

    /// One call for `texts`; records each page's labels or error. Returns the ids the answer
    /// left out. `whole_batch`: the batch's first call (the one whose failure is logged).
    async fn ask(&mut self, texts: &[PageText], whole_batch: bool) -> Vec<String> {
        if let Some(st) = &self.ctx.state {
            st.store.count_calls(1);
        }
        match self.ctx.provider.classify(texts).await {
            Ok(answer) => {
                let v = validate(texts, &answer, self.ctx.taxonomy);
                log_rejections(&v, answer.provider);
                self.record(v.labels, &answer, texts.len());
                v.missing
            }
            Err(e) => {
                if whole_batch {
                    tracing::warn!(error = %e, pages = texts.len(), "batch failed");
                }
                for t in texts {
                    self.answers.insert(t.id.clone(), Err(e.to_string()));
                }
                Vec::new()
            }
        }
    }

    /// Keeps each page's labels, and its share of the call's tokens for the cache.
    fn record(&mut self, labels: BTreeMap<String, Vec<String>>, answer: &Answer, pages: usize) {
        let by = self.ctx.provenance(answer.provider);
        let usage = answer.usage.unwrap_or_default();
        let share = |t: u64| t / pages.max(1) as u64;
        for (id, labels) in labels {
            let c = Classification::new(
                labels.clone(),
                answer.provider,
                answer.model.clone(),
                share(usage.input_tokens),
                share(usage.output_tokens),
            );
            self.to_store.push((id.clone(), c, by));
            self.answers.insert(id, Ok(Chosen { labels, by }));
        }
    }
}

/// Stores a batch's validated answers under each page's key, in one transaction, before any
/// label is written: a run killed after this point asks the model for none of them again.
/// A stop-gap answer is not stored (see [`super::RunState::setup`]). A failure to store is a
/// warning: the labels can still be applied; the next run asks again.
fn store_answers(
    st: &StateCtx<'_>,
    batch: &[Queued],
    answers: Vec<(String, Classification, Provenance)>,
) {
    let keys: BTreeMap<&str, CacheKey> = batch
        .iter()
        .filter_map(|q| Some((q.meta.id.as_str(), q.meta.key?)))
        .collect();
    let entries: Vec<(CacheKey, Classification)> = answers
        .into_iter()
        .filter(|(_, _, by)| *by != Provenance::StopGap)
        .filter_map(|(id, c, _)| Some((*keys.get(id.as_str())?, c)))
        .collect();
    if entries.is_empty() {
        return;
    }
    if let Err(e) = st.store.store_batch(st.run, &entries) {
        tracing::warn!(error = %e, pages = entries.len(), "cannot store the batch's answers; the next run asks again");
    }
}

/// One warning per label the model chose that cannot be used, and per id it made up.
fn log_rejections(v: &Validated, provider: &'static str) {
    for d in &v.dropped {
        tracing::warn!(provider, "dropped a label from the answer: {d}");
    }
    for id in &v.unknown_ids {
        tracing::warn!(provider, page = %id, "the answer names a page that is not in the batch; ignored");
    }
}

#[cfg(test)]
mod tests {
    use super::super::admit::{Admitted, admit};
    use super::super::testkit::{Kit, page};
    use super::*;

    fn queued<S, P>(ctx: &Ctx<'_, S, P>, ids: &[&str]) -> Vec<Queued> {
        ids.iter()
            .map(
                |id| match admit(ctx, page(id, "<p>How to file a Jira ticket</p>")) {
                    Admitted::Classify(q) => q,
                    other => panic!("{other:?}"),
                },
            )
            .collect()
    }

    #[tokio::test]
    async fn a_page_left_out_is_asked_for_alone_and_fails_if_left_out_twice() {
        // The provider leaves page 2 out of every answer.
        let kit = Kit::new(vec![]).leaving_out("2");
        let ctx = kit.ctx();
        let answers = classify(&ctx, &queued(&ctx, &["1", "2", "3"])).await;
        assert_eq!(kit.calls(), vec![3, 1]);
        assert_eq!(
            answers["1"],
            Ok(Chosen {
                labels: vec!["type-howto".into()],
                by: Provenance::Provider("scripted")
            })
        );
        assert_eq!(
            answers["2"],
            Err("the model left this page out of its answer twice".into())
        );
    }

    #[tokio::test]
    async fn a_failed_call_fails_every_page_and_a_rules_fallback_is_a_stop_gap_not_stored() {
        let kit = Kit::new(vec![]).failing();
        let ctx = kit.ctx();
        let answers = classify(&ctx, &queued(&ctx, &["1", "2"])).await;
        assert!(
            answers
                .values()
                .all(|a| a.as_ref().is_err_and(|e| e.contains("overloaded")))
        );

        let kit = Kit::with_state(vec![]).answering_as("rules");
        let ctx = kit.ctx();
        let batch = queued(&ctx, &["1"]);
        let answers = classify(&ctx, &batch).await;
        assert_eq!(answers["1"].as_ref().unwrap().by, Provenance::StopGap);
        let st = ctx.state.as_ref().unwrap();
        assert_eq!(st.store.lookup(&batch[0].meta.key.unwrap()).unwrap(), None);
    }
}
