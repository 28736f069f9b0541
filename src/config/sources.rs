//! Where a setting's value comes from: the flag beats the environment, which beats the env
//! file, which beats the default. The only code in the crate that reads the environment, and
//! the checks every kind of value shares (numbers in a range, booleans, base URLs).

use std::fmt;

use super::{ConfigError, ENV_FILE_VARIABLE};
use crate::cli::Args;

/// The env file's variables: `--env-file`, else `TAG_SPACE_ENV_FILE`, else `./.env`.
fn read_env_file(args: &Args) -> Result<Vec<(String, String)>, ConfigError> {
    let source = crate::envfile::Source::pick(
        args.env_file.as_deref(),
        std::env::var(ENV_FILE_VARIABLE).ok(),
    );
    Ok(crate::envfile::read(&source)?)
}

/// The process environment, then the env file: the raw lookup [`super::Config::from_sources`]
/// is given outside tests.
pub(super) fn process(args: &Args) -> Result<impl Fn(&str) -> Option<String>, ConfigError> {
    let dotenv = read_env_file(args)?;
    Ok(move |k: &str| {
        std::env::var(k)
            .ok()
            .or_else(|| dotenv.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    })
}

/// A lookup whose values are trimmed, an empty one counting as unset.
pub(super) fn trimmed(get: impl Fn(&str) -> Option<String>) -> impl Fn(&str) -> Option<String> {
    move |k: &str| {
        get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }
}

/// A numeric setting: the flag wins, then the variable, then the default; must lie in
/// `min..=max`.
#[allow(clippy::too_many_arguments)]
pub(super) fn setting<T>(
    flag_value: Option<T>,
    flag: &str,
    var: &str,
    get: &impl Fn(&str) -> Option<String>,
    default: T,
    min: T,
    max: T,
    example: &'static str,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
{
    let (name, value) = match (flag_value, get(var)) {
        (Some(v), _) => (flag.to_string(), v),
        (None, Some(raw)) => {
            let v = raw.parse::<T>().map_err(|_| ConfigError::Invalid {
                name: var.to_string(),
                value: raw.clone(),
                reason: "not a whole number".into(),
                example,
            })?;
            (var.to_string(), v)
        }
        (None, None) => return Ok(default),
    };
    if value < min || value > max {
        return Err(ConfigError::Invalid {
            name,
            value: value.to_string(),
            reason: format!("must be between {min} and {max}"),
            example,
        });
    }
    Ok(value)
}

/// An optional positive quota; unset means unknown.
pub(super) fn opt_setting(
    var: &str,
    get: &impl Fn(&str) -> Option<String>,
    example: &'static str,
) -> Result<Option<u32>, ConfigError> {
    let Some(raw) = get(var) else { return Ok(None) };
    match raw.parse::<u32>() {
        Ok(v) if v > 0 => Ok(Some(v)),
        _ => Err(ConfigError::Invalid {
            name: var.to_string(),
            value: raw,
            reason: "must be a whole number of at least 1 (leave it unset if unknown)".into(),
            example,
        }),
    }
}

pub(super) fn parse_bool(
    var: &str,
    raw: Option<String>,
    default: bool,
) -> Result<bool, ConfigError> {
    let Some(raw) = raw else { return Ok(default) };
    match raw.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::Invalid {
            name: var.to_string(),
            value: raw,
            reason: "must be true or false".into(),
            example: "true",
        }),
    }
}

/// A base URL: http(s), no query; returned without a trailing slash. Plain HTTP to anything
/// but loopback is allowed (local gateways) but warned about: credentials would travel in clear.
/// `raw` with whatever stands between `://` and the last `@` of the address part replaced by
/// `…`, so that an error about the address never shows a user or password in it, even when
/// the address does not parse.
fn without_userinfo(raw: &str) -> String {
    let Some(scheme_end) = raw.find("://").map(|i| i + 3) else {
        return raw.to_string();
    };
    let rest = &raw[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}…{}", &raw[..scheme_end], &rest[at..]),
        None => raw.to_string(),
    }
}

pub(super) fn base_url(
    var: &str,
    raw: &str,
    example: &'static str,
    warnings: &mut Vec<String>,
) -> Result<String, ConfigError> {
    let invalid = |reason: &str| ConfigError::Invalid {
        name: var.to_string(),
        value: without_userinfo(raw),
        reason: reason.to_string(),
        example,
    };
    let url = url::Url::parse(raw).map_err(|e| invalid(&format!("not a URL ({e})")))?;
    // The address is shown in logs, reports and page links: a password in it would be too.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "must not carry a user or password (shown here as …@); give the credentials in their own variables",
        ));
    }
    match url.scheme() {
        "https" => {}
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Domain(d)) => d == "localhost",
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
            if !loopback {
                warnings.push(format!(
                    "{var} uses plain http://: credentials and page content travel unencrypted"
                ));
            }
        }
        _ => return Err(invalid("must start with https:// (or http://)")),
    }
    if url.host().is_none() {
        return Err(invalid("has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("must not have a query or fragment"));
    }
    Ok(raw.trim_end_matches('/').to_string())
}
