//! The REST gateway against running peers (real services, real Kubo nodes): every
//! route of upstream's route table with its errors, the
//! third-party JS and Python clients driven unmodified as subprocesses, TLS with Basic
//! Auth and JWT, and a 50 MiB `add` whose root CID must equal the IPFS node's own.
//! Two tests, each starting its own peers, so they run in parallel and stay fast.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::HeaderMap;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use ipfs_cluster_tests::*;
use serde_json::{json, Value};

/// One answer: status, headers and body text.
struct Resp {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
    fn lines(&self) -> Vec<Value> {
        self.body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
            .collect()
    }
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap_or("").to_string())
    }
    /// An upstream error body: `{"code":<status>,"message":…}` on one line.
    fn assert_error(&self, status: u16, message_prefix: &str, what: &str) {
        assert_eq!(self.status, status, "{what}: {}", self.body);
        assert!(self.body.ends_with('\n'), "{what}: one JSON line");
        let v = self.json();
        assert_eq!(v["code"], json!(status), "{what}: code field = status");
        let m = v["message"].as_str().unwrap_or_default();
        assert!(
            m.starts_with(message_prefix),
            "{what}: message {m:?} should start with {message_prefix:?}"
        );
        assert_eq!(
            v.as_object().map(|o| o.len()),
            Some(2),
            "{what}: only code and message"
        );
    }
}

async fn call(method: &str, url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Resp {
    call_within(method, url, headers, body, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e:#}"))
}

async fn call_within(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
    within: Duration,
) -> Result<Resp> {
    let mut b = hyper::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b.body(Full::new(Bytes::from(body)))?;
    let client = Client::builder(TokioExecutor::new()).build_http();
    let resp = tokio::time::timeout(within, client.request(req))
        .await
        .context("request timed out")??;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = tokio::time::timeout(within, resp.into_body().collect())
        .await
        .context("body timed out")??
        .to_bytes();
    Ok(Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

async fn get(url: &str) -> Resp {
    call("GET", url, &[], vec![]).await
}

async fn post(url: &str) -> Resp {
    call("POST", url, &[], vec![]).await
}

async fn delete(url: &str) -> Resp {
    call("DELETE", url, &[], vec![]).await
}

const BOUNDARY: &str = "----gatewayapitestboundary";

/// A multipart/form-data body with one file part, as browsers and `ipfs add` send it.
fn multipart_file(name: &str, data: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn multipart_ct() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

/// Deterministic incompressible bytes (xorshift64).
fn pseudo_random(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The IPFS node's own `add` of `data` with extra query parameters (nothing pinned).
async fn ipfs_add(node: &IpfsNode, query: &str, data: &[u8]) -> String {
    let r = call_within(
        "POST",
        // The cluster prints CIDv1 in base32; ask Kubo for the same base.
        &format!(
            "{}/api/v0/add?pin=false&{query}{}",
            node.api_url(),
            if query.contains("cid-version=1") {
                "&cid-base=base32"
            } else {
                ""
            }
        ),
        &[("content-type", &multipart_ct())],
        multipart_file("f", data),
        Duration::from_secs(180),
    )
    .await
    .expect("ipfs add");
    assert_eq!(r.status, 200, "ipfs add: {}", r.body);
    let last: Value = serde_json::from_str(r.body.lines().last().unwrap()).unwrap();
    last["Hash"].as_str().unwrap().to_string()
}

async fn ipfs_id(n: &IpfsNode) -> String {
    let r = post(&format!("{}/api/v0/id", n.api_url())).await;
    assert_eq!(r.status, 200);
    r.json()["ID"].as_str().unwrap().to_string()
}

/// Whether the IPFS node holds a recursive pin of `cid` (asked in base32, as we print it).
async fn ipfs_pinned(n: &IpfsNode, cid: &str) -> bool {
    let base = if cid.starts_with('b') {
        "&cid-base=base32"
    } else {
        ""
    };
    let r = post(&format!(
        "{}/api/v0/pin/ls?arg={cid}&type=recursive{base}",
        n.api_url()
    ))
    .await;
    r.status == 200 && r.body.contains(cid)
}

/// The statuses of `cid` in the peer_map of `GET /pins/{cid}`.
async fn statuses(rest: &str, cid: &str) -> Vec<String> {
    let r = get(&format!("{rest}/pins/{cid}")).await;
    if r.status != 200 {
        return vec![];
    }
    r.json()["peer_map"]
        .as_object()
        .map(|m| {
            m.values()
                .filter_map(|p| p["status"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

async fn wait_status(c: &Cluster, cid: &str, want: &str, within: Duration) {
    let rest = c.peers[0].rest_url();
    let ok = wait_for(within, || async {
        let s = statuses(&rest, cid).await;
        s.len() == 2 && s.iter().all(|x| x == want)
    })
    .await;
    if ok.is_err() {
        eprintln!("STATUS {}", get(&format!("{rest}/pins/{cid}")).await.body);
        for (i, n) in [c.ipfs_of(0), c.ipfs_of(1)].into_iter().enumerate() {
            eprintln!(
                "IPFSPIN{i} {}",
                post(&format!("{}/api/v0/pin/ls?arg={cid}", n.api_url()))
                    .await
                    .body
            );
        }
        for i in 0..2 {
            let t = std::fs::read_to_string(c.ipfs_of(i).log_path());
            eprintln!("IPFS{i} {}", t.unwrap_or_default());
            let t = std::fs::read_to_string(c.peers[i].dir.join("daemon.log")).unwrap_or_default();
            for l in t.lines().filter(|l| !l.contains("restapilog")) {
                eprintln!("PEER{i} {l}");
            }
        }
        panic!(
            "{cid} is not {want} on 2 peers: {:?}\npeer 0 log:\n{}\npeer 1 log:\n{}",
            statuses(&rest, cid).await,
            c.peers[0].log_tail(),
            c.peers[1].log_tail()
        );
    }
}

/// Two peers, each with its own Kubo node (swarm-connected so either can fetch what the
/// other holds), the second joined through `--bootstrap`; both hold both freespace metrics.
/// `TEST_RUST_LOG=info,ipfs_cluster_ipfs_connector=debug` logs the pin tracker.
async fn two_peers() -> Cluster {
    let c = Cluster::start_laid_out(Layout::OwnIpfs, 2, Join::OneByOne, None, |_| vec![])
        .await
        .expect("two peers, each with its own Kubo node");
    c.ipfs_of(1)
        .connect(c.ipfs_of(0))
        .await
        .expect("swarm connect");
    c.wait_metric("freespace").await.unwrap();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_clients_and_big_add_on_two_peers() {
    let c = two_peers().await;
    let rest = c.peers[0].rest_url();
    let (id0, id1) = (c.ids[0].clone(), c.ids[1].clone());

    // --- 1 GET /id, 2 GET /version
    let r = get(&format!("{rest}/id")).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    let v = r.json();
    assert_eq!(v["id"], json!(id0));
    assert_eq!(v["version"], json!("1.1.6"));
    assert_eq!(v["ipfs"]["id"], json!(ipfs_id(c.ipfs_of(0)).await));
    assert_eq!(v["cluster_peers"].as_array().map(Vec::len), Some(2));
    let r = get(&format!("{rest}/version")).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "{\"version\":\"1.1.6\"}\n")
    );

    // --- 3 GET /peers (NDJSON of ID), 4 POST /peers errors, 5 DELETE /peers errors
    let r = get(&format!("{rest}/peers")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("trailer").as_deref(), Some("X-Stream-Error"));
    let mut ids: Vec<String> = r
        .lines()
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    let mut want = vec![id0.clone(), id1.clone()];
    want.sort();
    assert_eq!(ids, want);
    call("POST", &format!("{rest}/peers"), &[], b"not json".to_vec())
        .await
        .assert_error(400, "error decoding request body", "POST /peers bad body");
    call(
        "POST",
        &format!("{rest}/peers"),
        &[],
        br#"{"peer_id":"notapeer"}"#.to_vec(),
    )
    .await
    .assert_error(400, "error decoding peer_id", "POST /peers bad peer");
    delete(&format!("{rest}/peers/notapeer"))
        .await
        .assert_error(400, "error decoding Peer ID: ", "DELETE /peers bad peer");

    // --- router: 404, 405 (empty body), trailing slash 307, dirty path 301, `/`
    let r = get(&format!("{rest}/nothing/here")).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (404, "{\"code\":404,\"message\":\"not found\"}\n")
    );
    let some_cid = "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"; // the empty directory

    // gorilla/mux v1.8.1 (upstream's): a later route with the request's method clears a
    // path-only match, so only these are 405 (checked against upstream by tests/compat.rs).
    for (m, p) in [
        ("HEAD", "/id".to_string()),
        ("PUT", format!("/pins/{some_cid}")),
        ("DELETE", "/health/graph".to_string()),
    ] {
        let r = call(m, &format!("{rest}{p}"), &[], vec![]).await;
        assert_eq!((r.status, r.body.as_str()), (405, ""), "{m} {p}");
    }
    for (m, p) in [
        ("GET", "/add".to_string()),
        ("GET", format!("/pins/ipfs/{some_cid}")),
        ("GET", "/token".to_string()),
        ("DELETE", "/version".to_string()),
    ] {
        let r = call(m, &format!("{rest}{p}"), &[], vec![]).await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (404, "{\"code\":404,\"message\":\"not found\"}\n"),
            "{m} {p}"
        );
    }
    let r = get(&format!("{rest}/pins/?cids={some_cid}")).await;
    assert_eq!(r.status, 307);
    assert_eq!(
        r.header("location").as_deref(),
        Some(format!("/pins?cids={some_cid}").as_str())
    );
    let r = post(&format!("{rest}/id/")).await;
    assert_eq!((r.status, r.header("location")), (307, Some("/id".into())));
    let r = get(&format!("{rest}/pins/../id")).await;
    // hyper's client sends the path as given; the gateway cleans it.
    assert!(
        r.status == 301 && r.header("location").as_deref() == Some("/id"),
        "dirty path: {} {:?}",
        r.status,
        r.header("location")
    );
    assert_eq!(get(&format!("{rest}/")).await.status, 404);

    // --- oversized headers: 431 (max_header_bytes 4096 + Go's slack, hyper's 8 KiB floor)
    let big = "x".repeat(64 * 1024);
    let r = call("GET", &format!("{rest}/id"), &[("x-big", &big)], vec![]).await;
    assert_eq!(r.status, 431, "oversized headers: {}", r.body);

    // --- 24 GET /health, 23 POST /token without auth configured
    let r = get(&format!("{rest}/health")).await;
    assert_eq!((r.status, r.body.as_str()), (204, ""));
    let r = post(&format!("{rest}/token")).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (401, "{\"code\":401,\"message\":\"unauthorized\"}\n")
    );

    // --- CORS on an open API: simple request and preflight
    let r = call(
        "GET",
        &format!("{rest}/version"),
        &[("origin", "http://example.org")],
        vec![],
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.header("access-control-allow-origin").is_some());
    let r = call(
        "OPTIONS",
        &format!("{rest}/version"),
        &[
            ("origin", "http://example.org"),
            ("access-control-request-method", "GET"),
        ],
        vec![],
    )
    .await;
    assert_eq!(r.status, 204, "preflight");
    assert!(r.header("access-control-allow-methods").is_some());

    // --- unknown and malformed CIDs
    let unknown = c
        .ipfs_of(0)
        .add(b"never pinned by the cluster\n")
        .await
        .unwrap();
    get(&format!("{rest}/allocations/{unknown}"))
        .await
        .assert_error(404, "pin is not part of the pinset", "unknown allocation");
    let r = get(&format!("{rest}/allocations/{unknown}")).await;
    assert!(
        !r.body.contains(&unknown),
        "404 message must not name the CID"
    );
    delete(&format!("{rest}/pins/{unknown}"))
        .await
        .assert_error(404, "pin is not part of the pinset", "unpin unknown");
    let r = get(&format!("{rest}/pins/{unknown}")).await;
    assert_eq!(r.status, 200, "status of an unknown CID: {}", r.body);
    let v = r.json();
    let st: Vec<&str> = v["peer_map"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p["status"].as_str().unwrap())
        .collect();
    assert_eq!(st, vec!["unpinned", "unpinned"]);
    // As upstream: a pin made on the spot, so `created` is now and `origins` null.
    assert_eq!(v["origins"], Value::Null, "{v}");
    assert_ne!(v["created"], json!("0001-01-01T00:00:00Z"), "{v}");
    for (m, p) in [
        ("GET", "/pins/notacid"),
        ("POST", "/pins/notacid"),
        ("DELETE", "/pins/notacid"),
        ("GET", "/allocations/notacid"),
        ("POST", "/pins/notacid/recover"),
        ("GET", "/pins/recover"),
        ("DELETE", "/pins/recover"),
        ("POST", "/pins/ipfs/recover"),
    ] {
        call(m, &format!("{rest}{p}"), &[], vec![])
            .await
            .assert_error(400, "error decoding Cid: ", &format!("{m} {p}"));
    }
    post(&format!("{rest}/pins/ipfs/notacid/x"))
        .await
        .assert_error(400, "error parsing path: ", "bad /ipfs path");
    get(&format!("{rest}/pins?cids={unknown},,"))
        .await
        .assert_error(400, "error decoding Cid: ", "cids with an empty element");

    // --- bad option values: one 400, no side effect
    for (q, msg) in [
        ("replication-min=x", "parameter replication-min invalid"),
        ("replication-max=1.5", "parameter replication-max invalid"),
        ("shard-size=-1", "parameter shard_size is invalid"),
        (
            "expire-at=2024-05-01T10:00:00",
            "expire-at cannot be parsed: ",
        ),
        ("expire-in=banana", "expire-in cannot be parsed: "),
        ("expire-in=10ms", "expire-in duration too short"),
        (
            "pin-update=notacid",
            "error decoding update option parameter: ",
        ),
        ("origins=notamultiaddr", "error decoding multiaddress: "),
    ] {
        post(&format!("{rest}/pins/{unknown}?{q}"))
            .await
            .assert_error(400, msg, q);
        post(&format!("{rest}/pins/ipfs/{unknown}?{q}"))
            .await
            .assert_error(400, msg, &format!("path route {q}"));
    }
    assert_eq!(
        get(&format!("{rest}/allocations/{unknown}")).await.status,
        404,
        "a refused pin must not be created"
    );
    get(&format!("{rest}/allocations?filter=invalid"))
        .await
        .assert_error(400, "invalid filter value", "allocations filter");
    get(&format!("{rest}/pins?filter=bogus"))
        .await
        .assert_error(400, "invalid filter value", "pins filter");
    post(&format!(
        "{rest}/pins/{unknown}?replication-min=3&replication-max=2"
    ))
    .await
    .assert_error(
        500,
        "cluster.replication_factor_min is larger than max",
        "rf",
    );

    // --- add errors: bad parameters and a body that is not multipart
    let ct = multipart_ct();
    for (q, msg) in [
        ("cid-version=x", "parameter cid-version invalid"),
        ("format=zip", "format parameter is invalid"),
        ("layout=zigzag", "layout parameter is invalid"),
        (
            "wrap-with-directory=maybe",
            "parameter wrap-with-directory invalid",
        ),
        ("replication-min=x", "parameter replication-min invalid"),
    ] {
        call(
            "POST",
            &format!("{rest}/add?{q}"),
            &[("content-type", &ct)],
            multipart_file("a", b"a"),
        )
        .await
        .assert_error(400, msg, &format!("add {q}"));
    }
    for ctype in [None, Some("text/plain"), Some("application/json")] {
        let h: Vec<(&str, &str)> = ctype.iter().map(|t| ("content-type", *t)).collect();
        call("POST", &format!("{rest}/add"), &h, b"just bytes".to_vec())
            .await
            .assert_error(
                400,
                "request Content-Type isn't multipart/form-data",
                &format!("add with {ctype:?}"),
            );
    }

    // --- 13 pin, 7/8 allocations, 12/9 status, 10/11 recover, 15 unpin
    let cid = c
        .ipfs_of(0)
        .add(b"pinned through the REST API\n")
        .await
        .unwrap();
    let r = post(&format!(
        "{rest}/pins/{cid}?name=rest-pin&replication-min=-1&replication-max=-1&meta-k=v"
    ))
    .await;
    assert_eq!(r.status, 200, "pin: {}", r.body);
    let p = r.json();
    assert_eq!(
        (&p["cid"], &p["name"], &p["metadata"]),
        (&json!(cid), &json!("rest-pin"), &json!({"k": "v"}))
    );
    let r = get(&format!("{rest}/allocations/{cid}")).await;
    assert_eq!((r.status, &r.json()["name"]), (200, &json!("rest-pin")));
    for q in ["", "?filter=pin", "?filter=pin,invalid", "?filter=all"] {
        let r = get(&format!("{rest}/allocations{q}")).await;
        assert_eq!(r.status, 200, "allocations{q}");
        assert!(
            r.lines().iter().any(|l| l["cid"] == json!(cid)),
            "allocations{q}"
        );
    }
    assert_eq!(
        get(&format!("{rest}/allocations?filter=meta-pin"))
            .await
            .status,
        204,
        "an empty stream is 204"
    );
    wait_status(&c, &cid, "pinned", Duration::from_secs(60)).await;
    let r = get(&format!("{rest}/pins")).await;
    assert_eq!(r.status, 200);
    let item = r
        .lines()
        .into_iter()
        .find(|l| l["cid"] == json!(cid))
        .expect("GET /pins lists the pin");
    assert_eq!(item["peer_map"].as_object().unwrap().len(), 2);
    let r = get(&format!("{rest}/pins?local=true")).await;
    let item = r
        .lines()
        .into_iter()
        .find(|l| l["cid"] == json!(cid))
        .expect("local GET /pins lists the pin");
    assert_eq!(
        item["peer_map"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        vec![&id0]
    );
    let r = get(&format!("{rest}/pins?cids={cid},{unknown}&filter=bogus")).await;
    assert_eq!(r.status, 200, "cids= ignores the filter: {}", r.body);
    assert_eq!(r.lines().len(), 2);
    let r = get(&format!("{rest}/pins?filter=pinned")).await;
    assert!(r.lines().iter().any(|l| l["cid"] == json!(cid)));
    assert_eq!(
        get(&format!("{rest}/pins?filter=pin_error")).await.status,
        204
    );
    let r = post(&format!("{rest}/pins/{cid}/recover")).await;
    assert_eq!(r.status, 200, "recover: {}", r.body);
    assert_eq!(r.json()["peer_map"].as_object().unwrap().len(), 2);
    let r = post(&format!("{rest}/pins/{cid}/recover?local=true")).await;
    assert_eq!(r.json()["peer_map"].as_object().unwrap().len(), 1);
    let r = post(&format!("{rest}/pins/recover")).await;
    assert_eq!((r.status, r.body.as_str()), (204, ""), "nothing to recover");
    let r = delete(&format!("{rest}/pins/{cid}")).await;
    assert_eq!(r.status, 200, "unpin: {}", r.body);
    assert_eq!(
        r.json()["name"],
        json!("rest-pin"),
        "unpin answers the pin as it was"
    );
    wait_status(&c, &cid, "unpinned", Duration::from_secs(30)).await;

    // --- 14/16 path routes (with IPFS resolution of a sub-path), mode=direct honoured
    let r = post(&format!("{rest}/pins/ipfs/{cid}?mode=direct")).await;
    assert_eq!(r.status, 200, "path pin: {}", r.body);
    assert_eq!(
        (&r.json()["mode"], &r.json()["max_depth"]),
        (&json!("direct"), &json!(0))
    );
    let r = delete(&format!("{rest}/pins/ipfs/{cid}")).await;
    assert_eq!((r.status, &r.json()["cid"]), (200, &json!(cid)));
    let r = post(&format!("{rest}/pins/ipfs/{cid}/no/such/link")).await;
    assert_eq!(r.status, 500, "unresolvable path: {}", r.body);
    assert_eq!(r.json()["code"], json!(500));

    // --- 17 repo GC, 18 graph, 19 alerts, 20 bandwidth, 21/22 metrics
    let r = post(&format!("{rest}/ipfs/gc")).await;
    assert_eq!(r.status, 200, "gc: {}", r.body);
    assert_eq!(r.json()["peer_map"].as_object().unwrap().len(), 2);
    let r = post(&format!("{rest}/ipfs/gc?local=true")).await;
    let v = r.json();
    assert_eq!(v["peer_map"].as_object().unwrap().len(), 1);
    assert_eq!(v["peer_map"][&id0]["peer"], json!(id0));
    let r = get(&format!("{rest}/health/graph")).await;
    assert_eq!(r.status, 200);
    let g = r.json();
    assert_eq!(g["cluster_id"], json!(id0));
    assert_eq!(g["cluster_links"].as_object().unwrap().len(), 2);
    assert_eq!(g["cluster_to_ipfs"].as_object().unwrap().len(), 2);
    let r = get(&format!("{rest}/health/alerts")).await;
    assert!(r.status == 200 && r.json().is_array(), "alerts: {}", r.body);
    let r = get(&format!("{rest}/health/bandwidth")).await;
    // Bandwidth is keyed by protocol id, with real bytes (two connected peers gossip).
    assert_eq!(r.status, 200, "bandwidth: {}", r.body);
    let bw = r.json();
    let table = bw.as_object().expect("bandwidth is an object");
    let mesh = table
        .iter()
        .find(|(k, _)| k.starts_with("/meshsub/"))
        .unwrap_or_else(|| panic!("no gossipsub entry: {bw}"));
    assert!(mesh.1["total_in"].as_i64().unwrap() > 0, "{bw}");
    assert!(mesh.1["total_out"].as_i64().unwrap() > 0, "{bw}");
    for v in table.values() {
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["total_in", "total_out", "rate_in", "rate_out"],
            "{bw}"
        );
    }
    let metrics = format!("{rest}/monitor/metrics");
    wait_for(Duration::from_secs(40), || async {
        get(&metrics)
            .await
            .json()
            .as_array()
            .is_some_and(|a| a.contains(&json!("ping")))
    })
    .await
    .expect("the ping metric is listed");
    let ping = format!("{rest}/monitor/metrics/ping");
    wait_for(Duration::from_secs(40), || async {
        get(&ping)
            .await
            .json()
            .as_array()
            .is_some_and(|a| a.len() == 2)
    })
    .await
    .expect("a ping metric per peer");
    assert_eq!(
        get(&format!("{rest}/monitor/metrics/nosuch")).await.body,
        "[]\n"
    );

    // --- third-party clients, unmodified
    js_client_session(&rest, 2, c.ipfs_of(0)).await;
    py_client_session(c.peers[0].ports.rest, 2).await;

    // --- 6 POST /add of 50 MiB: same root as the IPFS node's own add; pinned on every
    // allocated peer (the gateway sends the blocks to them after the pin; with connected
    // IPFS nodes bitswap could also move them, so this does not tell the two apart).
    let data = pseudo_random(50 << 20, 0x9e37_79b9_7f4a_7c15);
    for q in ["", "cid-version=1&raw-leaves=true&no-pin=true"] {
        let started = Instant::now();
        let r = call_within(
            "POST",
            &format!("{rest}/add?name=big&{q}"),
            &[("content-type", &ct)],
            multipart_file("big.bin", &data),
            Duration::from_secs(300),
        )
        .await
        .expect("add 50 MiB");
        assert_eq!(r.status, 200, "add {q}: {}", r.body);
        assert_eq!(r.header("x-chunked-output").as_deref(), Some("1"));
        let outs = r.lines();
        assert_eq!(outs.len(), 1, "one output for one file: {}", r.body);
        let root = outs[0]["cid"].as_str().unwrap().to_string();
        assert_eq!(outs[0]["name"], json!("big.bin"));
        let want = ipfs_add(c.ipfs_of(1), q.trim_end_matches("&no-pin=true"), &data).await;
        assert_eq!(
            root, want,
            "add {q:?}: gateway root vs the IPFS node's own add"
        );
        println!(
            "add 50 MiB ({q:?}) through the gateway: {:?}",
            started.elapsed()
        );
        if q.contains("no-pin") {
            // The v1 variant checks the CID only (keeps the test short): nothing pinned.
            assert_eq!(get(&format!("{rest}/allocations/{root}")).await.status, 404);
            continue;
        }
        wait_status(&c, &root, "pinned", Duration::from_secs(120)).await;
        for n in [c.ipfs_of(0), c.ipfs_of(1)] {
            assert!(ipfs_pinned(n, &root).await, "{root} pinned on IPFS");
        }
        let r = delete(&format!("{rest}/pins/{root}")).await;
        assert_eq!(r.status, 200);
    }

    // --- 5 DELETE /peers/{peer}: the second peer leaves
    let r = delete(&format!("{rest}/peers/{id1}")).await;
    assert_eq!((r.status, r.body.as_str()), (204, ""), "peers rm");
    wait_for(Duration::from_secs(30), || async {
        get(&format!("{rest}/peers")).await.lines().len() == 1
    })
    .await
    .expect("one peer left after peers rm");
    drop(c);
}

fn clients_dir() -> PathBuf {
    repo_root().join("tests/clients")
}

/// Runs a client subprocess to completion (bounded), returning its stdout; panics with
/// its output when it fails.
async fn run_client(name: &str, cmd: &mut tokio::process::Command) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(180),
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{name} session did not finish within 180 s"))
    .unwrap_or_else(|e| panic!("starting the {name} session: {e}"));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "{name} session failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

async fn js_client_session(rest: &str, peers: usize, ipfs: &IpfsNode) {
    let dir = clients_dir();
    if !dir.join("node_modules/@nftstorage/ipfs-cluster").exists() {
        skip(
            "js client session",
            "the JS client is not installed: run `make clients`",
        );
        return;
    }
    let out = run_client(
        "JS client",
        tokio::process::Command::new("node")
            .current_dir(&dir)
            .arg("js_session.mjs")
            .arg(format!("{rest}/"))
            .arg(peers.to_string()),
    )
    .await;
    let v: Value = serde_json::from_str(out.trim().lines().last().unwrap_or("")).unwrap();
    // The JS client adds with CIDv1 + raw leaves: the IPFS node must agree on the CID.
    let cid = v["cid"].as_str().unwrap();
    println!("js client session: {v}");
    assert!(cid.starts_with("bafk"), "{v}");
    let content = v["content"].as_str().unwrap();
    let want = ipfs_add(ipfs, "cid-version=1&raw-leaves=true", content.as_bytes()).await;
    assert_eq!(cid, want, "JS add vs the IPFS node's own add");
}

async fn py_client_session(port: u16, peers: usize) {
    let dir = clients_dir();
    let venv = dir.join(".venv/bin/python");
    let python = if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    };
    let probe = tokio::process::Command::new(&python)
        .args(["-c", "import ipfscluster"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    if !probe.is_ok_and(|s| s.success()) {
        skip(
            "python client session",
            "the Python clients are not installed: run `make clients`",
        );
        return;
    }
    let out = run_client(
        "Python client",
        tokio::process::Command::new(&python)
            .current_dir(&dir)
            .arg("py_session.py")
            .arg(port.to_string())
            .arg(peers.to_string()),
    )
    .await;
    println!("python client session: {}", out.trim());
    assert!(out.contains("\"ok\": true"), "{out}");
}

// ---------------------------------------------------------------------------------------
// TLS + Basic Auth + JWT on one peer.

/// `curl` with the given args; returns (status, headers, body). Status 0 = no answer.
/// `curl -i` with `args`. Every call comes from its own loopback address (127.0.0.2, .3,
/// …): the gateway throttles failed logins per client address, and each check here stands
/// for a different client.
async fn curl(args: &[&str]) -> (u16, String, String) {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 250 + 2;
    let from = format!("127.0.0.{n}");
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new("curl")
            .args(["-sS", "-i", "--max-time", "20", "--interface", &from])
            .args(args)
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("curl timed out")
    .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return (0, String::from_utf8_lossy(&out.stderr).into_owned(), text);
    };
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_string())
}

fn b64url(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for ch in data.chunks(3) {
        let n = ch
            .iter()
            .enumerate()
            .fold(0u32, |a, (i, b)| a | (*b as u32) << (16 - 8 * i));
        for i in 0..=ch.len() {
            out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// An HS256 JWT over `claims` keyed with `key`, signed by `openssl` (no crate needed).
fn hs256(claims: &str, key: &str) -> String {
    let signing = format!(
        "{}.{}",
        b64url(br#"{"alg":"HS256","typ":"JWT"}"#),
        b64url(claims.as_bytes())
    );
    // HMAC zero-pads keys to the block size, so the empty key is the key "\0" (openssl
    // refuses an empty hexkey).
    let mut hexkey: String = key.bytes().map(|b| format!("{b:02x}")).collect();
    if hexkey.is_empty() {
        hexkey.push_str("00");
    }
    let mut cmd = std::process::Command::new("openssl");
    cmd.args(["dgst", "-sha256", "-binary", "-mac", "HMAC", "-macopt"])
        .arg(format!("hexkey:{hexkey}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = cmd.spawn().expect("openssl");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(signing.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.len() == 32,
        "openssl HMAC"
    );
    format!("{signing}.{}", b64url(&out.stdout))
}

fn gen_cert(dir: &Path) -> Result<()> {
    let st = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
        ])
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if !st.success() {
        bail!("openssl req failed");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_basic_auth_and_tokens() {
    if which("openssl").is_none() || which("curl").is_none() {
        skip(
            "tls_basic_auth_and_tokens",
            "needs the openssl and curl commands",
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let ipfs = IpfsNode::start(tmp.path()).await.unwrap();
    let peer = PeerDir::init(&tmp.path().join("peer"), &ipfs.multiaddr(), None).unwrap();
    gen_cert(&peer.dir).unwrap();
    let cfg_path = peer.dir.join("service.json");
    let mut cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    let api = &mut cfg["api"]["restapi"];
    api["ssl_cert_file"] = json!("cert.pem");
    api["ssl_key_file"] = json!("key.pem");
    api["basic_auth_credentials"] = json!({"alice": "s3cret", "userwithoutpass": ""});
    std::fs::write(&cfg_path, serde_json::to_string_pretty(&cfg).unwrap()).unwrap();

    // Start by hand: the harness waits on plain HTTP without credentials.
    let log = std::fs::File::create(peer.dir.join("daemon.log")).unwrap();
    let _daemon = Proc::spawn(
        "ipfs-cluster-service",
        std::process::Command::new(bin("ipfs-cluster-service"))
            .arg("--config")
            .arg(&peer.dir)
            .arg("daemon")
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null()),
    )
    .unwrap();
    let cacert = peer.dir.join("cert.pem").display().to_string();
    let base = format!("https://127.0.0.1:{}", peer.ports.rest);
    let health = format!("{base}/health");
    wait_for(Duration::from_secs(60), || async {
        curl(&["--cacert", &cacert, &health]).await.0 == 204
    })
    .await
    .unwrap_or_else(|_| panic!("TLS peer not ready; log:\n{}", peer.log_tail()));
    let url = |p: &str| format!("{base}{p}");
    let id = url("/id");

    // A client that does not trust the certificate refuses it; one that does works.
    let (st, err, _) = curl(&[&id]).await;
    assert_eq!(
        st, 0,
        "an untrusted self-signed certificate must be refused: {err}"
    );

    // Missing / wrong credentials: 401 with upstream's body and no CORS headers.
    let origin = ["-H", "Origin: http://example.org"];
    let (st, head, body) = curl(&["--cacert", &cacert, origin[0], origin[1], &id]).await;
    assert_eq!(
        (st, body.as_str()),
        (
            401,
            "{\"code\":401,\"message\":\"unauthorized: no auth provided\"}\n"
        )
    );
    assert!(
        !head.contains("access-control-"),
        "401 has no CORS headers:\n{head}"
    );
    assert!(head.contains("www-authenticate: bearer realm=\"restricted ipfs cluster api\""));
    assert!(head.contains("www-authenticate: basic realm=\"restricted ipfs cluster api\""));
    for creds in ["alice:wrong", "bob:s3cret", "userwithoutpass:"] {
        let (st, head, body) =
            curl(&["--cacert", &cacert, "-u", creds, origin[0], origin[1], &id]).await;
        assert_eq!(
            (st, body.as_str()),
            (
                401,
                "{\"code\":401,\"message\":\"unauthorized: access denied\"}\n"
            ),
            "{creds}"
        );
        assert!(!head.contains("access-control-"), "401 has no CORS headers");
    }

    // Basic Auth over TLS works, CORS headers on the authorised answer.
    let (st, head, body) = curl(&[
        "--cacert",
        &cacert,
        "-u",
        "alice:s3cret",
        origin[0],
        origin[1],
        &id,
    ])
    .await;
    assert_eq!(st, 200, "{body}");
    assert!(head.contains("access-control-allow-origin"));
    let my_id = serde_json::from_str::<Value>(&body).unwrap()["id"].clone();

    // POST /token, then Bearer works; the token is upstream's HS256 `{"iss":...}` plus an
    // expiry and a scope (docs/security.md).
    let (st, _, body) = curl(&[
        "--cacert",
        &cacert,
        "-u",
        "alice:s3cret",
        "-X",
        "POST",
        &url("/token"),
    ])
    .await;
    assert_eq!(st, 200, "{body}");
    let token = serde_json::from_str::<Value>(&body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(token.starts_with(&format!("{}.", b64url(br#"{"alg":"HS256","typ":"JWT"}"#))));
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            token.split('.').nth(1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (&claims["iss"], &claims["scope"]),
        (&Value::from("alice"), &Value::from("write"))
    );
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        24 * 3600
    );
    let bearer = format!("Authorization: Bearer {token}");
    let (st, _, body) = curl(&["--cacert", &cacert, "-H", &bearer, &id]).await;
    assert_eq!(
        (
            st,
            serde_json::from_str::<Value>(&body).unwrap()["id"].clone()
        ),
        (200, my_id)
    );

    // Forged tokens are refused: the empty-password user (upstream's hole), a wrong key,
    // alg none, garbage.
    for (what, forged) in [
        ("empty key", hs256(r#"{"iss":"userwithoutpass"}"#, "")),
        (
            "never expiring (upstream's kind)",
            hs256(r#"{"iss":"alice"}"#, "s3cret"),
        ),
        ("wrong key", hs256(r#"{"iss":"alice"}"#, "guess")),
        ("unknown user", hs256(r#"{"iss":"mallory"}"#, "x")),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64url(br#"{"alg":"none","typ":"JWT"}"#),
                b64url(br#"{"iss":"alice"}"#)
            ),
        ),
        ("garbage", "not.a.jwt".to_string()),
    ] {
        let h = format!("Authorization: Bearer {forged}");
        let (st, head, body) = curl(&["--cacert", &cacert, "-H", &h, &id]).await;
        assert_eq!(
            (st, body.as_str()),
            (
                401,
                "{\"code\":401,\"message\":\"unauthorized: invalid token\"}\n"
            ),
            "{what}"
        );
        assert!(head.contains("error=\"invalid_token\""), "{what}: {head}");
    }
    let (st, _, _) = curl(&[
        "--cacert",
        &cacert,
        "-u",
        "userwithoutpass:",
        "-X",
        "POST",
        &url("/token"),
    ])
    .await;
    assert_eq!(st, 401, "no token for a user without password");

    // /health needs no credentials.
    assert_eq!(curl(&["--cacert", &cacert, &health]).await.0, 204);

    // Plain HTTP to the TLS port fails cleanly (no HTTP answer), and the peer keeps serving.
    let plain = format!("http://127.0.0.1:{}/id", peer.ports.rest);
    match http("GET", &plain, None).await {
        Err(_) => {}
        Ok((st, body)) => panic!("plain HTTP to the TLS port got an answer: {st} {body}"),
    }
    let (st, _, _) = curl(&["--cacert", &cacert, "-u", "alice:s3cret", &id]).await;
    assert_eq!(st, 200, "still serving TLS after a plain HTTP attempt");
}

fn which(cmd: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(cmd))
            .find(|p| p.exists())
    })
}

/// One request; the raw body bytes (binary-safe, unlike `call`).
async fn call_bytes(method: &str, url: &str, body: Vec<u8>, within: Duration) -> (u16, Bytes) {
    let req = hyper::Request::builder()
        .method(method)
        .uri(url)
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http();
    let fut = async {
        let resp = client.request(req).await?;
        let st = resp.status().as_u16();
        let b = resp.into_body().collect().await?.to_bytes();
        Ok::<_, anyhow::Error>((st, b))
    };
    tokio::time::timeout(within, fut)
        .await
        .unwrap_or_else(|_| panic!("{method} {url}: no answer within {within:?}"))
        .unwrap_or_else(|e| panic!("{method} {url}: {e:#}"))
}

/// POST /add?format=car: a CAR from the IPFS node's `dag/export` of added content, whose
/// blocks are then REMOVED from that node (`block/rm`), is imported block by block through
/// the ipfs connector, its root is pinned through the cluster, and `cat` of the whole
/// content works again on the peer's IPFS (so every block came from the CAR).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_format_car_imports_a_dag_export() {
    let tmp = tempfile::tempdir().unwrap();
    let dc = tmp.path().join("ipfs");
    std::fs::create_dir_all(&dc).unwrap();
    let c = IpfsNode::start(&dc).await.expect("IPFS node");
    let data = pseudo_random(600_000, 7); // 3 chunks: 3 leaves + 1 root
    let root = ipfs_add(&c, "", &data).await;
    let (st, car) = call_bytes(
        "POST",
        &format!("{}/api/v0/dag/export?arg={root}", c.api_url()),
        vec![],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(st, 200, "dag/export");
    assert!(car.len() > data.len());
    let (st, refs) = call_bytes(
        "POST",
        &format!("{}/api/v0/refs?arg={root}&recursive=true", c.api_url()),
        vec![],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(st, 200);
    let mut rm = format!("{}/api/v0/block/rm?arg={root}", c.api_url());
    let mut n = 1;
    for v in serde_json::Deserializer::from_slice(&refs).into_iter::<Value>() {
        rm.push_str(&format!("&arg={}", v.unwrap()["Ref"].as_str().unwrap()));
        n += 1;
    }
    assert_eq!(n, 4, "root + 3 leaves");
    let (st, body) = call_bytes("POST", &rm, vec![], Duration::from_secs(30)).await;
    let body = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(st, 200, "block/rm: {body}");
    let removed: Vec<Value> = serde_json::Deserializer::from_str(&body)
        .into_iter::<Value>()
        .map(Result::unwrap)
        .collect();
    assert_eq!(removed.len(), 4, "block/rm: {body}");
    for r in &removed {
        assert!(
            r["Error"].as_str().unwrap_or("").is_empty(),
            "block/rm: {body}"
        );
    }
    assert!(body.contains(&root), "block/rm: {body}");

    let p = PeerDir::init(&tmp.path().join("peer"), &c.multiaddr(), None).unwrap();
    let _daemon = p.start(&[]).await.unwrap();
    let rest = p.rest_url();
    let ct = multipart_ct();
    let hdr = [("content-type", ct.as_str())];

    // Errors: wrapping, a body that is not a CAR, a truncated CAR.
    let r = call(
        "POST",
        &format!("{rest}/add?format=car&wrap-with-directory=true&stream-channels=false"),
        &hdr,
        multipart_file("x.car", &car),
    )
    .await;
    r.assert_error(500, "cannot wrap a CAR file upload", "car + wrap");
    let r = call(
        "POST",
        &format!("{rest}/add?format=car&stream-channels=false"),
        &hdr,
        multipart_file("x.car", b"\x05hello, not a car"),
    )
    .await;
    r.assert_error(500, "CAR header is not a CBOR map", "not a CAR");
    let r = call(
        "POST",
        &format!("{rest}/add?format=car&stream-channels=false"),
        &hdr,
        multipart_file("x.car", &car[..car.len() - 10]),
    )
    .await;
    r.assert_error(500, "unexpected EOF", "truncated");

    // The import: one AddedOutput {name, cid: root, bytes: block bytes, size: file size}.
    let r = call(
        "POST",
        &format!("{rest}/add?format=car&stream-channels=false"),
        &hdr,
        multipart_file("export.car", &car),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let out = r.json();
    let out = out.as_array().unwrap();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0]["name"], "export.car");
    assert_eq!(out[0]["cid"], json!(root));
    assert_eq!(out[0]["size"], json!(data.len()));
    assert!(
        out[0]["bytes"].as_u64().unwrap() > data.len() as u64,
        "{out:?}"
    );

    // Pinned through the cluster, and every byte is on the cluster peer's IPFS.
    wait_for(Duration::from_secs(30), || async {
        statuses(&rest, &root).await == ["pinned"]
    })
    .await
    .unwrap_or_else(|_| panic!("{root} never pinned; log:\n{}", p.log_tail()));
    assert!(ipfs_pinned(&c, &root).await);
    let (st, got) = call_bytes(
        "POST",
        &format!("{}/api/v0/cat?arg={root}", c.api_url()),
        vec![],
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(st, 200);
    assert!(
        got == data,
        "cat returned {} bytes, not the original",
        got.len()
    );
}

/// POST /add with the layouts, chunkers and hash functions beyond the defaults (trickle,
/// rabin, buzhash, sha3/blake2b/blake3...): the root CID equals the IPFS node's own
/// `add` with the same options, and the content is pinned (so IPFS accepted every block
/// under the CID the gateway computed). Bad DAG options are answered like upstream: a 200
/// whose stream ends with the error in the X-Stream-Error trailer and nothing pinned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_layouts_chunkers_and_hashes_match_the_ipfs_node() {
    let tmp = tempfile::tempdir().unwrap();
    let dc = tmp.path().join("ipfs");
    std::fs::create_dir_all(&dc).unwrap();
    let c = IpfsNode::start(&dc).await.expect("IPFS node");
    let p = PeerDir::init(&tmp.path().join("peer"), &c.multiaddr(), None).unwrap();
    let _daemon = p.start(&[]).await.unwrap();
    let rest = p.rest_url();
    let ct = multipart_ct();
    let hdr = [("content-type", ct.as_str())];
    let id = get(&format!("{rest}/id")).await.json()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let big = pseudo_random(600_000, 11);
    let small = pseudo_random(20_000, 12);
    // (our query, Kubo's query, content)
    let cases: [(&str, &str, &[u8]); 9] = [
        ("layout=trickle", "trickle=true", &big),
        (
            "layout=trickle&chunker=size-1000&raw-leaves=true",
            "trickle=true&chunker=size-1000&raw-leaves=true",
            &big,
        ),
        ("chunker=rabin", "chunker=rabin", &big),
        ("chunker=rabin-16-32-64", "chunker=rabin-16-32-64", &small),
        ("chunker=buzhash", "chunker=buzhash", &big),
        (
            "hash=sha3-256&cid-version=1",
            "hash=sha3-256&cid-version=1",
            &big,
        ),
        (
            "hash=blake2b-256&cid-version=1&layout=trickle",
            "hash=blake2b-256&cid-version=1&trickle=true",
            &big,
        ),
        (
            "hash=blake3&cid-version=1&raw-leaves=false",
            "hash=blake3&cid-version=1&raw-leaves=false",
            &big,
        ),
        (
            "hash=sha2-512&cid-version=1&chunker=rabin-100000",
            "hash=sha2-512&cid-version=1&chunker=rabin-100000",
            &big,
        ),
    ];
    for (ours, kubo, data) in cases {
        let r = call_within(
            "POST",
            &format!("{rest}/add?stream-channels=false&{ours}"),
            &hdr,
            multipart_file("f.bin", data),
            Duration::from_secs(120),
        )
        .await
        .expect("add");
        assert_eq!(r.status, 200, "add {ours}: {}", r.body);
        let out = r.json();
        let root = out[0]["cid"].as_str().unwrap().to_string();
        assert_eq!(out[0]["allocations"], json!([id]), "add {ours}: {out}");
        let want = ipfs_add(&c, kubo, data).await;
        assert_eq!(
            root, want,
            "add {ours}: gateway root vs the IPFS node's add {kubo}"
        );
        wait_for(Duration::from_secs(60), || async {
            statuses(&rest, &root).await == ["pinned"]
        })
        .await
        .unwrap_or_else(|_| panic!("add {ours}: {root} never pinned; log:\n{}", p.log_tail()));
    }

    // Bad DAG options: 200, no output, the error in the trailer; nothing pinned.
    for (q, msg) in [
        ("chunker=nonsense", "unrecognized chunker option: nonsense"),
        ("chunker=size-0", "chunker size must be greater than 0"),
        ("cid-version=7", "bad CID Version: unknown CID version: 7"),
        ("hash=nope", "hash function name not known"),
        ("hash=sha3-256", "a CIDv0 can only use sha2-256"),
    ] {
        let tcp = tokio::net::TcpStream::connect(rest.trim_start_matches("http://"))
            .await
            .unwrap();
        let (st, body, trailer) = post_collecting_trailer(
            tcp,
            &format!("/add?{q}"),
            &ct,
            &multipart_file("e.bin", b"some bytes"),
        )
        .await;
        assert_eq!((st, body.as_str()), (200, ""), "add {q}");
        assert!(trailer.starts_with(msg), "add {q}: trailer {trailer:?}");
        let r = call(
            "POST",
            &format!("{rest}/add?stream-channels=false&{q}"),
            &hdr,
            multipart_file("e.bin", b"some bytes"),
        )
        .await;
        r.assert_error(500, msg, q);
    }
    let pins = get(&format!("{rest}/allocations")).await.lines().len();
    assert_eq!(pins, cases.len(), "only the good adds were pinned");
}

/// POST over HTTP/1.1 asking for trailers; returns status, body and X-Stream-Error.
async fn post_collecting_trailer(
    tcp: tokio::net::TcpStream,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, String, String) {
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::post(path)
        .header("host", "localhost")
        .header("content-type", content_type)
        .header("te", "trailers")
        .body(Full::new(Bytes::from(body.to_vec())))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(30), sender.send_request(req))
        .await
        .expect("answer in time")
        .unwrap();
    let status = resp.status().as_u16();
    let collected = tokio::time::timeout(Duration::from_secs(30), resp.into_body().collect())
        .await
        .expect("body in time")
        .unwrap();
    let trailer = collected
        .trailers()
        .and_then(|t| t.get("x-stream-error"))
        .map(|v| v.to_str().unwrap_or("").to_string())
        .unwrap_or_default();
    let body = String::from_utf8_lossy(&collected.to_bytes()).into_owned();
    (status, body, trailer)
}
