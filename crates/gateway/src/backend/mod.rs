//! The gateway's only way to the rest of the peer: typed gRPC clients of the local
//! consensus, transport and ipfs connector (token attached), with timeouts, and the
//! fan-out to other peers through `Transport.CallMany` / `CallStream`.

pub mod from_grpc;
pub mod peer_metrics;

use std::{collections::BTreeMap, time::Duration};

use futures::{Stream, StreamExt};
use ipfs_cluster_proto::{
    client::{ConsensusClient, IpfsConnectorClient, TransportClient},
    consensus::v1 as cpb,
    gateway::v1 as gpb,
    ipfsconnector::v1 as ipb,
    names,
    transport::v1 as tpb,
    types::v1 as pb,
    InternalToken,
};
use prost::Message;
use tonic::{Code, Request, Status};

use ipfs_cluster_api as api;
use ipfs_cluster_runtime::ErrorCode;

use crate::http::reply::{ApiError, NOT_IN_PINSET};

/// Deadline for reads and per-peer fan-out calls (upstream uses 15 s per peer).
pub const READ_TIMEOUT: Duration = Duration::from_secs(15);
/// Deadline for writes that go through consensus (leader forwarding, commit).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long each peer's IPFS repo GC may take (`POST /ipfs/gc`): as long as upstream's
/// default IPFS request timeout (`ipfshttp.request_timeout`, 5 min). A GC that deletes many
/// blocks takes far longer than a read, and upstream waits for it.
pub const GC_TIMEOUT: Duration = Duration::from_secs(300);

/// Why a member's `Gateway.Id` gave no answer ([`Backends::ids_of`]).
#[derive(Debug, thiserror::Error)]
pub enum MemberIdError {
    /// The peer call failed (the transport's words).
    #[error("{0}")]
    Call(String),
    #[error("cannot decode the ID answer: {0}")]
    Undecodable(#[source] prost::DecodeError),
}

#[derive(Clone)]
pub struct Backends {
    pub consensus: ConsensusClient,
    pub transport: TransportClient,
    pub ipfs: IpfsConnectorClient,
    pub peername: String,
    /// Peer metrics followed from the broadcast (filled by `peer_metrics::spawn`).
    pub peer_metrics: std::sync::Arc<crate::backend::peer_metrics::PeerMetricStore>,
    /// The cluster's default minimum replication factor (see GatewayOptions).
    pub default_replication_min: i32,
    /// `cluster.follower_mode` (see GatewayOptions).
    pub follower_mode: bool,
}

fn req<T>(msg: T, timeout: Duration) -> Request<T> {
    let mut r = Request::new(msg);
    r.set_timeout(timeout);
    r
}

/// The local services the gateway calls, as its error messages name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    Consensus,
    Transport,
    IpfsConnector,
}

impl std::fmt::Display for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Local::Consensus => "consensus",
            Local::Transport => "transport",
            Local::IpfsConnector => "ipfs connector",
        })
    }
}

/// Maps a gRPC failure of a local service to the REST error upstream would give, by its
/// error code. Upstream answers 500 for every failure of the peer behind the API except
/// an unsupported call and a pin that is not in the pinset: a NOT_FOUND from consensus,
/// the owner of the pinset (the other services' NOT_FOUND, e.g. an IPFS path that does
/// not resolve, is a 500 like their other failures).
pub fn status_error(service: Local, s: &Status) -> ApiError {
    match ErrorCode::from_grpc(s.code()) {
        // Upstream's 404 text must not name the CID.
        code @ ErrorCode::NotFound if service == Local::Consensus => {
            ApiError::new(code, NOT_IN_PINSET)
        }
        code @ ErrorCode::Unimplemented => {
            ApiError::new(code, format!("{service}: {}", s.message()))
        }
        // tonic attaches the underlying error (connect refused, broken connection) as the
        // source when the call never reached the service; an UNAVAILABLE the service sent
        // itself (no leader, no quorum) carries its own explanation and is passed through.
        ErrorCode::Unavailable if std::error::Error::source(s).is_some() => {
            ApiError::internal(format!(
                "the local {service} service is not reachable ({}); is it running?",
                s.message()
            ))
        }
        ErrorCode::Unavailable => ApiError::internal(format!("{service}: {}", s.message())),
        ErrorCode::Timeout => ApiError::internal(format!(
            "the local {service} service did not answer in time: {}",
            s.message()
        )),
        _ => ApiError::internal(s.message().to_string()),
    }
}

/// The peers a global status of `pin` asks and the members it marks REMOTE without a
/// call, as upstream's globalPinInfoCid: the peers the pin is allocated to are asked (so
/// an allocated peer that is down, or has left a crdt peerset, answers `cluster_error`),
/// the other members are REMOTE; a pin everywhere asks every member; a follower reports
/// only itself.
fn status_split(
    members: Vec<String>,
    pin: &api::Pin,
    follower_mode: bool,
) -> (Vec<String>, Vec<String>) {
    let everywhere = pin.options.replication_factor_min == -1 || pin.is_pin_everywhere();
    if follower_mode || everywhere {
        return (members, Vec::new());
    }
    let remote = members
        .into_iter()
        .filter(|m| !pin.allocations.contains(m))
        .collect();
    (pin.allocations.clone(), remote)
}

impl Backends {
    pub fn connect(opts: &crate::options::GatewayOptions, token: &InternalToken) -> Self {
        Self {
            consensus: ipfs_cluster_proto::client::consensus(opts.consensus_addr, token),
            transport: ipfs_cluster_proto::client::transport(opts.transport_addr, token),
            ipfs: ipfs_cluster_proto::client::ipfs_connector(opts.ipfs_connector_addr, token),
            peername: opts.peername.clone(),
            peer_metrics: Default::default(),
            default_replication_min: opts.replication_factor_min,
            follower_mode: opts.follower_mode,
        }
    }

    /// A cluster_error entry, with the name and IPFS identity from the peer's last ping.
    fn error_info(&self, cid: api::Cid, peer: &str, error: &str) -> api::PinInfo {
        let mut i = from_grpc::error_info(cid, peer, error);
        if let Some(p) = self.peer_metrics.ping_info(peer) {
            if !p.peer_name.is_empty() {
                i.short.peername = p.peer_name;
            }
            i.short.ipfs_peer_id = p.ipfs_id;
            i.short.ipfs_peer_addresses = p
                .ipfs_addresses
                .iter()
                .filter_map(|a| api::parse_multiaddr(a).ok())
                .collect();
        }
        i
    }

    pub async fn member_list(&self) -> Result<Vec<String>, ApiError> {
        self.member_ids().await
    }

    /// Every member's Gateway.Id answer (or why there is none), in member order.
    pub async fn ids_of(
        &self,
        peers: Vec<String>,
    ) -> Result<Vec<(String, Result<gpb::IdResponse, MemberIdError>)>, ApiError> {
        let results = self
            .call_many(peers, names::GATEWAY, "Id", &gpb::IdRequest {})
            .await?;
        Ok(results
            .into_iter()
            .map(|r| {
                let v = if r.code == 0 {
                    gpb::IdResponse::decode(r.payload.as_slice())
                        .map_err(MemberIdError::Undecodable)
                } else {
                    Err(MemberIdError::Call(r.error))
                };
                (r.peer, v)
            })
            .collect())
    }

    /// Runs a unary connector method on every member; raw per-peer results.
    pub async fn connector_on_members<Req: Message>(
        &self,
        peers: Vec<String>,
        method: &str,
        payload: &Req,
    ) -> Result<Vec<tpb::PeerCallResult>, ApiError> {
        self.call_many(peers, names::IPFS_CONNECTOR, method, payload)
            .await
    }

    pub async fn transport_on_members<Req: Message>(
        &self,
        peers: Vec<String>,
        method: &str,
        payload: &Req,
    ) -> Result<Vec<tpb::PeerCallResult>, ApiError> {
        self.call_many(peers, names::TRANSPORT, method, payload)
            .await
    }

    pub async fn members(&self) -> Result<Vec<cpb::Member>, ApiError> {
        let r = self
            .consensus
            .clone()
            .members(req(cpb::MembersRequest {}, READ_TIMEOUT))
            .await
            .map_err(|s| status_error(Local::Consensus, &s))?;
        Ok(r.into_inner().members)
    }

    async fn member_ids(&self) -> Result<Vec<String>, ApiError> {
        Ok(self
            .members()
            .await?
            .into_iter()
            .map(|m| m.peer_id)
            .collect())
    }

    /// The peers a status asks: every member, or in follower mode only this peer (as
    /// upstream: a follower reports its local status; trusted peers do not answer it).
    async fn status_peers(&self) -> Result<Vec<String>, ApiError> {
        if !self.follower_mode {
            return self.member_ids().await;
        }
        let t = self
            .transport
            .clone()
            .id(req(tpb::IdRequest {}, READ_TIMEOUT))
            .await
            .map_err(|s| status_error(Local::Transport, &s))?;
        Ok(vec![t.into_inner().peer_id])
    }

    /// This peer's ID (GET /id, Gateway.Id).
    pub async fn id(&self) -> Result<gpb::IdResponse, ApiError> {
        let (mut tc, mut ic) = (self.transport.clone(), self.ipfs.clone());
        let (t, c, i) = tokio::join!(
            tc.id(req(tpb::IdRequest {}, READ_TIMEOUT)),
            self.members(),
            ic.ipfs_id(req(pb::Empty {}, READ_TIMEOUT)),
        );
        let t = t
            .map_err(|s| status_error(Local::Transport, &s))?
            .into_inner();
        let mut out = gpb::IdResponse {
            id: t.peer_id.clone(),
            addresses: t.addresses,
            peername: self.peername.clone(),
            ..Default::default()
        };
        match c {
            Ok(members) => {
                for m in members {
                    if m.peer_id != t.peer_id {
                        for a in &m.addresses {
                            let full = if a.contains("/p2p/") {
                                a.clone()
                            } else {
                                format!("{a}/p2p/{}", m.peer_id)
                            };
                            out.cluster_peers_addresses.push(full);
                        }
                    }
                    out.cluster_peers.push(m.peer_id);
                }
            }
            Err(e) => out.error = e.message,
        }
        match i {
            Ok(r) => {
                let r = r.into_inner();
                out.ipfs_id = r.id;
                out.ipfs_addresses = r.addresses;
                out.ipfs_error = r.error;
            }
            Err(s) => out.ipfs_error = status_error(Local::IpfsConnector, &s).message,
        }
        Ok(out)
    }

    pub async fn pin(&self, pin: pb::Pin) -> Result<pb::Pin, ApiError> {
        let r = self
            .consensus
            .clone()
            .pin(req(cpb::PinRequest { pin: Some(pin) }, WRITE_TIMEOUT))
            .await
            .map_err(|s| status_error(Local::Consensus, &s))?;
        r.into_inner()
            .pin
            .ok_or_else(|| ApiError::internal("consensus answered Pin without a pin"))
    }

    pub async fn unpin(&self, cid: &str) -> Result<pb::Pin, ApiError> {
        let r = self
            .consensus
            .clone()
            .unpin(req(
                cpb::UnpinRequest {
                    cid: cid.to_string(),
                },
                WRITE_TIMEOUT,
            ))
            .await
            .map_err(|s| status_error(Local::Consensus, &s))?;
        r.into_inner()
            .pin
            .ok_or_else(|| ApiError::internal("consensus answered Unpin without a pin"))
    }

    pub async fn get(&self, cid: &str) -> Result<pb::Pin, ApiError> {
        let r = self
            .consensus
            .clone()
            .get(req(
                cpb::GetRequest {
                    cid: cid.to_string(),
                },
                READ_TIMEOUT,
            ))
            .await
            .map_err(|s| status_error(Local::Consensus, &s))?;
        Ok(r.into_inner())
    }

    /// The pinset, streamed from consensus. Errors end the stream.
    pub async fn list(
        &self,
        type_filter: u32,
    ) -> Result<impl Stream<Item = Result<pb::Pin, ApiError>>, ApiError> {
        let r = self
            .consensus
            .clone()
            .list(cpb::ListRequest { type_filter })
            .await
            .map_err(|s| status_error(Local::Consensus, &s))?;
        Ok(r.into_inner()
            .map(|x| x.map_err(|s| status_error(Local::Consensus, &s))))
    }

    pub async fn resolve(&self, path: &str) -> Result<String, ApiError> {
        let r = self
            .ipfs
            .clone()
            .resolve(req(
                ipb::ResolveRequest {
                    path: path.to_string(),
                },
                READ_TIMEOUT,
            ))
            .await
            .map_err(|s| status_error(Local::IpfsConnector, &s))?;
        Ok(r.into_inner().cid)
    }

    /// One unary call on every member, through the transport.
    async fn call_many<Req: Message>(
        &self,
        peers: Vec<String>,
        service: &str,
        method: &str,
        payload: &Req,
    ) -> Result<Vec<tpb::PeerCallResult>, ApiError> {
        self.call_many_within(peers, service, method, payload, READ_TIMEOUT)
            .await
    }

    /// `connector_on_members` for a call that may run long on each peer (a repo GC).
    pub async fn connector_on_members_within<Req: Message>(
        &self,
        peers: Vec<String>,
        method: &str,
        payload: &Req,
        timeout: Duration,
    ) -> Result<Vec<tpb::PeerCallResult>, ApiError> {
        self.call_many_within(peers, names::IPFS_CONNECTOR, method, payload, timeout)
            .await
    }

    async fn call_many_within<Req: Message>(
        &self,
        peers: Vec<String>,
        service: &str,
        method: &str,
        payload: &Req,
        timeout: Duration,
    ) -> Result<Vec<tpb::PeerCallResult>, ApiError> {
        let r = self
            .transport
            .clone()
            .call_many(req(
                tpb::PeerCallManyRequest {
                    peers,
                    service: service.to_string(),
                    method: method.to_string(),
                    payload: payload.encode_to_vec(),
                    timeout_ms: timeout.as_millis() as u32,
                },
                timeout + Duration::from_secs(5),
            ))
            .await
            .map_err(|s| status_error(Local::Transport, &s))?;
        Ok(r.into_inner().results)
    }

    /// The pin of `cid` from the state, or None when it is not part of the pinset.
    async fn pin_of(&self, cid: &str) -> Result<Option<api::Pin>, ApiError> {
        let r = self
            .consensus
            .clone()
            .get(req(
                cpb::GetRequest {
                    cid: cid.to_string(),
                },
                READ_TIMEOUT,
            ))
            .await;
        match r {
            Ok(p) => Ok(Some(from_grpc::state_pin(p.into_inner())?)),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(status_error(Local::Consensus, &s)),
        }
    }

    /// Upstream's `setTrackerStatus`: a status set here without asking the peer (REMOTE
    /// for a member the pin is not allocated to), from the pin and the peer's last ping.
    fn local_info(
        &self,
        pin: &api::Pin,
        peer: &str,
        status: api::TrackerStatus,
        now: api::Time,
    ) -> api::PinInfo {
        let pv = self.peer_metrics.ping_info(peer).unwrap_or_default();
        api::PinInfo {
            cid: pin.cid,
            name: pin.options.name.clone(),
            peer: peer.to_string(),
            allocations: Some(pin.allocations.clone()),
            origins: pin.options.origins.clone(),
            created: pin.timestamp,
            metadata: pin.options.metadata.clone(),
            short: api::PinInfoShort {
                peername: pv.peer_name,
                ipfs_peer_id: pv.ipfs_id,
                ipfs_peer_addresses: pv
                    .ipfs_addresses
                    .iter()
                    .filter_map(|a| api::parse_multiaddr(a).ok())
                    .collect(),
                status,
                timestamp: now,
                ..Default::default()
            },
        }
    }

    /// Upstream's answer for a CID outside the pinset, without asking any peer: unpinned
    /// on every member, names and IPFS identities from their ping metrics, `created` now
    /// and `origins` null (upstream fills it from an empty pin made on the spot).
    async fn unpinned_everywhere(&self, cid: api::Cid) -> Result<api::GlobalPinInfo, ApiError> {
        let now = api::Time::now();
        // upstream's api.PinCid(h): no name, allocations [], no origins or metadata.
        let mut empty = api::Pin::new_data(cid, api::PinOptions::default());
        empty.timestamp = now;
        let mut g = None;
        for peer in self.status_peers().await? {
            let info = self.local_info(&empty, &peer, api::TrackerStatus::Unpinned, now);
            from_grpc::merge(&mut g, info);
        }
        g.ok_or_else(|| ApiError::internal("the cluster has no members"))
    }

    /// Global status (or recover) of one CID: every member's connector, merged.
    pub async fn status_global(
        &self,
        cid: api::Cid,
        method: &str,
    ) -> Result<api::GlobalPinInfo, ApiError> {
        let Some(pin) = self.pin_of(&cid.to_string()).await? else {
            return self.unpinned_everywhere(cid).await;
        };
        // As upstream's globalPinInfoCid: only the peers the pin is allocated to are asked
        // (every member for a pin everywhere); the other members are REMOTE without a call,
        // so a member that is down and holds no allocation does not show as an error.
        let (asked, remote) = status_split(self.status_peers().await?, &pin, self.follower_mode);
        let mut g = None;
        let now = api::Time::now();
        for peer in &remote {
            from_grpc::merge(
                &mut g,
                self.local_info(&pin, peer, api::TrackerStatus::Remote, now),
            );
        }
        let results = self
            .call_many(
                asked,
                names::IPFS_CONNECTOR,
                method,
                &ipb::StatusRequest {
                    cid: cid.to_string(),
                },
            )
            .await?;
        let mut errors = Vec::new();
        for r in results {
            if r.code == 0 {
                match pb::PinInfo::decode(r.payload.as_slice()) {
                    Ok(mut info) => {
                        if info.peer.is_empty() {
                            info.peer = r.peer.clone();
                        }
                        from_grpc::merge(&mut g, from_grpc::pin_info(info)?);
                    }
                    Err(e) => {
                        errors.push((r.peer, format!("cannot decode the status answer: {e}")))
                    }
                }
            } else if r.code == Code::PermissionDenied as i32
                || r.code == Code::Unauthenticated as i32
            {
                // Upstream drops peers that refuse the call for authorisation reasons.
            } else {
                errors.push((r.peer, r.error));
            }
        }
        for (peer, e) in errors {
            let info = self.error_info(cid, &peer, &e);
            from_grpc::merge(&mut g, info);
        }
        g.ok_or_else(|| ApiError::internal("no cluster peer answered the status request"))
    }

    /// This peer only (`local=true`).
    pub async fn status_local(
        &self,
        cid: api::Cid,
        recover: bool,
    ) -> Result<api::GlobalPinInfo, ApiError> {
        let mut c = self.ipfs.clone();
        let r = req(
            ipb::StatusRequest {
                cid: cid.to_string(),
            },
            READ_TIMEOUT,
        );
        let info = if recover {
            c.recover(r).await
        } else {
            c.status(r).await
        }
        .map_err(|s| status_error(Local::IpfsConnector, &s))?
        .into_inner();
        Ok(from_grpc::pin_info(info)?.to_global())
    }

    /// Status (or recover) of every pin on every member, merged by CID. A peer that could
    /// not be asked adds a cluster_error entry to every item and is logged, as upstream's
    /// `globalPinInfoStream` does: the listing itself still succeeds (a member being down
    /// must not turn `GET /pins` or the Pinning Services listing into an error).
    pub async fn status_all_global(
        &self,
        filter: u32,
        method: &str,
    ) -> Result<Vec<api::GlobalPinInfo>, ApiError> {
        let peers = self.status_peers().await?;
        let payload = ipb::StatusAllRequest { filter }.encode_to_vec();
        let calls = peers.iter().map(|p| {
            let mut t = self.transport.clone();
            let r = tpb::PeerCallRequest {
                peer: p.clone(),
                service: names::IPFS_CONNECTOR.to_string(),
                method: method.to_string(),
                payload: payload.clone(),
                timeout_ms: 0,
            };
            async move {
                let mut out = Vec::new();
                let mut s = t.call_stream(r).await?.into_inner();
                while let Some(chunk) = s.message().await? {
                    let info = pb::PinInfo::decode(chunk.payload.as_slice()).map_err(|e| {
                        Status::internal(format!("cannot decode a status item: {e}"))
                    })?;
                    out.push(info);
                }
                Ok::<_, Status>(out)
            }
        });
        let results = futures::future::join_all(calls).await;
        let mut merged: BTreeMap<String, api::GlobalPinInfo> = BTreeMap::new();
        let mut order: Vec<String> = Vec::new();
        let mut failed = Vec::new();
        for (peer, res) in peers.iter().zip(results) {
            match res {
                Ok(items) => {
                    for mut info in items {
                        // Peers filter their own lists; re-check so a peer that ignores
                        // the filter cannot widen the answer.
                        let st = pb::TrackerStatus::try_from(info.status)
                            .map(api::TrackerStatus::from)
                            .unwrap_or_default();
                        if !api::TrackerStatusFilter(filter).matches(st) {
                            continue;
                        }
                        if info.peer.is_empty() {
                            info.peer = peer.clone();
                        }
                        let key = info.cid.clone();
                        let info = from_grpc::pin_info(info)?;
                        match merged.get_mut(&key) {
                            Some(g) => g.add(info),
                            None => {
                                order.push(key.clone());
                                merged.insert(key, info.to_global());
                            }
                        }
                    }
                }
                Err(s) if matches!(s.code(), Code::PermissionDenied | Code::Unauthenticated) => {}
                Err(s) => failed.push((peer.clone(), s.message().to_string())),
            }
        }
        for (peer, e) in failed {
            tracing::error!(%peer, error = %e, method, "a peer did not answer the status listing");
            for g in merged.values_mut() {
                g.add(self.error_info(g.cid, &peer, &e));
            }
        }
        Ok(order
            .into_iter()
            .filter_map(|c| merged.remove(&c))
            .collect())
    }

    /// This peer's StatusAll / RecoverAll stream, unmerged.
    pub async fn status_all_local(
        &self,
        filter: u32,
        recover: bool,
    ) -> Result<impl Stream<Item = Result<pb::PinInfo, ApiError>>, ApiError> {
        let mut c = self.ipfs.clone();
        let r = ipb::StatusAllRequest { filter };
        let s = if recover {
            c.recover_all(r).await
        } else {
            c.status_all(r).await
        }
        .map_err(|s| status_error(Local::IpfsConnector, &s))?
        .into_inner();
        let f = api::TrackerStatusFilter(filter);
        Ok(s.filter_map(move |x| {
            let keep = match &x {
                Ok(info) => f.matches(
                    pb::TrackerStatus::try_from(info.status)
                        .map(api::TrackerStatus::from)
                        .unwrap_or_default(),
                ),
                Err(_) => true,
            };
            futures::future::ready(
                keep.then(|| x.map_err(|s| status_error(Local::IpfsConnector, &s))),
            )
        }))
    }

    /// Every member's ID (GET /peers), through each peer's gateway.
    pub async fn peers(&self) -> Result<Vec<api::Id>, ApiError> {
        let peers = self.member_ids().await?;
        let results = self
            .call_many(peers, names::GATEWAY, "Id", &gpb::IdRequest {})
            .await?;
        let mut out = Vec::new();
        for r in results {
            if r.code == 0 {
                match gpb::IdResponse::decode(r.payload.as_slice()) {
                    Ok(id) => out.push(from_grpc::id(&id)),
                    Err(e) => out.push(from_grpc::id_error(
                        &r.peer,
                        &format!("cannot decode the ID answer: {e}"),
                    )),
                }
            } else if r.code == Code::PermissionDenied as i32
                || r.code == Code::Unauthenticated as i32
            {
            } else {
                out.push(from_grpc::id_error(&r.peer, &r.error));
            }
        }
        Ok(out)
    }

    pub async fn remove_peer(&self, peer: &str) -> Result<(), ApiError> {
        self.consensus
            .clone()
            .remove_peer(req(
                cpb::RemovePeerRequest {
                    peer_id: peer.to_string(),
                },
                WRITE_TIMEOUT,
            ))
            .await
            .map_err(|s| status_error(Local::Consensus, &s))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipfs_cluster_proto::consensus::v1::LeaderRequest;

    #[test]
    fn unavailable_sent_by_the_service_is_passed_through() {
        let e = status_error(
            Local::Consensus,
            &Status::unavailable("no cluster leader reachable within 15s"),
        );
        assert_eq!(e.status(), http::StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            e.message,
            "consensus: no cluster leader reachable within 15s"
        );
    }

    #[tokio::test]
    async fn unreachable_service_is_named_as_such() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let token = InternalToken::generate();
        let mut c = ipfs_cluster_proto::client::consensus(([127, 0, 0, 1], port).into(), &token);
        let s = c.leader(LeaderRequest {}).await.unwrap_err();
        let e = status_error(Local::Consensus, &s);
        assert!(
            e.message
                .starts_with("the local consensus service is not reachable"),
            "{}",
            e.message
        );
    }

    #[test]
    fn status_asks_allocated_peers_and_marks_the_others_remote() {
        let members = vec!["a".to_string(), "b".to_string()];
        let pin = |rmin: i32, allocs: &[&str]| {
            let mut p = api::Pin::new_data(
                "QmWATWQ7fVPP2EFGu71UkfnqhYXDYH566qy47CnJDgvs8u"
                    .parse()
                    .unwrap(),
                api::PinOptions {
                    replication_factor_min: rmin,
                    ..Default::default()
                },
            );
            p.allocations = allocs.iter().map(|s| s.to_string()).collect();
            p
        };
        // "c" is allocated but not a member (down, or a crdt peer whose ping expired):
        // asked, so it shows up as cluster_error; "a" holds no allocation: REMOTE.
        let (asked, remote) = status_split(members.clone(), &pin(2, &["b", "c"]), false);
        assert_eq!(asked, ["b", "c"]);
        assert_eq!(remote, ["a"]);
        // Pinned everywhere: every member asked.
        let (asked, remote) = status_split(members.clone(), &pin(-1, &[]), false);
        assert_eq!(asked, ["a", "b"]);
        assert!(remote.is_empty());
        // A follower reports itself only.
        let (asked, remote) = status_split(vec!["a".into()], &pin(2, &["b", "c"]), true);
        assert_eq!(asked, ["a"]);
        assert!(remote.is_empty());
    }
}
