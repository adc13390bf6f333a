//! Raft RPCs between consensus services. In production they travel as transport peer calls
//! (`Transport.Call{peer, service: Consensus, method: "Raft", payload: RaftRequest}`); the
//! `RaftCarrier` trait lets tests use an in-process router instead. Bodies are the JSON
//! (serde) encoding of openraft's messages; responses carry `Result<Resp, RaftError>`.

use std::{sync::Arc, time::Duration};

use futures::future::BoxFuture;
use openraft::{
    error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable},
    network::{RPCOption, RaftNetwork, RaftNetworkFactory},
    raft::{
        AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest,
        InstallSnapshotResponse, VoteRequest, VoteResponse,
    },
};
use prost::Message;
use serde::{de::DeserializeOwned, Serialize};

use super::{
    command::TypeConfig,
    ids::{NodeId, PeerNode},
};
use crate::error::ConsensusError as Error;
use ipfs_cluster_proto::{
    client::TransportClient,
    consensus::v1::{raft_request::Kind, RaftRequest, RaftResponse},
    names,
    transport::v1::{DialRequest, PeerCallRequest},
};

/// Delivers a call to the consensus service of another peer.
pub trait RaftCarrier: Send + Sync + 'static {
    /// Calls `method` ("Raft", "Join", ...) with a protobuf-encoded request on `peer`'s
    /// consensus service; returns the protobuf-encoded response.
    fn call(
        &self,
        peer: &str,
        method: &'static str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>, Error>>;

    /// Connects to a peer at `multiaddr` so later calls can reach it before it is a member
    /// (its addresses are dial hints only once it is in the membership). The in-process
    /// router is always connected.
    fn dial(&self, _multiaddr: &str, _timeout: Duration) -> BoxFuture<'static, Result<(), Error>> {
        Box::pin(async { Ok(()) })
    }
}

/// The production carrier: the local transport service's peer calls.
pub struct TransportCarrier {
    pub client: TransportClient,
}

impl RaftCarrier for TransportCarrier {
    fn call(
        &self,
        peer: &str,
        method: &'static str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>, Error>> {
        let mut client = self.client.clone();
        let req = PeerCallRequest {
            peer: peer.to_string(),
            service: names::CONSENSUS.to_string(),
            method: method.to_string(),
            payload,
            timeout_ms: timeout.as_millis().min(u32::MAX as u128) as u32,
        };
        Box::pin(async move {
            let mut r = tonic::Request::new(req);
            r.set_timeout(timeout + Duration::from_secs(1));
            Ok(client.call(r).await?.into_inner().payload)
        })
    }

    fn dial(&self, multiaddr: &str, timeout: Duration) -> BoxFuture<'static, Result<(), Error>> {
        let mut client = self.client.clone();
        let mut r = tonic::Request::new(DialRequest {
            multiaddr: multiaddr.to_string(),
        });
        r.set_timeout(timeout);
        Box::pin(async move { client.dial(r).await.map(|_| ()).map_err(Error::from) })
    }
}

/// Sends one raft message and decodes `Result<Resp, E>` from the answer.
pub async fn raft_call<Req: Serialize, Resp: DeserializeOwned, E: DeserializeOwned>(
    carrier: &dyn RaftCarrier,
    peer: &str,
    kind: Kind,
    req: &Req,
    timeout: Duration,
) -> Result<Result<Resp, E>, Error> {
    let body = serde_json::to_vec(req)
        .map_err(|e| Error::internal(format!("encoding raft message: {e}")))?;
    let payload = RaftRequest {
        kind: kind as i32,
        body,
    }
    .encode_to_vec();
    let out = carrier.call(peer, "Raft", payload, timeout).await?;
    decode_raft_response(peer, &out)
}

/// Decodes another peer's answer to a raft call: a protobuf `RaftResponse` whose body is
/// the JSON of `Result<Resp, E>`. Fed by other peers (fuzzed by tests/fuzz `raft_forward`).
pub fn decode_raft_response<Resp: DeserializeOwned, E: DeserializeOwned>(
    peer: &str,
    out: &[u8],
) -> Result<Result<Resp, E>, Error> {
    let resp = RaftResponse::decode(out)
        .map_err(|e| Error::internal(format!("decoding raft response from {peer}: {e}")))?;
    serde_json::from_slice(&resp.body)
        .map_err(|e| Error::internal(format!("decoding raft response body from {peer}: {e}")))
}

pub struct Network {
    pub carrier: Arc<dyn RaftCarrier>,
    pub timeout: Duration,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Conn;
    async fn new_client(&mut self, _target: NodeId, node: &PeerNode) -> Conn {
        Conn {
            carrier: self.carrier.clone(),
            peer: node.peer_id.clone(),
            timeout: self.timeout,
        }
    }
}

pub struct Conn {
    carrier: Arc<dyn RaftCarrier>,
    peer: String,
    timeout: Duration,
}

fn status_to_rpc<E: std::error::Error>(peer: &str, s: Error) -> RPCError<NodeId, PeerNode, E> {
    let err = std::io::Error::other(format!("raft call to {peer}: {}", s.message()));
    match s.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::NotFound => {
            RPCError::Unreachable(Unreachable::new(&err))
        }
        _ => RPCError::Network(NetworkError::new(&err)),
    }
}

impl Conn {
    async fn send<Req: Serialize, Resp: DeserializeOwned, E>(
        &self,
        kind: Kind,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, PeerNode, RaftError<NodeId, E>>>
    where
        E: std::error::Error + DeserializeOwned,
    {
        let timeout = option
            .hard_ttl()
            .min(self.timeout)
            .max(Duration::from_millis(50));
        let started = std::time::Instant::now();
        let res = raft_call::<Req, Resp, RaftError<NodeId, E>>(
            &*self.carrier,
            &self.peer,
            kind,
            req,
            timeout,
        )
        .await;
        tracing::debug!(
            ?kind,
            peer = %self.peer,
            ms = started.elapsed().as_secs_f64() * 1e3,
            "raft call answered"
        );
        match res {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(
                crate::raft::ids::node_id(&self.peer),
                e,
            ))),
            Err(s) => Err(status_to_rpc(&self.peer, s)),
        }
    }
}

impl RaftNetwork<TypeConfig> for Conn {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, PeerNode, RaftError<NodeId>>> {
        self.send(Kind::AppendEntries, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, PeerNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.send(Kind::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, PeerNode, RaftError<NodeId>>> {
        self.send(Kind::Vote, &rpc, &option).await
    }
}
