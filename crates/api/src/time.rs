//! `Time`: a UTC instant that prints as Go's RFC3339Nano (fraction with trailing zeros
//! trimmed, `Z`) and whose zero value is Go's `0001-01-01T00:00:00Z`, plus the Unix
//! second/nanosecond forms the internal proto messages use (0 there = the zero time).
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, SubsecRound, Timelike, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(DateTime<Utc>);

fn zero_datetime() -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(1, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|n| n.and_utc())
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
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

/// Go's RFC3339Nano in UTC: `2024-05-01T10:20:30.1234Z`.
impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.0;
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )?;
        let nanos = t.nanosecond() % 1_000_000_000;
        if nanos != 0 {
            let frac = format!("{nanos:09}");
            write!(f, ".{}", frac.trim_end_matches('0'))?;
        }
        f.write_str("Z")
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
        s.collect_str(self)
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
