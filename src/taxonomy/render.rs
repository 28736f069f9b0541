//! A [`Draft`] written as a taxonomy file: valid as it is (it loads with [`super::Taxonomy`]),
//! with placeholder descriptions for a person to write and the usage counts as comments.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::draft::{Draft, DraftTag, UNPREFIXED, max_per_page};

/// How many co-occurring tags a tag's comment names.
const OFTEN_WITH: usize = 3;

/// A TOML string literal (quotes and escapes as TOML wants them).
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The taxonomy file for `draft`.
pub fn render(draft: &Draft) -> String {
    render_with(draft, &BTreeMap::new())
}

/// [`render`] with the descriptions `taxonomy init --describe` got (by tag name); a tag
/// without one keeps its placeholder.
pub fn render_with(draft: &Draft, descriptions: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Drafted by `tag-space taxonomy init` from the labels of space {}: {} pages read,\n\
         # tags kept when they (with their aliases) are on at least {} pages.\n\
         # Write each description (it is what the model reads), merge or drop tags, then use the\n\
         # file with --taxonomy. The format is documented in config/taxonomy.toml.\n",
        draft.space, draft.pages_read, draft.min_pages
    );
    let _ = writeln!(out, "max_labels_per_page = {}", draft.max_labels_per_page);
    let all: Vec<&DraftTag> = draft.tags().collect();
    for (category, tags) in &draft.categories {
        let description = if category == UNPREFIXED {
            "Labels without a shared prefix. TODO: describe, or move them into categories."
                .to_string()
        } else {
            format!("Labels starting with {category}-. TODO: describe what this category is for.")
        };
        let _ = writeln!(
            out,
            "\n[[category]]\nname = {}\ndescription = {}\nmax_per_page = {}",
            quoted(category),
            quoted(&description),
            max_per_page(tags.iter())
        );
        for t in tags {
            write_tag(&mut out, t, &all, descriptions.get(&t.name));
        }
    }
    write_left_out(&mut out, draft);
    out
}

fn write_tag(out: &mut String, t: &DraftTag, all: &[&DraftTag], description: Option<&String>) {
    let _ = writeln!(out, "\n# on {} pages{}", t.pages.len(), often_with(t, all));
    if !t.aliases.is_empty() {
        let spellings: Vec<String> = t
            .spellings
            .iter()
            .map(|(l, n)| format!("{l} ({n})"))
            .collect();
        let _ = writeln!(out, "# spellings (pages): {}", spellings.join(", "));
    }
    let description = match description {
        Some(d) => {
            let _ = writeln!(
                out,
                "# description drafted by --describe (the configured model; the demo: a template): check it"
            );
            d.clone()
        }
        None => format!("TODO: when does '{}' apply?", t.name),
    };
    let _ = writeln!(
        out,
        "[[category.tag]]\nname = {}\ndescription = {}",
        quoted(&t.name),
        quoted(&description)
    );
    if !t.aliases.is_empty() {
        let list: Vec<String> = t.aliases.iter().map(|a| quoted(a)).collect();
        let _ = writeln!(out, "aliases = [{}]", list.join(", "));
    }
}

/// `; often with a (5), b (2)`: the tags sharing the most pages with `t`.
fn often_with(t: &DraftTag, all: &[&DraftTag]) -> String {
    let mut shared: Vec<(usize, &str)> = all
        .iter()
        .filter(|o| o.name != t.name)
        .map(|o| (o.pages.intersection(&t.pages).count(), o.name.as_str()))
        .filter(|(n, _)| *n > 0)
        .collect();
    shared.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    if shared.is_empty() {
        return String::new();
    }
    let names: Vec<String> = shared
        .iter()
        .take(OFTEN_WITH)
        .map(|(n, name)| format!("{name} ({n})"))
        .collect();
    format!("; often with {}", names.join(", "))
}

fn write_left_out(out: &mut String, draft: &Draft) {
    if !draft.rejected.is_empty() {
        let _ = writeln!(out, "\n# Left out, they break Confluence's label rules:");
        for (label, why, n) in &draft.rejected {
            let _ = writeln!(out, "#   {label:?} (on {n} pages) {why}");
        }
    }
    if !draft.below.is_empty() {
        let _ = writeln!(
            out,
            "\n# Left out, on fewer than {} pages (lower --min-pages to keep them):",
            draft.min_pages
        );
        for (label, n) in &draft.below {
            let _ = writeln!(out, "#   {label} ({n})");
        }
    }
}
