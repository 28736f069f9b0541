//! A run over several spaces: one [`RunReport`] per space, absorbed into the run's report,
//! which keeps each space's end and counts for the per-space breakdown (the table, both
//! reports) and each page's space.

use std::time::Duration;

use super::{CacheMetrics, PageCounts, RunReport, RunStatus};

/// At most this many keys in a heading; the breakdown lists every space.
const KEYS_IN_TITLE: usize = 8;

/// One space of a run: how it ended, how far it got, its page counts.
#[derive(Debug, Clone, PartialEq)]
pub struct SpaceSummary {
    pub space: String,
    pub status: RunStatus,
    /// Why the space failed (status `Failed` only): not found, no permission, its lock held.
    pub error: Option<String>,
    pub pages_listed: Option<u64>,
    pub counts: PageCounts,
    /// `None` for a space that failed before its run started (its lock was held).
    pub elapsed: Option<Duration>,
}

impl RunReport {
    /// Makes this the report of a run over several spaces (even if only one of them was
    /// found): `run.space` is then a list for people, and [`RunReport::spaces`] the parts.
    pub fn over_several_spaces(mut self) -> Self {
        self.several = true;
        self
    }

    /// Whether this run was over several spaces (see [`RunReport::over_several_spaces`]).
    pub fn several_spaces(&self) -> bool {
        self.several
    }

    /// Takes one space's report: its pages (each with its space), counts and cache counters
    /// are added to this one's; its end becomes one entry of the breakdown.
    pub fn absorb(&mut self, part: RunReport) {
        let index = self.space_summaries.len() as u16;
        // A part keeps its pages only when this report does (both follow the settings).
        let keep = self.keep_pages;
        for record in part.pages.iter().filter(|_| keep) {
            let mut record = record.clone();
            record.before = self.intern_all(&part.names_owned(&record.before));
            record.labels = self.intern_all(&part.names_owned(&record.labels));
            record.removed = self.intern_all(&part.names_owned(&record.removed));
            record.space = index;
            self.pages.push(record);
        }
        let c = &mut self.counts;
        let p = part.counts;
        c.seen += p.seen;
        c.tagged += p.tagged;
        c.unchanged += p.unchanged;
        c.no_label += p.no_label;
        c.skipped += p.skipped;
        c.failed += p.failed;
        c.stale += p.stale;
        c.labels += p.labels;
        c.labels_removed += p.labels_removed;
        if let Some(pc) = part.cache {
            let cache = self
                .cache
                .get_or_insert(CacheMetrics { hits: 0, misses: 0 });
            cache.hits += pc.hits;
            cache.misses += pc.misses;
        }
        self.space_summaries.push(SpaceSummary {
            space: part.run.space.clone(),
            status: part.run.status,
            error: part.run.error.clone(),
            pages_listed: part.run.pages_listed,
            counts: part.counts,
            elapsed: part.elapsed,
        });
        self.retitle();
    }

    /// A space whose run did not start: it failed first (e.g. another run holds its lock),
    /// or the run was stopped before it.
    pub fn add_space_end(&mut self, space: &str, status: RunStatus, error: Option<String>) {
        self.space_summaries.push(SpaceSummary {
            space: space.to_string(),
            status,
            error,
            pages_listed: None,
            counts: PageCounts::default(),
            elapsed: None,
        });
        self.retitle();
    }

    /// Each space of the run, in the order they ended; a single-space run has one, made
    /// from its own end and counts.
    pub fn spaces(&self) -> Vec<SpaceSummary> {
        if self.several {
            return self.space_summaries.clone();
        }
        vec![SpaceSummary {
            space: self.run.space.clone(),
            status: self.run.status,
            error: self.run.error.clone(),
            pages_listed: self.run.pages_listed,
            counts: self.counts,
            elapsed: self.elapsed,
        }]
    }

    /// Spaces of a run over several that failed (not found, no permission, locked, ...).
    pub fn failed_spaces(&self) -> u64 {
        let failed = self.space_summaries.iter();
        failed.filter(|s| s.status == RunStatus::Failed).count() as u64
    }

    /// What failed, for the exit code: pages, and in a run over several spaces, spaces.
    pub fn failures(&self) -> u64 {
        self.counts.failed + self.failed_spaces()
    }

    /// The space a page belongs to.
    pub(super) fn space_of(&self, index: u16) -> &str {
        match self.several {
            true => &self.space_summaries[usize::from(index)].space,
            false => &self.run.space,
        }
    }

    /// "space ENG", or "spaces ENG, OPS" (at most [`KEYS_IN_TITLE`] keys, then "and N
    /// more"), for headings.
    pub fn space_title(&self) -> String {
        if !self.several {
            return format!("space {}", self.run.space);
        }
        self.run.space.clone()
    }

    fn retitle(&mut self) {
        let keys: Vec<&str> = self
            .space_summaries
            .iter()
            .map(|s| s.space.as_str())
            .collect();
        let mut title = match keys.len() {
            0 => "no space".to_string(),
            1 => format!("space {}", keys[0]),
            _ => format!(
                "spaces {}",
                keys[..keys.len().min(KEYS_IN_TITLE)].join(", ")
            ),
        };
        if keys.len() > KEYS_IN_TITLE {
            title.push_str(&format!(" and {} more", keys.len() - KEYS_IN_TITLE));
        }
        self.run.space = title;
    }

    fn names_owned(&self, ids: &[super::LabelId]) -> Vec<String> {
        self.names(ids).into_iter().map(str::to_string).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::super::{Mode, RunInfo};
    use super::*;
    use crate::pipeline::{PageOutcome, Status};

    fn outcome(id: &str, status: Status, added: &[&str]) -> PageOutcome {
        PageOutcome {
            id: id.into(),
            title: format!("Page {id}"),
            url: None,
            status,
            labels_before: vec!["kept".into()],
            chosen: Vec::new(),
            added: added.iter().map(|s| s.to_string()).collect(),
            removed: Vec::new(),
            provider: None,
            reason: (status == Status::Failed).then(|| "boom".into()),
            version: None,
            content_hash: None,
        }
    }

    fn report(space: &str) -> RunReport {
        let info = RunInfo::new(space, Mode::Add, true, SystemTime::UNIX_EPOCH);
        let args = clap::Parser::parse_from(["tag-space", "--demo"]);
        let config = crate::config::Config::from_sources(&args, |_| None).unwrap();
        RunReport::new(info, crate::app::report_settings(&config, "fp"))
    }

    #[test]
    fn absorbed_spaces_add_up_and_keep_their_pages_space() {
        let mut eng = report("ENG");
        eng.record(&outcome("2", Status::Tagged, &["type-howto", "tool-jira"]));
        eng.record(&outcome("3", Status::Failed, &[]));
        let mut ops = report("OPS");
        ops.record(&outcome("1", Status::Tagged, &["tool-jira"]));
        ops.set_pages_listed(4);
        let mut all = report("").over_several_spaces();
        all.absorb(eng);
        all.absorb(ops);
        all.add_space_end(
            "NOPE",
            RunStatus::Failed,
            Some("space NOPE not found".into()),
        );

        assert_eq!(all.counts().seen, 3);
        assert_eq!(all.counts().labels, 3);
        assert_eq!(all.counts().failed, 1);
        assert_eq!(all.failed_spaces(), 1);
        assert_eq!(all.failures(), 2);
        assert_eq!(all.space_title(), "spaces ENG, OPS, NOPE");
        let spaces = all.spaces();
        assert_eq!(spaces.len(), 3);
        assert_eq!(
            (spaces[1].space.as_str(), spaces[1].counts.seen),
            ("OPS", 1)
        );
        assert_eq!(spaces[1].pages_listed, Some(4));
        assert_eq!(spaces[2].status, RunStatus::Failed);
        let pages: Vec<(&str, &str, Vec<&str>)> = all
            .pages()
            .iter()
            .map(|p| (p.id(), p.space(), p.labels()))
            .collect();
        assert_eq!(
            pages,
            [
                ("1", "OPS", vec!["tool-jira"]),
                ("2", "ENG", vec!["type-howto", "tool-jira"]),
                ("3", "ENG", vec![]),
            ]
        );
    }

    #[test]
    fn a_single_space_run_is_its_own_breakdown() {
        let mut eng = report("ENG");
        eng.record(&outcome("2", Status::Failed, &[]));
        assert!(!eng.several_spaces());
        assert_eq!(eng.space_title(), "space ENG");
        assert_eq!(eng.failures(), 1);
        let spaces = eng.spaces();
        assert_eq!(spaces.len(), 1);
        assert_eq!(
            (spaces[0].space.as_str(), spaces[0].counts.failed),
            ("ENG", 1)
        );
        assert_eq!(eng.pages()[0].space(), "ENG");
    }

    #[test]
    fn a_long_list_of_spaces_is_cut_in_titles() {
        let mut all = report("").over_several_spaces();
        for i in 0..10 {
            all.add_space_end(&format!("S{i}"), RunStatus::Failed, None);
        }
        assert_eq!(
            all.space_title(),
            "spaces S0, S1, S2, S3, S4, S5, S6, S7 and 2 more"
        );
        assert_eq!(all.spaces().len(), 10);
    }
}
