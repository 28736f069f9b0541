//! `tag-space apply FILE`: writes a reviewed plan (`crate::plan`), with no model. The plan
//! is refused whole (exit 2) when it is not a plan, of another version, changed since it was
//! written, or made for another site or taxonomy; then each space in turn is applied as a
//! run would write it: its key resolved on the site, its lock taken, its state file run
//! begun, and its planned pages through the pipeline's apply stage, several at a time
//! ([`crate::pipeline::apply_plan`]), each after a version check against a metadata listing.
//!
//! One client, so one governor, for the whole plan: every space shares the site's cooldown,
//! pacing, concurrency limit and halt, as the spaces of one run do (`app/spaces.rs`). When
//! the site halts the work (a quota spent, a wait above `TAG_SPACE_MAX_COOLDOWN_SECS`), the
//! pages written are reported, and one line says how many were not applied and why (exit 2):
//! applying the same plan again later writes only those.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use anyhow::Context;
use tokio::sync::mpsc;

use super::{Session, lock, new_report, space, state, statedir};
use crate::cache::{self, RunEnd};
use crate::cli::ApplyArgs;
use crate::config::{Config, ConfigError};
use crate::confluence::{ConfluenceClient, ConfluenceError, PageSource};
use crate::ending::{exit_code, one_line, record_end, write_reports};
use crate::pipeline::{self, GONE, ListedNow, PageOutcome, PlannedWrite, RunOptions, Status};
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
    let mut gone = 0;
    let mut record = |o: &PageOutcome| {
        run_report.record(o);
        gone += usize::from(is_gone(o));
        if page_lines && (!config.log.quiet || o.status == Status::Failed) {
            report::print_page_line(None, o, config.dry_run);
        }
    };
    let client = space::site(&config)?;
    let failure = apply_spaces(
        &config,
        &taxonomy,
        &planned,
        &session,
        (&client, &path),
        &mut record,
    )
    .await;
    if let Some(site) = client.site_stats() {
        run_report.set_confluence(site);
    }
    let status = match (&failure, session.cancel.is_cancelled()) {
        (_, true) => RunStatus::Interrupted,
        (Some(_), false) => RunStatus::Failed,
        (None, false) => RunStatus::Finished,
    };
    let stale = run_report.counts().stale;
    stale_lines(stale as usize - gone, gone);
    run_report.set_end(status, failure.as_ref().map(one_line));
    run_report.finish(SystemTime::now(), started.elapsed());
    let written = write_reports(config.format, config.no_color, &config.reports, &run_report);
    if let Some(e) = failure.or(written.err()) {
        return Err(e);
    }
    Ok(exit_code(status, run_report.counts().failed + stale))
}

/// Each space in turn, through the one `client`, until one fails (its error), the site
/// halts the work (an error counting the pages not applied) or the run is stopped.
async fn apply_spaces(
    config: &Config,
    taxonomy: &Taxonomy,
    planned: &Planned,
    session: &Session,
    (client, path): (&ConfluenceClient, &Path),
    record: &mut dyn FnMut(&PageOutcome),
) -> Option<anyhow::Error> {
    // One check for every space: refused credentials would fail each of them.
    if let Err(e) = client.check_credentials().await {
        return Some(e.into());
    }
    for (i, (key, writes)) in planned.iter().enumerate() {
        let mut config = Config {
            space: key.clone(),
            ..config.clone()
        };
        let space = apply_space(
            &mut config,
            taxonomy,
            writes,
            session,
            (client, path),
            record,
        );
        match space.await {
            Err(e) => return Some(e),
            Ok(Some(left)) => {
                let later: usize = planned[i + 1..].iter().map(|(_, w)| w.len()).sum();
                return Some(halted(client, left + later, path));
            }
            Ok(None) => {}
        }
        if session.cancel.is_cancelled() {
            break;
        }
    }
    None
}

/// The one line for a halt during apply: why, how many pages were not applied, what to do.
fn halted(client: &ConfluenceClient, not_applied: usize, plan: &Path) -> anyhow::Error {
    let (cause, when) = client
        .governor()
        .halted()
        .map_or(("Confluence stopped the work".into(), "later"), |h| {
            (h.cause(), h.when())
        });
    anyhow::anyhow!(
        "{cause}: {not_applied} planned pages not applied; run `tag-space apply {}` again {when}: it writes only those",
        plan.display()
    )
}

/// A stale page that is gone, not edited.
fn is_gone(o: &PageOutcome) -> bool {
    o.status == Status::Stale && o.reason.as_deref().is_some_and(|r| r.starts_with(GONE))
}

/// One warning line for the edited pages, one for the gone ones.
fn stale_lines(edited: usize, gone: usize) {
    if edited > 0 {
        report::warning_line(&format!(
            "stale pages (edited since the plan, so left alone): {edited}; make a new plan for them"
        ));
    }
    if gone > 0 {
        report::warning_line(&format!(
            "pages gone since the plan (deleted, moved out of their space, or no longer readable), so not applied: {gone}"
        ));
    }
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
/// time, handed to `record` in plan order. `Ok(Some(n))`: the site halted the work, and `n`
/// of the space's pages were not applied.
async fn apply_space(
    config: &mut Config,
    taxonomy: &Taxonomy,
    writes: &[PlannedWrite],
    session: &Session,
    (client, path): (&ConfluenceClient, &Path),
    record: &mut dyn FnMut(&PageOutcome),
) -> anyhow::Result<Option<usize>> {
    space::resolve(client, config).await;
    let _lock = lock::take(config, &session.cancel).await?;
    let state = state::open(config, taxonomy)?.context(
        "apply needs the state file (the label ledger says which labels are tag-space's): set TAG_SPACE_CACHE_PATH or --cache-path to the one the plan's dry run used",
    )?;
    let now = match listed(client, &config.space, writes).await {
        Ok(now) => now,
        Err(_) if client.halted().is_some() => {
            let e = halted(client, writes.len(), path);
            record_end(&state, &ended(cache::RunStatus::Failed, Some(&e), 2));
            return Ok(Some(writes.len()));
        }
        Err(e) => {
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
    let done =
        pipeline::apply_plan(client, taxonomy, &opts, writes, now, concurrency, &mut sink).await;
    let left = writes.len() - done.handed;
    let (end, halt) = match (left, client.halted()) {
        (0, _) => (ended(cache::RunStatus::Finished, None, code), None),
        (_, Some(_)) => {
            let e = halted(client, left, path);
            (ended(cache::RunStatus::Failed, Some(&e), 2), Some(left))
        }
        (_, None) => (ended(cache::RunStatus::Interrupted, None, 130), None),
    };
    record_end(&state, &end);
    Ok(halt)
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
