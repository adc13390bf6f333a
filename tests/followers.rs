//! Follower peers (`cluster.follower_mode`): crdt clusters started by the real
//! launcher on loopback, two trusted peers and a follower that trusts them.
//!
//! * The follower is in the trusted peers' peerset (its ping metric) and gets
//!   allocations: a trusted peer with `pin_only_on_untrusted_peers` allocates to it (and
//!   it pins on its Kubo node), one with `pin_only_on_trusted_peers` never does.
//! * `a_follower_cannot_change_the_pinset_by_any_route`: every write the follower is asked
//!   for is refused with upstream's words (REST pin, unpin, pin update, add, and peers rm
//!   as on any crdt peer; the Pinning
//!   Services API; the IPFS proxy's pin/add, pin/rm, pin/update, add), its peer calls to a
//!   trusted peer's consensus are refused, and a rogue follower (restarted without
//!   `follower_mode`, so it writes its own store and gossips its heads) changes nothing on
//!   the trusted peers. After each attempt the trusted peers' pinset is the one they wrote,
//!   and the follower still follows it.

use std::{collections::BTreeMap, time::Duration};

use ipfs_cluster_proto::{
    client,
    consensus::v1::{PinRequest, UnpinRequest},
    names,
    transport::v1::PeerCallRequest,
    types::v1::{Pin, PinType},
    InternalToken,
};
use ipfs_cluster_tests::*;
use prost::Message;

const FOLLOWER_ERROR: &str =
    "this peer is configured to be in follower mode. Write operations are disabled";

fn multipart_file(data: &[u8]) -> (String, Vec<u8>) {
    let boundary = "followerboundary2c9d";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn post_multipart(url: &str, data: &[u8]) -> (u16, String) {
    let (ct, body) = multipart_file(data);
    let req = hyper::Request::builder()
        .method("POST")
        .uri(url)
        .header("content-type", ct)
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    send(req).await.unwrap()
}

/// The request was refused with upstream's follower-mode words.
fn assert_follower_refusal(what: &str, (status, body): (u16, String)) {
    assert!(
        status >= 400 && body.contains(FOLLOWER_ERROR),
        "{what}: expected the follower-mode refusal, got {status} {body}"
    );
}

#[test]
fn a_follower_cannot_change_the_pinset_by_any_route() {
    one_at_a_time(async {
        // Peers 0 and 1 trust each other; peer 2 (the follower) trusts them.
        let mut c = Cluster::start_crdt_with(
            3,
            |_, ids| Some(vec![ids[0].clone(), ids[1].clone()]),
            |i, v| match i {
                // Peer 0 allocates to followers only, peer 1 to trusted peers only.
                0 => v["cluster"]["pin_only_on_untrusted_peers"] = serde_json::Value::Bool(true),
                1 => v["cluster"]["pin_only_on_trusted_peers"] = serde_json::Value::Bool(true),
                _ => v["cluster"]["follower_mode"] = serde_json::Value::Bool(true),
            },
        )
        .await
        .unwrap();
        // The follower is in every peerset (its ping metric), the trusted peers' too.
        for i in 0..3 {
            let url = format!("{}/peers", c.rest(i));
            wait_for(Duration::from_secs(90), || async {
                members(&url).await.len() == 3
            })
            .await
            .unwrap_or_else(|_| panic!("peer {i} does not see 3 peers\n{}", c.logs()));
        }
        c.wait_metric("freespace").await.unwrap();

        // Allocation: pin_only_on_untrusted_peers puts a pin on the follower, which pins
        // it on its Kubo node; pin_only_on_trusted_peers keeps it on the trusted peers.
        let content = c.ipfs_of(0).add(b"for the follower").await.unwrap();
        let (st, body) = http(
            "POST",
            &format!(
                "{}/pins/{content}?replication-min=1&replication-max=1",
                c.rest(0)
            ),
            None,
        )
        .await
        .unwrap();
        assert_eq!(st, 200, "{body}");
        let p: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(strings(&p["allocations"]), vec![c.ids[2].clone()], "{p}");
        let follower_ipfs = c.ipfs_of(2);
        wait_for(Duration::from_secs(60), || async {
            follower_ipfs
                .pins()
                .await
                .unwrap_or_default()
                .contains(&content)
        })
        .await
        .unwrap_or_else(|_| panic!("the follower did not pin {content}\n{}", c.logs()));
        let trusted_only = random_cid();
        let (st, body) = http(
            "POST",
            &format!(
                "{}/pins/{trusted_only}?replication-min=1&replication-max=1",
                c.rest(1)
            ),
            None,
        )
        .await
        .unwrap();
        assert_eq!(st, 200, "{body}");
        let p: serde_json::Value = serde_json::from_str(&body).unwrap();
        let a = strings(&p["allocations"]);
        assert!(
            a.len() == 1 && (a[0] == c.ids[0] || a[0] == c.ids[1]),
            "pin_only_on_trusted_peers allocated to {a:?}"
        );
        // crdt writes converge: peer 0 must hold peer 1's pin before it can unpin it.
        let written: BTreeMap<String, Vec<String>> = [
            (content.clone(), vec![c.ids[2].clone()]),
            (trusted_only.clone(), a.clone()),
        ]
        .into_iter()
        .collect();
        c.wait_states(&[0, 1], &written).await;
        for cid in [&content, &trusted_only] {
            let (st, body) = http("DELETE", &format!("{}/pins/{cid}", c.rest(0)), None)
                .await
                .unwrap();
            assert_eq!(st, 200, "{body}");
        }
        c.wait_states(&[0, 1, 2], &BTreeMap::new()).await;

        // The trusted peers' pinset, followed by the follower.
        let (kept, other) = (random_cid(), random_cid());
        for cid in [&kept, &other] {
            let (st, body) = http("POST", &format!("{}/pins/{cid}", c.rest(0)), None)
                .await
                .unwrap();
            assert_eq!(st, 200, "pin through a trusted peer: {body}");
        }
        let want = BTreeMap::from([(kept.clone(), vec![]), (other.clone(), vec![])]);
        c.wait_states(&[0, 1, 2], &want).await;

        // REST on the follower.
        let rest = c.rest(2);
        let new = random_cid();
        assert_follower_refusal(
            "REST pin",
            http("POST", &format!("{rest}/pins/{new}"), None)
                .await
                .unwrap(),
        );
        assert_follower_refusal(
            "REST unpin",
            http("DELETE", &format!("{rest}/pins/{kept}"), None)
                .await
                .unwrap(),
        );
        assert_follower_refusal(
            "REST pin update",
            http(
                "POST",
                &format!("{rest}/pins/{new}?pin-update={kept}"),
                None,
            )
            .await
            .unwrap(),
        );
        assert_follower_refusal(
            "REST pin by path",
            http("POST", &format!("{rest}/pins/ipfs/{new}"), None)
                .await
                .unwrap(),
        );
        assert_follower_refusal(
            "REST add",
            post_multipart(&format!("{rest}/add"), b"follower add").await,
        );
        assert_follower_refusal(
            "REST add without pin",
            post_multipart(&format!("{rest}/add?no-pin=true"), b"follower add").await,
        );

        // peers rm: crdt peers do not remove peers (upstream's crdt RmPeer refuses too).
        let (st, body) = http("DELETE", &format!("{rest}/peers/{}", c.ids[0]), None)
            .await
            .unwrap();
        assert!(st >= 400, "REST peers rm on the follower: {st} {body}");

        // Pinning Services API on the follower.
        let pinsvc = format!("http://127.0.0.1:{}", c.peers[2].ports.pinsvc);
        assert_follower_refusal(
            "Pinning Services add",
            http(
                "POST",
                &format!("{pinsvc}/pins"),
                Some(&format!("{{\"cid\":\"{new}\"}}")),
            )
            .await
            .unwrap(),
        );
        assert_follower_refusal(
            "Pinning Services remove",
            http("DELETE", &format!("{pinsvc}/pins/{kept}"), None)
                .await
                .unwrap(),
        );

        // The IPFS proxy on the follower.
        let proxy = format!("http://127.0.0.1:{}/api/v0", c.peers[2].ports.proxy);
        for (what, path) in [
            ("proxy pin/add", format!("pin/add?arg={new}")),
            ("proxy pin/rm", format!("pin/rm?arg={kept}")),
            (
                "proxy pin/update",
                format!("pin/update?arg={kept}&arg={new}"),
            ),
        ] {
            assert_follower_refusal(
                what,
                http("POST", &format!("{proxy}/{path}"), None)
                    .await
                    .unwrap(),
            );
        }
        assert_follower_refusal(
            "proxy add",
            post_multipart(&format!("{proxy}/add"), b"follower proxy add").await,
        );

        // Peer calls from the follower to a trusted peer's consensus, through the
        // follower's own transport (what its services would send).
        let token = InternalToken::load(&c.peers[2].dir.join("internal.token")).unwrap();
        let transport =
            client::transport(([127, 0, 0, 1], c.peers[2].ports.transport).into(), &token);
        let pin = Pin {
            cid: new.clone(),
            r#type: PinType::Data as i32,
            max_depth: -1,
            ..Default::default()
        };
        let calls = [
            (
                "Pin",
                PinRequest {
                    pin: Some(pin.clone()),
                }
                .encode_to_vec(),
            ),
            ("Unpin", UnpinRequest { cid: kept.clone() }.encode_to_vec()),
        ];
        for (method, payload) in calls {
            let mut t = transport.clone();
            let r = t
                .call(PeerCallRequest {
                    peer: c.ids[0].clone(),
                    service: names::CONSENSUS.to_string(),
                    method: method.into(),
                    payload,
                    timeout_ms: 20_000,
                })
                .await;
            match r {
                Err(s) => assert_eq!(
                    s.code(),
                    tonic::Code::PermissionDenied,
                    "peer call {method}: refused, but not as a permission error: {s:?}"
                ),
                Ok(_) => panic!("peer call {method} from the follower was accepted"),
            }
        }
        c.wait_states(&[0, 1, 2], &want).await;

        // A rogue follower: restarted without follower_mode, it writes its own store and
        // gossips its heads; the trusted peers do not apply them.
        c.stop(2);
        edit_service_json(&c.peers[2].dir, |v| {
            v["cluster"]["follower_mode"] = serde_json::Value::Bool(false);
        })
        .unwrap();
        c.restart(2).await.unwrap();
        let (st, body) = http("POST", &format!("{}/pins/{new}", c.rest(2)), None)
            .await
            .unwrap();
        assert_eq!(st, 200, "the rogue follower pins locally: {body}");
        let (st, body) = http("DELETE", &format!("{}/pins/{kept}", c.rest(2)), None)
            .await
            .unwrap();
        assert_eq!(st, 200, "the rogue follower unpins locally: {body}");
        let rogue = BTreeMap::from([(new.clone(), vec![]), (other.clone(), vec![])]);
        c.wait_states(&[2], &rogue).await;
        // Several rebroadcasts (every 2s) later, the trusted peers still hold their pinset.
        tokio::time::sleep(Duration::from_secs(8)).await;
        c.wait_states(&[0, 1], &want).await;
    });
}
