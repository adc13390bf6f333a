//! Connector benchmarks (`make bench`):
//!
//! 1. StatusAll throughput: a tracker holding N tracked pins (default 100,000) answers the
//!    gRPC `IpfsConnector.StatusAll` stream, which lists the daemon's pins once
//!    (`pin/ls` recursive + direct, NDJSON) and matches every pin against it.
//! 2. IPFS proxy overhead: `POST /api/v0/version` (a forwarded route) through the proxy
//!    versus straight to the daemon, same concurrency, same run.
//!
//! The daemon is an in-process **Kubo-shaped fake** (answers `pin/ls` with all N pins
//! recursive, `version`, `id`) so the figures measure the connector, not IPFS. With
//! `--ipfs-api /ip4/127.0.0.1/tcp/5001` the same runs go against a real daemon instead
//! (then StatusAll matches the N tracked pins against whatever that daemon has pinned).
//!
//! ```text
//! cargo run --release -p ipfs-cluster-ipfs-connector --example connector_bench -- [--pins N] [--requests N] [--concurrency N] [--ipfs-api MULTIADDR]
//! ```

use std::{
    convert::Infallible,
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty as EmptyBody, Full};
use hyper::{service::service_fn, Request, Response};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::{TokioExecutor, TokioIo},
};
use ipfs_cluster_ipfs_connector::{
    kubo::parse_node_multiaddress, proxy, service::ConnectorService, Kubo, NodeAddr, Options,
    Timeouts, Tracker,
};
use ipfs_cluster_proto::{
    client, ipfsconnector::v1::StatusAllRequest, types::v1::Pin, types::v1::TrackerStatus,
    InternalToken,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

struct Args {
    pins: usize,
    requests: usize,
    concurrency: usize,
    ipfs_api: Option<String>,
}

fn args() -> Result<Args> {
    let mut a = Args {
        pins: 100_000,
        requests: 20_000,
        concurrency: 16,
        ipfs_api: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().with_context(|| format!("{k} needs a value"));
        match k.as_str() {
            "--pins" => a.pins = v()?.parse().context("--pins takes a number")?,
            "--requests" => a.requests = v()?.parse().context("--requests takes a number")?,
            "--concurrency" => {
                a.concurrency = v()?.parse().context("--concurrency takes a number")?
            }
            "--ipfs-api" => a.ipfs_api = Some(v()?),
            other => bail!("unknown argument {other}; see the top of examples/connector_bench.rs"),
        }
    }
    if a.concurrency == 0 || a.requests == 0 {
        bail!("--requests and --concurrency must be at least 1");
    }
    Ok(a)
}

/// N distinct CIDv1 (raw, sha2-256 multihash code over a counter-derived digest).
fn cids(n: usize) -> Vec<String> {
    (0..n as u64)
        .map(|i| {
            let mut d = [0u8; 32];
            d[..8].copy_from_slice(&i.to_le_bytes());
            d[8..16].copy_from_slice(&(i ^ 0x9e37_79b9_7f4a_7c15).to_be_bytes());
            let mh = cid::multihash::Multihash::<64>::wrap(0x12, &d).expect("32 bytes fit");
            cid::Cid::new_v1(0x55, mh).to_string()
        })
        .collect()
}

/// The Kubo-shaped fake daemon: `pin/ls` (NDJSON, all pins recursive), `version`, `id`.
async fn fake_kubo(pins: &[String]) -> Result<SocketAddr> {
    let mut ndjson = Vec::with_capacity(pins.len() * 90);
    for c in pins {
        ndjson
            .extend_from_slice(format!("{{\"Cid\":\"{c}\",\"Type\":\"recursive\"}}\n").as_bytes());
    }
    let ndjson = Bytes::from(ndjson);
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = l.accept().await else {
                continue;
            };
            let ndjson = ndjson.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let ndjson = ndjson.clone();
                    async move {
                        let q = req.uri().query().unwrap_or("").to_string();
                        let body = match req.uri().path() {
                            "/api/v0/pin/ls" if q.contains("type=recursive") => ndjson,
                            "/api/v0/pin/ls" => Bytes::new(),
                            "/api/v0/version" => Bytes::from_static(
                                br#"{"Version":"0.18.1","Commit":"","Repo":"12","System":"amd64/linux","Golang":"go1.19.1"}"#,
                            ),
                            "/api/v0/id" => Bytes::from_static(
                                br#"{"ID":"12D3KooWFakeKuboForTheConnectorBenchmark","Addresses":[]}"#,
                            ),
                            _ => {
                                let mut r = Response::new(Full::new(Bytes::from_static(
                                    b"404 page not found",
                                )));
                                *r.status_mut() = hyper::StatusCode::NOT_FOUND;
                                return Ok::<_, Infallible>(r);
                            }
                        };
                        let mut r = Response::new(Full::new(body));
                        r.headers_mut().insert(
                            "content-type",
                            hyper::header::HeaderValue::from_static("application/json"),
                        );
                        Ok(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(sock), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// StatusAll over gRPC; returns (items, seconds, pinned items).
async fn status_all(
    node: &str,
    pins: &[String],
    token: &InternalToken,
    stop: &CancellationToken,
) -> Result<(usize, f64, usize)> {
    let addr = parse_node_multiaddress(node)?;
    let kubo = Kubo::new(addr, Timeouts::default(), false);
    let dir = tempfile::tempdir()?;
    let opts = Options::with_defaults("12D3KooWBenchPeer", dir.path().to_path_buf());
    let t = Tracker::new(opts, kubo, stop.clone())?;
    t.load_state(
        1,
        pins.iter()
            .map(|c| Pin {
                cid: c.clone(),
                max_depth: -1,
                ..Default::default()
            })
            .collect(),
    )?;
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let grpc = l.local_addr()?;
    let svc = ConnectorService::new(t).into_server();
    let s = stop.clone();
    let tok = token.clone();
    tokio::spawn(async move {
        let _ = ipfs_cluster_runtime::serve(l, tok, svc, s.cancelled_owned()).await;
    });
    let mut c = client::ipfs_connector(grpc, token);
    // Warm-up (connection, first listing).
    drain(&mut c).await?;
    let t0 = Instant::now();
    let (n, pinned) = drain(&mut c).await?;
    Ok((n, t0.elapsed().as_secs_f64(), pinned))
}

async fn drain(c: &mut client::IpfsConnectorClient) -> Result<(usize, usize)> {
    let mut s = c
        .status_all(StatusAllRequest { filter: 0 })
        .await
        .context("StatusAll")?
        .into_inner();
    let (mut n, mut pinned) = (0, 0);
    while let Some(i) = s.message().await.context("StatusAll stream")? {
        n += 1;
        if i.status == TrackerStatus::Pinned as i32 {
            pinned += 1;
        }
    }
    Ok((n, pinned))
}

/// `requests` POSTs to `url` over `concurrency` keep-alive connections; requests/s.
async fn hammer(url: &str, requests: usize, concurrency: usize) -> Result<f64> {
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let url = url.to_string();
        let n = requests / concurrency + usize::from(w < requests % concurrency);
        tasks.push(tokio::spawn(async move {
            let mut conn = HttpConnector::new();
            conn.set_nodelay(true); // as the proxy's own pool: no Nagle delays on either path
            let client = Client::builder(TokioExecutor::new()).build::<_, EmptyBody<Bytes>>(conn);
            for _ in 0..n {
                let req = Request::post(&url).body(EmptyBody::new())?;
                let resp = tokio::time::timeout(Duration::from_secs(30), client.request(req))
                    .await
                    .context("request timed out")??;
                let st = resp.status();
                resp.into_body().collect().await?;
                if !st.is_success() {
                    bail!("{url}: HTTP {st}");
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(requests as f64 / t0.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = args()?;
    let stop = CancellationToken::new();
    let token = InternalToken::generate();
    let pins = cids(a.pins);
    let (node, daemon_kind) = match &a.ipfs_api {
        Some(m) => (m.clone(), format!("the IPFS daemon at {m}")),
        None => {
            let addr = fake_kubo(&pins).await?;
            (
                format!("/ip4/127.0.0.1/tcp/{}", addr.port()),
                "the Kubo-shaped fake daemon (in-process)".to_string(),
            )
        }
    };
    println!("daemon: {daemon_kind}");

    let (n, secs, pinned) = status_all(&node, &pins, &token, &stop).await?;
    println!(
        "status-all: {n} items ({pinned} pinned) in {:.3} s = {:.0} items/s (gRPC StatusAll, {} tracked pins)",
        secs,
        n as f64 / secs,
        a.pins
    );

    // Proxy: forwards to the same daemon; consensus/transport are never called on this route.
    let addr = parse_node_multiaddress(&node)?;
    let daemon_url = match &addr {
        NodeAddr::Tcp(a) => format!("http://{a}"),
        NodeAddr::Unix(_) => bail!("--ipfs-api must be a TCP multiaddress for the proxy run"),
    };
    let kubo = Kubo::new(addr.clone(), Timeouts::default(), false);
    let pl = TcpListener::bind("127.0.0.1:0").await?;
    let paddr = pl.local_addr()?;
    let unused: SocketAddr = "127.0.0.1:9".parse()?;
    // Forwarded calls (header extraction is for hijacked ones); the access log goes to
    // tracing as in a real peer (no subscriber here).
    let p = proxy::Proxy::new(
        proxy::ProxyConfig::new(vec![paddr], addr),
        kubo,
        client::consensus(unused, &token),
        client::transport(unused, &token),
    )?;
    tokio::spawn(proxy::serve(
        vec![pl],
        p,
        ipfs_cluster_runtime::access_log::AccessLog::tracing(
            ipfs_cluster_runtime::access_log::Endpoint::IpfsProxy,
        ),
        stop.clone(),
    ));
    let direct_url = format!("{daemon_url}/api/v0/version");
    let proxy_url = format!("http://{paddr}/api/v0/version");
    // Two rounds, alternating, so warm-up (connection pools, the daemon's caches) and drift
    // under a loaded machine show up instead of favouring one side.
    for round in 1..=2 {
        let direct = hammer(&direct_url, a.requests, a.concurrency).await?;
        let via = hammer(&proxy_url, a.requests, a.concurrency).await?;
        println!(
            "proxy round {round} (POST /api/v0/version, {} requests, {} connections): direct {:.0} req/s, through the proxy {:.0} req/s ({:.0}% of direct)",
            a.requests,
            a.concurrency,
            direct,
            via,
            100.0 * via / direct,
        );
    }
    stop.cancel();
    Ok(())
}
