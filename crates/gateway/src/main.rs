//! `ipfs-cluster-gateway [--config DIR] [--stats] [--tracing]`: the gateway service
//! (`ipfs_cluster_gateway::daemon`) on the shared service skeleton.

fn main() -> std::process::ExitCode {
    ipfs_cluster_runtime::main::<ipfs_cluster_gateway::daemon::GatewayDaemon>()
}
