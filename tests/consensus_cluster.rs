//! Issue 4's multi-process "Done when" for consensus, through REST on clusters started by
//! the real launcher on loopback: 100 pins committed through random peers appear on every
//! peer with identical allocations and unpinning them all empties every state (3 and 5
//! peers); kill -9 of the leader's consensus service in the middle of a stream of pins
//! (a new leader takes over, every acknowledged pin is in the final state of every
//! surviving peer, and the killed service, restarted by the launcher, catches up).
//!
//! Harness copied (trimmed) from tests/behaviours_alloc.rs: tests/src/lib.rs is shared.

use std::{
    collections::{BTreeMap, HashSet},
    path::Path,
    process::Command,
    time::Duration,
};

use anyhow::{bail, Context, Result};
use ipfs_cluster_tests::*;
use serde_json::Value;

include!("support/cluster_harness.rs");

impl Cluster {
    /// `n` peers; peer 0 bootstraps, the others join it with `--bootstrap` (all at once).
    async fn start(n: usize) -> Result<Self> {
        let tmp = test_dir()?;
        let ipfs = IpfsNode::start(tmp.path()).await?;
        let env = env();
        let peers: Vec<PeerDir> = (0..n)
            .map(|i| {
                init_peer(
                    &tmp.path().join(format!("peer_{i}")),
                    &ipfs.multiaddr(),
                    &env,
                )
            })
            .collect::<Result<_>>()?;
        let p0 = peers[0].start(&[]).await?;
        let id0 = peer_id(&peers[0]).await?;
        let boot = format!("/ip4/127.0.0.1/tcp/{}/p2p/{id0}", peers[0].ports.swarm);
        let mut procs = vec![Some(p0)];
        let args = ["--bootstrap", boot.as_str()];
        for p in join_all(peers[1..].iter().map(|p| p.start(&args))).await {
            procs.push(Some(p?));
        }
        let mut ids = vec![id0];
        for p in &peers[1..] {
            ids.push(peer_id(p).await?);
        }
        let c = Cluster {
            peers,
            ids,
            procs,
            _ipfs: ipfs,
            _tmp: tmp,
        };
        for i in 0..n {
            let url = format!("{}/peers", c.rest(i));
            wait_for(Duration::from_secs(90), || async {
                members(&url).await.len() == n
            })
            .await
            .with_context(|| {
                format!(
                    "peer {i} does not see {n} peers; log:\n{}",
                    problems(&c.peers[i])
                )
            })?;
        }
        // Allocation needs every peer's freespace metric on the leader (any peer may lead).
        for i in 0..n {
            let url = format!("{}/monitor/metrics/freespace", c.rest(i));
            wait_for(Duration::from_secs(60), || async {
                matches!(get_json(&url).await, Ok(Value::Array(a)) if a.len() == n)
            })
            .await
            .with_context(|| format!("peer {i} does not hold {n} freespace metrics"))?;
        }
        Ok(c)
    }

    fn rest(&self, i: usize) -> String {
        self.peers[i].rest_url()
    }

    fn logs(&self) -> String {
        let l: Vec<String> = self.peers.iter().map(problems).collect();
        l.join("\n----\n")
    }

    /// The leader's peer id, asked through peer `i`'s REST API is not exposed upstream:
    /// ask peer `i`'s consensus service.
    async fn leader(&self, i: usize) -> Result<String> {
        let p = &self.peers[i];
        let token = ipfs_cluster_proto::auth::InternalToken::load(&p.dir.join("internal.token"))?;
        let mut c = ipfs_cluster_proto::client::consensus(
            format!("127.0.0.1:{}", p.ports.consensus).parse()?,
            &token,
        );
        let r = c
            .leader(ipfs_cluster_proto::consensus::v1::LeaderRequest {})
            .await?;
        Ok(r.into_inner().peer_id)
    }

    /// Peer `i`'s whole state (`GET /allocations?filter=all`): cid -> sorted allocations.
    async fn state(&self, i: usize) -> Result<BTreeMap<String, Vec<String>>> {
        let url = format!("{}/allocations?filter=all", self.rest(i));
        let (st, body) = http("GET", &url, None).await?;
        // An empty stream is answered with 204 and no body, as upstream.
        if st == 204 {
            return Ok(BTreeMap::new());
        }
        if st != 200 {
            bail!("GET /allocations on peer {i}: {st} {body}");
        }
        let mut out = BTreeMap::new();
        for v in serde_json::Deserializer::from_str(&body).into_iter::<Value>() {
            let items = match v? {
                Value::Array(a) => a,
                v => vec![v],
            };
            for p in items {
                let mut a = strings(&p["allocations"]);
                a.sort();
                out.insert(p["cid"].as_str().context("pin without cid")?.to_string(), a);
            }
        }
        Ok(out)
    }

    /// Waits until every listed peer's state equals `want` (cid -> allocations), or fails
    /// naming the differences.
    async fn wait_states(&self, on: &[usize], want: &BTreeMap<String, Vec<String>>) {
        self.wait_holds(on, want, &HashSet::new()).await
    }

    /// Waits until every listed peer's state holds `want` (cid -> allocations) and nothing
    /// else but CIDs in `maybe` (writes whose answer was an error may still have committed).
    async fn wait_holds(
        &self,
        on: &[usize],
        want: &BTreeMap<String, Vec<String>>,
        maybe: &HashSet<String>,
    ) {
        let fits = |got: &BTreeMap<String, Vec<String>>| {
            want.iter().all(|(k, v)| got.get(k) == Some(v))
                && got
                    .keys()
                    .all(|k| want.contains_key(k) || maybe.contains(k))
        };
        for &i in on {
            let ok = wait_for(Duration::from_secs(60), || async {
                self.state(i).await.map(|s| fits(&s)).unwrap_or(false)
            })
            .await;
            if ok.is_err() {
                let got = match self.state(i).await {
                    Ok(g) => g,
                    Err(e) => panic!("peer {i}'s state: {e:#}"),
                };
                let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
                let extra: Vec<_> = got
                    .keys()
                    .filter(|k| !want.contains_key(*k) && !maybe.contains(*k))
                    .collect();
                let differ: Vec<_> = want
                    .iter()
                    .filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v))
                    .map(|(k, _)| k)
                    .collect();
                panic!(
                    "peer {i}'s state differs: {} missing {missing:?}, {} extra {extra:?}, allocations differ for {differ:?}\nlogs:\n{}",
                    missing.len(),
                    extra.len(),
                    self.logs()
                );
            }
        }
    }

    /// The pid of peer `i`'s current consensus service (from the launcher's log).
    fn consensus_pid(&self, i: usize) -> Result<u32> {
        let log = std::fs::read_to_string(self.peers[i].dir.join("daemon.log"))?;
        log.lines()
            .filter(|l| l.contains("service started") && l.contains("service=\"consensus\""))
            .filter_map(|l| l.rsplit("pid=").next()?.trim().parse().ok())
            .next_back()
            .context("no consensus pid in the launcher's log")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Stop peers first (their Proc drops end the process groups), then IPFS.
        self.procs.clear();
    }
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
    let c = Cluster::start(n).await.unwrap();
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
    run(hundred_pins(
        3,
        "replication-min=2&replication-max=2",
        2..=2,
    ));
}

#[test]
fn five_peers_100_pins_identical_allocations_then_unpin_all() {
    run(hundred_pins(
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
    run(async {
        let n = 3;
        let c = Cluster::start(n).await.unwrap();
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
