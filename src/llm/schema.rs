//! The JSON Schema a batch's answer must follow, in the two shapes structured-output forms
//! accept. Pure: no I/O.
//!
//! Every schema-valid answer is complete and within the taxonomy: the root's required keys are
//! exactly the batch's page ids, every object is closed (`additionalProperties: false`), and
//! each page has one array per category whose items are that category's tags (an `enum`) and
//! whose length is bounded (`maxItems`). Providers that constrain decoding to the schema
//! (OpenAI strict mode, Gemini, llama.cpp) then cannot leave a page out or invent a tag; the
//! answer is still validated (`super::validate`) because not every server enforces everything.
//!
//! The per-page object is the same for every page, and with 50 tags it is about 1.4 KB, which
//! providers count as input. [`SchemaForm::Defs`] states it once under `$defs` and refers to it
//! from each page id; [`SchemaForm::Expanded`] repeats it under each id, for forms that do not
//! resolve `$ref` (Gemini's OpenAPI-subset `responseSchema`). Neither puts a `$ref` at the root,
//! which Gemini refuses (reference §6).

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use super::PageText;
use crate::taxonomy::Taxonomy;

/// The name of the per-page definition under `$defs`.
pub const PAGE_DEF: &str = "page";

/// With the reason switch on, a page's answer is `{"reason": "...", "tags": {<categories>}}`.
/// Both keys are fixed so that "reason" sorts before "tags" however the categories are
/// named: schemas are serialised with sorted keys, and llama.cpp's grammar and Gemini's
/// `responseJsonSchema` write properties in the order they are given.
pub const REASON_FIELD: &str = "reason";
/// The key of the tags beside the reason.
pub const TAGS_FIELD: &str = "tags";

/// How the per-page object appears in the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaForm {
    /// Once under `$defs`, each page id a `{"$ref": "#/$defs/page"}`: OpenAI strict
    /// `json_schema`, Gemini `responseJsonSchema`, llama.cpp, vLLM, Ollama.
    Defs,
    /// Repeated under every page id: for forms without `$ref` support.
    Expanded,
}

/// The schema of one page's answer: one bounded array of tags per category, all required.
///
/// ```json
/// {"type": "object", "additionalProperties": false, "required": ["<category>", ...],
///  "properties": {"<category>": {"type": "array", "maxItems": 2,
///     "items": {"type": "string", "enum": ["<tag>", ...]}}}}
/// ```
pub fn page_schema(taxonomy: &Taxonomy) -> Value {
    let mut categories = Map::new();
    let mut names = Vec::new();
    for c in taxonomy.categories() {
        let tags: Vec<&str> = c.tags.iter().map(|t| t.name.as_str()).collect();
        categories.insert(
            c.name.clone(),
            json!({
                "type": "array",
                "items": {"type": "string", "enum": tags},
                // Always bounded: a grammar-constrained server otherwise repeats enum values
                // until it runs out of tokens (reference §5).
                "maxItems": c.max_per_page.min(c.tags.len()),
            }),
        );
        names.push(c.name.clone());
    }
    json!({
        "type": "object",
        "properties": categories,
        "required": names,
        "additionalProperties": false,
    })
}

/// The JSON Schema of a complete, valid answer for this batch (standard JSON Schema, as OpenAI
/// strict mode wants it: every object closed and every property required).
///
/// `required` lists the ids in batch order and each page's categories in taxonomy order;
/// providers that need an explicit order (Gemini's `propertyOrdering`) take it from there.
/// `$defs` sorts first when serialised, so the part that is the same for every batch comes
/// before the ids.
pub fn response_schema(batch: &[PageText], taxonomy: &Taxonomy, form: SchemaForm) -> Value {
    response_schema_with(batch, taxonomy, form, false)
}

/// The page object with a `reason` string before the tags (both required; `required` lists
/// the reason first, which Gemini's `propertyOrdering` is taken from). No `maxLength`: the
/// strict subsets of OpenAI and Gemini do not take length limits; the prompt asks for one
/// short sentence and the output budget counts it ([`super::budget::REASON_TOKENS`]).
fn reasoned(page: Value) -> Value {
    json!({
        "type": "object",
        "properties": {REASON_FIELD: {"type": "string"}, TAGS_FIELD: page},
        "required": [REASON_FIELD, TAGS_FIELD],
        "additionalProperties": false,
    })
}

/// [`response_schema`], each page's object led by a reason when `reason` is on.
pub fn response_schema_with(
    batch: &[PageText],
    taxonomy: &Taxonomy,
    form: SchemaForm,
    reason: bool,
) -> Value {
    let page_def = || {
        let p = page_schema(taxonomy);
        if reason { reasoned(p) } else { p }
    };
    let page = match form {
        SchemaForm::Defs => json!({"$ref": format!("#/$defs/{PAGE_DEF}")}),
        SchemaForm::Expanded => page_def(),
    };
    let mut pages = Map::new();
    let mut ids = Vec::new();
    for p in unique_pages(batch) {
        pages.insert(p.id.clone(), page.clone());
        ids.push(p.id.clone());
    }
    let mut schema = json!({
        "type": "object",
        "properties": pages,
        "required": ids,
        "additionalProperties": false,
    });
    if form == SchemaForm::Defs {
        schema["$defs"] = json!({ PAGE_DEF: page_def() });
    }
    schema
}

/// The schema with every `$ref` to a `$defs` entry replaced by that entry, and `$defs`
/// removed: what [`SchemaForm::Expanded`] is. For tests and for converting a schema to a
/// dialect without `$ref`. A reference it cannot resolve is left as it is.
pub fn inline_refs(schema: &Value) -> Value {
    let defs = schema.get("$defs").cloned().unwrap_or(Value::Null);
    fn walk(v: &Value, defs: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let target = match m.get("$ref") {
                    Some(Value::String(r)) => r.strip_prefix("#/$defs/").and_then(|n| defs.get(n)),
                    _ => None,
                };
                if let Some(target) = target {
                    return walk(target, defs);
                }
                m.iter()
                    .filter(|(k, _)| k.as_str() != "$defs")
                    .map(|(k, v)| (k.clone(), walk(v, defs)))
                    .collect::<Map<_, _>>()
                    .into()
            }
            Value::Array(items) => items.iter().map(|i| walk(i, defs)).collect(),
            other => other.clone(),
        }
    }
    walk(schema, &defs)
}

/// OpenAI strict mode accepts at most this many enum values in one schema (reference §2.1).
pub const OPENAI_MAX_ENUM_VALUES: usize = 1000;

/// The most pages one request may carry so that its schema stays within
/// [`OPENAI_MAX_ENUM_VALUES`] in the expanded form, where every page repeats every tag (the
/// `$defs` form states them once, but the expanded form is still used). (Gemini also refuses
/// schemas that are too complex, with a 400, without a documented number.) At least 1.
pub fn max_pages_per_request(taxonomy: &Taxonomy) -> usize {
    (OPENAI_MAX_ENUM_VALUES / taxonomy.tag_names().count().max(1)).max(1)
}

/// The batch without repeated ids (the first occurrence wins).
pub(crate) fn unique_pages(batch: &[PageText]) -> impl Iterator<Item = &PageText> {
    let mut seen = HashSet::new();
    batch.iter().filter(move |p| seen.insert(p.id.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::prompt::tests::{page, taxonomy};
    use crate::taxonomy::{Category, Tag};

    fn check_page(p: &Value) {
        assert_eq!(p["type"], "object");
        assert_eq!(p["additionalProperties"], false);
        assert_eq!(p["required"], json!(["type", "tool"]));
        assert_eq!(p["properties"]["type"]["maxItems"], 1);
        assert_eq!(
            p["properties"]["type"]["items"]["enum"],
            json!(["how-to", "reference", "decision"])
        );
        assert_eq!(p["properties"]["tool"]["maxItems"], 2);
        assert_eq!(
            p["properties"]["tool"]["items"]["enum"],
            json!(["jira", "git", "docker"])
        );
        assert_eq!(p["properties"]["tool"]["items"]["type"], "string");
    }

    #[test]
    fn expanded_form_requires_every_page_and_bounds_every_array() {
        let batch = [page("101", "A", "a"), page("202", "B", "b")];
        let schema = response_schema(&batch, &taxonomy(), SchemaForm::Expanded);
        assert_eq!(schema["type"], "object");
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(schema["required"], json!(["101", "202"]));
        assert_eq!(schema["properties"].as_object().unwrap().len(), 2);
        assert!(schema.get("$defs").is_none());
        assert!(!schema.to_string().contains("$ref"));
        for id in ["101", "202"] {
            check_page(&schema["properties"][id]);
        }
    }

    #[test]
    fn defs_form_states_the_page_once_and_refers_to_it_per_id() {
        let batch = [page("101", "A", "a"), page("202", "B", "b")];
        let schema = response_schema(&batch, &taxonomy(), SchemaForm::Defs);
        assert_eq!(
            schema["type"], "object",
            "the root is an object, not a $ref"
        );
        assert!(schema.get("$ref").is_none());
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(schema["required"], json!(["101", "202"]));
        for id in ["101", "202"] {
            assert_eq!(schema["properties"][id], json!({"$ref": "#/$defs/page"}));
        }
        check_page(&schema["$defs"]["page"]);
        // The tags appear once, whatever the number of pages.
        assert_eq!(schema.to_string().matches("\"docker\"").count(), 1);
        // The static part is serialised before the ids.
        let text = schema.to_string();
        assert!(
            text.find("$defs").unwrap() < text.find("101").unwrap(),
            "{text}"
        );
        // Resolving the references gives exactly the expanded form.
        assert_eq!(
            inline_refs(&schema),
            response_schema(&batch, &taxonomy(), SchemaForm::Expanded)
        );
    }

    #[test]
    fn defs_form_stays_small_as_the_batch_grows() {
        let tax = Taxonomy::embedded();
        let batch: Vec<PageText> = (0..5).map(|i| page(&format!("10{i}"), "", "")).collect();
        let defs = response_schema(&batch, &tax, SchemaForm::Defs).to_string();
        let expanded = response_schema(&batch, &tax, SchemaForm::Expanded).to_string();
        let one = response_schema(&batch[..1], &tax, SchemaForm::Defs).to_string();
        assert!(
            defs.len() * 3 < expanded.len(),
            "{} vs {}",
            defs.len(),
            expanded.len()
        );
        assert!(
            defs.len() < one.len() + 4 * 40,
            "{} vs {}",
            defs.len(),
            one.len()
        );
    }

    #[test]
    fn a_repeated_page_is_listed_once_and_max_items_is_capped_at_the_tag_count() {
        let tag = |n: &str| Tag {
            name: n.into(),
            description: String::new(),
            keywords: vec![],
        };
        let cats = vec![Category {
            name: "c".into(),
            description: String::new(),
            max_per_page: 5,
            tags: vec![tag("a")],
        }];
        let tax = Taxonomy::new(cats, 5, "t").unwrap();
        for form in [SchemaForm::Defs, SchemaForm::Expanded] {
            let schema = response_schema(&[page("1", "", ""), page("1", "", "")], &tax, form);
            assert_eq!(schema["required"], json!(["1"]));
            let page = inline_refs(&schema)["properties"]["1"].clone();
            assert_eq!(page["properties"]["c"]["maxItems"], 1);
        }
    }
}
