//! `ipfs-cluster-transport [--config DIR] [--stats] [--tracing]`: the transport service
//! (`ipfs_cluster_transport::daemon`) on the shared service skeleton.

fn main() -> std::process::ExitCode {
    ipfs_cluster_runtime::main::<ipfs_cluster_transport::daemon::TransportDaemon>()
}
