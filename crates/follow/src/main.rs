//! `ipfs-cluster-follow`: the command line is `ipfs_cluster_follow::cli`, the work is in
//! the library (and in the launcher, `ipfs-cluster-service`'s library, for `run`).

fn main() {
    // Every peer this tool runs is a follower, as upstream forces `FollowerMode`: the
    // services it starts inherit this over whatever their service.json says. Set before
    // any other thread exists.
    std::env::set_var("CLUSTER_FOLLOWERMODE", "true");
    let rt = ipfs_cluster_runtime::workers::service_runtime_or_exit();
    let code = rt.block_on(ipfs_cluster_follow::run(std::env::args().skip(1).collect()));
    drop(rt);
    std::process::exit(code);
}
