fn main() {
    eprintln!("ipfs-cluster-service: not built yet");
    std::process::exit(1);
}
