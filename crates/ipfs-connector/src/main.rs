//! `ipfs-cluster-ipfs-connector [--config DIR]`: loads the peer's config and serves the
//! IPFS connector until SIGINT/SIGTERM. Bad config or a taken port: one `error:` line and
//! a non-zero exit.

use std::path::PathBuf;

use clap::Parser;
use ipfs_cluster_ipfs_connector::{run, settings::Settings};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "ipfs-cluster-ipfs-connector", version = ipfs_cluster_proto::VERSION, about = "IPFS Cluster IPFS connector service: pin tracker, Kubo RPC client, informers")]
struct Args {
    /// Configuration folder (service.json, identity.json, internal.token); default
    /// $IPFS_CLUSTER_PATH, else ~/.ipfs-cluster.
    #[arg(long)]
    config: Option<PathBuf>,
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
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let dir = ipfs_cluster_config::resolve_config_dir(args.config.as_deref());
    let rt = ipfs_cluster_proto::runtime::service_runtime_or_exit();
    if let Err(e) = rt.block_on(real_main(dir, args.stats, args.tracing)) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

async fn real_main(dir: PathBuf, stats: bool, tracing: bool) -> anyhow::Result<()> {
    let peer = ipfs_cluster_config::Peer::load(&dir)?;
    let settings = Settings::from_peer(&peer)?;
    let obs = ipfs_cluster_observability::Options::from_config(
        ipfs_cluster_observability::ServiceKind::IpfsConnector,
        peer.identity.peer_id.to_string(),
        &peer.config,
        stats,
        tracing,
    )?;
    ipfs_cluster_observability::start(obs).await?;
    let shutdown = CancellationToken::new();
    let s2 = shutdown.clone();
    tokio::spawn(async move {
        let reason = ipfs_cluster_proto::shutdown::stop_requested().await;
        tracing::info!(%reason, "shutting down");
        s2.cancel();
    });
    run::run(settings, shutdown).await?;
    Ok(())
}
