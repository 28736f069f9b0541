//! Where Confluence is and how to authenticate; built by `config`, read by the client.

use std::time::Duration;

use super::Flavor;
use crate::secret::Secret;

/// How to authenticate to Confluence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfluenceAuth {
    /// Cloud: `Authorization: Basic base64(email:api_token)`.
    Basic { email: String, token: Secret },
    /// Data Center: `Authorization: Bearer <personal access token>`.
    Bearer(Secret),
}

/// Where Confluence is and how to talk to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfluenceSettings {
    /// The site root without a trailing slash. Cloud: without the trailing `/wiki`
    /// (`https://acme.atlassian.net`), so that API paths are `{root}/wiki/api/v2/...` and a
    /// `_links.next` (which starts with `/wiki`) is `{root}{next}`. Data Center: with its context
    /// path (`https://confluence.acme.com/confluence`), API paths are `{root}/rest/api/...`.
    pub root: String,
    pub flavor: Flavor,
    pub auth: ConfluenceAuth,
    /// Every request is bounded by this (connect + read).
    pub timeout: Duration,
    /// How many times a 429/5xx/transport failure is retried before giving up.
    pub max_retries: u32,
}
