//! [`ConfluenceSettings`] from `CONFLUENCE_*`: the site, its flavour and the credentials.

use std::time::Duration;

use super::ConfigError;
use super::sources::base_url;
use crate::confluence::{ConfluenceAuth, ConfluenceSettings, Flavor};
use crate::secret::Secret;

/// The credentials as set; which ones decide the flavour unless `CONFLUENCE_FLAVOR` says.
struct Credentials {
    email: Option<String>,
    token: Option<Secret>,
    pat: Option<Secret>,
}

pub(super) fn confluence_settings(
    get: &impl Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<ConfluenceSettings, ConfigError> {
    const BASE_HINT: &str = "set the site address, e.g. CONFLUENCE_BASE_URL=https://acme.atlassian.net/wiki (Cloud) or https://confluence.acme.com (Data Center)";
    let raw = get("CONFLUENCE_BASE_URL").ok_or(ConfigError::Missing {
        name: "CONFLUENCE_BASE_URL",
        hint: BASE_HINT,
    })?;
    let base = base_url(
        "CONFLUENCE_BASE_URL",
        &raw,
        "https://acme.atlassian.net/wiki",
        warnings,
    )?;
    let credentials = Credentials {
        email: get("CONFLUENCE_EMAIL"),
        token: get("CONFLUENCE_API_TOKEN").map(Secret::new),
        pat: get("CONFLUENCE_PAT").map(Secret::new),
    };
    let flavor = flavor(get("CONFLUENCE_FLAVOR"), &credentials)?;
    let auth = auth(flavor, credentials)?;
    // Cloud API paths all start with /wiki; keep the root without it so `_links.next`
    // (which already starts with /wiki) can be appended as is.
    let root = match flavor {
        Flavor::Cloud => base.strip_suffix("/wiki").unwrap_or(&base).to_string(),
        Flavor::DataCenter => base,
    };
    Ok(ConfluenceSettings {
        root,
        flavor,
        auth,
        timeout: Duration::from_secs(60),
        max_retries: 5,
    })
}

/// `CONFLUENCE_FLAVOR`, else inferred: a PAT alone is Data Center, an email or API token
/// without a PAT is Cloud; both kinds set is ambiguous.
fn flavor(set: Option<String>, c: &Credentials) -> Result<Flavor, ConfigError> {
    if let Some(f) = set {
        return match f.to_ascii_lowercase().as_str() {
            "cloud" => Ok(Flavor::Cloud),
            "datacenter" | "data-center" | "dc" | "server" => Ok(Flavor::DataCenter),
            _ => Err(ConfigError::Invalid {
                name: "CONFLUENCE_FLAVOR".into(),
                value: f,
                reason: "must be cloud or datacenter".into(),
                example: "cloud",
            }),
        };
    }
    let cloud = c.email.is_some() || c.token.is_some();
    match (cloud, c.pat.is_some()) {
        (false, true) => Ok(Flavor::DataCenter),
        (true, false) => Ok(Flavor::Cloud),
        (true, true) => Err(ConfigError::Invalid {
            name: "CONFLUENCE_FLAVOR".into(),
            value: String::new(),
            reason: "both Cloud (CONFLUENCE_EMAIL/CONFLUENCE_API_TOKEN) and Data Center (CONFLUENCE_PAT) credentials are set; say which to use".into(),
            example: "cloud",
        }),
        (false, false) => Err(ConfigError::NoCredentials),
    }
}

/// The credentials this flavour needs, each one missing named.
fn auth(flavor: Flavor, c: Credentials) -> Result<ConfluenceAuth, ConfigError> {
    Ok(match flavor {
        Flavor::Cloud => ConfluenceAuth::Basic {
            email: c.email.ok_or(ConfigError::Missing {
                name: "CONFLUENCE_EMAIL",
                hint: "Confluence Cloud needs the account email with the API token, e.g. CONFLUENCE_EMAIL=you@acme.com",
            })?,
            token: c.token.ok_or(ConfigError::Missing {
                name: "CONFLUENCE_API_TOKEN",
                hint: "create one at id.atlassian.com > Security > API tokens and set CONFLUENCE_API_TOKEN",
            })?,
        },
        Flavor::DataCenter => ConfluenceAuth::Bearer(c.pat.ok_or(ConfigError::Missing {
            name: "CONFLUENCE_PAT",
            hint: "Data Center needs a personal access token (Profile > Personal Access Tokens), e.g. CONFLUENCE_PAT=...",
        })?),
    })
}
