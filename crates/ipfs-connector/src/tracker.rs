//! The pin tracker (upstream pintracker/stateless + optracker, cluster-internals.md §3):
//! the shared pinset fed by `Consensus.Watch` kept on disk (`store.rs`, never loaded
//! whole), one in-memory operation per CID only for in-flight and failed work, three bounded queues (priority pins, pins, unpins) drained
//! by `concurrent_pins` pin workers and one unpin worker, and the Status / StatusAll /
//! Recover logic that compares the state with what the daemon really holds.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, RwLock,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use ipfs_cluster_proto::types::v1::{Pin, PinInfo, PinType, TrackerStatus};
use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::{
    kubo::{canonical_cid, parse_cid, IpfsId, Kubo, KuboError, PinKind},
    options::Options,
    store::{Action, Change, Store, StoreError},
};

pub const ERR_QUEUE_FULL: &str =
    "pin/unpin operation queue is full. Try increasing max_pin_queue_size";
pub const ERR_UNEXPECTEDLY_UNPINNED: &str = "the item should be pinned but it is not";
pub const ERR_NOT_SYNCED: &str =
    "the pin tracker has not received the cluster state from the consensus service yet (is ipfs-cluster-consensus running?)";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Pin,
    Unpin,
    Remote,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Queued,
    InProgress,
    Error,
}

#[derive(Debug, Clone)]
struct Operation {
    id: u64,
    kind: OpKind,
    phase: Phase,
    attempts: u32,
    priority: bool,
    error: String,
    ts: i64,
    /// Kept only for unpins (the pin is gone from the store); pins and remote
    /// operations read it from the store when needed, so queued work stays small.
    pin: Option<Box<Pin>>,
    /// Set while the operation runs (queued ones are told apart by `id`), so a long queue
    /// costs no cancellation tokens.
    cancel: Option<CancellationToken>,
}

impl Operation {
    fn status(&self) -> TrackerStatus {
        match (self.kind, self.phase) {
            (OpKind::Pin, Phase::Queued) => TrackerStatus::PinQueued,
            (OpKind::Pin, Phase::InProgress) => TrackerStatus::Pinning,
            (OpKind::Pin, Phase::Error) => TrackerStatus::PinError,
            (OpKind::Unpin, Phase::Queued) => TrackerStatus::UnpinQueued,
            (OpKind::Unpin, Phase::InProgress) => TrackerStatus::Unpinning,
            (OpKind::Unpin, Phase::Error) => TrackerStatus::UnpinError,
            (OpKind::Remote, _) => TrackerStatus::Remote,
        }
    }
}

pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
fn now_secs() -> i64 {
    now_ns() / 1_000_000_000
}

type QueueItem = (String, u64);

/// One event of the watch stream, as the tracker applies it (transient, in batches).
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum StateEvent {
    Change(Change),
    SyncBegin,
    SyncEnd(u64),
}

/// Cheap to clone; all clones share one tracker.
#[derive(Clone)]
pub struct Tracker {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub opts: Options,
    pub kubo: Kubo,
    pub store: Arc<Store>,
    ops: Mutex<HashMap<String, Operation>>,
    next_op: AtomicU64,
    prio_tx: mpsc::Sender<QueueItem>,
    pin_tx: mpsc::Sender<QueueItem>,
    unpin_tx: mpsc::Sender<QueueItem>,
    queues: Mutex<Option<Queues>>,
    /// The daemon answered `id` recently (workers wait on it instead of failing items).
    pub ready: watch::Sender<bool>,
    pub ipfs_id: RwLock<Option<IpfsId>>,
    pub ipfs_error: RwLock<String>,
    /// Wakes the readiness loop when a worker finds the daemon gone.
    pub recheck: Notify,
    pub shutdown: CancellationToken,
}

struct Queues {
    prio_rx: mpsc::Receiver<QueueItem>,
    pin_rx: mpsc::Receiver<QueueItem>,
    unpin_rx: mpsc::Receiver<QueueItem>,
}

impl Tracker {
    /// Opens (or creates) the store in `opts.state_dir`; cheap whatever the pinset size.
    pub fn new(opts: Options, kubo: Kubo, shutdown: CancellationToken) -> Result<Self, StoreError> {
        crate::store::drop_old_state_file(&opts.state_dir);
        let store = Arc::new(Store::open(&opts.state_dir)?);
        let cap = opts.max_pin_queue_size.max(1);
        let (prio_tx, prio_rx) = mpsc::channel(cap);
        let (pin_tx, pin_rx) = mpsc::channel(cap);
        let (unpin_tx, unpin_rx) = mpsc::channel(cap);
        Ok(Self {
            inner: Arc::new(Inner {
                opts,
                kubo,
                store,
                ops: Mutex::new(HashMap::new()),
                next_op: AtomicU64::new(1),
                prio_tx,
                pin_tx,
                unpin_tx,
                queues: Mutex::new(Some(Queues {
                    prio_rx,
                    pin_rx,
                    unpin_rx,
                })),
                ready: watch::channel(false).0,
                ipfs_id: RwLock::new(None),
                ipfs_error: RwLock::new("the IPFS daemon has not answered yet".into()),
                recheck: Notify::new(),
                shutdown,
            }),
        })
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.inner.store
    }

    /// One pin from the store, off the async runtime.
    async fn stored_pin(&self, key: &str) -> Result<Option<Pin>, KuboError> {
        let store = self.inner.store.clone();
        let key = key.to_string();
        tokio::task::spawn_blocking(move || store.get(&key))
            .await
            .map_err(|e| KuboError::Invalid(format!("store task failed: {e}")))?
            .map_err(|e| KuboError::Invalid(e.to_string()))
    }

    pub fn opts(&self) -> &Options {
        &self.inner.opts
    }
    pub fn kubo(&self) -> &Kubo {
        &self.inner.kubo
    }

    /// Starts the pin workers and the unpin worker (once).
    pub fn start_workers(&self) {
        let Some(q) = self.inner.queues.lock().unwrap().take() else {
            return;
        };
        let pins = Arc::new(tokio::sync::Mutex::new((q.prio_rx, q.pin_rx)));
        for _ in 0..self.inner.opts.concurrent_pins.max(1) {
            let t = self.clone();
            let pins = pins.clone();
            tokio::spawn(async move {
                loop {
                    let item = {
                        let mut g = pins.lock().await;
                        let (prio, normal) = &mut *g;
                        tokio::select! {
                            biased;
                            _ = t.inner.shutdown.cancelled() => None,
                            i = prio.recv() => i,
                            i = normal.recv() => i,
                        }
                    };
                    let Some((cid, id)) = item else { break };
                    t.run_op(&cid, id).await;
                }
            });
        }
        let t = self.clone();
        let mut unpin_rx = q.unpin_rx;
        tokio::spawn(async move {
            loop {
                let item = tokio::select! {
                    _ = t.inner.shutdown.cancelled() => None,
                    i = unpin_rx.recv() => i,
                };
                let Some((cid, id)) = item else { break };
                t.run_op(&cid, id).await;
            }
        });
    }

    // ---------------------------------------------------------------- state (store)

    /// The last applied log index (0 = none).
    pub fn last_index(&self) -> u64 {
        self.inner.store.index()
    }
    pub fn is_synced(&self) -> bool {
        self.inner.store.is_synced()
    }

    /// Replaces the stored state without tracking anything (benchmarks). Blocking.
    pub fn load_state(&self, index: u64, pins: Vec<Pin>) -> Result<(), StoreError> {
        self.inner.store.load(index, &pins)
    }

    /// A pin added or replaced at `index` (blocking; the follower batches instead).
    pub fn apply_pin(&self, index: u64, pin: Pin) {
        self.apply_changes_blocking(vec![StateEvent::Change(Change::Pin(index, pin))]);
    }

    /// A pin removed at `index` (blocking; the follower batches instead).
    pub fn apply_unpin(&self, index: u64, pin: Pin) {
        self.apply_changes_blocking(vec![StateEvent::Change(Change::Unpin(index, pin))]);
    }

    /// Applies a batch of watch events off the runtime: consecutive pin changes share one
    /// write transaction.
    pub async fn apply_changes(&self, events: Vec<StateEvent>) {
        let t = self.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || t.apply_changes_blocking(events)).await
        {
            tracing::error!("applying watch changes failed: {e}");
        }
    }

    /// Blocking body of `apply_changes`. A store error is logged; the stream position is
    /// not advanced past a failed batch, so the next reconnect replays it.
    pub fn apply_changes_blocking(&self, events: Vec<StateEvent>) {
        let mut batch: Vec<Change> = Vec::new();
        for ev in events {
            match ev {
                StateEvent::Change(c) => batch.push(c),
                other => {
                    self.flush_batch(&mut batch);
                    match other {
                        StateEvent::SyncBegin => {
                            if let Err(e) = self.inner.store.begin_sync() {
                                tracing::error!("full sync cannot start: {e}");
                            }
                        }
                        StateEvent::SyncEnd(index) => self.end_sync(index),
                        StateEvent::Change(_) => unreachable!(),
                    }
                }
            }
        }
        self.flush_batch(&mut batch);
    }

    fn flush_batch(&self, batch: &mut Vec<Change>) {
        if batch.is_empty() {
            return;
        }
        match self.inner.store.apply(batch) {
            Ok(actions) => self.act(actions),
            Err(e) => tracing::error!(changes = batch.len(), "storing watch changes failed: {e}"),
        }
        batch.clear();
    }

    fn act(&self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Track(p) => self.track(p),
                Action::Untrack(p) => self.untrack(p),
            }
        }
    }

    /// Ends a full sync: pins new or changed are tracked, pins gone are untracked.
    fn end_sync(&self, index: u64) {
        match self.inner.store.end_sync(index, |a| self.act(vec![a])) {
            Ok(Some((added, removed))) => tracing::info!(
                index,
                added,
                removed,
                "full state sync from consensus applied"
            ),
            Ok(None) => tracing::warn!("SYNC_END without SYNC_BEGIN on the watch stream; ignored"),
            Err(e) => tracing::error!("full state sync could not be stored: {e}"),
        }
    }

    /// A sync interrupted by a broken stream is dropped.
    pub fn abort_sync(&self) {
        self.inner.store.abort_sync();
    }

    fn allocated_here(&self, pin: &Pin) -> bool {
        pin.allocations.is_empty()
            || pin
                .allocations
                .iter()
                .any(|a| *a == self.inner.opts.peer_id)
    }

    // ---------------------------------------------------------------- operations

    /// Track (§3.3): meta pins ignored; remote pins are unpinned here; others queued.
    pub fn track(&self, pin: Pin) {
        if pin.r#type == PinType::Meta as i32 {
            return;
        }
        if self.allocated_here(&pin) {
            self.enqueue(pin, OpKind::Pin, false);
        } else {
            self.enqueue(pin, OpKind::Remote, false);
        }
    }

    pub fn untrack(&self, pin: Pin) {
        if pin.r#type == PinType::Meta as i32 {
            return;
        }
        self.enqueue(pin, OpKind::Unpin, false);
    }

    /// `TrackNewOperation` + enqueue. `force` re-queues even a same-kind op in progress
    /// (never used for in-flight work; recover only re-queues error items).
    fn enqueue(&self, pin: Pin, kind: OpKind, force: bool) -> bool {
        let key = canonical_cid(&pin.cid);
        let (id, priority) = {
            let mut ops = self.inner.ops.lock().unwrap();
            let mut attempts = 0;
            if let Some(old) = ops.get_mut(&key) {
                if old.kind == kind && old.phase != Phase::Error && !force {
                    if kind == OpKind::Unpin {
                        old.pin = Some(Box::new(pin));
                    }
                    return false;
                }
                if let Some(c) = &old.cancel {
                    c.cancel();
                }
                if old.kind == kind {
                    attempts = old.attempts;
                }
            }
            let id = self.inner.next_op.fetch_add(1, Ordering::Relaxed);
            let o = &self.inner.opts;
            let young = now_secs()
                < pin
                    .timestamp
                    .saturating_add(o.priority_pin_max_age.as_secs() as i64);
            let priority = kind == OpKind::Pin && young && attempts <= o.priority_pin_max_retries;
            let op = Operation {
                id,
                kind,
                phase: Phase::Queued,
                attempts,
                priority,
                error: String::new(),
                ts: now_ns(),
                pin: (kind == OpKind::Unpin).then(|| Box::new(pin)),
                cancel: None,
            };
            ops.insert(key.clone(), op);
            (id, priority)
        };
        let tx = match kind {
            OpKind::Pin if priority => &self.inner.prio_tx,
            OpKind::Pin => &self.inner.pin_tx,
            OpKind::Unpin | OpKind::Remote => &self.inner.unpin_tx,
        };
        if tx.try_send((key.clone(), id)).is_err() {
            self.set_error(&key, id, ERR_QUEUE_FULL.to_string());
            return false;
        }
        true
    }

    fn set_error(&self, key: &str, id: u64, msg: String) {
        let mut ops = self.inner.ops.lock().unwrap();
        if let Some(op) = ops.get_mut(key) {
            if op.id == id {
                op.phase = Phase::Error;
                op.error = msg;
                op.ts = now_ns();
            }
        }
    }

    /// Worker step for one queued item.
    async fn run_op(&self, key: &str, id: u64) {
        loop {
            // Wait for the daemon rather than failing every queued item while it is down.
            let mut ready = self.inner.ready.subscribe();
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                r = ready.wait_for(|r| *r) => if r.is_err() { return },
            }
            let (kind, pin, cancel) = {
                let mut ops = self.inner.ops.lock().unwrap();
                let Some(op) = ops.get_mut(key) else { return };
                if op.id != id || op.phase != Phase::Queued {
                    return;
                }
                let cancel = self.inner.shutdown.child_token();
                op.phase = Phase::InProgress;
                op.attempts += 1;
                op.ts = now_ns();
                op.cancel = Some(cancel.clone());
                (op.kind, op.pin.clone(), cancel)
            };
            let res = match kind {
                OpKind::Pin => match self.stored_pin(key).await {
                    Ok(Some(pin)) => self.pin_on_ipfs(&pin, &cancel).await,
                    Ok(None) => {
                        // Gone from the state meanwhile (an unpin replaces this op).
                        let mut ops = self.inner.ops.lock().unwrap();
                        if ops.get(key).is_some_and(|o| o.id == id) {
                            ops.remove(key);
                        }
                        return;
                    }
                    Err(e) => Err(e),
                },
                OpKind::Unpin | OpKind::Remote => {
                    let cid = pin.as_ref().map(|p| p.cid.as_str()).unwrap_or(key);
                    self.inner.kubo.pin_rm(cid, &cancel).await
                }
            };
            let mut ops = self.inner.ops.lock().unwrap();
            let Some(op) = ops.get_mut(key) else { return };
            if op.id != id {
                return; // replaced meanwhile
            }
            match res {
                Ok(()) => {
                    ops.remove(key);
                    return;
                }
                Err(e) if e.is_unreachable() && !cancel.is_cancelled() => {
                    // Not the item's fault: put it back and wait for the daemon.
                    op.phase = Phase::Queued;
                    op.cancel = None;
                    op.attempts = op.attempts.saturating_sub(1);
                    op.error = e.to_string();
                    drop(ops);
                    *self.inner.ipfs_error.write().unwrap() = e.to_string();
                    self.inner.ready.send_replace(false);
                    self.inner.recheck.notify_one();
                    continue;
                }
                Err(_) if cancel.is_cancelled() => return,
                Err(e) => {
                    tracing::warn!(cid = key, kind = ?kind, attempts = op.attempts, "IPFS operation failed: {e}");
                    op.phase = Phase::Error;
                    op.cancel = None;
                    op.error = e.to_string();
                    op.ts = now_ns();
                    return;
                }
            }
        }
    }

    /// The pin algorithm (§4.3).
    async fn pin_on_ipfs(&self, pin: &Pin, cancel: &CancellationToken) -> Result<(), KuboError> {
        let want = if pin.max_depth == 0 {
            PinKind::Direct
        } else {
            PinKind::Recursive
        };
        if self.inner.kubo.pin_ls_cid(&pin.cid, want).await? == Some(want) {
            return Ok(());
        }
        if let Some(o) = &pin.options {
            for origin in o.origins.iter().take(10) {
                let k = self.inner.kubo.clone();
                let a = origin.clone();
                tokio::spawn(async move {
                    if let Err(e) = k.swarm_connect(&a).await {
                        tracing::debug!(origin = a, "swarm/connect to pin origin failed: {e}");
                    }
                });
            }
            if !o.pin_update.is_empty()
                && self
                    .inner
                    .kubo
                    .pin_ls_cid(&o.pin_update, PinKind::Recursive)
                    .await
                    .ok()
                    .flatten()
                    == Some(PinKind::Recursive)
            {
                match self
                    .inner
                    .kubo
                    .pin_update(&o.pin_update, &pin.cid, cancel)
                    .await
                {
                    // A daemon without pin/update (js-ipfs answers 404): plain pin/add.
                    Err(KuboError::BadStatus { code: 404, .. })
                    | Err(KuboError::Ipfs { code: 404, .. }) => {
                        tracing::debug!(cid = %pin.cid, "pin/update not supported by the daemon: pin/add instead");
                    }
                    r => return r,
                }
            }
        }
        self.inner
            .kubo
            .pin_add(&pin.cid, pin.max_depth, cancel)
            .await
    }

    /// Pins queued (the pinqueue informer).
    pub fn pin_queue_size(&self) -> u64 {
        self.inner
            .ops
            .lock()
            .unwrap()
            .values()
            .filter(|o| o.kind == OpKind::Pin && o.phase == Phase::Queued)
            .count() as u64
    }

    // ---------------------------------------------------------------- status

    fn base_info(&self, cid: &str, pin: Option<&Pin>) -> PinInfo {
        let id = self.inner.ipfs_id.read().unwrap().clone();
        let mut info = PinInfo {
            cid: cid.to_string(),
            peer: self.inner.opts.peer_id.clone(),
            peername: self.inner.opts.peername.clone(),
            ipfs_peer_id: id.as_ref().map(|i| i.id.clone()).unwrap_or_default(),
            ipfs_peer_addresses: id.map(|i| i.addresses).unwrap_or_default(),
            timestamp: now_ns(),
            ..Default::default()
        };
        if let Some(p) = pin {
            info.cid = p.cid.clone();
            info.allocations = p.allocations.clone();
            info.created = p.timestamp;
            if let Some(o) = &p.options {
                info.name = o.name.clone();
                info.origins = o.origins.clone();
                info.metadata = o.metadata.clone();
            }
        }
        info
    }

    /// `stored`: the pin from the store (pin and remote operations keep none).
    fn op_info(&self, key: &str, op: &Operation, stored: Option<&Pin>) -> PinInfo {
        let mut info = self.base_info(key, op.pin.as_deref().or(stored));
        info.status = op.status() as i32;
        info.timestamp = op.ts;
        info.attempt_count = op.attempts as i32;
        info.priority_pin = op.priority;
        if op.phase == Phase::Error {
            info.error = op.error.clone();
        }
        info
    }

    /// Status(cid) (§3.4), checking the daemon for items believed pinned.
    pub async fn status(&self, cid: &str) -> Result<PinInfo, KuboError> {
        let key = parse_cid(cid)?.to_string();
        let op = self.inner.ops.lock().unwrap().get(&key).cloned();
        if let Some(op) = op {
            let stored = match op.pin {
                Some(_) => None,
                None => self.stored_pin(&key).await?,
            };
            return Ok(self.op_info(cid, &op, stored.as_ref()));
        }
        if !self.is_synced() {
            let mut info = self.base_info(cid, None);
            info.status = TrackerStatus::ClusterError as i32;
            info.error = ERR_NOT_SYNCED.to_string();
            return Ok(info);
        }
        let Some(pin) = self.stored_pin(&key).await? else {
            let mut info = self.base_info(cid, None);
            info.status = TrackerStatus::Unpinned as i32;
            return Ok(info);
        };
        let mut info = self.base_info(cid, Some(&pin));
        if pin.r#type == PinType::Meta as i32 {
            info.status = TrackerStatus::Sharded as i32;
            return Ok(info);
        }
        if !self.allocated_here(&pin) {
            info.status = TrackerStatus::Remote as i32;
            return Ok(info);
        }
        let want = if pin.max_depth == 0 {
            PinKind::Direct
        } else {
            PinKind::Recursive
        };
        match self.inner.kubo.pin_ls_cid(&pin.cid, want).await {
            Ok(Some(PinKind::Indirect)) | Ok(None) => {
                info.status = TrackerStatus::UnexpectedlyUnpinned as i32;
                info.error = ERR_UNEXPECTEDLY_UNPINNED.to_string();
            }
            Ok(Some(_)) => info.status = TrackerStatus::Pinned as i32,
            Err(e) => {
                info.status = TrackerStatus::ClusterError as i32;
                info.error = e.to_string();
            }
        }
        Ok(info)
    }

    /// StatusAll(filter) (§3.5), sent to `out` as produced. `filter` 0 = all. The state
    /// is streamed from the store in chunks (never held whole).
    pub async fn status_all(
        &self,
        filter: u32,
        out: &mpsc::Sender<PinInfo>,
    ) -> Result<(), KuboError> {
        let all = filter == 0;
        let want = |s: TrackerStatus| all || filter & (s as u32) != 0;
        let ops_only = !(want(TrackerStatus::Pinned)
            || want(TrackerStatus::UnexpectedlyUnpinned)
            || want(TrackerStatus::Sharded)
            || want(TrackerStatus::Remote));
        if ops_only {
            let ops: Vec<(String, Operation)> = {
                let ops = self.inner.ops.lock().unwrap();
                ops.iter()
                    .filter(|(_, o)| want(o.status()))
                    .map(|(k, o)| (k.clone(), o.clone()))
                    .collect()
            };
            for (key, op) in ops {
                let stored = match op.pin {
                    Some(_) => None,
                    None => self.stored_pin(&key).await?,
                };
                if out
                    .send(self.op_info(&key, &op, stored.as_ref()))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            return Ok(());
        }
        if !self.is_synced() {
            return Err(KuboError::Invalid(ERR_NOT_SYNCED.to_string()));
        }
        let kubo_pins: Option<HashSet<String>> =
            if want(TrackerStatus::Pinned) || want(TrackerStatus::UnexpectedlyUnpinned) {
                Some(self.inner.kubo.pin_ls_all().await?.into_keys().collect())
            } else {
                None
            };
        // The store is read on the blocking pool, 1024 pins per message, 2 messages ahead.
        let (tx, mut rx) = mpsc::channel::<Vec<Pin>>(2);
        let store = self.inner.store.clone();
        let reader = tokio::task::spawn_blocking(move || {
            store.for_each_chunk(1024, |chunk| tx.blocking_send(chunk).is_ok())
        });
        let mut stopped = false;
        while let Some(chunk) = rx.recv().await {
            let infos: Vec<PinInfo> = {
                let ops = self.inner.ops.lock().unwrap();
                chunk
                    .iter()
                    .filter_map(|p| {
                        let key = canonical_cid(&p.cid);
                        let info = if let Some(op) = ops.get(&key) {
                            self.op_info(&p.cid, op, Some(p))
                        } else {
                            let mut info = self.base_info(&p.cid, Some(p));
                            let st = if p.r#type == PinType::Meta as i32 {
                                TrackerStatus::Sharded
                            } else if !self.allocated_here(p) {
                                TrackerStatus::Remote
                            } else if kubo_pins.as_ref().is_some_and(|k| k.contains(&key)) {
                                TrackerStatus::Pinned
                            } else {
                                info.error = ERR_UNEXPECTEDLY_UNPINNED.to_string();
                                TrackerStatus::UnexpectedlyUnpinned
                            };
                            info.status = st as i32;
                            info
                        };
                        let st = TrackerStatus::try_from(info.status)
                            .unwrap_or(TrackerStatus::Undefined);
                        want(st).then_some(info)
                    })
                    .collect()
            };
            for i in infos {
                if out.send(i).await.is_err() {
                    stopped = true;
                    break;
                }
            }
            if stopped {
                break;
            }
        }
        drop(rx);
        match reader.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(KuboError::Invalid(e.to_string())),
            Err(e) => Err(KuboError::Invalid(format!(
                "store listing task failed: {e}"
            ))),
        }
    }

    // ---------------------------------------------------------------- recover

    /// Recover(cid) (§3.6): re-queues pin_error / unexpectedly_unpinned / unpin_error.
    pub async fn recover(&self, cid: &str) -> Result<PinInfo, KuboError> {
        let info = self.status(cid).await?;
        self.recover_info(info, false).await
    }

    /// Re-queues one item given its status. `automatic` skips items that used up
    /// `max_pin_attempts` (they stay pin_error until recovered by hand).
    async fn recover_info(&self, info: PinInfo, automatic: bool) -> Result<PinInfo, KuboError> {
        let st = TrackerStatus::try_from(info.status).unwrap_or(TrackerStatus::Undefined);
        let max = self.inner.opts.max_pin_attempts;
        if automatic && max > 0 && info.attempt_count as u32 >= max && st == TrackerStatus::PinError
        {
            return Ok(info);
        }
        let key = canonical_cid(&info.cid);
        let mut stored = None;
        match st {
            TrackerStatus::PinError | TrackerStatus::UnexpectedlyUnpinned => {
                let Some(pin) = self.stored_pin(&key).await? else {
                    return Ok(info);
                };
                stored = Some(pin.clone());
                self.enqueue(pin, OpKind::Pin, false);
            }
            TrackerStatus::UnpinError => {
                let pin = self
                    .inner
                    .ops
                    .lock()
                    .unwrap()
                    .get(&key)
                    .and_then(|o| o.pin.clone());
                if let Some(pin) = pin {
                    self.enqueue(*pin, OpKind::Unpin, false);
                }
            }
            _ => return Ok(info),
        }
        let op = self.inner.ops.lock().unwrap().get(&key).cloned();
        Ok(op
            .map(|o| self.op_info(&info.cid, &o, stored.as_ref()))
            .unwrap_or(info))
    }

    /// RecoverAll: every failed or vanished item re-queued; sends the re-queued ones.
    pub async fn recover_all(
        &self,
        automatic: bool,
        out: &mpsc::Sender<PinInfo>,
    ) -> Result<(), KuboError> {
        let filter = TrackerStatus::PinError as u32
            | TrackerStatus::UnpinError as u32
            | TrackerStatus::UnexpectedlyUnpinned as u32;
        let (tx, mut rx) = mpsc::channel(1024);
        let t = self.clone();
        let lister = tokio::spawn(async move { t.status_all(filter, &tx).await });
        while let Some(info) = rx.recv().await {
            if self.inner.shutdown.is_cancelled() {
                break;
            }
            let before = info.status;
            let after = self.recover_info(info, automatic).await?;
            if after.status != before && out.send(after).await.is_err() {
                break;
            }
        }
        lister
            .await
            .map_err(|e| KuboError::Invalid(format!("status listing task failed: {e}")))?
    }

    /// Runs RecoverAll every `pin_recover_interval` (the check for failed and vanished
    /// pins), the first time shortly after start so work queued before a restart resumes.
    pub async fn recover_loop(self, first_delay: Duration) {
        let mut delay = first_delay;
        loop {
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = self
                .inner
                .opts
                .pin_recover_interval
                .max(Duration::from_secs(1));
            if !*self.inner.ready.borrow() || !self.is_synced() {
                continue;
            }
            let (tx, mut rx) = mpsc::channel(1024);
            let drain = tokio::spawn(async move {
                let mut n = 0u64;
                while rx.recv().await.is_some() {
                    n += 1;
                }
                n
            });
            let r = self.recover_all(true, &tx).await;
            drop(tx);
            let n = drain.await.unwrap_or(0);
            match r {
                Ok(()) if n > 0 => tracing::info!(requeued = n, "periodic recover re-queued items"),
                Ok(()) => {}
                Err(e) => tracing::warn!("periodic recover failed: {e}"),
            }
        }
    }

    /// Keeps `ready` and the cached IPFS id current: polls `id` every second while the
    /// daemon is down (warning every 10 tries), every 15 s while it is up.
    pub async fn readiness_loop(self) {
        let mut fails = 0u32;
        loop {
            let wait = match self.inner.kubo.id().await {
                Ok(id) => {
                    if fails > 0 || !*self.inner.ready.borrow() {
                        tracing::info!(ipfs_id = id.id, "IPFS daemon is ready");
                    }
                    fails = 0;
                    *self.inner.ipfs_id.write().unwrap() = Some(id);
                    self.inner.ipfs_error.write().unwrap().clear();
                    self.inner.ready.send_replace(true);
                    Duration::from_secs(15)
                }
                Err(e) => {
                    fails += 1;
                    if fails % 10 == 1 {
                        tracing::warn!("IPFS daemon not ready (try {fails}): {e}");
                    }
                    *self.inner.ipfs_error.write().unwrap() = e.to_string();
                    self.inner.ready.send_replace(false);
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
                _ = self.inner.recheck.notified() => {}
            }
        }
    }
}
