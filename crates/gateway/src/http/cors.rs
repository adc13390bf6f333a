//! CORS as rs/cors 1.11.1 configured by upstream: preflights answered here with 204,
//! actual requests decorated when the origin and method are allowed.

use http::{header, HeaderMap, HeaderValue, Method};

use crate::options::CorsOptions;

#[derive(Debug, Clone)]
pub struct Cors {
    any_origin: bool,
    origins: Vec<String>,
    methods: Vec<String>,
    /// Lower-cased; empty config means rs/cors defaults.
    headers: Vec<String>,
    any_header: bool,
    exposed: Option<String>,
    credentials: bool,
    max_age_secs: u64,
}

impl Cors {
    pub fn new(o: &CorsOptions) -> Self {
        let any_origin = o.allowed_origins.iter().any(|x| x == "*");
        let mut headers: Vec<String> = if o.allowed_headers.is_empty() {
            vec![
                "accept".into(),
                "content-type".into(),
                "x-requested-with".into(),
            ]
        } else {
            o.allowed_headers
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect()
        };
        let any_header = headers.iter().any(|h| h == "*");
        headers.push("origin".into());
        let exposed = (!o.exposed_headers.is_empty()).then(|| {
            o.exposed_headers
                .iter()
                .map(|h| canonical_header(h))
                .collect::<Vec<_>>()
                .join(", ")
        });
        Self {
            any_origin,
            origins: o
                .allowed_origins
                .iter()
                .map(|x| x.to_ascii_lowercase())
                .collect(),
            methods: o
                .allowed_methods
                .iter()
                .map(|m| m.to_ascii_uppercase())
                .collect(),
            headers,
            any_header,
            exposed,
            credentials: o.allow_credentials,
            max_age_secs: o.max_age.as_secs(),
        }
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        if self.any_origin {
            return true;
        }
        let origin = origin.to_ascii_lowercase();
        self.origins.iter().any(|o| match o.split_once('*') {
            Some((pre, suf)) => {
                origin.len() >= pre.len() + suf.len()
                    && origin.starts_with(pre)
                    && origin.ends_with(suf)
            }
            None => *o == origin,
        })
    }

    fn method_allowed(&self, m: &str) -> bool {
        let m = m.to_ascii_uppercase();
        m == "OPTIONS" || self.methods.contains(&m)
    }

    /// Would a preflight for `method` from `origin` succeed?
    pub fn allows(&self, origin: &str, method: &str) -> bool {
        self.origin_allowed(origin) && self.method_allowed(method)
    }

    fn origin_value(&self, origin: &str) -> HeaderValue {
        if self.any_origin {
            HeaderValue::from_static("*")
        } else {
            HeaderValue::from_str(origin).unwrap_or(HeaderValue::from_static("null"))
        }
    }

    /// Is this a preflight (OPTIONS with Access-Control-Request-Method)?
    pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
        method == Method::OPTIONS && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    }

    /// Headers of the 204 answer to a preflight.
    pub fn preflight(&self, req: &HeaderMap) -> HeaderMap {
        let mut out = HeaderMap::new();
        out.append(
            header::VARY,
            HeaderValue::from_static(
                "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
            ),
        );
        let Some(origin) = req.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
            return out;
        };
        if !self.origin_allowed(origin) {
            return out;
        }
        let Some(method) = req
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|v| v.to_str().ok())
        else {
            return out;
        };
        if !self.method_allowed(method) {
            return out;
        }
        let requested: Vec<String> = req
            .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        if !self.any_header && !requested.iter().all(|h| self.headers.contains(h)) {
            return out;
        }
        out.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            self.origin_value(origin),
        );
        if let Ok(v) = HeaderValue::from_str(&method.to_ascii_uppercase()) {
            out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, v);
        }
        if !requested.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&requested.join(", ")) {
                out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
            }
        }
        if self.credentials {
            out.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if self.max_age_secs > 0 {
            out.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from(self.max_age_secs),
            );
        }
        out
    }

    /// Adds the CORS headers of an actual (non-preflight) request to a response.
    pub fn decorate(&self, method: &Method, req: &HeaderMap, resp: &mut HeaderMap) {
        resp.append(header::VARY, HeaderValue::from_static("Origin"));
        let Some(origin) = req.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
            return;
        };
        if !self.origin_allowed(origin) || !self.method_allowed(method.as_str()) {
            return;
        }
        resp.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            self.origin_value(origin),
        );
        if let Some(exp) = &self.exposed {
            if let Ok(v) = HeaderValue::from_str(exp) {
                resp.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v);
            }
        }
        if self.credentials {
            resp.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }
}

/// Go's canonical MIME header form: `x-stream-output` → `X-Stream-Output`.
fn canonical_header(h: &str) -> String {
    h.split('-')
        .map(|p| {
            let mut c = p.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + &c.as_str().to_ascii_lowercase(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn upstream_test_config_preflight() {
        let c = Cors::new(&CorsOptions {
            allowed_origins: vec!["myorigin".into()],
            allowed_methods: vec!["GET".into(), "POST".into(), "DELETE".into()],
            allowed_headers: vec!["Content-Type".into()],
            max_age: Duration::from_secs(600),
            ..CorsOptions::default()
        });
        let mut req = HeaderMap::new();
        req.insert(header::ORIGIN, HeaderValue::from_static("myorigin"));
        req.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("GET"),
        );
        req.insert(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            HeaderValue::from_static("Content-Type"),
        );
        let h = c.preflight(&req);
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "myorigin");
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_METHODS], "GET");
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_HEADERS], "content-type");
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(h[header::ACCESS_CONTROL_MAX_AGE], "600");
        assert_eq!(
            h[header::VARY],
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
        );
        req.insert(header::ORIGIN, HeaderValue::from_static("other"));
        assert!(c
            .preflight(&req)
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none());
    }

    #[test]
    fn actual_request_defaults() {
        let c = Cors::new(&CorsOptions::default());
        let mut req = HeaderMap::new();
        req.insert(header::ORIGIN, HeaderValue::from_static("http://x"));
        let mut resp = HeaderMap::new();
        c.decorate(&Method::GET, &req, &mut resp);
        assert_eq!(resp[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(
            resp[header::ACCESS_CONTROL_EXPOSE_HEADERS],
            "Content-Type, X-Stream-Output, X-Chunked-Output, X-Content-Length"
        );
        let mut resp = HeaderMap::new();
        c.decorate(&Method::POST, &req, &mut resp);
        assert!(resp.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        assert_eq!(resp[header::VARY], "Origin");
    }
}
