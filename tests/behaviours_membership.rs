//! Membership behaviours 30, 32, 33 and 35 of reference/cluster-internals.md §8 (issue 8,
//! and issue 4's membership "Done when"), through REST on clusters started by the real
//! launcher on loopback: joining one at a time and all at once (the pin made on peer 0
//! before the joins reaches every peer), removing a peer (it stops), every peer removing
//! itself in turn (also the leader) until the last one, which cannot, and a join through the
//! address of a peer that is gone (the joiner gives up and exits non-zero).
//!
//! Harness copied (trimmed) from tests/consensus_cluster.rs: tests/src/lib.rs is shared.

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
    /// `n` peers; peer 0 bootstraps and pins `first` (replicated everywhere), then the others
    /// join it with `--bootstrap`, one at a time or all at once.
    async fn start(n: usize, one_by_one: bool, first: &str) -> Result<Self> {
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
        let (st, body) = http(
            "POST",
            &format!("{}/pins/{first}", peers[0].rest_url()),
            None,
        )
        .await?;
        if st != 200 {
            bail!("pin {first} on peer 0 before the joins: {st} {body}");
        }
        let boot = format!("/ip4/127.0.0.1/tcp/{}/p2p/{id0}", peers[0].ports.swarm);
        let mut procs = vec![Some(p0)];
        let args = ["--bootstrap", boot.as_str()];
        if one_by_one {
            for (k, p) in peers[1..].iter().enumerate() {
                procs.push(Some(p.start(&args).await?));
                let url = format!("{}/peers", peers[0].rest_url());
                wait_for(Duration::from_secs(60), || async {
                    members(&url).await.len() == k + 2
                })
                .await
                .with_context(|| format!("peer {} did not join", k + 1))?;
            }
        } else {
            for p in join_all(peers[1..].iter().map(|p| p.start(&args))).await {
                procs.push(Some(p?));
            }
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
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Stop peers first (their Proc drops end the process groups), then IPFS.
        self.procs.clear();
    }
}

impl Cluster {
    /// Waits until peer `i`'s launcher has exited; its exit status.
    async fn wait_exit(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if let Some(st) = self.procs[i].as_mut().and_then(|p| p.try_wait()) {
                self.procs[i] = None;
                return Some(st);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        None
    }

    async fn wait_members(&self, on: &[usize], n: usize) {
        for &i in on {
            let url = format!("{}/peers", self.rest(i));
            wait_for(Duration::from_secs(60), || async {
                members(&url).await.len() == n
            })
            .await
            .unwrap_or_else(|_| panic!("peer {i} does not see {n} peers\n{}", self.logs()));
        }
    }
}

/// 35 (and the pin made before the joins) on a cluster whose peers joined peer 0 one at a
/// time or all at once.
async fn joined(one_by_one: bool) -> Cluster {
    let first = random_cid();
    let c = Cluster::start(5, one_by_one, &first).await.unwrap();
    let all: Vec<usize> = (0..5).collect();
    c.wait_members(&all, 5).await;
    let want = BTreeMap::from([(first, vec![])]);
    c.wait_states(&all, &want).await;
    c
}

/// 35 (all at once).
#[test]
fn b35_join_all_at_once() {
    run(async {
        joined(false).await;
    });
}

/// 35 (one at a time).
#[test]
fn b35_join_one_by_one() {
    run(async {
        joined(true).await;
    });
}

/// 32: peer 0 removes peer 1: peer 1 stops, the others see 4.
#[test]
fn b32_remove_peer() {
    run(async {
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
    run(async {
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

/// 30: joining through the address of a peer that was shut down fails: the joiner gives up
/// (its launcher exits non-zero, saying why) instead of starting a cluster of its own — also
/// when the launcher restarts its consensus service, which then runs without --bootstrap.
#[test]
fn b30_join_through_a_stopped_peer_fails() {
    run(async {
        let tmp = tempfile::tempdir().unwrap();
        let ipfs = IpfsNode::start(tmp.path()).await.unwrap();
        let env = env();
        let p0 = init_peer(&tmp.path().join("peer_0"), &ipfs.multiaddr(), &env).unwrap();
        let p1 = init_peer(&tmp.path().join("peer_1"), &ipfs.multiaddr(), &env).unwrap();
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
        let start = std::time::Instant::now();
        let status = loop {
            if let Some(st) = proc1.try_wait() {
                break st;
            }
            assert!(
                start.elapsed() < Duration::from_secs(150),
                "the joiner did not give up\n{}",
                problems(&p1)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert!(!status.success(), "the joiner exited 0\n{}", problems(&p1));
        let log = std::fs::read_to_string(p1.dir.join("daemon.log")).unwrap();
        assert!(
            log.contains("could not join the cluster"),
            "{}",
            problems(&p1)
        );
        // It did not turn into a cluster of its own: no raft state was bootstrapped.
        assert!(
            !log.contains("bootstrapping a new raft cluster"),
            "the joiner bootstrapped a cluster of its own"
        );
    });
}
