//! `tag-space cache stats|clear`: the state file without a run.

use std::io::Write;

use anyhow::Context;

use crate::cache::{Store, StoreOptions};
use crate::cli::{Args, CacheCommand};

/// `tag-space cache stats|clear`: synchronous, needs no Confluence or LLM settings.
pub fn cache_command(args: &Args, cmd: &CacheCommand) -> anyhow::Result<()> {
    let (CacheCommand::Stats { cache_path, .. } | CacheCommand::Clear { cache_path, .. }) = cmd;
    let mut args = args.clone();
    if cache_path.is_some() {
        args.cache_path.clone_from(cache_path);
    }
    let settings = crate::config::cache_settings(&args)?;
    let path = settings.path.clone().context(
        "no state file: set TAG_SPACE_CACHE_PATH (or --cache-path), XDG_CACHE_HOME or HOME",
    )?;
    let mut out = std::io::stdout().lock();
    if !path.exists() {
        // Opening would create it; there is nothing to show or clear.
        writeln!(
            out,
            "no state file at {} yet: nothing recorded",
            path.display()
        )?;
        return Ok(());
    }
    let store = Store::open(&path, StoreOptions::from_settings(&settings))?;
    match cmd {
        CacheCommand::Stats { runs, .. } => {
            let stats = store.stats(*runs)?;
            crate::cache::write_stats(&mut out, &stats)?;
        }
        CacheCommand::Clear { space, .. } => {
            let space = match space {
                Some(given) => Some(super::space::recorded_space(&store, given)?),
                None => None,
            };
            let cleared = store.clear(space.as_deref())?;
            crate::cache::write_cleared(&mut out, space.as_deref(), &cleared)?;
        }
    }
    Ok(())
}
