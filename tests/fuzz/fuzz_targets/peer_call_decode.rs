//! Inbound peer calls: the bytes a remote peer writes on a call stream go through the
//! transport's real request-response codec (length-prefixed protobuf WireRequest, size
//! limits), then the RPC policy lookup and deadline clamp, and the payload through the
//! api crate's proto -> API conversions of the messages peers exchange (Pin, PinInfo,
//! Metric). A decoded request must re-encode and decode to itself; a converted Pin must
//! convert back and forth to the same Pin.
#![no_main]

use futures::{executor::block_on, io::Cursor};
use ipfs_cluster_api::{proto, Metric, Pin, PinInfo};
use ipfs_cluster_transport::{
    inbound,
    options::Limits,
    policy,
    wire::{WireCodec, CALL_PROTOCOL},
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
    let _ = block_on(codec.read_response(&CALL_PROTOCOL, &mut Cursor::new(data)));
});
