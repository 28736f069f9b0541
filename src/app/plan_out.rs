//! `--dry-run --plan FILE`: the plan is gathered from the run's own page outcomes and saved
//! when the run went through.

use std::time::SystemTime;

use crate::config::Config;
use crate::plan::{self, Builder, PlanMode, Site};
use crate::report;
use crate::report::model::RunStatus;
use crate::taxonomy::Taxonomy;

/// The plan builder when `--plan` was given. A plan needs the state file: its pages carry
/// the ledger's content hashes, and `apply` reads the ledger.
pub(super) fn builder(
    config: &Config,
    taxonomy: &Taxonomy,
    has_state: bool,
) -> anyhow::Result<Option<Builder>> {
    let b = empty(config, taxonomy, has_state)?;
    Ok(b.map(|mut b| {
        b.space(&config.space);
        b
    }))
}

/// A plan builder with no space yet, when `--plan` was given.
fn empty(config: &Config, taxonomy: &Taxonomy, has_state: bool) -> anyhow::Result<Option<Builder>> {
    let (Some(path), Some(site)) = (&config.plan, &config.confluence) else {
        return Ok(None);
    };
    if !has_state {
        anyhow::bail!(
            "--plan {} needs the state file (a plan records the ledger's view of each page, and apply reads the ledger): set TAG_SPACE_CACHE_PATH or --cache-path",
            path.display()
        );
    }
    let site = Site::new(&site.root, &site.flavor.to_string());
    let mode = if config.sync {
        PlanMode::Sync
    } else {
        PlanMode::Add
    };
    Ok(Some(Builder::new(site, mode, taxonomy.fingerprint())))
}

/// The one plan builder of a run over several spaces when `--plan` was given; each space
/// adds its entry when it starts. The state file is checked by its path here (each space
/// opens it later).
pub(super) fn several(config: &Config, taxonomy: &Taxonomy) -> anyhow::Result<Option<Builder>> {
    empty(config, taxonomy, config.cache.path.is_some())
}

/// Writes the plan if the run went through every page: an interrupted or failed run's plan
/// would look complete and is not written (as terraform writes no plan after an error).
pub(super) fn save(
    config: &Config,
    builder: Option<Builder>,
    status: RunStatus,
) -> anyhow::Result<()> {
    let (Some(path), Some(builder)) = (&config.plan, builder) else {
        return Ok(());
    };
    if status != RunStatus::Finished {
        report::warning_line(&format!(
            "no plan written to {}: the run did not go through every page",
            path.display()
        ));
        return Ok(());
    }
    if !builder.left_out.is_empty() {
        report::warning_line(&format!(
            "left out of the plan, their version being unknown: pages {}",
            builder.left_out.join(", ")
        ));
    }
    let plan = builder.finish(SystemTime::now());
    plan::write(path, &plan)?;
    let (pages, add, remove) = plan.totals();
    report::notice_line(&format!(
        "plan written to {}: {pages} pages, {add} labels to add, {remove} to remove; review it, then: tag-space apply {}",
        path.display(),
        path.display()
    ));
    Ok(())
}
