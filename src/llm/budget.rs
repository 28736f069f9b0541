//! The output budget of a request: how many tokens a complete answer for the batch can need.
//!
//! Providers charge the requested output cap against tokens-per-minute up front (OpenAI counts
//! `max_tokens` in its rate-limit estimate; reference §2.4), so a fixed 4,096-token cap for an
//! answer of a few hundred tokens made each request cost several times what it used. The
//! budget is computed instead from what the schema lets the model write: per page, its id, one
//! array per category, and at most `max_labels_per_page` labels, each counted as the longest
//! tag; plus whitespace for a pretty-printed answer and a margin. A model that thinks before
//! answering spends output tokens on that too, so each provider adds its model's allowance.
//! A truncated answer is retried once at twice the budget (`crate::governor`).

use super::PageText;
use super::schema::unique_pages;
use crate::taxonomy::Taxonomy;

/// Added to every budget: the answer's outer braces, a stray newline, an end-of-turn token.
pub const MARGIN_TOKENS: u32 = 32;

/// The output cap of one request, and how far a retry after a truncated answer may raise it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputBudget {
    /// The cap of the first attempt.
    pub tokens: u32,
    /// The most any attempt may ask for (the provider's configured ceiling).
    pub ceiling: u32,
}

impl OutputBudget {
    /// `tokens` (at least 1), capped at `ceiling`.
    pub fn new(tokens: u32, ceiling: u32) -> Self {
        let ceiling = ceiling.max(1);
        Self {
            tokens: tokens.clamp(1, ceiling),
            ceiling,
        }
    }

    /// The cap of the one retry after a truncated answer: twice the budget, within the
    /// ceiling; `None` when that is no more than the budget already was.
    pub fn widened(self) -> Option<u32> {
        let doubled = self.tokens.saturating_mul(2).min(self.ceiling);
        (doubled > self.tokens).then_some(doubled)
    }
}

/// Tokens of `text`, estimated from above for JSON (BPE tokenizers give fewer): a run of
/// letters is one token per 4 letters, rounded up; a run of digits one per 3; a run of
/// whitespace one; every other character (quote, bracket, comma, colon, hyphen) one.
pub fn estimate_tokens(text: &str) -> u32 {
    #[derive(PartialEq, Clone, Copy)]
    enum Run {
        Other,
        Alpha,
        Digit,
        Space,
    }
    fn close(run: Run, len: u32) -> u32 {
        match run {
            Run::Alpha => len.div_ceil(4),
            Run::Digit => len.div_ceil(3),
            Run::Space => 1,
            Run::Other => 0,
        }
    }
    let (mut tokens, mut run, mut len) = (0u32, Run::Other, 0u32);
    for c in text.chars() {
        let kind = if c.is_alphabetic() {
            Run::Alpha
        } else if c.is_ascii_digit() {
            Run::Digit
        } else if c.is_whitespace() {
            Run::Space
        } else {
            Run::Other
        };
        if kind != run || kind == Run::Other {
            tokens = tokens.saturating_add(close(run, len));
            run = kind;
            len = 0;
            if kind == Run::Other {
                tokens = tokens.saturating_add(1);
                continue;
            }
        }
        len += 1;
    }
    tokens.saturating_add(close(run, len))
}

/// The output tokens a complete answer for `batch` can need (before any thinking allowance):
/// for each page `"<id>": {"<category>": ["<tag>", ...], ...}, ` with the most labels a page
/// may get, each as long as the longest tag, a whitespace token before every key and label
/// (a pretty-printed answer), and [`MARGIN_TOKENS`].
pub fn answer_tokens(batch: &[PageText], taxonomy: &Taxonomy) -> u32 {
    let schema_max: usize = taxonomy
        .categories()
        .iter()
        .map(|c| c.max_per_page.min(c.tags.len()))
        .sum();
    let labels = taxonomy.max_labels_per_page().min(schema_max) as u32;
    let longest = taxonomy
        .tag_names()
        .map(|t| estimate_tokens(&format!("\"{t}\", ")))
        .max()
        .unwrap_or(0);
    let categories: u32 = taxonomy
        .categories()
        .iter()
        .map(|c| estimate_tokens(&format!("\"{}\": [], ", c.name)))
        .sum();
    let whitespace = taxonomy.categories().len() as u32 + labels + 2;
    unique_pages(batch)
        .map(|p| {
            estimate_tokens(&format!("\"{}\": {{}}, ", p.id))
                + categories
                + labels * longest
                + whitespace
        })
        .fold(MARGIN_TOKENS, u32::saturating_add)
}

/// Output tokens one page's reason may take: the prompt asks for at most 20 words (about 30
/// tokens), plus `"reason": "", "tags": {}` around it and some slack for a wordier model. A
/// longer one is cut by the cap and retried once at twice the budget, like any answer.
pub const REASON_TOKENS: u32 = 60;

/// What the reason switch adds to [`answer_tokens`] for `batch`.
pub fn reason_tokens(batch: &[PageText]) -> u32 {
    (unique_pages(batch).count() as u32).saturating_mul(REASON_TOKENS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::prompt::tests::page;

    #[test]
    fn estimates_count_json_punctuation_and_word_pieces() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(
            estimate_tokens("\"tool-postgres\", "),
            1 + 1 + 1 + 2 + 1 + 1 + 1
        );
        assert_eq!(estimate_tokens("10000"), 2);
        assert_eq!(estimate_tokens("{\"1\": []}"), 9);
        assert_eq!(estimate_tokens("a\n    b"), 3);
    }

    #[test]
    fn the_budget_covers_the_largest_answer_the_prompt_allows() {
        let tax = Taxonomy::embedded();
        let batch: Vec<PageText> = (0..5)
            .map(|i| page(&format!("1048{i:03}"), "", ""))
            .collect();
        let budget = answer_tokens(&batch, &tax);
        // The largest answer: every page with max_labels_per_page of the longest tags, filled
        // category by category, pretty-printed with two-space indentation.
        let mut left = tax.max_labels_per_page();
        let mut one = serde_json::Map::new();
        for c in tax.categories() {
            let mut tags: Vec<&str> = c.tags.iter().map(|t| t.name.as_str()).collect();
            tags.sort_by_key(|t| std::cmp::Reverse(t.len()));
            let n = c.max_per_page.min(tags.len()).min(left);
            left -= n;
            one.insert(c.name.clone(), serde_json::json!(tags[..n]));
        }
        let answer: serde_json::Map<String, serde_json::Value> = batch
            .iter()
            .map(|p| (p.id.clone(), serde_json::Value::Object(one.clone())))
            .collect();
        let pretty = serde_json::to_string_pretty(&answer).unwrap();
        let spaced = serde_json::Value::Object(answer)
            .to_string()
            .replace(':', ": ")
            .replace(',', ", ");
        for text in [&pretty, &spaced] {
            let need = estimate_tokens(text);
            assert!(need <= budget, "{need} > {budget} for {text}");
        }
        // … and is a small fraction of the 4,096 tokens every request used to reserve.
        assert!(budget < 4096 / 4, "{budget}");
    }

    #[test]
    fn the_budget_grows_with_the_pages_and_ignores_repeats() {
        let tax = Taxonomy::embedded();
        let one = answer_tokens(&[page("1", "", "")], &tax);
        let two = answer_tokens(&[page("1", "", ""), page("2", "", "")], &tax);
        let again = answer_tokens(&[page("1", "", ""), page("1", "", "")], &tax);
        assert!(two > one && two < 2 * one, "{one} {two}");
        assert_eq!(again, one);
        assert_eq!(answer_tokens(&[], &tax), MARGIN_TOKENS);
    }

    #[test]
    fn widening_doubles_within_the_ceiling() {
        assert_eq!(OutputBudget::new(300, 4096).widened(), Some(600));
        assert_eq!(OutputBudget::new(3000, 4096).widened(), Some(4096));
        assert_eq!(OutputBudget::new(5000, 4096).tokens, 4096);
        assert_eq!(OutputBudget::new(5000, 4096).widened(), None);
        assert_eq!(OutputBudget::new(0, 0).tokens, 1);
    }
}
