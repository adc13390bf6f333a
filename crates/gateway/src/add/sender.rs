//! Stores an add's blocks on the destination peers' IPFS in batches, several batches in
//! flight. One `IpfsConnector.BlockPut` per block cost a gRPC hop to the transport, one
//! to the connector (or a libp2p round trip) and one Kubo HTTP request each; a batch
//! (`IpfsConnector.BlockPutMany`, one multipart Kubo `block/put` for the whole batch, as
//! upstream's `BlockStream`) pays them once per few MiB. Batches are bounded by bytes and
//! count, and at most `IN_FLIGHT` are outstanding, so memory stays bounded while the
//! gateway keeps chunking and hashing during the round trips.
//!
//! Every answer is checked block by block (the multihash Kubo computed must be the one
//! of the CID we built). When a peer fails a batch, its blocks are retried one by one
//! with `BlockPut` on that peer: the error then names the block, and a peer that does
//! not know `BlockPutMany` (an older version: its RPC policy denies it, or its connector
//! does not implement it) still gets every block, one by one from then on.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use ipfs_cluster_proto::{ipfsconnector::v1 as ipb, names, transport::v1 as tpb};
use prost::Message;
use tokio::task::JoinSet;

use crate::{
    add::{
        dag::{Block, HashFn},
        multipart::AddError,
    },
    backend::Backends,
};

/// A batch is sent once it holds this many bytes of block data (a batch is at most this
/// plus one block, well under the transport's 16 MiB message limit)...
pub const BATCH_BYTES: usize = 4 << 20;
/// ...or this many blocks (small files: one block each).
pub const BATCH_BLOCKS: usize = 256;
/// Batches sent and not yet answered.
pub const IN_FLIGHT: usize = 4;
/// Deadline of one batch on one peer (the per-block call had 60 s for one block).
const BATCH_TIMEOUT_MS: u32 = 300_000;
/// Deadline of one block when a batch is retried block by block.
const BLOCK_TIMEOUT_MS: u32 = 60_000;

/// Batches blocks to `peers` and keeps up to `IN_FLIGHT` batches outstanding.
pub struct Sender {
    backends: Backends,
    peers: Vec<String>,
    pending: Vec<Block>,
    pending_bytes: usize,
    in_flight: JoinSet<Result<(), AddError>>,
    /// Peers that refused `BlockPutMany` as unknown: they get `BlockPut` per block.
    legacy: Legacy,
    /// Prefixed to errors (what these blocks are for).
    context: &'static str,
}

impl Sender {
    pub fn new(backends: Backends, peers: Vec<String>, context: &'static str) -> Self {
        Self {
            backends,
            peers,
            pending: Vec::new(),
            pending_bytes: 0,
            in_flight: JoinSet::new(),
            legacy: Legacy::default(),
            context,
        }
    }

    /// Queues one block; sends the batch when it is full. Returns the error of an
    /// earlier batch as soon as it is known.
    pub async fn push(&mut self, block: Block) -> Result<(), AddError> {
        self.pending_bytes += block.data.len();
        self.pending.push(block);
        if self.pending_bytes >= BATCH_BYTES || self.pending.len() >= BATCH_BLOCKS {
            self.send_pending().await?;
        }
        Ok(())
    }

    /// Sends what is queued and waits for every batch to be answered.
    pub async fn flush(&mut self) -> Result<(), AddError> {
        if !self.pending.is_empty() {
            self.send_pending().await?;
        }
        while let Some(r) = self.in_flight.join_next().await {
            self.joined(r)?;
        }
        Ok(())
    }

    async fn send_pending(&mut self) -> Result<(), AddError> {
        while self.in_flight.len() >= IN_FLIGHT {
            if let Some(r) = self.in_flight.join_next().await {
                self.joined(r)?;
            }
        }
        // Errors already known end the add before more is sent.
        while let Some(r) = self.in_flight.try_join_next() {
            self.joined(r)?;
        }
        let batch = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let (backends, peers, legacy) = (
            self.backends.clone(),
            self.peers.clone(),
            self.legacy.clone(),
        );
        self.in_flight
            .spawn(async move { put_batch(&backends, &peers, &batch, &legacy).await });
        Ok(())
    }

    fn joined(
        &mut self,
        r: Result<Result<(), AddError>, tokio::task::JoinError>,
    ) -> Result<(), AddError> {
        let res = r.map_err(|e| format!("a block batch task failed: {e}"))?;
        res.map_err(|e| {
            // Stop the other batches: the add fails as a whole.
            self.in_flight.abort_all();
            if self.context.is_empty() {
                e
            } else {
                format!("{}: {e}", self.context).into()
            }
        })
    }
}

/// The peers of one add that do not know `BlockPutMany`.
#[derive(Clone, Default)]
pub struct Legacy(Arc<Mutex<HashSet<String>>>);

impl Legacy {
    fn contains(&self, peer: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(peer)
    }
    fn insert(&self, peer: String) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(peer);
    }
}

/// How a peer without `BlockPutMany` answers it: its RPC policy denies the unknown
/// method, or its connector does not implement it.
fn unknown_method(code: i32) -> bool {
    code == tonic::Code::PermissionDenied as i32 || code == tonic::Code::Unimplemented as i32
}

fn put_request(b: &Block) -> ipb::BlockPutRequest {
    ipb::BlockPutRequest {
        data: b.data.to_vec(),
        format: crate::add::car::codec_name(b.cid.codec())
            .unwrap_or("dag-pb")
            .into(),
        mhtype: HashFn::from_code(b.cid.hash().code())
            .map(HashFn::name)
            .unwrap_or_else(|| "identity".into()),
        cid_version: b.cid.version() as i32,
    }
}

/// Whether IPFS stored `cid`'s bytes: the CID it answered has the same multihash (Kubo
/// may answer a CIDv1 for a CIDv0, see the connector's `block_put`).
fn check(cid: &cid::Cid, peer: &str, got: &ipb::BlockPutResponse) -> Result<(), AddError> {
    let same = cid::Cid::try_from(got.cid.as_str()).is_ok_and(|c| c.hash() == cid.hash());
    if same {
        Ok(())
    } else {
        Err(format!(
            "storing block {cid} on {peer}: IPFS answered a different CID {:?}",
            got.cid
        )
        .into())
    }
}

async fn call_many(
    backends: &Backends,
    peers: &[String],
    method: &str,
    payload: Vec<u8>,
    timeout_ms: u32,
) -> Result<Vec<tpb::PeerCallResult>, tonic::Status> {
    Ok(backends
        .transport
        .clone()
        .call_many(tpb::PeerCallManyRequest {
            peers: peers.to_vec(),
            service: names::IPFS_CONNECTOR.to_string(),
            method: method.into(),
            payload,
            timeout_ms,
        })
        .await?
        .into_inner()
        .results)
}

/// `IpfsConnector.BlockPutMany` of `batch` on every peer of `peers`, checking each CID;
/// a peer that fails the batch, or is known not to have the method (`legacy`), gets the
/// blocks one by one (`put_block`).
pub async fn put_batch(
    backends: &Backends,
    peers: &[String],
    batch: &[Block],
    legacy: &Legacy,
) -> Result<(), AddError> {
    let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
        return Ok(());
    };
    let (mut retry, peers): (Vec<String>, Vec<String>) =
        peers.iter().cloned().partition(|p| legacy.contains(p));
    if peers.is_empty() {
        for b in batch {
            put_block(backends, &retry, b).await?;
        }
        return Ok(());
    }
    let req = ipb::BlockPutManyRequest {
        blocks: batch.iter().map(put_request).collect(),
    };
    let results = call_many(
        backends,
        &peers,
        "BlockPutMany",
        req.encode_to_vec(),
        BATCH_TIMEOUT_MS,
    )
    .await
    .map_err(|s| {
        format!(
            "storing blocks {}..{} ({} blocks): the local transport service: {}",
            first.cid,
            last.cid,
            batch.len(),
            s.message()
        )
    })?;
    for res in results {
        if res.code != 0 {
            tracing::debug!(peer = %res.peer, code = res.code, error = %res.error, blocks = batch.len(), "add: BlockPutMany failed; retrying block by block");
            if unknown_method(res.code) {
                legacy.insert(res.peer.clone());
            }
            retry.push(res.peer);
            continue;
        }
        let got = ipb::BlockPutManyResponse::decode(res.payload.as_slice()).map_err(|e| {
            format!(
                "storing blocks {}..{} on {}: undecodable answer: {e}",
                first.cid, last.cid, res.peer
            )
        })?;
        if got.blocks.len() != batch.len() {
            return Err(format!(
                "storing blocks {}..{} on {}: {} answers for {} blocks",
                first.cid,
                last.cid,
                res.peer,
                got.blocks.len(),
                batch.len()
            )
            .into());
        }
        for (b, g) in batch.iter().zip(&got.blocks) {
            check(&b.cid, &res.peer, g)?;
        }
    }
    if !retry.is_empty() {
        for b in batch {
            put_block(backends, &retry, b).await?;
        }
    }
    Ok(())
}

/// `IpfsConnector.BlockPut` of one block on every peer of `peers`, checking the CID.
pub async fn put_block(backends: &Backends, peers: &[String], b: &Block) -> Result<(), AddError> {
    let cid = &b.cid;
    let results = call_many(
        backends,
        peers,
        "BlockPut",
        put_request(b).encode_to_vec(),
        BLOCK_TIMEOUT_MS,
    )
    .await
    .map_err(|s| {
        format!(
            "storing block {cid}: the local transport service: {}",
            s.message()
        )
    })?;
    for res in results {
        if res.code != 0 {
            return Err(format!("storing block {cid} on {}: {}", res.peer, res.error).into());
        }
        let got = ipb::BlockPutResponse::decode(res.payload.as_slice()).map_err(|e| {
            format!(
                "storing block {cid} on {}: undecodable answer: {e}",
                res.peer
            )
        })?;
        check(cid, &res.peer, &got)?;
    }
    Ok(())
}
