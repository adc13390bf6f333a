//! The connector against a real Kubo daemon, fed by the test kit's fake consensus
//! (`FakeConsensus`): a log the test appends to and a record of the index every `Watch`
//! resumes from, which a real raft cluster cannot be driven to or asked for. Pin lands on the daemon, statuses, unpin, remote, stalled pin -> pin_error and
//! recover, pin removed behind the cluster's back, restart resumes from the stored
//! index (an old-format state file is dropped and a full sync taken instead), daemon down -> clear errors and queued work resumes when it is back.

mod common;

use std::time::{Duration, Instant};

use common::Ipfs;
use ipfs_cluster_ipfs_connector::{kubo::PinKind, run, settings::Settings, Options};
use ipfs_cluster_proto::{
    client::{self, IpfsConnectorClient},
    ipfsconnector::v1::{StatusAllRequest, StatusRequest},
    types::v1::{Empty, Pin, PinInfo, TrackerStatus},
    InternalToken,
};
use ipfs_cluster_testkit::{free_port, loopback_listener, FakeConsensus};
use tokio_util::sync::CancellationToken;

struct Connector {
    client: IpfsConnectorClient,
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

impl Connector {
    async fn start(opts: Options, consensus: std::net::SocketAddr, token: &InternalToken) -> Self {
        let l = loopback_listener().await.unwrap();
        let addr = l.local_addr().unwrap();
        let settings = Settings {
            opts,
            token: token.clone(),
            connector_addr: addr,
            consensus_addr: consensus,
            transport_addr: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
            allow_remote_internal: false,
            proxy: None,
            metrics: None,
        };
        let stop = CancellationToken::new();
        let s2 = stop.clone();
        let handle = tokio::spawn(async move {
            run::run_with(l, settings, s2)
                .await
                .expect("connector runs")
        });
        Self {
            client: client::ipfs_connector(addr, token),
            stop,
            handle,
        }
    }
    async fn shutdown(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.handle)
            .await
            .expect("connector stops");
    }
    async fn status(&mut self, cid: &str) -> PinInfo {
        self.client
            .status(StatusRequest { cid: cid.into() })
            .await
            .expect("status")
            .into_inner()
    }
    /// Polls Status until `want` (panics after `secs`).
    async fn wait_status(&mut self, cid: &str, want: TrackerStatus, secs: u64) -> PinInfo {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            let i = self.status(cid).await;
            if i.status == want as i32 {
                return i;
            }
            if Instant::now() > end {
                panic!(
                    "{cid}: wanted {want:?}, still {:?} ({})",
                    TrackerStatus::try_from(i.status),
                    i.error
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn pin(cid: &str, allocations: &[&str]) -> Pin {
    Pin {
        cid: cid.into(),
        r#type: 1,
        allocations: allocations.iter().map(|s| s.to_string()).collect(),
        max_depth: -1,
        timestamp: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
        ..Default::default()
    }
}

/// A CID nobody has (random raw-codec CIDv1).
fn unfindable_cid() -> String {
    let mut digest = [0u8; 32];
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    for (i, b) in digest.iter_mut().enumerate() {
        *b = (seed >> ((i % 16) * 8)) as u8 ^ (i as u8).wrapping_mul(31) ^ std::process::id() as u8;
    }
    let mh = cid::multihash::Multihash::<64>::wrap(0x12, &digest).unwrap();
    cid::Cid::new_v1(0x55, mh).to_string()
}

const ME: &str = "12D3KooWConnectorTestPeer";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_flow_against_kubo() {
    let t0 = Instant::now();
    let step = |what: &str| eprintln!("[{:>6.1}s] {what}", t0.elapsed().as_secs_f64());
    let tmp = tempfile::tempdir().unwrap();
    let mut node = Ipfs::start(&tmp.path().join("ipfs")).await;
    let kubo = node.kubo();
    let cid_a = node.add(b"connector test content A\n").await;
    let cid_b = node.add(b"connector test content B\n").await;
    let cid_c = node.add(b"connector test content C\n").await;

    let token = InternalToken::generate();
    let fake = FakeConsensus::default();
    let served = fake.serve(None, &token).await.unwrap();
    let caddr = served.addr;
    let state_dir = tmp.path().join("cfg");
    std::fs::create_dir_all(&state_dir).unwrap();
    // A state file of the earlier format is dropped (a full sync rebuilds the store).
    std::fs::write(
        state_dir.join("ipfs-connector-state.bin"),
        b"IPCTRK1\n\x05\0\0\0\0\0\0\0",
    )
    .unwrap();
    let mut opts = Options::with_defaults(ME, state_dir.clone());
    opts.node_multiaddress = node.multiaddr();
    opts.peername = "tester".into();
    opts.pin_timeout = Duration::from_secs(2);
    opts.freespace_ttl = None;
    opts.pinqueue_ttl = None;
    opts.tags = None;
    opts.pin_recover_interval = Duration::from_secs(3600);
    let mut c = Connector::start(opts.clone(), caddr, &token).await;

    step("node up, connector started");
    // Before any state: a clear cluster_error, not a wrong "unpinned".
    let i = c.status(&cid_a).await;
    assert!(
        i.status == TrackerStatus::ClusterError as i32
            || i.status == TrackerStatus::Unpinned as i32,
        "{i:?}"
    );

    // Pin everywhere -> lands on the daemon.
    fake.push_pin(pin(&cid_a, &[]));
    let i = c.wait_status(&cid_a, TrackerStatus::Pinned, 20).await;
    assert_eq!(i.peer, ME);
    assert_eq!(i.peername, "tester");
    assert!(!i.ipfs_peer_id.is_empty());
    assert_eq!(
        kubo.pin_ls_cid(&cid_a, PinKind::Recursive).await.unwrap(),
        Some(PinKind::Recursive)
    );

    step("pinned");
    // Allocated elsewhere -> remote, and not pinned here.
    fake.push_pin(pin(&cid_b, &["12D3KooWSomeoneElse"]));
    c.wait_status(&cid_b, TrackerStatus::Remote, 10).await;
    assert_eq!(
        kubo.pin_ls_cid(&cid_b, PinKind::Recursive).await.unwrap(),
        None
    );

    // Unknown CID -> unpinned; bad CID -> INVALID_ARGUMENT naming it.
    assert_eq!(
        c.status(&cid_c).await.status,
        TrackerStatus::Unpinned as i32
    );
    let e = c
        .client
        .status(StatusRequest {
            cid: "not-a-cid".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("not-a-cid"), "{}", e.message());

    // StatusAll filtered on pinned.
    let mut s = c
        .client
        .status_all(StatusAllRequest {
            filter: TrackerStatus::Pinned as u32,
        })
        .await
        .unwrap()
        .into_inner();
    let mut got = vec![];
    while let Some(i) = s.message().await.unwrap() {
        got.push(i.cid);
    }
    assert_eq!(got, vec![cid_a.clone()]);

    step("status-all");
    // Unpin -> gone from the daemon.
    fake.push_unpin(&cid_a);
    c.wait_status(&cid_a, TrackerStatus::Unpinned, 10).await;
    let end = Instant::now() + Duration::from_secs(10);
    while kubo
        .pin_ls_cid(&cid_a, PinKind::Recursive)
        .await
        .unwrap()
        .is_some()
    {
        assert!(Instant::now() < end, "unpin never reached the daemon");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    step("unpinned");
    // A CID nobody has: pinning, then pin_error after the no-progress timeout; recover re-queues.
    let lost = unfindable_cid();
    fake.push_pin(pin(&lost, &[ME]));
    c.wait_status(&lost, TrackerStatus::Pinning, 10).await;
    let i = c.wait_status(&lost, TrackerStatus::PinError, 15).await;
    assert!(i.error.contains("no progress"), "{}", i.error);
    assert_eq!(i.attempt_count, 1);
    let i = c
        .client
        .recover(StatusRequest { cid: lost.clone() })
        .await
        .unwrap()
        .into_inner();
    assert!(
        i.status == TrackerStatus::PinQueued as i32 || i.status == TrackerStatus::Pinning as i32,
        "{i:?}"
    );
    let i = c.wait_status(&lost, TrackerStatus::PinError, 15).await;
    assert_eq!(i.attempt_count, 2);

    step("pin_error + recover");
    // Removed behind the cluster's back -> unexpectedly_unpinned -> recover repairs it.
    fake.push_pin(pin(&cid_c, &[]));
    c.wait_status(&cid_c, TrackerStatus::Pinned, 20).await;
    kubo.pin_rm(&cid_c, &CancellationToken::new())
        .await
        .unwrap();
    let i = c
        .wait_status(&cid_c, TrackerStatus::UnexpectedlyUnpinned, 5)
        .await;
    assert_eq!(i.error, "the item should be pinned but it is not");
    c.client
        .recover(StatusRequest { cid: cid_c.clone() })
        .await
        .unwrap();
    c.wait_status(&cid_c, TrackerStatus::Pinned, 20).await;

    step("unexpectedly_unpinned repaired");
    // IpfsId and RepoStat reach the daemon.
    let id = c.client.ipfs_id(Empty {}).await.unwrap().into_inner();
    assert!(
        id.error.is_empty() && id.id.starts_with("12D3Koo"),
        "{id:?}"
    );
    let rs = c.client.repo_stat(Empty {}).await.unwrap().into_inner();
    assert!(rs.storage_max > rs.repo_size && rs.repo_size > 0, "{rs:?}");

    step("id/repo stat");
    // Restart: the index is persisted; a change made while down is applied on resume.
    let last = fake.last_index();
    c.shutdown().await;
    assert!(state_dir.join("ipfs-connector.redb").exists());
    assert!(!state_dir.join("ipfs-connector-state.bin").exists());
    fake.push_unpin(&cid_c);
    let mut c = Connector::start(opts.clone(), caddr, &token).await;
    c.wait_status(&cid_c, TrackerStatus::Unpinned, 10).await;
    let froms = fake.watch_froms();
    assert_eq!(froms.first(), Some(&0), "first start takes a full sync");
    assert_eq!(
        froms.last(),
        Some(&(last - 1)),
        "restart resumes one entry before the persisted index (the last entry is replayed whole): {froms:?}"
    );
    assert_eq!(
        c.status(&cid_b).await.status,
        TrackerStatus::Remote as i32,
        "state survived the restart"
    );

    step("restart resumed");
    // Daemon down: statuses say so, queued work waits and resumes when it is back.
    node.stop().await;
    fake.push_pin(pin(&cid_a, &[]));
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let i = c.status(&cid_a).await;
        if i.status == TrackerStatus::ClusterError as i32
            || i.status == TrackerStatus::PinQueued as i32
        {
            if i.status == TrackerStatus::ClusterError as i32 {
                assert!(
                    i.error.contains("cannot reach the IPFS daemon"),
                    "{}",
                    i.error
                );
            }
            break;
        }
        assert!(
            Instant::now() < end,
            "status while the daemon is down: {i:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let id = c.client.ipfs_id(Empty {}).await.unwrap().into_inner();
    assert!(id.error.contains("cannot reach the IPFS daemon"), "{id:?}");
    let e = c.client.repo_stat(Empty {}).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable);
    node.spawn().await;
    c.wait_status(&cid_a, TrackerStatus::Pinned, 30).await;
    c.shutdown().await;
    node.stop().await;
}

/// The IPFS proxy: pin/add becomes a cluster pin (and lands on the daemon through the
/// tracker), pin/ls answers from the cluster state, pin/rm unpins, unknown paths are
/// forwarded to the daemon, pin/update without both paths is Kubo's 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipfs_proxy_against_kubo() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = Ipfs::start(&tmp.path().join("ipfs")).await;
    let kubo = node.kubo();
    let cid = node.add(b"proxy test content\n").await;
    let token = InternalToken::generate();
    let fake = FakeConsensus::default();
    let served = fake.serve(None, &token).await.unwrap();
    let caddr = served.addr;
    let state_dir = tmp.path().join("cfg");
    std::fs::create_dir_all(&state_dir).unwrap();
    let mut opts = Options::with_defaults(ME, state_dir);
    opts.node_multiaddress = node.multiaddr();
    opts.freespace_ttl = None;
    opts.pinqueue_ttl = None;
    opts.tags = None;
    let proxy_port = free_port();
    let l = loopback_listener().await.unwrap();
    let addr = l.local_addr().unwrap();
    let settings = Settings {
        opts,
        token: token.clone(),
        connector_addr: addr,
        consensus_addr: caddr,
        transport_addr: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        allow_remote_internal: false,
        proxy: Some(ipfs_cluster_ipfs_connector::proxy::ProxyConfig::new(
            vec![format!("127.0.0.1:{proxy_port}").parse().unwrap()],
            ipfs_cluster_ipfs_connector::parse_node_multiaddress(&node.multiaddr()).unwrap(),
        )),
        metrics: None,
    };
    let stop = CancellationToken::new();
    let s2 = stop.clone();
    let h = tokio::spawn(async move {
        run::run_with(l, settings, s2)
            .await
            .expect("connector runs")
    });
    let mut c = Connector {
        client: client::ipfs_connector(addr, &token),
        stop,
        handle: h,
    };
    let via = ipfs_cluster_ipfs_connector::Kubo::new(
        ipfs_cluster_ipfs_connector::NodeAddr::Tcp(format!("127.0.0.1:{proxy_port}")),
        Default::default(),
        false,
    );
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Forwarded: version answers through the proxy.
    let resp = via
        .post("version", "", None)
        .await
        .expect("version through the proxy");
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert!(
        String::from_utf8_lossy(&body).contains("Version"),
        "{body:?}"
    );

    // pin/add -> cluster state -> tracker pins it on the daemon.
    let resp = via
        .post("pin/add", &format!("arg={cid}"), None)
        .await
        .expect("pin/add");
    assert_eq!(
        resp.headers()["server"].to_str().unwrap(),
        format!("ipfs-cluster/ipfsproxy/{}", ipfs_cluster_proto::VERSION)
    );
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
        serde_json::json!({"Pins": [cid]})
    );
    c.wait_status(&cid, TrackerStatus::Pinned, 20).await;
    assert!(kubo
        .pin_ls_cid(&cid, PinKind::Recursive)
        .await
        .unwrap()
        .is_some());

    // pin/ls answers from the cluster state.
    let resp = via
        .post("pin/ls", &format!("arg={cid}"), None)
        .await
        .expect("pin/ls");
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
        serde_json::json!({"Keys": {cid.clone(): {"Type": "recursive"}}})
    );
    let resp = via
        .post("pin/ls", "stream=true", None)
        .await
        .expect("pin/ls stream");
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(
        String::from_utf8_lossy(&body),
        format!("{{\"Cid\":\"{cid}\",\"Type\":\"recursive\"}}\n")
    );

    // pin/update needs two paths: Kubo's 400 error shape.
    let e = via
        .post("pin/update", &format!("arg={cid}"), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Code: 400") && e.contains("argument \"to-path\" is required"),
        "{e}"
    );

    // pin/rm -> unpinned on the daemon; a second pin/rm is the cluster's error, as upstream's
    // proxy answers it (tests/compat.rs compares this with upstream's proxy).
    via.post("pin/rm", &format!("arg={cid}"), None)
        .await
        .expect("pin/rm");
    c.wait_status(&cid, TrackerStatus::Unpinned, 10).await;
    let e = via
        .post("pin/rm", &format!("arg={cid}"), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("pin is not part of the pinset"), "{e}");
    let e = via
        .post("pin/ls", &format!("arg={cid}"), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("Error: path '{cid}' is not pinned")),
        "{e}"
    );
    c.shutdown().await;
    node.stop().await;
}
