//! crdt mode on the transport: heads go out with `Publish` on the cluster's topic
//! ([`ipfs_cluster_crdt::topic_name`] of `cluster_name`), broadcasts come in through
//! `Subscribe` (the transport gives the gossip source that gossipsub verified: the trust
//! input), and missing delta nodes are fetched with a peer call to the sender's (then any
//! peer's) `Consensus/CrdtBlock`, and when no peer answers that (upstream peers do not
//! have it), with bitswap from the connected peers (the transport's `BitswapGet`), the way
//! upstream peers serve them. Also the timers: rebroadcast, repair, the pull of a trusted
//! peer's heads every rebroadcast interval ([`spawn_pull`]: gossip is best effort) and a
//! new trusted peer's first sync ([`spawn_first_sync`]).

use std::{sync::Arc, time::Duration};

use futures::future::BoxFuture;
use prost::Message;
use tokio::sync::Semaphore;
use tokio_stream::StreamExt;

use ipfs_cluster_crdt::{ApplyOutcome, FetchError, NodeFetcher};
use ipfs_cluster_proto::{
    client::TransportClient,
    consensus::v1::{CrdtBlockRequest, CrdtBlockResponse, CrdtHeadsRequest, CrdtHeadsResponse},
    names,
    transport::v1::{
        BitswapGetRequest, PeerCallRequest, PeersRequest, PublishRequest, SubscribeRequest,
    },
};

pub use super::net_error::CrdtNetError;
use super::node::{Broadcaster, CrdtNode};

/// One block fetch from one peer.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Broadcasts applied at once (each may fetch a branch).
const APPLY_CONCURRENCY: usize = 8;
/// First sync: how long a new trusted peer waits for another trusted peer to be
/// connected before it starts alone.
const FIRST_SYNC_ALONE: Duration = Duration::from_secs(10);
/// First sync: how long the trusted peers' heads may take to arrive and apply (a trusted
/// peer that does not answer `CrdtHeads`) before writes open without them.
const FIRST_SYNC_APPLY: Duration = Duration::from_secs(60);
/// Heads sent at most this often in answer to empty broadcasts.
const ANSWER_EVERY: Duration = Duration::from_secs(1);

/// Publishes on the cluster's crdt topic through the local transport.
pub struct TransportBroadcaster {
    pub client: TransportClient,
    pub topic: String,
}

impl Broadcaster for TransportBroadcaster {
    fn publish(&self, data: Vec<u8>) -> BoxFuture<'static, Result<(), CrdtNetError>> {
        let mut c = self.client.clone();
        let topic = self.topic.clone();
        Box::pin(async move {
            let mut r = tonic::Request::new(PublishRequest { topic, data });
            r.set_timeout(Duration::from_secs(10));
            c.publish(r)
                .await
                .map(|_| ())
                .map_err(|e| CrdtNetError::Publish(e.message().to_string()))
        })
    }
}

/// Something that answers `CrdtBlock` for a peer (the transport's peer call in production).
pub trait BlockSource: Send + Sync + 'static {
    fn block(&self, peer: &str, cid: &str) -> BoxFuture<'static, Result<Vec<u8>, CrdtNetError>>;
    /// The block over bitswap from any connected peer (upstream peers serve delta nodes
    /// only this way); None when this source has no bitswap.
    fn bitswap(&self, _cid: &str) -> Option<BoxFuture<'static, Result<Vec<u8>, CrdtNetError>>> {
        None
    }
    /// `peer`'s current heads (`Consensus/CrdtHeads`). Peers of ours only: upstream peers
    /// do not answer it.
    fn heads(&self, peer: &str) -> BoxFuture<'static, Result<Vec<cid::Cid>, CrdtNetError>>;
}

pub struct TransportBlocks {
    pub client: TransportClient,
}

impl TransportBlocks {
    /// A `Consensus/<method>` peer call to `peer` within FETCH_TIMEOUT: the answer's payload.
    fn call(
        &self,
        peer: &str,
        method: &str,
        payload: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, CrdtNetError>> {
        let mut c = self.client.clone();
        let req = PeerCallRequest {
            peer: peer.to_string(),
            service: names::CONSENSUS.to_string(),
            method: method.to_string(),
            payload,
            timeout_ms: FETCH_TIMEOUT.as_millis() as u32,
        };
        let peer = peer.to_string();
        Box::pin(async move {
            let mut r = tonic::Request::new(req);
            r.set_timeout(FETCH_TIMEOUT + Duration::from_secs(1));
            Ok(c.call(r)
                .await
                .map_err(|e| CrdtNetError::Call {
                    peer,
                    message: e.message().to_string(),
                })?
                .into_inner()
                .payload)
        })
    }
}

impl BlockSource for TransportBlocks {
    fn block(&self, peer: &str, cid: &str) -> BoxFuture<'static, Result<Vec<u8>, CrdtNetError>> {
        let call = self.call(
            peer,
            "CrdtBlock",
            CrdtBlockRequest {
                cid: cid.to_string(),
            }
            .encode_to_vec(),
        );
        let peer = peer.to_string();
        Box::pin(async move {
            let payload = call.await?;
            CrdtBlockResponse::decode(payload.as_slice())
                .map(|r| r.data)
                .map_err(|error| CrdtNetError::Undecodable {
                    peer,
                    method: "CrdtBlock",
                    error,
                })
        })
    }

    fn heads(&self, peer: &str) -> BoxFuture<'static, Result<Vec<cid::Cid>, CrdtNetError>> {
        let call = self.call(peer, "CrdtHeads", CrdtHeadsRequest {}.encode_to_vec());
        let peer = peer.to_string();
        Box::pin(async move {
            let payload = call.await?;
            let heads = CrdtHeadsResponse::decode(payload.as_slice())
                .map_err(|error| CrdtNetError::Undecodable {
                    peer: peer.clone(),
                    method: "CrdtHeads",
                    error,
                })?
                .heads;
            heads
                .iter()
                .map(|h| {
                    cid::Cid::try_from(h.as_str()).map_err(|error| CrdtNetError::BadHead {
                        peer: peer.clone(),
                        head: h.clone(),
                        error,
                    })
                })
                .collect()
        })
    }

    fn bitswap(&self, cid: &str) -> Option<BoxFuture<'static, Result<Vec<u8>, CrdtNetError>>> {
        let mut c = self.client.clone();
        let req = BitswapGetRequest {
            cid: cid.to_string(),
            peers: Vec::new(),
            timeout_ms: FETCH_TIMEOUT.as_millis() as u32,
        };
        Some(Box::pin(async move {
            let mut r = tonic::Request::new(req);
            r.set_timeout(FETCH_TIMEOUT + Duration::from_secs(1));
            c.bitswap_get(r)
                .await
                .map(|r| r.into_inner().data)
                .map_err(|e| CrdtNetError::Bitswap(e.message().to_string()))
        }))
    }
}

/// go-ds-crdt's DAG fetch over peer calls: the broadcast's sender first (it has the
/// branch), then the other peers of the peerset (one of them merged it already), then
/// bitswap to every connected peer (upstream peers answer only that).
pub struct PeerFetcher {
    pub source: Arc<dyn BlockSource>,
    pub peers: Vec<String>,
}

impl NodeFetcher for PeerFetcher {
    async fn fetch(&self, cid: cid::Cid) -> Result<Vec<u8>, FetchError> {
        let cid_s = cid.to_string();
        let mut errors = Vec::new();
        for p in &self.peers {
            match self.source.block(p, &cid_s).await {
                Ok(b) => return Ok(b),
                Err(e) => errors.push(e),
            }
        }
        if let Some(f) = self.source.bitswap(&cid_s) {
            match f.await {
                Ok(b) => return Ok(b),
                Err(e) => errors.push(e),
            }
        }
        Err(FetchError(if errors.is_empty() {
            "no peer to fetch it from".into()
        } else {
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        }))
    }
}

/// Peers to fetch from: `first` (the sender), then the peerset, without this peer.
pub fn fetch_order(node: &CrdtNode, first: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = first.map(|f| vec![f.to_string()]).unwrap_or_default();
    for p in node.peerset() {
        if p != node.opts.peer_id && !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// Applies broadcasts from the topic until the process ends (resubscribing on errors).
pub fn spawn_subscriber(
    node: Arc<CrdtNode>,
    mut client: TransportClient,
    topic: String,
    source: Arc<dyn BlockSource>,
) {
    tokio::spawn(async move {
        let limit = Arc::new(Semaphore::new(APPLY_CONCURRENCY));
        let answered = Arc::new(std::sync::Mutex::new(None::<std::time::Instant>));
        loop {
            match client
                .subscribe(SubscribeRequest {
                    topic: topic.clone(),
                })
                .await
            {
                Ok(s) => {
                    tracing::info!(%topic, "following the crdt topic");
                    let mut s = s.into_inner();
                    while let Some(msg) = s.next().await {
                        let m = match msg {
                            Ok(m) => m,
                            Err(e) => {
                                tracing::warn!(error = %e.message(), "crdt subscription ended; resubscribing");
                                break;
                            }
                        };
                        // Our own broadcasts come back to us: nothing to apply.
                        if m.from == node.opts.peer_id {
                            continue;
                        }
                        let Ok(permit) = limit.clone().acquire_owned().await else {
                            return;
                        };
                        let node = node.clone();
                        let source = source.clone();
                        let (client, topic, answered) =
                            (client.clone(), topic.clone(), answered.clone());
                        tokio::spawn(async move {
                            let _permit = permit;
                            // An empty broadcast from a trusted peer: a new peer asking
                            // for the heads (its first sync). Answered at once, at most
                            // once a second.
                            let asks = node.trusts(&m.from)
                                && ipfs_cluster_crdt::decode_broadcast(&m.data)
                                    .is_ok_and(|h| h.is_empty());
                            if asks {
                                answer_heads(&node, client, topic, &answered).await;
                                return;
                            }
                            let fetcher = PeerFetcher {
                                source,
                                peers: fetch_order(&node, Some(&m.from)),
                            };
                            match node.store.apply_broadcast(&m.from, &m.data, &fetcher).await {
                                Ok(ApplyOutcome::Untrusted) => tracing::info!(
                                    from = %m.from,
                                    "ignored a crdt broadcast from a peer that is not in consensus.crdt.trusted_peers"
                                ),
                                Ok(ApplyOutcome::Applied { heads, merged }) => {
                                    if heads > 0 {
                                        node.mark_synced("took the heads of a trusted peer");
                                    }
                                    if merged > 0 {
                                        tracing::debug!(from = %m.from, heads, merged, "applied a crdt broadcast");
                                    }
                                }
                                Err(e) => {
                                    tracing::warn!(from = %m.from, error = %e, "could not apply a crdt broadcast (retried on the next rebroadcast)")
                                }
                            }
                        });
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e.message(), "subscribing to the crdt topic");
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

/// Publishes this peer's heads (when it has any) in answer to a first-sync request.
async fn answer_heads(
    node: &CrdtNode,
    mut client: TransportClient,
    topic: String,
    answered: &std::sync::Mutex<Option<std::time::Instant>>,
) {
    {
        let mut last = answered.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|t| t.elapsed() < ANSWER_EVERY) {
            return;
        }
        *last = Some(std::time::Instant::now());
    }
    let heads = match node.store.heads() {
        Ok(h) if !h.is_empty() => h,
        _ => return,
    };
    let cids: Vec<cid::Cid> = heads.into_iter().map(|(c, _)| c).collect();
    let data = ipfs_cluster_crdt::encode_broadcast(&cids);
    if let Err(e) = client.publish(PublishRequest { topic, data }).await {
        tracing::debug!(error = %e.message(), "answering a first-sync request");
    }
}

/// What asking trusted peers for their heads (`Consensus/CrdtHeads`) found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pulled {
    /// Peers that answered.
    pub answered: usize,
    /// Peers asked.
    pub asked: usize,
    /// Heads they named, in all.
    pub heads: usize,
    /// Nodes merged while taking them.
    pub merged: usize,
}

/// Asks each of `peers` (trusted peers) for its heads and takes them as a broadcast from
/// that peer would be taken (missing nodes fetched from it first, then from the peerset),
/// except that they do not count as seen for the rebroadcast. A peer that does not answer
/// (down, or an upstream peer: they do not serve `CrdtHeads`) is skipped; the first error
/// taking an answered head is returned after the others were tried.
pub async fn pull_heads(
    node: &CrdtNode,
    source: &Arc<dyn BlockSource>,
    peers: &[String],
) -> Result<Pulled, ipfs_cluster_crdt::CrdtError> {
    let answers = futures::future::join_all(peers.iter().map(|p| source.heads(p))).await;
    let mut pulled = Pulled {
        answered: 0,
        asked: peers.len(),
        heads: 0,
        merged: 0,
    };
    let mut first_err = None;
    for (p, answer) in peers.iter().zip(answers) {
        let heads = match answer {
            Ok(h) => h,
            Err(e) => {
                tracing::debug!(peer = %p, error = %e, "asking a trusted peer for its crdt heads");
                continue;
            }
        };
        pulled.answered += 1;
        pulled.heads += heads.len();
        let fetcher = PeerFetcher {
            source: source.clone(),
            peers: fetch_order(node, Some(p)),
        };
        for h in heads {
            match node.store.process_head(h, &fetcher).await {
                Ok(n) => pulled.merged += n,
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(pulled),
    }
}

/// The trusted peers (not this one) the transport is connected to.
async fn connected_trusted(node: &CrdtNode, client: &TransportClient) -> Vec<String> {
    connected(client)
        .await
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| *p != node.opts.peer_id && node.trusts(p))
        .collect()
}

/// Every `rebroadcast_interval` (±30 %), pulls the heads of one connected trusted peer
/// (chosen at random) and takes what this peer lacks. Broadcasts and rebroadcasts carry
/// the heads too, but gossip is best effort: a peer outside the trusted peers' gossip
/// (its gossipsub stream to them broken, or its broadcasts dropped under load) would
/// otherwise never converge, and would not know it. Upstream peers do not answer the
/// call; for them the rebroadcast stays the only way.
pub fn spawn_pull(node: Arc<CrdtNode>, client: TransportClient, source: Arc<dyn BlockSource>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(node.store.next_rebroadcast_delay()).await;
            let peers = connected_trusted(&node, &client).await;
            if peers.is_empty() {
                continue;
            }
            // A different peer most times (the clock's nanoseconds are random enough).
            let pick = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos() as usize)
                .unwrap_or(0)
                % peers.len();
            let peer = peers[pick].clone();
            match pull_heads(&node, &source, std::slice::from_ref(&peer)).await {
                Ok(p) if p.merged > 0 => {
                    tracing::info!(%peer, merged = p.merged, "took crdt updates by pulling the heads of a trusted peer (the gossip had not brought them, or not yet)")
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "could not take the crdt heads pulled from a trusted peer (retried on the next pull)")
                }
            }
        }
    });
}

/// A new trusted peer's first sync (its store is empty; see `CrdtNode::wait_synced`):
/// once another trusted peer is connected, it asks every connected trusted peer for its
/// heads (`Consensus/CrdtHeads`) and takes them. Writes open when heads were taken, or at
/// once when every asked peer answered that it has none: a condition, not a wait. While a
/// connected trusted peer does not answer (starting, overloaded, or a peer that does not
/// serve the call: upstream peers, ours before it), it asks again every second and also
/// sends empty broadcasts, which older peers of ours answer with their heads (taken by the
/// subscriber, which then ends the sync), for at most `FIRST_SYNC_APPLY`. With no other
/// trusted peer connected within `FIRST_SYNC_ALONE`, it starts alone.
pub fn spawn_first_sync(
    node: Arc<CrdtNode>,
    client: TransportClient,
    broadcaster: Arc<dyn Broadcaster>,
    source: Arc<dyn BlockSource>,
) {
    if node.is_synced() {
        return;
    }
    tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        let mut asking_since: Option<tokio::time::Instant> = None;
        while !node.is_synced() {
            let trusted = connected_trusted(&node, &client).await;
            if trusted.is_empty() {
                if asking_since.is_none() && start.elapsed() >= FIRST_SYNC_ALONE {
                    node.mark_synced("no other trusted peer is reachable");
                    return;
                }
            } else {
                let since = *asking_since.get_or_insert_with(|| {
                    tracing::info!("new crdt peer: asking the trusted peers for their heads before accepting writes");
                    tokio::time::Instant::now()
                });
                match pull_heads(&node, &source, &trusted).await {
                    Ok(p) if p.heads > 0 => {
                        node.mark_synced("took the heads of a trusted peer");
                        return;
                    }
                    Ok(p) if p.answered == p.asked => {
                        node.mark_synced("no trusted peer had heads to send");
                        return;
                    }
                    Ok(p) => {
                        tracing::debug!(asked = p.asked, answered = p.answered, "first sync: not every trusted peer answered CrdtHeads; asking by broadcast too");
                        let _ = broadcaster.publish(Vec::new()).await;
                    }
                    Err(e) => {
                        tracing::info!(error = %e, "first sync: taking the trusted peers' heads (retrying)");
                    }
                }
                if since.elapsed() >= FIRST_SYNC_APPLY {
                    node.mark_synced("the trusted peers' heads could not be taken in time (taken on their next rebroadcast or pull)");
                    return;
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

/// Rebroadcasts this peer's heads every `rebroadcast_interval` (±30 %), and once at start
/// so that peers that missed updates while this one was away catch up.
pub fn spawn_rebroadcast(node: Arc<CrdtNode>, broadcaster: Arc<dyn Broadcaster>) {
    tokio::spawn(async move {
        let mut first = true;
        loop {
            let delay = if first {
                Duration::from_secs(2)
            } else {
                node.store.next_rebroadcast_delay()
            };
            first = false;
            tokio::time::sleep(delay).await;
            let store = node.store.clone();
            let msg = match tokio::task::spawn_blocking(move || store.rebroadcast_tick()).await {
                Ok(Ok(m)) => m,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "crdt rebroadcast: reading the heads");
                    continue;
                }
                Err(_) => continue,
            };
            if let Some(m) = msg {
                if let Err(e) = broadcaster.publish(m).await {
                    tracing::debug!(error = %e, "crdt rebroadcast");
                }
            }
        }
    });
}

/// Looks for dead peers every `check_interval` and re-allocates their pins
/// ([`CrdtNode::check_dead_peers`]); nothing runs with `disable_repinning` or in follower
/// mode.
pub fn spawn_alerts(node: Arc<CrdtNode>) {
    if node.opts.disable_repinning || node.opts.follower_mode {
        return;
    }
    tokio::spawn(async move {
        let mut alerted = std::collections::BTreeSet::new();
        loop {
            tokio::time::sleep(node.opts.check_interval).await;
            node.check_dead_peers(&mut alerted).await;
        }
    });
}

/// Unpins expired pins every `state_sync_interval` ([`CrdtNode::expire_pins`]); not in
/// follower mode.
pub fn spawn_expiry(node: Arc<CrdtNode>) {
    if node.opts.follower_mode {
        return;
    }
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(node.opts.state_sync_interval).await;
            if let Err(e) = node.expire_pins().await {
                tracing::warn!(error = %e.message(), "removing expired pins");
            }
        }
    });
}

/// Repairs a dirty store at start and every `interval` (0 = at start only).
pub fn spawn_repair(node: Arc<CrdtNode>, source: Arc<dyn BlockSource>, interval: Duration) {
    tokio::spawn(async move {
        // Let the metrics (the peerset to fetch from) arrive first.
        tokio::time::sleep(Duration::from_secs(3)).await;
        loop {
            if node.store.is_dirty().unwrap_or(false) {
                let fetcher = PeerFetcher {
                    source: source.clone(),
                    peers: fetch_order(&node, None),
                };
                match node.store.repair(&fetcher).await {
                    Ok(r) => {
                        tracing::info!(walked = r.walked, merged = r.merged, "crdt store repaired")
                    }
                    Err(e) => tracing::warn!(error = %e, "crdt repair failed (retried later)"),
                }
            }
            if interval.is_zero() {
                return;
            }
            tokio::time::sleep(interval).await;
        }
    });
}

/// Connected peers (id, addresses) as the transport lists them; empty when it is down.
pub async fn connected(client: &TransportClient) -> Vec<(String, Vec<String>)> {
    let mut c = client.clone();
    let mut r = tonic::Request::new(PeersRequest {});
    r.set_timeout(Duration::from_secs(2));
    match c.peers(r).await {
        Ok(p) => p
            .into_inner()
            .peers
            .into_iter()
            .map(|p| (p.peer_id, p.addresses))
            .collect(),
        Err(_) => Vec::new(),
    }
}
