use super::*;
use crate::taxonomy::Taxonomy;
use crate::taxonomy::render::render;

fn page(id: &str, labels: &[&str]) -> PageLabels {
    PageLabels {
        id: id.into(),
        title: format!("Page {id}"),
        labels: labels.iter().map(|s| s.to_string()).collect(),
    }
}

fn space() -> Vec<PageLabels> {
    vec![
        page("1", &["tool-kubernetes", "runbook", "how-to"]),
        page("2", &["kubernetes", "runbooks", "tool-jira"]),
        page("3", &["tool-kubernetes", "howto", "tool-jira"]),
        page("4", &["k8s", "how_to", "Bad Label"]),
        page("5", &["tool-jira", "release-notes", "fun"]),
        page("6", &["release-note", "tool-kubernetes", "c#"]),
    ]
}

#[test]
fn stems_ignore_case_separators_and_plurals() {
    assert_eq!(stem("How_To"), "howto");
    assert_eq!(stem("how-to"), stem("howto"));
    assert_eq!(stem("runbooks"), "runbook");
    assert_eq!(stem("policies"), "policy");
    assert_eq!(stem("access"), "access", "a double s is no plural");
    assert_eq!(stem("ops"), "ops", "too short to be a plural");
    assert_eq!(stem("release-notes"), stem("release-note"));
}

#[test]
fn near_duplicates_become_aliases_of_the_most_used_spelling() {
    let d = draft("ENG", &space(), 2);
    let tag = |n: &str| {
        d.tags()
            .find(|t| t.name == n)
            .unwrap_or_else(|| panic!("{n}: {d:?}"))
    };
    assert_eq!(tag("tool-kubernetes").aliases, ["kubernetes"]);
    assert_eq!(tag("tool-kubernetes").pages.len(), 4);
    // how-to / howto / how_to: one page each; the tie goes to the shortest, then by name.
    assert_eq!(tag("howto").aliases, ["how-to", "how_to"]);
    assert_eq!(tag("runbook").aliases, ["runbooks"]);
    assert_eq!(
        tag("release-note").aliases,
        ["release-notes"],
        "a tie: the shortest"
    );
    // `k8s` shares no stem: a person has to say it is kubernetes.
    assert!(d.below.contains(&("k8s".to_string(), 1)));
}

#[test]
fn bad_labels_are_listed_and_left_out_and_thresholds_apply() {
    let d = draft("ENG", &space(), 2);
    let rejected: Vec<&str> = d.rejected.iter().map(|(l, _, _)| l.as_str()).collect();
    assert_eq!(rejected, ["Bad Label", "c#"]);
    assert!(d.rejected[0].1.contains("whitespace"));
    let names: Vec<&str> = d.tags().map(|t| t.name.as_str()).collect();
    assert!(
        !names.contains(&"fun") && !names.contains(&"c#"),
        "{names:?}"
    );
    assert!(d.below.contains(&("fun".to_string(), 1)));
    let strict = draft("ENG", &space(), 4);
    let names: Vec<&str> = strict.tags().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["tool-kubernetes"], "only it is on 4 pages or more");
}

#[test]
fn a_shared_prefix_makes_a_category() {
    let d = draft("ENG", &space(), 2);
    let cats: Vec<&str> = d.categories.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(cats, ["tool", UNPREFIXED]);
    let tools: Vec<&str> = d.categories[0].1.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(tools, ["tool-kubernetes", "tool-jira"], "most used first");
    // One "release-" label is no category.
    assert!(d.categories[1].1.iter().any(|t| t.name == "release-note"));
}

#[test]
fn the_file_loads_as_a_taxonomy_with_aliases_and_counts_as_comments() {
    let d = draft("ENG", &space(), 2);
    let text = render(&d);
    let t = Taxonomy::from_toml(&text, "drafted").unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(t.canonical("kubernetes"), Some("tool-kubernetes"));
    assert_eq!(t.canonical("how_to"), Some("howto"));
    assert_eq!(t.tag_names().count(), d.tags().count());
    assert!(
        text.contains("# on 4 pages; often with howto (2), runbook (2), tool-jira (2)"),
        "{text}"
    );
    assert!(
        text.contains("# spellings (pages): kubernetes (1), tool-kubernetes (3)"),
        "{text}"
    );
    assert!(
        text.contains("\"Bad Label\" (on 1 pages) contains whitespace"),
        "{text}"
    );
    assert!(text.contains("#   fun (1)"), "{text}");
    assert_eq!(t.max_labels_per_page(), 3);
}

#[test]
fn a_label_with_quotes_is_written_as_valid_toml() {
    let pages = [page("1", &["say-\"hi\"\\"]), page("2", &["say-\"hi\"\\"])];
    let text = render(&draft("X", &pages, 1));
    let t = Taxonomy::from_toml(&text, "drafted").unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert!(t.contains("say-\"hi\"\\"));
}
