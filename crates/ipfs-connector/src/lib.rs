// IPFS connector service: the only service that talks to the IPFS daemon. It keeps the
// daemon pinning exactly this peer's allocations (pin tracker), reports per-pin status,
// measures the peer (informers) and serves the IPFS proxy.
//! IPFS connector service: Kubo RPC client, pin tracker, informers, IPFS proxy.
//!
//! Layers, lowest first (a module uses only those before it): `kubo/` (the daemon's RPC
//! API) ← `tracker/` (pinset on disk, operations, the consensus watch follower) ←
//! `informers`, `swarms`, `proxy/`, `service` ← `run`, `daemon`, `settings`, `options`.

pub mod daemon;
pub mod informers;
pub mod kubo;
pub mod options;
pub mod proxy;
pub mod run;
pub mod service;
pub mod settings;
pub mod swarms;
pub mod tracker;

pub use kubo::{parse_node_multiaddress, BlockToPut, Kubo, KuboError, NodeAddr, Timeouts};
pub use options::Options;
pub use service::ConnectorService;
pub use tracker::Tracker;
