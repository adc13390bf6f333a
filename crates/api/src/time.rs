//! `Time`: a UTC instant that prints as Go's RFC3339Nano (fraction with trailing zeros
//! trimmed, `Z`) and whose zero value is Go's `0001-01-01T00:00:00Z`, plus the Unix
//! second/nanosecond forms the internal proto messages use (0 there = the zero time).
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(DateTime<Utc>);

/// Go's zero time, built once at compile time (`is_zero` runs twice per listed pin).
const ZERO_DATETIME: DateTime<Utc> = match NaiveDate::from_ymd_opt(1, 1, 1) {
    Some(d) => match d.and_hms_opt(0, 0, 0) {
        Some(n) => n.and_utc(),
        None => DateTime::<Utc>::MIN_UTC,
    },
    None => DateTime::<Utc>::MIN_UTC,
};

fn zero_datetime() -> DateTime<Utc> {
    ZERO_DATETIME
}

impl Time {
    /// Go's zero time, `0001-01-01T00:00:00Z` ("unset").
    pub fn zero() -> Time {
        Time(zero_datetime())
    }
    pub fn now() -> Time {
        Time(Utc::now())
    }
    pub fn from_datetime(dt: DateTime<Utc>) -> Time {
        Time(dt)
    }
    pub fn datetime(&self) -> DateTime<Utc> {
        self.0
    }
    pub fn is_zero(&self) -> bool {
        self.0 == zero_datetime()
    }
    /// Whole-second precision, as upstream stores pin timestamps and expiry.
    pub fn trunc_secs(&self) -> Time {
        Time(self.0.trunc_subsecs(0))
    }
    /// From Unix seconds; 0 is the zero time.
    pub fn from_unix_secs(secs: i64) -> Time {
        if secs == 0 {
            return Time::zero();
        }
        DateTime::from_timestamp(secs, 0)
            .map(Time)
            .unwrap_or_else(Time::zero)
    }
    /// Unix seconds; the zero time is 0.
    pub fn unix_secs(&self) -> i64 {
        if self.is_zero() {
            0
        } else {
            self.0.timestamp()
        }
    }
    /// From Unix nanoseconds; 0 is the zero time.
    pub fn from_unix_nanos(nanos: i64) -> Time {
        if nanos == 0 {
            return Time::zero();
        }
        Time(DateTime::from_timestamp_nanos(nanos))
    }
    /// Unix nanoseconds; the zero time is 0, times outside 1678..2262 saturate.
    pub fn unix_nanos(&self) -> i64 {
        if self.is_zero() {
            return 0;
        }
        self.0
            .timestamp_nanos_opt()
            .unwrap_or(if self.0.timestamp() < 0 {
                i64::MIN
            } else {
                i64::MAX
            })
    }
    /// Parses RFC 3339 with an optional fraction; the offset (`Z` or `±hh:mm`) is required.
    pub fn parse(s: &str) -> Result<Time, Error> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| Time(t.with_timezone(&Utc)))
            .map_err(|e| Error::InvalidTime {
                input: s.to_string(),
                reason: e.to_string(),
            })
    }
}

impl Default for Time {
    fn default() -> Self {
        Time::zero()
    }
}

impl From<DateTime<Utc>> for Time {
    fn from(dt: DateTime<Utc>) -> Self {
        Time(dt)
    }
}

/// Longest text `Time` prints: `-262143-12-31T23:59:59.999999999Z` is 32 bytes (chrono's
/// years stay within ±262143).
const TEXT_CAP: usize = 40;
/// Go's zero time as text.
const ZERO_TEXT: &str = "0001-01-01T00:00:00Z";

impl Time {
    /// Go's RFC3339Nano in UTC (`2024-05-01T10:20:30.1234Z`) written into `buf`; returns
    /// the text. Hand-written digits: listings print two times per pin and chrono's
    /// accessors plus `fmt::write` were 12 % of the gateway's CPU on `/allocations`.
    fn write_rfc3339<'a>(&self, buf: &'a mut [u8; TEXT_CAP]) -> &'a str {
        if self.is_zero() {
            // Most pins never expire: skip the arithmetic for the zero time.
            return ZERO_TEXT;
        }
        let t = self.0;
        let secs = t.timestamp();
        // A leap second (`:60`) is second 59 with 1_000_000_000+ ns in chrono.
        let nanos = t.timestamp_subsec_nanos() % 1_000_000_000;
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        let mut n = 0;
        // Year as `{:04}` prints an i64: zero-padded to 4 characters including the sign.
        let mut ybuf = [0u8; 20];
        let mut y = year.unsigned_abs();
        let mut yl = 0;
        while y > 0 || yl == 0 {
            ybuf[yl] = b'0' + (y % 10) as u8;
            y /= 10;
            yl += 1;
        }
        let width = if year < 0 { 3 } else { 4 };
        if year < 0 {
            buf[n] = b'-';
            n += 1;
        }
        for _ in yl..width {
            buf[n] = b'0';
            n += 1;
        }
        for i in (0..yl).rev() {
            buf[n] = ybuf[i];
            n += 1;
        }
        let mut two = |n: &mut usize, sep: u8, v: u32| {
            buf[*n] = sep;
            buf[*n + 1] = b'0' + (v / 10) as u8;
            buf[*n + 2] = b'0' + (v % 10) as u8;
            *n += 3;
        };
        two(&mut n, b'-', month);
        two(&mut n, b'-', day);
        two(&mut n, b'T', sod / 3600);
        two(&mut n, b':', sod / 60 % 60);
        two(&mut n, b':', sod % 60);
        if nanos != 0 {
            buf[n] = b'.';
            n += 1;
            let mut f = nanos;
            let mut digits = 9;
            while f.is_multiple_of(10) {
                f /= 10;
                digits -= 1;
            }
            for i in (0..digits).rev() {
                buf[n + i] = b'0' + (f % 10) as u8;
                f /= 10;
            }
            n += digits;
        }
        buf[n] = b'Z';
        n += 1;
        // Only ASCII was written.
        std::str::from_utf8(&buf[..n]).unwrap_or_default()
    }
}

/// (year, month, day) of a count of days since 1970-01-01 in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Go's RFC3339Nano in UTC: `2024-05-01T10:20:30.1234Z`.
impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.write_rfc3339(&mut [0; TEXT_CAP]))
    }
}

impl fmt::Debug for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Time({self})")
    }
}

impl FromStr for Time {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Time::parse(s)
    }
}

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.write_rfc3339(&mut [0; TEXT_CAP]))
    }
}

/// `null` decodes to the zero time, as Go's time.Time does.
impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(Time::zero()),
            Some(s) => Time::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

/// Go's `time.Parse(time.RFC3339, value)` error text (`parsing time "x" as
/// "2006-01-02T15:04:05Z07:00": cannot parse "x" as "2006"`, or `…: month out of
/// range`), found by walking the layout as Go's parser does. `None` when Go's parser
/// would accept the value.
pub fn go_rfc3339_error(value: &str) -> Option<String> {
    const LAYOUT: &str = "2006-01-02T15:04:05Z07:00";
    fn quote(s: &str) -> String {
        let mut q = String::from("\"");
        for c in s.chars() {
            match c {
                '"' | '\\' => {
                    q.push('\\');
                    q.push(c);
                }
                c if (c as u32) < 0x20 || c == '\u{7f}' => {
                    q.push_str(&format!("\\x{:02x}", c as u32))
                }
                c => q.push(c),
            }
        }
        q.push('"');
        q
    }
    let elem = |v: &str, l: &str| {
        Some(format!(
            "parsing time {} as {}: cannot parse {} as {}",
            quote(value),
            quote(LAYOUT),
            quote(v),
            quote(l)
        ))
    };
    let msg = |m: &str| Some(format!("parsing time {}{m}", quote(value)));
    let digit = |v: &str, i: usize| v.as_bytes().get(i).is_some_and(u8::is_ascii_digit);
    // Go's getnum: one or two digits (two when `fixed`).
    let getnum = |v: &str, fixed: bool| -> Option<(u32, usize)> {
        if !digit(v, 0) {
            return None;
        }
        if !digit(v, 1) {
            return (!fixed).then(|| ((v.as_bytes()[0] - b'0') as u32, 1));
        }
        Some((v[..2].parse().ok()?, 2))
    };
    // (literal prefix, element) pairs of the RFC 3339 layout.
    let chunks: [(&str, &str); 7] = [
        ("", "2006"),
        ("-", "01"),
        ("-", "02"),
        ("T", "15"),
        (":", "04"),
        (":", "05"),
        ("", "Z07:00"),
    ];
    let mut v = value;
    let (mut year, mut month, mut day) = (0i64, 0u32, 0u32);
    for (prefix, std) in chunks {
        for p in prefix.chars() {
            if !v.starts_with(p) {
                return elem(v, prefix);
            }
            v = &v[1..];
        }
        let hold = v;
        let mut range = "";
        let ok = match std {
            "2006" => {
                if v.len() < 4 || !digit(v, 0) {
                    false
                } else {
                    let (p, rest) = v.split_at(4);
                    v = rest;
                    match p.parse::<i64>() {
                        Ok(y) if p.bytes().all(|b| b.is_ascii_digit()) => {
                            year = y;
                            true
                        }
                        _ => false,
                    }
                }
            }
            "01" | "02" | "15" | "04" | "05" => match getnum(v, std != "15") {
                None => false,
                Some((n, used)) => {
                    v = &v[used..];
                    match std {
                        "01" if n == 0 || n > 12 => range = "month",
                        "01" => month = n,
                        "02" => day = n,
                        "15" if n >= 24 => range = "hour",
                        "04" if n >= 60 => range = "minute",
                        "05" if n >= 60 => range = "second",
                        _ => {}
                    }
                    if std == "05" && range.is_empty() {
                        // A fraction after the seconds: `.` or `,` and digits.
                        let b = v.as_bytes();
                        if b.len() >= 2 && (b[0] == b'.' || b[0] == b',') && b[1].is_ascii_digit() {
                            let n = 1 + b[1..].iter().take_while(|c| c.is_ascii_digit()).count();
                            v = &v[n..];
                        }
                    }
                    true
                }
            },
            _ => {
                // Z07:00: `Z`, or ±hh:mm.
                if let Some(rest) = v.strip_prefix('Z') {
                    v = rest;
                    true
                } else {
                    let b = v.as_bytes();
                    if b.len() < 6 || b[3] != b':' || !(b[0] == b'+' || b[0] == b'-') {
                        false
                    } else {
                        match (getnum(&v[1..3], true), getnum(&v[4..6], true)) {
                            (Some((h, 2)), Some((m, 2))) => {
                                if h > 24 {
                                    range = "time zone offset hour";
                                } else if m > 60 {
                                    range = "time zone offset minute";
                                }
                                v = &v[6..];
                                true
                            }
                            _ => false,
                        }
                    }
                }
            }
        };
        if !range.is_empty() {
            return msg(&format!(": {range} out of range"));
        }
        if !ok {
            return elem(hold, std);
        }
    }
    if !v.is_empty() {
        return msg(&format!(": extra text: {}", quote(v)));
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if day < 1 || day > days {
        return msg(": day out of range");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_parse_errors() {
        let l = "\"2006-01-02T15:04:05Z07:00\"";
        let e = |v| go_rfc3339_error(v).unwrap_or_default();
        assert_eq!(
            e("notatime"),
            format!("parsing time \"notatime\" as {l}: cannot parse \"notatime\" as \"2006\"")
        );
        assert_eq!(
            e("2024-05-01"),
            format!("parsing time \"2024-05-01\" as {l}: cannot parse \"\" as \"T\"")
        );
        assert_eq!(
            e("2024-05-01T10:00:00"),
            format!("parsing time \"2024-05-01T10:00:00\" as {l}: cannot parse \"\" as \"Z07:00\"")
        );
        assert_eq!(
            e("2024-13-01T10:00:00Z"),
            "parsing time \"2024-13-01T10:00:00Z\": month out of range"
        );
        assert_eq!(
            e("2023-02-29T10:00:00Z"),
            "parsing time \"2023-02-29T10:00:00Z\": day out of range"
        );
        assert_eq!(
            e("2024-05-01T10:00:00Zjunk"),
            "parsing time \"2024-05-01T10:00:00Zjunk\": extra text: \"junk\""
        );
        assert_eq!(go_rfc3339_error("2024-02-29T10:00:00.123+02:00"), None);
        assert_eq!(go_rfc3339_error("2024-05-01T10:00:00Z"), None);
    }

    #[test]
    fn zero_prints_as_go() {
        assert_eq!(Time::zero().to_string(), "0001-01-01T00:00:00Z");
        assert_eq!(Time::default(), Time::zero());
        assert_eq!(Time::parse("0001-01-01T00:00:00Z").unwrap(), Time::zero());
        assert_eq!(Time::zero().unix_secs(), 0);
        assert_eq!(Time::zero().unix_nanos(), 0);
        assert!(Time::from_unix_secs(0).is_zero());
        assert!(Time::from_unix_nanos(0).is_zero());
    }

    #[test]
    fn fraction_trimmed_and_utc() {
        for (input, out) in [
            ("2024-05-01T10:20:30Z", "2024-05-01T10:20:30Z"),
            ("2024-05-01T10:20:30.123400Z", "2024-05-01T10:20:30.1234Z"),
            (
                "2024-05-01T10:20:30.123456789Z",
                "2024-05-01T10:20:30.123456789Z",
            ),
            ("2024-05-01T12:20:30.5+02:00", "2024-05-01T10:20:30.5Z"),
        ] {
            assert_eq!(Time::parse(input).unwrap().to_string(), out);
        }
    }

    #[test]
    fn offset_required() {
        let e = Time::parse("2024-05-01T10:00:00").unwrap_err();
        assert!(e.to_string().contains("2024-05-01T10:00:00"), "{e}");
        assert!(Time::parse("yesterday").is_err());
    }

    #[test]
    fn unix_round_trips() {
        let t = Time::parse("2024-05-01T10:20:30.5Z").unwrap();
        assert_eq!(Time::from_unix_nanos(t.unix_nanos()), t);
        assert_eq!(Time::from_unix_secs(t.unix_secs()), t.trunc_secs());
        assert_eq!(t.trunc_secs().to_string(), "2024-05-01T10:20:30Z");
    }

    #[test]
    fn json_null_is_zero() {
        let t: Time = serde_json::from_str("null").unwrap();
        assert!(t.is_zero());
        assert!(serde_json::from_str::<Time>("\"nope\"").is_err());
    }

    /// The chrono-based formatting used before the hand-written one: the test oracle.
    fn chrono_format(t: &Time) -> String {
        use chrono::{Datelike, Timelike};
        let t = t.0;
        let mut s = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
        let nanos = t.nanosecond() % 1_000_000_000;
        if nanos != 0 {
            let frac = format!("{nanos:09}");
            s.push('.');
            s.push_str(frac.trim_end_matches('0'));
        }
        s.push('Z');
        s
    }

    fn check(t: Time) {
        let want = chrono_format(&t);
        assert_eq!(t.to_string(), want, "{:?}", t.0);
        assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{want}\""));
    }

    #[test]
    fn fast_format_matches_chrono_on_random_times() {
        let (min, max) = (
            DateTime::<Utc>::MIN_UTC.timestamp(),
            DateTime::<Utc>::MAX_UTC.timestamp(),
        );
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for i in 0..200_000u64 {
            let r = next();
            // a third over chrono's whole range, the rest around 1900..2100
            let secs = if i % 3 == 0 {
                min + (r % (max - min) as u64) as i64
            } else {
                -2_208_988_800 + (r % 6_311_433_600) as i64
            };
            let nanos = match next() % 4 {
                0 => 0,
                1 => (next() % 1000) as u32 * 1_000_000,
                2 => (next() % 1_000_000) as u32 * 1000,
                _ => (next() % 1_000_000_000) as u32,
            };
            check(Time(DateTime::from_timestamp(secs, nanos).unwrap()));
        }
    }

    #[test]
    fn fast_format_edges() {
        check(Time::zero());
        assert_eq!(Time::zero().to_string(), "0001-01-01T00:00:00Z");
        check(Time(DateTime::<Utc>::MIN_UTC));
        check(Time(DateTime::<Utc>::MAX_UTC));
        for s in [
            "1970-01-01T00:00:00Z",
            "1969-12-31T23:59:59.999999999Z",
            "2000-02-29T12:00:00.100Z",
            "1900-02-28T23:59:59Z",
            "1900-03-01T00:00:00Z",
            "2024-02-29T23:59:59.000000001Z",
            "2100-03-01T00:00:00.5Z",
            "2024-12-31T23:59:60.25Z",
            "9999-12-31T23:59:59.999999999Z",
            "0000-01-01T00:00:00Z",
        ] {
            let t = Time::parse(s).unwrap();
            check(t);
        }
        for (y, m, d) in [
            (-1, 12, 31),
            (-5, 3, 1),
            (-100, 2, 28),
            (-1234, 6, 15),
            (-99999, 1, 1),
            (10000, 1, 1),
            (12345, 2, 29 - 1),
            (262_142, 12, 31),
        ] {
            let t = NaiveDate::from_ymd_opt(y, m, d)
                .and_then(|d| d.and_hms_nano_opt(7, 8, 9, 120))
                .unwrap()
                .and_utc();
            check(Time(t));
        }
        assert_eq!(
            Time::parse("2024-05-01T10:20:30.120000Z")
                .unwrap()
                .to_string(),
            "2024-05-01T10:20:30.12Z"
        );
        let leap = Time::parse("2016-12-31T23:59:60.5Z").unwrap();
        assert_eq!(leap.to_string(), chrono_format(&leap));
        let neg = NaiveDate::from_ymd_opt(-5, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .unwrap()
            .and_utc();
        assert_eq!(Time(neg).to_string(), "-005-01-01T00:00:00Z");
    }
}
