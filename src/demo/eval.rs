//! The bundled evaluation space `EVAL` (`demo/eval.toml`): made-up pages that already carry
//! labels people chose (some missing, a few wrong, some aliases, one breaking the label
//! rules), so `tag-space eval --demo` and `tag-space taxonomy init --demo` run offline.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{DemoPage, parse_label};
use crate::confluence::{MemorySource, Page};
use crate::taxonomy::{Taxonomy, TaxonomyError};

/// The key of the evaluation space.
pub const SPACE_KEY: &str = "EVAL";

const SPACE: &str = include_str!("../../demo/eval.toml");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EvalFile {
    aliases: BTreeMap<String, Vec<String>>,
    page: Vec<DemoPage>,
}

fn file() -> EvalFile {
    toml::from_str(SPACE).expect("demo/eval.toml is valid (checked by a unit test)")
}

/// Every page of the evaluation space, in file order, with the labels people put on it.
pub fn pages() -> Vec<Page> {
    file()
        .page
        .into_iter()
        .map(|p| Page {
            url: Some(format!(
                "https://demo.invalid/wiki/spaces/{SPACE_KEY}/pages/{}",
                p.id
            )),
            id: p.id,
            title: p.title,
            version: Some(p.version),
            body: Some(p.body),
            labels: Some(p.labels.into_iter().map(parse_label).collect()),
        })
        .collect()
}

/// The evaluation space, in memory.
pub fn source() -> MemorySource {
    MemorySource::new(SPACE_KEY, pages())
}

/// `taxonomy` with the evaluation space's aliases (the spellings its people use) added.
pub fn with_aliases(taxonomy: Taxonomy) -> Result<Taxonomy, TaxonomyError> {
    taxonomy.with_aliases(file().aliases, "demo/eval.toml")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::taxonomy::check_label;

    #[test]
    fn the_space_parses_and_has_the_promised_mix() {
        let tax = with_aliases(Taxonomy::embedded()).unwrap();
        let pages = pages();
        assert!(pages.len() >= 12, "{}", pages.len());
        let labels: Vec<String> = pages
            .iter()
            .flat_map(|p| p.labels.clone().unwrap_or_default())
            .map(|l| l.name)
            .collect();
        assert!(
            labels.iter().any(|l| tax.aliases().contains_key(l)),
            "aliases"
        );
        assert!(
            labels.iter().any(|l| tax.canonical(l).is_none()),
            "outside the taxonomy"
        );
        assert!(
            labels.iter().any(|l| check_label(l).is_err()),
            "a bad label"
        );
        let without = pages.iter().filter(|p| {
            let names: Vec<&str> = p.labels.iter().flatten().map(|l| l.name.as_str()).collect();
            tax.tags_carried(names).is_empty()
        });
        assert!(without.count() >= 1, "a page with no taxonomy label");
    }
}
