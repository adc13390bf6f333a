//! Pin values in the crdt store, in upstream's encoding: the `api.Pin` protobuf of
//! `api/pb/types.proto` as `Pin.ProtoMarshal` writes it (ipfs-cluster v1.1.6), so that an
//! upstream crdt cluster and ours read each other's pinsets.
//!
//! Upstream's message has the field numbers and wire types of our `types.v1.Pin`; only the
//! contents differ: the CID, allocations (peer ids), reference, pin update and origins are
//! *binary* (CID bytes, peer id multihash bytes, multiaddr bytes) where ours are text, and
//! metadata is the sorted `SortedMetadata` list (field 10) where ours is the map (field 6,
//! deprecated upstream but still read by it).
//!
//! * [`encode`] writes upstream's bytes (checked byte for byte against `ProtoMarshal`'s
//!   output: `testdata/upstream-v1.1.6-pin-golden*`).
//! * [`decode`] reads both: upstream's, and the text encoding that stores written before
//!   this change hold (a pin's CID field that is the text of a CID, never valid binary CID
//!   bytes, marks such a value). Old values are rewritten in upstream's encoding the next
//!   time the pin is written; a store that must be read by upstream peers is migrated with
//!   `state export` + `state import`.

use std::collections::HashMap;

use ipfs_cluster_proto::types::v1::{Pin, PinOptions};
use multiaddr::{Multiaddr, PeerId};
use prost::Message;

#[derive(Clone, PartialEq, prost::Message)]
struct WirePin {
    #[prost(bytes = "vec", tag = "1")]
    cid: Vec<u8>,
    #[prost(int32, tag = "2")]
    r#type: i32,
    #[prost(bytes = "vec", repeated, tag = "3")]
    allocations: Vec<Vec<u8>>,
    #[prost(sint32, tag = "4")]
    max_depth: i32,
    #[prost(bytes = "vec", tag = "5")]
    reference: Vec<u8>,
    #[prost(message, optional, tag = "6")]
    options: Option<WireOptions>,
    /// uint64 upstream, int64 in our old encoding: the same varint for positive values.
    #[prost(uint64, tag = "7")]
    timestamp: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct WireOptions {
    #[prost(sint32, tag = "1")]
    replication_factor_min: i32,
    #[prost(sint32, tag = "2")]
    replication_factor_max: i32,
    #[prost(string, tag = "3")]
    name: String,
    #[prost(uint64, tag = "4")]
    shard_size: u64,
    /// Reserved upstream; our old encoding could hold user allocations here (read only).
    #[prost(bytes = "vec", repeated, tag = "5")]
    user_allocations: Vec<Vec<u8>>,
    /// Deprecated upstream (read, never written); our old encoding's metadata.
    #[prost(map = "string, string", tag = "6")]
    metadata: HashMap<String, String>,
    #[prost(bytes = "vec", tag = "7")]
    pin_update: Vec<u8>,
    #[prost(uint64, tag = "8")]
    expire_at: u64,
    #[prost(bytes = "vec", repeated, tag = "9")]
    origins: Vec<Vec<u8>>,
    #[prost(message, repeated, tag = "10")]
    sorted_metadata: Vec<WireMetadata>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct WireMetadata {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(string, tag = "2")]
    value: String,
}

/// Why a pin could not be written in upstream's encoding or a stored value not read.
#[derive(Debug, thiserror::Error)]
pub enum PinCodecError {
    #[error("{field} {text:?} is not a CID: {error}")]
    NotACid {
        field: &'static str,
        text: String,
        #[source]
        error: cid::Error,
    },
    #[error("origin {text:?} is not a multiaddr: {error}")]
    NotAMultiaddr {
        text: String,
        #[source]
        error: multiaddr::Error,
    },
    /// Neither upstream's `api.Pin` protobuf nor our earlier encoding.
    #[error("{0}")]
    Undecodable(#[from] prost::DecodeError),
    #[error("origin: not multiaddr bytes: {0}")]
    OriginBytes(#[source] multiaddr::Error),
    #[error("allocation: not a peer id: {0}")]
    Allocation(String),
}

fn cid_bytes(field: &'static str, s: &str) -> Result<Vec<u8>, PinCodecError> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    cid::Cid::try_from(s)
        .map(|c| c.to_bytes())
        .map_err(|error| PinCodecError::NotACid {
            field,
            text: s.to_string(),
            error,
        })
}

/// A peer id's binary form. Something else (only the unit tests' short peer names) keeps its
/// text, which upstream refuses (it skips such a pin) and [`decode`] reads back as text.
fn peer_bytes(s: &str) -> Vec<u8> {
    s.parse::<PeerId>()
        .map(|p| p.to_bytes())
        .unwrap_or_else(|_| s.as_bytes().to_vec())
}

/// `pin` in upstream's `api.Pin` protobuf (`Pin.ProtoMarshal`). Fails only on a field that
/// upstream's types cannot hold (a CID or multiaddr that does not parse).
pub fn encode(pin: &Pin) -> Result<Vec<u8>, PinCodecError> {
    let o = pin.options.clone().unwrap_or_default();
    let mut keys: Vec<&String> = o.metadata.keys().collect();
    keys.sort();
    let origins = o
        .origins
        .iter()
        .map(|a| {
            a.parse::<Multiaddr>().map(|m| m.to_vec()).map_err(|error| {
                PinCodecError::NotAMultiaddr {
                    text: a.clone(),
                    error,
                }
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let w = WirePin {
        cid: cid_bytes("cid", &pin.cid)?,
        r#type: pin.r#type,
        allocations: pin.allocations.iter().map(|a| peer_bytes(a)).collect(),
        max_depth: pin.max_depth,
        reference: cid_bytes("reference", &pin.reference)?,
        options: Some(WireOptions {
            replication_factor_min: o.replication_factor_min,
            replication_factor_max: o.replication_factor_max,
            name: o.name.clone(),
            shard_size: o.shard_size,
            user_allocations: Vec::new(),
            metadata: HashMap::new(),
            pin_update: cid_bytes("pin_update", &o.pin_update)?,
            expire_at: o.expire_at.max(0) as u64,
            origins,
            sorted_metadata: keys
                .into_iter()
                .map(|k| WireMetadata {
                    key: k.clone(),
                    value: o.metadata[k].clone(),
                })
                .collect(),
        }),
        timestamp: pin.timestamp.max(0) as u64,
    };
    Ok(w.encode_to_vec())
}

/// A stored value: upstream's `api.Pin` protobuf, or our earlier text encoding.
pub fn decode(value: &[u8]) -> Result<Pin, PinCodecError> {
    let w = WirePin::decode(value)?;
    // Our old encoding wrote the CID as text, which is never valid binary CID bytes (a
    // text CID starts with 'Q', 'b', 'z', 'f'...: no CID version or sha2-256 multihash).
    let legacy = !w.cid.is_empty()
        && cid::Cid::try_from(w.cid.as_slice()).is_err()
        && std::str::from_utf8(&w.cid).is_ok_and(|s| cid::Cid::try_from(s).is_ok());
    if legacy {
        return Ok(Pin::decode(value)?);
    }
    // Upstream reads a CID that does not parse as undefined (and so do we).
    let cid_text = |b: &[u8]| -> String {
        cid::Cid::try_from(b)
            .map(|c| c.to_string())
            .unwrap_or_default()
    };
    let o = w.options.unwrap_or_default();
    let mut metadata = o.metadata;
    for m in o.sorted_metadata {
        metadata.insert(m.key, m.value);
    }
    let origins = o
        .origins
        .iter()
        .map(|b| {
            Multiaddr::try_from(b.clone())
                .map(|m| m.to_string())
                .map_err(PinCodecError::OriginBytes)
        })
        .collect::<Result<_, _>>()?;
    let allocations =
        w.allocations
            .iter()
            .map(|b| match PeerId::from_bytes(b) {
                Ok(p) => Ok(p.to_base58()),
                Err(e) => String::from_utf8(b.clone())
                    .map_err(|_| PinCodecError::Allocation(e.to_string())),
            })
            .collect::<Result<_, _>>()?;
    Ok(Pin {
        cid: cid_text(&w.cid),
        r#type: w.r#type,
        allocations,
        max_depth: w.max_depth,
        reference: cid_text(&w.reference),
        options: Some(PinOptions {
            replication_factor_min: o.replication_factor_min,
            replication_factor_max: o.replication_factor_max,
            name: o.name,
            shard_size: o.shard_size,
            user_allocations: Vec::new(),
            metadata,
            pin_update: cid_text(&o.pin_update),
            expire_at: i64::try_from(o.expire_at).unwrap_or(0),
            origins,
        }),
        timestamp: i64::try_from(w.timestamp).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOLDEN: &str = include_str!("../../testdata/upstream-v1.1.6-pin-golden.txt");

    fn golden(label: &str) -> Vec<u8> {
        let line = GOLDEN
            .lines()
            .find(|l| l.starts_with(&format!("GOLDEN {label} ")))
            .unwrap_or_else(|| panic!("no golden {label}"));
        let hex = line.rsplit(' ').next().unwrap();
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    const C1: &str = "QmWATWQ7fVPP2EFGu71UkfnqhYXDYH566qy47CnJDgvs8u";
    const C2: &str = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";
    const C3: &str = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";
    const P1: &str = "12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp";
    const P2: &str = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N";

    fn opts(min: i32, max: i32, name: &str) -> PinOptions {
        PinOptions {
            replication_factor_min: min,
            replication_factor_max: max,
            name: name.into(),
            ..Default::default()
        }
    }

    /// The pins of the Go test (`testdata/upstream-v1.1.6-pin-golden_test.go.txt`).
    fn cases() -> Vec<(&'static str, Pin)> {
        let mut full_opts = opts(2, 3, "full pin");
        full_opts.expire_at = 1_900_000_000;
        full_opts.metadata = [("zeta", "last"), ("alpha", "first")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        full_opts.pin_update = C2.into();
        full_opts.origins = vec![format!("/ip4/1.2.3.4/tcp/4001/p2p/{P1}")];
        let mut shard_opts = opts(1, 2, "s");
        shard_opts.shard_size = 1_048_576;
        vec![
            (
                "full",
                Pin {
                    cid: C1.into(),
                    r#type: 1,
                    allocations: vec![P1.into(), P2.into()],
                    max_depth: -1,
                    reference: String::new(),
                    options: Some(full_opts),
                    timestamp: 1_765_000_000,
                },
            ),
            (
                "min",
                Pin {
                    cid: C2.into(),
                    r#type: 1,
                    max_depth: -1,
                    options: Some(opts(-1, -1, "")),
                    timestamp: 1_765_000_001,
                    ..Default::default()
                },
            ),
            (
                "direct",
                Pin {
                    cid: C3.into(),
                    r#type: 1,
                    allocations: vec![P2.into()],
                    max_depth: 0,
                    options: Some(opts(1, 1, "")),
                    timestamp: 1_765_000_002,
                    ..Default::default()
                },
            ),
            (
                "shard",
                Pin {
                    cid: C3.into(),
                    r#type: 4,
                    max_depth: 1,
                    reference: C1.into(),
                    options: Some(shard_opts),
                    timestamp: 1_765_000_003,
                    ..Default::default()
                },
            ),
            (
                "meta",
                Pin {
                    cid: C1.into(),
                    r#type: 2,
                    max_depth: -1,
                    reference: C2.into(),
                    options: Some(opts(0, 0, "meta")),
                    timestamp: 0,
                    ..Default::default()
                },
            ),
        ]
    }

    #[test]
    fn encodes_as_upstream_proto_marshal() {
        for (label, pin) in cases() {
            assert_eq!(encode(&pin).unwrap(), golden(label), "{label}");
        }
    }

    #[test]
    fn decodes_upstream_values() {
        for (label, pin) in cases() {
            assert_eq!(decode(&golden(label)).unwrap(), pin, "{label}");
        }
    }

    #[test]
    fn decodes_values_written_in_our_old_encoding() {
        for (label, mut pin) in cases() {
            let old = pin.encode_to_vec();
            let back = decode(&old).unwrap();
            // The old encoding kept user allocations; upstream drops them.
            pin.options.as_mut().unwrap().user_allocations.clear();
            assert_eq!(back, pin, "{label}");
        }
        let mut p = cases().remove(0).1;
        p.options.as_mut().unwrap().user_allocations = vec![P1.into()];
        assert_eq!(decode(&p.encode_to_vec()).unwrap(), p);
    }

    #[test]
    fn refuses_what_upstream_cannot_hold() {
        let mut p = cases().remove(1).1;
        p.options.as_mut().unwrap().origins = vec!["not-a-multiaddr".into()];
        assert!(encode(&p)
            .unwrap_err()
            .to_string()
            .contains("not-a-multiaddr"));
        assert!(decode(b"\xff\xff").is_err());
        // Short test names as allocations come back as they went.
        let mut p = cases().remove(1).1;
        p.allocations = vec!["A".into(), P1.into()];
        assert_eq!(decode(&encode(&p).unwrap()).unwrap(), p);
    }
}
