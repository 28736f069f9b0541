//! Settings from flags, the environment and an optional `.env` file (flag beats environment
//! beats `.env` beats default). The only module that reads the process environment.

use std::fmt;
use std::time::Duration;

use crate::confluence::Flavor;

/// A secret (API key, token). Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself, for the one place that puts it on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

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

/// Optional per-minute quotas of a provider; `None` means unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
}

/// One LLM provider's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderSettings {
    /// `None` only for OpenAI-compatible local servers that need no key.
    pub api_key: Option<Secret>,
    pub model: String,
    /// Without a trailing slash. Gemini: `https://generativelanguage.googleapis.com`;
    /// OpenAI: `https://api.openai.com/v1`.
    pub base_url: String,
    pub quota: Quota,
    /// Total time allowed for one request.
    pub timeout: Duration,
    /// The output cap sent with each request (`maxOutputTokens` / `max_completion_tokens`).
    pub max_output_tokens: u32,
}
