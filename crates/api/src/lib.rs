//! API types with upstream-exact JSON (Pin, PinInfo, GlobalPinInfo, ID, Metric...) and
//! their conversions to the internal gRPC messages.
//!
//! Every type serialises with upstream's field names and order (serde_json's
//! `preserve_order` is on in the workspace), null vs `[]` as upstream emits them, times
//! as Go's RFC3339Nano in UTC, CIDs as canonical strings and peer IDs as base58 strings.
//! Input decoding is as lenient as Go's: `null` for a plain value leaves its zero value.

mod add;
mod cid;
mod convert;
mod de;
mod error;
pub mod go_duration;
mod go_multiaddr;
mod id;
mod metric;
mod outputs;
mod pin;
mod pininfo;
mod pinsvc;
mod query;
mod status;
mod time;

pub use crate::add::{AddParams, DEFAULT_SHARD_SIZE};
pub use crate::cid::{
    boxo_path, go_cid_error, go_peer_id_error, multiaddr_peer_id, parse_multiaddr, parse_peer_id,
    path_or_cid_path, Cid,
};
pub use crate::error::{Error, NoValidFilter, PathError, QueryError};
pub use crate::go_multiaddr::go_multiaddr_error;
pub use crate::id::{Id, IpfsId, Version, RPC_PROTOCOL_VERSION, VERSION};
pub use crate::metric::{Alert, Metric, PingValue};
pub use crate::outputs::{
    AddedOutput, Bandwidth, BandwidthByProtocol, ConnectGraph, GlobalRepoGc, IpfsRepoGc, RepoGc,
};
pub use crate::pin::{Metadata, Pin, PinOptions};
pub use crate::pininfo::{GlobalPinInfo, PinInfo, PinInfoShort};
pub use crate::pinsvc::{PinResults, PinStatus, PsaError, PsaErrorReason, PsaPin, PsaStatus};
pub use crate::query::{parse_go_duration, QueryParams};
pub use crate::status::{PinMode, PinType, PinTypeFilter, TrackerStatus, TrackerStatusFilter};
pub use crate::time::Time;

/// Re-exported so users need not depend on multiaddr themselves.
pub use multiaddr::Multiaddr;

/// The internal proto messages these types convert to and from.
pub use ipfs_cluster_proto::types::v1 as proto;

/// Upstream's encoding of one JSON document: compact, followed by a single `\n`.
pub fn to_json_line<T: serde::Serialize>(v: &T) -> Result<String, serde_json::Error> {
    let mut s = serde_json::to_string(v)?;
    s.push('\n');
    Ok(s)
}

#[cfg(test)]
mod wire_tests;
