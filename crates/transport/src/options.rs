//! What the transport needs to run, independent of where it came from (service.json via
//! ipfs-cluster-config in the binary; built by hand in tests).

use std::{collections::HashMap, net::SocketAddr, path::PathBuf, time::Duration};

use ipfs_cluster_proto::InternalToken;
use libp2p::{identity::Keypair, Multiaddr};

use crate::trust::Members;

/// Limits on what peers can make us do. Defaults are sane for a cluster of a few hundred
/// peers on a normal network.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest peer-call request or response, in bytes (also the gossipsub message limit
    /// and the local gRPC message limit).
    pub max_message_size: usize,
    /// Largest answer to a remote server-streaming call (all of its messages together:
    /// remote streams travel as one response).
    pub max_stream_answer: usize,
    /// Concurrent inbound peer calls one peer may have in flight; more get RESOURCE_EXHAUSTED.
    pub max_inbound_calls_per_peer: usize,
    /// Established libp2p connections; more are closed at once.
    pub max_connections: usize,
    /// Deadline of a peer call when the caller sets none.
    pub default_call_timeout: Duration,
    /// Longest deadline a caller may ask for.
    pub max_call_timeout: Duration,
    /// TCP + pnet + noise + yamux handshake deadline (a wrong secret often fails only here).
    pub dial_timeout: Duration,
    /// How long the member list from consensus is reused for trusted-call checks.
    pub membership_cache_ttl: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_size: 16 << 20,
            max_stream_answer: 256 << 20,
            max_inbound_calls_per_peer: 64,
            max_connections: 400,
            default_call_timeout: Duration::from_secs(30),
            max_call_timeout: Duration::from_secs(600),
            dial_timeout: Duration::from_secs(3),
            membership_cache_ttl: Duration::from_secs(2),
        }
    }
}

pub struct TransportOptions {
    pub keypair: Keypair,
    /// The 32-byte cluster secret; `None` = open network.
    pub secret: Option<[u8; 32]>,
    /// `cluster.listen_multiaddress` (QUIC entries are skipped).
    pub listen: Vec<Multiaddr>,
    /// `cluster.peer_addresses`: dialled at start (with backoff) besides the peerstore.
    /// Any TCP form (`/ip4`, `/ip6`, `/dns`, `/dns4`, `/dns6`) or `/dnsaddr`, with or
    /// without `/p2p/<id>` (without it the peer id is learned from the connection).
    pub bootstrap: Vec<Multiaddr>,
    /// `cluster.announce_multiaddress`: when not empty, the only addresses we tell others.
    pub announce: Vec<Multiaddr>,
    /// `cluster.no_announce_multiaddress`: never told to others (exact, or `/ipcidr` masks).
    pub no_announce: Vec<Multiaddr>,
    /// The `peerstore` file; `None` = do not persist.
    pub peerstore_file: Option<PathBuf>,
    /// Local services' internal gRPC endpoints by fully qualified service name.
    pub services: HashMap<String, SocketAddr>,
    pub token: InternalToken,
    /// Member list for trusted calls; `None` = ask the local consensus service.
    pub members: Option<Members>,
    pub limits: Limits,
    pub gossip_heartbeat: Duration,
    pub ping_interval: Duration,
    /// How often the known cluster peers that are not connected are dialled again
    /// (upstream's `reBootstrapInterval`, 30 s): the `bootstrap` peers, the peerstore's and
    /// those dialled on purpose. Bootstrap alone stops at the first connection, so a peer
    /// whose connection later closed was met again only if it dialled us.
    pub rebootstrap_interval: Duration,
    /// The peer runs crdt consensus (`consensus.crdt`): see `trust::Trust::with_crdt`.
    pub crdt: bool,
    /// Where the service records its peer calls (Prometheus; `None` when metrics are off).
    pub peer_calls: Option<std::sync::Arc<crate::prometheus::PeerCalls>>,
    /// Counts the internal gRPC calls served (the service's registry; `None` = metrics off).
    pub grpc_observer: Option<std::sync::Arc<dyn ipfs_cluster_runtime::grpc::GrpcObserver>>,
}

impl TransportOptions {
    /// Options with defaults for everything but identity, secret, listen addresses and token.
    pub fn new(
        keypair: Keypair,
        secret: Option<[u8; 32]>,
        listen: Vec<Multiaddr>,
        token: InternalToken,
    ) -> Self {
        Self {
            keypair,
            secret,
            listen,
            bootstrap: vec![],
            announce: vec![],
            no_announce: vec![],
            peerstore_file: None,
            services: HashMap::new(),
            token,
            members: None,
            limits: Limits::default(),
            gossip_heartbeat: Duration::from_secs(1),
            ping_interval: Duration::from_secs(15),
            rebootstrap_interval: Duration::from_secs(30),
            crdt: false,
            peer_calls: None,
            grpc_observer: None,
        }
    }
}
