//! Go's `time.ParseDuration`, the one copy every crate uses: service.json durations
//! (ipfs-cluster-config), REST query parameters such as `expire-in` (this crate) and the
//! CLI's duration flags (ipfs-cluster-ctl). Integer nanoseconds as Go, so a value means the
//! same thing here as in upstream's binaries; errors carry Go's texts.

use std::fmt;

/// Why a string is not a Go duration. [`fmt::Display`] gives Go's error text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoDurationError {
    pub input: String,
    pub kind: GoDurationErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GoDurationErrorKind {
    /// Nothing after the sign.
    Empty,
    /// A unit without a number before it (`s`, `.s`).
    ExpectedNumber,
    /// A number without a unit (`10`).
    MissingUnit,
    /// A unit Go does not know (`1d`).
    UnknownUnit(String),
    /// Beyond Go's int64 nanoseconds (about 292 years).
    Overflow,
}

impl GoDurationErrorKind {
    /// A short reason, for messages that name the value themselves.
    pub fn reason(&self) -> String {
        match self {
            GoDurationErrorKind::Empty => "empty duration".into(),
            GoDurationErrorKind::ExpectedNumber => "expected a number".into(),
            GoDurationErrorKind::MissingUnit => "missing unit".into(),
            GoDurationErrorKind::UnknownUnit(u) => format!("unknown unit \"{u}\""),
            GoDurationErrorKind::Overflow => "overflow".into(),
        }
    }
}

impl fmt::Display for GoDurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.input;
        match &self.kind {
            GoDurationErrorKind::MissingUnit => write!(f, "time: missing unit in duration {s:?}"),
            GoDurationErrorKind::UnknownUnit(u) => {
                write!(f, "time: unknown unit {u:?} in duration {s:?}")
            }
            _ => write!(f, "time: invalid duration {s:?}"),
        }
    }
}

impl std::error::Error for GoDurationError {}

const US: u128 = 1_000;
const MS: u128 = 1_000_000;
const S: u128 = 1_000_000_000;
const M: u128 = 60 * S;
const H: u128 = 60 * M;

/// Parses Go duration syntax into signed nanoseconds: "0", or an optional sign and a
/// sequence of decimal numbers with optional fraction and a unit (ns, us, µs, μs, ms, s,
/// m, h), e.g. "1h2m3.5s", "-1.5h". Fractions below a nanosecond are truncated, as Go.
pub fn parse_go_duration_nanos(s: &str) -> Result<i64, GoDurationError> {
    let fail = |kind| GoDurationError {
        input: s.to_string(),
        kind,
    };
    let mut rest = s;
    let mut neg = false;
    if let Some(r) = rest.strip_prefix('-') {
        neg = true;
        rest = r;
    } else if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    }
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(fail(GoDurationErrorKind::Empty));
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let int_part = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac_part = "";
        if let Some(r) = rest.strip_prefix('.') {
            let frac_len = r.bytes().take_while(u8::is_ascii_digit).count();
            frac_part = &r[..frac_len];
            rest = &r[frac_len..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(fail(GoDurationErrorKind::ExpectedNumber));
        }
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit: u128 = match &rest[..unit_len] {
            "ns" => 1,
            "us" | "µs" | "μs" => US,
            "ms" => MS,
            "s" => S,
            "m" => M,
            "h" => H,
            "" => return Err(fail(GoDurationErrorKind::MissingUnit)),
            other => return Err(fail(GoDurationErrorKind::UnknownUnit(other.to_string()))),
        };
        rest = &rest[unit_len..];
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part
                .parse()
                .map_err(|_| fail(GoDurationErrorKind::Overflow))?
        };
        let mut v = int
            .checked_mul(unit)
            .ok_or_else(|| fail(GoDurationErrorKind::Overflow))?;
        if !frac_part.is_empty() {
            // Only the first 18 fraction digits matter at nanosecond precision (below a
            // nanosecond of an hour), and they keep `frac * unit` in range.
            let digits = &frac_part[..frac_part.len().min(18)];
            let f: u128 = digits
                .parse()
                .map_err(|_| fail(GoDurationErrorKind::Overflow))?;
            v = v
                .checked_add(f * unit / 10u128.pow(digits.len() as u32))
                .ok_or_else(|| fail(GoDurationErrorKind::Overflow))?;
        }
        total = total
            .checked_add(v)
            .ok_or_else(|| fail(GoDurationErrorKind::Overflow))?;
        if total > i64::MAX as u128 {
            return Err(fail(GoDurationErrorKind::Overflow));
        }
    }
    let nanos = total as i64;
    Ok(if neg { -nanos } else { nanos })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_go_error_texts() {
        let ok = |s: &str| parse_go_duration_nanos(s).unwrap();
        assert_eq!(ok("1h2m3.5s"), 3_723_500_000_000);
        assert_eq!(ok("-1.5h"), -5_400_000_000_000);
        assert_eq!(ok("+10µs"), 10_000);
        assert_eq!(ok("1.999999999999999999999999999999h"), 7_199_999_999_999);
        let err = |s: &str| parse_go_duration_nanos(s).unwrap_err();
        assert_eq!(err("").to_string(), "time: invalid duration \"\"");
        assert_eq!(
            err("10").to_string(),
            "time: missing unit in duration \"10\""
        );
        assert_eq!(
            err("1d").to_string(),
            "time: unknown unit \"d\" in duration \"1d\""
        );
        assert_eq!(err("9999999999h").kind, GoDurationErrorKind::Overflow);
        assert_eq!(err(".s").kind.reason(), "expected a number");
    }
}
