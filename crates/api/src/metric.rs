//! Metric (informer measurements, `GET /monitor/metrics/<name>`) and Alert (a metric that
//! expired, `GET /health/alerts`). Times here are Unix nanoseconds on the wire too.
use serde::{Deserialize, Serialize};

use crate::de::nullable;
use crate::Time;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Metric {
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub peer: String,
    #[serde(default, deserialize_with = "nullable")]
    pub value: String,
    /// Unix nanoseconds.
    #[serde(default, deserialize_with = "nullable")]
    pub expire: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub valid: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub weight: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub partitionable: bool,
    /// Unix nanoseconds.
    #[serde(default, deserialize_with = "nullable")]
    pub received_at: i64,
}

impl Metric {
    /// Expired at `now_nanos` (Unix nanoseconds).
    pub fn expired(&self, now_nanos: i64) -> bool {
        self.expire <= now_nanos
    }
    /// Valid and not expired.
    pub fn usable(&self, now_nanos: i64) -> bool {
        self.valid && !self.expired(now_nanos)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    #[serde(flatten)]
    pub metric: Metric,
    #[serde(default)]
    pub triggered_at: Time,
}

/// The JSON carried in a `ping` metric's value (all three fields omitempty).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PingValue {
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub peer_name: String,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub ipfs_id: String,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ipfs_addresses: Vec<String>,
}
