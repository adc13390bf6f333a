//! The gateway as a runtime [`Service`]: its options from the peer's configuration, its
//! Prometheus families, then [`crate::run`] (REST API, Pinning Services API, internal
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
        let (mut opts, token) = crate::config::from_peer(&ctx.peer)?;
        if let Some(m) = &ctx.metrics {
            opts.http_metrics = Some(crate::prometheus::register(m));
        }
        let grpc = ipfs_cluster_runtime::ServeOptions::observed_by(ctx.metrics.clone());
        crate::run(opts, token, grpc, ctx.stop_signal()).await?;
        Ok(())
    }
}
