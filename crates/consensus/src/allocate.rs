//! Allocation as upstream's allocate.go + balanced allocator: latest valid metrics per peer,
//! current/priority/candidate buckets, rmin/rmax rules, and the partition-tree round robin
//! over `allocate_by`. Runs only on the leader.

use std::collections::{HashMap, HashSet, VecDeque};

use ipfs_cluster_proto::types::v1::{Metric, Pin};

/// The peer metric store (one for every service: the runtime's), under the name the
/// allocator and crdt mode use.
pub use ipfs_cluster_runtime::peer_metrics::{now_nanos, PeerMetricStore};

pub struct AllocInput<'a> {
    pub existing: Option<&'a Pin>,
    pub rmin: i32,
    pub rmax: i32,
    pub blacklist: &'a [String],
    pub priority: &'a [String],
    /// Current raft members (peer ids).
    pub members: &'a [String],
    pub allocate_by: &'a [String],
}

/// Why a pin cannot be allocated, with upstream's messages (FAILED_PRECONDITION at the
/// gRPC edge: the cluster, not the request, is short of peers).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    #[error("bad replication factors: {rmin}/{rmax}")]
    BadReplication { rmin: i32, rmax: i32 },
    #[error("not enough peers to allocate CID. Needed at least: {needed}. Wanted at most: {wanted}. Available candidates: {available}. See logs for more info.")]
    NotEnoughPeers {
        needed: i32,
        wanted: i32,
        available: usize,
    },
}

impl ipfs_cluster_runtime::ServiceError for AllocError {
    fn error_code(&self) -> ipfs_cluster_runtime::ErrorCode {
        ipfs_cluster_runtime::ErrorCode::FailedPrecondition
    }
}

/// A cluster of one (this peer alone) needs no metrics: the only candidate is this peer,
/// and asking for more copies fails with upstream's message. `None` when the general
/// allocator decides.
pub fn single_peer(
    members: &[String],
    self_id: &str,
    rmin: i32,
    rmax: i32,
) -> Option<Result<Vec<String>, AllocError>> {
    if members.len() != 1 || members[0] != self_id || rmin <= 0 {
        return None;
    }
    Some(if rmin > 1 {
        Err(AllocError::NotEnoughPeers {
            needed: rmin,
            wanted: rmax,
            available: 1,
        })
    } else {
        Ok(members.to_vec())
    })
}

/// Returns the allocations for a pin, or upstream's error message.
/// The allocations of `pin` among `members` (raft members or crdt candidates), as both
/// consensus modes decide them: this peer alone in a one-peer cluster, else [`allocate`]
/// with the pin's replication factors and user allocations.
pub fn allocate_pin(
    pin: &Pin,
    existing: Option<&Pin>,
    blacklist: &[String],
    members: &[String],
    self_id: &str,
    allocate_by: &[String],
    peer_metrics: &PeerMetricStore,
) -> Result<Vec<String>, AllocError> {
    let o = pin.options.clone().unwrap_or_default();
    let (rmin, rmax) = (o.replication_factor_min, o.replication_factor_max);
    if let Some(r) = single_peer(members, self_id, rmin, rmax) {
        return r;
    }
    let input = AllocInput {
        existing,
        rmin,
        rmax,
        blacklist,
        priority: &o.user_allocations,
        members,
        allocate_by,
    };
    allocate(&input, peer_metrics, now_nanos())
}

pub fn allocate(
    input: &AllocInput<'_>,
    peer_metrics: &PeerMetricStore,
    now: i64,
) -> Result<Vec<String>, AllocError> {
    let (rmin, rmax) = (input.rmin, input.rmax);
    // Widened: a pin may ask for i32::MAX copies (rmin = rmax = i32::MAX passes
    // check_replication), and the sum must not overflow (tests/fuzz `gossip_metric`).
    if i64::from(rmin) + i64::from(rmax) == 0 {
        return Err(AllocError::BadReplication { rmin, rmax });
    }
    if rmin < 0 && rmax < 0 {
        return Ok(vec![]);
    }
    let current: Vec<String> = input
        .existing
        .map(|p| p.allocations.clone())
        .unwrap_or_default();
    // peer -> name -> metric, only peers holding every allocate_by metric.
    let mut by_peer: HashMap<String, HashMap<String, Metric>> = HashMap::new();
    for name in input.allocate_by {
        for (peer, m) in peer_metrics.latest(name, input.members, now) {
            by_peer.entry(peer).or_default().insert(name.clone(), m);
        }
    }
    by_peer.retain(|_, ms| input.allocate_by.iter().all(|n| ms.contains_key(n)));
    let black: HashSet<&String> = input.blacklist.iter().collect();
    let prio_set: HashSet<&String> = input.priority.iter().collect();
    let mut current_valid = Vec::new();
    let mut priority = Vec::new();
    let mut candidates = Vec::new();
    let mut peers: Vec<&String> = by_peer.keys().collect();
    peers.sort();
    for p in peers {
        if black.contains(p) {
            continue;
        }
        if current.contains(p) {
            current_valid.push(p.clone());
        } else if prio_set.contains(p) {
            priority.push(p.clone());
        } else {
            candidates.push(p.clone());
        }
    }
    // Keep the existing order of current allocations.
    current_valid.sort_by_key(|p| current.iter().position(|c| c == p));
    let needed = rmin - current_valid.len() as i32;
    let wanted = rmax - current_valid.len() as i32;
    if wanted < 0 {
        current_valid.truncate(rmax.max(0) as usize);
        return Ok(current_valid);
    }
    if needed <= 0 {
        return Ok(current);
    }
    let not_enough = |available: usize| AllocError::NotEnoughPeers {
        needed,
        wanted,
        available,
    };
    let available = priority.len() + candidates.len();
    if (available as i32) < needed {
        tracing::warn!(needed, wanted, available, "not enough peers to allocate");
        return Err(not_enough(available));
    }
    let mut ordered = balanced(&priority, &by_peer, input.allocate_by);
    ordered.extend(balanced(&candidates, &by_peer, input.allocate_by));
    if (ordered.len() as i32) < needed {
        return Err(not_enough(ordered.len()));
    }
    ordered.truncate(wanted as usize);
    current_valid.extend(ordered);
    Ok(current_valid)
}

struct Part {
    value: String,
    weight: i64,
    agg: i64,
    peers: VecDeque<String>,
    subs: Vec<Part>,
    cursor: usize,
}

impl Part {
    fn next(&mut self) -> Option<String> {
        if self.subs.is_empty() {
            return self.peers.pop_front();
        }
        let n = self.subs.len();
        for k in 0..n {
            let i = (self.cursor + k) % n;
            if let Some(p) = self.subs[i].next() {
                self.cursor = i + 1;
                return Some(p);
            }
        }
        None
    }
}

fn build(
    peers: &[String],
    by_peer: &HashMap<String, HashMap<String, Metric>>,
    by: &[String],
) -> Vec<Part> {
    let Some(name) = by.first() else {
        return vec![];
    };
    let mut groups: Vec<Part> = Vec::new();
    for p in peers {
        let Some(m) = by_peer.get(p).and_then(|ms| ms.get(name)) else {
            continue;
        };
        if m.partitionable {
            if let Some(g) = groups.iter_mut().find(|g| g.value == m.value) {
                // Weights come from other peers' gossip: saturate, never overflow
                // (tests/fuzz `gossip_metric`, corpus regress_weight_overflow).
                g.weight = g.weight.saturating_add(m.weight);
                g.peers.push_back(p.clone());
                continue;
            }
        }
        groups.push(Part {
            value: m.value.clone(),
            weight: m.weight,
            agg: 0,
            peers: VecDeque::from([p.clone()]),
            subs: vec![],
            cursor: 0,
        });
    }
    for g in &mut groups {
        let ps: Vec<String> = g.peers.iter().cloned().collect();
        g.subs = build(&ps, by_peer, &by[1..]);
        g.agg = g
            .subs
            .iter()
            .fold(g.weight, |acc, s| acc.saturating_add(s.agg));
    }
    groups.sort_by(|a, b| {
        b.weight
            .cmp(&a.weight)
            .then(b.agg.cmp(&a.agg))
            .then(a.value.cmp(&b.value))
            .then(a.peers.cmp(&b.peers))
    });
    groups
}

/// The balanced allocator's order for a set of peers.
pub fn balanced(
    peers: &[String],
    by_peer: &HashMap<String, HashMap<String, Metric>>,
    by: &[String],
) -> Vec<String> {
    let mut root = Part {
        value: String::new(),
        weight: 0,
        agg: 0,
        peers: VecDeque::new(),
        subs: build(peers, by_peer, by),
        cursor: 0,
    };
    let mut out = Vec::new();
    while let Some(p) = root.next() {
        out.push(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, peer: &str, value: &str, weight: i64, partitionable: bool) -> Metric {
        Metric {
            name: name.into(),
            peer: peer.into(),
            value: value.into(),
            weight,
            partitionable,
            valid: true,
            expire: i64::MAX,
            received_at: 0,
        }
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn balanced_spreads_across_groups_by_freespace() {
        let ms = PeerMetricStore::default();
        for (p, g, f) in [
            ("p1", "a", 10),
            ("p2", "a", 50),
            ("p3", "b", 30),
            ("p4", "b", 20),
            ("p5", "c", 5),
        ] {
            ms.add(m("tag:group", p, g, 0, true));
            ms.add(m("freespace", p, &f.to_string(), f, false));
        }
        let members = s(&["p1", "p2", "p3", "p4", "p5", "p6"]);
        let by = s(&["tag:group", "freespace"]);
        let input = AllocInput {
            existing: None,
            rmin: 1,
            rmax: 5,
            blacklist: &[],
            priority: &[],
            members: &members,
            allocate_by: &by,
        };
        // Groups by aggregated free space: a(60) > b(50) > c(5); within a group most free first.
        assert_eq!(
            allocate(&input, &ms, 0).unwrap(),
            s(&["p2", "p3", "p5", "p1", "p4"])
        );
        // p6 has no metrics: 4 needed of 5 available works, 6 does not.
        let input = AllocInput {
            rmin: 6,
            rmax: 6,
            ..input
        };
        let e = allocate(&input, &ms, 0).unwrap_err().to_string();
        assert!(e.starts_with("not enough peers to allocate CID. Needed at least: 6. Wanted at most: 6. Available candidates: 5."), "{e}");
    }

    #[test]
    fn rules_for_current_priority_and_blacklist() {
        let ms = PeerMetricStore::default();
        for (p, f) in [("p1", 10), ("p2", 50), ("p3", 30)] {
            ms.add(m("freespace", p, &f.to_string(), f, false));
        }
        let mut dead = m("freespace", "p4", "99", 99, false);
        dead.expire = 5;
        ms.add(dead);
        let members = s(&["p1", "p2", "p3", "p4"]);
        let by = s(&["freespace"]);
        let base = AllocInput {
            existing: None,
            rmin: -1,
            rmax: -1,
            blacklist: &[],
            priority: &[],
            members: &members,
            allocate_by: &by,
        };
        assert!(allocate(&base, &ms, 10).unwrap().is_empty());
        assert!(allocate(
            &AllocInput {
                rmin: 0,
                rmax: 0,
                ..base
            },
            &ms,
            10
        )
        .unwrap_err()
        .to_string()
        .contains("bad replication factors"));
        let prio = s(&["p1"]);
        let got = allocate(
            &AllocInput {
                rmin: 2,
                rmax: 2,
                priority: &prio,
                ..base
            },
            &ms,
            10,
        )
        .unwrap();
        assert_eq!(got, s(&["p1", "p2"]));
        let bl = s(&["p2"]);
        assert_eq!(
            allocate(
                &AllocInput {
                    rmin: 1,
                    rmax: 1,
                    blacklist: &bl,
                    ..base
                },
                &ms,
                10
            )
            .unwrap(),
            s(&["p3"])
        );
        // Above rmin with a dead allocation: unchanged.
        let existing = Pin {
            allocations: s(&["p4", "p1"]),
            ..Default::default()
        };
        let got = allocate(
            &AllocInput {
                rmin: 1,
                rmax: 3,
                existing: Some(&existing),
                ..base
            },
            &ms,
            10,
        )
        .unwrap();
        assert_eq!(got, s(&["p4", "p1"]));
        // Below rmin: dead dropped, refilled.
        let got = allocate(
            &AllocInput {
                rmin: 2,
                rmax: 2,
                existing: Some(&existing),
                ..base
            },
            &ms,
            10,
        )
        .unwrap();
        assert_eq!(got, s(&["p1", "p2"]));
        // rmax lowered: shrink.
        let ex = Pin {
            allocations: s(&["p1", "p2", "p3"]),
            ..Default::default()
        };
        assert_eq!(
            allocate(
                &AllocInput {
                    rmin: 1,
                    rmax: 2,
                    existing: Some(&ex),
                    ..base
                },
                &ms,
                10
            )
            .unwrap(),
            s(&["p1", "p2"])
        );
    }

    /// Found by tests/fuzz `gossip_metric` (corpus regress_weight_overflow and
    /// regress_replication_max): weights from gossip and huge replication factors must not
    /// overflow (a panic in debug builds, a wrapped order in release ones).
    #[test]
    fn huge_weights_and_factors_do_not_overflow() {
        let ms = PeerMetricStore::default();
        ms.add(m("tag:x", "p1", "a", i64::MAX, true));
        ms.add(m("tag:x", "p2", "a", i64::MAX, true));
        ms.add(m("tag:x", "p3", "b", i64::MIN, true));
        let members = s(&["p1", "p2", "p3"]);
        let by = s(&["tag:x"]);
        let input = AllocInput {
            existing: None,
            rmin: 1,
            rmax: 3,
            blacklist: &[],
            priority: &[],
            members: &members,
            allocate_by: &by,
        };
        assert_eq!(allocate(&input, &ms, 0).unwrap(), s(&["p1", "p3", "p2"]));
        let input = AllocInput {
            rmin: i32::MAX,
            rmax: i32::MAX,
            ..input
        };
        assert!(allocate(&input, &ms, 0)
            .unwrap_err()
            .to_string()
            .starts_with("not enough peers to allocate CID"));
    }
}
