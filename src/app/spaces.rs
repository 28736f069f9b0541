//! A run over several spaces (`--space ENG,OPS`, `--all-spaces`): one provider chain (one
//! governor per provider), one Confluence client (one pace for the site), one state file,
//! and each space under its own run lock with its own run history entry, as if run alone.
//! The spaces run one after another, or `--space-concurrency` at a time, in one task.
//!
//! A space that cannot be done (not found, no permission, its lock held) is reported and the
//! others go on (exit 1). What would fail every space stops the run (exit 2): credentials
//! refused, a total LLM outage, Confluence halting the run's work, an unusable state file.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::space_run::{Front, SpaceRun};
use super::{Session, lock, new_report, plan_out, providers_metrics, run_end, space};
use crate::config::{Config, Spaces};
use crate::confluence::resolve::{KeyMatch, match_key};
use crate::confluence::{ConfluenceClient, PageSource};
use crate::ending::{one_line, record_end, write_reports};
use crate::events::Event;
use crate::governor::Chain;
use crate::llm::AnyProvider;
use crate::plan::Builder;
use crate::report;
use crate::report::model::{RunReport, RunStatus};
use crate::taxonomy::Taxonomy;

/// The stop of a run over several spaces: Ctrl-C (its parent is the session's token), or
/// what one space found that ends them all.
pub(crate) struct RunStop {
    token: CancellationToken,
    why: Mutex<Option<String>>,
}

impl RunStop {
    fn new(token: CancellationToken) -> Self {
        Self {
            token,
            why: Mutex::new(None),
        }
    }

    /// Each space's stop is a child of this one.
    pub(crate) fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Why the run was stopped for every space, if it was (not for Ctrl-C).
    pub(crate) fn stopped_by(&self) -> Option<String> {
        self.why.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn stop(&self, why: String) {
        self.why
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(why);
        self.token.cancel();
    }
}

/// How one space of the run went.
enum Part {
    Ran(Box<RunReport>),
    /// It did not run: its lock was held, or the run stopped before it.
    NotRun {
        space: String,
        status: RunStatus,
        error: Option<String>,
    },
    /// Another key of the run named the same space.
    Again,
}

/// Runs every space of `config.spaces` and writes one report over all of them. `Ok` carries
/// it (failed spaces count as failures for the exit code); `Err` is what stopped them all.
pub(super) async fn run_several(
    config: &Config,
    chain: &Chain<AnyProvider>,
    taxonomy: &Taxonomy,
    session: &Session,
) -> anyhow::Result<RunReport> {
    let client = space::site(config)?;
    // One check for all spaces: refused credentials would fail every one of them.
    client.check_credentials().await?;
    let keys = targets(&client, config).await?;
    let started = Instant::now();
    let stop = RunStop::new(session.cancel.child_token());
    let run = Several {
        config,
        client: &client,
        chain,
        taxonomy,
        session,
        stop: &stop,
        listed: matches!(config.spaces, Spaces::All { .. }),
        taken: RefCell::new(HashSet::new()),
        listing: RefCell::new(HashMap::new()),
        plan: RefCell::new(plan_out::several(config, taxonomy)?),
    };
    let progress = &session.progress;
    let mut events = chain.events().subscribe();
    progress.start(!config.log.quiet, !config.no_color);
    let parts = futures::stream::iter(keys)
        .map(|key| run.space(key))
        .buffered(config.space_concurrency)
        .collect::<Vec<Part>>();
    let parts = tokio::select! {
        parts = parts => parts,
        never = progress.follow(&mut events) => match never {},
    };
    progress.drain(&mut events);
    let mut all = gather(new_report(config, taxonomy).over_several_spaces(), parts);
    all.set_providers(providers_metrics(chain, config, None));
    // The site's figures once, for the whole run: every space went through the one client.
    if let Some(site) = client.site_stats() {
        all.set_confluence(site);
    }
    let failure = end_of_all(&mut all, session, &stop);
    let failure = match (failure, plan_of_all(config, &run, &all)) {
        (None, Err(e)) => {
            all.set_end(RunStatus::Failed, Some(one_line(&e)));
            Some(e)
        }
        (failure, _) => failure,
    };
    all.finish(SystemTime::now(), started.elapsed());
    write_reports(config.format, config.no_color, &config.reports, &all)?;
    if session.cancel.is_cancelled() {
        report::warning_line(
            "interrupted: the summary covers only the pages finished before the stop; run again to do the rest",
        );
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(all),
    }
}

/// The report over several spaces, from each space's part.
fn gather(mut all: RunReport, parts: Vec<Part>) -> RunReport {
    for part in parts {
        match part {
            Part::Ran(r) => all.absorb(*r),
            Part::NotRun {
                space,
                status,
                error,
            } => all.add_space_end(&space, status, error),
            Part::Again => {}
        }
    }
    all
}

/// How the whole run ended: interrupted, stopped for all, every space failed, or finished
/// (spaces that failed then count for exit 1).
fn end_of_all(all: &mut RunReport, session: &Session, stop: &RunStop) -> Option<anyhow::Error> {
    let spaces = all.spaces();
    let listed: Vec<u64> = spaces.iter().filter_map(|s| s.pages_listed).collect();
    if !listed.is_empty() {
        all.set_pages_listed(listed.iter().sum());
    }
    if session.cancel.is_cancelled() {
        all.set_end(RunStatus::Interrupted, None);
        return None;
    }
    let failure = match stop.stopped_by() {
        Some(why) => Some(anyhow::anyhow!("{why}")),
        None if !spaces.is_empty() && all.failed_spaces() == spaces.len() as u64 => {
            Some(anyhow::anyhow!(
                "none of the {} spaces could be labelled (each one's reason is above)",
                spaces.len()
            ))
        }
        None => None,
    };
    match &failure {
        Some(e) => all.set_end(RunStatus::Failed, Some(one_line(e))),
        None => all.set_end(RunStatus::Finished, None),
    }
    failure
}

/// The keys to label: those given, or every global, current space the credentials can see
/// but the excluded ones (one notice line says how many, and what was left out).
async fn targets(client: &ConfluenceClient, config: &Config) -> anyhow::Result<Vec<String>> {
    let exclude = match &config.spaces {
        Spaces::Keys(keys) => return Ok(keys.clone()),
        Spaces::All { exclude } => exclude,
    };
    let visible = client.visible_spaces().await?;
    let keys: Vec<&str> = visible.spaces.iter().map(|s| s.key.as_str()).collect();
    let mut excluded = HashSet::new();
    for given in exclude {
        match match_key(given, keys.iter().copied()) {
            KeyMatch::Exact(k) | KeyMatch::Folded(k) => {
                excluded.insert(k);
            }
            KeyMatch::Ambiguous(ks) => anyhow::bail!(
                "--exclude-space {given}: several spaces differ from it only in case: {}; pass the exact one",
                ks.join(", ")
            ),
            KeyMatch::Missing(_) => report::warning_line(&format!(
                "--exclude-space {given}: no space the run would label has this key"
            )),
        }
    }
    let chosen: Vec<String> = keys
        .iter()
        .filter(|k| !excluded.contains(*k))
        .map(|k| k.to_string())
        .collect();
    report::notice_line(&all_spaces_line(
        chosen.len(),
        visible.left_out,
        excluded.len(),
    ));
    if visible.truncated {
        report::warning_line(&format!(
            "the site lists more than {} spaces: only the first were taken",
            crate::confluence::resolve::MAX_LISTED_KEYS
        ));
    }
    anyhow::ensure!(
        !chosen.is_empty(),
        "--all-spaces: no space to label (the credentials see no global, current space{})",
        if excluded.is_empty() {
            ""
        } else {
            " that is not excluded"
        }
    );
    Ok(chosen)
}

/// Saves the plan of a run over several spaces, only if every space went through: a plan
/// with a space missing would look complete.
fn plan_of_all(config: &Config, run: &Several<'_>, all: &RunReport) -> anyhow::Result<()> {
    let plan = run.plan.borrow_mut().take();
    let status = match all.failed_spaces() {
        0 => all.run().status,
        _ => RunStatus::Failed,
    };
    plan_out::save(config, plan, status)
}

fn all_spaces_line(chosen: usize, left_out: usize, excluded: usize) -> String {
    format!(
        "--all-spaces: {chosen} spaces to label ({left_out} personal, archived or system spaces left out, {excluded} excluded)"
    )
}

/// What every space of the run shares.
struct Several<'a> {
    config: &'a Config,
    client: &'a ConfluenceClient,
    chain: &'a Chain<AnyProvider>,
    taxonomy: &'a Taxonomy,
    session: &'a Session,
    stop: &'a RunStop,
    /// The keys come from the site's listing (`--all-spaces`): no lookup needed.
    listed: bool,
    /// The spaces started so far, as the site spells them.
    taken: RefCell<HashSet<String>>,
    /// Pages each space took from its listing so far, for the progress bar.
    listing: RefCell<HashMap<String, u64>>,
    /// `--dry-run --plan`: one plan for all spaces, one entry per space.
    plan: RefCell<Option<Builder>>,
}

impl Several<'_> {
    /// One space: its key resolved, its lock taken, its run, its end recorded.
    async fn space(&self, key: String) -> Part {
        if self.stop.token().is_cancelled() {
            return self.not_started(key);
        }
        let mut config = self.config.clone();
        config.space = key;
        if !self.listed {
            space::resolve(self.client, &mut config).await;
        }
        if !self.taken.borrow_mut().insert(config.space.clone()) {
            report::warning_line(&format!(
                "space {} is named twice: it is labelled once",
                config.space
            ));
            return Part::Again;
        }
        let _lock = match lock::take(&config, self.stop.token()).await {
            Ok(held) => held,
            Err(e) => return self.failed(config.space, &e),
        };
        let key = config.space.clone();
        let tell = |event: Event| self.tell(&key, event);
        let run = SpaceRun {
            config: &config,
            chain: self.chain,
            taxonomy: self.taxonomy,
            session: self.session,
            front: Front::Several(self.stop, &tell),
            plan: &self.plan,
        };
        let end = match run.run(self.client).await {
            Ok(end) => end,
            // The state file cannot be used: no space can be.
            Err(e) => {
                self.stop.stop(format!("{e:#}"));
                return self.failed(config.space, &e);
            }
        };
        if let Some(state) = &end.state {
            record_end(state, &run_end(end.failure.as_ref(), &end.report));
        }
        if let Some(e) = &end.failure {
            report::error_line(&format!("{e:#}"));
        }
        if let Some(fatal) = end.fatal {
            self.stop.stop(fatal);
        }
        Part::Ran(Box::new(end.report))
    }

    /// One space's pipeline event, for the run's progress bar: pages taken add up over the
    /// spaces; a space's listing total is left out (the bar then shows no total or ETA: the
    /// spaces not listed yet are not known).
    fn tell(&self, space: &str, event: Event) {
        let event = match event {
            Event::Listed { taken } => {
                let mut listing = self.listing.borrow_mut();
                listing.insert(space.to_string(), taken);
                Event::Listed {
                    taken: listing.values().sum(),
                }
            }
            Event::ListingEnded { .. } => return,
            e => e,
        };
        self.session.progress.observe(&event);
    }

    fn failed(&self, space: String, e: &anyhow::Error) -> Part {
        let line = one_line(e);
        report::error_line(&format!("space {space}: {line}"));
        Part::NotRun {
            space,
            status: RunStatus::Failed,
            error: Some(line),
        }
    }

    /// A space the run stopped before: interrupted, or failed for the reason that stopped it.
    fn not_started(&self, space: String) -> Part {
        let why = self.stop.stopped_by();
        Part::NotRun {
            space,
            status: match why {
                Some(_) => RunStatus::Failed,
                None => RunStatus::Interrupted,
            },
            error: why.map(|w| format!("not started: {}", crate::http::snippet(&w))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_all_spaces_line_says_what_was_left_out() {
        assert_eq!(
            all_spaces_line(3, 2, 1),
            "--all-spaces: 3 spaces to label (2 personal, archived or system spaces left out, 1 excluded)"
        );
    }

    #[test]
    fn the_first_reason_to_stop_is_kept() {
        let stop = RunStop::new(CancellationToken::new());
        assert_eq!(stop.stopped_by(), None);
        stop.stop("no LLM provider can be used".into());
        stop.stop("later".into());
        assert!(stop.token().is_cancelled());
        assert_eq!(
            stop.stopped_by().as_deref(),
            Some("no LLM provider can be used")
        );
    }
}
