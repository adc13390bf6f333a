//! The leader's background duties: removing members that `trusted_peers` does not list,
//! re-allocating the pins of peers that stopped sending metrics (`vacate`), and expiring
//! pins whose `expire_at` passed.

use super::*;

impl Node {
    /// On the leader: removes members that `trusted_peers` does not list (revocation).
    async fn remove_untrusted(&self) {
        let Some(t) = &self.opts.trusted_peers else {
            return;
        };
        let m = self.raft.metrics().borrow().membership_config.clone();
        let untrusted: Vec<String> = m
            .membership()
            .nodes()
            .map(|(_, n)| n.peer_id.clone())
            .filter(|p| !t.contains(p) && *p != self.opts.peer_id)
            .collect();
        for peer in untrusted {
            tracing::warn!(%peer, "removing a member that is not in consensus.raft.trusted_peers");
            if let Err(e) = self.remove_here(&peer).await {
                tracing::warn!(%peer, error = %e.message(), "could not remove an untrusted member (retrying later)");
            }
        }
    }

    /// Background duties: notice removal; on the leader, remove expired pins.
    pub fn spawn_background(self: &Arc<Self>) {
        let node = self.clone();
        tokio::spawn(async move {
            let mut was_member = false;
            loop {
                tokio::time::sleep(node.opts.peer_watch_interval).await;
                let m = node.raft.metrics().borrow().membership_config.clone();
                let member = m.membership().get_node(&node.id).is_some();
                if member {
                    was_member = true;
                } else if was_member {
                    tracing::warn!("this peer was removed from the cluster; shutting down");
                    let _ = node.removed.send(true);
                    return;
                }
            }
        });
        if !self.opts.disable_repinning {
            let node = self.clone();
            tokio::spawn(async move {
                let mut alerted = BTreeSet::new();
                loop {
                    tokio::time::sleep(node.opts.check_interval).await;
                    if node.raft.metrics().borrow().current_leader == Some(node.id) {
                        node.check_dead_peers(&mut alerted).await;
                    } else {
                        alerted.clear();
                    }
                }
            });
        }
        if self.opts.trusted_peers.is_some() {
            let node = self.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(node.opts.peer_watch_interval).await;
                    if node.raft.metrics().borrow().current_leader == Some(node.id) {
                        node.remove_untrusted().await;
                    }
                }
            });
        }
        let node = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(node.opts.state_sync_interval).await;
                if node.raft.metrics().borrow().current_leader != Some(node.id) {
                    continue;
                }
                if let Err(e) = node.expire_pins().await {
                    tracing::warn!(error = %e.message(), "removing expired pins");
                }
            }
        });
    }

    /// Re-allocates every pin allocated to `peer` with `peer` blacklisted (upstream's
    /// repinFromPeer / vacatePeer). Pins whose other allocations still meet rmin keep their
    /// allocations; a pin is only re-committed when its allocations change.
    pub async fn vacate(&self, peer: &str) -> Result<usize, Error> {
        let mut rx = self.store.list(0, 256);
        let mut cids = Vec::new();
        while let Some(p) = rx.recv().await {
            let p = p.map_err(|e| Error::internal(e.to_string()))?;
            if p.allocations.iter().any(|a| a == peer) {
                cids.push(p.cid);
            }
        }
        let blacklist = [peer.to_string()];
        let mut changed = 0;
        for cid in cids {
            let Some(existing) = self.get(&cid).await? else {
                continue;
            };
            let mut p = existing.clone();
            p.allocations.clear();
            match self.allocate_for(&p, Some(&existing), &blacklist) {
                Ok(a) if a != existing.allocations => {
                    p.allocations = a;
                    p.timestamp = now_secs();
                    self.write(PinOp::Pin(PinBytes::encode(&p))).await?;
                    changed += 1;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(%cid, %peer, error = %e, "cannot re-allocate pin")
                }
            }
        }
        Ok(changed)
    }

    /// One pass of the leader's failure check: peers whose `ping` metric expired get their
    /// pins re-allocated (once per failure; a fresh ping re-arms it).
    pub async fn check_dead_peers(&self, alerted: &mut BTreeSet<String>) -> usize {
        let members: Vec<String> = self
            .member_ids()
            .into_iter()
            .filter(|p| *p != self.opts.peer_id)
            .collect();
        let dead = self.peer_metrics.expired("ping", &members, now_nanos());
        alerted.retain(|p| dead.contains(p));
        let mut n = 0;
        for p in dead {
            if !alerted.insert(p.clone()) {
                continue;
            }
            tracing::warn!(peer = %p, "peer's ping metric expired; re-allocating its pins");
            match self.vacate(&p).await {
                Ok(k) => n += k,
                Err(e) => tracing::warn!(peer = %p, error = %e.message(), "re-allocating pins"),
            }
        }
        n
    }

    /// Unpins every pin whose expire_at has passed (leader only).
    pub async fn expire_pins(&self) -> Result<usize, Error> {
        let now = now_secs();
        let mut rx = self.store.list(0, 256);
        let mut expired = Vec::new();
        while let Some(p) = rx.recv().await {
            let p = p.map_err(|e| Error::internal(e.to_string()))?;
            if p.options
                .as_ref()
                .is_some_and(|o| o.expire_at != 0 && o.expire_at <= now)
            {
                expired.push(p.cid);
            }
        }
        let n = expired.len();
        for cid in expired {
            tracing::info!(%cid, "pin expired; unpinning");
            self.write(PinOp::Unpin(cid)).await?;
        }
        Ok(n)
    }
}
