//! Upstream's pin preparation (setupPin, PinUpdate): replication defaults and rules, expiry,
//! repin rules and pin-type sanity checks, with upstream's error messages.

use ipfs_cluster_proto::types::v1::{Pin, PinOptions, PinType};
use ipfs_cluster_runtime::{ErrorCode, ServiceError};

/// Why a pin is refused, with upstream's messages. Every one is the request's fault
/// (INVALID_ARGUMENT at the gRPC edge).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    #[error("bad pin object: the CID is empty")]
    EmptyCid,
    #[error("bad pin object: invalid CID {cid:?}: {reason}")]
    InvalidCid { cid: String, reason: String },
    #[error("cluster.replication_factor_min is wrong")]
    ReplicationMinWrong,
    #[error("cluster.replication_factor_max is wrong")]
    ReplicationMaxWrong,
    #[error("cluster.replication_factor_min and max must be -1 when one of them is")]
    ReplicationAllOrNone,
    #[error("bad replication factors: {rmin}/{rmax}")]
    ReplicationZero { rmin: i32, rmax: i32 },
    #[error("cluster.replication_factor_min is larger than max")]
    ReplicationMinAboveMax,
    #[error("pin.ExpireAt set before current time")]
    Expired,
    #[error("cannot repin CID with different tracking method, clear state with pin rm to proceed. New: {new}. Was: {was}")]
    RepinOtherType {
        new: &'static str,
        was: &'static str,
    },
    #[error("cannot repin a CID which is already pinned in recursive mode (new pin is pinned as direct). Unpin it first.")]
    RepinAsDirect,
    /// A pin type's own rule (upstream's texts, e.g. "must pin roots directly").
    #[error("{0}")]
    Type(&'static str),
    #[error("this pin type cannot be updated")]
    NotUpdatable,
}

impl ServiceError for PinError {
    fn error_code(&self) -> ErrorCode {
        ErrorCode::BadRequest
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinDefaults {
    pub replication_min: i32,
    pub replication_max: i32,
}

/// Parses a CID and returns its canonical string form (v0 base58btc, v1 base32).
pub fn normalize_cid(s: &str) -> Result<String, PinError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(PinError::EmptyCid);
    }
    cid::Cid::try_from(s)
        .map(|c| c.to_string())
        .map_err(|e| PinError::InvalidCid {
            cid: s.to_string(),
            reason: e.to_string(),
        })
}

pub fn type_name(t: i32) -> &'static str {
    match PinType::try_from(t) {
        Ok(PinType::Data) => "pin",
        Ok(PinType::Meta) => "meta-pin",
        Ok(PinType::ClusterDag) => "clusterdag-pin",
        Ok(PinType::Shard) => "shard-pin",
        _ => "bad",
    }
}

/// Upstream's replication factor validation (after 0 has become the cluster default).
pub fn check_replication(rmin: i32, rmax: i32) -> Result<(), PinError> {
    if rmin < -1 {
        return Err(PinError::ReplicationMinWrong);
    }
    if rmax < -1 {
        return Err(PinError::ReplicationMaxWrong);
    }
    if (rmin == -1) != (rmax == -1) {
        return Err(PinError::ReplicationAllOrNone);
    }
    if rmin == 0 || rmax == 0 {
        return Err(PinError::ReplicationZero { rmin, rmax });
    }
    if rmin > rmax {
        return Err(PinError::ReplicationMinAboveMax);
    }
    Ok(())
}

fn check_pin_type(pin: &Pin) -> Result<(), PinError> {
    let has_ref = !pin.reference.is_empty();
    match PinType::try_from(pin.r#type) {
        Ok(PinType::Data) if has_ref => {
            Err(PinError::Type("data pins should not reference other pins"))
        }
        Ok(PinType::Data) => Ok(()),
        Ok(PinType::Shard) if pin.max_depth != 1 => {
            Err(PinError::Type("must pin shards go depth 1"))
        }
        Ok(PinType::Shard) => Ok(()),
        Ok(PinType::ClusterDag) if pin.max_depth != 0 => {
            Err(PinError::Type("must pin roots directly"))
        }
        Ok(PinType::ClusterDag) if !has_ref => Err(PinError::Type(
            "clusterDAG pins should reference a Meta pin",
        )),
        Ok(PinType::ClusterDag) => Ok(()),
        Ok(PinType::Meta) if !pin.allocations.is_empty() => {
            Err(PinError::Type("meta pin should not specify allocations"))
        }
        Ok(PinType::Meta) if !has_ref => {
            Err(PinError::Type("metaPins should reference a ClusterDAG"))
        }
        Ok(PinType::Meta) => Ok(()),
        _ => Err(PinError::Type("unrecognized pin type")),
    }
}

/// setupPin: fills replication defaults, validates, applies repin rules, sets the timestamp.
/// `pin.cid` must already be normalised. `now_ns` is Unix time in nanoseconds: as upstream,
/// `expire_at` (whole seconds) is compared with the full current time, so an expiry of "now"
/// (this second) is already in the past.
pub fn setup_pin(
    pin: &mut Pin,
    existing: Option<&Pin>,
    defaults: PinDefaults,
    now_ns: i64,
) -> Result<(), PinError> {
    let now = now_ns.div_euclid(1_000_000_000);
    if pin.r#type == PinType::Bad as i32 {
        pin.r#type = PinType::Data as i32;
    }
    let opts = pin.options.get_or_insert_with(PinOptions::default);
    if opts.replication_factor_min == 0 {
        opts.replication_factor_min = defaults.replication_min;
    }
    if opts.replication_factor_max == 0 {
        opts.replication_factor_max = defaults.replication_max;
    }
    let (rmin, rmax) = (opts.replication_factor_min, opts.replication_factor_max);
    if rmin == -1 && rmax == -1 {
        pin.allocations.clear();
    }
    check_replication(rmin, rmax)?;
    if opts.expire_at != 0 && (opts.expire_at as i128) * 1_000_000_000 < now_ns as i128 {
        return Err(PinError::Expired);
    }
    if let Some(ex) = existing {
        if ex.r#type != pin.r#type {
            return Err(PinError::RepinOtherType {
                new: type_name(pin.r#type),
                was: type_name(ex.r#type),
            });
        }
        if ex.max_depth == -1 && pin.max_depth != -1 {
            return Err(PinError::RepinAsDirect);
        }
    }
    check_pin_type(pin)?;
    pin.timestamp = now;
    Ok(())
}

/// PinUpdate: a copy of `from` under `to`, keeping allocations, factors, mode, metadata and
/// origins; the name is replaced when given, expire_at when it is in the future.
pub fn pin_update(
    from: &Pin,
    to: &str,
    opts: Option<&PinOptions>,
    now: i64,
) -> Result<Pin, PinError> {
    if from.r#type != PinType::Data as i32 {
        return Err(PinError::NotUpdatable);
    }
    let mut p = from.clone();
    p.cid = to.to_string();
    p.timestamp = now;
    let o = p.options.get_or_insert_with(PinOptions::default);
    o.pin_update = from.cid.clone();
    o.user_allocations.clear();
    if let Some(n) = opts {
        if !n.name.is_empty() {
            o.name = n.name.clone();
        }
        if n.expire_at > now {
            o.expire_at = n.expire_at;
        }
    }
    Ok(p)
}

/// Upstream PinType bit of a proto PinType value (log2 encoding): data=2, meta=4, ...
pub fn type_bit(t: i32) -> u32 {
    if (0..=4).contains(&t) {
        1u32 << t
    } else {
        0
    }
}

pub fn type_matches(t: i32, filter: u32) -> bool {
    filter == 0 || type_bit(t) & filter != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: i64 = 1_000_000_000;

    const D: PinDefaults = PinDefaults {
        replication_min: -1,
        replication_max: -1,
    };
    const CID: &str = "QmPZ9gcCEpqKTo6aq61g2nXGUhM4iCL3ewB6LDXZCtioEB";

    fn pin(rmin: i32, rmax: i32) -> Pin {
        Pin {
            cid: CID.into(),
            r#type: PinType::Data as i32,
            max_depth: -1,
            options: Some(PinOptions {
                replication_factor_min: rmin,
                replication_factor_max: rmax,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn cid_normalisation() {
        assert_eq!(normalize_cid(&format!(" {CID} ")).unwrap(), CID);
        assert!(normalize_cid("")
            .unwrap_err()
            .to_string()
            .contains("bad pin object"));
        assert!(normalize_cid("nope")
            .unwrap_err()
            .to_string()
            .contains("invalid CID"));
    }

    #[test]
    fn defaults_and_replication_messages() {
        let mut p = pin(0, 0);
        p.allocations = vec!["x".into()];
        setup_pin(&mut p, None, D, 100 * NS).unwrap();
        let o = p.options.as_ref().unwrap();
        assert_eq!(
            (o.replication_factor_min, o.replication_factor_max),
            (-1, -1)
        );
        assert!(p.allocations.is_empty());
        assert_eq!(p.timestamp, 100);
        let err = |a, b| {
            setup_pin(&mut pin(a, b), None, D, NS)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(3, 2),
            "cluster.replication_factor_min is larger than max"
        );
        assert_eq!(
            err(-1, 2),
            "cluster.replication_factor_min and max must be -1 when one of them is"
        );
        assert_eq!(err(-2, 2), "cluster.replication_factor_min is wrong");
        assert_eq!(err(1, -5), "cluster.replication_factor_max is wrong");
        let d2 = PinDefaults {
            replication_min: 2,
            replication_max: 3,
        };
        let mut p = pin(0, 0);
        setup_pin(&mut p, None, d2, NS).unwrap();
        assert_eq!(p.options.unwrap().replication_factor_max, 3);
    }

    #[test]
    fn expiry_and_repin_rules() {
        let mut p = pin(-1, -1);
        p.options.as_mut().unwrap().expire_at = 50;
        assert_eq!(
            setup_pin(&mut p, None, D, 100 * NS)
                .unwrap_err()
                .to_string(),
            "pin.ExpireAt set before current time"
        );
        // expire-at = now as whole seconds is already past (upstream compares with the
        // full current time); the next second is still ahead.
        let mut p = pin(-1, -1);
        p.options.as_mut().unwrap().expire_at = 100;
        assert!(setup_pin(&mut p, None, D, 100 * NS + 1).is_err());
        p.options.as_mut().unwrap().expire_at = 101;
        setup_pin(&mut p, None, D, 100 * NS + 1).unwrap();
        assert_eq!(p.timestamp, 100);
        let existing = pin(-1, -1);
        let mut direct = pin(-1, -1);
        direct.max_depth = 0;
        assert!(setup_pin(&mut direct, Some(&existing), D, NS)
            .unwrap_err()
            .to_string()
            .contains("already pinned in recursive mode"));
        let mut rec = pin(-1, -1);
        setup_pin(&mut rec, Some(&direct), D, NS).unwrap();
        let mut meta = pin(-1, -1);
        meta.r#type = PinType::Meta as i32;
        meta.reference = CID.into();
        assert_eq!(
            setup_pin(&mut meta, Some(&existing), D, NS).unwrap_err().to_string(),
            "cannot repin CID with different tracking method, clear state with pin rm to proceed. New: meta-pin. Was: pin"
        );
        let mut shard = pin(-1, -1);
        shard.r#type = PinType::Shard as i32;
        assert_eq!(
            setup_pin(&mut shard, None, D, NS).unwrap_err().to_string(),
            "must pin shards go depth 1"
        );
    }

    #[test]
    fn update_copies() {
        let mut from = pin(2, 3);
        from.allocations = vec!["a".into(), "b".into()];
        let opts = PinOptions {
            name: "n".into(),
            expire_at: 500,
            user_allocations: vec!["z".into()],
            ..Default::default()
        };
        let p = pin_update(&from, "bafy", Some(&opts), 100).unwrap();
        assert_eq!(p.allocations, from.allocations);
        let o = p.options.unwrap();
        assert_eq!(
            (o.name.as_str(), o.expire_at, o.pin_update.as_str()),
            ("n", 500, CID)
        );
        assert!(o.user_allocations.is_empty());
        let mut meta = from.clone();
        meta.r#type = PinType::Meta as i32;
        assert_eq!(
            pin_update(&meta, "x", None, 1).unwrap_err().to_string(),
            "this pin type cannot be updated"
        );
    }
}
