//! Three peers on loopback, each with its own real IPFS node, sharing a cluster secret:
//! two join the first with `--bootstrap`, a pin sent to a follower is replicated to every
//! peer (replication -1) and pinned on every IPFS node, and every peer reports it.

use std::time::Duration;

use ipfs_cluster_tests::*;

async fn statuses(rest: &str, cid: &str) -> Vec<String> {
    let Ok(v) = get_json(&format!("{rest}/pins/{cid}")).await else {
        return vec![];
    };
    v["peer_map"]
        .as_object()
        .map(|m| {
            m.values()
                .filter_map(|p| p["status"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

async fn peer_count(rest: &str) -> usize {
    match http("GET", &format!("{rest}/peers"), None).await {
        Ok((200, body)) => body.lines().filter(|l| l.contains("\"id\"")).count(),
        _ => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_peers_replicate_a_pin_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs: Vec<_> = (0..3).map(|i| tmp.path().join(format!("n{i}"))).collect();
    for d in &dirs {
        std::fs::create_dir_all(d).unwrap();
    }
    let (a, b, c) = tokio::join!(
        IpfsNode::start(&dirs[0]),
        IpfsNode::start(&dirs[1]),
        IpfsNode::start(&dirs[2])
    );
    let ipfs = [a.unwrap(), b.unwrap(), c.unwrap()];
    // The Kubo test nodes have no bootstrap peers or DHT: connect them so they can fetch
    // from each other.
    for n in &ipfs[1..] {
        n.connect(&ipfs[0]).await.unwrap();
    }

    let secret = "5e".repeat(32);
    let peers: Vec<PeerDir> = (0..3)
        .map(|i| PeerDir::init(&dirs[i].join("peer"), &ipfs[i].multiaddr(), Some(&secret)).unwrap())
        .collect();
    let _d0 = peers[0].start(&[]).await.unwrap();
    let id = get_json(&format!("{}/id", peers[0].rest_url()))
        .await
        .unwrap();
    let boot = format!(
        "/ip4/127.0.0.1/tcp/{}/p2p/{}",
        peers[0].ports.swarm,
        id["id"].as_str().unwrap()
    );
    let _d1 = peers[1].start(&["--bootstrap", &boot]).await.unwrap();
    let _d2 = peers[2].start(&["--bootstrap", &boot]).await.unwrap();

    for p in &peers {
        wait_for(Duration::from_secs(30), || async {
            peer_count(&p.rest_url()).await == 3
        })
        .await
        .unwrap_or_else(|_| panic!("peer does not see 3 peers; log:\n{}", p.log_tail()));
    }

    let cid = ipfs[0].add(b"replicated by three peers\n").await.unwrap();
    let (st, body) = http("POST", &format!("{}/pins/{cid}", peers[2].rest_url()), None)
        .await
        .unwrap();
    assert_eq!(st, 200, "pin through a follower: {body}");

    for p in &peers {
        wait_for(Duration::from_secs(60), || async {
            let s = statuses(&p.rest_url(), &cid).await;
            s.len() == 3 && s.iter().all(|x| x == "pinned")
        })
        .await
        .unwrap_or_else(|_| panic!("not pinned everywhere; log:\n{}", p.log_tail()));
    }
    for n in &ipfs {
        assert!(
            n.pins().await.unwrap().contains(&cid),
            "an IPFS node lacks the pin"
        );
    }

    // Unpin through another follower: gone from every IPFS node.
    let (st, body) = http(
        "DELETE",
        &format!("{}/pins/{cid}", peers[1].rest_url()),
        None,
    )
    .await
    .unwrap();
    assert_eq!(st, 200, "{body}");
    for n in &ipfs {
        wait_for(Duration::from_secs(30), || async {
            !n.pins().await.unwrap_or_default().contains(&cid)
        })
        .await
        .expect("unpin did not reach every IPFS node");
    }
}
