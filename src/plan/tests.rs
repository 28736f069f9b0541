use std::time::{Duration, SystemTime};

use super::*;
use crate::cache::ContentHash;
use crate::pipeline::{PageOutcome, Provenance, Status};

fn outcome(id: &str, added: &[&str], removed: &[&str]) -> PageOutcome {
    let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    PageOutcome {
        id: id.into(),
        title: format!("Page {id}"),
        url: None,
        status: Status::Tagged,
        labels_before: vec![],
        chosen: v(added),
        added: v(added),
        removed: v(removed),
        provider: Some(Provenance::Provider("gemini")),
        reason: None,
        version: Some(3),
        content_hash: Some(ContentHash::of_page("T", id)),
    }
}

fn plan() -> Plan {
    let site = Site {
        base_url: "https://acme.atlassian.net".into(),
        flavor: "cloud".into(),
    };
    let mut b = Builder::new(site, PlanMode::Sync, "f1");
    b.record("ENG", &outcome("1", &["type-howto"], &["status-draft"]));
    b.record("ENG", &outcome("2", &[], &[]));
    b.record(
        "ENG",
        &PageOutcome {
            status: Status::Unchanged,
            ..outcome("3", &["x"], &[])
        },
    );
    b.record(
        "ENG",
        &PageOutcome {
            version: None,
            ..outcome("4", &["type-howto"], &[])
        },
    );
    assert_eq!(b.left_out, ["4"]);
    b.finish(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000))
}

#[test]
fn only_pages_with_writes_are_planned_and_a_written_plan_reads_back() {
    let p = plan();
    assert_eq!(p.totals(), (1, 1, 1));
    assert_eq!(p.created_at, "2027-01-15T08:00:00Z");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.json");
    write(&path, &p).unwrap();
    assert_eq!(read(&path).unwrap(), p);
    let w = p.spaces[0].pages[0].to_write().unwrap();
    assert_eq!(w.content_hash, ContentHash::of_page("T", "1"));
    assert_eq!(
        (w.add, w.remove),
        (
            vec!["type-howto".to_string()],
            vec!["status-draft".to_string()]
        )
    );
    assert_eq!(w.provider, Provenance::Provider("gemini"));
}

#[test]
fn a_changed_value_breaks_the_checksum_but_reformatting_does_not() {
    let p = plan();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.json");
    let compact = serde_json::to_string(&p).unwrap();
    std::fs::write(&path, &compact).unwrap();
    assert!(read(&path).is_ok(), "reformatted");
    std::fs::write(&path, compact.replace("type-howto", "type-policy")).unwrap();
    let e = read(&path).unwrap_err();
    assert!(matches!(e, PlanError::Checksum { .. }), "{e}");
    assert!(
        e.to_string().contains("changed after tag-space wrote it"),
        "{e}"
    );
}

#[test]
fn other_versions_and_other_files_are_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.json");
    let text = serde_json::to_string(&plan()).unwrap();
    std::fs::write(
        &path,
        text.replace("\"plan_version\":1", "\"plan_version\":2"),
    )
    .unwrap();
    assert!(matches!(read(&path), Err(PlanError::Version { found, .. }) if found == "2"));
    std::fs::write(&path, "{\"results\": []}").unwrap();
    let e = read(&path).unwrap_err();
    assert!(e.to_string().contains("it has no plan_version"), "{e}");
    std::fs::write(&path, "not json").unwrap();
    assert!(matches!(read(&path), Err(PlanError::Unparseable { .. })));
    std::fs::write(&path, text.replace("\"mode\":\"sync\"", "\"mode\":\"all\"")).unwrap();
    let e = read(&path).unwrap_err();
    assert!(e.to_string().contains("at mode"), "{e}");
    let e = read(&dir.path().join("missing.json")).unwrap_err();
    assert!(matches!(e, PlanError::Read { .. }));
    assert!(
        !e.to_string().contains("No such file"),
        "the cause is the source: {e}"
    );
}

#[test]
fn the_site_is_compared_normalised() {
    let p = plan();
    let path = std::path::Path::new("plan.json");
    assert!(
        p.check_site(path, "HTTPS://Acme.Atlassian.net/", "cloud")
            .is_ok()
    );
    assert!(
        p.check_site(path, "https://other.atlassian.net", "cloud")
            .is_err()
    );
    assert!(
        p.check_site(path, "https://acme.atlassian.net", "datacenter")
            .is_err()
    );
    let e = p
        .check_site(path, "https://other.atlassian.net", "cloud")
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "plan.json is a plan for https://acme.atlassian.net (cloud), not for the configured site https://other.atlassian.net (cloud): set CONFLUENCE_BASE_URL (and the credentials) for the plan's site, or make a new plan"
    );
}

#[test]
fn no_user_or_password_of_the_base_url_goes_into_a_plan_or_its_refusal() {
    let site = Site::new("https://bot:s3cret@acme.example/confluence", "datacenter");
    assert_eq!(site.base_url, "https://acme.example/confluence");
    let e = plan()
        .check_site(
            std::path::Path::new("p.json"),
            "https://bot:s3cret@other.example",
            "cloud",
        )
        .unwrap_err()
        .to_string();
    assert!(!e.contains("s3cret") && !e.contains("bot@"), "{e}");
    assert!(
        plan()
            .check_site(
                std::path::Path::new("p.json"),
                "https://u:p@acme.atlassian.net",
                "cloud"
            )
            .is_ok()
    );
}
