fn main() {
    eprintln!("ipfs-cluster-consensus: not built yet");
    std::process::exit(1);
}
