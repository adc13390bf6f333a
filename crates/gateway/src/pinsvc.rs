//! The IPFS Pinning Services API (§10) on its own listener. Routes are matched here; the
//! shared stack (auth, CORS, headers, TLS, limits) is in `server`.

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::{
    query::Query,
    reply::{self, ApiError, Body},
    server::App,
};

pub async fn handle(
    app: &App,
    req: Request<Incoming>,
    path: &str,
    _query: &Query,
    user: Option<String>,
) -> Response<Body> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let m = req.method().clone();
    let err = |e: ApiError| reply::pinsvc_error(&e);
    match (segs.as_slice(), &m) {
        (["health"], &Method::GET) => reply::no_content(),
        (["token"], &Method::POST) => match (&app.credentials, &user) {
            (Some(c), Some(u)) => match c.issue_token(u) {
                Some(t) => reply::ok_json(&serde_json::json!({ "token": t })),
                None => err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized")),
            },
            _ => err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized")),
        },
        (["pins"], &Method::GET | &Method::POST)
        | (["pins", _], &Method::GET | &Method::POST | &Method::DELETE) => {
            err(ApiError::not_implemented("the Pinning Services API"))
        }
        (["health"], _) | (["token"], _) | (["pins"], _) | (["pins", _], _) => {
            reply::method_not_allowed()
        }
        _ => err(ApiError::new(StatusCode::NOT_FOUND, "not found")),
    }
}
