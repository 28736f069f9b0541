//! Where state lives: the state file's [`CacheSettings`] and the run locks' directory.

use std::path::PathBuf;

use super::ConfigError;
use super::sources::{parse_bool, setting};
use crate::cache::CacheSettings;
use crate::cli::Args;

/// The demo's state file, in the directory of the real one.
pub const DEMO_STATE_FILE: &str = "demo.db";

/// The state file's settings from flags and a (trimmed, non-empty) variable lookup.
pub(super) fn cache_settings(
    args: &Args,
    get: &impl Fn(&str) -> Option<String>,
) -> Result<CacheSettings, ConfigError> {
    let size: usize = setting(
        None,
        "",
        "TAG_SPACE_CACHE_SIZE",
        get,
        1000,
        1,
        10_000_000,
        "1000",
    )?;
    let enabled = !args.no_cache
        && parse_bool(
            "TAG_SPACE_CACHE_ENABLED",
            get("TAG_SPACE_CACHE_ENABLED"),
            true,
        )?;
    let flag = args.cache_path.clone().map(state_file_in);
    let path = flag
        .clone()
        .or_else(|| get("TAG_SPACE_CACHE_PATH").map(|p| state_file_in(PathBuf::from(p))))
        .or_else(|| {
            crate::cache::default_path(
                get("XDG_CACHE_HOME").map(PathBuf::from).as_deref(),
                get("HOME").map(PathBuf::from).as_deref(),
            )
        });
    // The demo keeps its own state, beside the real one unless --cache-path names it, so that
    // trying it never mixes with a real space's ledger.
    let path = match (args.demo, flag) {
        (true, Some(flag)) => Some(flag),
        (true, None) => path.map(|p| p.with_file_name(DEMO_STATE_FILE)),
        (false, _) => path,
    };
    Ok(CacheSettings {
        enabled,
        size,
        path,
    })
}

/// A state path that names a directory (one that exists, or written with a trailing `/`)
/// means the state file `state.db` inside it: a directory is never opened as a file, nor its
/// parent used as the state directory.
fn state_file_in(path: PathBuf) -> PathBuf {
    let trailing = path
        .as_os_str()
        .to_str()
        .is_some_and(|s| s.ends_with('/') || s.ends_with(std::path::MAIN_SEPARATOR));
    if trailing || path.is_dir() {
        path.join("state.db")
    } else {
        path
    }
}

/// The run locks' directory: `TAG_SPACE_LOCK_DIR`, else `$XDG_CACHE_HOME/tag-space/locks`,
/// else `$HOME/.cache/tag-space/locks`. It does not depend on the state file on purpose: two
/// runs over one space must exclude each other whichever state files they use (the lock's
/// name is keyed by site and space, see [`crate::lock::lock_path`]). Not `$XDG_RUNTIME_DIR`:
/// cron jobs often run without it, so a user's cron run and terminal run would lock in
/// different places.
pub(super) fn lock_dir(get: &impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(dir) = get("TAG_SPACE_LOCK_DIR") {
        return Some(PathBuf::from(dir));
    }
    let state = crate::cache::default_path(
        get("XDG_CACHE_HOME").map(PathBuf::from).as_deref(),
        get("HOME").map(PathBuf::from).as_deref(),
    )?;
    Some(state.parent()?.join("locks"))
}
