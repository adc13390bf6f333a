//! Web pages must not drive the APIs. A page in a browser on the operator's machine can
//! send requests to `127.0.0.1:9094` (CSRF: a "simple" cross-origin POST or DELETE needs no
//! preflight), and a page on a domain that resolves to 127.0.0.1 (DNS rebinding) can even
//! read the answers. Two checks before anything else runs (authentication included):
//! * **Host**: when every listen address is loopback, the `Host` (or HTTP/2 authority)
//!   must be `localhost` or an IP literal — a rebinding page necessarily sends its own
//!   domain name. An API bound beyond loopback takes any name (the operator's DNS names).
//! * **Origin** on writes: a request that is not GET/HEAD/OPTIONS and carries an `Origin`
//!   is served only when CORS (`cors_allowed_origins` and `cors_allowed_methods`, upstream's
//!   keys) allows that origin and method, i.e. exactly what a preflight would have allowed.
//!   With upstream's defaults (any origin, GET only) no web page can write. Clients that
//!   are not browsers send no `Origin` and are not affected.
//!
//! Requests tunnelled over libp2p-http carry the peer id as `Host`, which is accepted (no
//! DNS name looks like one); `Origin` is checked on them as on any request.

use http::{header, HeaderMap, Method, Uri};

use ipfs_cluster_config::host_header::RefusedHost;
use ipfs_cluster_runtime::{ErrorCode, ServiceError};

use crate::http::cors::Cors;

/// A request a web page may not make: refused with 403 before authentication.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error(transparent)]
    Host(#[from] RefusedHost),
    #[error("cross-origin {method} from {origin:?} refused: web pages may only do what CORS allows (cors_allowed_origins and cors_allowed_methods in the API's config section)")]
    Origin { method: Method, origin: String },
}

impl ServiceError for Refused {
    fn error_code(&self) -> ErrorCode {
        ErrorCode::Forbidden
    }
}

/// Checks the `Host` of a request to an API that listens on loopback only.
pub fn check_host(headers: &HeaderMap, uri: &Uri, loopback_only: bool) -> Result<(), Refused> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| uri.authority().map(|a| a.as_str().to_string()));
    // Requests tunnelled over libp2p-http (the cluster host's tunnel listener, the REST
    // API's own libp2p host) name the peer id as Host; no DNS name can look like one.
    if let Some(h) = &host {
        let name = h.rsplit_once(':').map_or(h.as_str(), |(n, _)| n);
        if name.parse::<libp2p::PeerId>().is_ok() {
            return Ok(());
        }
    }
    Ok(ipfs_cluster_config::host_header::check_loopback_host(
        host.as_deref(),
        loopback_only,
    )?)
}

/// Checks a write (not GET/HEAD/OPTIONS) that carries an `Origin` against CORS.
pub fn check_origin(method: &Method, headers: &HeaderMap, cors: &Cors) -> Result<(), Refused> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("(not text)");
    if cors.allows(origin, method.as_str()) {
        return Ok(());
    }
    Err(Refused::Origin {
        method: method.clone(),
        origin: origin.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::CorsOptions;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        m
    }

    #[test]
    fn host_from_the_header_or_the_http2_authority() {
        let u: Uri = "/pins".parse().unwrap();
        assert!(check_host(&h(&[("host", "127.0.0.1:9094")]), &u, true).is_ok());
        assert!(check_host(&h(&[("host", "evil.example:9094")]), &u, true).is_err());
        assert!(check_host(&h(&[("host", "evil.example")]), &u, false).is_ok());
        let u2: Uri = "http://evil.example:9094/pins".parse().unwrap();
        assert!(check_host(&h(&[]), &u2, true).is_err());
        // libp2p-http clients name the peer.
        let peer = "12D3KooWGBfKqTqgYSHCUZJH6wt7pAjjyfWGSVH2KAtVZzvTnTvM";
        assert!(check_host(&h(&[("host", peer)]), &u, true).is_ok());
    }

    #[test]
    fn writes_from_web_pages_need_cors() {
        let defaults = Cors::new(&CorsOptions::default());
        let page = h(&[("origin", "https://evil.example")]);
        assert!(check_origin(&Method::GET, &page, &defaults).is_ok());
        for m in [Method::POST, Method::DELETE, Method::PUT, Method::PATCH] {
            let e = check_origin(&m, &page, &defaults).unwrap_err();
            assert_eq!(e.error_code().http_status(), http::StatusCode::FORBIDDEN);
            assert!(e.to_string().contains("cross-origin"), "{e}");
        }
        assert!(check_origin(&Method::POST, &h(&[]), &defaults).is_ok());
        let open = Cors::new(&CorsOptions {
            allowed_origins: vec!["https://ui.example".into()],
            allowed_methods: vec!["GET".into(), "POST".into()],
            ..CorsOptions::default()
        });
        let ui = h(&[("origin", "https://ui.example")]);
        assert!(check_origin(&Method::POST, &ui, &open).is_ok());
        assert!(check_origin(&Method::DELETE, &ui, &open).is_err());
        assert!(check_origin(&Method::POST, &page, &open).is_err());
        assert!(check_origin(&Method::POST, &h(&[("origin", "null")]), &open).is_err());
    }
}
