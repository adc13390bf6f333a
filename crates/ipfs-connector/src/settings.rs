//! Everything the binary needs from the config dir, taken from
//! `ipfs_cluster_config::Peer::load` (service.json + env overrides, identity.json, the
//! internal token): the connector `Options`, the internal endpoints and the token.
//! `pin_tracker.stateless.max_pin_attempts` is our addition to upstream's keys; the old
//! `CLUSTER_IPFSCONNECTOR_MAXPINATTEMPTS` variable still works, with a deprecation warning.

use std::{net::SocketAddr, path::Path, time::Duration};

use ipfs_cluster_config::{ConfigError, Peer};
use ipfs_cluster_proto::InternalToken;

use crate::{options::Options, proxy::ProxyConfig};

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug)]
pub struct Settings {
    pub opts: Options,
    pub token: InternalToken,
    pub connector_addr: SocketAddr,
    pub consensus_addr: SocketAddr,
    pub transport_addr: SocketAddr,
    pub allow_remote_internal: bool,
    /// `api.ipfsproxy` when the section is present.
    pub proxy: Option<ProxyConfig>,
    /// The service's Prometheus registry (`None` when metrics are off): the tracker's and
    /// the Kubo client's families, and the internal gRPC calls served.
    pub metrics: Option<std::sync::Arc<ipfs_cluster_observability::Metrics>>,
}

impl Settings {
    pub fn load(dir: &Path) -> Result<Self, SettingsError> {
        Self::from_peer(&Peer::load(dir)?)
    }

    pub fn from_peer(peer: &Peer) -> Result<Self, SettingsError> {
        let c = &peer.config;
        let mut opts = Options::with_defaults(peer.identity.peer_id.to_string(), peer.dir.clone());
        opts.peername = c.cluster.peername.clone();
        opts.pin_recover_interval = c.cluster.pin_recover_interval.as_duration();
        opts.monitor_ping_interval = c.cluster.monitor_ping_interval.as_duration();
        let ih = &c.ipfs_connector.ipfshttp;
        opts.node_multiaddress = ih.node_multiaddress.to_string();
        crate::kubo::parse_node_multiaddress(&opts.node_multiaddress)
            .map_err(|e| SettingsError::Invalid(format!("ipfs_connector.ipfshttp.{e}")))?;
        opts.ipfs_request_timeout = ih.ipfs_request_timeout.as_duration();
        opts.connect_swarms_delay = ih.connect_swarms_delay.as_duration();
        opts.pin_timeout = ih.pin_timeout.as_duration();
        opts.unpin_timeout = ih.unpin_timeout.as_duration();
        opts.repogc_timeout = ih.repogc_timeout.as_duration();
        opts.unpin_disable = ih.unpin_disable;
        let st = &c.pin_tracker.stateless;
        let positive = |k: &str, v: i64| -> Result<u64, SettingsError> {
            u64::try_from(v).ok().filter(|n| *n > 0).ok_or_else(|| {
                SettingsError::Invalid(format!("pin_tracker.stateless.{k} must be > 0, got {v}"))
            })
        };
        opts.concurrent_pins = positive("concurrent_pins", st.concurrent_pins)? as usize;
        opts.max_pin_queue_size = positive("max_pin_queue_size", st.max_pin_queue_size)? as usize;
        opts.priority_pin_max_retries =
            positive("priority_pin_max_retries", st.priority_pin_max_retries)? as u32;
        opts.priority_pin_max_age = st.priority_pin_max_age.as_duration();
        opts.max_pin_attempts = u32::try_from(st.max_pin_attempts).map_err(|_| {
            SettingsError::Invalid(format!(
                "pin_tracker.stateless.max_pin_attempts must be between 0 (retry forever) and {}, got {}",
                u32::MAX,
                st.max_pin_attempts
            ))
        })?;
        if let Some(n) =
            legacy_max_pin_attempts(std::env::var("CLUSTER_IPFSCONNECTOR_MAXPINATTEMPTS").ok())?
        {
            tracing::warn!(
                "CLUSTER_IPFSCONNECTOR_MAXPINATTEMPTS is deprecated: use CLUSTER_STATELESS_MAXPINATTEMPTS or pin_tracker.stateless.max_pin_attempts in service.json (the old variable still wins for now)"
            );
            opts.max_pin_attempts = n;
        }
        let inf = &c.informer;
        opts.freespace_ttl = match &inf.disk {
            None => None,
            Some(d) if d.metric_type == "freespace" || d.metric_type.is_empty() => Some(d.metric_ttl.as_duration()),
            Some(d) => {
                return Err(SettingsError::Invalid(format!(
                    "informer.disk.metric_type {:?} is not supported by this connector yet; use \"freespace\"",
                    d.metric_type
                )))
            }
        };
        opts.pinqueue_ttl = inf.pinqueue.as_ref().map(|p| p.metric_ttl.as_duration());
        if let Some(p) = &inf.pinqueue {
            opts.pinqueue_weight_bucket_size =
                u64::try_from(p.weight_bucket_size).unwrap_or(1).max(1);
        }
        opts.tags = inf
            .tags
            .as_ref()
            .map(|t| (t.metric_ttl.as_duration(), t.tags.clone()));
        opts.numpin_ttl = None;
        for (k, d) in [
            ("informer.disk", opts.freespace_ttl),
            ("informer.pinqueue", opts.pinqueue_ttl),
        ] {
            if d == Some(Duration::ZERO) {
                return Err(SettingsError::Invalid(format!(
                    "{k}.metric_ttl must be > 0"
                )));
            }
        }
        let proxy = match &c.api.ipfsproxy {
            None => None,
            Some(p) => Some(proxy_config(p, &peer.dir, c.cluster.follower_mode)?),
        };
        Ok(Self {
            opts,
            token: peer.token.clone(),
            connector_addr: c.internal.ipfs_connector_addr()?,
            consensus_addr: c.internal.consensus_addr()?,
            transport_addr: c.internal.transport_addr()?,
            allow_remote_internal: c.internal.allow_remote_internal,
            proxy,
            metrics: None,
        })
    }
}

/// `api.ipfsproxy` → the proxy's settings (every listen address; relative `log_file`
/// under the config folder).
fn proxy_config(
    p: &ipfs_cluster_config::IpfsProxyConfig,
    dir: &Path,
    follower_mode: bool,
) -> Result<ProxyConfig, SettingsError> {
    if p.listen_multiaddress.is_empty() {
        return Err(SettingsError::Invalid(
            "api.ipfsproxy.listen_multiaddress is empty; set e.g. /ip4/127.0.0.1/tcp/9095".into(),
        ));
    }
    let mut listen = Vec::with_capacity(p.listen_multiaddress.len());
    for a in &p.listen_multiaddress {
        let sa = ipfs_cluster_config::addr::to_socket_addr(a)?;
        if !listen.contains(&sa) {
            listen.push(sa);
        }
    }
    let node = crate::kubo::parse_node_multiaddress(&p.node_multiaddress.to_string())
        .map_err(|e| SettingsError::Invalid(format!("api.ipfsproxy.{e}")))?;
    let mut cfg = ProxyConfig::new(listen, node);
    cfg.node_https = p.node_https;
    cfg.follower_mode = follower_mode;
    cfg.log_file = (!p.log_file.is_empty()).then(|| {
        let f = Path::new(&p.log_file);
        if f.is_absolute() {
            f.to_path_buf()
        } else {
            dir.join(f)
        }
    });
    cfg.read_timeout = p.read_timeout.as_duration();
    cfg.read_header_timeout = p.read_header_timeout.as_duration();
    cfg.write_timeout = p.write_timeout.as_duration();
    cfg.idle_timeout = p.idle_timeout.as_duration();
    cfg.max_header_bytes = usize::try_from(p.max_header_bytes)
        .unwrap_or(4096)
        .max(4096);
    cfg.extract_headers_extra = p.extract_headers_extra.clone();
    cfg.extract_headers_path = if p.extract_headers_path.is_empty() {
        "/api/v0/version".into()
    } else {
        p.extract_headers_path.clone()
    };
    cfg.extract_headers_ttl = p.extract_headers_ttl.as_duration();
    Ok(cfg)
}

/// The deprecated `CLUSTER_IPFSCONNECTOR_MAXPINATTEMPTS` value, if set.
fn legacy_max_pin_attempts(v: Option<String>) -> Result<Option<u32>, SettingsError> {
    let Some(v) = v else { return Ok(None) };
    v.trim().parse().map(Some).map_err(|_| {
        SettingsError::Invalid(format!(
            "CLUSTER_IPFSCONNECTOR_MAXPINATTEMPTS must be a number (0 = retry forever), got {v:?}; better use CLUSTER_STATELESS_MAXPINATTEMPTS"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipfs_cluster_config::{init, InitOptions};

    #[test]
    fn from_an_initialised_folder() {
        let dir = tempfile::tempdir().unwrap();
        let opts = InitOptions {
            force: false,
            peername: Some("p1".into()),
            secret: None,
            peers: vec![],
            consensus: "raft".into(),
            random_ports: false,
        };
        init(dir.path(), &opts).unwrap();
        let s = Settings::load(dir.path()).unwrap();
        assert_eq!(s.opts.peername, "p1");
        assert!(s.opts.peer_id.starts_with("12D3Koo"), "{}", s.opts.peer_id);
        assert_eq!(s.opts.node_multiaddress, "/ip4/127.0.0.1/tcp/5001");
        assert_eq!(s.opts.pin_timeout, Duration::from_secs(120));
        assert_eq!(s.opts.concurrent_pins, 10);
        assert_eq!(s.opts.freespace_ttl, Some(Duration::from_secs(30)));
        assert_eq!(s.connector_addr, "127.0.0.1:9182".parse().unwrap());
        assert_eq!(s.consensus_addr, "127.0.0.1:9181".parse().unwrap());
        let p = s.proxy.as_ref().unwrap();
        assert_eq!(p.listen, vec!["127.0.0.1:9095".parse().unwrap()]);
        assert_eq!(p.read_header_timeout, Duration::from_secs(5));
        assert_eq!(p.idle_timeout, Duration::from_secs(60));
        assert_eq!(p.log_file, None);
        assert_eq!(s.opts.max_pin_attempts, 10);
        assert_eq!(s.opts.state_dir, dir.path());
    }

    #[test]
    fn legacy_max_pin_attempts_variable() {
        assert_eq!(legacy_max_pin_attempts(None).unwrap(), None);
        assert_eq!(legacy_max_pin_attempts(Some(" 3".into())).unwrap(), Some(3));
        let e = legacy_max_pin_attempts(Some("x".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("CLUSTER_STATELESS_MAXPINATTEMPTS"), "{e}");
    }

    #[test]
    fn proxy_section_and_max_pin_attempts_from_service_json() {
        let dir = tempfile::tempdir().unwrap();
        let opts = InitOptions {
            force: false,
            peername: Some("p1".into()),
            secret: None,
            peers: vec![],
            consensus: "raft".into(),
            random_ports: false,
        };
        init(dir.path(), &opts).unwrap();
        let path = dir.path().join("service.json");
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        v["pin_tracker"]["stateless"]["max_pin_attempts"] = 0.into();
        let p = &mut v["api"]["ipfsproxy"];
        p["listen_multiaddress"] =
            serde_json::json!(["/ip4/127.0.0.1/tcp/19095", "/ip4/127.0.0.2/tcp/19096"]);
        p["log_file"] = "proxy.log".into();
        p["read_timeout"] = "7s".into();
        p["write_timeout"] = "9s".into();
        p["max_header_bytes"] = 10000.into();
        p["extract_headers_extra"] = serde_json::json!(["X-A"]);
        p["extract_headers_ttl"] = "0s".into();
        std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
        let s = Settings::load(dir.path()).unwrap();
        assert_eq!(s.opts.max_pin_attempts, 0);
        let p = s.proxy.unwrap();
        assert_eq!(p.listen.len(), 2);
        assert_eq!(p.log_file, Some(dir.path().join("proxy.log")));
        assert_eq!(p.read_timeout, Duration::from_secs(7));
        assert_eq!(p.write_timeout, Duration::from_secs(9));
        assert_eq!(p.max_header_bytes, 10000);
        assert_eq!(p.extract_headers_extra, vec!["X-A".to_string()]);
        assert_eq!(p.extract_headers_ttl, Duration::ZERO);
    }

    #[test]
    fn missing_folder_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = Settings::load(&dir.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("service.json"), "{e}");
    }
}
