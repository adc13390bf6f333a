//! Raft traffic and forwarded writes from other peers: the payload of a `Consensus.Raft`
//! peer call goes through the consensus crate's real decoders (`RaftRequest` protobuf, then
//! `node::decode_raft_request`: openraft's AppendEntries / Vote / InstallSnapshot JSON or a
//! `Forward` write), and every pin a forwarded write or a replicated entry carries through
//! the same checks the leader runs (`PinBytes::decode`, `normalize_cid`, `setup_pin`,
//! `pin_update`). The same bytes are also read as another peer's answer to our raft calls
//! (`network::decode_raft_response` for every answer type). A decoded message must
//! re-encode and decode to itself.
#![no_main]

use ipfs_cluster_consensus::{
    node::{decode_raft_request, Forward, ForwardResult, PrepareAnswer, RaftMessage},
    pinning::{normalize_cid, pin_update, setup_pin, PinDefaults},
    raft::{
        command::{PinBytes, PinOp},
        ids::NodeId,
        network::decode_raft_response,
    },
};
use ipfs_cluster_proto::consensus::v1::RaftRequest;
use libfuzzer_sys::fuzz_target;
use openraft::{
    error::{InstallSnapshotError, RaftError},
    raft::{AppendEntriesResponse, InstallSnapshotResponse, VoteResponse},
};
use prost::Message;

const NOW_NS: i64 = 1_700_000_000_000_000_000;

/// What the leader does with a forwarded or replicated pin before committing it.
fn check_pin(p: &PinBytes) {
    let Ok(mut pin) = p.decode() else { return };
    if let Ok(cid) = normalize_cid(&pin.cid) {
        pin.cid = cid;
    }
    let from = pin.clone();
    let defaults = PinDefaults {
        replication_min: -1,
        replication_max: -1,
    };
    if setup_pin(&mut pin, Some(&from), defaults, NOW_NS).is_ok() {
        assert!(pin.options.is_some(), "setup_pin fills the options");
    }
    let _ = setup_pin(
        &mut from.clone(),
        None,
        PinDefaults {
            replication_min: 2,
            replication_max: 3,
        },
        NOW_NS,
    );
    let _ = pin_update(
        &from,
        "bafkqaaa",
        from.options.as_ref(),
        NOW_NS / 1_000_000_000,
    );
}

fn check_op(op: &PinOp, depth: usize) {
    assert!(depth < 256, "serde_json's recursion limit bounds nesting");
    match op {
        PinOp::Pin(p) => check_pin(p),
        PinOp::PinBatch(ps) => ps.iter().for_each(check_pin),
        PinOp::Batch(ops) => ops.iter().for_each(|o| check_op(o, depth + 1)),
        PinOp::Unpin(c) => {
            let _ = normalize_cid(c);
        }
        PinOp::Clear => {}
    }
}

fn check_forward(f: &Forward, depth: usize) {
    assert!(depth < 256, "serde_json's recursion limit bounds nesting");
    match f {
        Forward::Pin(p) => check_pin(p),
        Forward::Unpin(c) | Forward::Remove(c) | Forward::PrepareAdd(c) => {
            let _ = normalize_cid(c);
        }
        Forward::Op(op) => check_op(op, depth + 1),
        Forward::Batch(fs) => fs.iter().for_each(|f| check_forward(f, depth + 1)),
        Forward::Join(_) | Forward::Removed => {}
    }
}

fn roundtrip<T: serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug>(v: &T) {
    let json = serde_json::to_vec(v).expect("a decoded raft message encodes");
    let back: T = serde_json::from_slice(&json).expect("an encoded raft message decodes");
    assert_eq!(
        format!("{back:?}"),
        format!("{v:?}"),
        "raft message JSON round trip"
    );
}

fn request(req: &RaftRequest) {
    match decode_raft_request(req) {
        Ok(RaftMessage::AppendEntries(rpc)) => {
            for e in &rpc.entries {
                if let openraft::EntryPayload::Normal(op) = &e.payload {
                    check_op(op, 0);
                }
            }
            roundtrip(&*rpc);
        }
        Ok(RaftMessage::Vote(rpc)) => roundtrip(&rpc),
        Ok(RaftMessage::InstallSnapshot(rpc)) => roundtrip(&*rpc),
        Ok(RaftMessage::Forward(f)) => {
            check_forward(&f, 0);
            roundtrip(&f);
        }
        Err(st) => assert_eq!(st.code(), tonic::Code::InvalidArgument, "{st:?}"),
    }
}

fn response(data: &[u8]) {
    let p = "12D3KooWfuzz";
    let _ = decode_raft_response::<AppendEntriesResponse<NodeId>, RaftError<NodeId>>(p, data);
    let _ = decode_raft_response::<VoteResponse<NodeId>, RaftError<NodeId>>(p, data);
    let _ = decode_raft_response::<
        InstallSnapshotResponse<NodeId>,
        RaftError<NodeId, InstallSnapshotError>,
    >(p, data);
    if let Ok(r) = decode_raft_response::<Option<PinBytes>, (i32, String)>(p, data) {
        let r: ForwardResult = r;
        if let Ok(Some(pin)) = r {
            check_pin(&pin);
        }
    }
    let _ = decode_raft_response::<Vec<ForwardResult>, (i32, String)>(p, data);
    let _ = decode_raft_response::<PrepareAnswer, (i32, String)>(p, data);
}

fuzz_target!(|data: &[u8]| {
    // The payload of a peer call as it arrives (protobuf RaftRequest).
    if let Ok(req) = RaftRequest::decode(data) {
        request(&req);
    }
    // The same bytes as the JSON body of each kind (the fuzzer reaches JSON faster so).
    if let Some((&kind, body)) = data.split_first() {
        request(&RaftRequest {
            kind: i32::from(kind % 5),
            body: body.to_vec(),
        });
    }
    response(data);
});
