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
        }
    }
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
