//! The `internal` section (ours, not upstream's): where this peer's four services listen
//! for internal gRPC, and where the per-peer token lives. Env: `CLUSTER_INTERNAL_<KEY>`.

use std::net::SocketAddr;

use libp2p::Multiaddr;
use serde_json::Value;

use crate::{
    addr,
    json::{ma1, Obj, Out, Result},
    ConfigError,
};

#[derive(Debug, Clone, PartialEq)]
pub struct InternalConfig {
    pub transport_listen_multiaddress: Multiaddr,
    pub consensus_listen_multiaddress: Multiaddr,
    pub ipfs_connector_listen_multiaddress: Multiaddr,
    pub gateway_listen_multiaddress: Multiaddr,
    /// Relative to the config folder unless absolute.
    pub token_file: String,
    /// Allow non-loopback internal listen addresses (off: refuse them).
    pub allow_remote_internal: bool,
    /// Per-service Prometheus endpoints; `None` (`""` in service.json) = derived from
    /// `observations.metrics.prometheus_endpoint` (port P → transport P, consensus P+1,
    /// ipfs connector P+2, gateway P+3).
    pub transport_metrics_multiaddress: Option<Multiaddr>,
    pub consensus_metrics_multiaddress: Option<Multiaddr>,
    pub ipfs_connector_metrics_multiaddress: Option<Multiaddr>,
    pub gateway_metrics_multiaddress: Option<Multiaddr>,
}

/// The four services, in the order of their metrics port offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceKind {
    Transport,
    Consensus,
    IpfsConnector,
    Gateway,
}

impl ServiceKind {
    pub const ALL: [ServiceKind; 4] = [
        ServiceKind::Transport,
        ServiceKind::Consensus,
        ServiceKind::IpfsConnector,
        ServiceKind::Gateway,
    ];
    /// Short name used in logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            ServiceKind::Transport => "transport",
            ServiceKind::Consensus => "consensus",
            ServiceKind::IpfsConnector => "ipfs-connector",
            ServiceKind::Gateway => "gateway",
        }
    }
    fn metrics_key(self) -> &'static str {
        match self {
            ServiceKind::Transport => "transport_metrics_multiaddress",
            ServiceKind::Consensus => "consensus_metrics_multiaddress",
            ServiceKind::IpfsConnector => "ipfs_connector_metrics_multiaddress",
            ServiceKind::Gateway => "gateway_metrics_multiaddress",
        }
    }
    fn offset(self) -> u16 {
        match self {
            ServiceKind::Transport => 0,
            ServiceKind::Consensus => 1,
            ServiceKind::IpfsConnector => 2,
            ServiceKind::Gateway => 3,
        }
    }
}

impl Default for InternalConfig {
    fn default() -> Self {
        InternalConfig {
            transport_listen_multiaddress: ma1("/ip4/127.0.0.1/tcp/9180"),
            consensus_listen_multiaddress: ma1("/ip4/127.0.0.1/tcp/9181"),
            ipfs_connector_listen_multiaddress: ma1("/ip4/127.0.0.1/tcp/9182"),
            gateway_listen_multiaddress: ma1("/ip4/127.0.0.1/tcp/9183"),
            token_file: "internal.token".into(),
            allow_remote_internal: false,
            transport_metrics_multiaddress: None,
            consensus_metrics_multiaddress: None,
            ipfs_connector_metrics_multiaddress: None,
            gateway_metrics_multiaddress: None,
        }
    }
}

fn opt_maddr(o: &mut Obj, key: &'static str) -> Result<Option<Multiaddr>> {
    let s = o.string_or(key, "")?;
    if s.trim().is_empty() {
        return Ok(None);
    }
    s.trim().parse().map(Some).map_err(|e| {
        ConfigError::invalid(
            format!("internal.{key}"),
            format!("{s:?} is not a multiaddress ({e}); use e.g. /ip4/127.0.0.1/tcp/8888, or \"\" to derive it from observations.metrics.prometheus_endpoint"),
        )
    })
}

fn sock_any(a: &Multiaddr) -> std::result::Result<SocketAddr, ConfigError> {
    addr::to_socket_addr(a)
}

fn sock(key: &str, a: &Multiaddr) -> Result<SocketAddr> {
    addr::to_socket_addr(a)
        .map_err(|e| ConfigError::invalid(format!("internal.{key}"), e.to_string()))
}

impl InternalConfig {
    pub fn transport_addr(&self) -> Result<SocketAddr> {
        sock(
            "transport_listen_multiaddress",
            &self.transport_listen_multiaddress,
        )
    }
    pub fn consensus_addr(&self) -> Result<SocketAddr> {
        sock(
            "consensus_listen_multiaddress",
            &self.consensus_listen_multiaddress,
        )
    }
    pub fn ipfs_connector_addr(&self) -> Result<SocketAddr> {
        sock(
            "ipfs_connector_listen_multiaddress",
            &self.ipfs_connector_listen_multiaddress,
        )
    }
    pub fn gateway_addr(&self) -> Result<SocketAddr> {
        sock(
            "gateway_listen_multiaddress",
            &self.gateway_listen_multiaddress,
        )
    }

    fn metrics_override(&self, k: ServiceKind) -> Option<&Multiaddr> {
        match k {
            ServiceKind::Transport => self.transport_metrics_multiaddress.as_ref(),
            ServiceKind::Consensus => self.consensus_metrics_multiaddress.as_ref(),
            ServiceKind::IpfsConnector => self.ipfs_connector_metrics_multiaddress.as_ref(),
            ServiceKind::Gateway => self.gateway_metrics_multiaddress.as_ref(),
        }
    }

    /// Where `service` serves `/metrics`: its override in this section, else the port
    /// derived from `prometheus_endpoint` (P + the service's offset 0..3). Refuses a
    /// non-loopback address unless `allow_remote_internal`.
    pub fn metrics_addr(
        &self,
        service: ServiceKind,
        prometheus_endpoint: &Multiaddr,
    ) -> Result<SocketAddr> {
        let (key, a) = match self.metrics_override(service) {
            Some(a) => (format!("internal.{}", service.metrics_key()), sock_any(a)?),
            None => {
                let base = sock_any(prometheus_endpoint).map_err(|e| {
                    ConfigError::invalid("observations.metrics.prometheus_endpoint", e.to_string())
                })?;
                let port = if base.port() == 0 {
                    0
                } else {
                    base.port().checked_add(service.offset()).ok_or_else(|| {
                        ConfigError::invalid(
                            "observations.metrics.prometheus_endpoint",
                            format!("port {} leaves no room for the four services' ports (P..P+3); use a lower port", base.port()),
                        )
                    })?
                };
                (
                    "observations.metrics.prometheus_endpoint".to_string(),
                    SocketAddr::new(base.ip(), port),
                )
            }
        };
        if !self.allow_remote_internal && !a.ip().is_loopback() {
            return Err(ConfigError::invalid(
                key,
                format!("{a} ({} metrics) is not a loopback address; metrics endpoints stay on 127.0.0.1/::1 unless internal.allow_remote_internal is true", service.name()),
            ));
        }
        Ok(a)
    }

    pub(crate) fn from_obj(mut o: Obj) -> Result<Self> {
        let d = InternalConfig::default();
        let cfg = InternalConfig {
            transport_listen_multiaddress: o
                .maddr_or("transport_listen_multiaddress", "/ip4/127.0.0.1/tcp/9180")?,
            consensus_listen_multiaddress: o
                .maddr_or("consensus_listen_multiaddress", "/ip4/127.0.0.1/tcp/9181")?,
            ipfs_connector_listen_multiaddress: o.maddr_or(
                "ipfs_connector_listen_multiaddress",
                "/ip4/127.0.0.1/tcp/9182",
            )?,
            gateway_listen_multiaddress: o
                .maddr_or("gateway_listen_multiaddress", "/ip4/127.0.0.1/tcp/9183")?,
            token_file: o.string_or("token_file", &d.token_file)?,
            allow_remote_internal: o.bool("allow_remote_internal")?,
            transport_metrics_multiaddress: opt_maddr(&mut o, "transport_metrics_multiaddress")?,
            consensus_metrics_multiaddress: opt_maddr(&mut o, "consensus_metrics_multiaddress")?,
            ipfs_connector_metrics_multiaddress: opt_maddr(
                &mut o,
                "ipfs_connector_metrics_multiaddress",
            )?,
            gateway_metrics_multiaddress: opt_maddr(&mut o, "gateway_metrics_multiaddress")?,
        };
        o.finish();
        Ok(cfg)
    }

    pub(crate) fn to_value(&self) -> Value {
        let mut o = Out::default();
        o.maddr(
            "transport_listen_multiaddress",
            &self.transport_listen_multiaddress,
        )
        .maddr(
            "consensus_listen_multiaddress",
            &self.consensus_listen_multiaddress,
        )
        .maddr(
            "ipfs_connector_listen_multiaddress",
            &self.ipfs_connector_listen_multiaddress,
        )
        .maddr(
            "gateway_listen_multiaddress",
            &self.gateway_listen_multiaddress,
        )
        .put("token_file", self.token_file.clone())
        .put("allow_remote_internal", self.allow_remote_internal);
        for k in ServiceKind::ALL {
            let v = self
                .metrics_override(k)
                .map(|a| a.to_string())
                .unwrap_or_default();
            o.put(k.metrics_key(), v);
        }
        o.done()
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let addrs = [
            ("transport_listen_multiaddress", self.transport_addr()?),
            ("consensus_listen_multiaddress", self.consensus_addr()?),
            (
                "ipfs_connector_listen_multiaddress",
                self.ipfs_connector_addr()?,
            ),
            ("gateway_listen_multiaddress", self.gateway_addr()?),
        ];
        for (k, a) in &addrs {
            if !self.allow_remote_internal && !a.ip().is_loopback() {
                return Err(ConfigError::invalid(
                    format!("internal.{k}"),
                    format!("{a} is not a loopback address; internal endpoints must stay on 127.0.0.1/::1 unless internal.allow_remote_internal is true"),
                ));
            }
        }
        for (i, (k1, a1)) in addrs.iter().enumerate() {
            for (k2, a2) in &addrs[i + 1..] {
                if a1 == a2 && a1.port() != 0 {
                    return Err(ConfigError::invalid(
                        format!("internal.{k2}"),
                        format!(
                            "{a2} is also used by internal.{k1}; give each service its own port"
                        ),
                    ));
                }
            }
        }
        if self.token_file.is_empty() {
            return Err(ConfigError::invalid(
                "internal.token_file",
                "must not be empty",
            ));
        }
        Ok(())
    }
}
