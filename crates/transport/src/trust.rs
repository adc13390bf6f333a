//! Deciding whether a REMOTE peer may make a call: the policy table plus, for trusted
//! methods, the current consensus members (asked from the local consensus service and
//! cached briefly, so a burst of calls costs one Members call).
//!
//! `Consensus/Raft` from a non-member passes in two cases only, and the consensus service
//! then decides on the caller's verified peer id (see `ipfs_cluster_proto::caller`):
//! - this peer is in staging (no members: it waits to be added by a leader); consensus
//!   accepts only `PrepareAdd` from anyone, then raft traffic only from that leader;
//! - this peer runs a one-peer cluster and the caller is one of the peers it was
//!   configured to reach (`cluster.peer_addresses`): that is the operator's consent to be
//!   absorbed into that peer's cluster by `POST /peers` there (upstream's PeerAdd);
//!   consensus accepts only `PrepareAdd` from it. Any other secret holder is refused here.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use ipfs_cluster_proto::{
    client::ConsensusClient, consensus::v1::MembersRequest, names::CONSENSUS,
};
use ipfs_cluster_runtime::{ErrorCode, ServiceError};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::Mutex;

use crate::policy::{access, Access};

/// How old a member view may be when it answers "not a member" to `is_member`.
const GOSSIP_MISS_SLACK: Duration = Duration::from_millis(100);

/// Why a peer call is refused, or membership cannot be checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    #[error(
        "cannot check membership: the local consensus service did not answer Members within 5s"
    )]
    MembersTimeout,
    #[error("cannot check membership: local consensus Members failed: {0}")]
    MembersFailed(String),
    #[error("{service}/{method} may not be called by other peers (closed by the transport's RPC policy)")]
    Closed { service: String, method: String },
    #[error("{service}/{method}: this peer runs a one-peer cluster and peer {peer} is neither a member nor listed in its cluster.peer_addresses (only a listed peer may add it to another cluster)")]
    NotAnAdder {
        service: String,
        method: String,
        peer: PeerId,
    },
    #[error("{service}/{method} is only for cluster members and peer {peer} is not one (trusted by the transport's RPC policy)")]
    NotAMember {
        service: String,
        method: String,
        peer: PeerId,
    },
}

impl ServiceError for TrustError {
    fn error_code(&self) -> ErrorCode {
        match self {
            TrustError::MembersTimeout | TrustError::MembersFailed(_) => ErrorCode::Unavailable,
            TrustError::Closed { .. }
            | TrustError::NotAnAdder { .. }
            | TrustError::NotAMember { .. } => ErrorCode::Forbidden,
        }
    }
}

/// Where the member list comes from.
#[derive(Clone)]
pub enum Members {
    /// The local consensus service's `Members` (the normal case).
    Consensus(ConsensusClient),
    /// A fixed set (embedding the transport without a consensus, and tests).
    Fixed(Arc<HashSet<PeerId>>),
}

pub struct Trust {
    source: Members,
    local: PeerId,
    /// Peers whose `cluster.peer_addresses` entry names them: they may ask a one-peer
    /// cluster to reset and be added to theirs.
    adders: HashSet<PeerId>,
    ttl: Duration,
    cache: Mutex<Option<(Instant, Arc<MemberView>)>>,
    /// crdt consensus: members are the peers consensus marks `voter` (its trusted
    /// peers), as upstream's RPC policy trusts `IsTrustedPeer`; the followers in its
    /// peerset are not members here. Metrics are taken from any secret holder
    /// ([`Trust::open_metrics`]).
    crdt: bool,
}

/// The member list as last read from consensus: who is a member, and the libp2p addresses
/// consensus knows for each (used to reach members this host has never connected to).
#[derive(Default)]
struct MemberView {
    set: Arc<HashSet<PeerId>>,
    addrs: HashMap<PeerId, Vec<Multiaddr>>,
}

impl Trust {
    pub fn new(source: Members, local: PeerId, ttl: Duration) -> Self {
        Self {
            source,
            local,
            adders: HashSet::new(),
            ttl,
            cache: Mutex::new(None),
            crdt: false,
        }
    }

    /// crdt mode (see the `crdt` field).
    pub fn with_crdt(mut self, crdt: bool) -> Self {
        self.crdt = crdt;
        self
    }

    /// Whether metrics are admitted from any peer about itself (crdt mode: the peerset is
    /// whoever sends a live `ping`, followers included, as upstream's pubsub monitor),
    /// rather than from members only.
    pub fn open_metrics(&self) -> bool {
        self.crdt
    }

    /// Sets the peers a one-peer cluster lets add it to their cluster (the ids in
    /// `cluster.peer_addresses`).
    pub fn with_adders(mut self, adders: impl IntoIterator<Item = PeerId>) -> Self {
        self.adders = adders.into_iter().collect();
        self
    }

    /// True when `peer` is a current member (on a miss the view is read again unless it
    /// was read at most `GOSSIP_MISS_SLACK` before the question, as it may predate a peer
    /// that just joined). Errors when membership cannot be read. Used for gossip and
    /// tunnelled HTTP, whose strangers (crdt followers) may ask often: the slack bounds
    /// their `Members` reads; peer calls use the stricter [`Trust::check`].
    pub async fn is_member(&self, peer: &PeerId) -> Result<bool, TrustError> {
        let asked = Instant::now();
        let members = self.members().await?;
        if members.contains(peer) || !matches!(self.source, Members::Consensus(_)) {
            return Ok(members.contains(peer));
        }
        let since = asked.checked_sub(GOSSIP_MISS_SLACK).unwrap_or(asked);
        Ok(self.view_since(since).await?.set.contains(peer))
    }

    async fn members(&self) -> Result<Arc<HashSet<PeerId>>, TrustError> {
        if let Members::Fixed(set) = &self.source {
            return Ok(set.clone());
        }
        Ok(self.view().await?.set.clone())
    }

    /// Who the peerstore file may list (docs/security.md, hole 7): the current members, read
    /// within `wait`, else the last list read; `None` while no non-empty list is known
    /// (consensus unreachable since start, or this peer in staging): the caller then
    /// leaves the file as it is rather than write strangers or drop members.
    pub async fn peerstore_members(&self, wait: Duration) -> Option<Arc<HashSet<PeerId>>> {
        let set = match &self.source {
            Members::Fixed(set) => set.clone(),
            Members::Consensus(_) => match tokio::time::timeout(wait, self.view()).await {
                Ok(Ok(v)) => v.set.clone(),
                _ => self.cache.lock().await.as_ref()?.1.set.clone(),
            },
        };
        (!set.is_empty()).then_some(set)
    }

    /// The addresses consensus knows for `peer` (empty when unknown or unreachable).
    pub async fn member_addresses(&self, peer: &PeerId) -> Vec<Multiaddr> {
        match self.view().await {
            Ok(v) => v.addrs.get(peer).cloned().unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }

    /// The member view, from the cache while it is younger than the TTL.
    async fn view(&self) -> Result<Arc<MemberView>, TrustError> {
        self.view_fresh(|at| at.elapsed() < self.ttl).await
    }

    /// A member view read from consensus no earlier than `since`: the cached one when it
    /// is that recent, else a new read. Callers waiting meanwhile share one read (the
    /// cache lock is held across it), so a burst of misses costs one `Members` call.
    async fn view_since(&self, since: Instant) -> Result<Arc<MemberView>, TrustError> {
        self.view_fresh(|at| at >= since).await
    }

    /// The cached view when `fresh(read at)` holds, else a new read from consensus.
    async fn view_fresh(
        &self,
        fresh: impl Fn(Instant) -> bool,
    ) -> Result<Arc<MemberView>, TrustError> {
        let client = match &self.source {
            Members::Fixed(set) => {
                return Ok(Arc::new(MemberView {
                    set: set.clone(),
                    addrs: HashMap::new(),
                }))
            }
            Members::Consensus(c) => c.clone(),
        };
        let mut cache = self.cache.lock().await;
        if let Some((at, set)) = cache.as_ref() {
            if fresh(*at) {
                return Ok(set.clone());
            }
        }
        // Taken before asking: the answer is at least as new as this instant.
        let asked = Instant::now();
        let mut client = client;
        let resp = tokio::time::timeout(Duration::from_secs(5), client.members(MembersRequest {}))
            .await
            .map_err(|_| TrustError::MembersTimeout)?
            .map_err(|e| TrustError::MembersFailed(e.message().to_string()))?;
        let mut view = MemberView::default();
        let mut set = HashSet::new();
        for m in resp.into_inner().members {
            let Ok(id) = m.peer_id.parse::<PeerId>() else {
                continue;
            };
            if !self.crdt || m.voter {
                set.insert(id);
            }
            let addrs: Vec<Multiaddr> = m.addresses.iter().filter_map(|a| a.parse().ok()).collect();
            view.addrs.insert(id, addrs);
        }
        view.set = Arc::new(set);
        let view = Arc::new(view);
        *cache = Some((asked, view.clone()));
        Ok(view)
    }

    /// `Ok` when `peer` may call `service/method` on this peer; otherwise the status to
    /// answer with (the caller logs it).
    pub async fn check(
        &self,
        peer: &PeerId,
        service: &str,
        method: &str,
    ) -> Result<(), TrustError> {
        match access(service, method) {
            Access::Open => Ok(()),
            Access::Closed => Err(TrustError::Closed {
                service: service.into(),
                method: method.into(),
            }),
            Access::Trusted => {
                let arrived = Instant::now();
                let mut members = self.members().await?;
                if !members.contains(peer) && matches!(self.source, Members::Consensus(_)) {
                    // The cache may predate a peer that just joined (or, on a peer that
                    // just joined, the membership it learned since): a refusal is only
                    // decided on a view read after this call arrived, never on an older
                    // one, so a member is not refused for a moment after a join.
                    members = self.view_since(arrived).await?.set.clone();
                }
                if members.contains(peer) {
                    return Ok(());
                }
                // See the module comment: staging peers, and one-peer clusters asked by a
                // configured peer, hand Raft to consensus, which decides on the caller id.
                if service == CONSENSUS && method == "Raft" {
                    if members.is_empty() {
                        tracing::info!(%peer, "passing Raft from a non-member to consensus while this peer waits in staging to be added");
                        return Ok(());
                    }
                    let alone = members.iter().all(|m| *m == self.local);
                    if alone && self.adders.contains(peer) {
                        tracing::info!(%peer, "passing Raft from a peer of cluster.peer_addresses to this one-peer cluster's consensus (it may add this peer to its cluster)");
                        return Ok(());
                    }
                    if alone {
                        return Err(TrustError::NotAnAdder {
                            service: service.into(),
                            method: method.into(),
                            peer: *peer,
                        });
                    }
                }
                Err(TrustError::NotAMember {
                    service: service.into(),
                    method: method.into(),
                    peer: *peer,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipfs_cluster_proto::names::IPFS_CONNECTOR;

    #[tokio::test]
    async fn decisions() {
        let local = PeerId::random();
        let member = PeerId::random();
        let stranger = PeerId::random();
        let set: HashSet<_> = [local, member].into_iter().collect();
        let t = Trust::new(Members::Fixed(Arc::new(set)), local, Duration::from_secs(1));
        assert!(t.check(&member, IPFS_CONNECTOR, "Status").await.is_ok());
        let e = t
            .check(&stranger, IPFS_CONNECTOR, "Status")
            .await
            .unwrap_err();
        assert_eq!(e.to_status().code(), tonic::Code::PermissionDenied);
        assert!(t.check(&stranger, CONSENSUS, "Join").await.is_ok());
        assert!(t.check(&stranger, CONSENSUS, "Raft").await.is_err());
        let e = t.check(&member, CONSENSUS, "Export").await.unwrap_err();
        assert_eq!(e.to_status().code(), tonic::Code::PermissionDenied);
        assert!(t.check(&member, "no.Such", "Thing").await.is_err());

        // staging (no members): Raft goes to consensus, which decides on the caller
        let staging = Trust::new(
            Members::Fixed(Arc::new(HashSet::new())),
            local,
            Duration::from_secs(1),
        );
        assert!(staging.check(&stranger, CONSENSUS, "Raft").await.is_ok());
        assert!(staging.check(&stranger, CONSENSUS, "Pin").await.is_err());

        // a one-peer cluster: Raft only from a peer of cluster.peer_addresses
        let adder = PeerId::random();
        let lonely = Trust::new(
            Members::Fixed(Arc::new([local].into_iter().collect())),
            local,
            Duration::from_secs(1),
        )
        .with_adders([adder]);
        let e = lonely
            .check(&stranger, CONSENSUS, "Raft")
            .await
            .unwrap_err();
        assert_eq!(e.to_status().code(), tonic::Code::PermissionDenied);
        assert!(e.to_string().contains("cluster.peer_addresses"), "{e}");
        assert!(lonely.check(&adder, CONSENSUS, "Raft").await.is_ok());
        assert!(lonely.check(&adder, CONSENSUS, "Pin").await.is_err());
        assert!(lonely.check(&stranger, CONSENSUS, "Pin").await.is_err());
        assert!(lonely.is_member(&local).await.unwrap());
        assert!(!lonely.is_member(&adder).await.unwrap());
    }

    #[tokio::test]
    async fn the_peerstore_lists_known_members_only() {
        let (local, member) = (PeerId::random(), PeerId::random());
        let t = Trust::new(
            Members::Fixed(Arc::new([local, member].into_iter().collect())),
            local,
            Duration::from_secs(1),
        );
        let m = t.peerstore_members(Duration::from_secs(1)).await.unwrap();
        assert!(m.contains(&member) && m.len() == 2);
        // Staging (no members yet): unknown, the file is left alone.
        let staging = Trust::new(
            Members::Fixed(Arc::default()),
            local,
            Duration::from_secs(1),
        );
        assert!(staging
            .peerstore_members(Duration::from_secs(1))
            .await
            .is_none());
        // Consensus unreachable and never read: unknown too (and bounded in time).
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let c = ipfs_cluster_proto::client::consensus(
            addr,
            &ipfs_cluster_proto::InternalToken::generate(),
        );
        let down = Trust::new(Members::Consensus(c), local, Duration::from_secs(1));
        assert!(down
            .peerstore_members(Duration::from_millis(500))
            .await
            .is_none());
    }

    /// A peer that became a member an instant after the cached list was read (a joiner
    /// calling, or the leader calling a joiner) is admitted at once: a refusal is decided
    /// on a list read after the call arrived, never on an older one, however young; and a
    /// known member costs no read while the list is fresh.
    #[tokio::test]
    async fn a_peer_that_just_became_a_member_is_not_refused() {
        let fake = ipfs_cluster_testkit::FakeConsensus::default();
        let token = ipfs_cluster_proto::InternalToken::generate();
        let served = fake.serve(None, &token).await.unwrap();
        let c = ipfs_cluster_proto::client::consensus(served.addr, &token);
        let (local, joiner) = (PeerId::random(), PeerId::random());
        fake.add_member(&local.to_string(), vec![]);
        let t = Trust::new(Members::Consensus(c), local, Duration::from_secs(60));
        let e = t
            .check(&joiner, IPFS_CONNECTOR, "Status")
            .await
            .unwrap_err();
        assert!(matches!(e, TrustError::NotAMember { .. }), "{e}");
        fake.add_member(&joiner.to_string(), vec![]);
        t.check(&joiner, IPFS_CONNECTOR, "Status")
            .await
            .expect("a member listed after the cached read is admitted");
        let reads = fake.calls("Members");
        t.check(&joiner, IPFS_CONNECTOR, "Status").await.unwrap();
        t.check(&local, IPFS_CONNECTOR, "Status").await.unwrap();
        assert_eq!(
            fake.calls("Members"),
            reads,
            "hits are served from the cache"
        );
    }

    #[tokio::test]
    async fn unreachable_consensus_denies_trusted_calls() {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let c = ipfs_cluster_proto::client::consensus(
            addr,
            &ipfs_cluster_proto::InternalToken::generate(),
        );
        let t = Trust::new(
            Members::Consensus(c),
            PeerId::random(),
            Duration::from_secs(1),
        );
        let e = t
            .check(&PeerId::random(), IPFS_CONNECTOR, "Status")
            .await
            .unwrap_err();
        assert_eq!(e.to_status().code(), tonic::Code::Unavailable);
        assert!(t.check(&PeerId::random(), CONSENSUS, "Join").await.is_ok());
    }
}
