//! TEMPORARY minimal validation so the pipeline can be written; replaced by the full version.
use std::collections::BTreeMap;

use super::{Answer, PageText};
use crate::taxonomy::Taxonomy;

#[derive(Debug, Default)]
pub struct Validated {
    pub labels: BTreeMap<String, Vec<String>>,
    pub missing: Vec<String>,
}

pub fn validate(batch: &[PageText], answer: &Answer, taxonomy: &Taxonomy) -> Validated {
    let mut v = Validated::default();
    for p in batch {
        match answer.labels.get(&p.id) {
            Some(tags) => {
                let mut keep: Vec<String> = Vec::new();
                for t in tags {
                    if taxonomy.contains(t) && !keep.contains(t) {
                        keep.push(t.clone());
                    }
                }
                v.labels.insert(p.id.clone(), keep);
            }
            None => v.missing.push(p.id.clone()),
        }
    }
    v
}
