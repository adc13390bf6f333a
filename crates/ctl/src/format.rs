//! Text (`--enc text`) and JSON (`--enc json`) renderings of API objects. Objects
//! arrive as `serde_json::Value` (field order preserved), so JSON output mirrors the server
//! exactly as upstream's decode/re-encode does, and text output reads fields leniently.

use serde::Serialize;
use serde_json::Value;

use crate::error::RestError;
use crate::go_text::{humanize_bytes, humanize_time, is_zero_time, parse_time, render_time};

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn i(v: &Value, key: &str) -> i64 {
    v.get(key).and_then(Value::as_i64).unwrap_or(0)
}

fn strs(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A CID as Go's `%s` prints it: undefined (null) CIDs print as `b`.
fn cid_str(v: &Value, key: &str) -> String {
    match v.get(key).and_then(Value::as_str) {
        Some(c) if !c.is_empty() => c.to_string(),
        _ => "b".to_string(),
    }
}

/// Go's `%-Ns`: pad with spaces to N characters (runes), never cut.
fn pad_right(text: &str, width: usize) -> String {
    let n = text.chars().count();
    if n >= width {
        text.to_string()
    } else {
        format!("{text}{}", " ".repeat(width - n))
    }
}

fn pad_left(text: &str, width: usize) -> String {
    let n = text.chars().count();
    if n >= width {
        text.to_string()
    } else {
        format!("{}{text}", " ".repeat(width - n))
    }
}

/// `--enc json`: 4-space indented JSON plus a newline.
pub fn json_pretty<T: Serialize + ?Sized>(v: &T) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    // Serializing a Value or plain struct into memory cannot fail.
    let _ = v.serialize(&mut ser);
    let mut out = String::from_utf8(buf).unwrap_or_default();
    out.push('\n');
    out
}

/// `id` and each `peers ls` entry.
pub fn id(v: &Value) -> String {
    let pid = s(v, "id");
    let err = s(v, "error");
    if !err.is_empty() {
        return format!("{pid} | ERROR: {err}\n");
    }
    let peers = v
        .get("cluster_peers")
        .and_then(Value::as_array)
        .map(Vec::len)
        .unwrap_or(0) as i64;
    let mut out = format!(
        "{pid} | {} | Sees {} other peers\n",
        s(v, "peername"),
        peers - 1
    );
    let mut addrs = strs(v, "addresses");
    addrs.sort();
    out.push_str("  > Addresses:\n");
    for a in addrs {
        out.push_str(&format!("    - {a}\n"));
    }
    let ipfs = v.get("ipfs").cloned().unwrap_or(Value::Null);
    let ierr = s(&ipfs, "error");
    if !ierr.is_empty() {
        out.push_str(&format!("  > IPFS ERROR: {ierr}\n"));
        return out;
    }
    let mut iaddrs = strs(&ipfs, "addresses");
    iaddrs.sort();
    out.push_str(&format!("  > IPFS: {}\n", s(&ipfs, "id")));
    for a in iaddrs {
        out.push_str(&format!("    - {a}\n"));
    }
    out
}

/// GlobalPinInfo (`status`, `recover`, after pin/unpin).
pub fn global_pin_info(v: &Value) -> String {
    let name = s(v, "name");
    let mut out = cid_str(v, "cid");
    if !name.is_empty() {
        out.push_str(" | ");
        out.push_str(name);
    }
    out.push_str(":\n");
    if let Some(map) = v.get("peer_map").and_then(Value::as_object) {
        let mut keys: Vec<&String> = map.keys().collect();
        keys.sort();
        for k in keys {
            let p = &map[k];
            let peername = s(p, "peername");
            let who = if peername.is_empty() {
                k.as_str()
            } else {
                peername
            };
            let mut line = format!(
                "    > {} : {}",
                pad_right(who, 20),
                s(p, "status").to_uppercase()
            );
            let err = s(p, "error");
            if !err.is_empty() {
                line.push_str(": ");
                line.push_str(err);
            }
            let prio = p
                .get("priority_pin")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            line.push_str(&format!(
                " | {} | Attempts: {} | Priority: {}\n",
                render_time(s(p, "timestamp")),
                i(p, "attempt_count"),
                prio
            ));
            out.push_str(&line);
        }
    }
    out
}

fn date_time(t: &str) -> String {
    parse_time(t)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| t.to_string())
}

/// Pin (`pin ls`, `pin add --no-status`).
pub fn pin(v: &Value) -> String {
    let mut typ = s(v, "type").to_uppercase();
    if s(v, "mode") == "direct" {
        typ.push_str("-DIRECT");
    }
    let mut out = format!("{} | {} | {} | ", cid_str(v, "cid"), s(v, "name"), typ);
    let (min, max) = (
        i(v, "replication_factor_min"),
        i(v, "replication_factor_max"),
    );
    if min == -1 && max == -1 {
        out.push_str("Repl. Factor: -1 | Allocations: [everywhere]");
    } else {
        let mut allocs = strs(v, "allocations");
        allocs.sort();
        out.push_str(&format!(
            "Repl. Factor: {min}--{max} | Allocations: [{}]",
            allocs.join(" ")
        ));
    }
    let depth = match i(v, "max_depth") {
        0 => "Direct".to_string(),
        -1 => "Recursive".to_string(),
        n => format!("Recursive-{n}"),
    };
    let has_meta = v
        .get("metadata")
        .and_then(Value::as_object)
        .map(|m| !m.is_empty())
        .unwrap_or(false);
    let exp = s(v, "expire_at");
    let exp = if is_zero_time(exp) {
        "∞".to_string()
    } else {
        date_time(exp)
    };
    let added = s(v, "timestamp");
    let added = if is_zero_time(added) {
        "unknown".to_string()
    } else {
        date_time(added)
    };
    out.push_str(&format!(
        " | {depth} | Metadata: {} | Exp: {exp} | Added: {added}\n",
        if has_meta { "yes" } else { "no" }
    ));
    out
}

/// One AddedOutput line.
pub fn added_output(v: &Value, quiet: bool) -> String {
    if quiet {
        format!("{}\n", cid_str(v, "cid"))
    } else {
        format!("added {} {}\n", cid_str(v, "cid"), s(v, "name"))
    }
}

/// One peer's line of a `--enc text` list.
pub fn version(v: &Value) -> String {
    format!("{}\n", s(v, "version"))
}

/// One metric line, `now` in unix ns.
pub fn metric(v: &Value, now: i128) -> String {
    let name = s(v, "name");
    let weight = i(v, "weight");
    let value = if name == "freespace" && weight > 0 {
        humanize_bytes(weight as u64)
    } else {
        s(v, "value").to_string()
    };
    let expire = v.get("expire").and_then(Value::as_i64).unwrap_or(0) as i128;
    format!(
        "{} | {name}: {value} | Expires in: {}\n",
        s(v, "peer"),
        humanize_time(expire, now)
    )
}

/// One alert line.
pub fn alert(v: &Value, now: i128) -> String {
    let expire = v.get("expire").and_then(Value::as_i64).unwrap_or(0) as i128;
    let triggered = crate::go_text::time_ns(s(v, "triggered_at"));
    format!(
        "{}: {}. Expired at: {}. Triggered at: {}\n",
        s(v, "peer"),
        s(v, "name"),
        humanize_time(expire, now),
        humanize_time(triggered, now)
    )
}

/// Bandwidth by protocol, sorted.
pub fn bandwidth(v: &Value) -> String {
    let mut out = String::new();
    if let Some(map) = v.as_object() {
        let mut keys: Vec<&String> = map.keys().collect();
        keys.sort();
        for k in keys {
            let b = &map[k];
            let total = |f: &str| b.get(f).and_then(Value::as_i64).unwrap_or(0).max(0) as u64;
            let rate = |f: &str| b.get(f).and_then(Value::as_f64).unwrap_or(0.0);
            out.push_str(&format!(
                "{}: In: {}. Out: {}. RateIn: {:.2}B/s. RateOut: {:.2}B/s\n",
                pad_left(k, 25),
                pad_left(&humanize_bytes(total("total_in")), 7),
                pad_left(&humanize_bytes(total("total_out")), 7),
                rate("rate_in"),
                rate("rate_out"),
            ));
        }
    }
    out
}

/// GlobalRepoGC.
pub fn repo_gc(v: &Value) -> String {
    let mut out = String::new();
    let Some(map) = v.get("peer_map").and_then(Value::as_object) else {
        return out;
    };
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    for k in keys {
        let item = &map[k];
        let peername = s(item, "peername");
        let who = if peername.is_empty() {
            k.as_str()
        } else {
            peername
        };
        let err = s(item, "error");
        if err.is_empty() {
            out.push_str(&format!("{}\n", pad_right(who, 15)));
        } else {
            out.push_str(&format!("{} | ERROR: {err}\n", pad_right(who, 15)));
        }
        out.push_str("  > CIDs:\n");
        for key in item
            .get("keys")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let kerr = s(key, "error");
            if kerr.is_empty() {
                out.push_str(&format!("    - {}\n", cid_str(key, "key")));
            } else {
                out.push_str(&format!("    - ERROR: {kerr}\n"));
            }
        }
    }
    out
}

/// The error block printed on stdout.
pub fn error_text(e: &RestError) -> String {
    format!(
        "An error occurred:\n  Code: {}\n  Message: {}\n",
        e.code, e.message
    )
}

pub fn error_json(e: &RestError) -> String {
    json_pretty(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const P1: &str = "12D3KooWPeer1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const I1: &str = "12D3KooWIpfs1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    #[test]
    fn id_block() {
        let v = json!({"id":P1,"addresses":[format!("/ip4/127.0.0.1/tcp/9096/p2p/{P1}"), format!("/ip4/10.0.0.1/tcp/9096/p2p/{P1}")],
            "cluster_peers":[P1],"cluster_peers_addresses":[],"version":"1.1.6","commit":"",
            "rpc_protocol_version":"/ipfscluster/1.0/rpc","error":"",
            "ipfs":{"id":I1,"addresses":[format!("/ip4/127.0.0.1/tcp/4001/p2p/{I1}")],"error":""},"peername":"p1"});
        let want = format!(
            "{P1} | p1 | Sees 0 other peers\n  > Addresses:\n    - /ip4/10.0.0.1/tcp/9096/p2p/{P1}\n    - /ip4/127.0.0.1/tcp/9096/p2p/{P1}\n  > IPFS: {I1}\n    - /ip4/127.0.0.1/tcp/4001/p2p/{I1}\n"
        );
        assert_eq!(id(&v), want);
    }

    #[test]
    fn id_errors() {
        let v = json!({"id":P1,"error":"dial backoff","cluster_peers":null});
        assert_eq!(id(&v), format!("{P1} | ERROR: dial backoff\n"));
        let v = json!({"id":P1,"addresses":null,"cluster_peers":null,"error":"","ipfs":{"addresses":null,"error":"connection refused"},"peername":""});
        assert_eq!(id(&v), format!("{P1} |  | Sees -1 other peers\n  > Addresses:\n  > IPFS ERROR: connection refused\n"));
    }

    #[test]
    fn global_pin_info_lines() {
        let v = json!({"cid":"QmA","name":"","peer_map":{
            "b-peer":{"peername":"","status":"pin_error","timestamp":"2024-05-01T10:20:31.200Z","error":"boom","attempt_count":2,"priority_pin":true},
            "a-peer":{"peername":"peer1","status":"pinned","timestamp":"2024-05-01T10:20:30.123456Z","error":"","attempt_count":0,"priority_pin":false}}});
        let want = "QmA:\n    > peer1                : PINNED | 2024-05-01T10:20:30.123456Z | Attempts: 0 | Priority: false\n    > b-peer               : PIN_ERROR: boom | 2024-05-01T10:20:31.2Z | Attempts: 2 | Priority: true\n";
        assert_eq!(global_pin_info(&v), want);
        let v = json!({"cid":"QmA","name":"hello","peer_map":{}});
        assert_eq!(global_pin_info(&v), "QmA | hello:\n");
        // an over-long peer name is not cut
        let v = json!({"cid":"QmA","name":"","peer_map":{"x":{"peername":"a-very-long-peer-name-here","status":"remote","timestamp":"2024-05-01T10:20:30Z","error":"","attempt_count":0,"priority_pin":false}}});
        assert_eq!(
            global_pin_info(&v),
            "QmA:\n    > a-very-long-peer-name-here : REMOTE | 2024-05-01T10:20:30Z | Attempts: 0 | Priority: false\n"
        );
    }

    #[test]
    fn pin_lines() {
        let v = json!({"replication_factor_min":-1,"replication_factor_max":-1,"name":"","mode":"recursive","shard_size":0,
            "user_allocations":null,"expire_at":"0001-01-01T00:00:00Z","metadata":null,"pin_update":null,"origins":[],
            "cid":"QmA","type":"pin","allocations":[],"max_depth":-1,"reference":null,"timestamp":"2024-05-01T10:20:30Z"});
        assert_eq!(
            pin(&v),
            "QmA |  | PIN | Repl. Factor: -1 | Allocations: [everywhere] | Recursive | Metadata: no | Exp: ∞ | Added: 2024-05-01 10:20:30\n"
        );
        let v = json!({"replication_factor_min":1,"replication_factor_max":2,"name":"n","mode":"direct",
            "expire_at":"2025-01-02T03:04:05.5+02:00","metadata":{"k":"v"},"cid":"QmB","type":"pin","allocations":["zz","aa"],
            "max_depth":0,"timestamp":"0001-01-01T00:00:00Z"});
        assert_eq!(
            pin(&v),
            "QmB | n | PIN-DIRECT | Repl. Factor: 1--2 | Allocations: [aa zz] | Direct | Metadata: yes | Exp: 2025-01-02 03:04:05 | Added: unknown\n"
        );
        let v = json!({"replication_factor_min":1,"replication_factor_max":1,"name":"s","mode":"recursive","cid":"QmC","type":"shard-pin",
            "allocations":[],"max_depth":1,"expire_at":"0001-01-01T00:00:00Z","timestamp":"2024-05-01T10:20:30Z"});
        assert_eq!(
            pin(&v),
            "QmC | s | SHARD-PIN | Repl. Factor: 1--1 | Allocations: [] | Recursive-1 | Metadata: no | Exp: ∞ | Added: 2024-05-01 10:20:30\n"
        );
    }

    #[test]
    fn added_and_version() {
        let v = json!({"name":"smallfile.bin","cid":"QmS","size":508});
        assert_eq!(added_output(&v, false), "added QmS smallfile.bin\n");
        assert_eq!(added_output(&v, true), "QmS\n");
        assert_eq!(
            added_output(&json!({"name":"","cid":"QmW"}), false),
            "added QmW \n"
        );
        assert_eq!(version(&json!({"version":"1.1.6"})), "1.1.6\n");
    }

    #[test]
    fn metric_and_alert_lines() {
        let now: i128 = 1_700_000_000_000_000_000;
        let v = json!({"name":"freespace","peer":P1,"value":"45000000000","expire":(now + 30_000_000_000) as i64,
            "valid":true,"weight":45_000_000_000i64,"partitionable":false,"received_at":0});
        assert_eq!(
            metric(&v, now),
            format!("{P1} | freespace: 45 GB | Expires in: 30 seconds from now\n")
        );
        let v = json!({"name":"ping","peer":P1,"value":"{}","expire":(now - 3_600_000_000_000) as i64,"weight":0});
        assert_eq!(
            metric(&v, now),
            format!("{P1} | ping: {{}} | Expires in: 1 hour ago\n")
        );
        let v = json!({"name":"ping","peer":P1,"value":"","expire":(now - 120_000_000_000) as i64,"triggered_at":"2023-11-14T22:12:20Z"});
        assert_eq!(
            alert(&v, now),
            format!("{P1}: ping. Expired at: 2 minutes ago. Triggered at: 1 minute ago\n")
        );
    }

    #[test]
    fn bandwidth_lines() {
        let v = json!({"/ipfs/ping/1.0.0":{"total_in":1000,"total_out":5,"rate_in":1.5,"rate_out":0.0},
            "/a":{"total_in":0,"total_out":0,"rate_in":0.0,"rate_out":0.0}});
        assert_eq!(
            bandwidth(&v),
            "                       /a: In:     0 B. Out:     0 B. RateIn: 0.00B/s. RateOut: 0.00B/s\n         /ipfs/ping/1.0.0: In:  1.0 kB. Out:     5 B. RateIn: 1.50B/s. RateOut: 0.00B/s\n"
        );
    }

    #[test]
    fn repo_gc_lines() {
        let v = json!({"peer_map":{
            "peerB":{"peer":"peerB","peername":"","keys":[{"key":"QmK1"},{"key":null,"error":"bad"}]},
            "peerA":{"peer":"peerA","peername":"alpha","keys":null,"error":"ipfs down"}}});
        assert_eq!(
            repo_gc(&v),
            "alpha           | ERROR: ipfs down\n  > CIDs:\npeerB          \n  > CIDs:\n    - QmK1\n    - ERROR: bad\n"
        );
    }

    #[test]
    fn error_block_and_json() {
        let e = RestError {
            code: 404,
            message: "pin is not part of the pinset".into(),
        };
        assert_eq!(
            error_text(&e),
            "An error occurred:\n  Code: 404\n  Message: pin is not part of the pinset\n"
        );
        assert_eq!(
            error_json(&e),
            "{\n    \"code\": 404,\n    \"message\": \"pin is not part of the pinset\"\n}\n"
        );
    }
}
