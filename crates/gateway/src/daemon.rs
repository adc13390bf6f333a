//! The gateway as a runtime [`Service`]: its options from the peer's configuration, then
//! [`crate::run`] with the service's metrics registry (REST API, Pinning Services API, internal
//! gRPC endpoint) until the stop signal. The binary is
//! `ipfs_cluster_runtime::main::<GatewayDaemon>()`.

use ipfs_cluster_config::ServiceKind;
use ipfs_cluster_runtime::{Context, NoArgs, Service};

/// The gateway service of a peer.
pub struct GatewayDaemon;

impl Service for GatewayDaemon {
    const NAME: &'static str = "ipfs-cluster-gateway";
    const ABOUT: &'static str = "IPFS Cluster gateway: REST API and Pinning Services API";
    const KIND: ServiceKind = ServiceKind::Gateway;
    type Args = NoArgs;

    async fn run(ctx: Context<NoArgs>) -> anyhow::Result<()> {
        let (opts, token) = crate::config::from_peer(&ctx.peer)?;
        crate::run(opts, token, ctx.metrics.clone(), ctx.stop_signal()).await?;
        Ok(())
    }
}
