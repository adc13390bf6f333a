//! Turning internal gRPC answers into ipfs-cluster-api's upstream-exact JSON types
//! (Pin, GlobalPinInfo, ID). Everything the handlers emit goes through here.

use ipfs_cluster_api::{self as api, proto as pb};
use ipfs_cluster_proto::gateway::v1 as gpb;

use crate::http::reply::ApiError;

fn proto_err(what: &str, e: api::Error) -> ApiError {
    ApiError::internal(format!("a local service sent an invalid {what}: {e}"))
}

/// A pin read from the state (`/allocations`, DELETE answers).
pub fn state_pin(p: pb::Pin) -> Result<api::Pin, ApiError> {
    api::Pin::try_from(p).map_err(|e| proto_err("pin", e))
}

/// The answer to a pin request: the committed pin (allocations, replication factors,
/// options copied by a pin update) in the shape upstream gives a freshly submitted pin
/// (`metadata` `{}`, `origins`/`user_allocations` as requested, sub-second timestamp).
pub fn fresh_pin(requested: &api::Pin, committed: pb::Pin) -> Result<api::Pin, ApiError> {
    let mut p = state_pin(committed)?;
    p.options.user_allocations = requested.options.user_allocations.clone();
    p.options.metadata = Some(p.options.metadata.take().unwrap_or_default());
    if p.options.origins.as_ref().is_none_or(|o| o.is_empty()) {
        p.options.origins = requested.options.origins.clone();
    }
    if p.timestamp.unix_secs() == requested.timestamp.unix_secs() {
        p.timestamp = requested.timestamp;
    }
    if p.options.expire_at.unix_secs() == requested.options.expire_at.unix_secs() {
        p.options.expire_at = requested.options.expire_at;
    }
    Ok(p)
}

pub fn pin_info(i: pb::PinInfo) -> Result<api::PinInfo, ApiError> {
    api::PinInfo::try_from(i).map_err(|e| proto_err("pin status", e))
}

/// A peer that could not be asked: upstream's cluster_error entry.
pub fn error_info(cid: api::Cid, peer: &str, error: &str) -> api::PinInfo {
    api::PinInfo {
        cid,
        name: String::new(),
        peer: peer.to_string(),
        allocations: None,
        origins: None,
        created: api::Time::now(),
        metadata: None,
        short: api::PinInfoShort {
            peername: peer.to_string(),
            status: api::TrackerStatus::ClusterError,
            timestamp: api::Time::now(),
            error: error.to_string(),
            ..Default::default()
        },
    }
}

/// Adds an answer to a GlobalPinInfo being built (the first one creates it).
pub fn merge(g: &mut Option<api::GlobalPinInfo>, i: api::PinInfo) {
    match g {
        Some(g) => g.add(i),
        None => *g = Some(i.to_global()),
    }
}

fn maddrs(v: &[String]) -> Vec<api::Multiaddr> {
    v.iter()
        .filter_map(|s| match api::parse_multiaddr(s) {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!(error = %e, "dropping an invalid multiaddress from an ID answer");
                None
            }
        })
        .collect()
}

fn none_if_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

/// The upstream ID object from Gateway.Id's answer.
pub fn id(r: &gpb::IdResponse) -> api::Id {
    let mut id = api::Id::new(r.id.clone(), r.peername.clone());
    id.addresses = none_if_empty(maddrs(&r.addresses));
    id.cluster_peers = none_if_empty(r.cluster_peers.clone());
    id.cluster_peers_addresses = Some(maddrs(&r.cluster_peers_addresses));
    id.error = r.error.clone();
    id.ipfs = api::IpfsId {
        id: r.ipfs_id.clone(),
        addresses: if r.ipfs_id.is_empty() {
            None
        } else {
            Some(maddrs(&r.ipfs_addresses))
        },
        error: r.ipfs_error.clone(),
    };
    id
}

/// The ID of a peer that could not be asked (GET /peers): only `id` and `error` set,
/// everything else zero as upstream.
pub fn id_error(peer: &str, error: &str) -> api::Id {
    api::Id {
        id: peer.to_string(),
        error: error.to_string(),
        ..Default::default()
    }
}

/// Upstream's TrackerStatus filter of GET /pins: unknown names are ignored, but a
/// non-empty filter with no known name is a 400 `invalid filter value`.
pub fn status_filter(s: &str) -> Result<api::TrackerStatusFilter, ApiError> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let f = api::TrackerStatusFilter::parse(&s);
    if !s.is_empty() && f.is_empty() {
        return Err(ApiError::bad_request("invalid filter value"));
    }
    Ok(f)
}

/// Upstream's PinType filter of GET /allocations: empty = all; only unknown names = 400.
pub fn allocation_filter(s: &str) -> Result<u32, ApiError> {
    if s.is_empty() {
        return Ok(0);
    }
    let f = api::PinTypeFilter::parse(s);
    if f.0 == 0 {
        return Err(ApiError::bad_request("invalid filter value"));
    }
    Ok(f.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_pin_bytes() {
        let p = pb::Pin {
            cid: "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG".into(),
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
        let s = serde_json::to_string(&state_pin(p).unwrap()).unwrap();
        assert_eq!(
            s,
            r#"{"replication_factor_min":-1,"replication_factor_max":-1,"name":"","mode":"recursive","shard_size":0,"user_allocations":null,"expire_at":"0001-01-01T00:00:00Z","metadata":null,"pin_update":null,"origins":[],"cid":"QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG","type":"pin","allocations":[],"max_depth":-1,"reference":null,"timestamp":"2024-05-01T10:20:30Z"}"#
        );
    }

    #[test]
    fn filters() {
        assert_eq!(status_filter("").unwrap().0, 0);
        assert_eq!(status_filter("pinned").unwrap().0, 16);
        assert_eq!(
            status_filter("pin_error, error,pinned").unwrap().0,
            2 | 4 | 8 | 16
        );
        assert_eq!(
            status_filter("bogus").unwrap_err().message,
            "invalid filter value"
        );
        assert_eq!(status_filter("bogus,queued").unwrap().0, 512 | 1024);
        assert_eq!(allocation_filter("").unwrap(), 0);
        assert_eq!(allocation_filter("pin,invalid").unwrap(), 2);
        assert_eq!(
            allocation_filter("invalid").unwrap_err().message,
            "invalid filter value"
        );
    }
}
