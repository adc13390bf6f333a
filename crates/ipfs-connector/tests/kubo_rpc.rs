//! Every Kubo RPC answer the connector relies on, asked of the real daemon (the pinned
//! Kubo of deploy/local/kubo.sh): id, version, repo/stat numbers, pin/ls and pin/rm of a
//! CID that is not pinned (Kubo's texts), pin/add streaming `Progress` while it fetches
//! from another node, the no-progress watchdog on content nobody has, pin/update, pin/ls
//! streaming hundreds of pins, repo/gc, block/put with each codec and CID version (and
//! several parts in one request, `block_put_many`), swarm/connect and swarm/peers, resolve.

mod common;

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::Ipfs;
use ipfs_cluster_ipfs_connector::{
    kubo::{KuboError, NdJson, PinKind},
    BlockToPut, Kubo, NodeAddr, Timeouts,
};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

/// Deterministic pseudo-random bytes (xorshift), so content is unique per seed.
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// The multihash of a CID string.
fn mh(cid: &str) -> Vec<u8> {
    cid::Cid::try_from(cid).unwrap().hash().to_bytes()
}

fn client(node: &Ipfs, pin_timeout: Duration) -> Kubo {
    Kubo::new(
        NodeAddr::Tcp(format!("127.0.0.1:{}", node.node.api_port)),
        Timeouts {
            request: Duration::from_secs(20),
            pin: pin_timeout,
            ..Default::default()
        },
        false,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubo_answers_what_the_connector_expects() {
    let tmp = tempfile::tempdir().unwrap();
    let (da, db) = (tmp.path().join("a"), tmp.path().join("b"));
    let (a, b) = tokio::join!(Ipfs::start(&da), Ipfs::start(&db));
    let ka = client(&a, Duration::from_secs(10));
    let kb = client(&b, Duration::from_secs(10));
    let none = CancellationToken::new();

    // id: the daemon's peer id and parseable addresses (what ConnectSwarms dials).
    let id = ka.id().await.unwrap();
    assert_eq!(id.id, a.node.id);
    assert!(
        id.addresses
            .iter()
            .any(|x| x.contains(&format!("/tcp/{}", a.node.swarm_port))),
        "{id:?}"
    );

    // version: forwarded by the proxy as is; Kubo answers JSON with "Version".
    let resp = ka.post("version", "", None).await.unwrap();
    let body = NdJson::new(resp.into_body(), "version")
        .rest()
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["Version"], "0.43.0", "{v}");

    // repo/stat: JSON numbers; StorageMax is the test profile's 10 GB.
    let st = ka.repo_stat().await.unwrap();
    assert_eq!(st.storage_max, 10_000_000_000);
    assert!(st.repo_size > 0);

    // A CID that is not pinned: pin/ls says so ("... is not pinned") and pin/rm's "not
    // pinned or pinned indirectly" counts as success.
    let cid = a.add(&bytes(100, seed())).await;
    assert_eq!(ka.pin_ls_cid(&cid, PinKind::Recursive).await.unwrap(), None);
    ka.pin_rm(&cid, &none).await.unwrap();

    // pin/add on B of a 2 MiB file only A has (8 blocks of 256 KiB + a root): B fetches it
    // over the connection and Kubo streams `Progress` lines (every 500 ms and at the end).
    kb.swarm_connect(&a.node.swarm_multiaddr()).await.unwrap();
    assert!(kb.swarm_peers().await.unwrap().contains(&a.node.id));
    let big = a.add(&bytes(2 << 20, seed())).await;
    let resp = kb
        .post("pin/add", &format!("arg={big}&progress=true"), None)
        .await
        .unwrap();
    let mut lines = NdJson::new(resp.into_body(), "pin/add");
    let (mut progress, mut pins) = (0u64, None);
    while let Some(l) = lines.next_line().await.unwrap() {
        let v: serde_json::Value = serde_json::from_slice(&l).unwrap();
        if let Some(p) = v["Progress"].as_u64() {
            progress = progress.max(p);
        }
        if v.get("Pins").is_some() {
            pins = Some(v["Pins"].clone());
        }
    }
    assert_eq!(progress, 9, "Progress counts the fetched nodes");
    assert_eq!(pins, Some(serde_json::json!([big])));
    assert_eq!(
        kb.pin_ls_cid(&big, PinKind::Recursive).await.unwrap(),
        Some(PinKind::Recursive)
    );

    // The watchdog: content nobody has makes no progress; the pin dies after one to two
    // pin_timeouts instead of hanging.
    let kb_fast = client(&b, Duration::from_secs(1));
    let nobody = a.node.add_many(&[bytes(64, seed())], true).await.unwrap()[0].clone();
    let t0 = Instant::now();
    let e = kb_fast.pin_add(&nobody, -1, &none).await.unwrap_err();
    assert!(matches!(e, KuboError::PinStalled { .. }), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());

    // pin/update keeps the old pin (unpin=false) and pins the new one.
    let (v1, v2) = (
        a.add(&bytes(300, seed())).await,
        a.add(&bytes(300, seed() ^ 7)).await,
    );
    ka.pin_add(&v1, -1, &none).await.unwrap();
    ka.pin_update(&v1, &v2, &none).await.unwrap();
    let all = ka.pin_ls_all().await.unwrap();
    assert_eq!(all.get(&v1), Some(&PinKind::Recursive));
    assert_eq!(all.get(&v2), Some(&PinKind::Recursive));

    // pin/ls streams many pins; direct pins (max_depth 0) are listed as direct.
    let files: Vec<Vec<u8>> = (0..300).map(|i| bytes(40, seed() + i)).collect();
    let many = a.node.add_many(&files, false).await.unwrap();
    for c in &many {
        ka.pin_add(c, -1, &none).await.unwrap();
    }
    let direct = a.add(&bytes(50, seed())).await;
    ka.pin_add(&direct, 0, &none).await.unwrap();
    let all = ka.pin_ls_all().await.unwrap();
    for c in &many {
        assert_eq!(all.get(c), Some(&PinKind::Recursive), "{c}");
    }
    assert_eq!(all.get(&direct), Some(&PinKind::Direct));

    // repo/gc removes what is no longer pinned and names each removed block. Kubo keys
    // its blockstore by multihash, so it names blocks as raw CIDv1 whatever CID they were
    // added under: compare multihashes.
    for c in &many[..10] {
        ka.pin_rm(c, &none).await.unwrap();
    }
    let removed: Vec<Vec<u8>> = ka
        .repo_gc()
        .await
        .unwrap()
        .into_iter()
        .map(|(k, e)| {
            assert!(e.is_empty(), "repo/gc error for {k}: {e}");
            mh(&k)
        })
        .collect();
    for c in &many[..10] {
        assert!(removed.contains(&mh(c)), "{c} was not collected");
    }
    assert!(
        !removed.contains(&mh(&many[10])),
        "a pinned block was collected"
    );

    // block/put with each codec and CID version: the multihash is sha2-256 of the bytes,
    // the codec the one asked for; CIDv0 for dag-pb when asked.
    let data = bytes(1000, seed());
    let want = Sha256::digest(&data);
    for (codec, code, version) in [
        ("raw", 0x55u64, 1),
        ("dag-pb", 0x70, 0),
        ("dag-pb", 0x70, 1),
        ("dag-cbor", 0x71, 1),
    ] {
        let payload = if codec == "dag-cbor" {
            // a CBOR byte string: valid dag-cbor
            let mut v = vec![0x59, (data.len() >> 8) as u8, data.len() as u8];
            v.extend_from_slice(&data);
            v
        } else if codec == "dag-pb" {
            // an empty dag-pb node with `data` as Data (field 1, bytes)
            let mut v = vec![0x0a, 0xe8, 0x07];
            v.extend_from_slice(&data);
            v
        } else {
            data.clone()
        };
        let (k, size) = ka
            .block_put(Bytes::from(payload.clone()), codec, "sha2-256", version)
            .await
            .unwrap_or_else(|e| panic!("block/put {codec} v{version}: {e}"));
        let c = cid::Cid::try_from(k.as_str()).unwrap();
        assert_eq!(c.codec(), code, "{codec} v{version}: {k}");
        assert_eq!(c.version() as i32, version, "{codec} v{version}: {k}");
        assert_eq!(size, payload.len() as u64);
        assert_eq!(
            c.hash().digest(),
            &Sha256::digest(&payload)[..],
            "{codec}: multihash"
        );
        if codec == "raw" {
            assert_eq!(c.hash().digest(), &want[..]);
        }
    }

    // Several parts in one block/put request (what upstream's BlockStream sends): one
    // answer line per part, in order.
    let parts: Vec<Vec<u8>> = (0..3).map(|i| bytes(200, seed() + 100 + i)).collect();
    let boundary = "kuborpcparts";
    let mut body = BytesMut::new();
    for p in &parts {
        body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes());
        body.extend_from_slice(p);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let resp = ka
        .post(
            "block/put",
            "cid-codec=raw&mhtype=sha2-256&mhlen=-1&pin=false&allow-big-block=true",
            Some((
                format!("multipart/form-data; boundary={boundary}"),
                body.freeze(),
            )),
        )
        .await
        .unwrap();
    let mut lines = NdJson::new(resp.into_body(), "block/put");
    let mut keys = Vec::new();
    while let Some(l) = lines.next_line().await.unwrap() {
        let v: serde_json::Value = serde_json::from_slice(&l).unwrap();
        keys.push(v["Key"].as_str().unwrap().to_string());
    }
    assert_eq!(keys.len(), 3, "{keys:?}");
    for (k, p) in keys.iter().zip(&parts) {
        let c = cid::Cid::try_from(k.as_str()).unwrap();
        assert_eq!(c.hash().digest(), &Sha256::digest(p)[..]);
    }

    // block_put_many: one request per run of blocks with the same parameters, answers in
    // the order of the blocks.
    let dag_pb = |d: &[u8]| {
        let mut v = vec![0x0a, d.len() as u8];
        v.extend_from_slice(d);
        v
    };
    let many: Vec<BlockToPut> = [
        ("raw", 1, bytes(100, seed() + 200)),
        ("raw", 1, bytes(120, seed() + 201)),
        ("dag-pb", 0, dag_pb(&bytes(30, seed() + 202))),
        ("dag-pb", 0, dag_pb(&bytes(40, seed() + 203))),
        ("raw", 1, Vec::new()),
    ]
    .into_iter()
    .map(|(format, cid_version, data)| BlockToPut {
        data: data.into(),
        format: format.into(),
        mhtype: "sha2-256".into(),
        cid_version,
    })
    .collect();
    let before = ka.requests_sent();
    let answers = ka.block_put_many(&many).await.unwrap();
    assert_eq!(ka.requests_sent() - before, 3, "one request per run");
    assert_eq!(answers.len(), many.len());
    for (b, (k, size)) in many.iter().zip(&answers) {
        let c = cid::Cid::try_from(k.as_str()).unwrap();
        assert_eq!(c.hash().digest(), &Sha256::digest(&b.data)[..], "{k}");
        assert_eq!(c.version() as i32, b.cid_version, "{k}");
        assert_eq!(*size, b.data.len() as u64);
    }

    // resolve: a path below a directory resolves to the file's CID.
    let resp = ka
        .post(
            "add",
            "pin=false&wrap-with-directory=true",
            Some((
                format!("multipart/form-data; boundary={boundary}"),
                Bytes::from(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.txt\"\r\nContent-Type: application/octet-stream\r\n\r\nresolve me {}\r\n--{boundary}--\r\n", seed())),
            )),
        )
        .await
        .unwrap();
    let out = NdJson::new(resp.into_body(), "add").rest().await.unwrap();
    let added: Vec<serde_json::Value> = out
        .split(|c| *c == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    let file = added.iter().find(|v| v["Name"] == "x.txt").unwrap()["Hash"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = added.iter().find(|v| v["Name"] == "").unwrap()["Hash"]
        .as_str()
        .unwrap()
        .to_string();
    let got = ka.resolve(&format!("/ipfs/{dir}/x.txt")).await.unwrap();
    assert_eq!(got, ipfs_cluster_ipfs_connector::kubo::canonical_cid(&file));
}
