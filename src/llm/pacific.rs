//! When Gemini's daily quotas reset: midnight Pacific time (reference §1.5), with the US
//! daylight-saving rule (from the second Sunday of March, 2:00, to the first Sunday of
//! November, 2:00). Pure arithmetic on days since the epoch; no time-zone database.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const DAY: i64 = 86_400;

/// The next midnight in Pacific time strictly after `now`.
pub fn next_midnight(now: SystemTime) -> SystemTime {
    let t = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let local = t + offset_at(t);
    let next_day = local.div_euclid(DAY) + 1;
    // Midnight is never inside a switch (they happen at 2:00), so the date decides the offset.
    let offset = if dst_on(next_day) {
        -7 * 3600
    } else {
        -8 * 3600
    };
    UNIX_EPOCH + Duration::from_secs((next_day * DAY - offset).max(0) as u64)
}

/// "2026-12-02 08:00 UTC": a time as a person reads it in a message.
pub fn utc_minute(t: SystemTime) -> String {
    let s = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (y, m, d) = civil(s.div_euclid(DAY));
    let secs = s.rem_euclid(DAY);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60
    )
}

/// Pacific's offset from UTC at unix time `t`, in seconds.
fn offset_at(t: i64) -> i64 {
    let (y, _, _) = civil(t.div_euclid(DAY));
    // 2:00 PST = 10:00 UTC; 2:00 PDT = 9:00 UTC.
    let start = nth_sunday(y, 3, 2) * DAY + 10 * 3600;
    let end = nth_sunday(y, 11, 1) * DAY + 9 * 3600;
    if (start..end).contains(&t) {
        -7 * 3600
    } else {
        -8 * 3600
    }
}

/// Whether midnight (local) starting day `day` (days since the epoch) is in daylight time.
fn dst_on(day: i64) -> bool {
    let (y, _, _) = civil(day);
    day > nth_sunday(y, 3, 2) && day <= nth_sunday(y, 11, 1)
}

/// The day (since the epoch) of the `n`th Sunday of month `m` of year `y`.
fn nth_sunday(y: i64, m: u32, n: i64) -> i64 {
    let first = days_from_civil(y, m, 1);
    // 1970-01-01 was a Thursday: weekday 0 = Sunday.
    let weekday = (first + 4).rem_euclid(7);
    first + (7 - weekday) % 7 + 7 * (n - 1)
}

/// Howard Hinnant's `days_from_civil`.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Howard Hinnant's `civil_from_days`.
fn civil(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i64, m: u32, d: u32, h: i64, min: i64) -> SystemTime {
        UNIX_EPOCH
            + Duration::from_secs((days_from_civil(y, m, d) * DAY + h * 3600 + min * 60) as u64)
    }

    #[test]
    fn midnight_pacific_in_winter_summer_and_across_the_switches() {
        // Winter (PST, UTC-8): 2026-12-02 01:30 UTC is Dec 1 17:30 local.
        assert_eq!(
            utc_minute(next_midnight(at(2026, 12, 2, 1, 30))),
            "2026-12-02 08:00 UTC"
        );
        // Just after local midnight: the next one, a day later.
        assert_eq!(
            utc_minute(next_midnight(at(2026, 12, 2, 8, 1))),
            "2026-12-03 08:00 UTC"
        );
        // Summer (PDT, UTC-7).
        assert_eq!(
            utc_minute(next_midnight(at(2026, 7, 4, 12, 0))),
            "2026-07-05 07:00 UTC"
        );
        // 2026: daylight time from Sunday March 8, standard again from Sunday November 1.
        assert_eq!(
            utc_minute(next_midnight(at(2026, 3, 8, 12, 0))),
            "2026-03-09 07:00 UTC"
        );
        assert_eq!(
            utc_minute(next_midnight(at(2026, 3, 7, 12, 0))),
            "2026-03-08 08:00 UTC"
        );
        assert_eq!(
            utc_minute(next_midnight(at(2026, 10, 31, 12, 0))),
            "2026-11-01 07:00 UTC"
        );
        assert_eq!(
            utc_minute(next_midnight(at(2026, 11, 1, 12, 0))),
            "2026-11-02 08:00 UTC"
        );
        assert_eq!(civil(days_from_civil(2028, 2, 29)), (2028, 2, 29));
    }
}
