//! `prompt::user_content` on arbitrary pages: every page sits in exactly one block of its
//! own, and what is inside a block unescapes to the page's own id, title and text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tag_space::llm::PageText;
use tag_space::llm::prompt::user_content;

/// The inverse of the prompt's escaping, in one pass; panics on any other `&`.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let (entity, c) = [
            ("&amp;", '&'),
            ("&lt;", '<'),
            ("&gt;", '>'),
            ("&quot;", '"'),
        ]
        .into_iter()
        .find(|(e, _)| rest.starts_with(e))
        .unwrap_or_else(|| panic!("unescaped & at {rest:?}"));
        out.push(c);
        rest = &rest[entity.len()..];
    }
    out.push_str(rest);
    out
}

/// `s` with `prefix` removed, or a panic that shows both.
fn eat<'a>(s: &'a str, prefix: &str) -> &'a str {
    s.strip_prefix(prefix)
        .unwrap_or_else(|| panic!("expected {prefix:?} at {s:?}"))
}

/// Up to the next `<`, which page data can never contain.
fn data(s: &str) -> (&str, &str) {
    let end = s.find('<').expect("a delimiter follows");
    s.split_at(end)
}

fuzz_target!(|pages: Vec<(String, String, String)>| {
    let batch: Vec<PageText> = pages
        .into_iter()
        .take(8)
        .map(|(id, title, text)| PageText { id, title, text })
        .collect();
    let s = user_content(&batch);
    let mut seen = std::collections::HashSet::new();
    let unique: Vec<&PageText> = batch
        .iter()
        .filter(|p| seen.insert(p.id.as_str()))
        .collect();
    assert_eq!(s.matches("<page id=").count(), unique.len());
    assert_eq!(s.matches("</page>").count(), unique.len());
    // The header ("Pages to label: N. Their ids: ...") runs to the first block; an id may
    // hold a newline, so it can span lines, but it never holds markup.
    let (header, mut rest) = s.split_at(s.find("\n<page id=").unwrap_or(s.len()));
    assert!(
        header.starts_with("Pages to label: ") && header.ends_with(".\n"),
        "{header:?}"
    );
    assert!(!header.contains(['<', '>']), "{header:?}");
    for p in unique {
        rest = eat(rest, "\n<page id=\"");
        let (id, r) = rest.split_once("\">\n<title>").expect("id then title");
        assert!(!id.contains(['"', '<', '>']), "{id:?}");
        assert_eq!(unescape(id), p.id);
        let (title, r) = data(r);
        assert_eq!(unescape(title), p.title.trim());
        let r = eat(r, "</title>\n<text>\n");
        let (text, r) = data(r);
        let text = text.strip_suffix('\n').expect("newline before </text>");
        assert_eq!(unescape(text), p.text.trim());
        rest = eat(r, "</text>\n</page>\n");
    }
    assert!(rest.is_empty(), "text after the last block: {rest:?}");
});
