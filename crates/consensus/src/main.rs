//! `ipfs-cluster-consensus [--config DIR] [--bootstrap ADDR,...] [--leave]`: the consensus
//! service (`ipfs_cluster_consensus::daemon`) on the shared service skeleton.

fn main() -> std::process::ExitCode {
    ipfs_cluster_runtime::main::<ipfs_cluster_consensus::daemon::ConsensusDaemon>()
}
