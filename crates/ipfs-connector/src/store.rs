//! The tracker's on-disk view of the shared pinset: one redb file
//! `<config dir>/ipfs-connector.redb` holding every pin (canonical CID -> protobuf `Pin`)
//! and the last applied `Consensus.Watch` index, written in the same transaction so a
//! restart resumes the watch exactly where the store stopped. Nothing is loaded at start:
//! Status reads one key, StatusAll iterates, the follower writes one transaction per batch
//! of changes. A full sync (SYNC_BEGIN…SYNC_END) is written into the inactive one of two
//! pin tables and swapped in at SYNC_END, so an interrupted sync never damages the state.
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
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

pub const DB_FILE: &str = "ipfs-connector.redb";
/// The state file of earlier versions (whole pinset in one file, loaded at start).
pub const OLD_STATE_FILE: &str = "ipfs-connector-state.bin";

const PINS: [TableDefinition<&str, &[u8]>; 2] = [
    TableDefinition::new("pins.0"),
    TableDefinition::new("pins.1"),
];
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
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
        txn.commit().map_err(db_err)?;
        Ok(Store {
            path,
            db: RwLock::new(Some(db)),
            active: AtomicU8::new(active),
            index: AtomicU64::new(index.unwrap_or(0)),
            synced: AtomicBool::new(index.is_some()),
            syncing: AtomicBool::new(false),
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

    /// Number of pins in the state.
    pub fn len(&self) -> Result<u64, StoreError> {
        use redb::ReadableTableMetadata;
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
        let syncing = self.is_syncing();
        let active = self.active();
        let table = if syncing { 1 - active } else { active };
        let mut index = self.index();
        let mut touched = false;
        let actions = self.with_db(|db| {
            let txn = db.begin_write().map_err(db_err)?;
            let mut actions = Vec::new();
            {
                let mut t = txn.open_table(PINS[table]).map_err(db_err)?;
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
                        actions.push(Action::Track(pin.clone()));
                    } else {
                        let old = t.remove(key.as_str()).map_err(db_err)?;
                        let old = match old {
                            Some(v) => decode(&key, v.value()).unwrap_or_else(|_| pin.clone()),
                            None => pin.clone(),
                        };
                        actions.push(Action::Untrack(old));
                    }
                }
            }
            if touched {
                let mut m = txn.open_table(META).map_err(db_err)?;
                m.insert(K_INDEX, index).map_err(db_err)?;
            }
            txn.commit().map_err(db_err)?;
            Ok(actions)
        })?;
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
        if !self.syncing.swap(false, Ordering::AcqRel) {
            return Ok(None);
        }
        let old_i = self.active();
        let new_i = 1 - old_i;
        let counts = self.with_db(|db| {
            let txn = db.begin_write().map_err(db_err)?;
            let (mut added, mut removed) = (0u64, 0u64);
            {
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
                            diff(Action::Untrack(decode(k.value(), v.value())?));
                        }
                        std::cmp::Ordering::Greater => {
                            let (k, v) = b.next().unwrap().map_err(db_err)?;
                            added += 1;
                            diff(Action::Track(decode(k.value(), v.value())?));
                        }
                        std::cmp::Ordering::Equal => {
                            let (_, va) = a.next().unwrap().map_err(db_err)?;
                            let (k, vb) = b.next().unwrap().map_err(db_err)?;
                            if va.value() != vb.value() {
                                added += 1;
                                diff(Action::Track(decode(k.value(), vb.value())?));
                            }
                        }
                    }
                }
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
            Ok((added, removed))
        })?;
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
