//! The small HTTP client the follower needs: fetching its configuration template (http,
//! https, or an IPFS gateway on loopback), asking its own REST API (on its unix socket,
//! as upstream's follower, or on TCP) whether the peer runs and for its pins, and asking
//! the IPFS daemon whether it is up. Every request has a deadline and a bounded answer.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{url} is not a usable URL: {msg}")]
    BadUrl { url: String, msg: String },
    #[error("cannot load the system's trusted certificates: {0}")]
    Tls(std::io::Error),
    #[error("{url}: {msg}")]
    Failed { url: String, msg: String },
    #[error("{url}: no answer within {secs}s")]
    Timeout { url: String, secs: u64 },
    #[error("{url}: the answer is larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
}

/// One request; returns the status code and the body (at most `limit` bytes).
pub async fn request(
    method: &str,
    url: &str,
    timeout: Duration,
    limit: usize,
) -> Result<(u16, Vec<u8>), HttpError> {
    let uri: hyper::Uri = url.parse().map_err(|e| HttpError::BadUrl {
        url: url.to_string(),
        msg: format!("{e}"),
    })?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
        .map_err(HttpError::Tls)?
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    let req = hyper::Request::builder()
        .method(method)
        .uri(uri)
        .body(Full::new(Bytes::new()))
        .map_err(|e| HttpError::BadUrl {
            url: url.to_string(),
            msg: e.to_string(),
        })?;
    let failed = |msg: String| HttpError::Failed {
        url: url.to_string(),
        msg,
    };
    let work = async {
        let resp = client.request(req).await.map_err(|e| {
            // The underlying cause (connection refused, DNS) is the useful part.
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg = format!("{msg}: {s}");
                src = s.source();
            }
            failed(msg)
        })?;
        read_answer(resp, limit).await.map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                HttpError::TooLarge {
                    url: url.to_string(),
                    limit,
                }
            } else {
                failed(format!("reading the answer: {e}"))
            }
        })
    };
    within(url, timeout, work).await
}

/// One request over a unix socket (`path`), for `uri` (path and query); the status code
/// and the body (at most `limit` bytes).
pub async fn request_unix(
    method: &str,
    path: &std::path::Path,
    uri: &str,
    timeout: Duration,
    limit: usize,
) -> Result<(u16, Vec<u8>), HttpError> {
    let url = format!("/unix{}{uri}", path.display());
    let failed = |msg: String| HttpError::Failed {
        url: url.clone(),
        msg,
    };
    let work = async {
        let stream = tokio::net::UnixStream::connect(path)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| failed(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = hyper::Request::builder()
            .method(method)
            .uri(uri)
            .header(hyper::header::HOST, "localhost")
            .body(Full::new(Bytes::new()))
            .map_err(|e| failed(e.to_string()))?;
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| failed(e.to_string()))?;
        read_answer(resp, limit)
            .await
            .map_err(|e| failed(format!("reading the answer: {e}")))
    };
    within(&url, timeout, work).await
}

/// The status code and at most `limit` bytes of an answer's body (the error of a body
/// that is longer, or that breaks off, is the caller's to word).
async fn read_answer(
    resp: hyper::Response<hyper::body::Incoming>,
    limit: usize,
) -> Result<(u16, Vec<u8>), Box<dyn std::error::Error + Send + Sync>> {
    let status = resp.status().as_u16();
    let body = Limited::new(resp.into_body(), limit).collect().await?;
    Ok((status, body.to_bytes().to_vec()))
}

/// Runs a request's `work` with a deadline; a late answer is a `Timeout` naming `url`.
async fn within<T>(
    url: &str,
    timeout: Duration,
    work: impl std::future::Future<Output = Result<T, HttpError>>,
) -> Result<T, HttpError> {
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| HttpError::Timeout {
            url: url.to_string(),
            secs: timeout.as_secs(),
        })?
}
