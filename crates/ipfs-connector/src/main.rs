//! `ipfs-cluster-ipfs-connector [--config DIR] [--stats] [--tracing]`: the IPFS connector
//! service (`ipfs_cluster_ipfs_connector::daemon`) on the shared service skeleton.

fn main() -> std::process::ExitCode {
    ipfs_cluster_runtime::main::<ipfs_cluster_ipfs_connector::daemon::IpfsConnectorDaemon>()
}
