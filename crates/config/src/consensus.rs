//! The `consensus` section. Upstream picks the consensus by which component is present
//! (`raft` or `crdt`); exactly one must be (the crdt section is in `crdt.rs`).

use libp2p::PeerId;
use serde_json::Value;

use crate::{
    json::{Obj, Out, Result},
    ConfigError, GoDuration,
};

#[derive(Debug, Clone, PartialEq)]
pub struct RaftConfig {
    /// Peers of a brand-new cluster (used only when bootstrapping an empty raft).
    pub init_peerset: Vec<PeerId>,
    pub wait_for_leader_timeout: GoDuration,
    pub network_timeout: GoDuration,
    /// Number of retries (attempts = retries + 1).
    pub commit_retries: i64,
    pub commit_retry_delay: GoDuration,
    pub backups_rotate: i64,
    pub heartbeat_timeout: GoDuration,
    pub election_timeout: GoDuration,
    pub commit_timeout: GoDuration,
    pub max_append_entries: i64,
    pub trailing_logs: u64,
    pub snapshot_interval: GoDuration,
    pub snapshot_threshold: u64,
    pub leader_lease_timeout: GoDuration,
    /// "" = `<config dir>/raft` (see `Peer::raft_dir`).
    pub data_folder: String,
    pub datastore_namespace: String,
    /// Upstream's key, which upstream honours in `consensus.crdt` only; here also in raft
    /// mode (docs/security.md, hole 8): `None` (absent, or containing "*") = any holder of the
    /// cluster secret may join, as upstream; otherwise only these peers may join and stay
    /// members. Written back only when set.
    pub trusted_peers: Option<Vec<PeerId>>,
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            init_peerset: Vec::new(),
            wait_for_leader_timeout: GoDuration::from_secs(15),
            network_timeout: GoDuration::from_secs(10),
            commit_retries: 1,
            commit_retry_delay: GoDuration::from_millis(200),
            backups_rotate: 6,
            heartbeat_timeout: GoDuration::from_secs(1),
            election_timeout: GoDuration::from_secs(1),
            commit_timeout: GoDuration::from_millis(50),
            max_append_entries: 64,
            trailing_logs: 10240,
            snapshot_interval: GoDuration::from_secs(120),
            snapshot_threshold: 8192,
            leader_lease_timeout: GoDuration::from_millis(500),
            data_folder: String::new(),
            datastore_namespace: "/r".to_string(),
            trusted_peers: None,
        }
    }
}

impl RaftConfig {
    pub(crate) fn from_obj(mut o: Obj) -> Result<Self> {
        let d = RaftConfig::default();
        let mut init_peerset = Vec::new();
        for s in o.strings("init_peerset")?.unwrap_or_default() {
            let id = s.parse::<PeerId>().map_err(|e| {
                ConfigError::invalid(
                    o.key("init_peerset"),
                    format!("{s:?} is not a peer ID: {e}"),
                )
            })?;
            init_peerset.push(id);
        }
        let trusted_peers = match o.strings("trusted_peers")? {
            None => None,
            Some(list) if list.iter().any(|s| s == "*") => None,
            Some(list) => {
                let mut ids = Vec::new();
                for s in list {
                    ids.push(s.parse::<PeerId>().map_err(|e| {
                        ConfigError::invalid(
                            o.key("trusted_peers"),
                            format!("{s:?} is not a peer ID ({e}); list peer IDs, or [\"*\"] to trust every holder of the cluster secret"),
                        )
                    })?);
                }
                Some(ids)
            }
        };
        // As upstream (`SetIfNotDefault`): a key that is missing, zero or (for durations)
        // unparsable takes the default, so a service.json from an older release, written
        // before a key existed, loads. Only `commit_retries` is taken as given (0 = none).
        let dur = |o: &mut Obj, k: &'static str, d: GoDuration| -> Result<GoDuration> {
            let v = o.dur_or_warn(k, d)?;
            Ok(if v.is_zero() { d } else { v })
        };
        let int = |o: &mut Obj, k: &'static str, d: i64| -> Result<i64> {
            let v = o.int_or(k, d)?;
            Ok(if v == 0 { d } else { v })
        };
        let uint = |o: &mut Obj, k: &'static str, d: u64| -> Result<u64> {
            let v = o.uint_or(k, d)?;
            Ok(if v == 0 { d } else { v })
        };
        let cfg = RaftConfig {
            init_peerset,
            wait_for_leader_timeout: dur(
                &mut o,
                "wait_for_leader_timeout",
                d.wait_for_leader_timeout,
            )?,
            network_timeout: dur(&mut o, "network_timeout", d.network_timeout)?,
            commit_retries: o.int_or("commit_retries", 0)?,
            commit_retry_delay: dur(&mut o, "commit_retry_delay", d.commit_retry_delay)?,
            backups_rotate: int(&mut o, "backups_rotate", d.backups_rotate)?,
            heartbeat_timeout: dur(&mut o, "heartbeat_timeout", d.heartbeat_timeout)?,
            election_timeout: dur(&mut o, "election_timeout", d.election_timeout)?,
            commit_timeout: dur(&mut o, "commit_timeout", d.commit_timeout)?,
            max_append_entries: int(&mut o, "max_append_entries", d.max_append_entries)?,
            trailing_logs: uint(&mut o, "trailing_logs", d.trailing_logs)?,
            snapshot_interval: dur(&mut o, "snapshot_interval", d.snapshot_interval)?,
            snapshot_threshold: uint(&mut o, "snapshot_threshold", d.snapshot_threshold)?,
            leader_lease_timeout: dur(&mut o, "leader_lease_timeout", d.leader_lease_timeout)?,
            data_folder: o.string("data_folder")?.unwrap_or_default(),
            datastore_namespace: o.string_or("datastore_namespace", &d.datastore_namespace)?,
            trusted_peers,
        };
        o.finish();
        Ok(cfg)
    }

    pub(crate) fn to_value(&self) -> Value {
        let mut o = Out::default();
        o.put(
            "init_peerset",
            Value::Array(
                self.init_peerset
                    .iter()
                    .map(|p| Value::String(p.to_string()))
                    .collect(),
            ),
        )
        .dur("wait_for_leader_timeout", self.wait_for_leader_timeout)
        .dur("network_timeout", self.network_timeout)
        .put("commit_retries", self.commit_retries)
        .dur("commit_retry_delay", self.commit_retry_delay)
        .put("backups_rotate", self.backups_rotate)
        .dur("heartbeat_timeout", self.heartbeat_timeout)
        .dur("election_timeout", self.election_timeout)
        .dur("commit_timeout", self.commit_timeout)
        .put("max_append_entries", self.max_append_entries)
        .put("trailing_logs", self.trailing_logs)
        .dur("snapshot_interval", self.snapshot_interval)
        .put("snapshot_threshold", self.snapshot_threshold)
        .dur("leader_lease_timeout", self.leader_lease_timeout);
        if !self.data_folder.is_empty() {
            o.put("data_folder", self.data_folder.clone());
        }
        if self.datastore_namespace != "/r" {
            o.put("datastore_namespace", self.datastore_namespace.clone());
        }
        if let Some(t) = &self.trusted_peers {
            o.put(
                "trusted_peers",
                Value::Array(t.iter().map(|p| Value::String(p.to_string())).collect()),
            );
        }
        o.done()
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let bad =
            |k: &str, msg: &str| Err(ConfigError::invalid(format!("consensus.raft.{k}"), msg));
        for (k, d) in [
            ("wait_for_leader_timeout", self.wait_for_leader_timeout),
            ("network_timeout", self.network_timeout),
            ("commit_retry_delay", self.commit_retry_delay),
            ("heartbeat_timeout", self.heartbeat_timeout),
            ("election_timeout", self.election_timeout),
            ("commit_timeout", self.commit_timeout),
            ("snapshot_interval", self.snapshot_interval),
            ("leader_lease_timeout", self.leader_lease_timeout),
        ] {
            if d.is_zero() {
                return bad(k, "must be greater than 0");
            }
        }
        if self.commit_retries < 0 {
            return bad("commit_retries", "must be 0 or more (default 1)");
        }
        if self.backups_rotate <= 0 {
            return bad(
                "backups_rotate",
                "must be greater than 0 (default 6; 0 or a missing key takes the default)",
            );
        }
        if self.max_append_entries <= 0 {
            return bad("max_append_entries", "must be greater than 0 (default 64)");
        }
        if self.election_timeout < self.heartbeat_timeout {
            return bad(
                "election_timeout",
                "must be equal to or greater than heartbeat_timeout",
            );
        }
        if self.leader_lease_timeout > self.heartbeat_timeout {
            return bad(
                "leader_lease_timeout",
                "cannot be larger than heartbeat_timeout",
            );
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConsensusConfig {
    pub raft: Option<RaftConfig>,
    pub crdt: Option<crate::crdt::CrdtConfig>,
}

impl ConsensusConfig {
    pub(crate) fn from_obj(mut o: Obj) -> Result<Self> {
        let raft = match o.obj("raft")? {
            Some(r) => Some(RaftConfig::from_obj(r)?),
            None => None,
        };
        let crdt = match o.obj("crdt")? {
            Some(c) => Some(crate::crdt::CrdtConfig::from_obj(c)?),
            None => None,
        };
        o.finish();
        Ok(ConsensusConfig { raft, crdt })
    }

    pub(crate) fn to_value(&self) -> Value {
        let mut o = Out::default();
        if let Some(r) = &self.raft {
            o.put("raft", r.to_value());
        }
        if let Some(c) = &self.crdt {
            o.put("crdt", c.to_value());
        }
        o.done()
    }

    pub(crate) fn validate(&self) -> Result<()> {
        match (&self.raft, &self.crdt) {
            (Some(_), Some(_)) => Err(ConfigError::invalid(
                "consensus",
                "both raft and crdt are configured; keep exactly one of consensus.raft and consensus.crdt",
            )),
            (None, None) => Err(ConfigError::invalid(
                "consensus",
                "no consensus configured; add a \"raft\" or a \"crdt\" section (`ipfs-cluster-service init --consensus raft|crdt` writes the defaults)",
            )),
            (None, Some(c)) => c.validate(),
            (Some(r), None) => r.validate(),
        }
    }
}
