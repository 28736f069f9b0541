//! Checks a provider's [`Answer`] against the batch and the taxonomy. Pure.
//!
//! A schema-constrained answer is usually clean, but not every server enforces the schema
//! (reference §5: repeated enum values, `uniqueItems` ignored), and the offline or fallback
//! paths may have none. So every answer passes through [`validate`] before a label is written.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use super::{Answer, PageText};
use crate::taxonomy::Taxonomy;

/// The checked answer for one batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validated {
    /// For every batch page the answer covered, the labels to apply (possibly none): trimmed
    /// and lowercased, only taxonomy tags, no duplicates, within the per-category and per-page
    /// limits. Order: categories in taxonomy order; within a category, the model's order (the
    /// prompt asks for the most relevant first). When a limit is reached, the first ones in
    /// that order are kept.
    pub labels: BTreeMap<String, Vec<String>>,
    /// Batch pages the answer said nothing about, in batch order: ask again (e.g. alone).
    pub missing: Vec<String>,
    /// Labels that were not accepted and why, for a `tracing::warn!`.
    pub dropped: Vec<Dropped>,
    /// Ids in the answer that are not in the batch; ignored.
    pub unknown_ids: Vec<String>,
}

impl Validated {
    /// The labels for one page, if the answer covered it.
    pub fn labels_for(&self, page_id: &str) -> Option<&[String]> {
        self.labels.get(page_id).map(Vec::as_slice)
    }

    /// Every page of the batch was answered.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty()
    }
}

/// One label of the answer that was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub page_id: String,
    /// As normalised (trimmed, lowercased).
    pub label: String,
    pub reason: DropReason,
}

/// Why a label was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropReason {
    /// Not a tag of the taxonomy.
    NotInTaxonomy,
    /// Already chosen for this page.
    Duplicate,
    /// The category already had `max` tags on this page.
    CategoryFull { category: String, max: usize },
    /// The page already had `max` labels.
    PageFull { max: usize },
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "page {}: dropped '{}': ", self.page_id, self.label)?;
        match &self.reason {
            DropReason::NotInTaxonomy => f.write_str("not in the taxonomy"),
            DropReason::Duplicate => f.write_str("given twice"),
            DropReason::CategoryFull { category, max } => {
                write!(f, "category '{category}' allows {max} per page")
            }
            DropReason::PageFull { max } => write!(f, "at most {max} labels per page"),
        }
    }
}

/// Checks `answer` for `batch`; see [`Validated`] for what comes out.
pub fn validate(batch: &[PageText], answer: &Answer, taxonomy: &Taxonomy) -> Validated {
    let rules = Rules::new(taxonomy);
    let batch_ids: HashSet<&str> = batch.iter().map(|p| p.id.as_str()).collect();
    let mut out = Validated {
        unknown_ids: answer
            .labels
            .keys()
            .filter(|id| !batch_ids.contains(id.as_str()))
            .cloned()
            .collect(),
        ..Validated::default()
    };
    for page in batch {
        let id = page.id.as_str();
        if out.labels.contains_key(id) || out.missing.iter().any(|m| m == id) {
            continue; // the same page twice in a batch
        }
        match answer.labels.get(id) {
            Some(raw) => {
                let accepted = rules.page(id, raw, &mut out.dropped);
                out.labels.insert(id.to_string(), accepted);
            }
            None => out.missing.push(id.to_string()),
        }
    }
    out
}

/// The taxonomy's rules, indexed for checking one page's labels.
struct Rules<'t> {
    /// tag → (category position, category name, category limit)
    by_tag: HashMap<&'t str, (usize, &'t str, usize)>,
    page_max: usize,
}

impl<'t> Rules<'t> {
    fn new(taxonomy: &'t Taxonomy) -> Self {
        let mut by_tag = HashMap::new();
        for (i, c) in taxonomy.categories().iter().enumerate() {
            for t in &c.tags {
                by_tag.insert(t.name.as_str(), (i, c.name.as_str(), c.max_per_page));
            }
        }
        Self {
            by_tag,
            page_max: taxonomy.max_labels_per_page(),
        }
    }

    /// The labels of one page that pass, in category order (the model's order within a
    /// category); each one that does not is pushed to `dropped` with its reason.
    fn page(&self, id: &str, raw: &[String], dropped: &mut Vec<Dropped>) -> Vec<String> {
        let drop = |label: &str, reason| Dropped {
            page_id: id.to_string(),
            label: label.to_string(),
            reason,
        };
        // Known, distinct tags with their category, in the model's order.
        let mut chosen: Vec<(usize, &str, usize, String)> = Vec::new();
        for label in raw {
            let label = label.trim().to_lowercase();
            if label.is_empty() {
                continue;
            }
            match self.by_tag.get(label.as_str()) {
                None => dropped.push(drop(&label, DropReason::NotInTaxonomy)),
                Some(_) if chosen.iter().any(|c| c.3 == label) => {
                    dropped.push(drop(&label, DropReason::Duplicate))
                }
                Some(&(pos, category, max)) => chosen.push((pos, category, max, label)),
            }
        }
        chosen.sort_by_key(|c| c.0); // stable: the model's order within a category

        let mut accepted = Vec::new();
        let mut per_category: HashMap<usize, usize> = HashMap::new();
        for (pos, category, max, label) in chosen {
            let n = per_category.entry(pos).or_default();
            if *n >= max {
                let category = category.to_string();
                dropped.push(drop(&label, DropReason::CategoryFull { category, max }));
            } else if accepted.len() >= self.page_max {
                let max = self.page_max;
                dropped.push(drop(&label, DropReason::PageFull { max }));
            } else {
                *n += 1;
                accepted.push(label);
            }
        }
        accepted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::RateLimitHints;
    use crate::llm::prompt::tests::{page, taxonomy};
    use crate::taxonomy::{Category, Tag};

    fn answer(pairs: &[(&str, &[&str])]) -> Answer {
        Answer {
            provider: "test",
            model: "m".into(),
            labels: pairs
                .iter()
                .map(|(id, l)| (id.to_string(), l.iter().map(|s| s.to_string()).collect()))
                .collect(),
            usage: None,
            rate_limits: RateLimitHints::default(),
        }
    }

    fn batch() -> Vec<PageText> {
        vec![page("1", "a", ""), page("2", "b", ""), page("3", "c", "")]
    }

    #[test]
    fn clean_answer_passes_in_taxonomy_category_order() {
        let v = validate(
            &batch(),
            &answer(&[("1", &["git", "how-to"]), ("2", &[]), ("3", &["docker"])]),
            &taxonomy(),
        );
        assert_eq!(
            v.labels_for("1"),
            Some(&["how-to".to_string(), "git".to_string()][..])
        );
        assert_eq!(v.labels_for("2"), Some(&[][..]));
        assert_eq!(v.labels_for("3"), Some(&["docker".to_string()][..]));
        assert!(v.is_complete());
        assert!(v.dropped.is_empty());
        assert!(v.unknown_ids.is_empty());
    }

    #[test]
    fn unknown_ids_are_ignored_and_missing_pages_listed_in_batch_order() {
        let v = validate(
            &batch(),
            &answer(&[("2", &["git"]), ("99", &["jira"])]),
            &taxonomy(),
        );
        assert_eq!(v.unknown_ids, ["99"]);
        assert!(!v.labels.contains_key("99"));
        assert_eq!(v.missing, ["1", "3"]);
        assert!(!v.is_complete());
        assert_eq!(v.labels.keys().collect::<Vec<_>>(), ["2"]);
    }

    #[test]
    fn labels_are_normalised_and_off_taxonomy_ones_dropped() {
        let v = validate(
            &batch()[..1],
            &answer(&[("1", &["  Git ", "JIRA", "kubernetes", "", "how to"])]),
            &taxonomy(),
        );
        assert_eq!(v.labels["1"], ["git", "jira"]); // same category: the model's order
        assert_eq!(
            v.dropped,
            [
                Dropped {
                    page_id: "1".into(),
                    label: "kubernetes".into(),
                    reason: DropReason::NotInTaxonomy
                },
                Dropped {
                    page_id: "1".into(),
                    label: "how to".into(),
                    reason: DropReason::NotInTaxonomy
                },
            ]
        );
        assert_eq!(
            v.dropped[0].to_string(),
            "page 1: dropped 'kubernetes': not in the taxonomy"
        );
    }

    #[test]
    fn duplicates_are_removed() {
        let v = validate(
            &batch()[..1],
            &answer(&[("1", &["jira", "Jira", "jira "])]),
            &taxonomy(),
        );
        assert_eq!(v.labels["1"], ["jira"]);
        assert_eq!(v.dropped.len(), 2);
        assert!(v.dropped.iter().all(|d| d.reason == DropReason::Duplicate));
    }

    #[test]
    fn category_limit_keeps_the_models_first_choices() {
        // type allows 1, tool allows 2.
        let v = validate(
            &batch()[..1],
            &answer(&[("1", &["reference", "docker", "how-to", "git", "jira"])]),
            &taxonomy(),
        );
        assert_eq!(v.labels["1"], ["reference", "docker", "git"]);
        let reasons: Vec<_> = v
            .dropped
            .iter()
            .map(|d| (d.label.as_str(), d.reason.clone()))
            .collect();
        assert_eq!(
            reasons,
            [
                (
                    "how-to",
                    DropReason::CategoryFull {
                        category: "type".into(),
                        max: 1
                    }
                ),
                (
                    "jira",
                    DropReason::CategoryFull {
                        category: "tool".into(),
                        max: 2
                    }
                ),
            ]
        );
    }

    #[test]
    fn page_limit_keeps_earlier_categories_first() {
        let tag = |n: &str| Tag {
            name: n.into(),
            description: String::new(),
            keywords: vec![],
        };
        let cats = vec![
            Category {
                name: "a".into(),
                description: String::new(),
                max_per_page: 2,
                tags: vec![tag("a1"), tag("a2")],
            },
            Category {
                name: "b".into(),
                description: String::new(),
                max_per_page: 2,
                tags: vec![tag("b1"), tag("b2")],
            },
        ];
        let tax = Taxonomy::new(cats, 3, "t").unwrap();
        let v = validate(
            &batch()[..1],
            &answer(&[("1", &["b2", "b1", "a2", "a1"])]),
            &tax,
        );
        assert_eq!(v.labels["1"], ["a2", "a1", "b2"]);
        assert_eq!(
            v.dropped,
            [Dropped {
                page_id: "1".into(),
                label: "b1".into(),
                reason: DropReason::PageFull { max: 3 }
            }]
        );
    }

    #[test]
    fn a_page_repeated_in_the_batch_is_reported_once() {
        let b = [
            page("1", "", ""),
            page("1", "", ""),
            page("2", "", ""),
            page("2", "", ""),
        ];
        let v = validate(&b, &answer(&[("1", &["git"])]), &taxonomy());
        assert_eq!(v.labels.len(), 1);
        assert_eq!(v.missing, ["2"]);
    }
}
