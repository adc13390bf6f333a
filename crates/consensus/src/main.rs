//! `ipfs-cluster-consensus [--config DIR] [--bootstrap ADDR,...] [--leave]`: loads the peer's
//! configuration, opens the raft store, starts raft (bootstrapping or joining), follows the
//! metrics broadcast for allocation, and serves the Consensus gRPC service on the internal
//! consensus address until SIGINT/SIGTERM or until this peer is removed from the cluster.

mod prometheus;

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use clap::Parser;
use prost::Message;
use tokio_stream::StreamExt;

use ipfs_cluster_consensus::{
    join::{self, Attempt, Joined},
    network::TransportCarrier,
    node::{Node, Options, RESTART_STAGING_EXIT},
    pinning::PinDefaults,
    service::ConsensusService,
    store,
};
use ipfs_cluster_proto::{
    client::TransportClient,
    transport::v1::{DialRequest, IdRequest, SubscribeRequest},
    types::v1::Metric,
};

#[derive(Parser, Debug)]
#[command(name = "ipfs-cluster-consensus", version = ipfs_cluster_proto::VERSION, about = "IPFS Cluster consensus service (raft or crdt pinset)")]
struct Cli {
    /// Configuration folder (default: $IPFS_CLUSTER_PATH or ~/.ipfs-cluster).
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Join an existing cluster through these peer multiaddresses, comma separated:
    /// /ip4|ip6|dns|dns4|dns6/<host>/tcp/<port> or /dnsaddr/<name>, /p2p/<id> optional.
    /// Existing local raft state is moved to a backup first, as upstream. The join is
    /// retried with backoff until it succeeds or the service is stopped.
    #[arg(long, short = 'j', value_delimiter = ',')]
    bootstrap: Vec<String>,
    /// Leave the cluster on shutdown (overrides cluster.leave_on_shutdown).
    #[arg(long, short = 'x', hide = true)]
    leave: bool,
    /// Serve Prometheus metrics (as observations.metrics.enable_stats).
    #[arg(long)]
    stats: bool,
    /// Propagate and log trace ids (as observations.tracing.enable_tracing).
    #[arg(long)]
    tracing: bool,
}

fn main() {
    tracing_subscriber::fmt()
        .with_writer(|| ipfs_cluster_proto::shutdown::LogStderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,openraft=warn".into()),
        )
        .init();
    let cli = Cli::parse();
    let rt = ipfs_cluster_proto::runtime::service_runtime_or_exit();
    if let Err(e) = rt.block_on(run(cli)) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Moves `dir` to `dir.old.0`, shifting older backups and keeping at most `keep`.
fn backup_dir(dir: &std::path::Path, keep: u32) -> anyhow::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "raft".into());
    let path = |i: u32| dir.with_file_name(format!("{name}.old.{i}"));
    let keep = keep.max(1);
    let _ = std::fs::remove_dir_all(path(keep - 1));
    for i in (0..keep - 1).rev() {
        if path(i).exists() {
            std::fs::rename(path(i), path(i + 1))
                .with_context(|| format!("rotating raft backup {}", path(i).display()))?;
        }
    }
    std::fs::rename(dir, path(0))
        .with_context(|| format!("backing up {} to {}", dir.display(), path(0).display()))?;
    tracing::info!(backup = %path(0).display(), "raft state moved to a backup");
    Ok(())
}

/// The file that says this peer left or was removed: `<raft dir>.removed`, beside the raft
/// folder. While it exists the service refuses to start without `--bootstrap`.
pub fn removed_marker(raft_dir: &std::path::Path) -> PathBuf {
    let name = raft_dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "raft".into());
    raft_dir.with_file_name(format!("{name}.removed"))
}

/// The file that says a join through `--bootstrap` has not completed yet:
/// `<raft dir>.joining`, holding the addresses (see `join::marker_text`). A restart
/// without `--bootstrap` (the launcher restarts crashed services without it) must not
/// bootstrap a new one-peer cluster from the empty staging store: it resumes as a member
/// when a leader already added this peer, else it resumes the join through the marker's
/// addresses (a marker without addresses, from an older version, makes it refuse to start).
pub fn joining_marker(raft_dir: &std::path::Path) -> PathBuf {
    let name = raft_dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "raft".into());
    raft_dir.with_file_name(format!("{name}.joining"))
}

/// The file that says this peer gave its one-peer cluster up to be added by a leader of
/// another cluster: `<raft dir>.staging`. While it exists a start without `--bootstrap`
/// stays in staging (waits to be added); it is removed once a leader added this peer.
pub fn staging_marker(raft_dir: &std::path::Path) -> PathBuf {
    let name = raft_dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "raft".into());
    raft_dir.with_file_name(format!("{name}.staging"))
}

/// Removes the staging marker once raft is initialized (a leader added this peer).
fn spawn_staging_done(node: Arc<Node>, marker: PathBuf) {
    tokio::spawn(async move {
        let since = tokio::time::Instant::now();
        let mut warned = since;
        loop {
            if warned.elapsed() >= Duration::from_secs(60) {
                warned = tokio::time::Instant::now();
                tracing::warn!(
                    marker = %marker.display(),
                    waiting_s = since.elapsed().as_secs(),
                    "still waiting in staging to be added by another cluster's leader: add this peer again there (POST /peers), or delete the marker and restart to run a cluster of its own (the old state is in the raft.old.* backups)"
                );
            }
            match node.raft.is_initialized().await {
                Ok(true) => {
                    let _ = std::fs::remove_file(&marker);
                    tracing::info!("added to the cluster by its leader; staging is over");
                    return;
                }
                Ok(false) => {}
                Err(_) => return,
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
}

/// Follows the transport's `monitor.metrics` topic into the allocator's metric store.
fn spawn_metrics(node: Arc<Node>, mut client: TransportClient) {
    tokio::spawn(async move {
        loop {
            let topic = ipfs_cluster_proto::METRICS_TOPIC.to_string();
            match client.subscribe(SubscribeRequest { topic }).await {
                Ok(s) => {
                    let mut s = s.into_inner();
                    while let Some(msg) = s.next().await {
                        match msg {
                            Ok(m) => match Metric::decode(m.data.as_slice()) {
                                Ok(metric) => node.metrics.add(metric),
                                Err(e) => {
                                    tracing::debug!(from = %m.from, error = %e, "undecodable metric")
                                }
                            },
                            Err(e) => {
                                tracing::debug!(error = %e.message(), "metrics subscription ended");
                                break;
                            }
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e.message(), "subscribing to metrics"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

/// One join attempt through `addr`: dial it with the transport (which resolves DNS names
/// and, without `/p2p/<id>`, learns the peer id from the connection), then ask that peer
/// to add us.
async fn join_once(node: &Node, transport: &TransportClient, addr: String) -> Attempt {
    let mut t = transport.clone();
    let peer = match t
        .dial(DialRequest {
            multiaddr: addr.clone(),
        })
        .await
    {
        Ok(r) => r.into_inner().peer_id,
        // The transport says no dial can ever work (not a multiaddr it speaks, our own).
        Err(e) if e.code() == tonic::Code::InvalidArgument => {
            return Attempt::Unusable(format!("dialing: {}", e.message()))
        }
        Err(e) => return Attempt::Failed(format!("dialing: {}", e.message())),
    };
    match node.join_via(&peer).await {
        Ok(()) => Attempt::Joined(peer),
        Err(e) => Attempt::Failed(format!("joining through {peer}: {}", e.message())),
    }
}

/// `--bootstrap` values (and a marker's) as checked multiaddr strings.
fn bootstrap_addresses(raw: &[String], own: &str) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for s in raw.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let a = ipfs_cluster_config::addr::parse_peer_address(s)
            .map_err(|e| anyhow::anyhow!("--bootstrap: {e}"))?;
        if ipfs_cluster_config::addr::peer_id(&a).is_some_and(|p| p.to_string() == own) {
            anyhow::bail!("--bootstrap: {s} is this peer's own address; give the address of a peer of the cluster to join");
        }
        out.push(a.to_string());
    }
    Ok(out)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let dir = ipfs_cluster_config::resolve_config_dir(cli.config.as_deref());
    let peer = ipfs_cluster_config::Peer::load(&dir)?;
    if peer.config.consensus.crdt.is_some() {
        let boot = bootstrap_addresses(&cli.bootstrap, &peer.identity.peer_id.to_string())?;
        return ipfs_cluster_consensus::crdt_mode::run(peer, boot, cli.stats, cli.tracing).await;
    }
    let cfg = &peer.config;
    let raft = match cfg.consensus.raft.as_ref() {
        Some(r) => r.clone(),
        None => anyhow::bail!(
            "service.json has no consensus.raft section; this consensus service implements raft only (crdt is not supported)"
        ),
    };
    let peer_id = peer.identity.peer_id.to_string();
    let raft_dir = peer.raft_dir();
    let transport_addr = cfg.internal.transport_addr()?;
    let consensus_addr = cfg.internal.consensus_addr()?;
    let transport = ipfs_cluster_proto::client::transport(transport_addr, &peer.token);

    let mut opts = Options::new(peer_id.clone(), raft_dir.clone());
    opts.defaults = PinDefaults {
        replication_min: cfg.cluster.replication_factor_min,
        replication_max: cfg.cluster.replication_factor_max,
    };
    opts.init_peerset = raft
        .init_peerset
        .iter()
        .map(|p| p.to_string())
        .filter(|p| *p != peer_id)
        .collect();
    opts.wait_for_leader_timeout = raft.wait_for_leader_timeout.as_duration();
    opts.network_timeout = raft.network_timeout.as_duration();
    opts.commit_retries = raft.commit_retries.max(0) as u32;
    opts.commit_retry_delay = raft.commit_retry_delay.as_duration();
    opts.heartbeat_timeout = raft.heartbeat_timeout.as_duration();
    opts.election_timeout = raft.election_timeout.as_duration();
    opts.snapshot_threshold = raft.snapshot_threshold;
    opts.trailing_logs = raft.trailing_logs;
    opts.leave_on_shutdown = cfg.cluster.leave_on_shutdown || cli.leave;
    opts.follower_mode = cfg.cluster.follower_mode;
    opts.allocate_by = cfg.allocator.balanced.allocate_by.clone();
    opts.disable_repinning = cfg.cluster.disable_repinning;
    opts.trusted_peers = raft
        .trusted_peers
        .as_ref()
        .map(|t| t.iter().map(|p| p.to_string()).collect());
    if let Some(t) = &opts.trusted_peers {
        tracing::info!(trusted = t.len(), "consensus.raft.trusted_peers is set: only listed peers may join; the leader removes unlisted members");
    }
    if !cfg.monitor.pubsubmon.check_interval.is_zero() {
        opts.check_interval = cfg.monitor.pubsubmon.check_interval.as_duration();
    }
    if !cfg.cluster.state_sync_interval.is_zero() {
        opts.state_sync_interval = cfg.cluster.state_sync_interval.as_duration();
    }
    if !cfg.cluster.peer_watch_interval.is_zero() {
        opts.peer_watch_interval = cfg.cluster.peer_watch_interval.as_duration();
    }
    // Our libp2p addresses, when the transport is already up (informational only).
    let mut t = transport.clone();
    if let Ok(Ok(id)) = tokio::time::timeout(Duration::from_secs(2), t.id(IdRequest {})).await {
        opts.addresses = id.into_inner().addresses;
    }

    let bootstrap = bootstrap_addresses(&cli.bootstrap, &peer_id)?;
    let marker = removed_marker(&raft_dir);
    if marker.exists() {
        if bootstrap.is_empty() {
            anyhow::bail!(
                "this peer left or was removed from its cluster (marker {}); start it with --bootstrap <peer multiaddr> to join a cluster again, or delete that file to start a new cluster (`ipfs-cluster-service state cleanup` does)",
                marker.display()
            );
        }
        std::fs::remove_file(&marker).with_context(|| format!("removing {}", marker.display()))?;
    }
    let joining = joining_marker(&raft_dir);
    // After `state cleanup` (no store any more) the marker is stale: a new start is wanted.
    if joining.exists() && !raft_dir.join(store::DB_FILE).exists() {
        let _ = std::fs::remove_file(&joining);
    }
    let unfinished_join = bootstrap.is_empty() && joining.exists();
    // The addresses of that join (none in a marker written by an older version).
    let resume_through = if unfinished_join {
        let text = std::fs::read_to_string(&joining)
            .with_context(|| format!("reading {}", joining.display()))?;
        bootstrap_addresses(&join::marker_addresses(&text), &peer_id)
            .with_context(|| format!("the join marker {}", joining.display()))?
    } else {
        Vec::new()
    };
    let staging = staging_marker(&raft_dir);
    if !bootstrap.is_empty() {
        let _ = std::fs::remove_file(&staging);
    }
    let awaiting_add = bootstrap.is_empty() && !unfinished_join && staging.exists();
    if awaiting_add {
        opts.staging = true;
    }
    if !bootstrap.is_empty() {
        // Upstream wipes (backs up) local raft state and starts in staging mode.
        if raft_dir.join(store::DB_FILE).exists() {
            backup_dir(&raft_dir, raft.backups_rotate.max(1) as u32)?;
        }
        opts.staging = true;
        if let Some(parent) = joining.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&joining, join::marker_text(&bootstrap))
            .with_context(|| format!("writing {}", joining.display()))?;
    } else if unfinished_join {
        opts.staging = true;
    }
    let keep = raft.backups_rotate.max(1) as u32;
    let leave = opts.leave_on_shutdown;

    // Bind first so a taken port fails before raft starts.
    let listener =
        ipfs_cluster_proto::bind_internal(consensus_addr, cfg.internal.allow_remote_internal)
            .await?;
    let obs = ipfs_cluster_observability::Options::from_config(
        ipfs_cluster_observability::ServiceKind::Consensus,
        peer_id.clone(),
        cfg,
        cli.stats,
        cli.tracing,
    )?;
    let prom = ipfs_cluster_observability::start(obs).await?;
    let carrier = Arc::new(TransportCarrier {
        client: transport.clone(),
    });
    let node = Node::start(opts, carrier).await?;
    let mut join_through = bootstrap.clone();
    if unfinished_join {
        let initialized = node
            .raft
            .is_initialized()
            .await
            .map_err(|e| anyhow::anyhow!("raft: {e}"))?;
        if initialized {
            tracing::info!("resuming: a leader added this peer before its join call returned");
            let _ = std::fs::remove_file(&joining);
        } else if resume_through.is_empty() {
            let _ = node.raft.shutdown().await;
            anyhow::bail!(
                "this peer's join through --bootstrap never completed (marker {}); start it with --bootstrap <peer multiaddr> again, or delete that file to start a new cluster",
                joining.display()
            );
        } else {
            tracing::info!(
                marker = %joining.display(),
                through = %resume_through.join(","),
                "resuming this peer's unfinished join (started with --bootstrap before a restart)"
            );
            join_through = resume_through;
        }
    }
    if awaiting_add {
        tracing::info!(
            marker = %staging.display(),
            "this peer gave its one-peer cluster up to be added to another cluster; waiting in staging for that cluster's leader (delete the marker to start a new cluster instead)"
        );
        spawn_staging_done(node.clone(), staging.clone());
    }
    node.spawn_background();
    if let Some(m) = &prom {
        prometheus::register(m, node.clone());
    }
    spawn_metrics(node.clone(), transport.clone());
    tracing::info!(peer = %peer_id, addr = %consensus_addr, raft_dir = %raft_dir.display(), "consensus service ready");

    let (fail_tx, mut fail_rx) = tokio::sync::mpsc::channel::<String>(1);
    if !join_through.is_empty() {
        let node = node.clone();
        let transport = transport.clone();
        let joining_done = joining.clone();
        tokio::spawn(async move {
            let res = join::join_until(
                &join_through,
                join::Backoff::default(),
                |addr| join_once(&node, &transport, addr),
                || async { node.raft.is_initialized().await.unwrap_or(false) },
            )
            .await;
            match res {
                Ok(how) => {
                    if how == Joined::AlreadyMember {
                        tracing::info!("a leader added this peer; the join is complete");
                    }
                    let _ = std::fs::remove_file(&joining_done);
                }
                Err(e) => {
                    let _ = fail_tx.send(e).await;
                }
            }
        });
    }

    let mut removed = node.removed();
    let mut fatal = node.fatal();
    let mut reset = node.reset_requested();
    let mut reset_for = None;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let health = ipfs_cluster_proto::HealthHandle::new();
    let server = tokio::spawn(ipfs_cluster_proto::serve_with_health(
        listener,
        peer.token.clone(),
        ConsensusService::new(node.clone()).into_server(),
        async {
            let _ = stop_rx.await;
        },
        health.clone(),
    ));
    // SIGTERM, SIGINT, SIGHUP or the launcher gone (proto::shutdown), seen by both waits
    // below.
    let (stop_asked, mut stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let reason = ipfs_cluster_proto::shutdown::stop_requested().await;
        tracing::info!(%reason, "stop requested");
        let _ = stop_asked.send(true);
    });
    let mut failure = None;
    let was_removed = tokio::select! {
        _ = stop.wait_for(|s| *s) => false,
        _ = removed.wait_for(|r| *r) => true,
        Ok(by) = reset.wait_for(|r| r.is_some()) => { reset_for = by.clone(); false }
        Some(e) = fail_rx.recv() => { failure = Some(e); false }
        Ok(msg) = fatal.wait_for(|f| f.is_some()) => {
            failure = msg.clone();
            false
        }
    };
    if node.fatal().borrow().is_some() {
        // Raft's core stopped (a storage write failed). Writes are refused with that error
        // meanwhile; exit (non-zero, the launcher restarts us on a reopened store) once the
        // disk takes writes again, so a full disk does not turn into a crash loop that makes
        // the launcher give up.
        tracing::error!(dir = %raft_dir.display(), "raft stopped on a storage error; exiting once the raft folder is writable again");
        // Health checks (the launcher's watch, grpcurl) see it meanwhile.
        health
            .set::<ipfs_cluster_proto::consensus::v1::consensus_server::ConsensusServer<ConsensusService>>(false)
            .await;
        tokio::select! {
            _ = ipfs_cluster_proto::disk::wait_writable(&raft_dir) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    }
    tracing::info!("consensus service shutting down");
    let mut left = false;
    if leave && !was_removed && failure.is_none() && reset_for.is_none() {
        match tokio::time::timeout(Duration::from_secs(20), node.leave()).await {
            Ok(Ok(())) => left = true,
            Ok(Err(e)) => tracing::warn!(error = %e.message(), "leaving the cluster"),
            Err(_) => tracing::warn!("leaving the cluster timed out"),
        }
    }
    let _ = stop_tx.send(());
    // Open Watch streams keep a graceful stop waiting; a reset for being added restarts at
    // once (the leader's PrepareAdd answer went out before the reset was signalled).
    let grace = if reset_for.is_some() {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(5)
    };
    let _ = tokio::time::timeout(grace, server).await;
    if let Err(e) = node.raft.shutdown().await {
        tracing::warn!(error = %e, "raft shutdown");
    }
    drop(node);
    if was_removed || left {
        // Give the store's last handles a moment to close, then back the state up.
        tokio::time::sleep(Duration::from_millis(200)).await;
        backup_dir(&raft_dir, keep)?;
        // Without this marker a restart would bootstrap a new one-peer cluster.
        std::fs::write(&marker, b"this peer left or was removed from its cluster\n")
            .with_context(|| format!("writing {}", marker.display()))?;
        eprintln!("this peer is no longer a cluster member; raft state backed up, exiting");
    }
    if let Some(e) = failure {
        anyhow::bail!(e);
    }
    if let Some(leader) = reset_for {
        // A leader of another cluster is adding this one-peer cluster: back the state up
        // (as --bootstrap does), mark staging, and ask the launcher for a restart now.
        // The marker first: a restart between the two must not bootstrap a new cluster.
        std::fs::write(
            &staging,
            format!("this peer waits to be added to the cluster of {leader}\n"),
        )
        .with_context(|| format!("writing {}", staging.display()))?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        backup_dir(&raft_dir, keep)?;
        eprintln!(
            "this peer's one-peer cluster was backed up to {} so that {leader} can add it to its cluster; restarting empty (exit code {RESTART_STAGING_EXIT})",
            ipfs_cluster_consensus::node::backup_path(&raft_dir).display()
        );
        std::process::exit(RESTART_STAGING_EXIT);
    }
    Ok(())
}
