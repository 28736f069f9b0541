//! The controlled vocabulary: categories of allowed tags, each with a one-line description.
//! STUB: to be implemented (loading, Confluence label-rule validation, embedded default).

use std::path::Path;

/// One allowed tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    pub name: String,
    pub description: String,
    /// Words or phrases that suggest this tag; used by the offline `rules` provider.
    pub keywords: Vec<String>,
}

/// A group of tags, e.g. `type` or `tool`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Category {
    pub name: String,
    pub description: String,
    /// At most this many tags of this category on one page.
    pub max_per_page: usize,
    pub tags: Vec<Tag>,
}

/// A loaded, validated taxonomy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taxonomy {
    categories: Vec<Category>,
    max_labels_per_page: usize,
    fingerprint: String,
}

/// A taxonomy that cannot be used; the message names the file and the offending tag.
#[derive(Debug, thiserror::Error)]
pub enum TaxonomyError {
    #[error("cannot read taxonomy {path}: {source}")]
    Read { path: String, #[source] source: std::io::Error },
    #[error("taxonomy {origin}: {message}")]
    Invalid { origin: String, message: String },
}

impl Taxonomy {
    /// The default taxonomy compiled into the binary (`config/taxonomy.toml`).
    pub fn embedded() -> Self {
        todo!()
    }
    /// Parses and validates a taxonomy; `origin` names the source in error messages.
    pub fn from_toml(_src: &str, _origin: &str) -> Result<Self, TaxonomyError> {
        todo!()
    }
    pub fn load(_path: &Path) -> Result<Self, TaxonomyError> {
        todo!()
    }
    pub fn categories(&self) -> &[Category] {
        &self.categories
    }
    /// At most this many labels on one page in total.
    pub fn max_labels_per_page(&self) -> usize {
        self.max_labels_per_page
    }
    pub fn contains(&self, tag: &str) -> bool {
        self.category_of(tag).is_some()
    }
    pub fn category_of(&self, tag: &str) -> Option<&Category> {
        self.categories.iter().find(|c| c.tags.iter().any(|t| t.name == tag))
    }
    /// Every tag name, in file order.
    pub fn tag_names(&self) -> impl Iterator<Item = &str> {
        self.categories.iter().flat_map(|c| c.tags.iter().map(|t| t.name.as_str()))
    }
    /// SHA-256 (hex) of the taxonomy's content; changes whenever a tag or description changes.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}
