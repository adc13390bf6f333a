//! crdt mode: clusters of `init --consensus crdt` peers started by
//! the real launcher on loopback, each peer with its own Kubo node.
//!
//! * A pin through peer 0 appears with its allocations on peers 1 and 2 and is pinned on
//!   the allocated peers' Kubo nodes; the unpin propagates and leaves the Kubo nodes.
//! * A new trusted peer (empty store) takes the pinset before its first write is
//!   acknowledged (first sync).
//! * The status of a pin allocated to a stopped peer shows it `cluster_error` once it left
//!   the peerset (upstream's globalPinInfoCid); the status of all pins lists the live
//!   peers only.
//! * A peer stopped while pins and unpins happen keeps its pinset across the restart and
//!   catches up on what it missed (heads rebroadcast every 2s).
//! * A peer outside `trusted_peers` writes only its own store: its pin never reaches the
//!   trusting peers; the trusted peers' pins reach it. It is in their peerset (its ping).

use std::{collections::BTreeMap, time::Duration};

use ipfs_cluster_tests::*;
use serde_json::Value;

fn unique(tag: &str) -> Vec<u8> {
    format!(
        "{tag} {:?} {}\n",
        std::time::SystemTime::now(),
        std::process::id()
    )
    .into_bytes()
}

/// Waits until every peer in `on` lists `n` peers in GET /peers.
async fn wait_peerset(c: &Cluster, on: &[usize], n: usize) {
    for &i in on {
        let url = format!("{}/peers", c.rest(i));
        wait_for(Duration::from_secs(90), || async {
            members(&url).await.len() == n
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "peer {i} does not see {n} peers ({:?})\n{}",
                futures::executor::block_on(members(&url)),
                c.logs()
            )
        });
    }
}

async fn pin(c: &Cluster, i: usize, cid: &str, query: &str) -> Value {
    let (st, body) = http("POST", &format!("{}/pins/{cid}?{query}", c.rest(i)), None)
        .await
        .unwrap();
    assert_eq!(st, 200, "pin {cid} through peer {i}: {body}\n{}", c.logs());
    serde_json::from_str(&body).unwrap()
}

async fn unpin(c: &Cluster, i: usize, cid: &str) {
    let (st, body) = http("DELETE", &format!("{}/pins/{cid}", c.rest(i)), None)
        .await
        .unwrap();
    assert_eq!(
        st,
        200,
        "unpin {cid} through peer {i}: {body}\n{}",
        c.logs()
    );
}

async fn wait_kubo(c: &Cluster, i: usize, cid: &str, pinned: bool) {
    let node = c.ipfs_of(i);
    wait_for(Duration::from_secs(60), || async {
        node.pins()
            .await
            .unwrap_or_default()
            .iter()
            .any(|p| p == cid)
            == pinned
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "peer {i}'s Kubo node: {cid} pinned should be {pinned}\n{}",
            c.logs()
        )
    });
}

#[test]
fn crdt_pins_replicate_unpin_propagates_and_a_restarted_peer_catches_up() {
    one_at_a_time(async {
        let mut c = Cluster::start_crdt(3, |_, _| None).await.unwrap();
        wait_peerset(&c, &[0, 1, 2], 3).await;
        c.wait_metric("freespace").await.unwrap();

        // Content on peer 0's Kubo node; two allocations chosen by peer 0.
        let cid = c.ipfs_of(0).add(&unique("crdt replicated")).await.unwrap();
        let p = pin(&c, 0, &cid, "replication-min=2&replication-max=2").await;
        let mut allocs = strings(&p["allocations"]);
        allocs.sort();
        assert_eq!(allocs.len(), 2, "{p}");
        let want = BTreeMap::from([(cid.clone(), allocs.clone())]);
        c.wait_states(&[0, 1, 2], &want).await;
        for (i, id) in c.ids.clone().iter().enumerate() {
            if allocs.contains(id) {
                wait_kubo(&c, i, &cid, true).await;
            }
        }

        // Unpin through another peer: gone everywhere, and from the Kubo nodes.
        unpin(&c, 1, &cid).await;
        c.wait_states(&[0, 1, 2], &BTreeMap::new()).await;
        for (i, id) in c.ids.clone().iter().enumerate() {
            if allocs.contains(id) {
                wait_kubo(&c, i, &cid, false).await;
            }
        }

        // Peer 2 holds a pin, stops; meanwhile one pin is added and that one removed.
        let kept = random_cid();
        pin(&c, 0, &kept, "").await;
        let mut want = BTreeMap::from([(kept.clone(), vec![])]);
        c.wait_states(&[0, 1, 2], &want).await;
        c.stop(2);
        let added = random_cid();
        pin(&c, 1, &added, "").await;
        unpin(&c, 0, &kept).await;
        want = BTreeMap::from([(added.clone(), vec![])]);
        c.wait_states(&[0, 1], &want).await;
        c.restart(2).await.unwrap();
        c.wait_states(&[2], &want).await;

        // A stopped peer keeps its pinset: stop 2 again, nothing changes meanwhile.
        c.stop(2);
        c.restart(2).await.unwrap();
        c.wait_states(&[2], &want).await;
    });
}

/// Status of a pin allocated to a peer that is down, as upstream v1.1.6 (cluster.go
/// `globalPinInfoCid` asks every allocated peer, `globalPinInfoStream` the members only):
/// once the stopped peer has left the peerset, `GET /pins/<cid>` still lists it as
/// `cluster_error` with the error, beside the live peers' own answers, while `GET /pins`
/// lists the live peers only.
#[test]
fn crdt_status_shows_a_down_allocated_peer_as_cluster_error() {
    one_at_a_time(async {
        let mut c = Cluster::start_crdt(3, |_, _| None).await.unwrap();
        wait_peerset(&c, &[0, 1, 2], 3).await;
        c.wait_metric("freespace").await.unwrap();
        let cid = c
            .ipfs_of(0)
            .add(&unique("crdt down allocation"))
            .await
            .unwrap();
        let p = pin(&c, 0, &cid, "replication-min=2&replication-max=2").await;
        let allocs = strings(&p["allocations"]);
        assert_eq!(allocs.len(), 2, "{p}");
        let want = BTreeMap::from([(cid.clone(), {
            let mut a = allocs.clone();
            a.sort();
            a
        })]);
        c.wait_states(&[0, 1, 2], &want).await;
        // Stop an allocated peer other than 0 (peer 0 answers the requests).
        let k = (1..3).find(|&k| allocs.contains(&c.ids[k])).unwrap();
        let dead = c.ids[k].clone();
        c.stop(k);
        let live: Vec<usize> = (0..3).filter(|&i| i != k).collect();
        // Until its ping expires the stopped peer is still a member (listed with an error).
        let peers_url = format!("{}/peers", c.rest(0));
        wait_for(Duration::from_secs(60), || async {
            let p = peerset(&peers_url).await;
            p.len() == 2 && !p.contains(&dead)
        })
        .await
        .expect("the stopped peer leaves peer 0's peerset once its ping expires");

        let g = get_json(&format!("{}/pins/{cid}", c.rest(0)))
            .await
            .unwrap();
        let pm = g["peer_map"].as_object().unwrap();
        assert_eq!(pm.len(), 3, "every member and every allocation: {g:#}");
        assert_eq!(pm[&dead]["status"], "cluster_error", "{g:#}");
        assert_ne!(pm[&dead]["error"].as_str().unwrap_or(""), "", "{g:#}");
        for &i in &live {
            let st = pm[&c.ids[i]]["status"].as_str().unwrap_or("");
            if allocs.contains(&c.ids[i]) {
                assert_ne!(st, "cluster_error", "peer {i}: {g:#}");
                assert_ne!(st, "remote", "peer {i}: {g:#}");
            } else {
                assert_eq!(st, "remote", "peer {i}: {g:#}");
            }
        }
        // StatusAll asks the members only: the stopped peer is not listed.
        let (st, body) = http("GET", &format!("{}/pins", c.rest(0)), None)
            .await
            .unwrap();
        assert_eq!(st, 200, "{body}");
        let items: Vec<Value> = serde_json::Deserializer::from_str(&body)
            .into_iter::<Value>()
            .map(|v| v.unwrap())
            .collect();
        assert_eq!(items.len(), 1, "{body}");
        let pm = items[0]["peer_map"].as_object().unwrap();
        assert_eq!(pm.len(), 2, "{body}");
        assert!(!pm.contains_key(&dead), "{body}");
    });
}

#[test]
fn crdt_an_untrusted_peers_pin_is_refused() {
    one_at_a_time(async {
        // Peers 0 and 1 trust only each other; peer 2 trusts them (not itself listed).
        let c = Cluster::start_crdt(3, |_, ids| Some(vec![ids[0].clone(), ids[1].clone()]))
            .await
            .unwrap();
        // Peer 2 is in everyone's peerset (its ping metric is taken from any secret
        // holder in crdt mode), but peers 0 and 1 do not apply its updates.
        wait_peerset(&c, &[0, 1, 2], 3).await;

        let from_untrusted = random_cid();
        pin(&c, 2, &from_untrusted, "").await;
        let trusted = random_cid();
        pin(&c, 0, &trusted, "").await;
        let want = BTreeMap::from([(trusted.clone(), vec![])]);
        c.wait_states(&[0, 1], &want).await;
        let mut on_2 = want.clone();
        on_2.insert(from_untrusted.clone(), vec![]);
        c.wait_states(&[2], &on_2).await;
        // Long enough for several rebroadcasts (2s): still refused.
        tokio::time::sleep(Duration::from_secs(6)).await;
        c.wait_states(&[0, 1], &want).await;
    });
}

/// A new trusted peer (its crdt store wiped, as a fresh machine) takes the other peers'
/// pinset before its first write: the write waits for the first sync, and once it is
/// acknowledged the peer holds every earlier pin.
#[test]
fn crdt_a_new_trusted_peer_syncs_before_it_writes() {
    one_at_a_time(async {
        let mut c = Cluster::start_crdt(3, |_, _| None).await.unwrap();
        wait_peerset(&c, &[0, 1, 2], 3).await;
        let mut want = BTreeMap::new();
        for _ in 0..5 {
            let cid = random_cid();
            pin(&c, 0, &cid, "").await;
            want.insert(cid, vec![]);
        }
        c.wait_states(&[0, 1, 2], &want).await;

        c.stop(2);
        std::fs::remove_dir_all(c.peers[2].dir.join("crdt")).unwrap();
        std::fs::write(c.peers[2].dir.join("daemon.log"), "").unwrap();
        c.restart(2).await.unwrap();
        let fresh = random_cid();
        pin(&c, 2, &fresh, "").await;
        let state = c.state(2).await.unwrap();
        for cid in want.keys() {
            assert!(
                state.contains_key(cid),
                "the new peer wrote before it held {cid}: {state:?}\n{}",
                c.logs()
            );
        }
        let log = std::fs::read_to_string(c.peers[2].dir.join("daemon.log")).unwrap();
        assert!(
            log.contains("first crdt sync done")
                && log.contains("took the heads of a trusted peer"),
            "{log}"
        );
        want.insert(fresh, vec![]);
        c.wait_states(&[0, 1, 2], &want).await;
    });
}

/// `state import|export|cleanup` on a crdt peer (the launcher starts its consensus service
/// alone, in crdt mode): the import replaces the pinset, the export gives it back, the
/// cleanup moves the crdt folder to a backup and the next export is empty.
#[test]
fn crdt_state_import_export_cleanup() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("peer");
    init_crdt_peer(&dir, "/ip4/127.0.0.1/tcp/1", &[]).unwrap();
    let state = |args: &[&str]| {
        let mut all = vec!["--config", dir.to_str().unwrap(), "state"];
        all.extend_from_slice(args);
        run_bin("ipfs-cluster-service", &all, &[]).unwrap()
    };
    let (a, b) = (random_cid(), random_cid());
    let input = tmp.path().join("in.json");
    std::fs::write(
        &input,
        format!("{{\"cid\":\"{a}\",\"name\":\"first\"}}\n{{\"cid\":\"{b}\"}}\n"),
    )
    .unwrap();
    let (rc, _, err) = state(&["import", input.to_str().unwrap(), "--force"]);
    assert_eq!(rc, 0, "import: {err}");
    let out = tmp.path().join("out.json");
    let (rc, _, err) = state(&["export", "-f", out.to_str().unwrap()]);
    assert_eq!(rc, 0, "export: {err}");
    let text = std::fs::read_to_string(&out).unwrap();
    let got: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut cids: Vec<&str> = got.iter().map(|p| p["cid"].as_str().unwrap()).collect();
    cids.sort();
    let mut want = vec![a.as_str(), b.as_str()];
    want.sort();
    assert_eq!(cids, want, "{text}");
    assert!(got.iter().any(|p| p["name"] == "first"), "{text}");

    // A second import replaces the pinset.
    std::fs::write(&input, format!("{{\"cid\":\"{b}\"}}\n")).unwrap();
    let (rc, _, err) = state(&["import", input.to_str().unwrap(), "--force"]);
    assert_eq!(rc, 0, "import: {err}");
    let (rc, stdout, err) = state(&["export"]);
    assert_eq!(rc, 0, "export: {err}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.contains(&b), "{stdout}");

    let (rc, _, err) = state(&["cleanup", "--force"]);
    assert_eq!(rc, 0, "cleanup: {err}");
    assert!(!dir.join("crdt").exists());
    let (rc, stdout, err) = state(&["export"]);
    assert_eq!(rc, 0, "export: {err}");
    assert!(stdout.trim().is_empty(), "{stdout}");
}

/// Upstream's three binaries (deploy/local/upstream.sh), when they can be installed here.
fn upstream_service() -> Option<std::path::PathBuf> {
    let out = std::process::Command::new(repo_root().join("deploy/local/upstream.sh"))
        .arg("path")
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    let bin = std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        .join("ipfs-cluster-service");
    (out.status.success() && bin.exists()).then_some(bin)
}

/// `state crdt info|dot|mark-dirty|mark-clean` as upstream's: the same words on a fresh
/// store as upstream's own binary prints on its fresh store; heads, height and the dirty
/// flag after an import; the DOT graph; a raft peer refused.
#[test]
fn crdt_state_crdt_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("peer");
    init_crdt_peer(&dir, "/ip4/127.0.0.1/tcp/1", &[]).unwrap();
    let state = |d: &std::path::Path, args: &[&str]| {
        let mut all = vec!["--config", d.to_str().unwrap(), "state"];
        all.extend_from_slice(args);
        run_bin("ipfs-cluster-service", &all, &[]).unwrap()
    };
    let (rc, fresh, err) = state(&dir, &["crdt", "info"]);
    assert_eq!(rc, 0, "info: {err}");
    assert_eq!(
        fresh,
        "Number of heads: 0. Current max-height: 0. Dirty: false\nHeads: []"
    );
    // The oracle: upstream's binary on a crdt peer its own init wrote.
    match upstream_service() {
        Some(up) => {
            let updir = tmp.path().join("upstream");
            let ports = PeerPorts::pick();
            let o = std::process::Command::new(&up)
                .arg("-c")
                .arg(&updir)
                .args(["init", "--consensus", "crdt"])
                .envs(ports.env("/ip4/127.0.0.1/tcp/5001"))
                .output()
                .unwrap();
            assert!(o.status.success(), "upstream init: {o:?}");
            for args in [
                &["crdt", "info"][..],
                &["crdt", "mark-dirty"],
                &["crdt", "mark-clean"],
            ] {
                let o = std::process::Command::new(&up)
                    .arg("-c")
                    .arg(&updir)
                    .arg("state")
                    .args(args)
                    .output()
                    .unwrap();
                let (rc, ours, err) = state(&dir, args);
                assert_eq!(rc, 0, "{args:?}: {err}");
                assert_eq!(
                    ours,
                    String::from_utf8_lossy(&o.stdout),
                    "state {args:?}: ours vs upstream's"
                );
            }
        }
        None => skip(
            "crdt_state_crdt_commands",
            "upstream's ipfs-cluster-service is not installed: run `make upstream`",
        ),
    }

    let input = tmp.path().join("in.json");
    std::fs::write(
        &input,
        format!(
            "{{\"cid\":\"{}\"}}\n{{\"cid\":\"{}\"}}\n",
            random_cid(),
            random_cid()
        ),
    )
    .unwrap();
    let (rc, _, err) = state(&dir, &["import", input.to_str().unwrap(), "--force"]);
    assert_eq!(rc, 0, "import: {err}");
    let (rc, info, err) = state(&dir, &["crdt", "info"]);
    assert_eq!(rc, 0, "info: {err}");
    assert!(
        info.starts_with("Number of heads: 1. Current max-height: ")
            && info.contains(". Dirty: false\nHeads: [bafy"),
        "{info}"
    );
    let (rc, dot, err) = state(&dir, &["crdt", "dot"]);
    assert_eq!(rc, 0, "dot: {err}");
    assert!(
        dot.starts_with("digraph CRDTDAG {\nsubgraph heads {\nbafy"),
        "{dot}"
    );
    assert!(dot.ends_with("}\n") && dot.contains(" [label=\""), "{dot}");
    let file = tmp.path().join("dag.dot");
    let (rc, out, err) = state(&dir, &["crdt", "dot", "-f", file.to_str().unwrap()]);
    assert_eq!((rc, out.as_str()), (0, ""), "dot -f: {err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), dot);

    let (rc, out, err) = state(&dir, &["crdt", "mark-dirty"]);
    assert_eq!(
        (rc, out.as_str()),
        (0, "Datastore marked 'dirty'\n"),
        "{err}"
    );
    let (_, info, _) = state(&dir, &["crdt", "info"]);
    assert!(info.contains("Dirty: true"), "{info}");
    let (rc, out, err) = state(&dir, &["crdt", "mark-clean"]);
    assert_eq!(
        (rc, out.as_str()),
        (0, "Datastore marked 'clean'\n"),
        "{err}"
    );
    let (_, info, _) = state(&dir, &["crdt", "info"]);
    assert!(info.contains("Dirty: false"), "{info}");

    // A raft peer: refused, naming crdt, exit 1.
    let raft = tmp.path().join("raft");
    init_peer_with(&raft, "/ip4/127.0.0.1/tcp/1", &"ab".repeat(32), &[]).unwrap();
    let (rc, _, err) = state(&raft, &["crdt", "info"]);
    assert_eq!(rc, 1, "{err}");
    assert!(
        err.contains("crdt subcommands can only be run on peers initialized with crdt consensus"),
        "{err}"
    );
}
