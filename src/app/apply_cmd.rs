//! `tag-space apply FILE`: writes a reviewed plan (`crate::plan`), with no model. The plan
//! is refused whole (exit 2) when it is not a plan, of another version, changed since it was
//! written, or made for another site or taxonomy; then each space in turn is applied as a
//! run would write it: its key resolved on the site, its lock taken, its state file run
//! begun, and its planned pages through the pipeline's apply stage, several at a time
//! ([`crate::pipeline::apply_plan`]), each after a version check against a metadata listing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use anyhow::Context;
use tokio::sync::mpsc;

use super::{Session, lock, new_report, space, state, statedir};
use crate::cache::{self, RunEnd};
use crate::cli::ApplyArgs;
use crate::config::{Config, ConfigError};
use crate::confluence::pace::SiteStats;
use crate::confluence::{ConfluenceClient, ConfluenceError, PageSource};
use crate::ending::{exit_code, one_line, record_end, write_reports};
use crate::pipeline::{self, ListedNow, PageOutcome, PlannedWrite, RunOptions, Status};
use crate::plan::{Plan, PlanError, PlanMode};
use crate::report;
use crate::report::OutputFormat;
use crate::report::model::RunStatus;
use crate::taxonomy::Taxonomy;

/// The configuration applying `plan` uses: a run's over its first space, in its mode, with
/// `args`' flags (every space shares the settings; the key is set per space).
pub fn apply_config(args: &ApplyArgs, plan: &Plan) -> Result<Config, ConfigError> {
    let first = plan.spaces.first().map_or("", |s| s.key.as_str());
    Config::load(&args.run_args(first, plan.mode == PlanMode::Sync))
}

/// The planned pages of each space, as the apply stage takes them.
type Planned = Vec<(String, Vec<PlannedWrite>)>;

/// Applies the plan read from `path`; `Ok` carries the exit code (1 if some pages were
/// stale or failed), `Err` a refusal or a fatal error (exit 2).
pub async fn apply(
    mut config: Config,
    plan: Plan,
    path: PathBuf,
    session: Session,
) -> anyhow::Result<u8> {
    for w in &config.warnings {
        report::warning_line(w);
    }
    statedir::check(&mut config)?;
    let taxonomy = match &config.taxonomy_path {
        Some(p) => Taxonomy::load(p)?,
        None => Taxonomy::embedded(),
    };
    let planned = verify(&config, &taxonomy, &plan, &path)?;
    let started = Instant::now();
    let keys: Vec<&str> = plan.spaces.iter().map(|s| s.key.as_str()).collect();
    // One report over every space of the plan, under their keys.
    let mut run_report = new_report(
        &Config {
            space: keys.join(","),
            ..config.clone()
        },
        &taxonomy,
    );
    let page_lines = config.format == OutputFormat::Table;
    let mut record = |o: &PageOutcome| {
        run_report.record(o);
        if page_lines && (!config.log.quiet || o.status == Status::Failed) {
            report::print_page_line(None, o, config.dry_run);
        }
    };
    let mut site = None;
    let failure = apply_spaces(
        &config,
        &taxonomy,
        &planned,
        &session,
        &mut site,
        &mut record,
    )
    .await;
    if let Some(site) = site {
        run_report.set_confluence(site);
    }
    let status = match (&failure, session.cancel.is_cancelled()) {
        (_, true) => RunStatus::Interrupted,
        (Some(_), false) => RunStatus::Failed,
        (None, false) => RunStatus::Finished,
    };
    let stale = run_report.counts().stale;
    if stale > 0 {
        report::warning_line(&format!(
            "stale pages (edited since the plan, so left alone): {stale}; make a new plan for them"
        ));
    }
    run_report.set_end(status, failure.as_ref().map(one_line));
    run_report.finish(SystemTime::now(), started.elapsed());
    let written = write_reports(config.format, config.no_color, &config.reports, &run_report);
    if let Some(e) = failure.or(written.err()) {
        return Err(e);
    }
    Ok(exit_code(status, run_report.counts().failed + stale))
}

/// Each space in turn, until one fails (its error) or the run is stopped; `site` gathers the
/// site's figures.
async fn apply_spaces(
    config: &Config,
    taxonomy: &Taxonomy,
    planned: &Planned,
    session: &Session,
    site: &mut Option<SiteStats>,
    record: &mut dyn FnMut(&PageOutcome),
) -> Option<anyhow::Error> {
    for (key, writes) in planned {
        let mut config = Config {
            space: key.clone(),
            ..config.clone()
        };
        let space = apply_space(&mut config, taxonomy, writes, session, site, record);
        if let Err(e) = space.await {
            return Some(e);
        }
        if session.cancel.is_cancelled() {
            break;
        }
    }
    None
}

/// Refuses a plan for another site or taxonomy, or with a page this build cannot read.
fn verify(
    config: &Config,
    taxonomy: &Taxonomy,
    plan: &Plan,
    path: &Path,
) -> anyhow::Result<Planned> {
    let site = config
        .confluence
        .as_ref()
        .context("Confluence is not configured")?;
    plan.check_site(path, &site.root, &site.flavor.to_string())?;
    if plan.taxonomy_fingerprint != taxonomy.fingerprint() {
        return Err(PlanError::OtherTaxonomy {
            path: path.to_path_buf(),
        }
        .into());
    }
    let unparseable = |detail: String| PlanError::Unparseable {
        path: path.to_path_buf(),
        detail,
    };
    if plan.spaces.is_empty() {
        return Err(unparseable("it plans no space".into()).into());
    }
    plan.spaces
        .iter()
        .map(|s| {
            let writes = s
                .pages
                .iter()
                .map(|p| p.to_write())
                .collect::<Result<_, _>>();
            writes
                .map(|w| (s.key.clone(), w))
                .map_err(|d| unparseable(d).into())
        })
        .collect()
}

/// One space of the plan, as a run over it would write: key resolved, lock, state file run;
/// its pages [`pipeline::apply_plan`]'s way, up to `TAG_SPACE_CONFLUENCE_CONCURRENCY` at a
/// time, handed to `record` in plan order.
async fn apply_space(
    config: &mut Config,
    taxonomy: &Taxonomy,
    writes: &[PlannedWrite],
    session: &Session,
    site: &mut Option<SiteStats>,
    record: &mut dyn FnMut(&PageOutcome),
) -> anyhow::Result<()> {
    let client = space::connect(config).await?;
    let _lock = lock::take(config, &session.cancel).await?;
    let state = state::open(config, taxonomy)?.context(
        "apply needs the state file (the label ledger says which labels are tag-space's): set TAG_SPACE_CACHE_PATH or --cache-path to the one the plan's dry run used",
    )?;
    let now = match listed(&client, &config.space, writes).await {
        Ok(now) => now,
        Err(e) => {
            *site = merged(*site, client.site_stats());
            let e = anyhow::Error::new(e)
                .context(format!("cannot apply the plan to space {}", config.space));
            record_end(&state, &ended(cache::RunStatus::Failed, Some(&e), 2));
            return Err(e);
        }
    };
    let opts = RunOptions {
        space: config.space.clone(),
        dry_run: config.dry_run,
        sync: config.sync,
        state: Some(state.clone()),
        cancel: session.cancel.clone(),
        ..RunOptions::default()
    };
    let mut code = 0;
    let mut sink = |o: PageOutcome| {
        if matches!(o.status, Status::Failed | Status::Stale) {
            code = 1;
        }
        record(&o);
    };
    let concurrency = config.confluence_concurrency;
    let done = pipeline::apply_plan(
        &client,
        taxonomy,
        &opts,
        writes,
        now,
        concurrency,
        &mut sink,
    )
    .await;
    *site = merged(*site, client.site_stats());
    let end = match done < writes.len() {
        true => ended(cache::RunStatus::Interrupted, None, 130),
        false => ended(cache::RunStatus::Finished, None, code),
    };
    record_end(&state, &end);
    Ok(())
}

/// The site's figures over the spaces applied so far: each space has its own client.
fn merged(so_far: Option<SiteStats>, space: Option<SiteStats>) -> Option<SiteStats> {
    let (Some(a), Some(b)) = (so_far, space) else {
        return so_far.or(space);
    };
    Some(SiteStats {
        requests: a.requests + b.requests,
        throttled: a.throttled + b.throttled,
        cooldown_wait: a.cooldown_wait + b.cooldown_wait,
        pacing_wait: a.pacing_wait + b.pacing_wait,
        slot_wait: a.slot_wait + b.slot_wait,
        peak_in_flight: a.peak_in_flight.max(b.peak_in_flight),
        bytes: a.bytes + b.bytes,
    })
}

fn ended(status: cache::RunStatus, e: Option<&anyhow::Error>, exit_code: u8) -> RunEnd {
    RunEnd {
        status,
        error: e.map(one_line),
        exit_code,
    }
}

/// The planned pages as the site lists them now (version, and on Data Center the labels),
/// from a metadata listing: no bodies. Pages the plan does not name are not kept.
async fn listed(
    client: &ConfluenceClient,
    space: &str,
    writes: &[PlannedWrite],
) -> Result<HashMap<String, ListedNow>, ConfluenceError> {
    let wanted: std::collections::HashSet<&str> = writes.iter().map(|w| w.id.as_str()).collect();
    let (tx, mut rx) = mpsc::channel::<crate::confluence::Page>(64);
    let mut now = HashMap::new();
    let gather = async {
        while let Some(page) = rx.recv().await {
            if wanted.contains(page.id.as_str()) {
                let listed = ListedNow {
                    version: page.version,
                    labels: page.labels,
                };
                now.insert(page.id, listed);
            }
        }
    };
    let (result, ()) = tokio::join!(client.stream_metadata(space, tx), gather);
    result.map(|_| now)
}
