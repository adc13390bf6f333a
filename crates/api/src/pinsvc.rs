//! Objects of the IPFS Pinning Services API as upstream's `api/pinsvcapi` serves them:
//! PsaPin, PinStatus, PinResults (the spec's PinList), PsaError, and the mapping from a
//! cluster-wide GlobalPinInfo to a pinning-service status.
use std::collections::BTreeMap;

use multiaddr::Multiaddr;
use serde::{Deserialize, Deserializer, Serialize};

use crate::de::nullable;
use crate::{Cid, GlobalPinInfo, NoValidFilter, Time, TrackerStatus, TrackerStatusFilter};

/// Upstream checks the name on the raw JSON token, quotes included: more than 257 bytes.
const MAX_NAME_TOKEN: usize = 257;

/// The error upstream gives for a too-long pin name.
pub const NAME_TOO_LONG: &str = "pin name is over 255 chars";

fn checked_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let name: String = nullable(d)?;
    // The raw token is not available through serde; its re-encoded length is (equal to it
    // for every name that is not written with needless escapes).
    let token_len = serde_json::to_string(&name).map(|s| s.len()).unwrap_or(0);
    if token_len > MAX_NAME_TOKEN {
        return Err(serde::de::Error::custom(NAME_TOO_LONG));
    }
    Ok(name)
}

/// The pin object of the Pinning Services API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PsaPin {
    /// `None` when the request body had no (or a null) `cid`: upstream then answers an
    /// empty 200 without pinning.
    #[serde(default)]
    pub cid: Option<Cid>,
    #[serde(
        default,
        deserialize_with = "checked_name",
        skip_serializing_if = "String::is_empty"
    )]
    pub name: String,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub origins: Vec<Multiaddr>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub meta: BTreeMap<String, String>,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum PsaStatus {
    Queued,
    Pinned,
    Pinning,
    Failed,
}

impl PsaStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PsaStatus::Queued => "queued",
            PsaStatus::Pinned => "pinned",
            PsaStatus::Pinning => "pinning",
            PsaStatus::Failed => "failed",
        }
    }

    pub fn from_name(s: &str) -> Option<PsaStatus> {
        match s {
            "queued" => Some(PsaStatus::Queued),
            "pinned" => Some(PsaStatus::Pinned),
            "pinning" => Some(PsaStatus::Pinning),
            "failed" => Some(PsaStatus::Failed),
            _ => None,
        }
    }

    /// The tracker statuses a pinning-service status stands for.
    pub fn tracker_filter(self) -> TrackerStatusFilter {
        match self {
            PsaStatus::Queued => TrackerStatus::PinQueued.into(),
            PsaStatus::Pinned => TrackerStatus::Pinned.into(),
            PsaStatus::Pinning => TrackerStatus::Pinning.into(),
            PsaStatus::Failed => TrackerStatusFilter::ERROR,
        }
    }

    /// Parses the `status` list parameter of `GET /pins`. Empty means failed, queued,
    /// pinned and pinning. A non-empty value with no known name is upstream's error
    /// `no valid filter` (the gateway prefixes `error decoding 'status' query param: `).
    pub fn parse_filter(s: &str) -> Result<TrackerStatusFilter, NoValidFilter> {
        if s.is_empty() {
            return Ok([
                PsaStatus::Failed,
                PsaStatus::Queued,
                PsaStatus::Pinned,
                PsaStatus::Pinning,
            ]
            .into_iter()
            .fold(TrackerStatusFilter::ANY, |f, st| f | st.tracker_filter()));
        }
        let mut f = TrackerStatusFilter::ANY;
        let mut any = false;
        for st in s.split(',').filter_map(|n| PsaStatus::from_name(n.trim())) {
            f = f | st.tracker_filter();
            any = true;
        }
        if any {
            Ok(f)
        } else {
            Err(NoValidFilter)
        }
    }

    /// Upstream's mapping of a cluster-wide status: OR every peer's status; any error bit
    /// (or an all-zero mask, through the undefined match rule) is failed; then
    /// pin_queued is queued, pinning is pinning, pinned is pinned. `None` is upstream's
    /// undefined: such items are hidden from lists and give 404 on get.
    pub fn from_global(g: &GlobalPinInfo) -> Option<PsaStatus> {
        let mask = g.peer_map.values().fold(0u32, |m, s| m | s.status.bits());
        if mask == 0 || mask & TrackerStatusFilter::ERROR.0 != 0 {
            Some(PsaStatus::Failed)
        } else if mask & TrackerStatus::PinQueued.bits() != 0 {
            Some(PsaStatus::Queued)
        } else if mask & TrackerStatus::Pinning.bits() != 0 {
            Some(PsaStatus::Pinning)
        } else if mask & TrackerStatus::Pinned.bits() != 0 {
            Some(PsaStatus::Pinned)
        } else {
            None
        }
    }
}

impl Serialize for PsaStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for PsaStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PsaStatus::from_name(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown pin status {s:?}: expected queued, pinned, pinning or failed"
            ))
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinStatus {
    /// Upstream uses the CID string as the request ID.
    pub requestid: String,
    pub status: PsaStatus,
    #[serde(default)]
    pub created: Time,
    pub pin: PsaPin,
    #[serde(default, deserialize_with = "nullable")]
    pub delegates: Vec<Multiaddr>,
    #[serde(default, deserialize_with = "nullable")]
    pub info: BTreeMap<String, String>,
}

impl PinStatus {
    /// The `info` map upstream attaches to every PinStatus.
    pub fn upstream_info() -> BTreeMap<String, String> {
        [
            ("source", "IPFS cluster API"),
            ("warning1", "CID used for requestID. Conflicts possible"),
            ("warning2", "experimental"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

/// The spec's PinResults (upstream PinList).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PinResults {
    #[serde(default, deserialize_with = "nullable")]
    pub count: u64,
    #[serde(default, deserialize_with = "nullable")]
    pub results: Vec<PinStatus>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PsaErrorReason {
    #[serde(default, deserialize_with = "nullable")]
    pub reason: String,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub details: String,
}

/// `{"error":{"reason":"pin not found"}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PsaError {
    pub error: PsaErrorReason,
}

impl PsaError {
    pub fn new(reason: impl Into<String>) -> PsaError {
        PsaError {
            error: PsaErrorReason {
                reason: reason.into(),
                details: String::new(),
            },
        }
    }
}
