//! Where the run's state (cache, ledger) lives; built by `config`, read by [`super::Store`].

use std::path::PathBuf;

/// Where the run's state (cache, ledger) lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    /// `false` under `--no-cache` or `TAG_SPACE_CACHE_ENABLED=false`: cached answers are not
    /// read (results are still stored).
    pub enabled: bool,
    pub size: usize,
    /// `--cache-path`, else `TAG_SPACE_CACHE_PATH`, else `$XDG_CACHE_HOME/tag-space/state.db`,
    /// else `$HOME/.cache/tag-space/state.db`; `None` when none of them is set.
    pub path: Option<PathBuf>,
}
