//! Which pages `eval` classifies: those that carry at least one human taxonomy label (an
//! alias counts), optionally a reproducible random subset (`--sample N --seed S`), then at
//! most `--limit N`. Pure.

use sha2::{Digest, Sha256};

use crate::taxonomy::Taxonomy;
use crate::taxonomy::draft::PageLabels;

/// The pages chosen, in listing order, and how many were passed over for want of a human
/// taxonomy label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub pages: Vec<PageLabels>,
    pub without_human_labels: u64,
}

/// Chooses from `pages`, whose `labels` are the labels people put there.
pub fn select(
    taxonomy: &Taxonomy,
    pages: Vec<PageLabels>,
    sample: Option<u64>,
    seed: u64,
    limit: Option<u64>,
) -> Selection {
    let total = pages.len() as u64;
    let mut chosen: Vec<(usize, PageLabels)> = pages
        .into_iter()
        .filter(|p| {
            !taxonomy
                .tags_carried(p.labels.iter().map(String::as_str))
                .is_empty()
        })
        .enumerate()
        .collect();
    let without_human_labels = total - chosen.len() as u64;
    if let Some(n) = sample {
        // A hash of (seed, id) orders the pages: the same seed picks the same pages on any
        // machine and any version, which a PRNG's stream does not promise.
        chosen.sort_by_cached_key(|(_, p)| {
            let mut h = Sha256::new();
            h.update(seed.to_le_bytes());
            h.update(p.id.as_bytes());
            h.finalize()
        });
        chosen.truncate(n as usize);
        chosen.sort_by_key(|(i, _)| *i);
    }
    if let Some(n) = limit {
        chosen.truncate(n as usize);
    }
    Selection {
        pages: chosen.into_iter().map(|(_, p)| p).collect(),
        without_human_labels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pages(n: usize) -> Vec<PageLabels> {
        (0..n)
            .map(|i| PageLabels {
                id: i.to_string(),
                title: format!("p{i}"),
                labels: if i % 3 == 0 {
                    vec!["fun".into()]
                } else {
                    vec!["tool-jira".into()]
                },
            })
            .collect()
    }

    fn ids(s: &Selection) -> Vec<&str> {
        s.pages.iter().map(|p| p.id.as_str()).collect()
    }

    #[test]
    fn only_pages_with_human_taxonomy_labels_and_a_reproducible_sample() {
        let tax = Taxonomy::embedded();
        let all = select(&tax, pages(30), None, 1, None);
        assert_eq!((all.pages.len(), all.without_human_labels), (20, 10));
        let a = select(&tax, pages(30), Some(5), 7, None);
        let b = select(&tax, pages(30), Some(5), 7, None);
        let c = select(&tax, pages(30), Some(5), 8, None);
        assert_eq!(ids(&a), ids(&b), "same seed, same pages");
        assert_ne!(ids(&a), ids(&c), "another seed, other pages");
        assert_eq!(a.pages.len(), 5);
        let mut sorted = ids(&a)
            .iter()
            .map(|i| i.parse::<u32>().unwrap())
            .collect::<Vec<_>>();
        let listed = sorted.clone();
        sorted.sort();
        assert_eq!(sorted, listed, "listing order kept");
        assert_eq!(ids(&select(&tax, pages(30), None, 1, Some(2))), ["1", "2"]);
    }
}
