//! One type for "any provider", so that a provider chain of mixed kinds is a plain
//! `Chain<AnyProvider>` (the `Provider` trait returns `impl Future` and is not object-safe).

use super::gemini::GeminiProvider;
use super::openai::OpenAiProvider;
use super::rules::RulesProvider;
use super::{Answer, LlmError, PageText, Provider};

pub enum AnyProvider {
    Gemini(GeminiProvider),
    OpenAi(OpenAiProvider),
    Rules(RulesProvider),
}

impl Provider for AnyProvider {
    fn name(&self) -> &'static str {
        match self {
            Self::Gemini(p) => p.name(),
            Self::OpenAi(p) => p.name(),
            Self::Rules(p) => p.name(),
        }
    }

    async fn classify(&self, batch: &[PageText]) -> Result<Answer, LlmError> {
        match self {
            Self::Gemini(p) => p.classify(batch).await,
            Self::OpenAi(p) => p.classify(batch).await,
            Self::Rules(p) => p.classify(batch).await,
        }
    }
}
