//! Cluster-wide health answers: metrics and alerts (from the metric store), repo GC and the
//! connectivity graph (fanned out to every member through the transport).

use std::collections::BTreeMap;

use ipfs_cluster_api as api;
use ipfs_cluster_proto::{
    ipfsconnector::v1 as ipb,
    transport::v1::{PeersRequest, PeersResponse},
    types::v1 as pb,
};
use prost::Message;

use crate::{backend::Backends, http::reply::ApiError};

pub async fn peer_metrics(b: &Backends, name: &str) -> Result<Vec<api::Metric>, ApiError> {
    let peers = b.member_list().await?;
    Ok(b.peer_metrics.latest(name, &peers))
}

fn repo_gc(peer: &str, peername: &str, r: ipb::RepoGcResponse) -> api::RepoGc {
    let keys = r
        .keys
        .into_iter()
        .map(|k| api::IpfsRepoGc {
            key: api::Cid::parse(&k.key).ok(),
            error: k.error,
        })
        .collect::<Vec<_>>();
    api::RepoGc {
        peer: peer.to_string(),
        peername: peername.to_string(),
        // Upstream starts from an empty list: `[]`, never null.
        keys: Some(keys),
        error: r.error,
    }
}

/// POST /ipfs/gc: every member's IPFS repo GC (or only this peer's with `local`).
pub async fn gc(b: &Backends, local: bool) -> Result<api::GlobalRepoGc, ApiError> {
    let mut out = api::GlobalRepoGc::default();
    if local {
        let id = b.id().await?;
        let r = b
            .ipfs
            .clone()
            .repo_gc(pb::Empty {})
            .await
            .map_err(|s| crate::backend::status_error(crate::backend::Local::IpfsConnector, &s))?
            .into_inner();
        out.peer_map
            .insert(id.id.clone(), repo_gc(&id.id, &b.peername, r));
        return Ok(out);
    }
    let peers = b.member_list().await?;
    let (ids, results) = tokio::join!(
        b.ids_of(peers.clone()),
        b.connector_on_members_within(peers, "RepoGc", &pb::Empty {}, crate::backend::GC_TIMEOUT)
    );
    let names: BTreeMap<String, String> = ids?
        .into_iter()
        .filter_map(|(p, r)| r.ok().map(|id| (p, id.peername)))
        .collect();
    for r in results? {
        let name = names.get(&r.peer).cloned().unwrap_or_default();
        let entry = if r.code == 0 {
            match ipb::RepoGcResponse::decode(r.payload.as_slice()) {
                Ok(resp) => repo_gc(&r.peer, &name, resp),
                Err(e) => api::RepoGc {
                    peer: r.peer.clone(),
                    peername: name,
                    keys: Some(vec![]),
                    error: format!("cannot decode the repo gc answer: {e}"),
                },
            }
        } else {
            api::RepoGc {
                peer: r.peer.clone(),
                peername: name,
                keys: Some(vec![]),
                error: r.error,
            }
        };
        out.peer_map.insert(r.peer, entry);
    }
    Ok(out)
}

/// GET /health/graph: who each member is connected to, and its IPFS daemon's swarm.
pub async fn graph(b: &Backends) -> Result<api::ConnectGraph, ApiError> {
    let own = b.id().await?;
    let peers = b.member_list().await?;
    let (ids, links, swarms) = tokio::join!(
        b.ids_of(peers.clone()),
        b.transport_on_members(peers.clone(), "Peers", &PeersRequest {}),
        b.connector_on_members(peers.clone(), "SwarmPeers", &pb::Empty {}),
    );
    let mut g = api::ConnectGraph {
        cluster_id: own.id,
        ..Default::default()
    };
    for p in &peers {
        g.cluster_links.insert(p.clone(), vec![]);
        g.cluster_trust_links.insert(p.clone(), true);
    }
    let mut ipfs_of = BTreeMap::new();
    for (p, r) in ids? {
        if let Ok(id) = r {
            g.id_to_peername.insert(p.clone(), id.peername);
            if !id.ipfs_id.is_empty() {
                g.cluster_to_ipfs.insert(p.clone(), id.ipfs_id.clone());
                ipfs_of.insert(p, id.ipfs_id);
            }
        }
    }
    for r in links? {
        if r.code != 0 {
            continue;
        }
        if let Ok(resp) = PeersResponse::decode(r.payload.as_slice()) {
            let connected: Vec<String> = resp
                .peers
                .into_iter()
                .map(|e| e.peer_id)
                .filter(|id| *id != r.peer)
                .collect();
            g.cluster_links.insert(r.peer, connected);
        }
    }
    for r in swarms? {
        let Some(ipfs_id) = ipfs_of.get(&r.peer) else {
            continue;
        };
        let list = if r.code == 0 {
            ipb::SwarmPeersResponse::decode(r.payload.as_slice())
                .map(|s| s.peers)
                .unwrap_or_default()
        } else {
            vec![]
        };
        g.ipfs_links.insert(ipfs_id.clone(), list);
    }
    Ok(g)
}

/// GET /health/bandwidth: this peer's libp2p bytes by protocol (local, as upstream).
pub async fn bandwidth(b: &Backends) -> Result<api::BandwidthByProtocol, ApiError> {
    let mut t = b.transport.clone();
    let mut r = tonic::Request::new(ipfs_cluster_proto::transport::v1::BandwidthRequest {});
    r.set_timeout(crate::backend::READ_TIMEOUT);
    let resp = t
        .bandwidth(r)
        .await
        .map_err(|s| crate::backend::status_error(crate::backend::Local::Transport, &s))?
        .into_inner();
    Ok(resp
        .protocols
        .into_iter()
        .map(|p| {
            (
                p.protocol,
                api::Bandwidth {
                    total_in: p.total_in.min(i64::MAX as u64) as i64,
                    total_out: p.total_out.min(i64::MAX as u64) as i64,
                    rate_in: p.rate_in,
                    rate_out: p.rate_out,
                },
            )
        })
        .collect())
}
