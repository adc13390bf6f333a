//! The openraft type configuration and the replicated command. A pin travels in the log as
//! its protobuf encoding (the same bytes the state table keeps), base64 inside the
//! serde/JSON encoding of raft entries and messages.

use base64::Engine;
use prost::Message;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::raft::ids::{NodeId, PeerNode};
use ipfs_cluster_proto::types::v1::Pin;

/// Protobuf bytes of one `ipfscluster.types.v1.Pin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinBytes(pub Vec<u8>);

impl PinBytes {
    pub fn encode(pin: &Pin) -> Self {
        Self(pin.encode_to_vec())
    }
    pub fn decode(&self) -> Result<Pin, prost::DecodeError> {
        Pin::decode(self.0.as_slice())
    }
}

impl Serialize for PinBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for PinBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map(PinBytes)
            .map_err(serde::de::Error::custom)
    }
}

/// One replicated change of the pinset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PinOp {
    /// Add or replace a pin (keyed by its CID string).
    Pin(PinBytes),
    /// Remove a pin (absent is fine).
    Unpin(String),
    /// Drop every pin (state import wipes first).
    Clear,
    /// Add or replace many pins in one entry (state import).
    PinBatch(Vec<PinBytes>),
    /// Group commit: concurrent pin/unpin writes the leader gathered into one entry, applied
    /// in order (each with its own result). Added after the others so older entries keep
    /// their encoding.
    Batch(Vec<PinOp>),
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ApplyResult {
    /// For Unpin: whether the CID was in the state. For Pin: whether it replaced a pin.
    pub existed: bool,
    /// For Batch: one result per op, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub results: Vec<ApplyResult>,
}

openraft::declare_raft_types!(
    pub TypeConfig:
        D = PinOp,
        R = ApplyResult,
        NodeId = NodeId,
        Node = PeerNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, PeerNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, PeerNode>;
pub type StorageError = openraft::StorageError<NodeId>;
