//! The IPFS Pinning Services API on its own listener: the request ID is the CID,
//! pins are regular cluster pins (recursive, default replication), statuses are the
//! cluster-wide status mapped to queued/pinning/pinned/failed. The shared stack (auth,
//! CORS, headers, TLS, limits) is in `server`; errors are `{"error":{"reason":...}}`.

use std::collections::BTreeMap;

use futures::{stream, StreamExt};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use ipfs_cluster_api as api;
use ipfs_cluster_runtime::ErrorCode;

use crate::{
    backend::Backends,
    http::reply::{self, ApiError, Body},
    rest::handlers::Ctx,
    rest::query::Query,
};

/// Largest request body accepted (a pin object).
const MAX_BODY: usize = 1 << 20;

pub async fn handle(
    ctx: &Ctx,
    req: Request<Incoming>,
    path: &str,
    query: &Query,
) -> Response<Body> {
    let segs: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(str::to_string)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let m = req.method().clone();
    let b = &ctx.backends;
    let res = match (segs.as_slice(), &m) {
        (["health"], &Method::GET) => Ok(reply::no_content()),
        (["token"], &Method::POST) => {
            crate::rest::handlers::token(ctx.credentials.as_ref(), ctx.user.as_ref(), query)
        }
        (["pins"], &Method::GET) => list(b, query).await.map(|r| reply::ok_json(&r)),
        (["pins"], &Method::POST) => add(b, req.into_body(), None, ctx.read_timeout)
            .await
            .map(|r| reply::ok_json(&r)),
        (["pins", id], &Method::GET) => get(b, id).await.map(|r| reply::ok_json(&r)),
        (["pins", id], &Method::POST) => match request_id(id) {
            Ok(old) => add(b, req.into_body(), Some(old), ctx.read_timeout)
                .await
                .map(|r| reply::ok_json(&r)),
            Err(e) => Err(e),
        },
        (["pins", id], &Method::DELETE) => remove(b, id).await,
        (["health"], _) | (["token"], _) | (["pins"], _) | (["pins", _], _) => {
            Ok(reply::method_not_allowed())
        }
        _ => Err(ApiError::new(ErrorCode::NotFound, "not found")),
    };
    res.unwrap_or_else(|e| reply::pinsvc_error(&e))
}

fn request_id(id: &str) -> Result<api::Cid, ApiError> {
    cid::Cid::try_from(id).map(api::Cid::from).map_err(|e| {
        ApiError::bad_request(format!(
            "error decoding requestID: {}",
            api::go_cid_error(id, &e.to_string())
        ))
    })
}

/// IPFS addresses a peer announced in its last ping metric.
fn delegates_of(b: &Backends, peers: &[String]) -> Vec<api::Multiaddr> {
    peers
        .iter()
        .filter_map(|p| b.peer_metrics.ping_info(p))
        .flat_map(|p| p.ipfs_addresses.into_iter())
        .filter_map(|a| api::parse_multiaddr(&a).ok())
        .collect()
}

/// POST /pins and POST /pins/{requestID} (replace: a pin update from the old CID, which
/// is then unpinned).
async fn add(
    b: &Backends,
    body: Incoming,
    replace: Option<api::Cid>,
    read_timeout: std::time::Duration,
) -> Result<api::PinStatus, ApiError> {
    let raw = crate::rest::handlers::read_body(Some(body), MAX_BODY, read_timeout).await?;
    let psa: api::PsaPin = serde_json::from_slice(&raw).map_err(|e| {
        // Go's json.Decoder words for a body that ends early (upstream decodes with it):
        // `EOF` when there is no value at all, `unexpected EOF` inside one.
        let why = if raw.iter().all(u8::is_ascii_whitespace) {
            "EOF".to_string()
        } else if e.is_eof() {
            "unexpected EOF".to_string()
        } else {
            e.to_string()
        };
        ApiError::bad_request(format!("error decoding request body: {why}"))
    })?;
    // [REC] upstream answers an empty 200 when `cid` is missing; we say what is wrong.
    let cid = psa
        .cid
        .ok_or_else(|| ApiError::bad_request("error decoding request body: the pin has no cid"))?;
    let opts = api::PinOptions {
        name: psa.name.clone(),
        metadata: Some(psa.meta.clone()),
        origins: (!psa.origins.is_empty()).then(|| psa.origins.clone()),
        pin_update: replace,
        ..Default::default()
    };
    let requested = api::Pin::new_data(cid, opts);
    let committed = b.pin(requested.clone().into()).await?;
    let pin = crate::backend::from_grpc::fresh_pin(&requested, committed)?;
    if let Some(old) = replace {
        if old != cid {
            if let Err(e) = b.unpin(&old.to_string()).await {
                tracing::warn!(old = %old, error = %e.message, "replaced pin: unpinning the old CID failed");
            }
        }
    }
    let peers = if pin.allocations.is_empty() {
        b.member_list().await.unwrap_or_default()
    } else {
        pin.allocations.clone()
    };
    Ok(api::PinStatus {
        requestid: cid.to_string(),
        status: api::PsaStatus::Queued,
        created: pin.timestamp,
        pin: psa,
        delegates: delegates_of(b, &peers),
        info: api::PinStatus::upstream_info(),
    })
}

/// A PinStatus from the cluster-wide status; None when the mapped status is undefined.
fn from_global(g: &api::GlobalPinInfo) -> Option<api::PinStatus> {
    let status = api::PsaStatus::from_global(g)?;
    Some(api::PinStatus {
        requestid: g.cid.to_string(),
        status,
        created: g.created,
        pin: api::PsaPin {
            cid: Some(g.cid),
            name: g.name.clone(),
            origins: g.origins.clone().unwrap_or_default(),
            meta: g.metadata.clone().unwrap_or_default(),
        },
        delegates: g
            .peer_map
            .values()
            .flat_map(|s| s.ipfs_peer_addresses.iter().cloned())
            .collect(),
        info: api::PinStatus::upstream_info(),
    })
}

async fn get(b: &Backends, id: &str) -> Result<api::PinStatus, ApiError> {
    let cid = request_id(id)?;
    let g = b.status_global(cid, "Status").await.ok();
    g.as_ref()
        .and_then(from_global)
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "pin not found"))
}

async fn remove(b: &Backends, id: &str) -> Result<Response<Body>, ApiError> {
    let cid = request_id(id)?;
    b.unpin(&cid.to_string()).await?;
    let mut r = reply::no_content();
    *r.status_mut() = StatusCode::ACCEPTED;
    Ok(r)
}

/// Parsed list parameters; errors are 500 as upstream.
struct ListQuery {
    cids: Vec<api::Cid>,
    name: String,
    matcher: String,
    filter: api::TrackerStatusFilter,
    before: Option<api::Time>,
    after: Option<api::Time>,
    limit: usize,
    meta: BTreeMap<String, String>,
}

fn param_err(name: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("error decoding '{name}' query param: {e}"))
}

fn parse_list(q: &Query) -> Result<ListQuery, ApiError> {
    let mut cids = Vec::new();
    if !q.get("cid").is_empty() {
        for c in q.get("cid").split(',') {
            cids.push(
                cid::Cid::try_from(c.trim())
                    .map(api::Cid::from)
                    .map_err(|e| param_err("cid", e))?,
            );
        }
    }
    let name = q.get("name").to_string();
    if name.chars().count() > 255 {
        return Err(param_err("name", "pin name is over 255 chars"));
    }
    let filter =
        api::PsaStatus::parse_filter(q.get("status")).map_err(|e| param_err("status", e))?;
    let time = |k: &str| -> Result<Option<api::Time>, ApiError> {
        let v = q.get(k);
        if v.is_empty() {
            return Ok(None);
        }
        api::Time::parse(v).map(Some).map_err(|e| param_err(k, e))
    };
    let limit = match q.get("limit") {
        "" => 10,
        v => v.parse::<u64>().map_err(|e| param_err("limit", e))? as usize,
    };
    let meta = match q.get("meta") {
        "" => BTreeMap::new(),
        v => serde_json::from_str(v).map_err(|e| param_err("meta", e))?,
    };
    Ok(ListQuery {
        cids,
        name,
        matcher: q.get("match").to_string(),
        filter,
        before: time("before")?,
        after: time("after")?,
        limit,
        meta,
    })
}

fn name_matches(matcher: &str, want: &str, name: &str) -> bool {
    if want.is_empty() {
        return true;
    }
    match matcher {
        "iexact" => name.eq_ignore_ascii_case(want),
        "partial" => name.contains(want),
        "ipartial" => name.to_lowercase().contains(&want.to_lowercase()),
        _ => name == want,
    }
}

async fn list(b: &Backends, q: &Query) -> Result<api::PinResults, ApiError> {
    let lq = parse_list(q)?;
    let mut matched: Vec<api::PinStatus> = Vec::new();
    if !lq.cids.is_empty() {
        // Upstream: with `cid`, only undefined items are dropped; other filters ignored.
        let results: Vec<Result<api::GlobalPinInfo, ApiError>> = stream::iter(lq.cids.clone())
            .map(|c| async move { b.status_global(c, "Status").await })
            .buffer_unordered(16)
            .collect()
            .await;
        for r in results {
            if let Some(s) = from_global(&r?) {
                matched.push(s);
            }
        }
    } else {
        let items = b.status_all_global(lq.filter.0, "StatusAll").await?;
        for g in items {
            let Some(s) = from_global(&g) else { continue };
            if lq.before.is_some_and(|t| s.created >= t) || lq.after.is_some_and(|t| s.created <= t)
            {
                continue;
            }
            if !name_matches(&lq.matcher, &lq.name, &s.pin.name) {
                continue;
            }
            if !lq.meta.iter().all(|(k, v)| s.pin.meta.get(k) == Some(v)) {
                continue;
            }
            matched.push(s);
        }
    }
    let count = matched.len() as u64;
    matched.truncate(lq.limit);
    Ok(api::PinResults {
        count,
        results: matched,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        assert!(name_matches("", "", "x"));
        assert!(name_matches("exact", "Doc", "Doc"));
        assert!(!name_matches("exact", "doc", "Doc"));
        assert!(name_matches("iexact", "doc", "DOC"));
        assert!(name_matches("partial", "oc", "Doc"));
        assert!(name_matches("ipartial", "OC", "doc"));
        assert!(name_matches("bogus", "Doc", "Doc"));
    }

    #[test]
    fn list_params() {
        let e = parse_list(&Query::parse(Some("status=nope")))
            .err()
            .unwrap();
        assert_eq!(
            (e.status().as_u16(), e.message.as_str()),
            (500, "error decoding 'status' query param: no valid filter")
        );
        let l = parse_list(&Query::parse(Some(""))).ok().unwrap();
        assert_eq!(l.limit, 10);
        assert!(parse_list(&Query::parse(Some("limit=-1"))).is_err());
        assert!(parse_list(&Query::parse(Some("meta=notjson"))).is_err());
        assert!(parse_list(&Query::parse(Some("before=yesterday"))).is_err());
    }
}
