//! The in-process stand-in for the transport in unit tests: routes raft peer calls to
//! consensus nodes of the same process (compiled for unit tests and with the
//! `test-doubles` feature, which the bench example needs).

use std::{sync::Arc, time::Duration};

use futures::future::BoxFuture;
use prost::Message;

use crate::error::ConsensusError as Error;
use crate::raft::network::RaftCarrier;
use ipfs_cluster_proto::consensus::v1::{raft_request::Kind, RaftRequest};

/// Routes peer calls to consensus nodes in the same process: stands in for the transport in
/// tests and benchmarks (handles "Raft", "Join", "Leader" and "Members" like the real service does).
/// A router made by [`LocalRouter::from_peer`] marks its calls with the caller's peer id as
/// the transport does (`ipfs_cluster_proto::PEER_HEADER`); the default one makes local
/// calls (no caller id, as the operator's).
#[derive(Default, Clone)]
pub struct LocalRouter {
    nodes: Arc<std::sync::RwLock<std::collections::HashMap<String, Arc<crate::node::Node>>>>,
    from: Option<String>,
    /// Faults for tests: this many forwarded writes are delivered and executed, but their
    /// answers are lost (the caller gets UNAVAILABLE), as when the leader dies or the
    /// connection breaks after the commit.
    lose_forward_answers: Arc<std::sync::atomic::AtomicU32>,
}

impl LocalRouter {
    /// The same routes, for the node `peer`: its calls carry `peer` as the verified caller.
    pub fn from_peer(&self, peer: impl Into<String>) -> Self {
        LocalRouter {
            nodes: self.nodes.clone(),
            from: Some(peer.into()),
            lose_forward_answers: self.lose_forward_answers.clone(),
        }
    }

    /// Loses the answers of the next `n` forwarded writes (after the leader executed them).
    pub fn lose_forward_answers(&self, n: u32) {
        self.lose_forward_answers
            .store(n, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn insert(&self, peer: impl Into<String>, node: Arc<crate::node::Node>) {
        if let Ok(mut g) = self.nodes.write() {
            g.insert(peer.into(), node);
        }
    }
    pub fn remove(&self, peer: &str) {
        if let Ok(mut g) = self.nodes.write() {
            g.remove(peer);
        }
    }
    pub fn clear(&self) {
        if let Ok(mut g) = self.nodes.write() {
            g.clear();
        }
    }
}

impl RaftCarrier for LocalRouter {
    fn call(
        &self,
        peer: &str,
        method: &'static str,
        payload: Vec<u8>,
        _timeout: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>, Error>> {
        use ipfs_cluster_proto::consensus::v1::{
            consensus_server::Consensus, JoinRequest, MembersRequest,
        };
        let node = self.nodes.read().ok().and_then(|g| g.get(peer).cloned());
        let peer = peer.to_string();
        let from = self.from.clone();
        let lose = self.lose_forward_answers.clone();
        Box::pin(async move {
            let node =
                node.ok_or_else(|| Error::unavailable(format!("peer {peer} not connected")))?;
            let svc = crate::service::ConsensusService::new(node);
            let bad = |e: prost::DecodeError| Error::invalid_argument(e.to_string());
            fn request<T>(from: &Option<String>, msg: T) -> tonic::Request<T> {
                let mut r = tonic::Request::new(msg);
                if let Some(v) = from.as_deref().and_then(|f| f.parse().ok()) {
                    r.metadata_mut().insert(ipfs_cluster_proto::PEER_HEADER, v);
                }
                r
            }
            match method {
                "Raft" => {
                    let req = RaftRequest::decode(payload.as_slice()).map_err(bad)?;
                    let forward = req.kind == Kind::Forward as i32;
                    let answer = svc
                        .raft(request(&from, req))
                        .await?
                        .into_inner()
                        .encode_to_vec();
                    use std::sync::atomic::Ordering::SeqCst;
                    if forward
                        && lose
                            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
                            .is_ok()
                    {
                        return Err(Error::unavailable(
                            "in-process router: the answer was lost (test fault)",
                        ));
                    }
                    Ok(answer)
                }
                "Join" => {
                    let req = JoinRequest::decode(payload.as_slice()).map_err(bad)?;
                    Ok(svc
                        .join(request(&from, req))
                        .await?
                        .into_inner()
                        .encode_to_vec())
                }
                "Leader" => {
                    let req = ipfs_cluster_proto::consensus::v1::LeaderRequest::decode(
                        payload.as_slice(),
                    )
                    .map_err(bad)?;
                    Ok(svc
                        .leader(request(&from, req))
                        .await?
                        .into_inner()
                        .encode_to_vec())
                }
                "Members" => {
                    let req = MembersRequest::decode(payload.as_slice()).map_err(bad)?;
                    Ok(svc
                        .members(request(&from, req))
                        .await?
                        .into_inner()
                        .encode_to_vec())
                }
                m => Err(Error::unimplemented(format!(
                    "in-process router: {m} is not routed"
                ))),
            }
        })
    }
}
