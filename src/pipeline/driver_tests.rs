//! The driver's phases, and the metadata-first listing with bodies read in bulk.

use std::time::Duration;

use super::super::testkit::{Kit, labelled};
use super::*;
use crate::confluence::MemorySource;
use crate::pipeline::Status;

fn pages(n: usize) -> Vec<Page> {
    (1..=n).map(|i| labelled(&i.to_string(), &[])).collect()
}

fn drain(events: &mut mpsc::UnboundedReceiver<Event>) -> Vec<Event> {
    std::iter::from_fn(|| events.try_recv().ok()).collect()
}

#[tokio::test]
async fn the_limit_ends_reading_and_the_events_tell_the_total_then_the_end() {
    let mut kit = Kit::new(pages(6));
    kit.opts.limit = Some(2);
    kit.opts.batch_size = 5;
    let mut events = kit.opts.events.subscribe();
    let mut out = Vec::new();
    let ctx = kit.ctx();
    drive(&ctx, |o| out.push(o)).await.unwrap();
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|o| o.status == Status::Tagged));
    assert_eq!(
        kit.calls(),
        vec![2],
        "the last partial batch is sent once reading ends"
    );
    assert_eq!(
        kit.source.body_requests(),
        [vec!["1".to_string(), "2".to_string()]],
        "one bulk read, no more bodies than the limit uses"
    );
    let kinds: Vec<String> = drain(&mut events)
        .iter()
        .map(|e| match e {
            Event::Listed { taken } => format!("listed {taken}"),
            Event::Classifying { id } => format!("classifying {id}"),
            Event::ListingEnded { total } => format!("ended {total}"),
            Event::Page(o) => format!("page {}", o.id),
            Event::Finished { taken, done } => format!("finished {taken} {done}"),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "listed 1",
            "listed 2",
            "classifying 1",
            "classifying 2",
            "ended 2",
            "page 1",
            "page 2",
            "finished 2 2"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_run_drains_for_the_grace_then_abandons_what_is_in_flight_with_the_total_known()
{
    let mut kit = Kit::new(pages(6)).slow(Duration::from_secs(60));
    kit.opts.batch_size = 1;
    kit.opts.grace = Duration::from_secs(5);
    let mut events = kit.opts.events.subscribe();
    let cancel = kit.opts.cancel.clone();
    let mut out = Vec::new();
    let start = Instant::now();
    let ctx = kit.ctx();
    let stop = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        cancel.cancel();
    };
    let (listed, ()) = tokio::join!(drive(&ctx, |o| out.push(o)), stop);
    assert!(listed.is_ok(), "{listed:?}");
    assert!(out.is_empty(), "nothing finished within the grace");
    assert_eq!(start.elapsed(), Duration::from_secs(6));
    // Two batches went out (max_in_flight); the metadata listing went on to its end, so the
    // total was known before any page finished.
    assert_eq!(kit.calls(), vec![1, 1]);
    let events = drain(&mut events);
    let ended = events
        .iter()
        .position(|e| matches!(e, Event::ListingEnded { total: 6 }));
    assert!(ended.is_some(), "{events:?}");
    assert!(!events.iter().any(|e| matches!(e, Event::Page(_))));
    assert!(matches!(
        events.last(),
        Some(Event::Finished { taken: 6, done: 0 })
    ));
}

/// Runs the kit's pipeline to its end; the outcomes by page id.
async fn run_all<S: PageSource>(kit: &Kit, source: &S) -> Vec<PageOutcome> {
    let ctx = Ctx::new(source, &kit.provider, &kit.taxonomy, &kit.opts);
    let mut out = Vec::new();
    drive(&ctx, |o| out.push(o)).await.unwrap();
    out.sort_by_key(|o| o.id.parse::<u64>().unwrap_or(0));
    out
}

fn ids_fetched(kit: &Kit) -> Vec<String> {
    let mut ids: Vec<String> = kit.source.body_requests().concat();
    ids.sort_by_key(|id| id.parse::<u64>().unwrap_or(0));
    ids
}

#[tokio::test]
async fn a_rerun_reads_no_body_of_a_page_whose_version_is_unchanged() {
    let kit = Kit::with_state(pages(3));
    let first = run_all(&kit, &kit.source).await;
    assert!(
        first.iter().all(|o| o.status == Status::Tagged),
        "{first:?}"
    );
    assert_eq!(ids_fetched(&kit), ["1", "2", "3"]);

    let second = run_all(&kit, &kit.source).await;
    assert!(
        second.iter().all(|o| o.status == Status::Unchanged
            && o.reason.as_deref() == Some(super::super::UNCHANGED_SINCE_LAST_RUN)),
        "{second:?}"
    );
    assert_eq!(
        ids_fetched(&kit).len(),
        3,
        "no body read for an unchanged page"
    );

    kit.source
        .edit_page("2", "<p>How to file a Jira ticket, edited</p>");
    let third = run_all(&kit, &kit.source).await;
    assert_eq!(third[1].status, Status::Unchanged, "same labels chosen");
    assert_eq!(third[1].reason, None, "classified again, not skipped");
    assert_eq!(
        kit.source.body_requests().last().unwrap(),
        &["2".to_string()]
    );
}

#[tokio::test]
async fn no_cache_reads_every_body_again() {
    let kit = Kit::with_state(pages(2));
    run_all(&kit, &kit.source).await;
    let mut kit = kit;
    let st = kit.opts.state.as_mut().unwrap();
    // `--no-cache`: the same file, reads off.
    let options = crate::cache::StoreOptions {
        read: false,
        ..Default::default()
    };
    st.store = Arc::new(crate::cache::Store::open(st.store.path(), options).unwrap());
    let again = run_all(&kit, &kit.source).await;
    assert!(again.iter().all(|o| o.reason.is_none()), "{again:?}");
    assert_eq!(ids_fetched(&kit), ["1", "1", "2", "2"]);
}

#[tokio::test(start_paused = true)]
async fn bodies_are_read_in_bulk_at_most_250_a_request_each_once() {
    let mut kit = Kit::new(pages(600)).slow(Duration::from_secs(1));
    kit.opts.batch_size = 10;
    kit.opts.max_in_flight = 4;
    let out = run_all(&kit, &kit.source).await;
    assert_eq!(out.len(), 600);
    assert!(out.iter().all(|o| o.status == Status::Tagged));
    let requests = kit.source.body_requests();
    assert!(
        requests.iter().all(|r| r.len() <= BODIES_PER_FETCH),
        "{requests:?}"
    );
    assert!(
        requests.iter().any(|r| r.len() == BODIES_PER_FETCH),
        "{requests:?}"
    );
    assert!(requests.len() <= 6, "{} requests", requests.len());
    let want: Vec<String> = (1..=600).map(|i| i.to_string()).collect();
    assert_eq!(ids_fetched(&kit), want, "every body read once");
}

#[tokio::test]
async fn the_limit_reads_no_more_bodies_than_it_uses() {
    let mut kit = Kit::new(pages(100));
    kit.opts.limit = Some(3);
    let out = run_all(&kit, &kit.source).await;
    assert_eq!(out.len(), 3);
    assert_eq!(ids_fetched(&kit), ["1", "2", "3"]);
}

/// The kit's source, with one page deleted between the listing and the body read, or every
/// body read failing.
struct Flaky<'a> {
    inner: &'a MemorySource,
    gone: &'static str,
    fail: bool,
}

impl PageSource for Flaky<'_> {
    async fn stream_pages(
        &self,
        key: &str,
        tx: mpsc::Sender<Page>,
    ) -> Result<u64, ConfluenceError> {
        self.inner.stream_pages(key, tx).await
    }
    async fn stream_metadata(
        &self,
        key: &str,
        tx: mpsc::Sender<Page>,
    ) -> Result<u64, ConfluenceError> {
        self.inner.stream_metadata(key, tx).await
    }
    async fn bodies(
        &self,
        ids: &[String],
    ) -> Result<std::collections::HashMap<String, String>, ConfluenceError> {
        if self.fail {
            return Err(ConfluenceError::Setup {
                detail: "the site is down".into(),
            });
        }
        let mut bodies = self.inner.bodies(ids).await?;
        bodies.remove(self.gone);
        Ok(bodies)
    }
    async fn labels(&self, id: &str) -> Result<Vec<crate::confluence::Label>, ConfluenceError> {
        self.inner.labels(id).await
    }
    async fn pages_with_label(
        &self,
        key: &str,
        name: &str,
    ) -> Result<HashSet<String>, ConfluenceError> {
        self.inner.pages_with_label(key, name).await
    }
    async fn add_labels(&self, id: &str, names: &[String]) -> Result<(), ConfluenceError> {
        self.inner.add_labels(id, names).await
    }
    async fn remove_label(&self, id: &str, name: &str) -> Result<(), ConfluenceError> {
        self.inner.remove_label(id, name).await
    }
}

#[tokio::test]
async fn a_page_gone_before_its_body_is_read_is_skipped_and_a_failed_read_fails_its_pages() {
    let kit = Kit::with_state(pages(3));
    let gone = Flaky {
        inner: &kit.source,
        gone: "2",
        fail: false,
    };
    let out = run_all(&kit, &gone).await;
    let statuses: Vec<_> = out.iter().map(|o| (o.id.as_str(), o.status)).collect();
    assert_eq!(
        statuses,
        [
            ("1", Status::Tagged),
            ("2", Status::Skipped),
            ("3", Status::Tagged)
        ]
    );
    assert_eq!(out[1].reason.as_deref(), Some(GONE_SINCE_LISTED));

    let failing = Flaky {
        inner: &kit.source,
        gone: "",
        fail: true,
    };
    let out = run_all(&kit, &failing).await;
    // 1 and 3 are unchanged (no body needed); 2 was never finished, so its body is needed.
    let statuses: Vec<_> = out.iter().map(|o| (o.id.as_str(), o.status)).collect();
    assert_eq!(
        statuses,
        [
            ("1", Status::Unchanged),
            ("2", Status::Failed),
            ("3", Status::Unchanged)
        ]
    );
    assert!(
        out[1]
            .reason
            .as_deref()
            .unwrap()
            .contains("the site is down")
    );
}

#[tokio::test]
async fn the_edited_pages_of_a_rerun_are_read_together() {
    let kit = Kit::with_state(pages(300));
    run_all(&kit, &kit.source).await;
    let before = kit.source.body_requests().len();
    for id in ["1", "101", "201"] {
        kit.source
            .edit_page(id, "<p>How to file a Jira ticket, edited</p>");
    }
    let out = run_all(&kit, &kit.source).await;
    assert_eq!(out.iter().filter(|o| o.reason.is_none()).count(), 3);
    let requests = kit.source.body_requests();
    assert_eq!(
        requests[before..],
        [vec!["1".to_string(), "101".into(), "201".into()]],
        "one request for the three, not one each"
    );
}

/// The most pages taken from the listing so far, from the run's `Listed` events.
fn most_taken(events: &mut mpsc::UnboundedReceiver<Event>) -> u64 {
    drain(events)
        .iter()
        .filter_map(|e| match e {
            Event::Listed { taken } => Some(*taken),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test(start_paused = true)]
async fn the_listing_waits_while_the_look_ahead_is_full_then_every_page_is_reported_once() {
    // The provider answers after an hour (tokio time): until then nothing is reported.
    let n = LOOK_AHEAD + 1_000;
    let mut kit = Kit::new(pages(n)).slow(Duration::from_secs(3600));
    kit.opts.batch_size = 10;
    kit.opts.max_in_flight = 2;
    let mut events = kit.opts.events.subscribe();
    let mut out = Vec::new();
    let ctx = kit.ctx();
    let mut before_answers = 0;
    let look = async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        before_answers = most_taken(&mut events);
    };
    let (listed, ()) = tokio::join!(drive(&ctx, |o| out.push(o)), look);
    assert_eq!(listed.unwrap(), n as u64);
    // Taken before any answer: LOOK_AHEAD waiting for their body, plus the slack of the pages
    // at the provider (max_in_flight × batch_size = 20) and at most one partial batch (9).
    // Exactly LOOK_AHEAD + 20 here; on main before the bound, all 11,000.
    let slack = 2 * 10 + 9;
    assert!(
        (LOOK_AHEAD as u64..=(LOOK_AHEAD + slack) as u64).contains(&before_answers),
        "{before_answers} pages taken while the provider had not answered"
    );
    assert_eq!(out.len(), n);
    let ids: HashSet<&str> = out.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids.len(), n, "every page reported once");
    assert!(out.iter().all(|o| o.status == Status::Tagged));
}
