//! The pin tracker (upstream pintracker/stateless + optracker):
//! the shared pinset fed by `Consensus.Watch` kept on disk (`store`, never loaded
//! whole), and so are the operations and their three bounded queues (priority pins, pins,
//! unpins): memory holds only a small read-ahead of each queue and the items the
//! `concurrent_pins` pin workers and the one unpin worker are running. Also the Status /
//! StatusAll / Recover logic that compares the state with what the daemon really holds.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{
        atomic::{AtomicBool, Ordering},
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
};
use ipfs_cluster_runtime::{ErrorCode, ServiceError};
use store::{Action, Change, OpRecord, OpsWriter, QueueClass, Store, StoreError};

pub mod follower;
pub mod prometheus;
pub mod store;

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

/// How an operation looks to Status (built from its stored record and, while a worker
/// holds it, the worker's in-memory state).
#[derive(Debug, Clone)]
struct Operation {
    kind: OpKind,
    phase: Phase,
    attempts: u32,
    priority: bool,
    error: String,
    ts: i64,
    /// Kept only for unpins (the pin is gone from the store); pins and remote
    /// operations read it from the store when needed.
    pin: Option<Pin>,
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

impl OpKind {
    fn code(self) -> u32 {
        match self {
            OpKind::Pin => 0,
            OpKind::Unpin => 1,
            OpKind::Remote => 2,
        }
    }
    fn from_code(v: u32) -> OpKind {
        match v {
            0 => OpKind::Pin,
            1 => OpKind::Unpin,
            _ => OpKind::Remote,
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

/// Queue entries read ahead from the store per queue (the in-memory window is this plus
/// one entry per worker).
pub const PREFETCH: usize = 64;

/// One event of the watch stream, as the tracker applies it (transient, in batches).
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum StateEvent {
    Change(Change),
    SyncBegin,
    SyncEnd(u64),
}

/// Queue sizes, cheap to read (no store access): the pinqueue informer and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// Waiting in the priority / normal pin queue, and the unpin queue (unpins and
    /// remote unpins).
    pub priority: u64,
    pub pin: u64,
    pub unpin: u64,
    /// Taken by a worker and running on the daemon.
    pub in_progress: u64,
}

/// Cheap to clone; all clones share one tracker.
#[derive(Clone)]
pub struct Tracker {
    pub(crate) inner: Arc<Inner>,
}

/// An item a worker holds (running, or waiting for the daemon to come back).
struct Running {
    seq: u64,
    class: QueueClass,
    /// Attempts stored before this run.
    attempts: u32,
    /// Waiting for the daemon: shown as queued.
    waiting: bool,
    ts: i64,
    cancel: CancellationToken,
}

/// The in-memory part of the queues: a small read-ahead of each queue table and the items
/// the workers hold. Bounded by `PREFETCH` + the number of workers, whatever the queue size.
#[derive(Default)]
struct Window {
    buf: [VecDeque<(u64, String)>; 3],
    /// Highest sequence read ahead per queue (queue keys only grow).
    cursor: [u64; 3],
    running: HashMap<String, Running>,
    /// Keys whose running pin was cancelled by an unpin: dropping the `pin/add` request
    /// does not stop Kubo from finishing that pin a moment later, so the unpin is
    /// repeated once after `CUT_PIN_SETTLE`.
    cut_pins: std::collections::HashSet<String>,
}

/// Failures of one operation blamed on the daemon going away before it counts as failed.
const MAX_CUT_SHORT: u32 = 5;

/// How long after unpinning a CID whose pin was cut short the unpin is repeated.
const CUT_PIN_SETTLE: Duration = Duration::from_secs(1);

pub(crate) struct Inner {
    pub opts: Options,
    pub kubo: Kubo,
    pub store: Arc<Store>,
    window: Mutex<Window>,
    /// Wakes idle workers when work was queued.
    work: Notify,
    workers_started: AtomicBool,
    /// The daemon answered `id` recently (workers wait on it instead of failing items).
    pub ready: watch::Sender<bool>,
    pub ipfs_id: RwLock<Option<IpfsId>>,
    pub ipfs_error: RwLock<String>,
    /// Wakes the readiness loop when a worker finds the daemon gone.
    pub recheck: Notify,
    pub shutdown: CancellationToken,
    /// Set when storing watch changes failed (e.g. a full disk): redb refuses every later
    /// write until the database is reopened, so the service restarts (run.rs) once the disk
    /// takes writes again; the watch then replays from the last stored index.
    pub store_failed: watch::Sender<Option<String>>,
}

/// An item taken from a queue by a worker.
struct Claimed {
    key: String,
    seq: u64,
    class: QueueClass,
    kind: OpKind,
    pin: Option<Pin>,
    cancel: CancellationToken,
}

/// How a worker's run ended.
enum Outcome {
    Done,
    Failed(String, u32),
    /// Cancelled by a newer operation (or not replaced after all: taken again).
    Cancelled,
}

/// What the tracker's operations fail with: the daemon's errors, and its own (the store,
/// its blocking tasks, not being synced yet). Store failures are this peer's fault
/// (INTERNAL), never a bad request.
#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    #[error(transparent)]
    Kubo(#[from] KuboError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{what} task failed: {source}")]
    Task {
        what: &'static str,
        source: tokio::task::JoinError,
    },
    #[error("{}", ERR_NOT_SYNCED)]
    NotSynced,
}

impl ServiceError for TrackerError {
    fn error_code(&self) -> ErrorCode {
        match self {
            TrackerError::Kubo(e) => e.error_code(),
            TrackerError::Store(_) | TrackerError::Task { .. } => ErrorCode::Internal,
            TrackerError::NotSynced => ErrorCode::FailedPrecondition,
        }
    }
}

impl TrackerError {
    /// True when the daemon itself could not be reached (not an answer from it).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, TrackerError::Kubo(e) if e.is_unreachable())
    }
}

fn task_err(what: &'static str) -> impl FnOnce(tokio::task::JoinError) -> TrackerError {
    move |source| TrackerError::Task { what, source }
}

impl Tracker {
    /// Opens (or creates) the store in `opts.state_dir`; cheap whatever the pinset size.
    pub fn new(opts: Options, kubo: Kubo, shutdown: CancellationToken) -> Result<Self, StoreError> {
        store::drop_old_state_file(&opts.state_dir);
        let store = Arc::new(Store::open(&opts.state_dir)?);
        Ok(Self {
            inner: Arc::new(Inner {
                opts,
                kubo,
                store,
                window: Mutex::new(Window::default()),
                work: Notify::new(),
                workers_started: AtomicBool::new(false),
                ready: watch::channel(false).0,
                ipfs_id: RwLock::new(None),
                ipfs_error: RwLock::new("the IPFS daemon has not answered yet".into()),
                recheck: Notify::new(),
                shutdown,
                store_failed: watch::channel(None).0,
            }),
        })
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.inner.store
    }

    /// Runs a blocking store call off the async runtime.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Tracker) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, TrackerError> {
        let t = self.clone();
        Ok(tokio::task::spawn_blocking(move || f(&t))
            .await
            .map_err(task_err("store"))??)
    }

    /// One pin from the store, off the async runtime.
    async fn stored_pin(&self, key: &str) -> Result<Option<Pin>, TrackerError> {
        let key = key.to_string();
        self.blocking(move |t| t.inner.store.get(&key)).await
    }

    pub fn opts(&self) -> &Options {
        &self.inner.opts
    }
    pub fn kubo(&self) -> &Kubo {
        &self.inner.kubo
    }

    /// Starts the pin workers and the unpin worker (once).
    pub fn start_workers(&self) {
        if self.inner.workers_started.swap(true, Ordering::AcqRel) {
            return;
        }
        const PINS: &[QueueClass] = &[QueueClass::Priority, QueueClass::Pin];
        const UNPINS: &[QueueClass] = &[QueueClass::Unpin];
        for _ in 0..self.inner.opts.concurrent_pins.max(1) {
            tokio::spawn(self.clone().worker(PINS));
        }
        tokio::spawn(self.clone().worker(UNPINS));
    }

    async fn worker(self, classes: &'static [QueueClass]) {
        loop {
            let notified = self.inner.work.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.inner.shutdown.is_cancelled() {
                return;
            }
            let t = self.clone();
            match tokio::task::spawn_blocking(move || t.claim(classes)).await {
                Ok(Ok(Some(c))) => self.run_op(c).await,
                Ok(Ok(None)) => {
                    tokio::select! {
                        _ = self.inner.shutdown.cancelled() => return,
                        _ = &mut notified => {}
                    }
                }
                Ok(Err(StoreError::Closed)) => return,
                r => {
                    let e = match r {
                        Ok(Err(e)) => e.to_string(),
                        Err(e) => e.to_string(),
                        Ok(Ok(_)) => unreachable!(),
                    };
                    tracing::error!("pin tracker worker cannot read its queue: {e}");
                    tokio::select! {
                        _ = self.inner.shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }

    /// Takes the next item of the first non-empty queue of `classes` (blocking): from the
    /// read-ahead window, refilled from the store when empty. Stale entries (replaced or
    /// failed meanwhile, or their CID held by another worker) are skipped; a CID held by
    /// another worker is handed back when that worker finishes.
    fn claim(&self, classes: &[QueueClass]) -> Result<Option<Claimed>, StoreError> {
        let store = &self.inner.store;
        let mut win = self.inner.window.lock().unwrap();
        for &c in classes {
            let ci = c as usize;
            loop {
                if win.buf[ci].is_empty() {
                    let got = store.next_queued(c, win.cursor[ci], PREFETCH)?;
                    let Some(&(last, _)) = got.last() else { break };
                    win.cursor[ci] = last;
                    win.buf[ci].extend(got);
                }
                let Some((seq, key)) = win.buf[ci].pop_front() else {
                    break;
                };
                if win.running.contains_key(&key) {
                    continue;
                }
                let Some(rec) = store.op(&key)? else { continue };
                if rec.failed || rec.seq != seq {
                    continue;
                }
                let cancel = self.inner.shutdown.child_token();
                let kind = OpKind::from_code(rec.kind);
                win.running.insert(
                    key.clone(),
                    Running {
                        seq,
                        class: c,
                        attempts: rec.attempts,
                        waiting: true,
                        ts: now_ns(),
                        cancel: cancel.clone(),
                    },
                );
                return Ok(Some(Claimed {
                    key,
                    seq,
                    class: c,
                    kind,
                    pin: rec.pin,
                    cancel,
                }));
            }
        }
        Ok(None)
    }

    fn set_running(&self, key: &str, waiting: bool) {
        if let Some(r) = self.inner.window.lock().unwrap().running.get_mut(key) {
            r.waiting = waiting;
            r.ts = now_ns();
        }
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
    /// write transaction (with the operations they queue).
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
        match self
            .inner
            .store
            .apply_with(batch, |w, a| self.act(w, a).map(|_| ()))
        {
            Ok(_) => self.inner.work.notify_waiters(),
            Err(e) => {
                tracing::error!(changes = batch.len(), "storing watch changes failed: {e}");
                self.inner.store_failed.send_if_modified(|f| {
                    let first = f.is_none();
                    if first {
                        *f = Some(e.to_string());
                    }
                    first
                });
            }
        }
        batch.clear();
    }

    fn act(&self, w: &mut OpsWriter<'_>, a: Action) -> Result<bool, StoreError> {
        match a {
            Action::Track(p) => self.track(w, p),
            Action::Untrack(p) => self.untrack(w, p),
        }
    }

    /// Ends a full sync: pins new or changed are tracked, pins gone are untracked.
    fn end_sync(&self, index: u64) {
        match self
            .inner
            .store
            .end_sync_with(index, |w, a| self.act(w, a).map(|_| ()))
        {
            Ok(Some((added, removed))) => {
                self.inner.work.notify_waiters();
                tracing::info!(
                    index,
                    added,
                    removed,
                    "full state sync from consensus applied"
                )
            }
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

    /// Track: meta pins ignored; remote pins are unpinned here; others queued.
    fn track(&self, w: &mut OpsWriter<'_>, pin: Pin) -> Result<bool, StoreError> {
        if pin.r#type == PinType::Meta as i32 {
            return Ok(false);
        }
        let kind = if self.allocated_here(&pin) {
            OpKind::Pin
        } else {
            OpKind::Remote
        };
        self.enqueue_in(w, pin, kind, false)
    }

    fn untrack(&self, w: &mut OpsWriter<'_>, pin: Pin) -> Result<bool, StoreError> {
        if pin.r#type == PinType::Meta as i32 {
            return Ok(false);
        }
        self.enqueue_in(w, pin, OpKind::Unpin, false)
    }

    /// `TrackNewOperation` + enqueue, inside a store write transaction. `force` re-queues
    /// even a same-kind op (never used for in-flight work; recover only re-queues error
    /// items). An operation of another kind replaces the old one and cancels it if a worker
    /// is running it. A full queue stores the item as failed with `ERR_QUEUE_FULL`.
    fn enqueue_in(
        &self,
        w: &mut OpsWriter<'_>,
        pin: Pin,
        kind: OpKind,
        force: bool,
    ) -> Result<bool, StoreError> {
        let key = canonical_cid(&pin.cid);
        let mut attempts = 0;
        if let Some(mut old) = w.get(&key)? {
            let old_kind = OpKind::from_code(old.kind);
            if old_kind == kind && !old.failed && !force {
                if kind == OpKind::Unpin {
                    old.pin = Some(pin);
                    w.put(&key, &old)?;
                }
                return Ok(false);
            }
            if !old.failed {
                w.unqueue(QueueClass::from_u32(old.class), old.seq)?;
            }
            if old_kind == kind {
                attempts = old.attempts;
            }
        }
        {
            let mut win = self.inner.window.lock().unwrap();
            let cut_pin = match win.running.get(&key) {
                Some(r) => {
                    r.cancel.cancel();
                    kind == OpKind::Unpin && r.class != QueueClass::Unpin
                }
                None => false,
            };
            if cut_pin {
                win.cut_pins.insert(key.clone());
            }
        }
        let o = &self.inner.opts;
        let young = now_secs()
            < pin
                .timestamp
                .saturating_add(o.priority_pin_max_age.as_secs() as i64);
        let priority = kind == OpKind::Pin && young && attempts <= o.priority_pin_max_retries;
        let class = match kind {
            OpKind::Pin if priority => QueueClass::Priority,
            OpKind::Pin => QueueClass::Pin,
            OpKind::Unpin | OpKind::Remote => QueueClass::Unpin,
        };
        let mut rec = OpRecord {
            kind: kind.code(),
            failed: false,
            attempts,
            priority,
            ts: now_ns(),
            seq: 0,
            class: class as u32,
            error: String::new(),
            pin: (kind == OpKind::Unpin).then_some(pin),
        };
        if w.queue_len(class)? >= o.max_pin_queue_size.max(1) as u64 {
            rec.failed = true;
            rec.error = ERR_QUEUE_FULL.to_string();
            w.put(&key, &rec)?;
            return Ok(false);
        }
        rec.seq = w.push(class, &key)?;
        w.put(&key, &rec)?;
        Ok(true)
    }

    /// `enqueue_in` in its own transaction, off the runtime.
    async fn enqueue(&self, pin: Pin, kind: OpKind, force: bool) -> Result<bool, TrackerError> {
        let queued = self
            .blocking(move |t| {
                t.inner
                    .store
                    .write_ops(|w| t.enqueue_in(w, pin, kind, force))
            })
            .await?;
        if queued {
            self.inner.work.notify_waiters();
        }
        Ok(queued)
    }

    /// Records how a worker's run ended (blocking) and releases the item.
    fn finish(&self, c: &Claimed, outcome: Outcome) {
        let r = self.inner.store.write_ops(|w| {
            let Some(mut rec) = w.get(&c.key)? else {
                return Ok(None);
            };
            if rec.failed {
                return Ok(None);
            }
            if rec.seq != c.seq {
                // Replaced by a newer queued operation: hand it back to the queue.
                return Ok(Some((rec.seq, QueueClass::from_u32(rec.class))));
            }
            match outcome {
                Outcome::Done => {
                    w.remove(&c.key)?;
                    Ok(None)
                }
                Outcome::Failed(msg, attempts) => {
                    w.unqueue(c.class, c.seq)?;
                    rec.failed = true;
                    rec.error = msg;
                    rec.attempts = attempts;
                    rec.ts = now_ns();
                    w.put(&c.key, &rec)?;
                    Ok(None)
                }
                Outcome::Cancelled => Ok(Some((c.seq, c.class))),
            }
        });
        let mut win = self.inner.window.lock().unwrap();
        if win.running.get(&c.key).is_some_and(|r| r.seq == c.seq) {
            win.running.remove(&c.key);
        }
        match r {
            Ok(Some((seq, class))) => {
                win.buf[class as usize].push_front((seq, c.key.clone()));
                drop(win);
                self.inner.work.notify_waiters();
            }
            Ok(None) => {}
            Err(e) => tracing::error!(
                cid = c.key,
                "cannot record the end of an IPFS operation: {e}"
            ),
        }
    }

    /// Worker step for one claimed item.
    async fn run_op(&self, c: Claimed) {
        let (key, cancel) = (c.key.as_str(), c.cancel.clone());
        let attempts = self
            .inner
            .window
            .lock()
            .unwrap()
            .running
            .get(key)
            .map(|r| r.attempts)
            .unwrap_or(0)
            + 1;
        // Failures blamed on the daemon going away are retried like an unreachable
        // daemon, a bounded number of times (a daemon that keeps answering the same error
        // fails the item).
        let mut cut_short = 0u32;
        let outcome = loop {
            // Wait for the daemon rather than failing every queued item while it is down.
            let mut ready = self.inner.ready.subscribe();
            tokio::select! {
                _ = cancel.cancelled() => break Outcome::Cancelled,
                r = ready.wait_for(|r| *r) => if r.is_err() { break Outcome::Cancelled },
            }
            self.set_running(key, false);
            let res = match c.kind {
                OpKind::Pin => match self.stored_pin(key).await {
                    Ok(Some(pin)) => self.pin_on_ipfs(&pin, &cancel).await.map_err(Into::into),
                    // Gone from the state meanwhile (an unpin replaces this op).
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                },
                OpKind::Unpin | OpKind::Remote => {
                    let cid = c.pin.as_ref().map(|p| p.cid.as_str()).unwrap_or(key);
                    let r = self.inner.kubo.pin_rm(cid, &cancel).await;
                    if r.is_ok() && self.inner.window.lock().unwrap().cut_pins.remove(key) {
                        tokio::select! {
                            _ = cancel.cancelled() => {}
                            _ = tokio::time::sleep(CUT_PIN_SETTLE) => {}
                        }
                        self.inner
                            .kubo
                            .pin_rm(cid, &cancel)
                            .await
                            .map_err(Into::into)
                    } else {
                        r.map_err(Into::into)
                    }
                }
            };
            // A failure while the daemon is going away (a request cut by its crash, or
            // answered "context canceled" by its shutdown) is the daemon's, not the
            // item's: if the daemon does not answer right after, wait for it like for
            // an unreachable one instead of parking the item in pin_error/unpin_error
            // until the next periodic recover (12 min by default).
            let res = match res {
                Err(TrackerError::Kubo(e))
                    if !e.is_unreachable()
                        && !cancel.is_cancelled()
                        && cut_short < MAX_CUT_SHORT
                        && self.daemon_going_away(&e, cut_short).await =>
                {
                    // A stopping Kubo still answers `id` (so it looks ready again at once)
                    // while its pinner refuses work: spread the bounded retries over ~15 s
                    // (0.5, 1, 2, 4, 8 s) so they outlast its shutdown instead of being
                    // used up within milliseconds (seen in the chaos runs: five "ready"
                    // in 10 ms, then pin_error until the next periodic recover).
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        _ = tokio::time::sleep(Duration::from_millis(500u64 << cut_short)) => {}
                    }
                    cut_short += 1;
                    Err(KuboError::Unreachable {
                        addr: self.inner.kubo.addr().to_string(),
                        path: format!("{:?}", c.kind).to_lowercase(),
                        reason: format!("the daemon went away during the request ({e})"),
                    }
                    .into())
                }
                r => r,
            };
            match res {
                Ok(()) => break Outcome::Done,
                Err(e) if e.is_unreachable() && !cancel.is_cancelled() => {
                    // Not the item's fault: back to queued, wait for the daemon.
                    self.set_running(key, true);
                    *self.inner.ipfs_error.write().unwrap() = e.to_string();
                    self.inner.ready.send_replace(false);
                    self.inner.recheck.notify_one();
                }
                Err(_) if cancel.is_cancelled() => break Outcome::Cancelled,
                Err(e) => {
                    tracing::warn!(cid = key, kind = ?c.kind, attempts, "IPFS operation failed: {e}");
                    break Outcome::Failed(e.to_string(), attempts);
                }
            }
        };
        if self.inner.shutdown.is_cancelled() {
            return; // stays queued in the store: the next start resumes it
        }
        let t = self.clone();
        let _ = tokio::task::spawn_blocking(move || t.finish(&c, outcome)).await;
    }

    /// Was this failure the daemon going away rather than the item's? Kubo answers
    /// requests caught in its shutdown with errors such as "pinner closed" or "context
    /// canceled" while its API still answers `id`; otherwise, a daemon that stops
    /// answering right after the failure (waited a little longer each time) went away.
    async fn daemon_going_away(&self, e: &KuboError, tries: u32) -> bool {
        if let KuboError::Ipfs { message, .. } = e {
            let m = message.to_ascii_lowercase();
            if m.contains("closed") || m.contains("context canceled") || m.contains("shutting down")
            {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(200 * (tries as u64 + 1))).await;
        !matches!(
            tokio::time::timeout(Duration::from_secs(2), self.inner.kubo.id()).await,
            Ok(Ok(_))
        )
    }

    /// The pin algorithm.
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
                return self
                    .inner
                    .kubo
                    .pin_update(&o.pin_update, &pin.cid, cancel)
                    .await;
            }
        }
        self.inner
            .kubo
            .pin_add(&pin.cid, pin.max_depth, cancel)
            .await
    }

    /// Queue sizes from counters kept at each commit (never touches the store).
    pub fn queue_counts(&self) -> QueueCounts {
        let s = &self.inner.store;
        let win = self.inner.window.lock().unwrap();
        let mut held = [0u64; 3];
        let mut in_progress = 0;
        for r in win.running.values() {
            if !r.waiting {
                held[r.class as usize] += 1;
                in_progress += 1;
            }
        }
        QueueCounts {
            priority: s.queue_len(QueueClass::Priority).saturating_sub(held[0]),
            pin: s.queue_len(QueueClass::Pin).saturating_sub(held[1]),
            unpin: s.queue_len(QueueClass::Unpin).saturating_sub(held[2]),
            in_progress,
        }
    }

    /// Pins queued (the pinqueue informer).
    pub fn pin_queue_size(&self) -> u64 {
        let c = self.queue_counts();
        c.priority + c.pin
    }

    // ---------------------------------------------------------------- status

    fn base_info(&self, cid: &str, pin: Option<&Pin>) -> PinInfo {
        let id = self.inner.ipfs_id.read().unwrap().clone();
        let mut info = PinInfo {
            cid: cid.to_string(),
            peer: self.inner.opts.peer_id.clone(),
            peername: self.inner.opts.peername.clone(),
            ipfs_peer_id: id.as_ref().map(|i| i.id.clone()).unwrap_or_default(),
            ipfs_peer_addresses: id.map(|i| i.public_addresses()).unwrap_or_default(),
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

    /// The operation as Status shows it: the stored record, overlaid with the worker's
    /// state when a worker holds it.
    fn view(&self, key: &str, rec: OpRecord) -> Operation {
        let mut op = Operation {
            kind: OpKind::from_code(rec.kind),
            phase: if rec.failed {
                Phase::Error
            } else {
                Phase::Queued
            },
            attempts: rec.attempts,
            priority: rec.priority,
            error: rec.error,
            ts: rec.ts,
            pin: rec.pin,
        };
        if !rec.failed {
            let win = self.inner.window.lock().unwrap();
            if let Some(r) = win.running.get(key).filter(|r| r.seq == rec.seq) {
                if !r.waiting {
                    op.phase = Phase::InProgress;
                    op.attempts = r.attempts + 1;
                }
                op.ts = r.ts;
            }
        }
        op
    }

    /// `stored`: the pin from the store (pin and remote operations keep none).
    fn op_info(&self, key: &str, op: &Operation, stored: Option<&Pin>) -> PinInfo {
        let mut info = self.base_info(key, op.pin.as_ref().or(stored));
        info.status = op.status() as i32;
        info.timestamp = op.ts;
        info.attempt_count = op.attempts as i32;
        info.priority_pin = op.priority;
        if op.phase == Phase::Error {
            info.error = op.error.clone();
        }
        info
    }

    /// The stored operation of `key` and the stored pin, in one blocking call.
    async fn stored_op_and_pin(
        &self,
        key: &str,
    ) -> Result<(Option<OpRecord>, Option<Pin>), TrackerError> {
        let key = key.to_string();
        self.blocking(move |t| {
            let op = t.inner.store.op(&key)?;
            let pin = match op.as_ref().and_then(|o| o.pin.as_ref()) {
                Some(_) => None,
                None => t.inner.store.get(&key)?,
            };
            Ok((op, pin))
        })
        .await
    }

    /// Status(cid), checking the daemon for items believed pinned.
    pub async fn status(&self, cid: &str) -> Result<PinInfo, TrackerError> {
        let key = parse_cid(cid)?.to_string();
        let (op, stored) = self.stored_op_and_pin(&key).await?;
        if let Some(rec) = op {
            let op = self.view(&key, rec);
            return Ok(self.op_info(cid, &op, stored.as_ref()));
        }
        if !self.is_synced() {
            let mut info = self.base_info(cid, None);
            info.status = TrackerStatus::ClusterError as i32;
            info.error = ERR_NOT_SYNCED.to_string();
            return Ok(info);
        }
        let Some(pin) = stored else {
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

    /// StatusAll(filter), sent to `out` as produced. `filter` 0 = all. The state
    /// and the operations are streamed from the store in chunks (never held whole).
    pub async fn status_all(
        &self,
        filter: u32,
        out: &mpsc::Sender<PinInfo>,
    ) -> Result<(), TrackerError> {
        let all = filter == 0;
        let want = |s: TrackerStatus| all || filter & (s as u32) != 0;
        let ops_only = !(want(TrackerStatus::Pinned)
            || want(TrackerStatus::UnexpectedlyUnpinned)
            || want(TrackerStatus::Sharded)
            || want(TrackerStatus::Remote));
        if ops_only {
            // Operations with their stored pins, 1024 per message, read on the blocking pool.
            type OpChunk = Vec<(String, OpRecord, Option<Pin>)>;
            let (tx, mut rx) = mpsc::channel::<OpChunk>(2);
            let store = self.inner.store.clone();
            let reader = tokio::task::spawn_blocking(move || {
                store.for_each_op_chunk(1024, |chunk| {
                    let keys: Vec<&str> = chunk
                        .iter()
                        .filter(|(_, r)| r.pin.is_none())
                        .map(|(k, _)| k.as_str())
                        .collect();
                    let mut pins: HashMap<String, Pin> = match store.get_many(&keys) {
                        Ok(p) => p,
                        Err(e) => {
                            tracing::warn!("reading pins for the operations listing: {e}");
                            HashMap::new()
                        }
                    };
                    let chunk = chunk
                        .into_iter()
                        .map(|(k, r)| {
                            let p = pins.remove(&k);
                            (k, r, p)
                        })
                        .collect();
                    tx.blocking_send(chunk).is_ok()
                })
            });
            'chunks: while let Some(chunk) = rx.recv().await {
                for (key, rec, pin) in chunk {
                    let op = self.view(&key, rec);
                    if !want(op.status()) {
                        continue;
                    }
                    if out
                        .send(self.op_info(&key, &op, pin.as_ref()))
                        .await
                        .is_err()
                    {
                        break 'chunks;
                    }
                }
            }
            drop(rx);
            return match reader.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.into()),
                Err(e) => Err(task_err("operations listing")(e)),
            };
        }
        if !self.is_synced() {
            return Err(TrackerError::NotSynced);
        }
        let kubo_pins: Option<HashSet<String>> =
            if want(TrackerStatus::Pinned) || want(TrackerStatus::UnexpectedlyUnpinned) {
                Some(self.inner.kubo.pin_ls_all().await?.into_keys().collect())
            } else {
                None
            };
        // The store is read on the blocking pool, 1024 pins per message (with the
        // operations in the chunk's key range), 2 messages ahead.
        type PinChunk = (Vec<Pin>, HashMap<String, OpRecord>);
        let (tx, mut rx) = mpsc::channel::<PinChunk>(2);
        let store = self.inner.store.clone();
        let reader = tokio::task::spawn_blocking(move || {
            let ops_store = store.clone();
            store.for_each_chunk(1024, |chunk| {
                let ops = match (chunk.first(), chunk.last()) {
                    (Some(a), Some(b)) => ops_store
                        .ops_in_range(&canonical_cid(&a.cid), &canonical_cid(&b.cid))
                        .unwrap_or_else(|e| {
                            tracing::warn!("reading operations for the status listing: {e}");
                            Vec::new()
                        }),
                    _ => Vec::new(),
                };
                tx.blocking_send((chunk, ops.into_iter().collect())).is_ok()
            })
        });
        let mut stopped = false;
        while let Some((chunk, mut ops)) = rx.recv().await {
            let infos: Vec<PinInfo> = chunk
                .iter()
                .filter_map(|p| {
                    let key = canonical_cid(&p.cid);
                    let info = if let Some(rec) = ops.remove(&key) {
                        let op = self.view(&key, rec);
                        self.op_info(&p.cid, &op, Some(p))
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
                    let st =
                        TrackerStatus::try_from(info.status).unwrap_or(TrackerStatus::Undefined);
                    want(st).then_some(info)
                })
                .collect();
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
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(task_err("store listing")(e)),
        }
    }

    // ---------------------------------------------------------------- recover

    /// Recover(cid): re-queues pin_error / unexpectedly_unpinned / unpin_error.
    pub async fn recover(&self, cid: &str) -> Result<PinInfo, TrackerError> {
        let info = self.status(cid).await?;
        self.recover_info(info, false).await
    }

    /// Re-queues one item given its status. `automatic` skips items that used up
    /// `max_pin_attempts` (they stay pin_error until recovered by hand).
    async fn recover_info(&self, info: PinInfo, automatic: bool) -> Result<PinInfo, TrackerError> {
        let st = TrackerStatus::try_from(info.status).unwrap_or(TrackerStatus::Undefined);
        let max = self.inner.opts.max_pin_attempts;
        if automatic && max > 0 && info.attempt_count as u32 >= max && st == TrackerStatus::PinError
        {
            return Ok(info);
        }
        let key = canonical_cid(&info.cid);
        match st {
            TrackerStatus::PinError | TrackerStatus::UnexpectedlyUnpinned => {
                let Some(pin) = self.stored_pin(&key).await? else {
                    return Ok(info);
                };
                self.enqueue(pin, OpKind::Pin, false).await?;
            }
            TrackerStatus::UnpinError => {
                let k = key.clone();
                let pin = self
                    .blocking(move |t| t.inner.store.op(&k))
                    .await?
                    .and_then(|o| o.pin);
                if let Some(pin) = pin {
                    self.enqueue(pin, OpKind::Unpin, false).await?;
                }
            }
            _ => return Ok(info),
        }
        let (op, stored) = self.stored_op_and_pin(&key).await?;
        Ok(match op {
            Some(rec) => {
                let op = self.view(&key, rec);
                self.op_info(&info.cid, &op, stored.as_ref())
            }
            None => info,
        })
    }

    /// RecoverAll: every failed or vanished item re-queued; sends the re-queued ones.
    pub async fn recover_all(
        &self,
        automatic: bool,
        out: &mpsc::Sender<PinInfo>,
    ) -> Result<(), TrackerError> {
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
        lister.await.map_err(task_err("status listing"))?
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_node_multiaddress, Timeouts};

    const ME: &str = "12D3KooWMe";

    fn tracker(dir: &std::path::Path, max_queue: usize) -> Tracker {
        let mut opts = Options::with_defaults(ME, dir.to_path_buf());
        opts.max_pin_queue_size = max_queue;
        let t = Timeouts {
            request: Duration::from_secs(1),
            pin: Duration::from_secs(1),
            unpin: Duration::from_secs(1),
            repogc: Duration::from_secs(1),
        };
        // Nothing listens there: these tests drive the queues without a daemon.
        let kubo = Kubo::new(
            parse_node_multiaddress("/ip4/127.0.0.1/tcp/1").unwrap(),
            t,
            false,
        );
        Tracker::new(opts, kubo, CancellationToken::new()).unwrap()
    }

    /// A distinct valid CIDv1 (raw, identity-free sha2-256 digest of `i`).
    fn cid(i: u32) -> String {
        use cid::multihash::Multihash;
        let mut d = [0u8; 32];
        d[..4].copy_from_slice(&i.to_be_bytes());
        let mh = Multihash::<64>::wrap(0x12, &d).unwrap();
        cid::Cid::new_v1(0x55, mh).to_string()
    }

    fn pin(i: u32, young: bool) -> Pin {
        Pin {
            cid: cid(i),
            r#type: PinType::Data as i32,
            max_depth: -1,
            timestamp: if young { now_secs() } else { 0 },
            ..Default::default()
        }
    }

    fn claim_pins(t: &Tracker) -> Option<Claimed> {
        t.claim(&[QueueClass::Priority, QueueClass::Pin]).unwrap()
    }

    #[tokio::test]
    async fn priority_first_then_arrival_order_with_a_bounded_window() {
        let dir = tempfile::tempdir().unwrap();
        let t = tracker(dir.path(), 1_000_000);
        let mut events = Vec::new();
        for i in 0..300u32 {
            // Every third pin is young (priority).
            events.push(StateEvent::Change(Change::Pin(
                u64::from(i) + 1,
                pin(i, i % 3 == 0),
            )));
        }
        t.apply_changes(events).await;
        let c = t.queue_counts();
        assert_eq!((c.priority, c.pin, c.unpin), (100, 200, 0));
        assert_eq!(t.pin_queue_size(), 300);
        let mut order = Vec::new();
        while let Some(c) = claim_pins(&t) {
            let win = t.inner.window.lock().unwrap();
            let buffered: usize = win.buf.iter().map(|b| b.len()).sum();
            assert!(
                buffered <= PREFETCH,
                "read-ahead stays bounded ({buffered})"
            );
            drop(win);
            order.push(c.key.clone());
            t.finish(&c, Outcome::Done);
        }
        let want: Vec<String> = (0..300u32)
            .filter(|i| i % 3 == 0)
            .chain((0..300u32).filter(|i| i % 3 != 0))
            .map(cid)
            .collect();
        assert_eq!(order, want);
        assert_eq!(t.queue_counts(), QueueCounts::default());
        assert!(t.inner.window.lock().unwrap().running.is_empty());
        // Done operations leave nothing behind in the store.
        let (tx, mut rx) = mpsc::channel(16);
        let filter = TrackerStatus::PinQueued as u32 | TrackerStatus::PinError as u32;
        t.status_all(filter, &tx).await.unwrap();
        drop(tx);
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn queued_items_show_their_status_and_failures_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let t = tracker(dir.path(), 1_000_000);
        t.apply_changes(vec![
            StateEvent::Change(Change::Pin(1, pin(1, true))),
            StateEvent::Change(Change::Pin(2, pin(2, false))),
        ])
        .await;
        let s = t.status(&cid(1)).await.unwrap();
        assert_eq!(
            (s.status, s.priority_pin, s.attempt_count),
            (TrackerStatus::PinQueued as i32, true, 0)
        );
        // Taken by a worker and running: pinning, attempt 1.
        let c = claim_pins(&t).unwrap();
        assert_eq!(c.key, cid(1));
        t.set_running(&c.key, false);
        let s = t.status(&cid(1)).await.unwrap();
        assert_eq!(
            (s.status, s.attempt_count),
            (TrackerStatus::Pinning as i32, 1)
        );
        assert_eq!(t.queue_counts().in_progress, 1);
        assert_eq!(t.pin_queue_size(), 1);
        t.finish(&c, Outcome::Failed("boom".into(), 1));
        let s = t.status(&cid(1)).await.unwrap();
        assert_eq!(
            (s.status, s.attempt_count, s.error.as_str()),
            (TrackerStatus::PinError as i32, 1, "boom")
        );
        // Listing only operations: one queued, one failed.
        let (tx, mut rx) = mpsc::channel(16);
        let filter = TrackerStatus::PinQueued as u32 | TrackerStatus::PinError as u32;
        t.status_all(filter, &tx).await.unwrap();
        drop(tx);
        let mut got = Vec::new();
        while let Some(i) = rx.recv().await {
            got.push((i.cid, i.status));
        }
        got.sort();
        let mut want = vec![
            (cid(1), TrackerStatus::PinError as i32),
            (cid(2), TrackerStatus::PinQueued as i32),
        ];
        want.sort();
        assert_eq!(got, want);
        // Recover re-queues the failed one; attempts are kept.
        let r = t.recover(&cid(1)).await.unwrap();
        assert_eq!(
            (r.status, r.attempt_count),
            (TrackerStatus::PinQueued as i32, 1)
        );
        assert_eq!(t.pin_queue_size(), 2);
    }

    #[tokio::test]
    async fn unpin_of_a_queued_or_running_pin_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let t = tracker(dir.path(), 1_000_000);
        t.apply_changes(vec![
            StateEvent::Change(Change::Pin(1, pin(1, false))),
            StateEvent::Change(Change::Pin(2, pin(2, false))),
        ])
        .await;
        // A running pin is cancelled by its unpin, which then goes to the unpin queue.
        let running = claim_pins(&t).unwrap();
        assert_eq!(running.key, cid(1));
        t.apply_changes(vec![
            StateEvent::Change(Change::Unpin(3, pin(1, false))),
            StateEvent::Change(Change::Unpin(4, pin(2, false))),
        ])
        .await;
        assert!(running.cancel.is_cancelled());
        for i in [1, 2] {
            let s = t.status(&cid(i)).await.unwrap();
            assert_eq!(s.status, TrackerStatus::UnpinQueued as i32, "{i}");
        }
        assert!(claim_pins(&t).is_none(), "the queued pin of 2 is gone");
        assert_eq!(t.pin_queue_size(), 0);
        // The unpin of 1 waits for the cancelled pin to end, then is handed back.
        let u = t.claim(&[QueueClass::Unpin]).unwrap().unwrap();
        assert_eq!(u.key, cid(2));
        assert!(t.claim(&[QueueClass::Unpin]).unwrap().is_none());
        t.finish(&running, Outcome::Cancelled);
        let u1 = t.claim(&[QueueClass::Unpin]).unwrap().unwrap();
        assert_eq!((u1.key.as_str(), u1.kind), (cid(1).as_str(), OpKind::Unpin));
        assert_eq!(u1.pin.as_ref().map(|p| p.cid.clone()), Some(cid(1)));
        t.finish(&u, Outcome::Done);
        t.finish(&u1, Outcome::Done);
        for i in [1, 2] {
            let s = t.status(&cid(i)).await.unwrap();
            assert_eq!(s.status, TrackerStatus::Unpinned as i32, "{i}");
        }
    }

    #[tokio::test]
    async fn restart_resumes_the_queue_including_items_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        {
            let t = tracker(dir.path(), 1_000_000);
            let events = (0..10u32)
                .map(|i| StateEvent::Change(Change::Pin(u64::from(i) + 1, pin(i, false))))
                .collect();
            t.apply_changes(events).await;
            let first = claim_pins(&t).unwrap();
            let second = claim_pins(&t).unwrap();
            t.finish(&first, Outcome::Done);
            // `second` is still running when the process stops.
            assert_eq!(second.key, cid(1));
            t.store().close();
        }
        let t = tracker(dir.path(), 1_000_000);
        assert_eq!(t.pin_queue_size(), 9);
        let mut order = Vec::new();
        while let Some(c) = claim_pins(&t) {
            order.push(c.key.clone());
            t.finish(&c, Outcome::Done);
        }
        assert_eq!(order, (1..10u32).map(cid).collect::<Vec<_>>());
        // New work after a restart still goes after the old (sequence numbers resume).
        t.apply_pin(20, pin(50, false));
        assert_eq!(claim_pins(&t).unwrap().key, cid(50));
    }

    /// One raft entry (index 7) with three pins, split across two batches by a crash: the
    /// follower resumes one index early, consensus re-sends the whole entry, and every pin
    /// of it ends up queued once.
    #[tokio::test]
    async fn an_entry_split_by_a_restart_is_replayed_whole() {
        let dir = tempfile::tempdir().unwrap();
        {
            let t = tracker(dir.path(), 1_000_000);
            t.apply_changes(vec![StateEvent::Change(Change::Pin(7, pin(1, false)))])
                .await;
            assert_eq!(t.last_index(), 7);
            t.store().close();
        }
        let t = tracker(dir.path(), 1_000_000);
        let from = follower::resume_from(t.last_index());
        // What consensus sends after `from`: entry 7 whole.
        assert!(from < 7);
        t.apply_changes(
            (1..=3u32)
                .map(|i| StateEvent::Change(Change::Pin(7, pin(i, false))))
                .collect(),
        )
        .await;
        assert_eq!(t.last_index(), 7);
        assert_eq!(t.pin_queue_size(), 3);
        let mut got = Vec::new();
        while let Some(c) = claim_pins(&t) {
            got.push(c.key.clone());
            t.finish(&c, Outcome::Done);
        }
        got.sort();
        let mut want: Vec<_> = (1..=3u32).map(cid).collect();
        want.sort();
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn full_queue_is_a_pin_error_and_remote_pins_go_to_the_unpin_queue() {
        let dir = tempfile::tempdir().unwrap();
        let t = tracker(dir.path(), 2);
        let mut remote = pin(9, false);
        remote.allocations = vec!["12D3KooWOther".into()];
        t.apply_changes(vec![
            StateEvent::Change(Change::Pin(1, pin(1, false))),
            StateEvent::Change(Change::Pin(2, pin(2, false))),
            StateEvent::Change(Change::Pin(3, pin(3, false))),
            StateEvent::Change(Change::Pin(4, remote)),
        ])
        .await;
        let s = t.status(&cid(3)).await.unwrap();
        assert_eq!(
            (s.status, s.error.as_str()),
            (TrackerStatus::PinError as i32, ERR_QUEUE_FULL)
        );
        assert_eq!(t.pin_queue_size(), 2);
        assert_eq!(t.queue_counts().unpin, 1);
        let s = t.status(&cid(9)).await.unwrap();
        assert_eq!(s.status, TrackerStatus::Remote as i32);
        let r = t.claim(&[QueueClass::Unpin]).unwrap().unwrap();
        assert_eq!((r.key, r.kind), (cid(9), OpKind::Remote));
    }
}
