//! The libp2p connection stack shared by every libp2p host of a cluster peer: the
//! transport service's cluster host, the gateway's own REST API host
//! (`libp2p_listen_multiaddress`) and `ipfs-cluster-ctl`'s throw-away client for
//! `--host …/p2p/<id>`. All three speak TCP -> [pnet keyed by the cluster secret] ->
//! multistream-select (lazy) -> noise -> yamux, as upstream's go-libp2p hosts, so one peer's
//! host can always talk to another's.
//!
//! A library of its own (only libp2p and futures) rather than a module of
//! `ipfs-cluster-runtime`: the ctl uses it too, and the ctl depends on the REST API types
//! only, not on the services' gRPC, config and metrics stack that the runtime brings.

use futures::{future::Either, AsyncRead, AsyncWrite};
use libp2p::{
    core::{
        muxing::StreamMuxerBox,
        transport::{Boxed, Transport},
        upgrade::Version,
    },
    identity::Keypair,
    noise,
    pnet::{PnetConfig, PnetError, PnetOutput, PreSharedKey},
    tcp, yamux, PeerId, StreamProtocol,
};

/// go-libp2p-http's stream protocol: the REST API over libp2p (served by the gateway,
/// tunnelled from the cluster host by the transport, opened by the ctl).
pub const LIBP2P_HTTP: StreamProtocol = StreamProtocol::new("/libp2p-http");

/// A connection after the private-network step: pnet-encrypted when the host has a
/// secret, the raw socket when it has none (an open network).
pub type Socket<S> = Either<PnetOutput<S>, S>;

/// TCP with Nagle off (peer calls are small request/answer messages).
pub fn tcp() -> tcp::tokio::Transport {
    tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
}

/// `base` -> [pnet with `secret`] -> `wrap` -> multistream-select (V1 lazy) -> noise (with
/// `key`) -> yamux, boxed. `secret` None is an open network (no pnet step). `wrap` sees
/// each connection's socket before the first protocol byte (the transport checks the
/// first bytes there); pass `|s| s` for nothing.
pub fn secured<T, W>(
    base: T,
    key: &Keypair,
    secret: Option<[u8; 32]>,
    wrap: impl Fn(Socket<T::Output>) -> W + Clone + Send + Sync + 'static,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, noise::Error>
where
    T: Transport + Send + Unpin + 'static,
    T::Output: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T::Error: Send + Sync + 'static,
    T::Dial: Send + 'static,
    T::ListenerUpgrade: Send + 'static,
    W: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let psk = secret.map(PreSharedKey::new);
    let noise = noise::Config::new(key)?;
    Ok(base
        .and_then(move |socket, _| async move {
            Ok::<_, PnetError>(match psk {
                Some(psk) => Either::Left(PnetConfig::new(psk).handshake(socket).await?),
                None => Either::Right(socket),
            })
        })
        .map(move |socket, _| wrap(socket))
        .upgrade(Version::V1Lazy)
        .authenticate(noise)
        .multiplex(yamux::Config::default())
        .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
        .boxed())
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use libp2p::{
        core::transport::{ListenerId, TransportEvent},
        Multiaddr,
    };

    use super::*;

    /// Listens on a free loopback port; returns the transport and the address.
    async fn listener(
        secret: Option<[u8; 32]>,
    ) -> (Boxed<(PeerId, StreamMuxerBox)>, Multiaddr, PeerId) {
        let key = Keypair::generate_ed25519();
        let id = key.public().to_peer_id();
        let mut t = secured(tcp(), &key, secret, |s| s).unwrap();
        t.listen_on(ListenerId::next(), "/ip4/127.0.0.1/tcp/0".parse().unwrap())
            .unwrap();
        let addr = loop {
            if let Some(TransportEvent::NewAddress { listen_addr, .. }) = t.next().await {
                break listen_addr;
            }
        };
        (t, addr, id)
    }

    /// Dials `addr` with `secret` while the listener accepts; the dialer's result.
    async fn dial(
        mut server: Boxed<(PeerId, StreamMuxerBox)>,
        addr: Multiaddr,
        secret: Option<[u8; 32]>,
    ) -> Result<PeerId, String> {
        let accept = tokio::spawn(async move {
            while let Some(ev) = server.next().await {
                if let TransportEvent::Incoming { upgrade, .. } = ev {
                    let _ = upgrade.await;
                    return;
                }
            }
        });
        let mut client = secured(tcp(), &Keypair::generate_ed25519(), secret, |s| s).unwrap();
        let opts = libp2p::core::transport::DialOpts {
            role: libp2p::core::Endpoint::Dialer,
            port_use: libp2p::core::transport::PortUse::New,
        };
        let out = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            client.dial(addr, opts).unwrap(),
        )
        .await
        .map_err(|_| "timeout".to_string())
        .and_then(|r| r.map(|(p, _)| p).map_err(|e| e.to_string()));
        accept.abort();
        out
    }

    #[tokio::test]
    async fn same_secret_connects_and_learns_the_peer_id() {
        let s = Some([7u8; 32]);
        let (t, addr, id) = listener(s).await;
        assert_eq!(dial(t, addr, s).await, Ok(id));
    }

    #[tokio::test]
    async fn open_network_connects() {
        let (t, addr, id) = listener(None).await;
        assert_eq!(dial(t, addr, None).await, Ok(id));
    }

    #[tokio::test]
    async fn another_secret_does_not_connect() {
        let (t, addr, _) = listener(Some([7u8; 32])).await;
        assert!(dial(t, addr, Some([8u8; 32])).await.is_err());
    }
}
