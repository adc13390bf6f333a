//! The small enums of the API with upstream's wire names: TrackerStatus (bit flags, the
//! filter parser and its odd match rule), PinType and PinMode. Unknown names decode to a
//! default variant instead of failing, as upstream does.
use std::fmt;

use crate::de::string_serde;

/// One peer's tracking state for a CID. The discriminants are upstream's bit values.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
#[repr(u32)]
pub enum TrackerStatus {
    #[default]
    Undefined = 0,
    ClusterError = 2,
    PinError = 4,
    UnpinError = 8,
    Pinned = 16,
    Pinning = 32,
    Unpinning = 64,
    Unpinned = 128,
    Remote = 256,
    PinQueued = 512,
    UnpinQueued = 1024,
    Sharded = 2048,
    UnexpectedlyUnpinned = 4096,
}

impl TrackerStatus {
    /// Every status, in upstream's table order.
    pub const ALL: [TrackerStatus; 13] = [
        TrackerStatus::Undefined,
        TrackerStatus::ClusterError,
        TrackerStatus::PinError,
        TrackerStatus::UnpinError,
        TrackerStatus::Pinned,
        TrackerStatus::Pinning,
        TrackerStatus::Unpinning,
        TrackerStatus::Unpinned,
        TrackerStatus::Remote,
        TrackerStatus::PinQueued,
        TrackerStatus::UnpinQueued,
        TrackerStatus::Sharded,
        TrackerStatus::UnexpectedlyUnpinned,
    ];

    pub fn bits(self) -> u32 {
        self as u32
    }

    /// The status with exactly these bits; anything else is `Undefined`.
    pub fn from_bits(bits: u32) -> TrackerStatus {
        Self::ALL
            .into_iter()
            .find(|s| s.bits() == bits)
            .unwrap_or_default()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TrackerStatus::Undefined => "undefined",
            TrackerStatus::ClusterError => "cluster_error",
            TrackerStatus::PinError => "pin_error",
            TrackerStatus::UnpinError => "unpin_error",
            TrackerStatus::Pinned => "pinned",
            TrackerStatus::Pinning => "pinning",
            TrackerStatus::Unpinning => "unpinning",
            TrackerStatus::Unpinned => "unpinned",
            TrackerStatus::Remote => "remote",
            TrackerStatus::PinQueued => "pin_queued",
            TrackerStatus::UnpinQueued => "unpin_queued",
            TrackerStatus::Sharded => "sharded",
            TrackerStatus::UnexpectedlyUnpinned => "unexpectedly_unpinned",
        }
    }

    /// Unknown names (and the composites `error`/`queued`) give `Undefined`, as upstream.
    pub fn from_name(s: &str) -> TrackerStatus {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .unwrap_or_default()
    }

    /// Upstream's Match: the filter is 0, or this status is `undefined` (which matches
    /// every filter), or they share a bit.
    pub fn matches(self, filter: TrackerStatusFilter) -> bool {
        filter.0 == 0 || self.bits() == 0 || self.bits() & filter.0 != 0
    }

    pub fn is_error(self) -> bool {
        self.bits() & TrackerStatusFilter::ERROR.0 != 0
    }
}

impl fmt::Display for TrackerStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

string_serde!(TrackerStatus);

/// An OR of TrackerStatus bits, as used by `?filter=` on `GET /pins`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct TrackerStatusFilter(pub u32);

impl TrackerStatusFilter {
    /// Matches everything.
    pub const ANY: TrackerStatusFilter = TrackerStatusFilter(0);
    /// `error` = cluster_error | pin_error | unpin_error.
    pub const ERROR: TrackerStatusFilter = TrackerStatusFilter(2 | 4 | 8);
    /// `queued` = pin_queued | unpin_queued.
    pub const QUEUED: TrackerStatusFilter = TrackerStatusFilter(512 | 1024);

    /// Parses a comma-separated list of names (the composites `error` and `queued`
    /// included), in any order. Unknown names and blanks are ignored, as upstream, so a
    /// list of only unknown names is the empty filter, which matches everything.
    pub fn parse(s: &str) -> TrackerStatusFilter {
        let mut bits = 0;
        for name in s.split(',').map(str::trim) {
            bits |= match name {
                "error" => Self::ERROR.0,
                "queued" => Self::QUEUED.0,
                other => TrackerStatus::from_name(other).bits(),
            };
        }
        TrackerStatusFilter(bits)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Upstream's Match rule, seen from the filter.
    pub fn matches(self, status: TrackerStatus) -> bool {
        status.matches(self)
    }

    /// How the Go client writes a filter: a single known status, or exactly `error` or
    /// `queued`, by name; any other value as a comma list of every name (composites
    /// included) sharing a bit with it. Go's order is random map order; ours is the
    /// table order with the composites last. The empty filter is "".
    pub fn to_query_string(self) -> String {
        if self.0 == 0 {
            return String::new();
        }
        if self == Self::ERROR {
            return "error".into();
        }
        if self == Self::QUEUED {
            return "queued".into();
        }
        let exact = TrackerStatus::from_bits(self.0);
        if exact != TrackerStatus::Undefined {
            return exact.as_str().into();
        }
        let mut names: Vec<&str> = TrackerStatus::ALL
            .into_iter()
            .filter(|s| s.bits() & self.0 != 0)
            .map(TrackerStatus::as_str)
            .collect();
        if self.0 & Self::ERROR.0 != 0 {
            names.push("error");
        }
        if self.0 & Self::QUEUED.0 != 0 {
            names.push("queued");
        }
        names.join(",")
    }
}

impl From<TrackerStatus> for TrackerStatusFilter {
    fn from(s: TrackerStatus) -> Self {
        TrackerStatusFilter(s.bits())
    }
}

impl std::ops::BitOr for TrackerStatusFilter {
    type Output = TrackerStatusFilter;
    fn bitor(self, rhs: Self) -> Self {
        TrackerStatusFilter(self.0 | rhs.0)
    }
}

/// How a pin is tracked. Bits as upstream: bad=1, pin=2, meta=4, clusterdag=8, shard=16.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
#[repr(u32)]
pub enum PinType {
    #[default]
    Bad = 1,
    Data = 2,
    Meta = 4,
    ClusterDag = 8,
    Shard = 16,
}

impl PinType {
    pub fn bits(self) -> u32 {
        self as u32
    }
    pub fn as_str(self) -> &'static str {
        match self {
            PinType::Bad => "bad-type",
            PinType::Data => "pin",
            PinType::Meta => "meta-pin",
            PinType::ClusterDag => "clusterdag-pin",
            PinType::Shard => "shard-pin",
        }
    }
    /// Unknown names give `Bad`, as upstream.
    pub fn from_name(s: &str) -> PinType {
        match s {
            "pin" => PinType::Data,
            "meta-pin" => PinType::Meta,
            "clusterdag-pin" => PinType::ClusterDag,
            "shard-pin" => PinType::Shard,
            _ => PinType::Bad,
        }
    }
}

impl fmt::Display for PinType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

string_serde!(PinType);

/// An OR of PinType bits (`?filter=` on `GET /allocations`; `all` = pin|meta|clusterdag|shard).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct PinTypeFilter(pub u32);

impl PinTypeFilter {
    pub const ALL: PinTypeFilter = PinTypeFilter(2 | 4 | 8 | 16);

    /// Comma list of `pin`, `meta-pin`, `clusterdag-pin`, `shard-pin`, `all`; other names
    /// are ignored (they would only add the bad-type bit, which no stored pin has).
    pub fn parse(s: &str) -> PinTypeFilter {
        let mut bits = 0;
        for name in s.split(',').map(str::trim) {
            bits |= match name {
                "all" => Self::ALL.0,
                other => match PinType::from_name(other) {
                    PinType::Bad => 0,
                    t => t.bits(),
                },
            };
        }
        PinTypeFilter(bits)
    }
    pub fn matches(self, t: PinType) -> bool {
        self.0 & t.bits() != 0
    }
}

/// `recursive` or `direct`; any other name decodes as recursive.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum PinMode {
    #[default]
    Recursive,
    Direct,
}

impl PinMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PinMode::Recursive => "recursive",
            PinMode::Direct => "direct",
        }
    }
    pub fn from_name(s: &str) -> PinMode {
        match s {
            "direct" => PinMode::Direct,
            _ => PinMode::Recursive,
        }
    }
    /// Upstream: max_depth 0 is direct, anything else recursive.
    pub fn from_max_depth(d: i32) -> PinMode {
        if d == 0 {
            PinMode::Direct
        } else {
            PinMode::Recursive
        }
    }
    /// -1 (unlimited) for recursive, 0 for direct.
    pub fn max_depth(self) -> i32 {
        match self {
            PinMode::Recursive => -1,
            PinMode::Direct => 0,
        }
    }
}

impl fmt::Display for PinMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

string_serde!(PinMode);

#[cfg(test)]
mod tests {
    use super::*;
    use TrackerStatus as S;

    #[test]
    fn names_round_trip() {
        for s in S::ALL {
            assert_eq!(S::from_name(s.as_str()), s);
            assert_eq!(S::from_bits(s.bits()), s);
            let j = serde_json::to_string(&s).unwrap();
            assert_eq!(j, format!("\"{}\"", s.as_str()));
            assert_eq!(serde_json::from_str::<S>(&j).unwrap(), s);
        }
        assert_eq!(
            serde_json::from_str::<S>("\"bogus\"").unwrap(),
            S::Undefined
        );
        assert_eq!(serde_json::from_str::<S>("null").unwrap(), S::Undefined);
    }

    #[test]
    fn filter_parse() {
        assert_eq!(TrackerStatusFilter::parse(""), TrackerStatusFilter::ANY);
        assert_eq!(TrackerStatusFilter::parse("pinned").0, 16);
        assert_eq!(TrackerStatusFilter::parse("error").0, 14);
        assert_eq!(TrackerStatusFilter::parse("queued").0, 1536);
        assert_eq!(TrackerStatusFilter::parse("pinned,pin_error").0, 20);
        // what the Go client sends for pinned|pin_error, in some order: widened to all errors
        assert_eq!(TrackerStatusFilter::parse("pin_error,error,pinned").0, 30);
        assert_eq!(TrackerStatusFilter::parse("pinned,error,pin_error").0, 30);
        assert_eq!(TrackerStatusFilter::parse("nonsense,other").0, 0);
        assert_eq!(TrackerStatusFilter::parse("pinned, remote").0, 16 | 256);
    }

    #[test]
    fn match_rule() {
        let f = TrackerStatusFilter::parse("pinned");
        assert!(S::Pinned.matches(f));
        assert!(!S::Remote.matches(f));
        assert!(S::Undefined.matches(f), "undefined matches every filter");
        assert!(S::Remote.matches(TrackerStatusFilter::ANY));
        assert!(S::PinError.matches(TrackerStatusFilter::ERROR));
        assert!(S::ClusterError.matches(TrackerStatusFilter::ERROR));
        assert!(!S::PinQueued.matches(TrackerStatusFilter::ERROR));
        assert!(S::UnpinQueued.matches(TrackerStatusFilter::QUEUED));
        assert!(f.matches(S::Pinned));
    }

    #[test]
    fn filter_to_query_string() {
        assert_eq!(TrackerStatusFilter::ANY.to_query_string(), "");
        assert_eq!(
            TrackerStatusFilter::parse("pinned").to_query_string(),
            "pinned"
        );
        assert_eq!(TrackerStatusFilter::ERROR.to_query_string(), "error");
        assert_eq!(TrackerStatusFilter::QUEUED.to_query_string(), "queued");
        let q = TrackerStatusFilter::parse("pinned,pin_error").to_query_string();
        assert_eq!(q, "pin_error,pinned,error");
        assert_eq!(TrackerStatusFilter::parse(&q).0, 30);
        let q = TrackerStatusFilter::parse("pin_queued,remote").to_query_string();
        assert_eq!(q, "remote,pin_queued,queued");
    }

    #[test]
    fn pin_type_and_mode() {
        for t in [
            PinType::Data,
            PinType::Meta,
            PinType::ClusterDag,
            PinType::Shard,
        ] {
            assert_eq!(PinType::from_name(t.as_str()), t);
        }
        assert_eq!(PinType::from_name("weird"), PinType::Bad);
        assert_eq!(serde_json::to_string(&PinType::Data).unwrap(), "\"pin\"");
        assert_eq!(
            serde_json::from_str::<PinType>("\"x\"").unwrap(),
            PinType::Bad
        );
        assert_eq!(PinMode::from_name("direct"), PinMode::Direct);
        assert_eq!(PinMode::from_name("DIRECT"), PinMode::Recursive);
        assert_eq!(
            serde_json::from_str::<PinMode>("\"xx\"").unwrap(),
            PinMode::Recursive
        );
        assert_eq!(PinMode::from_max_depth(0), PinMode::Direct);
        assert_eq!(PinMode::from_max_depth(-1), PinMode::Recursive);
        assert_eq!(PinMode::from_max_depth(1), PinMode::Recursive);
        let f = PinTypeFilter::parse("pin,shard-pin");
        assert!(f.matches(PinType::Data) && f.matches(PinType::Shard));
        assert!(!f.matches(PinType::Meta));
        assert!(PinTypeFilter::parse("all").matches(PinType::Meta));
    }
}
