//! `prompt::parse_answer` then `validate::validate` on any answer text: never panics, and what
//! validates is only taxonomy tags, within the caps, for batch pages.
#![no_main]

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tag_space::llm::prompt::parse_answer;
use tag_space::llm::validate::validate;
use tag_space::llm::{Answer, PageText, RateLimitHints};
use tag_space::taxonomy::{Category, Tag, Taxonomy, check_label};

fn taxonomy() -> &'static Taxonomy {
    static T: OnceLock<Taxonomy> = OnceLock::new();
    T.get_or_init(|| {
        let tag = |name: &str| Tag {
            name: name.into(),
            description: "d".into(),
            keywords: vec![],
        };
        let cat = |name: &str, max: usize, tags: &[&str]| Category {
            name: name.into(),
            description: "d".into(),
            max_per_page: max,
            tags: tags.iter().map(|t| tag(t)).collect(),
        };
        Taxonomy::new(
            vec![
                cat("type", 1, &["how-to", "reference", "decision"]),
                cat("tool", 2, &["jira", "git", "docker", "ünïcode-tag"]),
                cat("status", 1, &["draft", "obsolete"]),
            ],
            3,
            "fuzz",
        )
        .unwrap()
    })
}

fuzz_target!(|text: &str| {
    let Ok(labels) = parse_answer(text) else {
        return;
    };
    let batch: Vec<PageText> = ["1", "2", "101", "1"]
        .iter()
        .map(|id| PageText {
            id: (*id).into(),
            title: String::new(),
            text: String::new(),
        })
        .collect();
    let answer = Answer {
        provider: "fuzz",
        model: "m".into(),
        labels,
        usage: None,
        rate_limits: RateLimitHints::default(),
    };
    let tax = taxonomy();
    let v = validate(&batch, &answer, tax);
    let ids: HashSet<&str> = batch.iter().map(|p| p.id.as_str()).collect();
    for (id, labels) in &v.labels {
        assert!(ids.contains(id.as_str()), "page {id:?} is not in the batch");
        assert!(labels.len() <= tax.max_labels_per_page());
        let mut per_category: HashMap<&str, usize> = HashMap::new();
        let mut seen = HashSet::new();
        for l in labels {
            let c = tax
                .category_of(l)
                .unwrap_or_else(|| panic!("{l:?} is not a tag"));
            assert!(check_label(l).is_ok());
            assert!(seen.insert(l), "{l:?} twice");
            let n = per_category.entry(c.name.as_str()).or_default();
            *n += 1;
            assert!(*n <= c.max_per_page, "category {} over its cap", c.name);
        }
    }
    for id in &v.missing {
        assert!(ids.contains(id.as_str()) && !v.labels.contains_key(id));
    }
    assert_eq!(v.labels.len() + v.missing.len(), ids.len());
    assert!(v.unknown_ids.iter().all(|id| !ids.contains(id.as_str())));
});
