//! Pin status objects: PinInfoShort (one peer's entry in `peer_map`), PinInfo (one peer's
//! full answer, the internal local form) and GlobalPinInfo (the REST status object) with
//! upstream's merge rule for the top-level fields.
use std::collections::BTreeMap;

use multiaddr::Multiaddr;
use serde::{Deserialize, Serialize};

use crate::de::nullable;
use crate::{Cid, Metadata, Time, TrackerStatus, TrackerStatusFilter};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct PinInfoShort {
    #[serde(default, deserialize_with = "nullable")]
    pub peername: String,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub ipfs_peer_id: String,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ipfs_peer_addresses: Vec<Multiaddr>,
    #[serde(default)]
    pub status: TrackerStatus,
    /// When the status was last set.
    #[serde(default)]
    pub timestamp: Time,
    /// "" when none.
    #[serde(default, deserialize_with = "nullable")]
    pub error: String,
    #[serde(default, deserialize_with = "nullable")]
    pub attempt_count: i32,
    #[serde(default, deserialize_with = "nullable")]
    pub priority_pin: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PinInfo {
    pub cid: Cid,
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    /// The cluster peer that answered.
    #[serde(default, deserialize_with = "nullable")]
    pub peer: String,
    #[serde(default)]
    pub allocations: Option<Vec<String>>,
    #[serde(default)]
    pub origins: Option<Vec<Multiaddr>>,
    /// The pin's timestamp (for unpinned CIDs: the time of the query).
    #[serde(default)]
    pub created: Time,
    #[serde(default)]
    pub metadata: Option<Metadata>,
    #[serde(flatten)]
    pub short: PinInfoShort,
}

impl PinInfo {
    /// A GlobalPinInfo holding only this peer's answer (upstream ToGlobal).
    pub fn to_global(&self) -> GlobalPinInfo {
        let mut peer_map = BTreeMap::new();
        peer_map.insert(self.peer.clone(), self.short.clone());
        GlobalPinInfo {
            cid: self.cid,
            name: self.name.clone(),
            allocations: self.allocations.clone(),
            origins: self.origins.clone(),
            created: self.created,
            metadata: self.metadata.clone(),
            peer_map,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GlobalPinInfo {
    pub cid: Cid,
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    #[serde(default)]
    pub allocations: Option<Vec<String>>,
    #[serde(default)]
    pub origins: Option<Vec<Multiaddr>>,
    #[serde(default)]
    pub created: Time,
    #[serde(default)]
    pub metadata: Option<Metadata>,
    /// Keyed by cluster peer ID, sorted as Go marshals maps.
    #[serde(default, deserialize_with = "nullable")]
    pub peer_map: BTreeMap<String, PinInfoShort>,
}

impl GlobalPinInfo {
    /// Merges per-peer answers. The first sets the top-level fields; every later one
    /// whose status is neither cluster_error nor undefined overwrites them. None when
    /// `infos` is empty.
    pub fn merge(infos: Vec<PinInfo>) -> Option<GlobalPinInfo> {
        let mut it = infos.into_iter();
        let mut g = it.next()?.to_global();
        for pi in it {
            g.add(pi);
        }
        Some(g)
    }

    /// Adds one peer's answer (upstream GlobalPinInfo.Add, after the first).
    pub fn add(&mut self, pi: PinInfo) {
        if !pi
            .short
            .status
            .matches(TrackerStatusFilter::from(TrackerStatus::ClusterError))
        {
            self.cid = pi.cid;
            self.name = pi.name;
            self.allocations = pi.allocations;
            self.origins = pi.origins;
            self.created = pi.created;
            self.metadata = pi.metadata;
        }
        self.peer_map.insert(pi.peer, pi.short);
    }

    /// True if any peer's status matches the filter (upstream's status-all filtering).
    pub fn matches(&self, filter: TrackerStatusFilter) -> bool {
        filter.is_empty() || self.peer_map.values().any(|s| s.status.matches(filter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG";

    fn info(peer: &str, name: &str, status: TrackerStatus) -> PinInfo {
        PinInfo {
            cid: Cid::parse(CID).unwrap(),
            name: name.into(),
            peer: peer.into(),
            allocations: Some(vec![]),
            origins: None,
            created: Time::zero(),
            metadata: None,
            short: PinInfoShort {
                peername: format!("n-{peer}"),
                status,
                ..Default::default()
            },
        }
    }

    #[test]
    fn merge_rule() {
        assert!(GlobalPinInfo::merge(vec![]).is_none());
        // first sets, later non-error overwrites
        let g = GlobalPinInfo::merge(vec![
            info("b", "first", TrackerStatus::Pinned),
            info("a", "second", TrackerStatus::Remote),
        ])
        .unwrap();
        assert_eq!(g.name, "second");
        assert_eq!(g.peer_map.keys().collect::<Vec<_>>(), ["a", "b"]);
        // cluster_error and undefined do not overwrite
        let g = GlobalPinInfo::merge(vec![
            info("a", "first", TrackerStatus::Pinned),
            info("b", "err", TrackerStatus::ClusterError),
            info("c", "undef", TrackerStatus::Undefined),
        ])
        .unwrap();
        assert_eq!(g.name, "first");
        assert_eq!(g.peer_map.len(), 3);
        // but the first one sets even when it is an error
        let g = GlobalPinInfo::merge(vec![info("a", "err", TrackerStatus::ClusterError)]).unwrap();
        assert_eq!(g.name, "err");
        // pin_error is not cluster_error: it overwrites
        let g = GlobalPinInfo::merge(vec![
            info("a", "first", TrackerStatus::Pinned),
            info("b", "pe", TrackerStatus::PinError),
        ])
        .unwrap();
        assert_eq!(g.name, "pe");
    }

    #[test]
    fn global_filter() {
        let g = info("a", "", TrackerStatus::Pinned).to_global();
        assert!(g.matches(TrackerStatusFilter::parse("pinned")));
        assert!(!g.matches(TrackerStatusFilter::parse("error")));
        assert!(g.matches(TrackerStatusFilter::ANY));
    }
}
