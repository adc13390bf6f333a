//! The REST API's own libp2p endpoint, for `api.restapi` with `libp2p_listen_multiaddress`,
//! `id` and `private_key` all set: a separate libp2p host (TCP + noise + yamux, the given
//! identity) that serves HTTP/1.1 on `/libp2p-http` streams, as upstream's go-libp2p-http.
//! As upstream, this host uses NO private-network key (only the cluster host is guarded
//! by the cluster secret): the REST API's own authentication is what protects it.
//! Each stream is served by the same REST app (auth, CORS, limits, access log) as the
//! HTTP listeners; at most [`MAX_STREAMS`] at once.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use futures::StreamExt;
use libp2p::{
    core::{muxing::StreamMuxerBox, transport::Boxed, upgrade::Version},
    identity::Keypair,
    noise,
    swarm::SwarmEvent,
    tcp, yamux, Multiaddr, PeerId, StreamProtocol, Transport,
};
use tokio::sync::{watch, Semaphore};
use tokio_util::compat::FuturesAsyncReadCompatExt;

use crate::server::App;

/// go-libp2p-http's protocol id.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/libp2p-http");
pub const MAX_STREAMS: usize = 256;

/// The own-host settings (validated by config.rs).
#[derive(Debug, Clone)]
pub struct Libp2pOptions {
    pub listen: Vec<Multiaddr>,
    pub keypair: Keypair,
}

#[derive(Debug, thiserror::Error)]
pub enum Libp2pError {
    #[error("cannot build the REST API's libp2p host: {0}")]
    Build(String),
    #[error("cannot listen on {addr} for the REST API's libp2p endpoint: {reason} (change api.restapi.libp2p_listen_multiaddress)")]
    Listen { addr: Multiaddr, reason: String },
}

fn transport(key: &Keypair) -> Result<Boxed<(PeerId, StreamMuxerBox)>, noise::Error> {
    Ok(
        tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
            .upgrade(Version::V1Lazy)
            .authenticate(noise::Config::new(key)?)
            .multiplex(yamux::Config::default())
            .boxed(),
    )
}

/// Starts the host and serves `/libp2p-http` until `shutdown` flips. Returns the listen
/// addresses (each ending in /p2p/<id>) and the task.
pub async fn start(
    opts: Libp2pOptions,
    app: Arc<App>,
    shutdown: watch::Receiver<bool>,
) -> Result<(Vec<Multiaddr>, tokio::task::JoinHandle<()>), Libp2pError> {
    let id = opts.keypair.public().to_peer_id();
    if app.credentials.is_none() {
        tracing::warn!(
            listen = ?opts.listen,
            "SECURITY: the REST API's own libp2p endpoint (libp2p_listen_multiaddress) has no private network (as upstream) and the REST API has no basic_auth_credentials: any libp2p peer that can reach it can pin, unpin and remove peers; set basic_auth_credentials"
        );
    }
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(opts.keypair)
        .with_tokio()
        .with_other_transport(|key| {
            transport(key).map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        })
        .map_err(|e| Libp2pError::Build(e.to_string()))?
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .map_err(|e| Libp2pError::Build(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();
    for addr in &opts.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| Libp2pError::Listen {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
    }
    let first = opts
        .listen
        .first()
        .cloned()
        .unwrap_or_else(Multiaddr::empty);
    let mut addrs = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        while addrs.is_empty() {
            match swarm.select_next_some().await {
                SwarmEvent::NewListenAddr { address, .. } => addrs.push(address),
                SwarmEvent::ListenerClosed { reason: Err(e), .. } => {
                    return Err(Libp2pError::Listen {
                        addr: first.clone(),
                        reason: e.to_string(),
                    })
                }
                SwarmEvent::ListenerError { error, .. } => {
                    return Err(Libp2pError::Listen {
                        addr: first.clone(),
                        reason: error.to_string(),
                    })
                }
                _ => {}
            }
        }
        Ok(())
    })
    .await
    .map_err(|_| Libp2pError::Listen {
        addr: first.clone(),
        reason: "no listen address within 5s".into(),
    })??;
    let shown: Vec<Multiaddr> = addrs
        .iter()
        .map(|a| a.clone().with(libp2p::multiaddr::Protocol::P2p(id)))
        .collect();
    tracing::info!(
        "RESTAPI (libp2p-http): ENABLED. Listening on: {}",
        shown
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut control = swarm.behaviour().new_control();
    let mut incoming = control
        .accept(PROTOCOL)
        .map_err(|e| Libp2pError::Build(e.to_string()))?;
    let mut stop = shutdown.clone();
    let task = tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(MAX_STREAMS));
        // libp2p-http has no client address: the access log shows 0.0.0.0:0.
        let remote = SocketAddr::from(([0, 0, 0, 0], 0));
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                _ = swarm.select_next_some() => {}
                s = incoming.next() => {
                    let Some((peer, stream)) = s else { break };
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        tracing::warn!(%peer, limit = MAX_STREAMS, "/libp2p-http stream refused: too many open streams");
                        continue;
                    };
                    let app = app.clone();
                    let sd = shutdown.clone();
                    tokio::spawn(async move {
                        let _slot = slot;
                        crate::server::serve_io(stream.compat(), remote, app, sd).await;
                    });
                }
            }
        }
    });
    Ok((shown, task))
}
