//! The key a command works on, as it is spelled where it lives: on the Confluence site for a
//! run (before the run lock and the state file use it), among the recorded spaces for
//! `cache clear --space`. A key typed in another case is taken when exactly one key matches
//! it ([`crate::confluence::resolve`]).

use anyhow::Context;

use crate::cache::Store;
use crate::config::Config;
use crate::confluence::ConfluenceClient;
use crate::confluence::pace::PaceConfig;
use crate::confluence::resolve::{KeyMatch, match_key};
use crate::report;

/// The client for the run's site, its credentials checked, with `config.space` replaced by
/// the key as the site spells it (and one notice line when it differed). A lookup that fails is kept for the run's
/// listing ([`ConfluenceClient::defer_space_failure`]), so that the run ends on it as on
/// any listing failure: report, run history and exit code 2, under the key as typed.
pub(super) async fn connect(config: &mut Config) -> anyhow::Result<ConfluenceClient> {
    let client = site(config)?;
    // A wrong token fails here, once, with its hint, rather than as a 404 on every page; the
    // run then ends on it as on a failed lookup.
    if let Err(e) = client.check_credentials().await {
        client.defer_space_failure(&config.space, e);
        return Ok(client);
    }
    resolve(&client, config).await;
    Ok(client)
}

/// The client for the run's site, paced as configured; no request made yet.
pub(super) fn site(config: &Config) -> anyhow::Result<ConfluenceClient> {
    let settings = config
        .confluence
        .clone()
        .context("Confluence is not configured")?;
    Ok(ConfluenceClient::new(settings)?.with_pace(PaceConfig {
        concurrency: config.confluence_concurrency,
        max_cooldown: config.max_cooldown,
        ..PaceConfig::default()
    }))
}

/// `config.space` replaced by the key as the site spells it (one notice line when it
/// differs); a lookup that fails is kept for the space's listing (see [`connect`]).
pub(super) async fn resolve(client: &ConfluenceClient, config: &mut Config) {
    match client.resolve_space(&config.space).await {
        Ok(space) => {
            if let Some(notice) = space.notice() {
                report::warning_line(&notice);
            }
            config.space = space.key;
        }
        Err(e) => client.defer_space_failure(&config.space, e),
    }
}

/// The recorded space `cache clear --space given` means: `given` itself when it is recorded
/// (or nothing is recorded in any case of it: there is then nothing to clear), else the only
/// recorded space that matches it ignoring case. Several are an error listing them.
pub(super) fn recorded_space(store: &Store, given: &str) -> anyhow::Result<String> {
    let stats = store.stats(0).map_err(|e| anyhow::anyhow!("{e}"))?;
    let recorded = stats.spaces.iter().map(|s| s.space.as_str());
    match match_key(given, recorded) {
        KeyMatch::Exact(k) => Ok(k.to_string()),
        KeyMatch::Folded(k) => {
            report::warning_line(&format!(
                "nothing is recorded for space '{given}'; clearing {k}, the only recorded space that matches it ignoring case"
            ));
            Ok(k.to_string())
        }
        KeyMatch::Ambiguous(keys) => anyhow::bail!(
            "space '{given}' is not recorded in {}, but several recorded spaces differ from it only in case: {}; pass the exact one with --space",
            stats.path.display(),
            keys.join(", ")
        ),
        KeyMatch::Missing(near) => {
            if !near.is_empty() {
                report::warning_line(&format!(
                    "nothing is recorded for space '{given}' (recorded spaces closest to it: {})",
                    near.join(", ")
                ));
            }
            Ok(given.to_string())
        }
    }
}
