//! How figures are written for a person (table and Markdown). The JSON report uses plain
//! numbers instead.

use std::time::Duration;

/// "-" for a figure that does not exist (no call, no price, no cache).
pub const NONE: &str = "-";

/// A whole number with thousands separators: `1,234,567`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A short duration: `850ms`, `12.3s`, `4m05s`, `2h03m`.
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        let s = ms / 1000;
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        let m = ms / 60_000;
        format!("{}h{:02}m", m / 60, m % 60)
    }
}

pub fn opt_duration(d: Option<Duration>) -> String {
    d.map_or_else(|| NONE.to_string(), duration)
}

/// A rate 0..=1 as a percentage with one decimal: `91.7%`; "-" when unknown.
pub fn percent(r: Option<f64>) -> String {
    r.map_or_else(|| NONE.to_string(), |r| format!("{:.1}%", r * 100.0))
}

/// US dollars: four decimals under a dollar (`$0.0042`), two above (`$12.35`); "-" when
/// unknown.
pub fn usd(c: Option<f64>) -> String {
    match c {
        None => NONE.to_string(),
        Some(c) if c < 1.0 => format!("${c:.4}"),
        Some(c) => format!("${c:.2}"),
    }
}

/// A size in bytes, in decimal units: `812 B`, `4.9 kB`, `132.6 MB`, `1.2 GB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 3] = ["kB", "MB", "GB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1000.0;
    let mut unit = 0;
    while v >= 999.95 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_in_decimal_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(4_900), "4.9 kB");
        assert_eq!(bytes(999_960), "1.0 MB");
        assert_eq!(bytes(132_600_000), "132.6 MB");
        assert_eq!(bytes(1_200_000_000_000), "1200.0 GB");
    }

    #[test]
    fn figures_read_well() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(duration(Duration::from_millis(850)), "850ms");
        assert_eq!(duration(Duration::from_millis(12_345)), "12.3s");
        assert_eq!(duration(Duration::from_secs(245)), "4m05s");
        assert_eq!(duration(Duration::from_secs(7380)), "2h03m");
        assert_eq!(opt_duration(None), "-");
        assert_eq!(percent(Some(11.0 / 12.0)), "91.7%");
        assert_eq!(percent(None), "-");
        assert_eq!(usd(Some(0.00421)), "$0.0042");
        assert_eq!(usd(Some(12.346)), "$12.35");
        assert_eq!(usd(None), "-");
    }
}
