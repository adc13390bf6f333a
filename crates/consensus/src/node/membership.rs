//! Membership changes made safe (behaviours 29 and 31 of docs/behaviours.md).
//!
//! A child module of `node` so it can use the node's private parts.
//!
//! * **Leadership first.** Before any membership change the leader confirms it still leads
//!   with a quorum heartbeat round (`Raft::get_read_log_id`, bounded by the quorum grace).
//!   openraft 0.9 keeps a leader whose only other member just went down, and its last
//!   quorum ack stays "fresh" for a while, so without this an add appended a learner entry
//!   that could never commit.
//! * **Committed membership.** `members()` reports the last *committed* membership, never
//!   an appended but uncommitted one (openraft's metrics show the latter), so a refused
//!   add does not leave the peer in `GET /peers`.
//! * **Adding a peer that runs its own cluster** (upstream PeerAdd: hashicorp raft replaces
//!   the added peer's single-peer history with the cluster's). Before `add_learner` the
//!   leader sends the target `Forward::PrepareAdd` (over `Consensus/Raft`; a staging peer
//!   takes it from any secret holder, a one-peer cluster only from a peer listed in its
//!   `cluster.peer_addresses`, which its transport checks: the operator's consent to be
//!   absorbed). The target
//!   answers: ready (staging, or already in the caller's cluster); resetting (it was a
//!   one-peer cluster holding only itself: its consensus exits with `RESTART_STAGING_EXIT`
//!   after moving its raft folder to a backup, and the launcher restarts it at once, empty
//!   and in staging) — the leader asks again until ready; or FAILED_PRECONDITION when it is
//!   a member of another multi-peer cluster (whose transport refuses our raft traffic).
//!   Otherwise the openraft core of the added peer panicked on the conflicting entry 1.
//!   A target that cannot be reached is asked again until the commit timeout and then the
//!   add fails: it is never added unprepared. As a second line, a one-peer cluster refuses
//!   raft traffic from any other node (`Node::refuse_foreign_leader`).
//! * **Sender identity** (docs/security.md). Raft calls from other peers carry the sender's
//!   verified peer id (`ipfs_cluster_proto::Caller`). A staging peer remembers the leader
//!   whose `PrepareAdd` it answered and takes raft traffic from that leader only (another
//!   preparer is refused while that add may still run); `PrepareAdd` must name its sender.

use super::*;

use openraft::{error::CheckIsLeaderError, LogId, Membership};

/// The exit code and backup path the launcher knows too (the peer folder layout).
pub use ipfs_cluster_runtime::peer_folder::{backup_path, RESTART_STAGING_EXIT};

/// How often a leader asks a resetting peer whether it is ready to be added.
const PREPARE_POLL: Duration = Duration::from_millis(500);

/// The target's answer to `Forward::PrepareAdd`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrepareAnswer {
    /// This peer can be added now (staging, or already in the caller's cluster).
    pub ready: bool,
    /// It was a one-peer cluster: its raft state goes to `backup` and it restarts empty.
    pub resetting: bool,
    pub backup: String,
    /// Members of the cluster this peer belonged to (0 when staging).
    pub members: u32,
    /// The peer's libp2p addresses, for the membership (`POST /peers` gives none, and the
    /// other members' transports dial members by these).
    #[serde(default)]
    pub addresses: Vec<String>,
}

type Committed = (Option<LogId<NodeId>>, Membership<NodeId, PeerNode>);

/// The membership bits of a `Node`.
pub struct MembershipState {
    /// Some(leader peer id) once a leader asked this one-peer cluster to start over.
    reset: watch::Sender<Option<String>>,
    /// The last committed membership seen (see `committed_membership`).
    committed: std::sync::Mutex<Option<Committed>>,
    /// While in staging: the leader whose `PrepareAdd` this peer answered, and when. Raft
    /// traffic is taken from that leader only (see `Node::check_raft_sender`).
    preparer: std::sync::Mutex<Option<(String, std::time::Instant)>>,
    /// While joining through `--bootstrap`: (leader, bootstrap peer) — the leader the
    /// bootstrap peer named, the only one whose `PrepareAdd` is taken.
    expected: std::sync::Mutex<Option<(String, String)>>,
}

impl Default for MembershipState {
    fn default() -> Self {
        MembershipState {
            reset: watch::channel(None).0,
            committed: std::sync::Mutex::new(None),
            preparer: std::sync::Mutex::new(None),
            expected: std::sync::Mutex::new(None),
        }
    }
}

impl MembershipState {
    /// Staging: raft traffic only from the leader that prepared this peer.
    pub(super) fn check_preparer(&self, sender: &str, me: &str) -> Result<(), Error> {
        let p = self.preparer.lock().unwrap_or_else(|e| e.into_inner());
        match p.as_ref() {
            Some((leader, _)) if leader == sender => Ok(()),
            Some((leader, _)) => Err(Error::permission_denied(format!(
                "peer {me} waits in staging to be added by the leader {leader}, which prepared it; it takes no raft traffic from peer {sender}"
            ))),
            None => Err(Error::permission_denied(format!(
                "peer {me} waits in staging to be added and takes raft traffic only from the leader that prepares it (PrepareAdd); peer {sender} did not"
            ))),
        }
    }

    /// Staging: `leader` prepares this peer. The first preparer keeps it for `window`
    /// (the time a leader's add may take), so another secret holder cannot take over an
    /// add in progress; the same leader asking again refreshes it.
    fn claim_preparer(&self, leader: &str, me: &str, window: Duration) -> Result<(), Error> {
        if let Some((expected, via)) = self
            .expected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            if expected != leader {
                return Err(Error::permission_denied(format!(
                    "peer {me} joins through peer {via}, whose leader is {expected}; it takes PrepareAdd from that leader only, not from peer {leader}"
                )));
            }
        }
        let mut p = self.preparer.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((held, at)) = p.as_ref() {
            if held != leader && at.elapsed() < window {
                return Err(Error::unavailable(format!(
                    "peer {me} is being added by the leader {held} already; retry once that add is over (at most {:.0}s)",
                    window.as_secs_f64()
                )));
            }
        }
        *p = Some((leader.to_string(), std::time::Instant::now()));
        Ok(())
    }
}

impl Node {
    /// Becomes Some(leader) when a leader asked this one-peer cluster to reset and be added:
    /// the service must back its raft folder up and exit with `RESTART_STAGING_EXIT`.
    pub fn reset_requested(&self) -> watch::Receiver<Option<String>> {
        self.membership.reset.subscribe()
    }

    /// The last committed membership: openraft's effective membership once it is applied,
    /// else the committed one remembered (or asked from raft's state by `watch_committed`).
    pub(super) fn committed_membership(&self) -> Membership<NodeId, PeerNode> {
        let (eff, applied) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            (m.membership_config.clone(), m.last_applied)
        };
        let mut cache = self
            .membership
            .committed
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if eff.log_id().map(|l| l.index) <= applied.map(|l| l.index) {
            let newer = cache
                .as_ref()
                .is_none_or(|(id, _)| id.map(|l| l.index) <= eff.log_id().map(|l| l.index));
            if newer {
                *cache = Some((*eff.log_id(), eff.membership().clone()));
            }
            return eff.membership().clone();
        }
        match cache.as_ref() {
            Some((_, m)) => m.clone(),
            None => eff.membership().clone(),
        }
    }

    /// Keeps the committed membership known while an uncommitted one is the effective one:
    /// each time the effective membership changes, ask raft's state for the committed one.
    pub(super) fn spawn_committed_watch(self: &Arc<Self>) {
        let node = Arc::downgrade(self);
        let mut rx = self.raft.metrics();
        tokio::spawn(async move {
            let mut seen = None;
            loop {
                let eff = rx
                    .borrow_and_update()
                    .membership_config
                    .log_id()
                    .map(|l| l.index);
                let Some(n) = node.upgrade() else { return };
                if seen != Some(eff) {
                    seen = Some(eff);
                    let r = n
                        .raft
                        .with_raft_state(|st| {
                            let c = st.membership_state.committed();
                            (*c.log_id(), c.membership().clone())
                        })
                        .await;
                    if let Ok((id, m)) = r {
                        let mut cache = n
                            .membership
                            .committed
                            .lock()
                            .unwrap_or_else(|e| e.into_inner());
                        let newer = cache
                            .as_ref()
                            .is_none_or(|(old, _)| old.map(|l| l.index) <= id.map(|l| l.index));
                        if newer {
                            *cache = Some((id, m));
                        }
                    }
                }
                // Also refresh the remembered committed one when the effective one applies.
                let _ = n.committed_membership();
                drop(n);
                if rx.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    /// On the leader: a quorum of voters confirms this peer still leads (a heartbeat round,
    /// bounded by the quorum grace). Required before any membership change.
    pub(super) async fn confirm_leadership(&self) -> Result<(), Error> {
        self.check_core()?;
        match tokio::time::timeout(self.quorum_grace, self.raft.get_read_log_id()).await {
            Ok(Ok(_)) => self.still_leader(),
            Ok(Err(RaftError::Fatal(f))) => Err(match f {
                Fatal::Stopped => Error::ShuttingDown,
                f => Error::unavailable(fatal_message(&f)),
            }),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)))) => {
                let voters = self.raft.metrics().borrow().membership_config.voter_ids().count();
                Err(Error::unavailable(format!(
                    "cannot change the cluster membership: this peer could not confirm its leadership with a majority of the members (only {} of the {voters} voters answered); bring the missing members back, or remove them, and retry",
                    q.got.len()
                )))
            }
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_)))) => Err(
                Error::unavailable("this peer lost the raft leadership before the membership change; retry"),
            ),
            Err(_) => Err(Error::unavailable(format!(
                "cannot change the cluster membership: a majority of the members did not confirm this peer's leadership within {:.1}s; bring the missing members back, or remove them, and retry",
                self.quorum_grace.as_secs_f64()
            ))),
        }
    }

    /// Staging peer about to join through `via`: `via` names `leader` as its leader, so
    /// from now on only `leader` may prepare this peer (a secret holder answering first
    /// with its own `PrepareAdd` is refused). Set again by every join attempt.
    pub(super) fn expect_preparer(&self, leader: &str, via: &str) {
        *self
            .membership
            .expected
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some((leader.to_string(), via.to_string()));
    }

    /// Staging peer asked by `leader` (the verified sender) to be prepared: remember it as
    /// the only peer whose raft traffic is taken until this peer is added.
    pub(super) fn claim_preparer(&self, leader: &str) -> Result<(), Error> {
        self.membership
            .claim_preparer(leader, &self.opts.peer_id, self.commit_timeout())
    }

    /// Target side of `Forward::PrepareAdd` (see the module comment).
    pub(super) async fn prepare_add(&self, leader: &str) -> Result<PrepareAnswer, Error> {
        let backup = backup_path(&self.opts.data_dir).display().to_string();
        if self.membership.reset.borrow().is_some() {
            return Ok(PrepareAnswer {
                resetting: true,
                backup,
                members: 1,
                ..Default::default()
            });
        }
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| Error::unavailable(format!("raft: {e}")))?;
        if !initialized {
            return Ok(PrepareAnswer {
                ready: true,
                addresses: self.opts.addresses.clone(),
                ..Default::default()
            });
        }
        let m = self.raft.metrics().borrow().membership_config.clone();
        let nodes: Vec<NodeId> = m.membership().nodes().map(|(id, _)| *id).collect();
        let n = nodes.len() as u32;
        if nodes.contains(&node_id(leader)) {
            return Ok(PrepareAnswer {
                ready: true,
                members: n,
                addresses: self.opts.addresses.clone(),
                ..Default::default()
            });
        }
        if nodes == [self.id] {
            let pins = self
                .store
                .applied_state()
                .await
                .map(|s| s.pins)
                .unwrap_or(0);
            tracing::warn!(
                %leader,
                pins,
                %backup,
                "the leader of another cluster is adding this peer: this peer's own one-peer cluster is replaced by that cluster's state (as upstream); its raft state is moved to the backup and the consensus service restarts empty to be added"
            );
            // Answer first, then let the service shut down.
            let reset = self.membership.reset.clone();
            let leader = leader.to_string();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let _ = reset.send(Some(leader));
            });
            return Ok(PrepareAnswer {
                resetting: true,
                backup,
                members: 1,
                ..Default::default()
            });
        }
        Err(Error::failed_precondition(format!(
            "peer {} is a member of another cluster ({n} peers); remove it there first",
            self.opts.peer_id
        )))
    }

    /// Leader side: makes sure `node` can be added (see the module comment) and fills in
    /// its addresses when the request had none. Peers that do not know `PrepareAdd` (older
    /// versions) are added as before; unreachable ones are asked again until the commit
    /// timeout, then the add fails.
    pub(super) async fn prepare_target(&self, mut node: PeerNode) -> Result<PeerNode, Error> {
        if node.peer_id == self.opts.peer_id {
            return Ok(node);
        }
        let peer = node.peer_id.clone();
        let peer = peer.as_str();
        let deadline = tokio::time::Instant::now() + self.commit_timeout();
        let ask = Forward::PrepareAdd(self.opts.peer_id.clone());
        let mut resetting = false;
        let mut last_error = String::new();
        let mut reached = false;
        loop {
            // A joiner (`--bootstrap` through another member) is connected to that member
            // only, and a peer becomes a dial hint for the transport once it is a member:
            // dial the addresses it sent until it answers.
            if !reached {
                for addr in &node.addresses {
                    match self.carrier.dial(addr, self.opts.network_timeout).await {
                        Ok(()) => break,
                        Err(s) => {
                            tracing::debug!(%peer, %addr, error = %s.message(), "dialing the peer to be added")
                        }
                    }
                }
            }
            let r = raft_call::<_, PrepareAnswer, (i32, String)>(
                &*self.carrier,
                peer,
                Kind::Forward,
                &ask,
                self.opts.network_timeout,
            )
            .await;
            reached = r.is_ok();
            match r {
                Ok(Ok(a)) if a.ready => {
                    if resetting {
                        tracing::info!(%peer, "the peer restarted empty and can be added");
                    }
                    if node.addresses.is_empty() {
                        node.addresses = a.addresses;
                    }
                    return Ok(node);
                }
                Ok(Ok(a)) => {
                    if !resetting {
                        tracing::warn!(%peer, backup = %a.backup, "the peer ran a one-peer cluster of its own: it backs its raft state up (on that peer) and restarts empty to be added");
                    }
                    resetting = true;
                }
                Ok(Err((code, msg))) => return Err(Error::remote(code, msg)),
                // Its transport accepts raft traffic only from its cluster's members.
                Err(s) if s.code() == tonic::Code::PermissionDenied && !resetting => {
                    return Err(Error::failed_precondition(format!(
                        "peer {peer} is a member of another cluster (it refuses raft traffic from this cluster: {}); remove it there first",
                        s.message()
                    )))
                }
                // An older version that does not know PrepareAdd: added as before.
                Err(s)
                    if !resetting
                        && matches!(
                            s.code(),
                            tonic::Code::InvalidArgument | tonic::Code::Unimplemented
                        ) =>
                {
                    tracing::debug!(%peer, error = %s.message(), "the peer does not know PrepareAdd; adding it as before");
                    return Ok(node);
                }
                // Not reachable (yet): a peer is never added unprepared, since a one-peer
                // cluster that missed its reset would be handed a foreign log.
                Err(s) => {
                    tracing::debug!(%peer, error = %s.message(), resetting, "the peer does not answer PrepareAdd yet");
                    last_error = s.message().to_string();
                }
            }
            if tokio::time::Instant::now() + PREPARE_POLL > deadline {
                let waited = self.commit_timeout().as_secs_f64();
                return Err(Error::unavailable(if resetting {
                    format!(
                        "peer {peer} reset its one-peer cluster to be added but did not come back empty within {waited:.0}s; add it again once its consensus service runs"
                    )
                } else {
                    format!(
                        "peer {peer} could not be reached to prepare it for being added within {waited:.0}s ({last_error}); check that it runs with the same cluster secret and that this peer knows its address, then add it again"
                    )
                }));
            }
            tokio::time::sleep(PREPARE_POLL).await;
        }
    }
}

impl Node {
    /// `Err` (PERMISSION_DENIED, naming the key) when `trusted_peers` is set and does not
    /// list `peer`.
    pub fn check_trusted(&self, peer: &str) -> Result<(), Error> {
        match &self.opts.trusted_peers {
            Some(t) if !t.contains(peer) && peer != self.opts.peer_id => {
                tracing::warn!(%peer, "refused a join: the peer is not in consensus.raft.trusted_peers");
                Err(Error::permission_denied(format!(
                    "peer {peer} may not join this cluster: it is not in consensus.raft.trusted_peers of peer {} (add its ID there on every peer to let it join)",
                    self.opts.peer_id
                )))
            }
            _ => Ok(()),
        }
    }

    pub(super) async fn add_voter(&self, node: PeerNode) -> Result<(), Error> {
        self.check_trusted(&node.peer_id)?;
        let _one_at_a_time = self.membership_lock.lock().await;
        let id = node_id(&node.peer_id);
        let m = self.raft.metrics().borrow().membership_config.clone();
        if m.membership().voter_ids().any(|v| v == id) {
            return Ok(());
        }
        // Confirm the leadership before touching the target or the membership (b31), then
        // make sure the target can be added (b29).
        self.confirm_leadership().await?;
        let node = self.prepare_target(node).await?;
        tracing::info!(peer = %node.peer_id, "adding peer to the cluster");
        self.confirm_leadership().await?;
        self.bounded(self.raft.add_learner(id, node, true)).await?;
        // A change left uncommitted by a previous leader can still be in progress: retry.
        let mut tries = 0;
        loop {
            match self
                .bounded(
                    self.raft
                        .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), true),
                )
                .await
            {
                Ok(_) => return Ok(()),
                Err(e)
                    if tries < 20 && e.message().contains("undergoing a configuration change") =>
                {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub(super) async fn remove_here(&self, peer: &str) -> Result<(), Error> {
        let _one_at_a_time = self.membership_lock.lock().await;
        let id = node_id(peer);
        let m = self.raft.metrics().borrow().membership_config.clone();
        let voters: BTreeSet<NodeId> = m.membership().voter_ids().collect();
        let is_node = m.membership().get_node(&id).is_some();
        if !is_node {
            return Ok(());
        }
        if voters.len() == 1 && voters.contains(&id) {
            return Err(Error::failed_precondition(
                "cannot remove ourselves from a 1-peer cluster",
            ));
        }
        self.confirm_leadership().await?;
        if !self.opts.disable_repinning {
            match self.vacate(peer).await {
                Ok(n) => {
                    tracing::info!(%peer, repinned = n, "re-allocated the pins of a removed peer")
                }
                Err(e) => {
                    tracing::warn!(%peer, error = %e.message(), "re-allocating the pins of a removed peer")
                }
            }
        }
        tracing::info!(%peer, "removing peer from the cluster");
        let change = if voters.contains(&id) {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        self.bounded(self.raft.change_membership(change, false))
            .await?;
        // A removed voter may linger as a learner entry in some configs; drop it too.
        let m = self.raft.metrics().borrow().membership_config.clone();
        if m.membership().get_node(&id).is_some() {
            self.bounded(
                self.raft
                    .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false),
            )
            .await?;
        }
        if peer == self.opts.peer_id {
            let _ = self.removed.send(true);
        } else {
            let carrier = self.carrier.clone();
            let peer = peer.to_string();
            let timeout = self.opts.network_timeout;
            tokio::spawn(async move {
                let r = raft_call::<_, Option<PinBytes>, (i32, String)>(
                    &*carrier,
                    &peer,
                    Kind::Forward,
                    &Forward::Removed,
                    timeout,
                )
                .await;
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e.message(), "telling a removed peer it was removed");
                }
            });
        }
        Ok(())
    }

    /// Best-effort: leave the cluster (leave_on_shutdown).
    pub async fn leave(&self) -> Result<(), Error> {
        self.commit(Forward::Remove(self.opts.peer_id.clone()))
            .await
            .map(|_| ())
    }

    /// Joins the cluster through `peer` (already connected by the transport). First asks
    /// `peer` who leads: only that leader's `PrepareAdd` is then taken, so another secret
    /// holder cannot answer this staging peer first and take the join over.
    pub async fn join_via(&self, peer: &str) -> Result<(), Error> {
        self.learn_leader_via(peer).await?;
        let req = ipfs_cluster_proto::consensus::v1::JoinRequest {
            peer_id: self.opts.peer_id.clone(),
            addresses: self.opts.addresses.clone(),
        };
        let timeout = self.opts.wait_for_leader_timeout + self.opts.network_timeout;
        self.carrier
            .call(peer, "Join", req.encode_to_vec(), timeout)
            .await
            .map(|_| ())
    }
}

impl Node {
    /// Asks `peer` (the bootstrap peer) for its leader and expects `PrepareAdd` from it only.
    pub(crate) async fn learn_leader_via(&self, peer: &str) -> Result<String, Error> {
        use ipfs_cluster_proto::consensus::v1::{LeaderRequest, LeaderResponse};
        let out = self
            .carrier
            .call(
                peer,
                "Leader",
                LeaderRequest::default().encode_to_vec(),
                self.opts.network_timeout,
            )
            .await
            .map_err(|s| {
                Error::new(
                    s.code(),
                    format!(
                        "asking peer {peer} which peer leads its cluster: {}",
                        s.message()
                    ),
                )
            })?;
        let leader = LeaderResponse::decode(out.as_slice())
            .map_err(|e| Error::internal(format!("peer {peer} sent a bad leader answer: {e}")))?
            .peer_id;
        if leader.is_empty() {
            return Err(Error::unavailable(format!(
                "peer {peer} knows no leader at the moment; retry"
            )));
        }
        self.expect_preparer(&leader, peer);
        Ok(leader)
    }
}

#[cfg(test)]
mod tests {
    //! In-process (LocalRouter carries `Consensus/Raft`, so `PrepareAdd` travels as in
    //! production; the restart main.rs does is played by the test).

    use super::*;
    use crate::local_router::LocalRouter;

    fn opts(peer: &str, dir: &std::path::Path) -> Options {
        let mut o = Options::new(peer, dir.join(peer));
        o.heartbeat_timeout = Duration::from_millis(200);
        o.election_timeout = Duration::from_millis(300);
        o.wait_for_leader_timeout = Duration::from_secs(5);
        o.network_timeout = Duration::from_secs(2);
        o.commit_retries = 1;
        o.commit_retry_delay = Duration::from_millis(100);
        o
    }

    /// `opts` for a peer that waits in staging to be added (no cluster of its own).
    fn staging_opts(peer: &str, dir: &std::path::Path) -> Options {
        let mut o = opts(peer, dir);
        o.staging = true;
        o
    }

    /// Each node's calls carry its peer id, as through the transport, so every flow here
    /// also passes the sender checks of `handle_raft`.
    async fn start(router: &LocalRouter, o: Options) -> Arc<Node> {
        let peer = o.peer_id.clone();
        let n = Node::start(o, Arc::new(router.from_peer(peer.clone())))
            .await
            .unwrap();
        router.insert(peer, n.clone());
        n
    }

    async fn wait_voters(n: &Node, k: usize) {
        n.raft
            .wait(Some(Duration::from_secs(10)))
            .metrics(
                |m| m.membership_config.membership().voter_ids().count() == k,
                "voters",
            )
            .await
            .unwrap();
    }

    async fn wait_leader(n: &Node) {
        n.raft
            .wait(Some(Duration::from_secs(10)))
            .metrics(|m| m.current_leader == Some(m.id), "leading")
            .await
            .unwrap();
    }

    fn join_of(peer: &str) -> Forward {
        Forward::Join(PeerNode {
            peer_id: peer.into(),
            addresses: vec![],
        })
    }

    fn a_pin(i: u8) -> PinBytes {
        let mh = cid::multihash::Multihash::<64>::wrap(0x12, &[i; 32]).unwrap();
        PinBytes::encode(&Pin {
            cid: cid::Cid::new_v1(0x55, mh).to_string(),
            r#type: PinType::Data as i32,
            max_depth: -1,
            ..Default::default()
        })
    }

    /// b29 in-process: B runs its own one-peer cluster with a pin; A adds B. B is asked to
    /// reset (its raft folder goes to the backup, it comes back empty in staging), then A
    /// adds it: B ends with A's state, its own old state is in the backup.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn adding_a_one_peer_cluster_resets_it_and_adds_it() {
        let dir = tempfile::tempdir().unwrap();
        let router = LocalRouter::default();
        let a = start(&router, opts("peerA", dir.path())).await;
        let b = start(&router, opts("peerB", dir.path())).await;
        wait_leader(&a).await;
        wait_leader(&b).await;
        a.write(PinOp::Pin(a_pin(1))).await.unwrap();
        b.write(PinOp::Pin(a_pin(2))).await.unwrap();

        let mut reset = b.reset_requested();
        let adder = {
            let a = a.clone();
            tokio::spawn(async move { a.commit(join_of("peerB")).await })
        };
        let by = tokio::time::timeout(Duration::from_secs(10), reset.wait_for(|r| r.is_some()))
            .await
            .expect("B was not asked to reset")
            .unwrap()
            .clone();
        assert_eq!(by.as_deref(), Some("peerA"));
        // What main.rs does: stop, back the raft folder up, start again in staging.
        router.remove("peerB");
        b.raft.shutdown().await.unwrap();
        drop(b);
        let data = dir.path().join("peerB");
        std::fs::rename(&data, backup_path(&data)).unwrap();
        let b = start(&router, staging_opts("peerB", dir.path())).await;

        tokio::time::timeout(Duration::from_secs(30), adder)
            .await
            .expect("the add did not finish")
            .unwrap()
            .unwrap();
        for n in [&a, &b] {
            wait_voters(n, 2).await;
        }
        b.raft
            .wait(Some(Duration::from_secs(10)))
            .applied_index_at_least(
                a.raft.metrics().borrow().last_applied.map(|l| l.index),
                "caught up",
            )
            .await
            .unwrap();
        let cid1 = a_pin(1).decode().unwrap().cid;
        let cid2 = a_pin(2).decode().unwrap().cid;
        assert!(b.get(&cid1).await.unwrap().is_some(), "B has A's pin");
        assert!(
            b.get(&cid2).await.unwrap().is_none(),
            "B's own pin is gone from B's state"
        );
        assert_eq!(b.member_ids(), vec!["peerA", "peerB"]);
        // B's own state is in the backup.
        let old = crate::raft::store::Store::open(&backup_path(&data))
            .await
            .unwrap();
        assert!(
            old.get(&cid2).await.unwrap().is_some(),
            "the backup holds B's pin"
        );
        for n in [&a, &b] {
            n.raft.shutdown().await.unwrap();
        }
    }

    /// A one-peer cluster that cannot be reached yet is not added unprepared: the leader
    /// asks again, and once the peer answers it is reset as usual. One that never answers
    /// makes the add fail with a clear error, and nothing changes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreachable_peer_is_never_added_unprepared() {
        let dir = tempfile::tempdir().unwrap();
        let router = LocalRouter::default();
        let a = start(&router, opts("peerA", dir.path())).await;
        let b = Node::start(
            opts("peerB", dir.path()),
            Arc::new(router.from_peer("peerB")),
        )
        .await
        .unwrap();
        wait_leader(&a).await;
        wait_leader(&b).await;

        // Never reachable: the add fails once the commit timeout (7 s here) is over.
        let e = a.commit(join_of("peerB")).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
        assert!(
            e.message().contains("could not be reached to prepare it"),
            "{}",
            e.message()
        );
        assert_eq!(a.member_ids(), vec!["peerA"]);
        assert_eq!(b.member_ids(), vec!["peerB"]);

        // Reachable a moment after the add started: prepared (asked to reset), not added
        // behind its back.
        let mut reset = b.reset_requested();
        let adder = {
            let a = a.clone();
            tokio::spawn(async move { a.commit(join_of("peerB")).await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(reset.borrow_and_update().is_none());
        router.insert("peerB", b.clone());
        let by = tokio::time::timeout(Duration::from_secs(10), reset.wait_for(|r| r.is_some()))
            .await
            .expect("B was not asked to reset once reachable")
            .unwrap()
            .clone();
        assert_eq!(by.as_deref(), Some("peerA"));
        assert_eq!(b.member_ids(), vec!["peerB"]);
        adder.abort();
        for n in [&a, &b] {
            n.raft.shutdown().await.unwrap();
        }
    }

    /// A one-peer cluster takes no raft traffic from another node; a staging peer does.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_one_peer_cluster_refuses_a_foreign_leader() {
        use openraft::{raft::AppendEntriesRequest, Vote};
        let dir = tempfile::tempdir().unwrap();
        let router = LocalRouter::default();
        let b = start(&router, opts("peerB", dir.path())).await;
        let c = start(&router, staging_opts("peerC", dir.path())).await;
        wait_leader(&b).await;
        let append = |term| {
            let rpc: AppendEntriesRequest<TypeConfig> = AppendEntriesRequest {
                vote: Vote::new_committed(term, node_id("peerA")),
                prev_log_id: None,
                entries: vec![],
                leader_commit: None,
            };
            RaftRequest {
                kind: Kind::AppendEntries as i32,
                body: serde_json::to_vec(&rpc).unwrap(),
            }
        };
        let from_a = Caller::Peer("peerA".into());
        for caller in [&Caller::Local, &from_a] {
            let e = b.handle_raft(caller, append(5)).await.unwrap_err();
            assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
            assert!(
                e.message().contains("one-peer cluster of its own"),
                "{}",
                e.message()
            );
        }
        assert_eq!(b.leader().as_deref(), Some("peerB"), "B still leads itself");
        // A staging (uninitialized) peer accepts the leader that prepared it, only.
        let e = c.handle_raft(&from_a, append(5)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
        assert!(e.message().contains("PrepareAdd"), "{}", e.message());
        let prepare = |leader: &str| RaftRequest {
            kind: Kind::Forward as i32,
            body: serde_json::to_vec(&Forward::PrepareAdd(leader.into())).unwrap(),
        };
        c.handle_raft(&from_a, prepare("peerA")).await.unwrap();
        c.handle_raft(&from_a, append(5)).await.unwrap();
        // Another peer can neither take the add over nor speak for A.
        let from_x = Caller::Peer("peerX".into());
        let e = c.handle_raft(&from_x, prepare("peerX")).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
        let e = c.handle_raft(&from_x, prepare("peerA")).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
        let e = c.handle_raft(&from_x, append(5)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
        assert!(
            e.message().contains("speak for itself") || e.message().contains("staging"),
            "{}",
            e.message()
        );
        for n in [&b, &c] {
            n.raft.shutdown().await.unwrap();
        }
    }

    /// A joiner asks its bootstrap peer who leads before it joins, and takes
    /// `PrepareAdd` from that leader only: a secret holder answering first cannot take the
    /// join over; the real join then completes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_joiner_takes_prepare_add_from_its_bootstrap_peers_leader_only() {
        let dir = tempfile::tempdir().unwrap();
        let router = LocalRouter::default();
        let a = start(&router, opts("peerA", dir.path())).await;
        let c = start(&router, staging_opts("peerC", dir.path())).await;
        wait_leader(&a).await;
        assert_eq!(c.learn_leader_via("peerA").await.unwrap(), "peerA");
        let from_x = Caller::Peer("peerX".into());
        let prepare = |leader: &str| RaftRequest {
            kind: Kind::Forward as i32,
            body: serde_json::to_vec(&Forward::PrepareAdd(leader.into())).unwrap(),
        };
        let e = c.handle_raft(&from_x, prepare("peerX")).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
        assert_eq!(
            e.message(),
            "peer peerC joins through peer peerA, whose leader is peerA; it takes PrepareAdd from that leader only, not from peer peerX"
        );
        // Nothing was claimed: the real leader's add goes through at once.
        c.join_via("peerA").await.unwrap();
        wait_voters(&a, 2).await;
        assert_eq!(a.member_ids(), vec!["peerA", "peerC"]);
        // A peer that knows no leader is no bootstrap peer: the attempt fails (and is
        // retried by join_until) instead of taking any preparer.
        let d = start(&router, staging_opts("peerD", dir.path())).await;
        let e = d.learn_leader_via("peerC").await;
        assert!(e.is_ok() || e.as_ref().unwrap_err().code() == tonic::Code::Unavailable);
        for n in [&a, &c, &d] {
            n.raft.shutdown().await.unwrap();
        }
    }

    /// A member of another multi-peer cluster is refused with a clear error, untouched.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_member_of_another_cluster_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let router = LocalRouter::default();
        let a = start(&router, opts("peerA", dir.path())).await;
        let b = start(&router, opts("peerB", dir.path())).await;
        let c = start(&router, staging_opts("peerC", dir.path())).await;
        wait_leader(&a).await;
        wait_leader(&b).await;
        c.join_via("peerB").await.unwrap();
        wait_voters(&b, 2).await;

        let mut reset = b.reset_requested();
        let e = a.commit(join_of("peerB")).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
        assert_eq!(
            e.message(),
            "peer peerB is a member of another cluster (2 peers); remove it there first"
        );
        assert!(reset.borrow_and_update().is_none());
        assert_eq!(a.member_ids(), vec!["peerA"]);
        assert_eq!(b.member_ids(), vec!["peerB", "peerC"]);
        for n in [&a, &b, &c] {
            n.raft.shutdown().await.unwrap();
        }
    }

    /// b31 in-process: with the only other member gone, an add fails at once (leadership
    /// not confirmed), the target is not touched, and the membership stays at 2 — also when
    /// an uncommitted learner entry is appended behind our back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_add_without_quorum_fails_and_the_members_stay() {
        let dir = tempfile::tempdir().unwrap();
        let router = LocalRouter::default();
        let a = start(&router, opts("peerA", dir.path())).await;
        let b = start(&router, staging_opts("peerB", dir.path())).await;
        let c = start(&router, opts("peerC", dir.path())).await;
        wait_leader(&a).await;
        wait_leader(&c).await;
        b.join_via("peerA").await.unwrap();
        wait_voters(&a, 2).await;
        // B goes down.
        router.remove("peerB");
        b.raft.shutdown().await.unwrap();

        let mut reset = c.reset_requested();
        let e = a.commit(join_of("peerC")).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
        assert!(
            e.message().contains("could not confirm its leadership"),
            "{}",
            e.message()
        );
        assert!(reset.borrow_and_update().is_none(), "C was asked to reset");
        assert_eq!(a.member_ids(), vec!["peerA", "peerB"]);
        assert_eq!(c.member_ids(), vec!["peerC"]);

        // An uncommitted change (appended, never committed) is not reported.
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            a.raft.add_learner(
                node_id("peerD"),
                PeerNode {
                    peer_id: "peerD".into(),
                    addresses: vec![],
                },
                false,
            ),
        )
        .await;
        a.raft
            .wait(Some(Duration::from_secs(5)))
            .metrics(
                |m| {
                    m.membership_config
                        .membership()
                        .get_node(&node_id("peerD"))
                        .is_some()
                },
                "learner appended",
            )
            .await
            .unwrap();
        assert_eq!(a.member_ids(), vec!["peerA", "peerB"]);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(a.member_ids(), vec!["peerA", "peerB"]);
        for n in [&a, &c] {
            n.raft.shutdown().await.unwrap();
        }
    }

    fn forward(f: &Forward) -> RaftRequest {
        RaftRequest {
            kind: Kind::Forward as i32,
            body: serde_json::to_vec(f).unwrap(),
        }
    }

    /// Hole 1 of docs/security.md: a peer holding the secret but not a member sends a one-peer
    /// cluster the forwarded writes that used to be executed: each is refused and nothing
    /// changes (the pin stays, the peer is not removed, not reset, still leads).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stranger_can_neither_write_nor_remove_nor_reset() {
        let dir = tempfile::tempdir().unwrap();
        let router = LocalRouter::default();
        let a = start(&router, opts("peerA", dir.path())).await;
        wait_leader(&a).await;
        a.write(PinOp::Pin(a_pin(1))).await.unwrap();
        let cid = a_pin(1).decode().unwrap().cid;
        let x = Caller::Peer("peerX".into());
        for f in [
            Forward::Op(PinOp::Clear),
            Forward::Unpin(cid.clone()),
            Forward::Pin(a_pin(2)),
            join_of("peerX"),
            Forward::Remove("peerA".into()),
            Forward::Batch(vec![Forward::Op(PinOp::Clear)]),
            Forward::Removed,
        ] {
            let e = a.handle_raft(&x, forward(&f)).await.unwrap_err();
            assert_eq!(e.code(), tonic::Code::PermissionDenied, "{f:?}: {e:?}");
        }
        assert!(
            a.get(&cid).await.unwrap().is_some(),
            "the pin is still there"
        );
        assert!(a
            .get(&a_pin(2).decode().unwrap().cid)
            .await
            .unwrap()
            .is_none());
        assert!(!*a.removed().borrow(), "A was told it is removed");
        assert_eq!(a.member_ids(), vec!["peerA"]);
        assert_eq!(a.leader().as_deref(), Some("peerA"));
        // Vote and AppendEntries claiming to come from A itself are refused too.
        let vote = openraft::raft::VoteRequest {
            vote: openraft::Vote::new(99, node_id("peerA")),
            last_log_id: None,
        };
        let req = RaftRequest {
            kind: Kind::Vote as i32,
            body: serde_json::to_vec(&vote).unwrap(),
        };
        let e = a.handle_raft(&x, req).await.unwrap_err();
        assert!(e.message().contains("speak for itself"), "{}", e.message());
        assert!(
            a.raft.metrics().borrow().current_term < 99,
            "the forged vote reached raft"
        );
        assert_eq!(a.leader().as_deref(), Some("peerA"));
        a.raft.shutdown().await.unwrap();
    }

    /// Hole 2 between members: forwarded writes go to the leader only, `Removed` comes from
    /// the leader only and only once its membership no longer holds the peer, a peer may
    /// not speak for another in raft messages, and `Join` adds only the caller itself.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn members_are_bound_to_their_own_identity() {
        let dir = tempfile::tempdir().unwrap();
        let router = LocalRouter::default();
        let a = start(&router, opts("peerA", dir.path())).await;
        let b = start(&router, staging_opts("peerB", dir.path())).await;
        wait_leader(&a).await;
        b.join_via("peerA").await.unwrap();
        wait_voters(&b, 2).await;
        let from_a = Caller::Peer("peerA".into());
        let from_b = Caller::Peer("peerB".into());
        // B is a follower: a write forwarded to it is refused (retryable), not executed.
        let e = b
            .handle_raft(&from_a, forward(&Forward::Op(PinOp::Clear)))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
        // A member that is not the leader cannot tell another peer it was removed.
        let e = a
            .handle_raft(&from_b, forward(&Forward::Removed))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
        // The leader cannot either while its membership still holds the peer.
        let e = b
            .handle_raft(&from_a, forward(&Forward::Removed))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
        assert!(!*b.removed().borrow() && !*a.removed().borrow());
        // B may not send raft messages in A's name.
        let append = AppendEntriesRequest::<TypeConfig> {
            vote: openraft::Vote::new_committed(50, node_id("peerA")),
            prev_log_id: None,
            entries: vec![],
            leader_commit: None,
        };
        let req = RaftRequest {
            kind: Kind::AppendEntries as i32,
            body: serde_json::to_vec(&append).unwrap(),
        };
        let e = a.handle_raft(&from_b, req).await.unwrap_err();
        assert!(e.message().contains("speak for itself"), "{}", e.message());
        // Join names the caller only.
        let join = ipfs_cluster_proto::consensus::v1::JoinRequest {
            peer_id: "peerZ".into(),
            addresses: vec![],
        };
        let e = router
            .from_peer("peerB")
            .call(
                "peerA",
                "Join",
                join.encode_to_vec(),
                Duration::from_secs(5),
            )
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
        assert_eq!(a.member_ids(), vec!["peerA", "peerB"]);
        // A legitimate write from the member B reaches the leader and commits.
        let pin = b.pin(a_pin(3).decode().unwrap()).await.unwrap();
        assert!(a.get(&pin.cid).await.unwrap().is_some());
        // And a real removal is still taken: A removes B, B is told and stops.
        let mut removed = b.removed();
        a.commit(Forward::Remove("peerB".into())).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), removed.wait_for(|r| *r))
            .await
            .expect("B was not told it was removed")
            .unwrap();
        for n in [&a, &b] {
            n.raft.shutdown().await.unwrap();
        }
    }
}
