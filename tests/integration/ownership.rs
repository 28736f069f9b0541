//! A person's label is never removed (issue "close the gaps in who owns a label"): the four
//! ways it used to break, through the built binary against the stateful Cloud and Data
//! Center fakes of `livesite.rs`, with an LLM that picks the first tag of each category. A
//! person's actions go to the fake's state, never through tag-space's client. Also: the
//! label census on both flavours with pagination, and its request count.
//!
//! Taxonomies: FULL (`type-howto`, `status-draft`), REDUCED (FULL without `status`, so the
//! model no longer chooses `status-draft`) and ALT (`type-howto`, `tool-jira`).

use std::collections::HashSet;
use std::process::{Command, Output};
use std::time::Duration;

use tag_space::confluence::{ConfluenceAuth, ConfluenceSettings};
use tag_space::confluence::{ConfluenceClient, Flavor as ClientFlavor, PageSource};
use tag_space::secret::Secret;
use wiremock::MockServer;

use crate::harness::labels::{self, PAGES};
use crate::harness::{OutputBounded, Running};
use crate::livesite::{Flavor, LiveSite, Person};

/// The shared environment (`harness::labels`), run as the tests here run tag-space.
struct Env(labels::Env);

impl std::ops::Deref for Env {
    type Target = labels::Env;
    fn deref(&self) -> &labels::Env {
        &self.0
    }
}

async fn env(flavor: Flavor, llm_delay: Duration) -> Env {
    Env(labels::Env::new(flavor, llm_delay).await)
}

impl Env {
    /// `tag-space --space ENG -q --taxonomy <taxonomy>.toml <extra>`, one page per request,
    /// state in `state`, locks under `locks/`.
    fn command(&self, taxonomy: &str, state: &str, extra: &[&str]) -> Command {
        let mut args = vec![
            "--space",
            "ENG",
            "-q",
            "--batch-size",
            "1",
            "--concurrency",
            "1",
            "--max-concurrency",
            "1",
        ];
        args.extend_from_slice(extra);
        let mut cmd = self.tag_space(taxonomy, &args);
        cmd.env("TAG_SPACE_CACHE_PATH", self.path(state));
        cmd
    }

    fn run(&self, taxonomy: &str, extra: &[&str]) -> Output {
        let out = self.command(taxonomy, "state.db", extra).output_bounded();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{taxonomy} {extra:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn spawn(&self, taxonomy: &str, state: &str, extra: &[&str]) -> Running {
        Running::start(&mut self.command(taxonomy, state, extra))
    }

    /// No label was ever POSTed to a page that already carried it.
    fn assert_nothing_written_twice(&self) {
        let st = self.site.state();
        assert!(
            st.duplicates.is_empty(),
            "written twice: {:?}",
            st.duplicates
        );
    }
}

// ---- 1: a label a person removed and later put back ------------------------------------

/// Run 1 adds `status-draft`; a person removes it from page 1; run 2 (no flags) skips page 1
/// as unchanged; the person puts it back; `--sync` under REDUCED must leave it (it is theirs)
/// while removing tag-space's own `status-draft` from the other pages.
async fn removed_then_put_back(flavor: Flavor) {
    let e = env(flavor, Duration::ZERO).await;
    e.run("full", &[]);
    assert!(e.has(1, "status-draft") && e.has(2, "status-draft"));
    e.site.person_removes(1, "status-draft");
    e.run("full", &[]);
    assert!(
        !e.has(1, "status-draft"),
        "put back a label a person removed"
    );
    e.site.person_adds(1, "status-draft");
    e.run("reduced", &["--sync"]);
    assert!(
        e.has(1, "status-draft"),
        "{flavor:?}: the person's label was removed"
    );
    assert!(
        !e.has(2, "status-draft"),
        "tag-space's own label stays after --sync"
    );
    assert!(e.has(1, "type-howto"));
    e.assert_nothing_written_twice();
}

#[tokio::test(flavor = "multi_thread")]
async fn cloud_a_label_a_person_removed_and_put_back_survives_sync() {
    removed_then_put_back(Flavor::Cloud).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dc_a_label_a_person_removed_and_put_back_survives_sync() {
    removed_then_put_back(Flavor::Dc).await;
}

// ---- 2: a label a person adds while the run works ----------------------------------------

/// While the model classifies, a person adds `status-draft` to page 1 (the model will choose
/// it too). The run must not write it again nor claim it, so `--sync` under REDUCED keeps it.
async fn added_during_the_run(flavor: Flavor) {
    let e = env(flavor, Duration::from_millis(50)).await;
    e.site.state().on_classify = vec![Person::Adds(1, "status-draft")];
    e.run("full", &[]);
    e.assert_nothing_written_twice();
    assert!(
        !e.site
            .state()
            .posted
            .contains(&(1, "status-draft".to_string())),
        "{flavor:?}: wrote the person's label"
    );
    e.run("reduced", &["--sync"]);
    assert!(
        e.has(1, "status-draft"),
        "{flavor:?}: the person's label was removed"
    );
    assert!(
        !e.has(2, "status-draft"),
        "tag-space's own label stays after --sync"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cloud_a_label_a_person_adds_during_the_run_is_theirs() {
    added_during_the_run(Flavor::Cloud).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dc_a_label_a_person_adds_during_the_run_is_theirs() {
    added_during_the_run(Flavor::Dc).await;
}

// ---- 3a: killed while a write was in flight; it never landed; a person adds the label ---

async fn killed_mid_write_then_a_person_adds(flavor: Flavor) {
    let e = env(flavor, Duration::ZERO).await;
    e.site.state().hold_posts = true;
    let mut child = e.spawn("full", "state.db", &[]);
    child
        .until("the first label write", || {
            !e.site.state().posted.is_empty()
        })
        .await;
    child.kill_9();
    let (page, held) = {
        let mut st = e.site.state();
        st.hold_posts = false;
        assert!(
            st.labels.values().all(|l| l.is_empty()),
            "a held write landed"
        );
        let held: HashSet<u64> = st.posted.iter().map(|(p, _)| *p).collect();
        (st.posted[0].0, held)
    };
    // The write never landed; a person adds the label it carried.
    e.site.person_adds(page, "status-draft");
    let before = e.site.state().posted.len();
    e.run("full", &[]);
    e.assert_nothing_written_twice();
    assert!(
        !e.site.state().posted[before..]
            .iter()
            .any(|(p, _)| held.contains(p)),
        "{flavor:?}: wrote again to a page whose write could not be confirmed"
    );
    e.run("reduced", &["--sync"]);
    assert!(
        e.has(page, "status-draft"),
        "{flavor:?}: the person's label was removed"
    );
    // The last page could not start writing while the first two were stuck (at most two
    // batches in flight): it was done normally, and --sync took tag-space's own label off.
    assert!(!held.contains(&PAGES));
    assert!(e.has(PAGES, "type-howto") && !e.has(PAGES, "status-draft"));
}

#[tokio::test(flavor = "multi_thread")]
async fn cloud_killed_mid_write_then_a_person_adds_the_label() {
    killed_mid_write_then_a_person_adds(Flavor::Cloud).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dc_killed_mid_write_then_a_person_adds_the_label() {
    killed_mid_write_then_a_person_adds(Flavor::Dc).await;
}

// ---- 3b: killed after a sync's add and delete landed; a person reverses both -------------

async fn killed_after_sync_writes_then_a_person_reverses_them(flavor: Flavor) {
    let e = env(flavor, Duration::ZERO).await;
    e.run("full", &[]);
    e.site.state().hang_after_delete = true;
    // ALT drops status-draft and adds tool-jira: one add and one delete per page.
    let mut child = e.spawn("alt", "state.db", &["--sync"]);
    child
        .until("the first removal", || !e.site.state().deleted.is_empty())
        .await;
    child.kill_9();
    let page = {
        let mut st = e.site.state();
        st.hang_after_delete = false;
        st.deleted[0].0
    };
    assert!(e.has(page, "tool-jira") && !e.has(page, "status-draft"));
    // A person undoes both: takes tool-jira off and puts status-draft back.
    e.site.person_removes(page, "tool-jira");
    e.site.person_adds(page, "status-draft");
    e.run("alt", &["--sync"]);
    let st = e.site.state();
    assert!(
        st.has(page, "status-draft"),
        "{flavor:?}: deleted the label the person put back"
    );
    assert!(
        !st.has(page, "tool-jira"),
        "{flavor:?}: added back the label the person removed"
    );
    let count =
        |v: &Vec<(u64, String)>, l: &str| v.iter().filter(|(p, x)| *p == page && x == l).count();
    assert_eq!(count(&st.deleted, "status-draft"), 1);
    assert_eq!(count(&st.posted, "tool-jira"), 1);
    assert!(
        st.duplicates.is_empty(),
        "written twice: {:?}",
        st.duplicates
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cloud_killed_after_a_syncs_writes_then_a_person_reverses_them() {
    killed_after_sync_writes_then_a_person_reverses_them(Flavor::Cloud).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dc_killed_after_a_syncs_writes_then_a_person_reverses_them() {
    killed_after_sync_writes_then_a_person_reverses_them(Flavor::Dc).await;
}

// ---- 4: two state files, one lock ----------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn two_runs_with_two_state_files_share_one_lock() {
    // The first run's model answer never comes while the test runs: it holds the lock.
    let e = env(Flavor::Cloud, Duration::from_secs(3600)).await;
    let mut first = e.spawn("full", "a.db", &[]);
    first
        .until("the first run's model request", || {
            e.site.state().requests("llm") > 0
        })
        .await;
    let out = e.command("full", "b.db", &[]).output_bounded();
    let pid = first.id();
    first.kill_9();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    let locks = e.dir.path().join("locks");
    assert!(
        stderr.contains(&format!("pid {pid}")) && stderr.contains(&locks.display().to_string()),
        "{stderr}"
    );
    assert!(e.site.state().posted.is_empty(), "the second run wrote");
    assert_eq!(
        e.site.state().requests("llm"),
        1,
        "the second run asked the model"
    );
    assert!(
        !e.dir.path().join("b.db").exists(),
        "the second run opened its state file"
    );
}

// ---- the census --------------------------------------------------------------------------

fn client(site: &LiveSite, server: &MockServer, page_limit: u32) -> ConfluenceClient {
    let (flavor, auth) = match site.flavor {
        Flavor::Cloud => (
            ClientFlavor::Cloud,
            ConfluenceAuth::Basic {
                email: "bot@acme.test".into(),
                token: Secret::new("tok"),
            },
        ),
        Flavor::Dc => (
            ClientFlavor::DataCenter,
            ConfluenceAuth::Bearer(Secret::new("pat")),
        ),
    };
    ConfluenceClient::new(ConfluenceSettings {
        root: site.base_url(server),
        flavor,
        auth,
        timeout: Duration::from_secs(5),
        max_retries: 0,
    })
    .unwrap()
    .with_page_limit(page_limit)
}

/// 23 of 30 pages carry the label; 5 results per request.
async fn census_pages_through(flavor: Flavor) -> (HashSet<String>, u64, u64) {
    let site = LiveSite::new(flavor, 30, 5);
    for p in 1..=30 {
        if p % 4 != 0 || p > 28 {
            site.person_adds(p, "type-howto");
        }
    }
    site.person_adds(1, "other");
    let server = site.serve().await;
    let c = client(&site, &server, 5);
    let found = c.pages_with_label("ENG", "type-howto").await.unwrap();
    let st = site.state();
    (
        found,
        st.requests("census"),
        st.requests("lookup") + st.requests("space"),
    )
}

fn expected() -> HashSet<String> {
    (1..=30u64)
        .filter(|p| p % 4 != 0 || *p > 28)
        .map(|p| p.to_string())
        .collect()
}

#[tokio::test]
async fn cloud_census_follows_every_page_of_the_answer() {
    let (found, census, lookups) = census_pages_through(Flavor::Cloud).await;
    assert_eq!(found.len(), 23);
    assert_eq!(found, expected());
    // ceil(23 / 5) pages of ids, one label lookup and one space lookup.
    assert_eq!((census, lookups), (5, 2));
}

#[tokio::test]
async fn dc_census_follows_every_page_of_the_answer() {
    let (found, census, lookups) = census_pages_through(Flavor::Dc).await;
    assert_eq!(found, expected());
    assert_eq!((census, lookups), (5, 0));
}

#[tokio::test]
async fn a_label_no_page_carries_any_more_has_an_empty_census() {
    for flavor in [Flavor::Cloud, Flavor::Dc] {
        let site = LiveSite::new(flavor, 3, 5);
        site.person_adds(2, "gone");
        site.person_removes(2, "gone");
        let server = site.serve().await;
        let c = client(&site, &server, 5);
        let found = c.pages_with_label("ENG", "gone").await.unwrap();
        assert!(found.is_empty(), "{flavor:?}");
    }
}

#[tokio::test]
async fn a_cloud_label_lookup_that_finds_nothing_fails_the_census_instead_of_emptying_it() {
    // tag-space only takes the census of labels it wrote, which Confluence keeps: a 404 here
    // is a wrong path or a proxy, and must not read as "a person removed it everywhere".
    let site = LiveSite::new(Flavor::Cloud, 3, 5);
    let server = site.serve().await;
    let c = client(&site, &server, 5);
    let err = c.pages_with_label("ENG", "never-used").await.unwrap_err();
    assert_eq!(err.status(), Some(404), "{err}");
}
