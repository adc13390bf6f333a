//! The gateway's own internal gRPC service: Info for operators, Id for other peers'
//! gateways (their GET /peers reaches it through the transport).

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use ipfs_cluster_proto::gateway::v1::{
    gateway_server::Gateway, IdRequest, IdResponse, InfoRequest, InfoResponse,
};
use tonic::{Request, Response, Status};

use crate::backend::Backends;

pub struct GatewayService {
    pub backends: Backends,
    pub rest_listen: Vec<String>,
    pub pinsvc_listen: Vec<String>,
    pub served: Arc<AtomicU64>,
    /// The REST API checks credentials (see InfoResponse.rest_auth_required).
    pub rest_auth_required: bool,
    /// Loopback plain-HTTP REST listener for the transport's /libp2p-http tunnel.
    pub libp2p_http_target: String,
}

#[tonic::async_trait]
impl Gateway for GatewayService {
    async fn info(&self, _req: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        Ok(Response::new(InfoResponse {
            version: ipfs_cluster_api::VERSION.to_string(),
            rest_listen: self.rest_listen.clone(),
            pinsvc_listen: self.pinsvc_listen.clone(),
            requests_served: self.served.load(Ordering::Relaxed),
            libp2p_http_target: self.libp2p_http_target.clone(),
            rest_auth_required: self.rest_auth_required,
        }))
    }

    async fn id(&self, _req: Request<IdRequest>) -> Result<Response<IdResponse>, Status> {
        self.backends
            .id()
            .await
            .map(Response::new)
            .map_err(|e| Status::unavailable(e.message))
    }
}
