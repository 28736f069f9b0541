//! One type for "any provider", so that a provider chain of mixed kinds is a plain
//! `Chain<AnyProvider>` (the `Provider` trait returns `impl Future` and is not object-safe).

use super::gemini::GeminiProvider;
use super::openai::OpenAiProvider;
use super::rules::RulesProvider;
use super::{Answer, Climb, LlmError, OutputBudget, PageText, Provider, Unsettled};

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

    fn output_budget(&self, batch: &[PageText]) -> Option<OutputBudget> {
        match self {
            Self::Gemini(p) => p.output_budget(batch),
            Self::OpenAi(p) => p.output_budget(batch),
            Self::Rules(p) => p.output_budget(batch),
        }
    }

    async fn classify_capped(
        &self,
        batch: &[PageText],
        max_output_tokens: u32,
    ) -> Result<Answer, LlmError> {
        match self {
            Self::Gemini(p) => p.classify_capped(batch, max_output_tokens).await,
            Self::OpenAi(p) => p.classify_capped(batch, max_output_tokens).await,
            Self::Rules(p) => p.classify_capped(batch, max_output_tokens).await,
        }
    }

    async fn classify_once(
        &self,
        batch: &[PageText],
        cap: Option<u32>,
        climb: Option<Climb>,
    ) -> Result<Answer, Unsettled> {
        match self {
            Self::Gemini(p) => p.classify_once(batch, cap, climb).await,
            Self::OpenAi(p) => p.classify_once(batch, cap, climb).await,
            Self::Rules(p) => p.classify_once(batch, cap, climb).await,
        }
    }
}

impl AnyProvider {
    /// The structured-output ladder of an HTTP provider; `None` for `rules`.
    pub fn ladder(&self) -> Option<&super::structured::Ladder> {
        match self {
            Self::Gemini(p) => Some(p.ladder()),
            Self::OpenAi(p) => Some(p.ladder()),
            Self::Rules(_) => None,
        }
    }

    /// The settings of an HTTP provider (base URL and model); `None` for `rules`.
    pub fn settings(&self) -> Option<&super::ProviderSettings> {
        match self {
            Self::Gemini(p) => Some(p.settings()),
            Self::OpenAi(p) => Some(p.settings()),
            Self::Rules(_) => None,
        }
    }
}
