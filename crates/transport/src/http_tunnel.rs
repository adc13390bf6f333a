//! The REST API's libp2p endpoint over the cluster host, as upstream's go-libp2p-http: a
//! peer (or `ipfs-cluster-ctl --host …/p2p/<id> --secret …`) opens a stream with protocol
//! `/libp2p-http` and speaks plain HTTP/1.1 on it. Upstream lets every holder of the
//! cluster secret in; here a stream from a peer that is not a cluster member is refused
//! unless the REST API checks credentials (`basic_auth_credentials`), which then apply to
//! each request: holding the secret alone does not open the REST API. Each
//! stream is piped byte for byte to the gateway's loopback tunnel listener (asked from
//! `Gateway.Info`; none when the REST API is off, then the stream is closed). The pump is
//! bounded (concurrent tunnels, buffer size) and an idle tunnel is closed.
//! [`pump`] is public so the gateway's own libp2p host reuses it.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use futures::StreamExt;
use ipfs_cluster_proto::{
    gateway::v1::{InfoRequest, InfoResponse},
    names,
};
use libp2p::{PeerId, StreamProtocol};
use prost::Message;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
    sync::Semaphore,
};
use tokio_util::compat::FuturesAsyncReadCompatExt;

use crate::{local::LocalServices, trust::Trust};

/// go-libp2p-http's protocol id.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/libp2p-http");
/// Concurrent tunnels; more are refused (the stream is closed at once).
pub const MAX_TUNNELS: usize = 128;
/// A tunnel with no byte in either direction for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const BUF: usize = 64 * 1024;

/// Accepts `/libp2p-http` streams on the cluster host until the host stops.
pub fn spawn(
    mut control: libp2p_stream::Control,
    local: Arc<LocalServices>,
    trust: Arc<Trust>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut incoming = match control.accept(PROTOCOL) {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(error = %e, "cannot serve /libp2p-http on the cluster host");
                return;
            }
        };
        tracing::info!("RESTAPI (libp2p-http): ENABLED over the cluster host (cluster members; other holders of the cluster secret only when the REST API has basic_auth_credentials)");
        let slots = Arc::new(Semaphore::new(MAX_TUNNELS));
        while let Some((peer, stream)) = incoming.next().await {
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::warn!(%peer, limit = MAX_TUNNELS, "/libp2p-http stream refused: too many open tunnels");
                continue;
            };
            let local = local.clone();
            let trust = trust.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let (target, auth) = match gateway_target(&local).await {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::info!(%peer, error = %e, "/libp2p-http stream closed");
                        return;
                    }
                };
                if !auth && !trust.is_member(&peer).await.unwrap_or(false) {
                    tracing::warn!(%peer, "/libp2p-http stream refused: the peer is not a cluster member and the REST API has no basic_auth_credentials (holding the cluster secret is not enough)");
                    return;
                }
                if let Err(e) = pump(peer, stream.compat(), target).await {
                    tracing::debug!(%peer, error = %e, "/libp2p-http tunnel ended with an error");
                }
            });
        }
    })
}

/// Where the gateway wants tunnelled HTTP (its `Gateway.Info` `libp2p_http_target`), and
/// whether its REST API checks credentials.
async fn gateway_target(local: &LocalServices) -> Result<(SocketAddr, bool), String> {
    let raw = local
        .unary(
            names::GATEWAY,
            "Info",
            Bytes::from(InfoRequest {}.encode_to_vec()),
            CONNECT_TIMEOUT,
        )
        .await
        .map_err(|e| {
            format!(
                "the local gateway did not answer Gateway.Info: {}",
                e.message()
            )
        })?;
    let info = InfoResponse::decode(raw)
        .map_err(|e| format!("the local gateway sent a malformed Gateway.Info: {e}"))?;
    if info.libp2p_http_target.is_empty() {
        return Err("the REST API (api.restapi) is not enabled on this peer".into());
    }
    let target = info
        .libp2p_http_target
        .parse()
        .map_err(|e| format!("bad libp2p_http_target {:?}: {e}", info.libp2p_http_target))?;
    Ok((target, info.rest_auth_required))
}

/// Pipes `stream` to a TCP connection to `target` and back until both sides finish or
/// the tunnel is idle for [`IDLE_TIMEOUT`].
pub async fn pump<S>(peer: PeerId, stream: S, target: SocketAddr) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target))
        .await
        .map_err(|_| std::io::Error::other(format!("connecting to {target} timed out")))??;
    tcp.set_nodelay(true)?;
    tracing::debug!(%peer, %target, "/libp2p-http tunnel open");
    let (sr, sw) = tokio::io::split(stream);
    let (tr, tw) = tcp.into_split();
    let up = copy_idle(sr, tw);
    let down = copy_idle(tr, sw);
    let (a, b) = tokio::join!(up, down);
    a.and(b)
}

async fn copy_idle<R, W>(mut r: R, mut w: W) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUF];
    loop {
        let n = tokio::time::timeout(IDLE_TIMEOUT, r.read(&mut buf))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "tunnel idle"))??;
        if n == 0 {
            let _ = w.shutdown().await;
            return Ok(());
        }
        tokio::time::timeout(IDLE_TIMEOUT, w.write_all(&buf[..n]))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "tunnel stalled"))??;
        w.flush().await?;
    }
}
