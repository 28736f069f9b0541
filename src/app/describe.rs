//! `taxonomy init --describe`: one request per [`describe::TAGS_PER_REQUEST`] drafted tags,
//! through the configured provider chain (governor, retries, fallback as in a run), each tag
//! shown with a few titles of pages people gave it.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::Arc;

use anyhow::Context;

use super::build_chain_with;
use crate::config::Config;
use crate::llm::budget::estimate_tokens;
use crate::llm::prompt::PromptOptions;
use crate::llm::{PageText, Provider, describe};
use crate::taxonomy::Taxonomy;
use crate::taxonomy::draft::{Draft, PageLabels};
use crate::taxonomy::render::render;

/// The tags of `d` as description requests: each with the titles of its first pages (by id).
pub(super) fn requests(d: &Draft, pages: &[PageLabels]) -> Vec<PageText> {
    let titles: HashMap<&str, &str> = pages
        .iter()
        .map(|p| (p.id.as_str(), p.title.as_str()))
        .collect();
    d.tags()
        .map(|t| {
            let examples: Vec<String> = t
                .pages
                .iter()
                .filter_map(|id| titles.get(id.as_str()).map(|s| s.to_string()))
                .take(describe::TITLES_PER_TAG)
                .collect();
            describe::tag_page(&t.name, &examples)
        })
        .collect()
}

/// Prints the prompt's size on stderr: requests, estimated tokens.
pub(super) fn print_size(tags: &[PageText], dry_run: bool) {
    let n = tags.chunks(describe::TAGS_PER_REQUEST).count() as u32;
    let system = estimate_tokens(&describe::system_instruction());
    let user: u32 = tags
        .chunks(describe::TAGS_PER_REQUEST)
        .map(|r| estimate_tokens(&describe::user_content(r)))
        .sum();
    let _ = writeln!(
        std::io::stderr().lock(),
        "tag-space: --describe: {} tags in {n} request(s), about {} prompt tokens ({system} of instructions per request, {user} of tags and titles){}",
        tags.len(),
        system * n + user,
        if dry_run {
            "; dry run: no call made"
        } else {
            ""
        }
    );
}

/// Asks the chain for every tag's description; a request that fails stops the command.
pub(super) async fn describe_tags(
    config: &Config,
    d: &Draft,
    tags: &[PageText],
) -> anyhow::Result<BTreeMap<String, String>> {
    // The providers hold a taxonomy; the draft's own is the honest one to give them.
    let taxonomy = Arc::new(Taxonomy::from_toml(&render(d), "the drafted taxonomy")?);
    let prompt = PromptOptions {
        describe: true,
        ..PromptOptions::default()
    };
    let chain = build_chain_with(config, &taxonomy, std::time::Duration::ZERO, &prompt)?;
    let mut out = BTreeMap::new();
    for request in tags.chunks(describe::TAGS_PER_REQUEST) {
        let answer = chain
            .classify(request)
            .await
            .context("cannot get the tags' descriptions")?;
        out.extend(describe::descriptions(&answer.labels));
    }
    Ok(out)
}
