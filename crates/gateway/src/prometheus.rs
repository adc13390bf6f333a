//! The gateway's Prometheus families and per-request tracing (docs/operations.md, Observability):
//! API requests by route template (never the CID) with their latency, and, with tracing
//! on, a W3C trace per HTTP request — continued from the client's `traceparent` header
//! if it sent one — carried into every internal gRPC call, logged with `trace_id`, and
//! returned in the `traceparent` response header.

use std::{sync::Arc, time::Instant};

use http::{HeaderMap, HeaderValue, Method, Response};
use ipfs_cluster_observability::{
    latency_histogram,
    prometheus_client::metrics::{counter::Counter, family::Family},
    tracing_enabled, HistogramFamily, Labels, Metrics, TraceContext, TRACEPARENT,
};

use crate::{
    http::router::{self, Match, Route},
    options::ApiKind,
};

/// The API request families, owned by the apps that serve the requests (`App`).
pub struct HttpMetrics {
    total: Family<Labels, Counter>,
    duration: HistogramFamily,
}

impl std::fmt::Debug for HttpMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpMetrics")
    }
}

/// Registers the API request families; the recorder goes to the apps through
/// `bind_api` (`crate::run` registers them when metrics are on).
pub fn register(m: &Metrics) -> Arc<HttpMetrics> {
    let total: Family<Labels, Counter> = Family::default();
    m.register(
        "http_requests",
        "API requests, by api (rest, pinsvc), method, route template and status code",
        total.clone(),
    );
    let duration: HistogramFamily = Family::new_with_constructor(latency_histogram as fn() -> _);
    m.register(
        "http_request_duration_seconds",
        "API latency until the answer's headers, by api and route template",
        duration.clone(),
    );
    Arc::new(HttpMetrics { total, duration })
}

fn rest_template(r: &Route) -> &'static str {
    match r {
        Route::Id => "/id",
        Route::Version => "/version",
        Route::PeersList | Route::PeerAdd => "/peers",
        Route::PeerRemove { .. } => "/peers/{peer}",
        Route::Add => "/add",
        Route::Allocations => "/allocations",
        Route::Allocation { .. } => "/allocations/{cid}",
        Route::StatusAll => "/pins",
        Route::Recover { .. } => "/pins/{cid}/recover",
        Route::RecoverAll => "/pins/recover",
        Route::Status { .. } | Route::Pin { .. } | Route::Unpin { .. } => "/pins/{cid}",
        Route::PinPath { .. } | Route::UnpinPath { .. } => "/pins/{keytype}/{path}",
        Route::RepoGc => "/ipfs/gc",
        Route::HealthGraph => "/health/graph",
        Route::Alerts => "/health/alerts",
        Route::Bandwidth => "/health/bandwidth",
        Route::PeerMetrics { .. } => "/monitor/metrics/{name}",
        Route::PeerMetricNames => "/monitor/metrics",
        Route::Token => "/token",
        Route::Health => "/health",
    }
}

/// The route template of a request: bounded label values (unknown paths are "other").
pub fn route_template(kind: ApiKind, method: &Method, path: &str) -> &'static str {
    match kind {
        ApiKind::Rest => {
            let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
            match router::match_rest(method, &decoded) {
                Match::Found(r) => rest_template(&r),
                _ => "other",
            }
        }
        ApiKind::PinSvc => {
            let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
            match segs.as_slice() {
                ["pins"] => "/pins",
                ["pins", _] => "/pins/{requestid}",
                [""] => "/",
                _ => "other",
            }
        }
    }
}

fn api(kind: ApiKind) -> &'static str {
    match kind {
        ApiKind::Rest => "rest",
        ApiKind::PinSvc => "pinsvc",
    }
}

/// One HTTP request being observed.
pub struct Observed {
    kind: ApiKind,
    method: Method,
    route: &'static str,
    started: Instant,
    /// Set when tracing is on.
    pub trace: Option<TraceContext>,
}

impl Observed {
    pub fn start(kind: ApiKind, method: &Method, path: &str, headers: &HeaderMap) -> Self {
        let trace = tracing_enabled().then(|| {
            headers
                .get(TRACEPARENT)
                .and_then(|v| v.to_str().ok())
                .and_then(TraceContext::parse)
                .map(|c| c.child())
                .unwrap_or_else(TraceContext::new_root)
        });
        Observed {
            kind,
            method: method.clone(),
            route: route_template(kind, method, path),
            started: Instant::now(),
            trace,
        }
    }

    /// The span the request's work runs in (carries `trace_id` when tracing is on).
    pub fn span(&self) -> tracing::Span {
        match &self.trace {
            Some(c) => {
                tracing::info_span!("http", trace_id = %c.trace_id_hex(), api = api(self.kind), route = self.route)
            }
            None => tracing::Span::none(),
        }
    }

    /// Records the answer in `metrics` (when metrics are on), and with tracing on logs it
    /// and returns the trace context.
    pub fn finish<B>(
        self,
        resp: &mut Response<B>,
        span: &tracing::Span,
        metrics: Option<&HttpMetrics>,
    ) {
        let code = resp.status().as_u16().to_string();
        let elapsed = self.started.elapsed();
        if let Some(h) = metrics {
            h.total
                .get_or_create(&vec![
                    ("api".into(), api(self.kind).into()),
                    ("method".into(), self.method.as_str().into()),
                    ("route".into(), self.route.into()),
                    ("code".into(), code.clone()),
                ])
                .inc();
            h.duration
                .get_or_create(&vec![
                    ("api".into(), api(self.kind).into()),
                    ("route".into(), self.route.into()),
                ])
                .observe(elapsed.as_secs_f64());
        }
        if let Some(c) = self.trace {
            if let Ok(v) = HeaderValue::from_str(&c.traceparent()) {
                resp.headers_mut().insert(TRACEPARENT, v);
            }
            span.in_scope(|| {
                tracing::info!(
                    method = %self.method,
                    code,
                    elapsed_ms = elapsed.as_secs_f64() * 1e3,
                    "http request served"
                )
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_templates_hide_cids() {
        let cid = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";
        assert_eq!(
            route_template(ApiKind::Rest, &Method::POST, &format!("/pins/{cid}")),
            "/pins/{cid}"
        );
        assert_eq!(
            route_template(
                ApiKind::Rest,
                &Method::POST,
                &format!("/pins/ipfs/{cid}/a/b")
            ),
            "/pins/{keytype}/{path}"
        );
        assert_eq!(
            route_template(ApiKind::Rest, &Method::GET, "/pins"),
            "/pins"
        );
        assert_eq!(
            route_template(ApiKind::Rest, &Method::GET, "/nope/x"),
            "other"
        );
        assert_eq!(
            route_template(ApiKind::PinSvc, &Method::GET, "/pins/123"),
            "/pins/{requestid}"
        );
        assert_eq!(
            route_template(ApiKind::PinSvc, &Method::GET, "/a/b/c"),
            "other"
        );
    }
}
