//! What tokens cost: list prices per provider and model, overridable, and the arithmetic.

use std::collections::BTreeMap;

use super::metrics::ProviderMetrics;

/// A model's price in US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    /// Input read from the provider's prompt cache; the input price when none is known.
    pub cached_input_per_mtok: f64,
}

impl Price {
    /// The cost in US dollars of the tokens, rounded to a millionth of a dollar.
    /// `tokens_cached` is the part of `tokens_in` billed at the cached rate.
    pub fn cost(&self, tokens_in: u64, tokens_cached: u64, tokens_out: u64) -> f64 {
        let cached = tokens_cached.min(tokens_in);
        let usd = ((tokens_in - cached) as f64 * self.input_per_mtok
            + cached as f64 * self.cached_input_per_mtok
            + tokens_out as f64 * self.output_per_mtok)
            / 1_000_000.0;
        (usd * 1_000_000.0).round() / 1_000_000.0
    }
}

/// Default prices: `(provider, model, input $/M tokens, output $/M tokens)`; model `*`
/// matches any model of that provider.
///
/// These are the providers' published LIST prices for the standard (pay-as-you-go) tier,
/// text input, prompts under 200k tokens, as of 2025-07-01. They are only an estimate: they
/// change, and batch, cached-input, free-tier and negotiated prices differ. Override them
/// with [`Prices::set`] or [`Prices::parse_overrides`]. A model not listed here gets no
/// estimate ("-" in the table, `null` in JSON), never a guess.
pub const DEFAULT_PRICES: &[(&str, &str, f64, f64)] = &[
    ("gemini", "gemini-2.5-flash", 0.30, 2.50),
    ("gemini", "gemini-2.5-flash-lite", 0.10, 0.40),
    ("gemini", "gemini-2.5-pro", 1.25, 10.00),
    ("gemini", "gemini-2.0-flash", 0.10, 0.40),
    ("openai", "gpt-4.1", 2.00, 8.00),
    ("openai", "gpt-4.1-mini", 0.40, 1.60),
    ("openai", "gpt-4.1-nano", 0.10, 0.40),
    ("openai", "gpt-4o", 2.50, 10.00),
    ("openai", "gpt-4o-mini", 0.15, 0.60),
    // Offline keyword rules: free.
    ("rules", "*", 0.0, 0.0),
];

/// What a batch-service request costs relative to the interactive price: Gemini Batch Mode
/// and the OpenAI Batch API both charge half (reference §1.7, §2.5).
pub const BATCH_PRICE_FACTOR: f64 = 0.5;

/// Default prices of input read from the prompt cache (Gemini implicit caching, OpenAI prompt
/// caching): `(provider, model, cached input $/M tokens)`, list prices of the same date as
/// [`DEFAULT_PRICES`]. A model not listed here pays its input price for cached tokens.
pub const DEFAULT_CACHED_INPUT_PRICES: &[(&str, &str, f64)] = &[
    ("gemini", "gemini-2.5-flash", 0.075),
    ("gemini", "gemini-2.5-flash-lite", 0.025),
    ("gemini", "gemini-2.5-pro", 0.31),
    ("gemini", "gemini-2.0-flash", 0.025),
    ("openai", "gpt-4.1", 0.50),
    ("openai", "gpt-4.1-mini", 0.10),
    ("openai", "gpt-4.1-nano", 0.025),
    ("openai", "gpt-4o", 1.25),
    ("openai", "gpt-4o-mini", 0.075),
];

/// Prices by provider and model.
#[derive(Debug, Clone, PartialEq)]
pub struct Prices {
    by_model: BTreeMap<(String, String), Price>,
}

impl Default for Prices {
    fn default() -> Self {
        let mut p = Prices::empty();
        for &(provider, model, i, o) in DEFAULT_PRICES {
            p.set(provider, model, i, o);
        }
        for &(provider, model, c) in DEFAULT_CACHED_INPUT_PRICES {
            p.set_cached_input(provider, model, c);
        }
        p
    }
}

impl Prices {
    /// No prices at all: every cost is unknown.
    pub fn empty() -> Self {
        Prices {
            by_model: BTreeMap::new(),
        }
    }

    /// Sets (or replaces) a price, cached input at the input price. `model` `*` matches any
    /// model of `provider`.
    pub fn set(&mut self, provider: &str, model: &str, input_per_mtok: f64, output_per_mtok: f64) {
        self.by_model.insert(
            (provider.to_string(), model.to_string()),
            Price {
                input_per_mtok,
                output_per_mtok,
                cached_input_per_mtok: input_per_mtok,
            },
        );
    }

    /// Sets the cached-input price of a model already priced with [`Prices::set`].
    pub fn set_cached_input(&mut self, provider: &str, model: &str, cached_input_per_mtok: f64) {
        if let Some(p) = self
            .by_model
            .get_mut(&(provider.to_string(), model.to_string()))
        {
            p.cached_input_per_mtok = cached_input_per_mtok;
        }
    }

    /// Applies overrides written `provider/model=INPUT:OUTPUT`, separated by commas or
    /// whitespace, e.g. `gemini/gemini-2.5-flash=0.30:2.50, openai/*=0.4:1.6`. Prices are US
    /// dollars per million tokens. Meant for a setting such as `TAG_SPACE_PRICES`.
    pub fn parse_overrides(&mut self, spec: &str) -> Result<(), String> {
        for item in spec
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
        {
            let bad = |why: &str| {
                format!("price {item:?}: {why} (e.g. gemini/gemini-2.5-flash=0.30:2.50)")
            };
            let (key, value) = item.split_once('=').ok_or_else(|| bad("no '='"))?;
            let (provider, model) = key
                .split_once('/')
                .filter(|(p, m)| !p.is_empty() && !m.is_empty())
                .ok_or_else(|| bad("expected provider/model before '='"))?;
            let (i, o) = value
                .split_once(':')
                .ok_or_else(|| bad("expected INPUT:OUTPUT after '='"))?;
            let num = |s: &str| {
                s.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .ok_or_else(|| bad("prices must be numbers of at least 0"))
            };
            self.set(provider, model, num(i)?, num(o)?);
        }
        Ok(())
    }

    /// The price of `model` at `provider`: the exact model first, then `provider/*`.
    pub fn get(&self, provider: &str, model: Option<&str>) -> Option<Price> {
        let key = |m: &str| (provider.to_string(), m.to_string());
        model
            .and_then(|m| self.by_model.get(&key(m)))
            .or_else(|| self.by_model.get(&key("*")))
            .copied()
    }

    /// The estimated cost of a provider's tokens; `None` when the model has no price.
    /// Tokens answered through a batch job cost [`BATCH_PRICE_FACTOR`] of the rate.
    pub fn cost(&self, p: &ProviderMetrics) -> Option<f64> {
        let (s, batch) = (&p.stats, &p.batch);
        self.get(s.provider, p.model.as_deref()).map(|price| {
            let batch_in = batch.tokens_in.min(s.tokens_in);
            let batch_out = batch.tokens_out.min(s.tokens_out);
            // Cached input is counted on interactive calls only; batch jobs report none here.
            let interactive = price.cost(
                s.tokens_in - batch_in,
                s.tokens_cached,
                s.tokens_out - batch_out,
            );
            let batch = Price {
                input_per_mtok: price.input_per_mtok * BATCH_PRICE_FACTOR,
                output_per_mtok: price.output_per_mtok * BATCH_PRICE_FACTOR,
                cached_input_per_mtok: price.cached_input_per_mtok * BATCH_PRICE_FACTOR,
            }
            .cost(batch_in, 0, batch_out);
            ((interactive + batch) * 1e6).round() / 1e6
        })
    }
}
