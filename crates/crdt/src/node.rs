//! Delta nodes (dag-pb blocks), their CIDs, block ids, broadcasts and cluster keys.

use cid::Cid;
use data_encoding::BASE32_NOPAD;
use multihash::Multihash;
use prost::Message;
use sha2::{Digest, Sha256};

use crate::error::CrdtError;
use crate::pb::{self, CrdtBroadcast, Delta};

/// Multicodec of dag-pb.
pub const DAG_PB: u64 = 0x70;
/// Multihash code of sha2-256.
pub const SHA2_256: u64 = 0x12;

/// A decoded delta node: the delta and the links to the heads it was built on.
#[derive(Debug, Clone, PartialEq)]
pub struct DeltaNode {
    pub delta: Delta,
    pub links: Vec<Cid>,
}

/// The CIDv1 (dag-pb, sha2-256) of a block, as go-ds-crdt names its nodes.
pub fn block_cid(bytes: &[u8]) -> Cid {
    let digest = Sha256::digest(bytes);
    let mh = Multihash::<64>::wrap(SHA2_256, &digest).expect("a 32-byte digest fits in 64");
    Cid::new_v1(DAG_PB, mh)
}

/// Encodes a delta into a dag-pb node linking `links` (in the given order; go-ds-crdt sorts
/// the heads by their binary CID, and [`crate::CrdtStore`] does the same). Returns the CID
/// and the block bytes.
pub fn encode_node(delta: &Delta, links: &[Cid]) -> (Cid, Vec<u8>) {
    let links: Vec<Vec<u8>> = links.iter().map(|c| c.to_bytes()).collect();
    let data = delta.encode_to_vec();
    let bytes = pb::encode_dag_pb(&links, Some(&data));
    (block_cid(&bytes), bytes)
}

/// Decodes a block fetched or stored under `cid`, checking first that the bytes hash to it.
pub fn decode_node(cid: &Cid, bytes: &[u8]) -> Result<DeltaNode, CrdtError> {
    verify_block(cid, bytes)?;
    let node = pb::PbNode::decode(bytes).map_err(|e| CrdtError::BadNode {
        cid: cid.to_string(),
        reason: format!("not a dag-pb node: {e}"),
    })?;
    let delta = match node.data.as_deref() {
        None | Some([]) => Delta::default(),
        Some(d) => Delta::decode(d).map_err(|e| CrdtError::BadNode {
            cid: cid.to_string(),
            reason: format!("the node's Data is not a go-ds-crdt Delta: {e}"),
        })?,
    };
    let mut links = Vec::with_capacity(node.links.len());
    for l in node.links {
        let hash = l.hash.unwrap_or_default();
        let c = Cid::try_from(hash.as_slice()).map_err(|e| CrdtError::BadNode {
            cid: cid.to_string(),
            reason: format!("a link is not a CID: {e}"),
        })?;
        links.push(c);
    }
    Ok(DeltaNode { delta, links })
}

/// Checks that `bytes` is the block named by `cid` (dag-pb, sha2-256 only).
pub fn verify_block(cid: &Cid, bytes: &[u8]) -> Result<(), CrdtError> {
    if cid.codec() != DAG_PB || cid.hash().code() != SHA2_256 {
        return Err(CrdtError::BadNode {
            cid: cid.to_string(),
            reason: format!(
                "unsupported CID (codec {:#x}, hash {:#x}): crdt nodes are dag-pb with sha2-256",
                cid.codec(),
                cid.hash().code()
            ),
        });
    }
    let digest = Sha256::digest(bytes);
    if cid.hash().digest() != digest.as_slice() {
        return Err(CrdtError::BadNode {
            cid: cid.to_string(),
            reason: "the block's bytes do not hash to its CID (corrupt or forged block)".into(),
        });
    }
    Ok(())
}

/// The element id go-ds-crdt gives to the elements of a node: its datastore key,
/// `"/" + base32(multihash)` (RFC 4648 alphabet, upper case, no padding), as boxo's
/// `dshelp.MultihashToDsKey(c.Hash()).String()`. Tombstones carry these ids on the wire.
pub fn block_id(cid: &Cid) -> String {
    format!("/{}", BASE32_NOPAD.encode(&cid.hash().to_bytes()))
}

/// The key upstream IPFS Cluster (v1.1.6, `state/dsstate`) stores a pin under in the crdt
/// store: `"/" + base32(binary CID)` (boxo's `dshelp.NewKeyFromBinary`).
pub fn pin_key(pin_cid: &Cid) -> String {
    format!("/{}", BASE32_NOPAD.encode(&pin_cid.to_bytes()))
}

/// The pin CID back from a key written by [`pin_key`].
pub fn pin_cid_from_key(key: &str) -> Result<Cid, CrdtError> {
    let bad = |reason: String| CrdtError::InvalidKey {
        key: key.to_string(),
        reason,
    };
    let b32 = key
        .strip_prefix('/')
        .ok_or_else(|| bad("a pin key starts with '/'".into()))?;
    let bytes = BASE32_NOPAD
        .decode(b32.as_bytes())
        .map_err(|e| bad(format!("not base32 (RFC 4648, no padding): {e}")))?;
    Cid::try_from(bytes.as_slice()).map_err(|e| bad(format!("not a binary CID: {e}")))
}

/// Encodes go-ds-crdt's `CRDTBroadcast{Heads}` for the given heads.
pub fn encode_broadcast(heads: &[Cid]) -> Vec<u8> {
    let bytes: Vec<Vec<u8>> = heads.iter().map(|c| c.to_bytes()).collect();
    pb::encode_broadcast_cids(bytes.iter().map(|b| b.as_slice()))
}

/// Decodes a broadcast. Like go-ds-crdt, a payload that is a bare binary CID (the format
/// before `CRDTBroadcast` existed) is accepted as a single head.
pub fn decode_broadcast(data: &[u8]) -> Result<Vec<Cid>, CrdtError> {
    let msg = match CrdtBroadcast::decode(data) {
        Ok(m) => m,
        Err(e) => {
            return Cid::try_from(data).map(|c| vec![c]).map_err(|_| {
                CrdtError::BadBroadcast(format!(
                    "neither a CRDTBroadcast protobuf ({e}) nor a legacy bare CID"
                ))
            })
        }
    };
    msg.heads
        .iter()
        .map(|h| {
            Cid::try_from(h.cid.as_slice())
                .map_err(|e| CrdtError::BadBroadcast(format!("a head is not a binary CID: {e}")))
        })
        .collect()
}

/// The gossipsub topic upstream IPFS Cluster (v1.1.6) uses for a cluster's crdt broadcasts:
/// the base58btc string of the MD5 multihash of `cluster_name`
/// (`multihash.Sum([]byte(name), multihash.MD5, -1).B58String()`).
pub fn topic_name(cluster_name: &str) -> String {
    use md5::Digest as _;
    let digest = md5::Md5::digest(cluster_name.as_bytes());
    // multihash: code 0xd5 (md5, varint d5 01), length 16, digest.
    let mut mh = vec![0xd5, 0x01, 16];
    mh.extend_from_slice(&digest);
    bs58::encode(mh).into_string()
}
