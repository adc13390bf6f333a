//! Joining through DNS multiaddresses, and a join that keeps trying.
//!
//! Real launchers (`ipfs-cluster-service daemon`) on loopback, two peers each:
//!
//! - a peer joins through `--bootstrap /dns4/localhost/tcp/<port>/p2p/<id>`, and
//! - through `/dns4/localhost/tcp/<port>` without the peer id (the form of
//!   deploy/docker-compose.yml's `--bootstrap /dns4/cluster0/tcp/9096`);
//! - a joiner started 30 s before its bootstrap peer (its consensus service killed once
//!   meanwhile, so the launcher restarts it without `--bootstrap`) joins once that peer is
//!   up.
//!
//! Each ends with both peers listing both in `GET /peers`.
//!
//! No IPFS node: membership never touches IPFS, and a peer starts (and answers REST) with
//! an unreachable IPFS API (its connector logs that and keeps retrying), so the peers point
//! at a loopback port nothing listens on.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use ipfs_cluster_tests::*;
use serde_json::Value;

/// Two initialised peers (not started) on free ports, with an IPFS API nobody answers.
fn two_peers(tmp: &Path) -> Result<(PeerDir, PeerDir)> {
    let no_ipfs = format!("/ip4/127.0.0.1/tcp/{}", free_port());
    let env = short_timings();
    Ok((
        init_test_peer(&tmp.join("peer_0"), &no_ipfs, &env)?,
        init_test_peer(&tmp.join("peer_1"), &no_ipfs, &env)?,
    ))
}

/// The peer id `init` wrote to a peer folder's identity.json.
fn identity_id(p: &PeerDir) -> Result<String> {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(p.dir.join("identity.json"))?)?;
    Ok(v["id"]
        .as_str()
        .context("identity.json has no id")?
        .to_string())
}

/// The ids `GET /peers` on `p` lists without an error, sorted.
async fn members_of(p: &PeerDir) -> Vec<String> {
    let mut ids = members(&format!("{}/peers", p.rest_url())).await;
    ids.sort();
    ids
}

/// Waits until both peers list exactly both; returns how long that took.
async fn wait_both_see_both(a: &PeerDir, b: &PeerDir, within: Duration) -> Result<Duration> {
    let mut want = vec![identity_id(a)?, identity_id(b)?];
    want.sort();
    let start = Instant::now();
    wait_for(within, || async {
        members_of(a).await == want && members_of(b).await == want
    })
    .await
    .with_context(|| {
        format!(
            "the peers did not both list {want:?}\n--- peer 0:\n{}\n--- peer 1:\n{}",
            a.log_tail(),
            b.log_tail()
        )
    })?;
    Ok(start.elapsed())
}

/// The lines of a peer's log containing `what`.
fn log_lines(p: &PeerDir, what: &str) -> Vec<String> {
    std::fs::read_to_string(p.dir.join("daemon.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(what))
        .map(str::to_string)
        .collect()
}

/// The pid of a peer's current consensus service (from its launcher's log).
fn consensus_pid(p: &PeerDir) -> Option<u32> {
    log_lines(p, "service started")
        .iter()
        .filter(|l| l.contains("service=\"consensus\""))
        .filter_map(|l| l.rsplit("pid=").next()?.trim().parse().ok())
        .next_back()
}

/// Peer 1 joins peer 0 through `bootstrap(port, id)`; both then list both, and peer 1's
/// peerstore keeps the DNS name (with the peer id learned) for its next start.
async fn join_through(bootstrap: impl Fn(u16, &str) -> String) {
    let tmp = test_dir().unwrap();
    let (p0, p1) = two_peers(tmp.path()).unwrap();
    let _proc0 = p0.start(&[]).await.unwrap();
    let id0 = identity_id(&p0).unwrap();
    let boot = bootstrap(p0.ports.swarm, &id0);
    let started = Instant::now();
    let mut proc1 = p1.start(&["--bootstrap", &boot]).await.unwrap();
    let took = wait_both_see_both(&p0, &p1, Duration::from_secs(60))
        .await
        .unwrap();
    eprintln!(
        "joined through {boot}: both list both {:.1}s after the joiner started ({:.1}s after it was ready)",
        started.elapsed().as_secs_f64(),
        took.as_secs_f64()
    );
    assert_eq!(
        log_lines(&p1, "could not join the cluster yet").len(),
        0,
        "the first attempt should have joined:\n{}",
        p1.log_tail()
    );
    assert!(
        proc1.terminate(Duration::from_secs(30)).is_some(),
        "peer 1 did not stop"
    );
    let ps = std::fs::read_to_string(p1.dir.join("peerstore")).unwrap_or_default();
    let want = format!("/dns4/localhost/tcp/{}/p2p/{id0}", p0.ports.swarm);
    assert!(
        ps.lines().any(|l| l == want),
        "peer 1's peerstore lacks {want}: {ps:?}"
    );
}

/// (a) `--bootstrap /dns4/localhost/tcp/<port>/p2p/<id>`.
#[test]
fn joins_through_dns4_with_peer_id() {
    one_at_a_time(join_through(|port, id| {
        format!("/dns4/localhost/tcp/{port}/p2p/{id}")
    }));
}

/// (b) `--bootstrap /dns4/localhost/tcp/<port>`: the peer id comes from the connection.
#[test]
fn joins_through_dns4_without_peer_id() {
    one_at_a_time(join_through(|port, _| {
        format!("/dns4/localhost/tcp/{port}")
    }));
}

/// (c) The joiner starts 30 s before its bootstrap peer (as in a compose stack, where
/// `depends_on` does not wait for readiness). It keeps retrying with backoff, one log line
/// per try; its consensus service, killed meanwhile, is restarted by the launcher without
/// `--bootstrap` and resumes the join from its marker. Once the bootstrap peer is up the
/// joiner joins, and neither peer started a cluster with the other missing.
#[test]
fn joiner_started_30s_before_its_bootstrap_peer_joins() {
    one_at_a_time(async {
        let tmp = test_dir().unwrap();
        let (p0, p1) = two_peers(tmp.path()).unwrap();
        let id0 = identity_id(&p0).unwrap();
        let boot = format!("/ip4/127.0.0.1/tcp/{}/p2p/{id0}", p0.ports.swarm);
        let t0 = Instant::now();
        let mut proc1 = p1.start(&["--bootstrap", &boot]).await.unwrap();
        eprintln!(
            "joiner ready (REST) after {:.1}s",
            t0.elapsed().as_secs_f64()
        );

        // Kill the joiner's consensus service mid-join: the launcher restarts it without
        // --bootstrap, and it must go on joining (it used to refuse to start).
        tokio::time::sleep(Duration::from_secs(10).saturating_sub(t0.elapsed())).await;
        let pid = consensus_pid(&p1).expect("the launcher logged the consensus pid");
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        wait_for(Duration::from_secs(20), || async {
            !log_lines(&p1, "resuming this peer's unfinished join").is_empty()
        })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the restarted consensus did not resume the join: {e}\n{}",
                p1.log_tail()
            )
        });

        tokio::time::sleep(Duration::from_secs(30).saturating_sub(t0.elapsed())).await;
        assert!(
            proc1.try_wait().is_none(),
            "the joiner gave up before its bootstrap peer started:\n{}",
            p1.log_tail()
        );
        let tries = log_lines(&p1, "could not join the cluster yet");
        assert!(
            tries.len() >= 4,
            "expected a log line per failed try, got {}:\n{}",
            tries.len(),
            tries.join("\n")
        );
        assert!(
            tries
                .iter()
                .all(|l| l.contains(&boot) && l.contains("retry_in")),
            "each try names the address and the next wait:\n{}",
            tries.join("\n")
        );

        let t_boot = Instant::now();
        let _proc0 = p0.start(&[]).await.unwrap();
        let took = wait_both_see_both(&p0, &p1, Duration::from_secs(90))
            .await
            .unwrap();
        eprintln!(
            "bootstrap peer started {:.1}s after the joiner; both list both {:.1}s after it started, {:.1}s after it was ready ({} failed tries before)",
            t_boot.duration_since(t0).as_secs_f64(),
            t_boot.elapsed().as_secs_f64(),
            took.as_secs_f64(),
            tries.len()
        );
        assert!(
            log_lines(&p1, "bootstrapping a new raft cluster").is_empty(),
            "the joiner started a cluster of its own"
        );
        assert!(
            !p1.dir.join("raft.joining").exists(),
            "the join marker is removed once joined"
        );
        assert!(proc1.try_wait().is_none(), "the joiner exited");
    });
}
