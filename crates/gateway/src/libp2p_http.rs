//! The REST API's own libp2p endpoint, for `api.restapi` with `libp2p_listen_multiaddress`,
//! `id` and `private_key` all set: a separate libp2p host (TCP + noise + yamux, the given
//! identity) that serves HTTP/1.1 on `/libp2p-http` streams, as upstream's go-libp2p-http.
//! Unlike upstream, this host is a private network keyed by the cluster secret (pnet, as
//! the cluster host): only secret holders connect (`ipfs-cluster-ctl --host …/p2p/<id>
//! --secret …`). With an empty secret it is open, and without `basic_auth_credentials`
//! anyone who connects uses the REST API: both are logged loudly at start.
//! Each stream is served in this process by the same REST app (auth, CORS, limits, access
//! log naming the peer id) as the HTTP listeners, HTTP/1.1 with header deadlines
//! (`server::serve_libp2p`); at most [`MAX_STREAMS`] at once.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;

use futures::StreamExt;
use libp2p::{swarm::SwarmEvent, Multiaddr};
use tokio::sync::{watch, Semaphore};
use tokio_util::compat::FuturesAsyncReadCompatExt;

use crate::server::App;

pub const MAX_STREAMS: usize = 256;

/// What serves `/libp2p-http` streams that the transport tunnels from the cluster host
/// (`Gateway.Libp2pHttp`, grpc.rs): the REST app, in this process.
#[derive(Clone)]
pub struct Tunnel {
    pub app: Arc<App>,
    pub shutdown: watch::Receiver<bool>,
}

/// Serves one tunnelled stream: the bytes from `inbound` feed an in-memory connection
/// served by [`crate::server::serve_libp2p`] for `peer`; its answers come out as the
/// returned stream. Nothing listens on a socket for this. An error on `inbound` ends the
/// request side (as its end does); an error reading the answers ends the returned stream.
pub fn serve_tunnel<In, E>(
    tunnel: &Tunnel,
    peer: String,
    mut inbound: In,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<Bytes>>
where
    In: futures::Stream<Item = Result<Bytes, E>> + Unpin + Send + 'static,
    E: Send + 'static,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const BUF: usize = 64 << 10;
    let (ours, theirs) = tokio::io::duplex(BUF);
    let (mut rd, mut wr) = tokio::io::split(ours);
    tokio::spawn(async move {
        while let Some(Ok(chunk)) = inbound.next().await {
            if wr.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    });
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move {
        let mut buf = vec![0u8; BUF];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) => return,
                Ok(n) => {
                    if tx
                        .send(Ok(Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
    });
    tokio::spawn(crate::server::serve_libp2p(
        theirs,
        peer,
        tunnel.app.clone(),
        tunnel.shutdown.clone(),
    ));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

pub use crate::options::Libp2pOptions;

#[derive(Debug, thiserror::Error)]
pub enum Libp2pError {
    #[error("cannot build the REST API's libp2p host: {0}")]
    Build(String),
    #[error("cannot listen on {addr} for the REST API's libp2p endpoint: {reason} (change api.restapi.libp2p_listen_multiaddress)")]
    Listen { addr: Multiaddr, reason: String },
}

/// The loud start-up warning for how open the endpoint is, if it is.
fn exposure_warning(secret: bool, credentials: bool) -> Option<&'static str> {
    match (secret, credentials) {
        (true, true) => None,
        (true, false) => Some("SECURITY: the REST API's own libp2p endpoint (libp2p_listen_multiaddress) has no basic_auth_credentials: any holder of the cluster secret that reaches it can pin, unpin and remove peers; set basic_auth_credentials"),
        (false, true) => Some("SECURITY: the REST API's own libp2p endpoint (libp2p_listen_multiaddress) runs on an OPEN network (empty cluster.secret): anyone can connect and try credentials; set cluster.secret"),
        (false, false) => Some("SECURITY: the REST API's own libp2p endpoint (libp2p_listen_multiaddress) runs on an OPEN network (empty cluster.secret) and the REST API has no basic_auth_credentials: ANYONE who reaches it can pin, unpin and remove peers; set cluster.secret and basic_auth_credentials"),
    }
}

/// Starts the host and serves `/libp2p-http` until `shutdown` flips. Returns the listen
/// addresses (each ending in /p2p/<id>) and the task.
pub async fn start(
    opts: Libp2pOptions,
    app: Arc<App>,
    shutdown: watch::Receiver<bool>,
) -> Result<(Vec<Multiaddr>, tokio::task::JoinHandle<()>), Libp2pError> {
    let id = opts.keypair.public().to_peer_id();
    if let Some(w) = exposure_warning(opts.secret.is_some(), app.credentials.is_some()) {
        tracing::warn!(listen = ?opts.listen, "{w}");
    }
    let secret = opts.secret;
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(opts.keypair)
        .with_tokio()
        .with_other_transport(|key| {
            // TCP -> [pnet with the cluster secret] -> noise -> yamux, as the cluster host.
            ipfs_cluster_p2p::secured(ipfs_cluster_p2p::tcp(), key, secret, |s| s)
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
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
        .accept(ipfs_cluster_p2p::LIBP2P_HTTP)
        .map_err(|e| Libp2pError::Build(e.to_string()))?;
    let mut stop = shutdown.clone();
    let task = tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(MAX_STREAMS));
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
                        crate::server::serve_libp2p(stream.compat(), peer.to_string(), app, sd)
                            .await;
                    });
                }
            }
        }
    });
    Ok((shown, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A REST app whose backends point nowhere (GET /health needs none).
    fn tunnel(header_timeout: Duration) -> (Tunnel, watch::Sender<bool>) {
        let nowhere: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut rest = crate::HttpApiOptions::with_listen(nowhere);
        rest.read_header_timeout = header_timeout;
        let opts = crate::GatewayOptions {
            peername: "p".into(),
            rest: rest.clone(),
            pinsvc: None,
            transport_addr: nowhere,
            consensus_addr: nowhere,
            ipfs_connector_addr: nowhere,
            gateway_addr: nowhere,
            allow_remote_internal: false,
            replication_factor_min: -1,
            alert_check_interval: ipfs_cluster_runtime::monitor::DEFAULT_CHECK_INTERVAL,
            follower_mode: false,
        };
        let token = ipfs_cluster_proto::InternalToken::generate();
        let app = Arc::new(App::new(
            crate::server::ApiKind::Rest,
            rest,
            crate::backend::Backends::connect(&opts, &token),
            ipfs_cluster_runtime::access_log::AccessLog::tracing(
                ipfs_cluster_runtime::access_log::Endpoint::RestApi,
            ),
            Arc::default(),
            None,
        ));
        let (tx, rx) = watch::channel(false);
        (Tunnel { app, shutdown: rx }, tx)
    }

    /// Everything the tunnel answers until it closes (or 10 s pass).
    async fn answers(
        mut out: tokio_stream::wrappers::ReceiverStream<std::io::Result<Bytes>>,
    ) -> String {
        let mut text = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(Ok(b)) = out.next().await {
                text.extend_from_slice(&b);
            }
        })
        .await;
        String::from_utf8_lossy(&text).to_string()
    }

    #[tokio::test]
    async fn tunnelled_streams_are_served_in_process_with_deadlines() {
        let (t, _stop) = tunnel(Duration::from_millis(300));
        // A request is answered; the stream then stays open for the next one...
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
        tx.send(Ok(Bytes::from_static(
            b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        )))
        .await
        .unwrap();
        let started = std::time::Instant::now();
        let out = serve_tunnel(
            &t,
            "12D3KooWpeer".into(),
            tokio_stream::wrappers::ReceiverStream::new(rx),
        );
        let text = answers(out).await;
        assert!(text.starts_with("HTTP/1.1 204"), "{text:?}");
        // ... until it idles past the header deadline: then the stream is closed even
        // though the client keeps it open (tx is still alive here).
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "an idle stream was kept"
        );
        // A stream that never sends a byte is closed at the same deadline.
        let (tx2, rx2) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        let started = std::time::Instant::now();
        let out = serve_tunnel(
            &t,
            "12D3KooWpeer".into(),
            tokio_stream::wrappers::ReceiverStream::new(rx2),
        );
        let text = answers(out).await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a silent stream was kept: {text:?}"
        );
        drop((tx, tx2));
    }

    #[test]
    fn open_endpoints_are_reported() {
        assert_eq!(exposure_warning(true, true), None);
        for (secret, creds, words) in [
            (true, false, "basic_auth_credentials"),
            (false, true, "OPEN network"),
            (false, false, "ANYONE"),
        ] {
            let w = exposure_warning(secret, creds).expect("a warning");
            assert!(w.starts_with("SECURITY:") && w.contains(words), "{w}");
        }
    }
}
