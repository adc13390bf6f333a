//! Pin and PinOptions (upstream api.Pin / api.PinOptions): the options object flattened
//! first, then the pin fields, with upstream's null-vs-[] behaviour on each code path:
//! `Pin::new_data` builds what Cluster.Pin builds before committing, and
//! `Pin::normalized_state_read` gives what a pin read back from the state looks like.
use std::collections::BTreeMap;

use multiaddr::Multiaddr;
use serde::{Deserialize, Serialize};

use crate::de::nullable;
use crate::{Cid, PinMode, PinType, Time};

/// Pin metadata: a string map, printed with sorted keys as Go does.
pub type Metadata = BTreeMap<String, String>;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct PinOptions {
    /// -1 = everywhere, 0 = use the cluster default (input only).
    #[serde(default, deserialize_with = "nullable")]
    pub replication_factor_min: i32,
    #[serde(default, deserialize_with = "nullable")]
    pub replication_factor_max: i32,
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    #[serde(default)]
    pub mode: PinMode,
    #[serde(default, deserialize_with = "nullable")]
    pub shard_size: u64,
    /// Priority peers (peer ID strings). Not persisted: null when read from the state.
    #[serde(default)]
    pub user_allocations: Option<Vec<String>>,
    /// Zero time = never.
    #[serde(default)]
    pub expire_at: Time,
    #[serde(default)]
    pub metadata: Option<Metadata>,
    /// Always present on the wire; `null` when unset.
    #[serde(default)]
    pub pin_update: Option<Cid>,
    #[serde(default)]
    pub origins: Option<Vec<Multiaddr>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pin {
    #[serde(flatten)]
    pub options: PinOptions,
    pub cid: Cid,
    #[serde(rename = "type", default)]
    pub pin_type: PinType,
    /// Peer IDs that must pin it; empty = every peer. Always `[]` when empty, never null.
    #[serde(default, deserialize_with = "nullable")]
    pub allocations: Vec<String>,
    /// -1 recursive, 0 direct, >0 depth-limited (shards use 1).
    #[serde(default, deserialize_with = "nullable")]
    pub max_depth: i32,
    #[serde(default)]
    pub reference: Option<Cid>,
    /// When the pin was submitted.
    #[serde(default)]
    pub timestamp: Time,
}

impl Pin {
    /// A normal (`pin` type) pin as upstream's Cluster.Pin builds it before committing:
    /// no allocations yet, max_depth from the mode, no reference, timestamp now.
    pub fn new_data(cid: Cid, options: PinOptions) -> Pin {
        Pin {
            max_depth: options.mode.max_depth(),
            options,
            cid,
            pin_type: PinType::Data,
            allocations: Vec::new(),
            reference: None,
            timestamp: Time::now(),
        }
    }

    /// The pin as upstream shows it after a round trip through the state (`/allocations`,
    /// DELETE responses): whole-second times, mode from max_depth, user_allocations null,
    /// metadata null when empty, origins `[]` when empty.
    pub fn normalized_state_read(mut self) -> Pin {
        self.timestamp = self.timestamp.trunc_secs();
        self.options.expire_at = self.options.expire_at.trunc_secs();
        self.options.mode = PinMode::from_max_depth(self.max_depth);
        self.options.user_allocations = None;
        if self.options.metadata.as_ref().is_some_and(|m| m.is_empty()) {
            self.options.metadata = None;
        }
        self.options.origins = Some(self.options.origins.unwrap_or_default());
        self
    }

    /// True when every peer should pin it (no allocations).
    pub fn is_pin_everywhere(&self) -> bool {
        self.allocations.is_empty()
    }

    /// Whether this peer (peer ID string) is allocated; empty allocations = everyone.
    pub fn is_allocated_to(&self, peer: &str) -> bool {
        self.allocations.is_empty() || self.allocations.iter().any(|p| p == peer)
    }

    /// True when an expiry is set and has passed at `now`.
    pub fn expired_at(&self, now: Time) -> bool {
        !self.options.expire_at.is_zero() && self.options.expire_at <= now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG";

    #[test]
    fn new_data_follows_mode() {
        let c = Cid::parse(CID).unwrap();
        let p = Pin::new_data(c, PinOptions::default());
        assert_eq!(p.max_depth, -1);
        assert_eq!(p.pin_type, PinType::Data);
        assert!(p.allocations.is_empty());
        let opts = PinOptions {
            mode: PinMode::Direct,
            ..Default::default()
        };
        assert_eq!(Pin::new_data(c, opts).max_depth, 0);
    }

    #[test]
    fn state_read_normalisation() {
        let c = Cid::parse(CID).unwrap();
        let mut p = Pin::new_data(
            c,
            PinOptions {
                user_allocations: Some(vec!["x".into()]),
                metadata: Some(Metadata::new()),
                expire_at: Time::parse("2030-01-01T00:00:00.5Z").unwrap(),
                ..Default::default()
            },
        );
        p.timestamp = Time::parse("2024-05-01T10:20:30.123Z").unwrap();
        p.max_depth = 0;
        let n = p.normalized_state_read();
        let j = serde_json::to_string(&n).unwrap();
        assert_eq!(
            j,
            format!(
                "{{\"replication_factor_min\":0,\"replication_factor_max\":0,\"name\":\"\",\"mode\":\"direct\",\"shard_size\":0,\"user_allocations\":null,\"expire_at\":\"2030-01-01T00:00:00Z\",\"metadata\":null,\"pin_update\":null,\"origins\":[],\"cid\":\"{CID}\",\"type\":\"pin\",\"allocations\":[],\"max_depth\":0,\"reference\":null,\"timestamp\":\"2024-05-01T10:20:30Z\"}}"
            )
        );
    }

    #[test]
    fn allocation_helpers() {
        let c = Cid::parse(CID).unwrap();
        let mut p = Pin::new_data(c, PinOptions::default());
        assert!(p.is_allocated_to("a") && p.is_pin_everywhere());
        p.allocations = vec!["a".into()];
        assert!(p.is_allocated_to("a") && !p.is_allocated_to("b"));
        assert!(!p.expired_at(Time::now()));
        p.options.expire_at = Time::parse("2000-01-01T00:00:00Z").unwrap();
        assert!(p.expired_at(Time::now()));
    }
}
