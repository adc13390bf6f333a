//! service.json and identity.json: upstream-compatible loading, validation, defaults,
//! environment overrides, Go durations. Every service loads its peer with [`Peer::load`];
//! the launcher's `init` calls [`init`]. See README.md for the `internal` section and the
//! environment variables.

pub mod addr;
pub mod api;
pub mod cluster;
pub mod components;
pub mod consensus;
pub mod crdt;
pub mod duration;
mod env;
mod error;
pub mod host_header;
pub mod identity;
pub mod internal;
mod json;
mod peer;
pub mod ports;
pub mod secret;
mod service;

pub use api::{ApiConfig, IpfsProxyConfig, RestApiConfig};
pub use cluster::{
    ClusterConfig, ConnMgrConfig, PubsubConfig, ResourceMgrConfig, FOLLOWER_MODE_ERROR,
};
pub use components::{
    AllocatorConfig, BalancedConfig, DiskInformerConfig, InformerConfig, IpfsConnectorConfig,
    IpfsHttpConfig, MetricsConfig, MonitorConfig, ObservationsConfig, PinQueueInformerConfig,
    PinTrackerConfig, PubsubmonConfig, StatelessConfig, TagsInformerConfig, TracingConfig,
};
pub use consensus::{ConsensusConfig, RaftConfig};
pub use crdt::{CrdtBatchingConfig, CrdtConfig};
pub use duration::GoDuration;
pub use env::var_name as env_var_name;
pub use error::ConfigError;
pub use identity::{write_private, Identity};
pub use internal::{InternalConfig, ServiceKind};
pub use libp2p::{multiaddr::Protocol, Multiaddr, PeerId};
pub use peer::{
    init, init_from, read_peerstore, resolve_config_dir, write_peerstore, InitOptions, InitReport,
    Peer, DEFAULT_PEERSTORE, IDENTITY_JSON, SERVICE_JSON,
};
pub use secret::ClusterSecret;
pub use service::ServiceConfig;

#[cfg(test)]
mod tests;
