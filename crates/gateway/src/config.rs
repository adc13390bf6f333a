//! Loading the gateway's options from the peer's configuration folder: service.json
//! (`cluster.peername`, `api.restapi`, `api.pinsvcapi`, `internal`) and the internal token.
//! Interim reader of the JSON until ipfs-cluster-config's `Peer::load` is wired in.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use ipfs_cluster_proto::InternalToken;
use serde_json::Value;

use crate::options::{multiaddr_to_socket, CorsOptions, GatewayOptions, HttpApiOptions};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source} (run `ipfs-cluster-service init` first, or pass --config DIR)")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not valid JSON: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
    #[error("service.json: {0}")]
    Invalid(String),
    #[error("{0}")]
    Token(#[from] ipfs_cluster_proto::TokenError),
}

fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|x| !x.is_empty())
}

fn duration(
    v: &Value,
    section: &str,
    key: &str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match s(v, key) {
        None => Ok(default),
        Some(d) => {
            let dur = ipfs_cluster_api::parse_go_duration(d)
                .map_err(|e| ConfigError::Invalid(format!("{section}.{key}: {e}")))?;
            dur.to_std().map_err(|_| {
                ConfigError::Invalid(format!("{section}.{key} must not be negative, got {d}"))
            })
        }
    }
}

fn strings(v: &Value) -> Option<Vec<String>> {
    v.as_array().map(|a| {
        a.iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect()
    })
}

fn resolve(dir: &Path, p: &str) -> PathBuf {
    let p = PathBuf::from(p);
    if p.is_absolute() {
        p
    } else {
        dir.join(p)
    }
}

/// Parses one API section (`api.restapi` / `api.pinsvcapi`).
pub fn api_options(
    dir: &Path,
    section: &str,
    v: &Value,
    default_listen: &str,
) -> Result<HttpApiOptions, ConfigError> {
    let listen_maddrs: Vec<String> = match v.get("http_listen_multiaddress") {
        None | Some(Value::Null) => vec![default_listen.to_string()],
        Some(Value::String(x)) => vec![x.clone()],
        Some(other) => strings(other).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "{section}.http_listen_multiaddress must be a string or a list of strings"
            ))
        })?,
    };
    let mut listen = Vec::new();
    for m in &listen_maddrs {
        listen.push(
            multiaddr_to_socket(m).map_err(|e| ConfigError::Invalid(format!("{section}.{e}")))?,
        );
    }
    let mut o = HttpApiOptions::with_listen(
        listen
            .first()
            .copied()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9094))),
    );
    o.listen = listen;
    o.listen_multiaddrs = listen_maddrs;
    o.ssl_cert_file = s(v, "ssl_cert_file").map(|p| resolve(dir, p));
    o.ssl_key_file = s(v, "ssl_key_file").map(|p| resolve(dir, p));
    if o.ssl_cert_file.is_some() != o.ssl_key_file.is_some() {
        return Err(ConfigError::Invalid(format!(
            "{section}: set both ssl_cert_file and ssl_key_file, or neither"
        )));
    }
    o.read_timeout = duration(v, section, "read_timeout", Duration::ZERO)?;
    o.read_header_timeout = duration(v, section, "read_header_timeout", Duration::from_secs(5))?;
    o.write_timeout = duration(v, section, "write_timeout", Duration::ZERO)?;
    o.idle_timeout = duration(v, section, "idle_timeout", Duration::from_secs(120))?;
    if let Some(n) = v.get("max_header_bytes").and_then(Value::as_u64) {
        if n != 0 && n < 4096 {
            return Err(ConfigError::Invalid(format!(
                "{section}.max_header_bytes must be 0 or at least 4096, got {n}"
            )));
        }
        o.max_header_bytes = if n == 0 { 4096 } else { n as usize };
    }
    o.basic_auth_credentials = match v.get("basic_auth_credentials") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) if m.is_empty() => {
            return Err(ConfigError::Invalid(format!(
                "{section}.basic_auth_credentials should be null or have at least one entry"
            )))
        }
        Some(Value::Object(m)) => Some(
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect::<BTreeMap<_, _>>(),
        ),
        Some(_) => {
            return Err(ConfigError::Invalid(format!(
                "{section}.basic_auth_credentials must be an object of user: password"
            )))
        }
    };
    o.http_log_file = s(v, "http_log_file").map(|p| resolve(dir, p));
    if let Some(Value::Object(h)) = v.get("headers") {
        o.headers = h
            .iter()
            .map(|(k, v)| (k.clone(), strings(v).unwrap_or_default()))
            .collect();
    }
    // Upstream overwrites the CORS keys with whatever the JSON holds (missing = empty).
    let list = |k: &str| v.get(k).and_then(strings).unwrap_or_default();
    o.cors = CorsOptions {
        allowed_origins: list("cors_allowed_origins"),
        allowed_methods: list("cors_allowed_methods"),
        allowed_headers: list("cors_allowed_headers"),
        exposed_headers: list("cors_exposed_headers"),
        allow_credentials: v
            .get("cors_allow_credentials")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        max_age: duration(v, section, "cors_max_age", Duration::ZERO)?,
    };
    Ok(o)
}

fn internal_addr(v: &Value, key: &str, default: &str) -> Result<SocketAddr, ConfigError> {
    let m = s(v, key).unwrap_or(default);
    multiaddr_to_socket(m).map_err(|e| ConfigError::Invalid(format!("internal.{key}: {e}")))
}

/// Loads `service.json` and the internal token from `dir`.
pub fn load(dir: &Path) -> Result<(GatewayOptions, InternalToken), ConfigError> {
    let path = dir.join("service.json");
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let cfg: Value = serde_json::from_str(&text).map_err(|source| ConfigError::Json {
        path: path.display().to_string(),
        source,
    })?;
    let null = Value::Null;
    let cluster = cfg.get("cluster").unwrap_or(&null);
    let api = cfg.get("api").unwrap_or(&null);
    let internal = cfg.get("internal").unwrap_or(&null);
    let peername = s(cluster, "peername")
        .map(str::to_string)
        .unwrap_or_else(|| {
            std::env::var("HOSTNAME")
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "localhost".into())
        });
    let rest = match api.get("restapi") {
        Some(v) => api_options(dir, "api.restapi", v, "/ip4/127.0.0.1/tcp/9094")?,
        None => {
            return Err(ConfigError::Invalid(
                "the api.restapi section is missing; the gateway has nothing to serve (add it, or do not start the gateway)".into(),
            ))
        }
    };
    let pinsvc = match api.get("pinsvcapi") {
        Some(v) => Some(api_options(
            dir,
            "api.pinsvcapi",
            v,
            "/ip4/127.0.0.1/tcp/9097",
        )?),
        None => None,
    };
    let opts = GatewayOptions {
        peername,
        rest,
        pinsvc,
        transport_addr: internal_addr(
            internal,
            "transport_listen_multiaddress",
            "/ip4/127.0.0.1/tcp/9180",
        )?,
        consensus_addr: internal_addr(
            internal,
            "consensus_listen_multiaddress",
            "/ip4/127.0.0.1/tcp/9181",
        )?,
        ipfs_connector_addr: internal_addr(
            internal,
            "ipfs_connector_listen_multiaddress",
            "/ip4/127.0.0.1/tcp/9182",
        )?,
        gateway_addr: internal_addr(
            internal,
            "gateway_listen_multiaddress",
            "/ip4/127.0.0.1/tcp/9183",
        )?,
        allow_remote_internal: internal
            .get("allow_remote_internal")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    };
    let token_file = s(internal, "token_file").unwrap_or("internal.token");
    let token = InternalToken::load(&resolve(dir, token_file))?;
    Ok((opts, token))
}
