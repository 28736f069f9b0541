//! Storage-format XHTML to plain text, for the model and the `rules` provider.
//!
//! Confluence stores a page body as an XHTML *fragment* (no single root) with `ac:`/`ri:`
//! elements, CDATA sections and HTML named entities such as `&nbsp;` that an XML parser does not
//! know. [`extract`] walks it with `quick-xml` (a real tokenizer, no regex stripping) and keeps
//! what a reader sees:
//!
//! - Text of headings, paragraphs, list items, table cells, and the bodies of macros
//!   (`ac:rich-text-body`: info/note/panel/expand, and `ac:plain-text-body`: the CDATA of code
//!   and no-format blocks). Code is kept on purpose: commands and config (`kubectl`,
//!   `terraform apply`, `SELECT`) are strong signals of what a page is about. Line breaks inside
//!   code are kept; other whitespace is collapsed.
//! - A link without its own text shows the title of the page it points to, as Confluence does.
//! - Dropped: markup, attributes, `ac:parameter` values (macro settings such as a language or a
//!   colour), placeholders, task ids/statuses, `<script>`/`<style>`, comments.
//! - Entities are decoded: the XML five, numeric references and every HTML5 named entity.
//!   Unknown entities and stray `&` stay as written.
//!
//! Block elements end a line; cells of a table row are joined with ` | ` so their words do not
//! glue together; runs of whitespace (and control characters) become one space or one line
//! break. The result is at most `max_chars` characters, cut at a word boundary when one is near,
//! and parsing stops as soon as the budget is full, so a 10 MB page costs no more than its
//! first `max_chars` characters.
//!
//! Malformed input never panics: mismatched or unclosed tags are tolerated, and at a syntax error
//! (an unclosed tag, attribute or CDATA section) the walker skips the bad markup and resumes, so
//! the text around it survives.

use quick_xml::Reader;
use quick_xml::events::{BytesRef, BytesStart, Event};

#[cfg(test)]
mod tests;

/// The plain text of a storage-format body, at most `max_chars` characters. Empty when the
/// body holds no text (only markup), so the caller can skip the page.
pub fn extract(storage: &str, max_chars: usize) -> String {
    let mut walker = Walker::new(max_chars);
    let mut rest = storage;
    while !rest.is_empty() && !walker.out.full {
        let Err(at) = walker.walk(rest) else { break };
        // A syntax error at byte `at`: resume after the bad markup, keeping what we can.
        let Some(bad) = rest.get(at..) else { break };
        if let Some(body) = bad.strip_prefix("<![CDATA[") {
            walker.out.push_str(body, walker.code_depth > 0);
            break;
        }
        if bad.starts_with("<!--") {
            break; // an unclosed comment: the rest is commented out
        }
        match bad.find('>') {
            Some(i) => rest = &bad[i + 1..],
            None => {
                walker.out.push_str(bad, false); // "a < b" with no tag after it
                break;
            }
        }
    }
    walker.out.finish()
}

/// How an element affects the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// No break: `<strong>`, `<a>`, `ac:structured-macro`, `ri:*`.
    Inline,
    /// Starts and ends a line: `<p>`, `<h1>`, `<li>`, `ac:rich-text-body`, unknown elements.
    Block,
    /// A line break with no content: `<br>`, `<hr>`, `<img>`.
    Void,
    Row,
    Cell,
    /// Content dropped: `ac:parameter`, `<script>`.
    Skip,
    /// `ac:plain-text-body`: a block whose line breaks are kept.
    Code,
    /// `ac:link`: shows its body, or the title of its target when it has none.
    Link,
    /// `ac:link-body` / `ac:plain-text-link-body`.
    LinkBody,
}

fn classify(name: &str) -> Kind {
    const INLINE: &[&str] = &[
        "a",
        "abbr",
        "b",
        "big",
        "cite",
        "code",
        "del",
        "em",
        "font",
        "i",
        "ins",
        "kbd",
        "label",
        "mark",
        "q",
        "s",
        "samp",
        "small",
        "span",
        "strike",
        "strong",
        "sub",
        "sup",
        "time",
        "tt",
        "u",
        "var",
        "ac:structured-macro",
        "ac:macro",
        "ac:inline-comment-marker",
        "ac:emoticon",
        "ac:image",
    ];
    const VOID: &[&str] = &[
        "br", "hr", "img", "col", "input", "meta", "link", "wbr", "area", "base", "source",
        "embed", "param", "track",
    ];
    const SKIP: &[&str] = &[
        "ac:parameter",
        "ac:default-parameter",
        "ac:placeholder",
        "ac:task-id",
        "ac:task-uuid",
        "ac:task-status",
        "ac:adf-fallback",
        "ac:adf-attribute",
        "script",
        "style",
        "head",
        "template",
    ];
    let is = |list: &[&str]| list.iter().any(|n| n.eq_ignore_ascii_case(name));
    if name.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("ri:")) || is(INLINE) {
        Kind::Inline
    } else if is(VOID) {
        Kind::Void
    } else if is(SKIP) {
        Kind::Skip
    } else if name.eq_ignore_ascii_case("tr") {
        Kind::Row
    } else if name.eq_ignore_ascii_case("td") || name.eq_ignore_ascii_case("th") {
        Kind::Cell
    } else if name.eq_ignore_ascii_case("ac:plain-text-body") {
        Kind::Code
    } else if name.eq_ignore_ascii_case("ac:link") {
        Kind::Link
    } else if name.eq_ignore_ascii_case("ac:link-body")
        || name.eq_ignore_ascii_case("ac:plain-text-link-body")
    {
        Kind::LinkBody
    } else {
        Kind::Block
    }
}

/// How far back an end tag looks for its start tag; bounds the work on pathological nesting.
const MATCH_DEPTH: usize = 64;

/// The state of one extraction; survives restarts after a syntax error.
struct Walker {
    out: Out,
    /// Open elements: (start of the name in `names`, kind).
    stack: Vec<(usize, Kind)>,
    names: String,
    skip_depth: usize,
    code_depth: usize,
    /// Open `ac:link`s: (has a body of its own, title of the target).
    links: Vec<(bool, Option<String>)>,
}

impl Walker {
    fn new(max_chars: usize) -> Self {
        Self {
            out: Out::new(max_chars),
            stack: Vec::new(),
            names: String::new(),
            skip_depth: 0,
            code_depth: 0,
            links: Vec::new(),
        }
    }

    /// Walks `src` to its end (`Ok`) or to a syntax error at the returned byte offset.
    fn walk(&mut self, src: &str) -> Result<(), usize> {
        let mut reader = Reader::from_str(src);
        let config = reader.config_mut();
        config.check_end_names = false;
        config.allow_unmatched_ends = true;
        config.allow_dangling_amp = true;
        config.check_comments = false;
        while !self.out.full {
            match reader.read_event() {
                Ok(Event::Eof) => return Ok(()),
                Ok(Event::Start(e)) => self.open(&e, false),
                Ok(Event::Empty(e)) => self.open(&e, true),
                Ok(Event::End(e)) => self.close(e.name().as_ref()),
                Ok(Event::Text(t)) => self.text(&t),
                Ok(Event::CData(t)) => self.text(&t),
                Ok(Event::GeneralRef(r)) => self.reference(&r),
                Ok(Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_)) => {}
                Err(_) => {
                    return Err(usize::try_from(reader.error_position()).unwrap_or(usize::MAX));
                }
            }
        }
        Ok(())
    }

    fn text(&mut self, s: &str) {
        if self.skip_depth == 0 {
            self.out.push_str(s, self.code_depth > 0);
        }
    }

    fn reference(&mut self, r: &BytesRef<'_>) {
        if self.skip_depth > 0 {
            return;
        }
        match r.resolve_char_ref() {
            Ok(Some(c)) => self.out.push_str(c.encode_utf8(&mut [0; 4]), false),
            Ok(None) => {
                let raw = format!("&{};", &**r);
                self.out
                    .push_str(&html_escape::decode_html_entities(&raw), false);
            }
            Err(_) => {} // "&#xD800;", "&#;": not a character
        }
    }

    fn open(&mut self, e: &BytesStart<'_>, empty: bool) {
        let name = e.name();
        let name = name.as_ref();
        if name.is_empty() {
            // "a < b > c" is text, not a tag
            self.text("<");
            self.text(e);
            self.text(">");
            return;
        }
        let kind = classify(name);
        if self.skip_depth == 0 {
            self.on_open(kind, e, empty);
        }
        if empty || kind == Kind::Void {
            if self.skip_depth == 0 {
                self.on_close(kind);
            }
        } else {
            self.stack.push((self.names.len(), kind));
            self.names.push_str(name);
            match kind {
                Kind::Skip => self.skip_depth += 1,
                Kind::Code => self.code_depth += 1,
                Kind::Link => self.links.push((false, None)),
                _ => {}
            }
        }
    }

    fn on_open(&mut self, kind: Kind, e: &BytesStart<'_>, empty: bool) {
        match kind {
            Kind::Block | Kind::Code | Kind::Void => self.out.line(),
            Kind::Row => self.out.row(true),
            Kind::Cell => self.out.cell(),
            Kind::LinkBody => {
                if let Some(link) = self.links.last_mut() {
                    link.0 = true;
                }
            }
            Kind::Inline => {
                let name = e.name();
                let name = name.as_ref();
                if name.eq_ignore_ascii_case("ri:page")
                    || name.eq_ignore_ascii_case("ri:attachment")
                {
                    let title =
                        attribute(e, "ri:content-title").or_else(|| attribute(e, "ri:filename"));
                    if let (Some(link), Some(title)) = (self.links.last_mut(), title) {
                        link.1.get_or_insert(title);
                    }
                } else if empty && name.eq_ignore_ascii_case("time") {
                    if let Some(date) = attribute(e, "datetime") {
                        self.out.push_str(&date, false);
                    }
                }
            }
            Kind::Skip | Kind::Link => {}
        }
    }

    fn on_close(&mut self, kind: Kind) {
        match kind {
            Kind::Block | Kind::Code | Kind::Void => self.out.line(),
            Kind::Row => self.out.row(false),
            _ => {}
        }
    }

    /// The name of open element `i`: from its start to the next element's start.
    fn frame_name(&self, i: usize) -> &str {
        let end = self.stack.get(i + 1).map_or(self.names.len(), |f| f.0);
        &self.names[self.stack[i].0..end]
    }

    fn close(&mut self, name: &str) {
        let found = (0..self.stack.len())
            .rev()
            .take(MATCH_DEPTH)
            .find(|&i| self.frame_name(i).eq_ignore_ascii_case(name));
        let Some(i) = found else {
            // a stray end tag still ends its block, so words do not glue together
            if self.skip_depth == 0 {
                self.on_close(classify(name));
            }
            return;
        };
        while self.stack.len() > i {
            let (start, kind) = self.stack.pop().expect("stack is longer than i");
            self.names.truncate(start);
            match kind {
                Kind::Skip => self.skip_depth -= 1,
                Kind::Code => self.code_depth -= 1,
                Kind::Link => {
                    if let Some((false, Some(title))) = self.links.pop() {
                        self.text(&title);
                    }
                }
                _ => {}
            }
            if self.skip_depth == 0 {
                self.on_close(kind);
            }
        }
    }
}

/// An attribute's value with entities decoded, if the element has it and it parses.
fn attribute(e: &BytesStart<'_>, key: &str) -> Option<String> {
    let attr = e.try_get_attribute(key).ok()??;
    Some(html_escape::decode_html_entities(&attr.value).into_owned())
}

/// What separates the next character from the previous one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Gap {
    None,
    Space,
    Line,
}

/// The output text under construction, with pending separators and the character budget.
struct Out {
    buf: String,
    chars: usize,
    max: usize,
    gap: Gap,
    /// The next text starts a new cell of a row that already has text: write " | ".
    cell_gap: bool,
    row_has_text: bool,
    rows_open: usize,
    full: bool,
}

impl Out {
    fn new(max: usize) -> Self {
        Self {
            buf: String::new(),
            chars: 0,
            max,
            gap: Gap::None,
            cell_gap: false,
            row_has_text: false,
            rows_open: 0,
            full: max == 0,
        }
    }

    fn line(&mut self) {
        self.gap = self.gap.max(Gap::Line);
    }

    /// A row starts (`open`) or ends: either way a new line, and no cell separator yet.
    fn row(&mut self, open: bool) {
        self.line();
        if open {
            self.rows_open += 1;
        } else {
            self.rows_open = self.rows_open.saturating_sub(1);
        }
        self.cell_gap = false;
        self.row_has_text = false;
    }

    fn cell(&mut self) {
        if self.row_has_text {
            self.cell_gap = true;
        }
    }

    fn push_str(&mut self, s: &str, keep_lines: bool) {
        for c in s.chars() {
            if self.full {
                return;
            }
            if c.is_whitespace() || c.is_control() {
                let gap = if keep_lines && c == '\n' {
                    Gap::Line
                } else {
                    Gap::Space
                };
                self.gap = self.gap.max(gap);
            } else {
                self.push_char(c);
            }
        }
    }

    fn push_char(&mut self, c: char) {
        let sep = match (self.buf.is_empty(), self.cell_gap, self.gap) {
            (true, _, _) => "",
            (false, true, _) => " | ",
            (false, false, Gap::None) => "",
            (false, false, Gap::Space) => " ",
            (false, false, Gap::Line) => "\n",
        };
        let need = sep.len() + 1; // separators are ASCII
        if self.chars + need > self.max {
            self.stop(sep.is_empty());
            return;
        }
        self.buf.push_str(sep);
        self.buf.push(c);
        self.chars += need;
        self.gap = Gap::None;
        self.cell_gap = false;
        self.row_has_text = self.rows_open > 0;
    }

    /// The budget is full. If that cuts a word, back off to the last space, unless that would
    /// throw away more than half of the text (a long run with no spaces, e.g. Japanese).
    fn stop(&mut self, mid_word: bool) {
        self.full = true;
        if mid_word
            && let Some(i) = self.buf.rfind(char::is_whitespace)
            && i >= self.buf.len() / 2
        {
            self.buf.truncate(i);
        }
        loop {
            let trimmed = self.buf.trim_end().trim_end_matches(" |").len();
            if trimmed == self.buf.len() {
                break;
            }
            self.buf.truncate(trimmed);
        }
    }

    fn finish(self) -> String {
        self.buf
    }
}
