//! openraft storage-v2 on the redb store: the log store (vote, log, committed, purge,
//! truncate) and the state machine (apply into the pins table, snapshots as files that are
//! streamed record by record, never the whole pinset in memory).
//!
//! Snapshot file format: a sequence of records `[u32 big-endian length][protobuf Pin]`.

use std::{
    fmt::Debug,
    io::{BufRead, BufReader, BufWriter, Read, Seek, Write},
    ops::RangeBounds,
    sync::Arc,
};

use openraft::{
    storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot},
    EntryPayload, OptionalSend, RaftLogReader, RaftSnapshotBuilder, StorageIOError, Vote,
};
use prost::Message;
use redb::{ReadableDatabase, ReadableTable};

use super::{
    command::{
        ApplyResult, Entry, LogId, PinOp, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
    },
    ids::NodeId,
    store::{
        blocking, changes_of, db_err, dec, enc, snapshot_meta, Store, StoreError, K_APPLIED,
        K_COMMITTED, K_MEMBERSHIP, K_PURGED, K_SNAPSHOT, K_VOTE, LOG, META, PINS, SNAPSHOT_FILE,
    },
};
use ipfs_cluster_proto::{
    consensus::v1::state_change::Kind, consensus::v1::StateChange, types::v1::Pin,
};

fn io_err(e: StoreError) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// The raft log on redb.
#[derive(Clone)]
pub struct LogStore(pub Store);

/// The pinset state machine on redb.
#[derive(Clone)]
pub struct StateMachine(pub Store);

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let inner = self.0.inner.clone();
        let start = range.start_bound().cloned();
        let end = range.end_bound().cloned();
        blocking(move || {
            let txn = inner.db.begin_read().map_err(db_err)?;
            let t = txn.open_table(LOG).map_err(db_err)?;
            let mut out = Vec::new();
            for item in t.range::<u64>((start, end)).map_err(db_err)? {
                let (_, v) = item.map_err(db_err)?;
                out.push(dec::<Entry>("log entry", v.value())?);
            }
            Ok(out)
        })
        .await
        .map_err(|e| StorageIOError::read_logs(&io_err(e)).into())
    }
}

impl LogStore {
    async fn put_meta<T: serde::Serialize + Send + 'static>(
        &self,
        key: &'static str,
        v: T,
    ) -> Result<(), StoreError> {
        let inner = self.0.inner.clone();
        blocking(move || {
            let txn = inner.db.begin_write().map_err(db_err)?;
            txn.open_table(META)
                .map_err(db_err)?
                .insert(key, enc(&v).as_slice())
                .map_err(db_err)?;
            txn.commit().map_err(db_err)
        })
        .await
    }

    async fn get_meta<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        key: &'static str,
    ) -> Result<Option<T>, StoreError> {
        let inner = self.0.inner.clone();
        blocking(move || {
            let txn = inner.db.begin_read().map_err(db_err)?;
            Store::meta_get(&txn, key)
        })
        .await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let inner = self.0.inner.clone();
        blocking(move || {
            let txn = inner.db.begin_read().map_err(db_err)?;
            let purged: Option<LogId> = Store::meta_get(&txn, K_PURGED)?.flatten();
            let t = txn.open_table(LOG).map_err(db_err)?;
            let last = match t.last().map_err(db_err)? {
                Some((_, v)) => Some(dec::<Entry>("log entry", v.value())?.log_id),
                None => purged,
            };
            Ok(LogState {
                last_purged_log_id: purged,
                last_log_id: last,
            })
        })
        .await
        .map_err(|e| StorageIOError::read_logs(&io_err(e)).into())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.put_meta(K_VOTE, *vote)
            .await
            .map_err(|e| StorageIOError::write_vote(&io_err(e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.get_meta(K_VOTE)
            .await
            .map_err(|e| StorageIOError::read_vote(&io_err(e)).into())
    }

    /// Kept in memory and written with the next log append or apply transaction
    /// (`Inner::flush_committed`): openraft treats the committed index as optional (it is
    /// re-learned from the leader or re-established by an election), so it never needs a
    /// commit of its own; the stored value never runs ahead of what openraft reported.
    /// See the README's "Durability".
    async fn save_committed(&mut self, c: Option<LogId>) -> Result<(), StorageError> {
        if let Ok(mut g) = self.0.inner.pending_committed.lock() {
            *g = Some(c);
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let pending = self.0.inner.pending_committed.lock().ok().and_then(|g| *g);
        if let Some(c) = pending {
            return Ok(c);
        }
        Ok(self
            .get_meta::<Option<LogId>>(K_COMMITTED)
            .await
            .map_err(|e| StorageIOError::read(&io_err(e)))?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<(u64, Vec<u8>)> = entries
            .into_iter()
            .map(|e| (e.log_id.index, enc(&e)))
            .collect();
        let inner = self.0.inner.clone();
        let started = std::time::Instant::now();
        let n = entries.len();
        let res = blocking(move || {
            let txn = inner.db.begin_write().map_err(db_err)?;
            {
                let mut t = txn.open_table(LOG).map_err(db_err)?;
                for (i, b) in &entries {
                    t.insert(*i, b.as_slice()).map_err(db_err)?;
                }
            }
            inner.flush_committed(&txn)?;
            txn.commit().map_err(db_err)
        })
        .await;
        tracing::debug!(
            entries = n,
            ms = started.elapsed().as_secs_f64() * 1e3,
            "log append flushed"
        );
        match res {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let msg = e.to_string();
                callback.log_io_completed(Err(std::io::Error::other(msg.clone())));
                Err(StorageIOError::write_logs(&std::io::Error::other(msg)).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let inner = self.0.inner.clone();
        blocking(move || {
            let txn = inner.db.begin_write().map_err(db_err)?;
            txn.open_table(LOG)
                .map_err(db_err)?
                .retain_in(log_id.index.., |_, _| false)
                .map_err(db_err)?;
            txn.commit().map_err(db_err)
        })
        .await
        .map_err(|e| StorageIOError::write_logs(&io_err(e)).into())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let inner = self.0.inner.clone();
        blocking(move || {
            let txn = inner.db.begin_write().map_err(db_err)?;
            txn.open_table(META)
                .map_err(db_err)?
                .insert(K_PURGED, enc(&Some(log_id)).as_slice())
                .map_err(db_err)?;
            txn.open_table(LOG)
                .map_err(db_err)?
                .retain_in(..=log_id.index, |_, _| false)
                .map_err(db_err)?;
            txn.commit().map_err(db_err)
        })
        .await
        .map_err(|e| StorageIOError::write_logs(&io_err(e)).into())
    }
}

/// Applies one op to the pins table.
fn apply_op(pins: &mut redb::Table<&str, &[u8]>, op: &PinOp) -> Result<ApplyResult, StoreError> {
    match op {
        PinOp::Pin(p) => {
            let cid = p
                .decode()
                .map_err(|e| StoreError::Decode {
                    what: "pin in log",
                    msg: e.to_string(),
                })?
                .cid;
            let existed = pins
                .insert(cid.as_str(), p.0.as_slice())
                .map_err(db_err)?
                .is_some();
            Ok(ApplyResult {
                existed,
                ..Default::default()
            })
        }
        PinOp::PinBatch(ps) => {
            for p in ps {
                let cid = p
                    .decode()
                    .map_err(|e| StoreError::Decode {
                        what: "pin in log",
                        msg: e.to_string(),
                    })?
                    .cid;
                pins.insert(cid.as_str(), p.0.as_slice()).map_err(db_err)?;
            }
            Ok(ApplyResult::default())
        }
        PinOp::Unpin(cid) => Ok(ApplyResult {
            existed: pins.remove(cid.as_str()).map_err(db_err)?.is_some(),
            ..Default::default()
        }),
        PinOp::Clear => {
            pins.retain(|_, _| false).map_err(db_err)?;
            Ok(ApplyResult::default())
        }
        PinOp::Batch(ops) => {
            let mut results = Vec::with_capacity(ops.len());
            for op in ops {
                results.push(apply_op(pins, op)?);
            }
            Ok(ApplyResult {
                existed: false,
                results,
            })
        }
    }
}

fn resync_marker(index: u64) -> Arc<StateChange> {
    Arc::new(StateChange {
        kind: Kind::SyncBegin as i32,
        index,
        pin: None,
    })
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let inner = self.0.inner.clone();
        let (meta, path) = blocking(move || {
            let txn = inner.db.begin_read().map_err(db_err)?;
            let applied: Option<LogId> = Store::meta_get(&txn, K_APPLIED)?.flatten();
            let membership: StoredMembership =
                Store::meta_get(&txn, K_MEMBERSHIP)?.unwrap_or_default();
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let snapshot_id = match applied {
                Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, nanos),
                None => format!("0-0-{nanos}"),
            };
            let meta = SnapshotMeta {
                last_log_id: applied,
                last_membership: membership,
                snapshot_id,
            };
            let tmp = inner.dir.join(format!("snapshot.tmp.{nanos}"));
            let io = |source| StoreError::Io {
                path: tmp.display().to_string(),
                source,
            };
            {
                let f = std::fs::File::create(&tmp).map_err(io)?;
                let mut w = BufWriter::new(f);
                let t = txn.open_table(PINS).map_err(db_err)?;
                for item in t.iter().map_err(db_err)? {
                    let (_, v) = item.map_err(db_err)?;
                    let b = v.value();
                    w.write_all(&(b.len() as u32).to_be_bytes()).map_err(io)?;
                    w.write_all(b).map_err(io)?;
                }
                let f = w.into_inner().map_err(|e| io(e.into_error()))?;
                f.sync_all().map_err(io)?;
            }
            let path = inner.dir.join(SNAPSHOT_FILE);
            std::fs::rename(&tmp, &path).map_err(io)?;
            let wtxn = inner.db.begin_write().map_err(db_err)?;
            wtxn.open_table(META)
                .map_err(db_err)?
                .insert(K_SNAPSHOT, enc(&meta).as_slice())
                .map_err(db_err)?;
            wtxn.commit().map_err(db_err)?;
            Ok((meta, path))
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(None, &io_err(e)))?;
        let f = tokio::fs::File::open(&path)
            .await
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(f),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let st = self
            .0
            .applied_state()
            .await
            .map_err(|e| StorageIOError::read_state_machine(&io_err(e)))?;
        Ok((st.applied, st.membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ApplyResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let inner = self.0.inner.clone();
        let (results, changes) = blocking(move || {
            // Not fsync'd: every applied entry is already in the durable log (raft appends
            // before it commits, and applies only committed entries), and redb makes this
            // commit durable with the next durable one (the next log append). A crash can
            // only roll the pins and `applied` back *together* (same transaction) to an
            // earlier prefix, which raft re-applies from the log; watchers resuming from an
            // index past the rolled-back one wait for that (service.rs `watch_task`).
            let mut txn = inner.db.begin_write().map_err(db_err)?;
            txn.set_durability(redb::Durability::None).map_err(db_err)?;
            let mut results = Vec::with_capacity(entries.len());
            let mut changes = Vec::new();
            {
                let mut pins = txn.open_table(PINS).map_err(db_err)?;
                let mut meta = txn.open_table(META).map_err(db_err)?;
                let mut last = None;
                for e in &entries {
                    last = Some(e.log_id);
                    let r = match &e.payload {
                        EntryPayload::Blank => ApplyResult::default(),
                        EntryPayload::Normal(op) => apply_op(&mut pins, op)?,
                        EntryPayload::Membership(m) => {
                            let sm = StoredMembership::new(Some(e.log_id), m.clone());
                            meta.insert(K_MEMBERSHIP, enc(&sm).as_slice())
                                .map_err(db_err)?;
                            ApplyResult::default()
                        }
                    };
                    results.push(r);
                    changes.extend(changes_of(e));
                }
                if let Some(l) = last {
                    meta.insert(K_APPLIED, enc(&Some(l)).as_slice())
                        .map_err(db_err)?;
                }
            }
            inner.flush_committed(&txn)?;
            txn.commit().map_err(db_err)?;
            Ok((results, changes))
        })
        .await
        .map_err(|e| StorageIOError::write_state_machine(&io_err(e)))?;
        for c in changes {
            // No receivers is fine; lagging receivers notice on their side.
            let _ = self.0.inner.changes.send(Arc::new(c));
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path = self.0.inner.dir.join(format!("snapshot.recv.{nanos}"));
        let f = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .await
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        if let Ok(mut g) = self.0.inner.receiving.lock() {
            if let Some(old) = g.replace(path) {
                let _ = std::fs::remove_file(old);
            }
        }
        Ok(Box::new(f))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        let mut file = snapshot.into_std().await;
        let received = self
            .0
            .inner
            .receiving
            .lock()
            .ok()
            .and_then(|mut g| g.take());
        let inner = self.0.inner.clone();
        let meta2 = meta.clone();
        blocking(move || {
            let path = inner.dir.join(SNAPSHOT_FILE);
            let io = |source| StoreError::Io {
                path: path.display().to_string(),
                source,
            };
            file.flush().map_err(io)?;
            file.rewind().map_err(io)?;
            let txn = inner.db.begin_write().map_err(db_err)?;
            {
                let mut pins = txn.open_table(PINS).map_err(db_err)?;
                pins.retain(|_, _| false).map_err(db_err)?;
                let mut r = BufReader::new(&mut file);
                let mut buf = Vec::new();
                loop {
                    if r.fill_buf().map_err(io)?.is_empty() {
                        break;
                    }
                    let mut len = [0u8; 4];
                    r.read_exact(&mut len).map_err(io)?;
                    buf.resize(u32::from_be_bytes(len) as usize, 0);
                    r.read_exact(&mut buf).map_err(io)?;
                    let pin = Pin::decode(buf.as_slice()).map_err(|e| StoreError::Decode {
                        what: "pin in snapshot",
                        msg: e.to_string(),
                    })?;
                    pins.insert(pin.cid.as_str(), buf.as_slice())
                        .map_err(db_err)?;
                }
                let mut m = txn.open_table(META).map_err(db_err)?;
                m.insert(K_APPLIED, enc(&meta2.last_log_id).as_slice())
                    .map_err(db_err)?;
                m.insert(K_MEMBERSHIP, enc(&meta2.last_membership).as_slice())
                    .map_err(db_err)?;
                m.insert(K_SNAPSHOT, enc(&meta2).as_slice())
                    .map_err(db_err)?;
            }
            txn.commit().map_err(db_err)?;
            drop(file);
            if let Some(src) = received {
                std::fs::rename(&src, &path).map_err(io)?;
            }
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &io_err(e)))?;
        let index = meta.last_log_id.map(|l| l.index).unwrap_or(0);
        let _ = self.0.inner.changes.send(resync_marker(index));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let inner = self.0.inner.clone();
        let meta = blocking(move || {
            let txn = inner.db.begin_read().map_err(db_err)?;
            snapshot_meta(&txn)
        })
        .await
        .map_err(|e| StorageIOError::read_snapshot(None, &io_err(e)))?;
        let Some(meta) = meta else { return Ok(None) };
        let path = self.0.inner.dir.join(SNAPSHOT_FILE);
        match tokio::fs::File::open(&path).await {
            Ok(f) => Ok(Some(Snapshot {
                meta,
                snapshot: Box::new(f),
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StorageIOError::read_snapshot(Some(meta.signature()), &e).into()),
        }
    }
}
