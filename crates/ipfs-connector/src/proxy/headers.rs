//! Headers of hijacked answers, as upstream's api/ipfsproxy/headers.go: browsers talking to the proxy must see the same CORS
//! headers the daemon would have sent. (1) `Access-Control-Allow-Origin`, `Vary` and
//! `Access-Control-Allow-Credentials` come from a fresh OPTIONS preflight to the daemon
//! at the same path with the client's `Origin`; (2) `Access-Control-Expose-Headers` plus
//! `extract_headers_extra` come from a POST to `extract_headers_path`, cached for
//! `extract_headers_ttl` (0 = forever); (3) `Content-Type: application/json` and our
//! `Server` header are always set.

use std::{sync::Mutex, time::Duration};

use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request};
use tokio::time::Instant;

use super::{empty_req, server_header, Proxy};

const CORS: [HeaderName; 3] = [
    header::ACCESS_CONTROL_ALLOW_ORIGIN,
    header::VARY,
    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
];

/// The extracted headers and when they were taken.
pub(crate) struct Extracted {
    names: Vec<HeaderName>,
    path: String,
    ttl: Duration,
    cache: Mutex<Option<(Instant, HeaderMap)>>,
}

/// Header values picked from a daemon answer.
pub(crate) type CorsHeaders = Vec<(HeaderName, Vec<HeaderValue>)>;

impl Extracted {
    /// `extra` names that are not valid header names are skipped with a warning.
    pub(crate) fn new(extra: &[String], path: &str, ttl: Duration) -> Self {
        let mut names = vec![header::ACCESS_CONTROL_EXPOSE_HEADERS];
        for e in extra {
            match HeaderName::from_bytes(e.trim().as_bytes()) {
                Ok(n) if !names.contains(&n) => names.push(n),
                Ok(_) => {}
                Err(_) => tracing::warn!(
                    "api.ipfsproxy.extract_headers_extra: {e:?} is not a header name; ignored"
                ),
            }
        }
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        Self {
            names,
            path,
            ttl,
            cache: Mutex::new(None),
        }
    }

    /// The cached headers while they are fresh.
    fn fresh(&self) -> Option<HeaderMap> {
        let c = self.cache.lock().expect("extracted headers lock");
        match &*c {
            Some((at, h)) if self.ttl.is_zero() || at.elapsed() < self.ttl => Some(h.clone()),
            _ => None,
        }
    }

    fn store(&self, h: HeaderMap) {
        *self.cache.lock().expect("extracted headers lock") = Some((Instant::now(), h));
    }
}

/// `names` of `from`, every value, and an empty entry (= "remove") for missing ones.
fn pick(names: &[HeaderName], from: &HeaderMap) -> Vec<(HeaderName, Vec<HeaderValue>)> {
    names
        .iter()
        .map(|n| (n.clone(), from.get_all(n).iter().cloned().collect()))
        .collect()
}

/// What a hijacked answer gets: each name replaces (or removes) the answer's values.
#[derive(Default)]
pub(crate) struct HijackHeaders(Vec<(HeaderName, Vec<HeaderValue>)>);

impl HijackHeaders {
    pub(crate) fn apply(self, h: &mut HeaderMap) {
        for (n, vs) in self.0 {
            h.remove(&n);
            for v in vs {
                h.append(n.clone(), v);
            }
        }
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::SERVER, server_header());
    }
}

impl Proxy {
    /// The headers for a hijacked answer to `method path` from a client sending `origin`.
    /// Daemon errors are logged and leave the CORS headers out, as upstream.
    pub(crate) async fn hijack_headers(
        &self,
        path: &str,
        origin: Option<HeaderValue>,
        method: &Method,
        preflight: Option<CorsHeaders>,
    ) -> HijackHeaders {
        let cors = async {
            match preflight {
                Some(c) => c,
                None => self.cors_headers(path, origin, method).await,
            }
        };
        let (cors, extracted) = tokio::join!(cors, self.extracted_headers());
        let mut out = cors;
        out.extend(extracted);
        HijackHeaders(out)
    }

    /// The daemon's CORS answer for `method` from `origin` (kept for the hijacked answer's
    /// headers), and whether it allows that origin.
    pub(crate) async fn daemon_cors(
        &self,
        path: &str,
        origin: HeaderValue,
        method: &Method,
    ) -> (CorsHeaders, bool) {
        let got = self.cors_headers(path, Some(origin.clone()), method).await;
        let allowed = got.iter().any(|(name, values)| {
            *name == header::ACCESS_CONTROL_ALLOW_ORIGIN
                && values.iter().any(|v| v == "*" || *v == origin)
        });
        (got, allowed)
    }

    async fn cors_headers(
        &self,
        path: &str,
        origin: Option<HeaderValue>,
        method: &Method,
    ) -> CorsHeaders {
        let mut req = Request::new(empty_req());
        *req.method_mut() = Method::OPTIONS;
        if let Some(o) = origin {
            req.headers_mut().insert(header::ORIGIN, o);
        }
        if let Ok(m) = HeaderValue::from_str(method.as_str()) {
            req.headers_mut()
                .insert(header::ACCESS_CONTROL_REQUEST_METHOD, m);
        }
        match self.daemon_request(path, req).await {
            Ok(resp) => pick(&CORS, resp.headers()),
            Err(e) => {
                tracing::error!("ipfs proxy: CORS preflight to the IPFS daemon failed: {e}");
                pick(&CORS, &HeaderMap::new())
            }
        }
    }

    async fn extracted_headers(&self) -> Vec<(HeaderName, Vec<HeaderValue>)> {
        let ex = &self.extracted;
        if let Some(h) = ex.fresh() {
            return pick(&ex.names, &h);
        }
        let mut req = Request::new(empty_req());
        *req.method_mut() = Method::POST;
        match self.daemon_request(&ex.path, req).await {
            Ok(resp) => {
                let mut keep = HeaderMap::new();
                for n in &ex.names {
                    for v in resp.headers().get_all(n) {
                        keep.append(n.clone(), v.clone());
                    }
                }
                // The body is not needed; dropping it closes or recycles the connection.
                drop(resp);
                let out = pick(&ex.names, &keep);
                ex.store(keep);
                out
            }
            Err(e) => {
                // Not cached: the next hijacked request tries again.
                tracing::error!(
                    "ipfs proxy: extracting headers from the IPFS daemon ({}) failed: {e}",
                    ex.path
                );
                pick(&ex.names, &HeaderMap::new())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extract_names_and_cache_ttl() {
        let ex = Extracted::new(
            &[
                "X-Custom".into(),
                "bad header".into(),
                "access-control-expose-headers".into(),
            ],
            "api/v0/version",
            Duration::from_secs(60),
        );
        assert_eq!(
            ex.names,
            vec![
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderName::from_static("x-custom")
            ]
        );
        assert_eq!(ex.path, "/api/v0/version");
        assert!(ex.fresh().is_none());
        let mut h = HeaderMap::new();
        h.insert("x-custom", HeaderValue::from_static("1"));
        ex.store(h);
        assert_eq!(ex.fresh().unwrap()["x-custom"], "1");
        *ex.cache.lock().unwrap() =
            Some((Instant::now() - Duration::from_secs(61), HeaderMap::new()));
        assert!(ex.fresh().is_none(), "expired after the TTL");
        let forever = Extracted::new(&[], "/v", Duration::ZERO);
        forever.store(HeaderMap::new());
        assert!(forever.fresh().is_some(), "ttl 0 = keep forever");
    }

    #[test]
    fn apply_replaces_and_removes() {
        let mut resp = HeaderMap::new();
        resp.insert(header::VARY, HeaderValue::from_static("old"));
        resp.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        let mut from = HeaderMap::new();
        from.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("http://a"),
        );
        HijackHeaders(pick(&CORS, &from)).apply(&mut resp);
        assert_eq!(resp[header::ACCESS_CONTROL_ALLOW_ORIGIN], "http://a");
        assert!(
            resp.get(header::VARY).is_none(),
            "absent at the daemon = removed"
        );
        assert_eq!(resp[header::CONTENT_TYPE], "application/json");
        assert!(resp[header::SERVER]
            .to_str()
            .unwrap()
            .starts_with("ipfs-cluster/ipfsproxy/"));
    }
}
