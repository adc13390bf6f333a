//! The raft layer: what the node is built on, and nothing above it. `ids` (peer id <->
//! raft node id), `command` (openraft's type configuration and the replicated pin
//! command), `store` (the redb tables and reads of the pinset), `storage` (openraft's
//! storage-v2 on that store), `network` (raft RPCs carried as transport peer calls).
//! Nothing in here uses the node, the gRPC service or the lifecycle.

pub mod command;
pub mod ids;
pub mod network;
pub mod storage;
pub mod store;
