//! crdt mode of the consensus service (`consensus.crdt` in service.json; docs/operations.md): the
//! pinset in an [`ipfs_cluster_crdt::CrdtStore`] at `<config dir>/crdt/crdt.redb`, behind
//! the same gRPC contract as raft mode.
//!
//! * Writes: the peer that receives a pin allocates it (from its peerset's metrics, with
//!   the same allocator as raft mode) and writes it to its own store, through the
//!   `Batcher` when `batching` is on; the new head is published on the cluster's topic.
//! * Reads and Watch: the local store; change events feed the connector's watch stream.
//! * Sync: broadcasts from the topic are applied with the sender the transport verified
//!   as the trust input (`trusted_peers`); missing nodes are fetched from the sender (then
//!   the peerset) with the `Consensus/CrdtBlock` peer call; heads are rebroadcast every
//!   `rebroadcast_interval`, and every `rebroadcast_interval` each peer also pulls the
//!   heads of one connected trusted peer (`Consensus/CrdtHeads`) so that a peer the gossip
//!   misses still converges; a dirty store is repaired at start and every
//!   `repair_interval`.
//! * Membership: the peerset is the peers with a live `peerset_metric` ("ping") metric.
//! * Peer loss and expiry (upstream's repinFromPeer and StateSync): with
//!   `disable_repinning` off, the pins of a peer whose ping expired are re-allocated, and
//!   every `state_sync_interval` pins past their `expire_at` are unpinned, each CID by
//!   its closest live trusted peer (`node::is_closest`) so that one peer acts.
//! * First sync: a new trusted peer (empty store) asks the trusted peers for their heads
//!   (`Consensus/CrdtHeads`, or an empty broadcast when none serves it) and holds its pins
//!   and unpins until it has taken them (`net::spawn_first_sync`).
//!
//! * Followers (`cluster.follower_mode`, run by `ipfs-cluster-follow`): every write is
//!   refused ([`node::CrdtNode::check_write`]); they apply the trusted peers' updates.
//!
//! * Values: upstream's `api.Pin` protobuf ([`apipin`]); values written in our earlier text
//!   encoding are still read.

pub mod apipin;
pub mod net;
pub mod net_error;
pub mod node;
pub mod service;

#[cfg(test)]
mod tests;

use std::{sync::Arc, time::Duration};

use anyhow::Context;

use ipfs_cluster_config::Peer;
use ipfs_cluster_crdt::{topic_name, BatchingConfig, CrdtStore, TrustedPeers};
use ipfs_cluster_proto::transport::v1::DialRequest;

use crate::pinning::PinDefaults;
use net::{TransportBlocks, TransportBroadcaster};
use node::{Broadcaster, CrdtNode, CrdtOptions};
use service::CrdtConsensusService;

/// The store file: `<config dir>/crdt/crdt.redb`.
pub fn store_path(peer: &Peer) -> std::path::PathBuf {
    peer.data_dir("crdt").join("crdt.redb")
}

/// The store options from `consensus.crdt`.
pub fn store_config(c: &ipfs_cluster_config::CrdtConfig) -> ipfs_cluster_crdt::CrdtConfig {
    ipfs_cluster_crdt::CrdtConfig {
        cluster_name: c.cluster_name.clone(),
        trusted_peers: TrustedPeers::from_list(c.trusted_list()),
        rebroadcast_interval: c.rebroadcast_interval.as_duration(),
        repair_interval: c.repair_interval.as_duration(),
        batching: BatchingConfig {
            max_batch_size: c.batching.max_batch_size.max(0) as usize,
            max_batch_age: c.batching.max_batch_age.as_duration(),
            max_queue_size: c.batching.max_queue_size.max(1) as usize,
        },
        ..Default::default()
    }
}

/// Runs the consensus service in crdt mode until SIGINT/SIGTERM. `bootstrap`: peer
/// multiaddresses the transport dials at start (retried) so this peer meets the cluster.
pub async fn run(
    peer: Peer,
    bootstrap: Vec<String>,
    metrics: Option<Arc<ipfs_cluster_observability::Metrics>>,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let cfg = &peer.config;
    let crdt = cfg
        .consensus
        .crdt
        .clone()
        .context("service.json has no consensus.crdt section")?;
    let peer_id = peer.identity.peer_id.to_string();
    let transport_addr = cfg.internal.transport_addr()?;
    let consensus_addr = cfg.internal.consensus_addr()?;
    let transport = ipfs_cluster_proto::client::transport(transport_addr, &peer.token);

    let path = store_path(&peer);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let scfg = store_config(&crdt);
    let store = {
        let p = path.clone();
        tokio::task::spawn_blocking(move || CrdtStore::open(&p, scfg))
            .await?
            .with_context(|| format!("opening the crdt store {}", path.display()))?
    };
    let topic = topic_name(&crdt.cluster_name);
    let broadcaster: Arc<dyn Broadcaster> = Arc::new(TransportBroadcaster {
        client: transport.clone(),
        topic: topic.clone(),
    });
    let opts = CrdtOptions {
        peer_id: peer_id.clone(),
        defaults: PinDefaults {
            replication_min: cfg.cluster.replication_factor_min,
            replication_max: cfg.cluster.replication_factor_max,
        },
        allocate_by: cfg.allocator.balanced.allocate_by.clone(),
        peerset_metric: crdt.peerset_metric.clone(),
        follower_mode: cfg.cluster.follower_mode,
        trusted_peers: crdt
            .trusted_peers
            .as_ref()
            .map(|t| t.iter().map(|p| p.to_string()).collect()),
        pin_only_on_trusted_peers: cfg.cluster.pin_only_on_trusted_peers,
        pin_only_on_untrusted_peers: cfg.cluster.pin_only_on_untrusted_peers,
        disable_repinning: cfg.cluster.disable_repinning,
        check_interval: ipfs_cluster_runtime::monitor::check_interval(cfg),
        state_sync_interval: if cfg.cluster.state_sync_interval.is_zero() {
            CrdtOptions::default().state_sync_interval
        } else {
            cfg.cluster.state_sync_interval.as_duration()
        },
    };
    let node = CrdtNode::new(opts, store, broadcaster.clone())?;

    // Observability (metrics, tracing) is started by the service skeleton.
    let listener =
        ipfs_cluster_runtime::bind_internal(consensus_addr, cfg.internal.allow_remote_internal)
            .await?;

    let blocks = Arc::new(TransportBlocks {
        client: transport.clone(),
    });
    // The allocator's metric store; the peerset is the set of peers with a live
    // `peerset_metric`.
    let metrics_node = node.clone();
    ipfs_cluster_runtime::monitor::follow_peer_metrics(transport.clone(), move |m| {
        metrics_node.peer_metrics.add(m)
    });
    net::spawn_subscriber(
        node.clone(),
        transport.clone(),
        topic.clone(),
        blocks.clone(),
    );
    net::spawn_first_sync(
        node.clone(),
        transport.clone(),
        broadcaster.clone(),
        blocks.clone(),
    );
    net::spawn_pull(node.clone(), transport.clone(), blocks.clone());
    net::spawn_rebroadcast(node.clone(), broadcaster);
    net::spawn_alerts(node.clone());
    net::spawn_expiry(node.clone());
    net::spawn_repair(node.clone(), blocks, crdt.repair_interval.as_duration());
    if !bootstrap.is_empty() {
        spawn_bootstrap(transport.clone(), bootstrap);
    }
    tracing::info!(
        peer = %peer_id,
        addr = %consensus_addr,
        store = %path.display(),
        %topic,
        trusted = %crdt.trusted_list().join(","),
        "consensus service ready (crdt mode)"
    );

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(ipfs_cluster_runtime::serve_with(
        listener,
        peer.token.clone(),
        CrdtConsensusService::new(node.clone(), Some(transport)).into_server(),
        async {
            let _ = stop_rx.await;
        },
        ipfs_cluster_runtime::ServeOptions::observed_by(metrics),
    ));
    stop.cancelled().await;
    tracing::info!("shutting down (crdt mode)");
    node.shutdown().await;
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    Ok(())
}

/// Dials the `--bootstrap` addresses until each answers once (crdt has no join: meeting
/// the peers is enough; gossip and metrics do the rest).
fn spawn_bootstrap(transport: ipfs_cluster_proto::client::TransportClient, addrs: Vec<String>) {
    tokio::spawn(async move {
        let mut left = addrs;
        let mut delay = Duration::from_millis(500);
        while !left.is_empty() {
            let mut still = Vec::new();
            for a in left {
                let mut t = transport.clone();
                match t
                    .dial(DialRequest {
                        multiaddr: a.clone(),
                    })
                    .await
                {
                    Ok(r) => {
                        tracing::info!(addr = %a, peer = %r.into_inner().peer_id, "connected to a bootstrap peer")
                    }
                    Err(e) if e.code() == tonic::Code::InvalidArgument => {
                        tracing::error!(addr = %a, error = %e.message(), "--bootstrap address unusable")
                    }
                    Err(e) => {
                        tracing::debug!(addr = %a, error = %e.message(), "dialing a bootstrap peer (retrying)");
                        still.push(a);
                    }
                }
            }
            left = still;
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    });
}
