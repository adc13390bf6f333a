//! go-multiaddr's words for a string it refuses, so a user who mistypes `--host` reads
//! what upstream's ctl prints ("failed to parse multiaddr "foo": must begin with /").
//! rust-multiaddr checks the same grammar but words its errors differently; this walks the
//! string the way go-multiaddr v0.16's `stringToBytes` does (the version upstream v1.1.6
//! uses) and names the first problem it finds. Values it does not check in Go's words
//! (onion, garlic, certhash...) are left to rust-multiaddr.

use std::net::{Ipv4Addr, Ipv6Addr};

/// How a protocol's value is written after its name.
#[derive(Clone, Copy, PartialEq)]
enum Value {
    /// No value (`/quic-v1`, `/tls`).
    None,
    /// One segment.
    One,
    /// The rest of the address (`/unix/<path>`).
    Path,
}

/// go-multiaddr v0.16.1's protocol names (protocols.go; `ipfs` is an alias of `p2p`).
fn protocol(name: &str) -> Option<Value> {
    Some(match name {
        "ip4" | "ip6" | "tcp" | "udp" | "dccp" | "sctp" | "dns" | "dns4" | "dns6" | "dnsaddr"
        | "ipcidr" | "ip6zone" | "onion" | "onion3" | "garlic64" | "garlic32" | "certhash"
        | "http-path" | "p2p" | "ipfs" | "sni" | "memory" => Value::One,
        "unix" => Value::Path,
        "p2p-circuit" | "utp" | "udt" | "quic" | "quic-v1" | "webtransport" | "http" | "https"
        | "p2p-webrtc-direct" | "tls" | "noise" | "plaintextv2" | "ws" | "wss"
        | "webrtc-direct" | "webrtc" => Value::None,
        _ => return None,
    })
}

/// Go's `strconv.ParseUint(s, 10, bits)` error, if any.
fn parse_uint_error(s: &str, bits: u32) -> Option<String> {
    let syntax = || format!("strconv.ParseUint: parsing {s:?}: invalid syntax");
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Some(syntax());
    }
    let max = (1u128 << bits) - 1;
    match s.parse::<u128>() {
        Ok(v) if v <= max => None,
        _ => Some(format!(
            "strconv.ParseUint: parsing {s:?}: value out of range"
        )),
    }
}

/// The Go transcoder's error for `value` of protocol `name`, for the values checked here.
fn value_error(name: &str, value: &str) -> Option<String> {
    match name {
        "tcp" | "udp" | "dccp" | "sctp" => {
            parse_uint_error(value, 16).map(|e| format!("failed to parse port addr: {e}"))
        }
        "ip4" => (value.parse::<Ipv4Addr>().is_err())
            .then(|| format!("failed to parse ip4 addr: {value}")),
        "ip6" => (value.parse::<Ipv6Addr>().is_err() && value.parse::<Ipv4Addr>().is_err())
            .then(|| format!("failed to parse ip6 addr: {value}")),
        "dns" | "dns4" | "dns6" | "dnsaddr" if value.is_empty() => Some("empty dns addr".into()),
        "p2p" | "ipfs" => {
            if crate::parse_peer_id(value).is_ok() {
                None
            } else if value.starts_with("Qm") || value.starts_with('1') {
                Some(format!(
                    "failed to parse p2p addr: {value} input isn't valid multihash"
                ))
            } else {
                let cid_err = crate::go_cid_error(value, "invalid cid");
                let reason = cid_err.trim_start_matches("invalid cid: ");
                Some(format!("failed to parse p2p addr: {value} {reason}"))
            }
        }
        _ => None,
    }
}

/// What go-multiaddr's `NewMultiaddr(s)` answers for `s`, when it refuses it; `None` when
/// Go would accept it (as far as this walk checks).
pub fn go_multiaddr_error(s: &str) -> Option<String> {
    let s = s.trim_end_matches('/');
    let fail = |what: String| Some(format!("failed to parse multiaddr {s:?}: {what}"));
    let mut parts = s.split('/');
    if parts.next() != Some("") {
        return fail("must begin with /".into());
    }
    let rest: Vec<&str> = parts.collect();
    if rest.is_empty() {
        return fail("empty multiaddr".into());
    }
    let mut i = 0;
    while i < rest.len() {
        let name = rest[i];
        let Some(kind) = protocol(name) else {
            return fail(format!("unknown protocol {name}"));
        };
        i += 1;
        if kind == Value::None {
            continue;
        }
        if i >= rest.len() {
            return fail("unexpected end of multiaddr".into());
        }
        if kind == Value::Path {
            return None;
        }
        let value = rest[i];
        if let Some(e) = value_error(name, value) {
            return fail(format!("invalid value {value:?} for protocol {name}: {e}"));
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::go_multiaddr_error as e;

    /// Texts printed by upstream v1.1.6's `ipfs-cluster-ctl --host <s> id` (go-multiaddr
    /// v0.16.1); the live comparison is tests/compat_edges.rs.
    #[test]
    fn go_words() {
        assert_eq!(
            e("foo").unwrap(),
            r#"failed to parse multiaddr "foo": must begin with /"#
        );
        assert_eq!(
            e("/ip4/127.0.0.1/tcp/notaport").unwrap(),
            r#"failed to parse multiaddr "/ip4/127.0.0.1/tcp/notaport": invalid value "notaport" for protocol tcp: failed to parse port addr: strconv.ParseUint: parsing "notaport": invalid syntax"#
        );
        assert_eq!(
            e("/ip4/127.0.0.1/tcp/70000").unwrap(),
            r#"failed to parse multiaddr "/ip4/127.0.0.1/tcp/70000": invalid value "70000" for protocol tcp: failed to parse port addr: strconv.ParseUint: parsing "70000": value out of range"#
        );
        assert_eq!(
            e("/ip4/1.2.3").unwrap(),
            r#"failed to parse multiaddr "/ip4/1.2.3": invalid value "1.2.3" for protocol ip4: failed to parse ip4 addr: 1.2.3"#
        );
        assert_eq!(
            e("/ip4/127.0.0.1/tcp").unwrap(),
            r#"failed to parse multiaddr "/ip4/127.0.0.1/tcp": unexpected end of multiaddr"#
        );
        assert_eq!(
            e("/ipv4/1.2.3.4").unwrap(),
            r#"failed to parse multiaddr "/ipv4/1.2.3.4": unknown protocol ipv4"#
        );
        assert_eq!(
            e("/").unwrap(),
            r#"failed to parse multiaddr "": empty multiaddr"#
        );
        assert_eq!(e("/ip4/127.0.0.1/tcp/9094"), None);
        assert_eq!(e("/ip4/127.0.0.1/tcp/9094/"), None);
        assert_eq!(
            e("/dns4/h/tcp/1/p2p/Qm0").unwrap(),
            r#"failed to parse multiaddr "/dns4/h/tcp/1/p2p/Qm0": invalid value "Qm0" for protocol p2p: failed to parse p2p addr: Qm0 input isn't valid multihash"#
        );
        assert_eq!(e("/unix/run/cluster/api.sock"), None);
        assert_eq!(e("/ip6/::1/tcp/9094/ws"), None);
    }
}
