use super::*;

const GOOD: &str = r#"
max_labels_per_page = 4

[[category]]
name = "type"
description = "What kind of page"
max_per_page = 1

[[category.tag]]
name = "type-howto"
description = "Step-by-step instructions"
keywords = ["how to", " guide "]

[[category.tag]]
name = "type-runbook"
description = "Operational procedure"

[[category]]
name = "tool"
description = "Tools"
max_per_page = 2

[[category.tag]]
name = "tool-jira"
description = "Jira"
keywords = ["jira"]
"#;

fn err(src: &str) -> String {
    Taxonomy::from_toml(src, "test.toml")
        .expect_err("should be rejected")
        .to_string()
}

#[test]
fn embedded_default_loads_with_30_to_60_tags() {
    let t = Taxonomy::embedded();
    let n = t.tag_names().count();
    assert!((30..=60).contains(&n), "{n} tags");
    let names: Vec<_> = t.categories().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["type", "tool", "topic", "status"]);
    for tag in [
        "type-howto",
        "type-postmortem",
        "tool-jira",
        "tool-kubernetes",
        "topic-security",
        "status-draft",
    ] {
        assert!(t.contains(tag), "{tag}");
    }
    assert!(
        t.categories()
            .iter()
            .all(|c| c.tags.iter().all(|t| !t.keywords.is_empty()))
    );
    assert_eq!(
        t,
        Taxonomy::from_toml(EMBEDDED, "other origin").unwrap(),
        "origin does not change content"
    );
}

#[test]
fn good_file_parses_in_file_order() {
    let t = Taxonomy::from_toml(GOOD, "test.toml").unwrap();
    assert_eq!(t.max_labels_per_page(), 4);
    assert_eq!(
        t.tag_names().collect::<Vec<_>>(),
        ["type-howto", "type-runbook", "tool-jira"]
    );
    let howto = &t.categories()[0].tags[0];
    assert_eq!(howto.keywords, ["how to", "guide"]);
    assert!(t.categories()[0].tags[1].keywords.is_empty());
    assert_eq!(t.category_of("tool-jira").unwrap().max_per_page, 2);
    assert_eq!(t.fingerprint().len(), 64);
}

#[test]
fn load_reads_a_file_and_names_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tax.toml");
    std::fs::write(&path, GOOD).unwrap();
    assert_eq!(
        Taxonomy::load(&path).unwrap(),
        Taxonomy::from_toml(GOOD, "x").unwrap()
    );
    let missing = dir.path().join("nope.toml");
    let e = Taxonomy::load(&missing).unwrap_err().to_string();
    assert!(e.contains("nope.toml"), "{e}");
    std::fs::write(&path, GOOD.replace("type-runbook", "Type-Runbook")).unwrap();
    let e = Taxonomy::load(&path).unwrap_err().to_string();
    assert!(e.contains("tax.toml") && e.contains("Type-Runbook"), "{e}");
}

#[test]
fn duplicate_tag_is_named() {
    let e = err(&GOOD.replace("\"tool-jira\"", "\"type-howto\""));
    assert!(
        e.contains("test.toml") && e.contains("'type-howto' appears more than once"),
        "{e}"
    );
}

#[test]
fn uppercase_tag_is_named_with_the_fix() {
    let e = err(&GOOD.replace("\"tool-jira\"", "\"Tool-Jira\""));
    assert!(
        e.contains("'Tool-Jira'") && e.contains("use 'tool-jira'"),
        "{e}"
    );
}

#[test]
fn tag_with_a_space_is_named() {
    let e = err(&GOOD.replace("\"tool-jira\"", "\"tool jira\""));
    assert!(e.contains("'tool jira'") && e.contains("whitespace"), "{e}");
}

#[test]
fn tag_with_a_forbidden_character_is_named() {
    for bad in ["tool:jira", "tool.jira", "jira!", "c#", "a&b"] {
        let e = err(&GOOD.replace("\"tool-jira\"", &format!("\"{bad}\"")));
        assert!(
            e.contains(&format!("'{bad}'")) && e.contains("does not allow"),
            "{e}"
        );
    }
}

#[test]
fn unknown_field_is_named_with_its_line() {
    let e = err(&GOOD.replace("max_per_page = 2", "max_per_pgae = 2"));
    assert!(
        e.contains("test.toml") && e.contains("max_per_pgae") && e.contains("line 21"),
        "{e}"
    );
    let e = err(&GOOD.replace("keywords = [\"jira\"]", "keyword = [\"jira\"]"));
    assert!(e.contains("keyword") && e.contains("line 26"), "{e}");
}

#[test]
fn syntax_error_names_file_and_line() {
    let e = err(&GOOD.replace("name = \"tool\"", "name = \"tool"));
    assert!(e.starts_with("taxonomy test.toml: line 19"), "{e}");
}

#[test]
fn other_mistakes_are_named() {
    assert!(err(&GOOD.replace("max_labels_per_page = 4", "")).contains("max_labels_per_page"));
    assert!(
        err(&GOOD.replace("max_labels_per_page = 4", "max_labels_per_page = 0"))
            .contains("at least 1")
    );
    assert!(err(&GOOD.replace("max_per_page = 1", "max_per_page = -1")).contains("line 7"));
    assert!(
        err(&GOOD.replace("name = \"tool\"", "name = \"type\""))
            .contains("category 'type' appears more than once")
    );
    assert!(
        err(&GOOD.replace("description = \"Jira\"", "description = \"  \""))
            .contains("'tool-jira'")
    );
    assert!(
        err(&GOOD.replace("[\"jira\"]", "[\"jira\", \"\"]"))
            .contains("'tool-jira' has an empty keyword")
    );
    assert!(err("max_labels_per_page = 3").contains("no categories"));
    let no_tags = "max_labels_per_page = 3\n[[category]]\nname = \"x\"\ndescription = \"d\"\nmax_per_page = 1\n";
    assert!(err(no_tags).contains("category 'x' has no tags"));
}

const WITH_ALIASES: &str = r#"
max_labels_per_page = 4

[[category]]
name = "tool"
description = "Tools"
max_per_page = 2

[[category.tag]]
name = "tool-kubernetes"
description = "Kubernetes"
aliases = ["k8s", "kubernetes"]

[[category.tag]]
name = "tool-jira"
description = "Jira"
"#;

#[test]
fn aliases_resolve_to_their_tag_each_once() {
    let t = Taxonomy::from_toml(WITH_ALIASES, "a.toml").unwrap();
    assert_eq!(t.canonical("k8s"), Some("tool-kubernetes"));
    assert_eq!(t.canonical("K8S"), Some("tool-kubernetes"));
    assert_eq!(t.canonical("tool-jira"), Some("tool-jira"));
    assert_eq!(t.canonical("docker"), None);
    assert_eq!(
        t.aliases_of("tool-kubernetes").collect::<Vec<_>>(),
        ["k8s", "kubernetes"]
    );
    let carried = t.tags_carried(["k8s", "tool-kubernetes", "kubernetes", "fun"]);
    assert_eq!(carried.into_iter().collect::<Vec<_>>(), ["tool-kubernetes"]);
    let on_page = vec!["k8s".to_string(), "fun".to_string()];
    assert!(t.carried_by_alias("tool-kubernetes", &on_page));
    assert!(!t.carried_by_alias("tool-jira", &on_page));
    // The tag itself is not "carried by an alias": it is simply there.
    assert!(!t.carried_by_alias("tool-kubernetes", &["tool-kubernetes".to_string()]));
    // Aliases are not tags: never chosen, never written.
    assert!(!t.contains("k8s"));
    assert_eq!(t.tag_names().count(), 2);
}

#[test]
fn aliases_change_the_fingerprint_and_none_keeps_it() {
    let with = Taxonomy::from_toml(WITH_ALIASES, "a").unwrap();
    let without = Taxonomy::from_toml(
        &WITH_ALIASES.replace("aliases = [\"k8s\", \"kubernetes\"]", ""),
        "a",
    )
    .unwrap();
    assert_ne!(with.fingerprint(), without.fingerprint());
    assert_eq!(
        Taxonomy::from_toml(GOOD, "a").unwrap().fingerprint(),
        Taxonomy::from_toml(GOOD, "a")
            .unwrap()
            .with_aliases(Vec::new(), "a")
            .unwrap()
            .fingerprint()
    );
}

#[test]
fn bad_aliases_are_named() {
    let bad = |from: &str, to: &str| err(&WITH_ALIASES.replace(from, to));
    let e = bad("\"k8s\"", "\"K8s\"");
    assert!(e.contains("alias 'K8s'") && e.contains("use 'k8s'"), "{e}");
    let e = bad("\"k8s\"", "\"k 8s\"");
    assert!(
        e.contains("alias 'k 8s'") && e.contains("whitespace"),
        "{e}"
    );
    let e = bad("\"k8s\"", "\"tool-jira\"");
    assert!(
        e.contains("'tool-jira'") && e.contains("is itself a tag"),
        "{e}"
    );
    let e = bad("\"k8s\"", "\" \"");
    assert!(e.contains("'tool-kubernetes' has an empty alias"), "{e}");
    let twice = WITH_ALIASES.replace(
        "description = \"Jira\"",
        "description = \"Jira\"\naliases = [\"k8s\"]",
    );
    let e = err(&twice);
    assert!(
        e.contains("'k8s' is listed for both 'tool-kubernetes' and 'tool-jira'"),
        "{e}"
    );
    let t = Taxonomy::from_toml(GOOD, "t").unwrap();
    let e = t
        .with_aliases([("tool-nope".to_string(), vec!["x".to_string()])], "t")
        .unwrap_err()
        .to_string();
    assert!(e.contains("'tool-nope', which is no tag"), "{e}");
}
