//! # ipfs-cluster-crdt
//!
//! The Merkle-CRDT key-value store behind the consensus service's crdt mode: go-ds-crdt
//! (v0.6.8, the version IPFS Cluster v1.1.6 pins) re-done on redb, with the same semantics
//! and, where it was cheap, the same bytes. A library only: the consensus service wires it
//! to the transport (gossip topic, block fetching) and to the pin tracker.
//!
//! ## Model
//!
//! Every update is a *delta* (`Delta{elements, tombstones, priority}`) stored as a dag-pb
//! node that links the current *heads*; its priority is the node's height, max(heads)+1.
//! The state is an add-wins observed-remove set: an element is (key, id of the node that
//! added it); a delete tombstones the elements of the key this replica has seen, so a
//! concurrent put (an element the deleter had not seen) survives. A key's value is the one
//! of its live elements with the highest priority, ties to the bytewise greater value.
//! Remote heads arrive in broadcasts; the store walks back from each, fetching missing
//! nodes through a [`NodeFetcher`], merges what it has not merged, and makes the head one of
//! its own heads in place of the heads the branch links to.
//!
//! ## What matches upstream byte for byte (checked against output of go-ds-crdt itself)
//!
//! * Delta nodes: dag-pb with links first (`Name: ""`, `Tsize: 0`), links = heads sorted by
//!   binary CID, `Data` = the `crdt.pb.Delta` protobuf; CIDv1 dag-pb sha2-256. The golden
//!   test drives two replicas through a put / put / delete / concurrent put / two-head
//!   merge / batch sequence and compares every node's bytes and CID, the broadcast, the
//!   values and priorities with what go-ds-crdt v0.6.8 printed for the same sequence
//!   (`testdata/`).
//! * Element ids and tombstone ids: `"/" + base32(multihash)` (boxo `dshelp`).
//! * Broadcasts: `crdt.pb.CRDTBroadcast{Heads}`; a bare binary CID (older format) is read too.
//! * Keys of pins: [`pin_key`] = `"/" + base32(binary CID)`, as cluster's `dsstate` writes
//!   them (its state namespace is empty; the `/c` datastore namespace only prefixes
//!   upstream's own storage layout and never appears on the wire).
//! * The gossip topic: [`topic_name`] = base58(MD5 multihash of `cluster_name`).
//! * Merge rules, followed from go-ds-crdt's source (`set.go`): putTombs then putElems,
//!   findBestValue, the "empty best value deletes the key" quirk, and putElems comparing
//!   against the value as it was before the delta's elements. The goldens cover the common
//!   paths (tombstone, priorities, the tie-break); the quirks are not covered by a golden.
//!
//! ## What differs
//!
//! * Values are opaque bytes here. The consensus service stores upstream's `api.Pin`
//!   protobuf in them (`crates/consensus/src/crdt_mode/apipin.rs`).
//! * Local storage layout: redb tables, not go-datastore keys (`/c/s/k/<key>/v` ...); a
//!   state export is the migration path, not sharing a datastore.
//! * Processing order: children before parents (upstream merges newest first with 50
//!   workers). The final state is the same; newest values just appear last during a long
//!   catch-up, and a whole branch is fetched before it is merged.
//! * A replica with no heads does not adopt broadcast heads before it has merged them
//!   (upstream does, to avoid orphan branches during a first sync). Consequence: a *trusted*
//!   peer that writes while its first sync is still fetching writes at a low height, and its
//!   value loses to older values of the same key with a higher priority until it is
//!   rewritten. Followers never write, so this matters only for new trusted peers; the
//!   consensus service holds their writes until the first sync is done (its
//!   `crdt_mode::net::spawn_first_sync`).
//! * Set elements and tombstones are kept forever, as upstream (no compaction).
//! * A later put of a key in a [`Batch`] replaces the earlier one (upstream keeps both).
//!   Deltas from upstream peers with one key twice are merged exactly as upstream does,
//!   which, as upstream, can depend on merge order when a concurrent value has the same
//!   priority.
//! * Change events ([`Change`]) fire when a key's value really changes; upstream's delete
//!   hook fires for every tombstoned version even when another version stays.
//! * An empty batch publishes nothing (upstream publishes an empty delta node).
//!
//! ## Durability
//!
//! A local update is one durable redb transaction: block, merge, processed mark and heads.
//! A remote branch is applied as: blocks stored as fetched, then the root recorded as
//! *pending* (durable), then each node merged in its own atomic transaction (children
//! first, so a merged node's descendants are always merged), then one durable transaction
//! makes the root a head and drops the pending record. After a crash [`CrdtStore::is_dirty`]
//! is true and [`CrdtStore::repair`] finishes the branch. A branch that could not be
//! fetched leaves no trace; the sender's next rebroadcast of its heads brings it again.
#![forbid(unsafe_code)]

mod batch;
mod config;
mod dot;
mod error;
mod fetch;
mod node;
pub mod pb;
mod store;
mod trust;

pub use batch::{Batcher, Op};
pub use config::{BatchingConfig, CrdtConfig};
pub use error::CrdtError;
pub use fetch::{FetchError, NoFetch, NodeFetcher};
pub use node::{
    block_cid, block_id, decode_broadcast, decode_node, encode_broadcast, encode_node,
    pin_cid_from_key, pin_key, topic_name, verify_block, DeltaNode, DAG_PB, SHA2_256,
};
pub use store::{ApplyOutcome, Batch, Change, CrdtStore, Published, RepairReport};
pub use trust::TrustedPeers;

#[cfg(test)]
mod tests;
