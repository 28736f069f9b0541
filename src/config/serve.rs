//! The settings of `tag-space serve`: the service's own (address, token, task slots,
//! retention) and the run settings every task starts from.

use std::net::SocketAddr;
use std::time::Duration;

use super::{Config, ConfigError, sources};
use crate::cli::{Args, ServeArgs};
use crate::secret::Secret;

/// What `tag-space serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub bind: SocketAddr,
    /// `TAG_SPACE_SERVE_TOKEN`; never shown.
    pub token: Option<Secret>,
    /// Tasks running at once.
    pub tasks: usize,
    /// Ended tasks are forgotten after this.
    pub retention: Duration,
    /// The settings each task's run starts from; its space, dry run, mode, limit and batch
    /// size come from the request. `space` is a placeholder here.
    pub run: Config,
}

/// The space key the run settings are read under: a request names the real one.
const PLACEHOLDER_SPACE: &str = "SERVE";

/// The run flags a `serve` command implies, as if given to a run.
pub fn run_args(args: &Args, serve: &ServeArgs) -> Args {
    let mut run = args.clone();
    run.command = None;
    run.demo = serve.demo;
    run.space = if serve.demo {
        Vec::new()
    } else {
        vec![PLACEHOLDER_SPACE.to_string()]
    };
    run.demo_delay_ms = serve.demo_delay_ms;
    run.env_file.clone_from(&serve.env_file);
    run.cache_path.clone_from(&serve.cache_path);
    run.taxonomy.clone_from(&serve.taxonomy);
    run.fallback = serve.fallback;
    run.verbose = serve.verbose;
    run.log_format = serve.log_format;
    // Tasks print nothing on stdout: their outcomes are in the service's answers.
    run.quiet = false;
    run
}

/// Reads the environment and the env file as a run does.
pub fn serve_config(args: &Args, serve: &ServeArgs) -> Result<ServeConfig, ConfigError> {
    let run_args = run_args(args, serve);
    let get = sources::trimmed(sources::process(&run_args)?);
    from_sources(&run_args, serve, get)
}

/// Pure: as [`serve_config`], from a variable lookup.
pub fn from_sources(
    run_args: &Args,
    serve: &ServeArgs,
    get: impl Fn(&str) -> Option<String>,
) -> Result<ServeConfig, ConfigError> {
    let get = sources::trimmed(get);
    let tasks = sources::setting(
        serve.tasks,
        "--tasks",
        "TAG_SPACE_SERVE_TASKS",
        &get,
        2,
        1,
        64,
        "2",
    )?;
    let days: u64 = sources::setting(
        None,
        "",
        "TAG_SPACE_SERVE_RETENTION_DAYS",
        &get,
        30,
        1,
        3650,
        "30",
    )?;
    let token = get("TAG_SPACE_SERVE_TOKEN").map(Secret::new);
    let run = Config::from_sources(run_args, &get)?;
    Ok(ServeConfig {
        bind: serve.bind,
        token,
        tasks,
        retention: Duration::from_secs(days * 86_400),
        run,
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn serve_args(extra: &[&str]) -> (Args, ServeArgs) {
        let args = Args::parse_from(["tag-space", "serve", "--demo"].iter().chain(extra));
        let Some(crate::cli::Command::Serve(s)) = args.command.clone() else {
            panic!("not serve")
        };
        (args, s)
    }

    #[test]
    fn the_service_settings_default_and_are_checked() {
        let (args, s) = serve_args(&[]);
        let c = from_sources(&run_args(&args, &s), &s, |_| None).unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:8080");
        assert_eq!((c.tasks, c.retention.as_secs()), (2, 30 * 86_400));
        assert!(c.token.is_none() && c.run.demo);
        let env = |k: &str| match k {
            "TAG_SPACE_SERVE_TOKEN" => Some("made-up-token".to_string()),
            "TAG_SPACE_SERVE_RETENTION_DAYS" => Some("7".to_string()),
            _ => None,
        };
        let (args, s) = serve_args(&["--tasks", "5", "--bind", "0.0.0.0:9000"]);
        let c = from_sources(&run_args(&args, &s), &s, env).unwrap();
        assert_eq!((c.tasks, c.retention.as_secs()), (5, 7 * 86_400));
        assert!(
            !format!("{c:?}").contains("made-up-token"),
            "the token shows in Debug"
        );
        let e = from_sources(&run_args(&args, &s), &s, |k| {
            (k == "TAG_SPACE_SERVE_TASKS").then(|| "many".to_string())
        });
        // --tasks wins over the variable.
        assert!(e.is_ok());
        let (args, s) = serve_args(&[]);
        let e = from_sources(&run_args(&args, &s), &s, |k| {
            (k == "TAG_SPACE_SERVE_TASKS").then(|| "many".to_string())
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("TAG_SPACE_SERVE_TASKS=\"many\" is invalid"),
            "{e}"
        );
    }
}
