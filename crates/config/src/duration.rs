//! Go `time.Duration` strings. Upstream writes every duration in service.json with Go's
//! `Duration.String()` ("2m0s", "500ms", "1h0m0s") and reads them with `time.ParseDuration`
//! ("90s", "1.5h", "2m30s"), so we must parse and print exactly the same way for configs to
//! move between implementations. Negative durations (legal in Go) are rejected: no key of
//! ours accepts one.

use std::{fmt, ops::Deref, str::FromStr, time::Duration};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ConfigError;

/// A `std::time::Duration` that reads and writes Go duration syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GoDuration(pub Duration);

const US: u128 = 1_000;
const MS: u128 = 1_000_000;
const S: u128 = 1_000_000_000;
const M: u128 = 60 * S;
const H: u128 = 60 * M;

impl GoDuration {
    pub const ZERO: GoDuration = GoDuration(Duration::ZERO);

    pub const fn from_secs(s: u64) -> Self {
        GoDuration(Duration::from_secs(s))
    }
    pub const fn from_millis(ms: u64) -> Self {
        GoDuration(Duration::from_millis(ms))
    }
    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }
    pub fn as_duration(&self) -> Duration {
        self.0
    }

    /// Parses Go `time.ParseDuration` syntax: "0", or a sequence of decimal numbers with
    /// optional fraction and a unit (ns, us, µs, μs, ms, s, m, h), e.g. "1h2m3.5s".
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        let err = |reason: &str| ConfigError::Duration {
            value: s.to_string(),
            reason: reason.to_string(),
        };
        // Go accepts negative durations; no key of ours does ("-0" is zero).
        if let Some(r) = s.strip_prefix('-') {
            if r == "0" {
                return Ok(Self::ZERO);
            }
            return Err(err("negative durations are not allowed"));
        }
        let nanos = ipfs_cluster_api::go_duration::parse_go_duration_nanos(s)
            .map_err(|e| err(&e.kind.reason()))?;
        Ok(GoDuration(Duration::from_nanos(nanos as u64)))
    }
}

/// "int" or "int.frac" with the fraction's trailing zeros removed (Go's fmtFrac/fmtInt).
fn fmt_frac(out: &mut String, v: u128, unit: u128) {
    let int = v / unit;
    let frac = v % unit;
    out.push_str(&int.to_string());
    if frac != 0 {
        let width = (unit.ilog10()) as usize;
        let s = format!("{frac:0width$}");
        out.push('.');
        out.push_str(s.trim_end_matches('0'));
    }
}

impl fmt::Display for GoDuration {
    /// Exactly Go's `Duration.String()`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0.as_nanos();
        let mut out = String::new();
        if ns == 0 {
            out.push_str("0s");
        } else if ns < US {
            out.push_str(&format!("{ns}ns"));
        } else if ns < MS {
            fmt_frac(&mut out, ns, US);
            out.push_str("µs");
        } else if ns < S {
            fmt_frac(&mut out, ns, MS);
            out.push_str("ms");
        } else {
            let h = ns / H;
            let m = (ns % H) / M;
            let s = ns % M;
            if h > 0 {
                out.push_str(&format!("{h}h"));
            }
            if h > 0 || m > 0 {
                out.push_str(&format!("{m}m"));
            }
            fmt_frac(&mut out, s, S);
            out.push('s');
        }
        f.write_str(&out)
    }
}

impl FromStr for GoDuration {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Deref for GoDuration {
    type Target = Duration;
    fn deref(&self) -> &Duration {
        &self.0
    }
}

impl From<Duration> for GoDuration {
    fn from(d: Duration) -> Self {
        GoDuration(d)
    }
}

impl From<GoDuration> for Duration {
    fn from(d: GoDuration) -> Self {
        d.0
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        GoDuration::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(ns: u64) -> GoDuration {
        GoDuration(Duration::from_nanos(ns))
    }

    #[test]
    fn fraction_on_a_huge_number_is_an_overflow_error() {
        // Spotted while writing the config_loaders fuzz target (tests/fuzz), which
        // reproduces it: the fraction added to the largest whole number of hours a u128
        // holds overflowed (a panic in debug builds, a wrapped, bogus duration in release).
        let e = GoDuration::parse("94522879700260684295381835.9h").unwrap_err();
        assert!(e.to_string().contains("overflow"), "{e}");
    }

    #[test]
    fn parse_table() {
        let s = 1_000_000_000u64;
        let table: &[(&str, GoDuration)] = &[
            ("0", d(0)),
            ("0s", d(0)),
            ("500ms", d(500_000_000)),
            ("1m30s", d(90 * s)),
            ("90s", d(90 * s)),
            ("2m0s", d(120 * s)),
            ("2m30s", d(150 * s)),
            ("1h0m0s", d(3600 * s)),
            ("1h", d(3600 * s)),
            ("24h0m0s", d(86400 * s)),
            ("1.5h", d(5400 * s)),
            (".5s", d(500_000_000)),
            ("1.s", d(s)),
            ("1.25s", d(1_250_000_000)),
            ("3us", d(3000)),
            ("3µs", d(3000)),
            ("7ns", d(7)),
            ("+5s", d(5 * s)),
            ("1h2m3.004005006s", d(3723 * s + 4_005_006)),
        ];
        for (text, want) in table {
            assert_eq!(GoDuration::parse(text).unwrap(), *want, "parsing {text}");
        }
    }

    #[test]
    fn print_table() {
        let s = 1_000_000_000u64;
        let table: &[(GoDuration, &str)] = &[
            (d(0), "0s"),
            (d(7), "7ns"),
            (d(1500), "1.5µs"),
            (d(500_000_000), "500ms"),
            (d(50_000_000), "50ms"),
            (d(1_500_000), "1.5ms"),
            (d(s), "1s"),
            (d(90 * s), "1m30s"),
            (d(120 * s), "2m0s"),
            (d(3600 * s), "1h0m0s"),
            (d(86400 * s), "24h0m0s"),
            (d(5400 * s), "1h30m0s"),
            (d(1_250_000_000), "1.25s"),
            (d(3723 * s + 4_005_006), "1h2m3.004005006s"),
        ];
        for (v, want) in table {
            assert_eq!(v.to_string(), *want);
            assert_eq!(GoDuration::parse(want).unwrap(), *v, "round trip of {want}");
        }
    }

    #[test]
    fn bad_input_names_the_value() {
        for bad in [
            "5x",
            "",
            "s",
            "1",
            "1h5",
            "-1s",
            "abc",
            "1..5s",
            "9999999999999999999h",
        ] {
            let e = GoDuration::parse(bad).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("invalid duration \"{bad}\": ")),
                "{e}"
            );
        }
        assert!(GoDuration::parse("5x")
            .unwrap_err()
            .to_string()
            .contains("unknown unit \"x\""));
    }

    #[test]
    fn serde_as_string() {
        let v: GoDuration = serde_json::from_str("\"2m0s\"").unwrap();
        assert_eq!(*v, Duration::from_secs(120));
        assert_eq!(serde_json::to_string(&v).unwrap(), "\"2m0s\"");
        assert!(serde_json::from_str::<GoDuration>("\"5x\"").is_err());
    }
}
