//! The REST client: HTTP/1.1 over TCP, TLS (rustls + ring) or a Unix socket, one connection
//! per request, with Basic auth, an overall timeout and fail-over to the next `--host` address
//! on connection-level errors (code 0), mirroring the Go client's error rules.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use multiaddr::{Multiaddr, Protocol};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::{CtlError, LocalError, RestError};

pub type ReqBody = BoxBody<Bytes, std::io::Error>;

/// Where the API listens, from one `--host` multiaddr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Tcp {
        host: String,
        port: u16,
    },
    Unix(String),
    /// libp2p-http: the transport address (without /p2p) and the peer id.
    P2p {
        addr: Multiaddr,
        peer: String,
    },
}

impl Endpoint {
    /// Parses one multiaddr. `/p2p/<id>` means libp2p-http; `/dnsaddr` is not supported.
    pub fn parse(s: &str) -> Result<Endpoint, LocalError> {
        let doing = "parsing host multiaddress";
        // /unix is a path protocol in Go (it takes the rest of the address); rust-multiaddr
        // only takes one segment, so handle it here.
        if let Some(path) = s.trim().strip_prefix("/unix/") {
            if path.is_empty() {
                return Err(LocalError::new(
                    doing,
                    format!("{s}: empty unix socket path"),
                ));
            }
            return Ok(Endpoint::Unix(format!("/{path}")));
        }
        if let Some(words) = ipfs_cluster_api::go_multiaddr_error(s) {
            return Err(LocalError::new(doing, words));
        }
        let ma: Multiaddr = s
            .trim()
            .parse()
            .map_err(|e| LocalError::new(doing, format!("{e}")))?;
        let mut host: Option<String> = None;
        let mut port: Option<u16> = None;
        for p in ma.iter() {
            match p {
                Protocol::Ip4(a) => host = Some(a.to_string()),
                Protocol::Ip6(a) => host = Some(a.to_string()),
                Protocol::Dns(n) | Protocol::Dns4(n) | Protocol::Dns6(n) => host = Some(n.to_string()),
                Protocol::Tcp(p) => port = Some(p),
                Protocol::Unix(path) => {
                    let path = path.to_string();
                    let path = if path.starts_with('/') { path } else { format!("/{path}") };
                    return Ok(Endpoint::Unix(path));
                }
                Protocol::P2p(peer) => {
                    let addr: Multiaddr = ma
                        .iter()
                        .filter(|p| !matches!(p, Protocol::P2p(_)))
                        .collect();
                    if port.is_none() || host.is_none() {
                        return Err(LocalError::new(
                            doing,
                            format!("{s}: expected /ip4|ip6|dns/<host>/tcp/<port>/p2p/<id>"),
                        ));
                    }
                    return Ok(Endpoint::P2p {
                        addr,
                        peer: peer.to_string(),
                    });
                }
                Protocol::Dnsaddr(_) => {
                    return Err(LocalError::new(
                        "creating API client",
                        format!("{s}: /dnsaddr endpoints are not supported; use /dns4/<host>/tcp/<port>/p2p/<id>"),
                    ))
                }
                Protocol::Http | Protocol::Https => {}
                other => {
                    return Err(LocalError::new(doing, format!("{s}: unsupported protocol {other} for the API address")))
                }
            }
        }
        match (host, port) {
            (Some(host), Some(port)) => Ok(Endpoint::Tcp { host, port }),
            _ => Err(LocalError::new(
                doing,
                format!("{s}: expected /ip4|ip6|dns/<host>/tcp/<port> or /unix/<path>"),
            )),
        }
    }

    fn authority(&self) -> String {
        match self {
            Endpoint::Tcp { host, port } if host.contains(':') => format!("[{host}]:{port}"),
            Endpoint::Tcp { host, port } => format!("{host}:{port}"),
            Endpoint::Unix(_) => "unix".to_string(),
            Endpoint::P2p { peer, .. } => peer.clone(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ClientConfig {
    pub endpoints: Vec<Endpoint>,
    pub https: bool,
    pub no_verify: bool,
    pub basic_auth: Option<(String, String)>,
    pub timeout: Option<Duration>,
    /// `--debug`: log each request and its status on stderr.
    pub debug: bool,
    /// `--secret`: the cluster's pnet key, for libp2p-http endpoints.
    pub secret: Option<[u8; 32]>,
}

#[derive(Clone)]
pub struct Client {
    cfg: ClientConfig,
    tls: Option<tokio_rustls::TlsConnector>,
    /// libp2p clients by peer id, dialled on first use.
    p2p: P2pClients,
}

type P2pClients =
    Arc<tokio::sync::Mutex<std::collections::HashMap<String, Arc<crate::p2p::P2pClient>>>>;

/// A request body that can be rebuilt for fail-over (or a one-shot stream).
pub enum Body {
    Empty,
    Bytes(Bytes, &'static str),
    Stream(ReqBody, String),
}

impl Client {
    pub fn new(cfg: ClientConfig) -> Result<Client, LocalError> {
        if cfg.endpoints.is_empty() {
            return Err(LocalError::new(
                "creating API client",
                "no --host address given",
            ));
        }
        let tls = if cfg.https {
            Some(tls_connector(cfg.no_verify)?)
        } else {
            None
        };
        Ok(Client {
            cfg,
            tls,
            p2p: Default::default(),
        })
    }

    fn url(&self, ep: &Endpoint, path: &str) -> String {
        if let Endpoint::P2p { peer, .. } = ep {
            return format!("libp2p://{peer}{path}");
        }
        let scheme = if self.cfg.https { "https" } else { "http" };
        format!("{scheme}://{}{path}", ep.authority())
    }

    /// Sends one request, failing over to the next endpoint on connection-level errors.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Body,
    ) -> Result<Response<Incoming>, RestError> {
        let mut body = Some(body);
        let mut last = RestError::transport("no endpoint tried");
        let mut tried = 0;
        for ep in &self.cfg.endpoints {
            let (b, ct) = match body.take() {
                None => break, // a one-shot stream body cannot be retried
                Some(Body::Empty) => {
                    body = Some(Body::Empty);
                    (Empty::new().map_err(|never| match never {}).boxed(), None)
                }
                Some(Body::Bytes(bytes, ct)) => {
                    body = Some(Body::Bytes(bytes.clone(), ct));
                    (
                        Full::new(bytes).map_err(|never| match never {}).boxed(),
                        Some(ct.to_string()),
                    )
                }
                Some(Body::Stream(s, ct)) => (s, Some(ct)),
            };
            if self.cfg.debug {
                eprintln!("DEBUG cluster-ctl: {method} {}", self.url(ep, path));
            }
            match self.send_once(ep, method.clone(), path, b, ct).await {
                Ok(r) => {
                    if self.cfg.debug {
                        eprintln!("DEBUG cluster-ctl: response {}", r.status());
                    }
                    return Ok(r);
                }
                Err(e) => {
                    if self.cfg.debug {
                        eprintln!("DEBUG cluster-ctl: {e}; trying the next address if any");
                    }
                    tried += 1;
                    last = e
                }
            }
        }
        if tried == self.cfg.endpoints.len() {
            // Upstream's fail-over client logs this when every `--host` address failed.
            go_log_error(
                "client/lbclient.go:106",
                &format!("reached maximum number of retries without success, retries: {tried}"),
            );
        }
        Err(last)
    }

    async fn send_once(
        &self,
        ep: &Endpoint,
        method: Method,
        path: &str,
        body: ReqBody,
        content_type: Option<String>,
    ) -> Result<Response<Incoming>, RestError> {
        let url = self.url(ep, path);
        let verb = go_verb(&method);
        let fail = |msg: String| RestError::transport(format!("{verb} \"{url}\": {msg}"));
        // `TE: trailers` lets a hyper HTTP/1 server send the X-Stream-Error trailers.
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, ep.authority())
            .header(header::TE, "trailers");
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        if let Some((u, p)) = &self.cfg.basic_auth {
            use base64::Engine;
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            req = req.header(header::AUTHORIZATION, format!("Basic {token}"));
        }
        let req = req.body(body).map_err(|e| fail(e.to_string()))?;
        match ep {
            Endpoint::Tcp { host, port } => {
                let tcp = tokio::net::TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(|e| fail(format!("dial tcp {}: {}", ep.authority(), io_msg(&e))))?;
                let _ = tcp.set_nodelay(true);
                match &self.tls {
                    Some(conn) => {
                        let name = rustls::pki_types::ServerName::try_from(host.clone())
                            .map_err(|e| fail(format!("invalid TLS server name: {e}")))?;
                        let tls = conn
                            .connect(name, tcp)
                            .await
                            .map_err(|e| fail(tls_error_words(&e)))?;
                        exchange(tls, req).await.map_err(|e| fail(e.to_string()))
                    }
                    None => exchange(tcp, req).await.map_err(|e| fail(e.to_string())),
                }
            }
            Endpoint::Unix(path) => {
                let sock = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|e| fail(format!("dial unix {path}: {}", io_msg(&e))))?;
                exchange(sock, req).await.map_err(|e| fail(e.to_string()))
            }
            Endpoint::P2p { addr, peer } => {
                let client = self
                    .p2p_client(addr, peer)
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                let stream = client.open().await.map_err(|e| fail(e.to_string()))?;
                exchange(stream, req).await.map_err(|e| fail(e.to_string()))
            }
        }
    }

    async fn p2p_client(
        &self,
        addr: &Multiaddr,
        peer: &str,
    ) -> Result<Arc<crate::p2p::P2pClient>, crate::p2p::P2pError> {
        let mut map = self.p2p.lock().await;
        if let Some(c) = map.get(peer) {
            return Ok(c.clone());
        }
        let id =
            peer.parse::<libp2p::PeerId>()
                .map_err(|e| crate::p2p::P2pError::InvalidPeerId {
                    peer: peer.to_string(),
                    error: e.to_string(),
                })?;
        let c = Arc::new(crate::p2p::P2pClient::connect(addr, id, self.cfg.secret).await?);
        map.insert(peer.to_string(), c.clone());
        Ok(c)
    }

    /// Runs `fut` under the `--timeout` budget (the whole exchange, like Go's Client.Timeout).
    pub async fn with_timeout<T>(
        &self,
        what: &str,
        fut: impl std::future::Future<Output = Result<T, CtlError>>,
    ) -> Result<T, CtlError> {
        match self.cfg.timeout {
            Some(t) if !t.is_zero() => match tokio::time::timeout(t, fut).await {
                Ok(r) => r,
                Err(_) => Err(RestError::transport(format!(
                    "{what}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
                ))
                .into()),
            },
            _ => fut.await,
        }
    }

    /// A call returning one JSON object (or nothing on 202/204).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Body,
    ) -> Result<Option<Value>, CtlError> {
        let what = format!(
            "{} \"{}\"",
            go_verb(&method),
            self.url(&self.cfg.endpoints[0], path)
        );
        self.with_timeout(&what, async {
            let resp = self.send(method, path, body).await?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| RestError {
                    code: status.as_u16() as i64,
                    message: e.to_string(),
                })?
                .to_bytes();
            if status == StatusCode::ACCEPTED || status == StatusCode::NO_CONTENT {
                return Ok(None);
            }
            if status.as_u16() >= 400 && status.as_u16() < 600 {
                return Err(error_from_body(status, &bytes).into());
            }
            serde_json::from_slice::<Value>(&bytes)
                .map(Some)
                .map_err(|e| {
                    RestError {
                        code: status.as_u16() as i64,
                        message: e.to_string(),
                    }
                    .into()
                })
        })
        .await
    }

    /// A call returning an NDJSON stream: each value goes to `on_item` as it arrives; the
    /// `X-Stream-Error` trailers become a code-500 error afterwards.
    pub async fn stream(
        &self,
        method: Method,
        path: &str,
        body: Body,
        on_item: &mut dyn FnMut(Value) -> Result<(), CtlError>,
    ) -> Result<(), CtlError> {
        let what = format!(
            "{} \"{}\"",
            go_verb(&method),
            self.url(&self.cfg.endpoints[0], path)
        );
        self.with_timeout(&what, async {
            let resp = self.send(method, path, body).await?;
            read_stream(resp, on_item).await
        })
        .await
    }
}

/// Reads an NDJSON response incrementally, as the Go client does.
pub async fn read_stream(
    resp: Response<Incoming>,
    on_item: &mut dyn FnMut(Value) -> Result<(), CtlError>,
) -> Result<(), CtlError> {
    let status = resp.status();
    if status.as_u16() >= 400 {
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Err(error_from_body(status, &bytes).into());
    }
    if status != StatusCode::OK && status != StatusCode::NO_CONTENT {
        return Err(RestError {
            code: status.as_u16() as i64,
            message: "expected streaming response with code 200/204".into(),
        }
        .into());
    }
    let mut body = resp.into_body();
    let mut buf: Vec<u8> = Vec::new();
    let mut trailer_errors: Vec<String> = Vec::new();
    let decode_err = |e: String| RestError {
        code: status.as_u16() as i64,
        message: e,
    };
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| RestError::transport(e.to_string()))?;
        if let Some(data) = frame.data_ref() {
            buf.extend_from_slice(data);
            let consumed = drain_values(&buf, on_item, false).map_err(|e| match e {
                DrainError::Decode(m) => decode_err(m).into(),
                DrainError::Cb(e) => e,
            })?;
            buf.drain(..consumed);
        } else if let Ok(trailers) = frame.into_trailers() {
            for v in trailers.get_all("x-stream-error") {
                let v = String::from_utf8_lossy(v.as_bytes()).trim().to_string();
                if !v.is_empty() {
                    trailer_errors.push(v);
                }
            }
        }
    }
    drain_values(&buf, on_item, true).map_err(|e| match e {
        DrainError::Decode(m) => decode_err(m).into(),
        DrainError::Cb(e) => e,
    })?;
    if !trailer_errors.is_empty() {
        return Err(RestError {
            code: 500,
            message: trailer_errors.join("; "),
        }
        .into());
    }
    Ok(())
}

enum DrainError {
    Decode(String),
    Cb(CtlError),
}

/// Feeds every complete JSON value in `buf` to `on_item`; returns how many bytes were used.
fn drain_values(
    buf: &[u8],
    on_item: &mut dyn FnMut(Value) -> Result<(), CtlError>,
    at_end: bool,
) -> Result<usize, DrainError> {
    let mut it = serde_json::Deserializer::from_slice(buf).into_iter::<Value>();
    let mut used = 0;
    loop {
        match it.next() {
            None => return Ok(buf.len()),
            Some(Ok(v)) => {
                used = it.byte_offset();
                on_item(v).map_err(DrainError::Cb)?;
            }
            Some(Err(e)) if e.is_eof() && !at_end => return Ok(used),
            Some(Err(e)) => return Err(DrainError::Decode(e.to_string())),
        }
    }
}

/// Go client rule: a JSON `{code,message}` body, else the raw body with the HTTP status.
pub fn error_from_body(status: StatusCode, body: &[u8]) -> RestError {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => RestError {
            code: m.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: m
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        },
        _ => RestError {
            code: status.as_u16() as i64,
            message: String::from_utf8_lossy(body).to_string(),
        },
    }
}

async fn exchange<S>(io: S, req: Request<ReqBody>) -> Result<Response<Incoming>, hyper::Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender.send_request(req).await
}

fn go_verb(m: &Method) -> String {
    let s = m.as_str().to_ascii_lowercase();
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
        None => s,
    }
}

fn io_msg(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect: connection refused".into(),
        std::io::ErrorKind::NotFound => "connect: no such file or directory".into(),
        _ => e.to_string(),
    }
}

/// One line of upstream's client log on stderr, in go-log's console format (time, level,
/// logger, Go source position, message): users and scripts that watch upstream's ctl
/// stderr see the same lines.
pub fn go_log_error(position: &str, msg: &str) {
    eprintln!(
        "{}\tERROR\tapiclient\t{position}\t{msg}",
        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ")
    );
}

/// Upstream's fail-over client logs this before a local error raised inside a client
/// call (a path that is not a CID path, a file `add` cannot read): the error is not an
/// `api.Error`.
pub fn log_not_api_error() {
    go_log_error(
        "client/lbclient.go:97",
        "could not cast error into api.Error",
    );
}

/// A failed TLS handshake in Go's words. The common case is `https` (chosen automatically
/// with `--basic-auth`) against a plain-HTTP API: the first record is "HTTP/1.1 …", whose
/// first byte is no TLS content type; Go's client says so in its own words.
fn tls_error_words(e: &std::io::Error) -> String {
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)) => {
            "http: server gave HTTP response to HTTPS client".to_string()
        }
        _ => format!("tls: {e}"),
    }
}

fn tls_connector(no_verify: bool) -> Result<tokio_rustls::TlsConnector, LocalError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| LocalError::new("creating API client", e.to_string()))?;
    let cfg = if no_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(tokio_rustls::TlsConnector::from(Arc::new(cfg)))
}

/// `--no-check-certificate`: accept any server certificate (signatures are still checked).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Builds a streaming request body from a channel of chunks (bounded by the caller).
pub fn channel_body(rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>) -> ReqBody {
    let stream = tokio_stream_from(rx).map(|r| r.map(hyper::body::Frame::data));
    BodyExt::boxed(http_body_util::StreamBody::new(stream))
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_from_multiaddrs() {
        assert_eq!(
            Endpoint::parse("/ip4/127.0.0.1/tcp/9094").unwrap(),
            Endpoint::Tcp {
                host: "127.0.0.1".into(),
                port: 9094
            }
        );
        assert_eq!(
            Endpoint::parse("/ip6/::1/tcp/9094").unwrap().authority(),
            "[::1]:9094"
        );
        assert_eq!(
            Endpoint::parse("/dns4/localhost/tcp/80").unwrap(),
            Endpoint::Tcp {
                host: "localhost".into(),
                port: 80
            }
        );
        assert_eq!(
            Endpoint::parse("/unix/tmp/api.sock").unwrap(),
            Endpoint::Unix("/tmp/api.sock".into())
        );
        let e = Endpoint::parse("garbage").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("error parsing host multiaddress: "),
            "{e}"
        );
        let e = Endpoint::parse(
            "/ip4/127.0.0.1/tcp/9096/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA",
        )
        .unwrap();
        assert!(
            matches!(e, Endpoint::P2p { ref peer, .. } if peer == "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA")
        );
        assert!(
            Endpoint::parse("/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA").is_err()
        );
        assert!(Endpoint::parse("/ip4/127.0.0.1").is_err());
    }

    #[test]
    fn error_bodies() {
        let e = error_from_body(
            StatusCode::NOT_FOUND,
            br#"{"code":404,"message":"pin is not part of the pinset"}"#,
        );
        assert_eq!(
            e,
            RestError {
                code: 404,
                message: "pin is not part of the pinset".into()
            }
        );
        let e = error_from_body(StatusCode::METHOD_NOT_ALLOWED, b"");
        assert_eq!(
            e,
            RestError {
                code: 405,
                message: "".into()
            }
        );
        // JSON without code decodes as code 0, as in Go
        let e = error_from_body(StatusCode::INTERNAL_SERVER_ERROR, br#"{"message":"x"}"#);
        assert_eq!(e.code, 0);
    }

    #[test]
    fn drain_partial_values() {
        let mut got = Vec::new();
        let mut cb = |v: Value| {
            got.push(v);
            Ok(())
        };
        let buf = b"{\"a\":1}\n{\"b\":2}\n{\"c\":";
        let used = drain_values(buf, &mut cb, false).ok().unwrap();
        assert_eq!(used, 15);
        assert_eq!(got.len(), 2);
        assert!(drain_values(b"{\"c\":", &mut |_| Ok(()), true).is_err());
    }
}
