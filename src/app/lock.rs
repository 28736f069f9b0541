//! Taking the run lock for the space before any page is read or anything is written.

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::lock::{self, LockError, RunLock};

/// The run lock for this space ([`crate::lock`]): taken before any page is read or anything
/// is written (only the space lookup comes first, so that the lock has the key as the site
/// spells it), dry runs included (they still spend the provider quota and, with a state
/// file, write it). The demo writes nothing anywhere and takes none. One lock per site and space,
/// whatever the state file; without a place for it (no `TAG_SPACE_LOCK_DIR`,
/// `XDG_CACHE_HOME` or `HOME`) the run goes on unlocked, with a warning.
pub(super) async fn take(
    config: &Config,
    cancel: &CancellationToken,
) -> anyhow::Result<Option<RunLock>> {
    if config.demo {
        return Ok(None);
    }
    let Some(dir) = &config.lock_dir else {
        tracing::warn!(
            "no place for the run lock (TAG_SPACE_LOCK_DIR, XDG_CACHE_HOME and HOME are unset): running without it, so an overlapping run is not prevented"
        );
        return Ok(None);
    };
    let site = config.confluence.as_ref().map_or("", |c| c.root.as_str());
    // Absolute, so that the message tells a cron user exactly which file.
    let path = lock::lock_path(dir, site, &config.space);
    let path = std::path::absolute(&path).unwrap_or(path);
    let held = if config.wait_lock {
        lock::acquire_waiting(&path, std::time::Duration::from_millis(200), cancel, |e| {
            if let LockError::Held { path, holder } = e {
                let pid = holder.map(|p| format!(" (pid {p})")).unwrap_or_default();
                tracing::warn!(
                    lock = %path.display(),
                    "another run{pid} holds the lock for space {}: waiting (--wait-lock)",
                    config.space
                );
            }
        })
        .await?
    } else {
        lock::try_acquire(&path)?
    };
    tracing::debug!(lock = %held.path().display(), "holding the run lock");
    Ok(Some(held))
}
