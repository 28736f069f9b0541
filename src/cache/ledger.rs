//! The label ledger: which labels tag-space added to which page, and the write-ahead intents
//! recorded around each Confluence write.

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::CacheError;
use super::decide::{LabelPlan, LabelStatus, PageDone, PageLedger};
use super::key::{ContentHash, SetupHash};
use super::runs::Run;
use super::store::{Store, now};

impl Store {
    /// Everything the ledger knows about one page (empty if nothing).
    pub fn page_ledger(&self, space: &str, page_id: &str) -> Result<PageLedger, CacheError> {
        let conn = self.conn();
        let op = "read the ledger";
        let done = conn
            .prepare_cached(
                "SELECT version, content_hash, setup FROM pages WHERE space = ?1 AND page_id = ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![space, page_id], |r| {
                    Ok(PageDone {
                        version: r.get(0)?,
                        content_hash: ContentHash::from_bytes(r.get(1)?),
                        setup: SetupHash::from_bytes(r.get(2)?),
                    })
                })
                .optional()
            })
            .map_err(self.err(op))?;
        let mut stmt = conn
            .prepare_cached("SELECT label, status FROM labels WHERE space = ?1 AND page_id = ?2")
            .map_err(self.err(op))?;
        let rows = stmt
            .query_map(params![space, page_id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(self.err(op))?;
        let mut labels = std::collections::BTreeMap::new();
        for row in rows {
            let (label, status) = row.map_err(self.err(op))?;
            // The CHECK constraint admits only known statuses.
            if let Some(status) = LabelStatus::parse(&status) {
                labels.insert(label, status);
            }
        }
        Ok(PageLedger { done, labels })
    }

    /// Call just before writing `plan` to Confluence: settles what the plan found and records
    /// the write-ahead intents (`Adding`, `Removing`). A no-op in a dry run.
    pub fn prepare_labels(
        &self,
        run: &Run,
        page_id: &str,
        plan: &LabelPlan,
    ) -> Result<(), CacheError> {
        if run.dry_run {
            return Ok(());
        }
        self.ledger_tx("record label intents", |tx, at| {
            settle(tx, run, page_id, plan, at)?;
            for l in &plan.add {
                set_label(tx, run, page_id, l, LabelStatus::Adding, at)?;
            }
            for l in &plan.remove {
                set_label(tx, run, page_id, l, LabelStatus::Removing, at)?;
            }
            Ok(())
        })
    }

    /// Call once Confluence has confirmed every write of `plan` (or when the plan needed
    /// none): confirms the intents and records the page as done in `done`'s state, so that
    /// the next run skips it while it stays unchanged. A no-op in a dry run. If a write
    /// failed, do not call it: the open intents are settled the next time the page is seen.
    pub fn finish_page(
        &self,
        run: &Run,
        page_id: &str,
        done: &PageDone,
        plan: &LabelPlan,
    ) -> Result<(), CacheError> {
        if run.dry_run {
            return Ok(());
        }
        self.ledger_tx("record a finished page", |tx, at| {
            settle(tx, run, page_id, plan, at)?;
            for l in &plan.add {
                set_label(tx, run, page_id, l, LabelStatus::Added, at)?;
            }
            for l in &plan.remove {
                tx.prepare_cached(
                    "DELETE FROM labels WHERE space = ?1 AND page_id = ?2 AND label = ?3",
                )?
                .execute(params![run.space, page_id, l])?;
            }
            tx.prepare_cached(
                "INSERT OR REPLACE INTO pages
                 (space, page_id, version, content_hash, setup, run_id, finished_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                run.space,
                page_id,
                done.version,
                done.content_hash.as_bytes().as_slice(),
                done.setup.as_bytes().as_slice(),
                run.id,
                at,
            ])?;
            Ok(())
        })
    }

    pub(super) fn ledger_tx(
        &self,
        op: &'static str,
        f: impl FnOnce(&rusqlite::Transaction<'_>, i64) -> rusqlite::Result<()>,
    ) -> Result<(), CacheError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.err(op))?;
        f(&tx, now()).map_err(self.err(op))?;
        tx.commit().map_err(self.err(op))
    }
}

fn settle(
    tx: &rusqlite::Transaction<'_>,
    run: &Run,
    page_id: &str,
    plan: &LabelPlan,
    at: i64,
) -> rusqlite::Result<()> {
    for (label, status) in &plan.settle {
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
}

pub(super) fn set_label(
    tx: &rusqlite::Transaction<'_>,
    run: &Run,
    page_id: &str,
    label: &str,
    status: LabelStatus,
    at: i64,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO labels (space, page_id, label, status, run_id, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        run.space,
        page_id,
        label,
        status.as_str(),
        run.id,
        at
    ])?;
    Ok(())
}
