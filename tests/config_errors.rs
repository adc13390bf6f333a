//! Bad configuration and a taken port: the daemon exits non-zero with one clear line.

use std::{net::TcpListener, path::Path};

use ipfs_cluster_tests::*;

/// Runs the daemon on a prepared folder; returns (exit code, last stderr line).
fn daemon_fails(dir: &Path) -> (i32, String) {
    let (code, _out, err) = run_bin(
        "ipfs-cluster-service",
        &["--config", dir.to_str().unwrap(), "daemon"],
        &[],
    )
    .unwrap();
    let last = err
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .to_string();
    (code, last)
}

fn edit_json(path: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

fn fresh_peer(tmp: &Path) -> PeerDir {
    // No IPFS is needed: these fail before, or regardless of, the daemon.
    PeerDir::init(
        &tmp.join("peer"),
        &format!("/ip4/127.0.0.1/tcp/{}", free_port()),
        None,
    )
    .unwrap()
}

#[test]
fn bad_secret_is_one_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let peer = fresh_peer(tmp.path());
    edit_json(&peer.dir.join("service.json"), |v| {
        v["cluster"]["secret"] = "abcdef012345".into()
    });
    let (code, line) = daemon_fails(&peer.dir);
    assert_ne!(code, 0);
    assert!(
        line.starts_with("error:") && line.contains("secret") && line.contains("64 hex"),
        "{line}"
    );
}

#[test]
fn bad_identity_is_one_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let peer = fresh_peer(tmp.path());
    edit_json(&peer.dir.join("identity.json"), |v| {
        v["private_key"] = "not base64!".into()
    });
    let (code, line) = daemon_fails(&peer.dir);
    assert_ne!(code, 0);
    assert!(
        line.starts_with("error:") && line.contains("identity.json"),
        "{line}"
    );
}

#[test]
fn bad_duration_is_one_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let peer = fresh_peer(tmp.path());
    edit_json(&peer.dir.join("service.json"), |v| {
        v["cluster"]["state_sync_interval"] = "5 minutes".into()
    });
    let (code, line) = daemon_fails(&peer.dir);
    assert_ne!(code, 0);
    assert!(
        line.starts_with("error:") && line.contains("5 minutes"),
        "{line}"
    );
}

#[test]
fn taken_port_is_one_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let peer = fresh_peer(tmp.path());
    let _holder = TcpListener::bind(("127.0.0.1", peer.ports.rest)).unwrap();
    let (code, line) = daemon_fails(&peer.dir);
    assert_ne!(code, 0);
    assert!(
        line.starts_with("error:")
            && line.contains(&peer.ports.rest.to_string())
            && line.contains("in use"),
        "{line}"
    );
}

#[test]
fn init_refuses_to_overwrite_and_writes_a_private_token() {
    let tmp = tempfile::tempdir().unwrap();
    let peer = fresh_peer(tmp.path());
    let (code, _, err) = run_bin(
        "ipfs-cluster-service",
        &["--config", peer.dir.to_str().unwrap(), "init"],
        &[],
    )
    .unwrap();
    assert_ne!(code, 0);
    assert!(err.contains("--force"), "{err}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(peer.dir.join("internal.token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let (v1, _, _) = run_bin("ipfs-cluster-service", &["--version"], &[]).unwrap();
    assert_eq!(v1, 0);
}
