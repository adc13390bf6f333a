//! Wire messages, hand-written with prost derives so this crate needs no protoc.
//!
//! * [`Delta`] / [`Element`]: go-ds-crdt v0.6.8 `pb/delta.proto` (`package crdt.pb`), field
//!   numbers and proto3 defaults identical, so prost encodes the same bytes as Go's
//!   `proto.Marshal` (fields in tag order, defaults omitted).
//! * [`CrdtBroadcast`] / [`Head`]: go-ds-crdt's `pb/bcast.proto`.
//! * dag-pb (`PBNode` / `PBLink`): decoded with prost, but *encoded by hand* in
//!   `encode_dag_pb`, because dag-pb's canonical form puts `Links` (field 2) before `Data`
//!   (field 1) and prost always writes fields in tag order.

use prost::Message;

/// A delta: the elements it adds, the elements it tombstones, and its priority (the height
/// of the DAG node that carries it).
#[derive(Clone, PartialEq, Message)]
pub struct Delta {
    #[prost(message, repeated, tag = "1")]
    pub elements: Vec<Element>,
    #[prost(message, repeated, tag = "2")]
    pub tombstones: Vec<Element>,
    #[prost(uint64, tag = "3")]
    pub priority: u64,
}

/// One element of a delta. `key` + `id` identify it; `id` is empty on the wire for added
/// elements (the receiver sets it to the block id of the node that carries the delta) and
/// names the tombstoned element's block id in tombstones.
#[derive(Clone, PartialEq, Message)]
pub struct Element {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub id: String,
    #[prost(bytes = "vec", tag = "3")]
    pub value: Vec<u8>,
}

/// The gossip payload: the sender's current heads.
#[derive(Clone, PartialEq, Message)]
pub struct CrdtBroadcast {
    #[prost(message, repeated, tag = "1")]
    pub heads: Vec<Head>,
}

/// One head in a broadcast: the binary CID.
#[derive(Clone, PartialEq, Message)]
pub struct Head {
    #[prost(bytes = "vec", tag = "1")]
    pub cid: Vec<u8>,
}

/// dag-pb `PBNode` (decode only; see [`encode_dag_pb`]).
#[derive(Clone, PartialEq, Message)]
pub(crate) struct PbNode {
    #[prost(bytes = "vec", optional, tag = "1")]
    pub data: Option<Vec<u8>>,
    #[prost(message, repeated, tag = "2")]
    pub links: Vec<PbLink>,
}

/// dag-pb `PBLink` (decode only).
#[derive(Clone, PartialEq, Message)]
pub(crate) struct PbLink {
    #[prost(bytes = "vec", optional, tag = "1")]
    pub hash: Option<Vec<u8>>,
    #[prost(string, optional, tag = "2")]
    pub name: Option<String>,
    #[prost(uint64, optional, tag = "3")]
    pub tsize: Option<u64>,
}

fn put_varint(out: &mut Vec<u8>, v: u64) {
    prost::encoding::encode_varint(v, out);
}

/// Encodes a dag-pb node the way boxo's merkledag `ProtoNode` does for go-ds-crdt's nodes:
/// every link as `{Hash, Name: "", Tsize: 0}` (both written even though empty/zero), links in
/// the given order, then `Data` (omitted when `None`).
pub(crate) fn encode_dag_pb(links: &[Vec<u8>], data: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for hash in links {
        let mut link = Vec::with_capacity(hash.len() + 8);
        link.push(0x0a); // Hash: field 1, length-delimited
        put_varint(&mut link, hash.len() as u64);
        link.extend_from_slice(hash);
        link.extend_from_slice(&[0x12, 0x00]); // Name: ""
        link.extend_from_slice(&[0x18, 0x00]); // Tsize: 0
        out.push(0x12); // Links: field 2, length-delimited
        put_varint(&mut out, link.len() as u64);
        out.extend_from_slice(&link);
    }
    if let Some(data) = data {
        out.push(0x0a); // Data: field 1, length-delimited
        put_varint(&mut out, data.len() as u64);
        out.extend_from_slice(data);
    }
    out
}

/// Encodes a broadcast of the given binary CIDs.
pub fn encode_broadcast_cids<'a>(cids: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    CrdtBroadcast {
        heads: cids.into_iter().map(|c| Head { cid: c.to_vec() }).collect(),
    }
    .encode_to_vec()
}
