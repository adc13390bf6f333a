//! The binary end to end: a config folder made by `init`, the service started with env
//! overrides for its ports, health and Id answered, clean exit on SIGTERM; and a bad
//! configuration exits non-zero with one `error:` line.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use ipfs_cluster_config::{init, InitOptions, Peer};
use ipfs_cluster_testkit::free_port;

const BIN: &str = env!("CARGO_BIN_EXE_ipfs-cluster-transport");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_serves_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), &InitOptions::default()).unwrap();
    let grpc_port = free_port();
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(dir.path())
        .env("CLUSTER_LISTENMULTIADDRESS", "/ip4/127.0.0.1/tcp/0")
        .env(
            "CLUSTER_INTERNAL_TRANSPORTLISTENMULTIADDRESS",
            format!("/ip4/127.0.0.1/tcp/{grpc_port}"),
        )
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let peer = Peer::load(dir.path()).unwrap();
    let addr = format!("127.0.0.1:{grpc_port}").parse().unwrap();
    let mut client = ipfs_cluster_proto::client::transport(addr, &peer.token);
    let deadline = Instant::now() + Duration::from_secs(10);
    let id = loop {
        match client
            .id(ipfs_cluster_proto::transport::v1::IdRequest {})
            .await
        {
            Ok(r) => break r.into_inner(),
            Err(e) if Instant::now() < deadline => {
                assert!(
                    child.try_wait().unwrap().is_none(),
                    "transport exited early: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("transport never answered Id: {e}"),
        }
    };
    assert_eq!(id.peer_id, peer.identity.peer_id.to_string());
    assert!(!id.psk_fingerprint.is_empty(), "init generates a secret");
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("transport did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}

#[test]
fn bad_config_is_one_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<_> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("service.json"), "{err}");
}
