//! The load generator: N keep-alive HTTP/1.1 connections (hyper's low-level client, one
//! task each) sending requests back to back until a deadline or a request budget, with
//! per-request latency recorded. Also a streaming reader that counts NDJSON lines.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{client::conn::http1, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One request's time limit: a stuck server shows up as errors, never as a hang.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How a request is built: method, path (with query) for connection `conn`.
pub type MakeRequest = Arc<dyn Fn(usize) -> (hyper::Method, String) + Send + Sync>;

#[derive(Debug, Clone)]
pub struct LoadResult {
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    /// Latencies of the successful requests, microseconds, sorted.
    pub lat_us: Vec<u32>,
    /// The paths of the acknowledged (2xx) requests, so a run can check its own results.
    pub acked: Vec<String>,
}

impl LoadResult {
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
    pub fn pct_ms(&self, p: f64) -> f64 {
        if self.lat_us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.lat_us.len() as f64 - 1.0) * p).round() as usize;
        self.lat_us[i] as f64 / 1000.0
    }
}

async fn connect(addr: SocketAddr) -> Result<http1::SendRequest<Empty<Bytes>>> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (send, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

/// Runs `conns` connections; connection `i` talks to `targets[i % targets.len()]`
/// (round-robin of clients over peers). Stops at `duration` or after `max_requests`.
pub async fn run(
    targets: &[SocketAddr],
    conns: usize,
    duration: Duration,
    max_requests: u64,
    make: MakeRequest,
) -> Result<LoadResult> {
    if targets.is_empty() || conns == 0 {
        bail!("load: no targets or no connections");
    }
    let issued = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(conns);
    for i in 0..conns {
        let addr = targets[i % targets.len()];
        let make = make.clone();
        let issued = issued.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(4096);
            let mut acked = Vec::with_capacity(4096);
            let mut errors = 0u64;
            let mut first_error: Option<String> = None;
            let mut sender: Option<http1::SendRequest<Empty<Bytes>>> = None;
            while Instant::now() < deadline && issued.fetch_add(1, Ordering::Relaxed) < max_requests
            {
                if sender.as_ref().is_none_or(|s| s.is_closed()) {
                    match connect(addr).await {
                        Ok(s) => sender = Some(s),
                        Err(e) => {
                            errors += 1;
                            first_error.get_or_insert(format!("{e:#}"));
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    }
                }
                let s = sender.as_mut().expect("connected above");
                let (method, path) = make(i);
                let req = Request::builder()
                    .method(method)
                    .uri(&path)
                    .header("host", addr.to_string())
                    .body(Empty::<Bytes>::new())
                    .expect("valid request");
                let t0 = Instant::now();
                let res = tokio::time::timeout(REQUEST_TIMEOUT, async {
                    if s.ready().await.is_err() {
                        bail!("connection closed");
                    }
                    let resp = s.send_request(req).await?;
                    let status = resp.status();
                    let body = resp.into_body().collect().await?.to_bytes();
                    if !status.is_success() {
                        bail!("{status}: {}", String::from_utf8_lossy(&body));
                    }
                    Ok(())
                })
                .await;
                match res {
                    Ok(Ok(())) => {
                        lat.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        acked.push(path);
                    }
                    Ok(Err(e)) => {
                        errors += 1;
                        first_error.get_or_insert(format!("{e:#}"));
                        sender = None;
                    }
                    Err(_) => {
                        errors += 1;
                        first_error.get_or_insert("request timed out after 10 s".into());
                        sender = None;
                    }
                }
            }
            (lat, errors, first_error, acked)
        }));
    }
    let mut all = Vec::new();
    let mut acked = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for t in tasks {
        let (lat, e, fe, a) = t.await?;
        all.extend(lat);
        acked.extend(a);
        errors += e;
        if first_error.is_none() {
            first_error = fe;
        }
    }
    let elapsed = start.elapsed();
    all.sort_unstable();
    Ok(LoadResult {
        ok: all.len() as u64,
        errors,
        first_error,
        elapsed,
        lat_us: all,
        acked,
    })
}

/// GETs `path` and returns the `field` string of every NDJSON line (e.g. each pin's `cid`
/// in `GET /allocations`).
pub async fn stream_field(
    addr: SocketAddr,
    path: &str,
    field: &str,
    timeout: Duration,
) -> Result<Vec<String>> {
    let fut = async {
        let mut s = connect(addr).await?;
        let req = Request::get(path)
            .header("host", addr.to_string())
            .body(Empty::<Bytes>::new())?;
        let resp = s.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!("GET {path}: {status}: {}", String::from_utf8_lossy(&body));
        }
        let mut out = Vec::new();
        for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_slice(line)
                .with_context(|| format!("GET {path}: a line is not JSON"))?;
            match v.get(field).and_then(|f| f.as_str()) {
                Some(f) => out.push(f.to_string()),
                None => bail!("GET {path}: a line has no string {field:?}: {v}"),
            }
        }
        Ok(out)
    };
    tokio::time::timeout(timeout, fut)
        .await
        .with_context(|| format!("GET {path} did not finish within {timeout:?}"))?
}

/// Result of reading one streamed listing.
#[derive(Debug, Clone)]
pub struct StreamResult {
    pub items: u64,
    pub bytes: u64,
    pub elapsed: Duration,
}

impl StreamResult {
    pub fn rate(&self) -> f64 {
        self.items as f64 / self.elapsed.as_secs_f64()
    }
}

/// GETs `path` and counts NDJSON lines as they stream in (nothing is kept in memory).
pub async fn stream_lines(addr: SocketAddr, path: &str, timeout: Duration) -> Result<StreamResult> {
    let t0 = Instant::now();
    let fut = async {
        let mut s = connect(addr).await?;
        let req = Request::get(path)
            .header("host", addr.to_string())
            .body(Empty::<Bytes>::new())?;
        let resp = s.send_request(req).await?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.into_body().collect().await?.to_bytes();
            bail!("GET {path}: {status}: {}", String::from_utf8_lossy(&body));
        }
        let mut body = resp.into_body();
        let (mut items, mut bytes) = (0u64, 0u64);
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                bytes += data.len() as u64;
                items += data.iter().filter(|&&b| b == b'\n').count() as u64;
            }
        }
        Ok((items, bytes))
    };
    let (items, bytes) = tokio::time::timeout(timeout, fut)
        .await
        .with_context(|| format!("GET {path} did not finish within {timeout:?}"))??;
    Ok(StreamResult {
        items,
        bytes,
        elapsed: t0.elapsed(),
    })
}

/// One small GET; returns the status and body (used to poll readiness).
pub async fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(u16, Bytes)> {
    let fut = async {
        let mut s = connect(addr).await?;
        let req = Request::get(path)
            .header("host", addr.to_string())
            .body(Empty::<Bytes>::new())?;
        let resp = s.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok::<_, anyhow::Error>((status, body))
    };
    tokio::time::timeout(timeout, fut)
        .await
        .with_context(|| format!("GET {path} timed out"))?
}

/// One POST without a body; returns the status and body.
pub async fn post(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(u16, Bytes)> {
    let fut = async {
        let mut s = connect(addr).await?;
        let req = Request::post(path)
            .header("host", addr.to_string())
            .body(Empty::<Bytes>::new())?;
        let resp = s.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok::<_, anyhow::Error>((status, body))
    };
    tokio::time::timeout(timeout, fut)
        .await
        .with_context(|| format!("POST {path} timed out"))?
}

/// GETs `path` until its first NDJSON line arrives (then drops the connection).
pub async fn first_line(addr: SocketAddr, path: &str, timeout: Duration) -> Result<()> {
    let fut = async {
        let mut s = connect(addr).await?;
        let req = Request::get(path)
            .header("host", addr.to_string())
            .body(Empty::<Bytes>::new())?;
        let resp = s.send_request(req).await?;
        if !resp.status().is_success() {
            bail!("GET {path}: {}", resp.status());
        }
        let mut body = resp.into_body();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                if data.contains(&b'\n') {
                    return Ok(());
                }
            }
        }
        bail!("GET {path}: the stream ended without an item")
    };
    tokio::time::timeout(timeout, fut)
        .await
        .with_context(|| format!("GET {path}: no item within {timeout:?}"))?
}
