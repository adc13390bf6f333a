//! The gateway's own view of its configuration (the `api.restapi` section plus what it
//! needs from `cluster` and `internal`). Kept separate from ipfs-cluster-config so the HTTP
//! code and its tests do not depend on how service.json is loaded.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, time::Duration};

use libp2p::{identity::Keypair, Multiaddr};

/// Which API a server speaks (they share the stack, not the routes or error bodies).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiKind {
    Rest,
    PinSvc,
}

/// The REST API's own libp2p host (`libp2p_http`), validated by config.rs.
#[derive(Debug, Clone)]
pub struct Libp2pOptions {
    pub listen: Vec<Multiaddr>,
    pub keypair: Keypair,
    /// `cluster.secret` (None = empty secret: an open network).
    pub secret: Option<[u8; 32]>,
}

/// Settings of one HTTP API listener (REST or Pinning Services), as upstream's `api/common`.
#[derive(Debug, Clone)]
pub struct HttpApiOptions {
    /// Resolved TCP listen addresses.
    pub listen: Vec<SocketAddr>,
    /// Unix socket paths (`/unix/<path>` listen addresses, e.g. ipfs-cluster-follow's
    /// `api-socket`, as upstream's follower).
    pub unix: Vec<PathBuf>,
    /// The multiaddrs as configured, for logs and Gateway.Info.
    pub listen_multiaddrs: Vec<String>,
    pub ssl_cert_file: Option<PathBuf>,
    pub ssl_key_file: Option<PathBuf>,
    pub read_timeout: Duration,
    pub read_header_timeout: Duration,
    pub write_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    /// `None` = authentication off (upstream `basic_auth_credentials: null`).
    pub basic_auth_credentials: Option<BTreeMap<String, String>>,
    /// Users of `basic_auth_credentials` that may only read (ours: `read_only_users`).
    pub read_only_users: std::collections::BTreeSet<String>,
    /// Access log file ("" = log through tracing).
    pub http_log_file: Option<PathBuf>,
    pub headers: BTreeMap<String, Vec<String>>,
    pub cors: CorsOptions,
    /// The REST API's own libp2p host (libp2p_http.rs), when configured.
    pub libp2p: Option<Libp2pOptions>,
    /// Connections served at once (per API); more are closed at accept.
    pub max_connections: usize,
    /// Largest `POST /add` request body, in bytes (ours: `max_add_bytes`).
    pub max_add_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct CorsOptions {
    pub allowed_origins: Vec<String>,
    pub allowed_methods: Vec<String>,
    pub allowed_headers: Vec<String>,
    pub exposed_headers: Vec<String>,
    pub allow_credentials: bool,
    pub max_age: Duration,
}

impl Default for CorsOptions {
    fn default() -> Self {
        Self {
            allowed_origins: vec!["*".into()],
            allowed_methods: vec!["GET".into()],
            allowed_headers: vec![],
            exposed_headers: vec![
                "Content-Type".into(),
                "X-Stream-Output".into(),
                "X-Chunked-Output".into(),
                "X-Content-Length".into(),
            ],
            allow_credentials: true,
            max_age: Duration::ZERO,
        }
    }
}

impl HttpApiOptions {
    /// Upstream defaults for a listener on `addr`.
    pub fn with_listen(addr: SocketAddr) -> Self {
        Self {
            listen: vec![addr],
            unix: Vec::new(),
            listen_multiaddrs: vec![socket_to_multiaddr(addr)],
            ssl_cert_file: None,
            ssl_key_file: None,
            read_timeout: Duration::ZERO,
            read_header_timeout: Duration::from_secs(5),
            write_timeout: Duration::ZERO,
            idle_timeout: Duration::from_secs(120),
            max_header_bytes: 4096,
            basic_auth_credentials: None,
            read_only_users: Default::default(),
            http_log_file: None,
            headers: BTreeMap::new(),
            cors: CorsOptions::default(),
            libp2p: None,
            max_connections: ipfs_cluster_config::api::DEFAULT_MAX_CONNECTIONS as usize,
            max_add_bytes: ipfs_cluster_config::api::DEFAULT_MAX_ADD_BYTES,
        }
    }

    pub fn tls_enabled(&self) -> bool {
        self.ssl_cert_file.is_some() && self.ssl_key_file.is_some()
    }
}

/// Everything the gateway needs to run.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    pub peername: String,
    pub rest: HttpApiOptions,
    /// The Pinning Services API, when its section is present.
    pub pinsvc: Option<HttpApiOptions>,
    pub transport_addr: SocketAddr,
    pub consensus_addr: SocketAddr,
    pub ipfs_connector_addr: SocketAddr,
    pub gateway_addr: SocketAddr,
    pub allow_remote_internal: bool,
    /// `cluster.replication_factor_min`: an add whose pin leaves the factor at 0 takes it,
    /// and -1 (the default) means every peer, which `/add` reports in its allocations.
    pub replication_factor_min: i32,
    /// `monitor.pubsubmon.check_interval`: how often expired peer metrics raise alerts.
    pub alert_check_interval: std::time::Duration,
    /// `cluster.follower_mode`: this peer never writes the pinset; `/add` is refused
    /// before any block is stored (pins and unpins are refused by the consensus service).
    pub follower_mode: bool,
}

/// `/ip4/1.2.3.4/tcp/9094` (or ip6) for a socket address.
pub fn socket_to_multiaddr(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("/ip4/{}/tcp/{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("/ip6/{}/tcp/{}", a.ip(), a.port()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_addresses_as_multiaddresses() {
        let a: SocketAddr = "127.0.0.1:9094".parse().unwrap();
        assert_eq!(socket_to_multiaddr(a), "/ip4/127.0.0.1/tcp/9094");
        let a: SocketAddr = "[::1]:9094".parse().unwrap();
        assert_eq!(socket_to_multiaddr(a), "/ip6/::1/tcp/9094");
    }
}
