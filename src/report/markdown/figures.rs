//! The Markdown report's figures: the providers' and the Confluence site's, as the metrics
//! table has them.

use std::io::{self, Write};

use super::escape;
use crate::confluence::pace::SiteStats;
use crate::report::model::RunReport;
use crate::report::units::{self, NONE};

/// The providers' figures, one row each; nothing without a provider.
pub(super) fn write_providers(out: &mut impl Write, r: &RunReport) -> io::Result<()> {
    if r.providers().is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    writeln!(out, "### Providers")?;
    writeln!(out)?;
    writeln!(
        out,
        "| Provider | Model | Calls | Success | 429s | Fallbacks | p50 | p95 | Tokens in / out | Est. cost |"
    )?;
    writeln!(
        out,
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )?;
    for p in r.providers() {
        let (s, latency) = (&p.stats, p.stats.latency());
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} |",
            escape(s.provider),
            p.model.as_deref().map_or_else(|| NONE.to_string(), escape),
            units::count(s.calls),
            units::percent(s.success_rate()),
            units::count(s.rate_limited),
            units::count(s.fallbacks),
            units::opt_duration(latency.p50),
            units::opt_duration(latency.p95),
            units::count(s.tokens_in),
            units::count(s.tokens_out),
            units::usd(r.prices().cost(p)),
        )?;
    }
    Ok(())
}

/// The Confluence site's figures (requests, 429s, bytes, the waits, peak in flight): what the
/// run cost the site. Only for a run against a site (not the demo).
pub(super) fn write_confluence(out: &mut impl Write, s: &SiteStats) -> io::Result<()> {
    writeln!(out)?;
    writeln!(out, "### Confluence")?;
    writeln!(out)?;
    writeln!(
        out,
        "| Requests | 429s | Downloaded | Wait: cooldown | Wait: pacing | Wait: slot | Peak in flight |"
    )?;
    writeln!(out, "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")?;
    writeln!(
        out,
        "| {} | {} | {} | {} | {} | {} | {} |",
        units::count(s.requests),
        units::count(s.throttled),
        units::bytes(s.bytes),
        units::duration(s.cooldown_wait),
        units::duration(s.pacing_wait),
        units::duration(s.slot_wait),
        units::count(s.peak_in_flight as u64),
    )
}
