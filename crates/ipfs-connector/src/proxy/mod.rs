//! The IPFS proxy (upstream api/ipfsproxy): looks like the Kubo
//! RPC API; `pin/add`, `pin/rm` and `pin/ls` become cluster operations on the local
//! consensus, `pin/update` becomes a cluster pin update, `add` / `block/put?pin=true` /
//! `dag/put?pin=true` are forwarded to the daemon and every resulting root is pinned
//! through the cluster, `repo/stat` and `repo/gc` run on every member, and everything
//! else is forwarded to the daemon as is, streaming both ways.

use std::{convert::Infallible, net::SocketAddr, sync::Arc};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full, StreamBody};
use hyper::{body::Incoming, Request, Response};
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use ipfs_cluster_proto::{
    client::{ConsensusClient, TransportClient},
    consensus::v1::{GetRequest, ListRequest, PinRequest, UnpinRequest},
    types::v1::{Pin, PinOptions, PinType},
};

use pinning::Roots;
use tokio::net::{TcpListener, UnixStream};
use tokio_util::sync::CancellationToken;

use ipfs_cluster_runtime::access_log::{AccessLog, Endpoint};
use ipfs_cluster_runtime::{ApiError, ErrorCode};

use crate::kubo::{send, ExchangeError, Kubo, NodeAddr};
use headers::Extracted;
pub use server::ProxyConfig;

mod headers;
mod pinning;
pub mod server;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Answer bodies (hijacked or forwarded).
pub type Body = BoxBody<Bytes, BoxError>;
/// Request bodies (the client's, wrapped with the read deadline).
pub type ReqBody = BoxBody<Bytes, BoxError>;

pub struct Proxy {
    /// The connector's Kubo client (`ipfs_connector.ipfshttp`): path resolution.
    pub(crate) kubo: Kubo,
    pub(crate) cfg: Arc<ProxyConfig>,
    /// Keep-alive connection pool to a TCP daemon, http or https (a unix socket dials
    /// per request).
    pool: Client<HttpsConnector<HttpConnector>, ReqBody>,
    pub(crate) consensus: ConsensusClient,
    pub(crate) transport: TransportClient,
    pub(crate) extracted: Extracted,
}

/// A routed (hijacked) call; everything else is forwarded.
#[derive(Debug, PartialEq)]
enum Route<'a> {
    PinAdd(&'a str),
    PinRm(&'a str),
    PinLs(&'a str),
    PinUpdate,
    RepoStat,
    RepoGc,
    Add { wrap: bool },
    BlockPut,
    DagPut,
}

impl Route<'_> {
    /// Whether the route changes the cluster's pinset (refused on a follower). `add` with
    /// pin=false is routed too: upstream's adder allocates before the first block, which a
    /// follower refuses.
    fn writes(&self) -> bool {
        !matches!(self, Route::PinLs(_) | Route::RepoStat | Route::RepoGc)
    }
}

/// Upstream's routing: only POST/GET/PUT under `/api/v0/` are hijacked.
fn route<'a>(method: &Method, path: &'a str, query: &str) -> Option<Route<'a>> {
    if !matches!(*method, Method::POST | Method::GET | Method::PUT) {
        return None;
    }
    let sub = path.strip_prefix("/api/v0/")?;
    let (r, rest) = split_route(sub);
    Some(match r {
        "pin/add" => Route::PinAdd(rest),
        "pin/rm" => Route::PinRm(rest),
        "pin/ls" => Route::PinLs(rest),
        "pin/update" => Route::PinUpdate,
        "repo/stat" => Route::RepoStat,
        "repo/gc" => Route::RepoGc,
        "add"
            if rest.is_empty() && flag(query, "pin", true) && !flag(query, "only-hash", false) =>
        {
            Route::Add {
                wrap: flag(query, "wrap-with-directory", false) || flag(query, "w", false),
            }
        }
        "block/put" if flag(query, "pin", false) => Route::BlockPut,
        "dag/put" if flag(query, "pin", false) => Route::DagPut,
        _ => return None,
    })
}

pub(crate) fn empty_req() -> ReqBody {
    Empty::new()
        .map_err(|never: Infallible| match never {})
        .boxed()
}

pub(crate) fn server_header() -> HeaderValue {
    HeaderValue::from_str(&format!(
        "ipfs-cluster/ipfsproxy/{}",
        ipfs_cluster_proto::VERSION
    ))
    .expect("ascii")
}

pub(crate) fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

pub(crate) fn json(status: StatusCode, v: serde_json::Value) -> Response<Body> {
    let mut r = Response::new(full(serde_json::to_vec(&v).expect("json")));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(header::SERVER, server_header());
    r
}

/// An error in Kubo's shape (`ApiError::kubo_body`), as upstream's proxy answers.
pub(crate) fn kubo_error(code: ErrorCode, msg: impl Into<String>) -> Response<Body> {
    let e = ApiError::new(code, msg);
    let mut r = Response::new(full(e.kubo_body()));
    *r.status_mut() = e.status();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(header::SERVER, server_header());
    r
}

/// All values of `key` in a query string (percent-decoded).
pub(crate) fn query_all(query: &str, key: &str) -> Vec<String> {
    query
        .split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == key).then(|| decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `arg` from the query, or the path suffix (`/pin/add/{arg}`).
fn arg_of(rest: &str, query: &str) -> Option<String> {
    query_all(query, "arg")
        .into_iter()
        .next()
        .or_else(|| (!rest.is_empty()).then(|| decode(rest)))
}

impl Proxy {
    /// Builds the proxy; fails when `node_https` is set and no system trust roots load.
    pub fn new(
        cfg: ProxyConfig,
        kubo: Kubo,
        consensus: ConsensusClient,
        transport: TransportClient,
    ) -> Result<Arc<Self>, std::io::Error> {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        let b = hyper_rustls::HttpsConnectorBuilder::new();
        let b = if cfg.node_https {
            b.with_provider_and_native_roots(rustls::crypto::ring::default_provider())
                .map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("api.ipfsproxy.node_https: cannot load the system's trusted certificates: {e}"),
                    )
                })?
        } else {
            // Never used for https (plain http URLs); an empty trust store is enough.
            b.with_tls_config(
                rustls::ClientConfig::builder_with_provider(
                    rustls::crypto::ring::default_provider().into(),
                )
                .with_safe_default_protocol_versions()
                .map_err(|e| std::io::Error::other(e.to_string()))?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
            )
        };
        let conn = b.https_or_http().enable_http1().wrap_connector(http);
        let pool = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_secs(60))
            .build(conn);
        let extracted = Extracted::new(
            &cfg.extract_headers_extra,
            &cfg.extract_headers_path,
            cfg.extract_headers_ttl,
        );
        Ok(Arc::new(Self {
            kubo,
            cfg: Arc::new(cfg),
            pool,
            consensus,
            transport,
            extracted,
        }))
    }

    pub(crate) async fn handle(self: Arc<Self>, req: Request<ReqBody>) -> Response<Body> {
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        // DNS rebinding: a proxy on loopback answers only to loopback names.
        let loopback_only = self.cfg.listen.iter().all(|a| a.ip().is_loopback());
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| req.uri().authority().map(|a| a.to_string()));
        if let Err(msg) =
            ipfs_cluster_config::host_header::check_loopback_host(host.as_deref(), loopback_only)
        {
            return kubo_error(ErrorCode::Forbidden, msg.to_string());
        }
        let Some(r) = route(req.method(), &path, &query) else {
            // The daemon applies its own Origin policy to what we forward.
            return self.forward(req).await;
        };
        let origin = req.headers().get(header::ORIGIN).cloned();
        let method = req.method().clone();
        // A web page's request to a hijacked route is served only when the daemon's own
        // CORS policy would serve it (Kubo refuses cross-origin API calls by default): its
        // answer to the same preflight must allow the origin. Same-origin pages pass, as on
        // Kubo.
        let mut preflight = None;
        if let Some(o) = &origin {
            let same_origin = o
                .to_str()
                .ok()
                .and_then(|o| o.split_once("://"))
                .is_some_and(|(_, authority)| Some(authority) == host.as_deref());
            let (cors, allowed) = self.daemon_cors(&path, o.clone(), &method).await;
            preflight = Some(cors);
            if !same_origin && !allowed {
                return kubo_error(
                    ErrorCode::Forbidden,
                    format!(
                        "cross-origin {method} from {} refused: the IPFS daemon's CORS settings (API.HTTPHeaders) do not allow this origin",
                        o.to_str().unwrap_or("(not text)")
                    ),
                );
            }
        }
        // A follower writes nothing: upstream's proxy refuses these routes through the
        // cluster (Pin, Unpin, BlockAllocate), before the daemon stores anything.
        if self.cfg.follower_mode && r.writes() {
            return kubo_error(
                ErrorCode::Internal,
                ipfs_cluster_config::FOLLOWER_MODE_ERROR,
            );
        }
        let answer = async {
            match r {
                Route::PinAdd(rest) => self.pin_add(rest, &query).await,
                Route::PinRm(rest) => self.pin_rm(rest, &query).await,
                Route::PinLs(rest) => self.pin_ls(rest, &query).await,
                Route::PinUpdate => self.pin_update(&query).await,
                Route::RepoStat => pinning::repo_stat(&self).await,
                Route::RepoGc => pinning::repo_gc(&self, &query).await,
                Route::Add { wrap } => {
                    // Upstream's proxy add takes the cluster's add parameters (name,
                    // replication-min/max, user-allocations, meta-*, expire-in...) for the
                    // cluster pin of the roots.
                    let options = match ipfs_cluster_api::PinOptions::from_query(&query) {
                        Ok(o) => o.into(),
                        Err(e) => return kubo_error(ErrorCode::BadRequest, e.0),
                    };
                    let req = with_query_param(req, "pin", "false");
                    self.forward_and_pin(req, Roots::Add { wrap }, options)
                        .await
                }
                Route::BlockPut => {
                    self.forward_and_pin(req, Roots::BlockPut, Default::default())
                        .await
                }
                Route::DagPut => {
                    let req = with_query_param(req, "pin", "false");
                    self.forward_and_pin(req, Roots::DagPut, Default::default())
                        .await
                }
            }
        };
        let (mut resp, headers) = tokio::join!(
            answer,
            self.hijack_headers(&path, origin, &method, preflight)
        );
        headers.apply(resp.headers_mut());
        resp
    }

    /// Upstream's path handling: the argument parsed as boxo reads paths (`pathOrCidPath`;
    /// an absent one is the empty path), errors prefixed as upstream prefixes them, then
    /// resolved to a CID by the IPFS daemon.
    async fn resolve_arg(
        &self,
        arg: Option<String>,
        prefix: &str,
    ) -> Result<String, Response<Body>> {
        let arg = arg.unwrap_or_default();
        let path = ipfs_cluster_api::path_or_cid_path(&arg)
            .map_err(|e| kubo_error(ErrorCode::Internal, format!("{prefix}{e}")))?;
        self.kubo
            .resolve(&path)
            .await
            .map_err(|e| kubo_error(ErrorCode::Internal, e.to_string()))
    }

    async fn pin_add(&self, rest: &str, query: &str) -> Response<Body> {
        let cid = match self
            .resolve_arg(arg_of(rest, query), "Error parsing IPFS Path: ")
            .await
        {
            Ok(c) => c,
            Err(r) => return r,
        };
        let direct = query_all(query, "type").iter().any(|t| t == "direct");
        let pin = Pin {
            cid: cid.clone(),
            r#type: PinType::Data as i32,
            max_depth: if direct { 0 } else { -1 },
            options: Some(PinOptions::default()),
            ..Default::default()
        };
        match self
            .consensus
            .clone()
            .pin(PinRequest { pin: Some(pin) })
            .await
        {
            Ok(_) => json(StatusCode::OK, serde_json::json!({"Pins": [cid]})),
            Err(e) => kubo_error(ErrorCode::Internal, e.message().to_string()),
        }
    }

    /// Upstream: `Cluster.PinPath(to, pin_update=from)`, then `Unpin(from)` unless
    /// `unpin=false`; answers `{"Pins":[from,to]}`.
    async fn pin_update(&self, query: &str) -> Response<Body> {
        let args = query_all(query, "arg");
        let Some(from) = args.first().cloned() else {
            return kubo_error(ErrorCode::BadRequest, "argument \"from-path\" is required");
        };
        let Some(to) = args.get(1).cloned() else {
            return kubo_error(ErrorCode::BadRequest, "argument \"to-path\" is required");
        };
        let unpin = flag(query, "unpin", true);
        let from = match self
            .resolve_arg(Some(from), "error parsing \"from-path\" argument: ")
            .await
        {
            Ok(c) => c,
            Err(r) => return r,
        };
        let to = match self
            .resolve_arg(Some(to), "error parsing \"to-path\" argument: ")
            .await
        {
            Ok(c) => c,
            Err(r) => return r,
        };
        let pin = Pin {
            cid: to.clone(),
            r#type: PinType::Data as i32,
            max_depth: -1,
            options: Some(PinOptions {
                pin_update: from.clone(),
                ..Default::default()
            }),
            ..Default::default()
        };
        if let Err(e) = self
            .consensus
            .clone()
            .pin(PinRequest { pin: Some(pin) })
            .await
        {
            return kubo_error(ErrorCode::Internal, e.message().to_string());
        }
        if unpin {
            if let Err(e) = self
                .consensus
                .clone()
                .unpin(UnpinRequest { cid: from.clone() })
                .await
            {
                return kubo_error(ErrorCode::Internal, e.message().to_string());
            }
        }
        json(StatusCode::OK, serde_json::json!({"Pins": [from, to]}))
    }

    async fn pin_rm(&self, rest: &str, query: &str) -> Response<Body> {
        let cid = match self
            .resolve_arg(arg_of(rest, query), "Error parsing IPFS Path: ")
            .await
        {
            Ok(c) => c,
            Err(r) => return r,
        };
        match self
            .consensus
            .clone()
            .unpin(UnpinRequest { cid: cid.clone() })
            .await
        {
            Ok(_) => json(StatusCode::OK, serde_json::json!({"Pins": [cid]})),
            // Upstream answers the cluster's error ("pin is not part of the pinset").
            Err(e) => kubo_error(ErrorCode::Internal, e.message().to_string()),
        }
    }

    async fn pin_ls(&self, rest: &str, query: &str) -> Response<Body> {
        let stream = query_all(query, "stream")
            .iter()
            .chain(query_all(query, "s").iter())
            .any(|v| v == "true");
        let kind = |p: &Pin| {
            if p.max_depth == 0 {
                "direct"
            } else {
                "recursive"
            }
        };
        if let Some(arg) = arg_of(rest, query) {
            // Upstream decodes a CID (go-cid's words when it is not one).
            let cid = match cid::Cid::try_from(arg.as_str()) {
                Ok(c) => c,
                Err(e) => {
                    return kubo_error(
                        ErrorCode::Internal,
                        ipfs_cluster_api::go_cid_error(&arg, &e.to_string()),
                    )
                }
            };
            return match self
                .consensus
                .clone()
                .get(GetRequest {
                    cid: cid.to_string(),
                })
                .await
            {
                Ok(p) => {
                    let p = p.into_inner();
                    if stream {
                        json(
                            StatusCode::OK,
                            serde_json::json!({"Cid": p.cid, "Type": kind(&p)}),
                        )
                    } else {
                        json(
                            StatusCode::OK,
                            serde_json::json!({"Keys": {p.cid: {"Type": "recursive"}}}),
                        )
                    }
                }
                Err(e) if e.code() == tonic::Code::NotFound => kubo_error(
                    ErrorCode::Internal,
                    format!("Error: path '{arg}' is not pinned"),
                ),
                Err(e) => kubo_error(ErrorCode::Internal, e.message().to_string()),
            };
        }
        let mut list = match self
            .consensus
            .clone()
            .list(ListRequest { type_filter: 0 })
            .await
        {
            Ok(s) => s.into_inner(),
            Err(e) => return kubo_error(ErrorCode::Internal, e.message().to_string()),
        };
        if stream {
            let (tx, rx) =
                tokio::sync::mpsc::channel::<Result<hyper::body::Frame<Bytes>, BoxError>>(64);
            tokio::spawn(async move {
                loop {
                    match list.message().await {
                        Ok(Some(p)) => {
                            let mut line = serde_json::to_vec(
                                &serde_json::json!({"Cid": p.cid, "Type": kind(&p)}),
                            )
                            .expect("json");
                            line.push(b'\n');
                            if tx
                                .send(Ok(hyper::body::Frame::data(Bytes::from(line))))
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                        Ok(None) => return,
                        Err(e) => {
                            let mut t = HeaderMap::new();
                            if let Ok(v) =
                                HeaderValue::from_str(&e.message().replace(['\r', '\n'], " "))
                            {
                                t.insert("x-stream-error", v);
                            }
                            let _ = tx.send(Ok(hyper::body::Frame::trailers(t))).await;
                            return;
                        }
                    }
                }
            });
            let mut r = Response::new(
                StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)).boxed(),
            );
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r.headers_mut().insert(header::SERVER, server_header());
            r.headers_mut()
                .insert(header::TRAILER, HeaderValue::from_static("X-Stream-Error"));
            r.headers_mut()
                .insert("x-chunked-output", HeaderValue::from_static("1"));
            return r;
        }
        let mut keys = serde_json::Map::new();
        loop {
            match list.message().await {
                Ok(Some(p)) => {
                    keys.insert(p.cid, serde_json::json!({"Type": "recursive"}));
                }
                Ok(None) => break,
                Err(e) => return kubo_error(ErrorCode::Internal, e.message().to_string()),
            }
        }
        json(StatusCode::OK, serde_json::json!({ "Keys": keys }))
    }

    /// Sends `req` (method, headers, body) to the daemon at `path_and_query`.
    pub(crate) async fn daemon_request(
        &self,
        path_and_query: &str,
        req: Request<ReqBody>,
    ) -> Result<Response<Incoming>, ExchangeError> {
        let (mut parts, body) = req.into_parts();
        let host = match &self.cfg.node {
            NodeAddr::Tcp(a) => a.clone(),
            NodeAddr::Unix(_) => "localhost".into(),
        };
        if let Ok(h) = HeaderValue::from_str(&host) {
            parts.headers.insert(header::HOST, h);
        }
        match &self.cfg.node {
            NodeAddr::Tcp(a) => {
                let scheme = if self.cfg.node_https { "https" } else { "http" };
                parts.uri = format!("{scheme}://{a}{path_and_query}")
                    .parse()
                    .map_err(|error| bad_path(path_and_query, error))?;
                self.pool
                    .request(Request::from_parts(parts, body))
                    .await
                    .map_err(ExchangeError::Pool)
            }
            NodeAddr::Unix(p) => {
                parts.uri = path_and_query
                    .parse()
                    .map_err(|error| bad_path(path_and_query, error))?;
                let s = UnixStream::connect(p)
                    .await
                    .map_err(ExchangeError::Connect)?;
                send(s, Request::from_parts(parts, body)).await
            }
        }
    }

    /// Reverse proxy as Go's httputil.ReverseProxy: same method, path, query, headers
    /// (minus hop-by-hop ones), the client's address appended to `X-Forwarded-For`, and
    /// the body, streaming both ways.
    pub(crate) async fn forward(&self, req: Request<ReqBody>) -> Response<Body> {
        let (mut parts, body) = req.into_parts();
        strip_hop_by_hop(&mut parts.headers, true);
        if let Some(remote) = parts.extensions.get::<SocketAddr>() {
            add_forwarded_for(&mut parts.headers, remote.ip());
        }
        let pq = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        match self
            .daemon_request(&pq, Request::from_parts(parts, body))
            .await
        {
            Ok(resp) => {
                let (mut parts, body) = resp.into_parts();
                strip_hop_by_hop(&mut parts.headers, false);
                Response::from_parts(parts, body.map_err(|e| -> BoxError { Box::new(e) }).boxed())
            }
            Err(e) => kubo_error(
                ErrorCode::BadGateway,
                format!(
                    "ipfs-cluster proxy: cannot reach the IPFS daemon at {}: {e}",
                    self.cfg.node
                ),
            ),
        }
    }
}

fn bad_path(path: &str, error: http::uri::InvalidUri) -> ExchangeError {
    ExchangeError::BadPath {
        path: path.to_string(),
        error,
    }
}

/// Go: `X-Forwarded-For: <prior values joined by ", ">, <client ip>`.
fn add_forwarded_for(h: &mut HeaderMap, ip: std::net::IpAddr) {
    let prior: Vec<String> = h
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    let v = if prior.is_empty() {
        ip.to_string()
    } else {
        format!("{}, {ip}", prior.join(", "))
    };
    if let Ok(v) = HeaderValue::from_str(&v) {
        h.insert("x-forwarded-for", v);
    }
}

/// A boolean query flag as Kubo parses it (`x`, `x=true`, `x=1` are true).
pub(crate) fn flag(query: &str, key: &str, default: bool) -> bool {
    match query_all(query, key).first().map(String::as_str) {
        None => default,
        Some("" | "true" | "1" | "True" | "TRUE") => true,
        Some(_) => false,
    }
}

/// The request with `key=value` replacing every `key=` in its query.
fn with_query_param(mut req: Request<ReqBody>, key: &str, value: &str) -> Request<ReqBody> {
    let path = req.uri().path().to_string();
    let mut parts: Vec<String> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty() && kv.split('=').next() != Some(key))
        .map(str::to_string)
        .collect();
    parts.push(format!("{key}={value}"));
    if let Ok(u) = format!("{path}?{}", parts.join("&")).parse() {
        *req.uri_mut() = u;
    }
    req
}

/// ("pin/add", "{arg}") for "pin/add/{arg}"; two-segment routes first.
fn split_route(sub: &str) -> (&str, &str) {
    for r in [
        "pin/add",
        "pin/rm",
        "pin/ls",
        "pin/update",
        "repo/stat",
        "repo/gc",
        "block/put",
        "dag/put",
    ] {
        if sub == r {
            return (r, "");
        }
        if let Some(rest) = sub.strip_prefix(r).and_then(|s| s.strip_prefix('/')) {
            return (r, rest);
        }
    }
    (sub, "")
}

/// Go's hop-by-hop handling: headers named in `Connection`, then the standard list.
/// `Trailer` is kept on answers (it announces `X-Stream-Error`), `TE: trailers` on
/// requests.
pub(crate) fn strip_hop_by_hop(h: &mut HeaderMap, request: bool) {
    let listed: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in listed {
        h.remove(n);
    }
    let te_trailers = request
        && h.get_all(header::TE)
            .iter()
            .any(|v| v.to_str().is_ok_and(|s| s.contains("trailers")));
    for k in [
        "connection",
        "proxy-connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ] {
        if k == "trailer" && !request {
            continue; // needed for X-Stream-Error to reach the client
        }
        h.remove(k);
    }
    if te_trailers {
        h.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Opens the access log (`log_file`, or tracing).
pub async fn access_log(cfg: &ProxyConfig) -> Result<AccessLog, std::io::Error> {
    match &cfg.log_file {
        Some(p) => AccessLog::file(Endpoint::IpfsProxy, p).await,
        None => Ok(AccessLog::tracing(Endpoint::IpfsProxy)),
    }
}

/// Serves the proxy on `listeners` until `shutdown`.
pub async fn serve(
    listeners: Vec<TcpListener>,
    proxy: Arc<Proxy>,
    log: AccessLog,
    shutdown: CancellationToken,
) {
    server::serve_all(listeners, proxy, log, shutdown).await
}

/// Binds the proxy address with a clear error.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, std::io::Error> {
    TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on api.ipfsproxy.listen_multiaddress {addr}: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_queries() {
        assert_eq!(split_route("pin/add"), ("pin/add", ""));
        assert_eq!(split_route("pin/add/QmX"), ("pin/add", "QmX"));
        assert_eq!(split_route("version"), ("version", ""));
        assert_eq!(
            query_all("arg=%2Fipfs%2FQm&arg=b&x=1", "arg"),
            vec!["/ipfs/Qm".to_string(), "b".into()]
        );
        assert_eq!(arg_of("QmY", ""), Some("QmY".into()));
        assert_eq!(decode("a%2"), "a%2");
        assert!(flag("pin", "pin", false));
        assert!(!flag("pin=false", "pin", true));
        assert!(flag("x=1", "pin", true));
    }
}
