//! Connecting to a local service: a lazily connected channel (services may start in any
//! order) whose every request carries the internal token, and typed client aliases.

use std::{net::SocketAddr, time::Duration};

use tonic::{
    metadata::MetadataValue,
    service::{interceptor::InterceptedService, Interceptor},
    transport::{Channel, Endpoint},
    Request, Status,
};

use crate::auth::InternalToken;

/// Adds `authorization: Bearer <token>` to every outgoing request.
#[derive(Clone)]
pub struct BearerToken(MetadataValue<tonic::metadata::Ascii>);

impl BearerToken {
    pub fn new(token: &InternalToken) -> Self {
        Self(
            token
                .bearer()
                .parse()
                .expect("a hex token is a valid header value"),
        )
    }
}

impl Interceptor for BearerToken {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

pub type Authed = InterceptedService<Channel, BearerToken>;
pub type TransportClient = crate::transport::v1::transport_client::TransportClient<Authed>;
pub type ConsensusClient = crate::consensus::v1::consensus_client::ConsensusClient<Authed>;
pub type IpfsConnectorClient =
    crate::ipfsconnector::v1::ipfs_connector_client::IpfsConnectorClient<Authed>;
pub type GatewayClient = crate::gateway::v1::gateway_client::GatewayClient<Authed>;

/// A channel to a local service that connects on first use and reconnects after failures.
pub fn channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("a socket address is a valid URI")
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .connect_lazy()
}

pub fn authed(addr: SocketAddr, token: &InternalToken) -> Authed {
    InterceptedService::new(channel(addr), BearerToken::new(token))
}

pub fn transport(addr: SocketAddr, token: &InternalToken) -> TransportClient {
    TransportClient::new(authed(addr, token))
}
pub fn consensus(addr: SocketAddr, token: &InternalToken) -> ConsensusClient {
    ConsensusClient::new(authed(addr, token)).max_decoding_message_size(64 << 20)
}
pub fn ipfs_connector(addr: SocketAddr, token: &InternalToken) -> IpfsConnectorClient {
    IpfsConnectorClient::new(authed(addr, token)).max_decoding_message_size(64 << 20)
}
pub fn gateway(addr: SocketAddr, token: &InternalToken) -> GatewayClient {
    GatewayClient::new(authed(addr, token))
}
