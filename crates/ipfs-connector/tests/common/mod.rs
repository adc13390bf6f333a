//! Test helpers: a real Kubo daemon (through the workspace's test kit), and an in-process
//! test double of the `Consensus` gRPC contract that only implements `Watch` (the
//! connector uses nothing else), fed by the test.
#![allow(dead_code)]

use std::{
    net::SocketAddr,
    path::Path,
    pin::Pin as StdPin,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::Stream;
use ipfs_cluster_ipfs_connector::{Kubo, NodeAddr, Timeouts};
use ipfs_cluster_proto::{
    consensus::v1::{consensus_server::*, state_change::Kind, *},
    types::v1::{Empty, Pin},
    InternalToken,
};
use ipfs_cluster_testkit::KuboNode;
use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status, Streaming};

pub fn free_port() -> u16 {
    ipfs_cluster_config::ports::free_loopback_port().unwrap()
}

/// A real Kubo daemon (the test kit's) on free loopback ports, with the connector's own
/// Kubo client pointed at it; killed on drop.
pub struct Ipfs {
    pub node: KuboNode,
}

impl Ipfs {
    /// Starts a node whose repo and log live in `dir`.
    pub async fn start(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let node = KuboNode::start(dir)
            .await
            .unwrap_or_else(|e| panic!("starting Kubo: {e:#}"));
        Self { node }
    }

    /// Starts the daemon again on the same repo and ports and waits for `id`.
    pub async fn spawn(&mut self) {
        self.node
            .restart()
            .await
            .unwrap_or_else(|e| panic!("restarting Kubo: {e:#}"));
    }

    /// SIGTERM (SIGKILL after 30 s).
    pub async fn stop(&mut self) {
        self.node.stop().await;
    }

    pub fn multiaddr(&self) -> String {
        self.node.multiaddr()
    }

    pub fn kubo(&self) -> Kubo {
        Kubo::new(
            NodeAddr::Tcp(format!("127.0.0.1:{}", self.node.api_port)),
            Timeouts {
                request: Duration::from_secs(10),
                ..Default::default()
            },
            false,
        )
    }

    /// `add` of one file without pinning; returns its CID.
    pub async fn add(&self, data: &[u8]) -> String {
        self.node.add(data).await.expect("ipfs add")
    }
}

/// Test double of the Consensus contract: a log of changes the test appends to; `Watch`
/// replays the changes after `from_index` (or a full sync for 0), then follows new ones.
#[derive(Clone)]
pub struct FakeConsensus {
    pub log: Arc<Mutex<Vec<StateChange>>>,
    pub watch_from: Arc<Mutex<Vec<u64>>>,
    notify: watch::Sender<u64>,
}

impl Default for FakeConsensus {
    fn default() -> Self {
        Self {
            log: Default::default(),
            watch_from: Default::default(),
            notify: watch::channel(0).0,
        }
    }
}

impl FakeConsensus {
    pub fn push_pin(&self, pin: Pin) -> u64 {
        self.push(Kind::Pin, pin)
    }
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
        let mut log = self.log.lock().unwrap();
        let index = log.len() as u64 + 1;
        log.push(StateChange {
            kind: kind as i32,
            index,
            pin: Some(pin),
        });
        drop(log);
        self.notify.send_replace(index);
        index
    }
    /// The pins in the state as of the whole log.
    fn state(&self) -> Vec<Pin> {
        let mut m = std::collections::BTreeMap::new();
        for c in self.log.lock().unwrap().iter() {
            let p = c.pin.clone().unwrap();
            if c.kind == Kind::Pin as i32 {
                m.insert(p.cid.clone(), p);
            } else {
                m.remove(&p.cid);
            }
        }
        m.into_values().collect()
    }

    /// Serves on a free port; returns the address and a handle to stop it.
    pub async fn serve(&self, token: &InternalToken) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let svc = ConsensusServer::new(self.clone());
        let token = token.clone();
        let h = tokio::spawn(async move {
            let _ = ipfs_cluster_proto::serve(l, token, svc, std::future::pending()).await;
        });
        (addr, h)
    }
}

type S<T> = StdPin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;
fn unimpl<T>() -> Result<T, Status> {
    Err(Status::unimplemented("not part of the test double"))
}

#[tonic::async_trait]
impl Consensus for FakeConsensus {
    async fn pin(&self, req: Request<PinRequest>) -> Result<Response<PinResponse>, Status> {
        let pin = req
            .into_inner()
            .pin
            .ok_or_else(|| Status::invalid_argument("pin missing"))?;
        self.push_pin(pin.clone());
        Ok(Response::new(PinResponse { pin: Some(pin) }))
    }
    async fn unpin(&self, req: Request<UnpinRequest>) -> Result<Response<PinResponse>, Status> {
        let cid = req.into_inner().cid;
        let pin = self
            .state()
            .into_iter()
            .find(|p| p.cid == cid)
            .ok_or_else(|| Status::not_found(format!("{cid} is not pinned")))?;
        self.push_unpin(&cid);
        Ok(Response::new(PinResponse { pin: Some(pin) }))
    }
    async fn get(&self, req: Request<GetRequest>) -> Result<Response<Pin>, Status> {
        let cid = req.into_inner().cid;
        self.state()
            .into_iter()
            .find(|p| p.cid == cid)
            .map(Response::new)
            .ok_or_else(|| Status::not_found("not found"))
    }
    type ListStream = S<Pin>;
    async fn list(&self, _: Request<ListRequest>) -> Result<Response<Self::ListStream>, Status> {
        let items: Vec<Result<Pin, Status>> = self.state().into_iter().map(Ok).collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(items))))
    }
    type WatchStream = S<StateChange>;
    async fn watch(
        &self,
        req: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let from = req.into_inner().from_index;
        self.watch_from.lock().unwrap().push(from);
        let (tx, rx) = mpsc::channel(16);
        let me = self.clone();
        tokio::spawn(async move {
            let mut rx_n = me.notify.subscribe();
            let mut next = from + 1;
            if from == 0 {
                let last = me.log.lock().unwrap().len() as u64;
                let _ = tx
                    .send(Ok(StateChange {
                        kind: Kind::SyncBegin as i32,
                        index: 0,
                        pin: None,
                    }))
                    .await;
                for p in me.state() {
                    let _ = tx
                        .send(Ok(StateChange {
                            kind: Kind::Pin as i32,
                            index: last,
                            pin: Some(p),
                        }))
                        .await;
                }
                let _ = tx
                    .send(Ok(StateChange {
                        kind: Kind::SyncEnd as i32,
                        index: last,
                        pin: None,
                    }))
                    .await;
                next = last + 1;
            }
            loop {
                let batch: Vec<StateChange> = me
                    .log
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|c| c.index >= next)
                    .cloned()
                    .collect();
                for c in batch {
                    next = c.index + 1;
                    if tx.send(Ok(c)).await.is_err() {
                        return;
                    }
                }
                if rx_n.changed().await.is_err() {
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
        unimpl()
    }
    async fn leader(&self, _: Request<LeaderRequest>) -> Result<Response<LeaderResponse>, Status> {
        unimpl()
    }
    async fn join(&self, _: Request<JoinRequest>) -> Result<Response<MembersResponse>, Status> {
        unimpl()
    }
    async fn remove_peer(&self, _: Request<RemovePeerRequest>) -> Result<Response<Empty>, Status> {
        unimpl()
    }
    type ExportStream = S<Pin>;
    async fn export(
        &self,
        _: Request<ListRequest>,
    ) -> Result<Response<Self::ExportStream>, Status> {
        unimpl()
    }
    async fn import(&self, _: Request<Streaming<Pin>>) -> Result<Response<ImportResponse>, Status> {
        unimpl()
    }
    async fn raft(&self, _: Request<RaftRequest>) -> Result<Response<RaftResponse>, Status> {
        unimpl()
    }
    async fn stats(&self, _: Request<StatsRequest>) -> Result<Response<StatsResponse>, Status> {
        unimpl()
    }
}
