//! The `ipfscluster.consensus.v1.Consensus` gRPC contract on a [`CrdtNode`]: the same calls
//! the gateway, the ipfs connector and the launcher use in raft mode. Differences:
//!
//! * Watch always starts with a full sync (SYNC_BEGIN, one PIN per pin, SYNC_END), then
//!   streams the store's change events; a watcher that falls behind gets a new full sync
//!   on the same stream. Indexes are increasing but are not log positions (see
//!   [`CrdtNode::next_index`]).
//! * Members: this peer, the peers with a live `peerset_metric` metric (voter = true), and
//!   connected peers this peer trusts whose first metric has not arrived yet (voter =
//!   false; the transport admits metrics only from members).
//! * Join, RemovePeer, Raft and Leader answer FAILED_PRECONDITION "not available in crdt
//!   mode: ...".
//! * Pin, Unpin and Import from another peer (a peer call) are refused unless that peer
//!   is in `consensus.crdt.trusted_peers`.

use ipfs_cluster_runtime::ServiceError;
use std::{pin::Pin as StdPin, sync::Arc};

use futures::Stream;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::{wrappers::ReceiverStream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use ipfs_cluster_crdt::{pin_cid_from_key, Change};
use ipfs_cluster_proto::{
    client::TransportClient,
    consensus::v1::{
        consensus_server::{Consensus, ConsensusServer},
        state_change::Kind,
        CrdtBlockRequest, CrdtBlockResponse, CrdtHeadsRequest, CrdtHeadsResponse, GetRequest,
        ImportResponse, JoinRequest, LeaderRequest, LeaderResponse, ListRequest, Member,
        MembersRequest, MembersResponse, PinRequest, PinResponse, RaftRequest, RaftResponse,
        RemovePeerRequest, StateChange, StatsRequest, StatsResponse, UnpinRequest, WatchRequest,
    },
    types::v1::{Empty, Pin, PinType},
    Caller,
};

use super::node::{decode_entry, store_status, CrdtNode};
use crate::pinning::normalize_cid;

type BoxStream<T> = StdPin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

const STREAM_BUFFER: usize = 256;
const IMPORT_CHUNK: usize = 256;

#[derive(Clone)]
pub struct CrdtConsensusService {
    pub node: Arc<CrdtNode>,
    /// To list connected peers for Members (None in tests).
    pub transport: Option<TransportClient>,
}

fn crdt_only(what: &str) -> Status {
    Status::failed_precondition(format!(
        "not available in crdt mode: {what} (this peer runs consensus.crdt, which has no leader and no raft membership; the peerset is the peers with a live ping metric)"
    ))
}

impl CrdtConsensusService {
    pub fn new(node: Arc<CrdtNode>, transport: Option<TransportClient>) -> Self {
        Self { node, transport }
    }

    pub fn into_server(self) -> ConsensusServer<Self> {
        ConsensusServer::new(self)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }

    fn list_stream(&self, filter: u32) -> BoxStream<Pin> {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let node = self.node.clone();
        tokio::spawn(async move {
            let mut after = None;
            loop {
                match node.page(after, filter).await {
                    Ok((pins, last)) => {
                        for p in pins {
                            if tx.send(Ok(p)).await.is_err() {
                                return;
                            }
                        }
                        match last {
                            Some(l) => after = Some(l),
                            None => return,
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                }
            }
        });
        Box::pin(ReceiverStream::new(rx))
    }
}

fn change(kind: Kind, index: u64, pin: Option<Pin>) -> StateChange {
    StateChange {
        kind: kind as i32,
        index,
        pin,
    }
}

/// Runs one watch stream until the client goes away.
async fn watch_task(node: Arc<CrdtNode>, tx: mpsc::Sender<Result<StateChange, Status>>) {
    loop {
        // Subscribe before reading, so that nothing falls in between; events that were
        // already in the list are applied again, which converges to the same state.
        let mut live = node.store.subscribe();
        let idx = node.next_index();
        if tx.send(Ok(change(Kind::SyncBegin, 0, None))).await.is_err() {
            return;
        }
        let mut after = None;
        loop {
            match node.page(after, 0).await {
                Ok((pins, last)) => {
                    for p in pins {
                        if tx.send(Ok(change(Kind::Pin, idx, Some(p)))).await.is_err() {
                            return;
                        }
                    }
                    match last {
                        Some(l) => after = Some(l),
                        None => break,
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
            }
        }
        if tx.send(Ok(change(Kind::SyncEnd, idx, None))).await.is_err() {
            return;
        }
        loop {
            let ch = match live.recv().await {
                Ok(Change::Put { key, value }) => match decode_entry(&key, &value) {
                    Some(p) => change(Kind::Pin, node.next_index(), Some(p)),
                    None => continue,
                },
                Ok(Change::Delete { key }) => match pin_cid_from_key(&key) {
                    Ok(cid) => change(
                        Kind::Unpin,
                        node.next_index(),
                        Some(Pin {
                            cid: cid.to_string(),
                            r#type: PinType::Data as i32,
                            max_depth: -1,
                            ..Default::default()
                        }),
                    ),
                    Err(_) => continue,
                },
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::info!(
                        missed = n,
                        "a watcher fell behind the crdt store's changes; sending it a full sync"
                    );
                    break;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    let _ = tx
                        .send(Err(Status::unavailable("consensus is shutting down")))
                        .await;
                    return;
                }
            };
            if tx.send(Ok(ch)).await.is_err() {
                return;
            }
        }
    }
}

#[tonic::async_trait]
impl Consensus for CrdtConsensusService {
    async fn pin(&self, req: Request<PinRequest>) -> Result<Response<PinResponse>, Status> {
        let caller = Caller::from_metadata(req.metadata());
        self.node.check_write(caller.peer())?;
        let pin = req
            .into_inner()
            .pin
            .ok_or_else(|| Status::invalid_argument("bad pin object: no pin given"))?;
        let pin = self.node.pin(pin).await?;
        Ok(Response::new(PinResponse { pin: Some(pin) }))
    }

    async fn unpin(&self, req: Request<UnpinRequest>) -> Result<Response<PinResponse>, Status> {
        let caller = Caller::from_metadata(req.metadata());
        self.node.check_write(caller.peer())?;
        let pin = self.node.unpin(&req.into_inner().cid).await?;
        Ok(Response::new(PinResponse { pin: Some(pin) }))
    }

    async fn get(&self, req: Request<GetRequest>) -> Result<Response<Pin>, Status> {
        let cid = normalize_cid(&req.into_inner().cid).map_err(|e| e.to_status())?;
        match self.node.get(&cid).await? {
            Some(p) => Ok(Response::new(p)),
            None => Err(Status::not_found("pin is not part of the pinset")),
        }
    }

    type ListStream = BoxStream<Pin>;
    async fn list(&self, req: Request<ListRequest>) -> Result<Response<Self::ListStream>, Status> {
        Ok(Response::new(
            self.list_stream(req.into_inner().type_filter),
        ))
    }

    type WatchStream = BoxStream<StateChange>;
    async fn watch(
        &self,
        _req: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(watch_task(self.node.clone(), tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn members(
        &self,
        _: Request<MembersRequest>,
    ) -> Result<Response<MembersResponse>, Status> {
        let peerset = self.node.peerset();
        let connected = match &self.transport {
            Some(t) => super::net::connected(t).await,
            None => Vec::new(),
        };
        let addrs_of = |p: &str| {
            connected
                .iter()
                .find(|(id, _)| id == p)
                .map(|(_, a)| a.clone())
                .unwrap_or_default()
        };
        let mut members: Vec<Member> = peerset
            .iter()
            // `voter`: a peer this one trusts (may write); followers are listed (they are
            // in the peerset and get allocations) but are not voters, so the transport
            // does not let them make trusted calls.
            .map(|p| Member {
                peer_id: p.clone(),
                addresses: addrs_of(p),
                voter: self.node.trusts(p),
            })
            .collect();
        for (p, a) in &connected {
            if !peerset.contains(p) && self.node.trusts(p) {
                members.push(Member {
                    peer_id: p.clone(),
                    addresses: a.clone(),
                    voter: true,
                });
            }
        }
        members.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        Ok(Response::new(MembersResponse { members }))
    }

    async fn leader(&self, _: Request<LeaderRequest>) -> Result<Response<LeaderResponse>, Status> {
        Err(crdt_only("Leader (crdt consensus has no leader)"))
    }

    async fn join(&self, _: Request<JoinRequest>) -> Result<Response<MembersResponse>, Status> {
        Err(crdt_only(
            "Join (a crdt peer joins by connecting: start it with --bootstrap <peer multiaddr> or list peers in cluster.peer_addresses)",
        ))
    }

    async fn remove_peer(&self, _: Request<RemovePeerRequest>) -> Result<Response<Empty>, Status> {
        Err(crdt_only(
            "RemovePeer (a crdt peer leaves the peerset when it stops; to stop trusting it remove it from consensus.crdt.trusted_peers)",
        ))
    }

    type ExportStream = BoxStream<Pin>;
    async fn export(
        &self,
        req: Request<ListRequest>,
    ) -> Result<Response<Self::ExportStream>, Status> {
        Ok(Response::new(
            self.list_stream(req.into_inner().type_filter),
        ))
    }

    async fn import(
        &self,
        req: Request<Streaming<Pin>>,
    ) -> Result<Response<ImportResponse>, Status> {
        let caller = Caller::from_metadata(req.metadata());
        self.node.check_write(caller.peer())?;
        let mut stream = req.into_inner();
        let mut pins = Vec::new();
        while let Some(pin) = stream.next().await {
            let mut pin = pin?;
            pin.cid = normalize_cid(&pin.cid).map_err(|e| {
                Status::invalid_argument(format!("import: pin #{}: {e}", pins.len() + 1))
            })?;
            if pin.r#type == PinType::Bad as i32 {
                pin.r#type = PinType::Data as i32;
            }
            pins.push(pin);
        }
        let imported = self.node.replace_all(pins, IMPORT_CHUNK).await?;
        Ok(Response::new(ImportResponse { imported }))
    }

    async fn raft(&self, _: Request<RaftRequest>) -> Result<Response<RaftResponse>, Status> {
        Err(crdt_only("Raft"))
    }

    async fn stats(&self, _: Request<StatsRequest>) -> Result<Response<StatsResponse>, Status> {
        let store = self.node.store.clone();
        let (height, pins) = tokio::task::spawn_blocking(move || {
            Ok::<_, ipfs_cluster_crdt::CrdtError>((store.max_height()?, store.len()?))
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(store_status)?;
        Ok(Response::new(StatsResponse {
            term: 0,
            // No log: the height of the DAG's highest head stands for both.
            commit_index: height,
            applied_index: height,
            leader: String::new(),
            pins,
        }))
    }

    async fn crdt_block(
        &self,
        req: Request<CrdtBlockRequest>,
    ) -> Result<Response<CrdtBlockResponse>, Status> {
        let s = req.into_inner().cid;
        let cid = cid::Cid::try_from(s.as_str())
            .map_err(|e| Status::invalid_argument(format!("CrdtBlock: {s:?} is not a CID: {e}")))?;
        let store = self.node.store.clone();
        match tokio::task::spawn_blocking(move || store.get_block(&cid))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(store_status)?
        {
            Some(data) => Ok(Response::new(CrdtBlockResponse { data })),
            None => Err(Status::not_found(format!(
                "crdt block {s} is not stored on this peer"
            ))),
        }
    }

    async fn crdt_heads(
        &self,
        _: Request<CrdtHeadsRequest>,
    ) -> Result<Response<CrdtHeadsResponse>, Status> {
        let store = self.node.store.clone();
        let heads = tokio::task::spawn_blocking(move || store.heads())
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(store_status)?;
        Ok(Response::new(CrdtHeadsResponse {
            heads: heads.into_iter().map(|(c, _)| c.to_string()).collect(),
        }))
    }
}
