//! Everything the binary needs from the config dir, taken from
//! `ipfs_cluster_config::Peer::load` (service.json + env overrides, identity.json, the
//! internal token): the connector `Options`, the internal endpoints and the token.
//! One extra knob not in upstream's service.json: `CLUSTER_IPFSCONNECTOR_MAXPINATTEMPTS`.

use std::{net::SocketAddr, path::Path, time::Duration};

use ipfs_cluster_config::{ConfigError, Peer};
use ipfs_cluster_proto::InternalToken;

use crate::options::Options;

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
    /// `api.ipfsproxy.listen_multiaddress` (first) when the section is present.
    pub proxy_listen: Option<SocketAddr>,
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
        if let Ok(v) = std::env::var("CLUSTER_IPFSCONNECTOR_MAXPINATTEMPTS") {
            opts.max_pin_attempts = v.trim().parse().map_err(|_| {
                SettingsError::Invalid(format!("CLUSTER_IPFSCONNECTOR_MAXPINATTEMPTS must be a number (0 = retry forever), got {v:?}"))
            })?;
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
        let proxy_listen = match &c.api.ipfsproxy {
            None => None,
            Some(p) => {
                let a = p.listen_multiaddress.first().ok_or_else(|| {
                    SettingsError::Invalid("api.ipfsproxy.listen_multiaddress is empty; set e.g. /ip4/127.0.0.1/tcp/9095".into())
                })?;
                Some(ipfs_cluster_config::addr::to_socket_addr(a)?)
            }
        };
        Ok(Self {
            opts,
            token: peer.token.clone(),
            connector_addr: c.internal.ipfs_connector_addr()?,
            consensus_addr: c.internal.consensus_addr()?,
            transport_addr: c.internal.transport_addr()?,
            allow_remote_internal: c.internal.allow_remote_internal,
            proxy_listen,
        })
    }
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
        assert_eq!(s.proxy_listen, Some("127.0.0.1:9095".parse().unwrap()));
        assert_eq!(s.opts.state_dir, dir.path());
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
