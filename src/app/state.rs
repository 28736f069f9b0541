//! The state file (cache, label ledger, runs) for one run: opened, the run's start recorded,
//! and its counters read back for the report.

use std::sync::Arc;

use super::statedir;
use crate::cache::{Endpoint, RunMode, Setup, Store, StoreOptions};
use crate::config::Config;
use crate::governor::Chain;
use crate::llm::{AnyProvider, Provider};
use crate::pipeline::{self, RunState};
use crate::report::model::CacheMetrics;
use crate::taxonomy::Taxonomy;

/// The model a run's answers are cached and its pages finished under: the first provider
/// that is asked, as configured (see [`RunState::setup`] for fallback answers).
fn primary_model(config: &Config) -> String {
    if let Some(g) = &config.gemini {
        format!("gemini/{}", g.model)
    } else if let Some(o) = &config.openai {
        // Two servers with the same model name must not share answers (issue 14); OpenAI's
        // own API keeps its old key, so that its cache stays valid.
        let base = o.base_url.trim_end_matches('/');
        if base == crate::config::DEFAULT_OPENAI_BASE_URL {
            format!("openai/{}", o.model)
        } else {
            format!("openai/{}@{base}", o.model)
        }
    } else {
        pipeline::RULES_MODEL.to_string()
    }
}

/// Opens the state file and records the start of the run. A file that cannot be used stops
/// the run (exit 2, one line naming the file), unless reads are off (`--no-cache`): then the
/// run goes on without it. The demo has its own file ([`crate::config::DEMO_STATE_FILE`]),
/// from which its space is restored as the last run left it.
pub(super) fn open(config: &Config, taxonomy: &Taxonomy) -> anyhow::Result<Option<RunState>> {
    // No path: `statedir::check` has said why.
    let Some(path) = &config.cache.path else {
        return Ok(None);
    };
    let mode = if config.sync {
        RunMode::Sync
    } else {
        RunMode::Add
    };
    let opened = Store::open(path, StoreOptions::from_settings(&config.cache)).and_then(|store| {
        let run = store.begin_run(&config.space, mode, config.dry_run)?;
        Ok((store, run))
    });
    let (store, run) = match opened {
        Ok(x) => x,
        Err(e) if !config.cache.enabled => {
            statedir::going_on_without(config, &e);
            return Ok(None);
        }
        // It names the file and its cause, on one line.
        Err(e) => return Err(e.into()),
    };
    Ok(Some(RunState {
        store: Arc::new(store),
        run,
        setup: Setup::new(
            taxonomy.fingerprint(),
            super::prompt_options(config).version(),
            primary_model(config),
        ),
    }))
}

/// The cache's counters for the report (and the log).
pub(super) fn metrics(state: &RunState) -> CacheMetrics {
    let counters = state.store.counters();
    tracing::info!(
        hits = counters.hits,
        misses = counters.misses,
        skipped_unchanged = counters.skipped_unchanged,
        evictions = counters.evictions,
        calls = counters.calls,
        "cache"
    );
    CacheMetrics {
        hits: counters.hits,
        misses: counters.misses,
    }
}

/// Each HTTP provider starts at the structured-output rung an earlier run found working for
/// its base URL and model (unless `TAG_SPACE_OPENAI_STRUCTURED` forces one).
pub(super) fn resume_rungs(chain: &Chain<AnyProvider>, state: &RunState) {
    for p in chain.providers() {
        let (Some(ladder), Some(at)) = (p.inner().ladder(), endpoint(p.inner())) else {
            continue;
        };
        match state.store.structured_rung(at) {
            Ok(Some(rung)) => ladder.resume_at(&rung),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the structured-output rung"),
        }
    }
}

/// Records the rung each HTTP provider ended on, when an answer there followed the schema.
pub(super) fn remember_rungs(chain: &Chain<AnyProvider>, state: &RunState) {
    for p in chain.providers() {
        let (Some(ladder), Some(at)) = (p.inner().ladder(), endpoint(p.inner())) else {
            continue;
        };
        if !ladder.is_trusted() {
            continue;
        }
        if let Err(e) = state.store.remember_rung(at, ladder.current_name()) {
            tracing::warn!(error = %e, "cannot record the structured-output rung");
        }
    }
}

fn endpoint(p: &AnyProvider) -> Option<Endpoint<'_>> {
    let s = p.settings()?;
    Some(Endpoint {
        provider: p.name(),
        base_url: &s.base_url,
        model: &s.model,
    })
}
