//! `tag-space apply` when the site misbehaves between the plan and the apply, against the
//! stateful fakes of `livesite.rs`: a page gone since the plan (deleted, moved out of the
//! space, made unreadable) is reported as such and never written; a quota spent during the
//! apply ends it with one line and exit 2, and the same plan applied again later writes only
//! the rest; a plan over two spaces of one site goes through one governor.

use std::time::Duration;

use serde_json::Value;

use crate::harness::OutputBounded;
use crate::harness::labels::Env;
use crate::livesite::{Flavor, LiveSite};
use crate::plan::{env, env_of, stderr, stdout};
use crate::plan_parallel::peak;

fn report(e: &Env, name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(e.path(name)).unwrap()).unwrap()
}

/// The page of a JSON report by id.
fn page<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["pages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id)
        .unwrap_or_else(|| panic!("no page {id} in {report:#}"))
}

/// The stdout lines starting with `word`.
fn lines_of<'a>(out: &'a str, word: &str) -> Vec<&'a str> {
    out.lines().filter(|l| l.starts_with(word)).collect()
}

// ---- a page gone since the plan -------------------------------------------------------

/// Page 2 is deleted after the plan: it is `stale` as gone (its own line, its own warning),
/// no request writes to it, the other pages are written, exit 1 as for an edited page.
async fn deleted_page_is_gone(flavor: Flavor) {
    let e = env(flavor).await;
    e.plan("full", &[]);
    e.site.delete_page(2);
    let out = e.apply(
        "full",
        &["--report", "applied.json", "--report", "applied.md"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let md = std::fs::read_to_string(e.path("applied.md")).unwrap();
    assert!(
        md.contains("### Stale: edited or gone since the plan, not applied (1)")
            && md.contains("| gone since the plan \\(deleted, moved out of the space"),
        "{md}"
    );
    let st = e.site.state();
    assert!(
        st.posted.iter().chain(&st.deleted).all(|(p, _)| *p != 2),
        "a write was attempted on a page that is gone: {:?} {:?}",
        st.posted,
        st.deleted
    );
    assert!(st.has(1, "type-howto") && st.has(3, "status-draft"));
    drop(st);
    let (out_, err) = (stdout(&out), stderr(&out));
    assert!(
        out_.contains("stale      2 \"How to deploy service 2\": gone since the plan (deleted, moved out of the space, or no longer readable by this account); not applied"),
        "{out_}"
    );
    assert!(lines_of(&out_, "failed").is_empty(), "{out_}");
    assert!(
        err.contains("pages gone since the plan (deleted, moved out of their space, or no longer readable), so not applied: 1"),
        "{err}"
    );
    assert!(!err.contains("edited since the plan"), "{err}");
    let report = report(&e, "applied.json");
    let gone = page(&report, "2");
    assert_eq!(gone["status"], "stale", "{gone:#}");
    assert!(
        gone["skip_reason"]
            .as_str()
            .unwrap()
            .starts_with("gone since the plan"),
        "{gone:#}"
    );
    let pages = &report["metrics"]["pages"];
    assert_eq!((&pages["stale"], &pages["failed"]), (&1.into(), &0.into()));
}

#[tokio::test(flavor = "multi_thread")]
async fn cloud_a_page_deleted_after_the_plan_is_gone_and_never_written() {
    deleted_page_is_gone(Flavor::Cloud).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dc_a_page_deleted_after_the_plan_is_gone_and_never_written() {
    deleted_page_is_gone(Flavor::Dc).await;
}

// ---- Confluence says stop -------------------------------------------------------------

const QUOTA_PAGES: u64 = 6;
/// Label writes answered before the quota is spent.
const WRITES_BEFORE_QUOTA: u64 = 2;

/// The write after two, and every request after it, gets a 429 that halts the work (on Cloud
/// a quota; on Data Center a wait above the ceiling): the two pages written are reported,
/// the four others are not applied (one line, not a failure each), exit 2. Once the budget
/// is back, the same plan writes those four and nothing twice. The line starts with `says`,
/// its cause ends with `cause` and it says to apply again `when`.
async fn budget_spent_during_apply(flavor: Flavor, says: &str, cause: &str, when: &str) {
    let e = env_of(flavor, QUOTA_PAGES).await;
    e.plan("full", &[]);
    e.site.state().quota_after = Some(WRITES_BEFORE_QUOTA);
    let out = e
        .command("full", &["apply", "plan.json", "--report", "halted.json"])
        .env("TAG_SPACE_CONFLUENCE_CONCURRENCY", "2")
        .output_bounded();
    let (out_, err) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(lines_of(&out_, "added").len(), 2, "{out_}");
    assert!(lines_of(&out_, "failed").is_empty(), "{out_}");
    let not_applied = QUOTA_PAGES - WRITES_BEFORE_QUOTA;
    let said: Vec<&str> = err.lines().filter(|l| l.starts_with(says)).collect();
    assert_eq!(said.len(), 1, "want one line for the halt:\n{err}");
    let ends = format!(
        "{cause}: {not_applied} planned pages not applied; run `tag-space apply plan.json` again {when}: it writes only those"
    );
    assert!(said[0].ends_with(&ends), "{}", said[0]);
    let halted = report(&e, "halted.json");
    assert_eq!(halted["run"]["status"], "failed", "{halted:#}");
    let pages = &halted["metrics"]["pages"];
    assert_eq!((&pages["tagged"], &pages["failed"]), (&2.into(), &0.into()));
    let written: Vec<(u64, String)> = e.site.state().posted.clone();
    assert_eq!(
        written.len(),
        2 * WRITES_BEFORE_QUOTA as usize,
        "{written:?}"
    );

    // The quota is back.
    e.site.state().quota_after = None;
    let again = e.apply("full", &["--report", "rest.json"]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_eq!(
        lines_of(&stdout(&again), "added").len(),
        not_applied as usize,
        "{}",
        stdout(&again)
    );
    let st = e.site.state();
    assert!(
        st.duplicates.is_empty(),
        "written twice: {:?}",
        st.duplicates
    );
    assert_eq!(st.posted.len(), 2 * QUOTA_PAGES as usize, "{:?}", st.posted);
    for p in 1..=QUOTA_PAGES {
        assert!(
            st.has(p, "type-howto") && st.has(p, "status-draft"),
            "page {p}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cloud_a_quota_spent_during_apply_stops_it_and_the_same_plan_later_writes_the_rest() {
    budget_spent_during_apply(
        Flavor::Cloud,
        "tag-space: Confluence quota spent until ",
        " (RateLimit-Reason: confluence-quota-global-based)",
        "after that",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dc_a_wait_above_the_ceiling_during_apply_stops_it_and_the_same_plan_later_writes_the_rest()
{
    budget_spent_during_apply(
        Flavor::Dc,
        "tag-space: HTTP 429: Confluence asked to wait 1800s, longer than TAG_SPACE_MAX_COOLDOWN_SECS (60s)",
        "(60s)",
        "later",
    )
    .await;
}

// ---- one governor for the site --------------------------------------------------------

/// Every label write's answer is held a while, so that writes overlap.
fn held(_page: u64) -> Duration {
    Duration::from_millis(200)
}

/// A plan over ENG and OPS of one site, concurrency 2: the writes in flight never pass 2,
/// and the site's "little left" headers on the answer to ENG's last write (and on no other
/// answer) pace OPS's requests: one governor. With one per space, OPS would start unpaced
/// and nothing would be paced at all.
#[tokio::test(flavor = "multi_thread")]
async fn cloud_a_plan_over_two_spaces_goes_through_one_governor() {
    let site = LiveSite::new(Flavor::Cloud, 3, 250).with_ops(3);
    let e = Env::of_site(site, Duration::ZERO).await;
    let out = e
        .command(
            "full",
            &["--space", "ENG,OPS", "--dry-run", "--plan", "plan.json"],
        )
        .output_bounded();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    {
        let mut st = e.site.state();
        st.hold_post = Some(held);
        st.near_limit_on = Some(3);
    }
    let out = e
        .command("full", &["apply", "plan.json", "--report", "applied.json"])
        .env("TAG_SPACE_CONFLUENCE_CONCURRENCY", "2")
        .output_bounded();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let st = e.site.state();
    for p in 1..=6 {
        assert!(
            st.has(p, "type-howto") && st.has(p, "status-draft"),
            "page {p}"
        );
    }
    let at_once = peak(&st.post_arrivals);
    assert!((1..=2).contains(&at_once), "{at_once} writes in flight");
    drop(st);
    let report = report(&e, "applied.json");
    let site = &report["metrics"]["confluence"];
    assert!(site["peak_in_flight"].as_u64().unwrap() <= 2, "{site:#}");
    assert!(
        site["pacing_seconds"].as_f64().unwrap() > 0.0,
        "OPS was not paced by what ENG's answers said: {site:#}"
    );
}

/// A quota spent in ENG, the first space of a two-space plan: nothing more is sent to the
/// site (OPS's pages are not even listed), and the one line counts OPS's pages among those
/// not applied.
#[tokio::test(flavor = "multi_thread")]
async fn cloud_a_quota_spent_in_one_space_leaves_the_next_untouched_and_counted() {
    let site = LiveSite::new(Flavor::Cloud, 3, 250).with_ops(3);
    let e = Env::of_site(site, Duration::ZERO).await;
    let out = e
        .command(
            "full",
            &["--space", "ENG,OPS", "--dry-run", "--plan", "plan.json"],
        )
        .output_bounded();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    e.site.state().quota_after = Some(1);
    let out = e
        .command("full", &["apply", "plan.json"])
        .env("TAG_SPACE_CONFLUENCE_CONCURRENCY", "1")
        .output_bounded();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(
            "): 5 planned pages not applied; run `tag-space apply plan.json` again after that"
        ),
        "{err}"
    );
    let st = e.site.state();
    assert_eq!(
        st.requests("throttled"),
        1,
        "requests after the halt: {:?}",
        st.requests
    );
    assert_eq!(st.posted.len(), 2, "{:?}", st.posted);
}

// ---- what a halted label write left -----------------------------------------------------

/// A Cloud client whose retries wait a few milliseconds.
fn quick_client(server: &wiremock::MockServer) -> tag_space::confluence::ConfluenceClient {
    use tag_space::confluence::{ConfluenceAuth, ConfluenceClient, ConfluenceSettings};
    ConfluenceClient::new(ConfluenceSettings {
        root: format!("{}/wiki", server.uri()),
        flavor: tag_space::confluence::Flavor::Cloud,
        auth: ConfluenceAuth::Basic {
            email: "bot@acme.test".into(),
            token: tag_space::secret::Secret::new("tok"),
        },
        timeout: Duration::from_secs(5),
        max_retries: 3,
    })
    .unwrap()
    .with_backoff(tag_space::retry::Backoff::new(
        Duration::from_millis(1),
        Duration::from_millis(5),
    ))
}

/// A label write halted by a quota 429 on its only try was not acted on (apply settles it as
/// not landed, without a read); one whose earlier try got a 500 may have landed.
#[tokio::test(flavor = "multi_thread")]
async fn a_write_halted_on_its_first_try_is_unacted_and_one_after_a_500_is_not() {
    use tag_space::confluence::PageSource;
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let quota = || {
        ResponseTemplate::new(429)
            .insert_header("RateLimit-Reason", "confluence-quota-global-based")
            .insert_header("Retry-After", "1800")
    };
    let labels = vec!["type-howto".to_string()];
    for (first_500, unacted) in [(false, true), (true, false)] {
        let server = MockServer::start().await;
        if first_500 {
            Mock::given(method("POST"))
                .respond_with(ResponseTemplate::new(500))
                .up_to_n_times(1)
                .with_priority(1)
                .mount(&server)
                .await;
        }
        Mock::given(method("POST"))
            .respond_with(quota())
            .mount(&server)
            .await;
        let e = quick_client(&server)
            .add_labels("7", &labels)
            .await
            .expect_err("the quota refuses the write");
        assert_eq!(e.unacted(), unacted, "first try 500: {first_500}: {e}");
        assert!(e.to_string().contains("Confluence quota spent"), "{e}");
    }
}
