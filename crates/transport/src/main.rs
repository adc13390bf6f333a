//! `ipfs-cluster-transport [--config DIR]`: loads the peer's configuration and runs the
//! transport service until SIGINT/SIGTERM. All the work is in the library.

use std::{collections::HashMap, path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::Parser;
use ipfs_cluster_config::{resolve_config_dir, Peer};
use ipfs_cluster_proto::names;
use ipfs_cluster_transport::TransportOptions;

#[derive(Parser)]
#[command(name = "ipfs-cluster-transport", version = ipfs_cluster_proto::VERSION, about = "IPFS Cluster transport service: the libp2p host, peer calls, broadcast")]
struct Args {
    /// Configuration folder (default: $IPFS_CLUSTER_PATH or ~/.ipfs-cluster).
    #[arg(long, value_name = "DIR")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The transport's options from the peer's configuration.
fn options(peer: &Peer) -> anyhow::Result<TransportOptions> {
    let c = &peer.config;
    let i = &c.internal;
    let mut o = TransportOptions::new(
        peer.identity.keypair.clone(),
        c.cluster.secret.bytes().copied(),
        c.cluster.listen_multiaddress.clone(),
        peer.token.clone(),
    );
    o.bootstrap = c.cluster.peer_addresses.clone();
    o.peerstore_file = Some(peer.peerstore_path());
    o.services = HashMap::from([
        (names::TRANSPORT.to_string(), i.transport_addr()?),
        (names::CONSENSUS.to_string(), i.consensus_addr()?),
        (names::IPFS_CONNECTOR.to_string(), i.ipfs_connector_addr()?),
        (names::GATEWAY.to_string(), i.gateway_addr()?),
    ]);
    let dial = c.cluster.dial_peer_timeout.as_duration();
    if !dial.is_zero() {
        o.limits.dial_timeout = dial;
    }
    if c.cluster.connection_manager.high_water > 0 {
        o.limits.max_connections = c.cluster.connection_manager.high_water as usize;
    }
    let hb = c.cluster.pubsub.heartbeat_interval.as_duration();
    if !hb.is_zero() {
        o.gossip_heartbeat = hb;
    }
    let ping = c.cluster.monitor_ping_interval.as_duration();
    if !ping.is_zero() {
        o.ping_interval = ping;
    }
    Ok(o)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let dir = resolve_config_dir(args.config.as_deref());
    let peer = Peer::load(&dir)
        .with_context(|| format!("loading the configuration from {}", dir.display()))?;
    let opts = options(&peer)?;
    let addr = peer.config.internal.transport_addr()?;
    let listener =
        ipfs_cluster_proto::bind_internal(addr, peer.config.internal.allow_remote_internal).await?;
    tracing::info!(%addr, peer_id = %peer.identity.peer_id, "transport gRPC endpoint listening");
    ipfs_cluster_transport::run(opts, listener, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM; stop with SIGINT");
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutting down");
}
