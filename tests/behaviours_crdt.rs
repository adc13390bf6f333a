//! The multi-peer behaviours of tests/behaviours.rs and tests/behaviours_alloc.rs on a
//! crdt cluster (`init --consensus crdt`): peers listing, pin and unpin of many CIDs
//! through every peer, global status (7), one peer down (8), local, global and
//! all-pins recover (9, 10, 11), peer loss with a replication factor (re-allocation to a
//! live peer, 22) and a stop plus a kill with a restart that catches up. Same REST calls
//! and assertions as the raft versions, except where upstream's crdt mode answers
//! otherwise (docs/behaviours.md, cluster-internals):
//!
//! * A dead peer leaves the peerset once its ping metric expires, so the global status
//!   omits it (raft keeps a dead member and shows it `cluster_error`).
//! * Writes converge instead of being linearised: an unpin through another peer right
//!   after a pin or unpin may still find the older state there, so the tests wait for the
//!   peers to agree before they assert on a second write through another peer.
//!
//! One shared 3-peer cluster (each peer with its own Kubo node, the nodes connected), with
//! repinning on (`disable_repinning=false`) and short monitor timings: the test kit's
//! `SharedCluster`, as in tests/behaviours.rs (started once, tests take turns, a test that
//! stops peers restarts them before it returns).

use std::{collections::BTreeMap, sync::OnceLock, time::Duration};

use anyhow::Result;
use ipfs_cluster_tests::*;
use serde_json::Value;

const N: usize = 3;

/// Upstream's test timings, slowed for a loaded 2-core machine: a dead peer's ping
/// (TTL 2 × 2 s) expires within ~4 s and is noticed within the next second.
const TIMINGS: &[(&str, &str)] = &[
    ("CLUSTER_MONITORPINGINTERVAL", "2s"),
    ("CLUSTER_PEERWATCHINTERVAL", "1s"),
    ("CLUSTER_PUBSUBMON_CHECKINTERVAL", "1s"),
    ("CLUSTER_DISK_METRICTTL", "4s"),
    ("CLUSTER_PINQUEUE_METRICTTL", "4s"),
    ("CLUSTER_TAGS_METRICTTL", "4s"),
    ("CLUSTER_IPFSHTTP_PINTIMEOUT", "5s"),
    ("CLUSTER_IPFSHTTP_CONNECTSWARMSDELAY", "1s"),
    ("CLUSTER_IPFSHTTP_UNPINTIMEOUT", "15s"),
    ("CLUSTER_DISABLEREPINNING", "false"),
];

// ---------------------------------------------------------------------------------------
// The shared cluster (the test kit's `SharedCluster`: started once, taken in turns).

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

/// Runs one test body on a fresh runtime with the cluster locked and all peers up.
fn with_cluster<F>(f: F)
where
    F: for<'a> FnOnce(&'a mut Cluster) -> Body<'a>,
{
    with_shared(&CLUSTER, || Box::pin(Cluster::start()), f)
}

impl Cluster {
    /// Ready once every peer sees the others and has their `freespace` (allocations
    /// need it).
    async fn start() -> Result<Self> {
        let env: Vec<(&'static str, String)> =
            TIMINGS.iter().map(|(k, v)| (*k, v.to_string())).collect();
        let kit =
            ipfs_cluster_tests::Cluster::start_crdt_env(N, |_, _| None, &env, |_, _| {}).await?;
        Ok(Cluster(
            SharedCluster::start(kit, Duration::from_secs(90), Some("freespace")).await?,
        ))
    }

    /// Unpins everything in peer 0's state and waits until every peer's state is empty
    /// and no peer tracks anything.
    async fn clean_state(&self) {
        self.unpin_all().await;
        self.wait_states(&all(), &BTreeMap::new()).await;
        self.wait_nothing_tracked().await;
    }

    /// Peer i's global status of `cid`: peer id -> status.
    async fn status_map(&self, i: usize, cid: &str) -> BTreeMap<String, String> {
        let Ok(v) = get_json(&format!("{}/pins/{cid}", self.rest(i))).await else {
            return BTreeMap::new();
        };
        v["peer_map"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, p)| (k.clone(), p["status"].as_str().unwrap_or("").to_string()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Every peer's index.
fn all() -> Vec<usize> {
    (0..N).collect()
}

/// A deterministic "random" peer index for the i-th operation.
fn pick(i: usize) -> usize {
    (i * 7 + 3) % N
}

// ---------------------------------------------------------------------------------------
// The behaviours.

/// 1. Every peer's Peers() returns exactly the members, each with the IPFS daemon ID that
///    member reports in its own ID().
#[test]
fn c01_peers_lists_every_member_with_its_ipfs_id() {
    with_cluster(|c| {
        Box::pin(async move {
            let mut own_ipfs = BTreeMap::new();
            for i in 0..N {
                let id = get_json(&format!("{}/id", c.rest(i))).await.unwrap();
                assert_eq!(id["id"], c.ids[i].as_str());
                assert_eq!(id["ipfs"]["id"], c.node(i).id.as_str(), "{id:#}");
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
        })
    });
}

/// 2 and 3. CIDs pinned through every peer (replication -1) end up `pinned` in every
/// peer's local StatusAll and on every IPFS node; the state lists exactly them. Unpinned
/// through every peer they leave every peer and node; once the peers agree, unpinning
/// them again fails (not in the pinset).
#[test]
fn c02_pins_through_every_peer_pinned_everywhere_then_unpinned() {
    with_cluster(|c| {
        Box::pin(async move {
            c.clean_state().await;
            let files: Vec<Vec<u8>> = (0..60).map(|_| unique("c02")).collect();
            let cids = c.good_cids(&files).await;
            for (i, cid) in cids.iter().enumerate() {
                c.pin(pick(i), cid, "").await;
            }
            for i in 0..N {
                let url = format!("{}/pins?local=true", c.rest(i));
                let ok = wait_for(Duration::from_secs(120), || async {
                    match ndjson("GET", &url).await {
                        Ok(v) => {
                            v.len() == cids.len() && v.iter().all(|g| statuses(g) == ["pinned"])
                        }
                        Err(_) => false,
                    }
                })
                .await;
                let v = ndjson("GET", &url).await.unwrap();
                assert!(
                    ok.is_ok(),
                    "peer {i}: local StatusAll has {} items, not all pinned",
                    v.len()
                );
                let mut got: Vec<&str> = v.iter().map(|g| g["cid"].as_str().unwrap()).collect();
                got.sort();
                let mut want: Vec<&str> = cids.iter().map(String::as_str).collect();
                want.sort();
                assert_eq!(got, want);
            }
            let state = ndjson("GET", &format!("{}/allocations", c.rest(2)))
                .await
                .unwrap();
            assert_eq!(state.len(), cids.len());
            for p in &state {
                assert_eq!(p["replication_factor_min"], -1);
                assert_eq!(p["allocations"], serde_json::json!([]));
            }
            for n in c.nodes() {
                let pins = n.pins().await.unwrap();
                assert!(
                    cids.iter().all(|x| pins.contains(x)),
                    "an IPFS node lacks pins"
                );
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
            // crdt converges: the second unpin is asserted once every peer has the unpins.
            c.wait_states(&all(), &BTreeMap::new()).await;
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
            for i in 0..N {
                let url = format!("{}/pins?local=true", c.rest(i));
                wait_for(Duration::from_secs(90), || async {
                    matches!(ndjson("GET", &url).await, Ok(v) if v.is_empty())
                })
                .await
                .unwrap_or_else(|_| panic!("peer {i}'s local StatusAll is not empty"));
            }
            for n in c.nodes() {
                let pins = n.pins().await.unwrap();
                assert!(
                    cids.iter().all(|x| !pins.contains(x)),
                    "an IPFS node still pins some of them"
                );
            }
        })
    });
}

/// 7. Global StatusAll on any peer: 1 item with the pin name, a peer_map of every peer,
///    all `pinned`, each with that peer's IPFS ID; Status(cid) agrees (also the ctl).
#[test]
fn c07_status_all_one_item_every_peer_pinned() {
    with_cluster(|c| {
        Box::pin(async move {
            c.clean_state().await;
            let cid = c.good_cids(&[unique("c07")]).await.remove(0);
            c.pin(1, &cid, "name=c07pin").await;
            for i in 0..N {
                c.wait_status(i, &cid, "pinned", Duration::from_secs(60))
                    .await;
            }
            for i in 0..N {
                let all = ndjson("GET", &format!("{}/pins", c.rest(i))).await.unwrap();
                assert_eq!(all.len(), 1, "peer {i}: StatusAll {all:#?}");
                let g = &all[0];
                assert_eq!(g["cid"], cid.as_str());
                assert_eq!(g["name"], "c07pin");
                let pm = g["peer_map"].as_object().unwrap();
                assert_eq!(pm.len(), N);
                for (j, id) in c.ids.iter().enumerate() {
                    let e = &pm[id];
                    assert_eq!(e["status"], "pinned", "{g:#}");
                    assert_eq!(e["ipfs_peer_id"], c.node(j).id.as_str(), "{g:#}");
                    assert_eq!(e["peername"], format!("peer_{j}"));
                }
                let one = c.status(i, &cid).await;
                assert_eq!(one["name"], "c07pin");
                assert_eq!(shape(&one), shape(g), "Status vs StatusAll on peer {i}");
            }
            let host = format!("/ip4/127.0.0.1/tcp/{}", c.peers[2].ports.rest);
            let (rc, out, err) =
                run_bin("ipfs-cluster-ctl", &["--host", &host, "status", &cid], &[]).unwrap();
            assert_eq!(rc, 0, "{err}");
            assert_eq!(out.matches("PINNED").count(), N, "ctl status:\n{out}");
        })
    });
}

/// 8. With one peer shut down (crdt, as upstream's crdt mode): once its ping metric has
///    expired it has left the peerset, so StatusAll and Status(cid) list the live peers
///    only, all `pinned` (raft keeps the dead member as `cluster_error`); /peers too.
///    Restarted, it is back in both.
#[test]
fn c08_one_peer_down_leaves_the_status() {
    with_cluster(|c| {
        Box::pin(async move {
            c.clean_state().await;
            let cid = c.good_cids(&[unique("c08")]).await.remove(0);
            c.pin(0, &cid, "name=c08").await;
            c.wait_status(0, &cid, "pinned", Duration::from_secs(60))
                .await;
            c.down(1, "TERM").await;
            let dead = c.ids[1].clone();
            let url = format!("{}/pins", c.rest(0));
            let ok = wait_for(Duration::from_secs(30), || async {
                matches!(ndjson("GET", &url).await, Ok(v) if v.len() == 1
                    && v[0]["peer_map"].as_object().is_some_and(|m| m.len() == N - 1))
            })
            .await;
            let all = ndjson("GET", &url).await.unwrap();
            assert!(ok.is_ok(), "the stopped peer is still listed: {all:#?}");
            for g in [&all[0], &c.status(0, &cid).await] {
                let pm = g["peer_map"].as_object().unwrap();
                assert_eq!(pm.len(), N - 1, "{g:#}");
                assert!(!pm.contains_key(&dead), "{g:#}");
                for (j, id) in c.ids.iter().enumerate().filter(|(j, _)| *j != 1) {
                    assert_eq!(pm[id]["status"], "pinned", "peer {j}: {g:#}");
                    assert_eq!(pm[id]["peername"], format!("peer_{j}"), "{g:#}");
                }
            }
            let peers_url = format!("{}/peers", c.rest(2));
            wait_for(Duration::from_secs(30), || async {
                let p = peerset(&peers_url).await;
                p.len() == N - 1 && !p.contains(&dead)
            })
            .await
            .expect("peer 2's /peers still lists the stopped peer");
            c.ensure_all_up().await.expect("restarting peer 1");
            c.wait_status(0, &cid, "pinned", Duration::from_secs(60))
                .await;
            c.clean_state().await;
        })
    });
}

/// 9. RecoverLocal on the always-failing CID leaves it `pin_error` after the queue runs;
///    RecoverLocal on a good CID returns `pinned`.
#[test]
fn c09_recover_local() {
    with_cluster(|c| {
        Box::pin(async move {
            let bad = c.error_cid().await;
            let good = c.good_cids(&[unique("c09")]).await.remove(0);
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
            c.clean_state().await;
        })
    });
}

/// 10. Global Recover returns a peer_map with every peer even on failure; afterwards
///     Status shows `pin_error` with an error on all; Recover of a good CID: all `pinned`.
#[test]
fn c10_recover_global() {
    with_cluster(|c| {
        Box::pin(async move {
            let bad = c.error_cid().await;
            let good = c.good_cids(&[unique("c10")]).await.remove(0);
            c.pin(2, &good, "").await;
            c.pin(2, &bad, "").await;
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
            let (st, body) = http("POST", &format!("{}/pins/{good}/recover", c.rest(0)), None)
                .await
                .unwrap();
            assert_eq!(st, 200, "{body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(statuses(&v), vec!["pinned"; N], "{v:#}");
            c.clean_state().await;
        })
    });
}

/// 11. RecoverAll with one good and one failing pin returns exactly 1 GlobalPinInfo (the
///     re-queued failing CID) with every peer's entry.
#[test]
fn c11_recover_all_requeues_only_the_failing_pin() {
    with_cluster(|c| {
        Box::pin(async move {
            c.clean_state().await;
            let bad = c.error_cid().await;
            let good = c.good_cids(&[unique("c11")]).await.remove(0);
            c.pin(1, &good, "").await;
            c.pin(1, &bad, "").await;
            c.wait_status(0, &bad, "pin_error", Duration::from_secs(60))
                .await;
            c.wait_status(0, &good, "pinned", Duration::from_secs(60))
                .await;
            let got = ndjson("POST", &format!("{}/pins/recover", c.rest(2)))
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

/// 22. Peer loss with a replication factor (repinning on), rmin=rmax=N-1: the pin is
///     `pinned` on its allocations and `remote` on the other peer; one allocated peer is
///     killed (SIGKILL, launcher and services); once its ping expired, the closest live
///     peer re-allocates the pin and the previously `remote` peer pins it. Back up, the
///     killed peer takes the new allocations.
#[test]
fn c22_peer_loss_reallocates_to_a_live_peer() {
    with_cluster(|c| {
        Box::pin(async move {
            c.clean_state().await;
            let cid = c.good_cids(&[unique("c22")]).await.remove(0);
            let q = format!("replication-min={0}&replication-max={0}", N - 1);
            let p = c.pin(0, &cid, &q).await;
            let allocs = strings(&p["allocations"]);
            assert_eq!(allocs.len(), N - 1, "{p}");
            let remote = c.ids.iter().find(|p| !allocs.contains(p)).unwrap().clone();
            let ri = c.ids.iter().position(|p| *p == remote).unwrap();
            wait_for(Duration::from_secs(60), || async {
                let s = c.status_map(ri, &cid).await;
                allocs
                    .iter()
                    .all(|a| s.get(a).map(String::as_str) == Some("pinned"))
                    && s.get(&remote).map(String::as_str) == Some("remote")
            })
            .await
            .expect("pinned on its allocations, remote on the other peer");
            // Kill an allocated peer other than peer 0 (any would do; 0 keeps the REST
            // entry point of the other tests).
            let k = (1..N)
                .find(|&k| allocs.contains(&c.ids[k]))
                .expect("an allocated peer besides peer 0");
            let killed = c.ids[k].clone();
            c.down(k, "KILL").await;
            let ok = wait_for(Duration::from_secs(60), || async {
                c.status_map(ri, &cid)
                    .await
                    .get(&remote)
                    .map(String::as_str)
                    == Some("pinned")
            })
            .await;
            assert!(
                ok.is_ok(),
                "the remote peer does not pin the CID after an allocated peer died: {:?}\n{}",
                c.status_map(ri, &cid).await,
                c.logs()
            );
            let live: Vec<usize> = (0..N).filter(|&i| i != k).collect();
            for &i in &live {
                let a = strings(
                    &get_json(&format!("{}/allocations/{cid}", c.rest(i)))
                        .await
                        .unwrap()["allocations"],
                );
                assert_eq!(a.len(), N - 1, "peer {i}: {a:?}");
                assert!(
                    !a.contains(&killed) && a.contains(&remote),
                    "peer {i}: {a:?}"
                );
            }
            assert!(c.node(ri).pins().await.unwrap().contains(&cid));

            // The killed peer restarts into the new allocations (remote there).
            c.ensure_all_up().await.expect("restarting the killed peer");
            wait_for(Duration::from_secs(60), || async {
                c.status_map(k, &cid).await.get(&killed).map(String::as_str) == Some("remote")
            })
            .await
            .expect("the restarted peer reports the re-allocated CID remote");
            c.clean_state().await;
        })
    });
}

/// Stop one peer (SIGTERM) and kill another (SIGKILL, launcher and services): the pins
/// stay available on the live peer (status: the live peer `pinned`; the dead ones have
/// left the crdt peerset), a pin made while they are down is pinned there, and both
/// rejoin on a plain restart and catch up: every peer `pinned`, every IPFS node holds
/// both pins, and all states agree.
#[test]
fn z_stop_and_kill_then_restart_and_catch_up() {
    with_cluster(|c| {
        Box::pin(async move {
            c.clean_state().await;
            let cids = c
                .good_cids(&[unique("everywhere"), unique("while down")])
                .await;
            let (a, late) = (&cids[0], &cids[1]);
            c.pin(0, a, "name=a").await;
            c.wait_status(0, a, "pinned", Duration::from_secs(60)).await;

            c.down(1, "TERM").await;
            c.down(2, "KILL").await;

            let url = format!("{}/pins/{a}", c.rest(0));
            let ok = wait_for(Duration::from_secs(30), || async {
                matches!(get_json(&url).await, Ok(g) if statuses(&g) == ["pinned"])
            })
            .await;
            let g = get_json(&url).await.unwrap();
            assert!(ok.is_ok(), "only the live peer, pinned: {g:#}");
            assert_eq!(g["peer_map"][&c.ids[0]]["status"], "pinned", "{g:#}");
            assert!(c.node(0).pins().await.unwrap().contains(a));

            // A pin made while they are down.
            c.pin(0, late, "name=late").await;
            c.wait_status_n(0, late, "pinned", 1, Duration::from_secs(60))
                .await;

            // Plain restarts: each keeps its crdt store and catches up on the missed pin.
            c.ensure_all_up().await.expect("restarting peers 1 and 2");
            for i in 0..N {
                for cid in [a, late] {
                    c.wait_status(i, cid, "pinned", Duration::from_secs(60))
                        .await;
                }
            }
            for j in 0..N {
                let pins = c.node(j).pins().await.unwrap();
                assert!(
                    pins.contains(a) && pins.contains(late),
                    "IPFS node {j} lacks the catch-up pins"
                );
            }
            let want = BTreeMap::from([(a.clone(), vec![]), (late.clone(), vec![])]);
            c.wait_states(&all(), &want).await;
            c.clean_state().await;
        })
    });
}
