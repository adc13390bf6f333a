//! Route matching in upstream's registration order (gorilla/mux semantics): the first route
//! whose path and method match wins; a path match with no method match anywhere is a 405,
//! no path match is a 404. Path variables match `[^/]+`; `{path:.*}` takes the rest.

use http::Method;

/// Every REST route of upstream v1.1.6, numbered as in the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Id,
    Version,
    PeersList,
    PeerAdd,
    PeerRemove { peer: String },
    Add,
    Allocations,
    Allocation { hash: String },
    StatusAll,
    Recover { hash: String },
    RecoverAll,
    Status { hash: String },
    Pin { hash: String },
    PinPath { key_type: String, path: String },
    Unpin { hash: String },
    UnpinPath { key_type: String, path: String },
    RepoGc,
    HealthGraph,
    Alerts,
    Bandwidth,
    PeerMetrics { name: String },
    PeerMetricNames,
    Token,
    Health,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Match {
    Found(Route),
    MethodNotAllowed,
    NotFound,
}

#[derive(Clone, Copy)]
enum Seg {
    Lit(&'static str),
    Var,
    KeyType,
    Rest,
}

use Seg::*;

type Builder = fn(&[String]) -> Route;

const REST_ROUTES: &[(Method, &[Seg], Builder)] = &[
    (Method::GET, &[Lit("id")], |_| Route::Id),
    (Method::GET, &[Lit("version")], |_| Route::Version),
    (Method::GET, &[Lit("peers")], |_| Route::PeersList),
    (Method::POST, &[Lit("peers")], |_| Route::PeerAdd),
    (Method::DELETE, &[Lit("peers"), Var], |v| {
        Route::PeerRemove { peer: v[0].clone() }
    }),
    (Method::POST, &[Lit("add")], |_| Route::Add),
    (Method::GET, &[Lit("allocations")], |_| Route::Allocations),
    (Method::GET, &[Lit("allocations"), Var], |v| {
        Route::Allocation { hash: v[0].clone() }
    }),
    (Method::GET, &[Lit("pins")], |_| Route::StatusAll),
    (Method::POST, &[Lit("pins"), Var, Lit("recover")], |v| {
        Route::Recover { hash: v[0].clone() }
    }),
    (Method::POST, &[Lit("pins"), Lit("recover")], |_| {
        Route::RecoverAll
    }),
    (Method::GET, &[Lit("pins"), Var], |v| Route::Status {
        hash: v[0].clone(),
    }),
    (Method::POST, &[Lit("pins"), Var], |v| Route::Pin {
        hash: v[0].clone(),
    }),
    (Method::POST, &[Lit("pins"), KeyType, Rest], |v| {
        Route::PinPath {
            key_type: v[0].clone(),
            path: v[1].clone(),
        }
    }),
    (Method::DELETE, &[Lit("pins"), Var], |v| Route::Unpin {
        hash: v[0].clone(),
    }),
    (Method::DELETE, &[Lit("pins"), KeyType, Rest], |v| {
        Route::UnpinPath {
            key_type: v[0].clone(),
            path: v[1].clone(),
        }
    }),
    (Method::POST, &[Lit("ipfs"), Lit("gc")], |_| Route::RepoGc),
    (Method::GET, &[Lit("health"), Lit("graph")], |_| {
        Route::HealthGraph
    }),
    (Method::GET, &[Lit("health"), Lit("alerts")], |_| {
        Route::Alerts
    }),
    (Method::GET, &[Lit("health"), Lit("bandwidth")], |_| {
        Route::Bandwidth
    }),
    (Method::GET, &[Lit("monitor"), Lit("metrics"), Var], |v| {
        Route::PeerMetrics { name: v[0].clone() }
    }),
    (Method::GET, &[Lit("monitor"), Lit("metrics")], |_| {
        Route::PeerMetricNames
    }),
    (Method::POST, &[Lit("token")], |_| Route::Token),
    (Method::GET, &[Lit("health")], |_| Route::Health),
];

/// Matches a (percent-decoded) path against one pattern; returns the captured variables.
fn match_path(pattern: &[Seg], path: &str) -> Option<Vec<String>> {
    let mut rest = path.strip_prefix('/')?;
    let mut vars = Vec::new();
    for (i, seg) in pattern.iter().enumerate() {
        if let Rest = seg {
            vars.push(rest.to_string());
            return Some(vars);
        }
        let (head, tail) = match rest.find('/') {
            Some(n) => (&rest[..n], Some(&rest[n + 1..])),
            None => (rest, None),
        };
        match seg {
            Lit(l) if head == *l => {}
            Var if !head.is_empty() => vars.push(head.to_string()),
            KeyType if matches!(head, "ipfs" | "ipns" | "ipld") => vars.push(head.to_string()),
            _ => return None,
        }
        let last = i + 1 == pattern.len();
        match tail {
            None if last => return Some(vars),
            None => {
                // `{path:.*}` may match the empty string only after a slash.
                return None;
            }
            Some(_) if last => return None,
            Some(t) => rest = t,
        }
    }
    None
}

/// Finds the REST route for a method and a decoded path, as gorilla/mux v1.8.1 (upstream's)
/// with `Methods(..).Path(..)` routes: routes are tried in order; a route whose path
/// matches but whose method does not records a method mismatch, and any later route whose
/// method matches clears it again (mux clears the error whenever a matcher succeeds). So
/// the answer is 405 only when the last route that had something to say about the request
/// was a path match with another method, else 404: `GET /peers/x` (only DELETE has that
/// path, and later GET routes clear it) is a 404, `PUT /pins/x` a 405.
pub fn match_rest(method: &Method, path: &str) -> Match {
    let mut mismatch = false;
    for (m, pattern, build) in REST_ROUTES {
        if m == method {
            mismatch = false;
            if let Some(vars) = match_path(pattern, path) {
                return Match::Found(build(&vars));
            }
        } else if match_path(pattern, path).is_some() {
            mismatch = true;
        }
    }
    if mismatch {
        Match::MethodNotAllowed
    } else {
        Match::NotFound
    }
}

/// gorilla/mux path cleaning: `Some(cleaned)` when the path holds `//`, `/./` or `/../`
/// (answered with a 301 to the cleaned path). A trailing slash is kept, as mux does.
pub fn clean_path(path: &str) -> Option<String> {
    if !(path.contains("//")
        || path.contains("/./")
        || path.contains("/../")
        || path.ends_with("/.")
        || path.ends_with("/.."))
    {
        return None;
    }
    let mut out: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut cleaned = format!("/{}", out.join("/"));
    if path.ends_with('/') && cleaned != "/" {
        cleaned.push('/');
    }
    (cleaned != path).then_some(cleaned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(m: Method, p: &str) -> Match {
        match_rest(&m, p)
    }

    #[test]
    fn order_matters_like_upstream() {
        assert_eq!(
            r(Method::POST, "/pins/recover"),
            Match::Found(Route::RecoverAll)
        );
        assert_eq!(
            r(Method::GET, "/pins/recover"),
            Match::Found(Route::Status {
                hash: "recover".into()
            })
        );
        assert_eq!(
            r(Method::POST, "/pins/ipfs/recover"),
            Match::Found(Route::Recover {
                hash: "ipfs".into()
            })
        );
        assert_eq!(
            r(Method::POST, "/pins/ipfs/Qm1/recover"),
            Match::Found(Route::PinPath {
                key_type: "ipfs".into(),
                path: "Qm1/recover".into()
            })
        );
        // mux v1.8.1: a later route with the request's method clears a path-only match
        // (checked against upstream's binary by tests/compat.rs).
        assert_eq!(r(Method::GET, "/pins/ipfs/Qm1"), Match::NotFound);
        assert_eq!(r(Method::GET, "/peers/12D3"), Match::NotFound);
        assert_eq!(r(Method::GET, "/token"), Match::NotFound);
        assert_eq!(r(Method::GET, "/add"), Match::NotFound);
        assert_eq!(r(Method::DELETE, "/id"), Match::NotFound);
        assert_eq!(r(Method::PUT, "/pins/Qm1"), Match::MethodNotAllowed);
        assert_eq!(r(Method::HEAD, "/id"), Match::MethodNotAllowed);
        assert_eq!(r(Method::DELETE, "/health/graph"), Match::MethodNotAllowed);
        assert_eq!(r(Method::POST, "/health"), Match::MethodNotAllowed);
        assert_eq!(r(Method::GET, "/nothing"), Match::NotFound);
        assert_eq!(r(Method::GET, "/"), Match::NotFound);
        assert_eq!(r(Method::GET, "/pins/a/b/c"), Match::NotFound);
        assert_eq!(
            r(Method::GET, "/monitor/metrics/ping"),
            Match::Found(Route::PeerMetrics {
                name: "ping".into()
            })
        );
        assert_eq!(r(Method::GET, "/health"), Match::Found(Route::Health));
        assert_eq!(
            r(Method::DELETE, "/peers/12D3"),
            Match::Found(Route::PeerRemove {
                peer: "12D3".into()
            })
        );
        assert_eq!(
            r(Method::DELETE, "/pins/ipns/example.com/a/b"),
            Match::Found(Route::UnpinPath {
                key_type: "ipns".into(),
                path: "example.com/a/b".into()
            })
        );
    }

    #[test]
    fn cleaning() {
        assert_eq!(clean_path("/pins//x"), Some("/pins/x".into()));
        assert_eq!(clean_path("/a/./b"), Some("/a/b".into()));
        assert_eq!(clean_path("/a/../id"), Some("/id".into()));
        assert_eq!(clean_path("/id"), None);
    }
}
