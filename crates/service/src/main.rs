//! `ipfs-cluster-service`: the drop-in launcher. Thin: parsing here, work in the library
//! and in ipfs-cluster-config.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use ipfs_cluster_config::{resolve_config_dir, ClusterSecret, InitOptions};
use ipfs_cluster_service::{run_daemon, DaemonOptions};

#[derive(Parser)]
#[command(
    name = "ipfs-cluster-service",
    version = concat!("version ", env!("CARGO_PKG_VERSION")),
    about = "IPFS Cluster peer: pinset orchestration for IPFS",
    long_about = "Runs an IPFS Cluster peer: four services (transport, consensus, ipfs connector, gateway) started and supervised together. `init` writes the configuration; `daemon` runs the peer."
)]
struct Cli {
    /// Path to the configuration and data folder
    #[arg(short = 'c', long = "config", env = "IPFS_CLUSTER_PATH", global = true)]
    config: Option<PathBuf>,
    /// Enable debug logging (same as --loglevel debug)
    #[arg(short = 'd', long, global = true)]
    debug: bool,
    /// Log level or filter (RUST_LOG syntax, e.g. "info" or "info,ipfs_cluster_consensus=debug")
    #[arg(short = 'l', long, env = "IPFS_CLUSTER_LOG_LEVEL", global = true)]
    loglevel: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a configuration (service.json), an identity, the internal token and the peerstore
    Init {
        /// Overwrite existing files
        #[arg(short = 'f', long)]
        force: bool,
        /// Consensus component (only raft is supported)
        #[arg(long, default_value = "raft")]
        consensus: String,
        /// Comma-separated multiaddrs of existing peers (written to the peerstore and raft init_peerset)
        #[arg(long, value_delimiter = ',')]
        peers: Vec<String>,
        /// Cluster secret to use (64 hex characters) instead of a random one; env CLUSTER_SECRET also works
        #[arg(short = 's', long = "custom-secret")]
        custom_secret: Option<String>,
    },
    /// Run the peer: start and supervise the four services until SIGINT or SIGTERM
    Daemon {
        /// Comma-separated multiaddrs of cluster peers to join through
        #[arg(short = 'j', long, value_delimiter = ',')]
        bootstrap: Vec<String>,
        /// Remove this peer from the cluster on shutdown
        #[arg(short = 'x', long)]
        leave: bool,
    },
    /// Print the version
    Version,
}

fn init_logging(cli: &Cli) {
    let filter = if cli.debug {
        "debug".to_string()
    } else {
        cli.loglevel
            .clone()
            .or_else(|| std::env::var("RUST_LOG").ok())
            .unwrap_or_else(|| "info".into())
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

async fn run(cli: Cli) -> Result<()> {
    let dir = resolve_config_dir(cli.config.as_deref());
    match cli.command {
        Cmd::Version => {
            println!("{}", ipfs_cluster_proto::VERSION);
            Ok(())
        }
        Cmd::Init {
            force,
            consensus,
            peers,
            custom_secret,
        } => {
            let secret = custom_secret
                .as_deref()
                .map(ClusterSecret::parse)
                .transpose()?;
            let peers = peers
                .iter()
                .map(|p| p.parse())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!("--peers: invalid multiaddr: {e}"))?;
            let opts = InitOptions {
                force,
                peername: None,
                secret,
                peers,
                consensus,
            };
            let report = ipfs_cluster_config::init(&dir, &opts)?;
            println!("{report}");
            Ok(())
        }
        Cmd::Daemon { bootstrap, leave } => {
            run_daemon(DaemonOptions {
                config_dir: dir,
                bootstrap,
                leave,
                bin_dir: None,
            })
            .await
        }
    }
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    init_logging(&cli);
    if let Err(e) = run(cli).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
