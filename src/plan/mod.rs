//! Plan files: what a dry run would write, saved for review and applied later exactly as
//! reviewed (`tag-space --dry-run --plan FILE`, then `tag-space apply FILE`), as
//! `terraform plan -out` / `terraform apply` do. `docs/plan.md` documents the format and
//! `docs/plan.schema.json` is its JSON Schema.
//!
//! A plan is made from the run's per-page outcomes ([`Builder`]), not by a second
//! classification path; [`read`] refuses a file that is not a plan, of another version, or
//! changed after it was written (its checksum); [`Plan::check_site`] one for another site.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

mod build;
mod file;

pub use build::Builder;
pub use file::{read, write};

/// The format version this build writes and reads.
pub const PLAN_VERSION: u64 = 1;

/// The name a label chosen by the offline `rules` provider standing in for an LLM is
/// recorded under (a [`crate::pipeline::Provenance::StopGap`]), told apart from `rules` as
/// the configured primary.
pub const STOP_GAP_PROVIDER: &str = "rules-fallback";

/// A plan file (see `docs/plan.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub plan_version: u64,
    /// The tag-space version that made the plan.
    pub tool_version: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub site: Site,
    pub mode: PlanMode,
    /// The taxonomy as loaded (tags, descriptions, limits, aliases), hashed.
    pub taxonomy_fingerprint: String,
    pub spaces: Vec<SpacePlan>,
    /// `sha256:` and the hex SHA-256 of the canonical serialisation of every other field.
    pub checksum: String,
}

/// The Confluence site a plan was made on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    /// The site root as tag-space normalises `CONFLUENCE_BASE_URL` (no trailing slash; Cloud
    /// without `/wiki`).
    pub base_url: String,
    /// `cloud` or `datacenter`.
    pub flavor: String,
}

/// Add-only, or `--sync` (removals of tag-space's own labels too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanMode {
    Add,
    Sync,
}

/// The planned writes of one space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpacePlan {
    pub key: String,
    /// Only pages with something to write, in the order the run finished them.
    pub pages: Vec<PlannedPage>,
}

/// One page's planned writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannedPage {
    pub id: String,
    pub title: String,
    pub url: Option<String>,
    /// The page's version number when planned: `apply` leaves the page alone if it moved on.
    pub version: u64,
    /// The ledger's content hash of the page when planned (hex SHA-256).
    pub content_hash: String,
    pub add: Vec<PlannedLabel>,
    pub remove: Vec<PlannedLabel>,
}

/// A label to add or remove, and the provider that chose it (or, for a removal, no longer
/// chose it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannedLabel {
    pub label: String,
    pub provider: String,
}

/// A plan that cannot be written, read or used. Each message is one line naming the file and
/// what to do; the cause, if any, is the `source`.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot read the plan {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the plan {path}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is not a tag-space plan ({detail}): make one with tag-space --space KEY --dry-run --plan FILE"
    )]
    Unparseable { path: PathBuf, detail: String },
    #[error(
        "{path} is a plan of version {found}, and this tag-space ({}) reads version {PLAN_VERSION} only: apply it with the tag-space that made it, or make a new plan",
        env!("CARGO_PKG_VERSION")
    )]
    Version { path: PathBuf, found: String },
    #[error(
        "{path} was changed after tag-space wrote it (its checksum does not match): make a new plan rather than editing one"
    )]
    Checksum { path: PathBuf },
    #[error(
        "{path} is a plan for {planned}, not for the configured site {configured}: set CONFLUENCE_BASE_URL (and the credentials) for the plan's site, or make a new plan"
    )]
    OtherSite {
        path: PathBuf,
        planned: String,
        configured: String,
    },
    #[error(
        "{path} was made with another taxonomy than the one configured now: apply it with the taxonomy it was made with (--taxonomy or TAG_SPACE_TAXONOMY), or make a new plan"
    )]
    OtherTaxonomy { path: PathBuf },
}

impl Site {
    /// The site a plan records for this root (a [`crate::confluence::ConfluenceSettings`]
    /// root) and flavour. A user or password in the URL is dropped: a plan is shared for
    /// review, and no secret goes into one.
    pub fn new(root: &str, flavor: &str) -> Self {
        let base_url = match url::Url::parse(root) {
            Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
                let _ = u.set_username("");
                let _ = u.set_password(None);
                u.as_str().trim_end_matches('/').to_string()
            }
            _ => root.to_string(),
        };
        Site {
            base_url,
            flavor: flavor.to_string(),
        }
    }
}

impl Plan {
    /// Refuses a plan made on another site than `base_url` (a [`Site::base_url`]) of this
    /// flavour. Scheme and host are compared without case; the path as it is.
    pub fn check_site(
        &self,
        path: &std::path::Path,
        base_url: &str,
        flavor: &str,
    ) -> Result<(), PlanError> {
        let now = Site::new(base_url, flavor);
        if normalise(&self.site.base_url) == normalise(&now.base_url) && self.site.flavor == flavor
        {
            return Ok(());
        }
        Err(PlanError::OtherSite {
            path: path.to_path_buf(),
            planned: format!("{} ({})", self.site.base_url, self.site.flavor),
            configured: format!("{} ({flavor})", now.base_url),
        })
    }

    /// Pages planned, labels to add and labels to remove, over every space.
    pub fn totals(&self) -> (usize, usize, usize) {
        let pages = self.spaces.iter().flat_map(|s| &s.pages);
        pages.fold((0, 0, 0), |(p, a, r), page| {
            (p + 1, a + page.add.len(), r + page.remove.len())
        })
    }
}

/// Scheme and host lowercase, no trailing slash.
fn normalise(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    let host_end = url
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| url[start..].find('/').map(|j| start + j))
        .unwrap_or(url.len());
    format!(
        "{}{}",
        url[..host_end].to_ascii_lowercase(),
        &url[host_end..]
    )
}

#[cfg(test)]
mod tests;
