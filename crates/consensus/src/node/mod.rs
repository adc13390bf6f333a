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

use crate::{
    allocate::{allocate_pin, now_nanos, AllocError, PeerMetricStore},
    error::ConsensusError as Error,
    pinning::{normalize_cid, pin_update, setup_pin, PinDefaults},
    raft::{
        command::{ApplyResult, PinBytes, PinOp, Raft, TypeConfig},
        ids::{node_id, NodeId, PeerNode},
        network::{raft_call, Network, RaftCarrier},
        storage::{LogStore, StateMachine},
        store::Store,
    },
};
use ipfs_cluster_proto::{
    consensus::v1::{raft_request::Kind, Member, RaftRequest, RaftResponse},
    types::v1::{Pin, PinType},
    Caller,
};

mod duties;
mod inbound;
mod membership;
mod write;

pub use inbound::{decode_raft_request, RaftMessage};
pub use membership::{backup_path, PrepareAnswer, RESTART_STAGING_EXIT};
use write::{run_forward_batches, run_group_commit};

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
            watch_buffer: crate::raft::store::WATCH_BUFFER,
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
    /// `PrepareAnswer` (see `membership`).
    PrepareAdd(String),
}

pub type ForwardResult = Result<Option<PinBytes>, (i32, String)>;

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
    done: oneshot::Sender<Result<ApplyResult, Error>>,
}

/// One write waiting to be forwarded to the leader in a batch.
struct PendingForward {
    leader: NodeId,
    f: Forward,
    done: oneshot::Sender<Result<Option<Pin>, Error>>,
}

pub struct Node {
    pub raft: Raft,
    pub store: Store,
    pub opts: Options,
    pub id: NodeId,
    pub peer_metrics: Arc<PeerMetricStore>,
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
    /// Reset requests and the committed membership (`membership`).
    membership: membership::MembershipState,
    /// The term in which this leader last made sure its state machine holds every entry
    /// committed before it (`ensure_state_current`); 0 = never.
    state_current_term: std::sync::atomic::AtomicU64,
}

fn now_secs() -> i64 {
    now_nanos() / 1_000_000_000
}

fn retryable(s: &Error) -> bool {
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

fn write_err<E>(e: RaftError<NodeId, E>) -> Error
where
    E: std::error::Error + openraft::TryAsRef<openraft::error::ForwardToLeader<NodeId, PeerNode>>,
{
    if let RaftError::Fatal(f) = &e {
        return match f {
            Fatal::Stopped => Error::ShuttingDown,
            f => Error::unavailable(fatal_message(f)),
        };
    }
    match e.forward_to_leader::<PeerNode>() {
        Some(_) => {
            Error::unavailable("this peer lost the raft leadership during the commit; retry")
        }
        None => Error::internal(format!("raft commit failed: {e}")),
    }
}

fn no_leader(timeout: Duration) -> Error {
    Error::unavailable(format!(
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
            peer_metrics: Arc::new(PeerMetricStore::default()),
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
    fn check_core(&self) -> Result<(), Error> {
        match &self.raft.metrics().borrow().running_state {
            Ok(()) => Ok(()),
            Err(Fatal::Stopped) => Err(Error::unavailable(
                "the consensus service is shutting down; retry",
            )),
            Err(f) => Err(Error::unavailable(fatal_message(f))),
        }
    }

    /// On the leader: refuses to write when no quorum acknowledged this leader within the
    /// election timeout. openraft 0.9 keeps a leader that lost its majority as leader, so
    /// without this a partitioned leader would accept writes that can never commit.
    async fn check_quorum(&self) -> Result<(), Error> {
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
    fn no_quorum(&self, suffix: &str) -> Error {
        let since = self.raft.metrics().borrow().millis_since_quorum_ack;
        let ago = match since {
            Some(ms) => format!("last quorum ack {:.1}s ago", ms as f64 / 1000.0),
            None => "no quorum ack since it was elected".to_string(),
        };
        Error::unavailable(format!(
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

    fn still_leader(&self) -> Result<(), Error> {
        if self.raft.metrics().borrow().current_leader == Some(self.id) {
            Ok(())
        } else {
            Err(Error::unavailable(
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
    async fn bounded<T, E, F>(&self, fut: F) -> Result<T, Error>
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
                Err(Error::unavailable(format!(
                    "the commit did not complete within {}s (this peer may have lost its majority); the write may or may not be applied",
                    limit.as_secs_f64()
                )))
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
}
