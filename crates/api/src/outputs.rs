//! REST answers that are neither pins nor peers: AddedOutput (`/add`), repo GC results,
//! bandwidth and the connectivity graph (`/health/graph`). Maps are BTreeMaps so keys
//! print sorted, as Go.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::de::nullable;
use crate::Cid;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AddedOutput {
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    #[serde(default)]
    pub cid: Option<Cid>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_zero"
    )]
    pub bytes: u64,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_zero"
    )]
    pub size: u64,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub allocations: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct IpfsRepoGc {
    /// Always present; null when undefined.
    #[serde(default)]
    pub key: Option<Cid>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub error: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RepoGc {
    #[serde(default, deserialize_with = "nullable")]
    pub peer: String,
    #[serde(default, deserialize_with = "nullable")]
    pub peername: String,
    #[serde(default)]
    pub keys: Option<Vec<IpfsRepoGc>>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub error: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct GlobalRepoGc {
    #[serde(default, deserialize_with = "nullable")]
    pub peer_map: BTreeMap<String, RepoGc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct Bandwidth {
    #[serde(default, deserialize_with = "nullable")]
    pub total_in: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub total_out: i64,
    #[serde(default, deserialize_with = "nullable", serialize_with = "go_float")]
    pub rate_in: f64,
    #[serde(default, deserialize_with = "nullable", serialize_with = "go_float")]
    pub rate_out: f64,
}

/// Go prints whole floats without a fraction (`0`, not `0.0`).
fn go_float<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        s.serialize_i64(*v as i64)
    } else {
        s.serialize_f64(*v)
    }
}

/// Keyed by libp2p protocol ID.
pub type BandwidthByProtocol = BTreeMap<String, Bandwidth>;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ConnectGraph {
    /// The peer answering.
    #[serde(default, deserialize_with = "nullable")]
    pub cluster_id: String,
    #[serde(default, deserialize_with = "nullable")]
    pub id_to_peername: BTreeMap<String, String>,
    /// IPFS swarm peers of each cluster peer's IPFS daemon (`[]` when the lookup failed).
    #[serde(default, deserialize_with = "nullable")]
    pub ipfs_links: BTreeMap<String, Vec<String>>,
    /// Every member is a key (`[]` if unreachable).
    #[serde(default, deserialize_with = "nullable")]
    pub cluster_links: BTreeMap<String, Vec<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub cluster_trust_links: BTreeMap<String, bool>,
    #[serde(default, deserialize_with = "nullable")]
    pub cluster_to_ipfs: BTreeMap<String, String>,
}
