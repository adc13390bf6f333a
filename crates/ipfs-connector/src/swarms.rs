//! ConnectSwarms: IPFS daemons of one cluster must be connected to each other, or content
//! added on one peer's daemon can never reach another's (a daemon without DHT, or behind a
//! NAT, finds no provider). Like upstream, `connect_swarms_delay` after start this peer
//! asks every other cluster member for its daemon's addresses (`IpfsConnector.IpfsId`
//! through the transport) and `swarm/connect`s its own daemon to each; errors are logged
//! and skipped. Upstream does this once; we repeat the round (every `delay`, at most
//! `MAX_ROUNDS` times) while no other member answered, so a peer whose join completes
//! after the first round (a `--bootstrap` joiner, a slow leader) still gets connected.

use std::time::Duration;

use ipfs_cluster_proto::{
    client::{ConsensusClient, TransportClient},
    consensus::v1::MembersRequest,
    ipfsconnector::v1::IpfsIdResponse,
    names::IPFS_CONNECTOR,
    transport::v1::PeerCallManyRequest,
    types::v1::Empty,
};
use prost::Message;
use tokio_util::sync::CancellationToken;

use crate::Kubo;

/// One `swarm/connect` (an unreachable address must not hold the round up).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// Rounds while no other member answers (a one-peer cluster stops asking after these).
const MAX_ROUNDS: u32 = 10;

/// What one round did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Round {
    /// Other members whose daemon addresses were learned.
    pub peers: usize,
    /// `swarm/connect` calls that succeeded.
    pub connected: usize,
}

/// Why a round could not ask the other members (retried next round).
#[derive(Debug, thiserror::Error)]
pub enum SwarmsError {
    #[error("asking consensus for the members: {} (is the consensus service running?)", .0.message())]
    Members(tonic::Status),
    #[error("asking the members for their IPFS ids: {} (is the transport service running?)", .0.message())]
    IpfsIds(tonic::Status),
}

/// Starts the background task; `delay` zero means never (upstream's "0 = off").
pub fn start(
    kubo: Kubo,
    consensus: ConsensusClient,
    transport: TransportClient,
    own_id: String,
    delay: Duration,
    shutdown: CancellationToken,
) {
    if delay.is_zero() {
        return;
    }
    tokio::spawn(async move {
        for _ in 0..MAX_ROUNDS {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            match connect_once(&kubo, &consensus, &transport, &own_id, delay).await {
                Ok(r) if r.peers > 0 => {
                    tracing::info!(
                        peers = r.peers,
                        connected = r.connected,
                        "connected the IPFS daemon to the other peers' daemons"
                    );
                    return;
                }
                Ok(_) => tracing::debug!("connect swarms: no other member answered yet"),
                Err(e) => tracing::warn!("connect swarms: {e}"),
            }
        }
    });
}

/// One round: members → their daemons' addresses → `swarm/connect` to each.
pub async fn connect_once(
    kubo: &Kubo,
    consensus: &ConsensusClient,
    transport: &TransportClient,
    own_id: &str,
    timeout: Duration,
) -> Result<Round, SwarmsError> {
    let members = consensus
        .clone()
        .members(MembersRequest {})
        .await
        .map_err(SwarmsError::Members)?
        .into_inner()
        .members;
    let peers: Vec<String> = members
        .into_iter()
        .map(|m| m.peer_id)
        .filter(|p| p != own_id)
        .collect();
    if peers.is_empty() {
        return Ok(Round::default());
    }
    let res = transport
        .clone()
        .call_many(PeerCallManyRequest {
            peers,
            service: IPFS_CONNECTOR.to_string(),
            method: "IpfsId".into(),
            payload: Empty {}.encode_to_vec(),
            timeout_ms: timeout.as_millis().clamp(1_000, 60_000) as u32,
        })
        .await
        .map_err(SwarmsError::IpfsIds)?
        .into_inner();
    let mut round = Round::default();
    for r in res.results {
        if r.code != 0 {
            tracing::debug!(peer = %r.peer, "connect swarms: IpfsId failed: {}", r.error);
            continue;
        }
        let id = match IpfsIdResponse::decode(r.payload.as_slice()) {
            Ok(id) if id.error.is_empty() => id,
            Ok(id) => {
                tracing::debug!(peer = %r.peer, "connect swarms: its IPFS daemon: {}", id.error);
                continue;
            }
            Err(e) => {
                tracing::debug!(peer = %r.peer, "connect swarms: undecodable IpfsId: {e}");
                continue;
            }
        };
        round.peers += 1;
        for addr in id.addresses {
            match tokio::time::timeout(CONNECT_TIMEOUT, kubo.swarm_connect(&addr)).await {
                Ok(Ok(())) => round.connected += 1,
                Ok(Err(e)) => tracing::debug!(peer = %r.peer, %addr, "swarm/connect failed: {e}"),
                Err(_) => tracing::debug!(peer = %r.peer, %addr, "swarm/connect timed out"),
            }
        }
    }
    Ok(round)
}
