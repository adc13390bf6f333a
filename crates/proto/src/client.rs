//! Connecting to a local service: a lazily connected channel (services may start in any
//! order) whose every request carries the internal token, and typed client aliases.

use std::{
    future::Future,
    net::SocketAddr,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use tonic::{
    metadata::MetadataValue,
    service::{interceptor::InterceptedService, Interceptor},
    transport::{Channel, Endpoint},
    Request, Status,
};

use crate::auth::InternalToken;

/// Adds `authorization: Bearer <token>` to every outgoing request.
#[derive(Clone)]
pub struct BearerToken(MetadataValue<tonic::metadata::Ascii>);

impl BearerToken {
    pub fn new(token: &InternalToken) -> Self {
        Self(
            token
                .bearer()
                .parse()
                .expect("a hex token is a valid header value"),
        )
    }
}

impl Interceptor for BearerToken {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        if let Some(v) = outgoing_traceparent().and_then(|t| t.parse().ok()) {
            req.metadata_mut().insert(TRACEPARENT, v);
        }
        Ok(req)
    }
}

/// The `traceparent` an outgoing internal call carries: a child span of the caller's
/// trace, or a new trace for calls made outside any request (background loops). `None`
/// when tracing is off.
pub fn outgoing_traceparent() -> Option<String> {
    if !tracing_enabled() {
        return None;
    }
    let ctx = current_trace()
        .map(|c| c.child())
        .unwrap_or_else(TraceContext::new_root);
    Some(ctx.traceparent())
}

// ------------------------------------------------------------------ trace context
//
// W3C Trace Context (`traceparent: 00-<trace id>-<span id>-01`) carried in internal gRPC
// metadata. The server side (server.rs) and the gateway's HTTP layer put the request's
// context in a task-local; every client call made from that task sends it on.

/// The metadata / HTTP header carrying the trace context.
pub const TRACEPARENT: &str = "traceparent";

static TRACING: AtomicBool = AtomicBool::new(false);

/// Turns trace propagation and per-request trace logging on for this process
/// (`--tracing` / `observations.tracing.enable_tracing`).
pub fn set_tracing(on: bool) {
    TRACING.store(on, Ordering::Relaxed);
}

pub fn tracing_enabled() -> bool {
    TRACING.load(Ordering::Relaxed)
}

/// One span of a W3C trace: the trace id shared by every service a request crosses and
/// the id of the current span (the parent of the next hop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
}

impl TraceContext {
    /// A new trace (random ids, never all zero as the spec demands).
    pub fn new_root() -> Self {
        let mut trace_id: [u8; 16] = rand::random();
        trace_id[0] |= 1;
        TraceContext {
            trace_id,
            span_id: new_span_id(),
        }
    }

    /// The same trace, a new span.
    pub fn child(&self) -> Self {
        TraceContext {
            trace_id: self.trace_id,
            span_id: new_span_id(),
        }
    }

    /// `00-<32 hex>-<16 hex>-01` (version 00, sampled).
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-01",
            hex::encode(self.trace_id),
            hex::encode(self.span_id)
        )
    }

    pub fn trace_id_hex(&self) -> String {
        hex::encode(self.trace_id)
    }

    /// Parses a `traceparent` value; `None` for anything malformed or all-zero ids
    /// (the caller then starts a new trace, as the spec says).
    pub fn parse(v: &str) -> Option<Self> {
        let mut parts = v.trim().split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let span = parts.next()?;
        let flags = parts.next()?;
        if version.len() != 2
            || version == "ff"
            || flags.len() != 2
            || (version == "00" && parts.next().is_some())
        {
            return None;
        }
        hex::decode(version).ok()?;
        hex::decode(flags).ok()?;
        let trace_id: [u8; 16] = hex::decode(trace).ok()?.try_into().ok()?;
        let span_id: [u8; 8] = hex::decode(span).ok()?.try_into().ok()?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceContext { trace_id, span_id })
    }
}

fn new_span_id() -> [u8; 8] {
    let mut s: [u8; 8] = rand::random();
    s[0] |= 1;
    s
}

tokio::task_local! {
    static CURRENT_TRACE: TraceContext;
}

/// The trace context of the request this task is serving, if any.
pub fn current_trace() -> Option<TraceContext> {
    CURRENT_TRACE.try_with(|c| *c).ok()
}

/// Runs `fut` with `ctx` as the current trace context (client calls made inside it carry
/// it on).
pub async fn in_trace<F: Future>(ctx: TraceContext, fut: F) -> F::Output {
    CURRENT_TRACE.scope(ctx, fut).await
}

pub type Authed = InterceptedService<Channel, BearerToken>;
pub type TransportClient = crate::transport::v1::transport_client::TransportClient<Authed>;
pub type ConsensusClient = crate::consensus::v1::consensus_client::ConsensusClient<Authed>;
pub type IpfsConnectorClient =
    crate::ipfsconnector::v1::ipfs_connector_client::IpfsConnectorClient<Authed>;
pub type GatewayClient = crate::gateway::v1::gateway_client::GatewayClient<Authed>;

/// A channel to a local service that connects on first use and reconnects after failures.
pub fn channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("a socket address is a valid URI")
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .connect_lazy()
}

pub fn authed(addr: SocketAddr, token: &InternalToken) -> Authed {
    InterceptedService::new(channel(addr), BearerToken::new(token))
}

pub fn transport(addr: SocketAddr, token: &InternalToken) -> TransportClient {
    TransportClient::new(authed(addr, token))
}
pub fn consensus(addr: SocketAddr, token: &InternalToken) -> ConsensusClient {
    ConsensusClient::new(authed(addr, token)).max_decoding_message_size(64 << 20)
}
pub fn ipfs_connector(addr: SocketAddr, token: &InternalToken) -> IpfsConnectorClient {
    IpfsConnectorClient::new(authed(addr, token)).max_decoding_message_size(64 << 20)
}
pub fn gateway(addr: SocketAddr, token: &InternalToken) -> GatewayClient {
    GatewayClient::new(authed(addr, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trip_and_rejects() {
        let c = TraceContext::new_root();
        let tp = c.traceparent();
        assert_eq!(tp.len(), 55);
        assert_eq!(TraceContext::parse(&tp), Some(c));
        let child = c.child();
        assert_eq!(child.trace_id, c.trace_id);
        assert_ne!(child.span_id, c.span_id);
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            TraceContext::parse(ok).unwrap().trace_id_hex(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
            "00-zzf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn the_task_local_context_is_seen_inside_only() {
        assert_eq!(current_trace(), None);
        let c = TraceContext::new_root();
        let seen = in_trace(c, async { current_trace() }).await;
        assert_eq!(seen, Some(c));
        assert_eq!(current_trace(), None);
    }
}
