//! The ledger's side of the label census and of a failed write: which labels tag-space owns
//! in a space, recording the ones a census found gone, and settling intents after a failure.
//!
//! A census ([`crate::pipeline`]) asks Confluence which pages of the space carry one label,
//! for each label tag-space owns there: one paginated request stream per label instead of a
//! label read per page. Every page where the ledger says `added` and the census did not find
//! the label had it removed by a person since tag-space last looked, and is recorded as
//! [`LabelStatus::Dismissed`] at once, so that a later re-add is the person's.

use std::collections::{BTreeMap, HashSet};

use rusqlite::params;

use super::CacheError;
use super::decide::LabelStatus;
use super::ledger::set_label;
use super::runs::Run;
use super::store::Store;

impl Store {
    /// The labels the ledger attributes to tag-space (confirmed) on some page of `space`,
    /// in name order.
    pub fn owned_labels(&self, space: &str) -> Result<Vec<String>, CacheError> {
        let conn = self.conn();
        conn.prepare_cached(
            "SELECT DISTINCT label FROM labels WHERE space = ?1 AND status = 'added' ORDER BY 1",
        )
        .and_then(|mut s| s.query_map([space], |r| r.get(0))?.collect())
        .map_err(self.err("read the ledger"))
    }

    /// Records what a census of `label` found: every page of the run's space where the
    /// ledger says tag-space added `label` and that is not in `present` is marked
    /// [`LabelStatus::Dismissed`]. Returns those pages' ids.
    ///
    /// Written in a dry run too: it records what a person did, not a write of tag-space's,
    /// and a dry run that forgot it could later mistake the person's re-add for tag-space's.
    pub fn record_census(
        &self,
        run: &Run,
        label: &str,
        present: &HashSet<String>,
    ) -> Result<Vec<String>, CacheError> {
        let owning: Vec<String> =
            {
                let conn = self.conn();
                conn.prepare_cached(
                "SELECT page_id FROM labels WHERE space = ?1 AND label = ?2 AND status = 'added'",
            )
            .and_then(|mut s| s.query_map(params![run.space, label], |r| r.get(0))?.collect())
            .map_err(self.err("read the ledger"))?
            };
        let gone: Vec<String> = owning
            .into_iter()
            .filter(|id| !present.contains(id))
            .collect();
        if !gone.is_empty() {
            self.ledger_tx("record a census", |tx, at| {
                for id in &gone {
                    set_label(tx, run, id, label, LabelStatus::Dismissed, at)?;
                }
                Ok(())
            })?;
        }
        Ok(gone)
    }

    /// Applies `settle` (from [`super::settle_after_failure`]) to one page's ledger. A no-op
    /// in a dry run (which writes nothing, so nothing failed).
    pub fn settle_labels(
        &self,
        run: &Run,
        page_id: &str,
        settle: &BTreeMap<String, Option<LabelStatus>>,
    ) -> Result<(), CacheError> {
        if run.dry_run || settle.is_empty() {
            return Ok(());
        }
        self.ledger_tx("settle label intents", |tx, at| {
            for (label, status) in settle {
                match status {
                    Some(status) => set_label(tx, run, page_id, label, *status, at)?,
                    None => {
                        tx.prepare_cached(
                            "DELETE FROM labels WHERE space = ?1 AND page_id = ?2 AND label = ?3",
                        )?
                        .execute(params![run.space, page_id, label])?;
                    }
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::ContentHash;
    use crate::cache::{LabelPlan, PageDone, RunMode, Setup, StoreOptions};

    fn done() -> PageDone {
        PageDone {
            version: Some(1),
            content_hash: ContentHash::of_page("T", "b"),
            setup: Setup::new("t", "p", "m").hash(),
        }
    }

    fn add(store: &Store, run: &Run, page: &str, labels: &[&str]) {
        let plan = LabelPlan {
            add: labels.iter().map(|l| l.to_string()).collect(),
            ..LabelPlan::default()
        };
        store.prepare_labels(run, page, &plan).unwrap();
        store.finish_page(run, page, &done(), &plan).unwrap();
    }

    #[test]
    fn a_census_dismisses_exactly_the_owned_labels_it_did_not_find() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s.db"), StoreOptions::default()).unwrap();
        let run = store.begin_run("ENG", RunMode::Add, false).unwrap();
        add(&store, &run, "1", &["a", "b"]);
        add(&store, &run, "2", &["a"]);
        let other = store.begin_run("OPS", RunMode::Add, false).unwrap();
        add(&store, &other, "9", &["z"]);
        assert_eq!(store.owned_labels("ENG").unwrap(), ["a", "b"]);

        let present: HashSet<String> = ["1".to_string()].into();
        assert_eq!(store.record_census(&run, "a", &present).unwrap(), ["2"]);
        let l = store.page_ledger("ENG", "2").unwrap();
        assert_eq!(l.labels.get("a"), Some(&LabelStatus::Dismissed));
        let l = store.page_ledger("ENG", "1").unwrap();
        assert_eq!(l.labels.get("a"), Some(&LabelStatus::Added));
        // Dismissed labels are no longer owned, and a second census finds nothing new.
        assert!(store.record_census(&run, "a", &present).unwrap().is_empty());
        assert_eq!(store.owned_labels("OPS").unwrap(), ["z"]);

        // Recorded in a dry run too: it is an observation, not a write.
        let dry = store.begin_run("ENG", RunMode::Add, true).unwrap();
        assert_eq!(
            store.record_census(&dry, "b", &HashSet::new()).unwrap(),
            ["1"]
        );
        assert_eq!(store.owned_labels("ENG").unwrap(), ["a"]);
    }
}
