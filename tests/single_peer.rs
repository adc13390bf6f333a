//! A single peer carries a real pin end to end: REST → consensus → ipfs connector → the
//! real IPFS node, status reports `pinned`, the pin survives a restart, and unpin removes it
//! from IPFS.

use std::time::Duration;

use ipfs_cluster_tests::*;

async fn peer_status(rest: &str, cid: &str) -> Option<String> {
    let v = get_json(&format!("{rest}/pins/{cid}")).await.ok()?;
    let map = v["peer_map"].as_object()?;
    map.values().next()?["status"].as_str().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_flows_to_ipfs_and_survives_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let ipfs = IpfsNode::start(tmp.path()).await.expect("IPFS test node");
    let peer = PeerDir::init(&tmp.path().join("peer"), &ipfs.multiaddr(), None).expect("init");
    let mut daemon = peer.start(&[]).await.expect("daemon");
    let rest = peer.rest_url();

    let id = get_json(&format!("{rest}/id")).await.unwrap();
    let peer_id = id["id"].as_str().unwrap().to_string();
    assert!(peer_id.starts_with("12D3KooW"), "{id}");
    assert_eq!(
        get_json(&format!("{rest}/version")).await.unwrap()["version"],
        "1.1.6"
    );

    let cid = ipfs.add(b"hello from the cluster test\n").await.unwrap();
    let (status, body) = http("POST", &format!("{rest}/pins/{cid}"), None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let pin: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(pin["cid"], cid.as_str());

    wait_for(Duration::from_secs(30), || async {
        peer_status(&rest, &cid).await.as_deref() == Some("pinned")
    })
    .await
    .unwrap_or_else(|_| panic!("never pinned; log:\n{}", peer.log_tail()));
    assert!(
        ipfs.pins().await.unwrap().contains(&cid),
        "the IPFS node does not hold the pin"
    );
    let status = get_json(&format!("{rest}/pins/{cid}")).await.unwrap();
    assert!(status["peer_map"][&peer_id].is_object(), "{status}");

    // Restart: the pin is still in the state.
    assert!(
        daemon.terminate(Duration::from_secs(20)).is_some(),
        "daemon did not stop on SIGTERM"
    );
    let _daemon = peer.start(&[]).await.expect("restart");
    let (status, body) = http("GET", &format!("{rest}/allocations"), None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&cid), "pin lost across restart: {body}");

    // Unpin: gone from the state and from IPFS.
    let (status, body) = http("DELETE", &format!("{rest}/pins/{cid}"), None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    wait_for(Duration::from_secs(30), || async {
        !ipfs.pins().await.unwrap_or_default().contains(&cid)
    })
    .await
    .expect("still pinned on IPFS after unpin");
    wait_for(Duration::from_secs(10), || async {
        peer_status(&rest, &cid).await.as_deref() == Some("unpinned")
    })
    .await
    .expect("status not unpinned");
}
