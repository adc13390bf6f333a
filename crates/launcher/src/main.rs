//! `ipfs-cluster-service`: the drop-in launcher. The command line is
//! `ipfs_cluster_service::cli`; the work is in the library and in ipfs-cluster-config.

fn main() {
    ipfs_cluster_service::cli::main()
}
