//! One function per REST route: validate the path and query exactly as upstream (single
//! 400 and no side effect on bad input, the [REC] of §6.2), call the backends, and shape
//! the answer with `model` and `reply`.

use bytes::Bytes;
use futures::{stream, StreamExt};
use http::StatusCode;
use http_body_util::BodyExt;
use ipfs_cluster_proto::types::v1 as pb;

use crate::{
    backend::Backends,
    model::{self, pin_json, GlobalPinInfoJson, PinView},
    query::{parse_cid, parse_peer_id, pin_options_from_query, Query},
    reply::{self, ApiError, Body, StreamEvent},
    router::Route,
};

/// Largest JSON body accepted by routes that take one (POST /peers).
const MAX_JSON_BODY: usize = 1 << 20;

type Resp = http::Response<Body>;

/// What the handlers need besides the request.
pub struct Ctx {
    pub backends: Backends,
    /// `Some(user)` when auth is on and the request was authenticated.
    pub user: Option<String>,
    pub credentials: Option<crate::auth::Credentials>,
}

fn cid_param(hash: &str) -> Result<cid::Cid, ApiError> {
    parse_cid(hash).map_err(|e| ApiError::bad_request(format!("error decoding Cid: {e}")))
}

pub async fn handle(
    ctx: &Ctx,
    route: Route,
    query: &Query,
    body: Option<hyper::body::Incoming>,
) -> Resp {
    match dispatch(ctx, route, query, body).await {
        Ok(r) => r,
        Err(e) => reply::error(&e),
    }
}

async fn dispatch(
    ctx: &Ctx,
    route: Route,
    q: &Query,
    body: Option<hyper::body::Incoming>,
) -> Result<Resp, ApiError> {
    let b = &ctx.backends;
    match route {
        Route::Id => {
            let id = b.id().await?;
            Ok(reply::ok_json(&model::id_json(&id)))
        }
        Route::Version => Ok(reply::ok_json(
            &serde_json::json!({ "version": model::VERSION }),
        )),
        Route::PeersList => {
            let events: Vec<StreamEvent> = match b.peers().await {
                Ok(ids) => ids
                    .iter()
                    .map(|i| StreamEvent::Item(reply::json_line(i)))
                    .collect(),
                // Upstream: a consensus failure gives an empty stream (204).
                Err(e) => {
                    tracing::warn!(error = %e.message, "GET /peers: cannot list peers");
                    vec![]
                }
            };
            Ok(reply::ndjson(stream::iter(events)).await)
        }
        Route::PeerAdd => peer_add(ctx, body).await,
        Route::PeerRemove { peer } => {
            let pid = parse_peer_id(&peer)
                .map_err(|e| ApiError::bad_request(format!("error decoding Peer ID: {e}")))?;
            b.remove_peer(&pid).await?;
            Ok(reply::no_content())
        }
        Route::Add => Err(ApiError::not_implemented(
            "POST /add (adding content through the cluster)",
        )),
        Route::Allocations => {
            let filter = allocation_filter(q.get("filter").unwrap_or(""))?;
            let s = b.list(filter).await?;
            let events = s.map(|r| match r {
                Ok(p) => StreamEvent::Item(reply::json_line(&pin_json(&p, PinView::State))),
                Err(e) => StreamEvent::Error(e.message),
            });
            Ok(reply::ndjson(events).await)
        }
        Route::Allocation { hash } => {
            let c = cid_param(&hash)?;
            pin_options_from_query(q, chrono::Utc::now()).map_err(ApiError::bad_request)?;
            let p = b.get(&c.to_string()).await?;
            Ok(reply::ok_json(&pin_json(&p, PinView::State)))
        }
        Route::StatusAll => status_all(ctx, q).await,
        Route::Recover { hash } => {
            let c = cid_param(&hash)?;
            pin_options_from_query(q, chrono::Utc::now()).map_err(ApiError::bad_request)?;
            let g = if q.is_true("local") {
                b.status_local(&c.to_string(), true).await?
            } else {
                b.status_global(&c.to_string(), "Recover").await?
            };
            Ok(reply::ok_json(&g))
        }
        Route::RecoverAll => {
            if q.is_true("local") {
                local_stream(ctx, 0, true).await
            } else {
                let (items, errors) = b.status_all_global(0, "RecoverAll").await?;
                Ok(global_stream(items, errors).await)
            }
        }
        Route::Status { hash } => {
            let c = cid_param(&hash)?;
            pin_options_from_query(q, chrono::Utc::now()).map_err(ApiError::bad_request)?;
            let g = if q.is_true("local") {
                b.status_local(&c.to_string(), false).await?
            } else {
                b.status_global(&c.to_string(), "Status").await?
            };
            Ok(reply::ok_json(&g))
        }
        Route::Pin { hash } => {
            let c = cid_param(&hash)?;
            pin_cid(ctx, c, q).await
        }
        Route::PinPath { key_type, path } => {
            let c = resolve_path(ctx, &key_type, &path).await?;
            pin_cid(ctx, c, q).await
        }
        Route::Unpin { hash } => {
            let c = cid_param(&hash)?;
            pin_options_from_query(q, chrono::Utc::now()).map_err(ApiError::bad_request)?;
            let p = b.unpin(&c.to_string()).await?;
            Ok(reply::ok_json(&pin_json(&p, PinView::State)))
        }
        Route::UnpinPath { key_type, path } => {
            let c = resolve_path(ctx, &key_type, &path).await?;
            pin_options_from_query(q, chrono::Utc::now()).map_err(ApiError::bad_request)?;
            let p = b.unpin(&c.to_string()).await?;
            Ok(reply::ok_json(&pin_json(&p, PinView::State)))
        }
        Route::RepoGc => Err(ApiError::not_implemented("POST /ipfs/gc")),
        Route::HealthGraph => Err(ApiError::not_implemented("GET /health/graph")),
        Route::Alerts => Err(ApiError::not_implemented("GET /health/alerts")),
        Route::Bandwidth => Err(ApiError::not_implemented("GET /health/bandwidth")),
        Route::Metrics { .. } => Err(ApiError::not_implemented("GET /monitor/metrics/{name}")),
        Route::MetricNames => Err(ApiError::not_implemented("GET /monitor/metrics")),
        Route::Token => token(ctx),
        Route::Health => Ok(reply::no_content()),
    }
}

/// POST /token: a JWT for the authenticated user (401 when auth is off, as upstream).
fn token(ctx: &Ctx) -> Result<Resp, ApiError> {
    let (Some(creds), Some(user)) = (&ctx.credentials, &ctx.user) else {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized"));
    };
    let t = creds.issue_token(user).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized: no token can be issued for a user with an empty password",
        )
    })?;
    Ok(reply::ok_json(&serde_json::json!({ "token": t })))
}

/// Upstream PinType filter of GET /allocations.
fn allocation_filter(s: &str) -> Result<u32, ApiError> {
    if s.is_empty() {
        return Ok(0);
    }
    let mut f = 0u32;
    for part in s.split(',') {
        f |= match part {
            "pin" => 2,
            "meta-pin" => 4,
            "clusterdag-pin" => 8,
            "shard-pin" => 16,
            "all" => 30,
            _ => 1,
        };
    }
    if f == 1 {
        return Err(ApiError::bad_request("invalid filter value"));
    }
    Ok(f & !1)
}

/// Builds the pin from the query and commits it. Honours `mode` (the [REC] of §6.3).
async fn pin_cid(ctx: &Ctx, c: cid::Cid, q: &Query) -> Result<Resp, ApiError> {
    let now = chrono::Utc::now();
    let parsed = pin_options_from_query(q, now).map_err(ApiError::bad_request)?;
    let pin = pb::Pin {
        cid: c.to_string(),
        r#type: pb::PinType::Data as i32,
        allocations: vec![],
        max_depth: parsed.max_depth,
        reference: String::new(),
        options: Some(parsed.options),
        timestamp: now.timestamp(),
    };
    let mut committed = ctx.backends.pin(pin).await?;
    if committed.options.is_none() {
        committed.options = Some(pb::PinOptions::default());
    }
    Ok(reply::ok_json(&pin_json(&committed, PinView::Fresh)))
}

/// `/pins/{ipfs|ipns|ipld}/{path}` → a CID: `/ipfs/<cid>` alone is used as is; anything
/// else is resolved by the IPFS daemon (through the connector).
async fn resolve_path(ctx: &Ctx, key_type: &str, path: &str) -> Result<cid::Cid, ApiError> {
    let path = path.trim_end_matches('/');
    let full = format!("/{key_type}/{path}");
    let mut segs = path.split('/');
    let first = segs.next().unwrap_or("");
    if first.is_empty() {
        return Err(ApiError::bad_request(format!(
            "error parsing path: path {full:?} has no root segment"
        )));
    }
    if key_type != "ipns" {
        let c = parse_cid(first).map_err(|e| {
            ApiError::bad_request(format!("error parsing path: invalid CID {first:?}: {e}"))
        })?;
        if segs.next().is_none() && key_type == "ipfs" {
            return Ok(c);
        }
    }
    let resolved = ctx.backends.resolve(&full).await?;
    parse_cid(resolved.trim_start_matches("/ipfs/")).map_err(|e| {
        ApiError::internal(format!(
            "IPFS resolved {full} to an invalid CID {resolved:?}: {e}"
        ))
    })
}

async fn status_all(ctx: &Ctx, q: &Query) -> Result<Resp, ApiError> {
    let local = q.is_true("local");
    if let Some(cids) = q.get("cids").filter(|c| !c.is_empty()) {
        let mut list = Vec::new();
        for c in cids.split(',') {
            list.push(cid_param(c)?.to_string());
        }
        let b = ctx.backends.clone();
        let total = list.len();
        let results: Vec<Result<GlobalPinInfoJson, ApiError>> = stream::iter(list)
            .map(|c| {
                let b = b.clone();
                async move {
                    if local {
                        b.status_local(&c, false).await
                    } else {
                        b.status_global(&c, "Status").await
                    }
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        let failures = results.iter().filter(|r| r.is_err()).count();
        if failures == total {
            if let Some(Err(e)) = results.into_iter().next() {
                return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.message));
            }
            return Ok(reply::no_content());
        }
        let events: Vec<StreamEvent> = results
            .into_iter()
            .map(|r| match r {
                Ok(g) => StreamEvent::Item(reply::json_line(&g)),
                Err(e) => StreamEvent::Error(e.message),
            })
            .collect();
        return Ok(reply::ndjson(stream::iter(events)).await);
    }
    let filter = model::parse_status_filter(q.get("filter").unwrap_or(""))
        .ok_or_else(|| ApiError::bad_request("invalid filter value"))?;
    if local {
        return local_stream(ctx, filter, false).await;
    }
    let (items, errors) = ctx.backends.status_all_global(filter, "StatusAll").await?;
    Ok(global_stream(items, errors).await)
}

async fn global_stream(items: Vec<GlobalPinInfoJson>, errors: Vec<String>) -> Resp {
    let events = items
        .into_iter()
        .map(|g| StreamEvent::Item(reply::json_line(&g)))
        .chain(errors.into_iter().map(StreamEvent::Error));
    reply::ndjson(stream::iter(events)).await
}

async fn local_stream(ctx: &Ctx, filter: u32, recover: bool) -> Result<Resp, ApiError> {
    let s = ctx.backends.status_all_local(filter, recover).await?;
    let events = s.map(|r| match r {
        Ok(info) => {
            let mut g = GlobalPinInfoJson::empty(&info.cid);
            g.add(&info);
            StreamEvent::Item(reply::json_line(&g))
        }
        Err(e) => StreamEvent::Error(e.message),
    });
    Ok(reply::ndjson(events).await)
}

async fn read_body(body: Option<hyper::body::Incoming>) -> Result<Bytes, ApiError> {
    let Some(body) = body else {
        return Ok(Bytes::new());
    };
    let limited = http_body_util::Limited::new(body, MAX_JSON_BODY);
    limited
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| ApiError::bad_request(format!("error reading request body: {e}")))
}

/// POST /peers `{"peer_id": ...}`: add the peer to consensus, then return its ID.
async fn peer_add(ctx: &Ctx, body: Option<hyper::body::Incoming>) -> Result<Resp, ApiError> {
    #[derive(serde::Deserialize)]
    struct AddPeer {
        peer_id: String,
    }
    let raw = read_body(body).await?;
    let req: AddPeer = serde_json::from_slice(&raw)
        .map_err(|_| ApiError::bad_request("error decoding request body"))?;
    let pid =
        parse_peer_id(&req.peer_id).map_err(|_| ApiError::bad_request("error decoding peer_id"))?;
    let b = &ctx.backends;
    b.consensus
        .clone()
        .join(ipfs_cluster_proto::consensus::v1::JoinRequest {
            peer_id: pid.clone(),
            addresses: vec![],
        })
        .await
        .map_err(|s| crate::backend::status_error("consensus", &s))?;
    let own = b.id().await?;
    let payload = prost::Message::encode_to_vec(&ipfs_cluster_proto::gateway::v1::IdRequest {});
    let r = b
        .transport
        .clone()
        .call(ipfs_cluster_proto::transport::v1::PeerCallRequest {
            peer: pid.clone(),
            service: ipfs_cluster_proto::names::GATEWAY.to_string(),
            method: "Id".into(),
            payload,
            timeout_ms: crate::backend::READ_TIMEOUT.as_millis() as u32,
        })
        .await;
    let mut id = match r {
        Ok(r) => match <ipfs_cluster_proto::gateway::v1::IdResponse as prost::Message>::decode(
            r.into_inner().payload.as_slice(),
        ) {
            Ok(id) => model::id_json(&id),
            Err(e) => model::id_error_json(&pid, &format!("cannot decode the ID answer: {e}")),
        },
        Err(s) => model::id_error_json(&pid, s.message()),
    };
    let peers = id.cluster_peers.get_or_insert_with(Vec::new);
    if !peers.contains(&own.id) {
        peers.push(own.id);
    }
    Ok(reply::ok_json(&id))
}
