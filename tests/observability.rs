//! Observability end to end (docs/operations.md, Observability): one peer started with
//! `daemon --stats --tracing` and a real IPFS node. A pin through REST moves real values on
//! all four `/metrics` endpoints; one REST request's trace id (returned in the
//! `traceparent` response header) shows up in the logs of all four services; a
//! non-loopback metrics address is refused with an error naming the key.

use std::time::Duration;

use ipfs_cluster_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The value of the first sample of `name` whose labels include every `k="v"` in `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

async fn scrape(port: u16) -> String {
    match http("GET", &format!("http://127.0.0.1:{port}/metrics"), None).await {
        Ok((200, body)) => body,
        other => panic!("scrape of port {port} failed: {other:?}"),
    }
}

/// A raw HTTP/1.1 GET so the test sees the response headers; returns (head, body).
async fn get_with_headers(port: u16, path: &str) -> (String, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_string(&mut out))
        .await
        .expect("answer within 30 s")
        .unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (head.to_string(), body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_and_tracing_on_one_peer() {
    let tmp = tempfile::tempdir().unwrap();
    let ipfs = IpfsNode::start(tmp.path()).await.expect("IPFS test node");
    let peer = PeerDir::init(&tmp.path().join("peer"), &ipfs.multiaddr(), None).expect("init");
    let dir = peer.dir.to_str().unwrap().to_string();

    // A non-loopback metrics address is refused, naming the key and the override.
    let (code, _, err) = run_bin(
        "ipfs-cluster-transport",
        &["--config", &dir, "--stats"],
        &[(
            "CLUSTER_METRICS_PROMETHEUSENDPOINT",
            "/ip4/10.1.2.3/tcp/8888",
        )],
    )
    .unwrap();
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("observations.metrics.prometheus_endpoint")
            && err.contains("not a loopback address")
            && err.contains("allow_remote_internal"),
        "{err}"
    );

    // One free port per service (written as the per-service overrides).
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let cfg_path = peer.dir.join("service.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    for (key, port) in [
        "transport_metrics_multiaddress",
        "consensus_metrics_multiaddress",
        "ipfs_connector_metrics_multiaddress",
        "gateway_metrics_multiaddress",
    ]
    .iter()
    .zip(&ports)
    {
        cfg["internal"][key] = format!("/ip4/127.0.0.1/tcp/{port}").into();
    }
    std::fs::write(&cfg_path, serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
    let (tp, cp, ip, gp) = (ports[0], ports[1], ports[2], ports[3]);

    let _daemon = peer.start(&["--stats", "--tracing"]).await.expect("daemon");
    let rest = peer.rest_url();
    let peer_id = get_json(&format!("{rest}/id")).await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Every service answers with its build info and our peer id.
    for (port, service) in [
        (tp, "transport"),
        (cp, "consensus"),
        (ip, "ipfs-connector"),
        (gp, "gateway"),
    ] {
        let text = scrape(port).await;
        assert_eq!(
            sample(
                &text,
                "ipfscluster_build_info",
                &[
                    ("service", service),
                    ("peer", &peer_id),
                    ("version", "1.1.6")
                ]
            ),
            Some(1.0),
            "{service}: {text}"
        );
    }
    let before = scrape(cp).await;
    assert_eq!(
        sample(&before, "ipfscluster_pins", &[]),
        Some(0.0),
        "{before}"
    );

    let cid = ipfs.add(b"observability test content\n").await.unwrap();
    let (status, body) = http("POST", &format!("{rest}/pins/{cid}"), None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");

    // Consensus: the pin is in the state, this single peer leads a one-voter raft.
    let text = scrape(cp).await;
    assert_eq!(sample(&text, "ipfscluster_pins", &[]), Some(1.0), "{text}");
    assert_eq!(
        sample(&text, "ipfscluster_raft_is_leader", &[]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "ipfscluster_raft_members", &[]),
        Some(1.0),
        "{text}"
    );
    assert!(
        sample(&text, "ipfscluster_raft_term", &[]).unwrap_or(0.0) >= 1.0,
        "{text}"
    );
    let applied = sample(&text, "ipfscluster_raft_applied_index", &[]).unwrap_or(0.0);
    assert!(applied >= 1.0, "{text}");
    assert!(
        sample(&text, "ipfscluster_raft_commit_index", &[]).unwrap_or(0.0) >= applied,
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "ipfscluster_grpc_requests_total",
            &[("method", "Consensus/Pin"), ("code", "OK")]
        ),
        Some(1.0),
        "{text}"
    );

    // Gateway: the request is counted under its route template, not the CID.
    let text = scrape(gp).await;
    assert_eq!(
        sample(
            &text,
            "ipfscluster_http_requests_total",
            &[
                ("api", "rest"),
                ("method", "POST"),
                ("route", "/pins/{cid}"),
                ("code", "200")
            ]
        ),
        Some(1.0),
        "{text}"
    );
    assert!(!text.contains(&cid), "a CID leaked into a label: {text}");

    // IPFS connector: the pin reaches IPFS and is counted as held here.
    let ok = wait_for(Duration::from_secs(60), || async {
        sample(&scrape(ip).await, "ipfscluster_pintracker_pinned", &[]) == Some(1.0)
    })
    .await;
    let text = scrape(ip).await;
    assert!(ok.is_ok(), "pinned never reached 1: {text}");
    assert_eq!(
        sample(&text, "ipfscluster_pintracker_errors", &[]),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "ipfscluster_pintracker_queued", &[("queue", "pin")]),
        Some(0.0),
        "{text}"
    );
    assert!(
        sample(
            &text,
            "ipfscluster_ipfs_requests_total",
            &[("endpoint", "pin/add"), ("result", "ok")]
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{text}"
    );

    // One traced request: GET /pins/{cid} crosses gateway → consensus, transport →
    // ipfs connector. Its trace id comes back in the traceparent header.
    let (head, body) = get_with_headers(peer.ports.rest, &format!("/pins/{cid}")).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}\n{body}");
    let traceparent = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("traceparent")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no traceparent response header: {head}"));
    let trace_id = traceparent.split('-').nth(1).unwrap().to_string();
    assert_eq!(trace_id.len(), 32, "{traceparent}");

    // Transport: the status fan-out went through it as a (local) peer call.
    let text = scrape(tp).await;
    assert!(
        sample(
            &text,
            "ipfscluster_peer_calls_total",
            &[
                ("service", "IpfsConnector"),
                ("method", "Status"),
                ("target", "local"),
                ("result", "ok")
            ]
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{text}"
    );
    assert!(sample(&text, "ipfscluster_peers", &[]).is_some(), "{text}");

    let needle = format!("trace_id={trace_id}");
    let ok = wait_for(Duration::from_secs(10), || async {
        let log = std::fs::read_to_string(peer.dir.join("daemon.log")).unwrap_or_default();
        ["transport", "consensus", "ipfs-connector", "gateway"]
            .iter()
            .all(|s| {
                log.lines()
                    .any(|l| l.starts_with(&format!("[{s}]")) && l.contains(&needle))
            })
    })
    .await;
    if ok.is_err() {
        let log = std::fs::read_to_string(peer.dir.join("daemon.log")).unwrap_or_default();
        let hits: Vec<&str> = log.lines().filter(|l| l.contains(&needle)).collect();
        panic!(
            "trace {trace_id} not in all four services' logs; lines with it:\n{}\n\nlog tail:\n{}",
            hits.join("\n"),
            peer.log_tail()
        );
    }
}

/// Two peers with `--tracing`: a status request on peer A fans out to peer B through the
/// transport, and B's transport and ipfs connector log the same trace id (carried in the
/// peer call's `traceparent` field).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_id_crosses_peers() {
    let tmp = tempfile::tempdir().unwrap();
    let ipfs = IpfsNode::start(tmp.path()).await.expect("IPFS test node");
    let secret = "2588b80d5cb05374fa142aed6cbb047d1f4ef8ef15e37eba68c65b9d30df67ed";
    let a = PeerDir::init(&tmp.path().join("a"), &ipfs.multiaddr(), Some(secret)).expect("init a");
    let b = PeerDir::init(&tmp.path().join("b"), &ipfs.multiaddr(), Some(secret)).expect("init b");
    let _pa = a.start(&["--tracing"]).await.expect("peer a");
    let id_a = get_json(&format!("{}/id", a.rest_url())).await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let boot = format!("/ip4/127.0.0.1/tcp/{}/p2p/{id_a}", a.ports.swarm);
    let _pb = b
        .start(&["--tracing", "--bootstrap", &boot])
        .await
        .expect("peer b");
    let rest = a.rest_url();
    let two = wait_for(Duration::from_secs(60), || async {
        get_json(&format!("{rest}/id"))
            .await
            .ok()
            .and_then(|v| v["cluster_peers"].as_array().map(|a| a.len()))
            == Some(2)
    })
    .await;
    assert!(two.is_ok(), "peer b never joined:\n{}", b.log_tail());

    let cid = ipfs.add(b"traced across peers\n").await.unwrap();
    let (status, body) = http("POST", &format!("{rest}/pins/{cid}"), None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let (head, body) = get_with_headers(a.ports.rest, &format!("/pins/{cid}")).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}\n{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["peer_map"].as_object().map(|m| m.len()),
        Some(2),
        "{body}"
    );
    let trace_id = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("traceparent")
                .then(|| v.trim().split('-').nth(1).map(str::to_string))?
        })
        .unwrap_or_else(|| panic!("no traceparent response header: {head}"));
    let needle = format!("trace_id={trace_id}");
    let seen = wait_for(Duration::from_secs(10), || async {
        let log = std::fs::read_to_string(b.dir.join("daemon.log")).unwrap_or_default();
        let has = |svc: &str, what: &str| {
            log.lines().any(|l| {
                l.starts_with(&format!("[{svc}]")) && l.contains(&needle) && l.contains(what)
            })
        };
        has("transport", "peer call received") && has("ipfs-connector", "IpfsConnector/Status")
    })
    .await;
    if seen.is_err() {
        let log = std::fs::read_to_string(b.dir.join("daemon.log")).unwrap_or_default();
        let hits: Vec<&str> = log.lines().filter(|l| l.contains(&needle)).collect();
        panic!(
            "trace {trace_id} of peer a's request not in peer b's transport and connector logs; b's lines with it:\n{}\n\nb's log tail:\n{}",
            hits.join("\n"),
            b.log_tail()
        );
    }
}
