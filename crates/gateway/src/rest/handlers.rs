//! One function per REST route: validate the path and query exactly as upstream (single
//! 400 and no side effect on bad input, as upstream recommends), call the backends, and shape
//! the answer with `model` and `reply`.

use bytes::Bytes;
use futures::{stream, StreamExt};
use http_body_util::BodyExt;
use ipfs_cluster_runtime::ErrorCode;
use std::time::Duration;

use ipfs_cluster_api as api;

use crate::{
    backend::from_grpc,
    backend::Backends,
    http::reply::{self, ApiError, Body, Event, Json, StreamEvent},
    http::router::Route,
    rest::query::{cid_param, peer_param, Query},
};

/// Largest JSON body accepted by routes that take one (POST /peers).
const MAX_JSON_BODY: usize = 1 << 20;

type Resp = http::Response<Body>;

/// What the handlers need besides the request.
pub struct Ctx {
    pub backends: Backends,
    /// `Some(user and scope)` when auth is on and the request was authenticated.
    pub user: Option<crate::http::auth::Principal>,
    pub credentials: Option<crate::http::auth::Credentials>,
    /// Deadline for reading a request body (`read_timeout`; zero = none).
    pub read_timeout: std::time::Duration,
    /// Largest `POST /add` body (`max_add_bytes`).
    pub max_add_bytes: u64,
    /// The request's Content-Type (POST /add needs the multipart boundary).
    pub content_type: Option<String>,
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
            Ok(reply::ok_json(&from_grpc::id(&id)))
        }
        Route::Version => Ok(reply::ok_json(&api::Version::default())),
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
            let pid = peer_param(&peer)?;
            b.remove_peer(&pid).await?;
            Ok(reply::no_content())
        }
        Route::Add => match body {
            Some(body) => {
                let limits = crate::add::multipart::BodyLimits {
                    max_bytes: ctx.max_add_bytes,
                    read_timeout: ctx.read_timeout,
                };
                let body = crate::add::multipart::LimitedBody::new(body, limits)
                    .map_err(|e| ApiError::from_service(&e))?;
                crate::add::handle(b, q.raw(), ctx.content_type.as_deref(), body).await
            }
            None => Err(ApiError::bad_request(
                "request Content-Type isn't multipart/form-data",
            )),
        },
        Route::Allocations => {
            let filter = from_grpc::allocation_filter(q.get("filter"))?;
            let s = b.list(filter).await?;
            let events = s.map(|r| match r.and_then(from_grpc::state_pin) {
                Ok(p) => Event::Item(Json(p)),
                Err(e) => Event::Error(e.message),
            });
            Ok(reply::ndjson(events).await)
        }
        Route::Allocation { hash } => {
            let c = cid_param(&hash)?;
            q.pin_options()?;
            let p = from_grpc::state_pin(b.get(&c.to_string()).await?)?;
            Ok(reply::ok_json(&p))
        }
        Route::StatusAll => status_all(ctx, q).await,
        Route::Recover { hash } => {
            let c = cid_param(&hash)?;
            q.pin_options()?;
            let g = if q.is_true("local") {
                b.status_local(c, true).await?
            } else {
                b.status_global(c, "Recover").await?
            };
            Ok(reply::ok_json(&g))
        }
        Route::RecoverAll => {
            if q.is_true("local") {
                local_stream(ctx, 0, true).await
            } else {
                let items = b.status_all_global(0, "RecoverAll").await?;
                Ok(global_stream(items).await)
            }
        }
        Route::Status { hash } => {
            let c = cid_param(&hash)?;
            q.pin_options()?;
            let g = if q.is_true("local") {
                b.status_local(c, false).await?
            } else {
                b.status_global(c, "Status").await?
            };
            Ok(reply::ok_json(&g))
        }
        Route::Pin { hash } => {
            let c = cid_param(&hash)?;
            pin_cid(ctx, c, q).await
        }
        Route::PinPath { key_type, path } => {
            q.pin_options()?;
            let c = resolve_path(ctx, &key_type, &path).await?;
            pin_cid(ctx, c, q).await
        }
        Route::Unpin { hash } => {
            let c = cid_param(&hash)?;
            q.pin_options()?;
            let p = from_grpc::state_pin(b.unpin(&c.to_string()).await?)?;
            Ok(reply::ok_json(&p))
        }
        Route::UnpinPath { key_type, path } => {
            q.pin_options()?;
            let c = resolve_path(ctx, &key_type, &path).await?;
            let p = from_grpc::state_pin(b.unpin(&c.to_string()).await?)?;
            Ok(reply::ok_json(&p))
        }
        Route::RepoGc => Ok(reply::ok_json(
            &crate::rest::health::gc(b, q.is_true("local")).await?,
        )),
        Route::HealthGraph => Ok(reply::ok_json(&crate::rest::health::graph(b).await?)),
        Route::Alerts => Ok(reply::ok_json(&b.peer_metrics.alerts())),
        Route::Bandwidth => Ok(reply::ok_json(&crate::rest::health::bandwidth(b).await?)),
        Route::PeerMetrics { name } => Ok(reply::ok_json(
            &crate::rest::health::peer_metrics(b, &name).await?,
        )),
        Route::PeerMetricNames => Ok(reply::ok_json(&b.peer_metrics.names())),
        Route::Token => token(ctx.credentials.as_ref(), ctx.user.as_ref(), q),
        Route::Health => Ok(reply::no_content()),
    }
}

/// POST /token (REST and Pinning Services APIs): a JWT for the authenticated user, as
/// upstream `{"token": "..."}` (401 when auth is off, as upstream). Ours: `?lifetime=`
/// (Go duration, default 24h, at most 720h) and `?scope=read|write` (default: the scope
/// of the request's own credentials, never wider).
pub fn token(
    creds: Option<&crate::http::auth::Credentials>,
    who: Option<&crate::http::auth::Principal>,
    q: &Query,
) -> Result<Resp, ApiError> {
    use crate::http::auth::{Scope, TokenIssueError};
    let (Some(creds), Some(who)) = (creds, who) else {
        return Err(ApiError::new(ErrorCode::Unauthenticated, "unauthorized"));
    };
    let scope = match q.get("scope") {
        "" => who.scope,
        s => Scope::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "invalid scope {s:?}: use scope=read or scope=write"
            ))
        })?,
    };
    if scope > who.scope {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "forbidden: these credentials have the {} scope and cannot get a token with scope={}",
                who.scope.as_str(),
                scope.as_str()
            ),
        ));
    }
    let lifetime = match q.get("lifetime") {
        "" => None,
        s => Some(
            ipfs_cluster_config::GoDuration::parse(s)
                .map_err(|e| {
                    ApiError::bad_request(format!(
                        "invalid lifetime {s:?} (a duration such as 1h or 30m): {e}"
                    ))
                })?
                .as_duration(),
        ),
    };
    let t = creds
        .issue_token(&who.user, Some(scope), lifetime)
        .map_err(|e| {
            let code = match e {
                TokenIssueError::EmptyPassword => ErrorCode::Unauthenticated,
                TokenIssueError::ScopeTooWide(_) => ErrorCode::Forbidden,
                TokenIssueError::Lifetime(_) => ErrorCode::BadRequest,
            };
            ApiError::new(code, e.to_string())
        })?;
    Ok(reply::ok_json(&serde_json::json!({ "token": t })))
}

/// Builds the pin from the query and commits it. Honours `mode` (as upstream recommends).
async fn pin_cid(ctx: &Ctx, c: api::Cid, q: &Query) -> Result<Resp, ApiError> {
    let requested = api::Pin::new_data(c, q.pin_options()?);
    let committed = ctx.backends.pin(requested.clone().into()).await?;
    Ok(reply::ok_json(&from_grpc::fresh_pin(
        &requested, committed,
    )?))
}

/// `/pins/{ipfs|ipns|ipld}/{path}` → a CID: `/ipfs/<cid>` alone is used as is; anything
/// else is resolved by the IPFS daemon (through the connector).
async fn resolve_path(ctx: &Ctx, key_type: &str, path: &str) -> Result<api::Cid, ApiError> {
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
        let c = cid::Cid::try_from(first).map(api::Cid::from).map_err(|e| {
            ApiError::bad_request(format!(
                "error parsing path: invalid path {full:?}: {}",
                api::go_cid_error(first, &e.to_string())
            ))
        })?;
        if segs.next().is_none() && key_type == "ipfs" {
            return Ok(c);
        }
    }
    let resolved = ctx.backends.resolve(&full).await?;
    api::Cid::parse(resolved.trim_start_matches("/ipfs/")).map_err(|e| {
        ApiError::internal(format!(
            "IPFS resolved {full} to an invalid CID {resolved:?}: {e}"
        ))
    })
}

async fn status_all(ctx: &Ctx, q: &Query) -> Result<Resp, ApiError> {
    let local = q.is_true("local");
    let cids = q.get("cids");
    if !cids.is_empty() {
        let mut list = Vec::new();
        for c in cids.split(',') {
            list.push(cid_param(c)?);
        }
        let b = ctx.backends.clone();
        let total = list.len();
        let results: Vec<Result<api::GlobalPinInfo, ApiError>> = stream::iter(list)
            .map(|c| {
                let b = b.clone();
                async move {
                    if local {
                        b.status_local(c, false).await
                    } else {
                        b.status_global(c, "Status").await
                    }
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        let failures = results.iter().filter(|r| r.is_err()).count();
        if failures == total {
            if let Some(Err(e)) = results.into_iter().next() {
                return Err(ApiError::new(ErrorCode::Internal, e.message));
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
    let filter = from_grpc::status_filter(q.get("filter"))?;
    if local {
        return local_stream(ctx, filter.0, false).await;
    }
    let items = ctx
        .backends
        .status_all_global(filter.0, "StatusAll")
        .await?;
    Ok(global_stream(items).await)
}

async fn global_stream(items: Vec<api::GlobalPinInfo>) -> Resp {
    let events = items
        .into_iter()
        .map(|g| StreamEvent::Item(reply::json_line(&g)));
    reply::ndjson(stream::iter(events)).await
}

async fn local_stream(ctx: &Ctx, filter: u32, recover: bool) -> Result<Resp, ApiError> {
    let s = ctx.backends.status_all_local(filter, recover).await?;
    // Every item of a local listing carries this peer's IPFS addresses: parse them once,
    // not per item (multiaddr parsing was the largest cost of this stream in the gateway).
    let mut addrs: Option<(Vec<String>, Vec<api::Multiaddr>)> = None;
    let events = s.map(move |r| {
        let info = r.and_then(|mut i| match &addrs {
            Some((raw, parsed)) if *raw == i.ipfs_peer_addresses => {
                i.ipfs_peer_addresses = Vec::new();
                let mut info = from_grpc::pin_info(i)?;
                info.short.ipfs_peer_addresses = parsed.clone();
                Ok(info)
            }
            _ => {
                let raw = i.ipfs_peer_addresses.clone();
                let info = from_grpc::pin_info(i)?;
                addrs = Some((raw, info.short.ipfs_peer_addresses.clone()));
                Ok(info)
            }
        });
        match info {
            Ok(info) => Event::Item(Json(info.to_global())),
            Err(e) => Event::Error(e.message),
        }
    });
    Ok(reply::ndjson(events).await)
}

/// Reads a small request body, bounded in size and by `read_timeout`.
pub async fn read_body(
    body: Option<hyper::body::Incoming>,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, ApiError> {
    let Some(body) = body else {
        return Ok(Bytes::new());
    };
    let collect = http_body_util::Limited::new(body, limit).collect();
    let collected = if timeout.is_zero() {
        collect.await
    } else {
        tokio::time::timeout(timeout, collect).await.map_err(|_| {
            ApiError::new(
                ErrorCode::RequestTimeout,
                format!("the request body was not received within read_timeout ({timeout:?})"),
            )
        })?
    };
    collected
        .map(|c| c.to_bytes())
        .map_err(|e| ApiError::bad_request(format!("error reading request body: {e}")))
}

/// How long POST /peers waits for the added peer to answer its ID (it may be restarting).
const PEER_ADD_ID_WAIT: Duration = Duration::from_secs(15);

/// POST /peers `{"peer_id": ...}`: add the peer to consensus, then return its ID.
async fn peer_add(ctx: &Ctx, body: Option<hyper::body::Incoming>) -> Result<Resp, ApiError> {
    #[derive(serde::Deserialize)]
    struct AddPeer {
        peer_id: String,
    }
    let raw = read_body(body, MAX_JSON_BODY, ctx.read_timeout).await?;
    let req: AddPeer = serde_json::from_slice(&raw)
        .map_err(|_| ApiError::bad_request("error decoding request body"))?;
    let pid = api::parse_peer_id(&req.peer_id)
        .map_err(|_| ApiError::bad_request("error decoding peer_id"))?;
    let b = &ctx.backends;
    b.consensus
        .clone()
        .join(ipfs_cluster_proto::consensus::v1::JoinRequest {
            peer_id: pid.clone(),
            addresses: vec![],
        })
        .await
        .map_err(|s| crate::backend::status_error(crate::backend::Local::Consensus, &s))?;
    let own = b.id().await?;
    let payload = prost::Message::encode_to_vec(&ipfs_cluster_proto::gateway::v1::IdRequest {});
    // A peer that ran its own one-peer cluster resets itself to join ours and restarts
    // (exit 75), so its transport is briefly unreachable: ask again for a bounded time
    // before answering with an ID that carries the error.
    let deadline = tokio::time::Instant::now() + PEER_ADD_ID_WAIT;
    let r = loop {
        let r = b
            .transport
            .clone()
            .call(ipfs_cluster_proto::transport::v1::PeerCallRequest {
                peer: pid.clone(),
                service: ipfs_cluster_proto::names::GATEWAY.to_string(),
                method: "Id".into(),
                payload: payload.clone(),
                timeout_ms: crate::backend::READ_TIMEOUT.as_millis() as u32,
            })
            .await;
        match r {
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(250)).await
            }
            r => break r,
        }
    };
    let mut id = match r {
        Ok(r) => match <ipfs_cluster_proto::gateway::v1::IdResponse as prost::Message>::decode(
            r.into_inner().payload.as_slice(),
        ) {
            Ok(id) => from_grpc::id(&id),
            Err(e) => from_grpc::id_error(&pid, &format!("cannot decode the ID answer: {e}")),
        },
        Err(s) => from_grpc::id_error(&pid, s.message()),
    };
    let peers = id.cluster_peers.get_or_insert_with(Vec::new);
    if !peers.contains(&own.id) {
        peers.push(own.id);
    }
    Ok(reply::ok_json(&id))
}
