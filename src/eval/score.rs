//! The arithmetic of `tag-space eval`, pure: what the model proposed against what people put
//! on the same pages, label by label.
//!
//! - Both sides are read as taxonomy tags: an alias counts as its tag, and a tag carried
//!   twice (itself and an alias) counts once. Labels outside the taxonomy are ignored.
//! - A page with no human taxonomy label is excluded: there is nothing to compare with.
//! - Per tag: true positives (proposed and put there by a person), false positives (proposed,
//!   not there), false negatives (there, not proposed); precision `tp/(tp+fp)`, recall
//!   `tp/(tp+fn)`, F1 their harmonic mean. A ratio whose denominator is 0 is `None`.
//! - Micro averages pool the counts of every tag. Macro averages are the mean over the tags
//!   people used on the scored pages (support > 0), a `None` ratio counting as 0; a tag only
//!   ever proposed still weighs on micro precision.
//! - Every false positive is also listed as **to review**: human labels are incomplete, so a
//!   label no person used on that page is not necessarily wrong.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::taxonomy::Taxonomy;

/// One page: the labels people put on it (any, aliases included) and the labels proposed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub page_id: String,
    pub title: String,
    pub human: Vec<String>,
    pub proposed: Vec<String>,
}

/// True/false positives and false negatives, with the ratios they give.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Counts {
    pub tp: u64,
    pub fp: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub f1: Option<f64>,
}

impl Counts {
    fn new(tp: u64, fp: u64, fn_: u64) -> Self {
        let ratio = |num: u64, den: u64| (den > 0).then(|| num as f64 / den as f64);
        let precision = ratio(tp, tp + fp);
        let recall = ratio(tp, tp + fn_);
        let f1 = match (precision, recall) {
            (Some(p), Some(r)) if p + r > 0.0 => Some(2.0 * p * r / (p + r)),
            (Some(_), Some(_)) => Some(0.0),
            _ => None,
        };
        Self {
            tp,
            fp,
            fn_,
            precision,
            recall,
            f1,
        }
    }
}

/// One tag's score. `support` is how many scored pages people put it on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelScore {
    pub label: String,
    pub support: u64,
    #[serde(flatten)]
    pub counts: Counts,
}

/// Mean precision, recall and F1 over the tags people used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Averages {
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub f1: Option<f64>,
}

/// A proposed label no person used on that page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Review {
    pub page_id: String,
    pub title: String,
    pub label: String,
}

/// The whole comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scores {
    /// Pages compared (each with at least one human taxonomy label).
    pub pages_scored: u64,
    /// Pages left out because no person put a taxonomy label on them.
    pub pages_excluded: u64,
    /// Every tag proposed or used on a scored page, in taxonomy order.
    pub labels: Vec<LabelScore>,
    pub micro: Counts,
    #[serde(rename = "macro")]
    pub macro_: Averages,
    pub to_review: Vec<Review>,
}

/// Scores `pages` against the taxonomy's tags (see the module docs for the rules).
pub fn score(taxonomy: &Taxonomy, pages: &[Observation]) -> Scores {
    // tag -> (tp, fp, fn)
    let mut tally: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
    let mut to_review = Vec::new();
    let (mut scored, mut excluded) = (0, 0);
    for page in pages {
        let human = taxonomy.tags_carried(page.human.iter().map(String::as_str));
        if human.is_empty() {
            excluded += 1;
            continue;
        }
        scored += 1;
        let proposed = taxonomy.tags_carried(page.proposed.iter().map(String::as_str));
        for tag in human.union(&proposed) {
            let t = tally.entry(tag).or_default();
            match (proposed.contains(tag), human.contains(tag)) {
                (true, true) => t.0 += 1,
                (true, false) => {
                    t.1 += 1;
                    to_review.push(Review {
                        page_id: page.page_id.clone(),
                        title: page.title.clone(),
                        label: tag.to_string(),
                    });
                }
                (false, _) => t.2 += 1,
            }
        }
    }
    let order: BTreeSet<&str> = tally.keys().copied().collect();
    let labels: Vec<LabelScore> = taxonomy
        .tag_names()
        .filter(|t| order.contains(t))
        .map(|t| {
            let (tp, fp, fn_) = tally[t];
            LabelScore {
                label: t.to_string(),
                support: tp + fn_,
                counts: Counts::new(tp, fp, fn_),
            }
        })
        .collect();
    let sum = |f: fn(&LabelScore) -> u64| labels.iter().map(f).sum::<u64>();
    let micro = Counts::new(
        sum(|l| l.counts.tp),
        sum(|l| l.counts.fp),
        sum(|l| l.counts.fn_),
    );
    Scores {
        pages_scored: scored,
        pages_excluded: excluded,
        macro_: macro_average(&labels),
        labels,
        micro,
        to_review,
    }
}

fn macro_average(labels: &[LabelScore]) -> Averages {
    let used: Vec<&Counts> = labels
        .iter()
        .filter(|l| l.support > 0)
        .map(|l| &l.counts)
        .collect();
    if used.is_empty() {
        return Averages::default();
    }
    let mean = |f: fn(&Counts) -> Option<f64>| {
        Some(used.iter().map(|c| f(c).unwrap_or(0.0)).sum::<f64>() / used.len() as f64)
    };
    Averages {
        precision: mean(|c| c.precision),
        recall: mean(|c| c.recall),
        f1: mean(|c| c.f1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taxonomy() -> Taxonomy {
        Taxonomy::from_toml(
            r#"
max_labels_per_page = 4
[[category]]
name = "x"
description = "x"
max_per_page = 4
[[category.tag]]
name = "a"
description = "a"
[[category.tag]]
name = "b"
description = "b"
aliases = ["bee"]
[[category.tag]]
name = "c"
description = "c"
[[category.tag]]
name = "d"
description = "d"
[[category.tag]]
name = "e"
description = "e"
"#,
            "t",
        )
        .unwrap()
    }

    fn page(id: &str, human: &[&str], proposed: &[&str]) -> Observation {
        Observation {
            page_id: id.into(),
            title: format!("Page {id}"),
            human: human.iter().map(|s| s.to_string()).collect(),
            proposed: proposed.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn close(a: Option<f64>, b: f64) {
        let a = a.expect("a value");
        assert!((a - b).abs() < 1e-9, "{a} != {b}");
    }

    /// Computed by hand:
    ///
    /// | page | human       | proposed | a   | b   | c   | d   |
    /// |------|-------------|----------|-----|-----|-----|-----|
    /// | 1    | a, b        | a        | TP  | FN  |     |     |
    /// | 2    | bee, b      | b, c     |     | TP  | FP  |     |
    /// | 3    | fun         | a        | excluded (no taxonomy label) |
    /// | 4    | a           | a, b     | TP  | FP  |     |     |
    /// | 5    | c, fun      | d        |     |     | FN  | FP  |
    ///
    /// a: 2/0/0 → P 1, R 1, F1 1. b: 1/1/1 → .5/.5/.5. c: 0/1/1 → 0/0/0.
    /// d: 0/1/0 → P 0, R none, F1 none; no support, so outside the macro average.
    /// micro: 3/3/2 → P .5, R .6, F1 6/11. macro over a, b, c: P .5, R .5, F1 .5.
    #[test]
    fn hand_computed_fixture() {
        let pages = [
            page("1", &["a", "b"], &["a"]),
            page("2", &["bee", "b"], &["b", "c"]),
            page("3", &["fun"], &["a"]),
            page("4", &["a"], &["a", "b"]),
            page("5", &["c", "fun"], &["d"]),
        ];
        let s = score(&taxonomy(), &pages);
        assert_eq!((s.pages_scored, s.pages_excluded), (4, 1));
        let names: Vec<_> = s.labels.iter().map(|l| l.label.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "d"], "taxonomy order; e never seen");
        let by = |n: &str| s.labels.iter().find(|l| l.label == n).unwrap();
        let counts = |n: &str| {
            let c = by(n).counts;
            (c.tp, c.fp, c.fn_, by(n).support)
        };
        assert_eq!(counts("a"), (2, 0, 0, 2));
        assert_eq!(counts("b"), (1, 1, 1, 2), "bee and b on page 2 count once");
        assert_eq!(counts("c"), (0, 1, 1, 1));
        assert_eq!(counts("d"), (0, 1, 0, 0));
        close(by("a").counts.f1, 1.0);
        close(by("b").counts.precision, 0.5);
        close(by("b").counts.f1, 0.5);
        close(by("c").counts.f1, 0.0);
        close(by("d").counts.precision, 0.0);
        assert_eq!(by("d").counts.recall, None);
        assert_eq!(by("d").counts.f1, None);
        assert_eq!((s.micro.tp, s.micro.fp, s.micro.fn_), (3, 3, 2));
        close(s.micro.precision, 0.5);
        close(s.micro.recall, 0.6);
        close(s.micro.f1, 6.0 / 11.0);
        close(s.macro_.precision, 0.5);
        close(s.macro_.recall, 0.5);
        close(s.macro_.f1, 0.5);
        let review: Vec<_> = s
            .to_review
            .iter()
            .map(|r| (r.page_id.as_str(), r.label.as_str()))
            .collect();
        assert_eq!(review, [("2", "c"), ("4", "b"), ("5", "d")]);
    }

    #[test]
    fn perfect_agreement_and_nothing_to_score() {
        let s = score(&taxonomy(), &[page("1", &["bee"], &["b"])]);
        close(s.micro.f1, 1.0);
        close(s.macro_.f1, 1.0);
        assert!(s.to_review.is_empty());
        let none = score(&taxonomy(), &[page("1", &["fun"], &["a"])]);
        assert_eq!((none.pages_scored, none.pages_excluded), (0, 1));
        assert!(none.labels.is_empty());
        assert_eq!(none.micro.f1, None);
        assert_eq!(none.macro_, Averages::default());
    }

    #[test]
    fn json_names_the_fields_as_documented() {
        let s = score(&taxonomy(), &[page("1", &["a"], &["a", "c"])]);
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["micro"]["fn"], 0);
        assert_eq!(v["labels"][0]["label"], "a");
        assert_eq!(v["labels"][0]["tp"], 1);
        assert!(v["macro"]["f1"].is_number());
        assert_eq!(v["to_review"][0]["label"], "c");
    }
}
