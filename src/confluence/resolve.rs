//! Which space a typed key names: the space with exactly that key, else the one space whose
//! key equals it ignoring case (`--space eng` on a site whose space is `ENG`).
//!
//! Confluence keys are case-sensitive, and a site may hold keys that differ only in case
//! (`eng` and `ENG`; personal spaces such as `~user` are keys too), so a key in another case
//! is taken only when exactly one key matches it; several are an error that lists them, and
//! none gives the closest keys as suggestions. [`match_key`] is the rule, pure;
//! [`super::ConfluenceClient::resolve_space`] applies it to a site, and every command that
//! takes a space calls that before using the key, so that locks, the state file and the
//! reports all carry the key as Confluence spells it.

/// At most this many keys of a site are read to match a key ignoring case or to suggest one:
/// enough for any real site, bounded for a pathological one.
pub const MAX_LISTED_KEYS: usize = 10_000;

/// At most this many suggestions in a "not found" message.
pub const MAX_SUGGESTIONS: usize = 5;

/// A space found for a typed key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedSpace {
    /// The key as Confluence spells it; use this one from here on.
    pub key: String,
    /// The Cloud space id (the v2 page listing needs it); `None` on Data Center, which
    /// addresses spaces by key.
    pub id: Option<String>,
    /// The key as it was typed.
    pub given: String,
}

impl ResolvedSpace {
    /// The key was typed in another case than Confluence's.
    pub fn case_corrected(&self) -> bool {
        self.key != self.given
    }

    /// The one line to show when the typed key was not the exact one; `None` when it was.
    pub fn notice(&self) -> Option<String> {
        self.case_corrected().then(|| {
            format!(
                "no space has the key '{}'; using {}, the only key that matches it ignoring case (--space {} skips this lookup)",
                self.given, self.key, self.key
            )
        })
    }
}

/// How a typed key compares with a site's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMatch<'a> {
    /// A key is exactly the typed one.
    Exact(&'a str),
    /// No key is exactly the typed one, but this one, and only this one, equals it ignoring
    /// case.
    Folded(&'a str),
    /// Several keys equal the typed one ignoring case (none exactly), sorted.
    Ambiguous(Vec<&'a str>),
    /// No key equals it even ignoring case: the closest ones (edit distance ignoring case,
    /// closest first, at most [`MAX_SUGGESTIONS`]).
    Missing(Vec<&'a str>),
}

/// Matches `given` against `keys` (see [`KeyMatch`]).
pub fn match_key<'a>(given: &str, keys: impl IntoIterator<Item = &'a str>) -> KeyMatch<'a> {
    let wanted = fold(given);
    let mut folded = Vec::new();
    let mut nearest: Vec<(usize, &'a str)> = Vec::new();
    for key in keys {
        if key == given {
            return KeyMatch::Exact(key);
        }
        let k = fold(key);
        if k == wanted {
            folded.push(key);
        } else {
            nearest.push((strsim::levenshtein(&wanted, &k), key));
        }
    }
    match folded.len() {
        0 => {
            nearest.sort_unstable();
            nearest.dedup();
            KeyMatch::Missing(
                nearest
                    .into_iter()
                    .take(MAX_SUGGESTIONS)
                    .map(|(_, k)| k)
                    .collect(),
            )
        }
        1 => KeyMatch::Folded(folded[0]),
        _ => {
            folded.sort_unstable();
            folded.dedup();
            KeyMatch::Ambiguous(folded)
        }
    }
}

/// Unicode lowercase: keys are ASCII on most sites, but a personal space's key carries the
/// user name.
fn fold(key: &str) -> String {
    key.to_lowercase()
}

/// What the site's key listing showed when a key was not found, for the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpaceSearch {
    /// Keys read (at most [`MAX_LISTED_KEYS`]).
    pub seen: usize,
    /// The listing went on past [`MAX_LISTED_KEYS`] and was not read to its end.
    pub truncated: bool,
    /// The closest keys, closest first.
    pub suggestions: Vec<String>,
}

impl SpaceSearch {
    /// The end of the "space ... was not found on ..." line.
    pub(crate) fn advice(search: &Option<SpaceSearch>) -> String {
        let Some(s) = search else {
            return ": check --space (keys are case-sensitive) and that the account can view it"
                .to_string();
        };
        if s.seen == 0 {
            return ", even ignoring case: the account can see no space at all; check the credentials and the account's permissions".to_string();
        }
        let among = if s.truncated {
            format!("the first {} keys the account can see", s.seen)
        } else {
            format!("the {} keys the account can see", s.seen)
        };
        format!(
            ", even ignoring case (closest of {among}: {}): check --space and that the account can view it",
            s.suggestions.join(", ")
        )
    }
}

/// The spaces `--all-spaces` labels ([`super::ConfluenceClient::visible_spaces`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VisibleSpaces {
    /// Sorted by key; each as the site spells it (`given` is the key too).
    pub spaces: Vec<ResolvedSpace>,
    /// Listed but not labelled: personal, archived, system or sample spaces.
    pub left_out: usize,
    /// The site has more than [`MAX_LISTED_KEYS`] such spaces: only the first were taken.
    pub truncated: bool,
}

/// Whether `--all-spaces` labels a listed space: a team space (Cloud `global`,
/// `collaboration` or `knowledge_base`; Data Center `global`; no type on an old site) that
/// is not archived. Personal spaces (type `personal`, or a key starting with `~`) are a
/// person's own and are left out, as are `system` and sample (`onboarding`,
/// `xflow_sample_space`) spaces.
pub fn space_is_labelled(key: &str, kind: Option<&str>, status: Option<&str>) -> bool {
    let team = matches!(
        kind,
        None | Some("global" | "collaboration" | "knowledge_base")
    );
    team && !key.starts_with('~') && status != Some("archived")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(k: &[&'static str]) -> Vec<&'static str> {
        k.to_vec()
    }

    #[test]
    fn an_exact_key_wins_over_keys_in_another_case() {
        let site = keys(&["ENG", "eng", "OPS"]);
        assert_eq!(match_key("eng", site.clone()), KeyMatch::Exact("eng"));
        assert_eq!(match_key("ENG", site), KeyMatch::Exact("ENG"));
    }

    #[test]
    fn one_key_in_another_case_is_taken() {
        assert_eq!(
            match_key("eng", keys(&["OPS", "ENG", "~eng"])),
            KeyMatch::Folded("ENG")
        );
        assert_eq!(
            match_key("~Jsmith", keys(&["~jsmith", "JS"])),
            KeyMatch::Folded("~jsmith")
        );
        // Non-ASCII letters of a personal space's key fold too.
        assert_eq!(
            match_key("~ÉLODIE", keys(&["~élodie"])),
            KeyMatch::Folded("~élodie")
        );
    }

    #[test]
    fn several_keys_in_other_cases_are_ambiguous_and_listed_sorted() {
        assert_eq!(
            match_key("Eng", keys(&["eng", "OPS", "ENG"])),
            KeyMatch::Ambiguous(vec!["ENG", "eng"])
        );
    }

    #[test]
    fn no_match_suggests_the_five_closest_ignoring_case() {
        let site = keys(&[
            "ENG", "ENGX", "DOCS", "OPS", "HR", "QA", "ENV", "FIN", "LEGAL",
        ]);
        let KeyMatch::Missing(near) = match_key("emg", site) else {
            panic!("not missing")
        };
        // ENG is 1 away (case ignored), ENGX and ENV 2, then the 3-away keys by name.
        assert_eq!(near, ["ENG", "ENGX", "ENV", "FIN", "HR"]);
        assert_eq!(match_key("x", keys(&[])), KeyMatch::Missing(vec![]));
    }

    #[test]
    fn the_advice_says_what_was_searched() {
        assert_eq!(
            SpaceSearch::advice(&None),
            ": check --space (keys are case-sensitive) and that the account can view it"
        );
        let none = SpaceSearch {
            seen: 0,
            truncated: false,
            suggestions: vec![],
        };
        assert!(SpaceSearch::advice(&Some(none)).contains("can see no space at all"));
        let some = SpaceSearch {
            seen: 10_000,
            truncated: true,
            suggestions: vec!["ENG".into(), "ENV".into()],
        };
        assert_eq!(
            SpaceSearch::advice(&Some(some)),
            ", even ignoring case (closest of the first 10000 keys the account can see: ENG, ENV): check --space and that the account can view it"
        );
    }

    #[test]
    fn the_notice_names_the_real_key_only_when_it_differs() {
        let mut s = ResolvedSpace {
            key: "ENG".into(),
            id: Some("1".into()),
            given: "eng".into(),
        };
        let notice = s.notice().unwrap();
        assert!(
            notice.contains("'eng'") && notice.contains("using ENG"),
            "{notice}"
        );
        s.given = "ENG".into();
        assert_eq!(s.notice(), None);
    }

    #[test]
    fn all_spaces_takes_team_spaces_that_are_current() {
        for kind in [
            None,
            Some("global"),
            Some("collaboration"),
            Some("knowledge_base"),
        ] {
            assert!(space_is_labelled("ENG", kind, Some("current")), "{kind:?}");
        }
        assert!(space_is_labelled("ENG", Some("global"), None));
        assert!(!space_is_labelled("ENG", Some("global"), Some("archived")));
        for kind in ["personal", "system", "onboarding", "xflow_sample_space"] {
            assert!(
                !space_is_labelled("ENG", Some(kind), Some("current")),
                "{kind}"
            );
        }
        assert!(!space_is_labelled("~jdoe", None, Some("current")));
        assert!(!space_is_labelled(
            "~5b10ac8d82e05b22cc7d4ef5",
            Some("global"),
            None
        ));
    }
}
