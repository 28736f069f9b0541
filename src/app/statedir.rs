//! The state file's folder, checked before anything uses it, and the one warning a run that
//! goes on without its state file gives.

use crate::cache::CacheError;
use crate::config::Config;
use crate::report;

/// Checks the state file's folder before the run lock is taken in it or SQLite opens the
/// file: an unusable folder stops the run with one line naming it, what was tried and what to
/// do; under `--no-cache` (and for the demo) the run goes on without the state file. Without
/// any place for it (no `TAG_SPACE_CACHE_PATH`, `XDG_CACHE_HOME` or `HOME`) it warns once.
pub(super) fn check(config: &mut Config) -> anyhow::Result<()> {
    let Some(path) = &config.cache.path else {
        sync_warning(config);
        tracing::warn!(
            "no place for the state file (set TAG_SPACE_CACHE_PATH, XDG_CACHE_HOME or HOME): running without the cache and the label ledger"
        );
        return Ok(());
    };
    match crate::cache::prepare_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if !config.cache.enabled || config.demo => {
            going_on_without(config, &e);
            config.cache.path = None;
            // The locks live in the same folder (until they move out of it).
            config.lock_dir = None;
            Ok(())
        }
        // It names the file, what was tried and what to do, on one line.
        Err(e) => Err(e.into()),
    }
}

/// The warning when the run goes on without a state file it cannot use. It never says "run
/// with --no-cache": that is what got it here.
pub(super) fn going_on_without(config: &Config, e: &CacheError) {
    report::warning_line(&format!(
        "cannot use the state file {} ({}): going on without it, so incremental runs are off: every page is classified again and nothing is recorded",
        e.path().display(),
        e.reason()
    ));
    sync_warning(config);
}

fn sync_warning(config: &Config) {
    if config.sync {
        report::warning_line(
            "--sync without the state file: no label is removed (only the ledger knows which labels are tag-space's)",
        );
    }
}

/// The demo space as earlier demo runs left it, from the demo's state file: the labels
/// tag-space added are on its pages, and pages "edited" by `--demo-edit` keep their edits;
/// `edit` more pages are edited now. A state file that cannot be read gives the space as
/// bundled (opening the state file for the run then says what is wrong with it).
pub(super) fn demo_source(config: &Config, edit: usize) -> crate::confluence::MemorySource {
    use crate::cache::{Store, StoreOptions};
    let store = config
        .cache
        .path
        .as_ref()
        .and_then(|p| Store::open(p, StoreOptions::from_settings(&config.cache)).ok());
    match crate::demo::restore(store.as_ref(), edit) {
        Ok(source) => source,
        Err(e) => {
            tracing::warn!(error = %e, "cannot restore the demo space from its state file; starting from the bundled one");
            crate::demo::restore(None, edit).expect("restoring without a store cannot fail")
        }
    }
}
