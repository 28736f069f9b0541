//! One LLM provider's client settings; built by `config`, read by the Gemini and OpenAI
//! clients. The provider's quota is the governor's ([`crate::governor::Quota`]), not the
//! client's: a client makes one request per call and never paces.

use std::time::Duration;

use crate::secret::Secret;

/// One LLM provider's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderSettings {
    /// `None` only for OpenAI-compatible local servers that need no key.
    pub api_key: Option<Secret>,
    pub model: String,
    /// Without a trailing slash. Gemini: `https://generativelanguage.googleapis.com`;
    /// OpenAI: `https://api.openai.com/v1`.
    pub base_url: String,
    /// Total time allowed for one request.
    pub timeout: Duration,
    /// The output cap sent with each request (`maxOutputTokens` / `max_completion_tokens`).
    pub max_output_tokens: u32,
}
