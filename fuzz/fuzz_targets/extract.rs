//! `text::extract` on arbitrary storage-format input and budget: never panics, and the output
//! is bounded, clean text (the invariants of `tests/integration/props.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tag_space::text::extract;

fuzz_target!(|input: (u16, &str)| {
    let (budget, storage) = input;
    let max = usize::from(budget % 4096);
    let out = extract(storage, max);
    assert!(
        out.chars().count() <= max,
        "{} chars > {max}",
        out.chars().count()
    );
    assert!(
        out.chars().all(|c| c == '\n' || !c.is_control()),
        "control character: {out:?}"
    );
    assert!(
        out.chars()
            .all(|c| !c.is_whitespace() || c == ' ' || c == '\n'),
        "{out:?}"
    );
    assert_eq!(out, out.trim(), "leading or trailing whitespace");
    let mut prev_ws = false;
    for c in out.chars() {
        assert!(
            !(prev_ws && c.is_whitespace()),
            "two whitespace characters in a row: {out:?}"
        );
        prev_ws = c.is_whitespace();
    }
    // A smaller budget cuts the same text: the output is a prefix of the unbounded one.
    let full = extract(storage, usize::MAX);
    assert!(
        full.starts_with(&out),
        "{out:?} is not a prefix of {full:?}"
    );
});
