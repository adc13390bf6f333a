//! `ipfs-cluster-gateway [--config DIR]`: loads the peer's configuration and serves the
//! REST API, the Pinning Services API and the gateway's internal gRPC endpoint until
//! SIGINT/SIGTERM.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "ipfs-cluster-gateway",
    version,
    about = "IPFS Cluster gateway: REST API and Pinning Services API"
)]
struct Args {
    /// Configuration folder (service.json, identity.json, internal.token).
    #[arg(long, env = "IPFS_CLUSTER_PATH")]
    config: Option<PathBuf>,
    /// Serve Prometheus metrics (as observations.metrics.enable_stats).
    #[arg(long)]
    stats: bool,
    /// Start a trace per HTTP request and propagate it (as observations.tracing.enable_tracing).
    #[arg(long)]
    tracing: bool,
}

fn config_dir(arg: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(d) = arg {
        return Ok(d);
    }
    let home = std::env::var_os("HOME").context("HOME is not set; pass --config DIR")?;
    Ok(PathBuf::from(home).join(".ipfs-cluster"))
}

async fn shutdown_signal() {
    let reason = ipfs_cluster_proto::shutdown::stop_requested().await;
    tracing::info!(%reason, "shutting down");
}

async fn real_main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = config_dir(args.config)?;
    let peer = ipfs_cluster_config::Peer::load(&dir)?;
    let (opts, token) = ipfs_cluster_gateway::config::from_peer(&peer)?;
    let obs = ipfs_cluster_observability::Options::from_config(
        ipfs_cluster_observability::ServiceKind::Gateway,
        peer.identity.peer_id.to_string(),
        &peer.config,
        args.stats,
        args.tracing,
    )?;
    if let Some(m) = ipfs_cluster_observability::start(obs).await? {
        ipfs_cluster_gateway::prometheus::register(&m);
    }
    ipfs_cluster_gateway::run(opts, token, shutdown_signal()).await?;
    Ok(())
}

fn main() {
    tracing_subscriber::fmt()
        .with_writer(|| ipfs_cluster_proto::shutdown::LogStderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let rt = ipfs_cluster_proto::runtime::service_runtime_or_exit();
    if let Err(e) = rt.block_on(real_main()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
