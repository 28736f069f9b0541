//! The persistent store: classification cache, label ledger and run history, in one SQLite
//! file (`TAG_SPACE_CACHE_PATH`, default [`default_path`]).
//!
//! A nightly run over an unchanged space should cost nothing, and a run killed halfway should
//! resume without redoing or losing work. Three things make that so:
//!
//! * **Classification cache** ([`Store::lookup`], [`Store::store_batch`]): the model's answer
//!   per [`CacheKey`] (page title + extracted text + taxonomy fingerprint + prompt version +
//!   model), with an in-memory LRU in front. A changed taxonomy or model changes every key,
//!   so it invalidates exactly the answers it should, by construction.
//! * **Label ledger** ([`Store::page_ledger`], [`is_unchanged`], [`plan_add`] / [`plan_sync`],
//!   [`Store::prepare_labels`], [`Store::finish_page`]): which labels tag-space itself added,
//!   and how each page was when it was last finished. The decisions are pure functions in
//!   [`decide`](self::decide) and are tested without SQLite.
//! * **Runs** ([`Store::begin_run`], [`Store::end_run`], [`Store::stats`], [`Store::clear`]):
//!   each run's counters, and how it ended (finished, failed and why, interrupted) with its
//!   exit code.
//!
//! # How the pipeline uses it
//!
//! ```text
//! start    store = Store::open(path, StoreOptions::from_settings(&cfg.cache))?
//!          run   = store.begin_run(space, RunMode::Add | Sync, dry_run)?
//!          setup = Setup::new(taxonomy.fingerprint(), PROMPT_VERSION, "gemini/<model>")
//! per page, as listed (before extraction):
//!          hash   = ContentHash::of_page(&page.title, &page.body)
//!          ledger = store.page_ledger(space, &page.id)?
//!          if is_unchanged(&ledger, page.version, &hash, &setup.hash(), labels_if_listed) {
//!              store.count_skipped(); done
//!          }
//!          key = CacheKey::new(&setup, &text.title, &text.text)    // after extraction
//!          if let Some(c) = store.lookup(&key)? { use c.labels; skip the model }
//! per batch, when its answer is validated:
//!          store.count_calls(n); store.store_batch(&run, &[(key, Classification::new(..))])?
//! per page, when applying labels:
//!          plan = plan_add / plan_sync(&current_labels, &chosen, &ledger)
//!          store.prepare_labels(&run, &page.id, &plan)?       // write-ahead intent
//!          confluence: add plan.add, remove plan.remove       // only if !plan.is_noop()
//!          on success: store.finish_page(&run, &page.id, &PageDone { version, content_hash: hash, setup: setup.hash() }, &plan)?
//! end      store.end_run(&run, &RunEnd { status, error, exit_code })?   // or finish_run(&run)
//! ```
//!
//! In a dry run `prepare_labels` and `finish_page` write nothing, so a later real run does
//! the work. Every call is synchronous and takes microseconds (see [`store`](self::store) and
//! BENCHMARKS.md); call it directly from async code, never holding anything across `.await`.

mod census;
mod checkpoint;
mod decide;
mod error;
mod jobs;
mod key;
mod ledger;
mod rungs;
mod runs;
mod schema;
mod settings;
mod show;
mod stats;
mod store;
mod tasks;

pub use decide::{
    LabelPlan, LabelStatus, PageDone, PageLedger, is_unchanged, is_unchanged_version, plan_add,
    plan_sync, settle_after_failure,
};
pub use error::CacheError;
pub use jobs::{JobRecord, JobSpec, RequestRecord};
pub use key::{CacheKey, ContentHash, Setup, SetupHash};
pub use rungs::Endpoint;
pub use runs::{Run, RunCounters, RunEnd, RunMode, RunRecord, RunStatus};
pub use schema::{SCHEMA_VERSION, prepare_dir};
pub use settings::CacheSettings;
pub use show::{write_cleared, write_stats};
pub use stats::{Cleared, SpaceStats, Stats};
pub use store::{Classification, Store, StoreOptions, default_path};
pub use tasks::TaskRow;
