//! Inbound peer calls: the bytes a remote peer writes on a call stream go through the
//! transport's real request-response codec (length-prefixed protobuf WireRequest, size
//! limits), then the RPC policy lookup and deadline clamp, and the payload through the
//! api crate's proto -> API conversions of the messages peers exchange (Pin, PinInfo,
//! Metric). A decoded request must re-encode and decode to itself; a converted Pin must
//! convert back and forth to the same Pin. A decoded response goes through
//! `wire::into_result` (its status code is whatever the remote wrote).
//!
//! The same bytes are also what arrives first on a new connection after the
//! private-network handshake: `first_bytes::FirstBytesCheck` reads them (in chunks of the
//! first byte's size) and must fail exactly when they differ from the multistream header.
#![no_main]

use futures::{executor::block_on, io::Cursor, AsyncRead, AsyncReadExt};
use ipfs_cluster_api::{proto, Metric, Pin, PinInfo};
use ipfs_cluster_transport::{
    first_bytes::{FirstBytesCheck, MULTISTREAM_HEADER},
    inbound,
    options::Limits,
    policy,
    wire::{into_result, WireCodec, CALL_PROTOCOL},
};
use libfuzzer_sys::fuzz_target;
use libp2p::request_response::Codec;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let mut codec = WireCodec {
        max_request: 64 * 1024,
        max_response: 1024 * 1024,
    };
    let req = block_on(codec.read_request(&CALL_PROTOCOL, &mut Cursor::new(data)));
    if let Ok(req) = req {
        let _ = policy::access(&req.service, &req.method);
        let limits = Limits::default();
        assert!(inbound::deadline(req.timeout_ms, &limits) <= limits.max_call_timeout);
        let mut out = Cursor::new(Vec::new());
        block_on(codec.write_request(&CALL_PROTOCOL, &mut out, req.clone()))
            .expect("a request we decoded fits the same limit");
        let back = block_on(codec.read_request(&CALL_PROTOCOL, &mut Cursor::new(out.into_inner())))
            .expect("a request we encoded decodes");
        assert_eq!(back, req);

        let payload = req.payload.as_slice();
        if let Ok(p) = proto::Pin::decode(payload) {
            if let Ok(pin) = Pin::try_from(p) {
                let again = Pin::try_from(proto::Pin::from(pin.clone()))
                    .expect("a Pin we converted converts back");
                assert_eq!(again, pin, "Pin round trip");
            }
        }
        if let Ok(i) = proto::PinInfo::decode(payload) {
            if let Ok(info) = PinInfo::try_from(i) {
                let _ = PinInfo::try_from(proto::PinInfo::from(info))
                    .expect("a PinInfo we converted converts back");
            }
        }
        if let Ok(m) = proto::Metric::decode(payload) {
            let _ = proto::Metric::from(Metric::from(m));
        }
    }
    if let Ok(res) = block_on(codec.read_response(&CALL_PROTOCOL, &mut Cursor::new(data))) {
        let ok = res.code == 0;
        assert_eq!(
            into_result(res).is_ok(),
            ok,
            "code 0 and only code 0 is success"
        );
    }
    first_bytes(data);
});

/// A reader that hands out at most `chunk` bytes per read, as a socket may.
struct Chunked<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let n = self.chunk.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        std::task::Poll::Ready(Ok(n))
    }
}

fn first_bytes(data: &[u8]) {
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk % 32).max(1);
    let mut r = FirstBytesCheck::new(Chunked { data: rest, chunk });
    let mut out = Vec::new();
    let res = block_on(r.read_to_end(&mut out));
    let n = rest.len().min(MULTISTREAM_HEADER.len());
    let good = rest[..n] == MULTISTREAM_HEADER[..n];
    assert_eq!(res.is_ok(), good, "first-bytes check on {rest:?}");
    if good {
        assert_eq!(out, rest, "the check passes the bytes through unchanged");
    }
}
