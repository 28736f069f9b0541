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

/// Checks a tag against Confluence's label rules; the error says which rule it breaks.
pub fn check_label(name: &str) -> Result<(), String> {
    const FORBIDDEN: &[char] = &[':', ';', ',', '.', '?', '&', '[', ']', '(', ')', '#', '^', '*', '@', '!', '\'', '`'];
    if name.is_empty() {
        return Err("is empty".into());
    }
    if name.chars().count() > 255 {
        return Err("is longer than 255 characters".into());
    }
    if name.chars().any(char::is_whitespace) {
        return Err("contains whitespace (Confluence would split it into several labels)".into());
    }
    if name.chars().any(char::is_uppercase) {
        return Err(format!("has uppercase letters (Confluence stores labels in lowercase: use '{}')", name.to_lowercase()));
    }
    if let Some(c) = name.chars().find(|c| FORBIDDEN.contains(c) || c.is_control()) {
        return Err(format!("contains '{}', which Confluence does not allow in labels", c.escape_default()));
    }
    Ok(())
}

fn fingerprint(categories: &[Category], max_labels_per_page: usize) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    // Length-prefixed fields, so that no two different taxonomies hash the same input.
    let mut field = |s: &str| {
        h.update((s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    field(&max_labels_per_page.to_string());
    for c in categories {
        field(&c.name);
        field(&c.description);
        field(&c.max_per_page.to_string());
        for t in &c.tags {
            field(&t.name);
            field(&t.description);
            for k in &t.keywords {
                field(k);
            }
            field("");
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl Taxonomy {
    /// Builds a taxonomy from categories; `origin` names it in error messages. Every tag must
    /// follow Confluence's label rules and appear once; every category needs a tag.
    pub fn new(categories: Vec<Category>, max_labels_per_page: usize, origin: &str) -> Result<Self, TaxonomyError> {
        let invalid = |message: String| TaxonomyError::Invalid { origin: origin.to_string(), message };
        if categories.is_empty() {
            return Err(invalid("it has no categories".into()));
        }
        if max_labels_per_page == 0 {
            return Err(invalid("max_labels_per_page must be at least 1".into()));
        }
        let mut seen = std::collections::HashSet::new();
        for c in &categories {
            if c.tags.is_empty() {
                return Err(invalid(format!("category '{}' has no tags", c.name)));
            }
            if c.max_per_page == 0 {
                return Err(invalid(format!("category '{}': max_per_page must be at least 1", c.name)));
            }
            for t in &c.tags {
                if let Err(why) = check_label(&t.name) {
                    return Err(invalid(format!("tag '{}' in category '{}' {why}", t.name, c.name)));
                }
                if !seen.insert(t.name.as_str()) {
                    return Err(invalid(format!("tag '{}' appears more than once", t.name)));
                }
            }
        }
        let fingerprint = fingerprint(&categories, max_labels_per_page);
        Ok(Self { categories, max_labels_per_page, fingerprint })
    }

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
