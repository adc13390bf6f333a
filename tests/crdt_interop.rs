//! Interoperability with upstream IPFS Cluster v1.1.6 crdt peers.
//!
//! * `our_follower_follows_an_upstream_crdt_cluster`: two upstream trusted peers
//!   (`ipfs-cluster-service init --consensus crdt`, each with its own Kubo node) and one
//!   follower of ours (`ipfs-cluster-follow <name> init <upstream's service.json>` +
//!   `run`, its own Kubo node). What upstream pins, the follower lists and pins on its
//!   Kubo node; what upstream unpins, it drops. This crosses every layer: pnet + noise +
//!   yamux to Go peers, upstream's gossipsub heads broadcasts on the cluster topic, delta
//!   nodes fetched with bitswap from upstream, and upstream's `api.Pin` values.
//!
//! * `an_upstream_follower_follows_our_crdt_cluster`: the other way round: two trusted crdt
//!   peers of ours and upstream's `ipfs-cluster-follow` (its template our peer's
//!   service.json, served over HTTP as upstream's follower wants it). What we pin, the
//!   upstream follower pins on its Kubo node: our heads on the topic, our delta nodes served
//!   by our transport's bitswap, our pin values in upstream's encoding.
//!
//! Both fail under CI=true when upstream's binaries cannot run (`make upstream` installs
//! them).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use ipfs_cluster_tests::*;
use serde_json::Value;

fn upstream_dir() -> Option<PathBuf> {
    let out = Command::new(repo_root().join("deploy/local/upstream.sh"))
        .arg("path")
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    (out.status.success() && dir.join("ipfs-cluster-service").exists()).then_some(dir)
}

/// One upstream `ipfs-cluster-service` peer: its folder, ports, Kubo node and process.
struct UpstreamPeer {
    dir: PathBuf,
    id: String,
    swarm: u16,
    rest: u16,
    ipfs: IpfsNode,
    proc: Option<Proc>,
    log: PathBuf,
}

impl UpstreamPeer {
    fn swarm_addr(&self) -> String {
        format!("/ip4/127.0.0.1/tcp/{}/p2p/{}", self.swarm, self.id)
    }

    fn rest_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.rest)
    }

    fn log(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = s.lines().rev().take(60).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

/// `ipfs-cluster-service --config <dir> init --consensus crdt`, then the test's settings:
/// loopback TCP only, free ports, no mDNS, its own Kubo node.
async fn init_upstream(service: &Path, base: &Path, i: usize) -> UpstreamPeer {
    let dir = base.join(format!("upstream_{i}"));
    let out = Command::new(service)
        .arg("--config")
        .arg(&dir)
        .args(["init", "--consensus", "crdt"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "upstream init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ipfs = IpfsNode::start(&base.join(format!("ipfs_up{i}")))
        .await
        .unwrap();
    let (swarm, rest) = (free_port(), free_port());
    edit_service_json(&dir, |v| {
        v["cluster"]["listen_multiaddress"] =
            serde_json::json!([format!("/ip4/127.0.0.1/tcp/{swarm}")]);
        v["cluster"]["mdns_interval"] = "0s".into();
        v["cluster"]["enable_relay_hop"] = false.into();
        v["cluster"]["monitor_ping_interval"] = "2s".into();
        v["api"]["restapi"]["http_listen_multiaddress"] =
            format!("/ip4/127.0.0.1/tcp/{rest}").into();
        v["api"]["ipfsproxy"]["listen_multiaddress"] =
            format!("/ip4/127.0.0.1/tcp/{}", free_port()).into();
        v["api"]["pinsvcapi"]["http_listen_multiaddress"] =
            format!("/ip4/127.0.0.1/tcp/{}", free_port()).into();
        v["ipfs_connector"]["ipfshttp"]["node_multiaddress"] = ipfs.multiaddr().into();
        v["consensus"]["crdt"]["cluster_name"] = "interop".into();
        v["consensus"]["crdt"]["rebroadcast_interval"] = "5s".into();
    })
    .unwrap();
    let id = identity_id(&dir).unwrap();
    UpstreamPeer {
        log: base.join(format!("upstream_{i}.log")),
        dir,
        id,
        swarm,
        rest,
        ipfs,
        proc: None,
    }
}

fn start_upstream(service: &Path, p: &mut UpstreamPeer) {
    let log = std::fs::File::create(&p.log).unwrap();
    let mut cmd = Command::new(service);
    cmd.arg("--config")
        .arg(&p.dir)
        .arg("daemon")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    p.proc = Some(Proc::spawn("upstream ipfs-cluster-service", &mut cmd).unwrap());
}

fn follow(base: &Path, args: &[&str], env: &[(&str, String)]) -> (i32, String, String) {
    let mut cmd = Command::new(bin("ipfs-cluster-follow"));
    cmd.arg("--config").arg(base).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.stdin(std::process::Stdio::null()).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The pins `ipfs-cluster-follow <name> list` shows with `status`.
fn listed(base: &Path, status: &str) -> Vec<String> {
    let (_, out, _) = follow(base, &["interop", "list"], &[]);
    out.lines()
        .filter(|l| l.starts_with(&format!("{status} ")))
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect()
}

#[test]
fn our_follower_follows_an_upstream_crdt_cluster() {
    let Some(up) = upstream_dir() else {
        skip(
            "our_follower_follows_an_upstream_crdt_cluster",
            "upstream's ipfs-cluster-service is not installed: run `make upstream`",
        );
        return;
    };
    let service = up.join("ipfs-cluster-service");
    one_at_a_time(async move {
        let tmp = tempfile::tempdir().unwrap();
        let mut ups = Vec::new();
        for i in 0..2 {
            ups.push(init_upstream(&service, tmp.path(), i).await);
        }
        // One cluster: peer 0's secret, both peers trusted, each knows the other.
        let secret: Value = serde_json::from_str::<Value>(
            &std::fs::read_to_string(ups[0].dir.join("service.json")).unwrap(),
        )
        .unwrap()["cluster"]["secret"]
            .clone();
        let trusted: Vec<String> = ups.iter().map(|p| p.id.clone()).collect();
        let addrs: Vec<String> = ups.iter().map(|p| p.swarm_addr()).collect();
        for (i, p) in ups.iter().enumerate() {
            edit_service_json(&p.dir, |v| {
                v["cluster"]["secret"] = secret.clone();
                v["cluster"]["peer_addresses"] = serde_json::json!([addrs[1 - i]]);
                v["consensus"]["crdt"]["trusted_peers"] = serde_json::json!(trusted);
            })
            .unwrap();
        }
        ups[0].ipfs.connect(&ups[1].ipfs).await.unwrap();
        for p in ups.iter_mut() {
            start_upstream(&service, p);
        }
        for p in &ups {
            let url = format!("{}/id", p.rest_url());
            wait_for(Duration::from_secs(90), || async {
                matches!(http("GET", &url, None).await, Ok((200, _)))
            })
            .await
            .unwrap_or_else(|_| panic!("upstream peer did not start:\n{}", p.log()));
        }

        // Our follower, from upstream peer 0's service.json as the template (as a
        // collaborative cluster publishes it), with both upstream peers' addresses.
        let mut tpl: Value = serde_json::from_str(
            &std::fs::read_to_string(ups[0].dir.join("service.json")).unwrap(),
        )
        .unwrap();
        tpl["cluster"]["peer_addresses"] = serde_json::json!(addrs);
        let tpl_file = tmp.path().join("template.json");
        std::fs::write(&tpl_file, serde_json::to_string_pretty(&tpl).unwrap()).unwrap();
        let base = tmp.path().join("follower");
        let (rc, out, err) = follow(&base, &["interop", "init", tpl_file.to_str().unwrap()], &[]);
        assert_eq!(rc, 0, "follower init: {out}{err}");
        let fipfs = IpfsNode::start(&tmp.path().join("ipfs_f")).await.unwrap();
        for p in &ups {
            fipfs.connect(&p.ipfs).await.unwrap();
        }

        // A pin made before the follower runs (it must fetch the DAG that holds it).
        let before = ups[0]
            .ipfs
            .add(b"interop: before the follower")
            .await
            .unwrap();
        let (st, body) = http(
            "POST",
            &format!("{}/pins/{before}?name=first", ups[0].rest_url()),
            None,
        )
        .await
        .unwrap();
        assert_eq!(st, 200, "upstream pin: {body}");

        let flog = tmp.path().join("follower.log");
        let env = vec![
            (
                "CLUSTER_LISTENMULTIADDRESS",
                format!("/ip4/127.0.0.1/tcp/{}", free_port()),
            ),
            ("CLUSTER_IPFSHTTP_NODEMULTIADDRESS", fipfs.multiaddr()),
            ("RUST_LOG", peer_log_filter()),
        ];
        let mut cmd = Command::new(bin("ipfs-cluster-follow"));
        cmd.arg("--config")
            .arg(&base)
            .args(["interop", "run"])
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&flog).unwrap())
            .stderr(std::fs::File::create(tmp.path().join("follower.err")).unwrap());
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let _follower = Proc::spawn("ipfs-cluster-follow", &mut cmd).unwrap();
        let logs = |ups: &[UpstreamPeer]| {
            format!(
                "--- follower\n{}{}\n--- upstream 0\n{}\n--- upstream 1\n{}",
                std::fs::read_to_string(&flog).unwrap_or_default(),
                std::fs::read_to_string(tmp.path().join("follower.err")).unwrap_or_default(),
                ups[0].log(),
                ups[1].log()
            )
        };

        // A pin made through the other upstream peer while the follower runs.
        let after = ups[1]
            .ipfs
            .add(b"interop: while the follower runs")
            .await
            .unwrap();
        let (st, body) = http("POST", &format!("{}/pins/{after}", ups[1].rest_url()), None)
            .await
            .unwrap();
        assert_eq!(st, 200, "upstream pin: {body}");

        for cid in [&before, &after] {
            wait_for(Duration::from_secs(120), || async {
                fipfs.pins().await.unwrap_or_default().contains(cid)
            })
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{cid} (pinned upstream) not pinned on the follower's Kubo node\n{}",
                    logs(&ups)
                )
            });
        }
        wait_for(Duration::from_secs(60), || async {
            let l = listed(&base, "pinned");
            l.contains(&before) && l.contains(&after)
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the follower's list does not show both pins pinned: {:?}",
                follow(&base, &["interop", "list"], &[])
            )
        });
        // Upstream's name travels in upstream's api.Pin encoding.
        let (_, out, _) = follow(&base, &["interop", "list"], &[]);
        assert!(
            out.lines()
                .any(|l| l.contains(&before) && l.ends_with(" first")),
            "{out}"
        );

        // An unpin upstream: the follower drops it.
        let (st, body) = http(
            "DELETE",
            &format!("{}/pins/{before}", ups[0].rest_url()),
            None,
        )
        .await
        .unwrap();
        assert_eq!(st, 200, "upstream unpin: {body}");
        wait_for(Duration::from_secs(120), || async {
            !fipfs.pins().await.unwrap_or_default().contains(&before)
                && !listed(&base, "pinned").contains(&before)
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{before} (unpinned upstream) still pinned on the follower\n{}",
                logs(&ups)
            )
        });
        assert!(fipfs.pins().await.unwrap().contains(&after));

        for p in ups.iter_mut() {
            if let Some(mut pr) = p.proc.take() {
                pr.terminate(Duration::from_secs(20));
            }
        }
    });
}

#[test]
fn an_upstream_follower_follows_our_crdt_cluster() {
    let Some(up) = upstream_dir() else {
        skip(
            "an_upstream_follower_follows_our_crdt_cluster",
            "upstream's ipfs-cluster-follow is not installed: run `make upstream`",
        );
        return;
    };
    let upstream_follow = up.join("ipfs-cluster-follow");
    one_at_a_time(async move {
        let c = Cluster::start_crdt(2, |_, ids| Some(vec![ids[0].clone(), ids[1].clone()]))
            .await
            .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let mut tpl: Value = serde_json::from_str(
            &std::fs::read_to_string(c.peers[0].dir.join("service.json")).unwrap(),
        )
        .unwrap();
        tpl["cluster"]["peer_addresses"] = Value::Array(
            (0..2)
                .map(|i| Value::String(c.peers[i].swarm_addr(&c.ids[i])))
                .collect(),
        );
        // Our service.json has no `datastore` section (our store is redb); upstream's
        // follower refuses a template without one ("unknown datastore"), so the template
        // names upstream's default backend.
        tpl["datastore"] = serde_json::json!({ "pebble": {} });
        let port = serve_json(serde_json::to_string_pretty(&tpl).unwrap()).await;
        let base = tmp.path().join("upstream_follower");
        let run = |args: &[&str], env: &[(&str, String)]| {
            let mut cmd = Command::new(&upstream_follow);
            cmd.arg("--config").arg(&base).args(args);
            for (k, v) in env {
                cmd.env(k, v);
            }
            cmd.stdin(std::process::Stdio::null());
            cmd
        };
        let out = run(
            &[
                "interop",
                "init",
                &format!("http://127.0.0.1:{port}/service.json"),
            ],
            &[],
        )
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "upstream follower init: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let fipfs = IpfsNode::start(&tmp.path().join("ipfs_uf")).await.unwrap();
        fipfs.connect(&c.ipfs).await.unwrap();

        let before = c
            .ipfs
            .add(b"interop: before the upstream follower")
            .await
            .unwrap();
        let (st, body) = http(
            "POST",
            &format!("{}/pins/{before}?name=first", c.rest(0)),
            None,
        )
        .await
        .unwrap();
        assert_eq!(st, 200, "{body}");

        let flog = tmp.path().join("upstream_follower.log");
        let env = [
            (
                "CLUSTER_LISTENMULTIADDRESS",
                format!("/ip4/127.0.0.1/tcp/{}", free_port()),
            ),
            ("CLUSTER_IPFSHTTP_NODEMULTIADDRESS", fipfs.multiaddr()),
        ];
        let mut cmd = run(&["interop", "run"], &env);
        let log = std::fs::File::create(&flog).unwrap();
        cmd.stdout(log.try_clone().unwrap()).stderr(log);
        let mut follower = Proc::spawn("upstream ipfs-cluster-follow", &mut cmd).unwrap();
        let logs = || {
            let s = std::fs::read_to_string(&flog).unwrap_or_default();
            let tail: Vec<&str> = s.lines().rev().take(80).collect();
            format!(
                "--- upstream follower\n{}\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
                c.logs()
            )
        };

        let after = c
            .ipfs
            .add(b"interop: while the upstream follower runs")
            .await
            .unwrap();
        let (st, body) = http("POST", &format!("{}/pins/{after}", c.rest(1)), None)
            .await
            .unwrap();
        assert_eq!(st, 200, "{body}");
        for cid in [&before, &after] {
            wait_for(Duration::from_secs(150), || async {
                fipfs.pins().await.unwrap_or_default().contains(cid)
            })
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{cid} (pinned by us) not pinned by the upstream follower\n{}",
                    logs()
                )
            });
        }
        let out = run(&["interop", "list"], &[]).output().unwrap();
        let listed = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            listed
                .lines()
                .any(|l| l.contains(&before) && l.ends_with(" first")),
            "upstream follower's list: {listed}"
        );
        follower.terminate(Duration::from_secs(20));
    });
}
