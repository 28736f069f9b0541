//! The LLM providers' settings: each client's [`ProviderSettings`] and the governor's
//! [`Quota`] for it.

use std::time::Duration;

use super::ConfigError;
use super::sources::{base_url, opt_setting, setting};
use crate::governor::Quota;
use crate::llm::ProviderSettings;
use crate::llm::structured::StructuredMode;
use crate::secret::Secret;

pub const DEFAULT_GEMINI_MODEL: &str = "gemini-2.5-flash";
pub const DEFAULT_GEMINI_BASE_URL: &str = "https://generativelanguage.googleapis.com";
pub const DEFAULT_OPENAI_MODEL: &str = "gpt-4.1-mini";
pub const DEFAULT_OPENAI_BASE_URL: &str = "https://api.openai.com/v1";

/// `TAG_SPACE_GEMINI_RPM`/`_TPM` and `TAG_SPACE_OPENAI_RPM`/`_TPM`, in that order.
pub(super) fn quotas(get: &impl Fn(&str) -> Option<String>) -> Result<(Quota, Quota), ConfigError> {
    let gemini = Quota {
        rpm: opt_setting("TAG_SPACE_GEMINI_RPM", get, "60")?,
        tpm: opt_setting("TAG_SPACE_GEMINI_TPM", get, "250000")?,
    };
    let openai = Quota {
        rpm: opt_setting("TAG_SPACE_OPENAI_RPM", get, "500")?,
        tpm: opt_setting("TAG_SPACE_OPENAI_TPM", get, "200000")?,
    };
    Ok((gemini, openai))
}

pub(super) fn gemini_settings(
    get: &impl Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<Option<ProviderSettings>, ConfigError> {
    let Some(key) = get("GEMINI_API_KEY") else {
        return Ok(None);
    };
    let base = get("GEMINI_BASE_URL").unwrap_or_else(|| DEFAULT_GEMINI_BASE_URL.to_string());
    Ok(Some(ProviderSettings {
        api_key: Some(Secret::new(key)),
        model: get("GEMINI_MODEL").unwrap_or_else(|| DEFAULT_GEMINI_MODEL.to_string()),
        base_url: base_url("GEMINI_BASE_URL", &base, DEFAULT_GEMINI_BASE_URL, warnings)?,
        timeout: Duration::from_secs(120),
        max_output_tokens: 4096,
    }))
}

pub(super) fn openai_settings(
    get: &impl Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<Option<ProviderSettings>, ConfigError> {
    let key = get("OPENAI_API_KEY");
    let base = get("OPENAI_BASE_URL");
    // A local OpenAI-compatible server (Ollama, vLLM, llama.cpp) may need no key: setting its
    // base URL is enough to enable it.
    if key.is_none() && base.is_none() {
        return Ok(None);
    }
    let base = base.unwrap_or_else(|| DEFAULT_OPENAI_BASE_URL.to_string());
    Ok(Some(ProviderSettings {
        api_key: key.map(Secret::new),
        model: get("OPENAI_MODEL").unwrap_or_else(|| DEFAULT_OPENAI_MODEL.to_string()),
        base_url: base_url("OPENAI_BASE_URL", &base, DEFAULT_OPENAI_BASE_URL, warnings)?,
        // A large batch on a CPU server can take minutes.
        timeout: Duration::from_secs(setting(
            None,
            "",
            "TAG_SPACE_OPENAI_TIMEOUT_SECS",
            get,
            120,
            1,
            86_400,
            "600",
        )?),
        max_output_tokens: 4096,
    }))
}

/// `TAG_SPACE_OPENAI_STRUCTURED`: `auto` (the default) or the one rung to use.
pub(super) fn structured_mode(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<StructuredMode, ConfigError> {
    let Some(raw) = get("TAG_SPACE_OPENAI_STRUCTURED") else {
        return Ok(StructuredMode::Auto);
    };
    raw.parse().map_err(|reason| ConfigError::Invalid {
        name: "TAG_SPACE_OPENAI_STRUCTURED".into(),
        value: raw,
        reason,
        example: "auto",
    })
}
