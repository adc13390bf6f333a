//! Consensus service: the pinset on openraft, durable on redb; membership; allocation.
//!
//! Layout: `store` (redb tables and reads), `raft_store` (openraft storage-v2 on it),
//! `types` (raft type config and the replicated op), `ids` (peer id <-> raft node id),
//! `pinning` (upstream's pin validation), `allocate` (balanced allocator and metrics),
//! `network` (raft RPCs over transport peer calls), `node` (the running raft node),
//! `service` (the gRPC service), `join` (joining through `--bootstrap`, retried),
//! `lifecycle` (a raft peer from its folder's markers to its exit: join, staging,
//! reset to be added, storage failure, leave), `daemon` (the service on the runtime's
//! skeleton: flags and raft options from service.json), `prometheus` (its families);
//! `crdt_mode`: the same contract on a Merkle-CRDT store when service.json has
//! `consensus.crdt`.

pub mod allocate;
pub mod crdt_mode;
pub mod daemon;
pub mod ids;
pub mod join;
pub mod lifecycle;
pub mod network;
pub mod node;
pub mod pinning;
mod prometheus;
pub mod raft_store;
pub mod service;
pub mod store;
pub mod types;

#[cfg(test)]
mod tests;
