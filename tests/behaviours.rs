//! Upstream's multi-peer behaviours (docs/behaviours.md: 1, 2, 3, 7, 8, 9,
//! 10, 11, 27, 28, 38) and a stop/kill scenario, through REST and the ctl only,
//! on ONE shared 5-peer cluster started by the real launcher (peers 1..4 join peer 0 with
//! `--bootstrap`, shared secret, one Kubo node each, upstream's short test timings via env at init).
//!
//! Starting the cluster costs 20–40 s, so it is started once (on its own thread and runtime)
//! and the tests take turns through a mutex. A test that stops peers restarts them before it
//! returns, and every test first makes sure all five peers run. The cluster is never
//! dropped (it is a static), so the test kit's `Reaper` (a watchdog shell) ends our process groups and removes the
//! temp dir once the test binary exits.

use std::{path::Path, process::Command, sync::OnceLock, time::Duration};

use anyhow::Result;
use bytes::Bytes;
use http_body_util::Full;
use ipfs_cluster_tests::*;
use serde_json::Value;

const N: usize = 5;
const SECRET: &str = "b3a1c0ffee5eed0ddba11cafe0b0e5d1b3a1c0ffee5eed0ddba11cafe0b0e5d1";

/// Upstream's test timings, a little slower for a loaded 2-core machine (env overrides at init).
const TIMINGS: &[(&str, &str)] = &[
    ("CLUSTER_MONITORPINGINTERVAL", "1s"),
    ("CLUSTER_PEERWATCHINTERVAL", "1s"),
    ("CLUSTER_PUBSUBMON_CHECKINTERVAL", "1s"),
    ("CLUSTER_DISK_METRICTTL", "2s"),
    ("CLUSTER_PINQUEUE_METRICTTL", "2s"),
    ("CLUSTER_TAGS_METRICTTL", "2s"),
    ("CLUSTER_IPFSHTTP_PINTIMEOUT", "5s"),
    // The Kubo nodes have no bootstrap peers and no DHT: the cluster connects them.
    ("CLUSTER_IPFSHTTP_CONNECTSWARMSDELAY", "1s"),
    ("CLUSTER_IPFSHTTP_UNPINTIMEOUT", "15s"),
];

type Ipfs = KuboNode;

// ---------------------------------------------------------------------------------------
// The shared cluster (the test kit's `SharedCluster`: started once, taken in turns).

/// The test kit's cluster (one Kubo node per peer, peers joined one by one), shared by
/// the tests of this binary.
struct Cluster(SharedCluster);

impl std::ops::Deref for Cluster {
    type Target = SharedCluster;
    fn deref(&self) -> &SharedCluster {
        &self.0
    }
}

impl std::ops::DerefMut for Cluster {
    fn deref_mut(&mut self) -> &mut SharedCluster {
        &mut self.0
    }
}

static CLUSTER: SharedCell<Cluster> = OnceLock::new();

fn rt() -> tokio::runtime::Runtime {
    shared_rt()
}

/// Runs one test body on a fresh runtime with the cluster locked and all peers up.
fn with_cluster<F>(f: F)
where
    F: for<'a> FnOnce(&'a mut Cluster) -> Body<'a>,
{
    with_shared(&CLUSTER, || Box::pin(Cluster::start()), f)
}

/// Initialises a peer like `PeerDir::init`, with extra env (timings, peername) baked in.
fn init_peer(dir: &Path, ipfs_api: &str, extra: &[(&str, String)]) -> Result<PeerDir> {
    let mut env: Vec<(&str, String)> = TIMINGS.iter().map(|(k, v)| (*k, v.to_string())).collect();
    env.extend(extra.iter().cloned());
    init_peer_with(dir, ipfs_api, SECRET, &env)
}

impl Cluster {
    async fn start() -> Result<Self> {
        let timings = |_| TIMINGS.iter().map(|(k, v)| (*k, v.to_string())).collect();
        let kit = ipfs_cluster_tests::Cluster::start_laid_out(
            Layout::OwnIpfs,
            N,
            Join::OneByOne,
            None,
            timings,
        )
        .await?;
        Ok(Cluster(
            SharedCluster::start(kit, Duration::from_secs(60), None).await?,
        ))
    }

    /// Unpins everything in the state and waits until no peer tracks anything.
    async fn clean_state(&self) {
        self.unpin_all().await;
        self.wait_nothing_tracked().await;
    }
}

/// A deterministic "random" peer index for the i-th operation.
fn pick(i: usize) -> usize {
    (i * 7 + 3) % N
}

fn hundred() -> Vec<Vec<u8>> {
    (0..100)
        .map(|i| format!("behaviour 2/3 content #{i}\n").into_bytes())
        .collect()
}

// ---------------------------------------------------------------------------------------
// The behaviours.

/// 1. Every peer's Peers() returns exactly the 5 members, each with the IPFS daemon ID
///    that member reports in its own ID().
#[test]
fn b01_peers_lists_five_members_with_their_ipfs_ids() {
    with_cluster(|c| {
        Box::pin(async move {
            let mut own_ipfs = std::collections::BTreeMap::new();
            for i in 0..N {
                let id = get_json(&format!("{}/id", c.rest(i))).await.unwrap();
                assert_eq!(id["id"], c.ids[i].as_str());
                assert_eq!(
                    id["ipfs"]["id"],
                    c.node(i).id.as_str(),
                    "peer {i}'s /id: {id:#}"
                );
                own_ipfs.insert(c.ids[i].clone(), c.node(i).id.clone());
            }
            for i in 0..N {
                let peers = ndjson("GET", &format!("{}/peers", c.rest(i)))
                    .await
                    .unwrap();
                let mut got: Vec<String> = peers
                    .iter()
                    .map(|p| p["id"].as_str().unwrap().to_string())
                    .collect();
                got.sort();
                let mut want = c.ids.clone();
                want.sort();
                assert_eq!(got, want, "peer {i}'s /peers");
                for p in &peers {
                    let pid = p["id"].as_str().unwrap();
                    assert_eq!(
                        p["ipfs"]["id"].as_str(),
                        Some(own_ipfs[pid].as_str()),
                        "peer {i} lists {pid}: {p:#}"
                    );
                }
            }
            // The ctl agrees (one line per member).
            let host = format!("/ip4/127.0.0.1/tcp/{}", c.peers[2].ports.rest);
            let (rc, out, err) =
                run_bin("ipfs-cluster-ctl", &["--host", &host, "peers", "ls"], &[]).unwrap();
            assert_eq!(rc, 0, "{err}");
            for id in &c.ids {
                assert!(out.contains(id.as_str()), "ctl peers ls lacks {id}:\n{out}");
            }
        })
    });
}

/// 2. 100 CIDs pinned through random peers (replication -1) end up `pinned` in every peer's
///    local StatusAll; the state lists exactly 100 pins.
#[test]
fn b02_hundred_pins_pinned_everywhere() {
    with_cluster(|c| {
        Box::pin(async move {
            c.clean_state().await;
            let cids = c.good_cids(&hundred()).await;
            for (i, cid) in cids.iter().enumerate() {
                c.pin(pick(i), cid, "").await;
            }
            for i in 0..N {
                let url = format!("{}/pins?local=true", c.rest(i));
                let ok = wait_for(Duration::from_secs(120), || async {
                    match ndjson("GET", &url).await {
                        Ok(v) => v.len() == 100 && v.iter().all(|g| statuses(g) == ["pinned"]),
                        Err(_) => false,
                    }
                })
                .await;
                let v = ndjson("GET", &url).await.unwrap();
                assert!(
                    ok.is_ok(),
                    "peer {i}: local StatusAll has {} items, not all pinned: {:?}",
                    v.len(),
                    v.iter().map(statuses).collect::<Vec<_>>()
                );
                let mut got: Vec<&str> = v.iter().map(|g| g["cid"].as_str().unwrap()).collect();
                got.sort();
                let mut want: Vec<&str> = cids.iter().map(String::as_str).collect();
                want.sort();
                assert_eq!(got, want);
            }
            let state = ndjson("GET", &format!("{}/allocations", c.rest(3)))
                .await
                .unwrap();
            assert_eq!(state.len(), 100, "the state lists {} pins", state.len());
            for p in &state {
                assert_eq!(p["replication_factor_min"], -1);
                assert_eq!(p["allocations"], serde_json::json!([]));
            }
            for n in c.nodes() {
                let pins = n.pins().await.unwrap();
                assert!(
                    cids.iter().all(|x| pins.contains(x)),
                    "an IPFS node lacks some of the 100 pins"
                );
            }
        })
    });
}

/// 3. Unpinning the 100 through random peers succeeds; unpinning them again fails (not in
///    the pinset); afterwards every peer's local StatusAll is empty.
#[test]
fn b03_unpin_hundred_then_again_fails() {
    with_cluster(|c| {
        Box::pin(async move {
            let cids = c.good_cids(&hundred()).await;
            // (Re-)pin them: a no-op when b02 left them pinned.
            for (i, cid) in cids.iter().enumerate() {
                c.pin(pick(i), cid, "").await;
            }
            for (i, cid) in cids.iter().enumerate() {
                let (st, body) = http(
                    "DELETE",
                    &format!("{}/pins/{cid}", c.rest(pick(i + 1))),
                    None,
                )
                .await
                .unwrap();
                assert_eq!(st, 200, "unpin {cid}: {body}");
            }
            for (i, cid) in cids.iter().enumerate() {
                let (st, body) = http(
                    "DELETE",
                    &format!("{}/pins/{cid}", c.rest(pick(i + 2))),
                    None,
                )
                .await
                .unwrap();
                assert_eq!(st, 404, "second unpin of {cid} must fail: {body}");
                assert!(body.contains("pin is not part of the pinset"), "{body}");
            }
            // No peer tracks any of the hundred any more (a test that ran before this one
            // may have left its own pin, e.g. b07's: only the hundred are checked).
            let ours = |v: &Vec<Value>| {
                v.iter()
                    .filter(|g| cids.iter().any(|x| g["cid"] == x.as_str()))
                    .count()
            };
            for i in 0..N {
                let url = format!("{}/pins?local=true", c.rest(i));
                if wait_for(Duration::from_secs(90), || async {
                    matches!(ndjson("GET", &url).await, Ok(v) if ours(&v) == 0)
                })
                .await
                .is_err()
                {
                    let left = ndjson("GET", &url).await;
                    panic!("peer {i}'s local StatusAll still lists some of the 100: {left:?}");
                }
            }
            for n in c.nodes() {
                let pins = n.pins().await.unwrap();
                assert!(
                    cids.iter().all(|x| !pins.contains(x)),
                    "an IPFS node still pins some of the 100"
                );
            }
        })
    });
}

/// 7. Global StatusAll on any peer: 1 item with the pin name, peer_map of 5, all `pinned`,
///    each with that peer's IPFS ID; Status(cid) agrees (also through the ctl).
#[test]
fn b07_status_all_one_item_five_pinned() {
    with_cluster(|c| {
        Box::pin(async move {
            c.clean_state().await;
            let cid = c.good_cids(&[unique("b07")]).await.remove(0);
            c.pin(1, &cid, "name=b07pin").await;
            c.wait_status(0, &cid, "pinned", Duration::from_secs(60))
                .await;
            for i in 0..N {
                let all = ndjson("GET", &format!("{}/pins", c.rest(i))).await.unwrap();
                assert_eq!(all.len(), 1, "peer {i}: StatusAll {all:#?}");
                let g = &all[0];
                assert_eq!(g["cid"], cid.as_str());
                assert_eq!(g["name"], "b07pin");
                let pm = g["peer_map"].as_object().unwrap();
                assert_eq!(pm.len(), N);
                for (j, id) in c.ids.iter().enumerate() {
                    let e = &pm[id];
                    assert_eq!(e["status"], "pinned", "{g:#}");
                    assert_eq!(e["ipfs_peer_id"], c.node(j).id.as_str(), "{g:#}");
                    assert_eq!(e["peername"], format!("peer_{j}"));
                }
                let one = c.status(i, &cid).await;
                assert_eq!(one["name"], "b07pin");
                assert_eq!(shape(&one), shape(g), "Status vs StatusAll on peer {i}");
                assert_eq!(statuses(&one), vec!["pinned"; N]);
            }
            let host = format!("/ip4/127.0.0.1/tcp/{}", c.peers[4].ports.rest);
            let (rc, out, err) =
                run_bin("ipfs-cluster-ctl", &["--host", &host, "status", &cid], &[]).unwrap();
            assert_eq!(rc, 0, "{err}");
            assert_eq!(out.matches("PINNED").count(), N, "ctl status:\n{out}");
        })
    });
}

/// 8. With one peer shut down (raft): StatusAll still has 5 entries, the dead one
///    `cluster_error` with its peername and IPFS ID from the metric cache; Status(cid) too.
#[test]
fn b08_one_peer_down_reported_as_cluster_error() {
    with_cluster(|c| {
        Box::pin(async move {
            c.clean_state().await;
            let cid = c.good_cids(&[unique("b08")]).await.remove(0);
            c.pin(0, &cid, "name=b08").await;
            c.wait_status(0, &cid, "pinned", Duration::from_secs(60))
                .await;
            c.down(1, "TERM").await;
            let dead = c.ids[1].clone();
            let url = format!("{}/pins", c.rest(0));
            let ok = wait_for(Duration::from_secs(30), || async {
                matches!(ndjson("GET", &url).await, Ok(v) if v.len() == 1
                    && v[0]["peer_map"][&dead]["status"] == "cluster_error")
            })
            .await;
            let all = ndjson("GET", &url).await.unwrap();
            assert!(
                ok.is_ok(),
                "the stopped peer is not cluster_error: {all:#?}"
            );
            for g in [&all[0], &c.status(0, &cid).await] {
                let pm = g["peer_map"].as_object().unwrap();
                assert_eq!(pm.len(), N, "{g:#}");
                let e = &pm[&dead];
                assert_eq!(e["status"], "cluster_error");
                assert_eq!(e["peername"], "peer_1", "{g:#}");
                assert_eq!(e["ipfs_peer_id"], c.node(1).id.as_str(), "{g:#}");
                assert_ne!(e["error"].as_str().unwrap_or(""), "", "{g:#}");
                for (j, id) in c.ids.iter().enumerate().filter(|(j, _)| *j != 1) {
                    assert_eq!(pm[id]["status"], "pinned", "peer {j}: {g:#}");
                }
            }
            c.ensure_all_up().await.expect("restarting peer 1");
        })
    });
}

/// 9. RecoverLocal on the always-failing CID leaves it `pin_error` after the queue runs;
///    RecoverLocal on a good CID returns `pinned`.
#[test]
fn b09_recover_local() {
    with_cluster(|c| {
        Box::pin(async move {
            let bad = c.error_cid().await;
            let good = c.good_cids(&[unique("b09")]).await.remove(0);
            c.pin(0, &good, "").await;
            c.pin(0, &bad, "").await;
            c.wait_status(2, &bad, "pin_error", Duration::from_secs(60))
                .await;
            c.wait_status(2, &good, "pinned", Duration::from_secs(60))
                .await;
            let (st, body) = http(
                "POST",
                &format!("{}/pins/{bad}/recover?local=true", c.rest(2)),
                None,
            )
            .await
            .unwrap();
            assert_eq!(st, 200, "{body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            let pm = v["peer_map"].as_object().unwrap();
            assert_eq!(
                pm.len(),
                1,
                "local recover answers for this peer only: {v:#}"
            );
            let me = &pm[&c.ids[2]];
            assert!(
                ["pin_queued", "pinning", "pin_error"]
                    .contains(&me["status"].as_str().unwrap_or("")),
                "{v:#}"
            );
            let url = format!("{}/pins/{bad}?local=true", c.rest(2));
            wait_for(Duration::from_secs(30), || async {
                matches!(get_json(&url).await, Ok(v) if v["peer_map"][&c.ids[2]]["status"] == "pin_error"
                    && v["peer_map"][&c.ids[2]]["error"].as_str().is_some_and(|e| !e.is_empty()))
            })
            .await
            .expect("the failing CID is pin_error again after the queue ran");
            let (st, body) = http(
                "POST",
                &format!("{}/pins/{good}/recover?local=true", c.rest(2)),
                None,
            )
            .await
            .unwrap();
            assert_eq!(st, 200, "{body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(statuses(&v), ["pinned"], "{v:#}");
            for cid in [&bad, &good] {
                let _ = http("DELETE", &format!("{}/pins/{cid}", c.rest(0)), None).await;
            }
        })
    });
}

/// 10. Global Recover returns a peer_map with all 5 peers even on failure; afterwards
///     Status shows `pin_error` with an error on all 5; Recover of a good CID: `pinned` ×5.
#[test]
fn b10_recover_global() {
    with_cluster(|c| {
        Box::pin(async move {
            let bad = c.error_cid().await;
            let good = c.good_cids(&[unique("b10")]).await.remove(0);
            c.pin(3, &good, "").await;
            c.pin(3, &bad, "").await;
            c.wait_status(1, &bad, "pin_error", Duration::from_secs(60))
                .await;
            c.wait_status(1, &good, "pinned", Duration::from_secs(60))
                .await;
            let (st, body) = http("POST", &format!("{}/pins/{bad}/recover", c.rest(1)), None)
                .await
                .unwrap();
            assert_eq!(st, 200, "recover of a failing CID is no error: {body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["peer_map"].as_object().map(|m| m.len()), Some(N), "{v:#}");
            let after = c
                .wait_status(1, &bad, "pin_error", Duration::from_secs(60))
                .await;
            for (id, e) in after["peer_map"].as_object().unwrap() {
                assert_ne!(e["error"].as_str().unwrap_or(""), "", "{id}: {after:#}");
            }
            let (st, body) = http("POST", &format!("{}/pins/{good}/recover", c.rest(4)), None)
                .await
                .unwrap();
            assert_eq!(st, 200, "{body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(statuses(&v), vec!["pinned"; N], "{v:#}");
            for cid in [&bad, &good] {
                let _ = http("DELETE", &format!("{}/pins/{cid}", c.rest(0)), None).await;
            }
        })
    });
}

/// 11. RecoverAll with one good and one failing pin returns exactly 1 GlobalPinInfo (the
///     re-queued failing CID) with 5 peer entries.
#[test]
fn b11_recover_all_requeues_only_the_failing_pin() {
    with_cluster(|c| {
        Box::pin(async move {
            c.clean_state().await;
            let bad = c.error_cid().await;
            let good = c.good_cids(&[unique("b11")]).await.remove(0);
            c.pin(2, &good, "").await;
            c.pin(2, &bad, "").await;
            c.wait_status(0, &bad, "pin_error", Duration::from_secs(60))
                .await;
            c.wait_status(0, &good, "pinned", Duration::from_secs(60))
                .await;
            let got = ndjson("POST", &format!("{}/pins/recover", c.rest(3)))
                .await
                .unwrap();
            assert_eq!(got.len(), 1, "RecoverAll: {got:#?}");
            assert_eq!(got[0]["cid"], bad.as_str());
            assert_eq!(
                got[0]["peer_map"].as_object().map(|m| m.len()),
                Some(N),
                "{:#}",
                got[0]
            );
            c.clean_state().await;
        })
    });
}

/// 27. RepoGC from any peer returns a peer_map of 5 entries, each with its peer ID and no
///     error (the keys are what each Kubo node collected, possibly none).
#[test]
fn b27_repo_gc_answers_for_every_peer() {
    with_cluster(|c| {
        Box::pin(async move {
            // Something unpinned to collect.
            c.node(3)
                .add_many(&[unique("garbage")], false)
                .await
                .unwrap();
            let (st, body) = http("POST", &format!("{}/ipfs/gc", c.rest(3)), None)
                .await
                .unwrap();
            assert_eq!(st, 200, "{body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            let pm = v["peer_map"]
                .as_object()
                .unwrap_or_else(|| panic!("no peer_map: {v:#}"));
            assert_eq!(pm.len(), N, "{v:#}");
            for (j, id) in c.ids.iter().enumerate() {
                let e = &pm[id];
                assert_eq!(e["peer"], id.as_str(), "{v:#}");
                assert_eq!(e["peername"], format!("peer_{j}"));
                assert_eq!(e["error"].as_str().unwrap_or(""), "", "{v:#}");
                assert!(e["keys"].is_array() || e["keys"].is_null(), "{v:#}");
                for k in e["keys"].as_array().into_iter().flatten() {
                    assert!(k["key"].is_object() || k["key"].is_string(), "{v:#}");
                }
            }
        })
    });
}

/// 28. ConnectGraph: each member links to the 4 others, trust links for all 5, each member
///     mapped to its IPFS ID whose swarm peers are listed; with 2 peers shut down (raft)
///     the graph keeps 5 nodes and the dead ones have no links.
#[test]
fn b28_connect_graph() {
    with_cluster(|c| {
        Box::pin(async move {
            let g = get_json(&format!("{}/health/graph", c.rest(3)))
                .await
                .unwrap();
            assert_eq!(g["cluster_id"], c.ids[3].as_str());
            let set = |v: &Value| -> Vec<String> {
                let mut s: Vec<String> = v
                    .as_array()
                    .unwrap_or(&vec![])
                    .iter()
                    .map(|x| x.as_str().unwrap().to_string())
                    .collect();
                s.sort();
                s
            };
            for (j, id) in c.ids.iter().enumerate() {
                let mut others: Vec<String> = c.ids.iter().filter(|x| *x != id).cloned().collect();
                others.sort();
                assert_eq!(set(&g["cluster_links"][id]), others, "links of {id}: {g:#}");
                assert_eq!(g["cluster_trust_links"][id], true, "{g:#}");
                assert_eq!(g["cluster_to_ipfs"][id], c.node(j).id.as_str(), "{g:#}");
                assert_eq!(g["id_to_peername"][id], format!("peer_{j}"), "{g:#}");
            }
            assert_eq!(g["cluster_links"].as_object().unwrap().len(), N);
            let ipfs0 = &c.node(0).id;
            let l0 = set(&g["ipfs_links"][ipfs0]);
            for n in &c.nodes()[1..] {
                assert!(
                    l0.contains(&n.id),
                    "IPFS node 0's swarm peers lack {}: {g:#}",
                    n.id
                );
                assert!(set(&g["ipfs_links"][&n.id]).contains(ipfs0), "{g:#}");
            }

            c.down(3, "TERM").await;
            c.down(4, "TERM").await;
            let url = format!("{}/health/graph", c.rest(0));
            let (d3, d4) = (c.ids[3].clone(), c.ids[4].clone());
            let ok = wait_for(Duration::from_secs(30), || async {
                matches!(get_json(&url).await, Ok(g) if set(&g["cluster_links"][&d3]).is_empty()
                    && set(&g["cluster_links"][&d4]).is_empty()
                    && set(&g["cluster_links"][&c.ids[0]]).len() == 2)
            })
            .await;
            let g = get_json(&url).await.unwrap();
            assert!(ok.is_ok(), "dead peers still have links: {g:#}");
            assert_eq!(
                g["cluster_links"].as_object().unwrap().len(),
                N,
                "raft keeps 5 nodes: {g:#}"
            );
            for id in &c.ids[..3] {
                let l = set(&g["cluster_links"][id]);
                assert_eq!(l.len(), 2, "{id} links to the 2 other live peers: {g:#}");
                assert!(!l.contains(&d3) && !l.contains(&d4), "{g:#}");
            }
            c.ensure_all_up().await.expect("restarting peers 3 and 4");
        })
    });
}

/// Stop one peer (SIGTERM) and kill another (SIGKILL, launcher and services):
/// status shows both as `cluster_error` with peername and IPFS ID, pins stay available on
/// the others, nothing is re-allocated (disable_repinning defaults to true), and both
/// rejoin on a plain restart and catch up with a pin made while they were down.
#[test]
fn z_stop_and_kill_then_rejoin_and_catch_up() {
    with_cluster(|c| {
        Box::pin(async move {
            c.clean_state().await;
            let cids = c
                .good_cids(&[
                    unique("everywhere"),
                    unique("on 3 and 4"),
                    unique("while down"),
                ])
                .await;
            let (a, b, late) = (&cids[0], &cids[1], &cids[2]);
            c.pin(0, a, "name=a").await;
            let ua = format!("{},{}", c.ids[3], c.ids[4]);
            let pb = c
                .pin(
                    0,
                    b,
                    &format!("name=b&replication-min=2&replication-max=2&user-allocations={ua}"),
                )
                .await;
            let mut alloc_b = strings(&pb["allocations"]);
            alloc_b.sort();
            let mut want = vec![c.ids[3].clone(), c.ids[4].clone()];
            want.sort();
            assert_eq!(alloc_b, want);
            c.wait_status(0, a, "pinned", Duration::from_secs(60)).await;

            c.down(3, "TERM").await;
            c.down(4, "KILL").await;

            let url = format!("{}/pins/{a}", c.rest(1));
            let ok = wait_for(Duration::from_secs(30), || async {
                matches!(get_json(&url).await, Ok(g) if statuses(&g).iter().filter(|s| *s == "cluster_error").count() == 2)
            })
            .await;
            let g = get_json(&url).await.unwrap();
            assert!(ok.is_ok(), "{g:#}");
            for j in [3, 4] {
                let e = &g["peer_map"][&c.ids[j]];
                assert_eq!(e["status"], "cluster_error", "{g:#}");
                assert_eq!(e["peername"], format!("peer_{j}"), "{g:#}");
                assert_eq!(e["ipfs_peer_id"], c.node(j).id.as_str(), "{g:#}");
            }
            for j in 0..3 {
                assert_eq!(g["peer_map"][&c.ids[j]]["status"], "pinned", "{g:#}");
                assert!(c.node(j).pins().await.unwrap().contains(a));
            }
            // The ctl shows the same.
            let host = format!("/ip4/127.0.0.1/tcp/{}", c.peers[0].ports.rest);
            let (rc, out, err) =
                run_bin("ipfs-cluster-ctl", &["--host", &host, "status", a], &[]).unwrap();
            assert_eq!(rc, 0, "{err}");
            assert_eq!(out.matches("CLUSTER_ERROR").count(), 2, "{out}");
            assert_eq!(out.matches("PINNED").count(), 3, "{out}");

            // The monitor has noticed both (their ping metrics expired) ...
            let alerts = format!("{}/health/alerts", c.rest(0));
            let (d3, d4) = (c.ids[3].clone(), c.ids[4].clone());
            wait_for(Duration::from_secs(30), || async {
                match get_json(&alerts).await {
                    Ok(Value::Array(v)) => [&d3, &d4]
                        .iter()
                        .all(|d| v.iter().any(|x| x["peer"] == d.as_str())),
                    _ => false,
                }
            })
            .await
            .expect("no alerts for the dead peers");
            // ... and re-allocated nothing: b stays on the two dead peers.
            let leader_check = format!("{}/allocations/{b}", c.rest(2));
            for _ in 0..2 {
                // two monitor check intervals after the alerts
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            let pin = get_json(&leader_check).await.unwrap();
            let mut now_b = strings(&pin["allocations"]);
            now_b.sort();
            assert_eq!(
                now_b, want,
                "disable_repinning=true must not re-allocate: {pin:#}"
            );

            // A pin made while they are down.
            c.pin(1, late, "name=late").await;
            let url = format!("{}/pins/{late}", c.rest(0));
            wait_for(Duration::from_secs(60), || async {
                matches!(get_json(&url).await, Ok(g) if statuses(&g).iter().filter(|s| *s == "pinned").count() == 3)
            })
            .await
            .expect("the new pin is not pinned on the 3 live peers");

            // Restart both with a plain `daemon` (they resume their raft state) and catch up.
            c.ensure_all_up().await.expect("restarting peers 3 and 4");
            for cid in [a, late] {
                c.wait_status(3, cid, "pinned", Duration::from_secs(60))
                    .await;
            }
            for j in [3, 4] {
                let pins = c.node(j).pins().await.unwrap();
                assert!(
                    pins.contains(late) && pins.contains(b),
                    "IPFS node {j} lacks the catch-up pins"
                );
            }
            c.clean_state().await;
        })
    });
}

/// The four services of one peer, started directly (no launcher) in the units' order, each
/// waited for through its gRPC health endpoint.
async fn start_services(peer: &PeerDir) -> Vec<Proc> {
    let mut procs = Vec::new();
    for (name, port) in [
        ("ipfs-cluster-transport", peer.ports.transport),
        ("ipfs-cluster-consensus", peer.ports.consensus),
        ("ipfs-cluster-ipfs-connector", peer.ports.ipfs_connector),
        ("ipfs-cluster-gateway", peer.ports.gateway),
    ] {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(peer.dir.join(format!("{name}.log")))
            .unwrap();
        let p = Proc::spawn(
            name,
            Command::new(bin(name))
                .arg("--config")
                .arg(&peer.dir)
                .stdout(log.try_clone().unwrap())
                .stderr(log),
        )
        .unwrap();
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        wait_for(Duration::from_secs(60), || async {
            grpc_healthy(addr).await
        })
        .await
        .unwrap_or_else(|_| panic!("{name} did not become healthy; see {}", peer.dir.display()));
        procs.push(p);
    }
    procs
}

async fn grpc_healthy(addr: std::net::SocketAddr) -> bool {
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    let mut client = HealthClient::new(ipfs_cluster_proto::client::channel(addr));
    let req = HealthCheckRequest {
        service: String::new(),
    };
    matches!(tokio::time::timeout(Duration::from_secs(2), client.check(req)).await,
        Ok(Ok(r)) if r.get_ref().status == 1)
}

/// Current UTC time in RFC 3339, whole seconds.
fn now_rfc3339() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// 38. Single-peer cluster: new pins default to rmin=rmax=-1; Unpin before Pin fails; a pin
///     with expire_at = now fails; PinPath resolves through the connector and UnpinPath of
///     an unpinned path fails; Peers() is exactly self; with consensus shut down, Pin and
///     Unpin fail.
#[test]
fn b38_single_peer_cluster() {
    // Not the shared cluster, but take turns with it (CPU) when it exists.
    let _turn = CLUSTER
        .get()
        .and_then(|c| c.as_ref().ok())
        .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()));
    rt().block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let ipfs = Ipfs::start(tmp.path()).await.unwrap();
        let peer = init_peer(&tmp.path().join("peer"), &ipfs.multiaddr(), &[("CLUSTER_PEERNAME", "solo".into())]).unwrap();
        let mut procs = start_services(&peer).await;
        let rest = peer.rest_url();
        let me = get_json(&format!("{rest}/id")).await.unwrap()["id"].as_str().unwrap().to_string();

        let peers = ndjson("GET", &format!("{rest}/peers")).await.unwrap();
        assert_eq!(peers.len(), 1, "{peers:#?}");
        assert_eq!(peers[0]["id"], me.as_str());

        let files = [unique("b38 a"), unique("b38 b")];
        let cids = ipfs.add_many(&files, false).await.unwrap();
        let (a, b) = (&cids[0], &cids[1]);
        let (st, body) = http("DELETE", &format!("{rest}/pins/{a}"), None).await.unwrap();
        assert_eq!(st, 404, "unpin before pin: {body}");

        let (st, body) = http("POST", &format!("{rest}/pins/{a}"), None).await.unwrap();
        assert_eq!(st, 200, "{body}");
        let p: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(p["replication_factor_min"], -1);
        assert_eq!(p["replication_factor_max"], -1);
        let stored = get_json(&format!("{rest}/allocations/{a}")).await.unwrap();
        assert_eq!((stored["replication_factor_min"].clone(), stored["replication_factor_max"].clone()), (Value::from(-1), Value::from(-1)));

        let (st, body) = http("POST", &format!("{rest}/pins/{b}?expire-at={}", now_rfc3339()), None).await.unwrap();
        assert_ne!(st, 200, "a pin expiring now must fail: {body}");
        assert!(body.contains("pin.ExpireAt set before current time"), "{body}");

        // PinPath through a directory: resolved by IPFS to the file's CID.
        let dir_body = {
            let boundary = "----b38";
            let mut body = Vec::new();
            body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"d%2Ff\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes());
            body.extend_from_slice(&unique("b38 in a dir"));
            body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
            let req = hyper::Request::post(format!("{}/api/v0/add?pin=false&wrap-with-directory=true&cid-version=0", ipfs.api_url()))
                .header("content-type", format!("multipart/form-data; boundary={boundary}"))
                .body(Full::new(Bytes::from(body)))
                .unwrap();
            let (st, text) = send(req).await.unwrap();
            assert_eq!(st, 200, "{text}");
            text
        };
        let lines: Vec<Value> = dir_body.lines().filter(|l| !l.is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect();
        let file_cid = lines.iter().find(|l| l["Name"] != "").map(|l| l["Hash"].as_str().unwrap().to_string()).unwrap();
        let dir_cid = lines.iter().find(|l| l["Name"] == "").map(|l| l["Hash"].as_str().unwrap().to_string()).unwrap_or_else(|| panic!("no wrapping dir: {dir_body}"));
        let file_name = lines.iter().find(|l| l["Name"] != "").map(|l| l["Name"].as_str().unwrap().to_string()).unwrap();
        let (st, body) = http("POST", &format!("{rest}/pins/ipfs/{dir_cid}/{file_name}"), None).await.unwrap();
        assert_eq!(st, 200, "pin path: {body}");
        let p: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(p["cid"], file_cid.as_str(), "PinPath pins the resolved CID: {p:#}");
        let (st, body) = http("DELETE", &format!("{rest}/pins/ipfs/{dir_cid}"), None).await.unwrap();
        assert_eq!(st, 404, "unpin of an unpinned path: {body}");

        // Consensus shut down: Pin and Unpin fail (the gateway cannot reach it).
        let consensus = &mut procs[1];
        assert!(consensus.terminate(Duration::from_secs(20)).is_some(), "consensus did not stop");
        let (st, body) = http("POST", &format!("{rest}/pins/{b}"), None).await.unwrap();
        assert!(st >= 400, "pin with consensus down must fail: {st} {body}");
        let (st, body) = http("DELETE", &format!("{rest}/pins/{a}"), None).await.unwrap();
        assert!(st >= 400, "unpin with consensus down must fail: {st} {body}");
        drop(procs);
        drop(ipfs);
    });
}
