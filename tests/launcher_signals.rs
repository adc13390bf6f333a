//! A peer's services never outlive it: SIGHUP (a closed terminal or SSH session), SIGTERM
//! and SIGKILL of the launcher (`ipfs-cluster-service daemon`) each leave no service of that
//! peer running within a few seconds, and `daemon` starts again on the same ports at once.
//! Before, SIGHUP and SIGKILL killed the launcher alone and left its four services running
//! as orphans holding every port (an orphaned ipfs connector even ignored SIGTERM).

use std::time::{Duration, Instant};

use ipfs_cluster_tests::*;

/// The pids whose parent is `parent` (from /proc).
fn children(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|s| s.parse::<u32>().ok());
        if ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}

/// Is `pid` a live process (not gone, not a zombie)?
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = std::process::Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status();
}

async fn check_signal(sig: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let ipfs = IpfsNode::start(tmp.path()).await.expect("Kubo");
    let peer = PeerDir::init(&tmp.path().join("peer"), &ipfs.multiaddr(), None).unwrap();
    let mut launcher = peer.start(&[]).await.unwrap();
    let services = children(launcher.pid());
    assert_eq!(
        services.len(),
        4,
        "the launcher should run four services: {services:?}"
    );
    signal(launcher.pid(), sig);
    let t0 = Instant::now();
    let until = t0 + Duration::from_secs(15);
    while (services.iter().any(|p| alive(*p)) || launcher.try_wait().is_none())
        && Instant::now() < until
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left: Vec<u32> = services.iter().copied().filter(|p| alive(*p)).collect();
    assert!(
        left.is_empty(),
        "SIG{sig} of the launcher left services running: {left:?}; log:\n{}",
        peer.log_tail()
    );
    assert!(
        launcher.try_wait().is_some(),
        "the launcher is still running"
    );
    println!(
        "SIG{sig}: launcher and services gone after {:?}",
        t0.elapsed()
    );
    // Every port is free again: the same peer starts at once.
    let _again = peer
        .start(&[])
        .await
        .unwrap_or_else(|e| panic!("daemon after SIG{sig}: {e:#}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_stops_the_whole_peer() {
    check_signal("HUP").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_whole_peer() {
    check_signal("TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_launcher_leaves_no_orphans() {
    check_signal("KILL").await;
}
