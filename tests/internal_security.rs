//! The internal gRPC endpoints of a running peer: every service refuses calls without the
//! token (UNAUTHENTICATED), answers health without it, and lists its services through
//! reflection (v1 and v1alpha) with it.

use std::net::SocketAddr;

use ipfs_cluster_proto::{
    client,
    consensus::v1::{consensus_client::ConsensusClient, MembersRequest},
    gateway::v1::{gateway_client::GatewayClient, InfoRequest},
    ipfsconnector::v1::ipfs_connector_client::IpfsConnectorClient,
    transport::v1::{transport_client::TransportClient, IdRequest},
    types::v1::Empty,
    InternalToken,
};
use ipfs_cluster_tests::*;
use tonic::Code;

async fn reflection_lists(addr: SocketAddr, token: &InternalToken) -> Vec<String> {
    use tokio_stream::StreamExt;
    use tonic_reflection::pb::v1alpha::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ServerReflectionRequest,
    };
    let mut c = ServerReflectionClient::new(client::authed(addr, token));
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = c
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let resp = stream.next().await.unwrap().unwrap();
    match resp.message_response.unwrap() {
        MessageResponse::ListServicesResponse(l) => l.service.into_iter().map(|s| s.name).collect(),
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_endpoints_require_the_token() {
    let tmp = tempfile::tempdir().unwrap();
    let ipfs = IpfsNode::start(tmp.path()).await.expect("IPFS test node");
    let peer = PeerDir::init(&tmp.path().join("peer"), &ipfs.multiaddr(), None).unwrap();
    let _daemon = peer.start(&[]).await.unwrap();
    let token = InternalToken::load(&peer.dir.join("internal.token")).unwrap();
    let wrong = InternalToken::generate();
    let at = |p: u16| -> SocketAddr { ([127, 0, 0, 1], p).into() };
    let p = &peer.ports;

    // A wrong token: refused by every service.
    {
        let ch = |port| client::authed(at(port), &wrong);
        let e = TransportClient::new(ch(p.transport))
            .id(IdRequest {})
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "transport: {e}");
        let e = ConsensusClient::new(ch(p.consensus))
            .members(MembersRequest {})
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "consensus: {e}");
        let e = IpfsConnectorClient::new(ch(p.ipfs_connector))
            .ipfs_id(Empty {})
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "ipfs connector: {e}");
        let e = GatewayClient::new(ch(p.gateway))
            .info(InfoRequest {})
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "gateway: {e}");
    }
    // No authorization header at all: refused by every service.
    let e = TransportClient::new(client::channel(at(p.transport)))
        .id(IdRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = ConsensusClient::new(client::channel(at(p.consensus)))
        .members(MembersRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = IpfsConnectorClient::new(client::channel(at(p.ipfs_connector)))
        .ipfs_id(Empty {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = GatewayClient::new(client::channel(at(p.gateway)))
        .info(InfoRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);

    // With the token: answered.
    let id = client::transport(at(p.transport), &token)
        .id(IdRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(id.peer_id.starts_with("12D3KooW"));
    let members = client::consensus(at(p.consensus), &token)
        .members(MembersRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(members.members.len(), 1);
    client::ipfs_connector(at(p.ipfs_connector), &token)
        .ipfs_id(Empty {})
        .await
        .unwrap();
    client::gateway(at(p.gateway), &token)
        .info(InfoRequest {})
        .await
        .unwrap();

    // Health without a token; reflection lists each service.
    for (port, name) in [
        (p.transport, ipfs_cluster_proto::names::TRANSPORT),
        (p.consensus, ipfs_cluster_proto::names::CONSENSUS),
        (p.ipfs_connector, ipfs_cluster_proto::names::IPFS_CONNECTOR),
        (p.gateway, ipfs_cluster_proto::names::GATEWAY),
    ] {
        let mut h = tonic_health::pb::health_client::HealthClient::new(client::channel(at(port)));
        let r = h
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
        let services = reflection_lists(at(port), &token).await;
        assert!(
            services.iter().any(|s| s == name),
            "{name} not in {services:?}"
        );
        assert!(
            services.iter().any(|s| s == "grpc.health.v1.Health"),
            "{services:?}"
        );
    }
}
