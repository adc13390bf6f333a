//! Compiles the contracts in the workspace's top-level `proto/` with the vendored protoc,
//! so a plain `cargo build` works on a fresh machine ($PROTOC overrides it).
use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [
        "ipfscluster/types/v1/types.proto",
        "ipfscluster/transport/v1/transport.proto",
        "ipfscluster/consensus/v1/consensus.proto",
        "ipfscluster/ipfsconnector/v1/ipfsconnector.proto",
        "ipfscluster/gateway/v1/gateway.proto",
    ]
    .map(|f| root.join(f));

    let mut config = tonic_prost_build::Config::new();
    if env::var_os("PROTOC").is_none() {
        config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    }
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .file_descriptor_set_path(out_dir.join("ipfscluster_descriptor.bin"))
        .compile_with_config(config, &files, std::slice::from_ref(&root))?;

    println!("cargo:rerun-if-changed={}", root.display());
    println!("cargo:rerun-if-env-changed=PROTOC");
    Ok(())
}
