//! The replicated store: a Merkle-DAG of deltas, an add-wins set, heads, durable on redb.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex as StdMutex, RwLock};
use std::time::Duration;

use cid::Cid;
use rand::Rng;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};
use tokio::sync::{broadcast, Mutex};

use crate::config::CrdtConfig;
use crate::error::{dberr, CrdtError};
use crate::fetch::NodeFetcher;
use crate::node::{self, DeltaNode};
use crate::pb::{Delta, Element};
use crate::trust::TrustedPeers;

/// Delta nodes by binary CID (blocks are written before anything that refers to them).
const BLOCKS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("crdt_blocks");
/// Nodes whose delta has been merged into the set.
const PROCESSED: TableDefinition<&[u8], ()> = TableDefinition::new("crdt_processed");
/// Current heads: binary CID → height (the priority of the head's delta).
const HEADS: TableDefinition<&[u8], u64> = TableDefinition::new("crdt_heads");
/// Set elements: (key, block id) → (priority, greatest value for the key in that delta).
const ELEMS: TableDefinition<(&str, &str), (u64, &[u8])> = TableDefinition::new("crdt_elems");
/// Tombstones: (key, block id of the tombstoned element).
const TOMBS: TableDefinition<(&str, &str), ()> = TableDefinition::new("crdt_tombs");
/// Current value of every present key: key → (priority, value).
const VALUES: TableDefinition<&str, (u64, &[u8])> = TableDefinition::new("crdt_values");
/// Flags: `dirty`, `version`.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("crdt_meta");
/// Branches being applied: root CID → root height. Written (durably) before a branch is
/// merged and removed in the transaction that makes its root a head; what is left here after
/// a crash is re-walked by [`CrdtStore::repair`].
const PENDING: TableDefinition<&[u8], u64> = TableDefinition::new("crdt_pending");

const DIRTY: &str = "dirty";
const VERSION: &str = "version";
const FORMAT_VERSION: &[u8] = b"1";

/// A change of the set, as seen by this replica (local or remote update).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `key` now has `value` (it was absent or had another value).
    Put { key: String, value: Vec<u8> },
    /// `key` is no longer present.
    Delete { key: String },
}

/// What a local update produced: the new head and the broadcast to send for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub cid: Cid,
    pub height: u64,
    /// go-ds-crdt's `CRDTBroadcast{Heads: [cid]}`, ready for the gossip topic.
    pub broadcast: Vec<u8>,
}

/// What applying a broadcast did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The sender is not trusted: nothing was fetched or applied.
    Untrusted,
    /// Every head was processed; `merged` nodes were merged (0 when all were known).
    Applied { heads: usize, merged: usize },
}

/// What a repair did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// Nodes walked (every node reachable from the heads and pending branches).
    pub walked: usize,
    /// Nodes that had not been merged and were merged now.
    pub merged: usize,
}

/// A batch of updates that becomes one delta (go-ds-crdt's `Batch`).
#[derive(Debug, Clone, Default)]
pub struct Batch {
    delta: Delta,
    ops: usize,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `key` = `value` to the batch. A later put of the same key replaces the earlier
    /// one in the delta (go-ds-crdt would keep both elements; see the crate docs for why we
    /// do not: the last put wins, and the delta merges the same in any order).
    pub fn put(&mut self, key: &str, value: Vec<u8>) -> Result<(), CrdtError> {
        check_key(key)?;
        self.delta.elements.retain(|e| e.key != key);
        self.delta.elements.push(Element {
            key: key.to_string(),
            id: String::new(),
            value,
        });
        self.ops += 1;
        Ok(())
    }

    /// Operations added so far.
    pub fn len(&self) -> usize {
        self.ops
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.ops == 0
    }

    /// Size of the delta as it would be encoded now.
    pub fn encoded_len(&self) -> usize {
        prost::Message::encoded_len(&self.delta)
    }
}

/// A Merkle-CRDT key-value store with go-ds-crdt's semantics. Cheap to clone (shared).
#[derive(Clone)]
pub struct CrdtStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    cfg: CrdtConfig,
    trust: RwLock<TrustedPeers>,
    /// Serialises every merge (local commits and remote branches), as go-ds-crdt's
    /// `putElemsMux`: priorities are read then written.
    write: Mutex<()>,
    /// Heads received in broadcasts since the last rebroadcast tick.
    seen_heads: StdMutex<HashSet<Cid>>,
    /// Heads being walked right now.
    inflight: StdMutex<HashSet<Cid>>,
    /// One lock per block being fetched: concurrent walks of overlapping branches (the
    /// broadcasts of one writer arrive one after the other, each naming a newer head of the
    /// same chain) wait for the fetch in progress instead of asking the peers again.
    fetching: StdMutex<HashMap<Cid, Arc<Mutex<()>>>>,
    events: broadcast::Sender<Change>,
    #[cfg(test)]
    crash_after: std::sync::atomic::AtomicUsize,
}

/// The result of walking down from a root.
struct Walk {
    /// Unmerged nodes, children before parents.
    unmerged: Vec<Cid>,
    /// Every node whose block was loaded in the walk (their links are checked against heads).
    walked: Vec<Cid>,
}

impl CrdtStore {
    /// Opens (or creates) the store in the redb file at `path`.
    pub fn open(path: &Path, cfg: CrdtConfig) -> Result<Self, CrdtError> {
        cfg.validate()?;
        let db = Database::create(path).map_err(|e| CrdtError::Db {
            op: "open",
            detail: format!("{}: {e}", path.display()),
        })?;
        let txn = db.begin_write().map_err(dberr("begin"))?;
        {
            txn.open_table(BLOCKS).map_err(dberr("open table"))?;
            txn.open_table(PROCESSED).map_err(dberr("open table"))?;
            txn.open_table(HEADS).map_err(dberr("open table"))?;
            txn.open_table(ELEMS).map_err(dberr("open table"))?;
            txn.open_table(TOMBS).map_err(dberr("open table"))?;
            txn.open_table(VALUES).map_err(dberr("open table"))?;
            txn.open_table(PENDING).map_err(dberr("open table"))?;
            let mut meta = txn.open_table(META).map_err(dberr("open table"))?;
            let version = meta
                .get(VERSION)
                .map_err(dberr("read"))?
                .map(|v| v.value().to_vec());
            match version {
                None => {
                    meta.insert(VERSION, FORMAT_VERSION).map_err(dberr("write"))?;
                }
                Some(v) if v == FORMAT_VERSION => {}
                Some(v) => {
                    return Err(CrdtError::Config(format!(
                        "{} holds crdt store format {:?}, this build reads {:?} (use the matching build, or export the state and import it into a fresh store)",
                        path.display(),
                        String::from_utf8_lossy(&v),
                        String::from_utf8_lossy(FORMAT_VERSION)
                    )))
                }
            }
        }
        txn.commit().map_err(dberr("commit"))?;
        let (events, _) = broadcast::channel(cfg.event_capacity);
        let trust = RwLock::new(cfg.trusted_peers.clone());
        let store = Self {
            inner: Arc::new(Inner {
                db,
                cfg,
                trust,
                write: Mutex::new(()),
                seen_heads: StdMutex::new(HashSet::new()),
                inflight: StdMutex::new(HashSet::new()),
                fetching: StdMutex::new(HashMap::new()),
                events,
                #[cfg(test)]
                crash_after: std::sync::atomic::AtomicUsize::new(usize::MAX),
            }),
        };
        let (heads, height) = store.heads_and_height()?;
        tracing::info!(
            heads = heads.len(),
            max_height = height,
            dirty = store.is_dirty()?,
            "crdt store opened"
        );
        Ok(store)
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &CrdtConfig {
        &self.inner.cfg
    }

    /// Receives every change of the set (local and remote). A receiver that lags behind
    /// more than `event_capacity` changes gets `Lagged` and should re-read with [`Self::list`].
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.inner.events.subscribe()
    }

    // ----- reads ---------------------------------------------------------------------

    /// The current value of `key`, if present.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CrdtError> {
        let txn = self.inner.db.begin_read().map_err(dberr("begin read"))?;
        let t = txn.open_table(VALUES).map_err(dberr("open table"))?;
        Ok(t.get(key)
            .map_err(dberr("read"))?
            .map(|v| v.value().1.to_vec()))
    }

    /// Whether `key` is present.
    pub fn has(&self, key: &str) -> Result<bool, CrdtError> {
        Ok(self.get(key)?.is_some())
    }

    /// Number of present keys.
    pub fn len(&self) -> Result<u64, CrdtError> {
        let txn = self.inner.db.begin_read().map_err(dberr("begin read"))?;
        let t = txn.open_table(VALUES).map_err(dberr("open table"))?;
        t.len().map_err(dberr("read"))
    }

    /// Whether no key is present.
    pub fn is_empty(&self) -> Result<bool, CrdtError> {
        Ok(self.len()? == 0)
    }

    /// One page of present keys starting with `prefix`, in key order, after `start_after`
    /// (exclusive), at most `limit`. Page through with the last key returned.
    pub fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, CrdtError> {
        let txn = self.inner.db.begin_read().map_err(dberr("begin read"))?;
        let t = txn.open_table(VALUES).map_err(dberr("open table"))?;
        let start = match start_after {
            Some(s) if s >= prefix => s,
            _ => prefix,
        };
        let mut out = Vec::new();
        for item in t.range(start..).map_err(dberr("read"))? {
            let (k, v) = item.map_err(dberr("read"))?;
            let k = k.value();
            if Some(k) == start_after {
                continue;
            }
            if !k.starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((k.to_string(), v.value().1.to_vec()));
        }
        Ok(out)
    }

    /// The current heads (sorted by binary CID, as go-ds-crdt lists them) with their heights.
    pub fn heads(&self) -> Result<Vec<(Cid, u64)>, CrdtError> {
        let txn = self.inner.db.begin_read().map_err(dberr("begin read"))?;
        let t = txn.open_table(HEADS).map_err(dberr("open table"))?;
        let mut out = Vec::new();
        for item in t.iter().map_err(dberr("read"))? {
            let (k, v) = item.map_err(dberr("read"))?;
            out.push((cid_from_db(k.value())?, v.value()));
        }
        Ok(out)
    }

    fn heads_and_height(&self) -> Result<(Vec<Cid>, u64), CrdtError> {
        let heads = self.heads()?;
        let height = heads.iter().map(|h| h.1).max().unwrap_or(0);
        Ok((heads.into_iter().map(|h| h.0).collect(), height))
    }

    /// The highest height among the heads (0 for an empty store).
    pub fn max_height(&self) -> Result<u64, CrdtError> {
        Ok(self.heads_and_height()?.1)
    }

    /// The stored block of a delta node, to serve a peer that is fetching it.
    pub fn get_block(&self, cid: &Cid) -> Result<Option<Vec<u8>>, CrdtError> {
        let txn = self.inner.db.begin_read().map_err(dberr("begin read"))?;
        let t = txn.open_table(BLOCKS).map_err(dberr("open table"))?;
        Ok(t.get(cid.to_bytes().as_slice())
            .map_err(dberr("read"))?
            .map(|v| v.value().to_vec()))
    }

    fn is_processed(&self, cid: &Cid) -> Result<bool, CrdtError> {
        let txn = self.inner.db.begin_read().map_err(dberr("begin read"))?;
        let t = txn.open_table(PROCESSED).map_err(dberr("open table"))?;
        Ok(t.get(cid.to_bytes().as_slice())
            .map_err(dberr("read"))?
            .is_some())
    }

    // ----- dirty flag ----------------------------------------------------------------

    /// Whether the store needs a [`Self::repair`]: it was marked dirty, or a branch was being
    /// applied when the process stopped.
    pub fn is_dirty(&self) -> Result<bool, CrdtError> {
        let txn = self.inner.db.begin_read().map_err(dberr("begin read"))?;
        let meta = txn.open_table(META).map_err(dberr("open table"))?;
        let pending = txn.open_table(PENDING).map_err(dberr("open table"))?;
        Ok(meta.get(DIRTY).map_err(dberr("read"))?.is_some()
            || !pending.is_empty().map_err(dberr("read"))?)
    }

    /// Marks the store dirty (upstream's `state crdt mark-dirty`): the next repair walks the
    /// whole DAG.
    pub fn mark_dirty(&self) -> Result<(), CrdtError> {
        tracing::warn!("marking the crdt store dirty");
        let txn = self.inner.db.begin_write().map_err(dberr("begin"))?;
        txn.open_table(META)
            .map_err(dberr("open table"))?
            .insert(DIRTY, &[][..])
            .map_err(dberr("write"))?;
        txn.commit().map_err(dberr("commit"))
    }

    /// Clears the dirty state (upstream's `state crdt mark-clean`), including branches left
    /// pending by a crash: use only when the state is known to be right.
    pub fn mark_clean(&self) -> Result<(), CrdtError> {
        let txn = self.inner.db.begin_write().map_err(dberr("begin"))?;
        txn.open_table(META)
            .map_err(dberr("open table"))?
            .remove(DIRTY)
            .map_err(dberr("write"))?;
        let mut pending = txn.open_table(PENDING).map_err(dberr("open table"))?;
        pending.retain(|_, _| false).map_err(dberr("write"))?;
        drop(pending);
        txn.commit().map_err(dberr("commit"))
    }

    // ----- trust ---------------------------------------------------------------------

    /// Whether broadcasts from `peer` are applied.
    pub fn is_trusted(&self, peer: &str) -> bool {
        self.inner
            .trust
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_trusted(peer)
    }

    /// Trusts `peer` from now on.
    pub fn trust(&self, peer: &str) {
        self.inner
            .trust
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .trust(peer);
    }

    /// Stops trusting `peer`.
    pub fn distrust(&self, peer: &str) {
        self.inner
            .trust
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .distrust(peer);
    }

    // ----- local updates -------------------------------------------------------------

    /// Sets `key` to `value` in a new delta node. Returns the broadcast to send.
    pub async fn put(&self, key: &str, value: Vec<u8>) -> Result<Published, CrdtError> {
        let mut b = Batch::new();
        b.put(key, value)?;
        self.publish(b.delta).await
    }

    /// Removes `key` (tombstones every element of it this replica has seen). Returns `None`
    /// when the key is not present (nothing to publish, as go-ds-crdt).
    pub async fn delete(&self, key: &str) -> Result<Option<Published>, CrdtError> {
        check_key(key)?;
        let tombs = self.tombstones_for(key)?;
        if tombs.is_empty() {
            return Ok(None);
        }
        let delta = Delta {
            tombstones: tombs,
            ..Default::default()
        };
        self.publish(delta).await.map(Some)
    }

    /// Adds a delete of `key` to `batch`: drops the batch's own elements for `key` and
    /// tombstones the elements already in the store (go-ds-crdt's batch `Delete`).
    pub fn batch_delete(&self, batch: &mut Batch, key: &str) -> Result<(), CrdtError> {
        check_key(key)?;
        batch.delta.elements.retain(|e| e.key != key);
        let tombs = self.tombstones_for(key)?;
        batch.delta.tombstones.extend(tombs);
        batch.ops += 1;
        Ok(())
    }

    /// Commits a batch as one delta node. `None` when the batch changes nothing.
    pub async fn commit(&self, batch: Batch) -> Result<Option<Published>, CrdtError> {
        if batch.delta.elements.is_empty() && batch.delta.tombstones.is_empty() {
            return Ok(None);
        }
        self.publish(batch.delta).await.map(Some)
    }

    fn tombstones_for(&self, key: &str) -> Result<Vec<Element>, CrdtError> {
        let txn = self.inner.db.begin_read().map_err(dberr("begin read"))?;
        let elems = txn.open_table(ELEMS).map_err(dberr("open table"))?;
        let tombs = txn.open_table(TOMBS).map_err(dberr("open table"))?;
        let mut out = Vec::new();
        for item in elems.range((key, "")..).map_err(dberr("read"))? {
            let (k, _) = item.map_err(dberr("read"))?;
            let (ek, id) = k.value();
            if ek != key {
                break;
            }
            if tombs.get((key, id)).map_err(dberr("read"))?.is_none() {
                out.push(Element {
                    key: key.to_string(),
                    id: id.to_string(),
                    value: Vec::new(),
                });
            }
        }
        Ok(out)
    }

    /// Makes a node of `delta` on top of the current heads and merges it, in one durable
    /// transaction (block, set, processed mark and heads together).
    async fn publish(&self, delta: Delta) -> Result<Published, CrdtError> {
        let _guard = self.inner.write.lock().await;
        let store = self.clone();
        blocking(move || store.publish_locked(delta)).await
    }

    /// [`Self::publish`]'s work, on a blocking thread with the write lock held.
    fn publish_locked(&self, mut delta: Delta) -> Result<Published, CrdtError> {
        let (heads, height) = self.heads_and_height()?;
        // A hostile trusted peer could announce u64::MAX: stay there rather than wrap.
        let height = height.saturating_add(1);
        delta.priority = height;
        let (cid, bytes) = node::encode_node(&delta, &heads);
        let key = cid.to_bytes();
        let mut before = BTreeMap::new();
        let txn = self.inner.db.begin_write().map_err(dberr("begin"))?;
        txn.open_table(BLOCKS)
            .map_err(dberr("open table"))?
            .insert(key.as_slice(), bytes.as_slice())
            .map_err(dberr("write"))?;
        merge_delta(&txn, &delta, &node::block_id(&cid), &mut before)?;
        txn.open_table(PROCESSED)
            .map_err(dberr("open table"))?
            .insert(key.as_slice(), ())
            .map_err(dberr("write"))?;
        {
            let mut h = txn.open_table(HEADS).map_err(dberr("open table"))?;
            for old in &heads {
                h.remove(old.to_bytes().as_slice())
                    .map_err(dberr("write"))?;
            }
            h.insert(key.as_slice(), height).map_err(dberr("write"))?;
        }
        txn.commit().map_err(dberr("commit"))?;
        self.emit(before)?;
        tracing::debug!(%cid, height, "published crdt delta");
        Ok(Published {
            cid,
            height,
            broadcast: node::encode_broadcast(&[cid]),
        })
    }

    // ----- remote updates ------------------------------------------------------------

    /// Applies a broadcast received from `sender` (its verified peer id): ignored when the
    /// sender is not trusted; otherwise every head is walked back, fetching missing nodes
    /// through `fetcher`, and merged. Heads that fail are left for the next broadcast or
    /// repair; the first failure is returned after the other heads were processed.
    pub async fn apply_broadcast<F: NodeFetcher>(
        &self,
        sender: &str,
        data: &[u8],
        fetcher: &F,
    ) -> Result<ApplyOutcome, CrdtError> {
        if !self.is_trusted(sender) {
            tracing::debug!(sender, "ignoring crdt broadcast from an untrusted peer");
            return Ok(ApplyOutcome::Untrusted);
        }
        let heads = node::decode_broadcast(data)?;
        let mut merged = 0;
        let mut first_err = None;
        for head in &heads {
            match self.process_head(*head, fetcher).await {
                Ok(n) => merged += n,
                Err(e) => {
                    tracing::warn!(%head, error = %e, "could not process a broadcast head");
                    first_err.get_or_insert(e);
                }
            }
            self.inner
                .seen_heads
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(*head);
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(ApplyOutcome::Applied {
                heads: heads.len(),
                merged,
            }),
        }
    }

    /// Walks back from `head`, fetching what is missing, and merges the unmerged nodes
    /// (oldest first). Returns how many were merged.
    pub async fn process_head<F: NodeFetcher>(
        &self,
        head: Cid,
        fetcher: &F,
    ) -> Result<usize, CrdtError> {
        if self.is_processed(&head)? {
            return Ok(0);
        }
        // The same head often arrives from several peers at once: walk it once.
        let Some(_inflight) = InFlight::claim(&self.inner.inflight, head) else {
            return Ok(0);
        };
        let mut visited = HashSet::new();
        let walk = self.walk(head, fetcher, false, &mut visited).await?;
        self.apply_branch_blocking(head, walk, false).await
    }

    /// [`Self::apply_branch`] under the write lock, on a blocking thread: it commits (and
    /// fsyncs) redb transactions, which must not stall the runtime's workers (they serve
    /// the peers' block requests and the health checks meanwhile).
    async fn apply_branch_blocking(
        &self,
        root: Cid,
        walk: Walk,
        pending_root: bool,
    ) -> Result<usize, CrdtError> {
        let _guard = self.inner.write.lock().await;
        let store = self.clone();
        blocking(move || store.apply_branch(root, &walk, pending_root)).await
    }

    /// Depth-first walk from `root`: loads (or fetches and stores) every block, stopping at
    /// merged nodes unless `through_merged`.
    async fn walk<F: NodeFetcher>(
        &self,
        root: Cid,
        fetcher: &F,
        through_merged: bool,
        visited: &mut HashSet<Cid>,
    ) -> Result<Walk, CrdtError> {
        let mut walk = Walk {
            unmerged: Vec::new(),
            walked: Vec::new(),
        };
        let mut stack = vec![(root, false)];
        while let Some((c, expanded)) = stack.pop() {
            if expanded {
                if !self.is_processed(&c)? {
                    walk.unmerged.push(c);
                }
                continue;
            }
            if !visited.insert(c) {
                continue;
            }
            if !through_merged && self.is_processed(&c)? {
                continue;
            }
            let n = self.load_or_fetch(&c, fetcher).await?;
            walk.walked.push(c);
            stack.push((c, true));
            for l in n.links.iter().rev() {
                if !visited.contains(l) {
                    stack.push((*l, false));
                }
            }
        }
        Ok(walk)
    }

    async fn load_or_fetch<F: NodeFetcher>(
        &self,
        cid: &Cid,
        fetcher: &F,
    ) -> Result<DeltaNode, CrdtError> {
        if let Some(bytes) = self.get_block(cid)? {
            return node::decode_node(cid, &bytes);
        }
        // One fetch of a block at a time: a walk that finds this block being fetched by
        // another walk waits for it, then finds it stored.
        let lock = self
            .inner
            .fetching
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(*cid)
            .or_default()
            .clone();
        let _fetching = FetchGuard {
            map: &self.inner.fetching,
            cid: *cid,
            _lock: lock.lock_owned().await,
        };
        if let Some(bytes) = self.get_block(cid)? {
            return node::decode_node(cid, &bytes);
        }
        let cfg = &self.inner.cfg;
        let mut last = String::new();
        for attempt in 0..cfg.fetch_attempts {
            if attempt > 0 {
                let backoff = Duration::from_millis(100u64 << attempt.min(6));
                tokio::time::sleep(backoff.min(cfg.fetch_timeout)).await;
            }
            let got = tokio::time::timeout(cfg.fetch_timeout, fetcher.fetch(*cid)).await;
            let bytes = match got {
                Err(_) => {
                    last = format!("timed out after {:?}", cfg.fetch_timeout);
                    continue;
                }
                Ok(Err(e)) => {
                    last = e.0;
                    continue;
                }
                Ok(Ok(b)) => b,
            };
            // A block that does not hash to its CID is a bad peer answer: try again.
            let n = match node::decode_node(cid, &bytes) {
                Ok(n) => n,
                Err(e) => {
                    last = e.to_string();
                    continue;
                }
            };
            // Blocks first: the block is stored before anything refers to it. Not fsynced
            // here: the durable commit that ends the branch persists it, and a crash before
            // that only means fetching it again. On a blocking thread: redb's write lock
            // may be held by a commit that is syncing.
            let store = self.clone();
            let key = cid.to_bytes();
            blocking(move || store.put_block(&key, &bytes)).await?;
            return Ok(n);
        }
        Err(CrdtError::Fetch {
            cid: cid.to_string(),
            attempts: cfg.fetch_attempts,
            timeout: cfg.fetch_timeout,
            last,
        })
    }

    /// Stores a fetched block (not fsynced; see [`Self::load_or_fetch`]).
    fn put_block(&self, key: &[u8], bytes: &[u8]) -> Result<(), CrdtError> {
        let mut txn = self.inner.db.begin_write().map_err(dberr("begin"))?;
        txn.set_durability(Durability::None)
            .map_err(dberr("set durability"))?;
        txn.open_table(BLOCKS)
            .map_err(dberr("open table"))?
            .insert(key, bytes)
            .map_err(dberr("write"))?;
        txn.commit().map_err(dberr("commit"))
    }

    /// Merges the unmerged nodes of a walk (children first), then makes `root` a head in
    /// place of the heads the branch links to. Must hold the write lock.
    ///
    /// Crash safety: the root is recorded in PENDING with a durable commit first; each node
    /// is merged and marked processed in its own (atomic) transaction; the final durable
    /// transaction updates the heads and drops the PENDING record. A crash anywhere leaves
    /// either the old state plus the PENDING record, or merged nodes plus the PENDING record:
    /// [`Self::repair`] finishes the branch. Because children are merged before parents, a
    /// merged node's descendants are all merged, so walks may stop at merged nodes.
    fn apply_branch(&self, root: Cid, walk: &Walk, pending_root: bool) -> Result<usize, CrdtError> {
        // Another task may have merged some of these while this one was fetching.
        let mut todo = Vec::with_capacity(walk.unmerged.len());
        for c in &walk.unmerged {
            if !self.is_processed(c)? {
                todo.push(*c);
            }
        }
        let root_key = root.to_bytes();
        let merges_root = todo.contains(&root);
        let root_height = match self.get_block(&root)? {
            Some(b) => node::decode_node(&root, &b)?.delta.priority,
            None => 0,
        };
        if merges_root && !pending_root {
            let txn = self.inner.db.begin_write().map_err(dberr("begin"))?;
            txn.open_table(PENDING)
                .map_err(dberr("open table"))?
                .insert(root_key.as_slice(), root_height)
                .map_err(dberr("write"))?;
            txn.commit().map_err(dberr("commit"))?;
        }
        let mut before = BTreeMap::new();
        let result = self.merge_nodes(&todo, &mut before);
        if let Err(e) = result {
            if !matches!(e, CrdtErrorKind::Crash) {
                let _ = self.mark_dirty();
            }
            return Err(e.into());
        }
        // Heads: drop those the branch links to, add the root.
        let heads: HashSet<Vec<u8>> = self.heads()?.into_iter().map(|h| h.0.to_bytes()).collect();
        let mut drop_heads = HashSet::new();
        for c in &walk.walked {
            if let Some(b) = self.get_block(c)? {
                for l in node::decode_node(c, &b)?.links {
                    let lk = l.to_bytes();
                    if heads.contains(&lk) {
                        drop_heads.insert(lk);
                    }
                }
            }
        }
        let txn = self.inner.db.begin_write().map_err(dberr("begin"))?;
        {
            let mut h = txn.open_table(HEADS).map_err(dberr("open table"))?;
            for k in &drop_heads {
                h.remove(k.as_slice()).map_err(dberr("write"))?;
            }
            if merges_root || pending_root {
                h.insert(root_key.as_slice(), root_height)
                    .map_err(dberr("write"))?;
            }
            // The root's record, and the record of any branch left pending by a crash that
            // this branch merged on its way (its root is not a head: this root links it).
            let mut pending = txn.open_table(PENDING).map_err(dberr("open table"))?;
            pending
                .remove(root_key.as_slice())
                .map_err(dberr("write"))?;
            for c in &todo {
                pending
                    .remove(c.to_bytes().as_slice())
                    .map_err(dberr("write"))?;
            }
        }
        txn.commit().map_err(dberr("commit"))?;
        self.emit(before)?;
        if !todo.is_empty() {
            tracing::debug!(%root, merged = todo.len(), "merged crdt branch");
        }
        Ok(todo.len())
    }

    fn merge_nodes(
        &self,
        todo: &[Cid],
        before: &mut BTreeMap<String, Option<Vec<u8>>>,
    ) -> Result<(), CrdtErrorKind> {
        for (i, c) in todo.iter().enumerate() {
            #[cfg(test)]
            if i >= self
                .inner
                .crash_after
                .load(std::sync::atomic::Ordering::SeqCst)
            {
                return Err(CrdtErrorKind::Crash);
            }
            let _ = i;
            let bytes = self.get_block(c)?.ok_or_else(|| CrdtError::BadNode {
                cid: c.to_string(),
                reason: "its block vanished from the store before it was merged".into(),
            })?;
            let n = node::decode_node(c, &bytes)?;
            let mut txn = self.inner.db.begin_write().map_err(dberr("begin"))?;
            txn.set_durability(Durability::None)
                .map_err(dberr("set durability"))?;
            merge_delta(&txn, &n.delta, &node::block_id(c), before)?;
            txn.open_table(PROCESSED)
                .map_err(dberr("open table"))?
                .insert(c.to_bytes().as_slice(), ())
                .map_err(dberr("write"))?;
            txn.commit().map_err(dberr("commit"))?;
        }
        Ok(())
    }

    /// Sends the changes between the values recorded in `before` and the current ones.
    fn emit(&self, before: BTreeMap<String, Option<Vec<u8>>>) -> Result<(), CrdtError> {
        if before.is_empty() {
            return Ok(());
        }
        for (key, old) in before {
            let new = self.get(&key)?;
            if new == old {
                continue;
            }
            let change = match new {
                Some(value) => Change::Put { key, value },
                None => Change::Delete { key },
            };
            // No receiver is fine: nobody is watching.
            let _ = self.inner.events.send(change);
        }
        Ok(())
    }

    // ----- rebroadcast and repair ----------------------------------------------------

    /// Call every [`Self::next_rebroadcast_delay`]: returns the broadcast of the heads that
    /// were not received from others since the previous tick (`None` when there is nothing
    /// to send), as go-ds-crdt's `rebroadcastHeads`.
    pub fn rebroadcast_tick(&self) -> Result<Option<Vec<u8>>, CrdtError> {
        let heads = self.heads()?;
        let mut seen = self
            .inner
            .seen_heads
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let to_send: Vec<Cid> = heads
            .into_iter()
            .map(|h| h.0)
            .filter(|h| !seen.contains(h))
            .collect();
        seen.clear();
        Ok((!to_send.is_empty()).then(|| node::encode_broadcast(&to_send)))
    }

    /// `rebroadcast_interval` with ±30 % jitter (go-ds-crdt's `randomizeInterval`).
    pub fn next_rebroadcast_delay(&self) -> Duration {
        let d = self.inner.cfg.rebroadcast_interval;
        let leeway = d * 30 / 100;
        if leeway.is_zero() {
            return d;
        }
        let r = rand::thread_rng().gen_range(0..(leeway.as_nanos() as u64 * 2));
        d - leeway + Duration::from_nanos(r)
    }

    /// Re-walks the whole DAG from the heads and from the branches left pending by a crash,
    /// merging every node that was not merged (fetching missing blocks through `fetcher`),
    /// then clears the dirty state. go-ds-crdt's `repairDAG`. Call at start when
    /// [`Self::is_dirty`], and every `repair_interval` while it stays dirty.
    pub async fn repair<F: NodeFetcher>(&self, fetcher: &F) -> Result<RepairReport, CrdtError> {
        tracing::warn!("crdt store: repairing the DAG");
        let pending: Vec<Cid> = {
            let txn = self.inner.db.begin_read().map_err(dberr("begin read"))?;
            let t = txn.open_table(PENDING).map_err(dberr("open table"))?;
            let mut v = Vec::new();
            for item in t.iter().map_err(dberr("read"))? {
                v.push(cid_from_db(item.map_err(dberr("read"))?.0.value())?);
            }
            v
        };
        let heads: Vec<Cid> = self.heads()?.into_iter().map(|h| h.0).collect();
        let mut report = RepairReport::default();
        let mut visited = HashSet::new();
        let pending_set: HashSet<Cid> = pending.iter().copied().collect();
        let mut first_err = None;
        for root in pending.into_iter().chain(heads) {
            if visited.contains(&root) {
                continue;
            }
            // One root that cannot be walked (a block nobody serves) must not stop the others.
            let res = match self.walk(root, fetcher, true, &mut visited).await {
                Ok(walk) => {
                    report.walked += walk.walked.len();
                    self.apply_branch_blocking(root, walk, pending_set.contains(&root))
                        .await
                }
                Err(e) => Err(e),
            };
            match res {
                Ok(n) => report.merged += n,
                Err(e) => {
                    tracing::warn!(%root, error = %e, "crdt repair could not finish a branch");
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            // Stay dirty: the next repair tries again.
            return Err(e);
        }
        let txn = self.inner.db.begin_write().map_err(dberr("begin"))?;
        txn.open_table(META)
            .map_err(dberr("open table"))?
            .remove(DIRTY)
            .map_err(dberr("write"))?;
        txn.commit().map_err(dberr("commit"))?;
        tracing::info!(
            walked = report.walked,
            merged = report.merged,
            "crdt repair done"
        );
        Ok(report)
    }

    #[cfg(test)]
    pub(crate) fn priority(&self, key: &str) -> Option<u64> {
        let txn = self.inner.db.begin_read().unwrap();
        let t = txn.open_table(VALUES).unwrap();
        t.get(key).unwrap().map(|v| v.value().0)
    }

    #[cfg(test)]
    pub(crate) fn crash_after(&self, nodes: usize) {
        self.inner
            .crash_after
            .store(nodes, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Runs store work that commits redb transactions on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CrdtError> + Send + 'static,
) -> Result<T, CrdtError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CrdtError::Db {
            op: "run a store task",
            detail: e.to_string(),
        })?
}

/// A block being fetched (see `Inner::fetching`): the lock is held while fetching, and the
/// entry is dropped with it.
struct FetchGuard<'a> {
    map: &'a StdMutex<HashMap<Cid, Arc<Mutex<()>>>>,
    cid: Cid,
    _lock: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for FetchGuard<'_> {
    fn drop(&mut self) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.cid);
    }
}

/// A head claimed for walking; released when dropped (also when the walk's future is).
struct InFlight<'a> {
    set: &'a StdMutex<HashSet<Cid>>,
    cid: Cid,
}

impl<'a> InFlight<'a> {
    fn claim(set: &'a StdMutex<HashSet<Cid>>, cid: Cid) -> Option<Self> {
        let fresh = set.lock().unwrap_or_else(|p| p.into_inner()).insert(cid);
        fresh.then_some(Self { set, cid })
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.cid);
    }
}

/// Internal error of a merge loop: a real error, or the test-only simulated crash (which must
/// not touch the store, like a real crash).
enum CrdtErrorKind {
    Err(CrdtError),
    #[cfg_attr(not(test), allow(dead_code))]
    Crash,
}

impl From<CrdtError> for CrdtErrorKind {
    fn from(e: CrdtError) -> Self {
        Self::Err(e)
    }
}

impl From<CrdtErrorKind> for CrdtError {
    fn from(e: CrdtErrorKind) -> Self {
        match e {
            CrdtErrorKind::Err(e) => e,
            #[cfg(test)]
            CrdtErrorKind::Crash => CrdtError::SimulatedCrash,
            #[cfg(not(test))]
            CrdtErrorKind::Crash => CrdtError::ShuttingDown,
        }
    }
}

fn cid_from_db(bytes: &[u8]) -> Result<Cid, CrdtError> {
    Cid::try_from(bytes).map_err(|e| CrdtError::Db {
        op: "decode CID",
        detail: e.to_string(),
    })
}

/// Keys are datastore keys as go-datastore's `ds.NewKey` cleans them: a leading `/`, no
/// trailing `/` (except the root), no empty segment.
fn check_key(key: &str) -> Result<(), CrdtError> {
    let bad = |reason: &str| {
        Err(CrdtError::InvalidKey {
            key: key.to_string(),
            reason: reason.to_string(),
        })
    };
    if !key.starts_with('/') {
        return bad("it must start with '/'");
    }
    if key.len() > 1 && key.ends_with('/') {
        return bad("it must not end with '/'");
    }
    if key.contains("//") {
        return bad("it must not contain an empty segment ('//')");
    }
    Ok(())
}

/// Records the value `key` had before this merge touched it (first touch only).
fn note_before(
    values: &redb::Table<'_, &'static str, (u64, &'static [u8])>,
    key: &str,
    before: &mut BTreeMap<String, Option<Vec<u8>>>,
) -> Result<(), CrdtError> {
    if !before.contains_key(key) {
        let old = values
            .get(key)
            .map_err(dberr("read"))?
            .map(|v| v.value().1.to_vec());
        before.insert(key.to_string(), old);
    }
    Ok(())
}

/// go-ds-crdt's `set.Merge`: tombstones first (`putTombs`), then elements (`putElems`).
fn merge_delta(
    txn: &WriteTransaction,
    delta: &Delta,
    id: &str,
    before: &mut BTreeMap<String, Option<Vec<u8>>>,
) -> Result<(), CrdtError> {
    let mut elems = txn.open_table(ELEMS).map_err(dberr("open table"))?;
    let mut tombs = txn.open_table(TOMBS).map_err(dberr("open table"))?;
    let mut values = txn.open_table(VALUES).map_err(dberr("open table"))?;

    // putTombs: for each tombstone, recompute the key's best value without the elements
    // tombstoned so far in this delta, then record the tombstone.
    let mut deleted: HashMap<&str, Vec<&str>> = HashMap::new();
    for t in &delta.tombstones {
        note_before(&values, &t.key, before)?;
        let ids = deleted.entry(t.key.as_str()).or_default();
        ids.push(t.id.as_str());
        match find_best_value(&elems, &tombs, &t.key, ids)? {
            None => {
                values.remove(t.key.as_str()).map_err(dberr("write"))?;
            }
            Some((v, p)) => {
                values
                    .insert(t.key.as_str(), (p, v.as_slice()))
                    .map_err(dberr("write"))?;
            }
        }
        tombs
            .insert((t.key.as_str(), t.id.as_str()), ())
            .map_err(dberr("write"))?;
    }

    // putElems: upstream writes the elements in a datastore batch and reads the current
    // value/priority from the committed store, so every element of this delta compares
    // against the value as it was before the delta's elements (snapshot), and a later
    // element that wins overwrites an earlier one.
    let prio = delta.priority;
    let mut snapshot: HashMap<&str, Option<(u64, Vec<u8>)>> = HashMap::new();
    for e in &delta.elements {
        let key = e.key.as_str();
        // The element itself; for several elements of one key in a delta keep the greatest
        // value (what go-ds-crdt's findBestValue would pick from the delta).
        let keep = match elems.get((key, id)).map_err(dberr("read"))? {
            Some(old) => old.value().1 < e.value.as_slice(),
            None => true,
        };
        if keep {
            elems
                .insert((key, id), (prio, e.value.as_slice()))
                .map_err(dberr("write"))?;
        }
        // setValue: skip if this element is tombstoned already.
        if tombs.get((key, id)).map_err(dberr("read"))?.is_some() {
            continue;
        }
        if !snapshot.contains_key(key) {
            let cur = values
                .get(key)
                .map_err(dberr("read"))?
                .map(|v| (v.value().0, v.value().1.to_vec()));
            snapshot.insert(key, cur);
        }
        let (cur_prio, cur_value) = match &snapshot[key] {
            Some((p, v)) => (*p, v.as_slice()),
            None => (0, &[][..]),
        };
        if prio < cur_prio {
            continue;
        }
        // Equal priority: the greater value (bytewise) wins.
        if prio == cur_prio && cur_value >= e.value.as_slice() {
            continue;
        }
        note_before(&values, key, before)?;
        values
            .insert(key, (prio, e.value.as_slice()))
            .map_err(dberr("write"))?;
    }
    Ok(())
}

/// go-ds-crdt's `findBestValue`: among the key's elements that are neither tombstoned nor in
/// `pending`, the highest priority wins, ties go to the greater value; an empty best value
/// means "no value" (as upstream, where a nil value deletes the key).
fn find_best_value(
    elems: &redb::Table<'_, (&'static str, &'static str), (u64, &'static [u8])>,
    tombs: &redb::Table<'_, (&'static str, &'static str), ()>,
    key: &str,
    pending: &[&str],
) -> Result<Option<(Vec<u8>, u64)>, CrdtError> {
    let mut best_value: Vec<u8> = Vec::new();
    let mut best_prio = 0u64;
    for item in elems.range((key, "")..).map_err(dberr("read"))? {
        let (k, v) = item.map_err(dberr("read"))?;
        let (ek, id) = k.value();
        if ek != key {
            break;
        }
        if pending.contains(&id) || tombs.get((key, id)).map_err(dberr("read"))?.is_some() {
            continue;
        }
        let (p, value) = v.value();
        if p < best_prio {
            continue;
        }
        if p > best_prio {
            best_value = value.to_vec();
            best_prio = p;
            continue;
        }
        if best_value.as_slice() < value {
            best_value = value.to_vec();
        }
    }
    Ok((!best_value.is_empty()).then_some((best_value, best_prio)))
}
