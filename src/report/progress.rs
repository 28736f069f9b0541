//! The live progress line on stderr: pages done out of pages listed (a real total once the
//! listing has ended), rate, ETA when it means something, and what the providers are
//! waiting for ("cooling down 12s (gemini 429)").
//!
//! It learns all of it from the run's [`Event`]s ([`crate::events`]) and from nothing else:
//! no log line, no polling of the providers' counters.
//!
//! The bar is drawn only when stderr is a terminal and the run is not `--quiet`; otherwise
//! (cron, CI, tests) it is hidden and costs nothing. Everything else that writes to the
//! terminal while it may be drawn (log lines, per-page lines, warnings) goes through
//! [`suspend`], which clears the bar, writes, and redraws it, so nothing tears it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

use crate::events::Event;
use crate::governor::WaitReason;
use crate::llm::LlmErrorKind;

/// The process's bar, once [`Progress::install`] ran: what [`suspend`] clears.
static BAR: OnceLock<ProgressBar> = OnceLock::new();

/// How long a passing event (a retry, a fallback) stays on the line.
const STICKY: Duration = Duration::from_secs(2);

/// Runs `f` (which writes to stdout or stderr) with the bar cleared, then redraws it. Without
/// a visible bar it just runs `f`.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    match BAR.get() {
        Some(bar) if !bar.is_hidden() => bar.suspend(f),
        _ => f(),
    }
}

/// Clears the bar for good (before the final table, or before exiting at once).
pub fn clear() {
    if let Some(bar) = BAR.get() {
        bar.finish_and_clear();
    }
}

/// The bar and what it knows of the run. Cheap to clone; all clones are one bar.
#[derive(Clone)]
pub struct Progress {
    bar: ProgressBar,
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    started: Mutex<Instant>,
    color: Mutex<bool>,
}

/// What the events said so far.
#[derive(Default)]
struct State {
    /// Pages the run took from the listing.
    taken: u64,
    done: u64,
    /// The pages the run takes, once it will take no more; `None` until then, and then no
    /// total or ETA.
    total: Option<u64>,
    /// Requests sent to a provider and not yet answered.
    requests_in_flight: u64,
    waits: Waits,
    /// While `--wait` waits for batch jobs: their counts (cleared once pages are listed).
    batch: Option<String>,
}

/// What the providers are waiting for.
#[derive(Default)]
struct Waits {
    /// Provider-wide pauses after a 429: until when.
    cooldowns: BTreeMap<&'static str, Instant>,
    /// A passing event (retry, fallback), shown until the instant.
    sticky: Option<(String, Instant)>,
    /// A provider that cannot be called, and why, until another provider takes the work or
    /// it answers again.
    unavailable: Option<(&'static str, String)>,
    /// The rate a provider is paced to.
    pacing: Option<(&'static str, f64)>,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    /// A hidden bar; [`Progress::start`] shows it.
    pub fn new() -> Self {
        Self {
            bar: ProgressBar::hidden(),
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                started: Mutex::new(Instant::now()),
                color: Mutex::new(false),
            }),
        }
    }

    /// Makes this the bar that [`suspend`] and [`clear`] act on (once per process).
    pub fn install(&self) {
        let _ = BAR.set(self.bar.clone());
    }

    /// Shows the bar on stderr if `visible` (not `--quiet`) and stderr is a terminal.
    /// `color`: the spinner in colour (pass false for `NO_COLOR`).
    pub fn start(&self, visible: bool, color: bool) {
        *lock(&self.shared.started) = Instant::now();
        if !visible || !std::io::stderr().is_terminal() {
            return;
        }
        *lock(&self.shared.color) = color;
        let template = if color {
            "{spinner:.cyan} {wide_msg}"
        } else {
            "{spinner} {wide_msg}"
        };
        let style = ProgressStyle::with_template(template)
            .expect("a valid template")
            .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ ");
        self.bar.set_style(style);
        self.bar.set_draw_target(ProgressDrawTarget::stderr());
        self.bar.enable_steady_tick(Duration::from_millis(100));
        self.refresh();
    }

    /// Requests at a provider right now (sent, not answered).
    pub fn requests_in_flight(&self) -> u64 {
        lock(&self.shared.state).requests_in_flight
    }

    /// Pages the run took from the listing, as the events said.
    pub fn pages_taken(&self) -> u64 {
        lock(&self.shared.state).taken
    }

    /// Takes one event into account (the line is redrawn on the next tick).
    pub fn observe(&self, event: &Event) {
        let now = Instant::now();
        lock(&self.shared.state).observe(event, now);
    }

    /// Follows the run's events and redraws the line every 100 ms (for the clock and the
    /// countdowns), until dropped.
    pub async fn follow(&self, events: &mut UnboundedReceiver<Event>) -> std::convert::Infallible {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut open = true;
        loop {
            tokio::select! {
                event = events.recv(), if open => match event {
                    Some(event) => self.observe(&event),
                    None => open = false,
                },
                _ = tick.tick() => self.refresh(),
            }
        }
    }

    /// Takes the events already sent and not yet seen (once the run is over).
    pub fn drain(&self, events: &mut UnboundedReceiver<Event>) {
        while let Ok(event) = events.try_recv() {
            self.observe(&event);
        }
        self.refresh();
    }

    fn refresh(&self) {
        self.bar.set_message(self.line(Instant::now()));
    }

    fn line(&self, now: Instant) -> String {
        let mut state = lock(&self.shared.state);
        if let Some(batch) = &state.batch {
            return batch.clone();
        }
        let wait = state.waits.reason(now);
        status_line(
            state.done,
            state.taken,
            state.total,
            now.saturating_duration_since(*lock(&self.shared.started)),
            wait.as_deref(),
        )
    }
}

impl State {
    fn observe(&mut self, event: &Event, now: Instant) {
        let waits = &mut self.waits;
        match event {
            Event::Listed { taken } => {
                self.taken = *taken;
                self.batch = None;
            }
            Event::ListingEnded { total } => self.total = Some(*total),
            Event::Page(_) => self.done += 1,
            Event::Sent { .. } => self.requests_in_flight += 1,
            Event::Answered { provider, ok } => {
                self.requests_in_flight = self.requests_in_flight.saturating_sub(1);
                if *ok && waits.unavailable.as_ref().is_some_and(|u| u.0 == *provider) {
                    waits.unavailable = None;
                }
            }
            Event::Wait {
                provider,
                reason: WaitReason::Cooldown429,
                until: Some(until),
            } => {
                waits.cooldowns.insert(provider, *until);
            }
            Event::Retry { provider, kind, .. } => {
                let text = match kind {
                    LlmErrorKind::RateLimited { .. } | LlmErrorKind::QuotaExhausted => {
                        format!("cooling down ({provider} 429)")
                    }
                    _ => format!("retrying ({provider})"),
                };
                waits.sticky = Some((text, now + STICKY));
            }
            Event::Fallback { from, .. } => {
                waits.sticky = Some((format!("falling back from {from}"), now + STICKY));
                // The next provider is doing the work: nobody waits for this one.
                if waits.unavailable.as_ref().is_some_and(|u| u.0 == *from) {
                    waits.unavailable = None;
                }
            }
            Event::Unavailable { provider, reason } => {
                waits.unavailable = Some((provider, reason.clone()));
            }
            Event::Pacing { provider, rpm } => waits.pacing = Some((provider, *rpm)),
            Event::BatchJobs {
                jobs,
                total,
                succeeded,
                failed,
            } => {
                self.batch = Some(batch_line(*jobs, *total, *succeeded, *failed));
            }
            Event::Wait { .. } | Event::Classifying { .. } | Event::Finished { .. } => {}
        }
    }
}

/// The line shown while `--wait` waits for batch jobs.
pub fn batch_line(jobs: usize, total: u64, succeeded: u64, failed: u64) -> String {
    let job_s = if jobs == 1 { "job" } else { "jobs" };
    format!(
        "waiting for {jobs} batch {job_s}: {succeeded}/{total} requests answered, {failed} failed"
    )
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The text after the spinner. Before the listing ends only counts are known
/// ("12 done · 40 listed so far"); after, "12/40 pages" and, once a few pages are done, an
/// ETA.
pub fn status_line(
    done: u64,
    listed: u64,
    total: Option<u64>,
    elapsed: Duration,
    wait: Option<&str>,
) -> String {
    let mut s = match total {
        Some(total) => format!("{done}/{total} pages"),
        None => format!("{done} done · {listed} listed so far"),
    };
    let secs = elapsed.as_secs_f64();
    let rate = if secs >= 1.0 && done > 0 {
        Some(done as f64 / secs)
    } else {
        None
    };
    if let Some(rate) = rate {
        let _ = write!(s, " · {} pages/s", rate_text(rate));
    }
    let _ = write!(s, " · {}", clock(elapsed));
    // An ETA only from a real total and a rate measured over a few pages.
    if let (Some(total), Some(rate)) = (total, rate) {
        if done >= 3 && total > done {
            let left = Duration::from_secs_f64((total - done) as f64 / rate);
            if left >= Duration::from_secs(1) {
                let _ = write!(s, " · ETA {}", clock(left));
            }
        }
    }
    if let Some(wait) = wait {
        let _ = write!(s, " · {wait}");
    }
    s
}

fn rate_text(rate: f64) -> String {
    if rate >= 10.0 {
        format!("{rate:.0}")
    } else {
        format!("{rate:.1}")
    }
}

/// `42s`, `3m05s`, `1h02m`.
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

impl Waits {
    /// What the providers are waiting for, if anything worth showing: a cooldown with its
    /// countdown, else a provider that cannot be called while nobody else does the work, else
    /// a recent retry or fallback (for [`STICKY`]), else the pace of the provider at work.
    fn reason(&mut self, now: Instant) -> Option<String> {
        if let Some((provider, until)) = self
            .cooldowns
            .iter()
            .filter(|(_, until)| **until > now)
            .max_by_key(|(_, until)| **until)
        {
            let left = until.saturating_duration_since(now).as_secs_f64().ceil() as u64;
            return Some(format!("cooling down {left}s ({provider} 429)"));
        }
        if let Some((provider, why)) = &self.unavailable {
            return Some(format!("{provider} unavailable: {why}"));
        }
        match &self.sticky {
            Some((text, until)) if *until > now => return Some(text.clone()),
            _ => self.sticky = None,
        }
        let (provider, rpm) = self.pacing?;
        Some(format!("pacing {provider} to {rpm:.0} rpm"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_shows_counts_until_the_total_is_known_then_an_eta() {
        let s = status_line(0, 0, None, Duration::ZERO, None);
        assert_eq!(s, "0 done · 0 listed so far · 0s");
        let s = status_line(12, 40, None, Duration::from_secs(4), None);
        assert_eq!(s, "12 done · 40 listed so far · 3.0 pages/s · 4s");
        let s = status_line(
            12,
            40,
            Some(100),
            Duration::from_secs(4),
            Some("cooling down 12s (gemini 429)"),
        );
        assert_eq!(
            s,
            "12/100 pages · 3.0 pages/s · 4s · ETA 29s · cooling down 12s (gemini 429)"
        );
        // Too few pages for an ETA; none once everything is done.
        assert!(!status_line(2, 2, Some(10), Duration::from_secs(2), None).contains("ETA"));
        assert!(!status_line(10, 10, Some(10), Duration::from_secs(2), None).contains("ETA"));
        assert_eq!(clock(Duration::from_secs(185)), "3m05s");
        assert_eq!(clock(Duration::from_secs(3720)), "1h02m");
    }

    fn page_done() -> Event {
        Event::Page(Arc::new(crate::pipeline::PageOutcome {
            id: "1".into(),
            title: "t".into(),
            url: None,
            status: crate::pipeline::Status::Unchanged,
            labels_before: vec![],
            chosen: vec![],
            added: vec![],
            removed: vec![],
            provider: None,
            reason: None,
            version: None,
            content_hash: None,
        }))
    }

    #[test]
    fn no_total_or_eta_until_the_run_says_how_many_pages_it_takes() {
        let p = Progress::new();
        p.observe(&Event::Listed { taken: 60 });
        for _ in 0..40 {
            p.observe(&page_done());
        }
        let later = *lock(&p.shared.started) + Duration::from_secs(10);
        let line = p.line(later);
        assert!(line.starts_with("40 done · 60 listed so far"), "{line}");
        assert!(!line.contains("ETA") && !line.contains("/600"), "{line}");
        p.observe(&Event::ListingEnded { total: 600 });
        let line = p.line(later);
        assert!(
            line.starts_with("40/600 pages") && line.contains("ETA"),
            "{line}"
        );
        assert_eq!(p.pages_taken(), 60);
    }

    #[test]
    fn a_cooldown_counts_down() {
        let p = Progress::new();
        let now = Instant::now();
        p.observe(&Event::Wait {
            provider: "gemini",
            reason: WaitReason::Cooldown429,
            until: Some(now + Duration::from_millis(11_200)),
        });
        // Other waits are not shown as a cooldown.
        p.observe(&Event::Wait {
            provider: "openai",
            reason: WaitReason::Preflight,
            until: Some(now + Duration::from_secs(60)),
        });
        assert!(p.line(now).ends_with("cooling down 12s (gemini 429)"));
        assert!(!p.line(now + Duration::from_secs(12)).contains("cooling"));
    }

    #[test]
    fn a_retry_or_fallback_shows_for_a_while_then_the_pace() {
        let mut s = State::default();
        let now = Instant::now();
        let kind = LlmErrorKind::RateLimited { retry_after: None };
        let retry = |kind| Event::Retry {
            provider: "gemini",
            attempt: 1,
            kind,
        };
        s.observe(&retry(kind), now);
        assert_eq!(
            s.waits.reason(now).as_deref(),
            Some("cooling down (gemini 429)")
        );
        s.observe(
            &Event::Pacing {
                provider: "gemini",
                rpm: 59.6,
            },
            now,
        );
        let later = now + Duration::from_secs(1);
        assert_eq!(
            s.waits.reason(later).as_deref(),
            Some("cooling down (gemini 429)")
        );
        let gone = now + Duration::from_secs(3);
        assert_eq!(
            s.waits.reason(gone).as_deref(),
            Some("pacing gemini to 60 rpm")
        );
        s.observe(&retry(LlmErrorKind::Timeout), gone);
        assert_eq!(s.waits.reason(gone).as_deref(), Some("retrying (gemini)"));
        let fallback = Event::Fallback {
            from: "gemini",
            to: "openai",
            pages: 2,
        };
        s.observe(&fallback, gone);
        assert_eq!(
            s.waits.reason(gone).as_deref(),
            Some("falling back from gemini")
        );
    }

    #[test]
    fn an_unavailable_provider_shows_until_another_takes_the_work() {
        let mut s = State::default();
        let now = Instant::now();
        let down = Event::Unavailable {
            provider: "gemini",
            reason: "quota exhausted earlier in this run".into(),
        };
        s.observe(&down, now);
        assert_eq!(
            s.waits.reason(now).as_deref(),
            Some("gemini unavailable: quota exhausted earlier in this run")
        );
        let fallback = Event::Fallback {
            from: "gemini",
            to: "openai",
            pages: 1,
        };
        s.observe(&fallback, now);
        assert_eq!(
            s.waits.reason(now).as_deref(),
            Some("falling back from gemini")
        );
        s.observe(&down, now);
        s.observe(
            &Event::Answered {
                provider: "gemini",
                ok: true,
            },
            now,
        );
        assert_eq!(s.waits.reason(now + STICKY), None);
    }

    #[test]
    fn requests_in_flight_follow_what_was_sent_and_answered() {
        let p = Progress::new();
        p.observe(&Event::Sent { provider: "gemini" });
        p.observe(&Event::Sent { provider: "gemini" });
        p.observe(&Event::Answered {
            provider: "gemini",
            ok: false,
        });
        assert_eq!(p.requests_in_flight(), 1);
        // Hidden bar: redrawing and suspending are harmless.
        p.refresh();
        assert_eq!(suspend(|| 7), 7);
    }
}
