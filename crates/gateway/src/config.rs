//! From the peer's configuration (ipfs-cluster-config's `Peer::load`: service.json with
//! environment overrides, identity.json, the internal token) to the gateway's options.

use std::path::Path;

use ipfs_cluster_config::{addr::to_socket_addr, ConfigError, Peer, RestApiConfig};
use ipfs_cluster_proto::InternalToken;

use crate::options::{CorsOptions, GatewayOptions, HttpApiOptions};

fn invalid(key: impl Into<String>, msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        msg: msg.into(),
    }
}

/// Maps one API section (`api.restapi` / `api.pinsvcapi`) to listener options.
pub fn api_options(
    peer: &Peer,
    section: &str,
    c: &RestApiConfig,
) -> Result<HttpApiOptions, ConfigError> {
    let mut listen = Vec::new();
    let mut unix = Vec::new();
    for m in &c.http_listen_multiaddress {
        if let Some(p) = ipfs_cluster_config::addr::unix_path(m) {
            unix.push(p);
            continue;
        }
        listen.push(
            to_socket_addr(m).map_err(|e| {
                invalid(format!("{section}.http_listen_multiaddress"), e.to_string())
            })?,
        );
    }
    let nonempty = |s: &str| (!s.is_empty()).then(|| peer.resolve(s));
    let opts = HttpApiOptions {
        listen,
        unix,
        listen_multiaddrs: c
            .http_listen_multiaddress
            .iter()
            .map(|m| m.to_string())
            .collect(),
        ssl_cert_file: nonempty(&c.ssl_cert_file),
        ssl_key_file: nonempty(&c.ssl_key_file),
        read_timeout: c.read_timeout.as_duration(),
        read_header_timeout: c.read_header_timeout.as_duration(),
        write_timeout: c.write_timeout.as_duration(),
        idle_timeout: c.idle_timeout.as_duration(),
        max_header_bytes: if c.max_header_bytes <= 0 {
            4096
        } else {
            c.max_header_bytes as usize
        },
        basic_auth_credentials: c.basic_auth_credentials.clone(),
        read_only_users: c.read_only_users.iter().cloned().collect(),
        max_connections: c.max_connections.max(1) as usize,
        max_add_bytes: c.max_add_bytes,
        http_log_file: nonempty(&c.http_log_file),
        headers: c.headers.clone(),
        cors: CorsOptions {
            allowed_origins: c.cors_allowed_origins.clone(),
            allowed_methods: c.cors_allowed_methods.clone(),
            allowed_headers: c.cors_allowed_headers.clone(),
            exposed_headers: c.cors_exposed_headers.clone(),
            allow_credentials: c.cors_allow_credentials,
            max_age: c.cors_max_age.as_duration(),
        },
        libp2p: None,
    };
    if opts.ssl_cert_file.is_some() != opts.ssl_key_file.is_some() {
        return Err(invalid(
            format!("{section}.ssl_cert_file"),
            "set both ssl_cert_file and ssl_key_file, or neither".to_string(),
        ));
    }
    let mut opts = opts;
    if !c.libp2p_listen_multiaddress.is_empty() {
        if section != "api.restapi" {
            tracing::warn!("{section}: libp2p_listen_multiaddress is only served for api.restapi (as upstream); ignored");
        } else {
            let ident = ipfs_cluster_config::Identity::from_strings(
                &c.id,
                &c.private_key,
                std::path::Path::new("api.restapi (id, private_key)"),
            )?;
            opts.libp2p = Some(crate::options::Libp2pOptions {
                listen: c.libp2p_listen_multiaddress.clone(),
                keypair: ident.keypair,
                secret: peer.config.cluster.secret.0,
            });
        }
    }
    Ok(opts)
}

/// Loads the peer from `dir` and builds the gateway's options and token.
pub fn load(dir: &Path) -> Result<(GatewayOptions, InternalToken), ConfigError> {
    from_peer(&Peer::load(dir)?)
}

/// The gateway's options and token from an already loaded peer (the binary loads the peer
/// once and also hands it to the observability set-up, so config warnings print once).
pub fn from_peer(peer: &Peer) -> Result<(GatewayOptions, InternalToken), ConfigError> {
    let cfg = &peer.config;
    let rest = match &cfg.api.restapi {
        Some(r) => api_options(peer, "api.restapi", r)?,
        None => {
            return Err(invalid(
                "api.restapi".to_string(),
                "the section is missing, so the gateway has nothing to serve (add it, or do not start the gateway)".to_string(),
            ))
        }
    };
    let pinsvc = match &cfg.api.pinsvcapi {
        Some(p) => Some(api_options(peer, "api.pinsvcapi", p)?),
        None => None,
    };
    let opts = GatewayOptions {
        peername: cfg.cluster.peername.clone(),
        rest,
        pinsvc,
        transport_addr: cfg.internal.transport_addr()?,
        consensus_addr: cfg.internal.consensus_addr()?,
        ipfs_connector_addr: cfg.internal.ipfs_connector_addr()?,
        gateway_addr: cfg.internal.gateway_addr()?,
        allow_remote_internal: cfg.internal.allow_remote_internal,
        replication_factor_min: cfg.cluster.replication_factor_min,
        alert_check_interval: ipfs_cluster_runtime::monitor::check_interval(cfg),
        follower_mode: cfg.cluster.follower_mode,
    };
    Ok((opts, peer.token.clone()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_alert_checker_follows_monitor_pubsubmon_check_interval() {
        let dir = tempfile::tempdir().unwrap();
        let init = ipfs_cluster_config::InitOptions {
            consensus: "raft".into(),
            ..Default::default()
        };
        ipfs_cluster_config::init_from(dir.path(), &init, &|_| None).unwrap();
        let mut peer = ipfs_cluster_config::Peer::load(dir.path()).unwrap();
        peer.config.monitor.pubsubmon.check_interval =
            ipfs_cluster_config::GoDuration::from_secs(2);
        let (opts, _) = super::from_peer(&peer).unwrap();
        assert_eq!(opts.alert_check_interval, std::time::Duration::from_secs(2));
    }
}
