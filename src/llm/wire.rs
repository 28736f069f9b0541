//! What the Gemini and OpenAI clients share: building the HTTP client, turning a transport
//! failure into an [`LlmError`], and reading the waits that providers write as text.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{LlmError, LlmErrorKind, Usage};
use crate::secret::Secret;

/// The `User-Agent` of every LLM request.
pub(crate) const USER_AGENT: &str = concat!("tag-space/", env!("CARGO_PKG_VERSION"));

/// What a client reads from a usable 200: labels by page id, as written, and the usage.
pub(crate) type Parsed = (BTreeMap<String, Vec<String>>, Option<Usage>);

/// The longest wait for a TCP (and TLS) connection, whatever the total timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A client with a bounded connect and a bounded total time (headers and body) per request.
pub(crate) fn http_client(
    provider: &'static str,
    timeout: Duration,
) -> Result<reqwest::Client, LlmError> {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT.min(timeout))
        .timeout(timeout)
        .user_agent(USER_AGENT)
        .build()
        .map_err(|e| {
            LlmError::new(
                provider,
                LlmErrorKind::BadRequest,
                None,
                format!("cannot build the HTTP client: {e}"),
            )
        })
}

/// A failed send or body read: `Timeout` when the total (or connect) time ran out, `Transport`
/// for everything else (refused, reset, a body cut off mid-way).
pub(crate) fn transport_error(provider: &'static str, err: &reqwest::Error) -> LlmError {
    let kind = if err.is_timeout() {
        LlmErrorKind::Timeout
    } else {
        LlmErrorKind::Transport
    };
    LlmError::new(provider, kind, None, transport_detail(err))
}

/// What actually happened, short ([`crate::http::transport_causes`]), naming the host
/// instead of the whole URL. Every page of a failed batch carries this line, so it has to
/// stay short.
fn transport_detail(err: &reqwest::Error) -> String {
    let mut detail = crate::http::transport_causes(err);
    if let Some(host) = err
        .url()
        .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
    {
        detail.push_str(&format!(" ({host})"));
    }
    detail
}

/// An error whose detail can never carry the API key, even if a provider echoes it.
pub(crate) fn error(
    provider: &'static str,
    kind: LlmErrorKind,
    status: Option<u16>,
    detail: &str,
    key: Option<&Secret>,
) -> LlmError {
    match key
        .map(Secret::expose)
        .filter(|k| !k.is_empty() && detail.contains(*k))
    {
        Some(k) => LlmError::new(provider, kind, status, detail.replace(k, "***")),
        None => LlmError::new(provider, kind, status, detail),
    }
}

/// Parses a Go duration as OpenAI writes it in `x-ratelimit-reset-*` and in its messages
/// (`12ms`, `1s`, `6m0s`, `4m12.172s`, `23h18m29.144s`), and a protobuf duration as Gemini
/// writes it (`26s`, `1.5s`). Units: `h`, `m`, `s`, `ms`, `us`/`µs`, `ns`; a bare `0` is zero.
/// `None` for anything else, including negative values.
pub fn parse_go_duration(text: &str) -> Option<Duration> {
    let s = text.trim();
    if s == "0" {
        return Some(Duration::ZERO);
    }
    if s.is_empty() {
        return None;
    }
    let mut rest = s;
    let mut total_ns: u128 = 0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(num_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let unit_ns: u128 = match unit {
            "h" => 3_600_000_000_000,
            "m" => 60_000_000_000,
            "s" => 1_000_000_000,
            "ms" => 1_000_000,
            "us" | "µs" | "μs" => 1_000,
            "ns" => 1,
            _ => return None,
        };
        let (int, frac) = number.split_once('.').unwrap_or((number, ""));
        if (int.is_empty() && frac.is_empty()) || frac.contains('.') || frac.len() > 18 {
            return None;
        }
        let int: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
        let frac_ns = if frac.is_empty() {
            0
        } else {
            frac.parse::<u128>().ok()? * unit_ns / 10u128.pow(frac.len() as u32)
        };
        total_ns = total_ns.checked_add(int.checked_mul(unit_ns)?.checked_add(frac_ns)?)?;
        rest = after;
    }
    let secs = u64::try_from(total_ns / 1_000_000_000).ok()?;
    // "114h18m0s" has been seen; nothing beyond a year means more than "not in this run", and
    // the clamp keeps `Instant + wait` from overflowing downstream.
    Some(Duration::new(secs, (total_ns % 1_000_000_000) as u32).min(crate::http::MAX_SERVER_WAIT))
}

/// The wait a provider wrote into its message: "Please retry in 47.174066935s." (Gemini),
/// "Please try again in 1.574s." or "... in 6m0s." (OpenAI).
pub(crate) fn wait_in_message(message: &str) -> Option<Duration> {
    let lower = message.to_ascii_lowercase();
    ["retry in ", "try again in "].iter().find_map(|marker| {
        let at = lower.find(marker)? + marker.len();
        let token = message[at..].split_whitespace().next()?;
        parse_go_duration(token.trim_end_matches(['.', ',', ';', ')']))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn go_durations_as_openai_writes_them() {
        assert_eq!(parse_go_duration("12ms"), Some(ms(12)));
        assert_eq!(parse_go_duration("1s"), Some(ms(1000)));
        assert_eq!(parse_go_duration("6m0s"), Some(ms(360_000)));
        assert_eq!(parse_go_duration("4m12.172s"), Some(ms(252_172)));
        assert_eq!(
            parse_go_duration("23h18m29.144s"),
            Some(ms((23 * 3600 + 18 * 60 + 29) * 1000 + 144))
        );
        assert_eq!(
            parse_go_duration("114h18m0s"),
            Some(Duration::from_secs(114 * 3600 + 18 * 60))
        );
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        assert_eq!(
            parse_go_duration("1.5ms"),
            Some(Duration::from_micros(1500))
        );
        assert_eq!(parse_go_duration("250us"), Some(Duration::from_micros(250)));
        assert_eq!(parse_go_duration(" 2s "), Some(ms(2000)));
    }

    #[test]
    fn gemini_retry_delays_are_decimal_seconds() {
        assert_eq!(parse_go_duration("26s"), Some(ms(26_000)));
        assert_eq!(parse_go_duration("1.5s"), Some(ms(1500)));
        assert_eq!(
            parse_go_duration("47.174066935s"),
            Some(Duration::new(47, 174_066_935))
        );
    }

    #[test]
    fn go_durations_reject_garbage() {
        for bad in [
            "", "s", "12", "1.2.3s", "-1s", "1d", "soon", "1s2", ".s", "1 s",
        ] {
            assert_eq!(parse_go_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn waits_are_read_from_messages() {
        assert_eq!(
            wait_in_message(
                "Rate limit reached for o4-mini ... Please try again in 1.574s. Visit https://x"
            ),
            Some(ms(1574))
        );
        assert_eq!(
            wait_in_message("Please try again in 6m0s."),
            Some(ms(360_000))
        );
        assert_eq!(
            wait_in_message("* Quota exceeded, limit: 10\nPlease retry in 47.174066935s."),
            Some(Duration::new(47, 174_066_935))
        );
        assert_eq!(
            wait_in_message("Resource has been exhausted (e.g. check quota)."),
            None
        );
        assert_eq!(wait_in_message("Please try again in a while."), None);
    }

    #[test]
    fn the_key_never_reaches_the_detail() {
        let key = Secret::new("sk-secret-123");
        let e = error(
            "openai",
            LlmErrorKind::Auth,
            Some(401),
            "Incorrect API key provided: sk-secret-123.",
            Some(&key),
        );
        assert!(!e.detail.contains("sk-secret-123"), "{}", e.detail);
        assert!(e.detail.contains("***"));
    }
}

#[cfg(test)]
mod transport_tests {
    use super::*;

    /// A port nothing listens on: bind one, note it, close it.
    fn closed_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn a_refused_connection_is_one_short_line_without_repeats() {
        let client = http_client("openai", Duration::from_secs(5)).unwrap();
        let url = format!("http://127.0.0.1:{}/v1/chat/completions", closed_port());
        let err = client.post(&url).send().await.unwrap_err();
        let e = transport_error("openai", &err);
        let msg = e.to_string();
        assert_eq!(e.kind, LlmErrorKind::Transport);
        assert!(msg.to_lowercase().contains("connection refused"), "{msg}");
        // Each cause once: reqwest and hyper repeat the OS error down the chain.
        assert_eq!(
            msg.to_lowercase().matches("connection refused").count(),
            1,
            "{msg}"
        );
        assert!(
            msg.chars().count() <= 120,
            "{} chars: {msg}",
            msg.chars().count()
        );
    }
}
