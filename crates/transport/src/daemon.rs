//! The transport as a runtime [`Service`]: its options from the peer's configuration
//! (service.json, plus the limits only the environment sets), then [`crate::run`] until
//! the stop signal. The binary is `ipfs_cluster_runtime::main::<TransportDaemon>()`.

use std::collections::HashMap;

use anyhow::Context as _;
use ipfs_cluster_config::{Peer, ServiceKind};
use ipfs_cluster_proto::names;
use ipfs_cluster_runtime::{Context, NoArgs, Service};

use crate::TransportOptions;

/// The transport service of a peer.
pub struct TransportDaemon;

impl Service for TransportDaemon {
    const NAME: &'static str = "ipfs-cluster-transport";
    const ABOUT: &'static str =
        "IPFS Cluster transport service: the libp2p host, peer calls, broadcast";
    const KIND: ServiceKind = ServiceKind::Transport;
    type Args = NoArgs;

    async fn run(ctx: Context<NoArgs>) -> anyhow::Result<()> {
        let peer = &ctx.peer;
        let mut opts = options(peer)?;
        let addr = peer.config.internal.transport_addr()?;
        let listener =
            ipfs_cluster_runtime::bind_internal(addr, peer.config.internal.allow_remote_internal)
                .await?;
        if let Some(m) = &ctx.metrics {
            opts.peer_calls = Some(crate::prometheus::register(m, addr, &peer.token));
            opts.grpc_observer = Some(m.clone());
        }
        tracing::info!(%addr, peer_id = %peer.identity.peer_id, "transport gRPC endpoint listening");
        crate::run(opts, listener, ctx.stop_signal()).await?;
        Ok(())
    }
}

/// The transport's options from the peer's configuration.
fn options(peer: &Peer) -> anyhow::Result<TransportOptions> {
    let c = &peer.config;
    let i = &c.internal;
    let mut o = TransportOptions::new(
        peer.identity.keypair.clone(),
        c.cluster.secret.bytes().copied(),
        c.cluster.listen_multiaddress.clone(),
        peer.token.clone(),
    );
    o.bootstrap = c.cluster.peer_addresses.clone();
    o.announce = c.cluster.announce_multiaddress.clone();
    o.no_announce = c.cluster.no_announce_multiaddress.clone();
    o.peerstore_file = Some(peer.peerstore_path());
    o.crdt = c.consensus.crdt.is_some();
    o.services = HashMap::from([
        (names::TRANSPORT.to_string(), i.transport_addr()?),
        (names::CONSENSUS.to_string(), i.consensus_addr()?),
        (names::IPFS_CONNECTOR.to_string(), i.ipfs_connector_addr()?),
        (names::GATEWAY.to_string(), i.gateway_addr()?),
    ]);
    let dial = c.cluster.dial_peer_timeout.as_duration();
    if !dial.is_zero() {
        o.limits.dial_timeout = dial;
    }
    if c.cluster.connection_manager.high_water > 0 {
        o.limits.max_connections = c.cluster.connection_manager.high_water as usize;
    }
    limits_from_env(&mut o.limits, |k| std::env::var(k).ok())?;
    let hb = c.cluster.pubsub.heartbeat_interval.as_duration();
    if !hb.is_zero() {
        o.gossip_heartbeat = hb;
    }
    let ping = c.cluster.monitor_ping_interval.as_duration();
    if !ping.is_zero() {
        o.ping_interval = ping;
    }
    Ok(o)
}

/// Transport limits that service.json has no key for (yet), as environment variables in
/// upstream's `CLUSTER_<SECTION>_<KEY>` style. Unset = the default in `Limits`.
const LIMIT_VARS: [&str; 4] = [
    "CLUSTER_TRANSPORT_MAXMESSAGESIZE",
    "CLUSTER_TRANSPORT_MAXSTREAMANSWER",
    "CLUSTER_TRANSPORT_MAXINBOUNDCALLSPERPEER",
    "CLUSTER_TRANSPORT_MAXCALLTIMEOUTSECONDS",
];

fn limits_from_env(
    l: &mut crate::Limits,
    var: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<()> {
    for name in LIMIT_VARS {
        let Some(v) = var(name).filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        let n: usize = v
            .trim()
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .with_context(|| format!("{name}={v:?} is not a positive whole number"))?;
        match name {
            "CLUSTER_TRANSPORT_MAXMESSAGESIZE" => {
                anyhow::ensure!(
                    n >= 1024 && n <= u32::MAX as usize - 8192,
                    "{name}={n} must be between 1024 and {} bytes",
                    u32::MAX as usize - 8192
                );
                l.max_message_size = n;
            }
            "CLUSTER_TRANSPORT_MAXSTREAMANSWER" => {
                anyhow::ensure!(
                    n <= u32::MAX as usize - 8192,
                    "{name}={n} must be at most {} bytes",
                    u32::MAX as usize - 8192
                );
                l.max_stream_answer = n;
            }
            "CLUSTER_TRANSPORT_MAXINBOUNDCALLSPERPEER" => l.max_inbound_calls_per_peer = n,
            "CLUSTER_TRANSPORT_MAXCALLTIMEOUTSECONDS" => {
                l.max_call_timeout = std::time::Duration::from_secs(n as u64);
                l.default_call_timeout = l.default_call_timeout.min(l.max_call_timeout);
            }
            _ => unreachable!("every name in LIMIT_VARS is handled"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_from_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let mut l = crate::Limits::default();
        limits_from_env(&mut l, env(&[])).unwrap();
        assert_eq!(l.max_message_size, 16 << 20);
        limits_from_env(
            &mut l,
            env(&[
                ("CLUSTER_TRANSPORT_MAXMESSAGESIZE", "4096"),
                ("CLUSTER_TRANSPORT_MAXINBOUNDCALLSPERPEER", " 8 "),
                ("CLUSTER_TRANSPORT_MAXCALLTIMEOUTSECONDS", "10"),
            ]),
        )
        .unwrap();
        assert_eq!(l.max_message_size, 4096);
        assert_eq!(l.max_inbound_calls_per_peer, 8);
        assert_eq!(l.max_call_timeout, std::time::Duration::from_secs(10));
        assert_eq!(l.default_call_timeout, std::time::Duration::from_secs(10));
        for bad in [
            &[("CLUSTER_TRANSPORT_MAXINBOUNDCALLSPERPEER", "0")][..],
            &[("CLUSTER_TRANSPORT_MAXMESSAGESIZE", "lots")][..],
            &[("CLUSTER_TRANSPORT_MAXMESSAGESIZE", "10")][..],
        ] {
            let e = limits_from_env(&mut l, env(bad)).unwrap_err().to_string();
            assert!(e.contains(bad[0].0), "{e}");
        }
    }
}
