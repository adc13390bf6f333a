//! `ipfs-cluster-consensus [--config DIR] [--bootstrap ADDR,...] [--leave]`: on the shared
//! service skeleton (`ipfs-cluster-runtime`: arguments, config, logging, signals, exit
//! codes), opens the raft store, starts raft (bootstrapping or joining), follows the
//! metrics broadcast for allocation, and serves the Consensus gRPC service on the internal
//! consensus address until stopped or until this peer is removed from the cluster.

mod prometheus;

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;

use ipfs_cluster_config::ServiceKind;
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
    transport::v1::{DialRequest, IdRequest},
};
use ipfs_cluster_runtime::{
    peer_folder::{self, joining_marker, removed_marker, staging_marker},
    Context, Service,
};

/// The consensus service's own flags (beside `--config`, `--stats`, `--tracing`).
#[derive(clap::Args, Debug)]
struct ConsensusArgs {
    /// Join an existing cluster through these peer multiaddresses, comma separated:
    /// /ip4|ip6|dns|dns4|dns6/<host>/tcp/<port> or /dnsaddr/<name>, /p2p/<id> optional.
    /// Existing local raft state is moved to a backup first, as upstream. The join is
    /// retried with backoff until it succeeds or the service is stopped.
    #[arg(long, short = 'j', value_delimiter = ',')]
    bootstrap: Vec<String>,
    /// Leave the cluster on shutdown (overrides cluster.leave_on_shutdown).
    #[arg(long, short = 'x', hide = true)]
    leave: bool,
}

/// The consensus service of a peer.
struct ConsensusDaemon;

impl Service for ConsensusDaemon {
    const NAME: &'static str = "ipfs-cluster-consensus";
    const ABOUT: &'static str = "IPFS Cluster consensus service (raft pinset)";
    const KIND: ServiceKind = ServiceKind::Consensus;
    const DEFAULT_LOG: &'static str = "info,openraft=warn";
    type Args = ConsensusArgs;

    async fn run(ctx: Context<ConsensusArgs>) -> anyhow::Result<()> {
        run(ctx).await
    }
}

fn main() -> std::process::ExitCode {
    ipfs_cluster_runtime::main::<ConsensusDaemon>()
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

/// Moves the raft folder to a rotated backup (`raft.old.0`) when it exists.
fn backup_dir(dir: &std::path::Path, keep: u32) -> anyhow::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let backup = peer_folder::move_to_backup(dir, keep)?;
    tracing::info!(backup = %backup.display(), "raft state moved to a backup");
    Ok(())
}

async fn run(ctx: Context<ConsensusArgs>) -> anyhow::Result<()> {
    let cli = &ctx.args;
    let peer = &ctx.peer;
    if peer.config.consensus.crdt.is_some() {
        let boot = bootstrap_addresses(&cli.bootstrap, &peer.identity.peer_id.to_string())?;
        return ipfs_cluster_consensus::crdt_mode::run(peer.clone(), boot, ctx.stop_token()).await;
    }
    let cfg = &peer.config;
    let raft = match cfg.consensus.raft.as_ref() {
        Some(r) => r.clone(),
        None => anyhow::bail!(
            "service.json has neither consensus.raft nor consensus.crdt: run `ipfs-cluster-service init --consensus raft|crdt`"
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
    opts.check_interval = ipfs_cluster_runtime::monitor::check_interval(cfg);
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
        ipfs_cluster_runtime::bind_internal(consensus_addr, cfg.internal.allow_remote_internal)
            .await?;
    let prom = &ctx.metrics;
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
    if let Some(m) = prom {
        prometheus::register(m, node.clone());
    }
    // The peer monitor: every peer's latest metrics, for allocation.
    let monitor_node = node.clone();
    ipfs_cluster_runtime::monitor::follow_metrics(transport.clone(), move |m| {
        monitor_node.metrics.add(m)
    });
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
    let health = ipfs_cluster_runtime::HealthHandle::new();
    let server = tokio::spawn(ipfs_cluster_runtime::serve_with_health(
        listener,
        peer.token.clone(),
        ConsensusService::new(node.clone()).into_server(),
        async {
            let _ = stop_rx.await;
        },
        health.clone(),
    ));
    // SIGTERM, SIGINT, SIGHUP or the launcher gone (the runtime's stop signal), seen by
    // both waits below.
    let stop = ctx.stop_token();
    let mut failure = None;
    let was_removed = tokio::select! {
        _ = stop.cancelled() => false,
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
            _ = ipfs_cluster_runtime::disk::wait_writable(&raft_dir) => {}
            _ = stop.cancelled() => {}
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
            peer_folder::backup_path(&raft_dir).display()
        );
        std::process::exit(RESTART_STAGING_EXIT);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::{Args, Command};
        super::ConsensusArgs::augment_args(Command::new("ipfs-cluster-consensus")).debug_assert();
    }
}
