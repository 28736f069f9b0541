//! The controlled vocabulary: categories of allowed tags, each with a one-line description.
//!
//! A taxonomy is a TOML file; the format is documented at the top of `config/taxonomy.toml`,
//! which is also the default compiled into the binary ([`Taxonomy::embedded`]). Loading checks
//! the file strictly (unknown fields are errors, so a typo such as `max_per_pgae` is caught) and
//! then every tag against Confluence's label rules ([`check_label`]).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

mod aliases;
pub mod draft;
pub mod read;
pub mod render;

/// The default taxonomy, compiled in.
const EMBEDDED: &str = include_str!("../../config/taxonomy.toml");

/// The file as written; turned into [`Category`]s after the syntax and field checks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTaxonomy {
    max_labels_per_page: usize,
    #[serde(rename = "category", default)]
    categories: Vec<FileCategory>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCategory {
    name: String,
    description: String,
    max_per_page: usize,
    #[serde(rename = "tag", default)]
    tags: Vec<FileTag>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTag {
    name: String,
    description: String,
    #[serde(default)]
    keywords: Vec<String>,
    /// Other labels people use for the same concept (see [`Taxonomy::with_aliases`]).
    #[serde(default)]
    aliases: Vec<String>,
}

/// "line 3, column 7: <what>" for a TOML error, from its byte span in `src`.
fn describe_toml_error(src: &str, err: &toml::de::Error) -> String {
    let message = err.message().trim_end();
    match err.span() {
        Some(span) => {
            let before = src.get(..span.start).unwrap_or(src);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message.to_string(),
    }
}

/// Checks the file beyond what [`Taxonomy::new`] checks: names and descriptions are present,
/// category names are unique, keywords are not blank.
fn check_file(file: &FileTaxonomy) -> Result<(), String> {
    let mut names = std::collections::HashSet::new();
    for c in &file.categories {
        if c.name.trim().is_empty() {
            return Err("a category has an empty name".into());
        }
        if !names.insert(c.name.as_str()) {
            return Err(format!("category '{}' appears more than once", c.name));
        }
        if c.description.trim().is_empty() {
            return Err(format!("category '{}' has an empty description", c.name));
        }
        for t in &c.tags {
            if t.description.trim().is_empty() {
                return Err(format!(
                    "tag '{}' in category '{}' has an empty description",
                    t.name, c.name
                ));
            }
            if t.description.contains('\n') {
                return Err(format!(
                    "tag '{}': the description must be one line",
                    t.name
                ));
            }
            if t.keywords.iter().any(|k| k.trim().is_empty()) {
                return Err(format!("tag '{}' has an empty keyword", t.name));
            }
            if t.aliases.iter().any(|a| a.trim().is_empty()) {
                return Err(format!("tag '{}' has an empty alias", t.name));
            }
        }
    }
    Ok(())
}

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
    /// Alias to the tag it stands for; see [`Taxonomy::with_aliases`].
    aliases: BTreeMap<String, String>,
    fingerprint: String,
}

/// A taxonomy that cannot be used; the message names the file and the offending tag.
#[derive(Debug, thiserror::Error)]
pub enum TaxonomyError {
    /// The cause is the `source()`: printed after this by `{e:#}`, once.
    #[error("cannot read taxonomy {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("taxonomy {origin}: {message}")]
    Invalid { origin: String, message: String },
}

/// Checks a tag against Confluence's label rules; the error says which rule it breaks.
pub fn check_label(name: &str) -> Result<(), String> {
    const FORBIDDEN: &[char] = &[
        ':', ';', ',', '.', '?', '&', '[', ']', '(', ')', '#', '^', '*', '@', '!', '\'', '`',
    ];
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
        return Err(format!(
            "has uppercase letters (Confluence stores labels in lowercase: use '{}')",
            name.to_lowercase()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| FORBIDDEN.contains(c) || c.is_control())
    {
        return Err(format!(
            "contains '{}', which Confluence does not allow in labels",
            c.escape_default()
        ));
    }
    Ok(())
}

fn fingerprint(
    categories: &[Category],
    max_labels_per_page: usize,
    aliases: &BTreeMap<String, String>,
) -> String {
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
    // Only when there are aliases, so that a taxonomy without any keeps the fingerprint (and
    // the cached answers) it had before aliases existed.
    if !aliases.is_empty() {
        field("aliases");
        for (alias, tag) in aliases {
            field(alias);
            field(tag);
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl Taxonomy {
    /// Builds a taxonomy from categories; `origin` names it in error messages. Every tag must
    /// follow Confluence's label rules and appear once; every category needs a tag.
    pub fn new(
        categories: Vec<Category>,
        max_labels_per_page: usize,
        origin: &str,
    ) -> Result<Self, TaxonomyError> {
        let invalid = |message: String| TaxonomyError::Invalid {
            origin: origin.to_string(),
            message,
        };
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
                return Err(invalid(format!(
                    "category '{}': max_per_page must be at least 1",
                    c.name
                )));
            }
            for t in &c.tags {
                if let Err(why) = check_label(&t.name) {
                    return Err(invalid(format!(
                        "tag '{}' in category '{}' {why}",
                        t.name, c.name
                    )));
                }
                if !seen.insert(t.name.as_str()) {
                    return Err(invalid(format!("tag '{}' appears more than once", t.name)));
                }
            }
        }
        let aliases = BTreeMap::new();
        let fingerprint = fingerprint(&categories, max_labels_per_page, &aliases);
        Ok(Self {
            categories,
            max_labels_per_page,
            aliases,
            fingerprint,
        })
    }

    /// The default taxonomy compiled into the binary (`config/taxonomy.toml`).
    pub fn embedded() -> Self {
        Self::from_toml(EMBEDDED, "embedded config/taxonomy.toml")
            .expect("the embedded taxonomy is valid (checked by a unit test)")
    }

    /// Parses and validates a taxonomy; `origin` names the source in error messages.
    pub fn from_toml(src: &str, origin: &str) -> Result<Self, TaxonomyError> {
        let invalid = |message: String| TaxonomyError::Invalid {
            origin: origin.to_string(),
            message,
        };
        let file: FileTaxonomy =
            toml::from_str(src).map_err(|e| invalid(describe_toml_error(src, &e)))?;
        check_file(&file).map_err(invalid)?;
        let aliases: Vec<(String, Vec<String>)> = file
            .categories
            .iter()
            .flat_map(|c| c.tags.iter())
            .filter(|t| !t.aliases.is_empty())
            .map(|t| {
                let list = t.aliases.iter().map(|a| a.trim().to_string()).collect();
                (t.name.clone(), list)
            })
            .collect();
        let categories = file
            .categories
            .into_iter()
            .map(|c| Category {
                name: c.name,
                description: c.description.trim().to_string(),
                max_per_page: c.max_per_page,
                tags: c
                    .tags
                    .into_iter()
                    .map(|t| Tag {
                        name: t.name,
                        description: t.description.trim().to_string(),
                        keywords: t
                            .keywords
                            .into_iter()
                            .map(|k| k.trim().to_string())
                            .collect(),
                    })
                    .collect(),
            })
            .collect();
        Self::new(categories, file.max_labels_per_page, origin)?.with_aliases(aliases, origin)
    }

    /// Reads and validates the taxonomy file at `path`.
    pub fn load(path: &Path) -> Result<Self, TaxonomyError> {
        let src = std::fs::read_to_string(path).map_err(|source| TaxonomyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&src, &path.display().to_string())
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
        self.categories
            .iter()
            .find(|c| c.tags.iter().any(|t| t.name == tag))
    }
    /// Every tag name, in file order.
    pub fn tag_names(&self) -> impl Iterator<Item = &str> {
        self.categories
            .iter()
            .flat_map(|c| c.tags.iter().map(|t| t.name.as_str()))
    }
    /// SHA-256 (hex) of the taxonomy's content; changes whenever a tag or description changes.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

#[cfg(test)]
mod tests;
