//! Transport service: the libp2p host with the cluster secret (pnet), peer calls with an
//! allow-list policy, gossipsub broadcast, peerstore. The binary (`main.rs`) runs
//! [`daemon::TransportDaemon`] on the shared service skeleton (`ipfs-cluster-runtime`).

pub mod announce;
pub mod bandwidth;
pub mod bitswap;
pub mod daemon;
pub mod first_bytes;
pub mod host;
pub mod http_tunnel;
pub mod inbound;
pub mod local;
pub mod options;
pub mod peerstore;
pub mod policy;
pub mod prometheus;
pub mod secret;
pub mod service;
pub mod trust;
pub mod wire;

use std::{future::Future, sync::Arc};

use ipfs_cluster_proto::{names, transport::v1::transport_server::TransportServer};
use tokio::net::TcpListener;

pub use host::HostHandle;
pub use options::{Limits, TransportOptions};
pub use service::TransportService;
pub use trust::Members;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Host(#[from] host::HostError),
    #[error("cannot read the peerstore file {path}: {source}")]
    Peerstore {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Serve(#[from] ipfs_cluster_runtime::ServeError),
}

/// A started transport: the libp2p host and its gRPC service (not yet served).
pub struct Running {
    pub host: HostHandle,
    pub service: TransportService,
    host_task: tokio::task::JoinHandle<()>,
    bootstrap_task: tokio::task::JoinHandle<()>,
    tunnel_task: tokio::task::JoinHandle<()>,
    bitswap_task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// The tonic service with message limits matching the transport's.
    pub fn grpc(&self) -> TransportServer<TransportService> {
        let max = self.host.limits.max_message_size + 4096;
        TransportServer::new(self.service.clone())
            .max_decoding_message_size(max)
            .max_encoding_message_size(max)
    }

    /// Stops bootstrapping and the host (writing the peerstore).
    pub async fn stop(self) {
        self.bootstrap_task.abort();
        self.tunnel_task.abort();
        self.bitswap_task.abort();
        self.host.shutdown().await;
        let _ = self.host_task.await;
    }
}

/// Starts the libp2p host (listening, bootstrap dials in the background).
pub async fn start(opts: TransportOptions) -> Result<Running, Error> {
    let local_peer_id = opts.keypair.public().to_peer_id();
    let peer_calls = opts.peer_calls.clone();
    let store = match &opts.peerstore_file {
        Some(p) => {
            let path = p.clone();
            tokio::task::spawn_blocking(move || peerstore::load(&path))
                .await
                .expect("peerstore load does not panic")
                .map_err(|source| Error::Peerstore {
                    path: p.display().to_string(),
                    source,
                })?
        }
        None => Default::default(),
    };
    let local = Arc::new(local::LocalServices::new(
        &opts.services,
        &opts.token,
        opts.limits.max_message_size + 4096,
    ));
    let members = match opts.members {
        Some(m) => m,
        None => match opts.services.get(names::CONSENSUS) {
            Some(addr) => {
                Members::Consensus(ipfs_cluster_proto::client::consensus(*addr, &opts.token))
            }
            None => Members::Fixed(Default::default()),
        },
    };
    let adders = opts.bootstrap.iter().filter_map(|a| {
        a.iter().find_map(|p| match p {
            libp2p::multiaddr::Protocol::P2p(id) => Some(id),
            _ => None,
        })
    });
    let trust = Arc::new(
        trust::Trust::new(members, local_peer_id, opts.limits.membership_cache_ttl)
            .with_adders(adders)
            .with_crdt(opts.crdt),
    );
    let inbound = Arc::new(inbound::Inbound {
        trust: trust.clone(),
        local: (*local).clone(),
        limits: opts.limits.clone(),
    });
    let targets = host::bootstrap_targets(&opts.bootstrap, &store, &local_peer_id);
    let (handle, host_task) = host::start(
        host::HostConfig {
            keypair: opts.keypair,
            secret: opts.secret,
            listen: opts.listen,
            peerstore_file: opts.peerstore_file,
            peerstore: store,
            announce: announce::Announce::new(opts.announce, opts.no_announce),
            limits: opts.limits,
            gossip_heartbeat: opts.gossip_heartbeat,
            ping_interval: opts.ping_interval,
            bootstrap: opts.bootstrap.clone(),
            rebootstrap_interval: opts.rebootstrap_interval,
        },
        inbound,
    )
    .await?;
    let bootstrap_task = tokio::spawn(host::bootstrap(handle.clone(), targets));
    let gateway = opts
        .services
        .get(names::GATEWAY)
        .map(|a| ipfs_cluster_proto::client::gateway(*a, &opts.token));
    let tunnel_task = http_tunnel::spawn(
        handle.streams.clone(),
        local.clone(),
        trust.clone(),
        gateway,
    );
    let bitswap = bitswap::Bitswap::new(handle.streams.clone());
    let bitswap_task = bitswap.spawn_server(Arc::new(ConsensusBlocks(local.clone())));
    Ok(Running {
        service: TransportService {
            host: handle.clone(),
            local,
            trust,
            peer_calls,
            bitswap,
        },
        host: handle,
        host_task,
        bootstrap_task,
        tunnel_task,
        bitswap_task,
    })
}

/// The blocks this peer serves over bitswap: the consensus service's crdt delta nodes
/// (`Consensus/CrdtBlock`; none in raft mode).
struct ConsensusBlocks(Arc<local::LocalServices>);

impl bitswap::BlockSource for ConsensusBlocks {
    fn get(&self, cid: cid::Cid) -> futures::future::BoxFuture<'static, Option<Vec<u8>>> {
        use prost::Message;
        let local = self.0.clone();
        Box::pin(async move {
            let req = ipfs_cluster_proto::consensus::v1::CrdtBlockRequest {
                cid: cid.to_string(),
            };
            let answer = local
                .unary(
                    names::CONSENSUS,
                    "CrdtBlock",
                    req.encode_to_vec().into(),
                    std::time::Duration::from_secs(5),
                )
                .await
                .ok()?;
            ipfs_cluster_proto::consensus::v1::CrdtBlockResponse::decode(answer)
                .ok()
                .map(|r| r.data)
        })
    }
}

/// Runs the transport until `shutdown`: the host plus the gRPC service on `listener`.
pub async fn run(
    opts: TransportOptions,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let token = opts.token.clone();
    let served = ipfs_cluster_runtime::ServeOptions {
        observer: opts.grpc_observer.clone(),
        ..Default::default()
    };
    let running = start(opts).await?;
    let res =
        ipfs_cluster_runtime::serve_with(listener, token, running.grpc(), shutdown, served).await;
    running.stop().await;
    res.map_err(Error::from)
}

#[cfg(test)]
mod tests;
