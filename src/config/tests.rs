//! The configuration from flags and a variable map, as `Config::from_sources` builds it.

use super::*;
use crate::cli::Args;
use crate::confluence::{ConfluenceAuth, Flavor};
use clap::Parser;
use std::collections::HashMap;

fn load(argv: &[&str], vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let args =
        Args::try_parse_from(std::iter::once("tag-space").chain(argv.iter().copied())).unwrap();
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_sources(&args, |k| map.get(k).cloned())
}

const CLOUD: &[(&str, &str)] = &[
    ("CONFLUENCE_BASE_URL", "https://acme.atlassian.net/wiki/"),
    ("CONFLUENCE_EMAIL", "bot@acme.test"),
    ("CONFLUENCE_API_TOKEN", "tok-SECRET-123"),
    ("GEMINI_API_KEY", "gem-SECRET-456"),
];

#[test]
fn cloud_defaults() {
    let c = load(&["--space", "ENG"], CLOUD).unwrap();
    let conf = c.confluence.as_ref().unwrap();
    assert_eq!(conf.flavor, Flavor::Cloud);
    assert_eq!(conf.root, "https://acme.atlassian.net");
    assert_eq!(c.batch_size, 5);
    assert_eq!((c.concurrency, c.max_concurrency), (3, 6));
    assert!(c.cache.enabled);
    assert_eq!(c.cache.size, 1000);
    let g = c.gemini.as_ref().unwrap();
    assert_eq!(g.model, DEFAULT_GEMINI_MODEL);
    assert_eq!(g.base_url, DEFAULT_GEMINI_BASE_URL);
    assert_eq!(c.gemini_quota, Quota::default());
    assert!(c.openai.is_none());
    assert!(c.warnings.is_empty());
}

#[test]
fn the_lock_dir_never_follows_the_state_file() {
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut vars = CLOUD.to_vec();
        vars.extend_from_slice(extra);
        load(&["--space", "ENG"], &vars).unwrap().lock_dir
    };
    // A state path of `/tmp` once put the lock at `/locks/ENG.lock`.
    let home = [("HOME", "/home/a"), ("TAG_SPACE_CACHE_PATH", "/tmp")];
    assert_eq!(
        with(&home),
        Some(PathBuf::from("/home/a/.cache/tag-space/locks"))
    );
    assert_eq!(
        with(&[("HOME", "/home/a"), ("TAG_SPACE_CACHE_PATH", "/x/other.db")]),
        with(&[("HOME", "/home/a")])
    );
    assert_eq!(
        with(&[("XDG_CACHE_HOME", "/c"), ("HOME", "/home/a")]),
        Some(PathBuf::from("/c/tag-space/locks"))
    );
    assert_eq!(
        with(&[("TAG_SPACE_LOCK_DIR", "/run/locks"), ("HOME", "/home/a")]),
        Some(PathBuf::from("/run/locks"))
    );
    assert_eq!(with(&[("TAG_SPACE_CACHE_PATH", "/tmp/s.db")]), None);
}

#[test]
fn secrets_never_show_in_debug() {
    let c = load(&["--space", "ENG"], CLOUD).unwrap();
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("SECRET"), "{dbg}");
    assert!(dbg.contains("Secret(***)"));
}

#[test]
fn datacenter_is_inferred_from_a_pat_and_keeps_its_context_path() {
    let c = load(
        &["--space", "OPS"],
        &[
            (
                "CONFLUENCE_BASE_URL",
                "https://confluence.acme.test/confluence/",
            ),
            ("CONFLUENCE_PAT", "pat"),
            ("OPENAI_API_KEY", "k"),
        ],
    )
    .unwrap();
    let conf = c.confluence.unwrap();
    assert_eq!(conf.flavor, Flavor::DataCenter);
    assert_eq!(conf.root, "https://confluence.acme.test/confluence");
    assert!(matches!(conf.auth, ConfluenceAuth::Bearer(_)));
    assert_eq!(c.openai.unwrap().base_url, DEFAULT_OPENAI_BASE_URL);
}

#[test]
fn flags_beat_variables() {
    let mut vars = CLOUD.to_vec();
    vars.push(("TAG_SPACE_BATCH_SIZE", "9"));
    assert_eq!(load(&["--space", "ENG"], &vars).unwrap().batch_size, 9);
    assert_eq!(
        load(&["--space", "ENG", "--batch-size", "2"], &vars)
            .unwrap()
            .batch_size,
        2
    );
}

#[test]
fn bad_values_name_the_setting_and_show_an_example() {
    let mut vars = CLOUD.to_vec();
    vars.push(("TAG_SPACE_BATCH_SIZE", "five"));
    let e = load(&["--space", "ENG"], &vars).unwrap_err().to_string();
    assert_eq!(
        e,
        "TAG_SPACE_BATCH_SIZE=\"five\" is invalid: not a whole number (e.g. TAG_SPACE_BATCH_SIZE=5)"
    );

    let e = load(&["--space", "ENG", "--batch-size", "0"], CLOUD)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("--batch-size=\"0\" is invalid: must be between 1 and 100"),
        "{e}"
    );

    let mut vars = CLOUD.to_vec();
    vars.push(("TAG_SPACE_GEMINI_RPM", "0"));
    let e = load(&["--space", "ENG"], &vars).unwrap_err().to_string();
    assert!(
        e.contains("TAG_SPACE_GEMINI_RPM") && e.contains("e.g. TAG_SPACE_GEMINI_RPM=60"),
        "{e}"
    );

    let mut vars = CLOUD.to_vec();
    vars.push(("TAG_SPACE_CACHE_ENABLED", "maybe"));
    assert!(
        load(&["--space", "ENG"], &vars)
            .unwrap_err()
            .to_string()
            .contains("TAG_SPACE_CACHE_ENABLED")
    );

    let mut vars = CLOUD.to_vec();
    vars.push(("TAG_SPACE_AI_CONCURRENCY", "8"));
    assert!(
        load(&["--space", "ENG"], &vars)
            .unwrap_err()
            .to_string()
            .starts_with("TAG_SPACE_MAX_AI_CONCURRENCY")
    );
}

#[test]
fn missing_settings_say_what_to_set() {
    let e = load(&["--space", "ENG"], &[]).unwrap_err().to_string();
    assert!(e.starts_with("CONFLUENCE_BASE_URL is not set"), "{e}");
    let e = load(&["--space", "ENG"], &CLOUD[..1])
        .unwrap_err()
        .to_string();
    assert!(e.contains("CONFLUENCE_PAT"), "{e}");
    let e = load(&["--space", "ENG"], &CLOUD[..3]).unwrap_err();
    assert!(matches!(e, ConfigError::NoProvider));
    let e = load(&["--space", "ENG"], &CLOUD[..2])
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("CONFLUENCE_API_TOKEN is not set"), "{e}");
}

#[test]
fn base_urls_are_checked() {
    let mut vars = CLOUD.to_vec();
    vars[0] = ("CONFLUENCE_BASE_URL", "acme.atlassian.net");
    assert!(
        load(&["--space", "ENG"], &vars)
            .unwrap_err()
            .to_string()
            .contains("not a URL")
    );
    vars[0] = ("CONFLUENCE_BASE_URL", "ftp://acme.test");
    assert!(
        load(&["--space", "ENG"], &vars)
            .unwrap_err()
            .to_string()
            .contains("https://")
    );
    vars[0] = ("CONFLUENCE_BASE_URL", "http://wiki.acme.test");
    let c = load(&["--space", "ENG"], &vars).unwrap();
    assert_eq!(c.warnings.len(), 1);
    vars[0] = ("CONFLUENCE_BASE_URL", "http://127.0.0.1:8090");
    assert!(
        load(&["--space", "ENG"], &vars)
            .unwrap()
            .warnings
            .is_empty()
    );
}

#[test]
fn a_local_openai_compatible_server_needs_no_key() {
    let mut vars = CLOUD[..3].to_vec();
    vars.push(("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1/"));
    let c = load(&["--space", "ENG"], &vars).unwrap();
    let o = c.openai.unwrap();
    assert_eq!(o.api_key, None);
    assert_eq!(o.base_url, "http://127.0.0.1:11434/v1");
    assert_eq!(o.timeout, Duration::from_secs(120));
    assert_eq!(c.openai_structured, StructuredMode::Auto);
}

#[test]
fn a_slow_local_server_gets_its_timeout_and_a_forced_structured_mode() {
    let mut vars = CLOUD[..3].to_vec();
    vars.push(("OPENAI_BASE_URL", "http://127.0.0.1:8080/v1"));
    vars.push(("TAG_SPACE_OPENAI_TIMEOUT_SECS", "900"));
    vars.push(("TAG_SPACE_OPENAI_STRUCTURED", "prompt"));
    let c = load(&["--space", "ENG"], &vars).unwrap();
    assert_eq!(c.openai.unwrap().timeout, Duration::from_secs(900));
    assert_eq!(c.openai_structured, StructuredMode::Forced(2));
    for (var, bad) in [
        ("TAG_SPACE_OPENAI_TIMEOUT_SECS", "0"),
        ("TAG_SPACE_OPENAI_TIMEOUT_SECS", "2m"),
        ("TAG_SPACE_OPENAI_STRUCTURED", "grammar"),
    ] {
        let mut vars = vars.clone();
        vars.retain(|(k, _)| *k != var);
        vars.push((var, bad));
        let e = load(&["--space", "ENG"], &vars).unwrap_err().to_string();
        assert!(e.starts_with(var), "{e}");
    }
}

#[test]
fn demo_needs_nothing_and_reads_no_credentials() {
    let c = load(&["--demo"], CLOUD).unwrap();
    assert!(c.demo && c.rules);
    assert_eq!(c.space, "DEMO");
    assert!(c.confluence.is_none() && c.gemini.is_none() && c.openai.is_none());
}

#[test]
fn missing_credentials_read_as_a_sentence() {
    let e = load(&["--space", "ENG"], &CLOUD[..1])
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("Confluence credentials are not set: set CONFLUENCE_EMAIL"),
        "{e}"
    );
}

#[test]
fn a_cache_path_that_is_a_directory_holds_the_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let mut vars = CLOUD.to_vec();
    vars.push(("TAG_SPACE_CACHE_PATH", d));
    let c = load(&["--space", "ENG"], &vars).unwrap();
    assert_eq!(c.cache.path, Some(dir.path().join("state.db")));
    // The locks never follow the state file (the_lock_dir_never_follows_the_state_file).
    assert_eq!(
        c.lock_dir, None,
        "no TAG_SPACE_LOCK_DIR, XDG_CACHE_HOME or HOME"
    );
    let c = load(&["--space", "ENG", "--cache-path", d], CLOUD).unwrap();
    assert_eq!(c.cache.path, Some(dir.path().join("state.db")));
    // A directory yet to be made, written with a trailing slash.
    let later = format!("{d}/later/");
    let c = load(&["--space", "ENG", "--cache-path", &later], CLOUD).unwrap();
    assert_eq!(
        c.cache.path,
        Some(dir.path().join("later").join("state.db"))
    );
    let file = format!("{d}/mine.db");
    let c = load(&["--space", "ENG", "--cache-path", &file], CLOUD).unwrap();
    assert_eq!(c.cache.path, Some(dir.path().join("mine.db")));
}

#[test]
fn the_demo_keeps_its_own_state_file_or_the_one_given() {
    let c = load(&["--demo"], &[("HOME", "/home/u")]).unwrap();
    assert_eq!(
        c.cache.path,
        Some(PathBuf::from("/home/u/.cache/tag-space/demo.db"))
    );
    let c = load(&["--demo"], &[("TAG_SPACE_CACHE_PATH", "/srv/ts/state.db")]).unwrap();
    assert_eq!(c.cache.path, Some(PathBuf::from("/srv/ts/demo.db")));
    let c = load(&["--demo", "--cache-path", "/tmp/x/demo-state.db"], &[]).unwrap();
    assert_eq!(c.cache.path, Some(PathBuf::from("/tmp/x/demo-state.db")));
}

#[test]
fn rules_fallback_alone_is_a_provider() {
    let c = load(&["--space", "ENG", "--fallback", "rules"], &CLOUD[..3]).unwrap();
    assert!(c.rules && c.gemini.is_none());
}

#[test]
fn via_batch_needs_a_batch_capable_primary_and_wait_needs_via_batch() {
    let c = load(&["--space", "ENG", "--via", "batch", "--wait"], CLOUD).unwrap();
    assert!(c.batch.enabled && c.batch.wait && !c.batch.follow_up_job);
    assert_eq!(c.batch.poll, Duration::from_secs(60));
    let mut vars = CLOUD.to_vec();
    vars.push(("TAG_SPACE_BATCH_POLL_SECS", "0.05"));
    let c = load(&["--space", "ENG", "--via", "batch"], &vars).unwrap();
    assert_eq!(c.batch.poll, Duration::from_millis(50));
    assert!(!load(&["--space", "ENG"], CLOUD).unwrap().batch.enabled);

    let e = load(&["--space", "ENG", "--wait"], CLOUD).unwrap_err();
    assert!(e.to_string().starts_with("--wait needs --via batch"), "{e}");
    let e = load(&["--demo", "--via", "batch"], &[]).unwrap_err();
    assert!(e.to_string().contains("cannot be used with --demo"), "{e}");
    let rules_only = ["--space", "ENG", "--via", "batch", "--fallback", "rules"];
    let e = load(&rules_only, &CLOUD[..3]).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("--via batch needs Gemini or OpenAI as the primary provider"),
        "{e}"
    );
}

mod env_example {
    #[test]
    fn env_example_documents_every_variable() {
        let example = include_str!("../../.env.example");
        for var in super::VARIABLES {
            assert!(
                example.lines().any(|l| l.starts_with(&format!("{var}="))),
                ".env.example lacks {var}"
            );
        }
    }
}

#[test]
fn space_is_repeatable_and_comma_separated_each_key_once_in_order() {
    let c = load(
        &["--space", "ENG,OPS", "--space", "DOCS", "-s", "ENG"],
        CLOUD,
    )
    .unwrap();
    assert_eq!(
        c.spaces,
        Spaces::Keys(vec!["ENG".into(), "OPS".into(), "DOCS".into()])
    );
    assert!(c.spaces.several());
    assert_eq!(c.space, "ENG");
    assert_eq!(c.space_concurrency, 1);
    let one = load(&["--space", "ENG"], CLOUD).unwrap();
    assert_eq!(one.spaces, Spaces::Keys(vec!["ENG".into()]));
    assert!(!one.spaces.several());
    let demo = load(&["--demo"], &[]).unwrap();
    assert!(!demo.spaces.several());
}

#[test]
fn all_spaces_with_exclusions_and_a_space_concurrency() {
    let c = load(
        &[
            "--all-spaces",
            "--exclude-space",
            "ARCH,old",
            "--space-concurrency",
            "3",
        ],
        CLOUD,
    )
    .unwrap();
    assert_eq!(
        c.spaces,
        Spaces::All {
            exclude: vec!["ARCH".into(), "old".into()]
        }
    );
    assert!(c.spaces.several());
    assert_eq!(c.space_concurrency, 3);
    let mut vars = CLOUD.to_vec();
    vars.push(("TAG_SPACE_SPACE_CONCURRENCY", "2"));
    assert_eq!(load(&["--all-spaces"], &vars).unwrap().space_concurrency, 2);
    vars.push(("TAG_SPACE_SPACE_CONCURRENCY", "0"));
    let vars: Vec<_> = vars.into_iter().filter(|(_, v)| *v != "2").collect();
    let e = load(&["--all-spaces"], &vars).unwrap_err().to_string();
    assert!(
        e.starts_with("TAG_SPACE_SPACE_CONCURRENCY=\"0\" is invalid"),
        "{e}"
    );
}

#[test]
fn bad_space_selections_are_refused_with_one_line() {
    let e = load(&["--space", "ENG,"], CLOUD).unwrap_err().to_string();
    assert!(e.contains("an empty space key"), "{e}");
    let e = load(&["--space", "ENG,OPS", "--via", "batch"], CLOUD)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("--via batch takes one space at a time"),
        "{e}"
    );
    let e = load(&["--exclude-space", "ENG", "--space", "OPS"], CLOUD)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("--exclude-space needs --all-spaces"), "{e}");
    let parse = |argv: &[&str]| {
        Args::try_parse_from(std::iter::once("tag-space").chain(argv.iter().copied())).is_err()
    };
    assert!(parse(&["--all-spaces", "--space", "ENG"]));
    assert!(parse(&["--all-spaces", "--demo"]));
    assert!(parse(&[]), "a space, --all-spaces or --demo is required");
    assert!(!parse(&["--all-spaces"]));
}

#[test]
fn a_base_url_with_a_user_or_password_is_refused_without_showing_them() {
    let mut vars = CLOUD.to_vec();
    for (var, raw) in [
        (
            "CONFLUENCE_BASE_URL",
            "https://bob:s3cr3t-t0ken@acme.atlassian.net/wiki",
        ),
        (
            "CONFLUENCE_BASE_URL",
            "https://s3cr3t-t0ken@acme.atlassian.net/wiki",
        ),
        // Not a URL at all, and still the part before the @ is not shown.
        (
            "CONFLUENCE_BASE_URL",
            "https://bob:s3cr3t t0ken@acme atlassian.net",
        ),
        (
            "OPENAI_BASE_URL",
            "http://bob:s3cr3t-t0ken@127.0.0.1:11434/v1",
        ),
    ] {
        vars.retain(|(k, _)| *k != var);
        vars.push((var, raw));
        let e = load(&["--space", "ENG"], &vars).unwrap_err().to_string();
        assert!(!e.contains("s3cr3t"), "{e}");
        assert!(!e.contains("bob"), "{e}");
        assert!(e.starts_with(var), "{e}");
        vars.retain(|(k, _)| *k != var);
        vars.push(("CONFLUENCE_BASE_URL", CLOUD[0].1));
    }
}
