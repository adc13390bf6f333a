//! The IPFS connector as a runtime [`Service`]: its settings from the peer's
//! configuration, then [`crate::run::run`] (pin tracker, informers, IPFS proxy, internal
//! gRPC endpoint) until the stop signal. The binary is
//! `ipfs_cluster_runtime::main::<IpfsConnectorDaemon>()`.

use ipfs_cluster_config::ServiceKind;
use ipfs_cluster_runtime::{Context, NoArgs, Service};

use crate::settings::Settings;

/// The IPFS connector service of a peer.
pub struct IpfsConnectorDaemon;

impl Service for IpfsConnectorDaemon {
    const NAME: &'static str = "ipfs-cluster-ipfs-connector";
    const ABOUT: &'static str =
        "IPFS Cluster IPFS connector service: pin tracker, Kubo RPC client, informers";
    const KIND: ServiceKind = ServiceKind::IpfsConnector;
    type Args = NoArgs;

    async fn run(ctx: Context<NoArgs>) -> anyhow::Result<()> {
        let mut settings = Settings::from_peer(&ctx.peer)?;
        settings.metrics = ctx.metrics.clone();
        crate::run::run(settings, ctx.stop_token()).await?;
        Ok(())
    }
}
