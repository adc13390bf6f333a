//! Faults real Kubo cannot be made to produce on demand, against a small Kubo-shaped fake
//! HTTP server (`FakeKubo`, canned answers taken from Kubo's source): `Progress` that
//! grows slowly or stalls at a chosen moment (the no-progress watchdog), a 502 or a
//! listing cut by an `X-Stream-Error` trailer, the exact query strings we send (recorded),
//! a unix-socket node address, throttling while the daemon is down, and a pin queue full
//! of pins that never finish. Every one of these calls against the real daemon is in
//! `kubo_rpc.rs` and `kubo_daemon.rs`.

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::{body::Frame, service::service_fn, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use ipfs_cluster_ipfs_connector::{
    kubo::{KuboError, PinKind},
    Kubo, NodeAddr, Options, Timeouts, Tracker,
};
use ipfs_cluster_proto::types::v1::{Pin, PinOptions, TrackerStatus};
use tokio_util::sync::CancellationToken;

/// One canned answer: status, body chunks with a delay before each, optional trailer.
#[derive(Clone)]
struct Canned {
    status: u16,
    chunks: Vec<(Duration, &'static str)>,
    trailer_error: Option<&'static str>,
}

fn ok(body: &'static str) -> Canned {
    Canned {
        status: 200,
        chunks: vec![(Duration::ZERO, body)],
        trailer_error: None,
    }
}
fn err500(msg_json: &'static str) -> Canned {
    Canned {
        status: 500,
        chunks: vec![(Duration::ZERO, msg_json)],
        trailer_error: None,
    }
}

type Router = Arc<dyn Fn(&str, &str) -> Canned + Send + Sync>;

/// The Kubo-shaped fake: records "path?query" of every request.
struct FakeKubo {
    seen: Arc<Mutex<Vec<String>>>,
}

impl FakeKubo {
    async fn handle(
        router: Router,
        seen: Arc<Mutex<Vec<String>>>,
        req: Request<hyper::body::Incoming>,
    ) -> Result<Response<BoxBody<Bytes, Infallible>>, Infallible> {
        let path = req.uri().path().trim_start_matches("/api/v0/").to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        seen.lock().unwrap().push(format!("{path}?{query}"));
        let c = if req.method() != hyper::Method::POST {
            Canned {
                status: 405,
                chunks: vec![(
                    Duration::ZERO,
                    r#"{"Message":"405 - Method Not Allowed","Code":2,"Type":"error"}"#,
                )],
                trailer_error: None,
            }
        } else {
            router(&path, &query)
        };
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
        tokio::spawn(async move {
            for (d, chunk) in c.chunks {
                tokio::time::sleep(d).await;
                if tx
                    .send(Ok(Frame::data(Bytes::from_static(chunk.as_bytes()))))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            if let Some(e) = c.trailer_error {
                let mut h = http::HeaderMap::new();
                h.insert("x-stream-error", e.parse().unwrap());
                let _ = tx.send(Ok(Frame::trailers(h))).await;
            }
        });
        let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)).boxed();
        let mut resp = Response::builder()
            .status(c.status)
            .header("content-type", "application/json");
        if c.trailer_error.is_some() {
            resp = resp.header("trailer", "X-Stream-Error");
        }
        Ok(resp.body(body).unwrap())
    }

    async fn tcp(
        router: impl Fn(&str, &str) -> Canned + Send + Sync + 'static,
    ) -> (Self, NodeAddr) {
        let l = ipfs_cluster_testkit::loopback_listener().await.unwrap();
        let addr = l.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<String>>> = Default::default();
        let router: Router = Arc::new(router);
        let s2 = seen.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = l.accept().await {
                let (router, seen) = (router.clone(), s2.clone());
                tokio::spawn(async move {
                    let svc =
                        service_fn(move |req| FakeKubo::handle(router.clone(), seen.clone(), req));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(sock), svc)
                        .await;
                });
            }
        });
        (Self { seen }, NodeAddr::Tcp(addr.to_string()))
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn kubo(addr: NodeAddr, pin_timeout: Duration) -> Kubo {
    Kubo::new(
        addr,
        Timeouts {
            request: Duration::from_secs(5),
            pin: pin_timeout,
            unpin: Duration::from_secs(5),
            repogc: Duration::from_secs(5),
        },
        false,
    )
}

const CID: &str = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o";
const CID2: &str = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH";

#[tokio::test]
async fn progress_lines_keep_a_slow_pin_alive_and_a_stall_kills_it() {
    let (_f, addr) = FakeKubo::tcp(|path, query| match path {
        // Slow but progressing: a Progress line every 150 ms for ~1.2 s.
        "pin/add" if query.contains(CID) => Canned {
            status: 200,
            chunks: (1..=8)
                .map(|i| {
                    (
                        Duration::from_millis(150),
                        [
                            "",
                            "{\"Progress\":1}\n",
                            "{\"Progress\":2}\n",
                            "{\"Progress\":3}\n",
                            "{\"Progress\":4}\n",
                            "{\"Progress\":5}\n",
                            "{\"Progress\":6}\n",
                            "{\"Progress\":7}\n",
                            "{\"Pins\":[\"QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o\"]}\n",
                        ][i],
                    )
                })
                .collect(),
            trailer_error: None,
        },
        // Stalls after one Progress line.
        "pin/add" => Canned {
            status: 200,
            chunks: vec![
                (Duration::ZERO, "{\"Progress\":1}\n"),
                (Duration::from_secs(30), ""),
            ],
            trailer_error: None,
        },
        _ => err500(r#"{"Message":"unexpected","Code":0,"Type":"error"}"#),
    })
    .await;
    let k = kubo(addr, Duration::from_millis(400));
    let t = Instant::now();
    k.pin_add(CID, -1, &CancellationToken::new())
        .await
        .expect("slow but progressing pin succeeds");
    assert!(
        t.elapsed() > Duration::from_millis(800),
        "the pin really took longer than pin_timeout"
    );
    let t = Instant::now();
    let e = k
        .pin_add(CID2, -1, &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(e, KuboError::PinStalled { .. }), "{e}");
    assert!(
        t.elapsed() < Duration::from_millis(1300),
        "stall detected within 2x pin_timeout: {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn query_shapes_error_texts_and_numbers() {
    let (f, addr) = FakeKubo::tcp(|path, query| match path {
        "pin/rm" if query.contains(CID) => err500(r#"{"Message":"not pinned or pinned indirectly","Code":0,"Type":"error"}"#),
        "pin/rm" => err500(r#"{"Message":"boom","Code":0,"Type":"error"}"#),
        "pin/ls" if query.contains(CID2) => err500(&*Box::leak(format!(r#"{{"Message":"path '{CID2}' is not pinned","Code":0,"Type":"error"}}"#).into_boxed_str())),
        "pin/ls" if query.contains("arg=") => ok("{\"Cid\":\"QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o\",\"Type\":\"recursive\"}\n"),
        "pin/ls" if query.contains("type=recursive") => Canned {
            status: 200,
            chunks: vec![(Duration::ZERO, "{\"Cid\":\"QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o\",\"Type\":\"recursive\"}\n")],
            trailer_error: None,
        },
        "pin/ls" => Canned { status: 200, chunks: vec![], trailer_error: Some("context canceled") },
        "repo/stat" => ok(r#"{"RepoSize":1000,"StorageMax":10000000000,"NumObjects":12,"RepoPath":"/x","Version":"fs-repo@15"}"#),
        "id" => Canned { status: 502, chunks: vec![(Duration::ZERO, "bad gateway")], trailer_error: None },
        "resolve" => ok(r#"{"Path":"/ipfs/QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"}"#),
        _ => err500(r#"{"Message":"unexpected","Code":0,"Type":"error"}"#),
    })
    .await;
    let k = kubo(addr, Duration::from_secs(5));
    let c = CancellationToken::new();
    k.pin_rm(CID, &c)
        .await
        .expect("Kubo's 'not pinned or pinned indirectly' counts as success");
    let e = k.pin_rm(CID2, &c).await.unwrap_err().to_string();
    assert_eq!(e, "IPFS error (pin/rm). Code: 500. Message: boom");
    assert_eq!(
        k.pin_ls_cid(CID, PinKind::Recursive).await.unwrap(),
        Some(PinKind::Recursive)
    );
    assert_eq!(k.pin_ls_cid(CID2, PinKind::Recursive).await.unwrap(), None);
    let e = k.pin_ls_all().await.unwrap_err().to_string();
    assert!(
        e.contains("context canceled"),
        "X-Stream-Error trailer surfaces: {e}"
    );
    let rs = k.repo_stat().await.unwrap();
    assert_eq!(
        (rs.repo_size, rs.storage_max, rs.num_objects),
        (1000, 10_000_000_000, 12)
    );
    let e = k.id().await.unwrap_err().to_string();
    assert_eq!(
        e,
        "IPFS request failed (is it running?) (id). Code 502: bad gateway"
    );
    assert_eq!(
        k.resolve(&format!("/ipfs/{CID}")).await.unwrap(),
        CID,
        "bare /ipfs/<cid> never asks the daemon"
    );
    assert_eq!(k.resolve(&format!("/ipfs/{CID}/a/b")).await.unwrap(), CID2);
    k.pin_add(CID, 0, &c).await.ok();
    k.pin_add(CID, 3, &c).await.ok();
    let seen = f.seen();
    assert!(seen.contains(&format!("pin/rm?arg={CID}")), "{seen:?}");
    assert!(
        seen.contains(&"repo/stat?size-only=true".to_string()),
        "{seen:?}"
    );
    assert!(
        seen.contains(&format!("pin/ls?stream=true&arg={CID}&type=recursive")),
        "{seen:?}"
    );
    assert!(
        seen.contains(&format!("pin/add?arg={CID}&recursive=false&progress=true")),
        "{seen:?}"
    );
    assert!(
        seen.contains(&format!(
            "pin/add?arg={CID}&max-depth=3&recursive=true&progress=true"
        )),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|s| s.starts_with("resolve?arg=%2Fipfs%2F")),
        "{seen:?}"
    );
    assert_eq!(seen.iter().filter(|s| s.starts_with("resolve")).count(), 1);
}

#[tokio::test]
async fn tracker_uses_pin_update_when_the_old_pin_is_here() {
    let (f, addr) = FakeKubo::tcp(|path, query| match path {
        "id" => ok(r#"{"ID":"12D3KooWFakeKubo","Addresses":["/ip4/127.0.0.1/tcp/4001","/ip4/1.2.3.4/tcp/4001","garbage"]}"#),
        // The new CID is not pinned yet; the old one is, recursively.
        "pin/ls" if query.contains(CID2) => ok("{\"Cid\":\"QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH\",\"Type\":\"recursive\"}\n"),
        "pin/ls" => err500(r#"{"Message":"path 'x' is not pinned","Code":0,"Type":"error"}"#),
        "pin/update" => ok(r#"{"Pins":["QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH","QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"]}"#),
        _ => err500(r#"{"Message":"unexpected","Code":0,"Type":"error"}"#),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options::with_defaults("12D3KooWMe", dir.path().to_path_buf());
    opts.node_multiaddress = "/ip4/127.0.0.1/tcp/1".into();
    let stop = CancellationToken::new();
    let t = Tracker::new(opts, kubo(addr, Duration::from_secs(5)), stop.clone()).unwrap();
    tokio::spawn(t.clone().readiness_loop());
    t.start_workers();
    let pin = Pin {
        cid: CID.into(),
        r#type: 1,
        max_depth: -1,
        options: Some(PinOptions {
            pin_update: CID2.into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    t.apply_pin(1, pin);
    let end = Instant::now() + Duration::from_secs(5);
    while !f.seen().iter().any(|s| s.starts_with("pin/update")) {
        assert!(
            Instant::now() < end,
            "pin/update never called: {:?}",
            f.seen()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        f.seen()
            .contains(&format!("pin/update?arg={CID2}&arg={CID}&unpin=false")),
        "{:?}",
        f.seen()
    );
    assert!(
        !f.seen().iter().any(|s| s.starts_with("pin/add")),
        "{:?}",
        f.seen()
    );
    // The op finished (removed); status now asks the daemon.
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let i = t.status(CID).await.unwrap();
        if i.status != TrackerStatus::Pinning as i32 && i.status != TrackerStatus::PinQueued as i32
        {
            assert_eq!(i.ipfs_peer_id, "12D3KooWFakeKubo");
            assert_eq!(
                i.ipfs_peer_addresses,
                vec!["/ip4/1.2.3.4/tcp/4001".to_string()],
                "as upstream's publicIPFSAddresses: unparsable and loopback addresses skipped"
            );
            break;
        }
        assert!(Instant::now() < end);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
}

#[tokio::test]
async fn unix_socket_node_address() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("api.sock");
    let l = tokio::net::UnixListener::bind(&sock).unwrap();
    let seen: Arc<Mutex<Vec<String>>> = Default::default();
    let router: Router = Arc::new(|_, _| ok(r#"{"ID":"12D3KooWUnix","Addresses":[]}"#));
    let s2 = seen.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let (router, seen) = (router.clone(), s2.clone());
            tokio::spawn(async move {
                let svc =
                    service_fn(move |req| FakeKubo::handle(router.clone(), seen.clone(), req));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    let addr =
        ipfs_cluster_ipfs_connector::parse_node_multiaddress(&format!("/unix{}", sock.display()))
            .unwrap();
    let k = kubo(addr, Duration::from_secs(1));
    assert_eq!(k.id().await.unwrap().id, "12D3KooWUnix");
}

#[tokio::test]
async fn daemon_down_is_a_clear_error_and_requests_get_throttled() {
    let port = ipfs_cluster_testkit::free_port();
    let k = kubo(
        NodeAddr::Tcp(format!("127.0.0.1:{port}")),
        Duration::from_secs(1),
    );
    let e = k.id().await.unwrap_err();
    assert!(e.is_unreachable());
    assert!(
        e.to_string().contains("cannot reach the IPFS daemon")
            && e.to_string().contains("node_multiaddress"),
        "{e}"
    );
    for _ in 0..11 {
        let _ = k.id().await;
    }
    let t = Instant::now();
    let _ = k.id().await;
    let _ = k.id().await;
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "more than 10 failures in a row: one request a second ({:?})",
        t.elapsed()
    );
    let _ = Full::new(Bytes::new()); // keep the import used in every cfg
}

#[tokio::test]
async fn queue_full_and_priority() {
    let (_f, addr) =
        FakeKubo::tcp(|_, _| err500(r#"{"Message":"unexpected","Code":0,"Type":"error"}"#)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options::with_defaults("12D3KooWMe", dir.path().to_path_buf());
    opts.max_pin_queue_size = 1;
    // Workers not started: items stay queued.
    let t = Tracker::new(
        opts,
        kubo(addr, Duration::from_secs(5)),
        CancellationToken::new(),
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    t.apply_pin(
        1,
        Pin {
            cid: CID.into(),
            r#type: 1,
            max_depth: -1,
            timestamp: now,
            ..Default::default()
        },
    );
    t.apply_pin(
        2,
        Pin {
            cid: CID2.into(),
            r#type: 1,
            max_depth: -1,
            timestamp: 0,
            ..Default::default()
        },
    );
    let third = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";
    t.apply_pin(
        3,
        Pin {
            cid: third.into(),
            r#type: 1,
            max_depth: -1,
            timestamp: now,
            ..Default::default()
        },
    );
    let a = t.status(CID).await.unwrap();
    assert_eq!(a.status, TrackerStatus::PinQueued as i32);
    assert!(a.priority_pin, "a new pin is priority");
    let b = t.status(CID2).await.unwrap();
    assert_eq!(b.status, TrackerStatus::PinQueued as i32, "{b:?}");
    assert!(!b.priority_pin, "an old pin is not");
    let c = t.status(third).await.unwrap();
    assert_eq!(c.status, TrackerStatus::PinError as i32);
    assert_eq!(
        c.error,
        "pin/unpin operation queue is full. Try increasing max_pin_queue_size"
    );
    assert_eq!(t.pin_queue_size(), 2);
    let m = ipfs_cluster_ipfs_connector::informers::measure(&t, "pinqueue").await;
    assert_eq!(
        (m[0].name.as_str(), m[0].value.as_str(), m[0].weight),
        ("pinqueue", "2", 0)
    );
    let m = ipfs_cluster_ipfs_connector::informers::measure(&t, "tags").await;
    assert_eq!(
        (m[0].name.as_str(), m[0].value.as_str(), m[0].partitionable),
        ("tag:group", "default", true)
    );
}

#[tokio::test]
async fn freespace_metric_from_repo_stat() {
    let (_f, addr) = FakeKubo::tcp(|path, _| match path {
        "repo/stat" => ok(r#"{"RepoSize":1000,"StorageMax":10000,"NumObjects":3}"#),
        _ => err500(r#"{"Message":"unexpected","Code":0,"Type":"error"}"#),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let t = Tracker::new(
        Options::with_defaults("12D3KooWMe", dir.path().to_path_buf()),
        kubo(addr, Duration::from_secs(5)),
        CancellationToken::new(),
    )
    .unwrap();
    let m = ipfs_cluster_ipfs_connector::informers::measure(&t, "freespace").await;
    assert_eq!(m.len(), 1);
    assert_eq!(
        (
            m[0].name.as_str(),
            m[0].value.as_str(),
            m[0].weight,
            m[0].peer.as_str()
        ),
        ("freespace", "9000", 9000, "12D3KooWMe")
    );
    let ttl = m[0].expire - ipfs_cluster_ipfs_connector::tracker::now_ns();
    assert!(ttl > 29_000_000_000 && ttl <= 30_000_000_000, "{ttl}");
    // Daemon down: no (invalid) metric is published.
    let port = ipfs_cluster_testkit::free_port();
    // Another folder: the first tracker still has its store open.
    let dir2 = tempfile::tempdir().unwrap();
    let t = Tracker::new(
        Options::with_defaults("12D3KooWMe", dir2.path().to_path_buf()),
        kubo(
            NodeAddr::Tcp(format!("127.0.0.1:{port}")),
            Duration::from_secs(1),
        ),
        CancellationToken::new(),
    )
    .unwrap();
    assert!(
        ipfs_cluster_ipfs_connector::informers::measure(&t, "freespace")
            .await
            .is_empty()
    );
}
