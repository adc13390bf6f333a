//! The pinset of a crdt-mode peer: a [`CrdtStore`] holding every pin (key [`pin_key`],
//! value upstream's `api.Pin` protobuf, [`super::apipin`]), written locally (through the [`Batcher`] when
//! batching is on), its heads broadcast on the cluster's gossip topic through a
//! [`Broadcaster`], allocation made here by the peer that receives the pin (as upstream:
//! crdt has no leader).

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::sync::mpsc;

use ipfs_cluster_crdt::{pin_cid_from_key, pin_key, Batcher, CrdtStore, Op, Published};
use ipfs_cluster_proto::types::v1::{Pin, PinType};

use crate::{
    allocate::{allocate_pin, now_nanos, AllocError, PeerMetricStore},
    error::ConsensusError as Error,
    pinning::{normalize_cid, pin_update, setup_pin, type_matches, PinDefaults},
};

/// Pins read from the store per page (List, Export, Watch syncs).
pub const PAGE: usize = 512;

/// How long a pin or unpin waits for this peer's first sync before it is refused.
pub const FIRST_SYNC_WRITE_WAIT: Duration = Duration::from_secs(20);

/// Where published heads go (the transport's Publish in production, a channel in tests).
pub trait Broadcaster: Send + Sync + 'static {
    fn publish(
        &self,
        data: Vec<u8>,
    ) -> futures::future::BoxFuture<'static, Result<(), super::net_error::CrdtNetError>>;
}

/// What the crdt node needs to know about this peer.
#[derive(Debug, Clone)]
pub struct CrdtOptions {
    pub peer_id: String,
    pub defaults: PinDefaults,
    pub allocate_by: Vec<String>,
    /// `consensus.crdt.peerset_metric` (default "ping").
    pub peerset_metric: String,
    pub follower_mode: bool,
    /// `consensus.crdt.trusted_peers`; `None` trusts every peer (`"*"`).
    pub trusted_peers: Option<Vec<String>>,
    /// `cluster.pin_only_on_trusted_peers`: allocate among trusted peers only.
    pub pin_only_on_trusted_peers: bool,
    /// `cluster.pin_only_on_untrusted_peers`: allocate among untrusted peers (followers)
    /// only.
    pub pin_only_on_untrusted_peers: bool,
    /// `cluster.disable_repinning` (upstream default: true = nothing is re-allocated when
    /// a peer dies).
    pub disable_repinning: bool,
    /// `monitor.pubsubmon.check_interval`: how often expired ping metrics are looked for.
    pub check_interval: Duration,
    /// `cluster.state_sync_interval`: how often expired pins (`expire_at`) are removed.
    pub state_sync_interval: Duration,
}

impl Default for CrdtOptions {
    fn default() -> Self {
        Self {
            peer_id: String::new(),
            defaults: PinDefaults {
                replication_min: -1,
                replication_max: -1,
            },
            allocate_by: vec!["freespace".into()],
            peerset_metric: "ping".into(),
            follower_mode: false,
            trusted_peers: None,
            pin_only_on_trusted_peers: false,
            pin_only_on_untrusted_peers: false,
            disable_repinning: true,
            check_interval: Duration::from_secs(15),
            state_sync_interval: Duration::from_secs(300),
        }
    }
}

/// upstream's distanceChecker: BLAKE2b-256 of the CID's bytes XOR BLAKE2b-256 of the peer
/// ID's bytes (its multihash; the string's bytes for an ID that is not base58).
pub fn distance(cid: &cid::Cid, peer: &str) -> [u8; 32] {
    use blake2::{Blake2b, Digest};
    type B256 = Blake2b<blake2::digest::consts::U32>;
    let c: [u8; 32] = B256::digest(cid.to_bytes()).into();
    let peer_bytes = cid::multibase::Base::Base58Btc
        .decode(peer)
        .unwrap_or_else(|_| peer.as_bytes().to_vec());
    let p: [u8; 32] = B256::digest(&peer_bytes).into();
    let mut out = [0u8; 32];
    for i in 0..32 {
        out[i] = c[i] ^ p[i];
    }
    out
}

/// Whether `me` is at least as close to `cid` as every peer in `others` (upstream's
/// isClosest: ties make several peers act).
pub fn is_closest(cid: &cid::Cid, me: &str, others: &[String]) -> bool {
    let mine = distance(cid, me);
    others
        .iter()
        .filter(|p| p.as_str() != me)
        .all(|p| distance(cid, p) >= mine)
}

pub struct CrdtNode {
    pub opts: CrdtOptions,
    pub store: CrdtStore,
    pub peer_metrics: Arc<PeerMetricStore>,
    /// Taken out at shutdown (which commits what is queued).
    batcher: std::sync::Mutex<Option<Batcher>>,
    batching: bool,
    broadcaster: Arc<dyn Broadcaster>,
    /// Last watch index handed out (see [`CrdtNode::next_index`]).
    index: AtomicU64,
    /// False while a new trusted peer (empty store) has not taken the other trusted
    /// peers' heads yet: its writes wait (see [`CrdtNode::wait_synced`]).
    synced: tokio::sync::watch::Sender<bool>,
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::internal(e.to_string())
}

/// A store error as a gRPC status: a full batching queue is RESOURCE_EXHAUSTED (retry
/// later), shutting down UNAVAILABLE, anything else INTERNAL.
pub fn store_status(e: ipfs_cluster_crdt::CrdtError) -> Error {
    use ipfs_cluster_crdt::CrdtError as E;
    match e {
        E::QueueFull { .. } => Error::resource_exhausted(e.to_string()),
        E::ShuttingDown => Error::unavailable(e.to_string()),
        e => Error::internal(e.to_string()),
    }
}

fn key_of(cid: &str) -> Result<String, Error> {
    let c = cid::Cid::try_from(cid).map_err(|e| {
        Error::invalid_argument(format!("bad pin object: invalid CID {cid:?}: {e}"))
    })?;
    Ok(pin_key(&c))
}

/// The stored value of `pin`: upstream's `api.Pin` protobuf.
fn value_of(pin: &Pin) -> Result<Vec<u8>, Error> {
    super::apipin::encode(pin).map_err(|e| Error::invalid_argument(format!("bad pin object: {e}")))
}

/// The pin stored under `key` (a bad value is reported, not fatal: it is skipped).
pub fn decode_entry(key: &str, value: &[u8]) -> Option<Pin> {
    match super::apipin::decode(value) {
        Ok(p) => Some(p),
        Err(e) => {
            let cid = pin_cid_from_key(key)
                .map(|c| c.to_string())
                .unwrap_or_else(|_| key.to_string());
            tracing::warn!(%cid, error = %e, "undecodable pin in the crdt store; skipped");
            None
        }
    }
}

impl CrdtNode {
    /// Starts the node on an open store. With batching on, a task forwards each committed
    /// batch's broadcast to `broadcaster`.
    pub fn new(
        opts: CrdtOptions,
        store: CrdtStore,
        broadcaster: Arc<dyn Broadcaster>,
    ) -> Result<Arc<Self>, ipfs_cluster_crdt::CrdtError> {
        let batching = store.config().batching.clone();
        let batcher = if batching.enabled() {
            let (tx, mut rx) = mpsc::channel::<Published>(64);
            let b = broadcaster.clone();
            tokio::spawn(async move {
                while let Some(p) = rx.recv().await {
                    if let Err(e) = b.publish(p.broadcast).await {
                        tracing::warn!(head = %p.cid, error = %e, "could not broadcast a crdt batch (peers get it on the next rebroadcast)");
                    }
                }
            });
            Some(Batcher::spawn(store.clone(), batching, tx)?)
        } else {
            None
        };
        // A new trusted peer writes only once it holds the pinset (`crates/crdt`: until
        // then its deltas would sit below the cluster's heights and lose to older values).
        // Followers never write; a store with heads or a peer that trusts nobody else has
        // nothing to wait for.
        let others = match &opts.trusted_peers {
            None => true,
            Some(t) => t.iter().any(|p| *p != opts.peer_id),
        };
        let synced = opts.follower_mode || !others || !store.heads()?.is_empty();
        Ok(Arc::new(Self {
            synced: tokio::sync::watch::Sender::new(synced),
            opts,
            store,
            peer_metrics: Arc::new(PeerMetricStore::default()),
            batching: batcher.is_some(),
            batcher: std::sync::Mutex::new(batcher),
            broadcaster,
            index: AtomicU64::new(0),
        }))
    }

    /// The next index for the watch stream. crdt has no log index: indexes are unique,
    /// increasing, and start above the wall clock in microseconds, so they keep increasing
    /// across restarts of this service (the ipfs connector keeps the last one it saw).
    /// Watch always starts with a full sync, so the index is never used to replay.
    pub fn next_index(&self) -> u64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let mut cur = self.index.load(Ordering::Relaxed);
        loop {
            let next = (cur + 1).max(now);
            match self
                .index
                .compare_exchange(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(c) => cur = c,
            }
        }
    }

    /// Whether this peer finished its first sync (writes are accepted).
    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Ends the first sync (logged once).
    pub fn mark_synced(&self, why: &str) {
        if !self.is_synced() {
            self.synced.send_replace(true);
            tracing::info!(why, "first crdt sync done: this peer accepts writes");
        }
    }

    /// Waits up to `within` for the first sync; then refuses (UNAVAILABLE: retry).
    pub async fn wait_synced(&self, within: Duration) -> Result<(), Error> {
        let mut rx = self.synced.subscribe();
        let synced = tokio::time::timeout(within, async { rx.wait_for(|s| *s).await.is_ok() })
            .await
            .unwrap_or(false);
        if synced {
            return Ok(());
        }
        Err(Error::unavailable(format!(
            "this peer has not finished its first sync with the trusted peers yet (a new crdt peer takes their pinset before it writes; waited {}s); retry shortly",
            within.as_secs()
        )))
    }

    /// Whether `peer` may write to this peer's pinset (`trusted_peers`; this peer always).
    pub fn trusts(&self, peer: &str) -> bool {
        peer == self.opts.peer_id
            || match &self.opts.trusted_peers {
                None => true,
                Some(t) => t.iter().any(|p| p == peer),
            }
    }

    /// Refuses a write that another peer asked for through a peer call when that peer is
    /// not trusted, and any write in follower mode.
    pub fn check_write(&self, caller: Option<&str>) -> Result<(), Error> {
        if self.opts.follower_mode {
            return Err(Error::failed_precondition(
                ipfs_cluster_config::FOLLOWER_MODE_ERROR,
            ));
        }
        if let Some(p) = caller {
            if !self.trusts(p) {
                tracing::warn!(peer = %p, "refused a write from a peer that is not in consensus.crdt.trusted_peers");
                return Err(Error::permission_denied(format!(
                    "peer {p} may not change the pinset of peer {}: it is not in consensus.crdt.trusted_peers (add its ID there to let it write)",
                    self.opts.peer_id
                )));
            }
        }
        Ok(())
    }

    /// The peerset: this peer and every peer with a live `peerset_metric` metric.
    pub fn peerset(&self) -> Vec<String> {
        let mut p = self
            .peer_metrics
            .live_peers(&self.opts.peerset_metric, now_nanos());
        if !p.contains(&self.opts.peer_id) {
            p.push(self.opts.peer_id.clone());
            p.sort();
        }
        p
    }

    /// The peers a pin may be allocated to: the peerset, keeping only the trusted or only
    /// the untrusted peers under `pin_only_on_trusted_peers` / `pin_only_on_untrusted_peers`
    /// (upstream's allocate.go filter; this peer always counts as trusted).
    pub fn allocation_candidates(&self) -> Vec<String> {
        let mut p = self.peerset();
        if self.opts.pin_only_on_trusted_peers {
            p.retain(|id| self.trusts(id));
        } else if self.opts.pin_only_on_untrusted_peers {
            p.retain(|id| !self.trusts(id));
        }
        p
    }

    pub async fn get(&self, cid: &str) -> Result<Option<Pin>, Error> {
        let key = key_of(cid)?;
        let store = self.store.clone();
        let v = tokio::task::spawn_blocking(move || store.get(&key).map(|v| (key, v)))
            .await
            .map_err(internal)?
            .map_err(store_status)?;
        Ok(match v {
            (key, Some(bytes)) => decode_entry(&key, &bytes),
            (_, None) => None,
        })
    }

    /// One page of pins after `after` (a store key), with the last key read.
    pub async fn page(
        &self,
        after: Option<String>,
        filter: u32,
    ) -> Result<(Vec<Pin>, Option<String>), Error> {
        let store = self.store.clone();
        let items = tokio::task::spawn_blocking(move || store.list("/", after.as_deref(), PAGE))
            .await
            .map_err(internal)?
            .map_err(store_status)?;
        let last = (items.len() == PAGE)
            .then(|| items.last().map(|(k, _)| k.clone()))
            .flatten();
        let pins = items
            .iter()
            .filter_map(|(k, v)| decode_entry(k, v))
            .filter(|p| type_matches(p.r#type, filter))
            .collect();
        Ok((pins, last))
    }

    fn allocate_for(
        &self,
        pin: &Pin,
        existing: Option<&Pin>,
        blacklist: &[String],
    ) -> Result<Vec<String>, AllocError> {
        allocate_pin(
            pin,
            existing,
            blacklist,
            &self.allocation_candidates(),
            &self.opts.peer_id,
            &self.opts.allocate_by,
            &self.peer_metrics,
        )
    }

    async fn write(&self, key: String, value: Option<Vec<u8>>) -> Result<(), Error> {
        if self.batching {
            let op = match value {
                Some(value) => Op::Put { key, value },
                None => Op::Delete { key },
            };
            let g = self.batcher.lock().unwrap_or_else(|p| p.into_inner());
            return match g.as_ref() {
                Some(b) => b.submit(op).map_err(store_status),
                None => Err(store_status(ipfs_cluster_crdt::CrdtError::ShuttingDown)),
            };
        }
        let published = match value {
            Some(v) => Some(self.store.put(&key, v).await.map_err(store_status)?),
            None => self.store.delete(&key).await.map_err(store_status)?,
        };
        if let Some(p) = published {
            if let Err(e) = self.broadcaster.publish(p.broadcast).await {
                // Written locally: peers get it with the next rebroadcast of the heads.
                tracing::warn!(head = %p.cid, error = %e, "could not broadcast a crdt update (peers get it on the next rebroadcast)");
            }
        }
        Ok(())
    }

    /// Pins (allocating here when the pin has no allocations), as upstream's crdt LogPin.
    pub async fn pin(&self, mut pin: Pin) -> Result<Pin, Error> {
        pin.cid = normalize_cid(&pin.cid).map_err(Error::from)?;
        self.wait_synced(FIRST_SYNC_WRITE_WAIT).await?;
        let update_from = pin
            .options
            .as_ref()
            .map(|o| o.pin_update.clone())
            .unwrap_or_default();
        if !update_from.is_empty() && update_from != pin.cid {
            let from_cid = normalize_cid(&update_from).map_err(Error::from)?;
            let from = self.get(&from_cid).await?.ok_or(Error::NotInPinset)?;
            let now = now_nanos().div_euclid(1_000_000_000);
            let p = pin_update(&from, &pin.cid, pin.options.as_ref(), now).map_err(Error::from)?;
            self.write(key_of(&p.cid)?, Some(value_of(&p)?)).await?;
            return Ok(p);
        }
        let existing = self.get(&pin.cid).await?;
        setup_pin(&mut pin, existing.as_ref(), self.opts.defaults, now_nanos())
            .map_err(Error::from)?;
        if pin.r#type != PinType::Meta as i32 && pin.allocations.is_empty() {
            pin.allocations = self
                .allocate_for(&pin, existing.as_ref(), &[])
                .map_err(Error::from)?;
        }
        let mut stored = pin.clone();
        if let Some(o) = stored.options.as_mut() {
            o.user_allocations.clear();
        }
        self.write(key_of(&pin.cid)?, Some(value_of(&stored)?))
            .await?;
        Ok(pin)
    }

    pub async fn unpin(&self, cid: &str) -> Result<Pin, Error> {
        let cid = normalize_cid(cid).map_err(Error::from)?;
        self.wait_synced(FIRST_SYNC_WRITE_WAIT).await?;
        let existing = self.get(&cid).await?.ok_or(Error::NotInPinset)?;
        self.write(key_of(&cid)?, None).await?;
        Ok(existing)
    }

    /// Replaces the pinset with `pins` (state import): every present key is deleted and
    /// every pin put, committed in batches of `chunk` operations.
    pub async fn replace_all(&self, pins: Vec<Pin>, chunk: usize) -> Result<u64, Error> {
        let chunk = chunk.max(1);
        let mut keys = Vec::new();
        let mut after = None;
        loop {
            let store = self.store.clone();
            let a = after.clone();
            let items = tokio::task::spawn_blocking(move || store.list("/", a.as_deref(), PAGE))
                .await
                .map_err(internal)?
                .map_err(store_status)?;
            let full = items.len() == PAGE;
            after = items.last().map(|(k, _)| k.clone());
            keys.extend(items.into_iter().map(|(k, _)| k));
            if !full {
                break;
            }
        }
        let imported: std::collections::HashSet<String> =
            pins.iter().filter_map(|p| key_of(&p.cid).ok()).collect();
        let mut ops: Vec<(String, Option<Vec<u8>>)> = keys
            .into_iter()
            .filter(|k| !imported.contains(k))
            .map(|k| (k, None))
            .collect();
        for p in &pins {
            ops.push((key_of(&p.cid)?, Some(value_of(p)?)));
        }
        for part in ops.chunks(chunk) {
            let mut b = ipfs_cluster_crdt::Batch::new();
            for (k, v) in part {
                match v {
                    Some(v) => b.put(k, v.clone()).map_err(store_status)?,
                    None => self.store.batch_delete(&mut b, k).map_err(store_status)?,
                }
            }
            if let Some(p) = self.store.commit(b).await.map_err(store_status)? {
                if let Err(e) = self.broadcaster.publish(p.broadcast).await {
                    tracing::warn!(error = %e, "could not broadcast an imported batch (peers get it on the next rebroadcast)");
                }
            }
        }
        Ok(pins.len() as u64)
    }

    /// Every pin in the store (pages of [`PAGE`]).
    async fn all_pins(&self) -> Result<Vec<Pin>, Error> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let (pins, last) = self.page(after, 0).await?;
            out.extend(pins);
            match last {
                Some(l) => after = Some(l),
                None => return Ok(out),
            }
        }
    }

    /// upstream's repinFromPeer for a dead `peer` (its ping metric expired), in crdt mode:
    /// every pin allocated to `peer` for which this peer is the closest live trusted peer
    /// (so that one surviving peer acts per CID) is allocated again with `peer`
    /// blacklisted; pins whose other allocations still meet rmin keep them. The number of
    /// pins re-written.
    pub async fn repin_from(&self, peer: &str) -> Result<usize, Error> {
        let others: Vec<String> = self
            .peerset()
            .into_iter()
            .filter(|p| p != peer && p != &self.opts.peer_id && self.trusts(p))
            .collect();
        let blacklist = [peer.to_string()];
        let mut changed = 0;
        for existing in self.all_pins().await? {
            if !existing.allocations.iter().any(|a| a == peer) {
                continue;
            }
            let Ok(c) = cid::Cid::try_from(existing.cid.as_str()) else {
                continue;
            };
            if !is_closest(&c, &self.opts.peer_id, &others) {
                continue;
            }
            let mut p = existing.clone();
            p.allocations.clear();
            match self.allocate_for(&p, Some(&existing), &blacklist) {
                Ok(a) if a != existing.allocations => {
                    tracing::info!(cid = %p.cid, from = %peer, to = ?a, "re-allocating a pin of a dead peer");
                    p.allocations = a;
                    p.timestamp = now_nanos().div_euclid(1_000_000_000);
                    self.write(key_of(&p.cid)?, Some(value_of(&p)?)).await?;
                    changed += 1;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(cid = %p.cid, %peer, error = %e, "cannot re-allocate pin")
                }
            }
        }
        Ok(changed)
    }

    /// One pass of the alert check (upstream's ping alerts in crdt mode: every peer whose
    /// last ping metric was valid and has expired): each newly dead peer's pins are
    /// re-allocated by their closest live trusted peer ([`CrdtNode::repin_from`]), once per
    /// failure (a fresh ping re-arms it). Followers and `disable_repinning` do nothing.
    pub async fn check_dead_peers(
        &self,
        alerted: &mut std::collections::BTreeSet<String>,
    ) -> usize {
        if self.opts.disable_repinning || self.opts.follower_mode {
            return 0;
        }
        let dead: Vec<String> = self
            .peer_metrics
            .valid_expired(now_nanos())
            .into_iter()
            .filter(|m| m.name == self.opts.peerset_metric && m.peer != self.opts.peer_id)
            .map(|m| m.peer)
            .collect();
        alerted.retain(|p| dead.contains(p));
        let mut n = 0;
        for p in dead {
            if !alerted.insert(p.clone()) {
                continue;
            }
            tracing::warn!(peer = %p, "peer's ping metric expired; re-allocating the pins this peer is closest to");
            match self.repin_from(&p).await {
                Ok(k) => n += k,
                Err(e) => tracing::warn!(peer = %p, error = %e.message(), "re-allocating pins"),
            }
        }
        n
    }

    /// upstream's StateSync in crdt mode: unpins every pin whose `expire_at` has passed
    /// and for which this peer is the closest live trusted peer (one peer acts per CID;
    /// followers never do). The number of pins removed.
    pub async fn expire_pins(&self) -> Result<usize, Error> {
        if self.opts.follower_mode {
            return Ok(0);
        }
        let now = now_nanos().div_euclid(1_000_000_000);
        let others: Vec<String> = self
            .peerset()
            .into_iter()
            .filter(|p| p != &self.opts.peer_id && self.trusts(p))
            .collect();
        let mut n = 0;
        for p in self.all_pins().await? {
            let expired = p
                .options
                .as_ref()
                .is_some_and(|o| o.expire_at != 0 && o.expire_at <= now);
            if !expired {
                continue;
            }
            let Ok(c) = cid::Cid::try_from(p.cid.as_str()) else {
                continue;
            };
            if !is_closest(&c, &self.opts.peer_id, &others) {
                continue;
            }
            tracing::info!(cid = %p.cid, "pin expired; unpinning");
            self.write(key_of(&p.cid)?, None).await?;
            n += 1;
        }
        Ok(n)
    }

    /// Stops the batcher (committing what is queued).
    pub async fn shutdown(&self) {
        let b = self
            .batcher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(b) = b {
            if tokio::time::timeout(Duration::from_secs(10), b.shutdown())
                .await
                .is_err()
            {
                tracing::warn!("the crdt batcher did not commit its queue within 10s");
            }
        }
    }
}
