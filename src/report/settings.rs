//! The settings a run used, as the JSON report shows them (without secrets).

use std::time::Duration;

use serde::Serialize;

/// The settings a run used, as they appear in the JSON report. Built from the run's
/// configuration by `app::report_settings`, which copies named fields only: no API key, token, personal
/// access token or account email can end up here, and base URLs lose any user, password,
/// query or fragment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    pub demo: bool,
    pub limit: Option<u64>,
    pub batch_size: usize,
    pub concurrency: usize,
    pub max_concurrency: usize,
    pub max_page_chars: usize,
    pub max_cooldown_seconds: f64,
    pub confluence: Option<ConfluenceInfo>,
    /// In the order they are tried.
    pub providers: Vec<ProviderInfo>,
    pub taxonomy: TaxonomyInfo,
    pub cache: CacheInfo,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfluenceInfo {
    pub base_url: String,
    /// `cloud` or `datacenter`.
    pub flavor: &'static str,
    /// `basic` (email + API token) or `bearer` (personal access token): the kind only.
    pub auth: &'static str,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderInfo {
    /// `gemini`, `openai` or `rules`.
    pub name: String,
    /// `None` for `rules`.
    pub model: Option<String>,
    pub base_url: Option<String>,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    pub timeout_seconds: Option<f64>,
    pub max_output_tokens: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaxonomyInfo {
    /// The taxonomy file, or `built-in`.
    pub source: String,
    pub fingerprint: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheInfo {
    pub enabled: bool,
    pub size: usize,
}

/// A URL fit to publish: scheme, host, port and path only. Anything unparsable is replaced
/// rather than copied, since it might hold a credential.
pub fn public_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.as_str().trim_end_matches('/').to_string()
        }
        Err(_) => "(invalid URL)".to_string(),
    }
}

/// Seconds as a number, to the millisecond.
pub fn seconds(d: Duration) -> f64 {
    d.as_millis() as f64 / 1000.0
}
