//! Peer-call benchmark: round trips per second and p50/p99
//! latency of `Transport.Call` between two transports on loopback, beside a raw TCP echo
//! with the same request size and concurrency (the ceiling), in the same run.
//!
//! Peer-call path: gRPC client -> transport A (gRPC, token) -> libp2p (pnet + noise + yamux,
//! one stream per call) -> transport B (policy) -> B's local echo service (gRPC) and back.
//! Also measured, to show where the time goes: the same gRPC client straight to the echo
//! service (one gRPC hop; a peer call makes two plus the libp2p hop).
//!
//! `cargo run --release -p ipfs-cluster-transport --example peer_call_bench -- [--secs 5]
//!  [--concurrency 32] [--size 256] [--only raw|grpc|local|peer] [--server-nodelay]`

use std::{
    collections::{HashMap, HashSet},
    convert::Infallible,
    future::{ready, Future, Ready},
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use ipfs_cluster_proto::{
    names::GATEWAY,
    transport::v1::{DialRequest, PeerCallRequest},
    InternalToken,
};
use ipfs_cluster_transport::{local::BytesCodec, start, Members, TransportOptions};
use libp2p::identity::Keypair;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tonic::{
    body::Body,
    codegen::Service,
    server::{NamedService, UnaryService},
    Request, Response, Status,
};

struct Args {
    /// Only this figure ("raw", "grpc", "local" or "peer"), e.g. for profiling; "" = all three.
    only: String,
    /// Serve the internal gRPC endpoints with TCP_NODELAY (ipfs_cluster_proto::serve does not).
    nodelay: bool,
    secs: u64,
    concurrency: usize,
    size: usize,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        only: String::new(),
        nodelay: false,
        secs: 5,
        concurrency: 32,
        size: 256,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        if k == "--server-nodelay" {
            a.nodelay = true;
            continue;
        }
        let v = it
            .next()
            .ok_or_else(|| anyhow::anyhow!("{k} needs a value"))?;
        match k.as_str() {
            "--secs" => a.secs = v.parse()?,
            "--concurrency" => a.concurrency = v.parse()?,
            "--size" => a.size = v.parse()?,
            "--only" if ["raw", "grpc", "local", "peer"].contains(&v.as_str()) => a.only = v,
            _ => anyhow::bail!(
                "unknown option {k} {v}; use --secs N --concurrency N --size BYTES [--only raw|grpc|local|peer] [--server-nodelay]"
            ),
        }
    }
    anyhow::ensure!(
        a.secs > 0 && a.concurrency > 0,
        "--secs and --concurrency must be > 0"
    );
    Ok(a)
}

// ---- the echo service behind transport B (answers every method with its payload) ----

struct Echo;
impl UnaryService<Bytes> for Echo {
    type Response = Bytes;
    type Future = Ready<Result<Response<Bytes>, Status>>;
    fn call(&mut self, r: Request<Bytes>) -> Self::Future {
        ready(Ok(Response::new(r.into_inner())))
    }
}

#[derive(Clone)]
struct EchoGateway;
impl NamedService for EchoGateway {
    const NAME: &'static str = GATEWAY;
}
impl Service<http::Request<Body>> for EchoGateway {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        Box::pin(async move { Ok(tonic::server::Grpc::new(BytesCodec).unary(Echo, req).await) })
    }
}

async fn serve<S>(svc: S, token: &InternalToken, nodelay: bool) -> anyhow::Result<SocketAddr>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let l = ipfs_cluster_runtime::bind_internal("127.0.0.1:0".parse()?, false).await?;
    let addr = l.local_addr()?;
    if nodelay {
        // The same server as ipfs_cluster_proto::serve (token check) but with TCP_NODELAY
        // on accepted sockets, to measure what Nagle's algorithm costs the internal hops.
        let incoming = tonic::transport::server::TcpIncoming::from(l).with_nodelay(Some(true));
        tokio::spawn(
            tonic::transport::Server::builder()
                .layer(ipfs_cluster_runtime::grpc::AuthLayer {
                    token: token.clone(),
                    observer: None,
                })
                .add_service(svc)
                .serve_with_incoming(incoming),
        );
        return Ok(addr);
    }
    tokio::spawn(ipfs_cluster_runtime::serve(
        l,
        token.clone(),
        svc,
        std::future::pending(),
    ));
    Ok(addr)
}

// ---- the load generator ----

struct Figures {
    calls: usize,
    /// Process CPU time (user + system, every thread) during the measured window.
    cpu: Duration,
    errors: usize,
    secs: f64,
    p50: Duration,
    p99: Duration,
}

impl Figures {
    fn rate(&self) -> f64 {
        self.calls as f64 / self.secs
    }
    /// CPU microseconds one round trip costs (client and server sides together).
    fn cpu_per_call_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.calls.max(1) as f64
    }
    fn line(&self, what: &str) -> String {
        format!(
            "| {what} | {:.0} | {:.3} | {:.3} | {:.1} | {} |",
            self.rate(),
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
            self.cpu_per_call_us(),
            self.errors
        )
    }
}

/// CPU time used by this process so far (utime + stime from /proc/self/stat, 10 ms ticks).
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name may contain spaces: fields are counted after the closing ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // fields 14 and 15 of stat are utime and stime; in `rest` they are at 11 and 12.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// Runs `concurrency` workers, each calling `one` in a loop for `secs` (after a 1 s warm-up).
async fn load<W, F, Fut>(concurrency: usize, secs: u64, make: W) -> Figures
where
    W: Fn(usize) -> F,
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let warm = Instant::now() + Duration::from_secs(1);
    let end = warm + Duration::from_secs(secs);
    let workers: Vec<_> = (0..concurrency)
        .map(|i| {
            let mut one = make(i);
            tokio::spawn(async move {
                let mut lat: Vec<u32> = Vec::with_capacity(1 << 16);
                let mut errors = 0usize;
                loop {
                    let t = Instant::now();
                    if t >= end {
                        break;
                    }
                    let ok = one().await;
                    if t >= warm {
                        if ok {
                            lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        } else {
                            errors += 1;
                        }
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    tokio::time::sleep_until(warm.into()).await;
    let cpu0 = process_cpu();
    tokio::time::sleep_until(end.into()).await;
    let cpu = process_cpu().saturating_sub(cpu0);
    let mut all = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (l, e) = w.await.expect("worker does not panic");
        all.extend(l);
        errors += e;
    }
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map(|us| Duration::from_micros(*us as u64))
            .unwrap_or_default()
    };
    Figures {
        calls: all.len(),
        cpu,
        errors,
        secs: secs as f64,
        p50: pct(0.50),
        p99: pct(0.99),
    }
}

// ---- raw TCP echo: 4-byte length + payload, echoed back ----

async fn tcp_echo_server() -> anyhow::Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let mut len = [0u8; 4];
                    if s.read_exact(&mut len).await.is_err() {
                        return;
                    }
                    buf.resize(u32::from_be_bytes(len) as usize, 0);
                    if s.read_exact(&mut buf).await.is_err() {
                        return;
                    }
                    let mut out = Vec::with_capacity(4 + buf.len());
                    out.extend_from_slice(&len);
                    out.extend_from_slice(&buf);
                    if s.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(addr)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    let payload = Bytes::from(vec![0x5a; a.size]);
    println!(
        "peer-call benchmark: {} concurrent callers, {}-byte requests, {} s per figure (after 1 s warm-up), {} CPUs",
        a.concurrency,
        a.size,
        a.secs,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );

    // Two transports (same secret) and B's echo service.
    let token = InternalToken::generate();
    let echo = serve(EchoGateway, &token, a.nodelay).await?;
    let keys: Vec<Keypair> = (0..2).map(|_| Keypair::generate_ed25519()).collect();
    let ids: HashSet<_> = keys.iter().map(|k| k.public().to_peer_id()).collect();
    let mut nodes = Vec::new();
    for k in &keys {
        let mut o = TransportOptions::new(
            k.clone(),
            Some([7; 32]),
            vec!["/ip4/127.0.0.1/tcp/0".parse()?],
            token.clone(),
        );
        o.services = HashMap::from([(GATEWAY.to_string(), echo)]);
        o.members = Some(Members::Fixed(Arc::new(ids.clone())));
        let running = start(o).await?;
        let grpc = serve(running.grpc(), &token, a.nodelay).await?;
        nodes.push((running, grpc));
    }
    let b_id = nodes[1].0.host.local_peer_id.to_string();
    let b_addr = nodes[1].0.host.addresses()[0].to_string();
    let client = ipfs_cluster_proto::client::transport(nodes[0].1, &token);
    client
        .clone()
        .dial(DialRequest { multiaddr: b_addr })
        .await?;
    let check = client
        .clone()
        .call(PeerCallRequest {
            peer: b_id.clone(),
            service: GATEWAY.into(),
            method: "Id".into(),
            payload: payload.to_vec(),
            timeout_ms: 5000,
        })
        .await?
        .into_inner();
    anyhow::ensure!(
        check.payload == payload,
        "echo through the peer call differs"
    );

    // 1. Raw TCP echo (the ceiling): one connection per caller.
    let tcp = tcp_echo_server().await?;
    let mut conns = Vec::new();
    for _ in 0..a.concurrency {
        let s = TcpStream::connect(tcp).await?;
        s.set_nodelay(true)?;
        conns.push(Arc::new(tokio::sync::Mutex::new(s)));
    }
    let size = a.size;
    let run = |what: &str| a.only.is_empty() || a.only == what;
    let skipped = || Figures {
        calls: 0,
        cpu: Duration::ZERO,
        errors: 0,
        secs: 1.0,
        p50: Duration::ZERO,
        p99: Duration::ZERO,
    };
    let raw = if !run("raw") {
        skipped()
    } else {
        load(a.concurrency, a.secs, |i| {
            let conn = conns[i].clone();
            let mut frame = (size as u32).to_be_bytes().to_vec();
            frame.extend(std::iter::repeat_n(0x5a, size));
            move || {
                let conn = conn.clone();
                let frame = frame.clone();
                async move {
                    let mut s = conn.lock().await;
                    let mut back = vec![0u8; frame.len()];
                    s.write_all(&frame).await.is_ok()
                        && s.read_exact(&mut back).await.is_ok()
                        && back == frame
                }
            }
        })
        .await
    };

    // 2. One gRPC hop: the client straight to the echo service (reference).
    let echo_client = tonic::client::Grpc::new(ipfs_cluster_proto::client::authed(echo, &token));
    let grpc = if !run("grpc") {
        skipped()
    } else {
        load(a.concurrency, a.secs, |_| {
            let c = echo_client.clone();
            let payload = payload.clone();
            move || {
                let mut c = c.clone();
                let payload = payload.clone();
                async move {
                    if c.ready().await.is_err() {
                        return false;
                    }
                    let path =
                        http::uri::PathAndQuery::from_static("/ipfscluster.gateway.v1.Gateway/Id");
                    matches!(c.unary(Request::new(payload.clone()), path, BytesCodec).await,
                    Ok(r) if r.get_ref() == &payload)
                }
            }
        })
        .await
    };

    // 3. Transport.Call to our own service (peer ""): two gRPC hops, no libp2p.
    let local = if !run("local") {
        skipped()
    } else {
        load(a.concurrency, a.secs, |_| {
            let c = client.clone();
            let payload = payload.clone();
            move || {
                let mut c = c.clone();
                let req = PeerCallRequest {
                    peer: String::new(),
                    service: GATEWAY.into(),
                    method: "Id".into(),
                    payload: payload.to_vec(),
                    timeout_ms: 10_000,
                };
                let payload = payload.clone();
                async move { matches!(c.call(req).await, Ok(r) if r.get_ref().payload == payload) }
            }
        })
        .await
    };

    // 4. Peer calls A -> B through Transport.Call.
    let peer = if !run("peer") {
        skipped()
    } else {
        load(a.concurrency, a.secs, |_| {
            let c = client.clone();
            let (payload, b_id) = (payload.clone(), b_id.clone());
            move || {
                let mut c = c.clone();
                let req = PeerCallRequest {
                    peer: b_id.clone(),
                    service: GATEWAY.into(),
                    method: "Id".into(),
                    payload: payload.to_vec(),
                    timeout_ms: 10_000,
                };
                let payload = payload.clone();
                async move { matches!(c.call(req).await, Ok(r) if r.get_ref().payload == payload) }
            }
        })
        .await
    };

    println!();
    println!("| path | round trips/s | p50 ms | p99 ms | CPU µs per round trip | errors |");
    println!("|---|---|---|---|---|---|");
    println!("{}", raw.line("raw TCP echo (ceiling)"));
    println!("{}", grpc.line("gRPC echo, one hop (reference)"));
    println!(
        "{}",
        local.line("Transport.Call to the local service, two gRPC hops (reference)")
    );
    println!("{}", peer.line("peer call A -> B (Transport.Call)"));
    println!();
    println!(
        "peer calls = {:.1} % of the raw TCP echo rate (target >= 50 %); {:.1} % of one gRPC hop",
        100.0 * peer.rate() / raw.rate(),
        100.0 * peer.rate() / grpc.rate()
    );
    println!(
        "by CPU cost per round trip (robust when the machine is shared): peer call = {:.1} % of raw TCP echo, {:.1} % of one gRPC hop",
        100.0 * raw.cpu_per_call_us() / peer.cpu_per_call_us(),
        100.0 * grpc.cpu_per_call_us() / peer.cpu_per_call_us()
    );
    println!(
        "load average during the run: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    for (r, _) in nodes {
        r.stop().await;
    }
    Ok(())
}
