//! The tracker's on-disk view of the shared pinset: one redb file
//! `<config dir>/ipfs-connector.redb` holding every pin (canonical CID -> protobuf `Pin`)
//! and the last applied `Consensus.Watch` index, written in the same transaction so a
//! restart resumes the watch exactly where the store stopped. Nothing is loaded at start:
//! Status reads one key, StatusAll iterates, the follower writes one transaction per batch
//! of changes. A full sync (SYNC_BEGIN…SYNC_END) is written into the inactive one of two
//! pin tables and swapped in at SYNC_END, so an interrupted sync never damages the state.
//! The tracker's pending work lives here too (never whole in memory): `ops` keeps one
//! operation record per CID (queued or failed, with attempts and error), and three queue
//! tables (priority pins, pins, unpins) keyed by a growing sequence number give the order
//! the workers take them in; a restart resumes the queues where they stood.
//! Every call here blocks: async callers use `tokio::task::spawn_blocking`.

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering},
        RwLock,
    },
};

use ipfs_cluster_proto::types::v1::Pin;
use prost::Message;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table,
    TableDefinition, WriteTransaction,
};

pub const DB_FILE: &str = "ipfs-connector.redb";
/// The state file of earlier versions (whole pinset in one file, loaded at start).
pub const OLD_STATE_FILE: &str = "ipfs-connector-state.bin";

const PINS: [TableDefinition<&str, &[u8]>; 2] = [
    TableDefinition::new("pins.0"),
    TableDefinition::new("pins.1"),
];
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Canonical CID -> protobuf `OpRecord` (queued or failed operations).
const OPS: TableDefinition<&str, &[u8]> = TableDefinition::new("ops");
/// Sequence -> canonical CID, one table per queue class (see `QueueClass`).
const QUEUES: [TableDefinition<u64, &str>; 3] = [
    TableDefinition::new("queue.prio"),
    TableDefinition::new("queue.pin"),
    TableDefinition::new("queue.unpin"),
];
const K_INDEX: &str = "index";
const K_ACTIVE: &str = "active";

/// redb page cache: bounded, so memory does not grow with the pinset.
pub const CACHE_BYTES: usize = 32 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("ipfs connector store {path} cannot be opened: {msg}. If it is corrupt, delete it: the connector rebuilds it with a full sync from consensus")]
    Open { path: String, msg: String },
    #[error("ipfs connector store: {0}")]
    Db(String),
    #[error("ipfs connector store holds an undecodable pin for {cid}: {msg} (delete the store file; a full sync from consensus rebuilds it)")]
    Decode { cid: String, msg: String },
    #[error("ipfs connector store is closed (the service is shutting down)")]
    Closed,
}

fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Db(e.to_string())
}

/// One change of the watch stream that touches a pin.
#[derive(Debug, Clone)]
pub enum Change {
    Pin(u64, Pin),
    Unpin(u64, Pin),
}

/// What the tracker must do after a change was stored.
#[derive(Debug, Clone)]
pub enum Action {
    Track(Pin),
    Untrack(Pin),
}

pub struct Store {
    path: PathBuf,
    /// None once closed (at shutdown, so redb records a clean close).
    db: RwLock<Option<Database>>,
    active: AtomicU8,
    index: AtomicU64,
    /// A state is known (an index was stored).
    synced: AtomicBool,
    /// SYNC_BEGIN seen and SYNC_END not yet: pins go to the inactive table.
    syncing: AtomicBool,
    /// Next queue sequence number (queue keys only grow, so order = arrival order).
    next_seq: AtomicU64,
    /// Entries of each queue table (running items included), as of the last commit.
    queue_lens: [AtomicU64; 3],
}

fn decode(cid: &str, b: &[u8]) -> Result<Pin, StoreError> {
    Pin::decode(b).map_err(|e| StoreError::Decode {
        cid: cid.to_string(),
        msg: e.to_string(),
    })
}

impl Store {
    /// Opens (or creates) `<dir>/ipfs-connector.redb`. Cheap: reads two metadata keys.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let path = dir.join(DB_FILE);
        let open_err = |msg: String| StoreError::Open {
            path: path.display().to_string(),
            msg,
        };
        std::fs::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
        let mut builder = Database::builder();
        builder.set_cache_size(CACHE_BYTES);
        builder.set_repair_callback(|session| {
            if session.progress() == 0.0 {
                tracing::warn!("ipfs connector store was not closed cleanly; redb is repairing it");
            }
        });
        let db = builder.create(&path).map_err(|e| open_err(e.to_string()))?;
        let txn = db.begin_write().map_err(db_err)?;
        let (active, index) = {
            let meta = txn.open_table(META).map_err(|e| open_err(e.to_string()))?;
            for t in PINS {
                txn.open_table(t).map_err(|e| open_err(e.to_string()))?;
            }
            let active = meta.get(K_ACTIVE).map_err(db_err)?.map(|v| v.value());
            let index = meta.get(K_INDEX).map_err(db_err)?.map(|v| v.value());
            (active.unwrap_or(0).min(1) as u8, index)
        };
        txn.open_table(OPS).map_err(|e| open_err(e.to_string()))?;
        let mut next_seq = 1u64;
        let mut lens = [0u64; 3];
        for (i, q) in QUEUES.into_iter().enumerate() {
            let t = txn.open_table(q).map_err(|e| open_err(e.to_string()))?;
            if let Some((k, _)) = t.last().map_err(db_err)? {
                next_seq = next_seq.max(k.value() + 1);
            }
            lens[i] = t.len().map_err(db_err)?;
        }
        txn.commit().map_err(db_err)?;
        Ok(Store {
            path,
            db: RwLock::new(Some(db)),
            active: AtomicU8::new(active),
            index: AtomicU64::new(index.unwrap_or(0)),
            synced: AtomicBool::new(index.is_some()),
            syncing: AtomicBool::new(false),
            next_seq: AtomicU64::new(next_seq),
            queue_lens: lens.map(AtomicU64::new),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Drops the database (a clean close); later calls fail with `Closed`.
    pub fn close(&self) {
        self.db.write().unwrap_or_else(|e| e.into_inner()).take();
    }

    fn with_db<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let g = self.db.read().unwrap_or_else(|e| e.into_inner());
        match g.as_ref() {
            Some(db) => f(db),
            None => Err(StoreError::Closed),
        }
    }

    /// Last applied watch index (0 = none).
    pub fn index(&self) -> u64 {
        self.index.load(Ordering::Acquire)
    }
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }
    pub fn is_syncing(&self) -> bool {
        self.syncing.load(Ordering::Acquire)
    }
    fn active(&self) -> usize {
        self.active.load(Ordering::Acquire) as usize
    }

    /// One pin by canonical CID.
    pub fn get(&self, key: &str) -> Result<Option<Pin>, StoreError> {
        let active = self.active();
        self.with_db(|db| {
            let txn = db.begin_read().map_err(db_err)?;
            let t = txn.open_table(PINS[active]).map_err(db_err)?;
            match t.get(key).map_err(db_err)? {
                Some(v) => Ok(Some(decode(key, v.value())?)),
                None => Ok(None),
            }
        })
    }

    /// Several pins by canonical CID in one read transaction (missing ones left out).
    pub fn get_many(
        &self,
        keys: &[&str],
    ) -> Result<std::collections::HashMap<String, Pin>, StoreError> {
        let active = self.active();
        self.with_db(|db| {
            let txn = db.begin_read().map_err(db_err)?;
            let t = txn.open_table(PINS[active]).map_err(db_err)?;
            let mut out = std::collections::HashMap::with_capacity(keys.len());
            for k in keys {
                if let Some(v) = t.get(*k).map_err(db_err)? {
                    out.insert(k.to_string(), decode(k, v.value())?);
                }
            }
            Ok(out)
        })
    }

    /// Number of pins in the state.
    pub fn len(&self) -> Result<u64, StoreError> {
        let active = self.active();
        self.with_db(|db| {
            let txn = db.begin_read().map_err(db_err)?;
            let t = txn.open_table(PINS[active]).map_err(db_err)?;
            t.len().map_err(db_err)
        })
    }

    pub fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }

    /// Streams every pin (one consistent snapshot) in chunks of `chunk` to `f`; stops
    /// early when `f` returns false.
    pub fn for_each_chunk(
        &self,
        chunk: usize,
        mut f: impl FnMut(Vec<Pin>) -> bool,
    ) -> Result<(), StoreError> {
        let active = self.active();
        self.with_db(|db| {
            let txn = db.begin_read().map_err(db_err)?;
            let t = txn.open_table(PINS[active]).map_err(db_err)?;
            let mut buf = Vec::with_capacity(chunk);
            for item in t.iter().map_err(db_err)? {
                let (k, v) = item.map_err(db_err)?;
                buf.push(decode(k.value(), v.value())?);
                if buf.len() >= chunk && !f(std::mem::replace(&mut buf, Vec::with_capacity(chunk)))
                {
                    return Ok(());
                }
            }
            if !buf.is_empty() {
                f(buf);
            }
            Ok(())
        })
    }

    /// Stores a batch of changes in one write transaction. Outside a sync, changes with an
    /// index below the stored one are skipped (already applied before a restart); during a
    /// sync they go to the staging table and yield no action (SYNC_END diffs).
    pub fn apply(&self, changes: &[Change]) -> Result<Vec<Action>, StoreError> {
        let mut actions = Vec::new();
        self.apply_with(changes, |_, a| {
            actions.push(a);
            Ok(())
        })?;
        Ok(actions)
    }

    /// `apply`, handing each action to `act` inside the same write transaction (with the
    /// operation tables), so a batch of changes and the work it queues commit together.
    /// Returns how many actions there were.
    pub fn apply_with(
        &self,
        changes: &[Change],
        mut act: impl FnMut(&mut OpsWriter<'_>, Action) -> Result<(), StoreError>,
    ) -> Result<usize, StoreError> {
        let syncing = self.is_syncing();
        let active = self.active();
        let table = if syncing { 1 - active } else { active };
        let mut index = self.index();
        let mut touched = false;
        let (actions, lens) = self.with_db(|db| {
            // Not fsync'd (it doubled the fsyncs per ingested pin). Everything this
            // transaction writes (pins, the watch index, the queued work) comes from the
            // consensus watch and rolls back *together* on a crash (one redb file: durable
            // state is always a prefix of the commits; the next durable commit, e.g. an
            // operation's progress in `write_ops`, or a clean close persists it). After a
            // crash the watch resumes from the rolled-back index and consensus replays those
            // changes, which re-queues the same work (pin/unpin are idempotent), so nothing
            // is lost; only redone.
            let mut txn = db.begin_write().map_err(db_err)?;
            txn.set_durability(Durability::None).map_err(db_err)?;
            let mut actions = 0usize;
            let lens;
            {
                let mut t = txn.open_table(PINS[table]).map_err(db_err)?;
                let mut w = OpsWriter::open(&txn, &self.next_seq)?;
                for c in changes {
                    let (i, pin, is_pin) = match c {
                        Change::Pin(i, p) => (*i, p, true),
                        Change::Unpin(i, p) => (*i, p, false),
                    };
                    let key = crate::kubo::canonical_cid(&pin.cid);
                    if syncing {
                        if is_pin {
                            t.insert(key.as_str(), pin.encode_to_vec().as_slice())
                                .map_err(db_err)?;
                        } else {
                            t.remove(key.as_str()).map_err(db_err)?;
                        }
                        continue;
                    }
                    if i != 0 && i < index {
                        continue;
                    }
                    index = index.max(i);
                    touched = true;
                    if is_pin {
                        t.insert(key.as_str(), pin.encode_to_vec().as_slice())
                            .map_err(db_err)?;
                        actions += 1;
                        act(&mut w, Action::Track(pin.clone()))?;
                    } else {
                        let old = t.remove(key.as_str()).map_err(db_err)?;
                        let old = match old {
                            Some(v) => decode(&key, v.value()).unwrap_or_else(|_| pin.clone()),
                            None => pin.clone(),
                        };
                        actions += 1;
                        act(&mut w, Action::Untrack(old))?;
                    }
                }
                lens = w.lens()?;
            }
            if touched {
                let mut m = txn.open_table(META).map_err(db_err)?;
                m.insert(K_INDEX, index).map_err(db_err)?;
            }
            txn.commit().map_err(db_err)?;
            Ok((actions, lens))
        })?;
        self.set_lens(lens);
        if touched {
            self.index.store(index, Ordering::Release);
            self.synced.store(true, Ordering::Release);
        }
        Ok(actions)
    }

    /// SYNC_BEGIN: empties the staging table; pins go there until SYNC_END.
    pub fn begin_sync(&self) -> Result<(), StoreError> {
        let staging = PINS[1 - self.active()];
        self.with_db(|db| {
            let txn = db.begin_write().map_err(db_err)?;
            txn.delete_table(staging).map_err(db_err)?;
            txn.open_table(staging).map_err(db_err)?;
            txn.commit().map_err(db_err)
        })?;
        self.syncing.store(true, Ordering::Release);
        Ok(())
    }

    /// A sync interrupted by a broken stream is dropped (the staging table is emptied at
    /// the next SYNC_BEGIN).
    pub fn abort_sync(&self) {
        self.syncing.store(false, Ordering::Release);
    }

    /// SYNC_END: the staging table becomes the state (index `index`). `diff` is called for
    /// every pin that is new or changed (`Track`) and every pin that disappeared
    /// (`Untrack`), walking both tables in key order (bounded memory). Returns (added,
    /// removed), or None when no sync was in progress.
    pub fn end_sync(
        &self,
        index: u64,
        mut diff: impl FnMut(Action),
    ) -> Result<Option<(u64, u64)>, StoreError> {
        self.end_sync_with(index, |_, a| {
            diff(a);
            Ok(())
        })
    }

    /// `end_sync`, handing each difference to `diff` inside the same write transaction.
    pub fn end_sync_with(
        &self,
        index: u64,
        mut diff: impl FnMut(&mut OpsWriter<'_>, Action) -> Result<(), StoreError>,
    ) -> Result<Option<(u64, u64)>, StoreError> {
        if !self.syncing.swap(false, Ordering::AcqRel) {
            return Ok(None);
        }
        let old_i = self.active();
        let new_i = 1 - old_i;
        let (counts, lens) = self.with_db(|db| {
            let txn = db.begin_write().map_err(db_err)?;
            let (mut added, mut removed) = (0u64, 0u64);
            let lens;
            {
                let mut w = OpsWriter::open(&txn, &self.next_seq)?;
                let old = txn.open_table(PINS[old_i]).map_err(db_err)?;
                let new = txn.open_table(PINS[new_i]).map_err(db_err)?;
                let mut a = old.iter().map_err(db_err)?.peekable();
                let mut b = new.iter().map_err(db_err)?.peekable();
                loop {
                    let ord = match (a.peek(), b.peek()) {
                        (None, None) => break,
                        (Some(_), None) => std::cmp::Ordering::Less,
                        (None, Some(_)) => std::cmp::Ordering::Greater,
                        (Some(Ok((ka, _))), Some(Ok((kb, _)))) => ka.value().cmp(kb.value()),
                        (Some(Err(_)), _) => {
                            return Err(db_err(a.next().unwrap().err().unwrap()));
                        }
                        (_, Some(Err(_))) => {
                            return Err(db_err(b.next().unwrap().err().unwrap()));
                        }
                    };
                    match ord {
                        std::cmp::Ordering::Less => {
                            let (k, v) = a.next().unwrap().map_err(db_err)?;
                            removed += 1;
                            diff(&mut w, Action::Untrack(decode(k.value(), v.value())?))?;
                        }
                        std::cmp::Ordering::Greater => {
                            let (k, v) = b.next().unwrap().map_err(db_err)?;
                            added += 1;
                            diff(&mut w, Action::Track(decode(k.value(), v.value())?))?;
                        }
                        std::cmp::Ordering::Equal => {
                            let (_, va) = a.next().unwrap().map_err(db_err)?;
                            let (k, vb) = b.next().unwrap().map_err(db_err)?;
                            if va.value() != vb.value() {
                                added += 1;
                                diff(&mut w, Action::Track(decode(k.value(), vb.value())?))?;
                            }
                        }
                    }
                }
                lens = w.lens()?;
            }
            // The old state is cleared now; the next sync refills it as staging.
            txn.delete_table(PINS[old_i]).map_err(db_err)?;
            txn.open_table(PINS[old_i]).map_err(db_err)?;
            {
                let mut m = txn.open_table(META).map_err(db_err)?;
                m.insert(K_ACTIVE, new_i as u64).map_err(db_err)?;
                m.insert(K_INDEX, index).map_err(db_err)?;
            }
            txn.commit().map_err(db_err)?;
            Ok(((added, removed), lens))
        })?;
        self.set_lens(lens);
        self.active.store(new_i as u8, Ordering::Release);
        self.index.store(index, Ordering::Release);
        self.synced.store(true, Ordering::Release);
        Ok(Some(counts))
    }

    /// Replaces the whole state (benchmarks and tests): one transaction, no actions.
    pub fn load(&self, index: u64, pins: &[Pin]) -> Result<(), StoreError> {
        let active = self.active();
        self.with_db(|db| {
            let txn = db.begin_write().map_err(db_err)?;
            txn.delete_table(PINS[active]).map_err(db_err)?;
            {
                let mut t = txn.open_table(PINS[active]).map_err(db_err)?;
                for p in pins {
                    let key = crate::kubo::canonical_cid(&p.cid);
                    t.insert(key.as_str(), p.encode_to_vec().as_slice())
                        .map_err(db_err)?;
                }
                let mut m = txn.open_table(META).map_err(db_err)?;
                m.insert(K_INDEX, index).map_err(db_err)?;
            }
            txn.commit().map_err(db_err)
        })?;
        self.index.store(index, Ordering::Release);
        self.synced.store(true, Ordering::Release);
        Ok(())
    }
}

// ------------------------------------------------------------------ operations

/// The queue an operation waits in; workers drain `Priority` before `Pin`, and one worker
/// drains `Unpin` (unpins and remote unpins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueClass {
    Priority = 0,
    Pin = 1,
    Unpin = 2,
}

impl QueueClass {
    pub fn from_u32(v: u32) -> QueueClass {
        match v {
            0 => QueueClass::Priority,
            1 => QueueClass::Pin,
            _ => QueueClass::Unpin,
        }
    }
}

/// One operation of the tracker as stored (`ops` table). While it waits, `seq` is its key
/// in the queue table of `class`; a failed one (`failed`) is in no queue. `pin` is kept
/// only for unpins (the pin is gone from the state).
#[derive(Clone, PartialEq, prost::Message)]
pub struct OpRecord {
    /// 0 = pin, 1 = unpin, 2 = remote (unpin of a pin allocated elsewhere).
    #[prost(uint32, tag = "1")]
    pub kind: u32,
    #[prost(bool, tag = "2")]
    pub failed: bool,
    #[prost(uint32, tag = "3")]
    pub attempts: u32,
    #[prost(bool, tag = "4")]
    pub priority: bool,
    /// Last change, ns since the epoch.
    #[prost(int64, tag = "5")]
    pub ts: i64,
    #[prost(uint64, tag = "6")]
    pub seq: u64,
    #[prost(uint32, tag = "7")]
    pub class: u32,
    #[prost(string, tag = "8")]
    pub error: String,
    #[prost(message, optional, tag = "9")]
    pub pin: Option<Pin>,
}

fn decode_op(cid: &str, b: &[u8]) -> Result<OpRecord, StoreError> {
    OpRecord::decode(b).map_err(|e| StoreError::Decode {
        cid: cid.to_string(),
        msg: format!("operation record: {e}"),
    })
}

/// The operation tables inside one write transaction.
pub struct OpsWriter<'t> {
    ops: Table<'t, &'static str, &'static [u8]>,
    queues: [Table<'t, u64, &'static str>; 3],
    next_seq: &'t AtomicU64,
}

impl<'t> OpsWriter<'t> {
    fn open(txn: &'t WriteTransaction, next_seq: &'t AtomicU64) -> Result<Self, StoreError> {
        Ok(OpsWriter {
            ops: txn.open_table(OPS).map_err(db_err)?,
            queues: [
                txn.open_table(QUEUES[0]).map_err(db_err)?,
                txn.open_table(QUEUES[1]).map_err(db_err)?,
                txn.open_table(QUEUES[2]).map_err(db_err)?,
            ],
            next_seq,
        })
    }

    pub fn get(&self, key: &str) -> Result<Option<OpRecord>, StoreError> {
        match self.ops.get(key).map_err(db_err)? {
            Some(v) => Ok(Some(decode_op(key, v.value())?)),
            None => Ok(None),
        }
    }

    pub fn put(&mut self, key: &str, op: &OpRecord) -> Result<(), StoreError> {
        self.ops
            .insert(key, op.encode_to_vec().as_slice())
            .map_err(db_err)?;
        Ok(())
    }

    /// Removes the record and, when it was waiting, its queue entry.
    pub fn remove(&mut self, key: &str) -> Result<Option<OpRecord>, StoreError> {
        let old = match self.ops.remove(key).map_err(db_err)? {
            Some(v) => Some(decode_op(key, v.value())?),
            None => None,
        };
        if let Some(op) = &old {
            if !op.failed {
                self.unqueue(QueueClass::from_u32(op.class), op.seq)?;
            }
        }
        Ok(old)
    }

    /// Appends `key` to a queue; returns its sequence number.
    pub fn push(&mut self, class: QueueClass, key: &str) -> Result<u64, StoreError> {
        let seq = self.next_seq.fetch_add(1, Ordering::AcqRel);
        self.queues[class as usize]
            .insert(seq, key)
            .map_err(db_err)?;
        Ok(seq)
    }

    pub fn unqueue(&mut self, class: QueueClass, seq: u64) -> Result<(), StoreError> {
        self.queues[class as usize].remove(seq).map_err(db_err)?;
        Ok(())
    }

    /// Entries in a queue (running items included).
    pub fn queue_len(&self, class: QueueClass) -> Result<u64, StoreError> {
        self.queues[class as usize].len().map_err(db_err)
    }

    fn lens(&self) -> Result<[u64; 3], StoreError> {
        Ok([
            self.queue_len(QueueClass::Priority)?,
            self.queue_len(QueueClass::Pin)?,
            self.queue_len(QueueClass::Unpin)?,
        ])
    }
}

impl Store {
    fn set_lens(&self, lens: [u64; 3]) {
        for (a, v) in self.queue_lens.iter().zip(lens) {
            a.store(v, Ordering::Release);
        }
    }

    /// Entries in a queue as of the last commit (running items included). Never blocks.
    pub fn queue_len(&self, class: QueueClass) -> u64 {
        self.queue_lens[class as usize].load(Ordering::Acquire)
    }

    /// Runs `f` on the operation tables in one write transaction and commits it.
    pub fn write_ops<T>(
        &self,
        f: impl FnOnce(&mut OpsWriter<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let (r, lens) = self.with_db(|db| {
            let mut txn = db.begin_write().map_err(db_err)?;
            txn.set_durability(Durability::Immediate).map_err(db_err)?;
            let (r, lens) = {
                let mut w = OpsWriter::open(&txn, &self.next_seq)?;
                let r = f(&mut w)?;
                (r, w.lens()?)
            };
            txn.commit().map_err(db_err)?;
            Ok((r, lens))
        })?;
        self.set_lens(lens);
        Ok(r)
    }

    /// One operation record.
    pub fn op(&self, key: &str) -> Result<Option<OpRecord>, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read().map_err(db_err)?;
            let t = txn.open_table(OPS).map_err(db_err)?;
            match t.get(key).map_err(db_err)? {
                Some(v) => Ok(Some(decode_op(key, v.value())?)),
                None => Ok(None),
            }
        })
    }

    /// Up to `limit` entries of a queue after sequence `after`, in order.
    pub fn next_queued(
        &self,
        class: QueueClass,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, String)>, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read().map_err(db_err)?;
            let t = txn.open_table(QUEUES[class as usize]).map_err(db_err)?;
            let mut out = Vec::with_capacity(limit);
            for item in t.range(after.saturating_add(1)..).map_err(db_err)? {
                let (k, v) = item.map_err(db_err)?;
                out.push((k.value(), v.value().to_string()));
                if out.len() >= limit {
                    break;
                }
            }
            Ok(out)
        })
    }

    /// Operation records with keys in `first..=last` (one range scan).
    pub fn ops_in_range(
        &self,
        first: &str,
        last: &str,
    ) -> Result<Vec<(String, OpRecord)>, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read().map_err(db_err)?;
            let t = txn.open_table(OPS).map_err(db_err)?;
            if t.is_empty().map_err(db_err)? {
                return Ok(Vec::new());
            }
            let mut out = Vec::new();
            for item in t.range(first..=last).map_err(db_err)? {
                let (k, v) = item.map_err(db_err)?;
                out.push((k.value().to_string(), decode_op(k.value(), v.value())?));
            }
            Ok(out)
        })
    }

    /// Streams every operation record (one snapshot) in chunks; stops when `f` says so.
    pub fn for_each_op_chunk(
        &self,
        chunk: usize,
        mut f: impl FnMut(Vec<(String, OpRecord)>) -> bool,
    ) -> Result<(), StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read().map_err(db_err)?;
            let t = txn.open_table(OPS).map_err(db_err)?;
            let mut buf = Vec::with_capacity(chunk);
            for item in t.iter().map_err(db_err)? {
                let (k, v) = item.map_err(db_err)?;
                buf.push((k.value().to_string(), decode_op(k.value(), v.value())?));
                if buf.len() >= chunk && !f(std::mem::take(&mut buf)) {
                    return Ok(());
                }
            }
            if !buf.is_empty() {
                f(buf);
            }
            Ok(())
        })
    }
}

/// Earlier versions kept the whole pinset in `ipfs-connector-state.bin`. It is not read
/// (loading it was what made start-up slow): it is removed, and a store without an index
/// takes a full sync from consensus, which rebuilds everything.
pub fn drop_old_state_file(dir: &Path) {
    let old = dir.join(OLD_STATE_FILE);
    if !old.exists() {
        return;
    }
    match std::fs::remove_file(&old) {
        Ok(()) => tracing::info!(
            file = %old.display(),
            "removed the old tracker state file; the on-disk store {DB_FILE} replaces it (a full sync from consensus rebuilds the state if needed)"
        ),
        Err(e) => tracing::warn!(
            file = %old.display(),
            "cannot remove the old tracker state file ({e}); it is no longer used, delete it by hand"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(cid: &str, alloc: &[&str]) -> Pin {
        Pin {
            cid: cid.into(),
            max_depth: -1,
            allocations: alloc.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }
    const A: &str = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o";
    const B: &str = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH";
    const C: &str = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";

    #[test]
    fn batches_index_reopen_and_sync_diff() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert!(!s.is_synced());
        let acts = s
            .apply(&[
                Change::Pin(1, pin(A, &[])),
                Change::Pin(2, pin(B, &[])),
                Change::Unpin(3, pin(A, &[])),
            ])
            .unwrap();
        assert_eq!(acts.len(), 3);
        assert_eq!((s.index(), s.is_synced()), (3, true));
        assert!(s.get(A).unwrap().is_none());
        assert_eq!(s.get(B).unwrap().unwrap().cid, B);
        // Older changes are skipped.
        assert!(s.apply(&[Change::Pin(2, pin(A, &[]))]).unwrap().is_empty());
        s.close();
        assert!(matches!(s.get(B), Err(StoreError::Closed)));
        drop(s);

        let s = Store::open(dir.path()).unwrap();
        assert_eq!((s.index(), s.is_synced()), (3, true));
        assert_eq!(s.len().unwrap(), 1);
        // Full sync: B changes allocations, C is new; an interrupted sync is discarded.
        s.begin_sync().unwrap();
        s.apply(&[Change::Pin(0, pin(A, &[]))]).unwrap();
        s.abort_sync();
        s.begin_sync().unwrap();
        s.apply(&[Change::Pin(0, pin(B, &["x"])), Change::Pin(0, pin(C, &[]))])
            .unwrap();
        assert_eq!(s.get(C).unwrap(), None, "staging is not visible");
        let mut seen = Vec::new();
        let counts = s
            .end_sync(9, |a| {
                seen.push(match a {
                    Action::Track(p) => format!("+{}", p.cid),
                    Action::Untrack(p) => format!("-{}", p.cid),
                })
            })
            .unwrap();
        assert_eq!(counts, Some((2, 0)));
        seen.sort();
        assert_eq!(seen, vec![format!("+{B}"), format!("+{C}")]);
        assert_eq!(s.index(), 9);
        // A second sync without B: B removed, C unchanged.
        s.begin_sync().unwrap();
        s.apply(&[Change::Pin(0, pin(C, &[]))]).unwrap();
        let mut seen = Vec::new();
        s.end_sync(10, |a| {
            seen.push(matches!(a, Action::Untrack(ref p) if p.cid == B))
        })
        .unwrap();
        assert_eq!(seen, vec![true]);
        let mut all = Vec::new();
        s.for_each_chunk(1, |c| {
            all.extend(c);
            true
        })
        .unwrap();
        assert_eq!(all.len(), 1);
        drop(s);
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.get(C).unwrap().unwrap().cid, C);
        assert_eq!(s.index(), 10);
    }

    #[test]
    fn old_state_file_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(OLD_STATE_FILE), b"IPCTRK1\n").unwrap();
        drop_old_state_file(dir.path());
        assert!(!dir.path().join(OLD_STATE_FILE).exists());
    }

    #[test]
    fn garbage_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(DB_FILE), b"garbage garbage garbage").unwrap();
        let e = Store::open(dir.path()).err().unwrap().to_string();
        assert!(
            e.contains("cannot be opened") && e.contains("delete it"),
            "{e}"
        );
    }
}
