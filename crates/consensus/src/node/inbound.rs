//! Raft calls from other peers: decoded, checked against their verified sender (a member,
//! the preparer of an add, never a foreign leader), then handed to openraft or executed as
//! a forwarded write.

use super::*;

/// A `Consensus.Raft` request as another peer sent it, decoded but not yet checked against
/// its sender (see [`Node::handle_raft`]).
#[derive(Debug)]
pub enum RaftMessage {
    AppendEntries(Box<AppendEntriesRequest<TypeConfig>>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(Box<InstallSnapshotRequest<TypeConfig>>),
    Forward(Forward),
}

/// Decodes the body of a `Consensus.Raft` request (JSON of openraft's messages, or a
/// forwarded write) by its kind. Fed by other peers: a bad body or an unknown kind is an
/// INVALID_ARGUMENT, never a panic (fuzzed by tests/fuzz `raft_forward`).
pub fn decode_raft_request(req: &RaftRequest) -> Result<RaftMessage, Error> {
    let bad =
        |e: serde_json::Error| Error::invalid_argument(format!("undecodable raft message: {e}"));
    Ok(match Kind::try_from(req.kind) {
        Ok(Kind::AppendEntries) => {
            RaftMessage::AppendEntries(Box::new(serde_json::from_slice(&req.body).map_err(bad)?))
        }
        Ok(Kind::Vote) => RaftMessage::Vote(serde_json::from_slice(&req.body).map_err(bad)?),
        Ok(Kind::InstallSnapshot) => RaftMessage::InstallSnapshot(Box::new(
            serde_json::from_slice(&req.body).map_err(bad)?,
        )),
        Ok(Kind::Forward) => RaftMessage::Forward(serde_json::from_slice(&req.body).map_err(bad)?),
        _ => {
            return Err(Error::invalid_argument(format!(
                "unknown raft request kind {}; this peer speaks AppendEntries, Vote, InstallSnapshot and Forward",
                req.kind
            )))
        }
    })
}

impl Node {
    /// A peer running a one-peer cluster of its own (initialized, its only member is
    /// itself) takes raft traffic from no other node: another cluster's leader must have it
    /// reset first (`Forward::PrepareAdd`), or its log would be overwritten by a foreign
    /// one. Uninitialized (staging) peers and members of larger clusters are not affected.
    fn refuse_foreign_leader(&self, from: NodeId) -> Result<(), Error> {
        if from == self.id {
            return Ok(());
        }
        let m = self.raft.metrics().borrow().membership_config.clone();
        let mut nodes = m.membership().nodes().map(|(id, _)| *id);
        if nodes.next() == Some(self.id) && nodes.next().is_none() {
            return Err(Error::permission_denied(format!(
                "peer {} runs a one-peer cluster of its own and takes no raft traffic from another cluster's node (raft id {from}); add it through POST /peers on that cluster, which resets it first",
                self.opts.peer_id
            )));
        }
        Ok(())
    }

    /// Raft node ids this peer knows as members: the effective membership (possibly not
    /// committed yet, e.g. a voter being added) and the last committed one.
    fn known_nodes(&self) -> BTreeSet<NodeId> {
        let eff = self.raft.metrics().borrow().membership_config.clone();
        let mut nodes: BTreeSet<NodeId> = eff.membership().nodes().map(|(id, _)| *id).collect();
        nodes.extend(self.committed_membership().nodes().map(|(id, _)| *id));
        nodes
    }

    /// AppendEntries / Vote / InstallSnapshot from another peer: the node id the message
    /// names (leader or candidate) must be the sender's own, and the sender must be a
    /// member; a peer in staging takes them only from the leader that prepared it.
    fn check_raft_sender(&self, sender: &str, claimed: NodeId) -> Result<(), Error> {
        let from = node_id(sender);
        if claimed != from {
            return Err(Error::permission_denied(format!(
                "raft message names node {claimed} as its sender, but it was sent by peer {sender} (node {from}); a peer may only speak for itself"
            )));
        }
        self.refuse_foreign_leader(from)?;
        let nodes = self.known_nodes();
        if nodes.is_empty() {
            return self.membership.check_preparer(sender, &self.opts.peer_id);
        }
        if nodes.contains(&from) {
            return Ok(());
        }
        Err(Error::permission_denied(format!(
            "raft traffic is only taken from cluster members, and peer {sender} is not a member of peer {}'s cluster",
            self.opts.peer_id
        )))
    }

    /// A forwarded write (pin, unpin, join, remove, op, batch) from another peer: only
    /// from a member of the committed membership, and only to the leader.
    fn check_forward_from(&self, sender: &str) -> Result<(), Error> {
        if !self
            .committed_membership()
            .nodes()
            .any(|(_, n)| n.peer_id == sender)
        {
            return Err(Error::permission_denied(format!(
                "forwarded writes are only taken from cluster members, and peer {sender} is not a member of peer {}'s cluster",
                self.opts.peer_id
            )));
        }
        if self.raft.metrics().borrow().current_leader != Some(self.id) {
            return Err(Error::unavailable(format!(
                "peer {} is not the raft leader; forward writes to the leader (current: {})",
                self.opts.peer_id,
                self.leader().unwrap_or_else(|| "none".into())
            )));
        }
        Ok(())
    }

    /// `Forward::Removed` from another peer: only from this peer's current raft leader,
    /// and only when that leader's committed membership no longer holds this peer (asked
    /// back: its member list without us, or its transport refusing us as a non-member).
    async fn check_removed_by(&self, sender: &str) -> Result<(), Error> {
        let leader = self.raft.metrics().borrow().current_leader;
        if sender == self.opts.peer_id || leader != Some(node_id(sender)) {
            return Err(Error::permission_denied(format!(
                "only the current raft leader may tell peer {} it was removed, and peer {sender} is not that leader (current: {})",
                self.opts.peer_id,
                self.leader().unwrap_or_else(|| "none".into())
            )));
        }
        // The leader sends Removed once the change is committed, but its own member list
        // may show it a moment later: ask again for most of the leader's call deadline.
        let until = tokio::time::Instant::now() + self.opts.network_timeout * 3 / 4;
        loop {
            let req = ipfs_cluster_proto::consensus::v1::MembersRequest {};
            let still = match self
                .carrier
                .call(sender, "Members", req.encode_to_vec(), self.opts.network_timeout / 4)
                .await
            {
                Ok(bytes) => ipfs_cluster_proto::consensus::v1::MembersResponse::decode(
                    bytes.as_slice(),
                )
                .map_err(|e| {
                    Error::unavailable(format!(
                        "cannot confirm the removal: the leader {sender} sent an undecodable member list: {e}"
                    ))
                })?
                .members
                .iter()
                .any(|m| m.peer_id == self.opts.peer_id),
                // The leader's transport refuses us as a non-member: we are out.
                Err(s) if s.code() == tonic::Code::PermissionDenied => false,
                Err(s) => {
                    return Err(Error::unavailable(format!(
                        "cannot confirm the removal with the leader {sender}: {}",
                        s.message()
                    )))
                }
            };
            if !still {
                return Ok(());
            }
            if tokio::time::Instant::now() >= until {
                return Err(Error::failed_precondition(format!(
                    "the leader {sender} says peer {} was removed, but its committed membership still holds it; not shutting down",
                    self.opts.peer_id
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Handles an incoming `Consensus.Raft` call (raft traffic or a forwarded write).
    /// `caller` is who sent it: another peer (its verified peer id, set by the transport)
    /// is held to the checks above; a local caller (internal token) is the operator.
    pub async fn handle_raft(
        &self,
        caller: &Caller,
        req: RaftRequest,
    ) -> Result<RaftResponse, Error> {
        let enc = |v: &dyn erased::Ser| {
            v.to_json()
                .map_err(|e| Error::internal(format!("encoding raft reply: {e}")))
        };
        let sender = caller.peer();
        let check = |claimed: NodeId| match sender {
            Some(p) => self.check_raft_sender(p, claimed),
            None => self.refuse_foreign_leader(claimed),
        };
        let body = match decode_raft_request(&req)? {
            RaftMessage::AppendEntries(rpc) => {
                check(rpc.vote.leader_id.node_id)?;
                let started = std::time::Instant::now();
                let n = rpc.entries.len();
                let r = self.raft.append_entries(*rpc).await;
                tracing::debug!(
                    entries = n,
                    ms = started.elapsed().as_secs_f64() * 1e3,
                    "append entries handled"
                );
                enc(&r)?
            }
            RaftMessage::Vote(rpc) => {
                check(rpc.vote.leader_id.node_id)?;
                enc(&self.raft.vote(rpc).await)?
            }
            RaftMessage::InstallSnapshot(rpc) => {
                check(rpc.vote.leader_id.node_id)?;
                enc(&self.raft.install_snapshot(*rpc).await)?
            }
            RaftMessage::Forward(forward) => {
                let to_result = |r: Result<Option<Pin>, Error>| -> ForwardResult {
                    match r {
                        Ok(p) => Ok(p.map(|p| PinBytes(p.encode_to_vec()))),
                        Err(s) => Err((s.code() as i32, s.message().to_string())),
                    }
                };
                match forward {
                    Forward::PrepareAdd(leader) => {
                        if let Some(p) = sender {
                            if p != leader {
                                return Err(Error::permission_denied(format!(
                                    "PrepareAdd names {leader} as the adding leader, but it was sent by peer {p}; a peer may only speak for itself"
                                )));
                            }
                            if self.known_nodes().is_empty() {
                                self.claim_preparer(p)?;
                            }
                        }
                        let r = self
                            .prepare_add(&leader)
                            .await
                            .map_err(|s| (s.code() as i32, s.message().to_string()));
                        enc(&r)?
                    }
                    Forward::Removed => {
                        if let Some(p) = sender {
                            self.check_removed_by(p).await?;
                        }
                        tracing::warn!(
                            by = sender.unwrap_or("a local caller"),
                            "the leader removed this peer from the cluster"
                        );
                        let _ = self.removed.send(true);
                        enc(&to_result(Ok(None)))?
                    }
                    f => {
                        if let Some(p) = sender {
                            self.check_forward_from(p)?;
                        }
                        match f {
                            // Executed concurrently, so they meet in this leader's group commit.
                            Forward::Batch(fs) => {
                                let started = std::time::Instant::now();
                                let n = fs.len();
                                let rs = futures::future::join_all(
                                    fs.into_iter().map(|f| self.execute(f)),
                                )
                                .await;
                                tracing::debug!(
                                    ops = n,
                                    ms = started.elapsed().as_secs_f64() * 1e3,
                                    "forwarded batch executed"
                                );
                                let all: Result<Vec<ForwardResult>, (i32, String)> =
                                    Ok(rs.into_iter().map(to_result).collect());
                                enc(&all)?
                            }
                            f => enc(&to_result(self.execute(f).await))?,
                        }
                    }
                }
            }
        };
        Ok(RaftResponse { body })
    }
}

/// Tiny helper so handle_raft can JSON-encode the differently typed raft results.
mod erased {
    pub trait Ser {
        fn to_json(&self) -> Result<Vec<u8>, serde_json::Error>;
    }
    impl<T: serde::Serialize> Ser for T {
        fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
            serde_json::to_vec(self)
        }
    }
}

#[cfg(test)]
mod decode_tests {
    use super::*;

    fn seed(name: &str) -> RaftRequest {
        let path = format!(
            "{}/../../tests/fuzz/corpus/raft_forward/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        RaftRequest::decode(bytes.as_slice()).expect("a seed is a RaftRequest")
    }

    /// The fuzz seeds of tests/fuzz `raft_forward` are the messages they claim to be, so
    /// the fuzzer starts past the JSON decoders.
    #[test]
    fn fuzz_seeds_decode_to_their_kind() {
        match decode_raft_request(&seed("append_entries_pins")).unwrap() {
            RaftMessage::AppendEntries(rpc) => assert_eq!(rpc.entries.len(), 5),
            m => panic!("{m:?}"),
        }
        assert!(matches!(
            decode_raft_request(&seed("append_entries_heartbeat")).unwrap(),
            RaftMessage::AppendEntries(_)
        ));
        assert!(matches!(
            decode_raft_request(&seed("vote")).unwrap(),
            RaftMessage::Vote(_)
        ));
        assert!(matches!(
            decode_raft_request(&seed("install_snapshot")).unwrap(),
            RaftMessage::InstallSnapshot(_)
        ));
        for (name, want) in [
            ("forward_pin", "Pin"),
            ("forward_batch", "Batch"),
            ("forward_join", "Join"),
            ("forward_removed", "Removed"),
            ("forward_prepare_add", "PrepareAdd"),
        ] {
            match decode_raft_request(&seed(name)).unwrap() {
                RaftMessage::Forward(f) => {
                    assert!(format!("{f:?}").starts_with(want), "{name}: {f:?}")
                }
                m => panic!("{name}: {m:?}"),
            }
        }
        match decode_raft_request(&seed("forward_pin")).unwrap() {
            RaftMessage::Forward(Forward::Pin(p)) => {
                assert_eq!(
                    p.decode().unwrap().cid,
                    "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
                )
            }
            m => panic!("{m:?}"),
        }
    }

    #[test]
    fn bad_raft_requests_are_invalid_arguments() {
        for req in [
            RaftRequest {
                kind: 9,
                body: b"{}".to_vec(),
            },
            RaftRequest {
                kind: Kind::Vote as i32,
                body: b"[".to_vec(),
            },
            RaftRequest {
                kind: Kind::Forward as i32,
                body: br#"{"Nope":1}"#.to_vec(),
            },
        ] {
            let e = decode_raft_request(&req).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        }
    }
}
