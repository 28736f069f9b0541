//! The label ledger's decisions, as pure functions over plain data (no SQLite).
//!
//! The ledger remembers, per page, which labels tag-space itself put there. That is what
//! makes two things safe:
//!
//! * **Skipping unchanged pages** ([`is_unchanged`]): same version, same content, same
//!   [`Setup`](super::Setup) as when tag-space last finished the page, and nothing left
//!   half-done.
//! * **`--sync`** ([`plan_sync`]): only labels the ledger attributes to tag-space are ever
//!   removed. A label a person added is never removed, even when it equals a taxonomy tag
//!   that tag-space would no longer choose.
//!
//! **The rule: when tag-space cannot prove a label is its own, the label is the person's.**
//! Ownership is proved only by having seen the label absent right before tag-space's own
//! write landed (the caller plans on labels read immediately before writing), and present at
//! every later observation (a page read, or the label census of
//! [`crate::pipeline`]). A label that is not tag-space's is never removed, and a label a
//! person removed is not added back.
//!
//! **A person's removal is respected, in both modes.** When a label tag-space added is gone
//! from the page, a person took it off; tag-space marks it [`LabelStatus::Dismissed`] and does
//! not put it back on that page. If a person adds it again later, it is theirs: tag-space
//! will not remove it in `--sync` either.
//!
//! **Writes survive `kill -9`** by write-ahead intent. Before writing to Confluence the store
//! records the labels as [`LabelStatus::Adding`] (or [`LabelStatus::Removing`]); after
//! Confluence confirms, as `Added` (or the row goes). An intent still open on the next run
//! cannot always be told apart from a person's action in between, so it is settled
//! conservatively, by looking at the page:
//!
//! | open intent | label on the page now | settled as | why |
//! | --- | --- | --- | --- |
//! | `Adding` | present | `Dismissed` (not ours) | our write may never have landed and a person added it |
//! | `Adding` | absent | `Dismissed` (not added back) | our write may have landed and a person removed it |
//! | `Removing` | present | `Dismissed` (not ours) | our removal may have landed and a person put it back |
//! | `Removing` | absent | forgotten | off the page, as tag-space meant; nothing to own |
//!
//! So no label is written twice, none of a person's labels is ever removed, and a label a
//! person may have removed is not put back; the price is that a label whose write was cut
//! off by a crash is left to people on that page. (A write that *fails* is different: the
//! run reads the page again at once and settles what it can, see [`settle_after_failure`].)
//! Recording only after the confirmation would be worse: a kill between the write and the
//! record would leave a label on the page that the ledger does not know, and it would look
//! like a person's.

use std::collections::{BTreeMap, HashSet};

use super::key::{ContentHash, SetupHash};

/// Where one label of one page stands in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LabelStatus {
    /// About to be written to Confluence; not yet confirmed.
    Adding,
    /// Written by tag-space and confirmed.
    Added,
    /// Added by tag-space, about to be removed by `--sync`; not yet confirmed.
    Removing,
    /// Not tag-space's (any more): a label it added that a person removed, or one whose
    /// interrupted write cannot be told apart from a person's action. Never removed by
    /// `--sync`, never added again to this page; if it is (or comes back) on the page, it is
    /// the person's.
    Dismissed,
}

impl LabelStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            LabelStatus::Adding => "adding",
            LabelStatus::Added => "added",
            LabelStatus::Removing => "removing",
            LabelStatus::Dismissed => "dismissed",
        }
    }
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "adding" => LabelStatus::Adding,
            "added" => LabelStatus::Added,
            "removing" => LabelStatus::Removing,
            "dismissed" => LabelStatus::Dismissed,
            _ => return None,
        })
    }
}

/// How the page was when tag-space last finished it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageDone {
    pub version: Option<u64>,
    pub content_hash: ContentHash,
    pub setup: SetupHash,
}

/// Everything the ledger knows about one page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageLedger {
    /// `None`: tag-space never finished this page (or its state was cleared).
    pub done: Option<PageDone>,
    /// Label name (lowercase) to status.
    pub labels: BTreeMap<String, LabelStatus>,
}

impl PageLedger {
    /// Labels with this status, in name order.
    pub fn with_status(&self, status: LabelStatus) -> impl Iterator<Item = &str> {
        self.labels
            .iter()
            .filter(move |(_, s)| **s == status)
            .map(|(n, _)| n.as_str())
    }
}

/// Whether the page can be skipped before any work: same version, content and setup as when
/// tag-space last finished it, no write left half-done, and (when the caller knows the page's
/// labels) every label tag-space added still in place.
///
/// `current_labels` are the page's `global` label names; `None` when the listing did not carry
/// them (Confluence Cloud). Deciding without them is safe: all a label check could find is a
/// person's removal, which tag-space respects anyway, so there would be nothing to do.
pub fn is_unchanged(
    ledger: &PageLedger,
    version: Option<u64>,
    content_hash: &ContentHash,
    setup: &SetupHash,
    current_labels: Option<&[String]>,
) -> bool {
    ledger
        .done
        .as_ref()
        .is_some_and(|done| done.version == version && done.content_hash == *content_hash)
        && settled(ledger, setup, current_labels)
}

/// As [`is_unchanged`] for a page listed without its body: the same version stands for the
/// same content, since Confluence raises a page's version on every edit of its body or title.
/// A page listed without a version is never unchanged by this test: its body decides.
pub fn is_unchanged_version(
    ledger: &PageLedger,
    version: Option<u64>,
    setup: &SetupHash,
    current_labels: Option<&[String]>,
) -> bool {
    version.is_some()
        && ledger
            .done
            .as_ref()
            .is_some_and(|done| done.version == version)
        && settled(ledger, setup, current_labels)
}

/// The rest of [`is_unchanged`]: finished under `setup`, no intent open, labels in place.
fn settled(ledger: &PageLedger, setup: &SetupHash, current_labels: Option<&[String]>) -> bool {
    if ledger.done.as_ref().is_none_or(|done| done.setup != *setup) {
        return false;
    }
    let open_intent = ledger
        .labels
        .values()
        .any(|s| matches!(s, LabelStatus::Adding | LabelStatus::Removing));
    if open_intent {
        return false;
    }
    match current_labels {
        None => true,
        Some(current) => {
            let current = lowercase_set(current);
            ledger
                .with_status(LabelStatus::Added)
                .all(|l| current.contains(l))
        }
    }
}

/// What to do to one page's labels, and how the ledger must be brought up to date.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelPlan {
    /// Labels to write to Confluence, in the order chosen.
    pub add: Vec<String>,
    /// Labels to remove from Confluence (only in `--sync`; always tag-space's own).
    pub remove: Vec<String>,
    /// Bookkeeping the ledger needs whatever Confluence says: label to its new status, or
    /// `None` to forget the row. Found by comparing the ledger with the page (open intents
    /// from an interrupted run, labels a person removed).
    pub settle: BTreeMap<String, Option<LabelStatus>>,
}

impl LabelPlan {
    /// True when Confluence needs no write.
    pub fn is_noop(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}

/// Default (add-only) mode: add the chosen labels the page lacks, except those a person
/// removed after tag-space added them. Never removes anything.
pub fn plan_add(current_labels: &[String], chosen: &[String], ledger: &PageLedger) -> LabelPlan {
    plan(current_labels, chosen, ledger, false)
}

/// `--sync` mode: like [`plan_add`], and also remove the labels tag-space added earlier that
/// are no longer chosen. A label the ledger does not attribute to tag-space is never removed.
pub fn plan_sync(current_labels: &[String], chosen: &[String], ledger: &PageLedger) -> LabelPlan {
    plan(current_labels, chosen, ledger, true)
}

fn plan(current: &[String], chosen: &[String], ledger: &PageLedger, sync: bool) -> LabelPlan {
    let current = lowercase_set(current);
    let mut settle = BTreeMap::new();
    // Labels that are tag-space's and on the page, once open intents are settled.
    let mut ours_on_page: Vec<&str> = Vec::new();
    let mut dismissed: HashSet<&str> = HashSet::new();
    for (name, status) in &ledger.labels {
        let present = current.contains(name.as_str());
        match (status, present) {
            // An open intent from an interrupted run: see the table in the module docs.
            // Whatever the page shows, a person may have acted since, so the label is theirs.
            (LabelStatus::Adding, _) | (LabelStatus::Removing, true) => {
                settle.insert(name.clone(), Some(LabelStatus::Dismissed));
                dismissed.insert(name);
            }
            (LabelStatus::Added, true) => ours_on_page.push(name),
            // A person took it off.
            (LabelStatus::Added, false) => {
                settle.insert(name.clone(), Some(LabelStatus::Dismissed));
                dismissed.insert(name);
            }
            // The removal landed.
            (LabelStatus::Removing, false) => {
                settle.insert(name.clone(), None);
            }
            // Dismissed and back on the page: a person put it back, so it is theirs now.
            (LabelStatus::Dismissed, _) => {
                dismissed.insert(name);
            }
        }
    }

    let mut add = Vec::new();
    let mut planned: HashSet<String> = HashSet::new();
    for label in chosen {
        let l = label.to_lowercase();
        if current.contains(l.as_str()) || dismissed.contains(l.as_str()) {
            continue;
        }
        if planned.insert(l.clone()) {
            add.push(l);
        }
    }
    let remove = if sync {
        let chosen: HashSet<String> = chosen.iter().map(|l| l.to_lowercase()).collect();
        ours_on_page
            .into_iter()
            .filter(|l| !chosen.contains(*l))
            .map(str::to_string)
            .collect()
    } else {
        Vec::new()
    };
    LabelPlan {
        add,
        remove,
        settle,
    }
}

/// After a write of `plan` failed (an error status, a timeout, a reset), the labels read from
/// the page right away tell what can be told: a planned addition that is absent never landed
/// (its intent is forgotten, so a later run may add it), and a planned removal that is still
/// present never landed (the label stays tag-space's: it was seen present throughout). When
/// Confluence confirmed the additions (`adds_confirmed`: a removal failed after them), those
/// still present are tag-space's. Anything else is left open for the next run to settle
/// conservatively.
pub fn settle_after_failure(
    plan: &LabelPlan,
    current_labels: &[String],
    adds_confirmed: bool,
) -> BTreeMap<String, Option<LabelStatus>> {
    let current = lowercase_set(current_labels);
    let mut settle = BTreeMap::new();
    for l in &plan.add {
        if !current.contains(l.as_str()) {
            settle.insert(l.clone(), None);
        } else if adds_confirmed {
            settle.insert(l.clone(), Some(LabelStatus::Added));
        }
    }
    for l in &plan.remove {
        if current.contains(l.as_str()) {
            settle.insert(l.clone(), Some(LabelStatus::Added));
        }
    }
    settle
}

fn lowercase_set(labels: &[String]) -> HashSet<String> {
    labels.iter().map(|l| l.to_lowercase()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::key::Setup;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn ledger(labels: &[(&str, LabelStatus)]) -> PageLedger {
        PageLedger {
            done: None,
            labels: labels.iter().map(|(n, st)| (n.to_string(), *st)).collect(),
        }
    }

    fn done_ledger(labels: &[(&str, LabelStatus)]) -> (PageLedger, ContentHash, SetupHash) {
        let hash = ContentHash::of_page("T", "<p>body</p>");
        let setup = Setup::new("tax", "p1", "m").hash();
        let mut l = ledger(labels);
        l.done = Some(PageDone {
            version: Some(7),
            content_hash: hash,
            setup,
        });
        (l, hash, setup)
    }

    use LabelStatus::*;

    #[test]
    fn a_page_never_finished_is_not_unchanged() {
        let l = PageLedger::default();
        let h = ContentHash::of_page("T", "b");
        let setup = Setup::new("tax", "p1", "m").hash();
        assert!(!is_unchanged(&l, Some(1), &h, &setup, None));
    }

    #[test]
    fn same_version_content_setup_and_labels_is_unchanged() {
        let (l, h, setup) = done_ledger(&[("howto", Added)]);
        assert!(is_unchanged(
            &l,
            Some(7),
            &h,
            &setup,
            Some(&s(&["howto", "mine"]))
        ));
        assert!(is_unchanged(&l, Some(7), &h, &setup, None));
    }

    #[test]
    fn any_change_makes_the_page_worth_a_look() {
        let (l, h, setup) = done_ledger(&[("howto", Added)]);
        let cur = s(&["howto"]);
        assert!(
            !is_unchanged(&l, Some(8), &h, &setup, Some(&cur)),
            "version"
        );
        assert!(
            !is_unchanged(&l, None, &h, &setup, Some(&cur)),
            "version unknown"
        );
        let other = ContentHash::of_page("T", "<p>edited</p>");
        assert!(
            !is_unchanged(&l, Some(7), &other, &setup, Some(&cur)),
            "content"
        );
        let new_model = Setup::new("tax", "p1", "m2").hash();
        assert!(
            !is_unchanged(&l, Some(7), &h, &new_model, Some(&cur)),
            "setup"
        );
        assert!(
            !is_unchanged(&l, Some(7), &h, &setup, Some(&s(&[]))),
            "label gone"
        );
    }

    #[test]
    fn without_the_body_the_version_decides_and_an_unknown_version_never_skips() {
        let (l, _, setup) = done_ledger(&[("howto", Added)]);
        let cur = s(&["howto"]);
        assert!(is_unchanged_version(&l, Some(7), &setup, Some(&cur)));
        assert!(is_unchanged_version(&l, Some(7), &setup, None));
        assert!(!is_unchanged_version(&l, Some(8), &setup, None), "edited");
        assert!(!is_unchanged_version(&l, None, &setup, None), "no version");
        let prompt_changed = Setup::new("tax", "p2", "m").hash();
        assert!(
            !is_unchanged_version(&l, Some(7), &prompt_changed, None),
            "setup"
        );
        assert!(
            !is_unchanged_version(&l, Some(7), &setup, Some(&s(&[]))),
            "label gone"
        );
        let (open, _, _) = done_ledger(&[("howto", Adding)]);
        assert!(
            !is_unchanged_version(&open, Some(7), &setup, None),
            "open intent"
        );
        let mut unversioned = l.clone();
        unversioned.done.as_mut().unwrap().version = None;
        assert!(
            !is_unchanged_version(&unversioned, None, &setup, None),
            "None == None is no proof"
        );
        assert!(
            !is_unchanged_version(&PageLedger::default(), Some(7), &setup, None),
            "never finished"
        );
    }

    #[test]
    fn an_open_intent_is_never_unchanged() {
        for st in [Adding, Removing] {
            let (l, h, setup) = done_ledger(&[("howto", st)]);
            assert!(!is_unchanged(&l, Some(7), &h, &setup, Some(&s(&["howto"]))));
            assert!(!is_unchanged(&l, Some(7), &h, &setup, None));
        }
    }

    #[test]
    fn dismissed_labels_need_not_be_in_place() {
        let (l, h, setup) = done_ledger(&[("howto", Dismissed)]);
        assert!(is_unchanged(&l, Some(7), &h, &setup, Some(&s(&[]))));
    }

    #[test]
    fn labels_compare_case_insensitively() {
        let (l, h, setup) = done_ledger(&[("howto", Added)]);
        assert!(is_unchanged(&l, Some(7), &h, &setup, Some(&s(&["HowTo"]))));
        let p = plan_add(&s(&["HowTo"]), &s(&["howto"]), &l);
        assert!(p.is_noop(), "{p:?}");
    }

    #[test]
    fn add_only_adds_what_is_missing_and_never_removes() {
        let l = ledger(&[("old-tag", Added)]);
        let p = plan_add(
            &s(&["old-tag", "mine"]),
            &s(&["howto", "mine", "howto"]),
            &l,
        );
        assert_eq!(p.add, s(&["howto"]));
        assert!(p.remove.is_empty(), "add-only removed {:?}", p.remove);
        assert!(p.settle.is_empty());
    }

    #[test]
    fn sync_removes_a_label_tag_space_added_that_no_longer_applies() {
        let l = ledger(&[("old-tag", Added), ("kept", Added)]);
        let p = plan_sync(&s(&["old-tag", "kept"]), &s(&["kept", "new"]), &l);
        assert_eq!(p.add, s(&["new"]));
        assert_eq!(p.remove, s(&["old-tag"]));
    }

    #[test]
    fn sync_never_removes_a_label_a_person_added_even_a_taxonomy_tag() {
        // "runbook" is a taxonomy tag tag-space no longer chooses, but a person put it there.
        let l = ledger(&[("howto", Added)]);
        let p = plan_sync(&s(&["runbook", "howto"]), &s(&["howto"]), &l);
        assert!(p.remove.is_empty(), "removed {:?}", p.remove);
        // And with an empty ledger, nothing is ever removed.
        let p = plan_sync(&s(&["runbook", "howto"]), &s(&[]), &PageLedger::default());
        assert!(p.remove.is_empty());
    }

    #[test]
    fn a_label_a_person_removed_is_not_added_again_in_either_mode() {
        let l = ledger(&[("howto", Added)]);
        for p in [
            plan_add(&s(&[]), &s(&["howto"]), &l),
            plan_sync(&s(&[]), &s(&["howto"]), &l),
        ] {
            assert!(p.add.is_empty(), "re-added {:?}", p.add);
            assert_eq!(p.settle.get("howto"), Some(&Some(Dismissed)));
        }
        // Once dismissed, it stays dismissed...
        let l = ledger(&[("howto", Dismissed)]);
        assert!(plan_add(&s(&[]), &s(&["howto"]), &l).add.is_empty());
        // ...and if a person puts it back, it is theirs: sync leaves it alone.
        let p = plan_sync(&s(&["howto"]), &s(&[]), &l);
        assert!(p.remove.is_empty());
    }

    #[test]
    fn an_open_adding_intent_is_not_ours_whatever_the_page_shows() {
        let l = ledger(&[("howto", Adding)]);
        // Present: our write may never have landed and a person added it. Not ours: sync
        // leaves it, and it is not written again.
        let p = plan_sync(&s(&["howto"]), &s(&[]), &l);
        assert!(p.is_noop(), "{p:?}");
        assert_eq!(p.settle.get("howto"), Some(&Some(Dismissed)));
        // Absent: our write may have landed and a person removed it. Not added back.
        let p = plan_add(&s(&[]), &s(&["howto"]), &l);
        assert!(p.add.is_empty(), "re-added {:?}", p.add);
        assert_eq!(p.settle.get("howto"), Some(&Some(Dismissed)));
    }

    #[test]
    fn an_open_removing_intent_is_settled_by_looking_at_the_page() {
        let l = ledger(&[("old", Removing)]);
        // Present: our removal may have landed and a person put it back. Theirs now.
        let p = plan_sync(&s(&["old"]), &s(&[]), &l);
        assert!(p.remove.is_empty(), "removed {:?}", p.remove);
        assert_eq!(p.settle.get("old"), Some(&Some(Dismissed)));
        // Gone: off the page as meant; forget it, and it is not treated as a person's removal.
        let p = plan_sync(&s(&[]), &s(&["old"]), &l);
        assert_eq!(p.settle.get("old"), Some(&None));
        assert_eq!(
            p.add,
            s(&["old"]),
            "chosen again after our own removal: add it"
        );
    }

    #[test]
    fn a_failed_write_settles_only_what_the_page_proves() {
        let plan = LabelPlan {
            add: s(&["landed", "lost"]),
            remove: s(&["kept", "gone"]),
            settle: BTreeMap::new(),
        };
        let settle = settle_after_failure(&plan, &s(&["landed", "kept"]), false);
        assert_eq!(settle.get("lost"), Some(&None), "never landed: forget");
        assert_eq!(
            settle.get("kept"),
            Some(&Some(Added)),
            "removal never landed"
        );
        assert_eq!(settle.get("landed"), None, "left open");
        assert_eq!(settle.get("gone"), None, "left open");
        // The additions were confirmed and a removal failed after them: they are ours.
        let settle = settle_after_failure(&plan, &s(&["landed", "kept"]), true);
        assert_eq!(settle.get("landed"), Some(&Some(Added)));
    }
}
