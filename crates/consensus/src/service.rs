//! The `ipfscluster.consensus.v1.Consensus` gRPC service over a running `Node`.
//!
//! Watch guarantees: every change applied after `from_index` is delivered exactly once and
//! in log order, each with its raft index; when the log no longer holds `from_index + 1`
//! (or `from_index` is 0, or the state was replaced by a snapshot install or an import) the
//! stream starts with SYNC_BEGIN, one PIN per pin, SYNC_END{index} from one consistent
//! read. Watchers never slow raft down: a watcher more than `store::WATCH_BUFFER` changes
//! behind gets RESOURCE_EXHAUSTED and must reconnect with the last index it processed.

use ipfs_cluster_runtime::ServiceError;
use std::{pin::Pin as StdPin, sync::Arc};

use futures::Stream;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::{wrappers::ReceiverStream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::{
    node::{Forward, Node},
    pinning::{normalize_cid, type_matches},
    raft::{
        command::{PinBytes, PinOp},
        ids::PeerNode,
        store::{Store, SyncItem},
    },
};
use ipfs_cluster_proto::{
    consensus::v1::{
        consensus_server::{Consensus, ConsensusServer},
        state_change::Kind,
        GetRequest, ImportResponse, JoinRequest, LeaderRequest, LeaderResponse, ListRequest,
        MembersRequest, MembersResponse, PinRequest, PinResponse, RaftRequest, RaftResponse,
        RemovePeerRequest, StateChange, StatsRequest, StatsResponse, UnpinRequest, WatchRequest,
    },
    types::v1::{Empty, Pin, PinType},
};

type BoxStream<T> = StdPin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

const STREAM_BUFFER: usize = 256;
/// Pins per store → gRPC hand-off when listing, and how many such chunks may wait.
const LIST_CHUNK: usize = 512;
const LIST_CHUNKS_BUFFERED: usize = 4;
const IMPORT_BATCH: usize = 256;

#[derive(Clone)]
pub struct ConsensusService {
    pub node: Arc<Node>,
}

impl ConsensusService {
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }

    pub fn into_server(self) -> ConsensusServer<Self> {
        ConsensusServer::new(self)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }

    /// The pinset as a gRPC stream (List, Export). Pins come from the store in chunks, so
    /// tonic's encoder finds many ready at once and packs them into ~32 KiB writes.
    fn list_stream(&self, filter: u32) -> BoxStream<Pin> {
        let rx = self
            .node
            .store
            .list_chunks(filter, LIST_CHUNK, LIST_CHUNKS_BUFFERED);
        Box::pin(futures::StreamExt::flat_map(ReceiverStream::new(rx), |r| {
            let items: Vec<Result<Pin, Status>> = match r {
                Ok(pins) => pins.into_iter().map(Ok).collect(),
                Err(e) => vec![Err(Status::internal(e.to_string()))],
            };
            futures::stream::iter(items)
        }))
    }
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

async fn send(tx: &mpsc::Sender<Result<StateChange, Status>>, ch: StateChange) -> Result<(), ()> {
    tx.send(Ok(ch)).await.map_err(|_| ())
}

/// The state machine apply is not fsync'd (`raft::storage`): after a crash the applied index
/// can be behind entries that are in this peer's durable log, and that a watcher (the ipfs
/// connector) already processed. A watcher resuming from such an index waits (bounded by
/// `within`) until raft has re-applied it, instead of getting a full sync from the older
/// state (which would briefly look like unpins of everything applied since). An index past
/// our log (a wiped store) still gets the full sync at once.
async fn wait_applied(
    mut metrics: tokio::sync::watch::Receiver<
        openraft::RaftMetrics<crate::raft::ids::NodeId, PeerNode>,
    >,
    from: u64,
    within: std::time::Duration,
) {
    let applied_of = |m: &openraft::RaftMetrics<crate::raft::ids::NodeId, PeerNode>| {
        m.last_applied.map_or(0, |l| l.index)
    };
    let (applied, last_log) = {
        let m = metrics.borrow();
        (applied_of(&m), m.last_log_index.unwrap_or(0))
    };
    if from == 0 || from <= applied || from > last_log {
        return;
    }
    tracing::info!(
        from,
        applied,
        "a watcher resumes past the applied index (re-applying the log after a restart); waiting for raft"
    );
    let caught_up = tokio::time::timeout(within, metrics.wait_for(|m| applied_of(m) >= from)).await;
    if !matches!(caught_up, Ok(Ok(_))) {
        tracing::warn!(
            from,
            "raft did not re-apply the log up to a watcher's index in time; it gets a full sync"
        );
    }
}

/// Runs one watch stream; Err(()) means the client went away.
async fn watch_task(
    store: Store,
    from: u64,
    mut live: broadcast::Receiver<Arc<StateChange>>,
    tx: mpsc::Sender<Result<StateChange, Status>>,
) -> Result<(), ()> {
    let mut synced_upto = 0u64;
    let mut need_sync = from == 0;
    if !need_sync {
        let mut r = store.replay(from, STREAM_BUFFER);
        while let Some(item) = r.recv().await {
            match item {
                Err(e) => return tx.send(Err(internal(e))).await.map_err(|_| ()),
                Ok(None) => {
                    need_sync = true;
                    break;
                }
                Ok(Some(ch)) if ch.kind == Kind::Unspecified as i32 => synced_upto = ch.index,
                Ok(Some(ch)) if ch.kind == Kind::SyncBegin as i32 => {
                    need_sync = true;
                    break;
                }
                Ok(Some(ch)) => send(&tx, ch).await?,
            }
        }
    }
    if need_sync {
        send(
            &tx,
            StateChange {
                kind: Kind::SyncBegin as i32,
                index: 0,
                pin: None,
            },
        )
        .await?;
        let mut r = store.sync_view(STREAM_BUFFER);
        while let Some(item) = r.recv().await {
            match item {
                Err(e) => return tx.send(Err(internal(e))).await.map_err(|_| ()),
                Ok(SyncItem::Index(i)) => synced_upto = i,
                Ok(SyncItem::Pin(p)) => {
                    send(
                        &tx,
                        StateChange {
                            kind: Kind::Pin as i32,
                            index: synced_upto,
                            pin: Some(*p),
                        },
                    )
                    .await?
                }
            }
        }
        send(
            &tx,
            StateChange {
                kind: Kind::SyncEnd as i32,
                index: synced_upto,
                pin: None,
            },
        )
        .await?;
    }
    let mut last_sent = synced_upto;
    loop {
        match live.recv().await {
            Ok(ch) => {
                if ch.index <= synced_upto {
                    continue;
                }
                if ch.kind == Kind::SyncBegin as i32 {
                    let _ = tx
                        .send(Err(Status::aborted(format!(
                            "the state was replaced at index {} (snapshot install or import); reconnect to resync",
                            ch.index
                        ))))
                        .await;
                    return Ok(());
                }
                last_sent = ch.index;
                send(&tx, (*ch).clone()).await?;
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                let _ = tx
                    .send(Err(Status::resource_exhausted(format!(
                        "watcher fell {n} changes behind; reconnect with from_index={}",
                        last_sent.saturating_sub(1)
                    ))))
                    .await;
                return Ok(());
            }
            Err(broadcast::error::RecvError::Closed) => {
                let _ = tx
                    .send(Err(Status::unavailable("consensus is shutting down")))
                    .await;
                return Ok(());
            }
        }
    }
}

#[tonic::async_trait]
impl Consensus for ConsensusService {
    async fn pin(&self, req: Request<PinRequest>) -> Result<Response<PinResponse>, Status> {
        let pin = req
            .into_inner()
            .pin
            .ok_or_else(|| Status::invalid_argument("bad pin object: no pin given"))?;
        let pin = self.node.pin(pin).await?;
        Ok(Response::new(PinResponse { pin: Some(pin) }))
    }

    async fn unpin(&self, req: Request<UnpinRequest>) -> Result<Response<PinResponse>, Status> {
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
        req: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let from = req.into_inner().from_index;
        let store = self.node.store.clone();
        let metrics = self.node.raft.metrics();
        let within = self.node.opts.wait_for_leader_timeout + self.node.opts.network_timeout;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(async move {
            wait_applied(metrics, from, within).await;
            let live = store.subscribe(); // before any read, so nothing falls in between
            let _ = watch_task(store, from, live, tx).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn members(
        &self,
        _: Request<MembersRequest>,
    ) -> Result<Response<MembersResponse>, Status> {
        Ok(Response::new(MembersResponse {
            members: self.node.members(),
        }))
    }

    async fn leader(&self, _: Request<LeaderRequest>) -> Result<Response<LeaderResponse>, Status> {
        match self.node.leader() {
            Some(peer_id) => Ok(Response::new(LeaderResponse { peer_id })),
            None => Err(Status::unavailable("no raft leader at the moment")),
        }
    }

    async fn join(&self, req: Request<JoinRequest>) -> Result<Response<MembersResponse>, Status> {
        let caller = ipfs_cluster_proto::Caller::from_metadata(req.metadata());
        let r = req.into_inner();
        if r.peer_id.is_empty() {
            return Err(Status::invalid_argument("join: peer_id is empty"));
        }
        // Another peer may only ask to add itself (its id as the transport verified it).
        if let Some(p) = caller.peer() {
            if p != r.peer_id {
                return Err(Status::permission_denied(format!(
                    "join: peer {p} asked to add peer {}; a peer may only ask to add itself",
                    r.peer_id
                )));
            }
        }
        // Refused here already when this peer's trusted_peers does not list the joiner
        // (the leader checks its own list again).
        self.node.check_trusted(&r.peer_id)?;
        self.node
            .commit(Forward::Join(PeerNode {
                peer_id: r.peer_id,
                addresses: r.addresses,
            }))
            .await?;
        Ok(Response::new(MembersResponse {
            members: self.node.members(),
        }))
    }

    async fn remove_peer(
        &self,
        req: Request<RemovePeerRequest>,
    ) -> Result<Response<Empty>, Status> {
        let peer = req.into_inner().peer_id;
        if peer.is_empty() {
            return Err(Status::invalid_argument("remove peer: peer_id is empty"));
        }
        self.node.commit(Forward::Remove(peer)).await?;
        Ok(Response::new(Empty {}))
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
        let mut stream = req.into_inner();
        self.node.commit(Forward::Op(PinOp::Clear)).await?;
        let mut batch = Vec::with_capacity(IMPORT_BATCH);
        let mut imported = 0u64;
        while let Some(pin) = stream.next().await {
            let mut pin = pin?;
            pin.cid = normalize_cid(&pin.cid).map_err(|e| {
                Status::invalid_argument(format!("import: pin #{}: {e}", imported + 1))
            })?;
            if pin.r#type == PinType::Bad as i32 {
                pin.r#type = PinType::Data as i32;
            }
            batch.push(PinBytes::encode(&pin));
            imported += 1;
            if batch.len() == IMPORT_BATCH {
                self.node
                    .commit(Forward::Op(PinOp::PinBatch(std::mem::take(&mut batch))))
                    .await?;
            }
        }
        if !batch.is_empty() {
            self.node
                .commit(Forward::Op(PinOp::PinBatch(batch)))
                .await?;
        }
        Ok(Response::new(ImportResponse { imported }))
    }

    async fn raft(&self, req: Request<RaftRequest>) -> Result<Response<RaftResponse>, Status> {
        let caller = ipfs_cluster_proto::Caller::from_metadata(req.metadata());
        Ok(Response::new(
            self.node.handle_raft(&caller, req.into_inner()).await?,
        ))
    }

    async fn stats(&self, _: Request<StatsRequest>) -> Result<Response<StatsResponse>, Status> {
        let m = self.node.raft.metrics().borrow().clone();
        let st = self.node.store.applied_state().await.map_err(internal)?;
        Ok(Response::new(StatsResponse {
            term: m.current_term,
            // The persisted commit index can trail (openraft saves it lazily); an applied
            // entry is committed by definition.
            commit_index: st.committed.max(st.applied).map(|l| l.index).unwrap_or(0),
            applied_index: st.applied.map(|l| l.index).unwrap_or(0),
            leader: self.node.leader().unwrap_or_default(),
            pins: st.pins,
        }))
    }

    async fn crdt_block(
        &self,
        _: Request<ipfs_cluster_proto::consensus::v1::CrdtBlockRequest>,
    ) -> Result<Response<ipfs_cluster_proto::consensus::v1::CrdtBlockResponse>, Status> {
        Err(Status::failed_precondition(
            "not available in raft mode: CrdtBlock serves crdt delta nodes; this peer runs consensus.raft",
        ))
    }

    async fn crdt_heads(
        &self,
        _: Request<ipfs_cluster_proto::consensus::v1::CrdtHeadsRequest>,
    ) -> Result<Response<ipfs_cluster_proto::consensus::v1::CrdtHeadsResponse>, Status> {
        Err(Status::failed_precondition(
            "not available in raft mode: CrdtHeads lists crdt heads; this peer runs consensus.raft",
        ))
    }
}

/// Helper for clients/tests: does a pin type match a ListRequest filter?
pub fn matches_filter(pin: &Pin, filter: u32) -> bool {
    type_matches(pin.r#type, filter)
}

#[cfg(test)]
mod list_tests {
    //! `List`/`Export` stream the store in chunks; the gRPC stream must still be every
    //! matching pin exactly once, in store order, across many chunk boundaries.

    use super::*;
    use crate::node::Options;

    fn cid_n(i: u32) -> String {
        let mut d = [0u8; 32];
        d[..4].copy_from_slice(&i.to_be_bytes());
        let mh = cid::multihash::Multihash::<64>::wrap(0x12, &d).unwrap();
        cid::Cid::new_v1(0x55, mh).to_string()
    }

    async fn cids(mut s: BoxStream<Pin>) -> Vec<String> {
        let mut v = vec![];
        while let Some(p) = s.next().await {
            v.push(p.unwrap().cid);
        }
        v
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn chunked_list_streams_every_matching_pin_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let router = crate::local_router::LocalRouter::default();
        let mut o = Options::new("peerA", dir.path().join("peerA"));
        o.wait_for_leader_timeout = std::time::Duration::from_secs(5);
        let n = Node::start(o, Arc::new(router.clone())).await.unwrap();
        router.insert("peerA".to_string(), n.clone());
        n.raft
            .wait(Some(std::time::Duration::from_secs(10)))
            .metrics(|m| m.current_leader.is_some(), "leader")
            .await
            .unwrap();
        // 3 chunks and a bit; every third pin is a meta-pin.
        let total = (LIST_CHUNK * 3 + 17) as u32;
        let pins: Vec<PinBytes> = (0..total)
            .map(|i| {
                PinBytes::encode(&Pin {
                    cid: cid_n(i),
                    r#type: if i % 3 == 0 {
                        PinType::Meta as i32
                    } else {
                        PinType::Data as i32
                    },
                    max_depth: -1,
                    ..Default::default()
                })
            })
            .collect();
        n.commit(Forward::Op(PinOp::PinBatch(pins))).await.unwrap();
        let svc = ConsensusService::new(n.clone());
        for filter in [0u32, 2, 4, 8] {
            // The per-pin store listing is the reference.
            let mut rx = n.store.list(filter, 4);
            let mut want = vec![];
            while let Some(p) = rx.recv().await {
                want.push(p.unwrap().cid);
            }
            let got = cids(
                svc.list(Request::new(ListRequest {
                    type_filter: filter,
                }))
                .await
                .unwrap()
                .into_inner(),
            )
            .await;
            let expected = match filter {
                0 => total as usize,
                2 => (total - total.div_ceil(3)) as usize,
                4 => total.div_ceil(3) as usize,
                _ => 0,
            };
            assert_eq!(got.len(), expected, "filter {filter}");
            assert_eq!(got, want, "filter {filter}");
        }
        n.raft.shutdown().await.unwrap();
    }
}
