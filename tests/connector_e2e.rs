//! The ipfs connector through whole peers (real launcher, real Kubo daemons):
//! content added on node A is pinned by peer B's daemon over bitswap and unpinned again;
//! a CID nobody has goes `pinning` → `pin_error` after the pin timeout and recover
//! re-queues it; `ipfs pin rm` behind the cluster's back → `unexpectedly_unpinned` →
//! recover repairs it; the daemon going down and coming back (statuses say so, queued
//! work resumes, the connector stays idle meanwhile); and the IPFS proxy driven with the
//! plain HTTP requests the `ipfs` CLI sends (multipart add, pin ls, pin update, repo
//! stat, block put, dag put); `version` forwarded, hijacked answers with our Server header
//! and the daemon's preflight CORS headers, and the proxy's access log file.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::Full;
use ipfs_cluster_tests::*;
use serde_json::Value;

/// `ipfs add` (no pin; with `only_hash` nothing is stored, so nobody has the blocks).
async fn add(ipfs: &IpfsNode, data: &[u8], only_hash: bool) -> String {
    ipfs.add_many(&[data.to_vec()], only_hash)
        .await
        .expect("ipfs add")
        .remove(0)
}

/// `ipfs add` as the Kubo CLI sends it: multipart/form-data, one file part.
/// Returns the NDJSON lines; panics on a non-200 answer.
async fn multipart_add(url: &str, data: &[u8]) -> Vec<Value> {
    let (status, text) = multipart_post(url, data).await;
    assert_eq!(status, 200, "add {url}: {text}");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

async fn multipart_post(url: &str, data: &[u8]) -> (u16, String) {
    let boundary = "e2e7f9c1b2d3a4";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"hello.txt\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let req = hyper::Request::post(url)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .header("user-agent", "kubo/0.18.1/")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    send(req).await.unwrap()
}

async fn peer_id(rest: &str) -> String {
    get_json(&format!("{rest}/id")).await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The PinInfo of `peer` in `GET /pins/{cid}` (Null when not answered).
async fn pin_info(rest: &str, cid: &str, peer: &str) -> Value {
    match get_json(&format!("{rest}/pins/{cid}")).await {
        Ok(v) => v["peer_map"][peer].clone(),
        Err(_) => Value::Null,
    }
}

/// Waits until `peer` reports `want` for `cid`; returns the PinInfo.
async fn wait_status(rest: &str, cid: &str, peer: &str, want: &str, secs: u64, log: &str) -> Value {
    let mut last = Value::Null;
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        last = pin_info(rest, cid, peer).await;
        if last["status"] == want {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{cid} on {peer}: wanted {want}, last {last}; log:\n{log}");
}

/// Sets keys of `service.json` (the daemon reads it at start).
fn edit_service_json(dir: &Path, f: impl FnOnce(&mut Value)) {
    let p = dir.join("service.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// The ipfs connector child of a launcher (by parent pid and name).
fn connector_pid(launcher: u32) -> Option<u32> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some((head, tail)) = stat.rsplit_once(')') else {
            continue;
        };
        let ppid = tail
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u32>().ok());
        if ppid == Some(launcher) && head.contains("ipfs-cluster-ip") {
            return Some(pid);
        }
    }
    None
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let tail = stat.rsplit_once(')').unwrap().1;
    let f: Vec<&str> = tail.split_whitespace().collect();
    // after ')': state(0) ppid(1) ... utime(11) stime(12)
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn unique(tag: &str) -> Vec<u8> {
    format!(
        "{tag} {:?} {}\n",
        std::time::SystemTime::now(),
        std::process::id()
    )
    .into_bytes()
}

/// Two peers (A = 0, B = 1), each with its own Kubo node (no bootstrap peers, no DHT: the
/// nodes know nothing of each other), `connect_swarms_delay` as given; B joins A; both
/// hold both freespace metrics (B is a candidate for allocations).
async fn two_peers(connect_swarms_delay: &str) -> Cluster {
    let delay = connect_swarms_delay.to_string();
    let c = Cluster::start_laid_out(Layout::OwnIpfs, 2, Join::OneByOne, None, |_| {
        vec![("CLUSTER_IPFSHTTP_CONNECTSWARMSDELAY", delay.clone())]
    })
    .await
    .expect("two peers, each with its own Kubo node");
    c.wait_metric("freespace").await.unwrap();
    c
}

/// Content only on node A, pinned with an allocation on peer B only.
async fn pin_a_content_on_b(t: &Cluster, tag: &str) -> (Vec<u8>, String) {
    let data = unique(tag);
    let cid = t.ipfs_of(0).add(&data).await.unwrap();
    let (st, body) = http(
        "POST",
        &format!(
            "{}/pins/{cid}?replication-min=1&replication-max=1&user-allocations={}",
            t.rest(0),
            t.ids[1]
        ),
        None,
    )
    .await
    .unwrap();
    assert_eq!(st, 200, "{body}");
    let pin: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(pin["allocations"], serde_json::json!([t.ids[1]]), "{pin}");
    (data, cid)
}

/// connect_swarms_delay: the cluster connects B's daemon to A's (they share no bootstrap
/// peer and have no DHT), so B fetches A's content over bitswap and pins it; the cluster
/// unpin removes it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_swarms_lets_peer_b_pin_content_only_node_a_has() {
    let t = two_peers("1s").await;
    let (ipfs_a, ipfs_b, pa, pb) = (t.ipfs_of(0), t.ipfs_of(1), &t.peers[0], &t.peers[1]);
    let (id_pa, id_pb) = (&t.ids[0], &t.ids[1]);
    let rest = pa.rest_url();
    // The daemons get connected by the cluster, not by us.
    wait_for(Duration::from_secs(30), || async {
        ipfs_b
            .swarm_peers()
            .await
            .unwrap_or_default()
            .contains(&ipfs_a.id)
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the cluster never connected the IPFS daemons; logs:\n{}\n{}",
            pa.log_tail(),
            pb.log_tail()
        )
    });

    let (data, cid) = pin_a_content_on_b(&t, "fetched by bitswap").await;
    wait_status(&rest, &cid, id_pb, "pinned", 60, &pb.log_tail()).await;
    assert_eq!(pin_info(&rest, &cid, id_pa).await["status"], "remote");
    assert!(
        ipfs_b.pins().await.unwrap().contains(&cid),
        "node B does not hold the pin"
    );
    assert!(
        !ipfs_a.pins().await.unwrap().contains(&cid),
        "node A pinned a CID allocated to B"
    );
    // B really has the bytes now (fetched from A over bitswap).
    let (st, got) = http(
        "POST",
        &format!("{}/api/v0/cat?arg={cid}&offline=true", ipfs_b.api_url()),
        None,
    )
    .await
    .unwrap();
    assert_eq!(st, 200, "{got}");
    assert_eq!(got.as_bytes(), &data[..]);

    // Unpin through peer B: gone from node B, every peer says unpinned.
    let (st, body) = http("DELETE", &format!("{}/pins/{cid}", pb.rest_url()), None)
        .await
        .unwrap();
    assert_eq!(st, 200, "{body}");
    wait_for(Duration::from_secs(30), || async {
        !ipfs_b.pins().await.unwrap_or_default().contains(&cid)
    })
    .await
    .expect("node B still pins after the cluster unpin");
    wait_status(&rest, &cid, id_pb, "unpinned", 20, &pb.log_tail()).await;
    wait_status(&rest, &cid, id_pa, "unpinned", 20, &pa.log_tail()).await;
}

/// The control: the same cluster with `connect_swarms_delay: 0` (never) leaves the
/// daemons unconnected, and B cannot get the content (it stays `pinning`). This is what
/// makes the test above a test of the feature.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_connect_swarms_peer_b_cannot_get_the_content() {
    let t = two_peers("0s").await;
    let (_, cid) = pin_a_content_on_b(&t, "never reaches B").await;
    let rest = t.rest(0);
    wait_status(
        &rest,
        &cid,
        &t.ids[1],
        "pinning",
        20,
        &t.peers[1].log_tail(),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let st = pin_info(&rest, &cid, &t.ids[1]).await;
    assert_eq!(st["status"], "pinning", "{st}");
    assert!(
        !t.ipfs_of(1)
            .swarm_peers()
            .await
            .unwrap()
            .contains(&t.ipfs_of(0).id),
        "the daemons got connected although connect_swarms_delay is 0"
    );
    assert!(!t.ipfs_of(1).pins().await.unwrap().contains(&cid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_errors_recover_and_the_daemon_going_away() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ipfs = IpfsNode::start(tmp.path()).await.expect("IPFS test node");
    let peer = PeerDir::init(&tmp.path().join("peer"), &ipfs.multiaddr(), None).unwrap();
    edit_service_json(&peer.dir, |v| {
        v["ipfs_connector"]["ipfshttp"]["pin_timeout"] = "3s".into();
    });
    let daemon = peer.start(&[]).await.unwrap();
    let rest = peer.rest_url();
    let me = peer_id(&rest).await;

    // A CID nobody has: pinning, then pin_error once the no-progress timeout hits.
    let missing = add(&ipfs, &unique("nobody has this"), true).await;
    let (st, body) = http("POST", &format!("{rest}/pins/{missing}"), None)
        .await
        .unwrap();
    assert_eq!(st, 200, "{body}");
    wait_status(&rest, &missing, &me, "pinning", 20, &peer.log_tail()).await;
    let failed = wait_status(&rest, &missing, &me, "pin_error", 30, &peer.log_tail()).await;
    assert!(
        failed["error"]
            .as_str()
            .unwrap_or("")
            .contains("pin_timeout"),
        "{failed}"
    );
    let attempts = failed["attempt_count"].as_u64().unwrap_or(0);
    assert!(attempts >= 1, "{failed}");
    // recover re-queues it: it is worked on again and fails again, one attempt more.
    let (st, body) = http("POST", &format!("{rest}/pins/{missing}/recover"), None)
        .await
        .unwrap();
    assert_eq!(st, 200, "{body}");
    let rec: Value = serde_json::from_str(&body).unwrap();
    let s = rec["peer_map"][&me]["status"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(s == "pin_queued" || s == "pinning", "after recover: {rec}");
    let again = wait_status(&rest, &missing, &me, "pin_error", 30, &peer.log_tail()).await;
    assert!(
        again["attempt_count"].as_u64().unwrap_or(0) > attempts,
        "attempts did not grow: {failed} then {again}"
    );
    // The CID is not lost from the state.
    let (_, allocs) = http("GET", &format!("{rest}/allocations"), None)
        .await
        .unwrap();
    assert!(allocs.contains(&missing), "{allocs}");

    // Pinned, then removed behind the cluster's back, then repaired by recover.
    let cid = add(&ipfs, &unique("pinned then removed"), false).await;
    let (st, body) = http("POST", &format!("{rest}/pins/{cid}"), None)
        .await
        .unwrap();
    assert_eq!(st, 200, "{body}");
    wait_status(&rest, &cid, &me, "pinned", 30, &peer.log_tail()).await;
    let (st, body) = http(
        "POST",
        &format!("{}/api/v0/pin/rm?arg={cid}", ipfs.api_url()),
        None,
    )
    .await
    .unwrap();
    assert_eq!(st, 200, "ipfs pin rm: {body}");
    let gone = wait_status(
        &rest,
        &cid,
        &me,
        "unexpectedly_unpinned",
        20,
        &peer.log_tail(),
    )
    .await;
    assert!(!gone["error"].as_str().unwrap_or("").is_empty(), "{gone}");
    let (st, body) = http("POST", &format!("{rest}/pins/{cid}/recover"), None)
        .await
        .unwrap();
    assert_eq!(st, 200, "{body}");
    wait_status(&rest, &cid, &me, "pinned", 30, &peer.log_tail()).await;
    assert!(
        ipfs.pins().await.unwrap().contains(&cid),
        "recover did not re-pin"
    );

    // The daemon goes away. Content for a pin requested meanwhile is already in its repo.
    let queued = add(&ipfs, &unique("queued while down"), false).await;
    ipfs.stop().await;
    let down = wait_status(&rest, &cid, &me, "cluster_error", 20, &peer.log_tail()).await;
    let err = down["error"].as_str().unwrap_or("");
    assert!(err.contains("IPFS") || err.contains("ipfs"), "{down}");
    let (st, body) = http("POST", &format!("{rest}/pins/{queued}"), None)
        .await
        .unwrap();
    assert_eq!(st, 200, "pinning while IPFS is down is accepted: {body}");
    let q = wait_status(&rest, &queued, &me, "pin_queued", 20, &peer.log_tail()).await;
    assert_eq!(
        q["attempt_count"].as_u64().unwrap_or(0),
        0,
        "attempt burnt: {q}"
    );
    // While waiting, the connector does not spin (a busy loop would use ~100% of a core).
    let conn = connector_pid(daemon.pid()).expect("the ipfs connector process");
    let (t0, c0) = (Instant::now(), cpu_ticks(conn));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ticks = cpu_ticks(conn) - c0;
    let secs = t0.elapsed().as_secs_f64();
    // 100 ticks/s on Linux; half a core is far above any idle wait.
    assert!(
        (ticks as f64) < secs * 50.0,
        "connector used {ticks} ticks in {secs:.1}s while the daemon was down"
    );
    assert_eq!(
        pin_info(&rest, &queued, &me).await["status"],
        "pin_queued",
        "queued work changed state while the daemon was down"
    );

    // The daemon is back: queued work is done, earlier pins are reported again.
    ipfs.restart().await.expect("restarting Kubo");
    wait_status(&rest, &queued, &me, "pinned", 30, &peer.log_tail()).await;
    wait_status(&rest, &cid, &me, "pinned", 30, &peer.log_tail()).await;
    let pins = ipfs.pins().await.unwrap();
    assert!(pins.contains(&queued) && pins.contains(&cid), "{pins:?}");
    let (_, allocs) = http("GET", &format!("{rest}/allocations"), None)
        .await
        .unwrap();
    for c in [&missing, &cid, &queued] {
        assert!(allocs.contains(c.as_str()), "{c} lost: {allocs}");
    }
    ipfs.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipfs_proxy_serves_an_unmodified_client_flow() {
    let tmp = tempfile::tempdir().unwrap();
    let ipfs = IpfsNode::start(tmp.path()).await.expect("IPFS test node");
    let peer = PeerDir::init(&tmp.path().join("peer"), &ipfs.multiaddr(), None).unwrap();
    let _daemon = peer.start(&[]).await.unwrap();
    let rest = peer.rest_url();
    let me = peer_id(&rest).await;
    let proxy = format!("http://127.0.0.1:{}", peer.ports.proxy);
    wait_for(Duration::from_secs(20), || async {
        matches!(
            http("POST", &format!("{proxy}/api/v0/version"), None).await,
            Ok((200, _))
        )
    })
    .await
    .unwrap_or_else(|_| panic!("proxy never answered; log:\n{}", peer.log_tail()));

    // `ipfs add` (pin=true is Kubo's default) through the proxy.
    let data = unique("added through the proxy");
    let lines = multipart_add(
        &format!("{proxy}/api/v0/add?stream-channels=true&pin=true&progress=false"),
        &data,
    )
    .await;
    let cid = lines.last().unwrap()["Hash"].as_str().unwrap().to_string();
    assert_eq!(lines.last().unwrap()["Name"], "hello.txt", "{lines:?}");

    // The cluster state has it, allocated to this peer (empty allocations = everyone).
    let pin = get_json(&format!("{rest}/allocations/{cid}"))
        .await
        .unwrap();
    let allocs = pin["allocations"].as_array().cloned().unwrap_or_default();
    assert!(
        allocs.is_empty() || allocs.iter().any(|a| a == &Value::String(me.clone())),
        "{pin}"
    );
    wait_status(&rest, &cid, &me, "pinned", 30, &peer.log_tail()).await;
    assert!(ipfs.pins().await.unwrap().contains(&cid));

    // `ipfs pin ls` through the proxy (the CLI streams).
    let (st, body) = http(
        "POST",
        &format!("{proxy}/api/v0/pin/ls?arg={cid}&type=all&stream=true"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(st, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Cid"], cid.as_str(), "{body}");
    let (st, body) = http("POST", &format!("{proxy}/api/v0/pin/ls"), None)
        .await
        .unwrap();
    assert_eq!(st, 200, "{body}");
    assert!(body.contains(&cid), "{body}");

    // The cluster's add parameters apply to the cluster pin (as upstream's proxy add).
    let opt = multipart_add(
        &format!("{proxy}/api/v0/add?pin=true&name=proxied&replication-min=1&replication-max=1&meta-kind=proxy"),
        &unique("added with cluster options"),
    )
    .await;
    let ocid = opt.last().unwrap()["Hash"].as_str().unwrap().to_string();
    let pin = get_json(&format!("{rest}/allocations/{ocid}"))
        .await
        .unwrap();
    assert_eq!(pin["name"], "proxied", "{pin}");
    assert_eq!(pin["replication_factor_min"], 1, "{pin}");
    assert_eq!(pin["replication_factor_max"], 1, "{pin}");
    assert_eq!(pin["metadata"]["kind"], "proxy", "{pin}");
    let (st, body) = http(
        "POST",
        &format!("{proxy}/api/v0/add?pin=true&replication-min=x"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(st, 400, "bad cluster option through the proxy: {body}");

    // `add --pin=false` is forwarded untouched: nothing enters the cluster.
    let unpinned = multipart_add(
        &format!("{proxy}/api/v0/add?pin=false"),
        &unique("not pinned"),
    )
    .await;
    let ucid = unpinned.last().unwrap()["Hash"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, _) = http("GET", &format!("{rest}/allocations/{ucid}"), None)
        .await
        .unwrap();
    assert_eq!(st, 404, "add pin=false entered the cluster");

    // pin/update: the new CID replaces the old one in the cluster.
    let (st, body) = http(
        "POST",
        &format!("{proxy}/api/v0/pin/update?arg={cid}&arg={ucid}"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        serde_json::json!({"Pins": [cid, ucid]})
    );
    let (st, _) = http("GET", &format!("{rest}/allocations/{cid}"), None)
        .await
        .unwrap();
    assert_eq!(st, 404, "pin/update left the old CID pinned");
    wait_status(&rest, &ucid, &me, "pinned", 30, &peer.log_tail()).await;

    // repo/stat: numbers summed over the members.
    let (st, body) = http("POST", &format!("{proxy}/api/v0/repo/stat"), None)
        .await
        .unwrap();
    assert_eq!(st, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["RepoSize"].as_u64().unwrap_or(0) > 0, "{body}");
    assert!(v["StorageMax"].is_u64(), "{body}");

    // block/put?pin=true: the block is stored by the daemon and pinned by the cluster.
    let (st, body) = multipart_post(
        &format!("{proxy}/api/v0/block/put?pin=true&cid-codec=raw&format=raw&mhtype=sha2-256"),
        &unique("a raw block"),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let bcid = serde_json::from_str::<Value>(body.trim()).unwrap()["Key"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, body) = http("GET", &format!("{rest}/allocations/{bcid}"), None)
        .await
        .unwrap();
    assert_eq!(st, 200, "block/put?pin=true not in the cluster: {body}");

    // dag/put?pin=true: same for the DAG node.
    let doc = format!("{{\"hello\":\"{}\"}}", std::process::id());
    let (st, body) = multipart_post(
        &format!("{proxy}/api/v0/dag/put?pin=true&store-codec=dag-cbor&input-codec=dag-json"),
        doc.as_bytes(),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let dcid = serde_json::from_str::<Value>(body.trim()).unwrap()["Cid"]["/"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, body) = http("GET", &format!("{rest}/allocations/{dcid}"), None)
        .await
        .unwrap();
    assert_eq!(st, 200, "dag/put?pin=true not in the cluster: {body}");

    // pin/rm through the proxy.
    let (st, body) = http("POST", &format!("{proxy}/api/v0/pin/rm?arg={ucid}"), None)
        .await
        .unwrap();
    assert_eq!(st, 200, "{body}");
    wait_for(Duration::from_secs(30), || async {
        !ipfs.pins().await.unwrap_or_default().contains(&ucid)
    })
    .await
    .expect("pin/rm through the proxy did not unpin on the daemon");
}

/// One request with headers; (status, headers, body).
async fn send_with_headers(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
) -> (u16, hyper::HeaderMap, String) {
    use http_body_util::BodyExt;
    let mut b = hyper::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b.body(Full::new(Bytes::new())).unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let resp = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .expect("answer in time")
        .unwrap();
    let status = resp.status().as_u16();
    let h = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, h, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipfs_proxy_headers_version_and_access_log_with_a_real_daemon() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ipfs = IpfsNode::start(tmp.path()).await.expect("IPFS test node");
    // The web origin below is one the daemon's own CORS allows (Kubo allows none by default,
    // and then the proxy refuses that page's calls to hijacked routes too).
    ipfs.set_config(
        "API.HTTPHeaders.Access-Control-Allow-Origin",
        r#"["http://127.0.0.1:5001"]"#,
    )
    .await
    .unwrap();
    let peer = PeerDir::init(&tmp.path().join("peer"), &ipfs.multiaddr(), None).unwrap();
    edit_service_json(&peer.dir, |v| {
        v["api"]["ipfsproxy"]["log_file"] = "proxy-access.log".into();
        v["api"]["ipfsproxy"]["extract_headers_extra"] = serde_json::json!(["X-Not-Sent"]);
    });
    let _daemon = peer.start(&[]).await.unwrap();
    let proxy = format!("http://127.0.0.1:{}", peer.ports.proxy);
    let daemon = format!("http://127.0.0.1:{}", ipfs.api_port);

    // `ipfs version` answers through the proxy: forwarded, the daemon's own answer.
    let url = format!("{proxy}/api/v0/version");
    wait_for(Duration::from_secs(20), || async {
        matches!(http("POST", &url, None).await, Ok((200, _)))
    })
    .await
    .unwrap_or_else(|_| panic!("proxy never answered; log:\n{}", peer.log_tail()));
    let (st, h, body) = send_with_headers("POST", &url, &[]).await;
    assert_eq!(st, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let (_, _, direct) = send_with_headers("POST", &format!("{daemon}/api/v0/version"), &[]).await;
    let direct: Value = serde_json::from_str(&direct).unwrap();
    assert_eq!(v["Version"], direct["Version"], "{body}");
    assert!(
        v["Version"].as_str().is_some_and(|s| !s.is_empty()),
        "{body}"
    );
    assert!(
        !h.get("server")
            .and_then(|s| s.to_str().ok())
            .unwrap_or("")
            .starts_with("ipfs-cluster/ipfsproxy/"),
        "forwarded answers are the daemon's"
    );

    // A hijacked call from an origin the daemon allows carries our headers and the CORS
    // headers the daemon's own preflight gives for the same Origin.
    let origin = "http://127.0.0.1:5001";
    let (st, h, body) = send_with_headers(
        "POST",
        &format!("{proxy}/api/v0/pin/ls"),
        &[("origin", origin)],
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        h["server"].to_str().unwrap(),
        format!("ipfs-cluster/ipfsproxy/{}", env!("CARGO_PKG_VERSION")),
        "{h:?}"
    );
    assert_eq!(h["content-type"], "application/json");
    let (_, pre, _) = send_with_headers(
        "OPTIONS",
        &format!("{daemon}/api/v0/pin/ls"),
        &[
            ("origin", origin),
            ("access-control-request-method", "POST"),
        ],
    )
    .await;
    for n in [
        "access-control-allow-origin",
        "access-control-allow-credentials",
    ] {
        assert_eq!(
            h.get(n),
            pre.get(n),
            "{n}: proxy {h:?} vs daemon preflight {pre:?}"
        );
    }
    assert!(
        h.get("x-not-sent").is_none(),
        "absent at the daemon = absent here"
    );

    // Both calls are in the access log file (relative path = under the config folder).
    let log = peer.dir.join("proxy-access.log");
    wait_for(Duration::from_secs(10), || async {
        let t = std::fs::read_to_string(&log).unwrap_or_default();
        t.contains("\"POST /api/v0/version HTTP/1.1\" 200")
            && t.contains("\"POST /api/v0/pin/ls HTTP/1.1\" 200")
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "access log lines missing:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    let t = std::fs::read_to_string(&log).unwrap();
    assert!(t.lines().all(|l| l.starts_with("127.0.0.1 - - [")), "{t}");
}
