//! Byte-for-byte round trips of the JSON examples in the wire spec,
//! with the spec's elided values (`QmA…`) replaced by real CIDs and peer IDs, plus the
//! null-vs-[] rules on input and output.
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::*;

const P1: &str = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";
const IPFS: &str = "QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN";
const CID_A: &str = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG";
const CID_B: &str = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";

fn fill(s: &str) -> String {
    s.replace("$P1", P1)
        .replace("$IPFS", IPFS)
        .replace("$A", CID_A)
        .replace("$B", CID_B)
}

/// serialize(deserialize(x)) == x, and returns the value.
#[track_caller]
fn round_trip<T: Serialize + DeserializeOwned>(x: &str) -> T {
    let x = fill(x);
    let v: T = serde_json::from_str(&x).unwrap_or_else(|e| panic!("decode {x}: {e}"));
    assert_eq!(serde_json::to_string(&v).unwrap(), x);
    v
}

#[test]
fn pin_from_allocations() {
    // Upstream's example (GET /allocations/<cid>)
    let p: Pin = round_trip(
        r#"{"replication_factor_min":-1,"replication_factor_max":-1,"name":"","mode":"recursive","shard_size":0,"user_allocations":null,"expire_at":"0001-01-01T00:00:00Z","metadata":null,"pin_update":null,"origins":[],"cid":"$A","type":"pin","allocations":[],"max_depth":-1,"reference":null,"timestamp":"2024-05-01T10:20:30Z"}"#,
    );
    assert_eq!(p.clone().normalized_state_read(), p);
    // through proto and back it is unchanged
    let back = Pin::from_state_proto(proto::Pin::from(p.clone())).unwrap();
    assert_eq!(back, p);
}

#[test]
fn pin_post_response() {
    // A.4 (POST /pins/ipfs/<cid>): metadata {} and origins null on the fresh path
    let p: Pin = round_trip(
        r#"{"replication_factor_min":-1,"replication_factor_max":-1,"name":"","mode":"recursive","shard_size":0,"user_allocations":null,"expire_at":"0001-01-01T00:00:00Z","metadata":{},"pin_update":null,"origins":null,"cid":"$A","type":"pin","allocations":[],"max_depth":-1,"reference":null,"timestamp":"2024-05-01T10:20:30.123456789Z"}"#,
    );
    let q = PinOptions::from_query(
        "mode=recursive&name=&replication-max=0&replication-min=0&shard-size=0&user-allocations=",
    )
    .unwrap();
    let mut fresh = Pin::new_data(p.cid, q);
    fresh.options.replication_factor_min = -1;
    fresh.options.replication_factor_max = -1;
    fresh.timestamp = p.timestamp;
    assert_eq!(fresh, p);
}

#[test]
fn pin_full_and_other_types() {
    round_trip::<Pin>(
        r#"{"replication_factor_min":2,"replication_factor_max":3,"name":"a <b>","mode":"direct","shard_size":100,"user_allocations":["$P1"],"expire_at":"2030-01-01T00:00:00Z","metadata":{"a":"1","b":"2"},"pin_update":"$B","origins":["/ip4/1.2.3.4/tcp/4001/p2p/$P1"],"cid":"$A","type":"pin","allocations":["$P1"],"max_depth":0,"reference":null,"timestamp":"2024-05-01T10:20:30Z"}"#,
    );
    let p: Pin = round_trip(
        r#"{"replication_factor_min":1,"replication_factor_max":1,"name":"","mode":"recursive","shard_size":0,"user_allocations":null,"expire_at":"0001-01-01T00:00:00Z","metadata":null,"pin_update":null,"origins":[],"cid":"$A","type":"shard-pin","allocations":["$P1"],"max_depth":1,"reference":"$B","timestamp":"2024-05-01T10:20:30Z"}"#,
    );
    assert_eq!(p.pin_type, PinType::Shard);
    assert_eq!(p.reference.unwrap().to_string(), CID_B);
}

#[test]
fn pin_input_nulls_and_missing() {
    // Go clients may send null for lists and scalars; allocations always print as []
    let p: Pin = serde_json::from_str(&fill(
        r#"{"replication_factor_min":null,"name":null,"allocations":null,"max_depth":null,"cid":"$A","type":"pin","timestamp":null,"expire_at":null}"#,
    ))
    .unwrap();
    assert_eq!(p.allocations, Vec::<String>::new());
    assert!(p.timestamp.is_zero());
    let j = serde_json::to_string(&p).unwrap();
    assert!(j.contains(r#""allocations":[]"#), "{j}");
    assert!(j.contains(r#""user_allocations":null"#), "{j}");
    assert!(j.contains(r#""origins":null"#), "{j}");
    // an empty list stays an empty list
    let p: Pin =
        serde_json::from_str(&fill(r#"{"cid":"$A","origins":[],"user_allocations":[]}"#)).unwrap();
    let j = serde_json::to_string(&p).unwrap();
    assert!(
        j.contains(r#""user_allocations":[]"#) && j.contains(r#""origins":[]"#),
        "{j}"
    );
    // bad CIDs are errors, not panics
    assert!(serde_json::from_str::<Pin>(r#"{"cid":"nope"}"#).is_err());
    assert!(serde_json::from_str::<Pin>(&fill(r#"{"cid":"$A","pin_update":"x"}"#)).is_err());
    assert!(serde_json::from_str::<Pin>(&fill(r#"{"cid":"$A","origins":["/bad"]}"#)).is_err());
    assert!(serde_json::from_str::<Pin>(r#"{}"#).is_err());
}

#[test]
fn global_pin_info_stream_item() {
    // A.1
    let g: GlobalPinInfo = round_trip(
        r#"{"cid":"$A","name":"","allocations":[],"origins":[],"created":"2024-05-01T10:20:30Z","metadata":null,"peer_map":{"$P1":{"peername":"p1","ipfs_peer_id":"$IPFS","ipfs_peer_addresses":["/ip4/127.0.0.1/tcp/4001/p2p/$IPFS"],"status":"pinned","timestamp":"2024-05-01T10:21:00.5Z","error":"","attempt_count":0,"priority_pin":false}}}"#,
    );
    assert_eq!(g.peer_map[P1].status, TrackerStatus::Pinned);
    assert_eq!(PsaStatus::from_global(&g), Some(PsaStatus::Pinned));
}

#[test]
fn global_pin_info_omitempty_and_sorted_map() {
    // ipfs_peer_id / ipfs_peer_addresses are omitempty; peer_map keys sorted
    let g: GlobalPinInfo = round_trip(
        r#"{"cid":"$B","name":"x","allocations":null,"origins":null,"created":"0001-01-01T00:00:00Z","metadata":{"k":"v"},"peer_map":{"$P1":{"peername":"p1","status":"cluster_error","timestamp":"2024-05-01T10:21:00Z","error":"context deadline exceeded","attempt_count":0,"priority_pin":false},"$IPFS":{"peername":"p2","status":"remote","timestamp":"2024-05-01T10:21:00Z","error":"","attempt_count":2,"priority_pin":true}}}"#,
    );
    let keys: Vec<&String> = g.peer_map.keys().collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]));
    // unsorted input comes out sorted
    let unsorted =
        fill(r#"{"cid":"$A","peer_map":{"b":{"status":"pinned"},"a":{"status":"pinned"}}}"#);
    let g: GlobalPinInfo = serde_json::from_str(&unsorted).unwrap();
    let j = serde_json::to_string(&g).unwrap();
    assert!(j.find("\"a\":").unwrap() < j.find("\"b\":").unwrap(), "{j}");
}

#[test]
fn pin_info_local_form() {
    round_trip::<PinInfo>(
        r#"{"cid":"$A","name":"n","peer":"$P1","allocations":["$P1"],"origins":[],"created":"2024-05-01T10:20:30Z","metadata":null,"peername":"p1","ipfs_peer_id":"$IPFS","status":"pin_queued","timestamp":"2024-05-01T10:21:00.5Z","error":"","attempt_count":1,"priority_pin":false}"#,
    );
}

#[test]
fn id_example() {
    // A.3
    let id: Id = round_trip(
        r#"{"id":"$P1","addresses":["/ip4/127.0.0.1/tcp/9096/p2p/$P1"],"cluster_peers":["$P1"],"cluster_peers_addresses":[],"version":"1.1.6","commit":"","rpc_protocol_version":"/ipfscluster/1.0/rpc","error":"","ipfs":{"id":"$IPFS","addresses":["/ip4/127.0.0.1/tcp/4001/p2p/$IPFS"],"error":""},"peername":"p1"}"#,
    );
    assert_eq!(id.version, VERSION);
    assert_eq!(id.rpc_protocol_version, RPC_PROTOCOL_VERSION);
    // an ID with an error: ipfs is still present, its id omitted
    let mut e = Id::new(P1, "p1");
    e.error = "boom".into();
    e.ipfs.error = "ipfs down".into();
    assert_eq!(
        serde_json::to_string(&e).unwrap(),
        fill(
            r#"{"id":"$P1","addresses":null,"cluster_peers":null,"cluster_peers_addresses":[],"version":"1.1.6","commit":"","rpc_protocol_version":"/ipfscluster/1.0/rpc","error":"boom","ipfs":{"addresses":null,"error":"ipfs down"},"peername":"p1"}"#
        )
    );
    // null cluster_peers_addresses (the ID of a peer that could not be asked) stays null,
    // [] stays []
    let id: Id = serde_json::from_str(&fill(
        r#"{"id":"$P1","cluster_peers_addresses":null,"ipfs":null}"#,
    ))
    .unwrap();
    assert!(serde_json::to_string(&id)
        .unwrap()
        .contains(r#""cluster_peers_addresses":null"#));
    let id: Id = serde_json::from_str(&fill(
        r#"{"id":"$P1","cluster_peers_addresses":[],"ipfs":null}"#,
    ))
    .unwrap();
    assert!(serde_json::to_string(&id)
        .unwrap()
        .contains(r#""cluster_peers_addresses":[]"#));
}

#[test]
fn version_and_error() {
    let v: Version = round_trip(r#"{"version":"1.1.6"}"#);
    assert_eq!(v, Version::default());
    let q = PinOptions::from_query("shard-size=x").unwrap_err();
    assert_eq!(q.to_string(), "parameter shard_size is invalid");
}

#[test]
fn added_output() {
    // A.6
    round_trip::<AddedOutput>(
        r#"{"name":"smallfile.bin","cid":"$A","size":508,"allocations":["$P1"]}"#,
    );
    // wrapper line: empty name, no size/bytes/allocations
    round_trip::<AddedOutput>(r#"{"name":"","cid":"$B"}"#);
    // progress line: bytes set, cid null
    round_trip::<AddedOutput>(r#"{"name":"big.bin","cid":null,"bytes":262144}"#);
}

#[test]
fn metric_and_alert() {
    let m: Metric = round_trip(
        r#"{"name":"freespace","peer":"$P1","value":"1000","expire":1714558860500000000,"valid":true,"weight":1000,"partitionable":false,"received_at":1714558830500000000}"#,
    );
    assert!(m.usable(1_714_558_860_000_000_000));
    assert!(!m.usable(1_714_558_860_500_000_000));
    round_trip::<Alert>(
        r#"{"name":"ping","peer":"$P1","value":"{\"peer_name\":\"p1\"}","expire":1,"valid":true,"weight":0,"partitionable":false,"received_at":0,"triggered_at":"2024-05-01T10:21:00Z"}"#,
    );
    let pv: PingValue = round_trip(
        r#"{"peer_name":"p1","ipfs_id":"$IPFS","ipfs_addresses":["/ip4/127.0.0.1/tcp/4001"]}"#,
    );
    assert_eq!(pv.peer_name, "p1");
    round_trip::<PingValue>(r#"{}"#);
}

#[test]
fn repo_gc_graph_bandwidth() {
    round_trip::<GlobalRepoGc>(
        r#"{"peer_map":{"$P1":{"peer":"$P1","peername":"p1","keys":[{"key":"$A"},{"key":null,"error":"x"}]},"$IPFS":{"peer":"$IPFS","peername":"p2","keys":null,"error":"ipfs down"}}}"#,
    );
    round_trip::<ConnectGraph>(
        r#"{"cluster_id":"$P1","id_to_peername":{"$P1":"p1"},"ipfs_links":{"$IPFS":[]},"cluster_links":{"$P1":[]},"cluster_trust_links":{"$P1":true},"cluster_to_ipfs":{"$P1":"$IPFS"}}"#,
    );
    round_trip::<BandwidthByProtocol>(
        r#"{"/ipfscluster/1.0/rpc":{"total_in":10,"total_out":20,"rate_in":0,"rate_out":1.5}}"#,
    );
}

#[test]
fn pinning_service_objects() {
    let st: PinStatus = round_trip(
        r#"{"requestid":"$A","status":"queued","created":"2024-05-01T10:20:30Z","pin":{"cid":"$A","name":"n","origins":["/ip4/1.2.3.4/tcp/4001/p2p/$P1"],"meta":{"a":"b"}},"delegates":["/ip4/127.0.0.1/tcp/4001/p2p/$IPFS"],"info":{"source":"IPFS cluster API","warning1":"CID used for requestID. Conflicts possible","warning2":"experimental"}}"#,
    );
    assert_eq!(st.info, PinStatus::upstream_info());
    // omitempty pin fields
    round_trip::<PsaPin>(r#"{"cid":"$A"}"#);
    let r: PinResults = round_trip(r#"{"count":0,"results":[]}"#);
    assert_eq!(r, PinResults::default());
    let e: PsaError = round_trip(r#"{"error":{"reason":"pin not found"}}"#);
    assert_eq!(e, PsaError::new("pin not found"));
    // a missing or null cid is visible to the handler
    let p: PsaPin = serde_json::from_str(r#"{"name":"x"}"#).unwrap();
    assert_eq!(p.cid, None);
    let p: PsaPin = serde_json::from_str(r#"{"cid":null}"#).unwrap();
    assert_eq!(p.cid, None);
    // name limit: 255 chars is fine, 256 is not
    let ok = format!(r#"{{"cid":"{CID_A}","name":"{}"}}"#, "a".repeat(255));
    assert!(serde_json::from_str::<PsaPin>(&ok).is_ok());
    let long = format!(r#"{{"cid":"{CID_A}","name":"{}"}}"#, "a".repeat(256));
    let err = serde_json::from_str::<PsaPin>(&long).unwrap_err();
    assert!(
        err.to_string().contains("pin name is over 255 chars"),
        "{err}"
    );
    assert!(serde_json::from_str::<PsaStatus>(r#""weird""#).is_err());
}

#[test]
fn pinning_service_status_mapping() {
    let g = |statuses: &[TrackerStatus]| {
        let mut g: GlobalPinInfo = serde_json::from_str(&fill(r#"{"cid":"$A"}"#)).unwrap();
        for (i, s) in statuses.iter().enumerate() {
            g.peer_map.insert(
                format!("p{i}"),
                PinInfoShort {
                    status: *s,
                    ..Default::default()
                },
            );
        }
        PsaStatus::from_global(&g)
    };
    use TrackerStatus as S;
    assert_eq!(g(&[S::Pinned, S::PinError]), Some(PsaStatus::Failed));
    assert_eq!(g(&[]), Some(PsaStatus::Failed));
    assert_eq!(g(&[S::Undefined]), Some(PsaStatus::Failed));
    assert_eq!(
        g(&[S::Pinned, S::PinQueued, S::Pinning]),
        Some(PsaStatus::Queued)
    );
    assert_eq!(g(&[S::Pinned, S::Pinning]), Some(PsaStatus::Pinning));
    assert_eq!(g(&[S::Pinned, S::Remote]), Some(PsaStatus::Pinned));
    assert_eq!(g(&[S::Remote, S::Unpinned]), None);
    assert_eq!(g(&[S::UnexpectedlyUnpinned]), None);
    assert_eq!(PsaStatus::parse_filter("").unwrap().0, 14 | 512 | 16 | 32);
    assert_eq!(PsaStatus::parse_filter("pinned,bogus").unwrap().0, 16);
    assert_eq!(
        PsaStatus::parse_filter("bogus").unwrap_err().to_string(),
        "no valid filter"
    );
}

#[test]
fn time_precision_and_zero() {
    let p: PinInfoShort = round_trip(
        r#"{"peername":"","status":"undefined","timestamp":"0001-01-01T00:00:00Z","error":"","attempt_count":0,"priority_pin":false}"#,
    );
    assert!(p.timestamp.is_zero());
    // offsets are accepted and written back in UTC
    let p: PinInfoShort =
        serde_json::from_str(r#"{"timestamp":"2024-05-01T12:20:30.100+02:00"}"#).unwrap();
    assert_eq!(p.timestamp.to_string(), "2024-05-01T10:20:30.1Z");
}
