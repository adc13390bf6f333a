//! The write path: a write is validated and allocated, then committed through raft on the
//! leader (grouped: many pins in one entry) or forwarded by a follower (batched per
//! leader), with upstream's commit retries.

use super::*;

impl Node {
    /// Commits one op through raft on this leader (see `bounded`).
    pub async fn write(&self, op: PinOp) -> Result<ApplyResult, Error> {
        self.bounded(self.raft.client_write(op))
            .await
            .map(|r| r.data)
    }

    /// `write` through the group commit: concurrent callers' ops share one raft entry.
    pub async fn write_grouped(&self, op: PinOp) -> Result<ApplyResult, Error> {
        let (done, rx) = oneshot::channel();
        self.group_tx
            .send(PendingWrite { op, done })
            .await
            .map_err(|_| Error::ShuttingDown)?;
        rx.await.map_err(|_| Error::ShuttingDown)?
    }

    /// Commits a gathered group: one op as itself, several as one `PinOp::Batch` entry;
    /// every caller gets its own op's result (or the commit's error).
    async fn commit_group(&self, group: Vec<PendingWrite>) {
        let started = std::time::Instant::now();
        let n = group.len();
        if n == 1 {
            let w = group.into_iter().next().expect("one write");
            let r = self.write(w.op).await;
            tracing::debug!(
                ops = 1,
                ms = started.elapsed().as_secs_f64() * 1e3,
                "group committed"
            );
            let _ = w.done.send(r);
            return;
        }
        let (ops, dones): (Vec<PinOp>, Vec<_>) = group.into_iter().map(|w| (w.op, w.done)).unzip();
        let r = self.write(PinOp::Batch(ops)).await;
        tracing::debug!(
            ops = n,
            ms = started.elapsed().as_secs_f64() * 1e3,
            "group committed"
        );
        match r {
            Ok(r) => {
                let mut results = r.results.into_iter();
                for d in dones {
                    let _ = d.send(Ok(results.next().unwrap_or_default()));
                }
            }
            Err(e) => {
                for d in dones {
                    let _ = d.send(Err(e.clone()));
                }
            }
        }
    }

    /// Forwards a Pin/Unpin through the follower's batcher (one call per gathered batch).
    async fn forward_grouped(&self, leader: NodeId, f: Forward) -> Result<Option<Pin>, Error> {
        let (done, rx) = oneshot::channel();
        self.forward_tx
            .send(PendingForward { leader, f, done })
            .await
            .map_err(|_| Error::ShuttingDown)?;
        rx.await.map_err(|_| Error::ShuttingDown)?
    }

    /// Sends one gathered batch of writes to `leader`: a single write as itself, several as
    /// one `Forward::Batch` call; each caller gets its own answer.
    async fn forward_group(&self, leader: NodeId, group: Vec<PendingForward>) {
        let started = std::time::Instant::now();
        if group.len() == 1 {
            let w = group.into_iter().next().expect("one forward");
            let r = self.forward(leader, &w.f).await;
            tracing::debug!(
                ops = 1,
                ms = started.elapsed().as_secs_f64() * 1e3,
                "forwarded batch answered"
            );
            let _ = w.done.send(r);
            return;
        }
        let (fs, dones): (Vec<Forward>, Vec<_>) = group.into_iter().map(|w| (w.f, w.done)).unzip();
        let n = fs.len();
        let res: Result<Vec<ForwardResult>, Error> = self
            .forward_call::<Vec<ForwardResult>>(leader, &Forward::Batch(fs))
            .await
            .and_then(|r| r.map_err(|(code, msg)| Error::remote(code, msg)))
            .and_then(|r| {
                if r.len() == n {
                    Ok(r)
                } else {
                    Err(Error::internal(format!(
                        "the leader answered {} results for a batch of {n} writes",
                        r.len()
                    )))
                }
            });
        tracing::debug!(
            ops = n,
            ms = started.elapsed().as_secs_f64() * 1e3,
            "forwarded batch answered"
        );
        match res {
            Ok(results) => {
                for (d, r) in dones.into_iter().zip(results) {
                    let _ = d.send(decode_forward_result(r));
                }
            }
            Err(e) => {
                for d in dones {
                    let _ = d.send(Err(e.clone()));
                }
            }
        }
    }

    pub(super) async fn wait_leader(&self) -> Result<NodeId, Error> {
        let m = self
            .raft
            .wait(Some(self.opts.wait_for_leader_timeout))
            .metrics(|m| m.current_leader.is_some(), "leader")
            .await
            .map_err(|_| no_leader(self.opts.wait_for_leader_timeout))?;
        m.current_leader
            .ok_or_else(|| no_leader(self.opts.wait_for_leader_timeout))
    }

    /// Runs a write on the leader: locally when we lead, else forwarded; retried as
    /// upstream's commit_retries on transient failures.
    pub async fn commit(&self, f: Forward) -> Result<Option<Pin>, Error> {
        let mut last = no_leader(self.opts.wait_for_leader_timeout);
        // As upstream: commit_retries re-tries of the whole commit, each with up to
        // commit_retries re-tries of the redirect to the leader (2 x heartbeat_timeout apart,
        // long enough for a dead leader to be replaced).
        let retries = self.opts.commit_retries;
        let mut delay = Duration::ZERO;
        // Whether an earlier attempt failed in a way that may have committed it anyway (the
        // leader applied the write but its answer was lost: it crashed, was cut off, timed
        // out). An unpin repeated after that meets "not part of the pinset" for the removal
        // it made itself; as upstream (whose retries re-commit an idempotent "rm" after a
        // single existence check) that is a success, not a 404.
        let mut maybe_applied = false;
        for attempt in 0..=retries {
            for redirect in 0..=retries {
                if attempt + redirect > 0 {
                    tokio::time::sleep(delay).await;
                }
                let leader = match self.wait_leader().await {
                    Ok(l) => l,
                    Err(e) => return Err(e),
                };
                let forwarded = leader != self.id;
                let res = if forwarded {
                    match &f {
                        Forward::Pin(_) | Forward::Unpin(_) => {
                            self.forward_grouped(leader, f.clone()).await
                        }
                        _ => self.forward(leader, &f).await,
                    }
                } else {
                    self.execute(f.clone()).await
                };
                match res {
                    Ok(p) => return Ok(p),
                    Err(e)
                        if maybe_applied
                            && e.code() == tonic::Code::NotFound
                            && matches!(f, Forward::Unpin(_)) =>
                    {
                        tracing::info!(error = %e.message(), "an unpin retried after an unanswered attempt finds the pin gone: the earlier attempt removed it");
                        return Ok(None);
                    }
                    Err(e) if retryable(&e) => {
                        tracing::debug!(attempt, redirect, error = %e.message(), "commit failed; retrying");
                        maybe_applied = true;
                        last = e;
                        if forwarded {
                            delay = self.opts.heartbeat_timeout * 2;
                            continue;
                        }
                        delay = self.opts.commit_retry_delay;
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Err(last)
    }

    pub(super) async fn forward(&self, leader: NodeId, f: &Forward) -> Result<Option<Pin>, Error> {
        let r: ForwardResult = self.forward_call(leader, f).await?;
        decode_forward_result(r)
    }

    /// One `Forward` call to the leader; `R` is the answer's type.
    async fn forward_call<R: serde::de::DeserializeOwned>(
        &self,
        leader: NodeId,
        f: &Forward,
    ) -> Result<Result<R, (i32, String)>, Error> {
        let peer = self
            .peer_of(leader)
            .ok_or_else(|| Error::unavailable("the leader is not in the membership yet"))?;
        let timeout = self.opts.network_timeout + self.opts.wait_for_leader_timeout;
        // A peer that just joined may not be in the leader's (cached) member list yet, so the
        // leader's transport can refuse us for a moment: retry that for a few seconds.
        let mut tries = 0;
        loop {
            match raft_call(&*self.carrier, &peer, Kind::Forward, f, timeout).await {
                Ok(r) => return Ok(r),
                Err(s) if s.code() == tonic::Code::PermissionDenied && tries < 8 => {
                    tries += 1;
                    tracing::debug!(%peer, error = %s.message(), "leader refused a forwarded write; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(s) => {
                    return Err(Error::new(
                        s.code(),
                        format!("forwarding to the leader {peer}: {}", s.message()),
                    ))
                }
            }
        }
    }

    /// Executes a write here; fails with UNAVAILABLE if we are not the leader.
    pub async fn execute(&self, f: Forward) -> Result<Option<Pin>, Error> {
        match f {
            Forward::Pin(p) => {
                let pin = p
                    .decode()
                    .map_err(|e| Error::invalid_argument(format!("bad pin object: {e}")))?;
                self.pin_here(pin).await.map(Some)
            }
            Forward::Unpin(cid) => self.unpin_here(&cid).await.map(Some),
            Forward::Op(op) => {
                self.write(op).await?;
                Ok(None)
            }
            Forward::Join(node) => self.add_voter(node).await.map(|_| None),
            Forward::Remove(peer) => self.remove_here(&peer).await.map(|_| None),
            Forward::Removed => Err(Error::invalid_argument(
                "Removed is a message from the leader, not a write",
            )),
            Forward::Batch(_) => Err(Error::invalid_argument(
                "a forwarded batch cannot be nested",
            )),
            Forward::PrepareAdd(_) => Err(Error::invalid_argument(
                "PrepareAdd is a raft message, not a write",
            )),
        }
    }

    /// Makes sure this leader's state machine holds every entry committed before its term,
    /// before a write decides from the pinset. A new leader applies its predecessors' last
    /// entries only once its own first entry commits; until then a read may miss a pin that
    /// was acknowledged just before the leader changed (a 5-peer chaos run saw an unpin of
    /// an acknowledged pin answered 404 "not part of the pinset" while the pin stayed).
    /// Costs one quorum round per term (openraft's `ensure_linearizable`).
    async fn ensure_state_current(&self) -> Result<(), Error> {
        use std::sync::atomic::Ordering;
        let term = self.raft.metrics().borrow().current_term;
        if self.state_current_term.load(Ordering::Acquire) == term {
            return Ok(());
        }
        self.check_core()?;
        self.check_quorum().await?;
        let limit = self.commit_timeout();
        match tokio::time::timeout(limit, self.raft.ensure_linearizable()).await {
            Ok(Ok(_)) => {}
            // The heartbeat round found no majority: the same refusal as a write's.
            Ok(Err(RaftError::APIError(
                openraft::error::CheckIsLeaderError::QuorumNotEnough(_),
            ))) => return Err(self.no_quorum("")),
            Ok(Err(e)) => return Err(write_err(e)),
            Err(_) => {
                return Err(Error::unavailable(format!(
                    "this leader could not confirm its state within {}s (it may have lost its majority); retry",
                    limit.as_secs_f64()
                )))
            }
        }
        self.state_current_term.store(term, Ordering::Release);
        Ok(())
    }

    pub(super) async fn pin_here(&self, mut pin: Pin) -> Result<Pin, Error> {
        self.ensure_state_current().await?;
        let now = now_secs();
        let update_from = pin
            .options
            .as_ref()
            .map(|o| o.pin_update.clone())
            .unwrap_or_default();
        if !update_from.is_empty() && update_from != pin.cid {
            let from_cid = normalize_cid(&update_from).map_err(Error::from)?;
            let from = self.get(&from_cid).await?.ok_or(Error::NotInPinset)?;
            let p = pin_update(&from, &pin.cid, pin.options.as_ref(), now).map_err(Error::from)?;
            self.write_grouped(PinOp::Pin(PinBytes::encode(&p))).await?;
            return Ok(p);
        }
        let existing = self.get(&pin.cid).await?;
        setup_pin(&mut pin, existing.as_ref(), self.opts.defaults, now_nanos())
            .map_err(Error::from)?;
        if pin.r#type != PinType::Meta as i32 && pin.allocations.is_empty() {
            pin.allocations = self
                .allocate_for(&pin, existing.as_ref(), &[])
                .map_err(Error::from)?;
        }
        // user_allocations only guide this allocation: upstream does not persist them, but
        // returns them in the pin it answers with.
        let mut stored = pin.clone();
        if let Some(o) = stored.options.as_mut() {
            o.user_allocations.clear();
        }
        self.write_grouped(PinOp::Pin(PinBytes::encode(&stored)))
            .await?;
        Ok(pin)
    }

    pub(super) fn allocate_for(
        &self,
        pin: &Pin,
        existing: Option<&Pin>,
        blacklist: &[String],
    ) -> Result<Vec<String>, AllocError> {
        allocate_pin(
            pin,
            existing,
            blacklist,
            &self.member_ids(),
            &self.opts.peer_id,
            &self.opts.allocate_by,
            &self.peer_metrics,
        )
    }

    pub(super) async fn unpin_here(&self, cid: &str) -> Result<Pin, Error> {
        self.ensure_state_current().await?;
        let pin = self.get(cid).await?.ok_or(Error::NotInPinset)?;
        match PinType::try_from(pin.r#type) {
            Ok(PinType::Shard) => {
                return Err(Error::failed_precondition(
                    "cannot unpin a shard directly. Unpin content root CID instead",
                ))
            }
            Ok(PinType::ClusterDag) => {
                return Err(Error::failed_precondition(
                    "cannot unpin a Cluster DAG directly. Unpin content root CID instead",
                ))
            }
            _ => {}
        }
        self.write_grouped(PinOp::Unpin(cid.to_string())).await?;
        Ok(pin)
    }

    pub async fn get(&self, cid: &str) -> Result<Option<Pin>, Error> {
        self.store
            .get(cid)
            .await
            .map_err(|e| Error::internal(e.to_string()))
    }

    /// Public write: pin (validated and allocated on the leader).
    pub async fn pin(&self, mut pin: Pin) -> Result<Pin, Error> {
        self.check_writable()?;
        pin.cid = normalize_cid(&pin.cid).map_err(Error::from)?;
        self.commit(Forward::Pin(PinBytes::encode(&pin)))
            .await?
            .ok_or_else(|| Error::internal("the leader returned no pin"))
    }

    pub async fn unpin(&self, cid: &str) -> Result<Pin, Error> {
        self.check_writable()?;
        let cid = normalize_cid(cid).map_err(Error::from)?;
        // The pin as this peer knows it, for the answer when a retried attempt finds that an
        // unanswered earlier one removed it (`commit`).
        let before = self.get(&cid).await.ok().flatten();
        match self.commit(Forward::Unpin(cid.clone())).await? {
            Some(p) => Ok(p),
            None => Ok(before.unwrap_or_else(|| Pin {
                cid,
                r#type: PinType::Data as i32,
                max_depth: -1,
                ..Default::default()
            })),
        }
    }

    pub(super) fn check_writable(&self) -> Result<(), Error> {
        if self.opts.follower_mode {
            return Err(Error::failed_precondition(
                ipfs_cluster_config::FOLLOWER_MODE_ERROR,
            ));
        }
        Ok(())
    }
}

fn decode_forward_result(r: ForwardResult) -> Result<Option<Pin>, Error> {
    match r {
        Ok(p) => p
            .map(|b| {
                b.decode()
                    .map_err(|e| Error::internal(format!("leader sent a bad pin: {e}")))
            })
            .transpose(),
        Err((code, msg)) => Err(Error::remote(code, msg)),
    }
}

/// Takes the first queued item, then whatever else is already queued (up to `MAX_GROUP`):
/// writes that arrive while earlier groups commit form the next group, so a lone write
/// never waits for company.
async fn gather<T>(rx: &mut mpsc::Receiver<T>) -> Option<Vec<T>> {
    let first = rx.recv().await?;
    let mut group = vec![first];
    while group.len() < MAX_GROUP {
        match rx.try_recv() {
            Ok(x) => group.push(x),
            Err(_) => break,
        }
    }
    Some(group)
}

/// The leader's group commit loop (ends when the node is dropped).
pub(super) async fn run_group_commit(
    node: std::sync::Weak<Node>,
    mut rx: mpsc::Receiver<PendingWrite>,
) {
    let slots = Arc::new(Semaphore::new(GROUPS_IN_FLIGHT));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(group) = gather(&mut rx).await else {
            return;
        };
        let Some(node) = node.upgrade() else { return };
        tokio::spawn(async move {
            let _slot = slot;
            node.commit_group(group).await;
        });
    }
}

/// The follower's forward batching loop: gathered writes, one call per leader.
pub(super) async fn run_forward_batches(
    node: std::sync::Weak<Node>,
    mut rx: mpsc::Receiver<PendingForward>,
) {
    let slots = Arc::new(Semaphore::new(GROUPS_IN_FLIGHT));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(group) = gather(&mut rx).await else {
            return;
        };
        let Some(node) = node.upgrade() else { return };
        let mut by_leader: BTreeMap<NodeId, Vec<PendingForward>> = BTreeMap::new();
        for w in group {
            by_leader.entry(w.leader).or_default().push(w);
        }
        tokio::spawn(async move {
            let _slot = slot;
            futures::future::join_all(
                by_leader
                    .into_iter()
                    .map(|(leader, ws)| node.forward_group(leader, ws)),
            )
            .await;
        });
    }
}
