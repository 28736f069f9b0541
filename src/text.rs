//! Storage-format XHTML to plain text. TEMPORARY placeholder until the parser-based version lands.

/// The plain text of a storage-format body, at most `max_chars` characters.
pub fn extract(storage: &str, max_chars: usize) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in storage.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.chars().take(max_chars).collect()
}
