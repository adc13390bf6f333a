//! Membership behaviours 29, 31 and 36 of docs/behaviours.md,
//! through REST on peers started by the real launcher on loopback:
//!
//! - 29: five independent single-peer clusters; peer 0 adds the others one by one with
//!   `POST /peers` (upstream PeerAdd); a pin made on peer 1 reaches every peer's state,
//!   every peer sees 5 peers, and every peer's peerstore file lists another peer at the end.
//! - 31: PeerAdd while the only other member is down fails and the peerset stays at 2.
//! - 36: a peer with `leave_on_shutdown` leaves and is forgotten; a fresh peer with its
//!   identity (new state folder, own IPFS node) joins again and pins what it missed.
//!
//! The cluster harness is the test kit's (`crates/testkit`, `Cluster`).

use std::{collections::HashSet, time::Duration};

use anyhow::{bail, Context, Result};
use ipfs_cluster_tests::*;
use serde_json::Value;

/// The probes only these tests need, on the test kit's `Cluster`.
trait JoinProbes {
    async fn peer_add(&self, on: usize, id: &str) -> (u16, String);
    async fn cids(&self, i: usize) -> Result<HashSet<String>>;
    async fn wait_pinset_has(&self, on: &[usize], want: &[&str]);
    async fn wait_peerset(&self, on: &[usize], n: usize);
    async fn wait_pinned_on(&self, i: usize, cid: &str);
}

impl JoinProbes for Cluster {
    /// `POST /peers {"peer_id": …}` on peer `on` (upstream's PeerAdd): status and body.
    /// A plain HTTP/1.1 exchange with a long bound of its own (`http` gives up after 30 s
    /// and a refused add may take the consensus commit timeout to answer); status 0 and the
    /// reason when there is no answer.
    async fn peer_add(&self, on: usize, id: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let body = serde_json::json!({ "peer_id": id }).to_string();
        let port = self.peers[on].ports.rest;
        let exchange = async {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
            let req = format!(
                "POST /peers HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            s.write_all(req.as_bytes()).await?;
            let mut out = Vec::new();
            s.read_to_end(&mut out).await?;
            anyhow::Ok(String::from_utf8_lossy(&out).to_string())
        };
        let raw = match tokio::time::timeout(Duration::from_secs(150), exchange).await {
            Ok(Ok(raw)) => raw,
            Ok(Err(e)) => return (0, format!("POST /peers on peer {on}: {e:#}")),
            Err(_) => {
                return (
                    0,
                    format!("POST /peers on peer {on}: no answer within 150 s"),
                )
            }
        };
        let status = raw
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = raw
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    /// Peer `i`'s pinset (`GET /allocations?filter=all`): the CIDs.
    async fn cids(&self, i: usize) -> Result<HashSet<String>> {
        let url = format!("{}/allocations?filter=all", self.rest(i));
        let (st, body) = http("GET", &url, None).await?;
        if st == 204 {
            return Ok(HashSet::new());
        }
        if st != 200 {
            bail!("GET /allocations on peer {i}: {st} {body}");
        }
        let mut out = HashSet::new();
        for v in serde_json::Deserializer::from_str(&body).into_iter::<Value>() {
            let items = match v? {
                Value::Array(a) => a,
                v => vec![v],
            };
            for p in items {
                out.insert(p["cid"].as_str().context("pin without cid")?.to_string());
            }
        }
        Ok(out)
    }

    /// Waits until each listed peer's pinset holds every CID of `want`.
    async fn wait_pinset_has(&self, on: &[usize], want: &[&str]) {
        for &i in on {
            let ok = wait_for(Duration::from_secs(60), || async {
                self.cids(i)
                    .await
                    .is_ok_and(|got| want.iter().all(|c| got.contains(*c)))
            })
            .await;
            if ok.is_err() {
                panic!(
                    "peer {i}'s pinset lacks some of {want:?}: has {:?}\nlogs:\n{}",
                    self.cids(i).await,
                    self.logs()
                );
            }
        }
    }

    /// Waits until every listed peer's `GET /peers` lists exactly `n` peers (members that
    /// are down count: they are still in the peerset).
    async fn wait_peerset(&self, on: &[usize], n: usize) {
        for &i in on {
            let url = format!("{}/peers", self.rest(i));
            let ok = wait_for(Duration::from_secs(60), || async {
                peerset(&url).await.len() == n
            })
            .await;
            if ok.is_err() {
                panic!(
                    "peer {i} does not see {n} peers: {:?}\nlogs:\n{}",
                    peerset(&url).await,
                    self.logs()
                );
            }
        }
    }

    /// Waits until peer `i`'s own entry in `GET /pins/{cid}` says `pinned`.
    async fn wait_pinned_on(&self, i: usize, cid: &str) {
        let url = format!("{}/pins/{cid}", self.rest(i));
        let me = self.ids[i].clone();
        let status = || async {
            match get_json(&url).await {
                Ok(v) => v["peer_map"][&me]["status"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                Err(e) => format!("{e:#}"),
            }
        };
        if wait_for(Duration::from_secs(60), || async {
            status().await == "pinned"
        })
        .await
        .is_err()
        {
            panic!(
                "{cid} is not pinned on peer {i}: {}\nlog:\n{}",
                status().await,
                problems(&self.peers[i])
            );
        }
    }
}

/// 29: PeerAdd of four independent single-peer clusters into peer 0's, one by one.
#[test]
fn b29_peer_add_independent_clusters() {
    one_at_a_time(async {
        let mut c = Cluster::independent(5).await.unwrap();
        let id0 = c.ids[0].clone();
        for i in 0..5 {
            c.wait_peerset(&[i], 1).await;
        }
        for i in 1..5 {
            let id = c.ids[i].clone();
            let (st, body) = c.peer_add(0, &id).await;
            assert_eq!(st, 200, "peer 0 adding peer {i}: {body}\n{}", c.logs());
            let v: Value = serde_json::from_str(&body).expect("POST /peers answers an ID");
            assert_eq!(v["id"].as_str(), Some(id.as_str()), "{body}");
            assert!(
                v["error"].as_str().unwrap_or("").is_empty(),
                "peer {i}'s ID carries an error: {body}"
            );
            assert!(
                strings(&v["cluster_peers"]).contains(&id0),
                "peer {i}'s ID does not list peer 0 in cluster_peers: {body}"
            );
            c.wait_peerset(&[0], i + 1).await;
        }
        let cid = random_cid();
        let (st, body) = http("POST", &format!("{}/pins/{cid}", c.rest(1)), None)
            .await
            .unwrap();
        assert_eq!(st, 200, "pin on peer 1: {body}");
        let all: Vec<usize> = (0..5).collect();
        c.wait_pinset_has(&all, &[cid.as_str()]).await;
        c.wait_peerset(&all, 5).await;
        for i in 0..5 {
            let n = members(&format!("{}/peers", c.rest(i))).await.len();
            assert_eq!(n, 5, "peer {i}: not every member answers\n{}", c.logs());
        }
        for i in 0..5 {
            c.stop(i);
        }
        for i in 0..5 {
            let text = std::fs::read_to_string(c.peers[i].dir.join("peerstore"))
                .unwrap_or_else(|e| panic!("peer {i}'s peerstore file: {e}"));
            assert!(
                c.ids
                    .iter()
                    .enumerate()
                    .any(|(k, id)| k != i && text.contains(id.as_str())),
                "peer {i}'s peerstore lists no other peer:\n{text}"
            );
        }
    });
}

/// 31: with peer 1 (the only other member) down, peer 0 cannot add peer 2: an error
/// status, and the peerset stays at 2. Peer 1 is added by `--bootstrap` here so that this
/// behaviour is tested on its own (adding an independent cluster is 29's business).
#[test]
fn b31_peer_add_with_the_other_member_down_fails() {
    one_at_a_time(async {
        let mut c = Cluster::independent(3).await.unwrap();
        // Peer 1 becomes a member by joining peer 0 (a restart through --bootstrap).
        c.stop(1);
        let boot = format!(
            "/ip4/127.0.0.1/tcp/{}/p2p/{}",
            c.peers[0].ports.swarm, c.ids[0]
        );
        c.procs[1] = Some(c.peers[1].start(&["--bootstrap", &boot]).await.unwrap());
        c.wait_peerset(&[0, 1], 2).await;
        c.wait_peerset(&[2], 1).await;

        c.stop(1);
        // As upstream's delay() after the shutdown: peer 0 sees peer 1 down (its ID entry
        // carries an error) before the add.
        let url = format!("{}/peers", c.rest(0));
        wait_for(Duration::from_secs(60), || async {
            peerset(&url).await.len() == 2 && members(&url).await.len() == 1
        })
        .await
        .unwrap_or_else(|_| panic!("peer 0 does not see peer 1 down\n{}", c.logs()));
        let id2 = c.ids[2].clone();
        let t0 = std::time::Instant::now();
        let (st, body) = c.peer_add(0, &id2).await;
        eprintln!(
            "b31: POST /peers answered {st} after {:?}: {body}",
            t0.elapsed()
        );
        assert!(
            st >= 400,
            "adding peer 2 with the only other member down succeeded: {st} {body}"
        );
        assert!(st != 0, "{body}\npeer 0:\n{}", c.peers[0].log_tail());
        let set = peerset(&url).await;
        assert_eq!(
            set.len(),
            2,
            "peer 0's peerset changed: {set:?}\n{}",
            c.logs()
        );
        assert!(!set.contains(&id2), "peer 2 is listed: {set:?}");
        // And it stays so (a change left pending must not show up later).
        tokio::time::sleep(Duration::from_secs(3)).await;
        let set = peerset(&url).await;
        assert_eq!(set.len(), 2, "peer 0's peerset changed later: {set:?}");
        c.wait_peerset(&[2], 1).await;
    });
}

/// 36: peer 0 pins A, the others join, all pin A; peer 0 leaves (leave_on_shutdown,
/// SIGTERM) and the others forget it; B is pinned on the rest; a fresh peer 0 (same
/// identity, as upstream, new state folder and its own IPFS node) joins peer 1 and ends
/// with A and B pinned.
#[test]
fn b36_rejoin_after_leaving() {
    one_at_a_time(async {
        let a = random_cid();
        let mut c = Cluster::start_with(5, Join::AllAtOnce, Some(&a), |i| {
            if i == 0 {
                vec![("CLUSTER_LEAVEONSHUTDOWN", "true".to_string())]
            } else {
                vec![]
            }
        })
        .await
        .unwrap();
        let id0 = c.ids[0].clone();
        let all: Vec<usize> = (0..5).collect();
        c.wait_peerset(&all, 5).await;
        c.wait_pinset_has(&all, &[a.as_str()]).await;
        for i in 0..5 {
            c.wait_pinned_on(i, &a).await;
        }

        // Peer 0 leaves on SIGTERM; the others forget it.
        c.stop(0);
        let rest: Vec<usize> = (1..5).collect();
        c.wait_peerset(&rest, 4).await;
        for &i in &rest {
            let set = peerset(&format!("{}/peers", c.rest(i))).await;
            assert!(!set.contains(&id0), "peer {i} still lists peer 0: {set:?}");
        }
        let b = random_cid();
        let (st, body) = http("POST", &format!("{}/pins/{b}", c.rest(1)), None)
            .await
            .unwrap();
        assert_eq!(st, 200, "pin B on peer 1: {body}");
        c.wait_pinset_has(&rest, &[a.as_str(), b.as_str()]).await;

        // A fresh peer 0: new folder and ports, the same identity, its own IPFS node.
        let dir = c.dir().join("peer_0_fresh");
        let ipfs0_dir = c.dir().join("ipfs_0_fresh");
        std::fs::create_dir_all(&ipfs0_dir).unwrap();
        let ipfs0 = IpfsNode::start(&ipfs0_dir).await.unwrap();
        let fresh = init_test_peer(&dir, &ipfs0.multiaddr(), &short_timings()).unwrap();
        std::fs::copy(
            c.peers[0].dir.join("identity.json"),
            fresh.dir.join("identity.json"),
        )
        .unwrap();
        let boot1 = format!(
            "/ip4/127.0.0.1/tcp/{}/p2p/{}",
            c.peers[1].ports.swarm, c.ids[1]
        );
        let proc0 = fresh.start(&["--bootstrap", &boot1]).await.unwrap();
        assert_eq!(
            peer_id(&fresh).await.unwrap(),
            id0,
            "the fresh peer 0's identity"
        );
        c.peers[0] = fresh;
        c.procs[0] = Some(proc0);
        c.wait_peerset(&all, 5).await;
        c.wait_pinset_has(&[0], &[a.as_str(), b.as_str()]).await;
        c.wait_pinned_on(0, &a).await;
        c.wait_pinned_on(0, &b).await;
        // The new IPFS node really holds them.
        for cid in [&a, &b] {
            let (st, body) = http(
                "POST",
                &format!("{}/api/v0/pin/ls?arg={cid}", ipfs0.api_url()),
                None,
            )
            .await
            .unwrap();
            assert_eq!(
                st, 200,
                "{cid} not pinned on the fresh peer's IPFS node: {body}"
            );
        }
        drop(c);
        drop(ipfs0);
    });
}
