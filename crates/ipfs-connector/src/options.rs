//! The connector's settings in one plain struct, so the Kubo client, tracker and
//! informers can be built and tested without a whole service.json. `main` fills it from
//! `ipfs_cluster_config::Peer` (sections `ipfs_connector.ipfshttp`, `pin_tracker.stateless`,
//! `informer.*`, `cluster.peername`, `internal`).

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

/// Upstream defaults.
#[derive(Debug, Clone)]
pub struct Options {
    /// `ipfs_connector.ipfshttp.node_multiaddress`.
    pub node_multiaddress: String,
    /// `ipfs_connector.ipfshttp.connect_swarms_delay`: when to connect the daemon to the
    /// other peers' daemons after start (zero = never).
    pub connect_swarms_delay: Duration,
    pub ipfs_request_timeout: Duration,
    /// No-progress timeout of `pin/add`.
    pub pin_timeout: Duration,
    pub unpin_timeout: Duration,
    pub repogc_timeout: Duration,
    pub unpin_disable: bool,
    /// `pin_tracker.stateless`.
    pub concurrent_pins: usize,
    pub max_pin_queue_size: usize,
    pub priority_pin_max_age: Duration,
    pub priority_pin_max_retries: u32,
    /// After this many failed attempts the periodic recovery leaves an item in
    /// `pin_error` until it is recovered by hand (0 = retry forever, as upstream).
    pub max_pin_attempts: u32,
    /// `cluster.pin_recover_interval`: how often failed and vanished pins are re-queued.
    pub pin_recover_interval: Duration,
    /// This cluster peer (identity.json) and its name (cluster.peername).
    pub peer_id: String,
    pub peername: String,
    /// Where `tracker-state.json` is kept (the config dir).
    pub state_dir: PathBuf,
    /// Informers: None = disabled (presence in service.json enables them).
    pub freespace_ttl: Option<Duration>,
    pub pinqueue_ttl: Option<Duration>,
    pub pinqueue_weight_bucket_size: u64,
    pub tags: Option<(Duration, BTreeMap<String, String>)>,
    pub numpin_ttl: Option<Duration>,
    /// `cluster.monitor_ping_interval` (ping metric TTL = 2x).
    pub monitor_ping_interval: Duration,
}

impl Options {
    pub fn with_defaults(peer_id: impl Into<String>, state_dir: PathBuf) -> Self {
        Self {
            node_multiaddress: "/ip4/127.0.0.1/tcp/5001".into(),
            connect_swarms_delay: Duration::from_secs(30),
            ipfs_request_timeout: Duration::from_secs(5 * 60),
            pin_timeout: Duration::from_secs(2 * 60),
            unpin_timeout: Duration::from_secs(3 * 3600),
            repogc_timeout: Duration::from_secs(24 * 3600),
            unpin_disable: false,
            concurrent_pins: 10,
            max_pin_queue_size: 1_000_000,
            priority_pin_max_age: Duration::from_secs(24 * 3600),
            priority_pin_max_retries: 5,
            max_pin_attempts: 10,
            pin_recover_interval: Duration::from_secs(12 * 60),
            peer_id: peer_id.into(),
            peername: String::new(),
            state_dir,
            freespace_ttl: Some(Duration::from_secs(30)),
            pinqueue_ttl: Some(Duration::from_secs(30)),
            pinqueue_weight_bucket_size: 100_000,
            tags: Some((
                Duration::from_secs(30),
                BTreeMap::from([("group".to_string(), "default".to_string())]),
            )),
            numpin_ttl: None,
            monitor_ping_interval: Duration::from_secs(15),
        }
    }
}
