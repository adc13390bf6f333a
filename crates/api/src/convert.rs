//! Conversions between the API types and the internal proto messages
//! (`ipfs_cluster_proto::types::v1`). Proto uses "" / empty lists / 0 for "unset";
//! `Pin::from_state_proto` gives a stored pin upstream's state-read shape.
//! Times: Pin.timestamp and options.expire_at are Unix seconds, PinInfo.timestamp and
//! Metric times Unix nanoseconds, PinInfo.created Unix seconds.
use crate::cid::optional_cid;
use crate::{
    parse_multiaddr, proto, Cid, Error, Metadata, Metric, Pin, PinInfo, PinInfoShort, PinMode,
    PinOptions, PinType, Time, TrackerStatus,
};

impl From<PinType> for proto::PinType {
    fn from(t: PinType) -> Self {
        match t {
            PinType::Bad => proto::PinType::Bad,
            PinType::Data => proto::PinType::Data,
            PinType::Meta => proto::PinType::Meta,
            PinType::ClusterDag => proto::PinType::ClusterDag,
            PinType::Shard => proto::PinType::Shard,
        }
    }
}

impl From<proto::PinType> for PinType {
    fn from(t: proto::PinType) -> Self {
        match t {
            proto::PinType::Bad => PinType::Bad,
            proto::PinType::Data => PinType::Data,
            proto::PinType::Meta => PinType::Meta,
            proto::PinType::ClusterDag => PinType::ClusterDag,
            proto::PinType::Shard => PinType::Shard,
        }
    }
}

impl From<TrackerStatus> for proto::TrackerStatus {
    fn from(s: TrackerStatus) -> Self {
        proto::TrackerStatus::try_from(s.bits() as i32).unwrap_or(proto::TrackerStatus::Undefined)
    }
}

impl From<proto::TrackerStatus> for TrackerStatus {
    fn from(s: proto::TrackerStatus) -> Self {
        TrackerStatus::from_bits(s as i32 as u32)
    }
}

fn bad(field: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidProto {
        field,
        reason: reason.into(),
    }
}

fn metadata_from(m: std::collections::HashMap<String, String>) -> Option<Metadata> {
    if m.is_empty() {
        None
    } else {
        Some(m.into_iter().collect())
    }
}

fn multiaddrs(v: Vec<String>) -> Result<Vec<multiaddr::Multiaddr>, Error> {
    if v.is_empty() {
        return Ok(Vec::new());
    }
    v.iter().map(|s| parse_multiaddr(s)).collect()
}

/// Mode is not carried: it is derived from the pin's max_depth.
impl From<PinOptions> for proto::PinOptions {
    fn from(o: PinOptions) -> Self {
        proto::PinOptions {
            replication_factor_min: o.replication_factor_min,
            replication_factor_max: o.replication_factor_max,
            name: o.name,
            shard_size: o.shard_size,
            user_allocations: o.user_allocations.unwrap_or_default(),
            metadata: o.metadata.unwrap_or_default().into_iter().collect(),
            pin_update: o.pin_update.map(|c| c.to_string()).unwrap_or_default(),
            expire_at: o.expire_at.unix_secs(),
            origins: o
                .origins
                .unwrap_or_default()
                .iter()
                .map(|m| m.to_string())
                .collect(),
        }
    }
}

/// Options as read back from proto: mode recursive (the pin's max_depth decides it),
/// user_allocations None when empty, metadata None when empty, origins `Some([])`.
impl TryFrom<proto::PinOptions> for PinOptions {
    type Error = Error;
    fn try_from(o: proto::PinOptions) -> Result<Self, Error> {
        Ok(PinOptions {
            replication_factor_min: o.replication_factor_min,
            replication_factor_max: o.replication_factor_max,
            name: o.name,
            mode: PinMode::Recursive,
            shard_size: o.shard_size,
            user_allocations: if o.user_allocations.is_empty() {
                None
            } else {
                Some(o.user_allocations)
            },
            expire_at: Time::from_unix_secs(o.expire_at),
            metadata: metadata_from(o.metadata),
            pin_update: optional_cid(&o.pin_update)?,
            origins: Some(multiaddrs(o.origins)?),
        })
    }
}

impl From<Pin> for proto::Pin {
    fn from(p: Pin) -> Self {
        proto::Pin {
            cid: p.cid.to_string(),
            r#type: proto::PinType::from(p.pin_type) as i32,
            allocations: p.allocations,
            max_depth: p.max_depth,
            reference: p.reference.map(|c| c.to_string()).unwrap_or_default(),
            options: Some(p.options.into()),
            timestamp: p.timestamp.unix_secs(),
        }
    }
}

/// A pin from proto, faithfully: user_allocations are kept (a `Consensus.Pin` request
/// carries them for the allocator); mode comes from max_depth, metadata is null when
/// empty and origins `[]`. A bad CID, reference, pin_update or origin, or an unknown
/// type, is an error. For a pin read from the state use `Pin::from_state_proto`.
impl TryFrom<proto::Pin> for Pin {
    type Error = Error;
    fn try_from(p: proto::Pin) -> Result<Self, Error> {
        let cid = Cid::parse(&p.cid).map_err(|e| bad("Pin.cid", e.to_string()))?;
        let pin_type = proto::PinType::try_from(p.r#type)
            .map_err(|_| bad("Pin.type", format!("unknown pin type {}", p.r#type)))?
            .into();
        let mut options: PinOptions = p.options.unwrap_or_default().try_into()?;
        options.mode = PinMode::from_max_depth(p.max_depth);
        let pin = Pin {
            options,
            cid,
            pin_type,
            allocations: p.allocations,
            max_depth: p.max_depth,
            reference: optional_cid(&p.reference)
                .map_err(|e| bad("Pin.reference", e.to_string()))?,
            timestamp: Time::from_unix_secs(p.timestamp),
        };
        Ok(pin)
    }
}

impl Pin {
    /// A pin read from the shared state, in upstream's state-read shape
    /// (`/allocations`, DELETE responses): see `Pin::normalized_state_read`.
    pub fn from_state_proto(p: proto::Pin) -> Result<Pin, Error> {
        Pin::try_from(p).map(Pin::normalized_state_read)
    }
}

impl From<PinInfo> for proto::PinInfo {
    fn from(p: PinInfo) -> Self {
        let s = p.short;
        proto::PinInfo {
            cid: p.cid.to_string(),
            name: p.name,
            peer: p.peer,
            allocations: p.allocations.unwrap_or_default(),
            origins: p
                .origins
                .unwrap_or_default()
                .iter()
                .map(|m| m.to_string())
                .collect(),
            created: p.created.unix_secs(),
            metadata: p.metadata.unwrap_or_default().into_iter().collect(),
            peername: s.peername,
            ipfs_peer_id: s.ipfs_peer_id,
            ipfs_peer_addresses: s
                .ipfs_peer_addresses
                .iter()
                .map(|m| m.to_string())
                .collect(),
            status: proto::TrackerStatus::from(s.status) as i32,
            timestamp: s.timestamp.unix_nanos(),
            error: s.error,
            attempt_count: s.attempt_count,
            priority_pin: s.priority_pin,
        }
    }
}

/// allocations and origins come back as `[]` (never null), metadata as null when empty;
/// an unknown status value becomes `undefined`.
impl TryFrom<proto::PinInfo> for PinInfo {
    type Error = Error;
    fn try_from(p: proto::PinInfo) -> Result<Self, Error> {
        let status = proto::TrackerStatus::try_from(p.status)
            .map(TrackerStatus::from)
            .unwrap_or_default();
        Ok(PinInfo {
            cid: Cid::parse(&p.cid).map_err(|e| bad("PinInfo.cid", e.to_string()))?,
            name: p.name,
            peer: p.peer,
            allocations: Some(p.allocations),
            origins: Some(multiaddrs(p.origins)?),
            created: Time::from_unix_secs(p.created),
            metadata: metadata_from(p.metadata),
            short: PinInfoShort {
                peername: p.peername,
                ipfs_peer_id: p.ipfs_peer_id,
                ipfs_peer_addresses: multiaddrs(p.ipfs_peer_addresses)?,
                status,
                timestamp: Time::from_unix_nanos(p.timestamp),
                error: p.error,
                attempt_count: p.attempt_count,
                priority_pin: p.priority_pin,
            },
        })
    }
}

impl From<Metric> for proto::Metric {
    fn from(m: Metric) -> Self {
        proto::Metric {
            name: m.name,
            peer: m.peer,
            value: m.value,
            expire: m.expire,
            valid: m.valid,
            weight: m.weight,
            partitionable: m.partitionable,
            received_at: m.received_at,
        }
    }
}

impl From<proto::Metric> for Metric {
    fn from(m: proto::Metric) -> Self {
        Metric {
            name: m.name,
            peer: m.peer,
            value: m.value,
            expire: m.expire,
            valid: m.valid,
            weight: m.weight,
            partitionable: m.partitionable,
            received_at: m.received_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG";
    const CID2: &str = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";
    const PEER: &str = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";

    #[test]
    fn pin_round_trip_gives_state_read_shape() {
        let mut po = PinOptions::from_query(&format!(
            "name=n&mode=direct&meta-a=b&pin-update={CID2}&user-allocations={PEER}\
             &origins=/ip4/1.2.3.4/tcp/4001/p2p/{PEER}&expire-at=2030-01-01T00:00:00.7Z\
             &replication=2"
        ))
        .unwrap();
        let mut pin = Pin::new_data(Cid::parse(CID).unwrap(), po.clone());
        pin.allocations = vec![PEER.into()];
        let p: proto::Pin = pin.clone().into();
        assert_eq!(p.max_depth, 0);
        assert_eq!(p.r#type, proto::PinType::Data as i32);
        assert_eq!(p.options.as_ref().unwrap().expire_at, 1893456000);
        let faithful = Pin::try_from(p.clone()).unwrap();
        assert_eq!(
            faithful.options.user_allocations,
            Some(vec![PEER.to_string()])
        );
        let back = Pin::from_state_proto(p).unwrap();
        po.user_allocations = None;
        po.expire_at = po.expire_at.trunc_secs();
        assert_eq!(back.options, po);
        assert_eq!(back.timestamp, pin.timestamp.trunc_secs());
        assert_eq!(back, pin.normalized_state_read());
        assert_eq!(faithful.normalized_state_read(), back);
    }

    #[test]
    fn bad_proto_pin() {
        let p = proto::Pin {
            cid: "nope".into(),
            r#type: 1,
            ..Default::default()
        };
        let e = Pin::try_from(p).unwrap_err();
        assert!(e.to_string().contains("Pin.cid"), "{e}");
        let p = proto::Pin {
            cid: CID.into(),
            r#type: 9,
            ..Default::default()
        };
        assert!(Pin::try_from(p)
            .unwrap_err()
            .to_string()
            .contains("unknown pin type 9"));
        let p = proto::Pin {
            cid: CID.into(),
            r#type: 1,
            reference: "zz".into(),
            ..Default::default()
        };
        assert!(Pin::try_from(p).is_err());
    }

    #[test]
    fn empty_proto_pin_defaults() {
        let p = proto::Pin {
            cid: CID.into(),
            r#type: 1,
            max_depth: -1,
            ..Default::default()
        };
        let pin = Pin::from_state_proto(p).unwrap();
        let j = serde_json::to_string(&pin).unwrap();
        assert_eq!(
            j,
            format!("{{\"replication_factor_min\":0,\"replication_factor_max\":0,\"name\":\"\",\"mode\":\"recursive\",\"shard_size\":0,\"user_allocations\":null,\"expire_at\":\"0001-01-01T00:00:00Z\",\"metadata\":null,\"pin_update\":null,\"origins\":[],\"cid\":\"{CID}\",\"type\":\"pin\",\"allocations\":[],\"max_depth\":-1,\"reference\":null,\"timestamp\":\"0001-01-01T00:00:00Z\"}}")
        );
    }

    #[test]
    fn pininfo_round_trip() {
        let pi = PinInfo {
            cid: Cid::parse(CID).unwrap(),
            name: "n".into(),
            peer: PEER.into(),
            allocations: Some(vec![PEER.into()]),
            origins: Some(vec![]),
            created: Time::parse("2024-05-01T10:20:30Z").unwrap(),
            metadata: Some([("a".to_string(), "b".to_string())].into()),
            short: PinInfoShort {
                peername: "p1".into(),
                ipfs_peer_id: PEER.into(),
                ipfs_peer_addresses: vec![parse_multiaddr("/ip4/127.0.0.1/tcp/4001").unwrap()],
                status: TrackerStatus::PinQueued,
                timestamp: Time::parse("2024-05-01T10:21:00.5Z").unwrap(),
                error: "e".into(),
                attempt_count: 3,
                priority_pin: true,
            },
        };
        let p: proto::PinInfo = pi.clone().into();
        assert_eq!(p.status, proto::TrackerStatus::PinQueued as i32);
        assert_eq!(p.timestamp, 1_714_558_860_500_000_000);
        assert_eq!(PinInfo::try_from(p).unwrap(), pi);
        let p = proto::PinInfo {
            cid: CID.into(),
            status: 3,
            ..Default::default()
        };
        let back = PinInfo::try_from(p).unwrap();
        assert_eq!(back.short.status, TrackerStatus::Undefined);
        assert!(back.short.timestamp.is_zero());
        assert_eq!(back.metadata, None);
        assert!(PinInfo::try_from(proto::PinInfo::default()).is_err());
    }

    #[test]
    fn status_and_metric() {
        for s in TrackerStatus::ALL {
            assert_eq!(TrackerStatus::from(proto::TrackerStatus::from(s)), s);
        }
        let m = Metric {
            name: "freespace".into(),
            peer: PEER.into(),
            value: "100".into(),
            expire: 1,
            valid: true,
            weight: 100,
            partitionable: false,
            received_at: 2,
        };
        assert_eq!(Metric::from(proto::Metric::from(m.clone())), m);
    }
}
