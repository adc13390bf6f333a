//! Query-string parsing as upstream: Go's `url.Values` (first value wins), pin options
//! (§8.1, errors in upstream's order and wording), Go durations, CIDs and peer IDs.

use std::collections::BTreeMap;

use ipfs_cluster_proto::types::v1 as pb;

/// Decoded query parameters; `get` returns the first value like Go's `Values.Get`.
#[derive(Debug, Default, Clone)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(q: Option<&str>) -> Self {
        let pairs = q
            .map(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        Self { pairs }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Only the exact string `true` turns a flag on (upstream's `local=true`).
    pub fn is_true(&self, key: &str) -> bool {
        self.get(key) == Some("true")
    }

    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// Validates a CID string and returns its canonical form (v0 base58, v1 base32).
pub fn parse_cid(s: &str) -> Result<cid::Cid, String> {
    cid::Cid::try_from(s).map_err(|e| e.to_string())
}

/// Validates a peer ID (base58 multihash, or a CIDv1 with the libp2p-key codec).
pub fn parse_peer_id(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("empty peer ID".into());
    }
    if s.starts_with('1') || s.starts_with("Qm") {
        let bytes = multibase_b58(s)?;
        multihash_check(&bytes)?;
        return Ok(s.to_string());
    }
    let c = cid::Cid::try_from(s).map_err(|e| format!("failed to parse peer ID: {e}"))?;
    if c.codec() != 0x72 {
        return Err(format!(
            "failed to parse peer ID: can't convert CID of type {:#x} to a peer ID",
            c.codec()
        ));
    }
    let mh = c.hash().to_bytes();
    Ok(bs58_encode(&mh))
}

fn multibase_b58(s: &str) -> Result<Vec<u8>, String> {
    // multibase with the 'z' (base58btc) prefix decodes the raw base58 string.
    let (_, bytes) = multibase_decode(&format!("z{s}"))?;
    Ok(bytes)
}

fn multibase_decode(s: &str) -> Result<((), Vec<u8>), String> {
    cid::multibase::decode(s)
        .map(|(_, b)| ((), b))
        .map_err(|e| format!("failed to parse peer ID: {e}"))
}

fn bs58_encode(b: &[u8]) -> String {
    let s = cid::multibase::encode(cid::multibase::Base::Base58Btc, b);
    s[1..].to_string()
}

fn multihash_check(b: &[u8]) -> Result<(), String> {
    cid::multihash::Multihash::<64>::from_bytes(b)
        .map(|_| ())
        .map_err(|e| format!("failed to parse peer ID: {e}"))
}

/// Parses a Go duration string (`1h30m`, `90s`, `1.5h`, `-2m`).
pub fn parse_go_duration(s: &str) -> Result<i128, String> {
    let orig = s;
    let err = || format!("time: invalid duration \"{orig}\"");
    let (neg, mut s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(err());
    }
    let mut total: f64 = 0.0;
    while !s.is_empty() {
        let n = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        if n == 0 {
            return Err(err());
        }
        let num: f64 = s[..n].parse().map_err(|_| err())?;
        s = &s[n..];
        let u = s
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(s.len());
        let unit = match &s[..u] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("time: missing unit in duration \"{orig}\"")),
            other => {
                return Err(format!(
                    "time: unknown unit \"{other}\" in duration \"{orig}\""
                ))
            }
        };
        s = &s[u..];
        total += num * unit;
    }
    let ns = total as i128;
    Ok(if neg { -ns } else { ns })
}

/// Pin options parsed from the query string, plus the requested mode.
#[derive(Debug, Clone, Default)]
pub struct ParsedPinOptions {
    pub options: pb::PinOptions,
    /// -1 recursive (default), 0 direct.
    pub max_depth: i32,
}

/// Upstream's `PinOptions.FromQuery` (§8.1). The first error stops parsing; the
/// message is upstream's.
pub fn pin_options_from_query(
    q: &Query,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<ParsedPinOptions, String> {
    let mut o = pb::PinOptions {
        name: q.get("name").unwrap_or("").to_string(),
        ..Default::default()
    };
    let max_depth = match q.get("mode") {
        Some("direct") => 0,
        Some("recursive") | Some("") | None => -1,
        Some(other) => {
            tracing::warn!(mode = other, "unknown pin mode; using recursive");
            -1
        }
    };
    if let Some(v) = q.get("user-allocations").filter(|v| !v.is_empty()) {
        // Invalid IDs are dropped silently, as upstream.
        o.user_allocations = v
            .split(',')
            .filter_map(|p| parse_peer_id(p.trim()).ok())
            .collect();
    }
    let parse_int = |key: &str, msg: &str| -> Result<Option<i32>, String> {
        match q.get(key) {
            Some(v) if !v.is_empty() => v.parse::<i32>().map(Some).map_err(|_| msg.to_string()),
            _ => Ok(None),
        }
    };
    if let Some(v) = q.get("replication").filter(|v| !v.is_empty()) {
        // Upstream copies `replication` into both min and max before parsing them.
        let n: i32 = v
            .parse()
            .map_err(|_| "parameter replication-min invalid".to_string())?;
        o.replication_factor_min = n;
        o.replication_factor_max = n;
    } else {
        if let Some(n) = parse_int("replication-min", "parameter replication-min invalid")? {
            o.replication_factor_min = n;
        }
        if let Some(n) = parse_int("replication-max", "parameter replication-max invalid")? {
            o.replication_factor_max = n;
        }
    }
    if let Some(v) = q.get("shard-size").filter(|v| !v.is_empty()) {
        o.shard_size = v
            .parse::<u64>()
            .map_err(|_| "parameter shard_size is invalid".to_string())?;
    }
    if let Some(v) = q.get("expire-at").filter(|v| !v.is_empty()) {
        let t = chrono::DateTime::parse_from_rfc3339(v)
            .map_err(|e| format!("expire-at cannot be parsed: {e}"))?;
        o.expire_at = t.timestamp();
    } else if let Some(v) = q.get("expire-in").filter(|v| !v.is_empty()) {
        let ns = parse_go_duration(v).map_err(|e| format!("expire-in cannot be parsed: {e}"))?;
        if ns < 1_000_000_000 {
            return Err("expire-in duration too short".into());
        }
        o.expire_at = now.timestamp() + (ns / 1_000_000_000) as i64;
    }
    let mut meta = BTreeMap::new();
    for (k, v) in q.pairs() {
        if let Some(key) = k.strip_prefix("meta-") {
            if !key.is_empty() && !meta.contains_key(key) {
                meta.insert(key.to_string(), v.to_string());
            }
        }
    }
    o.metadata = meta.into_iter().collect();
    if let Some(v) = q.get("pin-update").filter(|v| !v.is_empty()) {
        let c = parse_cid(v).map_err(|e| format!("error decoding update option parameter: {e}"))?;
        o.pin_update = c.to_string();
    }
    if let Some(v) = q.get("origins").filter(|v| !v.is_empty()) {
        for s in v.split(',') {
            let m: multiaddr::Multiaddr = s
                .trim()
                .parse()
                .map_err(|e| format!("error decoding multiaddress: {e}"))?;
            if !m.iter().any(|p| matches!(p, multiaddr::Protocol::P2p(_))) {
                return Err(
                    "multiaddress does not contain peer ID: no peer ID in multiaddress".into(),
                );
            }
            o.origins.push(m.to_string());
        }
    }
    Ok(ParsedPinOptions {
        options: o,
        max_depth,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Query {
        Query::parse(Some(s))
    }

    #[test]
    fn ctl_default_query() {
        let p = pin_options_from_query(
            &q("mode=recursive&name=&replication-max=0&replication-min=0&shard-size=0&user-allocations="),
            chrono::Utc::now(),
        )
        .unwrap();
        assert_eq!(p.max_depth, -1);
        assert_eq!(p.options.replication_factor_min, 0);
        assert!(p.options.user_allocations.is_empty());
    }

    #[test]
    fn options_and_errors() {
        let now = chrono::Utc::now();
        let p = pin_options_from_query(
            &q("mode=direct&replication=3&meta-a=1&meta-a=2&meta-=x&name=n"),
            now,
        )
        .unwrap();
        assert_eq!(p.max_depth, 0);
        assert_eq!(
            (
                p.options.replication_factor_min,
                p.options.replication_factor_max
            ),
            (3, 3)
        );
        assert_eq!(p.options.metadata.get("a").map(String::as_str), Some("1"));
        assert_eq!(p.options.metadata.len(), 1);
        let e = |s| pin_options_from_query(&q(s), now).unwrap_err();
        assert_eq!(e("replication-min=x"), "parameter replication-min invalid");
        assert_eq!(e("replication-max=x"), "parameter replication-max invalid");
        assert_eq!(e("shard-size=-1"), "parameter shard_size is invalid");
        assert!(e("expire-at=2024-05-01T10:00:00").starts_with("expire-at cannot be parsed: "));
        assert_eq!(e("expire-in=500ms"), "expire-in duration too short");
        assert!(e("expire-in=abc").starts_with("expire-in cannot be parsed: "));
        assert!(e("pin-update=nope").starts_with("error decoding update option parameter: "));
        assert!(
            e("origins=/ip4/1.2.3.4/tcp/1").starts_with("multiaddress does not contain peer ID")
        );
        assert!(e("origins=garbage").starts_with("error decoding multiaddress: "));
        let p = pin_options_from_query(&q("expire-in=1h30m"), now).unwrap();
        assert_eq!(p.options.expire_at, now.timestamp() + 5400);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_go_duration("90s").unwrap(), 90_000_000_000);
        assert_eq!(parse_go_duration("1.5h").unwrap(), 5_400_000_000_000);
        assert!(parse_go_duration("5").is_err());
        assert!(parse_go_duration("").is_err());
    }

    #[test]
    fn peer_ids() {
        assert!(parse_peer_id("12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA").is_ok());
        assert!(parse_peer_id("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N").is_ok());
        assert!(parse_peer_id("notapeer").is_err());
        assert!(parse_peer_id("").is_err());
    }
}
