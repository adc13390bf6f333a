//! The one `main` every service binary runs, so that a newcomer who learned one service
//! has learned the start-up of all four: logging (`RUST_LOG`, else the service's default),
//! the command line (`--config DIR`, `--stats`, `--tracing` plus the service's own
//! flags), the tokio runtime, the peer's configuration from the config folder, metrics
//! and tracing (`observations.*`), one stop signal (SIGTERM, SIGINT, SIGHUP or the
//! launcher gone), and one way to fail: a single `error: …` line on stderr and exit 1.
//!
//! A service implements [`Service`] in its library; its `main.rs` is
//! `ipfs_cluster_runtime::main::<TheService>()`.

use std::{future::Future, path::PathBuf, process::ExitCode, sync::Arc};

use anyhow::Context as _;
use clap::{CommandFactory, FromArgMatches, Parser};
use ipfs_cluster_config::{resolve_config_dir, Peer, ServiceKind};
use ipfs_cluster_observability::Metrics;
use tokio_util::sync::CancellationToken;

use crate::{logging, shutdown, workers};

/// The flags every service takes.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct CommonArgs {
    /// Configuration folder (service.json, identity.json, internal.token); default
    /// $IPFS_CLUSTER_PATH, else ~/.ipfs-cluster.
    #[arg(long, short = 'c', value_name = "DIR")]
    pub config: Option<PathBuf>,
    /// Serve Prometheus metrics (as observations.metrics.enable_stats).
    #[arg(long)]
    pub stats: bool,
    /// Propagate and log trace ids (as observations.tracing.enable_tracing).
    #[arg(long)]
    pub tracing: bool,
}

/// A service's own flags when it has none.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct NoArgs {}

#[derive(Parser, Debug)]
struct ServiceCli<A: clap::Args> {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    args: A,
}

/// One deployable service of a peer.
pub trait Service {
    /// The binary's name, e.g. `ipfs-cluster-transport`.
    const NAME: &'static str;
    /// One line for `--help`.
    const ABOUT: &'static str;
    /// Which service this is (metrics port, labels).
    const KIND: ServiceKind;
    /// The log filter when `RUST_LOG` is unset or invalid.
    const DEFAULT_LOG: &'static str = "info";
    /// The service's own flags (beyond [`CommonArgs`]); [`NoArgs`] when none.
    type Args: clap::Args + Send + 'static;

    /// Runs the service until `ctx.stop_signal()` resolves (or it fails).
    fn run(ctx: Context<Self::Args>) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// What [`main`] hands a service: its flags, its loaded configuration, its metrics
/// registry (when metrics are on) and the stop signal.
pub struct Context<A> {
    pub args: A,
    pub common: CommonArgs,
    pub config_dir: PathBuf,
    pub peer: Peer,
    /// `Some` when metrics are on: register the service's families here, and hand it to
    /// the internal gRPC server (`ServeOptions::observed_by`), which counts served calls.
    pub metrics: Option<Arc<Metrics>>,
    stop: CancellationToken,
}

impl<A> Context<A> {
    /// Resolves once the service should stop (SIGTERM, SIGINT, SIGHUP, launcher gone).
    pub fn stop_signal(&self) -> impl Future<Output = ()> + Send + 'static {
        self.stop.clone().cancelled_owned()
    }

    /// The stop signal as a token (cancelled when the service should stop).
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }
}

/// The whole `main` of a service binary. Exits the process with 1 (after one `error:`
/// line) when the service fails; returns success when it stopped cleanly.
pub fn main<S: Service>() -> ExitCode {
    logging::init(&logging::env_filter_or(S::DEFAULT_LOG), None);
    let matches = ServiceCli::<S::Args>::command()
        .name(S::NAME)
        .bin_name(S::NAME)
        .about(S::ABOUT)
        .version(ipfs_cluster_proto::VERSION)
        .get_matches();
    let cli = ServiceCli::<S::Args>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let rt = workers::service_runtime_or_exit();
    match rt.block_on(start::<S>(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => exit_with_error(&e),
    }
}

/// Prints `error: <e and its causes>` and exits 1 (without waiting for the runtime's
/// blocking threads, which may be stuck on a dead pipe).
pub fn exit_with_error(e: &anyhow::Error) -> ! {
    eprintln!("error: {e:#}");
    std::process::exit(1)
}

async fn start<S: Service>(cli: ServiceCli<S::Args>) -> anyhow::Result<()> {
    let config_dir = resolve_config_dir(cli.common.config.as_deref());
    let peer = Peer::load(&config_dir)
        .with_context(|| format!("loading the configuration from {}", config_dir.display()))?;
    let obs = ipfs_cluster_observability::Options::from_config(
        S::KIND,
        peer.identity.peer_id.to_string(),
        &peer.config,
        cli.common.stats,
        cli.common.tracing,
    )?;
    let metrics = ipfs_cluster_observability::start(obs).await?;
    let stop = CancellationToken::new();
    let stopping = stop.clone();
    tokio::spawn(async move {
        let reason = shutdown::stop_requested().await;
        tracing::info!(%reason, "shutting down");
        stopping.cancel();
    });
    S::run(Context {
        args: cli.args,
        common: cli.common,
        config_dir,
        peer,
        metrics,
        stop,
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Args, Debug)]
    struct Extra {
        #[arg(long)]
        leave: bool,
    }

    #[test]
    fn common_and_own_flags_parse_together() {
        let cmd = ServiceCli::<Extra>::command().name("x");
        let m = cmd
            .try_get_matches_from(["x", "-c", "/p", "--stats", "--leave"])
            .unwrap();
        let cli = ServiceCli::<Extra>::from_arg_matches(&m).unwrap();
        assert_eq!(
            cli.common.config.as_deref(),
            Some(std::path::Path::new("/p"))
        );
        assert!(cli.common.stats && !cli.common.tracing && cli.args.leave);
    }

    #[test]
    fn the_command_line_is_well_formed() {
        ServiceCli::<Extra>::command().debug_assert();
        ServiceCli::<NoArgs>::command().debug_assert();
    }
}
