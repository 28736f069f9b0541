//! Log setup: `tracing` to stderr, filtered by `-q`/`-v`/`-vv` or `RUST_LOG`.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Default level: warnings (one line per notable event:
/// retry, cooldown, fallback, failure). `RUST_LOG` overrides the flags.
pub fn init(quiet: bool, verbose: u8) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    // Our crate at the chosen level; dependencies (hyper, reqwest) one notch quieter.
    let default = format!("{level},hyper=warn,reqwest=warn,rustls=warn,h2=warn");
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(ansi)
        .try_init();
}
