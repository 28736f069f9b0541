//! Writing and reading plan files, and their checksum.
//!
//! The checksum is SHA-256 over the plan serialised without its `checksum` field, by this
//! module's own fixed-order structs (never a `serde_json::Value`, whose key order depends on
//! crate features): reformatting the file keeps it valid, changing any value does not.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{PLAN_VERSION, Plan, PlanError, PlanMode, Site, SpacePlan};

/// Every field but the checksum, in the file's order.
#[derive(Serialize)]
struct Unsigned<'a> {
    plan_version: u64,
    tool_version: &'a str,
    created_at: &'a str,
    site: &'a Site,
    mode: PlanMode,
    taxonomy_fingerprint: &'a str,
    spaces: &'a [SpacePlan],
}

/// `sha256:<hex>` over the canonical serialisation of everything but the checksum.
pub(super) fn checksum(plan: &Plan) -> String {
    let unsigned = Unsigned {
        plan_version: plan.plan_version,
        tool_version: &plan.tool_version,
        created_at: &plan.created_at,
        site: &plan.site,
        mode: plan.mode,
        taxonomy_fingerprint: &plan.taxonomy_fingerprint,
        spaces: &plan.spaces,
    };
    // Plain data with string keys: serialising it cannot fail.
    let bytes = serde_json::to_vec(&unsigned).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Writes `plan` (its checksum already set by [`super::Builder::finish`]) to `path`: to a
/// temporary file beside it, then renamed, so that a reader never sees half a plan.
pub fn write(path: &Path, plan: &Plan) -> Result<(), PlanError> {
    let err = |source| PlanError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut text = serde_json::to_string_pretty(plan).map_err(|e| err(e.into()))?;
    text.push('\n');
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{}.tmp", name.unwrap_or_else(|| "plan".into())));
    std::fs::write(&tmp, text).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Only the version, read before the rest so that a newer format is named as such rather
/// than as unparseable.
#[derive(Deserialize)]
struct Versioned {
    plan_version: Option<serde_json::Value>,
}

/// Reads and verifies a plan file: JSON, a known `plan_version`, the expected fields, and an
/// intact checksum, in that order.
pub fn read(path: &Path) -> Result<Plan, PlanError> {
    let text = std::fs::read_to_string(path).map_err(|source| PlanError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let unparseable = |detail: String| PlanError::Unparseable {
        path: path.to_path_buf(),
        detail,
    };
    let versioned: Versioned =
        serde_json::from_str(&text).map_err(|e| unparseable(e.to_string()))?;
    match versioned.plan_version {
        None => return Err(unparseable("it has no plan_version".into())),
        Some(v) if v.as_u64() != Some(PLAN_VERSION) => {
            return Err(PlanError::Version {
                path: path.to_path_buf(),
                found: v.to_string(),
            });
        }
        Some(_) => {}
    }
    let de = &mut serde_json::Deserializer::from_str(&text);
    let plan: Plan = serde_path_to_error::deserialize(de)
        .map_err(|e| unparseable(format!("at {}: {}", e.path(), e.inner())))?;
    if checksum(&plan) != plan.checksum {
        return Err(PlanError::Checksum {
            path: path.to_path_buf(),
        });
    }
    Ok(plan)
}
