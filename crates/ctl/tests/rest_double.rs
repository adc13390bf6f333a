//! Drives `ipfs_cluster_ctl::run_async` against a tiny hyper server that serves canned,
//! upstream-shaped responses (a test double of the REST contract) and records the requests.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

const CID: &str = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG";
const P1: &str = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";
const I1: &str = "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo";

#[derive(Clone, Default)]
struct Canned {
    status: u16,
    body: String,
    trailers: Vec<String>,
    delay: Option<Duration>,
}

fn ok(body: impl Into<String>) -> Canned {
    Canned {
        status: 200,
        body: body.into(),
        ..Default::default()
    }
}

#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    uri: String,
    headers: HeaderMap,
    body: Bytes,
}

type Handler = Arc<dyn Fn(&Method, &str) -> Canned + Send + Sync>;

struct Double {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Double {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start(handler: Handler) -> Double {
    let listener = ipfs_cluster_testkit::loopback_listener().await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            let seen = seen2.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let handler = handler.clone();
                    let seen = seen.clone();
                    async move {
                        let method = req.method().clone();
                        let uri = req.uri().to_string();
                        let headers = req.headers().clone();
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        seen.lock().unwrap().push(Seen {
                            method: method.clone(),
                            uri: uri.clone(),
                            headers,
                            body,
                        });
                        let c = handler(&method, &uri);
                        if let Some(d) = c.delay {
                            tokio::time::sleep(d).await;
                        }
                        let mut frames: Vec<Result<Frame<Bytes>, Infallible>> =
                            vec![Ok(Frame::data(Bytes::from(c.body)))];
                        if !c.trailers.is_empty() {
                            let mut t = HeaderMap::new();
                            for v in &c.trailers {
                                t.append("x-stream-error", HeaderValue::from_str(v).unwrap());
                            }
                            frames.push(Ok(Frame::trailers(t)));
                        }
                        let body: BoxBody<Bytes, Infallible> =
                            StreamBody::new(futures::stream::iter(frames)).boxed();
                        let mut resp = Response::new(body);
                        *resp.status_mut() = StatusCode::from_u16(c.status).unwrap();
                        resp.headers_mut()
                            .insert("content-type", HeaderValue::from_static("application/json"));
                        resp.headers_mut()
                            .insert("trailer", HeaderValue::from_static("X-Stream-Error"));
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    Double { addr, seen, task }
}

fn host(d: &Double) -> String {
    format!("/ip4/127.0.0.1/tcp/{}", d.addr.port())
}

async fn ctl(args: &[&str]) -> (i32, String, String) {
    let mut argv: Vec<std::ffi::OsString> = vec!["ipfs-cluster-ctl".into()];
    argv.extend(args.iter().map(|a| a.into()));
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = ipfs_cluster_ctl::run_async(argv, &mut out, &mut err).await;
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

fn id_json() -> String {
    format!(
        r#"{{"id":"{P1}","addresses":["/ip4/127.0.0.1/tcp/9096/p2p/{P1}"],"cluster_peers":["{P1}"],"cluster_peers_addresses":[],"version":"1.1.6","commit":"","rpc_protocol_version":"/ipfscluster/1.0/rpc","error":"","ipfs":{{"id":"{I1}","addresses":["/ip4/127.0.0.1/tcp/4001/p2p/{I1}"],"error":""}},"peername":"p1"}}"#
    )
}

fn pin_json(cid: &str) -> String {
    format!(
        r#"{{"replication_factor_min":-1,"replication_factor_max":-1,"name":"","mode":"recursive","shard_size":0,"user_allocations":null,"expire_at":"0001-01-01T00:00:00Z","metadata":null,"pin_update":null,"origins":[],"cid":"{cid}","type":"pin","allocations":[],"max_depth":-1,"reference":null,"timestamp":"2024-05-01T10:20:30Z"}}"#
    )
}

fn status_json(cid: &str, status: &str) -> String {
    format!(
        r#"{{"cid":"{cid}","name":"","allocations":[],"origins":[],"created":"2024-05-01T10:20:30Z","metadata":null,"peer_map":{{"{P1}":{{"peername":"p1","ipfs_peer_id":"{I1}","status":"{status}","timestamp":"2024-05-01T10:20:31.2Z","error":"","attempt_count":0,"priority_pin":false}}}}}}"#
    )
}

#[tokio::test]
async fn id_text_and_json() {
    let d = start(Arc::new(|_, _| ok(id_json() + "\n"))).await;
    let (code, out, _) = ctl(&["--host", &host(&d), "id"]).await;
    assert_eq!(code, 0);
    assert_eq!(
        out,
        format!(
            "{P1} | p1 | Sees 0 other peers\n  > Addresses:\n    - /ip4/127.0.0.1/tcp/9096/p2p/{P1}\n  > IPFS: {I1}\n    - /ip4/127.0.0.1/tcp/4001/p2p/{I1}\n"
        )
    );
    let (code, out, _) = ctl(&["--host", &host(&d), "--enc", "json", "id"]).await;
    assert_eq!(code, 0);
    assert!(
        out.starts_with(&format!(
            "{{\n    \"id\": \"{P1}\",\n    \"addresses\": [\n        \"/ip4/"
        )),
        "{out}"
    );
    assert!(out.ends_with("    \"peername\": \"p1\"\n}\n"), "{out}");
    let seen = d.seen.lock().unwrap();
    assert_eq!(seen[0].method, Method::GET);
    assert_eq!(seen[0].uri, "/id");
}

#[tokio::test]
async fn stream_with_trailer_error_prints_items_then_error() {
    let body = format!("{}\n{}\n", pin_json(CID), pin_json(CID));
    let d = start(Arc::new(move |_, _| Canned {
        trailers: vec!["".into(), "some rpc error".into()],
        ..ok(body.clone())
    }))
    .await;
    let (code, out, _) = ctl(&["--host", &host(&d), "pin", "ls"]).await;
    let line = format!(
        "{CID} |  | PIN | Repl. Factor: -1 | Allocations: [everywhere] | Recursive | Metadata: no | Exp: ∞ | Added: 2024-05-01 10:20:30\n"
    );
    assert_eq!(
        out,
        format!("{line}{line}An error occurred:\n  Code: 500\n  Message: some rpc error\n")
    );
    assert_eq!(code, 2);
    assert_eq!(d.seen.lock().unwrap()[0].uri, "/allocations?filter=all");
}

#[tokio::test]
async fn not_found_is_exit_2_and_empty_stream_is_silent() {
    let d = start(Arc::new(|_, uri| {
        if uri.starts_with("/allocations/") {
            Canned {
                status: 404,
                body: r#"{"code":404,"message":"pin is not part of the pinset"}"#.into(),
                ..Default::default()
            }
        } else {
            Canned {
                status: 204,
                ..Default::default()
            }
        }
    }))
    .await;
    let (code, out, _) = ctl(&["--host", &host(&d), "pin", "ls", CID]).await;
    assert_eq!(
        out,
        "An error occurred:\n  Code: 404\n  Message: pin is not part of the pinset\n"
    );
    assert_eq!(code, 2);
    let (code, out, _) = ctl(&["--host", &host(&d), "--enc", "json", "pin", "ls", CID]).await;
    assert_eq!(
        out,
        "{\n    \"code\": 404,\n    \"message\": \"pin is not part of the pinset\"\n}\n"
    );
    assert_eq!(code, 2);
    let (code, out, err) = ctl(&["--host", &host(&d), "status"]).await;
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""));
    assert_eq!(
        d.seen.lock().unwrap().last().unwrap().uri,
        "/pins?local=false&filter=&cids="
    );
}

#[tokio::test]
async fn unauthorized_and_basic_auth_header() {
    let d = start(Arc::new(|_, _| Canned {
        status: 401,
        body: r#"{"code":401,"message":"Unauthorized"}"#.into(),
        ..Default::default()
    }))
    .await;
    let (code, out, _) = ctl(&[
        "--host",
        &host(&d),
        "--basic-auth",
        "user:pw",
        "--force-http",
        "version",
    ])
    .await;
    assert_eq!(
        out,
        "An error occurred:\n  Code: 401\n  Message: Unauthorized\n"
    );
    assert_eq!(code, 2);
    let seen = d.seen.lock().unwrap();
    assert_eq!(
        seen[0].headers.get("authorization").unwrap(),
        "Basic dXNlcjpwdw=="
    );
}

#[tokio::test]
async fn unreachable_host_is_exit_1_and_fails_over() {
    // A free port nothing listens on.
    let dead = ipfs_cluster_testkit::free_port();
    let dead_host = format!("/ip4/127.0.0.1/tcp/{dead}");
    let (code, out, _) = ctl(&["--host", &dead_host, "version"]).await;
    assert_eq!(code, 1);
    assert_eq!(
        out,
        format!(
            "An error occurred:\n  Code: 0\n  Message: Get \"http://127.0.0.1:{dead}/version\": dial tcp 127.0.0.1:{dead}: connect: connection refused\n"
        )
    );
    let d = start(Arc::new(|_, _| ok("{\"version\":\"1.1.6\"}\n"))).await;
    let (code, out, _) = ctl(&["--host", &format!("{dead_host},{}", host(&d)), "version"]).await;
    assert_eq!((code, out.as_str()), (0, "1.1.6\n"));
}

#[tokio::test]
async fn timeout_flag_bounds_the_request() {
    let d = start(Arc::new(|_, _| Canned {
        delay: Some(Duration::from_secs(5)),
        ..ok("{\"version\":\"1.1.6\"}")
    }))
    .await;
    let t0 = std::time::Instant::now();
    let (code, out, _) = ctl(&["--host", &host(&d), "--timeout", "1", "version"]).await;
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert_eq!(code, 1);
    assert!(out.contains("context deadline exceeded"), "{out}");
}

#[tokio::test]
async fn pin_add_no_status_and_with_status() {
    let d = start(Arc::new(|m, uri| {
        if *m == Method::POST {
            ok(pin_json(CID))
        } else if uri.starts_with("/pins/") {
            ok(status_json(CID, "pinned"))
        } else {
            Canned {
                status: 404,
                body: "{}".into(),
                ..Default::default()
            }
        }
    }))
    .await;
    let (code, out, _) = ctl(&["--host", &host(&d), "pin", "add", "--no-status", CID]).await;
    assert_eq!(code, 0);
    assert!(
        out.starts_with(&format!("{CID} |  | PIN | Repl. Factor: -1")),
        "{out}"
    );
    assert_eq!(
        d.seen.lock().unwrap()[0].uri,
        format!("/pins/ipfs/{CID}?mode=recursive&name=&replication-max=0&replication-min=0&shard-size=0&user-allocations=")
    );
    let (code, out, _) = ctl(&[
        "--host",
        &host(&d),
        "pin",
        "add",
        "--name",
        "a b",
        "--rmin",
        "1",
        "--metadata",
        "k=v",
        CID,
    ])
    .await;
    assert_eq!(code, 0);
    assert_eq!(
        out,
        format!("{CID}:\n    > p1                   : PINNED | 2024-05-01T10:20:31.2Z | Attempts: 0 | Priority: false\n")
    );
    let seen = d.seen.lock().unwrap();
    assert_eq!(
        seen[1].uri,
        format!("/pins/ipfs/{CID}?meta-k=v&mode=recursive&name=a+b&replication-max=0&replication-min=1&shard-size=0&user-allocations=")
    );
    assert_eq!(seen[2].uri, format!("/pins/{CID}?local=false"));
}

#[tokio::test]
async fn pin_add_wait_timeout_exits_62() {
    let d = start(Arc::new(|m, _| {
        if *m == Method::POST {
            ok(pin_json(CID))
        } else {
            ok(status_json(CID, "pinning"))
        }
    }))
    .await;
    let (code, _, err) = ctl(&[
        "--host",
        &host(&d),
        "pin",
        "add",
        "--wait",
        "--wait-timeout",
        "2s",
        CID,
    ])
    .await;
    assert_eq!(
        err,
        "error waiting for pin status: context deadline exceeded\n"
    );
    assert_eq!(code, 62);
}

#[tokio::test]
async fn add_streams_multipart_and_prints_lines() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("smallfile.bin");
    std::fs::write(&f, vec![7u8; 500]).unwrap();
    let d = start(Arc::new(|_, _| {
        ok(format!(
            "{{\"name\":\"smallfile.bin\",\"cid\":\"{CID}\",\"size\":508,\"allocations\":[\"{P1}\"]}}\n{{\"name\":\"\",\"cid\":\"{CID}\",\"size\":560}}\n"
        ))
    }))
    .await;
    let path = f.to_string_lossy().to_string();
    let (code, out, err) = ctl(&["--host", &host(&d), "add", "-w", &path]).await;
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(out, format!("added {CID} smallfile.bin\nadded {CID} \n"));
    {
        let seen = d.seen.lock().unwrap();
        let req = &seen[0];
        assert!(req.uri.starts_with(
            "/add?chunker=size-262144&cid-version=0&format=unixfs&hash=sha2-256&hidden=false"
        ));
        assert!(
            req.uri
                .contains("&stream-channels=true&user-allocations=&wrap-with-directory=true"),
            "{}",
            req.uri
        );
        let ct = req
            .headers
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let boundary = ct.strip_prefix("multipart/form-data; boundary=").unwrap();
        let body = String::from_utf8_lossy(&req.body).to_string();
        assert!(body.starts_with(&format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"smallfile.bin\"\r\n")));
        assert!(body.ends_with(&format!("\r\n--{boundary}--\r\n")));
        assert_eq!(req.body.len(), body.len());
        assert!(req.body.windows(500).any(|w| w.iter().all(|b| *b == 7)));
    }
    let (code, out, _) = ctl(&["--host", &host(&d), "add", "--quieter", &path]).await;
    assert_eq!((code, out), (0, format!("{CID}\n")));
    let (code, out, _) = ctl(&[
        "--host",
        &host(&d),
        "--enc",
        "json",
        "add",
        "--no-stream",
        "-Q",
        &path,
    ])
    .await;
    assert_eq!(code, 0);
    assert_eq!(out, format!("[\n    {{\n        \"name\": \"\",\n        \"cid\": \"{CID}\",\n        \"size\": 560\n    }}\n]\n"));
}

#[tokio::test]
async fn local_errors_go_to_stderr() {
    let (code, out, err) = ctl(&["status", "notacid"]).await;
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(err.starts_with("error parsing cid: "), "{err}");
    let (code, _, err) = ctl(&["peers", "rm", "nope"]).await;
    assert_eq!(code, 1);
    assert!(
        err.starts_with("error parsing peer ID: failed to parse peer ID: "),
        "{err}"
    );
    let (code, _, err) = ctl(&[
        "--host",
        "/ip4/127.0.0.1/tcp/1",
        "status",
        "--filter",
        "bogus",
    ])
    .await;
    assert_eq!(
        (code, err.as_str()),
        (1, "error parsing filter flag: invalid filter name\n")
    );
    let (code, _, err) = ctl(&["pin", "add", "--allocs", "bad", CID]).await;
    assert_eq!(
        (code, err.as_str()),
        (
            1,
            "error decoding allocations: some peer IDs could not be decoded\n"
        )
    );
    let (code, _, err) = ctl(&["pin", "update", "bad", CID]).await;
    assert_eq!(code, 1);
    assert!(err.starts_with("error parsing from Cid: "), "{err}");
    let (code, out, _) = ctl(&["pin", "ls", "--nope"]).await;
    assert_eq!(code, 1);
    assert!(
        out.starts_with("Incorrect Usage: flag provided but not defined: -nope"),
        "{out}"
    );
    let (code, _, err) = ctl(&["peers", "add"]).await;
    assert_eq!((code, err.as_str()), (3, "No help topic for 'add'\n"));
    let (code, out, _) = ctl(&["--version"]).await;
    assert_eq!(
        (code, out.as_str()),
        (0, "ipfs-cluster-ctl version 1.1.6\n")
    );
}

#[tokio::test]
async fn unix_socket_host() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("api.sock");
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    let server = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        let svc = service_fn(|_req: hyper::Request<hyper::body::Incoming>| async {
            Ok::<_, Infallible>(Response::new(http_body_util::Full::new(
                Bytes::from_static(b"{\"version\":\"1.1.6\"}\n"),
            )))
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(s), svc)
            .await;
    });
    let host = format!("/unix{}", sock.display());
    let (code, out, err) = ctl(&["--host", &host, "version"]).await;
    assert_eq!((code, out.as_str(), err.as_str()), (0, "1.1.6\n", ""));
    server.abort();
}

#[tokio::test]
async fn health_graph_metrics_and_gc() {
    let d = start(Arc::new(|_, uri| match uri {
        "/health/graph" => ok(format!(
            r#"{{"cluster_id":"{P1}","id_to_peername":{{"{P1}":"p1"}},"ipfs_links":{{"{I1}":[]}},"cluster_links":{{"{P1}":[]}},"cluster_trust_links":{{"{P1}":false}},"cluster_to_ipfs":{{"{P1}":"{I1}"}}}}"#
        )),
        "/monitor/metrics" => ok(r#"["ping","freespace"]"#),
        "/ipfs/gc?local=true" => ok(format!(
            r#"{{"peer_map":{{"{P1}":{{"peer":"{P1}","peername":"p1","keys":[{{"key":"{CID}"}}]}}}}}}"#
        )),
        _ => Canned { status: 404, body: r#"{"code":404,"message":"not found"}"#.into(), ..Default::default() },
    }))
    .await;
    let (code, out, _) = ctl(&["--host", &host(&d), "--enc", "json", "health", "graph"]).await;
    assert_eq!(code, 0);
    assert!(
        out.starts_with("digraph cluster {\n") && out.ends_with('}'),
        "{out}"
    );
    assert!(out.contains("\nC0 -> I0\n"), "{out}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("g.dot");
    let (code, out, _) = ctl(&[
        "--host",
        &host(&d),
        "health",
        "graph",
        "-f",
        file.to_str().unwrap(),
    ])
    .await;
    assert_eq!((code, out.as_str()), (0, ""));
    assert!(std::fs::read_to_string(&file).unwrap().contains("C0 -> I0"));
    let (code, out, _) = ctl(&["--host", &host(&d), "health", "metrics"]).await;
    assert_eq!((code, out.as_str()), (0, "ping\nfreespace\n"));
    let (code, out, _) = ctl(&["--host", &host(&d), "ipfs", "gc", "--local"]).await;
    assert_eq!(
        (code, out),
        (0, format!("p1             \n  > CIDs:\n    - {CID}\n"))
    );
    let (code, out, _) = ctl(&["--host", &host(&d), "health", "alerts"]).await;
    assert_eq!(
        (code, out.as_str()),
        (2, "An error occurred:\n  Code: 404\n  Message: not found\n")
    );
}

#[tokio::test]
async fn completion_scripts() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, _) = ctl(&["completion", shell]).await;
        assert_eq!(code, 0);
        assert!(out.contains("ipfs-cluster-ctl"), "{shell}");
        assert!(out.contains("wait-timeout"), "{shell}");
    }
}
