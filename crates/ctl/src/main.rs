//! ipfs-cluster-ctl binary: parses nothing itself, runs the library entry point and exits
//! with its code.

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let code = ipfs_cluster_ctl::run(args, &mut std::io::stdout(), &mut std::io::stderr());
    std::process::exit(code);
}
