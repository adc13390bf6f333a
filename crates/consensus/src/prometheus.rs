//! The consensus service's Prometheus families (docs/operations.md, Observability), refreshed at
//! scrape time from openraft's metrics watch and the store's applied state (the same
//! sources as `Consensus.Stats`).

use std::sync::Arc;

use crate::node::Node;
use ipfs_cluster_observability::{prometheus_client::metrics::gauge::Gauge, Metrics};

pub fn register(m: &Metrics, node: Arc<Node>) {
    let g = |name: &str, help: &str| {
        let g: Gauge = Gauge::default();
        m.register(name, help, g.clone());
        g
    };
    let pins = g("pins", "Pins in the shared state (upstream cluster_pins)");
    let term = g("raft_term", "Current raft term");
    let commit = g(
        "raft_commit_index",
        "Highest raft log index known committed",
    );
    let applied = g(
        "raft_applied_index",
        "Highest raft log index applied to the pinset",
    );
    let leader = g("raft_is_leader", "1 when this peer is the raft leader");
    let members = g("raft_members", "Voters in the raft configuration");
    m.on_scrape(move || {
        let node = node.clone();
        let (pins, term, commit, applied, leader, members) = (
            pins.clone(),
            term.clone(),
            commit.clone(),
            applied.clone(),
            leader.clone(),
            members.clone(),
        );
        Box::pin(async move {
            {
                let rm = node.raft.metrics().borrow().clone();
                term.set(rm.current_term as i64);
                leader.set(i64::from(rm.current_leader == Some(rm.id)));
                members.set(rm.membership_config.membership().voter_ids().count() as i64);
            }
            match node.store.applied_state().await {
                Ok(st) => {
                    pins.set(st.pins as i64);
                    applied.set(st.applied.map(|l| l.index).unwrap_or(0) as i64);
                    commit.set(st.committed.max(st.applied).map(|l| l.index).unwrap_or(0) as i64);
                }
                Err(e) => tracing::warn!(error = %e, "metrics: reading the applied state failed"),
            }
        })
    });
}
