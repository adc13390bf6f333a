//! Membership behaviours 30, 32, 33 and 35 of docs/behaviours.md (and the membership
//! checks), through REST on clusters started by the real
//! launcher on loopback: joining one at a time and all at once (the pin made on peer 0
//! before the joins reaches every peer), removing a peer (it stops), every peer removing
//! itself in turn (also the leader) until the last one, which cannot, and a join through the
//! address of a peer that is gone (the joiner keeps trying and never becomes a cluster of
//! its own; ours keeps trying where upstream gives up and exits non-zero).
//!
//! Harness copied (trimmed) from tests/consensus_cluster.rs: tests/src/lib.rs is shared.

use std::{collections::BTreeMap, process::Command, time::Duration};

use ipfs_cluster_tests::*;

/// 35 (and the pin made before the joins) on a cluster whose peers joined peer 0 one at a
/// time or all at once.
async fn joined(one_by_one: bool) -> Cluster {
    let first = random_cid();
    let join = if one_by_one {
        Join::OneByOne
    } else {
        Join::AllAtOnce
    };
    let c = Cluster::start(5, join, Some(&first)).await.unwrap();
    let all: Vec<usize> = (0..5).collect();
    c.wait_members(&all, 5).await;
    let want = BTreeMap::from([(first, vec![])]);
    c.wait_states(&all, &want).await;
    c
}

/// 35 (all at once).
#[test]
fn b35_join_all_at_once() {
    one_at_a_time(async {
        joined(false).await;
    });
}

/// 35 (one at a time).
#[test]
fn b35_join_one_by_one() {
    one_at_a_time(async {
        joined(true).await;
    });
}

/// 32: peer 0 removes peer 1: peer 1 stops, the others see 4.
#[test]
fn b32_remove_peer() {
    one_at_a_time(async {
        let mut c = joined(false).await;

        let id1 = c.ids[1].clone();
        let (st, body) = http("DELETE", &format!("{}/peers/{id1}", c.rest(0)), None)
            .await
            .unwrap();
        assert_eq!(st, 204, "DELETE /peers/{id1}: {body}");
        let exit = c.wait_exit(1).await;
        assert!(
            exit.is_some(),
            "the removed peer 1 did not stop\n{}",
            problems(&c.peers[1])
        );
        c.wait_members(&[0, 2, 3, 4], 4).await;
    });
}

/// 33: every peer removes itself in turn, the current leader first; each stops and the rest
/// see one fewer; the last one cannot remove itself (1-peer cluster).
#[test]
fn b33_each_peer_removes_itself() {
    one_at_a_time(async {
        let mut c = joined(false).await;
        let mut left: Vec<usize> = (0..5).collect();
        while left.len() > 1 {
            // After each removal the survivors may be electing a new leader: wait for one.
            let mut leader = String::new();
            for _ in 0..100 {
                match c.leader(left[0]).await {
                    Ok(l) if !l.is_empty() => {
                        leader = l;
                        break;
                    }
                    _ => tokio::time::sleep(Duration::from_millis(300)).await,
                }
            }
            assert!(!leader.is_empty(), "no leader among {left:?}\n{}", c.logs());
            let i = *left
                .iter()
                .find(|&&i| c.ids[i] == leader)
                .unwrap_or(&left[0]);
            let me = c.ids[i].clone();
            let (st, body) = http("DELETE", &format!("{}/peers/{me}", c.rest(i)), None)
                .await
                .unwrap();
            assert_eq!(st, 204, "peer {i} removing itself: {body}");
            let exit = c.wait_exit(i).await;
            assert!(
                exit.is_some(),
                "peer {i} removed itself but did not stop\n{}",
                problems(&c.peers[i])
            );
            left.retain(|&k| k != i);
            c.wait_members(&left, left.len()).await;
        }
        let last = left[0];
        let me = c.ids[last].clone();
        let (st, body) = http("DELETE", &format!("{}/peers/{me}", c.rest(last)), None)
            .await
            .unwrap();
        assert_ne!(st, 204, "the last peer removed itself: {body}");
        assert!(body.contains("1-peer cluster"), "{st} {body}");
        c.wait_members(&[last], 1).await;
    });
}

/// 30: joining through the address of a peer that was shut down does not succeed, and the
/// joiner never starts a cluster of its own. Upstream's daemon then exits after its ready
/// timeout; ours keeps retrying with backoff (a compose stack starts every
/// peer at once, so the bootstrap peer is often not up yet), one log line per try, well past
/// the old deadline (wait_for_leader_timeout + 5 s), until the operator stops it — which
/// then works at once and cleanly. tests/join_dns.rs shows such a joiner joining once its
/// peer comes up.
#[test]
fn b30_join_through_a_stopped_peer_keeps_trying_until_stopped() {
    one_at_a_time(async {
        let tmp = tempfile::tempdir().unwrap();
        let ipfs = IpfsNode::start(tmp.path()).await.unwrap();
        let env = short_timings();
        let p0 = init_test_peer(&tmp.path().join("peer_0"), &ipfs.multiaddr(), &env).unwrap();
        let p1 = init_test_peer(&tmp.path().join("peer_1"), &ipfs.multiaddr(), &env).unwrap();
        let mut proc0 = p0.start(&[]).await.unwrap();
        let id0 = peer_id(&p0).await.unwrap();
        proc0.terminate(Duration::from_secs(20));
        drop(proc0);
        let boot = format!("/ip4/127.0.0.1/tcp/{}/p2p/{id0}", p0.ports.swarm);
        let log = std::fs::File::create(p1.dir.join("daemon.log")).unwrap();
        let mut proc1 = Proc::spawn(
            "ipfs-cluster-service",
            Command::new(bin("ipfs-cluster-service"))
                .arg("--config")
                .arg(&p1.dir)
                .args(["daemon", "--bootstrap", &boot])
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .stdin(std::process::Stdio::null()),
        )
        .unwrap();
        // Past the old deadline (15 s + 5 s) and a few backoff rounds (1, 2, 4, 8, 16 s).
        tokio::time::sleep(Duration::from_secs(35)).await;
        assert!(
            proc1.try_wait().is_none(),
            "the joiner gave up\n{}",
            problems(&p1)
        );
        let log = std::fs::read_to_string(p1.dir.join("daemon.log")).unwrap();
        let tries = log
            .lines()
            .filter(|l| l.contains("could not join the cluster yet") && l.contains(&boot))
            .count();
        assert!(tries >= 4, "{tries} retry lines\n{}", problems(&p1));
        // It did not turn into a cluster of its own: no raft state was bootstrapped.
        assert!(
            !log.contains("bootstrapping a new raft cluster"),
            "the joiner bootstrapped a cluster of its own"
        );
        assert!(
            p1.dir.join("raft.joining").exists(),
            "the unfinished join is still marked"
        );
        let stopped = std::time::Instant::now();
        let status = proc1.terminate(Duration::from_secs(30));
        assert!(
            status.is_some(),
            "the joiner did not stop on SIGTERM\n{}",
            problems(&p1)
        );
        eprintln!(
            "joiner stopped {:.1}s after SIGTERM ({status:?}), after {tries} tries",
            stopped.elapsed().as_secs_f64()
        );
    });
}
