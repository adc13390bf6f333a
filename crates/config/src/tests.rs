//! Whole-file tests: upstream's service.json loads, defaults round trip, env overrides,
//! validation messages, Peer::load and init.

use std::{collections::HashMap, fs, path::Path, time::Duration};

use serde_json::Value;

use crate::*;

const SECRET: &str = "2588b80d5cb05374fa142aed6cbb047d1f4ef8ef15e37eba68c65b9d30df67ed";

/// A service.json exactly as upstream's `ipfs-cluster-service init --consensus raft` writes it.
fn upstream_service_json() -> String {
    format!(
        r#"{{
  "cluster": {{
    "peername": "host1",
    "secret": "{SECRET}",
    "leave_on_shutdown": false,
    "listen_multiaddress": [
      "/ip4/0.0.0.0/tcp/9096",
      "/ip4/0.0.0.0/udp/9096/quic"
    ],
    "announce_multiaddress": [],
    "no_announce_multiaddress": [],
    "enable_relay_hop": true,
    "connection_manager": {{
      "high_water": 400,
      "low_water": 100,
      "grace_period": "2m0s"
    }},
    "resource_manager": {{
      "enabled": true,
      "memory_limit_bytes": 0,
      "file_descriptors_limit": 0
    }},
    "pubsub": {{
      "seen_messages_ttl": "30m0s",
      "heartbeat_interval": "10s",
      "d_factor": 4,
      "history_gossip": 2,
      "history_length": 6,
      "flood_publish": false
    }},
    "dial_peer_timeout": "3s",
    "state_sync_interval": "5m0s",
    "pin_recover_interval": "12m0s",
    "replication_factor_min": -1,
    "replication_factor_max": -1,
    "monitor_ping_interval": "15s",
    "peer_watch_interval": "5s",
    "mdns_interval": "10s",
    "pin_only_on_trusted_peers": false,
    "pin_only_on_untrusted_peers": false,
    "disable_repinning": true,
    "peer_addresses": []
  }},
  "consensus": {{
    "raft": {{
      "init_peerset": [],
      "wait_for_leader_timeout": "15s",
      "network_timeout": "10s",
      "commit_retries": 1,
      "commit_retry_delay": "200ms",
      "backups_rotate": 6,
      "heartbeat_timeout": "1s",
      "election_timeout": "1s",
      "commit_timeout": "50ms",
      "max_append_entries": 64,
      "trailing_logs": 10240,
      "snapshot_interval": "2m0s",
      "snapshot_threshold": 8192,
      "leader_lease_timeout": "500ms"
    }}
  }},
  "api": {{
    "ipfsproxy": {{
      "listen_multiaddress": "/ip4/127.0.0.1/tcp/9095",
      "node_multiaddress": "/ip4/127.0.0.1/tcp/5001",
      "log_file": "",
      "read_timeout": "0s",
      "read_header_timeout": "5s",
      "write_timeout": "0s",
      "idle_timeout": "1m0s",
      "max_header_bytes": 4096
    }},
    "pinsvcapi": {{
      "http_listen_multiaddress": "/ip4/127.0.0.1/tcp/9097",
      "read_timeout": "0s",
      "read_header_timeout": "5s",
      "write_timeout": "0s",
      "idle_timeout": "2m0s",
      "max_header_bytes": 4096,
      "basic_auth_credentials": null,
      "http_log_file": "",
      "headers": {{}},
      "cors_allowed_origins": [
        "*"
      ],
      "cors_allowed_methods": [
        "GET"
      ],
      "cors_allowed_headers": [],
      "cors_exposed_headers": [
        "Content-Type",
        "X-Stream-Output",
        "X-Chunked-Output",
        "X-Content-Length"
      ],
      "cors_allow_credentials": true,
      "cors_max_age": "0s"
    }},
    "restapi": {{
      "http_listen_multiaddress": "/ip4/127.0.0.1/tcp/9094",
      "read_timeout": "0s",
      "read_header_timeout": "5s",
      "write_timeout": "0s",
      "idle_timeout": "2m0s",
      "max_header_bytes": 4096,
      "basic_auth_credentials": null,
      "http_log_file": "",
      "headers": {{}},
      "cors_allowed_origins": [
        "*"
      ],
      "cors_allowed_methods": [
        "GET"
      ],
      "cors_allowed_headers": [],
      "cors_exposed_headers": [
        "Content-Type",
        "X-Stream-Output",
        "X-Chunked-Output",
        "X-Content-Length"
      ],
      "cors_allow_credentials": true,
      "cors_max_age": "0s"
    }}
  }},
  "ipfs_connector": {{
    "ipfshttp": {{
      "node_multiaddress": "/ip4/127.0.0.1/tcp/5001",
      "connect_swarms_delay": "30s",
      "ipfs_request_timeout": "5m0s",
      "pin_timeout": "2m0s",
      "unpin_timeout": "3h0m0s",
      "repogc_timeout": "24h0m0s",
      "informer_trigger_interval": 0
    }}
  }},
  "pin_tracker": {{
    "stateless": {{
      "concurrent_pins": 10,
      "priority_pin_max_age": "24h0m0s",
      "priority_pin_max_retries": 5
    }}
  }},
  "monitor": {{
    "pubsubmon": {{
      "check_interval": "15s"
    }}
  }},
  "allocator": {{
    "balanced": {{
      "allocate_by": [
        "tag:group",
        "freespace"
      ]
    }}
  }},
  "informer": {{
    "disk": {{
      "metric_ttl": "30s",
      "metric_type": "freespace"
    }},
    "pinqueue": {{
      "metric_ttl": "30s",
      "weight_bucket_size": 100000
    }},
    "tags": {{
      "metric_ttl": "30s",
      "tags": {{
        "group": "default"
      }}
    }}
  }},
  "observations": {{
    "metrics": {{
      "enable_stats": false,
      "prometheus_endpoint": "/ip4/127.0.0.1/tcp/8888",
      "reporting_interval": "30s"
    }},
    "tracing": {{
      "enable_tracing": false,
      "jaeger_agent_endpoint": "/ip4/0.0.0.0/udp/6831",
      "sampling_prob": 0.3,
      "service_name": "cluster-daemon"
    }}
  }},
  "datastore": {{}}
}}"#
    )
}

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let m: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k: &str| m.get(k).cloned()
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn secs(s: u64) -> GoDuration {
    GoDuration(Duration::from_secs(s))
}

#[test]
fn defaults_round_trip() {
    let cfg = ServiceConfig::default_for_init("peer0", ClusterSecret::generate());
    cfg.validate().unwrap();
    let text = cfg.to_json_pretty();
    let back = ServiceConfig::from_json(&text).unwrap();
    assert_eq!(back, cfg);
    assert_eq!(back.to_json_pretty(), text);
}

#[test]
fn upstream_init_output_loads_and_writes_back_identically() {
    let text = upstream_service_json();
    let cfg = ServiceConfig::from_json(&text).unwrap();
    cfg.validate().unwrap();
    assert_eq!(cfg.cluster.peername, "host1");
    assert_eq!(cfg.cluster.secret.to_hex(), SECRET);
    assert_eq!(cfg.cluster.listen_multiaddress.len(), 2);
    assert!(addr::is_quic(&cfg.cluster.listen_multiaddress[1]));
    assert!(cfg.cluster.disable_repinning && cfg.cluster.enable_relay_hop);
    assert_eq!(
        cfg.consensus.raft.as_ref().unwrap().commit_retry_delay,
        GoDuration::from_millis(200)
    );
    assert_eq!(
        cfg.api.restapi.as_ref().unwrap().http_listen_multiaddress[0].to_string(),
        "/ip4/127.0.0.1/tcp/9094"
    );
    assert_eq!(
        *cfg.ipfs_connector.ipfshttp.unpin_timeout,
        Duration::from_secs(3 * 3600)
    );
    assert_eq!(cfg.internal, InternalConfig::default());
    assert_eq!(
        cfg.internal.consensus_addr().unwrap(),
        "127.0.0.1:9181".parse().unwrap()
    );
    // Everything but our own `internal` section (and the ignored empty datastore) is
    // written back exactly as upstream wrote it, key order included.
    let mut ours: Value = serde_json::from_str(&cfg.to_json_pretty()).unwrap();
    ours.as_object_mut().unwrap().remove("internal");
    let mut theirs: Value = serde_json::from_str(&text).unwrap();
    theirs.as_object_mut().unwrap().remove("datastore");
    assert_eq!(
        serde_json::to_string_pretty(&ours).unwrap(),
        serde_json::to_string_pretty(&theirs).unwrap()
    );
    // And default_for_init produces the same file.
    let mut d = ServiceConfig::default_for_init("host1", ClusterSecret::from_hex(SECRET).unwrap());
    d.internal = cfg.internal.clone();
    assert_eq!(d, cfg);
}

#[test]
fn unknown_sections_and_keys_warn_but_load() {
    let text = upstream_service_json().replacen(
        "\"cluster\": {",
        "\"state\": {}, \"source\": \"\", \"foo\": [1], \"cluster\": {\"bogus_key\": 1,",
        1,
    );
    let cfg = ServiceConfig::from_json(&text).unwrap();
    cfg.validate().unwrap();
    assert_eq!(cfg.cluster.peername, "host1");
}

#[test]
fn upstream_loading_semantics() {
    let text = r#"{
      "cluster": {"listen_multiaddress": "/ip4/127.0.0.1/tcp/1234", "peername": "",
                  "dial_peer_timeout": "", "replication_factor_min": 0, "replication_factor_max": 0,
                  "connection_manager": {"high_water": 10, "low_water": 5},
                  "resource_manager": {}},
      "consensus": {"raft": {"commit_retries": 2, "backups_rotate": 3, "network_timeout": "bad"}},
      "api": {"restapi": {"http_listen_multiaddress": ["/ip4/127.0.0.1/tcp/1", "/ip4/127.0.0.1/tcp/2"]}}
    }"#;
    let cfg = ServiceConfig::from_json(text).unwrap();
    cfg.validate().unwrap();
    let c = &cfg.cluster;
    assert_eq!(
        c.listen_multiaddress.len(),
        1,
        "a bare string is a one-entry list"
    );
    assert!(
        !c.peername.is_empty(),
        "empty peername = default (hostname)"
    );
    assert_eq!(c.dial_peer_timeout, secs(3), "empty duration = default");
    assert_eq!(
        (c.replication_factor_min, c.replication_factor_max),
        (-1, -1),
        "0 keeps -1"
    );
    assert!(
        !c.disable_repinning && !c.enable_relay_hop,
        "missing booleans are false"
    );
    assert_eq!(
        c.connection_manager.grace_period,
        secs(120),
        "missing duration inside an object = default"
    );
    assert!(
        !c.resource_manager.enabled,
        "resource_manager without enabled turns it off"
    );
    assert!(c.secret.is_none(), "missing secret = open network");
    let r = cfg.consensus.raft.as_ref().unwrap();
    assert_eq!(
        r.network_timeout,
        secs(10),
        "raft: bad duration falls back to the default"
    );
    assert_eq!(r.commit_retries, 2);
    let rest = cfg.api.restapi.as_ref().unwrap();
    assert_eq!(rest.http_listen_multiaddress.len(), 2);
    assert!(
        rest.cors_allowed_origins.is_empty() && !rest.cors_allow_credentials,
        "upstream CORS quirk"
    );
    assert!(
        cfg.api.pinsvcapi.is_none() && cfg.api.ipfsproxy.is_none(),
        "absent APIs stay disabled"
    );
    assert!(cfg.informer.disk.is_none());
    assert_eq!(
        cfg.pin_tracker.stateless,
        StatelessConfig::default(),
        "absent components get defaults"
    );
    // A two-entry list is written as an array, a one-entry list as a bare string.
    let v: Value = serde_json::from_str(&cfg.to_json_pretty()).unwrap();
    assert_eq!(
        v["cluster"]["listen_multiaddress"],
        "/ip4/127.0.0.1/tcp/1234"
    );
    assert!(v["api"]["restapi"]["http_listen_multiaddress"].is_array());
}

fn load_err(text: &str) -> String {
    match ServiceConfig::from_json(text).and_then(|c| c.validate()) {
        Ok(()) => panic!("expected an error for {text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn validation_and_parse_errors_name_the_key() {
    let base = upstream_service_json();
    let e = load_err(&base.replace(SECRET, "0123456789ab"));
    assert!(
        e.contains("cluster.secret")
            && e.contains("cluster secret must be 64 hex characters, got 12"),
        "{e}"
    );
    let e = load_err(&base.replace(SECRET, &format!("{}zz", &SECRET[..62])));
    assert!(e.contains("non-hex character"), "{e}");
    let e = load_err(&base.replace(
        "\"dial_peer_timeout\": \"3s\"",
        "\"dial_peer_timeout\": \"5x\"",
    ));
    assert!(
        e.contains("cluster.dial_peer_timeout") && e.contains("invalid duration \"5x\""),
        "{e}"
    );
    let e = load_err(&base.replace("\"low_water\": 100", "\"low_water\": 1000"));
    assert!(e.contains("cluster.connection_manager.low_water"), "{e}");
    let e = load_err(
        &base
            .replace(
                "\"pin_only_on_trusted_peers\": false",
                "\"pin_only_on_trusted_peers\": true",
            )
            .replace(
                "\"pin_only_on_untrusted_peers\": false",
                "\"pin_only_on_untrusted_peers\": true",
            ),
    );
    assert!(
        e.contains("pin_only_on_trusted_peers and pin_only_on_untrusted_peers cannot both be true"),
        "{e}"
    );
    let e = load_err(&base.replace(
        "\"replication_factor_min\": -1",
        "\"replication_factor_min\": 2",
    ));
    assert!(e.contains("replication_factor_min"), "{e}");
    let e = load_err(&base.replace("\"listen_multiaddress\": [", "\"x\": ["));
    assert!(
        e.contains("cluster.listen_multiaddress: is undefined"),
        "{e}"
    );
    let e = load_err(&base.replace(
        "\"max_header_bytes\": 4096,\n      \"basic_auth_credentials\": null",
        "\"max_header_bytes\": 100,\n      \"basic_auth_credentials\": null",
    ));
    assert!(e.contains("max_header_bytes: must be at least 4096"), "{e}");
    let e = load_err(&base.replace(
        "\"node_multiaddress\": \"/ip4/127.0.0.1/tcp/5001\",\n      \"connect",
        "\"node_multiaddress\": \"/ip9/x\",\n      \"connect",
    ));
    assert!(
        e.contains("ipfs_connector.ipfshttp.node_multiaddress"),
        "{e}"
    );
    let e = load_err(&base.replace("\"concurrent_pins\": 10", "\"concurrent_pins\": \"ten\""));
    assert!(
        e.contains("pin_tracker.stateless.concurrent_pins: must be an integer"),
        "{e}"
    );
    let e = load_err("[1]");
    assert!(e.contains("must be a JSON object"), "{e}");
    let e = load_err("{");
    assert!(e.contains("invalid JSON"), "{e}");
}

#[test]
fn consensus_must_be_exactly_one() {
    // upstream's `init --consensus crdt` section loads.
    let crdt = upstream_service_json().replace(
        "\"raft\": {",
        "\"crdt\": {\"cluster_name\": \"ipfs-cluster\", \"trusted_peers\": [\"*\"], \"batching\": {\"max_batch_size\": 0, \"max_batch_age\": \"0s\"}, \"repair_interval\": \"1h0m0s\"}, \"raft_off\": {",
    );
    let c = ServiceConfig::from_json(&crdt).unwrap();
    c.validate().unwrap();
    assert!(c.consensus.raft.is_none());
    assert_eq!(c.consensus.crdt.unwrap(), crate::CrdtConfig::default());
    let both = upstream_service_json().replace(
        "\"raft\": {",
        "\"crdt\": {\"cluster_name\": \"x\"}, \"raft\": {",
    );
    let e = load_err(&both);
    assert!(e.contains("keep exactly one"), "{e}");
    let e = load_err(
        r#"{"cluster": {"listen_multiaddress": "/ip4/0.0.0.0/tcp/9096"}, "consensus": {}}"#,
    );
    assert!(e.contains("no consensus configured"), "{e}");
}

#[test]
fn internal_section_checks() {
    let mut cfg = ServiceConfig::default_for_init("p", ClusterSecret::generate());
    cfg.internal.gateway_listen_multiaddress = "/ip4/10.0.0.1/tcp/9183".parse().unwrap();
    let e = cfg.validate().unwrap_err().to_string();
    assert!(
        e.contains("internal.gateway_listen_multiaddress") && e.contains("allow_remote_internal"),
        "{e}"
    );
    cfg.internal.allow_remote_internal = true;
    cfg.validate().unwrap();
    cfg.internal.gateway_listen_multiaddress = cfg.internal.consensus_listen_multiaddress.clone();
    assert!(cfg
        .validate()
        .unwrap_err()
        .to_string()
        .contains("also used by internal.consensus_listen_multiaddress"));
    cfg.internal.gateway_listen_multiaddress = "/dns4/localhost/tcp/1".parse().unwrap();
    assert!(cfg.internal.gateway_addr().is_err());
}

#[test]
fn env_overrides() {
    let mut cfg = ServiceConfig::from_json(&upstream_service_json()).unwrap();
    cfg.consensus.raft.as_mut().unwrap().wait_for_leader_timeout = secs(30);
    cfg.cluster.peer_addresses = vec!["/ip4/1.2.3.4/tcp/9096".parse().unwrap()];
    cfg.apply_env_from(&env(&[
        ("CLUSTER_PEERNAME", "envpeer"),
        ("CLUSTER_DISABLEREPINNING", "false"),
        ("CLUSTER_CONNECTIONMANAGER_HIGHWATER", "500"),
        ("CLUSTER_PEERADDRESSES", ""),
        ("CLUSTER_RAFT_WAITFORLEADERTIMEOUT", ""),
        ("CLUSTER_RAFT_NETWORKTIMEOUT", "1m30s"),
        (
            "CLUSTER_RESTAPI_HTTPLISTENMULTIADDRESS",
            "/ip4/127.0.0.1/tcp/1,/ip4/127.0.0.1/tcp/2",
        ),
        (
            "CLUSTER_RESTAPI_BASICAUTHCREDENTIALS",
            "user1:pass1,user2:pass2",
        ),
        ("CLUSTER_IPFSHTTP_NODEMULTIADDRESS", "/dns4/ipfs0/tcp/5001"),
        ("CLUSTER_TAGS_TAGS", "group:a,zone:b"),
        (
            "CLUSTER_INTERNAL_CONSENSUSLISTENMULTIADDRESS",
            "/ip4/127.0.0.1/tcp/19181",
        ),
        ("CLUSTER_TRACING_SAMPLINGPROB", "0.5"),
    ]))
    .unwrap();
    assert_eq!(cfg.cluster.peername, "envpeer");
    assert!(!cfg.cluster.disable_repinning);
    assert_eq!(cfg.cluster.connection_manager.high_water, 500);
    assert!(
        cfg.cluster.peer_addresses.is_empty(),
        "set-but-empty list overrides with empty"
    );
    let r = cfg.consensus.raft.as_ref().unwrap();
    assert_eq!(
        r.wait_for_leader_timeout,
        secs(15),
        "set-but-empty duration = default"
    );
    assert_eq!(r.network_timeout, secs(90));
    let rest = cfg.api.restapi.as_ref().unwrap();
    assert_eq!(rest.http_listen_multiaddress.len(), 2);
    assert_eq!(
        rest.basic_auth_credentials.as_ref().unwrap()["user2"],
        "pass2"
    );
    assert_eq!(
        addr::to_host_port(&cfg.ipfs_connector.ipfshttp.node_multiaddress)
            .unwrap()
            .0,
        "ipfs0"
    );
    assert_eq!(cfg.informer.tags.as_ref().unwrap().tags["zone"], "b");
    assert_eq!(cfg.internal.consensus_addr().unwrap().port(), 19181);
    assert_eq!(cfg.observations.tracing.sampling_prob, 0.5);
    cfg.validate().unwrap();
    assert_eq!(
        env_var_name("CLUSTER_RESTAPI", "http_listen_multiaddress"),
        "CLUSTER_RESTAPI_HTTPLISTENMULTIADDRESS"
    );
}

#[test]
fn bad_env_values_name_the_variable() {
    let base = ServiceConfig::from_json(&upstream_service_json()).unwrap();
    for (var, val, want) in [
        ("CLUSTER_DISABLEREPINNING", "maybe", "must be true or false"),
        ("CLUSTER_DIALPEERTIMEOUT", "5x", "invalid duration \"5x\""),
        (
            "CLUSTER_SECRET",
            "abc",
            "cluster secret must be 64 hex characters, got 3",
        ),
        (
            "CLUSTER_CONNECTIONMANAGER_LOWWATER",
            "",
            "must be an integer",
        ),
        (
            "CLUSTER_CONNECTIONMANAGER_LOWWATER",
            "100000",
            "must not be greater than high_water",
        ),
        (
            "CLUSTER_RESTAPI_HTTPLISTENMULTIADDRESS",
            "nope",
            "invalid multiaddress",
        ),
        (
            "CLUSTER_INTERNAL_GATEWAYLISTENMULTIADDRESS",
            "/ip4/8.8.8.8/tcp/1",
            "not a loopback address",
        ),
    ] {
        let mut cfg = base.clone();
        let e = cfg
            .apply_env_from(&env(&[(var, val)]))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("environment variable {var}: ")) && e.contains(want),
            "{var}={val}: {e}"
        );
    }
    // An env var for an absent optional component changes nothing.
    let mut cfg = ServiceConfig::from_json(r#"{"cluster": {"listen_multiaddress": "/ip4/0.0.0.0/tcp/9096"}, "consensus": {"raft": {"backups_rotate": 1}}}"#).unwrap();
    let before = cfg.clone();
    cfg.apply_env_from(&env(&[(
        "CLUSTER_RESTAPI_HTTPLISTENMULTIADDRESS",
        "/ip4/127.0.0.1/tcp/1",
    )]))
    .unwrap();
    assert_eq!(cfg, before);
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_then_load() {
    let dir = tempfile::tempdir().unwrap();
    let other = Identity::generate();
    let peer_addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/9096/p2p/{}", other.peer_id)
        .parse()
        .unwrap();
    let opts = InitOptions {
        peername: Some("flagname".into()),
        peers: vec![peer_addr.clone()],
        consensus: "raft".into(),
        ..Default::default()
    };
    let lookup = env(&[
        ("CLUSTER_SECRET", SECRET),
        ("CLUSTER_PEERNAME", "envname"),
        ("CLUSTER_MDNSINTERVAL", "0s"),
    ]);
    let rep = init_from(dir.path(), &opts, &lookup).unwrap();
    assert!(!rep.secret_generated);
    let shown = rep.to_string();
    assert!(
        shown.contains(&rep.peer_id.to_string()) && shown.contains("peerstore written to"),
        "{shown}"
    );
    assert_eq!(mode(&rep.token_file), 0o600);
    assert_eq!(mode(&rep.identity_json), 0o600);
    assert_eq!(mode(&rep.service_json), 0o600);
    let peer = Peer::load_from(dir.path(), &no_env).unwrap();
    assert_eq!(peer.identity.peer_id, rep.peer_id);
    assert_eq!(
        peer.config.cluster.secret.to_hex(),
        SECRET,
        "CLUSTER_SECRET is baked in at init"
    );
    assert_eq!(peer.config.cluster.peername, "flagname", "flags beat env");
    assert!(peer.config.cluster.mdns_interval.is_zero());
    assert_eq!(
        peer.config.consensus.raft.as_ref().unwrap().init_peerset,
        vec![other.peer_id]
    );
    assert_eq!(
        read_peerstore(&peer.peerstore_path()).unwrap(),
        vec![peer_addr]
    );
    assert_eq!(
        peer.token,
        ipfs_cluster_proto::InternalToken::load(&rep.token_file).unwrap()
    );
    assert_eq!(peer.raft_dir(), dir.path().join("raft"));

    // No overwrite without force; force replaces everything.
    let e = init_from(dir.path(), &opts, &no_env)
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with("already exists; use --force to overwrite"),
        "{e}"
    );
    let rep2 = init_from(
        dir.path(),
        &InitOptions {
            force: true,
            ..opts.clone()
        },
        &no_env,
    )
    .unwrap();
    assert!(rep2.secret_generated);
    assert_ne!(rep2.peer_id, rep.peer_id);
    let peer2 = Peer::load_from(dir.path(), &no_env).unwrap();
    assert_ne!(peer2.config.cluster.secret.to_hex(), SECRET);
    assert_ne!(peer2.token, peer.token);

    // Env at load time overrides the file without writing it back.
    let peer3 = Peer::load_from(dir.path(), &env(&[("CLUSTER_PEERNAME", "other")])).unwrap();
    assert_eq!(peer3.config.cluster.peername, "other");
    assert!(fs::read_to_string(&rep.service_json)
        .unwrap()
        .contains("\"flagname\""));

    // CLUSTER_PRIVATEKEY / CLUSTER_ID replace identity.json.
    let id = Identity::generate();
    let peer4 = Peer::load_from(
        dir.path(),
        &env(&[("CLUSTER_PRIVATEKEY", &id.private_key_base64())]),
    )
    .unwrap();
    assert_eq!(peer4.identity.peer_id, id.peer_id);
    let bad = Peer::load_from(
        dir.path(),
        &env(&[
            ("CLUSTER_PRIVATEKEY", &id.private_key_base64()),
            ("CLUSTER_ID", &other.peer_id.to_string()),
        ]),
    )
    .unwrap_err()
    .to_string();
    assert!(bad.contains("does not match private_key"), "{bad}");
}

#[test]
fn init_rejects_unknown_consensus_and_bad_peers() {
    let dir = tempfile::tempdir().unwrap();
    let e = init_from(
        dir.path(),
        &InitOptions {
            consensus: "paxos".into(),
            ..Default::default()
        },
        &no_env,
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("use --consensus raft or --consensus crdt"),
        "{e}"
    );
    let opts = InitOptions {
        peers: vec!["/ip4/127.0.0.1/udp/9096/quic-v1".parse().unwrap()],
        ..Default::default()
    };
    let e = init_from(dir.path(), &opts, &no_env)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/ip4/127.0.0.1/udp/9096/quic-v1") && e.contains("/dns4"),
        "{e}"
    );
    assert!(
        !dir.path().join(SERVICE_JSON).exists(),
        "nothing written on error"
    );
    let e = init_from(
        dir.path(),
        &InitOptions::default(),
        &env(&[("CLUSTER_SECRET", "abc")]),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("CLUSTER_SECRET"), "{e}");
}

#[test]
fn load_errors() {
    let dir = tempfile::tempdir().unwrap();
    let e = Peer::load_from(dir.path(), &no_env)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("service.json") && e.contains("ipfs-cluster-service init"),
        "{e}"
    );
    init_from(dir.path(), &InitOptions::default(), &no_env).unwrap();
    // A folder without the internal token (made by upstream's init) gets one, 0600.
    fs::remove_file(dir.path().join("internal.token")).unwrap();
    let p = Peer::load_from(dir.path(), &no_env).unwrap();
    assert_eq!(mode(&dir.path().join("internal.token")), 0o600);
    assert_eq!(
        ipfs_cluster_proto::InternalToken::load(&dir.path().join("internal.token")).unwrap(),
        p.token
    );
    // A malformed one is still an error naming the file.
    fs::write(dir.path().join("internal.token"), "short").unwrap();
    let e = Peer::load_from(dir.path(), &no_env)
        .unwrap_err()
        .to_string();
    assert!(e.contains("internal.token"), "{e}");
    fs::remove_file(dir.path().join("internal.token")).unwrap();
    let text = fs::read_to_string(dir.path().join(SERVICE_JSON)).unwrap();
    fs::write(
        dir.path().join(SERVICE_JSON),
        text.replace("\"3s\"", "\"3parsecs\""),
    )
    .unwrap();
    let e = Peer::load_from(dir.path(), &no_env)
        .unwrap_err()
        .to_string();
    assert!(e.contains("invalid duration \"3parsecs\""), "{e}");
}

#[test]
fn config_dir_resolution() {
    use crate::peer::resolve_config_dir_from;
    let flag = Path::new("/tmp/flag");
    assert_eq!(
        resolve_config_dir_from(Some(flag), &env(&[("IPFS_CLUSTER_PATH", "/x")])),
        flag
    );
    assert_eq!(
        resolve_config_dir_from(None, &env(&[("IPFS_CLUSTER_PATH", "/x"), ("HOME", "/h")])),
        Path::new("/x")
    );
    assert_eq!(
        resolve_config_dir_from(None, &env(&[("HOME", "/h")])),
        Path::new("/h/.ipfs-cluster")
    );
}

#[test]
fn legacy_identity_in_service_json() {
    let dir = tempfile::tempdir().unwrap();
    init_from(dir.path(), &InitOptions::default(), &no_env).unwrap();
    let id = Identity::generate();
    let p = dir.path().join(SERVICE_JSON);
    let mut v: Value = serde_json::from_str(&fs::read_to_string(&p).unwrap()).unwrap();
    v["cluster"]["id"] = id.peer_id.to_string().into();
    v["cluster"]["private_key"] = id.private_key_base64().into();
    fs::write(&p, serde_json::to_string(&v).unwrap()).unwrap();
    fs::remove_file(dir.path().join(IDENTITY_JSON)).unwrap();
    let peer = Peer::load_from(dir.path(), &no_env).unwrap();
    assert_eq!(peer.identity.peer_id, id.peer_id);
    assert_eq!(
        Identity::load(&dir.path().join(IDENTITY_JSON))
            .unwrap()
            .peer_id,
        id.peer_id
    );
    assert_eq!(mode(&dir.path().join(IDENTITY_JSON)), 0o600);
}

#[test]
fn max_pin_attempts_is_our_stateless_key() {
    // Absent (an upstream file) = 10, and not written back while it is the default.
    let cfg = ServiceConfig::from_json(&upstream_service_json()).unwrap();
    assert_eq!(cfg.pin_tracker.stateless.max_pin_attempts, 10);
    let v: Value = serde_json::from_str(&cfg.to_json_pretty()).unwrap();
    assert!(v["pin_tracker"]["stateless"]
        .get("max_pin_attempts")
        .is_none());
    // Set in the file: kept and written back; 0 (retry forever) is valid.
    let text = upstream_service_json().replace(
        "\"priority_pin_max_retries\": 5",
        "\"priority_pin_max_retries\": 5,\n      \"max_pin_attempts\": 0",
    );
    let cfg = ServiceConfig::from_json(&text).unwrap();
    cfg.validate().unwrap();
    assert_eq!(cfg.pin_tracker.stateless.max_pin_attempts, 0);
    let v: Value = serde_json::from_str(&cfg.to_json_pretty()).unwrap();
    assert_eq!(v["pin_tracker"]["stateless"]["max_pin_attempts"], 0);
    // Negative values are refused, naming the key.
    let e = load_err(&text.replace("\"max_pin_attempts\": 0", "\"max_pin_attempts\": -1"));
    assert!(e.contains("pin_tracker.stateless.max_pin_attempts"), "{e}");
    // Env override.
    let mut cfg = ServiceConfig::from_json(&upstream_service_json()).unwrap();
    cfg.apply_env_from(&env(&[("CLUSTER_STATELESS_MAXPINATTEMPTS", "3")]))
        .unwrap();
    assert_eq!(cfg.pin_tracker.stateless.max_pin_attempts, 3);
    let e = ServiceConfig::from_json(&upstream_service_json())
        .unwrap()
        .apply_env_from(&env(&[("CLUSTER_STATELESS_MAXPINATTEMPTS", "x")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("CLUSTER_STATELESS_MAXPINATTEMPTS"), "{e}");
}

#[test]
fn metrics_endpoints_derived_overridden_and_loopback_only() {
    use crate::ServiceKind;
    let mut cfg = ServiceConfig::default_for_init("p", ClusterSecret::generate());
    let ports: Vec<u16> = ServiceKind::ALL
        .iter()
        .map(|k| cfg.metrics_addr(*k).unwrap().port())
        .collect();
    assert_eq!(ports, vec![8888, 8889, 8890, 8891]);
    cfg.internal.gateway_metrics_multiaddress = Some("/ip4/127.0.0.1/tcp/9999".parse().unwrap());
    assert_eq!(cfg.metrics_addr(ServiceKind::Gateway).unwrap().port(), 9999);
    // The override survives a JSON round trip; "" means derived.
    let v = cfg.internal.to_value();
    assert_eq!(v["gateway_metrics_multiaddress"], "/ip4/127.0.0.1/tcp/9999");
    assert_eq!(v["consensus_metrics_multiaddress"], "");
    // Non-loopback: refused only when stats are on (validate) and always by metrics_addr.
    cfg.observations.metrics.prometheus_endpoint = "/ip4/10.0.0.1/tcp/8888".parse().unwrap();
    cfg.validate().unwrap();
    cfg.observations.metrics.enable_stats = true;
    let e = cfg.validate().unwrap_err().to_string();
    assert!(
        e.contains("observations.metrics.prometheus_endpoint")
            && e.contains("allow_remote_internal"),
        "{e}"
    );
    cfg.internal.allow_remote_internal = true;
    cfg.validate().unwrap();
}

#[test]
fn init_randomports_gives_every_listener_its_own_free_port() {
    let dir = tempfile::tempdir().unwrap();
    let opts = InitOptions {
        consensus: "raft".into(),
        random_ports: true,
        ..Default::default()
    };
    init_from(dir.path(), &opts, &no_env).unwrap();
    let peer = Peer::load_from(dir.path(), &no_env).unwrap();
    let c = &peer.config;
    let port = |a: &Multiaddr| {
        a.iter()
            .find_map(|p| match p {
                libp2p::multiaddr::Protocol::Tcp(p) => Some(p),
                _ => None,
            })
            .unwrap()
    };
    let mut ports = vec![port(&c.cluster.listen_multiaddress[0])];
    ports.extend(
        c.api
            .restapi
            .as_ref()
            .unwrap()
            .http_listen_multiaddress
            .iter()
            .map(port),
    );
    ports.extend(
        c.api
            .ipfsproxy
            .as_ref()
            .unwrap()
            .listen_multiaddress
            .iter()
            .map(port),
    );
    for a in [
        &c.internal.transport_listen_multiaddress,
        &c.internal.consensus_listen_multiaddress,
        &c.internal.ipfs_connector_listen_multiaddress,
        &c.internal.gateway_listen_multiaddress,
    ] {
        ports.push(port(a));
    }
    // The metrics endpoint P serves the four services on P..P+3: all four randomized.
    let prom = port(&c.observations.metrics.prometheus_endpoint);
    ports.extend(prom..prom + 4);
    // None of the defaults (9094-9096, 9180-9183, 8888), all different.
    for p in &ports {
        assert!(
            ![9094, 9095, 9096, 9097, 9180, 9181, 9182, 9183, 8888].contains(p),
            "{ports:?}"
        );
    }
    let mut uniq = ports.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), ports.len(), "{ports:?}");
    // Outside the kernel's ephemeral range, so no outbound connection can take them.
    let (lo, hi) = crate::ports::ephemeral_range();
    if lo > 21_000 {
        assert!(ports.iter().all(|p| !(lo..=hi).contains(p)), "{ports:?}");
    }
}

/// `init --peers` takes every DNS form, with and without /p2p/<id>: all of them go to the
/// peerstore as given; only those with an id go to raft's init_peerset, and the report
/// says what happened to the others.
#[test]
fn init_peers_in_dns_forms() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (Identity::generate().peer_id, Identity::generate().peer_id);
    let peers: Vec<Multiaddr> = [
        format!("/dns4/cluster0/tcp/9096/p2p/{a}"),
        format!("/dns6/cluster0/tcp/9096/p2p/{a}"),
        format!("/dnsaddr/cluster.example.org/p2p/{b}"),
        "/dns/cluster2.example.org/tcp/9096".to_string(),
        "/dns4/cluster3/tcp/9096".to_string(),
        "/dnsaddr/bootstrap.example.org".to_string(),
    ]
    .iter()
    .map(|s| addr::parse_peer_address(s).unwrap())
    .collect();
    let opts = InitOptions {
        peers: peers.clone(),
        ..Default::default()
    };
    let rep = init_from(dir.path(), &opts, &env(&[("CLUSTER_SECRET", SECRET)])).unwrap();
    let peer = Peer::load_from(dir.path(), &no_env).unwrap();
    assert_eq!(
        peer.config.consensus.raft.as_ref().unwrap().init_peerset,
        vec![a, b]
    );
    assert_eq!(read_peerstore(&peer.peerstore_path()).unwrap(), peers);
    assert_eq!(rep.notes.len(), 3, "{:?}", rep.notes);
    let shown = rep.to_string();
    assert!(
        shown.contains("note: /dns4/cluster3/tcp/9096 has no /p2p/<peer id>")
            && shown.contains("daemon --bootstrap /dns4/cluster3/tcp/9096"),
        "{shown}"
    );
}

/// peer_addresses, announce_multiaddress and no_announce_multiaddress take DNS forms, with
/// and without /p2p/<id>, from service.json and from the environment, and write back as is.
#[test]
fn dns_forms_in_cluster_address_keys() {
    let id = Identity::generate().peer_id;
    let text = upstream_service_json()
        .replace(
            r#""announce_multiaddress": [],"#,
            r#""announce_multiaddress": ["/dns4/cluster0/tcp/9096", "/dns6/cluster0.example.org/tcp/9096", "/dnsaddr/cluster.example.org"],"#,
        )
        .replace(
            r#""no_announce_multiaddress": [],"#,
            r#""no_announce_multiaddress": ["/ip4/10.0.0.0/ipcidr/8", "/dns/internal.example.org/tcp/9096"],"#,
        )
        .replace(
            r#""peer_addresses": []"#,
            &format!(r#""peer_addresses": ["/dns4/cluster1/tcp/9096", "/dns/cluster2.example.org/tcp/9096/p2p/{id}", "/dnsaddr/cluster.example.org/p2p/{id}"]"#),
        );
    let cfg = ServiceConfig::from_json(&text).unwrap();
    cfg.validate().unwrap();
    let strs = |v: &[Multiaddr]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    assert_eq!(
        strs(&cfg.cluster.announce_multiaddress),
        vec![
            "/dns4/cluster0/tcp/9096",
            "/dns6/cluster0.example.org/tcp/9096",
            "/dnsaddr/cluster.example.org"
        ]
    );
    assert_eq!(
        strs(&cfg.cluster.no_announce_multiaddress),
        vec![
            "/ip4/10.0.0.0/ipcidr/8",
            "/dns/internal.example.org/tcp/9096"
        ]
    );
    assert_eq!(
        strs(&cfg.cluster.peer_addresses),
        vec![
            "/dns4/cluster1/tcp/9096".to_string(),
            format!("/dns/cluster2.example.org/tcp/9096/p2p/{id}"),
            format!("/dnsaddr/cluster.example.org/p2p/{id}"),
        ]
    );
    for a in &cfg.cluster.peer_addresses {
        addr::check_peer_address(a).unwrap();
    }
    let back = ServiceConfig::from_json(&cfg.to_json_pretty()).unwrap();
    assert_eq!(back.cluster.peer_addresses, cfg.cluster.peer_addresses);
    assert_eq!(
        back.cluster.announce_multiaddress,
        cfg.cluster.announce_multiaddress
    );

    let mut cfg = ServiceConfig::from_json(&upstream_service_json()).unwrap();
    cfg.apply_env_from(&env(&[
        (
            "CLUSTER_PEERADDRESSES",
            &format!("/dns4/cluster0/tcp/9096, /dns4/cluster1/tcp/9096/p2p/{id}"),
        ),
        ("CLUSTER_ANNOUNCEMULTIADDRESS", "/dns4/cluster5/tcp/9096"),
        (
            "CLUSTER_NOANNOUNCEMULTIADDRESS",
            "/ip4/172.16.0.0/ipcidr/12",
        ),
    ]))
    .unwrap();
    cfg.validate().unwrap();
    assert_eq!(
        strs(&cfg.cluster.peer_addresses),
        vec![
            "/dns4/cluster0/tcp/9096".to_string(),
            format!("/dns4/cluster1/tcp/9096/p2p/{id}")
        ]
    );
    assert_eq!(
        strs(&cfg.cluster.announce_multiaddress),
        vec!["/dns4/cluster5/tcp/9096"]
    );
    assert_eq!(
        strs(&cfg.cluster.no_announce_multiaddress),
        vec!["/ip4/172.16.0.0/ipcidr/12"]
    );
}

#[test]
fn raft_keys_missing_or_zero_take_upstreams_defaults() {
    // A raft section as older releases wrote it (no backups_rotate, no
    // leader_lease_timeout...), and one with zero values: upstream's SetIfNotDefault gives
    // both the defaults; commit_retries alone is taken as given.
    let old = r#"{"cluster": {"listen_multiaddress": "/ip4/127.0.0.1/tcp/1234"},
      "consensus": {"raft": {"wait_for_leader_timeout": "15s", "heartbeat_timeout": "1s"}}}"#;
    let zero = r#"{"cluster": {"listen_multiaddress": "/ip4/127.0.0.1/tcp/1234"},
      "consensus": {"raft": {"backups_rotate": 0, "max_append_entries": 0, "trailing_logs": 0,
        "snapshot_threshold": 0, "network_timeout": "0s", "commit_timeout": "0s",
        "commit_retries": 0, "snapshot_interval": "0", "leader_lease_timeout": "0s"}}}"#;
    let d = RaftConfig::default();
    for text in [old, zero] {
        let cfg = ServiceConfig::from_json(text).unwrap();
        cfg.validate().unwrap();
        let r = cfg.consensus.raft.as_ref().unwrap();
        assert_eq!(r.backups_rotate, 6);
        assert_eq!(r.max_append_entries, d.max_append_entries);
        assert_eq!(r.trailing_logs, d.trailing_logs);
        assert_eq!(r.snapshot_threshold, d.snapshot_threshold);
        assert_eq!(r.network_timeout, d.network_timeout);
        assert_eq!(r.commit_timeout, d.commit_timeout);
        assert_eq!(r.snapshot_interval, d.snapshot_interval);
        assert_eq!(r.leader_lease_timeout, d.leader_lease_timeout);
        assert_eq!(r.commit_retries, 0, "commit_retries is taken as given");
    }
    let neg = r#"{"cluster": {"listen_multiaddress": "/ip4/127.0.0.1/tcp/1234"},
      "consensus": {"raft": {"backups_rotate": -1}}}"#;
    let e = ServiceConfig::from_json(neg)
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
    assert!(e.contains("consensus.raft.backups_rotate"), "{e}");
}

#[test]
fn stateless_keys_missing_take_upstreams_defaults() {
    let text = r#"{"cluster": {"listen_multiaddress": "/ip4/127.0.0.1/tcp/1234"},
      "consensus": {"raft": {}},
      "pin_tracker": {"stateless": {"priority_pin_max_age": "24h0m0s"}}}"#;
    let cfg = ServiceConfig::from_json(text).unwrap();
    cfg.validate().unwrap();
    let s = &cfg.pin_tracker.stateless;
    assert_eq!((s.concurrent_pins, s.priority_pin_max_retries), (10, 5));
}

#[test]
fn read_only_users_is_our_optional_rest_key() {
    // Absent (an upstream file): empty, and not written back.
    let cfg = ServiceConfig::from_json(&upstream_service_json()).unwrap();
    assert!(cfg.api.restapi.as_ref().unwrap().read_only_users.is_empty());
    let v: Value = serde_json::from_str(&cfg.to_json_pretty()).unwrap();
    assert!(v["api"]["restapi"].get("read_only_users").is_none());
    // Set: kept and written back, on both HTTP APIs.
    let text = upstream_service_json().replace(
        "\"basic_auth_credentials\": null",
        "\"basic_auth_credentials\": {\"alice\": \"a\", \"bob\": \"b\"},\n      \"read_only_users\": [\"bob\"]",
    );
    let cfg = ServiceConfig::from_json(&text).unwrap();
    cfg.validate().unwrap();
    for api in [&cfg.api.restapi, &cfg.api.pinsvcapi] {
        assert_eq!(
            api.as_ref().unwrap().read_only_users,
            vec!["bob".to_string()]
        );
    }
    let v: Value = serde_json::from_str(&cfg.to_json_pretty()).unwrap();
    assert_eq!(
        v["api"]["restapi"]["read_only_users"],
        serde_json::json!(["bob"])
    );
    // A name that is not a user (or no credentials at all) is refused, naming the key.
    let e = load_err(&text.replace("[\"bob\"]", "[\"carol\"]"));
    assert!(e.contains("read_only_users") && e.contains("carol"), "{e}");
    let e = load_err(&upstream_service_json().replace(
        "\"basic_auth_credentials\": null",
        "\"basic_auth_credentials\": null,\n      \"read_only_users\": [\"bob\"]",
    ));
    assert!(e.contains("read_only_users"), "{e}");
    // Env override.
    let mut cfg = ServiceConfig::from_json(&text).unwrap();
    cfg.apply_env_from(&env(&[("CLUSTER_RESTAPI_READONLYUSERS", "alice,bob")]))
        .unwrap();
    assert_eq!(
        cfg.api.restapi.as_ref().unwrap().read_only_users,
        vec!["alice".to_string(), "bob".to_string()]
    );
}

#[test]
fn max_add_bytes_is_our_optional_rest_key() {
    let cfg = ServiceConfig::from_json(&upstream_service_json()).unwrap();
    assert_eq!(
        cfg.api.restapi.as_ref().unwrap().max_add_bytes,
        crate::api::DEFAULT_MAX_ADD_BYTES
    );
    let v: Value = serde_json::from_str(&cfg.to_json_pretty()).unwrap();
    assert!(v["api"]["restapi"].get("max_add_bytes").is_none());
    let text = upstream_service_json().replace(
        "\"basic_auth_credentials\": null",
        "\"basic_auth_credentials\": null,\n      \"max_add_bytes\": 1048576",
    );
    let cfg = ServiceConfig::from_json(&text).unwrap();
    cfg.validate().unwrap();
    assert_eq!(cfg.api.restapi.as_ref().unwrap().max_add_bytes, 1 << 20);
    let v: Value = serde_json::from_str(&cfg.to_json_pretty()).unwrap();
    assert_eq!(v["api"]["restapi"]["max_add_bytes"], 1 << 20);
    let e = load_err(&text.replace("1048576", "-1"));
    assert!(e.contains("max_add_bytes"), "{e}");
}

#[test]
fn raft_accepts_upstreams_trusted_peers_key() {
    let id = "12D3KooWJhvkyhTzW8GjLjXjZDggCbpVe8u8rtcrZZqYTuKCixbL";
    // Absent (upstream's raft section): anyone may join; not written back.
    let cfg = ServiceConfig::from_json(&upstream_service_json()).unwrap();
    assert_eq!(cfg.consensus.raft.as_ref().unwrap().trusted_peers, None);
    let v: Value = serde_json::from_str(&cfg.to_json_pretty()).unwrap();
    assert!(v["consensus"]["raft"].get("trusted_peers").is_none());
    let with = |list: &str| {
        upstream_service_json().replace(
            "\"init_peerset\": [],",
            &format!("\"init_peerset\": [],\n      \"trusted_peers\": {list},"),
        )
    };
    let cfg = ServiceConfig::from_json(&with(&format!("[\"{id}\"]"))).unwrap();
    cfg.validate().unwrap();
    let t = cfg
        .consensus
        .raft
        .as_ref()
        .unwrap()
        .trusted_peers
        .clone()
        .unwrap();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].to_string(), id);
    let v: Value = serde_json::from_str(&cfg.to_json_pretty()).unwrap();
    assert_eq!(
        v["consensus"]["raft"]["trusted_peers"],
        serde_json::json!([id])
    );
    // "*" trusts everyone, as upstream's crdt key.
    let cfg = ServiceConfig::from_json(&with("[\"*\"]")).unwrap();
    assert_eq!(cfg.consensus.raft.as_ref().unwrap().trusted_peers, None);
    // Not a peer id: a clear error naming the key.
    let e = load_err(&with("[\"nobody\"]"));
    assert!(
        e.contains("consensus.raft.trusted_peers") && e.contains("nobody"),
        "{e}"
    );
    // Env override (upstream's variable naming).
    let mut cfg = ServiceConfig::from_json(&upstream_service_json()).unwrap();
    cfg.apply_env_from(&env(&[("CLUSTER_RAFT_TRUSTEDPEERS", id)]))
        .unwrap();
    assert_eq!(
        cfg.consensus
            .raft
            .as_ref()
            .unwrap()
            .trusted_peers
            .as_ref()
            .unwrap()
            .len(),
        1
    );
}
