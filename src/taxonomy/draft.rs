//! `tag-space taxonomy init`: a first taxonomy drafted from the labels a space already uses.
//! Pure: the labels of each page in, a TOML file (and what was left out, and why) out.
//!
//! - Labels that break Confluence's label rules ([`check_label`]) are listed and left out.
//! - Near-duplicates become one tag with aliases: labels that differ only in case, in their
//!   separators (`how-to`, `how_to`, `howto`), in a plural `s`, or a bare label and the only
//!   prefixed label with the same stem (`kubernetes`, `tool-kubernetes`). The tag is the
//!   spelling on the most pages (then the prefixed one, then the shortest).
//! - A tag is kept when it, with its aliases, is on at least `min_pages` pages.
//! - A prefix shared by two or more kept tags (`tool-*`) makes a category; the rest go to
//!   one category of their own.
//! - Descriptions are placeholders for a person to write; the usage counts are comments.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::check_label;

/// The `global` labels of one page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageLabels {
    pub id: String,
    pub title: String,
    pub labels: Vec<String>,
}

/// The category of the tags without a shared prefix.
pub const UNPREFIXED: &str = "unprefixed";

/// One drafted tag: its name, its aliases, and the pages using any of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DraftTag {
    pub name: String,
    pub aliases: Vec<String>,
    pub pages: BTreeSet<String>,
    /// Pages per spelling (the tag's and each alias's).
    pub spellings: BTreeMap<String, u64>,
}

/// The draft and everything left out of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    pub space: String,
    pub pages_read: u64,
    pub min_pages: u64,
    /// Category name to its tags, most used first.
    pub categories: Vec<(String, Vec<DraftTag>)>,
    /// Labels that break Confluence's label rules, with the rule, and how many pages use them.
    pub rejected: Vec<(String, String, u64)>,
    /// Tags on fewer than `min_pages` pages, with their page count.
    pub below: Vec<(String, u64)>,
    pub max_labels_per_page: usize,
}

impl Draft {
    /// Every kept tag, in category order.
    pub fn tags(&self) -> impl Iterator<Item = &DraftTag> {
        self.categories.iter().flat_map(|(_, t)| t.iter())
    }
}

/// Drafts a taxonomy from `pages` (see the module docs).
pub fn draft(space: &str, pages: &[PageLabels], min_pages: u64) -> Draft {
    let mut usage: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut rejected: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
    for p in pages {
        for l in &p.labels {
            match check_label(l) {
                Ok(()) => usage.entry(l.clone()).or_default().insert(p.id.clone()),
                Err(why) => rejected
                    .entry(l.clone())
                    .or_insert((why, BTreeSet::new()))
                    .1
                    .insert(p.id.clone()),
            };
        }
    }
    let prefixes = shared_prefixes(usage.keys().map(String::as_str));
    let mut tags: Vec<DraftTag> = group(&usage, &prefixes)
        .into_iter()
        .map(|spellings| make_tag(&usage, spellings, &prefixes))
        .collect();
    tags.sort_by(|a, b| b.pages.len().cmp(&a.pages.len()).then(a.name.cmp(&b.name)));
    let (kept, below): (Vec<DraftTag>, Vec<DraftTag>) = tags
        .into_iter()
        .partition(|t| t.pages.len() as u64 >= min_pages.max(1));
    let kept_prefixes = shared_prefixes(kept.iter().map(|t| t.name.as_str()));
    let mut categories: BTreeMap<String, Vec<DraftTag>> = BTreeMap::new();
    for t in kept {
        let cat = prefix_of(&t.name, &kept_prefixes).unwrap_or(UNPREFIXED);
        categories.entry(cat.to_string()).or_default().push(t);
    }
    let mut categories: Vec<(String, Vec<DraftTag>)> = categories.into_iter().collect();
    // The catch-all last.
    categories.sort_by_key(|(name, _)| name == UNPREFIXED);
    let max_labels_per_page = max_per_page(categories.iter().flat_map(|(_, t)| t.iter()));
    Draft {
        space: space.to_string(),
        pages_read: pages.len() as u64,
        min_pages,
        categories,
        rejected: rejected
            .into_iter()
            .map(|(l, (why, p))| (l, why, p.len() as u64))
            .collect(),
        below: below
            .into_iter()
            .map(|t| (t.name, t.pages.len() as u64))
            .collect(),
        max_labels_per_page,
    }
}

/// The most tags of `tags` seen on one page, at least 1.
pub(super) fn max_per_page<'a>(tags: impl Iterator<Item = &'a DraftTag>) -> usize {
    let mut on_page: HashMap<&str, usize> = HashMap::new();
    for t in tags {
        for p in &t.pages {
            *on_page.entry(p.as_str()).or_default() += 1;
        }
    }
    on_page.values().copied().max().unwrap_or(1).max(1)
}

/// Prefixes (the part before the first `-`) that two or more distinct labels share.
fn shared_prefixes<'a>(labels: impl Iterator<Item = &'a str>) -> BTreeSet<String> {
    let mut count: BTreeMap<&str, u32> = BTreeMap::new();
    for l in labels {
        if let Some((p, rest)) = l.split_once('-') {
            if !p.is_empty() && !rest.is_empty() {
                *count.entry(p).or_default() += 1;
            }
        }
    }
    count
        .into_iter()
        .filter(|(_, n)| *n >= 2)
        .map(|(p, _)| p.to_string())
        .collect()
}

fn prefix_of<'a>(label: &'a str, prefixes: &BTreeSet<String>) -> Option<&'a str> {
    let (p, rest) = label.split_once('-')?;
    (prefixes.contains(p) && !rest.is_empty()).then_some(p)
}

/// The label with case, separators and a plural `s` taken out: `How_To-Guides` → `howtoguide`.
fn stem(label: &str) -> String {
    let lower = label.to_lowercase();
    let mut parts: Vec<&str> = lower.split(['-', '_']).filter(|p| !p.is_empty()).collect();
    let mut last = parts.pop().unwrap_or("").to_string();
    if let Some(base) = last.strip_suffix("ies").filter(|b| b.len() >= 2) {
        last = format!("{base}y");
    } else if last.len() > 3 && last.ends_with('s') && !last.ends_with("ss") {
        last.pop();
    }
    parts.push(&last);
    parts.concat()
}

/// Spellings of one concept, grouped (see the module docs).
fn group(
    usage: &BTreeMap<String, BTreeSet<String>>,
    prefixes: &BTreeSet<String>,
) -> Vec<Vec<String>> {
    let mut by_stem: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in usage.keys() {
        by_stem.entry(stem(l)).or_default().push(l.clone());
    }
    // A bare stem that is the stem of exactly one prefixed group's rest joins that group.
    let mut rest_index: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, labels) in &by_stem {
        if let Some((l, p)) = labels
            .iter()
            .find_map(|l| prefix_of(l, prefixes).map(|p| (l, p)))
        {
            let rest = &l[p.len() + 1..];
            rest_index.entry(stem(rest)).or_default().push(key.clone());
        }
    }
    let mut merged: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, labels) in by_stem {
        let bare = labels.iter().all(|l| prefix_of(l, prefixes).is_none());
        let target = match rest_index.get(&key) {
            Some(targets) if bare && targets.len() == 1 => targets[0].clone(),
            _ => key,
        };
        merged.entry(target).or_default().extend(labels);
    }
    merged.into_values().collect()
}

fn make_tag(
    usage: &BTreeMap<String, BTreeSet<String>>,
    spellings: Vec<String>,
    prefixes: &BTreeSet<String>,
) -> DraftTag {
    let count = |l: &String| usage[l].len();
    let name = spellings
        .iter()
        .max_by(|a, b| {
            count(a)
                .cmp(&count(b))
                .then(
                    prefix_of(a, prefixes)
                        .is_some()
                        .cmp(&prefix_of(b, prefixes).is_some()),
                )
                .then(b.len().cmp(&a.len()))
                .then(b.cmp(a))
        })
        .expect("a group has a spelling")
        .clone();
    let pages = spellings
        .iter()
        .flat_map(|l| usage[l].iter().cloned())
        .collect();
    DraftTag {
        aliases: spellings.iter().filter(|l| **l != name).cloned().collect(),
        spellings: spellings
            .iter()
            .map(|l| (l.clone(), count(l) as u64))
            .collect(),
        name,
        pages,
    }
}

#[cfg(test)]
#[path = "draft_tests.rs"]
mod tests;
