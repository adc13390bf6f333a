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
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let dir = ipfs_cluster_config::resolve_config_dir(args.config.as_deref());
    if let Err(e) = real_main(dir).await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

async fn real_main(dir: PathBuf) -> anyhow::Result<()> {
    let settings = Settings::load(&dir)?;
    let shutdown = CancellationToken::new();
    let s2 = shutdown.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
        s2.cancel();
    });
    run::run(settings, shutdown).await?;
    Ok(())
}
