//! libp2p-http for `--host …/p2p/<id>`, as upstream's client (go-libp2p-http): the ctl
//! starts a throw-away libp2p host (TCP, pnet with `--secret` when given, noise, yamux),
//! dials the cluster peer once and opens one `/libp2p-http` stream per request, on which
//! the ordinary HTTP/1.1 exchange runs. `/dns*` names are resolved here (the host has no
//! DNS transport).

use std::time::Duration;

use futures::StreamExt;
use ipfs_cluster_p2p::LIBP2P_HTTP;
use libp2p::{
    swarm::{dial_opts::DialOpts, SwarmEvent},
    Multiaddr, PeerId,
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt};

const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

pub type P2pStream = Compat<libp2p::Stream>;

/// Why the libp2p client could not reach the peer or open a stream to it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum P2pError {
    #[error("invalid peer id {peer}: {error}")]
    InvalidPeerId { peer: String, error: String },
    #[error("lookup {name}: {error}")]
    Lookup { name: String, error: String },
    #[error("lookup {0}: no such host")]
    NoSuchHost(String),
    #[error("cannot build the libp2p client: {0}")]
    Build(String),
    /// The dial failed (`why`: libp2p's error, or that nothing answered in time).
    #[error("failed to dial {peer}: {why}")]
    Dial { peer: PeerId, why: String },
    #[error("opening a {proto} stream to {0} timed out", proto = LIBP2P_HTTP)]
    OpenTimeout(PeerId),
    #[error("cannot open a {proto} stream to {peer}: {error}", proto = LIBP2P_HTTP)]
    Open { peer: PeerId, error: String },
}

/// A connected libp2p client for one peer.
pub struct P2pClient {
    control: libp2p_stream::Control,
    peer: PeerId,
    /// Keeps the swarm task alive; dropping the client stops it.
    _stop: oneshot::Sender<()>,
}

/// `/dns*/name/...` → `/ip4|ip6/addr/...` (first answer).
async fn resolve(addr: &Multiaddr) -> Result<Multiaddr, P2pError> {
    use libp2p::multiaddr::Protocol;
    let mut out = Multiaddr::empty();
    let mut port = 0;
    for p in addr.iter() {
        if let Protocol::Tcp(t) = p {
            port = t;
        }
    }
    for p in addr.iter() {
        match p {
            Protocol::Dns(_) | Protocol::Dns4(_) | Protocol::Dns6(_) => {
                let want_v6 = matches!(p, Protocol::Dns6(_));
                let want_v4 = matches!(p, Protocol::Dns4(_));
                let (Protocol::Dns(n) | Protocol::Dns4(n) | Protocol::Dns6(n)) = p else {
                    unreachable!("matched above")
                };
                let ip = tokio::net::lookup_host((n.as_ref(), port))
                    .await
                    .map_err(|e| P2pError::Lookup {
                        name: n.to_string(),
                        error: e.to_string(),
                    })?
                    .map(|s| s.ip())
                    .find(|ip| (!want_v4 || ip.is_ipv4()) && (!want_v6 || ip.is_ipv6()))
                    .ok_or_else(|| P2pError::NoSuchHost(n.to_string()))?;
                out.push(match ip {
                    std::net::IpAddr::V4(a) => Protocol::Ip4(a),
                    std::net::IpAddr::V6(a) => Protocol::Ip6(a),
                });
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

impl P2pClient {
    /// Dials `peer` at `addr` (without the /p2p part) and waits for the connection.
    pub async fn connect(
        addr: &Multiaddr,
        peer: PeerId,
        secret: Option<[u8; 32]>,
    ) -> Result<P2pClient, P2pError> {
        let addr = resolve(addr).await?;
        let mut swarm = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_other_transport(|key| {
                ipfs_cluster_p2p::secured(ipfs_cluster_p2p::tcp(), key, secret, |s| s)
                    .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
            })
            .map_err(|e| P2pError::Build(e.to_string()))?
            .with_behaviour(|_| libp2p_stream::Behaviour::new())
            .map_err(|e| P2pError::Build(e.to_string()))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .with_connection_timeout(DIAL_TIMEOUT)
            .build();
        let control = swarm.behaviour().new_control();
        swarm
            .dial(DialOpts::peer_id(peer).addresses(vec![addr]).build())
            .map_err(|e| P2pError::Dial {
                peer,
                why: e.to_string(),
            })?;
        let (conn_tx, mut conn_rx) = mpsc::channel::<Result<(), P2pError>>(1);
        let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stop_rx => return,
                    ev = swarm.select_next_some() => match ev {
                        SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == peer => {
                            let _ = conn_tx.try_send(Ok(()));
                        }
                        SwarmEvent::OutgoingConnectionError { error, .. } => {
                            let _ = conn_tx.try_send(Err(P2pError::Dial {
                                peer,
                                why: error.to_string(),
                            }));
                        }
                        _ => {}
                    },
                }
            }
        });
        match tokio::time::timeout(DIAL_TIMEOUT + Duration::from_secs(1), conn_rx.recv()).await {
            Ok(Some(Ok(()))) => Ok(P2pClient {
                control,
                peer,
                _stop: stop_tx,
            }),
            Ok(Some(Err(e))) => Err(e),
            Ok(None) => Err(P2pError::Dial {
                peer,
                why: "the libp2p client stopped".into(),
            }),
            Err(_) => Err(P2pError::Dial {
                peer,
                why: format!("no connection within {DIAL_TIMEOUT:?} (wrong --secret?)"),
            }),
        }
    }

    /// A new `/libp2p-http` stream to the peer.
    pub async fn open(&self) -> Result<P2pStream, P2pError> {
        let mut c = self.control.clone();
        let s = tokio::time::timeout(DIAL_TIMEOUT, c.open_stream(self.peer, LIBP2P_HTTP))
            .await
            .map_err(|_| P2pError::OpenTimeout(self.peer))?
            .map_err(|e| P2pError::Open {
                peer: self.peer,
                error: e.to_string(),
            })?;
        Ok(s.compat())
    }
}
