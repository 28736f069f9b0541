//! Content-derived keys: what a classification depends on, and what "the page changed" means.
//!
//! Every digest is SHA-256 over length-prefixed fields (an 8-byte little-endian length before
//! each field), so that moving bytes from one field to the next can never produce the same
//! input: `("ab", "c")` and `("a", "bc")` hash differently. Each kind of digest starts with its
//! own domain tag, so a content hash can never equal a cache key either.

use std::fmt;

use sha2::{Digest, Sha256};

macro_rules! digest_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub(crate) [u8; 32]);

        impl $name {
            /// The 32 raw bytes (stored as a BLOB).
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
            /// Rebuilds a digest from its stored bytes.
            pub fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }

        /// Lowercase hex, as `sha256sum` prints it.
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
        }
    };
}

digest_type!(
    /// Identifies one classification: the page's title and extracted text under one
    /// [`Setup`]. Equal keys mean the model would be asked the very same question.
    CacheKey
);
digest_type!(
    /// The page as listed (title and raw storage-format body). Needs no text extraction, so
    /// an unchanged page can be recognised straight from the listing.
    ContentHash
);
digest_type!(
    /// A [`Setup`] in 32 bytes: recorded with each finished page so that changing the
    /// taxonomy, prompt or model makes every page worth looking at again.
    SetupHash
);

/// Everything besides the page that decides which labels the model picks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Setup {
    /// [`crate::taxonomy::Taxonomy::fingerprint`].
    pub taxonomy_fingerprint: String,
    /// Bump whenever the prompt's wording or the answer format changes.
    pub prompt_version: String,
    /// The model that is asked first, as configured, e.g. `gemini/gemini-2.5-flash`. A
    /// fallback answer is stored under this same key (the entry records who really answered),
    /// so that the next run, asking the same primary, finds it.
    pub model: String,
}

impl Setup {
    pub fn new(
        taxonomy_fingerprint: impl Into<String>,
        prompt_version: impl Into<String>,
        model: impl Into<String>,
    ) -> Self {
        Self {
            taxonomy_fingerprint: taxonomy_fingerprint.into(),
            prompt_version: prompt_version.into(),
            model: model.into(),
        }
    }

    pub fn hash(&self) -> SetupHash {
        let mut h = Hasher::new("tag-space/setup/v1");
        self.feed(&mut h);
        SetupHash(h.finish())
    }

    fn feed(&self, h: &mut Hasher) {
        h.field(self.taxonomy_fingerprint.as_bytes());
        h.field(self.prompt_version.as_bytes());
        h.field(self.model.as_bytes());
    }
}

impl CacheKey {
    /// The key of a page's classification. `text` is what the model is sent (after
    /// extraction and truncation), so changing `max_page_chars` changes keys of long pages
    /// only. The title is part of it because the model sees the title too.
    pub fn new(setup: &Setup, title: &str, text: &str) -> Self {
        let mut h = Hasher::new("tag-space/classification/v1");
        setup.feed(&mut h);
        h.field(title.as_bytes());
        h.field(text.as_bytes());
        CacheKey(h.finish())
    }
}

impl ContentHash {
    /// Over the page as the listing returns it, so that no extraction is needed to decide
    /// that a page is unchanged.
    pub fn of_page(title: &str, body: &str) -> Self {
        let mut h = Hasher::new("tag-space/content/v1");
        h.field(title.as_bytes());
        h.field(body.as_bytes());
        ContentHash(h.finish())
    }
}

struct Hasher(Sha256);

impl Hasher {
    fn new(domain: &str) -> Self {
        let mut h = Hasher(Sha256::new());
        h.field(domain.as_bytes());
        h
    }
    fn field(&mut self, bytes: &[u8]) {
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }
    fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> Setup {
        Setup::new("tax-1", "p1", "gemini/gemini-2.5-flash")
    }

    #[test]
    fn same_inputs_give_the_same_key() {
        assert_eq!(
            CacheKey::new(&setup(), "Title", "text"),
            CacheKey::new(&setup(), "Title", "text")
        );
    }

    #[test]
    fn every_input_changes_the_key() {
        let base = CacheKey::new(&setup(), "Title", "text");
        let variants = [
            CacheKey::new(
                &Setup::new("tax-2", "p1", "gemini/gemini-2.5-flash"),
                "Title",
                "text",
            ),
            CacheKey::new(
                &Setup::new("tax-1", "p2", "gemini/gemini-2.5-flash"),
                "Title",
                "text",
            ),
            CacheKey::new(
                &Setup::new("tax-1", "p1", "gemini/gemini-2.5-pro"),
                "Title",
                "text",
            ),
            CacheKey::new(&setup(), "Title2", "text"),
            CacheKey::new(&setup(), "Title", "text2"),
        ];
        for (i, v) in variants.iter().enumerate() {
            assert_ne!(&base, v, "variant {i} kept the key");
        }
        let mut all: Vec<_> = variants.to_vec();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), variants.len(), "two variants collided");
    }

    #[test]
    fn moving_bytes_between_fields_changes_the_key() {
        assert_ne!(
            CacheKey::new(&setup(), "ab", "c"),
            CacheKey::new(&setup(), "a", "bc")
        );
        assert_ne!(
            CacheKey::new(&Setup::new("t", "p1", "m"), "x", "y"),
            CacheKey::new(&Setup::new("tp", "1", "m"), "x", "y")
        );
        assert_ne!(
            ContentHash::of_page("ab", "c"),
            ContentHash::of_page("a", "bc")
        );
    }

    #[test]
    fn content_hash_and_key_live_in_different_domains() {
        // Same field bytes, different purpose: never the same digest.
        let k = CacheKey::new(&Setup::new("", "", ""), "t", "b");
        let c = ContentHash::of_page("t", "b");
        assert_ne!(k.as_bytes(), c.as_bytes());
    }

    #[test]
    fn setup_hash_follows_each_field() {
        let a = setup().hash();
        assert_eq!(a, setup().hash());
        assert_ne!(
            a,
            Setup::new("tax-2", "p1", "gemini/gemini-2.5-flash").hash()
        );
        assert_ne!(
            a,
            Setup::new("tax-1", "p2", "gemini/gemini-2.5-flash").hash()
        );
        assert_ne!(a, Setup::new("tax-1", "p1", "openai/gpt-4.1-mini").hash());
    }

    #[test]
    fn display_is_64_hex_digits() {
        let s = ContentHash::of_page("", "").to_string();
        assert_eq!(s.len(), 64);
        assert!(
            s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
    }
}
