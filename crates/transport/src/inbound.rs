//! Handling a peer call that arrived from another peer: policy first (a denied call is
//! logged and never reaches a service), then the local service with the caller's deadline.

use std::time::Duration;

use bytes::Bytes;
use ipfs_cluster_proto::transport::v1::{WireRequest, WireResponse};
use libp2p::PeerId;

use ipfs_cluster_runtime::ServiceError;

use crate::{local::LocalServices, options::Limits, trust::Trust, wire::status_response};

pub struct Inbound {
    pub trust: std::sync::Arc<Trust>,
    pub local: LocalServices,
    pub limits: Limits,
}

/// The deadline to use for a call: the caller's (0 = default), never above the maximum.
pub fn deadline(timeout_ms: u32, limits: &Limits) -> Duration {
    if timeout_ms == 0 {
        limits.default_call_timeout
    } else {
        Duration::from_millis(timeout_ms as u64).min(limits.max_call_timeout)
    }
}

impl Inbound {
    /// Serves one peer call; with tracing on, inside the caller's trace (its
    /// `traceparent`, or a new trace when the caller sent none).
    pub async fn handle(&self, peer: PeerId, req: WireRequest) -> WireResponse {
        use ipfs_cluster_proto::client::{in_trace, tracing_enabled, TraceContext};
        use tracing::Instrument;
        if !tracing_enabled() {
            return self.handle_untraced(peer, req).await;
        }
        let ctx = TraceContext::parse(&req.traceparent)
            .map(|c| c.child())
            .unwrap_or_else(TraceContext::new_root);
        let span = tracing::info_span!("peer_call", trace_id = %ctx.trace_id_hex(), %peer, service = %req.service, method = %req.method);
        span.in_scope(|| tracing::info!("peer call received"));
        in_trace(ctx, self.handle_untraced(peer, req))
            .instrument(span)
            .await
    }

    async fn handle_untraced(&self, peer: PeerId, req: WireRequest) -> WireResponse {
        if let Err(st) = self.trust.check(&peer, &req.service, &req.method).await {
            tracing::warn!(%peer, service = req.service, method = req.method, reason = %st, "peer call denied by the RPC policy");
            return status_response(&st.to_status());
        }
        let timeout = deadline(req.timeout_ms, &self.limits);
        let payload = Bytes::from(req.payload);
        // The service learns who calls (the peer id this connection authenticated).
        let local = self.local.for_peer(&peer);
        let res = if req.stream {
            local
                .collect_stream(
                    &req.service,
                    &req.method,
                    payload,
                    timeout,
                    self.limits.max_stream_answer,
                )
                .await
        } else {
            local
                .unary(&req.service, &req.method, payload, timeout)
                .await
                .map(|b| vec![b])
        };
        match res {
            Ok(chunks) => WireResponse {
                code: 0,
                error: String::new(),
                chunks: chunks.into_iter().map(|b| b.to_vec()).collect(),
            },
            Err(st) => status_response(&st),
        }
    }
}
