//! The peer-call protocol between transports: one libp2p stream per call carrying a
//! `WireRequest` and its `WireResponse`, each framed as a 4-byte big-endian length plus
//! the protobuf bytes. Frames above the size limit are refused before reading them.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use ipfs_cluster_proto::transport::v1::{WireRequest, WireResponse};
use libp2p::StreamProtocol;
use prost::Message;

pub const CALL_PROTOCOL: StreamProtocol = StreamProtocol::new("/ipfs-cluster-rs/call/1.0.0");

/// request-response codec with maximum frame sizes (a response may carry a whole
/// streamed answer, so it has its own, larger limit).
#[derive(Debug, Clone)]
pub struct WireCodec {
    pub max_request: usize,
    pub max_response: usize,
}

async fn read_frame<M: Message + Default, T: AsyncRead + Unpin + Send>(
    io: &mut T,
    max: usize,
) -> io::Result<M> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("peer-call frame of {len} bytes exceeds the limit of {max} bytes"),
        ));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    M::decode(buf.as_slice()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("malformed peer-call frame: {e}"),
        )
    })
}

async fn write_frame<M: Message, T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    msg: &M,
    max: usize,
) -> io::Result<()> {
    let len = msg.encoded_len();
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("peer-call message of {len} bytes exceeds the limit of {max} bytes"),
        ));
    }
    // One buffer, one write: length and message travel in a single yamux/noise frame.
    let mut buf = Vec::with_capacity(4 + len);
    buf.extend_from_slice(&(len as u32).to_be_bytes());
    msg.encode(&mut buf)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    io.write_all(&buf).await?;
    io.close().await
}

impl libp2p::request_response::Codec for WireCodec {
    type Protocol = StreamProtocol;
    type Request = WireRequest;
    type Response = WireResponse;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<WireRequest> {
        read_frame(io, self.max_request).await
    }
    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<WireResponse> {
        read_frame(io, self.max_response).await
    }
    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: WireRequest,
    ) -> io::Result<()> {
        write_frame(io, &req, self.max_request).await
    }
    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: WireResponse,
    ) -> io::Result<()> {
        write_frame(io, &res, self.max_response).await
    }
}

/// A response carrying a gRPC status.
pub fn status_response(status: &tonic::Status) -> WireResponse {
    WireResponse {
        code: status.code() as i32,
        error: status.message().to_string(),
        chunks: vec![],
    }
}

/// The status a response carries (`Ok` chunks when code is 0).
pub fn into_result(res: WireResponse) -> Result<Vec<bytes::Bytes>, tonic::Status> {
    if res.code == 0 {
        Ok(res.chunks.into_iter().map(bytes::Bytes::from).collect())
    } else {
        Err(tonic::Status::new(
            tonic::Code::from_i32(res.code),
            res.error,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;
    use libp2p::request_response::Codec;

    #[tokio::test]
    async fn roundtrip_and_limits() {
        let mut c = WireCodec {
            max_request: 64,
            max_response: 64,
        };
        let req = WireRequest {
            service: "a.B".into(),
            method: "C".into(),
            payload: vec![1, 2, 3],
            timeout_ms: 5,
            stream: true,
            traceparent: String::new(),
        };
        let mut out = Cursor::new(Vec::new());
        c.write_request(&CALL_PROTOCOL, &mut out, req.clone())
            .await
            .unwrap();
        let mut inp = Cursor::new(out.into_inner());
        assert_eq!(c.read_request(&CALL_PROTOCOL, &mut inp).await.unwrap(), req);

        // oversized frame header is refused without allocating
        let mut big = Cursor::new([0u8, 0, 1, 0].to_vec());
        let e = c.read_request(&CALL_PROTOCOL, &mut big).await.unwrap_err();
        assert!(e.to_string().contains("exceeds the limit"), "{e}");
        // truncated frame
        let mut short = Cursor::new([0u8, 0, 0, 10, 1, 2].to_vec());
        assert!(c.read_request(&CALL_PROTOCOL, &mut short).await.is_err());
        // garbage
        let mut junk = Cursor::new([0u8, 0, 0, 3, 0xff, 0xff, 0xff].to_vec());
        assert!(c.read_request(&CALL_PROTOCOL, &mut junk).await.is_err());
        // too large to send
        let huge = WireResponse {
            code: 0,
            error: String::new(),
            chunks: vec![vec![0; 100]],
        };
        let mut out = Cursor::new(Vec::new());
        assert!(c
            .write_response(&CALL_PROTOCOL, &mut out, huge)
            .await
            .is_err());
    }

    #[test]
    fn status_mapping() {
        let r = status_response(&tonic::Status::permission_denied("no"));
        let e = into_result(r).unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert_eq!(e.message(), "no");
    }
}
