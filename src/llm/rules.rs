//! The offline `rules` provider: picks labels by keyword matching, with no network and no model.
//!
//! It makes the demo and the pipeline runnable without an API key and gives a deterministic
//! baseline. For each page every tag is scored from its keywords (see `config/taxonomy.toml`)
//! plus its own name without the category prefix:
//!
//! - matching is case-insensitive on whole words or phrases; `-` and `_` count as spaces and a
//!   trailing plural `s` is allowed;
//! - each keyword found in the title scores [`TITLE_WEIGHT`]; each occurrence in the text
//!   scores 1, at most [`TEXT_CAP`] per keyword, so one word repeated all over a long page does
//!   not dominate;
//! - a tag needs [`MIN_SCORE`]: a keyword in the title, or three mentions in the text. A word
//!   mentioned in passing is not enough, and pages about nothing in the taxonomy get no labels.
//!
//! The best tags are then taken greedily (score, then file order) within each category's
//! `max_per_page` and the taxonomy's `max_labels_per_page`.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Answer, LlmError, PageText, Provider, RateLimitHints};
use crate::taxonomy::Taxonomy;

/// Score of a keyword found in the title.
pub const TITLE_WEIGHT: u32 = 3;
/// At most this much score from one keyword's occurrences in the text.
pub const TEXT_CAP: u32 = 3;
/// A tag scoring less than this is not chosen.
pub const MIN_SCORE: u32 = 3;

/// One tag, ready to match.
#[derive(Debug)]
struct Rule {
    name: String,
    category: usize,
    /// Normalised keywords, without duplicates.
    phrases: Vec<String>,
}

/// Labels pages from keyword matches against a taxonomy.
#[derive(Debug)]
pub struct RulesProvider {
    taxonomy: Arc<Taxonomy>,
    rules: Vec<Rule>,
    /// How long each answer takes (`--demo-delay-ms`); zero otherwise.
    delay: std::time::Duration,
    /// `taxonomy init --describe` offline: each tag's description is a template of its
    /// example titles ([`super::describe::template`]), no model.
    describe: bool,
}

impl RulesProvider {
    pub fn new(taxonomy: Arc<Taxonomy>) -> Self {
        let mut rules = Vec::new();
        for (category, c) in taxonomy.categories().iter().enumerate() {
            for t in &c.tags {
                let own = t
                    .name
                    .strip_prefix(&format!("{}-", c.name))
                    .unwrap_or(&t.name);
                let mut phrases: Vec<String> = Vec::new();
                for k in std::iter::once(own).chain(t.keywords.iter().map(String::as_str)) {
                    let k = normalize(k);
                    if !k.is_empty() && !phrases.contains(&k) {
                        phrases.push(k);
                    }
                }
                rules.push(Rule {
                    name: t.name.clone(),
                    category,
                    phrases,
                });
            }
        }
        Self {
            taxonomy,
            rules,
            delay: std::time::Duration::ZERO,
            describe: false,
        }
    }

    /// Each answer takes `delay`, as a real model's would: the offline demo with
    /// `--demo-delay-ms`, so that its progress line can be watched.
    pub fn with_delay(mut self, delay: std::time::Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Answers description requests (`taxonomy init --describe`) instead of labelling.
    pub fn describing(mut self, describe: bool) -> Self {
        self.describe = describe;
        self
    }

    /// The labels for one page, best first.
    pub fn labels_for(&self, page: &PageText) -> Vec<String> {
        let title = normalize(&page.title);
        let text = normalize(&page.text);
        let mut scored: Vec<(u32, usize)> = self
            .rules
            .iter()
            .enumerate()
            .map(|(i, rule)| {
                let score = rule
                    .phrases
                    .iter()
                    .map(|p| {
                        let in_title = if count(&title, p, 1) > 0 {
                            TITLE_WEIGHT
                        } else {
                            0
                        };
                        in_title + count(&text, p, TEXT_CAP)
                    })
                    .sum();
                (score, i)
            })
            .filter(|&(score, _)| score >= MIN_SCORE)
            .collect();
        // best score first; ties keep file order, so the answer is deterministic
        scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));

        let categories = self.taxonomy.categories();
        let mut per_category = vec![0usize; categories.len()];
        let mut chosen = Vec::new();
        for (_, i) in scored {
            if chosen.len() >= self.taxonomy.max_labels_per_page() {
                break;
            }
            let rule = &self.rules[i];
            if per_category[rule.category] < categories[rule.category].max_per_page {
                per_category[rule.category] += 1;
                chosen.push(rule.name.clone());
            }
        }
        chosen
    }
}

impl Provider for RulesProvider {
    fn name(&self) -> &'static str {
        "rules"
    }

    async fn classify(&self, batch: &[PageText]) -> Result<Answer, LlmError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        // every page is answered, with no labels when nothing matched, so none is "missing"
        let labels: BTreeMap<String, Vec<String>> = batch
            .iter()
            .map(|p| {
                let answer = if self.describe {
                    vec![super::describe::template(p)]
                } else {
                    self.labels_for(p)
                };
                (p.id.clone(), answer)
            })
            .collect();
        Ok(Answer {
            provider: "rules",
            model: "keywords".to_string(),
            labels,
            usage: None,
            rate_limits: RateLimitHints::default(),
        })
    }
}

/// Lowercase, `-`/`_` as spaces, whitespace runs collapsed: "Post-Mortem\n" → "post mortem".
fn normalize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s
        .split(|c: char| c.is_whitespace() || c == '-' || c == '_')
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().flat_map(char::to_lowercase));
    }
    out
}

/// How many times `phrase` occurs in `hay` as a whole word or phrase (a plural `s` allowed),
/// counting at most `cap`.
fn count(hay: &str, phrase: &str, cap: u32) -> u32 {
    let starts_word = phrase.chars().next().is_some_and(char::is_alphanumeric);
    let ends_word = phrase
        .chars()
        .next_back()
        .is_some_and(char::is_alphanumeric);
    let mut n = 0;
    for (at, _) in hay.match_indices(phrase) {
        if n >= cap {
            break;
        }
        let before = hay[..at].chars().next_back();
        let mut after = hay[at + phrase.len()..].chars();
        let ok_before = !starts_word || !before.is_some_and(char::is_alphanumeric);
        let ok_after = !ends_word
            || match after.next() {
                None => true,
                Some('s') => !after.next().is_some_and(char::is_alphanumeric),
                Some(c) => !c.is_alphanumeric(),
            };
        if ok_before && ok_after {
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {

    #[tokio::test(start_paused = true)]
    async fn a_delay_makes_each_answer_take_that_long() {
        let tax = Arc::new(Taxonomy::embedded());
        let page = PageText {
            id: "1".into(),
            title: "Runbook".into(),
            text: "restart".into(),
        };
        let slow =
            RulesProvider::new(tax.clone()).with_delay(std::time::Duration::from_millis(750));
        let start = tokio::time::Instant::now();
        slow.classify(std::slice::from_ref(&page)).await.unwrap();
        assert_eq!(start.elapsed(), std::time::Duration::from_millis(750));
        let start = tokio::time::Instant::now();
        RulesProvider::new(tax).classify(&[page]).await.unwrap();
        assert_eq!(start.elapsed(), std::time::Duration::ZERO);
    }

    use super::*;

    fn page(id: &str, title: &str, text: &str) -> PageText {
        PageText {
            id: id.into(),
            title: title.into(),
            text: text.into(),
        }
    }

    fn rules() -> RulesProvider {
        RulesProvider::new(Arc::new(Taxonomy::embedded()))
    }

    #[test]
    fn matching_is_whole_word_case_insensitive_with_plurals() {
        assert_eq!(count("our runbooks and one runbook", "runbook", 9), 2);
        assert_eq!(count("prerunbook runbooked", "runbook", 9), 0);
        assert_eq!(count("post mortem of the outage", "post mortem", 9), 1);
        assert_eq!(count("s3 s3 s3 s3 s3", "s3", 3), 3);
        assert_eq!(count("use ci/cd here", "ci/cd", 9), 1);
        assert_eq!(
            normalize("Post-Mortem:\n  Jira_Cloud"),
            "post mortem: jira cloud"
        );
        assert_eq!(normalize("GRÖSSE Straße"), "grösse straße");
    }

    #[tokio::test]
    async fn a_howto_page_about_jira_gets_type_howto_and_tool_jira() {
        let p = page(
            "1",
            "How to create a Jira filter",
            "This guide shows how to write a JQL query in Jira and save it as a filter. \
             Step by step: open Jira, click Filters, type the JQL, press Save.",
        );
        let answer = rules().classify(std::slice::from_ref(&p)).await.unwrap();
        assert_eq!(answer.provider, "rules");
        assert_eq!(answer.model, "keywords");
        assert_eq!(answer.usage, None);
        let labels = &answer.labels["1"];
        assert!(labels.contains(&"type-howto".to_string()), "{labels:?}");
        assert!(labels.contains(&"tool-jira".to_string()), "{labels:?}");
        assert_eq!(
            labels[0], "tool-jira",
            "title + JQL + text mentions score highest: {labels:?}"
        );
    }

    #[tokio::test]
    async fn an_unrelated_page_gets_nothing_but_is_still_answered() {
        let p = page(
            "9",
            "Lunch menu",
            "Monday: pasta with tomato sauce. Tuesday: soup and bread.",
        );
        let answer = rules().classify(&[p]).await.unwrap();
        assert_eq!(answer.labels.get("9"), Some(&Vec::new()));
    }

    #[test]
    fn a_single_passing_mention_is_not_enough() {
        let p = page(
            "2",
            "Quarterly party",
            "We will post photos in Slack afterwards.",
        );
        assert!(rules().labels_for(&p).is_empty());
    }

    #[test]
    fn category_and_page_caps_are_respected() {
        let tax = Arc::new(Taxonomy::embedded());
        let p = page(
            "3",
            "Runbook and how-to and postmortem for Kubernetes, Terraform, AWS, Postgres, Kafka",
            &"kubernetes kubectl helm terraform tfstate aws s3 ec2 postgres psql kafka redis \
              security vulnerability tls latency throughput deployment rollout rollback monitoring \
              metrics alert incident outage runbook playbook postmortem root cause how to guide "
                .repeat(3),
        );
        let labels = RulesProvider::new(tax.clone()).labels_for(&p);
        assert_eq!(labels.len(), tax.max_labels_per_page(), "{labels:?}");
        for c in tax.categories() {
            let n = labels
                .iter()
                .filter(|l| tax.category_of(l).unwrap().name == c.name)
                .count();
            assert!(n <= c.max_per_page, "{} has {n}: {labels:?}", c.name);
        }
        let mut unique = labels.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), labels.len());
    }

    #[test]
    fn a_small_page_cap_wins_over_category_caps() {
        let src = r#"
max_labels_per_page = 1
[[category]]
name = "tool"
description = "d"
max_per_page = 3
[[category.tag]]
name = "tool-jira"
description = "d"
[[category.tag]]
name = "tool-github"
description = "d"
"#;
        let tax = Arc::new(Taxonomy::from_toml(src, "t").unwrap());
        let p = page("1", "Jira and GitHub", "jira github jira github");
        assert_eq!(
            RulesProvider::new(tax).labels_for(&p),
            ["tool-jira"],
            "tie: file order"
        );
    }

    #[test]
    fn answers_are_deterministic() {
        let r = rules();
        let p = page(
            "1",
            "Postgres failover runbook",
            "When the primary fails, promote the replica with pg_ctl.",
        );
        let first = r.labels_for(&p);
        for _ in 0..10 {
            assert_eq!(r.labels_for(&p), first);
            assert_eq!(rules().labels_for(&p), first);
        }
        assert!(first.contains(&"type-runbook".to_string()), "{first:?}");
    }
}
