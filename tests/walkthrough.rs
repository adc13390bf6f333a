//! The README's "Walk-through" as a test, running the same commands (`ipfs-cluster-service
//! init` / `daemon [--bootstrap]`, `ipfs-cluster-ctl id|peers ls|pin add|status|pin ls`)
//! with free loopback ports instead of the default ones (env overrides, as the README says),
//! and the systemd units' ExecStart lines run as written (binary dir and config dir
//! substituted) without the launcher.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use ipfs_cluster_tests::*;

/// Walk-through settings (README): same secret, replication 2, repinning on, and short
/// monitor timings so re-allocation happens within seconds instead of ~45 s.
const WALK_ENV: &[(&str, &str)] = &[
    (
        "CLUSTER_SECRET",
        "7a6f6e6b0e11a9b8c7d6e5f40312233445566778899aabbccddeeff001122334",
    ),
    ("CLUSTER_REPLICATIONFACTORMIN", "2"),
    ("CLUSTER_REPLICATIONFACTORMAX", "2"),
    ("CLUSTER_DISABLEREPINNING", "false"),
    ("CLUSTER_MONITORPINGINTERVAL", "1s"),
    ("CLUSTER_PUBSUBMON_CHECKINTERVAL", "1s"),
    ("CLUSTER_DISK_METRICTTL", "2s"),
    ("CLUSTER_PINQUEUE_METRICTTL", "2s"),
    ("CLUSTER_TAGS_METRICTTL", "2s"),
];

/// `ipfs-cluster-service --config DIR init` with the walk-through env and free ports.
fn init(dir: &Path, ipfs: &IpfsNode, name: &str) -> PeerDir {
    let ports = PeerPorts::pick();
    let mut env: Vec<(String, String)> = ports.env(&ipfs.multiaddr());
    env.extend(WALK_ENV.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env.push(("CLUSTER_PEERNAME".into(), name.into()));
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (rc, _, err) = run_bin(
        "ipfs-cluster-service",
        &["--config", dir.to_str().unwrap(), "init"],
        &env_ref,
    )
    .unwrap();
    assert_eq!(rc, 0, "init: {err}");
    PeerDir::new(dir, ports, &ipfs.multiaddr())
}

/// `ipfs-cluster-ctl --host <peer's REST> ARGS…` → stdout (exit code must be 0).
fn ctl(peer: &PeerDir, args: &[&str]) -> String {
    let host = format!("/ip4/127.0.0.1/tcp/{}", peer.ports.rest);
    let mut all = vec!["--host", host.as_str()];
    all.extend_from_slice(args);
    let (rc, out, err) = run_bin("ipfs-cluster-ctl", &all, &[]).unwrap();
    assert_eq!(rc, 0, "ipfs-cluster-ctl {args:?}: {err}{out}");
    out
}

/// Peer ID → upper-case status from `ipfs-cluster-ctl status <cid>` (lines `> name : STATUS | …`).
fn ctl_status(peer: &PeerDir, cid: &str) -> BTreeMap<String, String> {
    let out = ctl(peer, &["status", cid]);
    out.lines()
        .filter_map(|l| {
            let l = l.trim().strip_prefix("> ")?;
            let (name, rest) = l.split_once(':')?;
            let status = rest.split('|').next()?.trim().to_string();
            Some((name.trim().to_string(), status))
        })
        .collect()
}

async fn ipfs_id(n: &IpfsNode) -> String {
    let (st, body) = http("POST", &format!("{}/api/v0/id", n.api_url()), None)
        .await
        .unwrap();
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["ID"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_walkthrough_three_peers_pin_kill_reallocate() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = (0..3)
        .map(|i| tmp.path().join(format!("host{i}")))
        .collect();
    for d in &dirs {
        std::fs::create_dir_all(d).unwrap();
    }
    let (a, b, c) = tokio::join!(
        IpfsNode::start(&dirs[0]),
        IpfsNode::start(&dirs[1]),
        IpfsNode::start(&dirs[2])
    );
    let ipfs = [a.unwrap(), b.unwrap(), c.unwrap()];
    let id0 = ipfs_id(&ipfs[0]).await;
    for n in &ipfs[1..] {
        let url = format!(
            "{}/api/v0/swarm/connect?arg=/ip4/127.0.0.1/tcp/{}/p2p/{id0}",
            n.api_url(),
            ipfs[0].swarm_port
        );
        assert_eq!(http("POST", &url, None).await.unwrap().0, 200);
    }

    // 1. init three peers with the same secret.
    let names = ["alice", "bob", "carol"];
    let peers: Vec<PeerDir> = (0..3)
        .map(|i| init(&dirs[i].join("cluster"), &ipfs[i], names[i]))
        .collect();

    // 2. start the first; read its ID with `ipfs-cluster-ctl id`; start the others with
    //    --bootstrap.
    let mut daemons = vec![Some(peers[0].start(&[]).await.unwrap())];
    let id_out = ctl(&peers[0], &["id"]);
    let first_id = id_out.split_whitespace().next().unwrap().to_string();
    let boot = format!("/ip4/127.0.0.1/tcp/{}/p2p/{first_id}", peers[0].ports.swarm);
    for p in &peers[1..] {
        daemons.push(Some(p.start(&["--bootstrap", &boot]).await.unwrap()));
    }
    wait_for(Duration::from_secs(60), || async {
        let out = ctl(&peers[2], &["peers", "ls"]);
        out.matches("Sees 2 other peers").count() == 3
    })
    .await
    .unwrap_or_else(|_| panic!("peers ls:\n{}", ctl(&peers[2], &["peers", "ls"])));

    // 3. pin something with the ctl: replication 2 → pinned on two peers, remote on one.
    let cid = ipfs[0].add(b"walk-through content\n").await.unwrap();
    let out = ctl(&peers[0], &["pin", "add", &cid]);
    assert!(out.contains(&cid), "pin add: {out}");
    for p in &peers {
        wait_for(Duration::from_secs(60), || async {
            let s = ctl_status(p, &cid);
            s.len() == 3
                && s.values().filter(|v| *v == "PINNED").count() == 2
                && s.values().filter(|v| *v == "REMOTE").count() == 1
        })
        .await
        .unwrap_or_else(|_| panic!("status on a peer: {:?}", ctl_status(p, &cid)));
    }
    let status = ctl_status(&peers[0], &cid);
    let remote = names
        .iter()
        .position(|n| status[*n] == "REMOTE")
        .expect("one remote peer");
    // Kill an allocated peer other than the one we keep asking.
    let victim = (0..3).find(|i| *i != remote && *i != 0).unwrap_or(0);
    let ask = (0..3).find(|i| *i != victim).unwrap();

    // 4. kill one allocated peer (its launcher and services).
    daemons[victim] = None;

    // 5. the pin moves to the third peer.
    wait_for(Duration::from_secs(60), || async {
        let s = ctl_status(&peers[ask], &cid);
        s.get(names[remote]).map(String::as_str) == Some("PINNED")
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "no re-allocation to {}: {:?}",
            names[remote],
            ctl_status(&peers[ask], &cid)
        )
    });
    let ls = ctl(&peers[ask], &["pin", "ls", &cid]);
    assert!(ls.contains(&cid), "pin ls: {ls}");
    assert!(
        ipfs[remote].pins().await.unwrap().contains(&cid),
        "the third peer's IPFS node does not pin it"
    );
}

/// A unit's ExecStart words, After= names and Environment= pairs.
type Unit = (Vec<String>, Vec<String>, Vec<(String, String)>);

/// The units' ExecStart lines, run as written (binary dir for /usr/local/bin, the config dir
/// for ${IPFS_CLUSTER_PATH}), in the order their After= lines give, then a pin end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_execstart_lines_run_a_peer() {
    let units_dir = repo_root().join("deploy/systemd");
    let mut units: BTreeMap<String, Unit> = BTreeMap::new();
    for e in std::fs::read_dir(&units_dir).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if !name.ends_with(".service") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut exec = Vec::new();
        let mut after = Vec::new();
        let mut env = Vec::new();
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("ExecStart=") {
                exec = v.split_whitespace().map(str::to_string).collect();
            } else if let Some(v) = line.strip_prefix("After=") {
                after.extend(v.split_whitespace().map(str::to_string));
            } else if let Some(v) = line.strip_prefix("Environment=") {
                let (k, val) = v.split_once('=').expect("Environment=K=V");
                env.push((k.to_string(), val.to_string()));
            }
        }
        assert!(!exec.is_empty(), "{name} has no ExecStart");
        units.insert(name, (exec, after, env));
    }
    assert_eq!(units.len(), 4, "four service units: {:?}", units.keys());
    // Order: a unit starts after every one of our units it names in After=.
    let mut order: Vec<String> = Vec::new();
    while order.len() < units.len() {
        let next = units
            .iter()
            .find(|(n, (_, after, _))| {
                !order.contains(n)
                    && after
                        .iter()
                        .all(|a| !units.contains_key(a) || order.contains(a))
            })
            .map(|(n, _)| n.clone())
            .expect("the units' After= lines form a cycle");
        order.push(next);
    }
    assert_eq!(order[0], "ipfs-cluster-transport.service");
    assert_eq!(order[1], "ipfs-cluster-consensus.service");

    let tmp = tempfile::tempdir().unwrap();
    let ipfs = IpfsNode::start(tmp.path()).await.unwrap();
    let peer = PeerDir::init(
        &tmp.path().join("cluster"),
        &ipfs.multiaddr(),
        Some(&"5d".repeat(32)),
    )
    .unwrap();
    let bin_dir = bin_dir();
    let mut procs = Vec::new();
    for unit in &order {
        let (exec, _, env) = &units[unit];
        let args: Vec<String> = exec
            .iter()
            .map(|a| {
                a.replace("/usr/local/bin", bin_dir.to_str().unwrap())
                    .replace("${IPFS_CLUSTER_PATH}", peer.dir.to_str().unwrap())
            })
            .collect();
        let log = std::fs::File::create(tmp.path().join(format!("{unit}.log"))).unwrap();
        let mut cmd = Command::new(&args[0]);
        cmd.args(&args[1..])
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in env {
            let v = if k == "IPFS_CLUSTER_PATH" {
                peer.dir.to_str().unwrap().to_string()
            } else {
                v.clone()
            };
            cmd.env(k, v);
        }
        procs.push(Proc::spawn(unit, &mut cmd).unwrap());
        // Type=exec: systemd starts the next unit once this one is exec'd; we wait for its
        // health so a slow start does not race the next one on this loaded machine.
        let port = match unit.as_str() {
            "ipfs-cluster-transport.service" => peer.ports.transport,
            "ipfs-cluster-consensus.service" => peer.ports.consensus,
            "ipfs-cluster-ipfs-connector.service" => peer.ports.ipfs_connector,
            _ => peer.ports.gateway,
        };
        let url = format!("127.0.0.1:{port}");
        let p = procs.last_mut().unwrap();
        wait_for(Duration::from_secs(60), || async {
            tokio::net::TcpStream::connect(&url).await.is_ok()
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{unit} did not listen (exit {:?}); log: {}",
                p.try_wait(),
                std::fs::read_to_string(tmp.path().join(format!("{unit}.log"))).unwrap_or_default()
            )
        });
    }

    let rest = peer.rest_url();
    wait_for(Duration::from_secs(60), || async {
        matches!(http("GET", &format!("{rest}/id"), None).await, Ok((200, _)))
    })
    .await
    .expect("REST API up");
    let cid = ipfs.add(b"started by the systemd lines\n").await.unwrap();
    let (st, body) = http("POST", &format!("{rest}/pins/{cid}"), None)
        .await
        .unwrap();
    assert_eq!(st, 200, "{body}");
    wait_for(Duration::from_secs(60), || async {
        matches!(get_json(&format!("{rest}/pins/{cid}")).await,
            Ok(v) if v["peer_map"].as_object().is_some_and(|m| m.len() == 1 && m.values().all(|p| p["status"] == "pinned")))
    })
    .await
    .expect("pinned through the units' processes");
    assert!(ipfs.pins().await.unwrap().contains(&cid));
    // Stop in reverse order, as systemd would (PartOf the target).
    while let Some(mut p) = procs.pop() {
        assert!(
            p.terminate(Duration::from_secs(20)).is_some(),
            "{} did not stop on SIGTERM",
            p.name
        );
    }
}
