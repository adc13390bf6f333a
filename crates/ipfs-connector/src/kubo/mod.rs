//! Kubo RPC client: the only code that talks to the IPFS daemon. Every call is an HTTP
//! POST to `/api/v0/<path>` over TCP or a unix socket (from `node_multiaddress`), with
//! upstream's parameters, per-call timeouts, error texts and the "throttle after more
//! than 10 consecutive connection failures" rule. It follows Kubo's answers (tested
//! against the pinned Kubo of deploy/local/kubo.sh).

pub mod prometheus;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        atomic::{AtomicU32, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use cid::Cid;
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, Request, Response};
use hyper_util::rt::TokioIo;
use multiaddr::{Multiaddr, Protocol};
use serde::Deserialize;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpStream, UnixStream},
    sync::Mutex,
    time::Instant,
};
use tokio_util::sync::CancellationToken;

/// Where the daemon's RPC API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeAddr {
    /// `host:port` (an IP or a DNS name).
    Tcp(String),
    Unix(PathBuf),
}

impl std::fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeAddr::Tcp(a) => f.write_str(a),
            NodeAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Parses `/ip4/H/tcp/P`, `/ip6/H/tcp/P`, `/dns{,4,6}/NAME/tcp/P` or `/unix/PATH`.
pub fn parse_node_multiaddress(s: &str) -> Result<NodeAddr, KuboError> {
    let bad = |reason: &str| KuboError::BadAddress {
        addr: s.to_string(),
        reason: reason.to_string(),
    };
    // /unix takes the rest of the address as its path (as in go-multiaddr).
    if let Some(path) = s.strip_prefix("/unix/") {
        if path.is_empty() {
            return Err(bad("empty unix socket path"));
        }
        return Ok(NodeAddr::Unix(PathBuf::from(format!("/{path}"))));
    }
    let ma: Multiaddr = s
        .parse()
        .map_err(|e| bad(&format!("not a multiaddress ({e})")))?;
    let mut it = ma.iter();
    let host = match it.next() {
        Some(Protocol::Ip4(ip)) => ip.to_string(),
        Some(Protocol::Ip6(ip)) => format!("[{ip}]"),
        Some(Protocol::Dns(n) | Protocol::Dns4(n) | Protocol::Dns6(n)) => n.to_string(),
        Some(Protocol::Unix(p)) => {
            let p = p.to_string();
            return Ok(NodeAddr::Unix(PathBuf::from(if p.starts_with('/') {
                p
            } else {
                format!("/{p}")
            })));
        }
        _ => {
            return Err(bad(
                "expected /ip4, /ip6, /dns, /dns4, /dns6 or /unix first",
            ))
        }
    };
    match (it.next(), it.next()) {
        (Some(Protocol::Tcp(port)), None) => Ok(NodeAddr::Tcp(format!("{host}:{port}"))),
        _ => Err(bad(
            "expected exactly /tcp/<port> after the host, e.g. /ip4/127.0.0.1/tcp/5001",
        )),
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum KuboError {
    #[error("IPFS error ({path}). Code: {code}. Message: {message}")]
    Ipfs {
        path: String,
        code: u16,
        message: String,
    },
    #[error("IPFS request failed (is it running?) ({path}). Code {code}: {body}")]
    BadStatus {
        path: String,
        code: u16,
        body: String,
    },
    #[error("cannot reach the IPFS daemon at {addr} ({path}): {reason}; is it running? (check ipfs_connector.ipfshttp.node_multiaddress)")]
    Unreachable {
        addr: String,
        path: String,
        reason: String,
    },
    #[error("IPFS request {path} timed out after {after:?}")]
    Timeout { path: String, after: Duration },
    #[error("pin/add made no progress for {after:?} (pin_timeout); the content may not be reachable from this IPFS node")]
    PinStalled { after: Duration },
    #[error("IPFS response of {path} could not be decoded: {reason}")]
    Decode { path: String, reason: String },
    #[error("operation cancelled")]
    Cancelled,
    #[error("invalid node_multiaddress {addr}: {reason}")]
    BadAddress { addr: String, reason: String },
    #[error("ipfs unpinning is disallowed by configuration on this peer")]
    UnpinDisabled,
    #[error("{0}")]
    Invalid(String),
}

impl ipfs_cluster_runtime::ServiceError for KuboError {
    fn error_code(&self) -> ipfs_cluster_runtime::ErrorCode {
        use ipfs_cluster_runtime::ErrorCode;
        match self {
            KuboError::Unreachable { .. } => ErrorCode::Unavailable,
            KuboError::Timeout { .. } | KuboError::PinStalled { .. } => ErrorCode::Timeout,
            KuboError::Invalid(_) | KuboError::BadAddress { .. } => ErrorCode::BadRequest,
            KuboError::Cancelled => ErrorCode::Cancelled,
            KuboError::UnpinDisabled => ErrorCode::FailedPrecondition,
            KuboError::Ipfs { .. } | KuboError::BadStatus { .. } | KuboError::Decode { .. } => {
                ErrorCode::Internal
            }
        }
    }
}

impl KuboError {
    /// True when the daemon itself could not be reached (not an answer from it).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, KuboError::Unreachable { .. })
    }
    fn ipfs_message(&self) -> Option<&str> {
        match self {
            KuboError::Ipfs { message, .. } => Some(message),
            _ => None,
        }
    }
}

/// Kubo's JSON error body.
#[derive(Deserialize)]
struct KuboErrorBody {
    #[serde(rename = "Message")]
    message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpfsId {
    pub id: String,
    pub addresses: Vec<String>,
}

impl IpfsId {
    /// The addresses other peers may be told about (ping metric, PinInfo, pinsvc
    /// delegates), as upstream's `publicIPFSAddresses`: DNS multiaddresses, and those
    /// whose IP is global unicast in Go's sense (private ranges included; loopback,
    /// link-local, multicast and unspecified dropped). Swarm connections between the
    /// cluster's own IPFS daemons still use every address.
    pub fn public_addresses(&self) -> Vec<String> {
        self.addresses
            .iter()
            .filter(|a| a.parse::<Multiaddr>().is_ok_and(|m| is_public(&m)))
            .cloned()
            .collect()
    }
}

fn is_public(m: &Multiaddr) -> bool {
    use std::net::IpAddr;
    let ip = m.iter().find_map(|p| match p {
        Protocol::Dns(_) | Protocol::Dns4(_) | Protocol::Dns6(_) | Protocol::Dnsaddr(_) => {
            Some(None)
        }
        Protocol::Ip4(a) => Some(Some(IpAddr::V4(a))),
        Protocol::Ip6(a) => Some(Some(IpAddr::V6(a))),
        _ => None,
    });
    match ip {
        Some(None) => true,
        Some(Some(IpAddr::V4(a))) => {
            !(a.is_loopback()
                || a.is_link_local()
                || a.is_multicast()
                || a.is_unspecified()
                || a.is_broadcast())
        }
        Some(Some(IpAddr::V6(a))) => {
            // Go: not loopback, not multicast, not unspecified, not fe80::/10; an
            // IPv4-mapped address is judged as IPv4.
            if let Some(v4) = a.to_ipv4_mapped() {
                return is_public(&Multiaddr::empty().with(Protocol::Ip4(v4)));
            }
            !(a.is_loopback()
                || a.is_multicast()
                || a.is_unspecified()
                || (a.segments()[0] & 0xffc0) == 0xfe80)
        }
        None => false,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RepoStat {
    pub repo_size: u64,
    pub storage_max: u64,
    pub num_objects: u64,
}

/// How a CID is pinned on the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinKind {
    Recursive,
    Direct,
    Indirect,
}

impl PinKind {
    fn parse(s: &str) -> Option<Self> {
        if s.starts_with("recursive") {
            Some(PinKind::Recursive)
        } else if s.starts_with("direct") {
            Some(PinKind::Direct)
        } else if s.starts_with("indirect") {
            Some(PinKind::Indirect)
        } else {
            None
        }
    }
}

/// One block for `block_put_many`: its bytes and how Kubo should hash it.
#[derive(Debug, Clone)]
pub struct BlockToPut {
    pub data: Bytes,
    /// Codec name ("raw", "dag-pb", ...); empty = raw.
    pub format: String,
    /// Multihash name; empty = sha2-256.
    pub mhtype: String,
    pub cid_version: i32,
}

impl BlockToPut {
    /// The `block/put` query for this block (upstream's `blockPutQuery`, see `block_put`).
    fn query(&self) -> String {
        let codec = if self.format.is_empty() {
            "raw"
        } else {
            &self.format
        };
        let mhtype = if self.mhtype.is_empty() {
            "sha2-256"
        } else {
            &self.mhtype
        };
        if self.cid_version == 0 && codec == "dag-pb" && mhtype == "sha2-256" {
            "format=v0&mhtype=sha2-256&mhlen=-1&pin=false&allow-big-block=true".to_string()
        } else {
            format!(
                "cid-codec={}&mhtype={}&mhlen=-1&pin=false&allow-big-block=true",
                q(codec),
                q(mhtype)
            )
        }
    }
}

/// Timeouts of the client.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub request: Duration,
    pub pin: Duration,
    pub unpin: Duration,
    pub repogc: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            request: Duration::from_secs(300),
            pin: Duration::from_secs(120),
            unpin: Duration::from_secs(3 * 3600),
            repogc: Duration::from_secs(24 * 3600),
        }
    }
}

/// The client. Cheap to clone.
#[derive(Clone)]
pub struct Kubo {
    inner: Arc<Inner>,
}

struct Inner {
    addr: NodeAddr,
    timeouts: Timeouts,
    unpin_disable: bool,
    /// Consecutive connection-level failures; above 10 requests go out at most once a second.
    failures: AtomicU32,
    next_allowed: Mutex<Instant>,
    /// Total requests sent (tests and the bench read it).
    requests: AtomicU64,
    /// The Prometheus families of the requests, once registered.
    metrics: std::sync::OnceLock<prometheus::RequestMetrics>,
}

const MAX_ERROR_BODY: usize = 1 << 20;
const THROTTLE_AFTER: u32 = 10;

/// Strips an `/ipfs/` prefix and parses a CID, naming the bad input on error.
pub fn parse_cid(s: &str) -> Result<Cid, KuboError> {
    let t = s.trim().trim_start_matches("/ipfs/");
    Cid::try_from(t).map_err(|e| KuboError::Invalid(format!("invalid CID {s:?}: {e}")))
}

/// Percent-encodes a query value.
fn q(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Kubo {
    pub fn new(addr: NodeAddr, timeouts: Timeouts, unpin_disable: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                addr,
                timeouts,
                unpin_disable,
                failures: AtomicU32::new(0),
                next_allowed: Mutex::new(Instant::now()),
                requests: AtomicU64::new(0),
                metrics: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Counts and times every request in `m`'s families from now on (this client and its
    /// clones; the first registration wins).
    pub fn record_metrics(&self, m: &ipfs_cluster_observability::Metrics) {
        let _ = self
            .inner
            .metrics
            .set(prometheus::RequestMetrics::register(m));
    }

    pub fn addr(&self) -> &NodeAddr {
        &self.inner.addr
    }
    pub fn timeouts(&self) -> Timeouts {
        self.inner.timeouts
    }
    pub fn requests_sent(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    async fn throttle(&self) {
        if self.inner.failures.load(Ordering::Relaxed) > THROTTLE_AFTER {
            let mut next = self.inner.next_allowed.lock().await;
            let now = Instant::now();
            if *next > now {
                tokio::time::sleep_until(*next).await;
            }
            *next = Instant::now() + Duration::from_secs(1);
        }
    }

    /// Sends one POST and returns the response when it is 200; other statuses become
    /// upstream's error texts. No timeout here: callers bound the whole exchange.
    /// Counted and timed in the Prometheus families when metrics are on.
    pub async fn post(
        &self,
        path: &str,
        query: &str,
        body: Option<(String, Bytes)>,
    ) -> Result<Response<Incoming>, KuboError> {
        let started = std::time::Instant::now();
        let res = self.post_untimed(path, query, body).await;
        if let Some(m) = self.inner.metrics.get() {
            m.record(path, &res, started);
        }
        res
    }

    async fn post_untimed(
        &self,
        path: &str,
        query: &str,
        body: Option<(String, Bytes)>,
    ) -> Result<Response<Incoming>, KuboError> {
        self.throttle().await;
        self.inner.requests.fetch_add(1, Ordering::Relaxed);
        let uri = if query.is_empty() {
            format!("/api/v0/{path}")
        } else {
            format!("/api/v0/{path}?{query}")
        };
        let host = match &self.inner.addr {
            NodeAddr::Tcp(a) => a.clone(),
            NodeAddr::Unix(_) => "localhost".to_string(),
        };
        // TE: trailers so servers that honour it (hyper) send X-Stream-Error like Kubo does.
        let mut b = Request::post(uri)
            .header(http::header::HOST, host)
            .header(http::header::TE, "trailers");
        let bytes = match body {
            Some((ct, bytes)) => {
                b = b.header(http::header::CONTENT_TYPE, ct);
                bytes
            }
            None => Bytes::new(),
        };
        let req = b
            .body(Full::new(bytes))
            .map_err(|e| KuboError::Invalid(format!("bad request for {path}: {e}")))?;
        let unreachable = |reason: ExchangeError| KuboError::Unreachable {
            addr: self.inner.addr.to_string(),
            path: path.to_string(),
            reason: reason.to_string(),
        };
        let sent = match &self.inner.addr {
            NodeAddr::Tcp(a) => match TcpStream::connect(a.as_str()).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    send(s, req).await
                }
                Err(e) => Err(ExchangeError::Connect(e)),
            },
            NodeAddr::Unix(p) => match UnixStream::connect(p).await {
                Ok(s) => send(s, req).await,
                Err(e) => Err(ExchangeError::Connect(e)),
            },
        };
        let resp = match sent {
            Ok(r) => {
                self.inner.failures.store(0, Ordering::Relaxed);
                r
            }
            Err(reason) => {
                let n = self.inner.failures.fetch_add(1, Ordering::Relaxed) + 1;
                if n == THROTTLE_AFTER + 1 {
                    tracing::warn!(addr = %self.inner.addr, "IPFS daemon unreachable more than {THROTTLE_AFTER} times in a row; throttling requests to one per second");
                }
                return Err(unreachable(reason));
            }
        };
        let code = resp.status().as_u16();
        if code == 200 {
            return Ok(resp);
        }
        let body = read_limited(resp.into_body(), MAX_ERROR_BODY)
            .await
            .unwrap_or_default();
        match serde_json::from_slice::<KuboErrorBody>(&body) {
            Ok(e) => Err(KuboError::Ipfs {
                path: path.to_string(),
                code,
                message: e.message,
            }),
            Err(_) => Err(KuboError::BadStatus {
                path: path.to_string(),
                code,
                body: String::from_utf8_lossy(&body).trim().to_string(),
            }),
        }
    }

    /// POST + whole body, bounded by `timeout`.
    async fn call(
        &self,
        path: &str,
        query: &str,
        body: Option<(String, Bytes)>,
        timeout: Duration,
    ) -> Result<Bytes, KuboError> {
        let fut = async {
            let resp = self.post(path, query, body).await?;
            let mut lines = NdJson::new(resp.into_body(), path);
            lines.rest().await
        };
        tokio::time::timeout(timeout, fut)
            .await
            .unwrap_or_else(|_| {
                Err(KuboError::Timeout {
                    path: path.to_string(),
                    after: timeout,
                })
            })
    }

    fn decode<T: for<'de> Deserialize<'de>>(path: &str, b: &[u8]) -> Result<T, KuboError> {
        serde_json::from_slice(b).map_err(|e| KuboError::Decode {
            path: path.to_string(),
            reason: e.to_string(),
        })
    }

    pub async fn id(&self) -> Result<IpfsId, KuboError> {
        #[derive(Deserialize)]
        struct R {
            #[serde(rename = "ID")]
            id: String,
            #[serde(rename = "Addresses", default)]
            addresses: Option<Vec<String>>,
        }
        let b = self
            .call("id", "", None, self.inner.timeouts.request)
            .await?;
        let r: R = Self::decode("id", &b)?;
        let addresses = r
            .addresses
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a.parse::<Multiaddr>().is_ok())
            .collect();
        Ok(IpfsId {
            id: r.id,
            addresses,
        })
    }

    /// How `cid` is pinned, checking only the given kind (`Recursive` or `Direct`);
    /// `None` when the daemon says it is not pinned that way.
    pub async fn pin_ls_cid(&self, cid: &str, kind: PinKind) -> Result<Option<PinKind>, KuboError> {
        let t = if kind == PinKind::Direct {
            "direct"
        } else {
            "recursive"
        };
        let query = format!("stream=true&arg={}&type={t}", q(cid));
        let fut = async {
            let resp = match self.post("pin/ls", &query, None).await {
                Ok(r) => r,
                Err(e) if e.ipfs_message().is_some_and(is_not_pinned) => return Ok(None),
                Err(e) => return Err(e),
            };
            let mut lines = NdJson::new(resp.into_body(), "pin/ls");
            match lines.next_line().await {
                Ok(Some(line)) => {
                    let e: PinLsEntry = Self::decode("pin/ls", &line)?;
                    Ok(PinKind::parse(&e.kind))
                }
                Ok(None) => Ok(None),
                Err(e) if e.ipfs_message().is_some_and(is_not_pinned) => Ok(None),
                Err(e) => Err(e),
            }
        };
        let to = self.inner.timeouts.request;
        tokio::time::timeout(to, fut).await.unwrap_or_else(|_| {
            Err(KuboError::Timeout {
                path: "pin/ls".into(),
                after: to,
            })
        })
    }

    /// Every recursive and direct pin on the daemon, keyed by the CID in its canonical
    /// string form (CIDv1 in base32 whatever base the daemon printed it in). One
    /// `ipfs_request_timeout` bounds the whole listing.
    pub async fn pin_ls_all(&self) -> Result<HashMap<String, PinKind>, KuboError> {
        let to = self.inner.timeouts.request;
        let fut = async {
            let mut out = HashMap::new();
            for t in ["recursive", "direct"] {
                let resp = self
                    .post("pin/ls", &format!("stream=true&type={t}"), None)
                    .await?;
                let mut lines = NdJson::new(resp.into_body(), "pin/ls");
                while let Some(line) = lines.next_line().await? {
                    let e: PinLsEntry = Self::decode("pin/ls", &line)?;
                    let key = canonical_cid(&e.cid);
                    if let Some(k) = PinKind::parse(&e.kind) {
                        out.insert(key, k);
                    }
                }
            }
            Ok(out)
        };
        tokio::time::timeout(to, fut).await.unwrap_or_else(|_| {
            Err(KuboError::Timeout {
                path: "pin/ls".into(),
                after: to,
            })
        })
    }

    /// `pin/add … progress=true` with the no-progress watchdog: every `pin_timeout` the
    /// Progress counter must have grown, or the request is dropped.
    pub async fn pin_add(
        &self,
        cid: &str,
        max_depth: i32,
        cancel: &CancellationToken,
    ) -> Result<(), KuboError> {
        let query = match max_depth {
            d if d < 0 => format!("arg={}&recursive=true&progress=true", q(cid)),
            0 => format!("arg={}&recursive=false&progress=true", q(cid)),
            d => format!("arg={}&max-depth={d}&recursive=true&progress=true", q(cid)),
        };
        let progress = AtomicU64::new(0);
        let work = async {
            let resp = self.post("pin/add", &query, None).await?;
            let mut lines = NdJson::new(resp.into_body(), "pin/add");
            while let Some(line) = lines.next_line().await? {
                #[derive(Deserialize)]
                struct P {
                    #[serde(rename = "Progress", default)]
                    progress: Option<u64>,
                }
                if let Ok(P { progress: Some(p) }) = serde_json::from_slice::<P>(&line) {
                    progress.store(p.max(1), Ordering::Relaxed);
                }
            }
            Ok::<_, KuboError>(())
        };
        tokio::pin!(work);
        let every = self.inner.timeouts.pin;
        let mut ticker = tokio::time::interval_at(Instant::now() + every, every);
        let mut seen = 0u64;
        loop {
            tokio::select! {
                r = &mut work => return r,
                _ = cancel.cancelled() => return Err(KuboError::Cancelled),
                _ = ticker.tick() => {
                    let p = progress.load(Ordering::Relaxed);
                    if p <= seen {
                        return Err(KuboError::PinStalled { after: every });
                    }
                    seen = p;
                }
            }
        }
    }

    /// `pin/update from to unpin=false`.
    pub async fn pin_update(
        &self,
        from: &str,
        to: &str,
        cancel: &CancellationToken,
    ) -> Result<(), KuboError> {
        let query = format!("arg={}&arg={}&unpin=false", q(from), q(to));
        tokio::select! {
            r = async { let resp = self.post("pin/update", &query, None).await?; NdJson::new(resp.into_body(), "pin/update").rest().await.map(|_| ()) } => r,
            _ = cancel.cancelled() => Err(KuboError::Cancelled),
        }
    }

    /// `pin/rm` with `unpin_timeout`; "not pinned" answers count as success.
    pub async fn pin_rm(&self, cid: &str, cancel: &CancellationToken) -> Result<(), KuboError> {
        if self.inner.unpin_disable {
            return Err(KuboError::UnpinDisabled);
        }
        let to = self.inner.timeouts.unpin;
        let query = format!("arg={}", q(cid));
        let r = tokio::select! {
            r = self.call("pin/rm", &query, None, to) => r,
            _ = cancel.cancelled() => return Err(KuboError::Cancelled),
        };
        match r {
            Ok(_) => Ok(()),
            Err(e) if e.ipfs_message().is_some_and(is_not_pinned) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub async fn swarm_connect(&self, addr: &str) -> Result<(), KuboError> {
        self.call(
            "swarm/connect",
            &format!("arg={}", q(addr)),
            None,
            self.inner.timeouts.request,
        )
        .await
        .map(|_| ())
    }

    pub async fn swarm_peers(&self) -> Result<Vec<String>, KuboError> {
        #[derive(Deserialize)]
        struct P {
            #[serde(rename = "Peer")]
            peer: String,
        }
        #[derive(Deserialize)]
        struct R {
            #[serde(rename = "Peers", default)]
            peers: Option<Vec<P>>,
        }
        let b = self
            .call("swarm/peers", "", None, self.inner.timeouts.request)
            .await?;
        let r: R = Self::decode("swarm/peers", &b)?;
        Ok(r.peers
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.peer)
            .collect())
    }

    pub async fn repo_stat(&self) -> Result<RepoStat, KuboError> {
        #[derive(Deserialize)]
        struct R {
            #[serde(rename = "RepoSize")]
            repo_size: u64,
            #[serde(rename = "StorageMax")]
            storage_max: u64,
            #[serde(rename = "NumObjects", default)]
            num_objects: u64,
        }
        let b = self
            .call(
                "repo/stat",
                "size-only=true",
                None,
                self.inner.timeouts.request,
            )
            .await?;
        let r: R = Self::decode("repo/stat", &b)?;
        Ok(RepoStat {
            repo_size: r.repo_size,
            storage_max: r.storage_max,
            num_objects: r.num_objects,
        })
    }

    /// `repo/gc?stream-errors=true`: (key, error) per line.
    pub async fn repo_gc(&self) -> Result<Vec<(String, String)>, KuboError> {
        #[derive(Deserialize)]
        struct K {
            #[serde(rename = "/")]
            cid: String,
        }
        #[derive(Deserialize)]
        struct L {
            #[serde(rename = "Key", default)]
            key: Option<K>,
            #[serde(rename = "Error", default)]
            error: Option<String>,
        }
        let to = self.inner.timeouts.repogc;
        let fut = async {
            let resp = self.post("repo/gc", "stream-errors=true", None).await?;
            let mut lines = NdJson::new(resp.into_body(), "repo/gc");
            let mut out = Vec::new();
            while let Some(line) = lines.next_line().await? {
                let l: L = Self::decode("repo/gc", &line)?;
                out.push((
                    l.key.map(|k| k.cid).unwrap_or_default(),
                    l.error.unwrap_or_default(),
                ));
            }
            Ok(out)
        };
        tokio::time::timeout(to, fut).await.unwrap_or_else(|_| {
            Err(KuboError::Timeout {
                path: "repo/gc".into(),
                after: to,
            })
        })
    }

    /// Puts one block (multipart, one part) as upstream does: `cid-codec`, `mhtype`,
    /// `mhlen=-1`. Kubo answers a CIDv1 for every codec then; a CIDv0 (`cid_version` 0,
    /// dag-pb, sha2-256) is asked for with Kubo's legacy `format=v0`, which it refuses
    /// beside a custom `cid-codec`. Callers compare multihashes, so either form is fine.
    pub async fn block_put(
        &self,
        data: Bytes,
        format: &str,
        mhtype: &str,
        cid_version: i32,
    ) -> Result<(String, u64), KuboError> {
        let mut r = self
            .block_put_many(&[BlockToPut {
                data,
                format: format.to_string(),
                mhtype: mhtype.to_string(),
                cid_version,
            }])
            .await?;
        r.pop().ok_or_else(|| KuboError::Decode {
            path: "block/put".into(),
            reason: "no answer for the block".into(),
        })
    }

    /// Puts many blocks with as few `block/put` requests as their parameters allow: one
    /// multipart request (one part per block, as upstream's `BlockStream`) per run of
    /// consecutive blocks with the same query (see `block_put`). Kubo answers one JSON
    /// object per part, in order; the answers are returned in the order of `blocks`. Each
    /// request is bounded by `ipfs_request_timeout`; callers bound the batch size.
    pub async fn block_put_many(
        &self,
        blocks: &[BlockToPut],
    ) -> Result<Vec<(String, u64)>, KuboError> {
        let mut out = Vec::with_capacity(blocks.len());
        let mut rest = blocks;
        while let Some(first) = rest.first() {
            let query = first.query();
            let n = rest.iter().take_while(|b| b.query() == query).count();
            let (run, tail) = rest.split_at(n);
            self.block_put_run(run, &query, &mut out).await?;
            rest = tail;
        }
        Ok(out)
    }

    /// One multipart `block/put` of blocks sharing `query`.
    async fn block_put_run(
        &self,
        run: &[BlockToPut],
        query: &str,
        out: &mut Vec<(String, u64)>,
    ) -> Result<(), KuboError> {
        const PATH: &str = "block/put";
        let boundary = "ipfsclusterblockboundary7b3e1f";
        let size: usize = run.iter().map(|b| b.data.len() + 160).sum();
        let mut body = BytesMut::with_capacity(size + 64);
        for (i, b) in run.iter().enumerate() {
            body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"block{i}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes());
            body.extend_from_slice(&b.data);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        #[derive(Deserialize)]
        struct R {
            #[serde(rename = "Key")]
            key: String,
            #[serde(rename = "Size")]
            size: u64,
        }
        let to = self.inner.timeouts.request;
        let before = out.len();
        let fut = async {
            let resp = self
                .post(
                    PATH,
                    query,
                    Some((
                        format!("multipart/form-data; boundary={boundary}"),
                        body.freeze(),
                    )),
                )
                .await?;
            let mut lines = NdJson::new(resp.into_body(), PATH);
            while let Some(line) = lines.next_line().await? {
                let r: R = Self::decode(PATH, &line)?;
                out.push((r.key, r.size));
            }
            Ok::<(), KuboError>(())
        };
        tokio::time::timeout(to, fut).await.unwrap_or_else(|_| {
            Err(KuboError::Timeout {
                path: PATH.into(),
                after: to,
            })
        })?;
        let got = out.len() - before;
        if got != run.len() {
            return Err(KuboError::Decode {
                path: PATH.into(),
                reason: format!("{got} answers for the {} blocks of one request", run.len()),
            });
        }
        Ok(())
    }

    /// Resolves an IPFS path to a CID; `/ipfs/<cid>` without sub-path never asks the daemon.
    pub async fn resolve(&self, path: &str) -> Result<String, KuboError> {
        let p = path.trim();
        if let Some(rest) = p.strip_prefix("/ipfs/") {
            if !rest.contains('/') {
                return Ok(parse_cid(rest)?.to_string());
            }
        } else if !p.starts_with('/') {
            // A bare CID.
            if let Ok(c) = Cid::try_from(p) {
                return Ok(c.to_string());
            }
        }
        #[derive(Deserialize)]
        struct R {
            #[serde(rename = "Path")]
            path: String,
        }
        let b = self
            .call(
                "resolve",
                &format!("arg={}", q(p)),
                None,
                self.inner.timeouts.request,
            )
            .await?;
        let r: R = Self::decode("resolve", &b)?;
        let rest = r.path.strip_prefix("/ipfs/").ok_or_else(|| {
            KuboError::Invalid(format!(
                "resolve of {p} did not return an immutable /ipfs/ path: {}",
                r.path
            ))
        })?;
        let rest = rest.split('/').next().unwrap_or(rest);
        let cid = Cid::try_from(rest)
            .map_err(|e| KuboError::Invalid(format!("resolve of {p} returned {}: {e}", r.path)))?;
        Ok(cid.to_string())
    }
}

#[derive(Deserialize)]
struct PinLsEntry {
    #[serde(rename = "Cid")]
    cid: String,
    #[serde(rename = "Type", default)]
    kind: String,
}

/// Kubo's answers for a CID that has no such pin: "path 'X' is not pinned" (pin/ls) and
/// "not pinned or pinned indirectly" (pin/rm).
fn is_not_pinned(msg: &str) -> bool {
    let m = msg.trim();
    m.ends_with("is not pinned") || m.contains("not pinned or pinned indirectly")
}

/// The canonical string of a CID (v0 base58, v1 base32); the input when it does not parse.
pub fn canonical_cid(s: &str) -> String {
    Cid::try_from(s)
        .map(|c| c.to_string())
        .unwrap_or_else(|_| s.to_string())
}

/// Why an HTTP request to the IPFS daemon got no answer (the Kubo client's
/// [`KuboError::Unreachable`], the IPFS proxy's 502).
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("{0}")]
    Connect(#[source] std::io::Error),
    #[error("{0}")]
    Http(#[from] hyper::Error),
    /// The pooled client (the proxy over TCP): its text and that of its cause (the
    /// connect error), which hyper-util keeps apart.
    #[error("{}", with_cause(.0))]
    Pool(#[source] hyper_util::client::legacy::Error),
    #[error("bad request path {path:?}: {error}")]
    BadPath {
        path: String,
        #[source]
        error: http::uri::InvalidUri,
    },
}

/// `e: cause` when `e` has a cause, else `e`.
fn with_cause(e: &hyper_util::client::legacy::Error) -> String {
    match std::error::Error::source(e) {
        Some(s) => format!("{e}: {s}"),
        None => e.to_string(),
    }
}

/// One HTTP/1.1 request on a fresh connection `io` (TCP or unix socket).
pub(crate) async fn send<T, B>(io: T, req: Request<B>) -> Result<Response<Incoming>, ExchangeError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("IPFS connection closed: {e}");
        }
    });
    Ok(sender.send_request(req).await?)
}

/// The body, cut after the first frame that takes it past `limit` bytes.
async fn read_limited(mut body: Incoming, limit: usize) -> Result<Bytes, hyper::Error> {
    let mut out = BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(d) = frame?.into_data() {
            out.extend_from_slice(&d);
            if out.len() > limit {
                break;
            }
        }
    }
    Ok(out.freeze())
}

/// Reads a streamed NDJSON body line by line; a `{"Message","Type":"error"}` line or an
/// `X-Stream-Error` trailer becomes an error.
pub struct NdJson {
    body: Incoming,
    buf: BytesMut,
    path: String,
    done: bool,
}

impl NdJson {
    pub fn new(body: Incoming, path: &str) -> Self {
        Self {
            body,
            buf: BytesMut::new(),
            path: path.to_string(),
            done: false,
        }
    }

    fn check_error_line(&self, line: &[u8]) -> Result<(), KuboError> {
        if line.first() == Some(&b'{') && line.windows(7).any(|w| w == b"\"Type\":") {
            #[derive(Deserialize)]
            struct E {
                #[serde(rename = "Message")]
                message: String,
                #[serde(rename = "Type")]
                kind: String,
            }
            if let Ok(e) = serde_json::from_slice::<E>(line) {
                if e.kind == "error" {
                    return Err(KuboError::Ipfs {
                        path: self.path.clone(),
                        code: 200,
                        message: e.message,
                    });
                }
            }
        }
        Ok(())
    }

    /// The next non-empty line, or None at the end of the body.
    pub async fn next_line(&mut self) -> Result<Option<Bytes>, KuboError> {
        loop {
            if let Some(pos) = self.buf.iter().position(|c| *c == b'\n') {
                let line = self.buf.split_to(pos + 1).freeze();
                let line = trim(line);
                if line.is_empty() {
                    continue;
                }
                self.check_error_line(&line)?;
                return Ok(Some(line));
            }
            if self.done {
                let rest = trim(self.buf.split().freeze());
                if rest.is_empty() {
                    return Ok(None);
                }
                self.check_error_line(&rest)?;
                return Ok(Some(rest));
            }
            match self.body.frame().await {
                None => self.done = true,
                Some(Err(e)) => {
                    return Err(KuboError::Decode {
                        path: self.path.clone(),
                        reason: format!("response body broken: {e}"),
                    });
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(d) => self.buf.extend_from_slice(&d),
                    Err(frame) => {
                        if let Ok(t) = frame.into_trailers() {
                            if let Some(v) = t.get("x-stream-error") {
                                let msg = String::from_utf8_lossy(v.as_bytes()).to_string();
                                if !msg.trim().is_empty() {
                                    return Err(KuboError::Ipfs {
                                        path: self.path.clone(),
                                        code: 200,
                                        message: msg,
                                    });
                                }
                            }
                        }
                    }
                },
            }
        }
    }

    /// The whole remaining body (error lines still detected).
    pub async fn rest(&mut self) -> Result<Bytes, KuboError> {
        let mut out = BytesMut::new();
        while let Some(line) = self.next_line().await? {
            out.extend_from_slice(&line);
            out.extend_from_slice(b"\n");
        }
        Ok(out.freeze())
    }
}

fn trim(b: Bytes) -> Bytes {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map(|e| e + 1)
        .unwrap_or(start);
    b.slice(start..end.max(start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_addresses_as_upstream() {
        let id = IpfsId {
            id: "x".into(),
            addresses: [
                "/ip4/127.0.0.1/tcp/4001",
                "/ip4/10.0.0.5/tcp/4001",
                "/ip4/192.168.1.2/udp/4001/quic-v1",
                "/ip4/169.254.3.4/tcp/4001",
                "/ip4/1.2.3.4/tcp/4001/p2p/12D3KooWLzvtU3s5Em5bp3wpr5WbEAFmxq8tLTy3UJBzrjtBhn5G",
                "/ip6/::1/tcp/4001",
                "/ip6/fe80::1/tcp/4001",
                "/ip6/2001:db8::1/tcp/4001",
                "/ip6/::ffff:127.0.0.1/tcp/4001",
                "/dns4/ipfs.example.org/tcp/4001",
                "/ip4/0.0.0.0/tcp/4001",
                "/ip4/224.0.0.1/udp/1",
            ]
            .map(String::from)
            .to_vec(),
        };
        assert_eq!(
            id.public_addresses(),
            [
                "/ip4/10.0.0.5/tcp/4001",
                "/ip4/192.168.1.2/udp/4001/quic-v1",
                "/ip4/1.2.3.4/tcp/4001/p2p/12D3KooWLzvtU3s5Em5bp3wpr5WbEAFmxq8tLTy3UJBzrjtBhn5G",
                "/ip6/2001:db8::1/tcp/4001",
                "/dns4/ipfs.example.org/tcp/4001",
            ]
        );
    }

    #[test]
    fn node_multiaddress_forms() {
        assert_eq!(
            parse_node_multiaddress("/ip4/127.0.0.1/tcp/5001").unwrap(),
            NodeAddr::Tcp("127.0.0.1:5001".into())
        );
        assert_eq!(
            parse_node_multiaddress("/ip6/::1/tcp/5001").unwrap(),
            NodeAddr::Tcp("[::1]:5001".into())
        );
        assert_eq!(
            parse_node_multiaddress("/dns4/ipfs/tcp/5001").unwrap(),
            NodeAddr::Tcp("ipfs:5001".into())
        );
        assert_eq!(
            parse_node_multiaddress("/unix/tmp/ipfs.sock").unwrap(),
            NodeAddr::Unix("/tmp/ipfs.sock".into())
        );
        let e = parse_node_multiaddress("/ip4/127.0.0.1/udp/5001")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/tcp/<port>"), "{e}");
        assert!(parse_node_multiaddress("nonsense")
            .unwrap_err()
            .to_string()
            .contains("not a multiaddress"));
    }

    #[test]
    fn not_pinned_texts() {
        assert!(is_not_pinned("path 'Qm' is not pinned"));
        assert!(is_not_pinned("not pinned or pinned indirectly"));
        assert!(is_not_pinned("path 'Qm' is not pinned"));
        assert!(!is_not_pinned("context deadline exceeded"));
    }

    #[test]
    fn query_escaping() {
        assert_eq!(q("/ip4/1.2.3.4/tcp/1"), "%2Fip4%2F1.2.3.4%2Ftcp%2F1");
    }
}
