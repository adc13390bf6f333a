//! # ipfs-cluster-crdt
//!
//! PLACEHOLDER
#![forbid(unsafe_code)]

mod batch;
mod config;
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
