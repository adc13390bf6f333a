//! Multi-process checks of consensus, through REST on clusters started by
//! the real launcher on loopback: 100 pins committed through random peers appear on every
//! peer with identical allocations and unpinning them all empties every state (3 and 5
//! peers); kill -9 of the leader's consensus service in the middle of a stream of pins
//! (a new leader takes over, every acknowledged pin is in the final state of every
//! surviving peer, and the killed service, restarted by the launcher, catches up).
//!
//! The cluster harness is the test kit's (`crates/testkit`, `Cluster`).

use std::{
    collections::{BTreeMap, HashSet},
    process::Command,
    time::Duration,
};

use anyhow::Result;
use ipfs_cluster_tests::*;
use serde_json::Value;

/// `n` peers (all join peer 0 at once), and every peer's freespace metric on every peer:
/// allocation needs them on the leader, and any peer may lead.
async fn start(n: usize) -> Result<Cluster> {
    let c = Cluster::start(n, Join::AllAtOnce, None).await?;
    c.wait_metric("freespace").await?;
    Ok(c)
}

/// A small xorshift: which peer each request goes to.
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        Rng(t | 1)
    }
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// 100 pins through random peers (4 at a time), identical allocations everywhere, then
/// unpin all through random peers: every state empty.
async fn hundred_pins(n: usize, query: &str, want_allocs: std::ops::RangeInclusive<usize>) {
    let c = start(n).await.unwrap();
    let mut rng = Rng::new();
    let cids: Vec<String> = (0..100).map(|_| random_cid()).collect();
    let mut want = BTreeMap::new();
    for chunk in cids.chunks(4) {
        let calls = chunk.iter().map(|cid| {
            let i = rng.below(n);
            let url = format!("{}/pins/{cid}?{query}", c.rest(i));
            async move { (i, cid.clone(), http("POST", &url, None).await) }
        });
        let calls: Vec<_> = calls.collect();
        for (i, cid, r) in join_all(calls).await {
            let (st, body) = r.expect("POST /pins");
            assert_eq!(
                st,
                200,
                "pin {cid} through peer {i}: {body}\nlogs:\n{}",
                c.logs()
            );
            let v: Value = serde_json::from_str(&body).unwrap();
            let mut a = strings(&v["allocations"]);
            a.sort();
            assert!(
                want_allocs.contains(&a.len()),
                "{cid}: {} allocations, wanted {want_allocs:?}: {v}",
                a.len()
            );
            let known: HashSet<&String> = c.ids.iter().collect();
            assert!(a.iter().all(|p| known.contains(p)), "{cid}: {a:?}");
            want.insert(cid, a);
        }
    }
    let all: Vec<usize> = (0..n).collect();
    c.wait_states(&all, &want).await;

    for chunk in cids.chunks(4) {
        let calls: Vec<_> = chunk
            .iter()
            .map(|cid| {
                let i = rng.below(n);
                let url = format!("{}/pins/{cid}", c.rest(i));
                async move { (i, cid.clone(), http("DELETE", &url, None).await) }
            })
            .collect();
        for (i, cid, r) in join_all(calls).await {
            let (st, body) = r.expect("DELETE /pins");
            assert_eq!(st, 200, "unpin {cid} through peer {i}: {body}");
        }
    }
    c.wait_states(&all, &BTreeMap::new()).await;
}

#[test]
fn three_peers_100_pins_identical_allocations_then_unpin_all() {
    one_at_a_time(hundred_pins(
        3,
        "replication-min=2&replication-max=2",
        2..=2,
    ));
}

#[test]
fn five_peers_100_pins_identical_allocations_then_unpin_all() {
    one_at_a_time(hundred_pins(
        5,
        "replication-min=2&replication-max=3",
        3..=3,
    ));
}

/// kill -9 of the leader's consensus service in the middle of a stream of pins sent to a
/// follower: a new leader takes over, every acknowledged pin is in the final state of every
/// surviving peer, and the killed service (restarted by the launcher) catches up.
#[test]
fn kill_leader_consensus_during_pins() {
    one_at_a_time(async {
        let n = 3;
        let c = start(n).await.unwrap();
        let leader = c.leader(0).await.unwrap();
        let li = c.ids.iter().position(|x| *x == leader).unwrap();
        let others: Vec<usize> = (0..n).filter(|&i| i != li).collect();
        let via = others[0];
        let query = "replication-min=-1&replication-max=-1";
        let mut acked = BTreeMap::new();
        let mut failed = HashSet::new();
        let mut killed_pid = 0;
        let mut killed = false;
        for k in 0..60 {
            if k == 15 {
                killed_pid = c.consensus_pid(li).unwrap();
                Command::new("kill")
                    .args(["-KILL", &killed_pid.to_string()])
                    .status()
                    .unwrap();
                killed = true;
            }
            let cid = random_cid();
            let url = format!("{}/pins/{cid}?{query}", c.rest(via));
            match http("POST", &url, None).await {
                Ok((200, _)) => {
                    acked.insert(cid, vec![]);
                }
                Ok((st, body)) => {
                    assert!(killed, "pin {cid} failed before the kill: {st} {body}");
                    failed.insert(cid);
                }
                Err(e) => panic!("POST /pins on peer {via}: {e}"),
            }
        }
        assert!(
            acked.len() >= 20,
            "only {} of 60 pins acknowledged ({} failed)",
            acked.len(),
            failed.len()
        );

        // A new leader among the survivors.
        let ok = wait_for(Duration::from_secs(60), || async {
            matches!(c.leader(via).await, Ok(l) if !l.is_empty() && l != leader)
        })
        .await;
        // The restarted old leader may win the new election: that is a new term all the same,
        // and what matters is that the survivors agree on a live leader.
        if ok.is_err() {
            let l = c.leader(via).await.unwrap_or_default();
            assert!(
                !l.is_empty(),
                "no leader after the kill\nlogs:\n{}",
                c.logs()
            );
        }
        c.wait_holds(&others, &acked, &failed).await;

        // The launcher restarts the killed consensus service; it catches up.
        let restarted = wait_for(Duration::from_secs(60), || async {
            c.consensus_pid(li).is_ok_and(|p| p != killed_pid) && c.state(li).await.is_ok()
        })
        .await;
        assert!(
            restarted.is_ok(),
            "the killed consensus service was not restarted\n{}",
            problems(&c.peers[li])
        );
        c.wait_holds(&[li], &acked, &failed).await;
    });
}
