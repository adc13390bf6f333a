//! The consensus service on the shared service skeleton (`ipfs-cluster-runtime`:
//! arguments, config, logging, signals, exit codes): its own flags, the raft options
//! from service.json, and the start of crdt mode or of a raft peer ([`crate::lifecycle`]).

use std::time::Duration;

use ipfs_cluster_config::{Peer, RaftConfig, ServiceKind};
use ipfs_cluster_proto::transport::v1::IdRequest;
use ipfs_cluster_runtime::{Context, Service};

use crate::{lifecycle, node::Options, pinning::PinDefaults};

/// The consensus service's own flags (beside `--config`, `--stats`, `--tracing`).
#[derive(clap::Args, Debug)]
pub struct ConsensusArgs {
    /// Join an existing cluster through these peer multiaddresses, comma separated:
    /// /ip4|ip6|dns|dns4|dns6/<host>/tcp/<port> or /dnsaddr/<name>, /p2p/<id> optional.
    /// Existing local raft state is moved to a backup first, as upstream. The join is
    /// retried with backoff until it succeeds or the service is stopped.
    #[arg(long, short = 'j', value_delimiter = ',')]
    pub bootstrap: Vec<String>,
    /// Leave the cluster on shutdown (overrides cluster.leave_on_shutdown).
    #[arg(long, short = 'x', hide = true)]
    pub leave: bool,
}

/// The consensus service of a peer.
pub struct ConsensusDaemon;

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

/// The raft node's options from service.json (`leave`: the `--leave` flag).
pub fn options(peer: &Peer, raft: &RaftConfig, leave: bool) -> Options {
    let cfg = &peer.config;
    let peer_id = peer.identity.peer_id.to_string();
    let mut opts = Options::new(peer_id.clone(), peer.raft_dir());
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
    opts.leave_on_shutdown = cfg.cluster.leave_on_shutdown || leave;
    opts.follower_mode = cfg.cluster.follower_mode;
    opts.allocate_by = cfg.allocator.balanced.allocate_by.clone();
    opts.disable_repinning = cfg.cluster.disable_repinning;
    opts.trusted_peers = raft
        .trusted_peers
        .as_ref()
        .map(|t| t.iter().map(|p| p.to_string()).collect());
    opts.check_interval = ipfs_cluster_runtime::monitor::check_interval(cfg);
    if !cfg.cluster.state_sync_interval.is_zero() {
        opts.state_sync_interval = cfg.cluster.state_sync_interval.as_duration();
    }
    if !cfg.cluster.peer_watch_interval.is_zero() {
        opts.peer_watch_interval = cfg.cluster.peer_watch_interval.as_duration();
    }
    opts
}

async fn run(ctx: Context<ConsensusArgs>) -> anyhow::Result<()> {
    let cli = &ctx.args;
    let peer = &ctx.peer;
    let peer_id = peer.identity.peer_id.to_string();
    if peer.config.consensus.crdt.is_some() {
        let boot = lifecycle::bootstrap_addresses(&cli.bootstrap, &peer_id)?;
        return crate::crdt_mode::run(peer.clone(), boot, ctx.metrics.clone(), ctx.stop_token())
            .await;
    }
    let Some(raft) = peer.config.consensus.raft.as_ref() else {
        anyhow::bail!(
            "service.json has neither consensus.raft nor consensus.crdt: run `ipfs-cluster-service init --consensus raft|crdt`"
        );
    };
    let transport_addr = peer.config.internal.transport_addr()?;
    peer.config.internal.consensus_addr()?;
    let transport = ipfs_cluster_proto::client::transport(transport_addr, &peer.token);
    let mut opts = options(peer, raft, cli.leave);
    if let Some(t) = &opts.trusted_peers {
        tracing::info!(trusted = t.len(), "consensus.raft.trusted_peers is set: only listed peers may join; the leader removes unlisted members");
    }
    // Our libp2p addresses, when the transport is already up (informational only).
    let mut t = transport.clone();
    if let Ok(Ok(id)) = tokio::time::timeout(Duration::from_secs(2), t.id(IdRequest {})).await {
        opts.addresses = id.into_inner().addresses;
    }
    let bootstrap = lifecycle::bootstrap_addresses(&cli.bootstrap, &peer_id)?;
    let keep = raft.backups_rotate.max(1) as u32;
    lifecycle::run(
        peer,
        transport,
        opts,
        bootstrap,
        keep,
        ctx.metrics.clone(),
        ctx.stop_token(),
    )
    .await
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::{Args, Command};
        super::ConsensusArgs::augment_args(Command::new("ipfs-cluster-consensus")).debug_assert();
    }
}
