//! Upstream's JSON shapes (field order as Go emits them) built from the internal gRPC
//! messages. Interim home until ipfs-cluster-api provides these types; the handlers only
//! use the functions here, so swapping the implementation does not touch them.

use std::collections::BTreeMap;

use ipfs_cluster_proto::types::v1 as pb;
use serde::Serialize;

pub const VERSION: &str = "1.1.6";
pub const RPC_PROTOCOL: &str = "/ipfscluster/1.0/rpc";
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Go's RFC3339Nano in UTC: fraction with trailing zeros trimmed.
pub fn time_from_nanos(ns: i64) -> String {
    if ns == 0 {
        return ZERO_TIME.to_string();
    }
    let secs = ns.div_euclid(1_000_000_000);
    let sub = ns.rem_euclid(1_000_000_000) as u32;
    match chrono::DateTime::from_timestamp(secs, sub) {
        Some(t) => {
            let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
            if sub == 0 {
                format!("{base}Z")
            } else {
                let frac = format!("{sub:09}");
                format!("{base}.{}Z", frac.trim_end_matches('0'))
            }
        }
        None => ZERO_TIME.to_string(),
    }
}

pub fn time_from_secs(s: i64) -> String {
    if s == 0 {
        return ZERO_TIME.to_string();
    }
    time_from_nanos(s.saturating_mul(1_000_000_000))
}

pub fn pin_type_name(t: i32) -> &'static str {
    match pb::PinType::try_from(t).unwrap_or(pb::PinType::Bad) {
        pb::PinType::Data => "pin",
        pb::PinType::Meta => "meta-pin",
        pb::PinType::ClusterDag => "clusterdag-pin",
        pb::PinType::Shard => "shard-pin",
        pb::PinType::Bad => "bad-type",
    }
}

pub const STATUS_NAMES: &[(&str, i32)] = &[
    ("undefined", 0),
    ("cluster_error", 2),
    ("pin_error", 4),
    ("unpin_error", 8),
    ("pinned", 16),
    ("pinning", 32),
    ("unpinning", 64),
    ("unpinned", 128),
    ("remote", 256),
    ("pin_queued", 512),
    ("unpin_queued", 1024),
    ("sharded", 2048),
    ("unexpectedly_unpinned", 4096),
];

pub fn status_name(s: i32) -> &'static str {
    STATUS_NAMES
        .iter()
        .find(|(_, v)| *v == s)
        .map(|(n, _)| *n)
        .unwrap_or("undefined")
}

/// Upstream filter parsing: comma list (spaces removed) of names incl. `error`, `queued`.
/// Unknown names are ignored; `None` when the string is non-empty and nothing matched.
pub fn parse_status_filter(s: &str) -> Option<u32> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if s.is_empty() {
        return Some(0);
    }
    let mut f = 0u32;
    for part in s.split(',') {
        match part {
            "error" => f |= 2 | 4 | 8,
            "queued" => f |= 512 | 1024,
            p => {
                if let Some((_, v)) = STATUS_NAMES.iter().find(|(n, _)| *n == p) {
                    f |= *v as u32;
                }
            }
        }
    }
    (f != 0).then_some(f)
}

fn none_if_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

#[derive(Serialize, Debug)]
pub struct PinJson {
    pub replication_factor_min: i32,
    pub replication_factor_max: i32,
    pub name: String,
    pub mode: &'static str,
    pub shard_size: u64,
    pub user_allocations: Option<Vec<String>>,
    pub expire_at: String,
    pub metadata: Option<BTreeMap<String, String>>,
    pub pin_update: Option<String>,
    pub origins: Option<Vec<String>>,
    pub cid: String,
    #[serde(rename = "type")]
    pub pin_type: &'static str,
    pub allocations: Vec<String>,
    pub max_depth: i32,
    pub reference: Option<String>,
    pub timestamp: String,
}

/// How a Pin is being shown: a freshly submitted one (POST answer) or one read back from
/// the state (`/allocations`, DELETE answers); upstream differs in a few null/[] choices.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PinView {
    Fresh,
    State,
}

pub fn pin_json(p: &pb::Pin, view: PinView) -> PinJson {
    let o = p.options.clone().unwrap_or_default();
    let metadata: BTreeMap<String, String> = o.metadata.into_iter().collect();
    PinJson {
        replication_factor_min: o.replication_factor_min,
        replication_factor_max: o.replication_factor_max,
        name: o.name,
        mode: if p.max_depth == 0 {
            "direct"
        } else {
            "recursive"
        },
        shard_size: o.shard_size,
        user_allocations: match view {
            PinView::Fresh => none_if_empty(o.user_allocations),
            PinView::State => None,
        },
        expire_at: time_from_secs(o.expire_at),
        metadata: match view {
            PinView::Fresh => Some(metadata),
            PinView::State => (!metadata.is_empty()).then_some(metadata),
        },
        pin_update: (!o.pin_update.is_empty()).then_some(o.pin_update),
        origins: match view {
            PinView::Fresh => none_if_empty(o.origins),
            PinView::State => Some(o.origins),
        },
        cid: p.cid.clone(),
        pin_type: pin_type_name(p.r#type),
        allocations: p.allocations.clone(),
        max_depth: p.max_depth,
        reference: (!p.reference.is_empty()).then(|| p.reference.clone()),
        timestamp: time_from_secs(p.timestamp),
    }
}

#[derive(Serialize, Debug, Clone)]
pub struct PinInfoShortJson {
    pub peername: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ipfs_peer_id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ipfs_peer_addresses: Vec<String>,
    pub status: &'static str,
    pub timestamp: String,
    pub error: String,
    pub attempt_count: i32,
    pub priority_pin: bool,
}

#[derive(Serialize, Debug, Clone)]
pub struct GlobalPinInfoJson {
    pub cid: String,
    pub name: String,
    pub allocations: Option<Vec<String>>,
    pub origins: Option<Vec<String>>,
    pub created: String,
    pub metadata: Option<BTreeMap<String, String>>,
    pub peer_map: BTreeMap<String, PinInfoShortJson>,
}

pub fn short_json(i: &pb::PinInfo) -> PinInfoShortJson {
    PinInfoShortJson {
        peername: i.peername.clone(),
        ipfs_peer_id: i.ipfs_peer_id.clone(),
        ipfs_peer_addresses: i.ipfs_peer_addresses.clone(),
        status: status_name(i.status),
        timestamp: time_from_nanos(i.timestamp),
        error: i.error.clone(),
        attempt_count: i.attempt_count,
        priority_pin: i.priority_pin,
    }
}

impl GlobalPinInfoJson {
    pub fn empty(cid: &str) -> Self {
        Self {
            cid: cid.to_string(),
            name: String::new(),
            allocations: None,
            origins: None,
            created: ZERO_TIME.to_string(),
            metadata: None,
            peer_map: BTreeMap::new(),
        }
    }

    /// Upstream merge: the first result sets the top-level fields; later results overwrite
    /// them unless their status is cluster_error or undefined.
    pub fn add(&mut self, i: &pb::PinInfo) {
        let overwrite = self.peer_map.is_empty() || !(i.status == 0 || i.status == 2);
        if overwrite {
            self.cid = i.cid.clone();
            self.name = i.name.clone();
            self.allocations = Some(i.allocations.clone());
            self.origins = Some(i.origins.clone());
            self.created = time_from_secs(i.created);
            self.metadata =
                (!i.metadata.is_empty()).then(|| i.metadata.clone().into_iter().collect());
        }
        self.peer_map.insert(i.peer.clone(), short_json(i));
    }

    /// An entry for a peer that could not be asked (upstream: cluster_error).
    pub fn add_error(&mut self, peer: &str, error: &str, now_ns: i64) {
        let info = pb::PinInfo {
            cid: self.cid.clone(),
            peer: peer.to_string(),
            peername: peer.to_string(),
            status: pb::TrackerStatus::ClusterError as i32,
            timestamp: now_ns,
            error: error.to_string(),
            ..Default::default()
        };
        if self.peer_map.is_empty() {
            self.add(&info);
        } else {
            self.peer_map.insert(peer.to_string(), short_json(&info));
        }
    }
}

#[derive(Serialize, Debug, Clone, Default)]
pub struct IpfsIdJson {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub id: String,
    pub addresses: Option<Vec<String>>,
    pub error: String,
}

#[derive(Serialize, Debug, Clone, Default)]
pub struct IdJson {
    pub id: String,
    pub addresses: Option<Vec<String>>,
    pub cluster_peers: Option<Vec<String>>,
    pub cluster_peers_addresses: Vec<String>,
    pub version: String,
    pub commit: String,
    pub rpc_protocol_version: String,
    pub error: String,
    pub ipfs: IpfsIdJson,
    pub peername: String,
}

pub fn id_json(r: &ipfs_cluster_proto::gateway::v1::IdResponse) -> IdJson {
    IdJson {
        id: r.id.clone(),
        addresses: none_if_empty(r.addresses.clone()),
        cluster_peers: none_if_empty(r.cluster_peers.clone()),
        cluster_peers_addresses: r.cluster_peers_addresses.clone(),
        version: VERSION.to_string(),
        commit: String::new(),
        rpc_protocol_version: RPC_PROTOCOL.to_string(),
        error: r.error.clone(),
        ipfs: IpfsIdJson {
            id: r.ipfs_id.clone(),
            addresses: if r.ipfs_id.is_empty() {
                None
            } else {
                Some(r.ipfs_addresses.clone())
            },
            error: r.ipfs_error.clone(),
        },
        peername: r.peername.clone(),
    }
}

/// The ID of a peer that could not be asked: only `id` and `error` (upstream GET /peers).
pub fn id_error_json(peer: &str, error: &str) -> IdJson {
    IdJson {
        id: peer.to_string(),
        error: error.to_string(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_like_go() {
        assert_eq!(time_from_nanos(0), ZERO_TIME);
        assert_eq!(time_from_secs(1_714_558_830), "2024-05-01T10:20:30Z");
        assert_eq!(
            time_from_nanos(1_714_558_830_123_400_000),
            "2024-05-01T10:20:30.1234Z"
        );
    }

    #[test]
    fn state_pin_bytes() {
        let p = pb::Pin {
            cid: "QmXYZ".into(),
            r#type: pb::PinType::Data as i32,
            allocations: vec![],
            max_depth: -1,
            reference: String::new(),
            options: Some(pb::PinOptions {
                replication_factor_min: -1,
                replication_factor_max: -1,
                ..Default::default()
            }),
            timestamp: 1_714_558_830,
        };
        let s = serde_json::to_string(&pin_json(&p, PinView::State)).unwrap();
        assert_eq!(
            s,
            r#"{"replication_factor_min":-1,"replication_factor_max":-1,"name":"","mode":"recursive","shard_size":0,"user_allocations":null,"expire_at":"0001-01-01T00:00:00Z","metadata":null,"pin_update":null,"origins":[],"cid":"QmXYZ","type":"pin","allocations":[],"max_depth":-1,"reference":null,"timestamp":"2024-05-01T10:20:30Z"}"#
        );
    }

    #[test]
    fn filters() {
        assert_eq!(parse_status_filter(""), Some(0));
        assert_eq!(parse_status_filter("pinned"), Some(16));
        assert_eq!(
            parse_status_filter("pin_error, error,pinned"),
            Some(2 | 4 | 8 | 16)
        );
        assert_eq!(parse_status_filter("bogus"), None);
        assert_eq!(parse_status_filter("bogus,queued"), Some(512 | 1024));
    }
}
