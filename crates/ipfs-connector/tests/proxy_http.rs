//! The IPFS proxy's HTTP behaviour against an in-process fake daemon (a few lines of
//! hyper, not a Kubo imitation): header handling (CORS from a fresh preflight,
//! extracted headers cached for the TTL, our Content-Type/Server), reverse-proxy header
//! handling (hop-by-hop, X-Forwarded-For), the access log file, `max_header_bytes`,
//! `read_header_timeout`, `idle_timeout`, `write_timeout` and every listen address.
//! A fake daemon because these tests need what real Kubo cannot give: a record of the
//! exact headers the proxy forwarded, chosen CORS answers, and a daemon that stalls on
//! demand. The proxy against real Kubo is in `kubo_daemon.rs` (`ipfs_proxy_against_kubo`).

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{service::service_fn, Request, Response};
use hyper_util::rt::TokioIo;
use ipfs_cluster_ipfs_connector::{proxy, proxy::ProxyConfig, Kubo, NodeAddr};
use ipfs_cluster_proto::{client, InternalToken};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_util::sync::CancellationToken;

/// What the fake daemon saw: (method, path, headers).
type Seen = Arc<Mutex<Vec<(String, String, http::HeaderMap)>>>;

/// A daemon answering OPTIONS with CORS headers for the given Origin, `/api/v0/version`
/// with expose/custom headers, anything else with a hop-by-hop header; `/slow` waits 2 s.
async fn fake_daemon() -> (SocketAddr, Seen) {
    let l = ipfs_cluster_testkit::loopback_listener().await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen: Seen = Default::default();
    let s2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = l.accept().await else {
                return;
            };
            let seen = s2.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        seen.lock().unwrap().push((
                            req.method().to_string(),
                            req.uri().path().to_string(),
                            req.headers().clone(),
                        ));
                        let mut r = Response::builder();
                        if req.method() == http::Method::OPTIONS {
                            if let Some(o) = req.headers().get("origin") {
                                r = r
                                    .header("Access-Control-Allow-Origin", o)
                                    .header("Vary", "Origin")
                                    .header("Access-Control-Allow-Credentials", "true");
                            }
                        } else if req.uri().path() == "/api/v0/version" {
                            r = r
                                .header("Access-Control-Expose-Headers", "X-Stream-Output")
                                .header("X-Custom", "c")
                                .header("Connection", "X-Hop")
                                .header("X-Hop", "1");
                        } else if req.uri().path() == "/slow" {
                            tokio::time::sleep(Duration::from_secs(2)).await;
                        }
                        Ok::<_, std::convert::Infallible>(
                            r.body(Full::new(Bytes::from_static(b"{\"Version\":\"fake\"}")))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(sock), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

struct Running {
    addrs: Vec<SocketAddr>,
    stop: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start_proxy(daemon: SocketAddr, n: usize, f: impl FnOnce(&mut ProxyConfig)) -> Running {
    let mut ls = Vec::new();
    for _ in 0..n {
        ls.push(ipfs_cluster_testkit::loopback_listener().await.unwrap());
    }
    let addrs: Vec<SocketAddr> = ls.iter().map(|l| l.local_addr().unwrap()).collect();
    let node = NodeAddr::Tcp(daemon.to_string());
    let mut cfg = ProxyConfig::new(addrs.clone(), node.clone());
    f(&mut cfg);
    let log = proxy::access_log(&cfg).await.unwrap();
    let token = InternalToken::generate();
    let unused: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let p = proxy::Proxy::new(
        cfg,
        Kubo::new(node, Default::default(), false),
        client::consensus(unused, &token),
        client::transport(unused, &token),
    )
    .unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(proxy::serve(ls, p, log, stop.clone()));
    Running { addrs, stop }
}

/// One raw HTTP/1.1 request with `Connection: close`; (status, lower-cased headers).
async fn raw(addr: SocketAddr, head: &str) -> (u16, Vec<(String, String)>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out))
        .await
        .expect("answer in time")
        .unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers)
}

fn get<'a>(h: &'a [(String, String)], k: &str) -> Option<&'a str> {
    h.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn hijacked_answers_carry_the_daemons_cors_and_extracted_headers() {
    let (daemon, seen) = fake_daemon().await;
    let p = start_proxy(daemon, 1, |c| {
        c.extract_headers_extra = vec!["X-Custom".into()]
    })
    .await;
    // pin/update without arguments is answered by the proxy itself (400): hijacked.
    let req = "POST /api/v0/pin/update HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://app.example\r\nConnection: close\r\n\r\n";
    let (status, h) = raw(p.addrs[0], req).await;
    assert_eq!(status, 400);
    assert_eq!(
        get(&h, "access-control-allow-origin"),
        Some("http://app.example")
    );
    assert_eq!(get(&h, "vary"), Some("Origin"));
    assert_eq!(get(&h, "access-control-allow-credentials"), Some("true"));
    assert_eq!(
        get(&h, "access-control-expose-headers"),
        Some("X-Stream-Output")
    );
    assert_eq!(get(&h, "x-custom"), Some("c"));
    assert_eq!(get(&h, "content-type"), Some("application/json"));
    assert!(get(&h, "server")
        .unwrap()
        .starts_with("ipfs-cluster/ipfsproxy/"));
    {
        let s = seen.lock().unwrap();
        let pre = s
            .iter()
            .find(|(m, _, _)| m == "OPTIONS")
            .expect("a preflight reached the daemon");
        assert_eq!(pre.1, "/api/v0/pin/update", "same path");
        assert_eq!(pre.2["origin"], "http://app.example");
        assert_eq!(pre.2["access-control-request-method"], "POST");
    }
    // Second hijacked call: a fresh preflight again, the extracted headers from the cache.
    let (status, h) = raw(p.addrs[0], req).await;
    assert_eq!(status, 400);
    assert_eq!(get(&h, "x-custom"), Some("c"));
    let s = seen.lock().unwrap();
    assert_eq!(s.iter().filter(|(m, _, _)| m == "OPTIONS").count(), 2);
    assert_eq!(
        s.iter().filter(|(_, p, _)| p == "/api/v0/version").count(),
        1,
        "extract_headers_path asked once within extract_headers_ttl"
    );
}

#[tokio::test]
async fn extracted_headers_are_asked_again_after_the_ttl() {
    let (daemon, seen) = fake_daemon().await;
    let p = start_proxy(daemon, 1, |c| {
        c.extract_headers_ttl = Duration::from_millis(1)
    })
    .await;
    let req = "POST /api/v0/pin/update HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    raw(p.addrs[0], req).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (_, h) = raw(p.addrs[0], req).await;
    assert_eq!(
        get(&h, "access-control-expose-headers"),
        Some("X-Stream-Output")
    );
    assert!(
        get(&h, "access-control-allow-origin").is_none(),
        "no Origin, no CORS"
    );
    let n = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, p, _)| p == "/api/v0/version")
        .count();
    assert_eq!(n, 2);
}

#[tokio::test]
async fn forwarded_calls_get_reverse_proxy_headers_and_are_logged() {
    let (daemon, seen) = fake_daemon().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("proxy.log");
    let l2 = log.clone();
    let p = start_proxy(daemon, 2, move |c| c.log_file = Some(l2)).await;
    for a in &p.addrs {
        let (status, h) = raw(
            *a,
            "POST /api/v0/version?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Forwarded-For: 10.0.0.1\r\nConnection: close, X-Secret\r\nX-Secret: s\r\nProxy-Authorization: Basic eA==\r\n\r\n",
        )
        .await;
        assert_eq!(status, 200, "answered on every listen address");
        assert!(
            get(&h, "x-hop").is_none(),
            "header named in Connection dropped"
        );
        assert_eq!(get(&h, "x-custom"), Some("c"), "other daemon headers kept");
    }
    {
        let s = seen.lock().unwrap();
        let (_, _, h) = s.iter().find(|(_, p, _)| p == "/api/v0/version").unwrap();
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert!(h.get("x-secret").is_none());
        assert!(h.get("proxy-authorization").is_none());
        assert!(
            s.iter().all(|(m, _, _)| m != "OPTIONS"),
            "no preflight for forwarded calls"
        );
    }
    let mut text = String::new();
    for _ in 0..100 {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().count() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("127.0.0.1 - - ["), "{text}");
    assert!(
        lines[0].ends_with("\"POST /api/v0/version?x=1 HTTP/1.1\" 200 18"),
        "{text}"
    );
}

#[tokio::test]
async fn header_limits_and_timeouts() {
    let (daemon, _) = fake_daemon().await;
    let p = start_proxy(daemon, 1, |c| {
        c.read_header_timeout = Duration::from_millis(300);
        c.idle_timeout = Duration::from_millis(300);
        c.write_timeout = Duration::from_millis(500);
    })
    .await;
    // Headers beyond max_header_bytes (4096 + Go's 4096 slack) → 431.
    let big = format!(
        "POST /api/v0/version HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(20_000)
    );
    let (status, _) = raw(p.addrs[0], &big).await;
    assert_eq!(status, 431);
    // Headers never finished: the connection is closed after read_header_timeout.
    let mut s = TcpStream::connect(p.addrs[0]).await.unwrap();
    s.write_all(b"POST /api/v0/version HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf))
        .await
        .expect("closed by read_header_timeout")
        .ok();
    // A keep-alive connection with nothing in flight is closed after idle_timeout.
    let mut s = TcpStream::connect(p.addrs[0]).await.unwrap();
    s.write_all(b"POST /api/v0/version HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf))
        .await
        .expect("closed by idle_timeout")
        .ok();
    assert!(
        String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"),
        "the request itself was answered first"
    );
    // An answer slower than write_timeout: the connection is dropped without an answer.
    let mut s = TcpStream::connect(p.addrs[0]).await.unwrap();
    s.write_all(b"POST /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf))
        .await
        .expect("closed by write_timeout");
    assert!(buf.is_empty(), "{}", String::from_utf8_lossy(&buf));
}
