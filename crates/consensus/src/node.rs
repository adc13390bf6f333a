//! The running consensus node: the openraft instance on the redb store, the write path
//! (validate, allocate, commit on the leader; followers forward with upstream's retries),
//! membership changes, and the leader's background duties (expiry).

use std::{
    collections::{BTreeMap, BTreeSet},
    future::Future,
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use openraft::{
    error::{Fatal, RaftError},
    raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest},
    ChangeMembers, RaftMetrics,
};
use prost::Message;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tonic::Status;

use crate::{
    allocate::{allocate, now_nanos, single_peer, AllocInput, MetricStore},
    ids::{node_id, NodeId, PeerNode},
    network::{raft_call, Network, RaftCarrier},
    pinning::{normalize_cid, pin_update, setup_pin, PinDefaults},
    raft_store::{LogStore, StateMachine},
    store::Store,
    types::{ApplyResult, PinBytes, PinOp, Raft, TypeConfig},
};
use ipfs_cluster_proto::{
    consensus::v1::{raft_request::Kind, Member, RaftRequest, RaftResponse},
    types::v1::{Pin, PinType},
    Caller,
};

#[path = "membership.rs"]
mod membership;
pub use membership::{backup_path, PrepareAnswer, RESTART_STAGING_EXIT};

/// Everything the node needs from service.json (consensus.raft + cluster sections).
#[derive(Debug, Clone)]
pub struct Options {
    pub peer_id: String,
    pub addresses: Vec<String>,
    pub data_dir: PathBuf,
    pub defaults: PinDefaults,
    pub init_peerset: Vec<String>,
    pub wait_for_leader_timeout: Duration,
    pub network_timeout: Duration,
    pub commit_retries: u32,
    pub commit_retry_delay: Duration,
    pub heartbeat_timeout: Duration,
    pub election_timeout: Duration,
    pub snapshot_threshold: u64,
    pub trailing_logs: u64,
    pub leave_on_shutdown: bool,
    pub follower_mode: bool,
    pub allocate_by: Vec<String>,
    pub state_sync_interval: Duration,
    pub peer_watch_interval: Duration,
    /// cluster.disable_repinning (upstream default: true = nothing is re-allocated).
    pub disable_repinning: bool,
    /// monitor.pubsubmon.check_interval: how often the leader looks for dead peers.
    pub check_interval: Duration,
    /// How many applied changes a Watch stream may lag before it is ended.
    pub watch_buffer: usize,
    /// Start without bootstrapping: wait to be added by a leader (upstream's staging).
    pub staging: bool,
    /// `consensus.raft.trusted_peers` (docs/security.md, hole 8): `None` = anyone with the secret
    /// may join; otherwise only these peers are added, and a leader removes members that
    /// are not listed (this peer itself excepted).
    pub trusted_peers: Option<BTreeSet<String>>,
}

impl Options {
    pub fn new(peer_id: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        Options {
            peer_id: peer_id.into(),
            addresses: vec![],
            data_dir: data_dir.into(),
            defaults: PinDefaults {
                replication_min: -1,
                replication_max: -1,
            },
            init_peerset: vec![],
            wait_for_leader_timeout: Duration::from_secs(15),
            network_timeout: Duration::from_secs(10),
            commit_retries: 1,
            commit_retry_delay: Duration::from_millis(200),
            heartbeat_timeout: Duration::from_secs(1),
            election_timeout: Duration::from_secs(1),
            snapshot_threshold: 8192,
            trailing_logs: 10240,
            leave_on_shutdown: false,
            follower_mode: false,
            allocate_by: vec!["tag:group".into(), "freespace".into()],
            state_sync_interval: Duration::from_secs(300),
            peer_watch_interval: Duration::from_secs(5),
            disable_repinning: true,
            check_interval: Duration::from_secs(15),
            watch_buffer: crate::store::WATCH_BUFFER,
            staging: false,
            trusted_peers: None,
        }
    }
}

/// A write executed on the leader (locally or forwarded by a follower).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Forward {
    Pin(PinBytes),
    Unpin(String),
    Join(PeerNode),
    Remove(String),
    Op(PinOp),
    /// Sent by the leader to a peer it just removed (a removed peer may never see the
    /// final membership entry, since the leader stops replicating to it).
    Removed,
    /// Several Pin/Unpin writes a follower gathered for one call to the leader; the answer
    /// is one `ForwardResult` per write, in order.
    Batch(Vec<Forward>),
    /// Sent by a leader (its peer id inside) to a peer it is about to add; answered with a
    /// `PrepareAnswer` (see membership.rs).
    PrepareAdd(String),
}

pub type ForwardResult = Result<Option<PinBytes>, (i32, String)>;

/// A `Consensus.Raft` request as another peer sent it, decoded but not yet checked against
/// its sender (see [`Node::handle_raft`]).
#[derive(Debug)]
pub enum RaftMessage {
    AppendEntries(Box<AppendEntriesRequest<TypeConfig>>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(Box<InstallSnapshotRequest<TypeConfig>>),
    Forward(Forward),
}

/// Decodes the body of a `Consensus.Raft` request (JSON of openraft's messages, or a
/// forwarded write) by its kind. Fed by other peers: a bad body or an unknown kind is an
/// INVALID_ARGUMENT, never a panic (fuzzed by tests/fuzz `raft_forward`).
pub fn decode_raft_request(req: &RaftRequest) -> Result<RaftMessage, Status> {
    let bad =
        |e: serde_json::Error| Status::invalid_argument(format!("undecodable raft message: {e}"));
    Ok(match Kind::try_from(req.kind) {
        Ok(Kind::AppendEntries) => {
            RaftMessage::AppendEntries(Box::new(serde_json::from_slice(&req.body).map_err(bad)?))
        }
        Ok(Kind::Vote) => RaftMessage::Vote(serde_json::from_slice(&req.body).map_err(bad)?),
        Ok(Kind::InstallSnapshot) => RaftMessage::InstallSnapshot(Box::new(
            serde_json::from_slice(&req.body).map_err(bad)?,
        )),
        Ok(Kind::Forward) => RaftMessage::Forward(serde_json::from_slice(&req.body).map_err(bad)?),
        _ => {
            return Err(Status::invalid_argument(format!(
                "unknown raft request kind {}; this peer speaks AppendEntries, Vote, InstallSnapshot and Forward",
                req.kind
            )))
        }
    })
}

/// Group commit: at most this many pin/unpin ops go into one raft entry (bounds the entry
/// and so the AppendEntries payload: max_payload_entries of them travel in one call).
pub const MAX_GROUP: usize = 64;
/// Group commits (leader) / batched forwards (follower) in flight at once; new writes wait
/// in the queue meanwhile and form the next group. One: the writes that arrive during a
/// commit all go into the next one, so groups are as big as the load makes them (3 peers,
/// 32 clients: 4.6 → 10.7 pins per entry, ~10 % more pins/s and a lower p50 than with 4;
/// docs/lab/benchmarks-history.md "Ingest: fewer, bigger groups").
const GROUPS_IN_FLIGHT: usize = 1;
/// Bound of the group-commit queues (callers wait when it is full).
const GROUP_QUEUE: usize = 4096;

/// One write waiting for the leader's group commit.
struct PendingWrite {
    op: PinOp,
    done: oneshot::Sender<Result<ApplyResult, Status>>,
}

/// One write waiting to be forwarded to the leader in a batch.
struct PendingForward {
    leader: NodeId,
    f: Forward,
    done: oneshot::Sender<Result<Option<Pin>, Status>>,
}

pub struct Node {
    pub raft: Raft,
    pub store: Store,
    pub opts: Options,
    pub id: NodeId,
    pub metrics: Arc<MetricStore>,
    carrier: Arc<dyn RaftCarrier>,
    /// Set to true when this peer was removed from the cluster (it must shut down).
    removed: watch::Sender<bool>,
    /// One membership change at a time on this leader: openraft refuses a change while
    /// another is uncommitted ("already undergoing a configuration change"), which made
    /// peers joining at the same moment fail their join.
    membership_lock: tokio::sync::Mutex<()>,
    /// Set (once) when raft's core stopped on an error (a failed storage write is fatal
    /// in openraft): the process must exit so the launcher restarts it on a reopened store.
    fatal: watch::Sender<Option<String>>,
    /// election_timeout_max of the raft config: how long a leader may go without a quorum
    /// acknowledgement before it refuses writes (plus the metrics' tick granularity).
    quorum_grace: Duration,
    /// Queue of the leader's group commit (pin/unpin ops gathered into one raft entry).
    group_tx: mpsc::Sender<PendingWrite>,
    /// Queue of the follower's batched forwards to the leader.
    forward_tx: mpsc::Sender<PendingForward>,
    /// Reset requests and the committed membership (membership.rs).
    membership: membership::MembershipState,
    /// The term in which this leader last made sure its state machine holds every entry
    /// committed before it (`ensure_state_current`); 0 = never.
    state_current_term: std::sync::atomic::AtomicU64,
}

fn now_secs() -> i64 {
    now_nanos() / 1_000_000_000
}

fn retryable(s: &Status) -> bool {
    matches!(
        s.code(),
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Aborted
    )
}

/// The message of a stopped raft core (what the caller and the log are told).
fn fatal_message(f: &Fatal<NodeId>) -> String {
    format!(
        "the consensus store failed and raft stopped: {f}; this consensus service exits so the launcher restarts it on the reopened store (free disk space if the disk is full)"
    )
}

fn write_err<E>(e: RaftError<NodeId, E>) -> Status
where
    E: std::error::Error + openraft::TryAsRef<openraft::error::ForwardToLeader<NodeId, PeerNode>>,
{
    if let RaftError::Fatal(f) = &e {
        return match f {
            Fatal::Stopped => Status::unavailable("the consensus service is shutting down; retry"),
            f => Status::unavailable(fatal_message(f)),
        };
    }
    match e.forward_to_leader::<PeerNode>() {
        Some(_) => {
            Status::unavailable("this peer lost the raft leadership during the commit; retry")
        }
        None => Status::internal(format!("raft commit failed: {e}")),
    }
}

fn no_leader(timeout: Duration) -> Status {
    Status::unavailable(format!(
        "no cluster leader reachable within {}s: this peer may be cut off from the majority of the cluster, or the cluster lost its quorum",
        timeout.as_secs_f64()
    ))
}

impl Node {
    /// Opens the store and starts raft. Bootstraps `init_peerset + self` when the store has
    /// no state and the node is not staging.
    pub async fn start(opts: Options, carrier: Arc<dyn RaftCarrier>) -> anyhow::Result<Arc<Node>> {
        let store = Store::open_with(&opts.data_dir, opts.watch_buffer).await?;
        let hb = opts.heartbeat_timeout.as_millis().max(10) as u64;
        let el = opts.election_timeout.as_millis().max(hb as u128 * 3) as u64;
        let config = openraft::Config {
            cluster_name: "ipfs-cluster".into(),
            // openraft bounds every AppendEntries call (heartbeats and log replication) by
            // heartbeat_interval. hb/10 (100 ms by default) made peer calls on a loaded
            // machine (transport hop + an fsync'd append on the follower) time out for good,
            // and followers then started elections. heartbeat_timeout itself keeps heartbeats
            // inside the election timeout (>= 3 hb) while leaving room for slow calls.
            heartbeat_interval: hb,
            election_timeout_min: el,
            election_timeout_max: el * 2,
            max_payload_entries: 64,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(
                opts.snapshot_threshold.max(1),
            ),
            max_in_snapshot_log_to_keep: opts.trailing_logs,
            install_snapshot_timeout: opts.network_timeout.as_millis() as u64,
            // Chunks travel JSON-encoded inside one gRPC message: stay well under 4 MiB.
            snapshot_max_chunk_size: 512 * 1024,
            ..Default::default()
        }
        .validate()
        .map_err(|e| anyhow::anyhow!("consensus.raft timings are invalid: {e}"))?;
        let id = node_id(&opts.peer_id);
        let network = Network {
            carrier: carrier.clone(),
            timeout: opts.network_timeout,
        };
        let raft = Raft::new(
            id,
            Arc::new(config),
            network,
            LogStore(store.clone()),
            StateMachine(store.clone()),
        )
        .await
        .map_err(|e| anyhow::anyhow!("starting raft: {e}"))?;
        let (removed, _) = watch::channel(false);
        let (fatal, _) = watch::channel(None);
        let (group_tx, group_rx) = mpsc::channel(GROUP_QUEUE);
        let (forward_tx, forward_rx) = mpsc::channel(GROUP_QUEUE);
        // Metrics are refreshed at least every tick (1.5 x heartbeat) on an idle leader.
        let quorum_grace = Duration::from_millis(el * 2 + hb * 3 / 2);
        let node = Arc::new(Node {
            raft,
            store,
            opts,
            id,
            metrics: Arc::new(MetricStore::default()),
            carrier,
            removed,
            membership_lock: tokio::sync::Mutex::new(()),
            state_current_term: std::sync::atomic::AtomicU64::new(0),
            fatal,
            quorum_grace,
            group_tx,
            forward_tx,
            membership: Default::default(),
        });
        node.spawn_fatal_watch();
        node.spawn_committed_watch();
        tokio::spawn(run_group_commit(Arc::downgrade(&node), group_rx));
        tokio::spawn(run_forward_batches(Arc::downgrade(&node), forward_rx));
        let initialized = node
            .raft
            .is_initialized()
            .await
            .map_err(|e| anyhow::anyhow!("raft: {e}"))?;
        if !initialized && !node.opts.staging {
            let mut members = BTreeMap::new();
            members.insert(id, node.self_node());
            for p in &node.opts.init_peerset {
                members.insert(
                    node_id(p),
                    PeerNode {
                        peer_id: p.clone(),
                        addresses: vec![],
                    },
                );
            }
            tracing::info!(members = members.len(), "bootstrapping a new raft cluster");
            node.raft
                .initialize(members)
                .await
                .map_err(|e| anyhow::anyhow!("bootstrapping raft: {e}"))?;
        }
        Ok(node)
    }

    pub fn self_node(&self) -> PeerNode {
        PeerNode {
            peer_id: self.opts.peer_id.clone(),
            addresses: self.opts.addresses.clone(),
        }
    }

    pub fn removed(&self) -> watch::Receiver<bool> {
        self.removed.subscribe()
    }

    /// Becomes Some(message) when raft's core stopped on an error (not a normal shutdown).
    pub fn fatal(&self) -> watch::Receiver<Option<String>> {
        self.fatal.subscribe()
    }

    /// Follows raft's metrics: a core that stopped on an error is reported once on `fatal`,
    /// whether or not a write was in flight.
    fn spawn_fatal_watch(self: &Arc<Self>) {
        let mut rx = self.raft.metrics();
        let fatal = self.fatal.clone();
        tokio::spawn(async move {
            loop {
                let state = rx.borrow_and_update().running_state.clone();
                match state {
                    Err(Fatal::Stopped) => return,
                    Err(f) => {
                        let msg = fatal_message(&f);
                        tracing::error!("{msg}");
                        let _ = fatal.send(Some(msg));
                        return;
                    }
                    Ok(()) => {}
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    /// Refuses a write early when raft's core has stopped.
    fn check_core(&self) -> Result<(), Status> {
        match &self.raft.metrics().borrow().running_state {
            Ok(()) => Ok(()),
            Err(Fatal::Stopped) => Err(Status::unavailable(
                "the consensus service is shutting down; retry",
            )),
            Err(f) => Err(Status::unavailable(fatal_message(f))),
        }
    }

    /// On the leader: refuses to write when no quorum acknowledged this leader within the
    /// election timeout. openraft 0.9 keeps a leader that lost its majority as leader, so
    /// without this a partitioned leader would accept writes that can never commit.
    async fn check_quorum(&self) -> Result<(), Status> {
        let grace_ms = self.quorum_grace.as_millis() as u64;
        let me = self.id;
        let acked = move |m: &RaftMetrics<NodeId, PeerNode>| {
            m.current_leader != Some(me)
                || m.millis_since_quorum_ack.is_some_and(|ms| ms <= grace_ms)
        };
        let since = {
            let m = self.raft.metrics().borrow().clone();
            if acked(&m) {
                return self.still_leader();
            }
            m.millis_since_quorum_ack
        };
        // A just-elected leader has no quorum ack yet: give it the grace period once. A
        // stale ack means the majority stopped answering: refuse at once.
        if since.is_none()
            && self
                .raft
                .wait(Some(self.quorum_grace))
                .metrics(acked, "quorum ack")
                .await
                .is_ok()
        {
            return self.still_leader();
        }
        Err(self.no_quorum(""))
    }

    /// UNAVAILABLE for a leader that lost its majority, with how long ago it last had one.
    fn no_quorum(&self, suffix: &str) -> Status {
        let since = self.raft.metrics().borrow().millis_since_quorum_ack;
        let ago = match since {
            Some(ms) => format!("last quorum ack {:.1}s ago", ms as f64 / 1000.0),
            None => "no quorum ack since it was elected".to_string(),
        };
        Status::unavailable(format!(
            "this peer leads but cannot reach a majority of the cluster ({ago}): it is probably partitioned{suffix}"
        ))
    }

    /// Resolves when this peer still leads but its last quorum ack is older than the grace
    /// period (the majority stopped answering while a write was in flight).
    async fn quorum_lost(&self) {
        let grace_ms = self.quorum_grace.as_millis() as u64;
        let me = self.id;
        let lost = move |m: &RaftMetrics<NodeId, PeerNode>| {
            m.current_leader == Some(me) && m.millis_since_quorum_ack.is_none_or(|ms| ms > grace_ms)
        };
        if self
            .raft
            .wait(None)
            .metrics(lost, "quorum lost")
            .await
            .is_err()
        {
            // The metrics channel closed (raft stopped): the write itself reports that.
            std::future::pending::<()>().await;
        }
    }

    fn still_leader(&self) -> Result<(), Status> {
        if self.raft.metrics().borrow().current_leader == Some(self.id) {
            Ok(())
        } else {
            Err(Status::unavailable(
                "this peer lost the raft leadership before the commit; retry",
            ))
        }
    }

    /// The bound of one raft write (commit or membership change) on the leader.
    fn commit_timeout(&self) -> Duration {
        self.opts.network_timeout + self.opts.wait_for_leader_timeout
    }

    /// Runs a raft write future on the leader: refused when the core stopped or the leader
    /// has no quorum, and bounded by `commit_timeout`.
    async fn bounded<T, E, F>(&self, fut: F) -> Result<T, Status>
    where
        F: Future<Output = Result<T, RaftError<NodeId, E>>>,
        E: std::error::Error
            + openraft::TryAsRef<openraft::error::ForwardToLeader<NodeId, PeerNode>>,
    {
        self.check_core()?;
        self.check_quorum().await?;
        let limit = self.commit_timeout();
        tokio::select! {
            r = fut => r.map_err(write_err),
            _ = self.quorum_lost() => {
                Err(self.no_quorum("; the write may or may not be applied"))
            }
            _ = tokio::time::sleep(limit) => {
                self.check_core()?;
                Err(Status::unavailable(format!(
                    "the commit did not complete within {}s (this peer may have lost its majority); the write may or may not be applied",
                    limit.as_secs_f64()
                )))
            }
        }
    }

    /// Commits one op through raft on this leader (see `bounded`).
    pub async fn write(&self, op: PinOp) -> Result<ApplyResult, Status> {
        self.bounded(self.raft.client_write(op))
            .await
            .map(|r| r.data)
    }

    /// `write` through the group commit: concurrent callers' ops share one raft entry.
    pub async fn write_grouped(&self, op: PinOp) -> Result<ApplyResult, Status> {
        let (done, rx) = oneshot::channel();
        self.group_tx
            .send(PendingWrite { op, done })
            .await
            .map_err(|_| Status::unavailable("the consensus service is shutting down; retry"))?;
        rx.await
            .map_err(|_| Status::unavailable("the consensus service is shutting down; retry"))?
    }

    /// Commits a gathered group: one op as itself, several as one `PinOp::Batch` entry;
    /// every caller gets its own op's result (or the commit's error).
    async fn commit_group(&self, group: Vec<PendingWrite>) {
        if group.len() == 1 {
            let w = group.into_iter().next().expect("one write");
            let _ = w.done.send(self.write(w.op).await);
            return;
        }
        let (ops, dones): (Vec<PinOp>, Vec<_>) = group.into_iter().map(|w| (w.op, w.done)).unzip();
        match self.write(PinOp::Batch(ops)).await {
            Ok(r) => {
                let mut results = r.results.into_iter();
                for d in dones {
                    let _ = d.send(Ok(results.next().unwrap_or_default()));
                }
            }
            Err(e) => {
                for d in dones {
                    let _ = d.send(Err(e.clone()));
                }
            }
        }
    }

    /// Forwards a Pin/Unpin through the follower's batcher (one call per gathered batch).
    async fn forward_grouped(&self, leader: NodeId, f: Forward) -> Result<Option<Pin>, Status> {
        let (done, rx) = oneshot::channel();
        self.forward_tx
            .send(PendingForward { leader, f, done })
            .await
            .map_err(|_| Status::unavailable("the consensus service is shutting down; retry"))?;
        rx.await
            .map_err(|_| Status::unavailable("the consensus service is shutting down; retry"))?
    }

    /// Sends one gathered batch of writes to `leader`: a single write as itself, several as
    /// one `Forward::Batch` call; each caller gets its own answer.
    async fn forward_group(&self, leader: NodeId, group: Vec<PendingForward>) {
        if group.len() == 1 {
            let w = group.into_iter().next().expect("one forward");
            let _ = w.done.send(self.forward(leader, &w.f).await);
            return;
        }
        let (fs, dones): (Vec<Forward>, Vec<_>) = group.into_iter().map(|w| (w.f, w.done)).unzip();
        let n = fs.len();
        let res: Result<Vec<ForwardResult>, Status> = self
            .forward_call::<Vec<ForwardResult>>(leader, &Forward::Batch(fs))
            .await
            .and_then(|r| r.map_err(|(code, msg)| Status::new(tonic::Code::from_i32(code), msg)))
            .and_then(|r| {
                if r.len() == n {
                    Ok(r)
                } else {
                    Err(Status::internal(format!(
                        "the leader answered {} results for a batch of {n} writes",
                        r.len()
                    )))
                }
            });
        match res {
            Ok(results) => {
                for (d, r) in dones.into_iter().zip(results) {
                    let _ = d.send(decode_forward_result(r));
                }
            }
            Err(e) => {
                for d in dones {
                    let _ = d.send(Err(e.clone()));
                }
            }
        }
    }

    /// Current members: the last committed membership (an appended but uncommitted change,
    /// e.g. a refused add, is not listed).
    pub fn members(&self) -> Vec<Member> {
        let m = self.committed_membership();
        let voters: BTreeSet<NodeId> = m.voter_ids().collect();
        let mut out: Vec<Member> = m
            .nodes()
            .map(|(id, n)| Member {
                peer_id: n.peer_id.clone(),
                addresses: n.addresses.clone(),
                voter: voters.contains(id),
            })
            .collect();
        out.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        out
    }

    pub fn member_ids(&self) -> Vec<String> {
        self.members().into_iter().map(|m| m.peer_id).collect()
    }

    fn peer_of(&self, id: NodeId) -> Option<String> {
        let m = self.raft.metrics().borrow().membership_config.clone();
        m.membership().get_node(&id).map(|n| n.peer_id.clone())
    }

    pub fn leader(&self) -> Option<String> {
        let l = self.raft.metrics().borrow().current_leader;
        l.and_then(|id| self.peer_of(id))
    }

    async fn wait_leader(&self) -> Result<NodeId, Status> {
        let m = self
            .raft
            .wait(Some(self.opts.wait_for_leader_timeout))
            .metrics(|m| m.current_leader.is_some(), "leader")
            .await
            .map_err(|_| no_leader(self.opts.wait_for_leader_timeout))?;
        m.current_leader
            .ok_or_else(|| no_leader(self.opts.wait_for_leader_timeout))
    }

    /// Runs a write on the leader: locally when we lead, else forwarded; retried as
    /// upstream's commit_retries on transient failures.
    pub async fn commit(&self, f: Forward) -> Result<Option<Pin>, Status> {
        let mut last = no_leader(self.opts.wait_for_leader_timeout);
        // As upstream: commit_retries re-tries of the whole commit, each with up to
        // commit_retries re-tries of the redirect to the leader (2 x heartbeat_timeout apart,
        // long enough for a dead leader to be replaced).
        let retries = self.opts.commit_retries;
        let mut delay = Duration::ZERO;
        // Whether an earlier attempt failed in a way that may have committed it anyway (the
        // leader applied the write but its answer was lost: it crashed, was cut off, timed
        // out). An unpin repeated after that meets "not part of the pinset" for the removal
        // it made itself; as upstream (whose retries re-commit an idempotent "rm" after a
        // single existence check) that is a success, not a 404.
        let mut maybe_applied = false;
        for attempt in 0..=retries {
            for redirect in 0..=retries {
                if attempt + redirect > 0 {
                    tokio::time::sleep(delay).await;
                }
                let leader = match self.wait_leader().await {
                    Ok(l) => l,
                    Err(e) => return Err(e),
                };
                let forwarded = leader != self.id;
                let res = if forwarded {
                    match &f {
                        Forward::Pin(_) | Forward::Unpin(_) => {
                            self.forward_grouped(leader, f.clone()).await
                        }
                        _ => self.forward(leader, &f).await,
                    }
                } else {
                    self.execute(f.clone()).await
                };
                match res {
                    Ok(p) => return Ok(p),
                    Err(e)
                        if maybe_applied
                            && e.code() == tonic::Code::NotFound
                            && matches!(f, Forward::Unpin(_)) =>
                    {
                        tracing::info!(error = %e.message(), "an unpin retried after an unanswered attempt finds the pin gone: the earlier attempt removed it");
                        return Ok(None);
                    }
                    Err(e) if retryable(&e) => {
                        tracing::debug!(attempt, redirect, error = %e.message(), "commit failed; retrying");
                        maybe_applied = true;
                        last = e;
                        if forwarded {
                            delay = self.opts.heartbeat_timeout * 2;
                            continue;
                        }
                        delay = self.opts.commit_retry_delay;
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Err(last)
    }

    async fn forward(&self, leader: NodeId, f: &Forward) -> Result<Option<Pin>, Status> {
        let r: ForwardResult = self.forward_call(leader, f).await?;
        decode_forward_result(r)
    }

    /// One `Forward` call to the leader; `R` is the answer's type.
    async fn forward_call<R: serde::de::DeserializeOwned>(
        &self,
        leader: NodeId,
        f: &Forward,
    ) -> Result<Result<R, (i32, String)>, Status> {
        let peer = self
            .peer_of(leader)
            .ok_or_else(|| Status::unavailable("the leader is not in the membership yet"))?;
        let timeout = self.opts.network_timeout + self.opts.wait_for_leader_timeout;
        // A peer that just joined may not be in the leader's (cached) member list yet, so the
        // leader's transport can refuse us for a moment: retry that for a few seconds.
        let mut tries = 0;
        loop {
            match raft_call(&*self.carrier, &peer, Kind::Forward, f, timeout).await {
                Ok(r) => return Ok(r),
                Err(s) if s.code() == tonic::Code::PermissionDenied && tries < 8 => {
                    tries += 1;
                    tracing::debug!(%peer, error = %s.message(), "leader refused a forwarded write; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(s) => {
                    return Err(Status::new(
                        s.code(),
                        format!("forwarding to the leader {peer}: {}", s.message()),
                    ))
                }
            }
        }
    }

    /// Executes a write here; fails with UNAVAILABLE if we are not the leader.
    pub async fn execute(&self, f: Forward) -> Result<Option<Pin>, Status> {
        match f {
            Forward::Pin(p) => {
                let pin = p
                    .decode()
                    .map_err(|e| Status::invalid_argument(format!("bad pin object: {e}")))?;
                self.pin_here(pin).await.map(Some)
            }
            Forward::Unpin(cid) => self.unpin_here(&cid).await.map(Some),
            Forward::Op(op) => {
                self.write(op).await?;
                Ok(None)
            }
            Forward::Join(node) => self.add_voter(node).await.map(|_| None),
            Forward::Remove(peer) => self.remove_here(&peer).await.map(|_| None),
            Forward::Removed => Err(Status::invalid_argument(
                "Removed is a message from the leader, not a write",
            )),
            Forward::Batch(_) => Err(Status::invalid_argument(
                "a forwarded batch cannot be nested",
            )),
            Forward::PrepareAdd(_) => Err(Status::invalid_argument(
                "PrepareAdd is a raft message, not a write",
            )),
        }
    }

    /// Makes sure this leader's state machine holds every entry committed before its term,
    /// before a write decides from the pinset. A new leader applies its predecessors' last
    /// entries only once its own first entry commits; until then a read may miss a pin that
    /// was acknowledged just before the leader changed (a 5-peer chaos run saw an unpin of
    /// an acknowledged pin answered 404 "not part of the pinset" while the pin stayed).
    /// Costs one quorum round per term (openraft's `ensure_linearizable`).
    async fn ensure_state_current(&self) -> Result<(), Status> {
        use std::sync::atomic::Ordering;
        let term = self.raft.metrics().borrow().current_term;
        if self.state_current_term.load(Ordering::Acquire) == term {
            return Ok(());
        }
        self.check_core()?;
        self.check_quorum().await?;
        let limit = self.commit_timeout();
        match tokio::time::timeout(limit, self.raft.ensure_linearizable()).await {
            Ok(Ok(_)) => {}
            // The heartbeat round found no majority: the same refusal as a write's.
            Ok(Err(RaftError::APIError(
                openraft::error::CheckIsLeaderError::QuorumNotEnough(_),
            ))) => return Err(self.no_quorum("")),
            Ok(Err(e)) => return Err(write_err(e)),
            Err(_) => {
                return Err(Status::unavailable(format!(
                    "this leader could not confirm its state within {}s (it may have lost its majority); retry",
                    limit.as_secs_f64()
                )))
            }
        }
        self.state_current_term.store(term, Ordering::Release);
        Ok(())
    }

    async fn pin_here(&self, mut pin: Pin) -> Result<Pin, Status> {
        self.ensure_state_current().await?;
        let now = now_secs();
        let update_from = pin
            .options
            .as_ref()
            .map(|o| o.pin_update.clone())
            .unwrap_or_default();
        if !update_from.is_empty() && update_from != pin.cid {
            let from_cid = normalize_cid(&update_from).map_err(Status::invalid_argument)?;
            let from = self
                .get(&from_cid)
                .await?
                .ok_or_else(|| Status::not_found("pin is not part of the pinset"))?;
            let p = pin_update(&from, &pin.cid, pin.options.as_ref(), now)
                .map_err(Status::invalid_argument)?;
            self.write_grouped(PinOp::Pin(PinBytes::encode(&p))).await?;
            return Ok(p);
        }
        let existing = self.get(&pin.cid).await?;
        setup_pin(&mut pin, existing.as_ref(), self.opts.defaults, now_nanos())
            .map_err(Status::invalid_argument)?;
        if pin.r#type != PinType::Meta as i32 && pin.allocations.is_empty() {
            pin.allocations = self.allocate_for(&pin, existing.as_ref(), &[])?;
        }
        // user_allocations only guide this allocation: upstream does not persist them, but
        // returns them in the pin it answers with.
        let mut stored = pin.clone();
        if let Some(o) = stored.options.as_mut() {
            o.user_allocations.clear();
        }
        self.write_grouped(PinOp::Pin(PinBytes::encode(&stored)))
            .await?;
        Ok(pin)
    }

    fn allocate_for(
        &self,
        pin: &Pin,
        existing: Option<&Pin>,
        blacklist: &[String],
    ) -> Result<Vec<String>, Status> {
        let o = pin.options.clone().unwrap_or_default();
        let (rmin, rmax) = (o.replication_factor_min, o.replication_factor_max);
        let members = self.member_ids();
        if let Some(r) = single_peer(&members, &self.opts.peer_id, rmin, rmax) {
            return r.map_err(Status::failed_precondition);
        }
        let input = AllocInput {
            existing,
            rmin,
            rmax,
            blacklist,
            priority: &o.user_allocations,
            members: &members,
            allocate_by: &self.opts.allocate_by,
        };
        allocate(&input, &self.metrics, now_nanos()).map_err(Status::failed_precondition)
    }

    async fn unpin_here(&self, cid: &str) -> Result<Pin, Status> {
        self.ensure_state_current().await?;
        let pin = self
            .get(cid)
            .await?
            .ok_or_else(|| Status::not_found("pin is not part of the pinset"))?;
        match PinType::try_from(pin.r#type) {
            Ok(PinType::Shard) => {
                return Err(Status::failed_precondition(
                    "cannot unpin a shard directly. Unpin content root CID instead",
                ))
            }
            Ok(PinType::ClusterDag) => {
                return Err(Status::failed_precondition(
                    "cannot unpin a Cluster DAG directly. Unpin content root CID instead",
                ))
            }
            _ => {}
        }
        self.write_grouped(PinOp::Unpin(cid.to_string())).await?;
        Ok(pin)
    }

    pub async fn get(&self, cid: &str) -> Result<Option<Pin>, Status> {
        self.store
            .get(cid)
            .await
            .map_err(|e| Status::internal(e.to_string()))
    }

    /// Public write: pin (validated and allocated on the leader).
    pub async fn pin(&self, mut pin: Pin) -> Result<Pin, Status> {
        self.check_writable()?;
        pin.cid = normalize_cid(&pin.cid).map_err(Status::invalid_argument)?;
        self.commit(Forward::Pin(PinBytes::encode(&pin)))
            .await?
            .ok_or_else(|| Status::internal("the leader returned no pin"))
    }

    pub async fn unpin(&self, cid: &str) -> Result<Pin, Status> {
        self.check_writable()?;
        let cid = normalize_cid(cid).map_err(Status::invalid_argument)?;
        // The pin as this peer knows it, for the answer when a retried attempt finds that an
        // unanswered earlier one removed it (`commit`).
        let before = self.get(&cid).await.ok().flatten();
        match self.commit(Forward::Unpin(cid.clone())).await? {
            Some(p) => Ok(p),
            None => Ok(before.unwrap_or_else(|| Pin {
                cid,
                r#type: PinType::Data as i32,
                max_depth: -1,
                ..Default::default()
            })),
        }
    }

    fn check_writable(&self) -> Result<(), Status> {
        if self.opts.follower_mode {
            return Err(Status::failed_precondition(
                ipfs_cluster_config::FOLLOWER_MODE_ERROR,
            ));
        }
        Ok(())
    }

    /// `Err` (PERMISSION_DENIED, naming the key) when `trusted_peers` is set and does not
    /// list `peer`.
    pub fn check_trusted(&self, peer: &str) -> Result<(), Status> {
        match &self.opts.trusted_peers {
            Some(t) if !t.contains(peer) && peer != self.opts.peer_id => {
                tracing::warn!(%peer, "refused a join: the peer is not in consensus.raft.trusted_peers");
                Err(Status::permission_denied(format!(
                    "peer {peer} may not join this cluster: it is not in consensus.raft.trusted_peers of peer {} (add its ID there on every peer to let it join)",
                    self.opts.peer_id
                )))
            }
            _ => Ok(()),
        }
    }

    /// On the leader: removes members that `trusted_peers` does not list (revocation).
    async fn remove_untrusted(&self) {
        let Some(t) = &self.opts.trusted_peers else {
            return;
        };
        let m = self.raft.metrics().borrow().membership_config.clone();
        let untrusted: Vec<String> = m
            .membership()
            .nodes()
            .map(|(_, n)| n.peer_id.clone())
            .filter(|p| !t.contains(p) && *p != self.opts.peer_id)
            .collect();
        for peer in untrusted {
            tracing::warn!(%peer, "removing a member that is not in consensus.raft.trusted_peers");
            if let Err(e) = self.remove_here(&peer).await {
                tracing::warn!(%peer, error = %e.message(), "could not remove an untrusted member (retrying later)");
            }
        }
    }

    async fn add_voter(&self, node: PeerNode) -> Result<(), Status> {
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

    async fn remove_here(&self, peer: &str) -> Result<(), Status> {
        let _one_at_a_time = self.membership_lock.lock().await;
        let id = node_id(peer);
        let m = self.raft.metrics().borrow().membership_config.clone();
        let voters: BTreeSet<NodeId> = m.membership().voter_ids().collect();
        let is_node = m.membership().get_node(&id).is_some();
        if !is_node {
            return Ok(());
        }
        if voters.len() == 1 && voters.contains(&id) {
            return Err(Status::failed_precondition(
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

    /// A peer running a one-peer cluster of its own (initialized, its only member is
    /// itself) takes raft traffic from no other node: another cluster's leader must have it
    /// reset first (`Forward::PrepareAdd`), or its log would be overwritten by a foreign
    /// one. Uninitialized (staging) peers and members of larger clusters are not affected.
    fn refuse_foreign_leader(&self, from: NodeId) -> Result<(), Status> {
        if from == self.id {
            return Ok(());
        }
        let m = self.raft.metrics().borrow().membership_config.clone();
        let mut nodes = m.membership().nodes().map(|(id, _)| *id);
        if nodes.next() == Some(self.id) && nodes.next().is_none() {
            return Err(Status::permission_denied(format!(
                "peer {} runs a one-peer cluster of its own and takes no raft traffic from another cluster's node (raft id {from}); add it through POST /peers on that cluster, which resets it first",
                self.opts.peer_id
            )));
        }
        Ok(())
    }

    /// Raft node ids this peer knows as members: the effective membership (possibly not
    /// committed yet, e.g. a voter being added) and the last committed one.
    fn known_nodes(&self) -> BTreeSet<NodeId> {
        let eff = self.raft.metrics().borrow().membership_config.clone();
        let mut nodes: BTreeSet<NodeId> = eff.membership().nodes().map(|(id, _)| *id).collect();
        nodes.extend(self.committed_membership().nodes().map(|(id, _)| *id));
        nodes
    }

    /// AppendEntries / Vote / InstallSnapshot from another peer: the node id the message
    /// names (leader or candidate) must be the sender's own, and the sender must be a
    /// member; a peer in staging takes them only from the leader that prepared it.
    fn check_raft_sender(&self, sender: &str, claimed: NodeId) -> Result<(), Status> {
        let from = node_id(sender);
        if claimed != from {
            return Err(Status::permission_denied(format!(
                "raft message names node {claimed} as its sender, but it was sent by peer {sender} (node {from}); a peer may only speak for itself"
            )));
        }
        self.refuse_foreign_leader(from)?;
        let nodes = self.known_nodes();
        if nodes.is_empty() {
            return self.membership.check_preparer(sender, &self.opts.peer_id);
        }
        if nodes.contains(&from) {
            return Ok(());
        }
        Err(Status::permission_denied(format!(
            "raft traffic is only taken from cluster members, and peer {sender} is not a member of peer {}'s cluster",
            self.opts.peer_id
        )))
    }

    /// A forwarded write (pin, unpin, join, remove, op, batch) from another peer: only
    /// from a member of the committed membership, and only to the leader.
    fn check_forward_from(&self, sender: &str) -> Result<(), Status> {
        if !self
            .committed_membership()
            .nodes()
            .any(|(_, n)| n.peer_id == sender)
        {
            return Err(Status::permission_denied(format!(
                "forwarded writes are only taken from cluster members, and peer {sender} is not a member of peer {}'s cluster",
                self.opts.peer_id
            )));
        }
        if self.raft.metrics().borrow().current_leader != Some(self.id) {
            return Err(Status::unavailable(format!(
                "peer {} is not the raft leader; forward writes to the leader (current: {})",
                self.opts.peer_id,
                self.leader().unwrap_or_else(|| "none".into())
            )));
        }
        Ok(())
    }

    /// `Forward::Removed` from another peer: only from this peer's current raft leader,
    /// and only when that leader's committed membership no longer holds this peer (asked
    /// back: its member list without us, or its transport refusing us as a non-member).
    async fn check_removed_by(&self, sender: &str) -> Result<(), Status> {
        let leader = self.raft.metrics().borrow().current_leader;
        if sender == self.opts.peer_id || leader != Some(node_id(sender)) {
            return Err(Status::permission_denied(format!(
                "only the current raft leader may tell peer {} it was removed, and peer {sender} is not that leader (current: {})",
                self.opts.peer_id,
                self.leader().unwrap_or_else(|| "none".into())
            )));
        }
        // The leader sends Removed once the change is committed, but its own member list
        // may show it a moment later: ask again for most of the leader's call deadline.
        let until = tokio::time::Instant::now() + self.opts.network_timeout * 3 / 4;
        loop {
            let req = ipfs_cluster_proto::consensus::v1::MembersRequest {};
            let still = match self
                .carrier
                .call(sender, "Members", req.encode_to_vec(), self.opts.network_timeout / 4)
                .await
            {
                Ok(bytes) => ipfs_cluster_proto::consensus::v1::MembersResponse::decode(
                    bytes.as_slice(),
                )
                .map_err(|e| {
                    Status::unavailable(format!(
                        "cannot confirm the removal: the leader {sender} sent an undecodable member list: {e}"
                    ))
                })?
                .members
                .iter()
                .any(|m| m.peer_id == self.opts.peer_id),
                // The leader's transport refuses us as a non-member: we are out.
                Err(s) if s.code() == tonic::Code::PermissionDenied => false,
                Err(s) => {
                    return Err(Status::unavailable(format!(
                        "cannot confirm the removal with the leader {sender}: {}",
                        s.message()
                    )))
                }
            };
            if !still {
                return Ok(());
            }
            if tokio::time::Instant::now() >= until {
                return Err(Status::failed_precondition(format!(
                    "the leader {sender} says peer {} was removed, but its committed membership still holds it; not shutting down",
                    self.opts.peer_id
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Handles an incoming `Consensus.Raft` call (raft traffic or a forwarded write).
    /// `caller` is who sent it: another peer (its verified peer id, set by the transport)
    /// is held to the checks above; a local caller (internal token) is the operator.
    pub async fn handle_raft(
        &self,
        caller: &Caller,
        req: RaftRequest,
    ) -> Result<RaftResponse, Status> {
        let enc = |v: &dyn erased::Ser| {
            v.to_json()
                .map_err(|e| Status::internal(format!("encoding raft reply: {e}")))
        };
        let sender = caller.peer();
        let check = |claimed: NodeId| match sender {
            Some(p) => self.check_raft_sender(p, claimed),
            None => self.refuse_foreign_leader(claimed),
        };
        let body = match decode_raft_request(&req)? {
            RaftMessage::AppendEntries(rpc) => {
                check(rpc.vote.leader_id.node_id)?;
                enc(&self.raft.append_entries(*rpc).await)?
            }
            RaftMessage::Vote(rpc) => {
                check(rpc.vote.leader_id.node_id)?;
                enc(&self.raft.vote(rpc).await)?
            }
            RaftMessage::InstallSnapshot(rpc) => {
                check(rpc.vote.leader_id.node_id)?;
                enc(&self.raft.install_snapshot(*rpc).await)?
            }
            RaftMessage::Forward(forward) => {
                let to_result = |r: Result<Option<Pin>, Status>| -> ForwardResult {
                    match r {
                        Ok(p) => Ok(p.map(|p| PinBytes(p.encode_to_vec()))),
                        Err(s) => Err((s.code() as i32, s.message().to_string())),
                    }
                };
                match forward {
                    Forward::PrepareAdd(leader) => {
                        if let Some(p) = sender {
                            if p != leader {
                                return Err(Status::permission_denied(format!(
                                    "PrepareAdd names {leader} as the adding leader, but it was sent by peer {p}; a peer may only speak for itself"
                                )));
                            }
                            if self.known_nodes().is_empty() {
                                self.claim_preparer(p)?;
                            }
                        }
                        let r = self
                            .prepare_add(&leader)
                            .await
                            .map_err(|s| (s.code() as i32, s.message().to_string()));
                        enc(&r)?
                    }
                    Forward::Removed => {
                        if let Some(p) = sender {
                            self.check_removed_by(p).await?;
                        }
                        tracing::warn!(
                            by = sender.unwrap_or("a local caller"),
                            "the leader removed this peer from the cluster"
                        );
                        let _ = self.removed.send(true);
                        enc(&to_result(Ok(None)))?
                    }
                    f => {
                        if let Some(p) = sender {
                            self.check_forward_from(p)?;
                        }
                        match f {
                            // Executed concurrently, so they meet in this leader's group commit.
                            Forward::Batch(fs) => {
                                let rs = futures::future::join_all(
                                    fs.into_iter().map(|f| self.execute(f)),
                                )
                                .await;
                                let all: Result<Vec<ForwardResult>, (i32, String)> =
                                    Ok(rs.into_iter().map(to_result).collect());
                                enc(&all)?
                            }
                            f => enc(&to_result(self.execute(f).await))?,
                        }
                    }
                }
            }
        };
        Ok(RaftResponse { body })
    }

    /// Background duties: notice removal; on the leader, remove expired pins.
    pub fn spawn_background(self: &Arc<Self>) {
        let node = self.clone();
        tokio::spawn(async move {
            let mut was_member = false;
            loop {
                tokio::time::sleep(node.opts.peer_watch_interval).await;
                let m = node.raft.metrics().borrow().membership_config.clone();
                let member = m.membership().get_node(&node.id).is_some();
                if member {
                    was_member = true;
                } else if was_member {
                    tracing::warn!("this peer was removed from the cluster; shutting down");
                    let _ = node.removed.send(true);
                    return;
                }
            }
        });
        if !self.opts.disable_repinning {
            let node = self.clone();
            tokio::spawn(async move {
                let mut alerted = BTreeSet::new();
                loop {
                    tokio::time::sleep(node.opts.check_interval).await;
                    if node.raft.metrics().borrow().current_leader == Some(node.id) {
                        node.check_dead_peers(&mut alerted).await;
                    } else {
                        alerted.clear();
                    }
                }
            });
        }
        if self.opts.trusted_peers.is_some() {
            let node = self.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(node.opts.peer_watch_interval).await;
                    if node.raft.metrics().borrow().current_leader == Some(node.id) {
                        node.remove_untrusted().await;
                    }
                }
            });
        }
        let node = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(node.opts.state_sync_interval).await;
                if node.raft.metrics().borrow().current_leader != Some(node.id) {
                    continue;
                }
                if let Err(e) = node.expire_pins().await {
                    tracing::warn!(error = %e.message(), "removing expired pins");
                }
            }
        });
    }

    /// Re-allocates every pin allocated to `peer` with `peer` blacklisted (upstream's
    /// repinFromPeer / vacatePeer). Pins whose other allocations still meet rmin keep their
    /// allocations; a pin is only re-committed when its allocations change.
    pub async fn vacate(&self, peer: &str) -> Result<usize, Status> {
        let mut rx = self.store.list(0, 256);
        let mut cids = Vec::new();
        while let Some(p) = rx.recv().await {
            let p = p.map_err(|e| Status::internal(e.to_string()))?;
            if p.allocations.iter().any(|a| a == peer) {
                cids.push(p.cid);
            }
        }
        let blacklist = [peer.to_string()];
        let mut changed = 0;
        for cid in cids {
            let Some(existing) = self.get(&cid).await? else {
                continue;
            };
            let mut p = existing.clone();
            p.allocations.clear();
            match self.allocate_for(&p, Some(&existing), &blacklist) {
                Ok(a) if a != existing.allocations => {
                    p.allocations = a;
                    p.timestamp = now_secs();
                    self.write(PinOp::Pin(PinBytes::encode(&p))).await?;
                    changed += 1;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(%cid, %peer, error = %e.message(), "cannot re-allocate pin")
                }
            }
        }
        Ok(changed)
    }

    /// One pass of the leader's failure check: peers whose `ping` metric expired get their
    /// pins re-allocated (once per failure; a fresh ping re-arms it).
    pub async fn check_dead_peers(&self, alerted: &mut BTreeSet<String>) -> usize {
        let members: Vec<String> = self
            .member_ids()
            .into_iter()
            .filter(|p| *p != self.opts.peer_id)
            .collect();
        let dead = self.metrics.expired("ping", &members, now_nanos());
        alerted.retain(|p| dead.contains(p));
        let mut n = 0;
        for p in dead {
            if !alerted.insert(p.clone()) {
                continue;
            }
            tracing::warn!(peer = %p, "peer's ping metric expired; re-allocating its pins");
            match self.vacate(&p).await {
                Ok(k) => n += k,
                Err(e) => tracing::warn!(peer = %p, error = %e.message(), "re-allocating pins"),
            }
        }
        n
    }

    /// Unpins every pin whose expire_at has passed (leader only).
    pub async fn expire_pins(&self) -> Result<usize, Status> {
        let now = now_secs();
        let mut rx = self.store.list(0, 256);
        let mut expired = Vec::new();
        while let Some(p) = rx.recv().await {
            let p = p.map_err(|e| Status::internal(e.to_string()))?;
            if p.options
                .as_ref()
                .is_some_and(|o| o.expire_at != 0 && o.expire_at <= now)
            {
                expired.push(p.cid);
            }
        }
        let n = expired.len();
        for cid in expired {
            tracing::info!(%cid, "pin expired; unpinning");
            self.write(PinOp::Unpin(cid)).await?;
        }
        Ok(n)
    }

    /// Best-effort: leave the cluster (leave_on_shutdown).
    pub async fn leave(&self) -> Result<(), Status> {
        self.commit(Forward::Remove(self.opts.peer_id.clone()))
            .await
            .map(|_| ())
    }

    /// Joins the cluster through `peer` (already connected by the transport). First asks
    /// `peer` who leads: only that leader's `PrepareAdd` is then taken, so another secret
    /// holder cannot answer this staging peer first and take the join over.
    pub async fn join_via(&self, peer: &str) -> Result<(), Status> {
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
    pub(crate) async fn learn_leader_via(&self, peer: &str) -> Result<String, Status> {
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
                Status::new(
                    s.code(),
                    format!(
                        "asking peer {peer} which peer leads its cluster: {}",
                        s.message()
                    ),
                )
            })?;
        let leader = LeaderResponse::decode(out.as_slice())
            .map_err(|e| Status::internal(format!("peer {peer} sent a bad leader answer: {e}")))?
            .peer_id;
        if leader.is_empty() {
            return Err(Status::unavailable(format!(
                "peer {peer} knows no leader at the moment; retry"
            )));
        }
        self.expect_preparer(&leader, peer);
        Ok(leader)
    }
}

fn decode_forward_result(r: ForwardResult) -> Result<Option<Pin>, Status> {
    match r {
        Ok(p) => p
            .map(|b| {
                b.decode()
                    .map_err(|e| Status::internal(format!("leader sent a bad pin: {e}")))
            })
            .transpose(),
        Err((code, msg)) => Err(Status::new(tonic::Code::from_i32(code), msg)),
    }
}

/// Takes the first queued item, then whatever else is already queued (up to `MAX_GROUP`):
/// writes that arrive while earlier groups commit form the next group, so a lone write
/// never waits for company.
async fn gather<T>(rx: &mut mpsc::Receiver<T>) -> Option<Vec<T>> {
    let first = rx.recv().await?;
    let mut group = vec![first];
    while group.len() < MAX_GROUP {
        match rx.try_recv() {
            Ok(x) => group.push(x),
            Err(_) => break,
        }
    }
    Some(group)
}

/// The leader's group commit loop (ends when the node is dropped).
async fn run_group_commit(node: std::sync::Weak<Node>, mut rx: mpsc::Receiver<PendingWrite>) {
    let slots = Arc::new(Semaphore::new(GROUPS_IN_FLIGHT));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(group) = gather(&mut rx).await else {
            return;
        };
        let Some(node) = node.upgrade() else { return };
        tokio::spawn(async move {
            let _slot = slot;
            node.commit_group(group).await;
        });
    }
}

/// The follower's forward batching loop: gathered writes, one call per leader.
async fn run_forward_batches(node: std::sync::Weak<Node>, mut rx: mpsc::Receiver<PendingForward>) {
    let slots = Arc::new(Semaphore::new(GROUPS_IN_FLIGHT));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(group) = gather(&mut rx).await else {
            return;
        };
        let Some(node) = node.upgrade() else { return };
        let mut by_leader: BTreeMap<NodeId, Vec<PendingForward>> = BTreeMap::new();
        for w in group {
            by_leader.entry(w.leader).or_default().push(w);
        }
        tokio::spawn(async move {
            let _slot = slot;
            futures::future::join_all(
                by_leader
                    .into_iter()
                    .map(|(leader, ws)| node.forward_group(leader, ws)),
            )
            .await;
        });
    }
}

/// Tiny helper so handle_raft can JSON-encode the differently typed raft results.
mod erased {
    pub trait Ser {
        fn to_json(&self) -> Result<Vec<u8>, serde_json::Error>;
    }
    impl<T: serde::Serialize> Ser for T {
        fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
            serde_json::to_vec(self)
        }
    }
}

#[cfg(test)]
mod decode_tests {
    use super::*;

    fn seed(name: &str) -> RaftRequest {
        let path = format!(
            "{}/../../tests/fuzz/corpus/raft_forward/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        RaftRequest::decode(bytes.as_slice()).expect("a seed is a RaftRequest")
    }

    /// The fuzz seeds of tests/fuzz `raft_forward` are the messages they claim to be, so
    /// the fuzzer starts past the JSON decoders.
    #[test]
    fn fuzz_seeds_decode_to_their_kind() {
        match decode_raft_request(&seed("append_entries_pins")).unwrap() {
            RaftMessage::AppendEntries(rpc) => assert_eq!(rpc.entries.len(), 5),
            m => panic!("{m:?}"),
        }
        assert!(matches!(
            decode_raft_request(&seed("append_entries_heartbeat")).unwrap(),
            RaftMessage::AppendEntries(_)
        ));
        assert!(matches!(
            decode_raft_request(&seed("vote")).unwrap(),
            RaftMessage::Vote(_)
        ));
        assert!(matches!(
            decode_raft_request(&seed("install_snapshot")).unwrap(),
            RaftMessage::InstallSnapshot(_)
        ));
        for (name, want) in [
            ("forward_pin", "Pin"),
            ("forward_batch", "Batch"),
            ("forward_join", "Join"),
            ("forward_removed", "Removed"),
            ("forward_prepare_add", "PrepareAdd"),
        ] {
            match decode_raft_request(&seed(name)).unwrap() {
                RaftMessage::Forward(f) => {
                    assert!(format!("{f:?}").starts_with(want), "{name}: {f:?}")
                }
                m => panic!("{name}: {m:?}"),
            }
        }
        match decode_raft_request(&seed("forward_pin")).unwrap() {
            RaftMessage::Forward(Forward::Pin(p)) => {
                assert_eq!(
                    p.decode().unwrap().cid,
                    "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
                )
            }
            m => panic!("{m:?}"),
        }
    }

    #[test]
    fn bad_raft_requests_are_invalid_arguments() {
        for req in [
            RaftRequest {
                kind: 9,
                body: b"{}".to_vec(),
            },
            RaftRequest {
                kind: Kind::Vote as i32,
                body: b"[".to_vec(),
            },
            RaftRequest {
                kind: Kind::Forward as i32,
                body: br#"{"Nope":1}"#.to_vec(),
            },
        ] {
            let e = decode_raft_request(&req).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        }
    }
}
