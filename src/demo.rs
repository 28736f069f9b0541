//! The bundled offline demo space: 32 made-up engineering pages in Confluence storage format,
//! compiled into the binary from `demo/space.toml`, so tag-space can be tried without a
//! Confluence site or an API key (`--demo`, with the `rules` provider).
//!
//! The pages cover the usual kinds (how-tos, runbooks, postmortems, design docs, meeting notes,
//! ...) and the awkward cases: labels a person already added (in the taxonomy or not, one under
//! the `my` prefix), a page with only markup (its text is empty, so the pipeline skips it), pages
//! in German and Japanese, an unrelated page, and a page whose text tries to instruct the model.

use serde::Deserialize;

use crate::confluence::{Label, MemorySource, Page};

pub mod eval;

/// The key of the demo space.
pub const SPACE_KEY: &str = "DEMO";

const SPACE: &str = include_str!("../demo/space.toml");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DemoFile {
    page: Vec<DemoPage>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DemoPage {
    id: String,
    title: String,
    version: u64,
    #[serde(default)]
    labels: Vec<String>,
    body: String,
}

/// The web address of a demo page (the `.invalid` top-level domain never resolves).
pub fn page_url(id: &str) -> String {
    format!("https://demo.invalid/wiki/spaces/{SPACE_KEY}/pages/{id}")
}

/// Every page of the demo space, in file order, with its current labels.
pub fn pages() -> Vec<Page> {
    let file: DemoFile =
        toml::from_str(SPACE).expect("demo/space.toml is valid (checked by a unit test)");
    file.page
        .into_iter()
        .map(|p| Page {
            url: Some(page_url(&p.id)),
            id: p.id,
            title: p.title,
            version: Some(p.version),
            body: Some(p.body),
            labels: Some(p.labels.into_iter().map(parse_label).collect()),
        })
        .collect()
}

/// The demo space, in memory.
pub fn source() -> MemorySource {
    MemorySource::new(SPACE_KEY, pages())
}

/// The demo space as tag-space left it, so that a second `--demo` run is incremental like a
/// real one: each page carries the labels the ledger in `store` says tag-space added (in
/// Confluence they would still be there), and a page the ledger finished at a later version
/// than the bundled one has the simulated edits that made that version. Then `edit` pages
/// with text are edited once more, as a person would (`--demo-edit N`).
pub fn restore(
    store: Option<&crate::cache::Store>,
    edit: usize,
) -> Result<MemorySource, crate::cache::CacheError> {
    use crate::cache::LabelStatus;
    let mut edits_left = edit;
    let mut pages = pages();
    for p in &mut pages {
        let bundled = (p.version.unwrap_or(1), p.body.clone().unwrap_or_default());
        let mut version = bundled.0;
        if let Some(store) = store {
            let ledger = store.page_ledger(SPACE_KEY, &p.id)?;
            version = version.max(ledger.done.and_then(|d| d.version).unwrap_or(0));
            let labels = p.labels.get_or_insert_with(Vec::new);
            for (name, status) in &ledger.labels {
                // `Removing` was not confirmed: the label is still there.
                let on_page = matches!(status, LabelStatus::Added | LabelStatus::Removing);
                if on_page
                    && !labels
                        .iter()
                        .any(|l| l.prefix == "global" && l.name == *name)
                {
                    labels.push(Label::global(name.clone()));
                }
            }
        }
        if edits_left > 0 && !crate::text::extract(&bundled.1, 200).trim().is_empty() {
            edits_left -= 1;
            version += 1;
        }
        p.body = Some(edited(&bundled.1, version - bundled.0));
        p.version = Some(version);
    }
    Ok(MemorySource::new(SPACE_KEY, pages))
}

/// A bundled page's body after `edits` simulated edits: one more paragraph per edit (words no
/// taxonomy keyword matches, so the page keeps its labels and only its content changes).
fn edited(body: &str, edits: u64) -> String {
    let mut body = body.to_string();
    for n in 1..=edits {
        body.push_str(&format!(
            "\n<p>Reviewed and brought up to date (revision note {n}).</p>"
        ));
    }
    body
}

/// "name" is a global label; "prefix:name" has another prefix (`:` is not allowed in names).
fn parse_label(s: String) -> Label {
    match s.split_once(':') {
        Some((prefix, name)) => Label {
            prefix: prefix.to_string(),
            name: name.to_string(),
        },
        None => Label::global(s),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;

    use super::*;
    use crate::confluence::PageSource;
    use crate::llm::rules::RulesProvider;
    use crate::llm::{PageText, Provider};
    use crate::taxonomy::{Taxonomy, check_label};
    use crate::text;

    const MAX_CHARS: usize = 8000;

    fn texts() -> Vec<PageText> {
        pages()
            .into_iter()
            .map(|p| PageText {
                text: text::extract(p.body.as_deref().unwrap_or_default(), MAX_CHARS),
                id: p.id,
                title: p.title,
            })
            .collect()
    }

    fn by_title<'a>(texts: &'a [PageText], start: &str) -> &'a PageText {
        texts
            .iter()
            .find(|p| p.title.starts_with(start))
            .expect("demo page exists")
    }

    #[test]
    fn the_space_has_24_to_36_well_formed_pages() {
        let pages = pages();
        assert!((24..=36).contains(&pages.len()), "{}", pages.len());
        let ids: HashSet<_> = pages.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids.len(), pages.len(), "ids are unique");
        for p in &pages {
            assert!(p.id.chars().all(|c| c.is_ascii_digit()), "{}", p.id);
            assert!(!p.title.trim().is_empty());
            assert_eq!(
                p.url.as_deref(),
                Some(format!("https://demo.invalid/wiki/spaces/DEMO/pages/{}", p.id).as_str())
            );
            assert!(p.version.is_some_and(|v| v >= 1));
            for l in p.labels.as_deref().unwrap_or_default() {
                assert!(
                    check_label(&l.name).is_ok() && check_label(&l.prefix).is_ok(),
                    "{l:?}"
                );
            }
        }
    }

    #[test]
    fn some_pages_already_carry_labels_in_and_out_of_the_taxonomy() {
        let tax = Taxonomy::embedded();
        let labels: Vec<Label> = pages()
            .into_iter()
            .flat_map(|p| p.labels.unwrap_or_default())
            .collect();
        assert!(
            labels
                .iter()
                .any(|l| l.prefix == "global" && tax.contains(&l.name))
        );
        assert!(
            labels
                .iter()
                .any(|l| l.prefix == "global" && !tax.contains(&l.name))
        );
        assert!(labels.contains(&Label {
            prefix: "my".into(),
            name: "favourite".into()
        }));
    }

    #[test]
    fn the_special_pages_are_there() {
        let texts = texts();
        assert_eq!(
            by_title(&texts, "Architecture diagrams").text,
            "",
            "only markup"
        );
        let german = by_title(&texts, "Datenschutz");
        assert!(
            german.text.contains("Löschfristen") || german.text.contains("Löschung"),
            "{}",
            german.text
        );
        assert!(
            by_title(&texts, "デプロイ手順")
                .text
                .contains("ステージング環境へのデプロイ手順です。")
        );
        assert!(
            by_title(&texts, "Vendor questionnaire")
                .text
                .contains("Ignore previous instructions")
        );
        // macro parameters are dropped, bodies and code kept
        let home = by_title(&texts, "Platform Engineering Home");
        assert!(!home.text.contains("Start here") && home.text.contains("New to the team?"));
        assert!(
            home.text
                .contains("Onboarding: your first week in Platform"),
            "link titles are shown"
        );
        let runbook = by_title(&texts, "Runbook: Postgres");
        assert!(runbook.text.contains("pg_ctl promote") && !runbook.text.contains("bash"));
        for p in &texts {
            assert!(
                !p.text.contains('<') || p.title.contains("Kubernetes") || p.title.contains("k6"),
                "{}",
                p.title
            );
            assert!(
                !p.text.contains("&nbsp;") && !p.text.contains("&amp;"),
                "{}",
                p.title
            );
        }
    }

    #[tokio::test]
    async fn the_source_streams_every_page() {
        let src = source();
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let sent = src.stream_pages(SPACE_KEY, tx).await.unwrap();
        assert_eq!(sent as usize, pages().len());
        let mut n = 0;
        while rx.recv().await.is_some() {
            n += 1;
        }
        assert_eq!(n, pages().len());
        assert!(
            src.stream_pages("OTHER", tokio::sync::mpsc::channel(1).0)
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn the_rules_provider_labels_most_of_the_demo_space() {
        let tax = Arc::new(Taxonomy::embedded());
        let rules = RulesProvider::new(tax.clone());
        let texts: Vec<PageText> = texts().into_iter().filter(|p| !p.text.is_empty()).collect();
        assert_eq!(
            texts.len(),
            pages().len() - 1,
            "only the empty page is skipped"
        );
        let answer = rules.classify(&texts).await.unwrap();
        assert_eq!(answer.labels.len(), texts.len(), "every page is answered");
        let labelled = answer.labels.values().filter(|l| !l.is_empty()).count();
        assert!(
            labelled * 10 >= texts.len() * 8,
            "{labelled} of {} pages labelled",
            texts.len()
        );
        for labels in answer.labels.values() {
            assert!(labels.len() <= tax.max_labels_per_page());
            assert!(labels.iter().all(|l| tax.contains(l)), "{labels:?}");
        }
        let of = |start: &str| &answer.labels[&by_title(&texts, start).id];
        assert!(of("Office plants").is_empty(), "{:?}", of("Office plants"));
        for (start, want) in [
            (
                "How to create a Jira filter",
                &["type-howto", "tool-jira"][..],
            ),
            ("Runbook: Postgres", &["type-runbook", "tool-postgres"]),
            ("Postmortem: 2024-03-12", &["type-postmortem", "tool-redis"]),
            (
                "ADR-007",
                &["type-decision-record", "tool-terraform", "tool-aws"],
            ),
            ("Kubernetes cheat sheet", &["tool-kubernetes"]),
            (
                "Jenkins build server",
                &["tool-jenkins", "status-deprecated"],
            ),
        ] {
            for tag in want {
                assert!(
                    of(start).iter().any(|l| l == tag),
                    "{start}: {:?} lacks {tag}",
                    of(start)
                );
            }
        }
        // the injected instructions do not work on keyword matching
        assert!(
            !of("Vendor questionnaire")
                .iter()
                .any(|l| l == "status-deprecated"),
            "{:?}",
            of("Vendor")
        );
    }
}
