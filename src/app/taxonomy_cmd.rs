//! `tag-space taxonomy init`: reads the labels of a space (nothing is written to it) and
//! drafts a taxonomy file from them ([`crate::taxonomy::draft`]).

use std::io::Write;

use anyhow::Context;

use super::describe;
use crate::cli::{Args, FallbackArg, TaxonomyCommand, TaxonomyInitArgs};
use crate::config::Config;
use crate::confluence::PageSource;
use crate::demo;
use crate::taxonomy::Taxonomy;
use crate::taxonomy::draft::{Draft, PageLabels, draft};
use crate::taxonomy::read::read_space_labels;
use crate::taxonomy::render::render_with;

/// Runs a `taxonomy` command.
pub fn taxonomy_command(args: &Args, cmd: &TaxonomyCommand) -> anyhow::Result<()> {
    let TaxonomyCommand::Init(init) = cmd;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(taxonomy_init(args, init))
}

/// Reads the space, drafts, checks the draft loads, writes it; a summary on stderr.
pub async fn taxonomy_init(args: &Args, init: &TaxonomyInitArgs) -> anyhow::Result<()> {
    if let Some(path) = &init.output {
        if path.exists() && !init.force {
            anyhow::bail!(
                "{} exists: choose another --output, or add --force to overwrite it",
                path.display()
            );
        }
    }
    let mut a = args.clone();
    a.command = None;
    a.space.clone_from(&init.space);
    a.env_file.clone_from(&init.env_file);
    a.demo = init.demo;
    // Without --describe no model is asked: the offline provider stands in, so that no LLM
    // key is needed. The demo has only that one (its descriptions are templates).
    if !init.describe {
        a.fallback = Some(FallbackArg::Rules);
    }
    let mut config = Config::load(&a)?;
    let (d, pages) = if init.demo {
        draft_from(&demo::eval::source(), demo::eval::SPACE_KEY, init.min_pages).await?
    } else {
        let client = super::space::connect(&mut config).await?;
        draft_from(&client, &config.space, init.min_pages).await?
    };
    if d.tags().next().is_none() {
        anyhow::bail!(
            "no label of space {} is on at least {} pages ({} pages read): lower --min-pages",
            d.space,
            d.min_pages,
            d.pages_read
        );
    }
    let mut descriptions = std::collections::BTreeMap::new();
    if init.describe {
        let tags = describe::requests(&d, &pages);
        describe::print_size(&tags, init.dry_run);
        if init.dry_run {
            return Ok(());
        }
        descriptions = describe::describe_tags(&config, &d, &tags).await?;
    }
    let text = render_with(&d, &descriptions);
    // What is written must load: a bug here must not hand a person a broken file.
    Taxonomy::from_toml(&text, "the drafted taxonomy")
        .context("the drafted taxonomy does not load (a bug: please report it)")?;
    match &init.output {
        Some(path) => std::fs::write(path, &text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => std::io::stdout().lock().write_all(text.as_bytes())?,
    }
    // The file (or stdout) is the output; the summary goes beside it, on stderr.
    let _ = writeln!(
        std::io::stderr().lock(),
        "tag-space: {}",
        summary(&d, init.output.as_deref())
    );
    Ok(())
}

async fn draft_from<S: PageSource>(
    source: &S,
    space: &str,
    min_pages: u64,
) -> anyhow::Result<(Draft, Vec<PageLabels>)> {
    let pages = read_space_labels(source, space)
        .await
        .with_context(|| format!("cannot read the labels of space {space}"))?;
    Ok((draft(space, &pages, min_pages), pages))
}

fn summary(d: &Draft, output: Option<&std::path::Path>) -> String {
    let aliases: usize = d.tags().map(|t| t.aliases.len()).sum();
    let mut s = format!(
        "read {} pages of {}: {} tags in {} categories, {} aliases{}",
        d.pages_read,
        d.space,
        d.tags().count(),
        d.categories.len(),
        aliases,
        output.map_or(String::new(), |p| format!(", written to {}", p.display()))
    );
    if !d.rejected.is_empty() {
        let names: Vec<String> = d
            .rejected
            .iter()
            .map(|(l, why, _)| format!("{l:?} ({why})"))
            .collect();
        s.push_str(&format!(
            "; left out, breaking Confluence's label rules: {}",
            names.join(", ")
        ));
    }
    if !d.below.is_empty() {
        s.push_str(&format!(
            "; {} labels on fewer than {} pages left out (listed at the end of the file)",
            d.below.len(),
            d.min_pages
        ));
    }
    s
}
