//! The prompt switches of issue 12 (few-shot examples, the reason field) across the prompt,
//! the schema, the reader, the ladder's check, the output budget and the cache key.

use std::sync::Arc;

use serde_json::json;

use super::examples::ExamplePool;
use super::prompt::tests::{page, taxonomy};
use super::prompt::{self, PROMPT_VERSION, PromptOptions};
use super::schema::{SchemaForm, inline_refs, response_schema, response_schema_with};
use super::{budget, structured};
use crate::cache::{CacheKey, Classification, RunMode, Setup, Store, StoreOptions};

fn pool() -> Arc<ExamplePool> {
    let labels = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let pages = [
        (
            "1",
            "How to file a Jira ticket",
            labels(&["how-to", "jira"]),
        ),
        (
            "2",
            "Jira workflow reference",
            labels(&["reference", "jira"]),
        ),
        ("3", "Git branching decision", labels(&["decision", "git"])),
    ];
    Arc::new(ExamplePool::new(
        &taxonomy(),
        pages.iter().map(|(i, t, l)| (*i, *t, l.as_slice())),
    ))
}

#[test]
fn the_reason_comes_before_the_tags_in_both_forms_and_is_required() {
    let batch = [page("101", "A", "a"), page("202", "B", "b")];
    for form in [SchemaForm::Defs, SchemaForm::Expanded] {
        let schema = inline_refs(&response_schema_with(&batch, &taxonomy(), form, true));
        let p = &schema["properties"]["101"];
        assert_eq!(p["required"], json!(["reason", "tags"]));
        assert_eq!(p["additionalProperties"], false);
        assert_eq!(p["properties"]["reason"]["type"], "string");
        assert_eq!(p["properties"]["tags"]["required"], json!(["type", "tool"]));
        // Serialised, "reason" precedes "tags": grammar engines write properties in order.
        let text = p.to_string();
        assert!(text.find("\"reason\"").unwrap() < text.find("\"tags\"").unwrap());
    }
    let plain = response_schema(&batch, &taxonomy(), SchemaForm::Defs);
    assert!(!plain.to_string().contains("reason"), "off by default");
}

#[test]
fn the_reason_is_read_past_never_taken_for_a_tag() {
    let text = r#"{"1": {"reason": "how-to about jira", "tags": {"type": ["how-to"], "tool": ["jira"]}},
                   "2": {"reason": "git", "type": [], "tool": ["git"]}}"#;
    let got = prompt::parse_answer(text).unwrap();
    let mut one = got["1"].clone();
    one.sort();
    assert_eq!(one, ["how-to", "jira"]);
    assert_eq!(got["2"], ["git"]);
    // A category that happens to be named "reason" still counts: its value is an array.
    assert_eq!(
        prompt::parse_answer(r#"{"1": {"reason": ["jira"]}}"#).unwrap()["1"],
        ["jira"]
    );
    // The ladder does not take the reasoned shape for an ignored schema.
    let batch = [page("1", "", ""), page("2", "", "")];
    assert_eq!(structured::schema_ignored(text, &batch, &taxonomy()), None);
    let odd = r#"{"1": {"reason": "x", "tags": {"colour": ["red"]}}}"#;
    assert!(structured::schema_ignored(odd, &batch, &taxonomy()).is_some());
}

#[test]
fn each_switch_changes_the_system_instruction_only_when_on() {
    let t = taxonomy();
    let base = prompt::system_instruction(&t);
    assert!(!base.contains("\"reason\"") && !base.contains("<example>"));
    let reason = prompt::system_instruction_with(
        &t,
        &PromptOptions {
            reason: true,
            examples: None,
            describe: false,
        },
    );
    assert!(reason.contains("\"reason\" first"), "{reason}");
    let shots = prompt::system_instruction_with(
        &t,
        &PromptOptions {
            reason: false,
            examples: Some(pool()),
            describe: false,
        },
    );
    assert!(shots.contains("<example>"), "{shots}");
    // Nothing batch-dependent: the same for every batch, so providers can cache it.
    assert!(!shots.contains("Jira ticket"));
}

#[test]
fn examples_lead_the_user_content_and_a_batch_page_is_not_among_them() {
    let opts = PromptOptions {
        reason: false,
        examples: Some(pool()),
        describe: false,
    };
    let batch = [
        page(
            "1",
            "How to file a Jira ticket",
            "Open Jira and click create.",
        ),
        page("9", "Jira board filters", "Filter the Jira board."),
    ];
    let s = prompt::user_content_with(&batch, &opts);
    assert!(s.starts_with("Examples:"), "{s}");
    assert!(
        s.contains(
            "<example><title>Jira workflow reference</title><tags>reference, jira</tags></example>"
        ),
        "{s}"
    );
    let examples = &s[..s.find("Pages to label").unwrap()];
    assert!(
        !examples.contains("Jira ticket"),
        "page 1 is its own example: {s}"
    );
    assert!(!examples.contains("Git branching"), "shares no word: {s}");
    assert_eq!(
        prompt::user_content_with(&batch, &PromptOptions::default()),
        prompt::user_content(&batch)
    );
}

#[test]
fn the_output_budget_counts_each_pages_reason() {
    let batch = [page("1", "", ""), page("2", "", ""), page("2", "", "")];
    assert_eq!(budget::reason_tokens(&batch), 2 * budget::REASON_TOKENS);
    let settings = crate::llm::ProviderSettings {
        api_key: None,
        model: "m".into(),
        base_url: "http://127.0.0.1:9/v1".into(),
        timeout: std::time::Duration::from_secs(1),
        max_output_tokens: 100_000,
    };
    let tax = Arc::new(taxonomy());
    let plain = crate::llm::openai::OpenAiProvider::new(settings.clone(), tax.clone()).unwrap();
    let reasoned = crate::llm::openai::OpenAiProvider::new(settings, tax)
        .unwrap()
        .with_prompt(PromptOptions {
            reason: true,
            examples: None,
            describe: false,
        });
    use crate::llm::Provider;
    let (a, b) = (
        plain.output_budget(&batch).unwrap().tokens,
        reasoned.output_budget(&batch).unwrap().tokens,
    );
    assert_eq!(b, a + 2 * budget::REASON_TOKENS);
    let body = reasoned.request_body(&batch, b);
    let schema = inline_refs(&body["response_format"]["json_schema"]["schema"]);
    assert_eq!(
        schema["properties"]["1"]["required"],
        json!(["reason", "tags"])
    );
}

#[test]
fn the_version_names_each_switch_and_the_example_pool() {
    assert_eq!(PromptOptions::default().version(), PROMPT_VERSION);
    assert_ne!(PROMPT_VERSION, "tag-space-prompt-2");
    let reason = PromptOptions {
        reason: true,
        examples: None,
        describe: false,
    };
    assert_eq!(reason.version(), format!("{PROMPT_VERSION}+reason"));
    let shots = PromptOptions {
        reason: false,
        examples: Some(pool()),
        describe: false,
    };
    assert!(
        shots
            .version()
            .starts_with(&format!("{PROMPT_VERSION}+few-shot:"))
    );
    let other = Arc::new(ExamplePool::new(&taxonomy(), std::iter::empty()));
    let other = PromptOptions {
        reason: false,
        examples: Some(other),
        describe: false,
    };
    assert_ne!(
        shots.version(),
        other.version(),
        "other examples, other answers"
    );
}

/// An answer cached under the previous prompt version is not found under this one, nor under
/// another switch setting.
#[test]
fn an_answer_of_an_older_prompt_version_is_not_reused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("state.db"), StoreOptions::default()).unwrap();
    let run = store.begin_run("ENG", RunMode::Add, true).unwrap();
    let key = |version: &str| CacheKey::new(&Setup::new("tax", version, "openai/m"), "T", "x");
    let answer = Classification::new(vec!["jira".into()], "openai", "m", 1, 1);
    store
        .store_batch(&run, &[(key("tag-space-prompt-2"), answer)])
        .unwrap();
    assert!(store.lookup(&key("tag-space-prompt-2")).unwrap().is_some());
    assert!(
        store
            .lookup(&key(&PromptOptions::default().version()))
            .unwrap()
            .is_none()
    );
    let reason = PromptOptions {
        reason: true,
        examples: None,
        describe: false,
    };
    assert!(store.lookup(&key(&reason.version())).unwrap().is_none());
}
