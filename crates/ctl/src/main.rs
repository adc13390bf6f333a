fn main() {
    eprintln!("ipfs-cluster-ctl: not built yet");
    std::process::exit(1);
}
