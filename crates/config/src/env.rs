//! Environment overrides, as upstream's envconfig does them: `CLUSTER_<KEY>` for the cluster
//! section and `CLUSTER_<COMPONENT>_<KEY>` for components, the key being the JSON key with
//! underscores removed, upper-cased (`CLUSTER_RESTAPI_HTTPLISTENMULTIADDRESS`); nested
//! objects add a level (`CLUSTER_CONNECTIONMANAGER_HIGHWATER`). Like upstream, overrides are
//! applied to the JSON form and the section is then re-read, so the same loading rules hold
//! (a set-but-empty duration means "default", an empty list means empty). Lists are comma
//! separated; maps are `key:value,key2:value2`. Optional components (APIs, informers) are
//! only overridden when present in the file.

use serde_json::{Map, Value};

use crate::{json::Result, ConfigError, ServiceConfig};

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Bool,
    Int,
    Float,
    List,
    Map,
    Nested(&'static [(&'static str, Kind)]),
}
use Kind::*;

const CONN_MGR: &[(&str, Kind)] = &[
    ("high_water", Int),
    ("low_water", Int),
    ("grace_period", Str),
];
const RES_MGR: &[(&str, Kind)] = &[
    ("enabled", Bool),
    ("memory_limit_bytes", Int),
    ("file_descriptors_limit", Int),
];
const PUBSUB: &[(&str, Kind)] = &[
    ("seen_messages_ttl", Str),
    ("heartbeat_interval", Str),
    ("d_factor", Int),
    ("history_gossip", Int),
    ("history_length", Int),
    ("flood_publish", Bool),
];
const CLUSTER: &[(&str, Kind)] = &[
    ("peername", Str),
    ("secret", Str),
    ("leave_on_shutdown", Bool),
    ("listen_multiaddress", List),
    ("announce_multiaddress", List),
    ("no_announce_multiaddress", List),
    ("enable_relay_hop", Bool),
    ("connection_manager", Nested(CONN_MGR)),
    ("resource_manager", Nested(RES_MGR)),
    ("pubsub", Nested(PUBSUB)),
    ("dial_peer_timeout", Str),
    ("state_sync_interval", Str),
    ("pin_recover_interval", Str),
    ("replication_factor_min", Int),
    ("replication_factor_max", Int),
    ("monitor_ping_interval", Str),
    ("peer_watch_interval", Str),
    ("mdns_interval", Str),
    ("pin_only_on_trusted_peers", Bool),
    ("pin_only_on_untrusted_peers", Bool),
    ("disable_repinning", Bool),
    ("follower_mode", Bool),
    ("peerstore_file", Str),
    ("peer_addresses", List),
];
const CRDT_BATCHING: &[(&str, Kind)] = &[
    ("max_batch_size", Int),
    ("max_batch_age", Str),
    ("max_queue_size", Int),
];
const CRDT: &[(&str, Kind)] = &[
    ("cluster_name", Str),
    ("trusted_peers", List),
    ("batching", Nested(CRDT_BATCHING)),
    ("repair_interval", Str),
    ("rebroadcast_interval", Str),
    ("peerset_metric", Str),
    ("datastore_namespace", Str),
];
const RAFT: &[(&str, Kind)] = &[
    ("init_peerset", List),
    ("wait_for_leader_timeout", Str),
    ("network_timeout", Str),
    ("commit_retries", Int),
    ("commit_retry_delay", Str),
    ("backups_rotate", Int),
    ("heartbeat_timeout", Str),
    ("election_timeout", Str),
    ("commit_timeout", Str),
    ("max_append_entries", Int),
    ("trailing_logs", Int),
    ("snapshot_interval", Str),
    ("snapshot_threshold", Int),
    ("leader_lease_timeout", Str),
    ("data_folder", Str),
    ("datastore_namespace", Str),
    ("trusted_peers", List),
];
const REST: &[(&str, Kind)] = &[
    ("http_listen_multiaddress", List),
    ("ssl_cert_file", Str),
    ("ssl_key_file", Str),
    ("read_timeout", Str),
    ("read_header_timeout", Str),
    ("write_timeout", Str),
    ("idle_timeout", Str),
    ("max_header_bytes", Int),
    ("libp2p_listen_multiaddress", List),
    ("id", Str),
    ("private_key", Str),
    ("basic_auth_credentials", Map),
    ("read_only_users", List),
    ("http_log_file", Str),
    ("cors_allowed_origins", List),
    ("cors_allowed_methods", List),
    ("cors_allowed_headers", List),
    ("cors_exposed_headers", List),
    ("cors_allow_credentials", Bool),
    ("cors_max_age", Str),
    ("max_connections", Int),
    ("max_add_bytes", Int),
];
const PROXY: &[(&str, Kind)] = &[
    ("listen_multiaddress", List),
    ("node_multiaddress", Str),
    ("node_https", Bool),
    ("log_file", Str),
    ("read_timeout", Str),
    ("read_header_timeout", Str),
    ("write_timeout", Str),
    ("idle_timeout", Str),
    ("max_header_bytes", Int),
    ("extract_headers_extra", List),
    ("extract_headers_path", Str),
    ("extract_headers_ttl", Str),
];
const IPFSHTTP: &[(&str, Kind)] = &[
    ("node_multiaddress", Str),
    ("connect_swarms_delay", Str),
    ("ipfs_request_timeout", Str),
    ("pin_timeout", Str),
    ("unpin_timeout", Str),
    ("repogc_timeout", Str),
    ("informer_trigger_interval", Int),
    ("unpin_disable", Bool),
];
const STATELESS: &[(&str, Kind)] = &[
    ("max_pin_queue_size", Int),
    ("concurrent_pins", Int),
    ("priority_pin_max_age", Str),
    ("priority_pin_max_retries", Int),
    ("max_pin_attempts", Int),
];
const PUBSUBMON: &[(&str, Kind)] = &[("check_interval", Str)];
const BALANCED: &[(&str, Kind)] = &[("allocate_by", List)];
const DISK: &[(&str, Kind)] = &[("metric_ttl", Str), ("metric_type", Str)];
const PINQUEUE: &[(&str, Kind)] = &[("metric_ttl", Str), ("weight_bucket_size", Int)];
const TAGS: &[(&str, Kind)] = &[("metric_ttl", Str), ("tags", Map)];
const METRICS: &[(&str, Kind)] = &[
    ("enable_stats", Bool),
    ("prometheus_endpoint", Str),
    ("reporting_interval", Str),
];
const TRACING: &[(&str, Kind)] = &[
    ("enable_tracing", Bool),
    ("jaeger_agent_endpoint", Str),
    ("sampling_prob", Float),
    ("service_name", Str),
];
const INTERNAL: &[(&str, Kind)] = &[
    ("transport_listen_multiaddress", Str),
    ("consensus_listen_multiaddress", Str),
    ("ipfs_connector_listen_multiaddress", Str),
    ("gateway_listen_multiaddress", Str),
    ("token_file", Str),
    ("allow_remote_internal", Bool),
    ("transport_metrics_multiaddress", Str),
    ("consensus_metrics_multiaddress", Str),
    ("ipfs_connector_metrics_multiaddress", Str),
    ("gateway_metrics_multiaddress", Str),
];

type Schema = &'static [(&'static str, Kind)];

/// (section path in service.json, env prefix, keys)
const SECTIONS: &[(&[&str], &str, Schema)] = &[
    (&["cluster"], "CLUSTER", CLUSTER),
    (&["consensus", "raft"], "CLUSTER_RAFT", RAFT),
    (&["consensus", "crdt"], "CLUSTER_CRDT", CRDT),
    (&["api", "restapi"], "CLUSTER_RESTAPI", REST),
    (&["api", "pinsvcapi"], "CLUSTER_PINSVCAPI", REST),
    (&["api", "ipfsproxy"], "CLUSTER_IPFSPROXY", PROXY),
    (
        &["ipfs_connector", "ipfshttp"],
        "CLUSTER_IPFSHTTP",
        IPFSHTTP,
    ),
    (
        &["pin_tracker", "stateless"],
        "CLUSTER_STATELESS",
        STATELESS,
    ),
    (&["monitor", "pubsubmon"], "CLUSTER_PUBSUBMON", PUBSUBMON),
    (&["allocator", "balanced"], "CLUSTER_BALANCED", BALANCED),
    (&["informer", "disk"], "CLUSTER_DISK", DISK),
    (&["informer", "pinqueue"], "CLUSTER_PINQUEUE", PINQUEUE),
    (&["informer", "tags"], "CLUSTER_TAGS", TAGS),
    (&["observations", "metrics"], "CLUSTER_METRICS", METRICS),
    (&["observations", "tracing"], "CLUSTER_TRACING", TRACING),
    (&["internal"], "CLUSTER_INTERNAL", INTERNAL),
];

/// The environment variable for a key: `<prefix>_<KEY without underscores>`.
pub fn var_name(prefix: &str, key: &str) -> String {
    format!("{prefix}_{}", key.replace('_', "").to_uppercase())
}

/// Go's strconv.ParseBool.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Why an environment variable's value does not fit the kind of its key (reported as
/// [`ConfigError::Env`], which names the variable): each variant is the kind that was
/// expected, with the value given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum EnvValueError {
    #[error("must be true or false, got {0:?}")]
    Bool(String),
    #[error("must be an integer, got {0:?}")]
    Integer(String),
    #[error("must be a number, got {0:?}")]
    Number(String),
    #[error("must be a finite number, got {0:?}")]
    Finite(String),
    #[error("expected key:value pairs separated by commas, got {0:?}")]
    Pair(String),
}

fn convert(kind: Kind, val: &str) -> std::result::Result<Value, EnvValueError> {
    let bad = |f: fn(String) -> EnvValueError| move || f(val.to_string());
    Ok(match kind {
        Str => Value::String(val.to_string()),
        Bool => Value::Bool(parse_bool(val).ok_or_else(bad(EnvValueError::Bool))?),
        Int => Value::from(
            val.trim()
                .parse::<i64>()
                .map_err(|_| bad(EnvValueError::Integer)())?,
        ),
        Float => {
            let f: f64 = val
                .trim()
                .parse()
                .map_err(|_| bad(EnvValueError::Number)())?;
            serde_json::Number::from_f64(f)
                .map(Value::Number)
                .ok_or_else(bad(EnvValueError::Finite))?
        }
        List => {
            if val.trim().is_empty() {
                Value::Array(Vec::new())
            } else {
                Value::Array(
                    val.split(',')
                        .map(|s| Value::String(s.trim().to_string()))
                        .collect(),
                )
            }
        }
        Map => {
            let mut m = Map::new();
            for pair in val.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let (k, v) = pair
                    .split_once(':')
                    .ok_or_else(|| EnvValueError::Pair(pair.to_string()))?;
                m.insert(k.to_string(), Value::String(v.to_string()));
            }
            Value::Object(m)
        }
        Nested(_) => unreachable!("nested kinds are walked, not converted"),
    })
}

fn apply_obj(
    obj: &mut Map<String, Value>,
    prefix: &str,
    keypath: &str,
    schema: &[(&str, Kind)],
    lookup: &dyn Fn(&str) -> Option<String>,
    set: &mut Vec<(String, String)>,
) -> Result<()> {
    for (key, kind) in schema {
        let var = var_name(prefix, key);
        let path = format!("{keypath}.{key}");
        if let Nested(sub) = kind {
            if let Some(Value::Object(m)) = obj.get_mut(*key) {
                apply_obj(m, &var, &path, sub, lookup, set)?;
            }
            continue;
        }
        if let Some(val) = lookup(&var) {
            let v = convert(*kind, &val).map_err(|e| ConfigError::Env {
                var: var.clone(),
                msg: e.to_string(),
            })?;
            obj.insert(key.to_string(), v);
            set.push((path, var));
        }
    }
    Ok(())
}

/// Applies overrides from `lookup` (the process environment in production).
pub(crate) fn apply(
    cfg: &mut ServiceConfig,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<()> {
    let mut v = cfg.to_value();
    let mut set = Vec::new();
    for (path, prefix, schema) in SECTIONS {
        let pointer: String = path.iter().map(|p| format!("/{p}")).collect();
        if let Some(Value::Object(m)) = v.pointer_mut(&pointer) {
            apply_obj(m, prefix, &path.join("."), schema, lookup, &mut set)?;
        }
    }
    if set.is_empty() {
        return Ok(());
    }
    let remap = |e: ConfigError| match e {
        ConfigError::Invalid { key, msg } => match set
            .iter()
            .find(|(p, _)| key == *p || key.starts_with(&format!("{p}.")))
        {
            Some((_, var)) => ConfigError::Env {
                var: var.clone(),
                msg,
            },
            None => ConfigError::Invalid { key, msg },
        },
        other => other,
    };
    let new = ServiceConfig::from_value(&v).map_err(remap)?;
    // Validation failures of overridden keys also name the variable.
    *cfg = new;
    cfg.validate_keys_from_env(&set)
}

impl ServiceConfig {
    /// Validates and, if the failing key came from an env var, names the variable.
    fn validate_keys_from_env(&self, set: &[(String, String)]) -> Result<()> {
        match self.validate() {
            Err(ConfigError::Invalid { key, msg }) => {
                if let Some((_, var)) = set.iter().find(|(p, _)| key == *p) {
                    Err(ConfigError::Env {
                        var: var.clone(),
                        msg,
                    })
                } else {
                    Ok(()) // not caused by the environment; Peer::load's validate() reports it
                }
            }
            _ => Ok(()),
        }
    }

    /// Applies `CLUSTER_*` environment overrides (see the env module). Values that are
    /// set but empty override with empty, as upstream.
    pub fn apply_env(&mut self) -> Result<()> {
        apply(self, &|k| std::env::var(k).ok())
    }

    /// `apply_env` with an explicit lookup (tests, or callers with their own environment).
    pub fn apply_env_from(&mut self, lookup: &dyn Fn(&str) -> Option<String>) -> Result<()> {
        apply(self, lookup)
    }
}
