//! Everything the binary needs from the config dir: the connector `Options`, the
//! internal endpoints and the token. Read from service.json / identity.json /
//! internal.token (upstream keys; env overrides `CLUSTER_IPFSHTTP_NODEMULTIADDRESS`,
//! `CLUSTER_PEERNAME`, `CLUSTER_INTERNAL_*` for the keys used here).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use ipfs_cluster_proto::InternalToken;
use multiaddr::{Multiaddr, Protocol};
use serde_json::Value;

use crate::options::Options;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read {path}: {source} (run `ipfs-cluster-service init` first)")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not valid JSON: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Token(#[from] ipfs_cluster_proto::TokenError),
}

#[derive(Debug)]
pub struct Settings {
    pub opts: Options,
    pub token: InternalToken,
    pub connector_addr: SocketAddr,
    pub consensus_addr: SocketAddr,
    pub transport_addr: SocketAddr,
    pub allow_remote_internal: bool,
    /// `api.ipfsproxy.listen_multiaddress` when the section is present.
    pub proxy_listen: Option<SocketAddr>,
}

fn read_json(path: &Path) -> Result<Value, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
        path: path.display().to_string(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| SettingsError::Json {
        path: path.display().to_string(),
        source,
    })
}

/// `/ip4/A/tcp/P` or `/ip6/A/tcp/P` → socket address.
pub fn socket_addr(key: &str, s: &str) -> Result<SocketAddr, SettingsError> {
    let bad = || {
        SettingsError::Invalid(format!(
            "{key}: {s:?} must be /ip4/<ip>/tcp/<port> or /ip6/<ip>/tcp/<port>"
        ))
    };
    let ma: Multiaddr = s.parse().map_err(|_| bad())?;
    let mut it = ma.iter();
    let ip: std::net::IpAddr = match it.next() {
        Some(Protocol::Ip4(ip)) => ip.into(),
        Some(Protocol::Ip6(ip)) => ip.into(),
        _ => return Err(bad()),
    };
    match (it.next(), it.next()) {
        (Some(Protocol::Tcp(p)), None) => Ok(SocketAddr::new(ip, p)),
        _ => Err(bad()),
    }
}

/// Parses a Go duration ("2m0s", "90s", "1h30m", "500ms").
pub fn go_duration(key: &str, s: &str) -> Result<Duration, SettingsError> {
    let bad = || {
        SettingsError::Invalid(format!(
            "{key}: {s:?} is not a duration (examples: 30s, 2m0s, 1h30m, 500ms)"
        ))
    };
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let n_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if n_end == 0 {
            return Err(bad());
        }
        let n: f64 = rest[..n_end].parse().map_err(|_| bad())?;
        rest = &rest[n_end..];
        let u_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..u_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += n * mult;
        rest = &rest[u_end..];
    }
    Ok(Duration::from_secs_f64(total))
}

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

impl Settings {
    pub fn load(dir: &Path) -> Result<Self, SettingsError> {
        let svc = read_json(&dir.join("service.json"))?;
        let ident = read_json(&dir.join("identity.json"))?;
        let peer_id = ident
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                SettingsError::Invalid(format!(
                    "{}: missing \"id\"",
                    dir.join("identity.json").display()
                ))
            })?
            .to_string();
        let mut opts = Options::with_defaults(peer_id, dir.to_path_buf());
        let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let cluster = svc.get("cluster").cloned().unwrap_or(Value::Null);
        opts.peername = env("CLUSTER_PEERNAME")
            .or_else(|| s(&cluster, "peername"))
            .unwrap_or_default();
        if let Some(d) = s(&cluster, "pin_recover_interval") {
            opts.pin_recover_interval = go_duration("cluster.pin_recover_interval", &d)?;
        }
        if let Some(d) = s(&cluster, "monitor_ping_interval") {
            opts.monitor_ping_interval = go_duration("cluster.monitor_ping_interval", &d)?;
        }
        let ih = svc
            .pointer("/ipfs_connector/ipfshttp")
            .cloned()
            .unwrap_or(Value::Null);
        if let Some(a) =
            env("CLUSTER_IPFSHTTP_NODEMULTIADDRESS").or_else(|| s(&ih, "node_multiaddress"))
        {
            crate::kubo::parse_node_multiaddress(&a)
                .map_err(|e| SettingsError::Invalid(format!("ipfs_connector.ipfshttp.{e}")))?;
            opts.node_multiaddress = a;
        }
        for (k, slot) in [
            ("ipfs_request_timeout", &mut opts.ipfs_request_timeout),
            ("pin_timeout", &mut opts.pin_timeout),
            ("unpin_timeout", &mut opts.unpin_timeout),
            ("repogc_timeout", &mut opts.repogc_timeout),
        ] {
            if let Some(d) = s(&ih, k) {
                *slot = go_duration(&format!("ipfs_connector.ipfshttp.{k}"), &d)?;
            }
        }
        opts.unpin_disable = ih
            .get("unpin_disable")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let st = svc
            .pointer("/pin_tracker/stateless")
            .cloned()
            .unwrap_or(Value::Null);
        let pos = |k: &str| -> Result<Option<u64>, SettingsError> {
            match st.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => match v.as_u64() {
                    Some(n) if n > 0 => Ok(Some(n)),
                    _ => Err(SettingsError::Invalid(format!(
                        "pin_tracker.stateless.{k} must be a number > 0, got {v}"
                    ))),
                },
            }
        };
        if let Some(n) = pos("concurrent_pins")? {
            opts.concurrent_pins = n as usize;
        }
        if let Some(n) = pos("max_pin_queue_size")? {
            opts.max_pin_queue_size = n as usize;
        }
        if let Some(n) = pos("priority_pin_max_retries")? {
            opts.priority_pin_max_retries = n as u32;
        }
        if let Some(v) = st.get("max_pin_attempts").and_then(Value::as_u64) {
            opts.max_pin_attempts = v as u32;
        }
        if let Some(d) = s(&st, "priority_pin_max_age") {
            opts.priority_pin_max_age =
                go_duration("pin_tracker.stateless.priority_pin_max_age", &d)?;
        }
        // Informers: present section = enabled.
        let inf = svc.get("informer").cloned().unwrap_or(Value::Null);
        let ttl = |sec: &str| -> Result<Option<Duration>, SettingsError> {
            match inf.get(sec) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => Ok(Some(match s(v, "metric_ttl") {
                    Some(d) => go_duration(&format!("informer.{sec}.metric_ttl"), &d)?,
                    None => Duration::from_secs(if sec == "numpin" { 10 } else { 30 }),
                })),
            }
        };
        if svc.get("informer").is_some() {
            opts.freespace_ttl = ttl("disk")?;
            if let Some(t) = inf.pointer("/disk/metric_type").and_then(Value::as_str) {
                if t != "freespace" {
                    return Err(SettingsError::Invalid(format!(
                        "informer.disk.metric_type {t:?} is not supported by this connector yet; use \"freespace\""
                    )));
                }
            }
            opts.pinqueue_ttl = ttl("pinqueue")?;
            if let Some(b) = inf
                .pointer("/pinqueue/weight_bucket_size")
                .and_then(Value::as_u64)
            {
                opts.pinqueue_weight_bucket_size = b.max(1);
            }
            opts.numpin_ttl = ttl("numpin")?;
            opts.tags = match ttl("tags")? {
                None => None,
                Some(t) => {
                    let tags = inf
                        .pointer("/tags/tags")
                        .and_then(Value::as_object)
                        .map(|m| {
                            m.iter()
                                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                                .collect()
                        })
                        .unwrap_or_default();
                    Some((t, tags))
                }
            };
        }
        let internal = svc.get("internal").cloned().unwrap_or(Value::Null);
        let iaddr = |k: &str, env_key: &str, default: &str| -> Result<SocketAddr, SettingsError> {
            let v = env(env_key)
                .or_else(|| s(&internal, k))
                .unwrap_or_else(|| default.to_string());
            socket_addr(&format!("internal.{k}"), &v)
        };
        let connector_addr = iaddr(
            "ipfs_connector_listen_multiaddress",
            "CLUSTER_INTERNAL_IPFSCONNECTORLISTENMULTIADDRESS",
            "/ip4/127.0.0.1/tcp/9182",
        )?;
        let consensus_addr = iaddr(
            "consensus_listen_multiaddress",
            "CLUSTER_INTERNAL_CONSENSUSLISTENMULTIADDRESS",
            "/ip4/127.0.0.1/tcp/9181",
        )?;
        let transport_addr = iaddr(
            "transport_listen_multiaddress",
            "CLUSTER_INTERNAL_TRANSPORTLISTENMULTIADDRESS",
            "/ip4/127.0.0.1/tcp/9180",
        )?;
        let token_file = env("CLUSTER_INTERNAL_TOKENFILE")
            .or_else(|| s(&internal, "token_file"))
            .unwrap_or_else(|| "internal.token".into());
        let token_path = if Path::new(&token_file).is_absolute() {
            PathBuf::from(&token_file)
        } else {
            dir.join(&token_file)
        };
        let token = InternalToken::load(&token_path)?;
        let allow_remote_internal = env("CLUSTER_INTERNAL_ALLOWREMOTEINTERNAL")
            .map(|v| v == "true")
            .or_else(|| {
                internal
                    .get("allow_remote_internal")
                    .and_then(Value::as_bool)
            })
            .unwrap_or(false);
        let proxy_listen = match svc.pointer("/api/ipfsproxy") {
            None | Some(Value::Null) => None,
            Some(p) => {
                let l = env("CLUSTER_IPFSPROXY_LISTENMULTIADDRESS")
                    .or_else(|| match p.get("listen_multiaddress") {
                        Some(Value::String(s)) => Some(s.clone()),
                        Some(Value::Array(a)) => {
                            a.first().and_then(Value::as_str).map(str::to_string)
                        }
                        _ => None,
                    })
                    .unwrap_or_else(|| "/ip4/127.0.0.1/tcp/9095".into());
                Some(socket_addr("api.ipfsproxy.listen_multiaddress", &l)?)
            }
        };
        Ok(Self {
            opts,
            token,
            connector_addr,
            consensus_addr,
            transport_addr,
            allow_remote_internal,
            proxy_listen,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(go_duration("k", "2m0s").unwrap(), Duration::from_secs(120));
        assert_eq!(
            go_duration("k", "1h30m").unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(
            go_duration("k", "500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(go_duration("k", "0s").unwrap(), Duration::ZERO);
        let e = go_duration("pin_timeout", "2 minutes")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("pin_timeout") && e.contains("not a duration"),
            "{e}"
        );
        assert!(go_duration("k", "").is_err());
        assert!(go_duration("k", "5").is_err());
    }

    #[test]
    fn loads_a_config_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("service.json"),
            r#"{"cluster":{"peername":"p1"},"ipfs_connector":{"ipfshttp":{"node_multiaddress":"/ip4/127.0.0.1/tcp/15001","pin_timeout":"10s"}},
                "pin_tracker":{"stateless":{"concurrent_pins":3}},"internal":{"ipfs_connector_listen_multiaddress":"/ip4/127.0.0.1/tcp/19182"}}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("identity.json"),
            r#"{"id":"12D3KooWtest","private_key":"x"}"#,
        )
        .unwrap();
        InternalToken::generate()
            .write(&dir.path().join("internal.token"))
            .unwrap();
        let s = Settings::load(dir.path()).unwrap();
        assert_eq!(s.opts.peer_id, "12D3KooWtest");
        assert_eq!(s.opts.peername, "p1");
        assert_eq!(s.opts.pin_timeout, Duration::from_secs(10));
        assert_eq!(s.opts.concurrent_pins, 3);
        assert_eq!(s.connector_addr, "127.0.0.1:19182".parse().unwrap());
        assert_eq!(s.consensus_addr, "127.0.0.1:9181".parse().unwrap());
        assert!(s.proxy_listen.is_none());
        std::fs::write(
            dir.path().join("service.json"),
            r#"{"pin_tracker":{"stateless":{"concurrent_pins":0}}}"#,
        )
        .unwrap();
        let e = Settings::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("concurrent_pins must be a number > 0"), "{e}");
    }
}
