//! Aliases: other labels people already use for a tag's concept (`k8s` for `tool-kubernetes`).
//!
//! A page that carries an alias counts as carrying the tag: tag-space does not add the tag
//! beside it (a second label for one concept), and `eval` scores the alias as the tag. An
//! alias is never written by tag-space, and never removed.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{Taxonomy, TaxonomyError, check_label};

impl Taxonomy {
    /// The taxonomy with `aliases` (tag name, its aliases) added. Each alias must follow
    /// Confluence's label rules (people put it on pages), name no tag, and stand for one tag
    /// only; the tag must exist. `origin` names the taxonomy in error messages.
    pub fn with_aliases(
        mut self,
        aliases: impl IntoIterator<Item = (String, Vec<String>)>,
        origin: &str,
    ) -> Result<Self, TaxonomyError> {
        let invalid = |message: String| TaxonomyError::Invalid {
            origin: origin.to_string(),
            message,
        };
        for (tag, list) in aliases {
            if !self.contains(&tag) {
                return Err(invalid(format!(
                    "aliases given for '{tag}', which is no tag"
                )));
            }
            for alias in list {
                if let Err(why) = check_label(&alias) {
                    return Err(invalid(format!("alias '{alias}' of tag '{tag}' {why}")));
                }
                if self.contains(&alias) {
                    return Err(invalid(format!(
                        "alias '{alias}' of tag '{tag}' is itself a tag: list it once"
                    )));
                }
                if let Some(other) = self.aliases.get(&alias) {
                    return Err(invalid(format!(
                        "alias '{alias}' is listed for both '{other}' and '{tag}'"
                    )));
                }
                self.aliases.insert(alias, tag.clone());
            }
        }
        self.fingerprint =
            super::fingerprint(&self.categories, self.max_labels_per_page, &self.aliases);
        Ok(self)
    }

    /// Every alias, with the tag it stands for, in alias order.
    pub fn aliases(&self) -> &BTreeMap<String, String> {
        &self.aliases
    }

    /// The aliases of `tag`, in name order.
    pub fn aliases_of<'a>(&'a self, tag: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.aliases
            .iter()
            .filter(move |(_, t)| t.as_str() == tag)
            .map(|(a, _)| a.as_str())
    }

    /// The tag `label` stands for: the tag itself, or the tag of an alias; `None` for a label
    /// outside the taxonomy. Case does not matter (Confluence stores labels in lowercase).
    pub fn canonical(&self, label: &str) -> Option<&str> {
        let label = label.to_lowercase();
        if let Some(tag) = self.tag_names().find(|t| *t == label) {
            return Some(tag);
        }
        self.aliases.get(&label).map(String::as_str)
    }

    /// The tags a page with these labels carries, directly or through an alias, each once.
    pub fn tags_carried<'l>(&self, labels: impl IntoIterator<Item = &'l str>) -> BTreeSet<&str> {
        let index: HashMap<&str, &str> = self.tag_names().map(|t| (t, t)).collect();
        let mut out = BTreeSet::new();
        for l in labels {
            let l = l.to_lowercase();
            let tag = index
                .get(l.as_str())
                .copied()
                .or_else(|| self.aliases.get(&l).map(String::as_str));
            out.extend(tag);
        }
        out
    }

    /// Whether a page with `labels` carries `tag` through one of its aliases: then adding the
    /// tag would put a second label for one concept on it.
    pub fn carried_by_alias(&self, tag: &str, labels: &[String]) -> bool {
        labels.iter().any(|l| {
            self.aliases
                .get(&l.to_lowercase())
                .is_some_and(|t| t == tag)
        })
    }
}
