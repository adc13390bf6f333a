//! The `consensus.crdt` section: upstream v1.1.6's keys, defaults and loading rules
//! (`consensus/crdt/config.go`). Environment overrides use upstream's prefix
//! `CLUSTER_CRDT_` (`CLUSTER_CRDT_CLUSTERNAME`, `CLUSTER_CRDT_TRUSTEDPEERS`,
//! `CLUSTER_CRDT_BATCHING_MAXBATCHSIZE`, ...; see `env.rs`).

use libp2p::PeerId;
use serde_json::Value;

use crate::{
    json::{Obj, Out, Result},
    ConfigError, GoDuration,
};

/// Upstream's defaults.
pub const DEFAULT_CLUSTER_NAME: &str = "ipfs-cluster";
pub const DEFAULT_PEERSET_METRIC: &str = "ping";
pub const DEFAULT_DATASTORE_NAMESPACE: &str = "/c";
pub const DEFAULT_MAX_QUEUE_SIZE: i64 = 50_000;

/// `consensus.crdt.batching`: several pins committed as one delta. Batching is on only
/// when both `max_batch_size` and `max_batch_age` are above zero (upstream's rule).
#[derive(Debug, Clone, PartialEq)]
pub struct CrdtBatchingConfig {
    pub max_batch_size: i64,
    pub max_batch_age: GoDuration,
    pub max_queue_size: i64,
}

impl Default for CrdtBatchingConfig {
    fn default() -> Self {
        Self {
            max_batch_size: 0,
            max_batch_age: GoDuration::from_secs(0),
            max_queue_size: DEFAULT_MAX_QUEUE_SIZE,
        }
    }
}

impl CrdtBatchingConfig {
    pub fn enabled(&self) -> bool {
        self.max_batch_size > 0 && !self.max_batch_age.is_zero()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CrdtConfig {
    /// Names the gossip topic: peers with different names do not see each other's updates.
    pub cluster_name: String,
    /// `None` = `["*"]` (trust every peer; upstream's default `TrustAll`).
    pub trusted_peers: Option<Vec<PeerId>>,
    pub batching: CrdtBatchingConfig,
    /// How often a dirty store is repaired ("0s" disables periodic repair).
    pub repair_interval: GoDuration,
    /// How often the heads are announced again when nothing else was broadcast.
    pub rebroadcast_interval: GoDuration,
    /// The metric whose live holders make the peerset.
    pub peerset_metric: String,
    /// Upstream's datastore prefix; kept and written back (our store is a redb file).
    pub datastore_namespace: String,
}

impl Default for CrdtConfig {
    fn default() -> Self {
        Self {
            cluster_name: DEFAULT_CLUSTER_NAME.into(),
            trusted_peers: None,
            batching: CrdtBatchingConfig::default(),
            repair_interval: GoDuration::from_secs(3600),
            rebroadcast_interval: GoDuration::from_secs(60),
            peerset_metric: DEFAULT_PEERSET_METRIC.into(),
            datastore_namespace: DEFAULT_DATASTORE_NAMESPACE.into(),
        }
    }
}

impl CrdtConfig {
    /// Whether `peer` may write to this peer's pinset (gossip updates and peer calls).
    pub fn trusts(&self, peer: &str) -> bool {
        match &self.trusted_peers {
            None => true,
            Some(list) => list.iter().any(|p| p.to_string() == peer),
        }
    }

    /// The `trusted_peers` list as upstream writes it (`["*"]` for trust-all).
    pub fn trusted_list(&self) -> Vec<String> {
        match &self.trusted_peers {
            None => vec!["*".into()],
            Some(list) => list.iter().map(|p| p.to_string()).collect(),
        }
    }

    pub(crate) fn from_obj(mut o: Obj) -> Result<Self> {
        let d = CrdtConfig::default();
        // As upstream: a missing or empty value keeps the default.
        let cluster_name = match o.string("cluster_name")? {
            Some(s) if !s.is_empty() => s,
            _ => d.cluster_name.clone(),
        };
        let trusted_peers = match o.strings("trusted_peers")? {
            None => None,
            Some(list) if list.iter().any(|s| s.trim() == "*") => None,
            Some(list) => {
                let mut ids = Vec::new();
                for s in list.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
                    ids.push(s.parse::<PeerId>().map_err(|e| {
                        ConfigError::invalid(
                            o.key("trusted_peers"),
                            format!("{s:?} is not a peer ID ({e}); list peer IDs, or [\"*\"] to trust every peer"),
                        )
                    })?);
                }
                Some(ids)
            }
        };
        let mut batching = d.batching.clone();
        if let Some(mut b) = o.obj("batching")? {
            batching.max_batch_size = b.int_or("max_batch_size", 0)?;
            batching.max_batch_age = b.dur_or("max_batch_age", batching.max_batch_age)?;
            let q = b.int_or("max_queue_size", 0)?;
            if q != 0 {
                batching.max_queue_size = q;
            }
            b.finish();
        }
        let cfg = CrdtConfig {
            cluster_name,
            trusted_peers,
            batching,
            repair_interval: o.dur_or("repair_interval", d.repair_interval)?,
            rebroadcast_interval: o.dur_or("rebroadcast_interval", d.rebroadcast_interval)?,
            peerset_metric: match o.string("peerset_metric")? {
                Some(s) if !s.is_empty() => s,
                _ => d.peerset_metric.clone(),
            },
            datastore_namespace: match o.string("datastore_namespace")? {
                Some(s) if !s.is_empty() => s,
                _ => d.datastore_namespace.clone(),
            },
        };
        o.finish();
        Ok(cfg)
    }

    /// Upstream's JSON form: `rebroadcast_interval`, `peerset_metric`,
    /// `datastore_namespace` and `batching.max_queue_size` only when not the default.
    pub(crate) fn to_value(&self) -> Value {
        let d = CrdtConfig::default();
        let mut b = Out::default();
        b.put("max_batch_size", self.batching.max_batch_size)
            .dur("max_batch_age", self.batching.max_batch_age);
        if self.batching.max_queue_size != DEFAULT_MAX_QUEUE_SIZE {
            b.put("max_queue_size", self.batching.max_queue_size);
        }
        let mut o = Out::default();
        o.put("cluster_name", self.cluster_name.clone())
            .put(
                "trusted_peers",
                Value::Array(self.trusted_list().into_iter().map(Value::String).collect()),
            )
            .put("batching", b.done())
            .dur("repair_interval", self.repair_interval);
        if self.rebroadcast_interval != d.rebroadcast_interval {
            o.dur("rebroadcast_interval", self.rebroadcast_interval);
        }
        if self.peerset_metric != d.peerset_metric {
            o.put("peerset_metric", self.peerset_metric.clone());
        }
        if self.datastore_namespace != d.datastore_namespace {
            o.put("datastore_namespace", self.datastore_namespace.clone());
        }
        o.done()
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let bad =
            |k: &str, msg: &str| Err(ConfigError::invalid(format!("consensus.crdt.{k}"), msg));
        if self.cluster_name.trim().is_empty() {
            return bad(
                "cluster_name",
                "cannot be empty (every peer of a cluster uses the same name; default \"ipfs-cluster\")",
            );
        }
        if self.peerset_metric.trim().is_empty() {
            return bad("peerset_metric", "needs a metric name (default \"ping\")");
        }
        if self.rebroadcast_interval.is_zero() {
            return bad(
                "rebroadcast_interval",
                "must be greater than 0 (default 1m0s)",
            );
        }
        if self.batching.max_queue_size <= 0 {
            return bad(
                "batching.max_queue_size",
                "must be greater than 0 (default 50000)",
            );
        }
        if self.batching.max_batch_size < 0 {
            return bad(
                "batching.max_batch_size",
                "must be 0 (batching off) or more",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{init_from, InitOptions, Peer, ServiceConfig};

    fn section(json: &str) -> Result<CrdtConfig> {
        let v: Value = serde_json::from_str(json).unwrap();
        let c = CrdtConfig::from_obj(Obj::new("consensus.crdt", &v)?)?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn upstream_defaults_and_written_form() {
        let c = section("{}").unwrap();
        assert_eq!(c, CrdtConfig::default());
        assert!(c.trusts("12D3KooWAnyone"));
        assert!(!c.batching.enabled());
        // What upstream's `init --consensus crdt` writes.
        let want: Value = serde_json::from_str(
            r#"{"cluster_name":"ipfs-cluster","trusted_peers":["*"],
                "batching":{"max_batch_size":0,"max_batch_age":"0s"},
                "repair_interval":"1h0m0s"}"#,
        )
        .unwrap();
        assert_eq!(c.to_value(), want);
    }

    #[test]
    fn keys_load_and_round_trip() {
        let p = libp2p::identity::Keypair::generate_ed25519()
            .public()
            .to_peer_id();
        let c = section(&format!(
            r#"{{"cluster_name":"c1","trusted_peers":["{p}"],
                "batching":{{"max_batch_size":10,"max_batch_age":"2s","max_queue_size":7}},
                "repair_interval":"0s","rebroadcast_interval":"5s","peerset_metric":"freespace",
                "datastore_namespace":"/x"}}"#
        ))
        .unwrap();
        assert_eq!(c.cluster_name, "c1");
        assert!(c.trusts(&p.to_string()) && !c.trusts("other"));
        assert!(c.batching.enabled());
        assert_eq!(c.batching.max_queue_size, 7);
        assert!(c.repair_interval.is_zero());
        assert_eq!(c.rebroadcast_interval.as_duration().as_secs(), 5);
        let v = c.to_value();
        let again = CrdtConfig::from_obj(Obj::new("consensus.crdt", &v).unwrap()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn errors_name_the_key() {
        let e = section(r#"{"trusted_peers":["nope"]}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("consensus.crdt.trusted_peers") && e.contains("not a peer ID"),
            "{e}"
        );
        let e = section(r#"{"batching":{"max_queue_size":-1}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("consensus.crdt.batching.max_queue_size"), "{e}");
        let e = section(r#"{"rebroadcast_interval":"0s"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("consensus.crdt.rebroadcast_interval"), "{e}");
        let e = section(r#"{"repair_interval":"soon"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("consensus.crdt.repair_interval"), "{e}");
    }

    #[test]
    fn init_consensus_crdt_writes_the_section_and_env_overrides_it() {
        let dir = tempfile::tempdir().unwrap();
        let env = |k: &str| match k {
            "CLUSTER_CRDT_CLUSTERNAME" => Some("from-env".to_string()),
            "CLUSTER_CRDT_BATCHING_MAXBATCHSIZE" => Some("5".to_string()),
            _ => None,
        };
        init_from(
            dir.path(),
            &InitOptions {
                consensus: "crdt".into(),
                peername: Some("p".into()),
                ..Default::default()
            },
            &env,
        )
        .unwrap();
        let text = std::fs::read_to_string(dir.path().join(crate::SERVICE_JSON)).unwrap();
        let cfg = ServiceConfig::from_json(&text).unwrap();
        assert!(cfg.consensus.raft.is_none());
        let c = cfg.consensus.crdt.unwrap();
        assert_eq!(c.cluster_name, "from-env");
        assert_eq!(c.batching.max_batch_size, 5);
        let peer = Peer::load_from(dir.path(), &|_: &str| None).unwrap();
        assert!(peer.config.consensus.crdt.is_some());
    }
}
