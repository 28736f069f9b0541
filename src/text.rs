//! Storage-format XHTML to plain text. STUB: to be implemented with a real parser.

/// The plain text of a storage-format body, at most `max_chars` characters.
pub fn extract(_storage: &str, _max_chars: usize) -> String {
    todo!()
}
