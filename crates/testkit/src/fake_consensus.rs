//! The one in-memory stand-in for the consensus service's internal gRPC contract
//! (`proto/consensus.proto`), for the tests of the services that call it (gateway, ipfs
//! connector, transport) when a test needs what a real raft cluster cannot be made to do
//! on demand: a pinset log the test appends to and replays from any index, a member list
//! the test rewrites between two calls, a member that is listed but unreachable, or a
//! count of every call the service under test made. Tests of the cluster as a whole start
//! real consensus services through [`crate::Cluster`] instead.
//!
//! It keeps a log of state changes (pins and unpins, indexed from 1) and the state they
//! make; `Watch` replays the log after `from_index` (or a full sync for 0) and follows new
//! changes, as the real service does. `Pin` normalises a request as the real consensus
//! does (replication 0/0 becomes the cluster default -1/-1, `user_allocations` are not
//! stored). Raft traffic and the snapshot stream are real-consensus only: they answer
//! `unimplemented` naming the fake.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    net::SocketAddr,
    pin::Pin as StdPin,
    sync::{Arc, Mutex},
};

use anyhow::{Context, Result};
use futures::Stream;
use ipfs_cluster_proto::{
    consensus::v1::{consensus_server::*, state_change::Kind, *},
    types::v1::{Empty, Pin},
    InternalToken,
};
use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status, Streaming};

/// A running in-process gRPC server of a fake; stops when dropped.
pub struct Served {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Serves `svc` with the internal token check on `addr` (loopback; port 0 = a free one
/// from the test kit's picker), on the current tokio runtime.
pub async fn serve_fake<S>(
    svc: S,
    addr: Option<SocketAddr>,
    token: &InternalToken,
) -> Result<Served>
where
    S: tonic::codegen::Service<
            tonic::codegen::http::Request<tonic::body::Body>,
            Response = tonic::codegen::http::Response<tonic::body::Body>,
            Error = Infallible,
        > + tonic::server::NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let addr = addr.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], crate::free_port())));
    let l = ipfs_cluster_runtime::bind_internal(addr, false)
        .await
        .with_context(|| format!("a test fake on {addr}"))?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(ipfs_cluster_runtime::serve(l, token.clone(), svc, async {
        let _ = rx.await;
    }));
    Ok(Served {
        addr,
        stop: Some(tx),
    })
}

#[derive(Default)]
struct Log {
    changes: Vec<StateChange>,
    state: BTreeMap<String, Pin>,
}

struct Inner {
    log: Mutex<Log>,
    members: Mutex<Vec<Member>>,
    leader: Mutex<String>,
    watch_from: Mutex<Vec<u64>>,
    calls: Mutex<BTreeMap<&'static str, usize>>,
    notify: watch::Sender<u64>,
}

/// The fake consensus: cheap to clone (all clones share one state).
#[derive(Clone)]
pub struct FakeConsensus(Arc<Inner>);

impl Default for FakeConsensus {
    fn default() -> Self {
        Self(Arc::new(Inner {
            log: Default::default(),
            members: Default::default(),
            leader: Default::default(),
            watch_from: Default::default(),
            calls: Default::default(),
            notify: watch::channel(0).0,
        }))
    }
}

impl FakeConsensus {
    /// Serves the fake on `addr` (None: a free loopback port).
    pub async fn serve(&self, addr: Option<SocketAddr>, token: &InternalToken) -> Result<Served> {
        serve_fake(ConsensusServer::new(self.clone()), addr, token).await
    }

    /// Appends a pin to the log (as a committed `Pin` would); its index.
    pub fn push_pin(&self, pin: Pin) -> u64 {
        self.push(Kind::Pin, pin)
    }

    /// Appends an unpin of `cid` to the log; its index.
    pub fn push_unpin(&self, cid: &str) -> u64 {
        self.push(
            Kind::Unpin,
            Pin {
                cid: cid.into(),
                ..Default::default()
            },
        )
    }

    fn push(&self, kind: Kind, pin: Pin) -> u64 {
        let mut log = self.0.log.lock().unwrap();
        let index = log.changes.len() as u64 + 1;
        if kind == Kind::Pin {
            log.state.insert(pin.cid.clone(), pin.clone());
        } else {
            log.state.remove(&pin.cid);
        }
        log.changes.push(StateChange {
            kind: kind as i32,
            index,
            pin: Some(pin),
        });
        drop(log);
        self.0.notify.send_replace(index);
        index
    }

    /// The index of the last change (0 for an empty log).
    pub fn last_index(&self) -> u64 {
        self.0.log.lock().unwrap().changes.len() as u64
    }

    /// The pinset the log makes, by CID.
    pub fn pins(&self) -> BTreeMap<String, Pin> {
        self.0.log.lock().unwrap().state.clone()
    }

    /// One pin of the pinset.
    pub fn pin(&self, cid: &str) -> Option<Pin> {
        self.0.log.lock().unwrap().state.get(cid).cloned()
    }

    /// The `from_index` of every `Watch` call so far, in order.
    pub fn watch_froms(&self) -> Vec<u64> {
        self.0.watch_from.lock().unwrap().clone()
    }

    /// Replaces the member list `Members` answers.
    pub fn set_members(&self, members: Vec<Member>) {
        *self.0.members.lock().unwrap() = members;
    }

    /// Adds a voter listening on `addresses`.
    pub fn add_member(&self, peer_id: &str, addresses: Vec<String>) {
        self.0.members.lock().unwrap().push(Member {
            peer_id: peer_id.into(),
            addresses,
            voter: true,
        });
    }

    pub fn members(&self) -> Vec<Member> {
        self.0.members.lock().unwrap().clone()
    }

    /// The peer id `Leader` answers (empty: "no leader", as during an election).
    pub fn set_leader(&self, peer_id: &str) {
        *self.0.leader.lock().unwrap() = peer_id.into();
    }

    /// How many calls of `method` ("Pin", "Members", ...) the fake has served.
    pub fn calls(&self, method: &str) -> usize {
        self.0
            .calls
            .lock()
            .unwrap()
            .get(method)
            .copied()
            .unwrap_or(0)
    }

    /// How many calls of any method but those in `except` the fake has served.
    pub fn calls_except(&self, except: &[&str]) -> usize {
        self.0
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, _)| !except.contains(m))
            .map(|(_, n)| n)
            .sum()
    }

    fn count(&self, method: &'static str) {
        *self.0.calls.lock().unwrap().entry(method).or_default() += 1;
    }

    fn not_here(what: &str) -> Status {
        Status::unimplemented(format!(
            "{what} is not in the test kit's fake consensus: start a real consensus service (the test kit's Cluster)"
        ))
    }
}

type S<T> = StdPin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn not_found() -> Status {
    // The real consensus service's text.
    Status::not_found("pin is not part of the pinset")
}

#[tonic::async_trait]
impl Consensus for FakeConsensus {
    async fn pin(&self, req: Request<PinRequest>) -> Result<Response<PinResponse>, Status> {
        self.count("Pin");
        let mut pin = req
            .into_inner()
            .pin
            .ok_or_else(|| Status::invalid_argument("PinRequest without a pin"))?;
        let o = pin.options.get_or_insert_with(Default::default);
        if o.replication_factor_min == 0 && o.replication_factor_max == 0 {
            o.replication_factor_min = -1;
            o.replication_factor_max = -1;
        }
        o.user_allocations.clear();
        self.push_pin(pin.clone());
        Ok(Response::new(PinResponse { pin: Some(pin) }))
    }

    async fn unpin(&self, req: Request<UnpinRequest>) -> Result<Response<PinResponse>, Status> {
        self.count("Unpin");
        let cid = req.into_inner().cid;
        let pin = self.pin(&cid).ok_or_else(not_found)?;
        self.push_unpin(&cid);
        Ok(Response::new(PinResponse { pin: Some(pin) }))
    }

    async fn get(&self, req: Request<GetRequest>) -> Result<Response<Pin>, Status> {
        self.count("Get");
        self.pin(&req.into_inner().cid)
            .map(Response::new)
            .ok_or_else(not_found)
    }

    type ListStream = S<Pin>;
    async fn list(&self, _: Request<ListRequest>) -> Result<Response<Self::ListStream>, Status> {
        self.count("List");
        let items: Vec<Result<Pin, Status>> = self.pins().into_values().map(Ok).collect();
        Ok(Response::new(Box::pin(futures::stream::iter(items))))
    }

    type WatchStream = S<StateChange>;
    async fn watch(
        &self,
        req: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        self.count("Watch");
        let from = req.into_inner().from_index;
        self.0.watch_from.lock().unwrap().push(from);
        let (tx, rx) = mpsc::channel(16);
        let me = self.clone();
        tokio::spawn(async move {
            let mut changed = me.0.notify.subscribe();
            let mut next = from + 1;
            if from == 0 {
                // A full sync: the state as of the last index, then the changes after it.
                let (last, pins) = {
                    let log = me.0.log.lock().unwrap();
                    (log.changes.len() as u64, log.state.clone())
                };
                let mut sync = vec![StateChange {
                    kind: Kind::SyncBegin as i32,
                    index: 0,
                    pin: None,
                }];
                sync.extend(pins.into_values().map(|p| StateChange {
                    kind: Kind::Pin as i32,
                    index: last,
                    pin: Some(p),
                }));
                sync.push(StateChange {
                    kind: Kind::SyncEnd as i32,
                    index: last,
                    pin: None,
                });
                for c in sync {
                    if tx.send(Ok(c)).await.is_err() {
                        return;
                    }
                }
                next = last + 1;
            }
            loop {
                let batch: Vec<StateChange> =
                    me.0.log
                        .lock()
                        .unwrap()
                        .changes
                        .iter()
                        .skip(next.saturating_sub(1) as usize)
                        .cloned()
                        .collect();
                for c in batch {
                    next = c.index + 1;
                    if tx.send(Ok(c)).await.is_err() {
                        return;
                    }
                }
                if changed.changed().await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn members(
        &self,
        _: Request<MembersRequest>,
    ) -> Result<Response<MembersResponse>, Status> {
        self.count("Members");
        Ok(Response::new(MembersResponse {
            members: self.members(),
        }))
    }

    async fn leader(&self, _: Request<LeaderRequest>) -> Result<Response<LeaderResponse>, Status> {
        self.count("Leader");
        Ok(Response::new(LeaderResponse {
            peer_id: self.0.leader.lock().unwrap().clone(),
        }))
    }

    async fn join(&self, _: Request<JoinRequest>) -> Result<Response<MembersResponse>, Status> {
        self.count("Join");
        Err(Self::not_here("Join"))
    }

    async fn remove_peer(
        &self,
        req: Request<RemovePeerRequest>,
    ) -> Result<Response<Empty>, Status> {
        self.count("RemovePeer");
        let id = req.into_inner().peer_id;
        let mut m = self.0.members.lock().unwrap();
        let before = m.len();
        m.retain(|p| p.peer_id != id);
        if before == m.len() {
            return Err(Status::failed_precondition(format!(
                "{id} is not a cluster member"
            )));
        }
        Ok(Response::new(Empty {}))
    }

    type ExportStream = S<Pin>;
    async fn export(
        &self,
        _: Request<ListRequest>,
    ) -> Result<Response<Self::ExportStream>, Status> {
        self.count("Export");
        let items: Vec<Result<Pin, Status>> = self.pins().into_values().map(Ok).collect();
        Ok(Response::new(Box::pin(futures::stream::iter(items))))
    }

    async fn import(&self, _: Request<Streaming<Pin>>) -> Result<Response<ImportResponse>, Status> {
        self.count("Import");
        Err(Self::not_here("Import"))
    }

    async fn raft(&self, _: Request<RaftRequest>) -> Result<Response<RaftResponse>, Status> {
        self.count("Raft");
        Err(Self::not_here("Raft"))
    }

    async fn stats(&self, _: Request<StatsRequest>) -> Result<Response<StatsResponse>, Status> {
        self.count("Stats");
        Err(Self::not_here("Stats"))
    }

    async fn crdt_block(
        &self,
        _: Request<ipfs_cluster_proto::consensus::v1::CrdtBlockRequest>,
    ) -> Result<Response<ipfs_cluster_proto::consensus::v1::CrdtBlockResponse>, Status> {
        self.count("CrdtBlock");
        Err(Self::not_here("CrdtBlock"))
    }

    async fn crdt_heads(
        &self,
        _: Request<ipfs_cluster_proto::consensus::v1::CrdtHeadsRequest>,
    ) -> Result<Response<ipfs_cluster_proto::consensus::v1::CrdtHeadsResponse>, Status> {
        self.count("CrdtHeads");
        Err(Self::not_here("CrdtHeads"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipfs_cluster_proto::types::v1::PinOptions;

    fn pin(cid: &str) -> Pin {
        Pin {
            cid: cid.into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn log_state_and_watch_replay_over_grpc() {
        let fake = FakeConsensus::default();
        let token = InternalToken::generate();
        let served = fake.serve(None, &token).await.unwrap();
        assert_eq!(fake.push_pin(pin("a")), 1);
        assert_eq!(fake.push_pin(pin("b")), 2);
        assert_eq!(fake.push_unpin("a"), 3);
        assert_eq!(fake.pins().keys().collect::<Vec<_>>(), ["b"]);

        let mut c = ipfs_cluster_proto::client::consensus(served.addr, &token);
        // A full sync: begin, the one pin at index 3, end; then a live change.
        let mut w = c
            .watch(WatchRequest { from_index: 0 })
            .await
            .unwrap()
            .into_inner();
        let kinds = |c: &StateChange| (c.kind, c.index);
        assert_eq!(
            kinds(&w.message().await.unwrap().unwrap()),
            (Kind::SyncBegin as i32, 0)
        );
        let p = w.message().await.unwrap().unwrap();
        assert_eq!((p.pin.unwrap().cid, p.index), ("b".to_string(), 3));
        assert_eq!(
            kinds(&w.message().await.unwrap().unwrap()),
            (Kind::SyncEnd as i32, 3)
        );
        fake.push_pin(pin("c"));
        assert_eq!(w.message().await.unwrap().unwrap().index, 4);
        // From an index: the changes after it, in order.
        let mut w = c
            .watch(WatchRequest { from_index: 1 })
            .await
            .unwrap()
            .into_inner();
        let got: Vec<u64> = [
            w.message().await.unwrap().unwrap(),
            w.message().await.unwrap().unwrap(),
            w.message().await.unwrap().unwrap(),
        ]
        .iter()
        .map(|c| c.index)
        .collect();
        assert_eq!(got, [2, 3, 4]);
        assert_eq!(fake.watch_froms(), [0, 1]);

        // Pin normalises as the real service; unpin of an unknown CID is NotFound.
        let p = c
            .pin(PinRequest {
                pin: Some(Pin {
                    cid: "d".into(),
                    options: Some(PinOptions {
                        user_allocations: vec!["x".into()],
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .pin
            .unwrap();
        let o = p.options.unwrap();
        assert_eq!(
            (o.replication_factor_min, o.replication_factor_max),
            (-1, -1)
        );
        assert!(o.user_allocations.is_empty());
        let e = c
            .unpin(UnpinRequest { cid: "nope".into() })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
        assert_eq!(e.message(), "pin is not part of the pinset");

        // Members and removal; calls are counted.
        fake.add_member("p1", vec![]);
        fake.add_member("p2", vec![]);
        c.remove_peer(RemovePeerRequest {
            peer_id: "p2".into(),
        })
        .await
        .unwrap();
        let e = c
            .remove_peer(RemovePeerRequest {
                peer_id: "p2".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition);
        let m = c.members(MembersRequest {}).await.unwrap().into_inner();
        assert_eq!(m.members.len(), 1);
        assert_eq!(fake.calls("RemovePeer"), 2);
        assert_eq!(fake.calls_except(&["RemovePeer", "Members"]), 4);
        let e = c.raft(RaftRequest::default()).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unimplemented);
    }
}
