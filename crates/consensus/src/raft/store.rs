//! The durable store: one redb file `<raft dir>/consensus.redb` holding the raft log, the
//! raft metadata (vote, committed, purged, applied, membership, snapshot meta) and the
//! pinset itself (CID -> protobuf Pin). Nothing is loaded into memory at start-up: reads
//! go to redb on demand, so start-up time does not grow with the pinset. Every redb call
//! runs on tokio's blocking pool. Single-pin reads ([`Store::get`], one per incoming pin on
//! the leader) are coalesced: whatever reads are waiting share one read transaction and one
//! blocking-pool round trip, instead of one thread hand-off each.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Weak},
};

use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{de::DeserializeOwned, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::{
    pinning::type_matches,
    raft::command::{Entry, LogId, PinBytes, SnapshotMeta, StoredMembership},
};
use ipfs_cluster_proto::{consensus::v1::StateChange, types::v1::Pin};

pub(crate) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
pub(crate) const PINS: TableDefinition<&str, &[u8]> = TableDefinition::new("pins");

pub(crate) const K_VOTE: &str = "vote";
pub(crate) const K_COMMITTED: &str = "committed";
pub(crate) const K_PURGED: &str = "last_purged";
pub(crate) const K_APPLIED: &str = "applied";
pub(crate) const K_MEMBERSHIP: &str = "membership";
pub(crate) const K_SNAPSHOT: &str = "snapshot_meta";

pub const DB_FILE: &str = "consensus.redb";
pub const SNAPSHOT_FILE: &str = "snapshot.bin";

/// redb page cache size.
pub const STORE_CACHE_BYTES: usize = 64 << 20;

/// How many applied changes a watcher may lag behind before its stream is ended.
pub const WATCH_BUFFER: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("consensus store {path} cannot be opened: {msg}. If the file is corrupt or truncated, move the raft folder away (`ipfs-cluster-service state cleanup`) and rejoin the cluster or import a state export")]
    Open { path: String, msg: String },
    #[error("consensus store {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("consensus store: {0}")]
    Db(String),
    #[error("consensus store holds an undecodable {what}: {msg} (the store is corrupt; move the raft folder away and rejoin)")]
    Decode { what: &'static str, msg: String },
    #[error("consensus store task failed: {0}")]
    Task(String),
}

pub(crate) fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Db(e.to_string())
}

/// A stored pin (protobuf bytes of the PINS table).
fn decode_pin(bytes: &[u8]) -> Result<Pin, StoreError> {
    Pin::decode(bytes).map_err(|e| StoreError::Decode {
        what: "pin",
        msg: e.to_string(),
    })
}

pub(crate) fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("raft metadata always serializes")
}

pub(crate) fn dec<T: DeserializeOwned>(what: &'static str, b: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(b).map_err(|e| StoreError::Decode {
        what,
        msg: e.to_string(),
    })
}

impl Inner {
    /// Writes the pending committed index (see `pending_committed`) in `txn`, if any.
    pub(crate) fn flush_committed(&self, txn: &redb::WriteTransaction) -> Result<(), StoreError> {
        let pending = self
            .pending_committed
            .lock()
            .ok()
            .and_then(|mut g| g.take());
        if let Some(c) = pending {
            txn.open_table(META)
                .map_err(db_err)?
                .insert(K_COMMITTED, enc(&c).as_slice())
                .map_err(db_err)?;
        }
        Ok(())
    }
}

pub(crate) async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
}

pub(crate) struct Inner {
    pub db: Database,
    pub dir: PathBuf,
    pub changes: broadcast::Sender<Arc<StateChange>>,
    /// Path of the snapshot file being received from the leader, if any.
    pub receiving: std::sync::Mutex<Option<PathBuf>>,
    /// The committed index openraft last reported (`save_committed`), not yet written: it
    /// rides along with the next log append or apply transaction instead of costing a
    /// redb commit (and a blocking-pool round trip) of its own on every commit advance.
    pub pending_committed: std::sync::Mutex<Option<Option<LogId>>>,
}

/// Shared handle to the store; the raft log store and state machine are views of it.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
    /// Queue of single-pin reads, served in batches by [`serve_gets`].
    gets: mpsc::Sender<GetRequest>,
}

/// Most reads one coalesced read transaction serves.
const GET_BATCH: usize = 512;

type GetResult = Result<Option<Pin>, StoreError>;

struct GetRequest {
    cid: String,
    reply: oneshot::Sender<GetResult>,
}

/// Serves the queued single-pin reads: every read waiting when the previous batch ends
/// shares one read transaction (so each sees a state at least as new as when it was
/// asked). Holds the store weakly: it ends when the last [`Store`] handle is dropped, and
/// never keeps the database open by itself.
async fn serve_gets(inner: Weak<Inner>, mut rx: mpsc::Receiver<GetRequest>) {
    let mut batch = Vec::with_capacity(GET_BATCH);
    while rx.recv_many(&mut batch, GET_BATCH).await > 0 {
        let (cids, replies): (Vec<String>, Vec<oneshot::Sender<GetResult>>) =
            batch.drain(..).map(|r| (r.cid, r.reply)).unzip();
        let Some(inner) = inner.upgrade() else {
            for r in replies {
                let _ = r.send(Err(StoreError::Task(
                    "the consensus store is closed".into(),
                )));
            }
            continue;
        };
        let results = blocking(move || {
            let txn = inner.db.begin_read().map_err(db_err)?;
            let t = txn.open_table(PINS).map_err(db_err)?;
            Ok(cids
                .iter()
                .map(|cid| match t.get(cid.as_str()).map_err(db_err)? {
                    Some(v) => decode_pin(v.value()).map(Some),
                    None => Ok(None),
                })
                .collect::<Vec<GetResult>>())
        })
        .await;
        match results {
            Ok(results) => {
                for (r, res) in replies.into_iter().zip(results) {
                    let _ = r.send(res);
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for r in replies {
                    let _ = r.send(Err(StoreError::Db(msg.clone())));
                }
            }
        }
    }
}

/// A consistent read of the applied state's position.
#[derive(Debug, Clone, Default)]
pub struct AppliedState {
    pub applied: Option<LogId>,
    pub committed: Option<LogId>,
    pub membership: StoredMembership,
    pub pins: u64,
}

impl Store {
    /// Opens (or creates) the store in `dir`. An existing but unreadable file is an error,
    /// never silently replaced by an empty state.
    pub async fn open(dir: &Path) -> Result<Store, StoreError> {
        Self::open_with(dir, WATCH_BUFFER).await
    }

    /// `open` with a chosen watch buffer (how far a watcher may lag, in changes).
    pub async fn open_with(dir: &Path, watch_buffer: usize) -> Result<Store, StoreError> {
        let dir = dir.to_path_buf();
        let inner = blocking(move || Self::open_blocking(&dir, watch_buffer.max(1))).await?;
        let inner = Arc::new(inner);
        let (gets, rx) = mpsc::channel(4 * GET_BATCH);
        tokio::spawn(serve_gets(Arc::downgrade(&inner), rx));
        Ok(Store { inner, gets })
    }

    fn open_blocking(dir: &Path, watch_buffer: usize) -> Result<Inner, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let path = dir.join(DB_FILE);
        let open_err = |msg: String| StoreError::Open {
            path: path.display().to_string(),
            msg,
        };
        let mut builder = Database::builder();
        // Bounded page cache: memory does not grow with the pinset.
        builder.set_cache_size(STORE_CACHE_BYTES);
        builder.set_repair_callback(|session| {
            if session.progress() == 0.0 {
                tracing::warn!("consensus store was not shut down cleanly; redb is repairing it (this reads the whole file)");
            }
        });
        let db = if path.exists() {
            let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if len == 0 {
                return Err(open_err("the file is empty (truncated)".into()));
            }
            builder.open(&path).map_err(|e| open_err(e.to_string()))?
        } else {
            builder.create(&path).map_err(|e| open_err(e.to_string()))?
        };
        let txn = db.begin_write().map_err(db_err)?;
        {
            txn.open_table(LOG).map_err(|e| open_err(e.to_string()))?;
            txn.open_table(META).map_err(|e| open_err(e.to_string()))?;
            txn.open_table(PINS).map_err(|e| open_err(e.to_string()))?;
        }
        txn.commit().map_err(db_err)?;
        // Leftovers of an interrupted snapshot transfer.
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let n = e.file_name();
                let n = n.to_string_lossy();
                if n.starts_with("snapshot.recv.") || n.starts_with("snapshot.tmp.") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let (changes, _) = broadcast::channel(watch_buffer);
        Ok(Inner {
            db,
            dir: dir.to_path_buf(),
            changes,
            receiving: std::sync::Mutex::new(None),
            pending_committed: std::sync::Mutex::new(None),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Subscribes to applied changes (bounded; a lagging receiver sees `Lagged`).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StateChange>> {
        self.inner.changes.subscribe()
    }

    pub(crate) fn meta_get<T: DeserializeOwned>(
        txn: &redb::ReadTransaction,
        key: &'static str,
    ) -> Result<Option<T>, StoreError> {
        let t = txn.open_table(META).map_err(db_err)?;
        match t.get(key).map_err(db_err)? {
            Some(v) => Ok(Some(dec(key, v.value())?)),
            None => Ok(None),
        }
    }

    /// One pin, or None (a coalesced read: see [`serve_gets`]).
    pub async fn get(&self, cid: &str) -> Result<Option<Pin>, StoreError> {
        let (reply, answer) = oneshot::channel();
        let closed = || StoreError::Task("the consensus store's reader has stopped".into());
        self.gets
            .send(GetRequest {
                cid: cid.to_string(),
                reply,
            })
            .await
            .map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    /// Applied position, membership and pin count, read in one transaction.
    pub async fn applied_state(&self) -> Result<AppliedState, StoreError> {
        let inner = self.inner.clone();
        blocking(move || {
            let txn = inner.db.begin_read().map_err(db_err)?;
            let applied = Self::meta_get(&txn, K_APPLIED)?.flatten();
            let stored: Option<LogId> = Self::meta_get(&txn, K_COMMITTED)?.flatten();
            let pending = inner
                .pending_committed
                .lock()
                .ok()
                .and_then(|g| *g)
                .flatten();
            let committed = stored.max(pending);
            let membership = Self::meta_get(&txn, K_MEMBERSHIP)?.unwrap_or_default();
            let pins = txn
                .open_table(PINS)
                .map_err(db_err)?
                .len()
                .map_err(db_err)?;
            Ok(AppliedState {
                applied,
                committed,
                membership,
                pins,
            })
        })
        .await
    }

    /// Streams every pin matching `type_filter` (upstream PinType bits; 0 = all) into a
    /// bounded channel from one read transaction. Returns the applied index of that view.
    pub fn list(&self, type_filter: u32, buffer: usize) -> mpsc::Receiver<Result<Pin, StoreError>> {
        let (tx, rx) = mpsc::channel(buffer.max(1));
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let run = || -> Result<(), StoreError> {
                let txn = inner.db.begin_read().map_err(db_err)?;
                let t = txn.open_table(PINS).map_err(db_err)?;
                for item in t.iter().map_err(db_err)? {
                    let (_, v) = item.map_err(db_err)?;
                    let pin = decode_pin(v.value())?;
                    if type_matches(pin.r#type, type_filter) && tx.blocking_send(Ok(pin)).is_err() {
                        return Ok(()); // receiver gone
                    }
                }
                Ok(())
            };
            if let Err(e) = run() {
                let _ = tx.blocking_send(Err(e));
            }
        });
        rx
    }

    /// As `list`, but in chunks of up to `chunk` pins per channel message: one hand-off
    /// between the redb thread and the async side per chunk instead of per pin, so the gRPC
    /// encoder finds many pins ready and packs them into few frames (`List`, `Export`).
    pub fn list_chunks(
        &self,
        type_filter: u32,
        chunk: usize,
        buffer: usize,
    ) -> mpsc::Receiver<Result<Vec<Pin>, StoreError>> {
        let (tx, rx) = mpsc::channel(buffer.max(1));
        let chunk = chunk.max(1);
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let run = || -> Result<(), StoreError> {
                let txn = inner.db.begin_read().map_err(db_err)?;
                let t = txn.open_table(PINS).map_err(db_err)?;
                let mut out = Vec::with_capacity(chunk);
                for item in t.iter().map_err(db_err)? {
                    let (_, v) = item.map_err(db_err)?;
                    let pin = decode_pin(v.value())?;
                    if type_matches(pin.r#type, type_filter) {
                        out.push(pin);
                        if out.len() == chunk
                            && tx
                                .blocking_send(Ok(std::mem::replace(
                                    &mut out,
                                    Vec::with_capacity(chunk),
                                )))
                                .is_err()
                        {
                            return Ok(()); // receiver gone
                        }
                    }
                }
                if !out.is_empty() {
                    let _ = tx.blocking_send(Ok(out));
                }
                Ok(())
            };
            if let Err(e) = run() {
                let _ = tx.blocking_send(Err(e));
            }
        });
        rx
    }

    /// A consistent full sync for watchers: the applied index and every pin, from one read
    /// transaction, into a bounded channel. The first message is the index.
    pub(crate) fn sync_view(&self, buffer: usize) -> mpsc::Receiver<Result<SyncItem, StoreError>> {
        let (tx, rx) = mpsc::channel(buffer.max(1));
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let run = || -> Result<(), StoreError> {
                let txn = inner.db.begin_read().map_err(db_err)?;
                let applied: Option<LogId> = Self::meta_get(&txn, K_APPLIED)?.flatten();
                if tx
                    .blocking_send(Ok(SyncItem::Index(applied.map(|l| l.index).unwrap_or(0))))
                    .is_err()
                {
                    return Ok(());
                }
                let t = txn.open_table(PINS).map_err(db_err)?;
                for item in t.iter().map_err(db_err)? {
                    let (_, v) = item.map_err(db_err)?;
                    let pin = decode_pin(v.value())?;
                    if tx.blocking_send(Ok(SyncItem::Pin(Box::new(pin)))).is_err() {
                        return Ok(());
                    }
                }
                Ok(())
            };
            if let Err(e) = run() {
                let _ = tx.blocking_send(Err(e));
            }
        });
        rx
    }

    /// Replays applied changes with index in (from, applied] from the retained log, when the
    /// log still holds them all. Ok(None) = not retained (caller does a full sync).
    pub(crate) fn replay(
        &self,
        from: u64,
        buffer: usize,
    ) -> mpsc::Receiver<Result<Option<StateChange>, StoreError>> {
        let (tx, rx) = mpsc::channel(buffer.max(1));
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let run = || -> Result<(), StoreError> {
                let txn = inner.db.begin_read().map_err(db_err)?;
                let applied = Self::meta_get::<Option<LogId>>(&txn, K_APPLIED)?
                    .flatten()
                    .map(|l| l.index)
                    .unwrap_or(0);
                let log = txn.open_table(LOG).map_err(db_err)?;
                if from > applied {
                    let _ = tx.blocking_send(Ok(None));
                    return Ok(());
                }
                if from < applied {
                    // The next entry must still be in the log.
                    let first = log.first().map_err(db_err)?.map(|(k, _)| k.value());
                    if first.is_none_or(|f| f > from + 1) {
                        let _ = tx.blocking_send(Ok(None));
                        return Ok(());
                    }
                }
                for item in log.range(from + 1..=applied).map_err(db_err)? {
                    let (_, v) = item.map_err(db_err)?;
                    let entry: Entry = dec("log entry", v.value())?;
                    for ch in changes_of(&entry) {
                        if tx.blocking_send(Ok(Some(ch))).is_err() {
                            return Ok(());
                        }
                    }
                }
                // Marks the end of the replay: the live stream continues after `applied`.
                let _ = tx.blocking_send(Ok(Some(StateChange {
                    kind: ipfs_cluster_proto::consensus::v1::state_change::Kind::Unspecified as i32,
                    index: applied,
                    pin: None,
                })));
                Ok(())
            };
            if let Err(e) = run() {
                let _ = tx.blocking_send(Err(e));
            }
        });
        rx
    }
}

pub(crate) enum SyncItem {
    Index(u64),
    Pin(Box<Pin>),
}

/// The watch changes one log entry produced (index = the entry's index).
pub(crate) fn changes_of(entry: &Entry) -> Vec<StateChange> {
    use crate::raft::command::PinOp;
    use ipfs_cluster_proto::consensus::v1::state_change::Kind;
    use openraft::EntryPayload;
    let index = entry.log_id.index;
    let pin_change = |p: &PinBytes| {
        p.decode().ok().map(|pin| StateChange {
            kind: Kind::Pin as i32,
            index,
            pin: Some(pin),
        })
    };
    fn op_changes(
        op: &PinOp,
        index: u64,
        pin_change: &dyn Fn(&PinBytes) -> Option<StateChange>,
    ) -> Vec<StateChange> {
        match op {
            PinOp::Pin(p) => pin_change(p).into_iter().collect(),
            PinOp::PinBatch(ps) => ps.iter().filter_map(pin_change).collect(),
            PinOp::Batch(ops) => ops
                .iter()
                .flat_map(|o| op_changes(o, index, pin_change))
                .collect(),
            PinOp::Unpin(cid) => vec![StateChange {
                kind: Kind::Unpin as i32,
                index,
                pin: Some(Pin {
                    cid: cid.clone(),
                    ..Default::default()
                }),
            }],
            // A wipe cannot be expressed as changes: watchers resync (SYNC_BEGIN .. SYNC_END).
            PinOp::Clear => vec![StateChange {
                kind: Kind::SyncBegin as i32,
                index,
                pin: None,
            }],
        }
    }
    match &entry.payload {
        EntryPayload::Normal(op) => op_changes(op, index, &pin_change),
        _ => vec![],
    }
}

pub(crate) fn snapshot_meta(
    txn: &redb::ReadTransaction,
) -> Result<Option<SnapshotMeta>, StoreError> {
    Store::meta_get(txn, K_SNAPSHOT)
}
