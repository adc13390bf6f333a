//! Consensus service: the pinset on openraft, durable on redb; membership; allocation.
//!
//! Layers, lowest first (a module uses only those above it in this list):
//! * `pinning` (upstream's pin validation, type filters), `allocate` (balanced allocator
//!   and metrics): rules shared by both modes; `error` (`ConsensusError`, the domain
//!   error of everything below the gRPC service);
//! * `raft/`: `ids`, `command` (raft type config and the replicated op), `store` (redb
//!   tables and reads), `storage` (openraft storage-v2 on it), `network` (raft RPCs over
//!   transport peer calls);
//! * `node/`: the running raft node: `mod.rs` (start, health of the core), `write`
//!   (validate, allocate, commit; forwarding), `membership` (add, remove, staging),
//!   `inbound` (raft calls from other peers, checked against their sender), `duties`
//!   (the leader's background work: expiry, re-allocation of dead peers' pins);
//! * `service` (the gRPC service), `prometheus` (its families);
//! * `lifecycle/`: a raft peer from its folder's markers to its exit (`join`: joining
//!   through `--bootstrap`, retried; staging, reset to be added, storage failure, leave);
//! * `daemon` (the service on the runtime's skeleton: flags and raft options);
//! * `local_router` (unit tests, and the `test-doubles` feature for the bench example): an
//!   in-process stand-in for the transport that routes raft calls to nodes' services;
//! * `crdt_mode/`: the same contract on a Merkle-CRDT store when service.json has
//!   `consensus.crdt` (uses only the rules).

pub mod allocate;
pub mod crdt_mode;
pub mod daemon;
pub mod error;
pub mod lifecycle;
#[cfg(any(test, feature = "test-doubles"))]
pub mod local_router;
pub mod node;
pub mod pinning;
mod prometheus;
pub mod raft;
pub mod service;

pub use error::ConsensusError;

#[cfg(test)]
mod tests;
