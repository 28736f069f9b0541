//! The live progress line on stderr: pages done out of pages listed (a real total once the
//! listing has ended), rate, ETA when it means something, and what the providers are
//! waiting for ("cooling down 12s (gemini 429)").
//!
//! The bar is drawn only when stderr is a terminal and the run is not `--quiet`; otherwise
//! (cron, CI, tests) it is hidden and costs nothing. Everything else that writes to the
//! terminal while it may be drawn (log lines, per-page lines, warnings) goes through
//! [`suspend`], which clears the bar, writes, and redraws it, so nothing tears it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::Context;

use crate::governor::ProviderStats;

/// The process's bar, once [`Progress::install`] ran: what [`suspend`] clears.
static BAR: OnceLock<ProgressBar> = OnceLock::new();

/// How long an event seen only in the counters (a retry, a 429 without a logged wait) stays
/// on the line.
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

/// Counters the run updates and the bar reads. Cheap to clone; all clones are one bar.
#[derive(Clone)]
pub struct Progress {
    bar: ProgressBar,
    shared: Arc<Shared>,
}

struct Shared {
    /// Pages the pipeline has taken from the listing ([`crate::pipeline::RunOptions::listed`]).
    listed: Arc<AtomicU64>,
    done: AtomicU64,
    /// The pages the run takes, once it will take no more (the pipeline sets it when the
    /// listing ends or `--limit` is reached); `None` until then, and then no total or ETA.
    total: Arc<OnceLock<u64>>,
    /// Requests sent to a provider and not yet answered, at the last [`Progress::update`].
    requests_in_flight: AtomicU64,
    /// Provider-wide pauses the governor logged (`provider`, `wait_ms`): until when.
    cooldowns: Mutex<BTreeMap<String, Instant>>,
    watch: Mutex<Watch>,
    started: Mutex<Instant>,
    color: Mutex<bool>,
}

/// What the last stats snapshot showed, to see what changed since.
#[derive(Default)]
struct Watch {
    prev: Vec<ProviderStats>,
    sticky: Option<(String, Instant)>,
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
                listed: Arc::new(AtomicU64::new(0)),
                done: AtomicU64::new(0),
                total: Arc::new(OnceLock::new()),
                requests_in_flight: AtomicU64::new(0),
                cooldowns: Mutex::new(BTreeMap::new()),
                watch: Mutex::new(Watch::default()),
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
        self.refresh(Instant::now());
    }

    /// The counter to hand the pipeline as `RunOptions::listed`.
    pub fn listed_counter(&self) -> Arc<AtomicU64> {
        self.shared.listed.clone()
    }

    /// One page has its outcome.
    pub fn page_done(&self) {
        self.shared.done.fetch_add(1, Ordering::Relaxed);
    }

    /// The cell to hand the pipeline as `RunOptions::total`.
    pub fn total_cell(&self) -> Arc<OnceLock<u64>> {
        self.shared.total.clone()
    }

    /// Requests at a provider right now (sent, not answered), as of the last update.
    pub fn requests_in_flight(&self) -> u64 {
        self.shared.requests_in_flight.load(Ordering::Relaxed)
    }

    /// Reads a fresh snapshot of the providers' counters and redraws the line.
    pub fn update(&self, stats: &[ProviderStats]) {
        let now = Instant::now();
        let in_flight: u64 = stats
            .iter()
            .map(|s| s.calls.saturating_sub(s.successes + s.failed_calls()))
            .sum();
        self.shared
            .requests_in_flight
            .store(in_flight, Ordering::Relaxed);
        {
            let cooldowns = lock(&self.shared.cooldowns).clone();
            let mut watch = lock(&self.shared.watch);
            let w = &mut *watch;
            let reason = wait_reason(now, &cooldowns, &w.prev, stats, &mut w.sticky);
            w.prev = stats.to_vec();
            drop(watch);
            self.bar.set_message(self.line(now, reason.as_deref()));
        }
    }

    fn refresh(&self, now: Instant) {
        self.bar.set_message(self.line(now, None));
    }

    fn line(&self, now: Instant, wait: Option<&str>) -> String {
        let s = &self.shared;
        status_line(
            s.done.load(Ordering::Relaxed),
            s.listed.load(Ordering::Relaxed),
            s.total.get().copied(),
            now.saturating_duration_since(*lock(&s.started)),
            wait,
        )
    }

    /// Notes a provider-wide pause the governor announced (for the countdown).
    fn cooldown(&self, provider: &str, wait: Duration) {
        lock(&self.shared.cooldowns).insert(provider.to_string(), Instant::now() + wait);
    }

    /// A `tracing` layer that reads the governor's cooldown events (fields `provider` and
    /// `wait_ms`) so that the line can count the pause down. It writes nothing.
    pub fn layer(&self) -> CooldownLayer {
        CooldownLayer {
            progress: self.clone(),
        }
    }
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

/// What the providers are waiting for, if anything worth showing:
/// a logged cooldown with its countdown, else a provider that is unavailable, else a 429 or
/// a retry seen in the counters since the last snapshot (kept for [`STICKY`]).
fn wait_reason(
    now: Instant,
    cooldowns: &BTreeMap<String, Instant>,
    prev: &[ProviderStats],
    cur: &[ProviderStats],
    sticky: &mut Option<(String, Instant)>,
) -> Option<String> {
    if let Some((provider, until)) = cooldowns
        .iter()
        .filter(|(_, until)| **until > now)
        .max_by_key(|(_, until)| **until)
    {
        let left = until.saturating_duration_since(now).as_secs_f64().ceil() as u64;
        return Some(format!("cooling down {left}s ({provider} 429)"));
    }
    for s in cur {
        let before = prev.iter().find(|p| p.provider == s.provider);
        let grew = |f: fn(&ProviderStats) -> u64| before.is_none_or(|b| f(s) > f(b)) && f(s) > 0;
        if grew(|s| s.rate_limited) {
            *sticky = Some((format!("cooling down ({} 429)", s.provider), now + STICKY));
        } else if grew(|s| s.retries) {
            *sticky = Some((format!("retrying ({})", s.provider), now + STICKY));
        } else if grew(|s| s.fallbacks) {
            *sticky = Some((format!("falling back from {}", s.provider), now + STICKY));
        }
    }
    if let Some(s) = cur.iter().find(|s| s.unavailable.is_some()) {
        // Only while someone would be waiting: the next provider may be doing the work.
        let last = cur.last().is_some_and(|l| l.provider == s.provider);
        if last {
            return Some(format!(
                "{} unavailable: {}",
                s.provider,
                s.unavailable.as_deref().unwrap_or_default()
            ));
        }
    }
    match sticky {
        Some((text, until)) if *until > now => return Some(text.clone()),
        _ => *sticky = None,
    }
    // Otherwise, the pace of the provider doing the work, when it is paced to a quota.
    let working = cur.iter().find(|s| s.unavailable.is_none())?;
    let rpm = working.paced_rpm?;
    Some(format!("pacing {} to {rpm:.0} rpm", working.provider))
}

/// See [`Progress::layer`].
pub struct CooldownLayer {
    progress: Progress,
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CooldownLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        #[derive(Default)]
        struct Fields {
            provider: Option<String>,
            wait_ms: Option<u64>,
        }
        impl Visit for Fields {
            fn record_str(&mut self, field: &Field, value: &str) {
                if field.name() == "provider" {
                    self.provider = Some(value.to_string());
                }
            }
            fn record_u64(&mut self, field: &Field, value: u64) {
                if field.name() == "wait_ms" {
                    self.wait_ms = Some(value);
                }
            }
            fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
        }
        let mut f = Fields::default();
        event.record(&mut f);
        if let (Some(provider), Some(ms)) = (f.provider, f.wait_ms) {
            self.progress.cooldown(&provider, Duration::from_millis(ms));
        }
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

    #[test]
    fn no_total_or_eta_until_the_run_says_how_many_pages_it_takes() {
        let p = Progress::new();
        p.listed_counter().store(60, Ordering::Relaxed);
        for _ in 0..40 {
            p.page_done();
        }
        let later = *lock(&p.shared.started) + Duration::from_secs(10);
        let line = p.line(later, None);
        assert!(line.starts_with("40 done · 60 listed so far"), "{line}");
        assert!(!line.contains("ETA") && !line.contains("/600"), "{line}");
        p.total_cell().set(600).unwrap();
        let line = p.line(later, None);
        assert!(
            line.starts_with("40/600 pages") && line.contains("ETA"),
            "{line}"
        );
    }

    fn stats(provider: &'static str, f: impl FnOnce(&mut ProviderStats)) -> ProviderStats {
        let mut s = ProviderStats::new(provider);
        f(&mut s);
        s
    }

    #[test]
    fn a_logged_cooldown_counts_down() {
        let now = Instant::now();
        let mut cd = BTreeMap::new();
        cd.insert("gemini".to_string(), now + Duration::from_millis(11_200));
        let mut sticky = None;
        let r = wait_reason(now, &cd, &[], &[stats("gemini", |_| {})], &mut sticky);
        assert_eq!(r.as_deref(), Some("cooling down 12s (gemini 429)"));
        let later = now + Duration::from_secs(12);
        let r = wait_reason(later, &cd, &[], &[stats("gemini", |_| {})], &mut sticky);
        assert_eq!(r, None);
    }

    #[test]
    fn counters_show_a_429_or_retry_for_a_while() {
        let now = Instant::now();
        let none = BTreeMap::new();
        let mut sticky = None;
        let before = [stats("gemini", |_| {}), stats("openai", |_| {})];
        let after = [
            stats("gemini", |s| s.rate_limited = 1),
            stats("openai", |_| {}),
        ];
        let r = wait_reason(now, &none, &before, &after, &mut sticky);
        assert_eq!(r.as_deref(), Some("cooling down (gemini 429)"));
        // Nothing new: still shown for a moment, then gone.
        let r = wait_reason(
            now + Duration::from_secs(1),
            &none,
            &after,
            &after,
            &mut sticky,
        );
        assert_eq!(r.as_deref(), Some("cooling down (gemini 429)"));
        let r = wait_reason(
            now + Duration::from_secs(3),
            &none,
            &after,
            &after,
            &mut sticky,
        );
        assert_eq!(r, None);
        let paced = [stats("gemini", |s| s.paced_rpm = Some(59.6))];
        let r = wait_reason(now, &none, &paced, &paced, &mut sticky);
        assert_eq!(r.as_deref(), Some("pacing gemini to 60 rpm"));
        let retried = [stats("gemini", |s| {
            s.rate_limited = 1;
            s.retries = 1
        })];
        let r = wait_reason(now, &none, &after[..1], &retried, &mut sticky);
        assert_eq!(r.as_deref(), Some("retrying (gemini)"));
    }

    #[test]
    fn the_last_provider_unavailable_is_shown() {
        let now = Instant::now();
        let mut sticky = None;
        let cur = [stats("gemini", |s| {
            s.unavailable = Some("quota exhausted earlier in this run".into())
        })];
        let r = wait_reason(now, &BTreeMap::new(), &cur, &cur, &mut sticky);
        assert_eq!(
            r.as_deref(),
            Some("gemini unavailable: quota exhausted earlier in this run")
        );
        // With a fallback doing the work, nobody is waiting.
        let cur = [cur[0].clone(), stats("openai", |_| {})];
        assert_eq!(
            wait_reason(now, &BTreeMap::new(), &cur, &cur, &mut sticky),
            None
        );
    }

    #[test]
    fn the_layer_reads_the_governors_cooldown_fields() {
        use tracing_subscriber::layer::SubscriberExt;
        let p = Progress::new();
        let sub = tracing_subscriber::registry().with(p.layer());
        tracing::subscriber::with_default(sub, || {
            tracing::warn!(
                provider = "gemini",
                wait_ms = 5000u64,
                "rate limited: pausing the provider"
            );
            tracing::warn!(provider = "openai", "unrelated");
        });
        let cd = lock(&p.shared.cooldowns).clone();
        assert_eq!(cd.keys().collect::<Vec<_>>(), ["gemini"]);
        // Hidden bar: updating and suspending are harmless.
        p.update(&[stats("gemini", |s| s.calls = 2)]);
        assert_eq!(p.requests_in_flight(), 2);
        assert!(p.bar.message().contains("cooling down 5s (gemini 429)"));
    }
}
