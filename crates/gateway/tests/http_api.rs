//! HTTP-level tests: the gateway's real server and handlers (its public API, run in the
//! test's runtime) against in-process stand-ins of our gRPC contracts (`common`: the test
//! kit's fake consensus, transport and connector doubles), checking exact bytes, status
//! codes, streaming, auth, CORS and TLS. The stand-ins give what real services cannot be
//! made to give on demand: fixed ids and timestamps for byte-exact answers, and a member
//! that is listed but unreachable.

use std::{collections::BTreeMap, sync::Arc};

use base64::{engine::general_purpose::STANDARD, Engine};

mod common;

use common::*;

fn id_json() -> String {
    format!(
        r#"{{"id":"{SELF_PEER}","addresses":["/ip4/127.0.0.1/tcp/9096/p2p/{SELF_PEER}"],"cluster_peers":["{SELF_PEER}"],"cluster_peers_addresses":[],"version":"1.1.6","commit":"","rpc_protocol_version":"/ipfscluster/1.0/rpc","error":"","ipfs":{{"id":"{IPFS_PEER}","addresses":["/ip4/127.0.0.1/tcp/4001/p2p/{IPFS_PEER}"],"error":""}},"peername":"p1"}}"#
    ) + "\n"
}

#[tokio::test]
async fn id_and_version_exact_bytes() {
    let h = start(|_| {}).await;
    let r = send(h.rest, "GET", "/id", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.text(), id_json());
    let r = send(h.rest, "GET", "/version", &[]).await;
    assert_eq!(r.text(), "{\"version\":\"1.1.6\"}\n");
    let r = send(h.rest, "GET", "/health", &[]).await;
    assert_eq!((r.status.as_u16(), r.body.len()), (204, 0));
}

#[tokio::test]
async fn pin_status_allocations_unpin() {
    let h = start(|_| {}).await;
    let r = send(
        h.rest,
        "POST",
        &format!("/pins/{CID1}?name=doc&meta-k=v&mode=direct"),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["cid"], CID1);
    assert_eq!(v["name"], "doc");
    assert_eq!(v["mode"], "direct");
    assert_eq!(
        v["max_depth"], 0,
        "mode=direct is honoured on the CID route"
    );
    assert_eq!(v["metadata"], serde_json::json!({"k": "v"}));
    assert_eq!(v["replication_factor_min"], -1);
    assert_eq!(v["pin_update"], serde_json::Value::Null);
    assert_eq!(v["origins"], serde_json::Value::Null);
    assert_eq!(v["allocations"], serde_json::json!([]));
    assert!(r.text().ends_with("}\n"));

    let r = send(h.rest, "GET", &format!("/pins/{CID1}?local=false"), &[]).await;
    let ts = ipfs_cluster_gateway::backend::from_grpc::state_pin(h.pins()[CID1].clone())
        .unwrap()
        .timestamp;
    let created = serde_json::to_string(&ts).unwrap();
    assert_eq!(
        r.text(),
        format!(
            r#"{{"cid":"{CID1}","name":"doc","allocations":[],"origins":[],"created":{created},"metadata":{{"k":"v"}},"peer_map":{{"{SELF_PEER}":{{"peername":"p1","ipfs_peer_id":"{IPFS_PEER}","ipfs_peer_addresses":["/ip4/127.0.0.1/tcp/4001/p2p/{IPFS_PEER}"],"status":"pinned","timestamp":"2024-05-01T10:21:00.5Z","error":"","attempt_count":0,"priority_pin":false}}}}}}"#
        ) + "\n"
    );

    let r = send(h.rest, "GET", &format!("/allocations/{CID1}"), &[]).await;
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        (v["metadata"]["k"].as_str(), v["user_allocations"].is_null()),
        (Some("v"), true)
    );

    // Streams: NDJSON, trailer announced and (with TE: trailers) sent empty.
    let r = send(
        h.rest,
        "GET",
        "/allocations?filter=all",
        &[("te", "trailers")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["trailer"], "X-Stream-Error");
    assert_eq!(r.text().lines().count(), 1);
    assert_eq!(r.trailers.as_ref().unwrap()["x-stream-error"], "");
    let r = send(
        h.rest,
        "GET",
        "/pins?local=false&filter=&cids=",
        &[("te", "trailers")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("\"status\":\"pinned\""));
    let r = send(h.rest, "GET", "/pins?filter=unpinned", &[]).await;
    assert_eq!(r.status, 204, "filter applies");
    let r = send(h.rest, "GET", "/pins?local=true", &[]).await;
    assert_eq!(r.status, 200);
    let r = send(h.rest, "GET", &format!("/pins?cids={CID1},{CID2}"), &[]).await;
    assert_eq!(r.text().lines().count(), 2);
    assert!(r.text().contains("\"status\":\"unpinned\""));

    let r = send(h.rest, "DELETE", &format!("/pins/{CID1}"), &[]).await;
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        (v["cid"].as_str(), v["origins"].clone()),
        (Some(CID1), serde_json::json!([]))
    );
    let r = send(h.rest, "DELETE", &format!("/pins/{CID1}"), &[]).await;
    assert_eq!(
        (r.status.as_u16(), r.text()),
        (
            404,
            "{\"code\":404,\"message\":\"pin is not part of the pinset\"}\n".into()
        )
    );
    let r = send(h.rest, "GET", &format!("/allocations/{CID1}"), &[]).await;
    assert_eq!(r.status, 404);
    let r = send(h.rest, "GET", "/allocations", &[]).await;
    assert_eq!((r.status.as_u16(), r.body.len()), (204, 0));
    // hyper drops the announced `Trailer` header on a 204 (no body can carry trailers).
    assert_eq!(r.headers["content-type"], "application/json");
}

#[tokio::test]
async fn path_routes() {
    let h = start(|_| {}).await;
    let r = send(
        h.rest,
        "POST",
        &format!("/pins/ipfs/{CID1}?mode=direct"),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("\"max_depth\":0"));
    let r = send(h.rest, "POST", "/pins/ipns/example.com/x", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains(CID2));
    let r = send(h.rest, "POST", "/pins/ipfs/notacid/x", &[]).await;
    assert_eq!(r.status, 400);
    assert!(
        r.text()
            .starts_with("{\"code\":400,\"message\":\"error parsing path: "),
        "{}",
        r.text()
    );
    let r = send(h.rest, "POST", &format!("/pins/ipfs/{CID1}/missing"), &[]).await;
    assert_eq!(r.status, 500, "IPFS resolution errors are 500");
    let r = send(h.rest, "DELETE", &format!("/pins/ipfs/{CID1}"), &[]).await;
    assert_eq!(r.status, 200);
    // mux v1.8.1: later GET routes clear the path-only match of the POST/DELETE routes.
    let r = send(h.rest, "GET", &format!("/pins/ipfs/{CID1}"), &[]).await;
    assert_eq!(
        (r.status.as_u16(), r.text()),
        (
            404,
            "{\"code\":404,\"message\":\"not found\"}\n".to_string()
        )
    );
}

#[tokio::test]
async fn upstream_errors() {
    let h = start(|o| {
        o.headers = BTreeMap::from([("X-Custom".to_string(), vec!["yes".to_string()])]);
    })
    .await;
    let r = send(h.rest, "GET", "/pins/notacid", &[]).await;
    assert_eq!(r.status, 400);
    assert!(
        r.text()
            .starts_with("{\"code\":400,\"message\":\"error decoding Cid: "),
        "{}",
        r.text()
    );
    assert_eq!(r.headers["x-custom"], "yes");
    // A bad option is a single 400 and nothing is pinned (as upstream recommends).
    let r = send(
        h.rest,
        "POST",
        &format!("/pins/{CID1}?name=a&replication-min=x"),
        &[],
    )
    .await;
    assert_eq!(
        r.text(),
        "{\"code\":400,\"message\":\"parameter replication-min invalid\"}\n"
    );
    assert!(h.pins().is_empty());
    let r = send(h.rest, "GET", "/pins?filter=bogus", &[]).await;
    assert_eq!(
        r.text(),
        "{\"code\":400,\"message\":\"invalid filter value\"}\n"
    );
    let r = send(h.rest, "GET", "/allocations?filter=bogus", &[]).await;
    assert_eq!(r.status, 400);
    let r = send(h.rest, "PUT", &format!("/pins/{CID1}"), &[]).await;
    assert_eq!(
        (
            r.status.as_u16(),
            r.body.len(),
            r.headers.get("x-custom").is_none()
        ),
        (405, 0, true)
    );
    let r = send(h.rest, "GET", "/nothing", &[]).await;
    assert_eq!(
        (r.status.as_u16(), r.text()),
        (404, "{\"code\":404,\"message\":\"not found\"}\n".into())
    );
    let r = send(h.rest, "GET", "/", &[]).await;
    assert_eq!(r.status, 404);
    let r = send(h.rest, "POST", "/pins/?cids=a,b", &[]).await;
    assert_eq!(
        (r.status.as_u16(), r.headers["location"].to_str().unwrap()),
        (307, "/pins?cids=a,b")
    );
    let r = send(h.rest, "GET", "/a/../id", &[]).await;
    assert_eq!(
        (r.status.as_u16(), r.headers["location"].to_str().unwrap()),
        (301, "/id")
    );
    let r = send(h.rest, "POST", "/add", &[]).await;
    assert_eq!(r.status, 400, "not multipart");
    let r = send(h.rest, "DELETE", "/peers/nope", &[]).await;
    assert!(r
        .text()
        .starts_with("{\"code\":400,\"message\":\"error decoding Peer ID: "));
    let big = "x".repeat(10_000);
    let r = send(h.rest, "GET", "/id", &[("x-big", &big)]).await;
    assert_eq!(r.status, 431);
}

#[tokio::test]
async fn unreachable_peer_shows_as_cluster_error() {
    let h = start(|_| {}).await;
    h.add_member(DOWN_PEER);
    send(h.rest, "POST", &format!("/pins/{CID1}"), &[]).await;
    let r = send(h.rest, "GET", &format!("/pins/{CID1}"), &[]).await;
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["peer_map"][SELF_PEER]["status"], "pinned");
    assert_eq!(v["peer_map"][DOWN_PEER]["status"], "cluster_error");
    assert!(v["peer_map"][DOWN_PEER]["error"]
        .as_str()
        .unwrap()
        .contains("failed to dial"));

    let r = send(h.rest, "GET", "/pins", &[("te", "trailers")]).await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("cluster_error"));
    let t: Vec<_> = r
        .trailers
        .unwrap()
        .get_all("x-stream-error")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    // As upstream's globalPinInfoStream: a peer that cannot be asked shows as cluster_error
    // entries and is logged; the listing itself ends without a stream error.
    assert_eq!(t, [""]);

    let r = send(h.rest, "GET", "/peers", &[]).await;
    assert_eq!(r.status, 200);
    let lines: Vec<serde_json::Value> = r
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(format!("{}\n", serde_json::to_string(&lines[0]).unwrap()), id_json().replace(
        &format!("\"cluster_peers\":[\"{SELF_PEER}\"],\"cluster_peers_addresses\":[]"),
        &format!("\"cluster_peers\":[\"{SELF_PEER}\",\"{DOWN_PEER}\"],\"cluster_peers_addresses\":[\"/ip4/127.0.0.1/tcp/9096/p2p/{DOWN_PEER}\"]"),
    ));
    assert_eq!(lines[1]["id"], DOWN_PEER);
    // upstream's ID{ID, Error}: no addresses list at all
    assert_eq!(lines[1]["cluster_peers_addresses"], serde_json::Value::Null);
    assert!(lines[1]["error"]
        .as_str()
        .unwrap()
        .contains("failed to dial"));
    assert_eq!(
        lines[1]["ipfs"],
        serde_json::json!({"addresses": null, "error": ""})
    );

    let r = send(h.rest, "DELETE", &format!("/peers/{DOWN_PEER}"), &[]).await;
    assert_eq!(r.status, 204);
}

fn basic(u: &str, p: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{u}:{p}")))
}

#[tokio::test]
async fn auth_basic_jwt_and_forgery() {
    let h = start(|o| {
        o.basic_auth_credentials = Some(BTreeMap::from([
            ("alice".to_string(), "secret".to_string()),
            ("userwithoutpass".to_string(), String::new()),
        ]));
    })
    .await;
    let r = send(h.rest, "GET", "/id", &[("origin", "http://x")]).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.text(),
        "{\"code\":401,\"message\":\"unauthorized: no auth provided\"}\n"
    );
    let ch: Vec<_> = r.headers.get_all("www-authenticate").iter().collect();
    assert_eq!(
        ch,
        vec![
            "Bearer realm=\"Restricted IPFS Cluster API\"",
            "Basic realm=\"Restricted IPFS Cluster API\""
        ]
    );
    assert!(
        r.headers.get("access-control-allow-origin").is_none(),
        "401 carries no CORS headers"
    );
    assert!(r.headers.get("vary").is_none());

    let r = send(
        h.rest,
        "GET",
        "/id",
        &[("authorization", &basic("alice", "bad"))],
    )
    .await;
    assert_eq!(
        r.text(),
        "{\"code\":401,\"message\":\"unauthorized: access denied\"}\n"
    );
    let r = send(
        h.rest,
        "GET",
        "/id",
        &[("authorization", &basic("userwithoutpass", ""))],
    )
    .await;
    assert_eq!(r.status, 401);
    let r = send(
        h.rest,
        "GET",
        "/id",
        &[("authorization", &basic("alice", "secret"))],
    )
    .await;
    assert_eq!(r.status, 200);

    let r = send(
        h.rest,
        "POST",
        "/token",
        &[("authorization", &basic("alice", "secret"))],
    )
    .await;
    let token = serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = send(
        h.rest,
        "GET",
        "/version",
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(r.status, 200);

    // The upstream forgery: HS256 with an empty key for the password-less user.
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let hd = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let cl = URL_SAFE_NO_PAD.encode(br#"{"iss":"userwithoutpass"}"#);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"");
    let sig =
        URL_SAFE_NO_PAD.encode(ring::hmac::sign(&key, format!("{hd}.{cl}").as_bytes()).as_ref());
    let r = send(
        h.rest,
        "GET",
        "/version",
        &[("authorization", &format!("Bearer {hd}.{cl}.{sig}"))],
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.text(),
        "{\"code\":401,\"message\":\"unauthorized: invalid token\"}\n"
    );
    assert_eq!(
        r.headers["www-authenticate"],
        "Bearer realm=\"Restricted IPFS Cluster API\", error=\"invalid_token\""
    );

    // Exempt: GET /health and preflights.
    assert_eq!(send(h.rest, "GET", "/health", &[]).await.status, 204);
    let r = send(
        h.rest,
        "OPTIONS",
        "/id",
        &[
            ("origin", "http://x"),
            ("access-control-request-method", "GET"),
        ],
    )
    .await;
    assert_eq!(r.status, 204);
    assert_eq!(r.headers["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn token_without_auth_is_401() {
    let h = start(|_| {}).await;
    let r = send(h.rest, "POST", "/token", &[]).await;
    assert_eq!(r.text(), "{\"code\":401,\"message\":\"unauthorized\"}\n");
    let r = send(h.rest, "GET", "/id", &[("origin", "http://x")]).await;
    assert_eq!(r.headers["access-control-allow-origin"], "*");
    assert_eq!(r.headers["vary"], "Origin");
}

#[tokio::test]
async fn gateway_info_counts_requests() {
    let h = start(|_| {}).await;
    send(h.rest, "GET", "/version", &[]).await;
    let mut c = ipfs_cluster_proto::client::gateway(h.grpc, &h.token);
    let info = c
        .info(ipfs_cluster_proto::gateway::v1::InfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.version, "1.1.6");
    assert!(info.requests_served >= 1);
    let mut bad =
        ipfs_cluster_proto::client::gateway(h.grpc, &ipfs_cluster_proto::InternalToken::generate());
    assert_eq!(
        bad.info(ipfs_cluster_proto::gateway::v1::InfoRequest {})
            .await
            .unwrap_err()
            .code(),
        tonic::Code::Unauthenticated
    );
}

#[tokio::test]
async fn tls_round_trip_and_plain_http_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, ck.cert.pem()).unwrap();
    std::fs::write(&key_path, ck.key_pair.serialize_pem()).unwrap();
    let h = start(|o| {
        o.ssl_cert_file = Some(cert_path.clone());
        o.ssl_key_file = Some(key_path.clone());
        o.read_header_timeout = std::time::Duration::from_secs(1);
        o.basic_auth_credentials = Some(BTreeMap::from([(
            "alice".to_string(),
            "secret".to_string(),
        )]));
    })
    .await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(h.rest).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let r = send_on(
        tls,
        "GET",
        "/id",
        &[("authorization", &basic("alice", "secret"))],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), id_json());

    // Plain HTTP to the TLS port: the connection fails, no HTTP answer, no hang.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(h.rest).await.unwrap();
    tcp.write_all(b"GET /id HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let n =
        tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
    assert!(n.is_ok(), "the server closes the connection");
    assert!(!String::from_utf8_lossy(&buf).contains("HTTP/1.1 200"));

    // A client that completes the TLS handshake and then sends nothing is closed after
    // read_header_timeout (hyper alone would wait for ever to tell HTTP/1 from HTTP/2).
    let tcp = tokio::net::TcpStream::connect(h.rest).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut silent = connector.connect(name, tcp).await.unwrap();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        silent.read_to_end(&mut buf),
    )
    .await;
    assert!(
        closed.is_ok(),
        "a silent TLS connection must be closed after read_header_timeout (1 s)"
    );
    assert!(buf.is_empty(), "no HTTP answer to a silent connection");
}

#[tokio::test]
async fn health_metrics_alerts_gc_graph() {
    let h = start(|_| {}).await;
    let r = send(h.rest, "GET", "/monitor/metrics", &[]).await;
    assert_eq!(r.text(), "[]\n");
    let r = send(h.rest, "GET", "/health/alerts", &[]).await;
    assert_eq!(r.text(), "[]\n");
    let far = chrono::Utc::now().timestamp_nanos_opt().unwrap() + 3_600_000_000_000;
    h.metrics.add(ipfs_cluster_proto::types::v1::Metric {
        name: "freespace".into(),
        peer: SELF_PEER.into(),
        value: "1000".into(),
        expire: far,
        valid: true,
        weight: 1000,
        ..Default::default()
    });
    h.metrics.add(ipfs_cluster_proto::types::v1::Metric {
        name: "ping".into(),
        peer: DOWN_PEER.into(),
        value: r#"{"peer_name":"p2"}"#.into(),
        expire: 1,
        valid: true,
        ..Default::default()
    });
    let r = send(h.rest, "GET", "/monitor/metrics", &[]).await;
    assert_eq!(r.text(), "[\"freespace\",\"ping\"]\n");
    let r = send(h.rest, "GET", "/monitor/metrics/freespace", &[]).await;
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        (
            v[0]["peer"].as_str(),
            v[0]["value"].as_str(),
            v[0]["weight"].as_i64()
        ),
        (Some(SELF_PEER), Some("1000"), Some(1000))
    );
    assert_eq!(
        send(h.rest, "GET", "/monitor/metrics/ping", &[])
            .await
            .text(),
        "[]\n",
        "expired metrics are not listed"
    );
    h.metrics
        .check(chrono::Utc::now().timestamp_nanos_opt().unwrap());
    let r = send(h.rest, "GET", "/health/alerts", &[]).await;
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        (v[0]["name"].as_str(), v[0]["peer"].as_str()),
        (Some("ping"), Some(DOWN_PEER))
    );
    assert!(v[0]["triggered_at"].is_string());

    // The cached ping names an unreachable peer in cluster_error entries.
    h.add_member(DOWN_PEER);
    let r = send(h.rest, "GET", &format!("/pins/{CID1}"), &[]).await;
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["peer_map"][DOWN_PEER]["peername"], "p2");
    assert_eq!(v["peer_map"][SELF_PEER]["status"], "unpinned");

    let r = send(h.rest, "POST", "/ipfs/gc?local=false", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["peer_map"][SELF_PEER]["peername"], "p1");
    assert_eq!(v["peer_map"][SELF_PEER]["keys"][0]["key"], CID1);
    assert!(v["peer_map"][DOWN_PEER]["error"]
        .as_str()
        .unwrap()
        .contains("failed to dial"));
    let r = send(h.rest, "POST", "/ipfs/gc?local=true", &[]).await;
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["peer_map"].as_object().unwrap().len(), 1);

    let r = send(h.rest, "GET", "/health/graph", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["cluster_id"], SELF_PEER);
    assert_eq!(v["id_to_peername"][SELF_PEER], "p1");
    assert_eq!(
        v["cluster_links"][SELF_PEER],
        serde_json::json!([DOWN_PEER])
    );
    assert_eq!(v["cluster_links"][DOWN_PEER], serde_json::json!([]));
    assert_eq!(v["cluster_to_ipfs"][SELF_PEER], IPFS_PEER);
    assert_eq!(v["ipfs_links"][IPFS_PEER], serde_json::json!([DOWN_PEER]));

    let r = send(h.rest, "GET", "/health/bandwidth", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        "{\"/ipfs/ping/1.0.0\":{\"total_in\":96,\"total_out\":64,\"rate_in\":1.5,\"rate_out\":0}}\n"
    );
}

#[tokio::test]
async fn pinning_services_api() {
    let h = start(|_| {}).await;
    let post = |body: &'static str, path: &'static str| {
        let addr = h.pinsvc;
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            send_on(
                tcp,
                "POST",
                path,
                &[("content-type", "application/json")],
                body,
            )
            .await
        }
    };
    let r = post(
        r#"{"cid":"QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG","name":"doc","meta":{"k":"v"}}"#,
        "/pins",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        (v["requestid"].as_str(), v["status"].as_str()),
        (Some(CID1), Some("queued"))
    );
    assert_eq!(
        v["pin"],
        serde_json::json!({"cid": CID1, "name": "doc", "meta": {"k": "v"}})
    );
    assert_eq!(v["info"]["warning2"], "experimental");
    assert_eq!(h.pins()[CID1].max_depth, -1);

    let r = send(h.pinsvc, "GET", &format!("/pins/{CID1}"), &[]).await;
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["status"], "pinned");
    assert_eq!(
        v["delegates"],
        serde_json::json!([format!("/ip4/127.0.0.1/tcp/4001/p2p/{IPFS_PEER}")])
    );

    let r = send(h.pinsvc, "GET", "/pins", &[]).await;
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["count"], 1);
    let r = send(
        h.pinsvc,
        "GET",
        "/pins?name=DOC&match=iexact&meta=%7B%22k%22%3A%22v%22%7D",
        &[],
    )
    .await;
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["count"],
        1
    );
    let r = send(h.pinsvc, "GET", "/pins?name=other", &[]).await;
    assert_eq!(r.text(), "{\"count\":0,\"results\":[]}\n");
    let r = send(h.pinsvc, "GET", "/pins?status=bogus", &[]).await;
    assert_eq!(
        (r.status.as_u16(), r.text()),
        (
            500,
            "{\"error\":{\"reason\":\"error decoding 'status' query param: no valid filter\"}}\n"
                .into()
        )
    );

    // Replace: the new CID is pinned as an update of the old one, which is then unpinned.
    let r = post(
        r#"{"cid":"bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"}"#,
        "/pins/QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    {
        let pins = h.pins();
        assert!(!pins.contains_key(CID1));
        assert_eq!(pins[CID2].options.as_ref().unwrap().pin_update, CID1);
    }
    let r = send(h.pinsvc, "GET", &format!("/pins/{CID1}"), &[]).await;
    assert_eq!(
        (r.status.as_u16(), r.text()),
        (404, "{\"error\":{\"reason\":\"pin not found\"}}\n".into())
    );

    let r = send(h.pinsvc, "DELETE", &format!("/pins/{CID2}"), &[]).await;
    assert_eq!((r.status.as_u16(), r.body.len()), (202, 0));
    let r = send(h.pinsvc, "DELETE", &format!("/pins/{CID2}"), &[]).await;
    assert_eq!(
        (r.status.as_u16(), r.text()),
        (
            404,
            "{\"error\":{\"reason\":\"pin is not part of the pinset\"}}\n".into()
        )
    );
    let r = send(h.pinsvc, "GET", "/pins/nope", &[]).await;
    assert_eq!(r.status, 400);
    let r = post("not json", "/pins").await;
    assert!(r
        .text()
        .starts_with("{\"error\":{\"reason\":\"error decoding request body: "));
    // A body that ends early, in Go's json.Decoder words as upstream answers.
    for (body, why) in [("", "EOF"), (" \n", "EOF"), ("{\"cid\":", "unexpected EOF")] {
        let r = post(body, "/pins").await;
        assert_eq!(
            (r.status.as_u16(), r.text()),
            (
                400,
                format!("{{\"error\":{{\"reason\":\"error decoding request body: {why}\"}}}}\n")
            ),
            "{body:?}"
        );
    }
    let r = send(h.pinsvc, "PUT", "/pins", &[]).await;
    assert_eq!(r.status, 405);
    assert_eq!(send(h.pinsvc, "GET", "/health", &[]).await.status, 204);
}

#[tokio::test]
async fn pinning_services_api_auth() {
    let h = start(|o| {
        o.basic_auth_credentials = Some(BTreeMap::from([(
            "alice".to_string(),
            "secret".to_string(),
        )]))
    })
    .await;
    let r = send(h.pinsvc, "GET", "/pins", &[]).await;
    assert_eq!(
        (r.status.as_u16(), r.text()),
        (
            401,
            "{\"error\":{\"reason\":\"unauthorized: no auth provided\"}}\n".into()
        )
    );
    let r = send(
        h.pinsvc,
        "POST",
        "/token",
        &[("authorization", &basic("alice", "secret"))],
    )
    .await;
    let token = serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = send(
        h.pinsvc,
        "GET",
        "/pins",
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn slow_body_hits_read_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = start(|o| o.read_timeout = std::time::Duration::from_millis(300)).await;
    let mut tcp = tokio::net::TcpStream::connect(h.rest).await.unwrap();
    tcp.write_all(
        b"POST /peers HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 100\r\n\r\n{\"peer_id\"",
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 512];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(head.contains("read_timeout"), "{head}");
}

fn multipart(parts: &[(&str, &str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "----gatewaytestboundary";
    let mut body = Vec::new();
    for (name, ctype, data) in parts {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: {ctype}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn post_add(h: &Harness, query: &str, parts: &[(&str, &str, &[u8])]) -> Got {
    let (ct, body) = multipart(parts);
    let tcp = tokio::net::TcpStream::connect(h.rest).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::post(format!("/add?{query}"))
        .header("host", "127.0.0.1")
        .header("content-type", ct)
        .header("te", "trailers")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let c = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap();
    let trailers = c.trailers().cloned();
    Got {
        status,
        headers,
        body: c.to_bytes(),
        trailers,
    }
}

#[tokio::test]
async fn add_files_and_directories() {
    let h = start(|_| {}).await;
    let r = post_add(
        &h,
        "name=greeting",
        &[("hello.txt", "application/octet-stream", b"hello world\n")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["x-chunked-output"], "1");
    assert_eq!(r.headers["trailer"], "X-Stream-Error");
    assert_eq!(
        r.text(),
        format!("{{\"name\":\"hello.txt\",\"cid\":\"QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o\",\"size\":20,\"allocations\":[\"{SELF_PEER}\"]}}\n")
    );
    assert!(
        r.trailers
            .map(|t| t.get("x-stream-error").is_none())
            .unwrap_or(true),
        "no error trailer on success"
    );
    {
        let pins = h.pins();
        let p = &pins["QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"];
        assert_eq!(
            (p.max_depth, p.options.as_ref().unwrap().name.as_str()),
            (-1, "greeting")
        );
        assert!(h
            .world
            .blocks
            .lock()
            .unwrap()
            .contains_key("QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"));
    }

    // A multi-chunk file gives Kubo's CID.
    let a: Vec<u8> = (0..262_144 * 3 + 1000).map(|i| (i % 251) as u8).collect();
    let r = post_add(
        &h,
        "stream-channels=false&no-pin=true",
        &[("a.bin", "application/octet-stream", &a)],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        v[0]["cid"],
        "QmaMuznfvPDxKQmt58AWynv98rzyDT2nwQb4mafGJEmKGf"
    );
    assert!(
        !h.pins()
            .contains_key("QmaMuznfvPDxKQmt58AWynv98rzyDT2nwQb4mafGJEmKGf"),
        "no-pin"
    );

    // A directory as the Go client sends it: directory part first, escaped names.
    let r = post_add(
        &h,
        "",
        &[
            ("d", "application/x-directory", b""),
            ("d%2Fx.txt", "application/octet-stream", b"hello\n"),
            ("d%2Fsub%2Fy.txt", "application/octet-stream", b"world\n"),
        ],
    )
    .await;
    let lines: Vec<serde_json::Value> = r
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let got: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| (l["name"].as_str().unwrap(), l["cid"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("d/x.txt", "QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN"),
            (
                "d/sub/y.txt",
                "QmaRGe7bVmVaLmxbrMiVNXqW4pRNNp3xq7hFtyRKA3mtJL"
            ),
            ("d/sub", "QmeJT5xC6bnZacuKAKBuWJcGcM5BK9J66bB36GyhTRPafq"),
            ("d", "QmQ8YpKXWj8X64mETDUJF6ZUXipFNyyQYhYK5ZvWHZZHhg"),
        ]
    );
    assert!(h
        .pins()
        .contains_key("QmQ8YpKXWj8X64mETDUJF6ZUXipFNyyQYhYK5ZvWHZZHhg"));

    // Wrapped: the file, then the wrapper with an empty name.
    let r = post_add(
        &h,
        "wrap-with-directory=true",
        &[("hello.txt", "application/octet-stream", b"hello world\n")],
    )
    .await;
    let lines: Vec<serde_json::Value> = r
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!((lines.len(), lines[1]["name"].as_str()), (2, Some("")));

    // CIDv1 with raw leaves.
    let r = post_add(
        &h,
        "cid-version=1",
        &[("hello.txt", "application/octet-stream", b"hello world\n")],
    )
    .await;
    assert!(r.text().contains("\"cid\":\"bafkrei"), "{}", r.text());
}

/// Blocks go to IPFS in batches (BlockPutMany); a peer of an older version, whose RPC
/// policy refuses that method, still gets every block (one by one), and a peer that
/// cannot be reached fails the add with an error naming a block and the peer.
#[tokio::test]
async fn add_blocks_reach_peers_without_block_put_many() {
    let h = start(|_| {}).await;
    // 21 distinct leaves of 256 KiB (more than one batch) and the root.
    let a: Vec<u8> = (0..262_144 * 20 + 7).map(|i| (i % 253) as u8).collect();
    // To this peer: batches close at 4 MiB (16 leaves), the rest and the root follow.
    let r = post_add(
        &h,
        "stream-channels=false",
        &[("a.bin", "application/octet-stream", &a)],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let mut batches: Vec<usize> = h
        .world
        .batches
        .lock()
        .unwrap()
        .iter()
        .map(|b| b.0)
        .collect();
    batches.sort();
    assert_eq!(batches, vec![6, 16]);
    h.world.blocks.lock().unwrap().clear();
    let r = post_add(
        &h,
        &format!("stream-channels=false&user-allocations={OLD_PEER}"),
        &[("a.bin", "application/octet-stream", &a)],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let root = v[0]["cid"].as_str().unwrap().to_string();
    assert_eq!(v[0]["allocations"], serde_json::json!([OLD_PEER]));
    assert!(
        h.world.denied.load(std::sync::atomic::Ordering::Relaxed) >= 1,
        "BlockPutMany was tried first"
    );
    {
        let blocks = h.world.blocks.lock().unwrap();
        assert_eq!(blocks.len(), 22, "every leaf and the root");
        assert!(blocks.contains_key(&root));
    }
    assert!(h.pins().contains_key(&root));

    let r = post_add(
        &h,
        &format!("stream-channels=false&user-allocations={DOWN_PEER}"),
        &[("b.txt", "application/octet-stream", b"not stored")],
    )
    .await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(
        r.text().contains("storing block Qm") && r.text().contains(DOWN_PEER),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn add_errors() {
    let h = start(|_| {}).await;
    let r = send(
        h.rest,
        "POST",
        "/add",
        &[("content-type", "application/json")],
    )
    .await;
    assert_eq!(
        r.text(),
        "{\"code\":400,\"message\":\"request Content-Type isn't multipart/form-data\"}\n"
    );
    let r = post_add(
        &h,
        "layout=bogus",
        &[("a", "application/octet-stream", b"x")],
    )
    .await;
    assert_eq!(
        r.text(),
        "{\"code\":400,\"message\":\"layout parameter is invalid\"}\n"
    );
    let r = post_add(&h, "shard=true", &[("a", "application/octet-stream", b"x")]).await;
    assert_eq!(r.status, 400);
    // A truncated body after the 200: the error arrives in the trailer.
    let tcp = tokio::net::TcpStream::connect(h.rest).await.unwrap();
    let r = send_on(
        tcp,
        "POST",
        "/add",
        &[
            ("content-type", "multipart/form-data; boundary=b"),
            ("te", "trailers"),
        ],
        "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\npartial",
    )
    .await;
    assert_eq!(r.status, 200);
    let t = r.trailers.expect("error trailer");
    assert!(
        t["x-stream-error"]
            .to_str()
            .unwrap()
            .contains("unexpected end"),
        "{t:?}"
    );
    assert!(h.pins().is_empty());
}
