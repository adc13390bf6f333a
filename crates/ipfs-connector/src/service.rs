//! The `IpfsConnector` gRPC service: a thin layer mapping requests onto the tracker and
//! the Kubo client. Their errors become gRPC statuses here, at the edge, by their
//! `ErrorCode` (`ipfs_cluster_runtime::ServiceError`: daemon unreachable = UNAVAILABLE).

use std::pin::Pin as StdPin;

use futures::Stream;
use ipfs_cluster_proto::{
    ipfsconnector::v1::{
        ipfs_connector_server::{IpfsConnector, IpfsConnectorServer},
        BlockPutManyRequest, BlockPutManyResponse, BlockPutRequest, BlockPutResponse,
        IpfsIdResponse, PinNowRequest, RepoGcKey, RepoGcResponse, RepoStatResponse, ResolveRequest,
        ResolveResponse, StatusAllRequest, StatusRequest, SwarmPeersResponse,
    },
    types::v1::{Empty, PinInfo},
};
use tokio::sync::mpsc;
use tokio_stream::{wrappers::ReceiverStream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::{
    kubo::{parse_cid, BlockToPut},
    tracker::Tracker,
};
use ipfs_cluster_runtime::ServiceError;

#[derive(Clone)]
pub struct ConnectorService {
    tracker: Tracker,
}

impl ConnectorService {
    pub fn new(tracker: Tracker) -> Self {
        Self { tracker }
    }
    pub fn into_server(self) -> IpfsConnectorServer<Self> {
        IpfsConnectorServer::new(self).max_decoding_message_size(64 << 20)
    }
}

type InfoStream = StdPin<Box<dyn Stream<Item = Result<PinInfo, Status>> + Send>>;

/// Runs a producer into a bounded channel and streams its items; a producer error ends
/// the stream with that error.
fn stream_of<F, Fut, E>(f: F) -> InfoStream
where
    F: FnOnce(mpsc::Sender<PinInfo>) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
    E: ServiceError + Send + 'static,
{
    let (tx, rx) = mpsc::channel(1024);
    let (etx, erx) = mpsc::channel(1);
    let fut = f(tx);
    tokio::spawn(async move {
        if let Err(e) = fut.await {
            let _ = etx.send(Err(e.to_status())).await;
        }
    });
    Box::pin(
        ReceiverStream::new(rx)
            .map(Ok)
            .chain(ReceiverStream::new(erx)),
    )
}

#[tonic::async_trait]
impl IpfsConnector for ConnectorService {
    async fn status(&self, req: Request<StatusRequest>) -> Result<Response<PinInfo>, Status> {
        self.tracker
            .status(&req.into_inner().cid)
            .await
            .map(Response::new)
            .map_err(|e| e.to_status())
    }

    type StatusAllStream = InfoStream;
    async fn status_all(
        &self,
        req: Request<StatusAllRequest>,
    ) -> Result<Response<Self::StatusAllStream>, Status> {
        let filter = req.into_inner().filter;
        let t = self.tracker.clone();
        Ok(Response::new(stream_of(move |tx| async move {
            t.status_all(filter, &tx).await
        })))
    }

    async fn recover(&self, req: Request<StatusRequest>) -> Result<Response<PinInfo>, Status> {
        self.tracker
            .recover(&req.into_inner().cid)
            .await
            .map(Response::new)
            .map_err(|e| e.to_status())
    }

    type RecoverAllStream = InfoStream;
    async fn recover_all(
        &self,
        _req: Request<StatusAllRequest>,
    ) -> Result<Response<Self::RecoverAllStream>, Status> {
        let t = self.tracker.clone();
        Ok(Response::new(stream_of(move |tx| async move {
            t.recover_all(false, &tx).await
        })))
    }

    async fn ipfs_id(&self, _req: Request<Empty>) -> Result<Response<IpfsIdResponse>, Status> {
        Ok(Response::new(match self.tracker.kubo().id().await {
            Ok(id) => IpfsIdResponse {
                id: id.id,
                addresses: id.addresses,
                error: String::new(),
            },
            Err(e) => IpfsIdResponse {
                error: e.to_string(),
                ..Default::default()
            },
        }))
    }

    async fn swarm_peers(
        &self,
        _req: Request<Empty>,
    ) -> Result<Response<SwarmPeersResponse>, Status> {
        let peers = self
            .tracker
            .kubo()
            .swarm_peers()
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(SwarmPeersResponse { peers }))
    }

    async fn repo_stat(&self, _req: Request<Empty>) -> Result<Response<RepoStatResponse>, Status> {
        let s = self
            .tracker
            .kubo()
            .repo_stat()
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(RepoStatResponse {
            repo_size: s.repo_size,
            storage_max: s.storage_max,
            num_objects: s.num_objects,
        }))
    }

    async fn repo_gc(&self, _req: Request<Empty>) -> Result<Response<RepoGcResponse>, Status> {
        Ok(Response::new(match self.tracker.kubo().repo_gc().await {
            Ok(keys) => RepoGcResponse {
                keys: keys
                    .into_iter()
                    .map(|(key, error)| RepoGcKey { key, error })
                    .collect(),
                error: String::new(),
            },
            Err(e) => RepoGcResponse {
                keys: vec![],
                error: e.to_string(),
            },
        }))
    }

    async fn block_put(
        &self,
        req: Request<BlockPutRequest>,
    ) -> Result<Response<BlockPutResponse>, Status> {
        let r = req.into_inner();
        let (cid, size) = self
            .tracker
            .kubo()
            .block_put(r.data.into(), &r.format, &r.mhtype, r.cid_version)
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(BlockPutResponse { cid, size }))
    }

    async fn block_put_many(
        &self,
        req: Request<BlockPutManyRequest>,
    ) -> Result<Response<BlockPutManyResponse>, Status> {
        let blocks: Vec<BlockToPut> = req
            .into_inner()
            .blocks
            .into_iter()
            .map(|b| BlockToPut {
                data: b.data.into(),
                format: b.format,
                mhtype: b.mhtype,
                cid_version: b.cid_version,
            })
            .collect();
        let n = blocks.len();
        let put = self
            .tracker
            .kubo()
            .block_put_many(&blocks)
            .await
            .map_err(|e| {
                let mut s = e.to_status();
                if n > 1 {
                    s = Status::new(s.code(), format!("one of {n} blocks: {}", s.message()));
                }
                s
            })?;
        Ok(Response::new(BlockPutManyResponse {
            blocks: put
                .into_iter()
                .map(|(cid, size)| BlockPutResponse { cid, size })
                .collect(),
        }))
    }

    async fn resolve(
        &self,
        req: Request<ResolveRequest>,
    ) -> Result<Response<ResolveResponse>, Status> {
        let cid = self
            .tracker
            .kubo()
            .resolve(&req.into_inner().path)
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(ResolveResponse { cid }))
    }

    async fn pin_now(&self, req: Request<PinNowRequest>) -> Result<Response<Empty>, Status> {
        let r = req.into_inner();
        let cid = parse_cid(&r.cid).map_err(|e| e.to_status())?.to_string();
        let cancel = CancellationToken::new();
        self.tracker
            .kubo()
            .pin_add(&cid, r.max_depth, &cancel)
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(Empty {}))
    }

    async fn unpin_now(&self, req: Request<PinNowRequest>) -> Result<Response<Empty>, Status> {
        let r = req.into_inner();
        let cid = parse_cid(&r.cid).map_err(|e| e.to_status())?.to_string();
        self.tracker
            .kubo()
            .pin_rm(&cid, &CancellationToken::new())
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(Empty {}))
    }
}
