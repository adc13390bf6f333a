//! Go-compatible little parsers and renderers the text output depends on: Go durations
//! (`time.ParseDuration`), RFC3339Nano times, and go-humanize 1.0.1 `Bytes` / `Time`.

use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use ipfs_cluster_api::go_duration::GoDurationError;

/// Parses a Go duration string (`1h30m`, `90s`, `-1.5h`, `300ms`) into nanoseconds, with
/// Go's error texts (`time: invalid duration "x"`); the workspace's one parser.
pub fn parse_go_duration(s: &str) -> Result<i128, GoDurationError> {
    ipfs_cluster_api::go_duration::parse_go_duration_nanos(s).map(i128::from)
}

/// A duration flag value as a std Duration (negative values count as zero).
pub fn go_duration_std(s: &str) -> Result<std::time::Duration, GoDurationError> {
    let ns = parse_go_duration(s)?;
    Ok(std::time::Duration::from_nanos(ns.max(0) as u64))
}

/// Parses an RFC 3339 timestamp keeping its offset.
pub fn parse_time(s: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(s).ok()
}

/// True for Go's zero time `0001-01-01T00:00:00Z` (or anything unparsable/absent).
pub fn is_zero_time(s: &str) -> bool {
    match parse_time(s) {
        Some(t) => t.timestamp() <= -62135596800,
        None => true,
    }
}

/// Go's `time.RFC3339Nano` rendering: fraction with trailing zeros trimmed, `Z` for UTC.
pub fn rfc3339_nano(t: &DateTime<FixedOffset>) -> String {
    let mut out = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = t.timestamp_subsec_nanos();
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    let off = t.offset().local_minus_utc();
    if off == 0 {
        out.push('Z');
    } else {
        let sign = if off < 0 { '-' } else { '+' };
        let a = off.abs();
        out.push_str(&format!("{sign}{:02}:{:02}", a / 3600, (a % 3600) / 60));
    }
    out
}

/// Re-renders a wire timestamp as Go would print it; unparsable input is returned as-is.
pub fn render_time(s: &str) -> String {
    parse_time(s)
        .map(|t| rfc3339_nano(&t))
        .unwrap_or_else(|| s.to_string())
}

/// go-humanize `Bytes` (SI units, base 1000).
pub fn humanize_bytes(n: u64) -> String {
    if n < 10 {
        return format!("{n} B");
    }
    const SIZES: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let f = n as f64;
    let e = (f.ln() / 1000f64.ln()).floor();
    let e = (e as usize).min(SIZES.len() - 1);
    let val = (f / 1000f64.powi(e as i32) * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 {
        format!("{val:.1} {}", SIZES[e])
    } else {
        format!("{val:.0} {}", SIZES[e])
    }
}

const SEC: i128 = 1_000_000_000;
const MIN: i128 = 60 * SEC;
const HOUR: i128 = 60 * MIN;
const DAY: i128 = 24 * HOUR;
const WEEK: i128 = 7 * DAY;
const MONTH: i128 = 30 * DAY;
const YEAR: i128 = 12 * MONTH;
const LONG: i128 = 37 * YEAR;

/// go-humanize `Time(then)` against `now`, both in unix nanoseconds.
pub fn humanize_time(then_ns: i128, now_ns: i128) -> String {
    let (diff, lbl) = if then_ns > now_ns {
        (then_ns - now_ns, "from now")
    } else {
        (now_ns - then_ns, "ago")
    };
    // (upper bound, format, divisor); `{n}` is diff/divisor.
    let mags: [(i128, &str, i128); 17] = [
        (SEC, "now", 1),
        (2 * SEC, "1 second", 1),
        (MIN, "{n} seconds", SEC),
        (2 * MIN, "1 minute", 1),
        (HOUR, "{n} minutes", MIN),
        (2 * HOUR, "1 hour", 1),
        (DAY, "{n} hours", HOUR),
        (2 * DAY, "1 day", 1),
        (WEEK, "{n} days", DAY),
        (2 * WEEK, "1 week", 1),
        (MONTH, "{n} weeks", WEEK),
        (2 * MONTH, "1 month", 1),
        (YEAR, "{n} months", MONTH),
        (18 * MONTH, "1 year", 1),
        (2 * YEAR, "2 years", 1),
        (LONG, "{n} years", YEAR),
        (i128::MAX, "a long while", 1),
    ];
    let (_, fmt, div) = mags
        .iter()
        .find(|(d, _, _)| *d > diff)
        .copied()
        .unwrap_or(mags[16]);
    if fmt == "now" {
        return "now".to_string();
    }
    format!("{} {lbl}", fmt.replace("{n}", &(diff / div).to_string()))
}

pub fn now_ns() -> i128 {
    Utc::now()
        .timestamp_nanos_opt()
        .map(i128::from)
        .unwrap_or(0)
}

/// Unix nanoseconds of an RFC 3339 time string (0 when unparsable).
pub fn time_ns(s: &str) -> i128 {
    parse_time(s)
        .and_then(|t| t.timestamp_nanos_opt())
        .map(i128::from)
        .unwrap_or(0)
}

/// RFC3339Nano in UTC of now + `ns` (for `expire-at`).
pub fn expire_at_from_now(ns: i128) -> String {
    let now = now_ns() + ns;
    let secs = now.div_euclid(SEC) as i64;
    let sub = now.rem_euclid(SEC) as u32;
    let t = Utc.timestamp_opt(secs, sub).single().unwrap_or_default();
    rfc3339_nano(&t.fixed_offset())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("90s"), Ok(90 * SEC));
        assert_eq!(parse_go_duration("1h30m"), Ok(HOUR + 30 * MIN));
        assert_eq!(parse_go_duration("1.5h"), Ok(HOUR + 30 * MIN));
        assert_eq!(parse_go_duration("-2m"), Ok(-2 * MIN));
        assert_eq!(parse_go_duration("300ms"), Ok(300_000_000));
        assert_eq!(parse_go_duration("0"), Ok(0));
        assert_eq!(
            parse_go_duration("abc").map_err(|e| e.to_string()),
            Err("time: invalid duration \"abc\"".into())
        );
        assert_eq!(
            parse_go_duration("10").map_err(|e| e.to_string()),
            Err("time: missing unit in duration \"10\"".into())
        );
        assert_eq!(
            parse_go_duration("10x").map_err(|e| e.to_string()),
            Err("time: unknown unit \"x\" in duration \"10x\"".into())
        );
        assert_eq!(
            parse_go_duration("").map_err(|e| e.to_string()),
            Err("time: invalid duration \"\"".into())
        );
    }

    #[test]
    fn rfc3339_nano_trims_and_keeps_offset() {
        assert_eq!(
            render_time("2024-05-01T10:20:31.200Z"),
            "2024-05-01T10:20:31.2Z"
        );
        assert_eq!(
            render_time("2024-05-01T10:20:31+00:00"),
            "2024-05-01T10:20:31Z"
        );
        assert_eq!(
            render_time("2024-05-01T12:20:30.123456789+02:00"),
            "2024-05-01T12:20:30.123456789+02:00"
        );
        assert_eq!(render_time("garbage"), "garbage");
        assert!(is_zero_time("0001-01-01T00:00:00Z"));
        assert!(!is_zero_time("2024-05-01T10:20:30Z"));
    }

    #[test]
    fn humanize_bytes_like_go() {
        assert_eq!(humanize_bytes(0), "0 B");
        assert_eq!(humanize_bytes(9), "9 B");
        assert_eq!(humanize_bytes(10), "10 B");
        assert_eq!(humanize_bytes(999), "999 B");
        assert_eq!(humanize_bytes(1000), "1.0 kB");
        assert_eq!(humanize_bytes(830_000_000), "830 MB");
        assert_eq!(humanize_bytes(9_500_000_000), "9.5 GB");
        assert_eq!(humanize_bytes(45_000_000_000), "45 GB");
    }

    #[test]
    fn humanize_time_like_go() {
        let now = 1_000_000 * YEAR;
        assert_eq!(humanize_time(now, now), "now");
        assert_eq!(humanize_time(now + SEC, now), "1 second from now");
        assert_eq!(
            humanize_time(now + 30 * SEC + 5, now),
            "30 seconds from now"
        );
        assert_eq!(humanize_time(now - 90 * SEC, now), "1 minute ago");
        assert_eq!(humanize_time(now - 3 * HOUR, now), "3 hours ago");
        assert_eq!(humanize_time(now + 10 * DAY, now), "1 week from now");
        assert_eq!(humanize_time(now - 40 * YEAR, now), "a long while ago");
    }
}
