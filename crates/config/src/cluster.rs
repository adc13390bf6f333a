//! The `cluster` section: the libp2p host, pubsub, timers and pinning policy shared by the
//! whole peer (upstream cluster_config.go).

use libp2p::Multiaddr;
use serde_json::Value;

use crate::{
    json::{ma, Obj, Out, Result},
    ClusterSecret, ConfigError, GoDuration,
};

/// Upstream's error (errFollowerMode in cluster.go) for any write asked of a peer in
/// `cluster.follower_mode`, with the same words everywhere a write is refused.
pub const FOLLOWER_MODE_ERROR: &str =
    "this peer is configured to be in follower mode. Write operations are disabled";

#[derive(Debug, Clone, PartialEq)]
pub struct ConnMgrConfig {
    pub high_water: i64,
    pub low_water: i64,
    pub grace_period: GoDuration,
}

impl Default for ConnMgrConfig {
    fn default() -> Self {
        ConnMgrConfig {
            high_water: 400,
            low_water: 100,
            grace_period: GoDuration::from_secs(120),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResourceMgrConfig {
    pub enabled: bool,
    /// 0 = automatic.
    pub memory_limit_bytes: u64,
    /// 0 = automatic.
    pub file_descriptors_limit: u64,
}

impl Default for ResourceMgrConfig {
    fn default() -> Self {
        ResourceMgrConfig {
            enabled: true,
            memory_limit_bytes: 0,
            file_descriptors_limit: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PubsubConfig {
    pub seen_messages_ttl: GoDuration,
    pub heartbeat_interval: GoDuration,
    pub d_factor: i64,
    pub history_gossip: i64,
    pub history_length: i64,
    pub flood_publish: bool,
}

impl Default for PubsubConfig {
    fn default() -> Self {
        PubsubConfig {
            seen_messages_ttl: GoDuration::from_secs(30 * 60),
            heartbeat_interval: GoDuration::from_secs(10),
            d_factor: 4,
            history_gossip: 2,
            history_length: 6,
            flood_publish: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    pub peername: String,
    pub secret: ClusterSecret,
    pub leave_on_shutdown: bool,
    /// The libp2p listen addresses. The default includes `/ip4/0.0.0.0/udp/9096/quic` as
    /// upstream writes it; we have no QUIC transport (upstream never uses it either, as QUIC
    /// cannot carry the private-network PSK), so the transport skips such addresses with a
    /// log line. Keep them here so upstream configs stay drop-in.
    pub listen_multiaddress: Vec<Multiaddr>,
    pub announce_multiaddress: Vec<Multiaddr>,
    pub no_announce_multiaddress: Vec<Multiaddr>,
    pub enable_relay_hop: bool,
    pub connection_manager: ConnMgrConfig,
    pub resource_manager: ResourceMgrConfig,
    pub pubsub: PubsubConfig,
    pub dial_peer_timeout: GoDuration,
    pub state_sync_interval: GoDuration,
    pub pin_recover_interval: GoDuration,
    pub replication_factor_min: i32,
    pub replication_factor_max: i32,
    pub monitor_ping_interval: GoDuration,
    pub peer_watch_interval: GoDuration,
    /// 0 disables mDNS.
    pub mdns_interval: GoDuration,
    pub pin_only_on_trusted_peers: bool,
    pub pin_only_on_untrusted_peers: bool,
    pub disable_repinning: bool,
    /// Upstream's `follower_mode`: this peer never writes the pinset; every write is
    /// refused with [`FOLLOWER_MODE_ERROR`].
    pub follower_mode: bool,
    /// "" = `peerstore` in the config folder.
    pub peerstore_file: String,
    pub peer_addresses: Vec<Multiaddr>,
}

/// The machine's host name, upstream's default peername.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "ipfs-cluster-peer".to_string())
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            peername: hostname(),
            secret: ClusterSecret(None),
            leave_on_shutdown: false,
            listen_multiaddress: ma(&["/ip4/0.0.0.0/tcp/9096", "/ip4/0.0.0.0/udp/9096/quic"]),
            announce_multiaddress: Vec::new(),
            no_announce_multiaddress: Vec::new(),
            enable_relay_hop: true,
            connection_manager: ConnMgrConfig::default(),
            resource_manager: ResourceMgrConfig::default(),
            pubsub: PubsubConfig::default(),
            dial_peer_timeout: GoDuration::from_secs(3),
            state_sync_interval: GoDuration::from_secs(5 * 60),
            pin_recover_interval: GoDuration::from_secs(12 * 60),
            replication_factor_min: -1,
            replication_factor_max: -1,
            monitor_ping_interval: GoDuration::from_secs(15),
            peer_watch_interval: GoDuration::from_secs(5),
            mdns_interval: GoDuration::from_secs(10),
            pin_only_on_trusted_peers: false,
            pin_only_on_untrusted_peers: false,
            disable_repinning: true,
            follower_mode: false,
            peerstore_file: String::new(),
            peer_addresses: Vec::new(),
        }
    }
}

fn repl(o: &mut Obj, k: &'static str) -> Result<i32> {
    match o.int(k)? {
        None | Some(0) => Ok(-1),
        Some(v) => i32::try_from(v)
            .map_err(|_| ConfigError::invalid(o.key(k), format!("{v} is out of range"))),
    }
}

impl ClusterConfig {
    pub(crate) fn from_obj(mut o: Obj) -> Result<Self> {
        let d = ClusterConfig::default();
        let secret_text = o.string("secret")?.unwrap_or_default();
        let secret = ClusterSecret::from_hex(&secret_text)
            .map_err(|e| ConfigError::invalid(o.key("secret"), e.to_string()))?;
        let connection_manager = match o.obj("connection_manager")? {
            None => d.connection_manager.clone(),
            Some(mut c) => {
                let v = ConnMgrConfig {
                    high_water: c.int_or("high_water", 0)?,
                    low_water: c.int_or("low_water", 0)?,
                    grace_period: c.dur_or("grace_period", d.connection_manager.grace_period)?,
                };
                c.finish();
                v
            }
        };
        let resource_manager = match o.obj("resource_manager")? {
            None => d.resource_manager.clone(),
            Some(mut c) => {
                let v = ResourceMgrConfig {
                    enabled: c.bool("enabled")?,
                    memory_limit_bytes: c.uint_or("memory_limit_bytes", 0)?,
                    file_descriptors_limit: c.uint_or("file_descriptors_limit", 0)?,
                };
                c.finish();
                v
            }
        };
        let pubsub = match o.obj("pubsub")? {
            None => d.pubsub.clone(),
            Some(mut c) => {
                let v = PubsubConfig {
                    seen_messages_ttl: c.dur_or("seen_messages_ttl", d.pubsub.seen_messages_ttl)?,
                    heartbeat_interval: c
                        .dur_or("heartbeat_interval", d.pubsub.heartbeat_interval)?,
                    d_factor: c.int_or("d_factor", 0)?,
                    history_gossip: c.int_or("history_gossip", 0)?,
                    history_length: c.int_or("history_length", 0)?,
                    flood_publish: c.bool("flood_publish")?,
                };
                c.finish();
                v
            }
        };
        let cfg = ClusterConfig {
            peername: o.string_or("peername", &d.peername)?,
            secret,
            leave_on_shutdown: o.bool("leave_on_shutdown")?,
            listen_multiaddress: o.maddrs("listen_multiaddress")?.unwrap_or_default(),
            announce_multiaddress: o.maddrs("announce_multiaddress")?.unwrap_or_default(),
            no_announce_multiaddress: o.maddrs("no_announce_multiaddress")?.unwrap_or_default(),
            enable_relay_hop: o.bool("enable_relay_hop")?,
            connection_manager,
            resource_manager,
            pubsub,
            dial_peer_timeout: o.dur_or("dial_peer_timeout", d.dial_peer_timeout)?,
            state_sync_interval: o.dur_or("state_sync_interval", d.state_sync_interval)?,
            pin_recover_interval: o.dur_or("pin_recover_interval", d.pin_recover_interval)?,
            replication_factor_min: repl(&mut o, "replication_factor_min")?,
            replication_factor_max: repl(&mut o, "replication_factor_max")?,
            monitor_ping_interval: o.dur_or("monitor_ping_interval", d.monitor_ping_interval)?,
            peer_watch_interval: o.dur_or("peer_watch_interval", d.peer_watch_interval)?,
            mdns_interval: o.dur_or("mdns_interval", d.mdns_interval)?,
            pin_only_on_trusted_peers: o.bool("pin_only_on_trusted_peers")?,
            pin_only_on_untrusted_peers: o.bool("pin_only_on_untrusted_peers")?,
            disable_repinning: o.bool("disable_repinning")?,
            follower_mode: o.bool("follower_mode")?,
            peerstore_file: o.string("peerstore_file")?.unwrap_or_default(),
            peer_addresses: o.maddrs("peer_addresses")?.unwrap_or_default(),
        };
        // Legacy identity keys: read (Peer::load falls back to them) but never written.
        o.get("id");
        o.get("private_key");
        o.finish();
        Ok(cfg)
    }

    pub(crate) fn to_value(&self) -> Value {
        let mut o = Out::default();
        o.put("peername", self.peername.clone())
            .put("secret", self.secret.to_hex())
            .put("leave_on_shutdown", self.leave_on_shutdown)
            .maddrs("listen_multiaddress", &self.listen_multiaddress)
            .maddrs("announce_multiaddress", &self.announce_multiaddress)
            .maddrs("no_announce_multiaddress", &self.no_announce_multiaddress)
            .put("enable_relay_hop", self.enable_relay_hop);
        let mut cm = Out::default();
        cm.put("high_water", self.connection_manager.high_water)
            .put("low_water", self.connection_manager.low_water)
            .dur("grace_period", self.connection_manager.grace_period);
        o.put("connection_manager", cm.done());
        let mut rm = Out::default();
        rm.put("enabled", self.resource_manager.enabled)
            .put(
                "memory_limit_bytes",
                self.resource_manager.memory_limit_bytes,
            )
            .put(
                "file_descriptors_limit",
                self.resource_manager.file_descriptors_limit,
            );
        o.put("resource_manager", rm.done());
        let p = &self.pubsub;
        let mut ps = Out::default();
        ps.dur("seen_messages_ttl", p.seen_messages_ttl)
            .dur("heartbeat_interval", p.heartbeat_interval)
            .put("d_factor", p.d_factor)
            .put("history_gossip", p.history_gossip)
            .put("history_length", p.history_length)
            .put("flood_publish", p.flood_publish);
        o.put("pubsub", ps.done());
        o.dur("dial_peer_timeout", self.dial_peer_timeout)
            .dur("state_sync_interval", self.state_sync_interval)
            .dur("pin_recover_interval", self.pin_recover_interval)
            .put("replication_factor_min", self.replication_factor_min)
            .put("replication_factor_max", self.replication_factor_max)
            .dur("monitor_ping_interval", self.monitor_ping_interval)
            .dur("peer_watch_interval", self.peer_watch_interval)
            .dur("mdns_interval", self.mdns_interval)
            .put("pin_only_on_trusted_peers", self.pin_only_on_trusted_peers)
            .put(
                "pin_only_on_untrusted_peers",
                self.pin_only_on_untrusted_peers,
            )
            .put("disable_repinning", self.disable_repinning);
        if self.follower_mode {
            o.put("follower_mode", true);
        }
        if !self.peerstore_file.is_empty() {
            o.put("peerstore_file", self.peerstore_file.clone());
        }
        o.maddrs("peer_addresses", &self.peer_addresses);
        o.done()
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |k: &str, msg: &str| Err(ConfigError::invalid(format!("cluster.{k}"), msg));
        if self.listen_multiaddress.is_empty() {
            return bad(
                "listen_multiaddress",
                "is undefined; set at least one address such as \"/ip4/0.0.0.0/tcp/9096\"",
            );
        }
        if self.pin_only_on_trusted_peers && self.pin_only_on_untrusted_peers {
            // Upstream's words (cluster_config.go).
            return bad(
                "pin_only_on_trusted_peers",
                "cluster.pin_only_on_trusted_peers and pin_only_on_untrusted_peers cannot both be true",
            );
        }
        let cm = &self.connection_manager;
        if cm.high_water <= 0 {
            return bad(
                "connection_manager.high_water",
                "must be greater than 0 (default 400)",
            );
        }
        if cm.low_water <= 0 {
            return bad(
                "connection_manager.low_water",
                "must be greater than 0 (default 100)",
            );
        }
        if cm.low_water > cm.high_water {
            return bad(
                "connection_manager.low_water",
                "must not be greater than high_water",
            );
        }
        if cm.grace_period.is_zero() {
            return bad(
                "connection_manager.grace_period",
                "must be greater than 0 (default \"2m0s\")",
            );
        }
        let p = &self.pubsub;
        if p.seen_messages_ttl.is_zero() {
            return bad(
                "pubsub.seen_messages_ttl",
                "must be greater than 0 (default \"30m0s\")",
            );
        }
        if p.heartbeat_interval.is_zero() {
            return bad(
                "pubsub.heartbeat_interval",
                "must be greater than 0 (default \"10s\")",
            );
        }
        if p.d_factor < 1 {
            return bad("pubsub.d_factor", "must be at least 1 (default 4)");
        }
        if p.history_gossip <= 0 {
            return bad(
                "pubsub.history_gossip",
                "must be greater than 0 (default 2)",
            );
        }
        if p.history_length <= 0 {
            return bad(
                "pubsub.history_length",
                "must be greater than 0 (default 6)",
            );
        }
        for (k, d) in [
            ("dial_peer_timeout", self.dial_peer_timeout),
            ("state_sync_interval", self.state_sync_interval),
            ("pin_recover_interval", self.pin_recover_interval),
            ("monitor_ping_interval", self.monitor_ping_interval),
            ("peer_watch_interval", self.peer_watch_interval),
        ] {
            if d.is_zero() {
                return bad(k, "must be greater than 0");
            }
        }
        let (min, max) = (self.replication_factor_min, self.replication_factor_max);
        if min < -1 {
            return bad(
                "replication_factor_min",
                "is wrong: must be -1 (everywhere) or at least 1",
            );
        }
        if max < -1 {
            return bad(
                "replication_factor_max",
                "is wrong: must be -1 (everywhere) or at least 1",
            );
        }
        if (min == -1) != (max == -1) {
            return bad(
                "replication_factor_min",
                "and replication_factor_max must both be -1 when one of them is",
            );
        }
        if min > max {
            return bad(
                "replication_factor_min",
                "is larger than replication_factor_max",
            );
        }
        if self.pin_only_on_trusted_peers && self.pin_only_on_untrusted_peers {
            return bad(
                "pin_only_on_trusted_peers",
                "and pin_only_on_untrusted_peers cannot both be true",
            );
        }
        Ok(())
    }
}
