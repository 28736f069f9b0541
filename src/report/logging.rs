//! Log setup: `tracing` to stderr, filtered by `-q`/`-v`/`-vv` or `RUST_LOG`, as text for
//! people or JSON lines for a log shipper (`--log-format json`). Lines go through the
//! progress bar ([`super::progress::suspend`]) so that they never tear it.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use super::progress::suspend;

/// How log lines are written on stderr (`--log-format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, fields, message).
    Json,
}

/// How much is logged and how (`-q`, `-v`/`-vv`, `--log-format`); `RUST_LOG` overrides the
/// level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogSettings {
    /// Only errors (and, from the app, the final table and failed pages).
    pub quiet: bool,
    /// `-v` (info) or `-vv` (debug).
    pub verbose: u8,
    pub format: LogFormat,
}

/// Set by [`init`] with `--log-format json`: then everything on stderr is a JSON line.
static JSON_LOGS: AtomicBool = AtomicBool::new(false);

/// Whether stderr carries JSON lines only ([`super::error_line`] and
/// [`super::warning_line`] then log instead of printing).
pub fn json_logs() -> bool {
    JSON_LOGS.load(Ordering::Relaxed)
}

/// The filter for `-q`/`-v`/`-vv`: our crate at the chosen level; dependencies (hyper,
/// reqwest) one notch quieter.
fn default_filter(quiet: bool, verbose: u8) -> String {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    format!("{level},hyper=warn,reqwest=warn,rustls=warn,h2=warn")
}

/// Installs the global subscriber. Default level: warnings (one line per notable event:
/// retry, cooldown, fallback, failure). `RUST_LOG` overrides the flags. (The progress bar
/// reads no log line: it follows the run's events, [`crate::events`].)
pub fn init(settings: &LogSettings) {
    let format = settings.format;
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| EnvFilter::new(default_filter(settings.quiet, settings.verbose)));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(BarWriter)
        .with_target(false);
    let fmt = match format {
        LogFormat::Text => fmt.with_ansi(ansi).boxed(),
        // JSON never carries escape codes.
        LogFormat::Json => fmt.json().with_ansi(false).with_current_span(false).boxed(),
    };
    let installed = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .try_init();
    if installed.is_ok() && format == LogFormat::Json {
        JSON_LOGS.store(true, Ordering::Relaxed);
    }
}

/// stderr, written with the progress bar cleared.
#[derive(Clone, Copy)]
struct BarWriter;

impl Write for BarWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // The formatter hands over one whole line per call.
        suspend(|| io::stderr().lock().write_all(buf)).map(|()| buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for BarWriter {
    type Writer = BarWriter;
    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_map_to_levels() {
        assert!(default_filter(true, 2).starts_with("error,"));
        assert!(default_filter(false, 0).starts_with("warn,"));
        assert!(default_filter(false, 1).starts_with("info,"));
        assert!(default_filter(false, 5).starts_with("debug,"));
    }
}
