//! Peer identity objects: ID (`GET /id`, `GET /peers`), IPFSID and Version.
use multiaddr::Multiaddr;
use serde::{Deserialize, Serialize};

use crate::de::nullable;

/// The version we are a drop-in for.
pub const VERSION: &str = "1.1.6";
/// Upstream's RPC protocol version string, reported in `ID`.
pub const RPC_PROTOCOL_VERSION: &str = "/ipfscluster/1.0/rpc";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct Id {
    pub id: String,
    /// Listen addresses, each ending in `/p2p/<id>`.
    #[serde(default)]
    pub addresses: Option<Vec<Multiaddr>>,
    /// The consensus peerset, this peer included.
    #[serde(default)]
    pub cluster_peers: Option<Vec<String>>,
    /// Known `/p2p/` addresses of the cluster peers: `[]` when none on a peer that
    /// answered (upstream starts from an empty list), `null` on the ID of a peer that could
    /// not be asked (upstream's `ID{ID, Error}`), kept as read so the ctl prints it as is.
    #[serde(default)]
    pub cluster_peers_addresses: Option<Vec<Multiaddr>>,
    #[serde(default, deserialize_with = "nullable")]
    pub version: String,
    /// Always "" in 1.1.6.
    #[serde(default, deserialize_with = "nullable")]
    pub commit: String,
    #[serde(default, deserialize_with = "nullable")]
    pub rpc_protocol_version: String,
    #[serde(default, deserialize_with = "nullable")]
    pub error: String,
    /// Always present.
    #[serde(default, deserialize_with = "nullable")]
    pub ipfs: IpfsId,
    #[serde(default, deserialize_with = "nullable")]
    pub peername: String,
}

impl Id {
    /// An ID for `id` with this version and protocol filled in and everything else empty.
    pub fn new(id: impl Into<String>, peername: impl Into<String>) -> Id {
        Id {
            id: id.into(),
            version: VERSION.into(),
            rpc_protocol_version: RPC_PROTOCOL_VERSION.into(),
            cluster_peers_addresses: Some(Vec::new()),
            peername: peername.into(),
            ..Default::default()
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct IpfsId {
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub id: String,
    #[serde(default)]
    pub addresses: Option<Vec<Multiaddr>>,
    #[serde(default, deserialize_with = "nullable")]
    pub error: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub version: String,
}

impl Default for Version {
    fn default() -> Self {
        Version {
            version: VERSION.into(),
        }
    }
}
