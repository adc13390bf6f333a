//! The internal gRPC contracts between a peer's four services (transport, consensus,
//! ipfs connector, gateway), generated from the workspace's `proto/` folder, with what a
//! caller of a contract needs: the service names, the per-peer bearer token type, the
//! authenticated client constructors and the caller identity the transport attaches.
//! Serving an endpoint (loopback binding, the token check, health, reflection) is in
//! `ipfs-cluster-runtime`.
//!
//! Services never link each other; they only share the library crates.

pub mod auth;
pub mod caller;
pub mod client;

pub use auth::{InternalToken, TokenError};
pub use caller::{Caller, PEER_HEADER};

pub mod types {
    pub mod v1 {
        tonic::include_proto!("ipfscluster.types.v1");
    }
}
pub mod transport {
    pub mod v1 {
        tonic::include_proto!("ipfscluster.transport.v1");
    }
}
pub mod consensus {
    pub mod v1 {
        tonic::include_proto!("ipfscluster.consensus.v1");
    }
}
pub mod ipfsconnector {
    pub mod v1 {
        tonic::include_proto!("ipfscluster.ipfsconnector.v1");
    }
}
pub mod gateway {
    pub mod v1 {
        tonic::include_proto!("ipfscluster.gateway.v1");
    }
}

/// Encoded FileDescriptorSet of every contract, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("ipfscluster_descriptor");

/// Fully qualified gRPC service names, as carried in peer calls and used by the policy.
pub mod names {
    pub const TRANSPORT: &str = "ipfscluster.transport.v1.Transport";
    pub const CONSENSUS: &str = "ipfscluster.consensus.v1.Consensus";
    pub const IPFS_CONNECTOR: &str = "ipfscluster.ipfsconnector.v1.IpfsConnector";
    pub const GATEWAY: &str = "ipfscluster.gateway.v1.Gateway";
}

/// The broadcast topic for metrics (upstream's `monitor.metrics`).
pub const METRICS_TOPIC: &str = "monitor.metrics";

/// The version every binary reports (upstream's version, which we are a drop-in for).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
