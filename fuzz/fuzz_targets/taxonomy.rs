//! `Taxonomy::from_toml` on any text: never panics, and a taxonomy that loads holds only
//! valid, unique labels with caps of at least 1.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use tag_space::taxonomy::{Taxonomy, check_label};

fuzz_target!(|src: &str| {
    match Taxonomy::from_toml(src, "fuzz.toml") {
        Ok(t) => {
            assert!(t.max_labels_per_page() >= 1);
            assert!(!t.categories().is_empty());
            let mut seen = HashSet::new();
            for c in t.categories() {
                assert!(c.max_per_page >= 1 && !c.tags.is_empty());
                for tag in &c.tags {
                    assert!(check_label(&tag.name).is_ok(), "{:?}", tag.name);
                    assert!(seen.insert(tag.name.clone()), "{:?} twice", tag.name);
                }
            }
        }
        Err(e) => assert!(e.to_string().contains("fuzz.toml")),
    }
});
