//! The REST API's libp2p endpoint over the cluster host, as upstream's go-libp2p-http: a
//! peer (or `ipfs-cluster-ctl --host …/p2p/<id> --secret …`) opens a stream with protocol
//! `/libp2p-http` and speaks plain HTTP/1.1 on it. Upstream lets every holder of the
//! cluster secret in; here a stream from a peer that is not a cluster member is refused
//! unless the REST API checks credentials (`basic_auth_credentials`), which then apply to
//! each request: holding the secret alone does not open the REST API. Each stream is
//! carried over the gateway's internal gRPC (`Gateway.Libp2pHttp`, with the caller's peer
//! id in `x-ipfs-cluster-peer`) and served there in-process, so the gateway opens no
//! listener that service.json does not declare. The pump is bounded (concurrent
//! tunnels, buffer size) and an idle tunnel is closed.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use futures::StreamExt;
use ipfs_cluster_p2p::LIBP2P_HTTP;
use ipfs_cluster_proto::{
    client::GatewayClient,
    gateway::v1::{InfoRequest, InfoResponse, TunnelData},
    names,
};
use libp2p::PeerId;
use prost::Message;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    sync::Semaphore,
};
use tokio_util::compat::FuturesAsyncReadCompatExt;

use crate::{local::LocalServices, trust::Trust};

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
    gateway: Option<GatewayClient>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut incoming = match control.accept(LIBP2P_HTTP) {
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
            let Some(gateway) = gateway.clone() else {
                tracing::info!(%peer, "/libp2p-http stream closed: this peer runs no gateway (REST API)");
                continue;
            };
            tokio::spawn(async move {
                let _slot = slot;
                let auth = match gateway_auth(&local).await {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::info!(%peer, error = %e, "/libp2p-http stream closed");
                        return;
                    }
                };
                if !auth && !trust.is_member(&peer).await.unwrap_or(false) {
                    tracing::warn!(%peer, "/libp2p-http stream refused: the peer is not a cluster member and the REST API has no basic_auth_credentials (holding the cluster secret is not enough)");
                    return;
                }
                if let Err(e) = pump(peer, stream.compat(), gateway).await {
                    tracing::debug!(%peer, error = %e, "/libp2p-http tunnel ended with an error");
                }
            });
        }
    })
}

/// Why a `/libp2p-http` stream was closed before its tunnel opened.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error("the local gateway (REST API) did not answer Gateway.Info: {0} (is the gateway service running on this peer?)")]
    NoGateway(String),
    #[error("the local gateway sent a malformed Gateway.Info: {0}")]
    Malformed(#[source] prost::DecodeError),
}

/// Whether the local gateway's REST API checks credentials (`Gateway.Info`); an error
/// when no gateway answers (then the stream is closed).
async fn gateway_auth(local: &LocalServices) -> Result<bool, TunnelError> {
    let raw = local
        .unary(
            names::GATEWAY,
            "Info",
            Bytes::from(InfoRequest {}.encode_to_vec()),
            CONNECT_TIMEOUT,
        )
        .await
        .map_err(|e| TunnelError::NoGateway(e.message().to_string()))?;
    let info = InfoResponse::decode(raw).map_err(TunnelError::Malformed)?;
    Ok(info.rest_auth_required)
}

/// Carries `stream` to the gateway's `Libp2pHttp` and the answers back, until both sides
/// finish or the tunnel is idle for [`IDLE_TIMEOUT`].
pub async fn pump<S>(peer: PeerId, stream: S, mut gateway: GatewayClient) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sr, mut sw) = tokio::io::split(stream);
    let (tx, rx) = tokio::sync::mpsc::channel::<TunnelData>(8);
    let up = tokio::spawn(async move {
        let mut buf = vec![0u8; BUF];
        loop {
            let n = match tokio::time::timeout(IDLE_TIMEOUT, sr.read(&mut buf)).await {
                Ok(Ok(n)) => n,
                _ => return,
            };
            if n == 0
                || tx
                    .send(TunnelData {
                        data: buf[..n].to_vec(),
                    })
                    .await
                    .is_err()
            {
                return;
            }
        }
    });
    let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    if let Ok(v) = peer.to_string().parse() {
        req.metadata_mut()
            .insert(ipfs_cluster_proto::caller::PEER_HEADER, v);
    }
    let res = async {
        let mut answers = gateway
            .libp2p_http(req)
            .await
            .map_err(|e| std::io::Error::other(format!("Gateway.Libp2pHttp: {}", e.message())))?
            .into_inner();
        tracing::debug!(%peer, "/libp2p-http tunnel open");
        loop {
            let next = tokio::time::timeout(IDLE_TIMEOUT, answers.message())
                .await
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "tunnel idle"))?
                .map_err(|e| std::io::Error::other(e.message().to_string()))?;
            let Some(m) = next else { break };
            tokio::time::timeout(IDLE_TIMEOUT, sw.write_all(&m.data))
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "tunnel stalled")
                })??;
            sw.flush().await?;
        }
        let _ = sw.shutdown().await;
        Ok(())
    }
    .await;
    up.abort();
    res
}
