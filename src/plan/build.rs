//! From a run's page outcomes to a plan, and from a plan's page back to the apply stage's
//! [`PlannedWrite`].

use std::time::SystemTime;

use super::{PLAN_VERSION, Plan, PlanMode, PlannedLabel, PlannedPage, STOP_GAP_PROVIDER, Site};
use super::{SpacePlan, file};
use crate::cache::ContentHash;
use crate::pipeline::{PageOutcome, PlannedWrite, Provenance, Status};

/// Collects the pages a dry run would write, space by space.
#[derive(Debug)]
pub struct Builder {
    site: Site,
    mode: PlanMode,
    taxonomy_fingerprint: String,
    spaces: Vec<SpacePlan>,
    /// Pages with writes the plan cannot hold: their version or content hash is unknown.
    pub left_out: Vec<String>,
}

impl Builder {
    pub fn new(site: Site, mode: PlanMode, taxonomy_fingerprint: &str) -> Self {
        Self {
            site,
            mode,
            taxonomy_fingerprint: taxonomy_fingerprint.to_string(),
            spaces: Vec::new(),
            left_out: Vec::new(),
        }
    }

    /// Takes one page's outcome of a dry run over `space`: a page that would be tagged
    /// (labels to add or remove) goes into the plan.
    pub fn record(&mut self, space: &str, o: &PageOutcome) {
        if o.status != Status::Tagged || (o.added.is_empty() && o.removed.is_empty()) {
            return;
        }
        let (Some(version), Some(hash)) = (o.version, o.content_hash) else {
            self.left_out.push(o.id.clone());
            return;
        };
        let provider = o.provider.map_or_else(String::new, provider_name);
        let labels = |names: &[String]| {
            names
                .iter()
                .map(|label| PlannedLabel {
                    label: label.clone(),
                    provider: provider.clone(),
                })
                .collect()
        };
        let page = PlannedPage {
            id: o.id.clone(),
            title: o.title.clone(),
            url: o.url.clone(),
            version,
            content_hash: hash.to_string(),
            add: labels(&o.added),
            remove: labels(&o.removed),
        };
        match self.spaces.iter_mut().find(|s| s.key == space) {
            Some(s) => s.pages.push(page),
            None => self.spaces.push(SpacePlan {
                key: space.to_string(),
                pages: vec![page],
            }),
        }
    }

    /// Makes sure `space` has an entry, even with nothing to write: the plan then says the
    /// space was looked at and needs nothing.
    pub fn space(&mut self, space: &str) {
        if !self.spaces.iter().any(|s| s.key == space) {
            self.spaces.push(SpacePlan {
                key: space.to_string(),
                pages: Vec::new(),
            });
        }
    }

    /// The plan, dated `now`, with its checksum.
    pub fn finish(self, now: SystemTime) -> Plan {
        let mut plan = Plan {
            plan_version: PLAN_VERSION,
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            created_at: crate::report::model::rfc3339(now),
            site: self.site,
            mode: self.mode,
            taxonomy_fingerprint: self.taxonomy_fingerprint,
            spaces: self.spaces,
            checksum: String::new(),
        };
        plan.checksum = file::checksum(&plan);
        plan
    }
}

/// How a provenance is written in a plan: the provider's name, `cache`, or
/// [`STOP_GAP_PROVIDER`].
fn provider_name(p: Provenance) -> String {
    match p {
        Provenance::StopGap => STOP_GAP_PROVIDER.to_string(),
        other => other.name().to_string(),
    }
}

/// The provenance a plan's provider name stands for; `None` for a name no build writes.
fn provenance(name: &str) -> Option<Provenance> {
    Some(match name {
        "cache" => Provenance::Cache,
        STOP_GAP_PROVIDER => Provenance::StopGap,
        "gemini" => Provenance::Provider("gemini"),
        "openai" => Provenance::Provider("openai"),
        "rules" => Provenance::Provider("rules"),
        _ => return None,
    })
}

impl PlannedPage {
    /// The page as the apply stage takes it; the error says which field is wrong.
    pub fn to_write(&self) -> Result<PlannedWrite, String> {
        let content_hash = parse_hash(&self.content_hash)
            .ok_or_else(|| format!("page {}: content_hash is not 64 hex digits", self.id))?;
        let first = self.add.iter().chain(&self.remove).next();
        let provider = match first {
            Some(l) => provenance(&l.provider)
                .ok_or_else(|| format!("page {}: unknown provider {:?}", self.id, l.provider))?,
            None => Provenance::Cache,
        };
        let names = |labels: &[PlannedLabel]| labels.iter().map(|l| l.label.clone()).collect();
        Ok(PlannedWrite {
            id: self.id.clone(),
            title: self.title.clone(),
            url: self.url.clone(),
            version: self.version,
            content_hash,
            add: names(&self.add),
            remove: names(&self.remove),
            provider,
        })
    }
}

fn parse_hash(hex: &str) -> Option<ContentHash> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(ContentHash::from_bytes(bytes))
}
