//! Pin options in query strings: `PinOptions::from_query` parses them exactly as
//! upstream's REST API (same names, order of checks and 400 messages) and
//! `PinOptions::to_query` writes them as the Go client does. Also the small pieces this
//! needs: a Go-compatible URL query codec and Go's duration syntax (`1h30m`, `2m0s`).
use std::collections::BTreeMap;

use chrono::Duration;

use crate::{parse_multiaddr, parse_peer_id, Cid, Metadata, PinMode, PinOptions, QueryError, Time};

/// A decoded URL query (`a=1&b=x+y`): every value of every key, in order, as Go's
/// url.Values. Pairs with a bad percent-escape are dropped, as Go's `URL.Query()` does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryParams(BTreeMap<String, Vec<String>>);

impl QueryParams {
    pub fn parse(query: &str) -> QueryParams {
        let query = query.strip_prefix('?').unwrap_or(query);
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if let (Some(k), Some(v)) = (unescape(k), unescape(v)) {
                map.entry(k).or_default().push(v);
            }
        }
        QueryParams(map)
    }

    /// The first value of `key`, or "" (Go's `Values.Get`).
    pub fn get(&self, key: &str) -> &str {
        self.0
            .get(key)
            .and_then(|v| v.first())
            .map(String::as_str)
            .unwrap_or("")
    }

    pub fn has(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.0.insert(key.to_string(), vec![value.into()]);
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Go's `Values.Encode`: keys sorted, each value query-escaped.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        for (k, vs) in &self.0 {
            for v in vs {
                if !out.is_empty() {
                    out.push('&');
                }
                out.push_str(&escape(k));
                out.push('=');
                out.push_str(&escape(v));
            }
        }
        out
    }
}

/// Go's `url.QueryEscape`: unreserved bytes stay, space is `+`, the rest `%XX`.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Go's `url.QueryUnescape`: `+` is a space; None on a bad escape or invalid UTF-8.
fn unescape(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                // from_str_radix would accept a sign ("%+f"); Go rejects it.
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Parses a Go duration (`300ms`, `-1.5h`, `2h45m`, `2m0s`, `0`) into a signed duration,
/// with Go's error texts (`time: invalid duration "x"`, `time: missing unit in duration
/// "10"`, `time: unknown unit "d" in duration "1d"`).
pub fn parse_go_duration(s: &str) -> Result<Duration, crate::go_duration::GoDurationError> {
    crate::go_duration::parse_go_duration_nanos(s).map(Duration::nanoseconds)
}

fn parse_int_param(q: &QueryParams, name: &str, dst: &mut i32) -> Result<(), QueryError> {
    let v = q.get(name);
    if !v.is_empty() {
        // Go's Atoi is 64-bit; values beyond i32 are rejected here rather than wrapped.
        *dst = v
            .parse::<i32>()
            .map_err(|_| QueryError(format!("parameter {name} invalid")))?;
    }
    Ok(())
}

impl PinOptions {
    /// Parses pin options from a URL query string (with or without the leading `?`),
    /// exactly as upstream's REST API: same names, defaults, order of checks and
    /// error texts. `metadata` is always a map afterwards; `user_allocations` and
    /// `origins` stay `None` when absent; invalid user-allocation IDs are dropped.
    pub fn from_query(query: &str) -> Result<PinOptions, QueryError> {
        Self::from_params(&QueryParams::parse(query))
    }

    /// As `from_query`, from already decoded parameters.
    pub fn from_params(q: &QueryParams) -> Result<PinOptions, QueryError> {
        Self::from_params_at(q, Time::now())
    }

    fn from_params_at(q: &QueryParams, now: Time) -> Result<PinOptions, QueryError> {
        let mut po = PinOptions {
            name: q.get("name").to_string(),
            mode: PinMode::from_name(q.get("mode")),
            ..Default::default()
        };
        let mut q = q.clone();
        let repl = q.get("replication").to_string();
        if !repl.is_empty() {
            q.set("replication-min", repl.clone());
            q.set("replication-max", repl);
        }
        parse_int_param(&q, "replication-min", &mut po.replication_factor_min)?;
        parse_int_param(&q, "replication-max", &mut po.replication_factor_max)?;
        let v = q.get("shard-size");
        if !v.is_empty() {
            po.shard_size = v
                .parse()
                .map_err(|_| QueryError("parameter shard_size is invalid".into()))?;
        }
        let v = q.get("user-allocations");
        if !v.is_empty() {
            po.user_allocations =
                Some(v.split(',').filter_map(|p| parse_peer_id(p).ok()).collect());
        }
        let at = q.get("expire-at");
        let expire_in = q.get("expire-in");
        if !at.is_empty() {
            po.expire_at = Time::parse(at).map_err(|e| {
                // Upstream's text is Go's time.Parse error; ours when Go would take it.
                let why = crate::time::go_rfc3339_error(at).unwrap_or_else(|| e.to_string());
                QueryError(format!("expire-at cannot be parsed: {why}"))
            })?;
        } else if !expire_in.is_empty() {
            let d = parse_go_duration(expire_in)
                .map_err(|e| QueryError(format!("expire-in cannot be parsed: {e}")))?;
            if d < Duration::seconds(1) {
                return Err(QueryError("expire-in duration too short".into()));
            }
            let at = now.datetime().checked_add_signed(d).ok_or_else(|| {
                QueryError("expire-in cannot be parsed: duration too long".into())
            })?;
            po.expire_at = Time::from_datetime(at);
        }
        let mut meta = Metadata::new();
        for k in q.keys() {
            if let Some(mk) = k.strip_prefix("meta-") {
                if !mk.is_empty() {
                    meta.insert(mk.to_string(), q.get(k).to_string());
                }
            }
        }
        po.metadata = Some(meta);
        let v = q.get("pin-update");
        if !v.is_empty() {
            po.pin_update =
                Some(Cid::parse(v).map_err(|e| {
                    QueryError(format!("error decoding update option parameter: {e}"))
                })?);
        }
        let v = q.get("origins");
        if !v.is_empty() {
            let mut origins = Vec::new();
            for o in v.split(',') {
                let ma = parse_multiaddr(o)
                    .map_err(|e| QueryError(format!("error decoding multiaddress: {e}")))?;
                if crate::multiaddr_peer_id(&ma).is_none() {
                    return Err(QueryError(format!(
                        "multiaddress does not contain peer ID: {o} has no /p2p/ component"
                    )));
                }
                origins.push(ma);
            }
            po.origins = Some(origins);
        }
        Ok(po)
    }

    /// The query string the Go client sends (keys sorted, Go escaping): always
    /// `replication-min/max`, `name`, `mode`, `shard-size`, `user-allocations`; then
    /// `expire-at` if set, `meta-<k>` per entry, `pin-update` if set, `origins` if any.
    pub fn to_query(&self) -> String {
        let mut q = QueryParams::default();
        q.set("replication-min", self.replication_factor_min.to_string());
        q.set("replication-max", self.replication_factor_max.to_string());
        q.set("name", self.name.clone());
        q.set("mode", self.mode.as_str());
        q.set("shard-size", self.shard_size.to_string());
        q.set(
            "user-allocations",
            self.user_allocations
                .as_deref()
                .unwrap_or_default()
                .join(","),
        );
        if !self.expire_at.is_zero() {
            q.set("expire-at", self.expire_at.to_string());
        }
        for (k, v) in self.metadata.iter().flatten() {
            if !k.is_empty() {
                q.set(&format!("meta-{k}"), v.clone());
            }
        }
        if let Some(c) = &self.pin_update {
            q.set("pin-update", c.to_string());
        }
        if let Some(origins) = self.origins.as_ref().filter(|o| !o.is_empty()) {
            let joined: Vec<String> = origins.iter().map(|m| m.to_string()).collect();
            q.set("origins", joined.join(","));
        }
        q.encode()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_signed_escape_is_rejected_as_go_does() {
        assert_eq!(super::unescape("%+f"), None);
        assert_eq!(super::unescape("%-1"), None);
        assert_eq!(super::unescape("%41").as_deref(), Some("A"));
    }

    use super::*;

    const CID: &str = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG";
    const PEER: &str = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";

    fn err(q: &str) -> String {
        PinOptions::from_query(q).unwrap_err().0
    }

    #[test]
    fn duration_overflows_are_errors_not_panics() {
        // Spotted while writing the rest_query fuzz target (tests/fuzz), which reproduces
        // both: a 30-digit fraction of an hour overflowed the multiplication, a fraction
        // on the largest whole number of hours overflowed the addition.
        let ok = |s: &str| parse_go_duration(s).unwrap().num_nanoseconds().unwrap();
        assert_eq!(ok("1.999999999999999999999999999999h"), 7_199_999_999_999);
        assert_eq!(
            parse_go_duration("94522879700260684295381835.9h")
                .unwrap_err()
                .to_string(),
            "time: invalid duration \"94522879700260684295381835.9h\""
        );
    }

    #[test]
    fn durations() {
        let ok = |s: &str| parse_go_duration(s).unwrap().num_nanoseconds().unwrap();
        assert_eq!(ok("2m0s"), 120_000_000_000);
        assert_eq!(ok("1h"), 3_600_000_000_000);
        assert_eq!(ok("1h30m"), 5_400_000_000_000);
        assert_eq!(ok("90s"), 90_000_000_000);
        assert_eq!(ok("1.5s"), 1_500_000_000);
        assert_eq!(ok(".5s"), 500_000_000);
        assert_eq!(ok("300ms"), 300_000_000);
        assert_eq!(ok("10us"), 10_000);
        assert_eq!(ok("10µs"), 10_000);
        assert_eq!(ok("-1m"), -60_000_000_000);
        assert_eq!(ok("0"), 0);
        assert_eq!(
            parse_go_duration("").unwrap_err().to_string(),
            "time: invalid duration \"\""
        );
        assert_eq!(
            parse_go_duration("abc").unwrap_err().to_string(),
            "time: invalid duration \"abc\""
        );
        assert_eq!(
            parse_go_duration(".s").unwrap_err().to_string(),
            "time: invalid duration \".s\""
        );
        assert_eq!(
            parse_go_duration("10").unwrap_err().to_string(),
            "time: missing unit in duration \"10\""
        );
        assert_eq!(
            parse_go_duration("1d").unwrap_err().to_string(),
            "time: unknown unit \"d\" in duration \"1d\""
        );
        assert!(parse_go_duration("9999999999h").is_err());
    }

    #[test]
    fn query_codec() {
        let q = QueryParams::parse("?a=1&a=2&b=x+y%2Bz&bad=%zz&c");
        assert_eq!(q.get("a"), "1");
        assert_eq!(q.get("b"), "x y+z");
        assert!(!q.has("bad"));
        assert!(q.has("c"));
        assert_eq!(q.get("missing"), "");
        assert_eq!(escape("a b+c~*/"), "a+b%2Bc~%2A%2F");
    }

    #[test]
    fn defaults() {
        let po = PinOptions::from_query("").unwrap();
        assert_eq!(po.replication_factor_min, 0);
        assert_eq!(po.mode, PinMode::Recursive);
        assert_eq!(po.metadata, Some(Metadata::new()));
        assert_eq!(po.user_allocations, None);
        assert_eq!(po.origins, None);
        assert!(po.expire_at.is_zero());
        assert_eq!(po.pin_update, None);
    }

    #[test]
    fn valid_options() {
        let q = format!(
            "name=my+pin&mode=direct&replication-min=2&replication-max=3&shard-size=100\
             &user-allocations={PEER},garbage&meta-a=1&meta-a=2&meta-=x&meta-b=%20&pin-update={CID}\
             &origins=/ip4/1.2.3.4/tcp/4001/p2p/{PEER}&expire-at=2030-01-01T00:00:00%2B02:00"
        );
        let po = PinOptions::from_query(&q).unwrap();
        assert_eq!(po.name, "my pin");
        assert_eq!(po.mode, PinMode::Direct);
        assert_eq!(
            (po.replication_factor_min, po.replication_factor_max),
            (2, 3)
        );
        assert_eq!(po.shard_size, 100);
        assert_eq!(po.user_allocations, Some(vec![PEER.to_string()]));
        let meta = po.metadata.clone().unwrap();
        assert_eq!(meta.len(), 2);
        assert_eq!(meta["a"], "1");
        assert_eq!(meta["b"], " ");
        assert_eq!(po.pin_update.unwrap().to_string(), CID);
        assert_eq!(po.origins.as_ref().unwrap().len(), 1);
        assert_eq!(po.expire_at.to_string(), "2029-12-31T22:00:00Z");
        // unknown mode is recursive; replication overrides both
        let po = PinOptions::from_query("mode=weird&replication=-1&replication-min=5").unwrap();
        assert_eq!(po.mode, PinMode::Recursive);
        assert_eq!(
            (po.replication_factor_min, po.replication_factor_max),
            (-1, -1)
        );
    }

    #[test]
    fn expire_in() {
        let now = Time::parse("2024-05-01T10:00:00Z").unwrap();
        let po = PinOptions::from_params_at(&QueryParams::parse("expire-in=1h30m"), now).unwrap();
        assert_eq!(po.expire_at.to_string(), "2024-05-01T11:30:00Z");
        // expire-at wins
        let po = PinOptions::from_params_at(
            &QueryParams::parse("expire-in=1h&expire-at=2025-01-01T00:00:00Z"),
            now,
        )
        .unwrap();
        assert_eq!(po.expire_at.to_string(), "2025-01-01T00:00:00Z");
        assert_eq!(err("expire-in=500ms"), "expire-in duration too short");
        assert_eq!(err("expire-in=-1h"), "expire-in duration too short");
        assert_eq!(
            err("expire-in=1d"),
            "expire-in cannot be parsed: time: unknown unit \"d\" in duration \"1d\""
        );
    }

    #[test]
    fn errors_in_order() {
        assert_eq!(
            err("replication-min=x&replication-max=y"),
            "parameter replication-min invalid"
        );
        assert_eq!(
            err("replication-max=y&shard-size=-1"),
            "parameter replication-max invalid"
        );
        assert_eq!(err("replication=1.5"), "parameter replication-min invalid");
        assert_eq!(err("shard-size=-1"), "parameter shard_size is invalid");
        assert!(err("expire-at=2024-05-01T10:00:00").starts_with("expire-at cannot be parsed: "));
        assert!(err("pin-update=nope").starts_with("error decoding update option parameter: "));
        assert!(err("origins=/nope").starts_with("error decoding multiaddress: "));
        assert!(err("origins=/ip4/1.2.3.4/tcp/1")
            .starts_with("multiaddress does not contain peer ID: "));
        // first error stops: shard size is checked before pin-update
        assert_eq!(
            err("pin-update=nope&shard-size=x"),
            "parameter shard_size is invalid"
        );
    }

    #[test]
    fn to_query_like_go_client() {
        assert_eq!(
            PinOptions::default().to_query(),
            "mode=recursive&name=&replication-max=0&replication-min=0&shard-size=0&user-allocations="
        );
        let mut po = PinOptions::from_query(&format!(
            "name=a b&meta-k=v&pin-update={CID}&origins=/ip4/1.2.3.4/tcp/4001/p2p/{PEER}\
             &expire-at=2030-01-01T00:00:00.5Z&user-allocations={PEER}"
        ))
        .unwrap();
        let q = po.to_query();
        assert_eq!(
            q,
            format!(
                "expire-at=2030-01-01T00%3A00%3A00.5Z&meta-k=v&mode=recursive&name=a+b\
                 &origins=%2Fip4%2F1.2.3.4%2Ftcp%2F4001%2Fp2p%2F{PEER}&pin-update={CID}\
                 &replication-max=0&replication-min=0&shard-size=0&user-allocations={PEER}"
            )
        );
        // and it parses back to the same options
        assert_eq!(PinOptions::from_query(&q).unwrap(), po);
        po.origins = Some(vec![]);
        assert!(!po.to_query().contains("origins"));
    }
}
