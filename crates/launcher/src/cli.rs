//! The launcher's command line (`init`, `daemon`, `state export|import|cleanup`,
//! `version`), upstream's flags and texts, and its `main`: logging and the tokio runtime
//! come from the shared skeleton (`ipfs-cluster-runtime`), the work from this library.

use std::path::PathBuf;

use crate::{run_daemon, state, DaemonOptions, ImportOptions, StateOptions};
use anyhow::Result;
use clap::{Parser, Subcommand};
use ipfs_cluster_config::{resolve_config_dir, ClusterSecret, InitOptions};

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
        /// Consensus component: raft (a small set of writers, strong consistency) or crdt
        /// (Merkle-CRDT with trusted peers; see docs/operations.md)
        #[arg(long, default_value = "raft")]
        consensus: String,
        /// Comma-separated multiaddrs of existing peers, e.g. /dns4/cluster0/tcp/9096/p2p/<id> (written to the peerstore; those with /p2p/<id> also to raft init_peerset)
        #[arg(long, value_delimiter = ',')]
        peers: Vec<String>,
        /// Cluster secret to use (64 hex characters) instead of a random one; env CLUSTER_SECRET also works
        #[arg(short = 's', long = "custom-secret")]
        custom_secret: Option<String>,
        /// Pick free random ports for every listening address (swarm, APIs, proxy, internal)
        #[arg(long = "randomports")]
        random_ports: bool,
    },
    /// Run the peer: start and supervise the four services until SIGINT or SIGTERM
    Daemon {
        /// Comma-separated multiaddrs of cluster peers to join through: /ip4, /ip6, /dns4, /dns6 or /dns with /tcp/<port>, or /dnsaddr/<name>; /p2p/<id> optional. Retried with backoff until the join succeeds
        #[arg(short = 'j', long, value_delimiter = ',')]
        bootstrap: Vec<String>,
        /// Remove this peer from the cluster on shutdown
        #[arg(short = 'x', long)]
        leave: bool,
        /// Serve Prometheus metrics: each service on its own port (observations.metrics)
        #[arg(long)]
        stats: bool,
        /// Carry a trace id through every service a request crosses (observations.tracing)
        #[arg(long)]
        tracing: bool,
    },
    /// Offline pinset administration (the daemon must be stopped)
    State {
        #[command(subcommand)]
        command: StateCmd,
    },
    /// Print the version
    Version,
}

#[derive(Subcommand)]
enum StateCmd {
    /// Write the pinset as JSON lines (one pin per line) to stdout or a file
    Export {
        /// Write to this file instead of stdout
        #[arg(short = 'f', long = "file")]
        file: Option<PathBuf>,
    },
    /// Replace the pinset with the pins of a JSON-lines export (stdin when no file is given)
    Import {
        /// Export file to read (stdin when absent; then --force is required)
        file: Option<PathBuf>,
        /// Do not ask before wiping the current state
        #[arg(short = 'f', long)]
        force: bool,
        /// Set every pin's replication_factor_min (when > 0)
        #[arg(
            long = "replication-min",
            visible_alias = "rmin",
            default_value_t = 0,
            allow_negative_numbers = true
        )]
        replication_min: i32,
        /// Set every pin's replication_factor_max (when > 0)
        #[arg(
            long = "replication-max",
            visible_alias = "rmax",
            default_value_t = 0,
            allow_negative_numbers = true
        )]
        replication_max: i32,
        /// Comma-separated peer IDs replacing every pin's allocations
        #[arg(long = "allocations", visible_alias = "allocs", value_delimiter = ',')]
        allocations: Vec<String>,
    },
    /// Remove this peer's consensus state (kept as a rotated raft.old.N backup)
    Cleanup {
        /// Do not ask for confirmation
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// CRDT-state commands (peers initialized with crdt consensus)
    Crdt {
        #[command(subcommand)]
        command: CrdtCmd,
    },
}

#[derive(Subcommand)]
enum CrdtCmd {
    /// Print information about the CRDT store (heads, max height, dirty flag)
    Info,
    /// Write the CRDT-DAG as DOT file
    Dot {
        /// Write to this file instead of stdout
        #[arg(short = 'f', long = "file")]
        file: Option<PathBuf>,
    },
    /// Marks the CRDT-store as dirty (a repair runs on the next start)
    MarkDirty,
    /// Marks the CRDT-store as clean (no repair on the next start)
    MarkClean,
}

async fn run_state(dir: PathBuf, cmd: StateCmd) -> Result<()> {
    let opts = StateOptions {
        config_dir: dir,
        bin_dir: None,
    };
    match cmd {
        StateCmd::Export { file } => {
            let res = state::export(&opts, file.as_deref()).await;
            if let (Err(_), Some(f)) = (&res, &file) {
                // Do not leave a truncated export behind that looks complete.
                let _ = std::fs::remove_file(f);
            }
            let n = res?;
            tracing::info!(pins = n, "state exported");
            Ok(())
        }
        StateCmd::Import {
            file,
            force,
            replication_min,
            replication_max,
            allocations,
        } => {
            let n = state::import(
                &opts,
                &ImportOptions {
                    input: file,
                    force,
                    replication_min,
                    replication_max,
                    allocations,
                },
            )
            .await?;
            eprintln!("{n} pins imported");
            Ok(())
        }
        StateCmd::Crdt { command } => {
            let cmd = match command {
                CrdtCmd::Info => state::CrdtCommand::Info,
                CrdtCmd::Dot { file } => state::CrdtCommand::Dot(file),
                CrdtCmd::MarkDirty => state::CrdtCommand::MarkDirty,
                CrdtCmd::MarkClean => state::CrdtCommand::MarkClean,
            };
            print!("{}", state::crdt(&opts, cmd).await?);
            Ok(())
        }
        StateCmd::Cleanup { force } => {
            match state::cleanup(&opts, force).await? {
                Some(backup) => eprintln!(
                    "the consensus state was cleaned up (backup in {})",
                    backup.display()
                ),
                None => eprintln!("no consensus state to clean up"),
            }
            Ok(())
        }
    }
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
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    ipfs_cluster_runtime::logging::init(&filter, Some(ansi));
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
            random_ports,
        } => {
            let secret = custom_secret
                .as_deref()
                .map(ClusterSecret::parse)
                .transpose()?;
            let peers = peers
                .iter()
                .filter(|p| !p.trim().is_empty())
                .map(|p| ipfs_cluster_config::addr::parse_peer_address(p))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!("--peers: {e}"))?;
            let opts = InitOptions {
                force,
                peername: None,
                secret,
                peers,
                consensus,
                random_ports,
            };
            let report = ipfs_cluster_config::init(&dir, &opts)?;
            println!("{report}");
            Ok(())
        }
        Cmd::State { command } => run_state(dir, command).await,
        Cmd::Daemon {
            bootstrap, leave, ..
        } => {
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

/// `daemon --stats` / `--tracing` reach the four services as the upstream environment
/// overrides (`CLUSTER_METRICS_ENABLESTATS`, `CLUSTER_TRACING_ENABLETRACING`), which their
/// config loading reads; set here, before any thread exists, and inherited by each child.
fn export_observation_flags(cli: &Cli) {
    if let Cmd::Daemon { stats, tracing, .. } = &cli.command {
        if *stats {
            std::env::set_var("CLUSTER_METRICS_ENABLESTATS", "true");
        }
        if *tracing {
            std::env::set_var("CLUSTER_TRACING_ENABLETRACING", "true");
        }
    }
}

/// The whole `main` of `ipfs-cluster-service`.
pub fn main() {
    let cli = Cli::parse();
    export_observation_flags(&cli);
    init_logging(&cli);
    let rt = ipfs_cluster_runtime::workers::service_runtime_or_exit();
    if let Err(e) = rt.block_on(run(cli)) {
        ipfs_cluster_runtime::exit_with_error(&e);
    }
}
