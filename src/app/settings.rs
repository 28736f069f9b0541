//! The settings a run used, as the reports show them: named fields copied from the
//! [`Config`], so that no API key, token, personal access token or account email can end up
//! in a report, and base URLs lose any user, password, query or fragment.

use crate::config::Config;
use crate::confluence::{ConfluenceAuth, ConfluenceSettings, Flavor};
use crate::report::model::{
    CacheInfo, ConfluenceInfo, ProviderInfo, Settings, TaxonomyInfo, public_url, seconds,
};

/// The settings in effect, without secrets. `taxonomy_fingerprint` is
/// [`crate::taxonomy::Taxonomy::fingerprint`] of the taxonomy actually loaded.
pub fn report_settings(c: &Config, taxonomy_fingerprint: &str) -> Settings {
    Settings {
        demo: c.demo,
        limit: c.limit,
        batch_size: c.batch_size,
        concurrency: c.concurrency,
        max_concurrency: c.max_concurrency,
        max_page_chars: c.max_page_chars,
        max_cooldown_seconds: seconds(c.max_cooldown),
        confluence: c.confluence.as_ref().map(confluence_info),
        providers: provider_infos(c),
        taxonomy: TaxonomyInfo {
            source: c
                .taxonomy_path
                .as_ref()
                .map_or_else(|| "built-in".to_string(), |p| p.display().to_string()),
            fingerprint: taxonomy_fingerprint.to_string(),
        },
        cache: CacheInfo {
            enabled: c.cache.enabled,
            size: c.cache.size,
        },
    }
}

/// The site and the kind of credentials only.
fn confluence_info(s: &ConfluenceSettings) -> ConfluenceInfo {
    ConfluenceInfo {
        base_url: public_url(&s.root),
        flavor: match s.flavor {
            Flavor::Cloud => "cloud",
            Flavor::DataCenter => "datacenter",
        },
        auth: match s.auth {
            ConfluenceAuth::Basic { .. } => "basic",
            ConfluenceAuth::Bearer(_) => "bearer",
        },
    }
}

/// The providers in the order they are tried.
fn provider_infos(c: &Config) -> Vec<ProviderInfo> {
    let llm = [
        ("gemini", &c.gemini, c.gemini_quota),
        ("openai", &c.openai, c.openai_quota),
    ];
    let mut providers: Vec<ProviderInfo> = llm
        .into_iter()
        .filter_map(|(name, p, quota)| {
            p.as_ref().map(|p| ProviderInfo {
                name: name.to_string(),
                model: Some(p.model.clone()),
                base_url: Some(public_url(&p.base_url)),
                rpm: quota.rpm,
                tpm: quota.tpm,
                timeout_seconds: Some(seconds(p.timeout)),
                max_output_tokens: Some(p.max_output_tokens),
            })
        })
        .collect();
    if c.rules {
        providers.push(ProviderInfo {
            name: "rules".into(),
            model: None,
            base_url: None,
            rpm: None,
            tpm: None,
            timeout_seconds: None,
            max_output_tokens: None,
        });
    }
    providers
}
