//! Dispatching a raw peer call to a LOCAL service's gRPC endpoint. The transport never
//! knows the message types: a pass-through codec moves the protobuf bytes as they are,
//! and tonic's generic client does the HTTP/2 framing, deadline and status handling.

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use bytes::{Buf, BufMut, Bytes};
use futures::{Stream, StreamExt};
use ipfs_cluster_proto::InternalToken;
use tonic::{
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    metadata::{Ascii, MetadataValue},
    transport::Channel,
    Status,
};

/// Moves message bytes through tonic unchanged.
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesCodec;

#[derive(Debug, Clone, Copy, Default)]
pub struct BytesEncoder;

#[derive(Debug, Clone, Copy, Default)]
pub struct BytesDecoder;

impl Codec for BytesCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = BytesEncoder;
    type Decoder = BytesDecoder;
    fn encoder(&mut self) -> Self::Encoder {
        BytesEncoder
    }
    fn decoder(&mut self) -> Self::Decoder {
        BytesDecoder
    }
}

impl Encoder for BytesEncoder {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for BytesDecoder {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// The local services' internal endpoints, by fully qualified gRPC service name.
#[derive(Clone)]
pub struct LocalServices {
    channels: Arc<HashMap<String, (SocketAddr, Channel)>>,
    bearer: MetadataValue<Ascii>,
    max_message_size: usize,
    /// The verified peer id of the remote caller these calls are made for (set by
    /// [`LocalServices::for_peer`] on the inbound path only); sent as
    /// `ipfs_cluster_proto::PEER_HEADER`.
    caller: Option<MetadataValue<Ascii>>,
}

/// A boxed stream of raw response messages.
pub type ByteStream = std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;

/// Service and method names go into a URI path: only plain identifier characters.
fn valid_name(s: &str, dots: bool) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || (dots && c == b'.'))
}

impl LocalServices {
    /// Channels connect lazily (services may start in any order). Must be called inside
    /// a tokio runtime.
    pub fn new(
        endpoints: &HashMap<String, SocketAddr>,
        token: &InternalToken,
        max_message_size: usize,
    ) -> Self {
        let channels = endpoints
            .iter()
            .map(|(name, addr)| {
                (
                    name.clone(),
                    (*addr, ipfs_cluster_proto::client::channel(*addr)),
                )
            })
            .collect();
        Self {
            channels: Arc::new(channels),
            caller: None,
            bearer: token
                .bearer()
                .parse()
                .expect("a hex token is a valid header value"),
            max_message_size,
        }
    }

    /// The same services, for a call that arrived from `peer` over libp2p: every request
    /// carries the peer id the connection authenticated, so the service can decide on it.
    /// Requests are built here from scratch, so a remote or local caller cannot put its
    /// own value into that header through the transport.
    pub fn for_peer(&self, peer: &libp2p::PeerId) -> Self {
        let mut s = self.clone();
        s.caller = peer.to_string().parse().ok();
        s
    }

    fn grpc(
        &self,
        service: &str,
        method: &str,
    ) -> Result<
        (
            SocketAddr,
            tonic::client::Grpc<Channel>,
            http::uri::PathAndQuery,
        ),
        Status,
    > {
        if !valid_name(service, true) || !valid_name(method, false) {
            return Err(Status::invalid_argument(format!(
                "peer call names a malformed service or method ({service:?}/{method:?}); use e.g. \"ipfscluster.consensus.v1.Consensus\" and \"Get\""
            )));
        }
        let (addr, ch) = self.channels.get(service).ok_or_else(|| {
            Status::unimplemented(format!(
                "no local service {service} on this peer (known: {})",
                self.known()
            ))
        })?;
        let path = format!("/{service}/{method}").parse().map_err(|e| {
            Status::invalid_argument(format!("bad method path /{service}/{method}: {e}"))
        })?;
        let grpc = tonic::client::Grpc::new(ch.clone())
            .max_decoding_message_size(self.max_message_size)
            .max_encoding_message_size(self.max_message_size);
        Ok((*addr, grpc, path))
    }

    fn known(&self) -> String {
        let mut k: Vec<_> = self.channels.keys().cloned().collect();
        k.sort();
        k.join(", ")
    }

    fn request(&self, payload: Bytes, timeout: Duration) -> tonic::Request<Bytes> {
        let mut req = tonic::Request::new(payload);
        req.metadata_mut()
            .insert("authorization", self.bearer.clone());
        if let Some(peer) = &self.caller {
            req.metadata_mut()
                .insert(ipfs_cluster_proto::PEER_HEADER, peer.clone());
        }
        if let Some(tp) = ipfs_cluster_proto::client::outgoing_traceparent() {
            if let Ok(v) = tp.parse() {
                req.metadata_mut()
                    .insert(ipfs_cluster_proto::client::TRACEPARENT, v);
            }
        }
        req.set_timeout(timeout);
        req
    }

    /// One unary call; the answer's payload or the service's status.
    pub async fn unary(
        &self,
        service: &str,
        method: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, Status> {
        let (addr, mut grpc, path) = self.grpc(service, method)?;
        let req = self.request(payload, timeout);
        let call = async move {
            grpc.ready().await.map_err(|e| {
                Status::unavailable(format!(
                    "local service {service} at {addr} is not reachable: {e}"
                ))
            })?;
            grpc.unary(req, path, BytesCodec)
                .await
                .map(|r| r.into_inner())
        };
        tokio::time::timeout(timeout, call)
            .await
            .unwrap_or_else(|_| Err(deadline(service, method, timeout)))
    }

    /// A server-streaming call; the deadline covers opening the stream and every message.
    pub async fn server_streaming(
        &self,
        service: &str,
        method: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<ByteStream, Status> {
        let (addr, mut grpc, path) = self.grpc(service, method)?;
        let req = self.request(payload, timeout);
        let open = async move {
            grpc.ready().await.map_err(|e| {
                Status::unavailable(format!(
                    "local service {service} at {addr} is not reachable: {e}"
                ))
            })?;
            grpc.server_streaming(req, path, BytesCodec)
                .await
                .map(|r| r.into_inner())
        };
        let stream = tokio::time::timeout(timeout, open)
            .await
            .unwrap_or_else(|_| Err(deadline(service, method, timeout)))?;
        Ok(Box::pin(stream))
    }

    /// A server-streaming call collected into chunks, refusing more than `max_total` bytes
    /// (used to answer a remote peer in one message).
    pub async fn collect_stream(
        &self,
        service: &str,
        method: &str,
        payload: Bytes,
        timeout: Duration,
        max_total: usize,
    ) -> Result<Vec<Bytes>, Status> {
        let collect = async {
            let mut stream = self
                .server_streaming(service, method, payload, timeout)
                .await?;
            let mut chunks = Vec::new();
            let mut total = 0usize;
            while let Some(item) = stream.next().await {
                let b = item?;
                total += b.len() + 8;
                if total > max_total {
                    return Err(Status::resource_exhausted(format!(
                        "streamed answer of {service}/{method} exceeds the peer-call limit of {max_total} bytes; ask for less (a filter) or raise the transport's max message size"
                    )));
                }
                chunks.push(b);
            }
            Ok(chunks)
        };
        tokio::time::timeout(timeout, collect)
            .await
            .unwrap_or_else(|_| Err(deadline(service, method, timeout)))
    }
}

fn deadline(service: &str, method: &str, timeout: Duration) -> Status {
    Status::deadline_exceeded(format!(
        "{service}/{method} did not answer within {timeout:?}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(valid_name("ipfscluster.consensus.v1.Consensus", true));
        assert!(!valid_name("a/b", true));
        assert!(!valid_name("Get.x", false));
        assert!(!valid_name("", false));
    }

    #[tokio::test]
    async fn unknown_service_and_bad_names_are_clear_errors() {
        let l = LocalServices::new(&HashMap::new(), &InternalToken::generate(), 1024);
        let e = l
            .unary("x.Y", "Z", Bytes::new(), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unimplemented);
        let e = l
            .unary("x/Y", "Z", Bytes::new(), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
    }

    #[tokio::test]
    async fn unreachable_service_is_unavailable() {
        // A port that was free a moment ago: nobody listens there.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut m = HashMap::new();
        m.insert("x.Y".to_string(), addr);
        let l = LocalServices::new(&m, &InternalToken::generate(), 1024);
        let e = l
            .unary("x.Y", "Z", Bytes::new(), Duration::from_secs(3))
            .await
            .unwrap_err();
        assert!(
            matches!(
                e.code(),
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
            ),
            "{e}"
        );
    }
}
