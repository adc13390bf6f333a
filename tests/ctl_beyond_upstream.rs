//! What our `ipfs-cluster-ctl` does that upstream's does not, or does differently on
//! purpose, through the real binaries: libp2p-http to a cluster host refuses a holder of
//! the secret that is not a member unless the REST API's credentials are given, the REST
//! API's own libp2p host is a private network keyed by the cluster secret, and shell
//! completion scripts. Everything the ctl shares with upstream (every command's output,
//! errors, exit codes, Basic Auth, fail-over, libp2p-http with the secret) is compared
//! with upstream's own binaries in tests/compat.rs and tests/compat_edges.rs instead of
//! expectations written here.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use ipfs_cluster_tests::*;
use serde_json::Value;

/// What one ctl run printed.
#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `ipfs-cluster-ctl` (blocking) with optional stdin bytes and working directory.
fn ctl_blocking(args: &[String], stdin: Option<Vec<u8>>, cwd: Option<PathBuf>) -> Out {
    let mut cmd = Command::new(bin("ipfs-cluster-ctl"));
    cmd.args(args).env_remove("CLUSTER_CREDENTIALS");
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let o = output_within(cmd, stdin, Duration::from_secs(60)).expect("running ipfs-cluster-ctl");
    assert!(
        !o.timed_out,
        "ipfs-cluster-ctl {args:?} did not exit within 60 s"
    );
    Out {
        code: o.code,
        stdout: o.stdout,
        stderr: o.stderr,
    }
}

async fn ctl_full(args: &[&str], stdin: Option<&[u8]>, cwd: Option<&Path>) -> Out {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let stdin = stdin.map(<[u8]>::to_vec);
    let cwd = cwd.map(Path::to_path_buf);
    tokio::task::spawn_blocking(move || ctl_blocking(&args, stdin, cwd))
        .await
        .unwrap()
}

/// Sets the peername (and optionally REST basic auth) in a peer's service.json.
fn edit_service_json(dir: &Path, peername: &str, auth: Option<(&str, &str)>) {
    let path = dir.join("service.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v["cluster"]["peername"] = Value::from(peername);
    if let Some((user, pass)) = auth {
        v["api"]["restapi"]["basic_auth_credentials"] = serde_json::json!({ user: pass });
    }
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// What ours has beyond upstream's ctl and service and needs no cluster: both binaries
/// report the same version (upstream's binaries are compared in tests/compat.rs), and
/// shell completion scripts (upstream has none).
#[tokio::test]
async fn versions_and_completion_scripts() {
    let ctl = ctl_full(&["--version"], None, None).await;
    assert_eq!(
        (ctl.code, ctl.stdout.as_str()),
        (0, "ipfs-cluster-ctl version 1.1.6\n")
    );
    let svc = tokio::task::spawn_blocking(|| run_bin("ipfs-cluster-service", &["--version"], &[]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(svc.0, 0, "{svc:?}");
    assert_eq!(svc.1, "ipfs-cluster-service version 1.1.6\n");
    // completion scripts (beyond upstream).
    for (shell, marker) in [
        ("bash", "complete"),
        ("zsh", "#compdef"),
        ("fish", "complete -c"),
    ] {
        let out = ctl_full(&["completion", shell], None, None).await;
        assert_eq!(out.code, 0, "{shell}: {out:?}");
        assert!(out.stdout.contains(marker), "{shell}: {}", out.stdout);
        assert!(out.stdout.contains("ipfs-cluster-ctl"), "{shell}");
    }
    let out = ctl_full(&["completion", "tcsh"], None, None).await;
    assert_ne!(out.code, 0, "{out:?}");
}

// ---------------------------------------------------------------------------------------
// libp2p-http (`--host …/p2p/<id>`)
// ---------------------------------------------------------------------------------------

/// Sets api.restapi's own libp2p endpoint (listen address, id, private_key).
fn set_restapi_libp2p(dir: &Path, listen: &str, id: &str, key: &str) {
    let path = dir.join("service.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let r = &mut v["api"]["restapi"];
    r["libp2p_listen_multiaddress"] = Value::from(listen);
    r["id"] = Value::from(id);
    r["private_key"] = Value::from(key);
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// The ctl over the cluster host's `/libp2p-http` (with the secret): id, pin add, status;
/// a wrong or missing secret fails like a connection error (code 0, exit 1); the tunnel
/// shows up in GET /health/bandwidth; then the REST API's own libp2p host answers `id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libp2p_http_over_the_cluster_host_and_its_own_host() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("ipfs")).unwrap();
    let ipfs = IpfsNode::start(&tmp.path().join("ipfs")).await.unwrap();
    let secret = "5c".repeat(32);
    let p = PeerDir::init(&tmp.path().join("peer"), &ipfs.multiaddr(), Some(&secret)).unwrap();
    edit_service_json(&p.dir, "p2ppeer", None);
    let mut daemon = p.start(&[]).await.unwrap();
    let id = get_json(&format!("{}/id", p.rest_url())).await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let host = format!("/ip4/127.0.0.1/tcp/{}/p2p/{id}", p.ports.swarm);
    let run = |args: Vec<String>| async move {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        ctl_full(&a, None, None).await
    };
    let with = |secret: &str, rest: &[&str]| {
        let mut v = vec!["--host".to_string(), host.clone()];
        if !secret.is_empty() {
            v.extend(["--secret".to_string(), secret.to_string()]);
        }
        v.extend(rest.iter().map(|s| s.to_string()));
        v
    };

    // Unlike upstream, holding the secret is not enough while the REST API has no
    // credentials: the ctl's throw-away host is not a cluster member, so the cluster host
    // refuses its /libp2p-http stream.
    let refused = run(with(&secret, &["id"])).await;
    assert_eq!(refused.code, 1, "{refused:?}");
    wait_for(Duration::from_secs(10), || async {
        p.log_tail().contains("not a cluster member")
    })
    .await
    .unwrap_or_else(|_| panic!("no refusal logged:\n{}", p.log_tail()));
    // With basic_auth_credentials the REST API's own auth guards tunnelled requests.
    daemon.terminate(Duration::from_secs(20));
    edit_service_json(&p.dir, "p2ppeer", Some(("alice", "s3cret")));
    let mut daemon = p.start_until(&[], "/health", 204).await.unwrap();
    let with = |secret: &str, rest: &[&str]| {
        let mut v = with(secret, &["--basic-auth", "alice:s3cret", "--force-http"]);
        v.extend(rest.iter().map(|s| s.to_string()));
        v
    };

    // id over libp2p-http: the same block as over HTTP.
    let over_p2p = run(with(&secret, &["id"])).await;
    assert_eq!(over_p2p.code, 0, "{over_p2p:?}\n{}", p.log_tail());
    let over_http = run(vec![
        "--host".into(),
        format!("/ip4/127.0.0.1/tcp/{}", p.ports.rest),
        "--basic-auth".into(),
        "alice:s3cret".into(),
        "--force-http".into(),
        "id".into(),
    ])
    .await;
    assert_eq!(over_p2p.stdout, over_http.stdout);
    assert!(over_p2p.stdout.starts_with(&format!("{id} | p2ppeer | ")));

    // pin add + status over libp2p-http; the pin really reaches IPFS.
    let cid = ipfs.add(b"pinned through libp2p-http\n").await.unwrap();
    let out = run(with(&secret, &["pin", "add", &cid])).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.starts_with(&format!("{cid}:\n")), "{out:?}");
    wait_for(Duration::from_secs(30), || {
        let args = with(&secret, &["status", &cid]);
        async move {
            let o = run(args).await;
            o.code == 0 && o.stdout.contains(": PINNED |")
        }
    })
    .await
    .expect("status over libp2p-http never showed PINNED");
    assert!(ipfs.pins().await.unwrap().contains(&cid));

    // A wrong secret, and no secret, fail as a connection error: code 0, exit 1.
    for bad in ["a1".repeat(32), String::new()] {
        let out = run(with(&bad, &["id"])).await;
        assert_eq!(out.code, 1, "{out:?}");
        assert!(
            out.stdout.starts_with(&format!(
                "An error occurred:\n  Code: 0\n  Message: Get \"libp2p://{id}/id\": "
            )),
            "{out:?}"
        );
    }
    // A secret that is not 32 bytes is a local error.
    let out = run(with("abcd", &["id"])).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.starts_with("error parsing secret: "), "{out:?}");

    // The tunnel's bytes are counted under /libp2p-http.
    let req = hyper::Request::get(format!("{}/health/bandwidth", p.rest_url()))
        .header("authorization", "Basic YWxpY2U6czNjcmV0")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let (st, text) = send(req).await.unwrap();
    assert_eq!(st, 200, "{text}");
    let bw: Value = serde_json::from_str(&text).unwrap();
    let t = &bw["/libp2p-http"];
    assert!(
        t["total_in"].as_i64().unwrap() > 0 && t["total_out"].as_i64().unwrap() > 0,
        "{bw}"
    );
    let out = run(vec![
        "--host".into(),
        format!("/ip4/127.0.0.1/tcp/{}", p.ports.rest),
        "--basic-auth".into(),
        "alice:s3cret".into(),
        "--force-http".into(),
        "health".into(),
        "bandwidth".into(),
    ])
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("             /libp2p-http: In: ")),
        "{out:?}"
    );

    // The REST API's own libp2p host: a second identity from a scratch `init`. Unlike
    // upstream it is a private network keyed by the cluster secret: without it (or with
    // another one) nothing connects; with it, the REST API's credentials apply.
    daemon.terminate(Duration::from_secs(20));
    let scratch = tmp.path().join("scratch");
    let (code, _, err) = run_bin(
        "ipfs-cluster-service",
        &["--config", scratch.to_str().unwrap(), "init"],
        &[],
    )
    .unwrap();
    assert_eq!(code, 0, "{err}");
    let ident: Value =
        serde_json::from_str(&std::fs::read_to_string(scratch.join("identity.json")).unwrap())
            .unwrap();
    let api_id = ident["id"].as_str().unwrap();
    let port = free_port();
    set_restapi_libp2p(
        &p.dir,
        &format!("/ip4/127.0.0.1/tcp/{port}"),
        api_id,
        ident["private_key"].as_str().unwrap(),
    );
    let _daemon = p.start_until(&[], "/health", 204).await.unwrap();
    let own = |secret: &str| {
        let mut v = vec![
            "--host".to_string(),
            format!("/ip4/127.0.0.1/tcp/{port}/p2p/{api_id}"),
            "--basic-auth".into(),
            "alice:s3cret".into(),
            "--force-http".into(),
        ];
        if !secret.is_empty() {
            v.extend(["--secret".to_string(), secret.to_string()]);
        }
        v.push("id".into());
        v
    };
    let out = run(own(&secret)).await;
    assert_eq!(out.code, 0, "{out:?}\n{}", p.log_tail());
    assert_eq!(out.stdout, over_http.stdout);
    for bad in ["a1".repeat(32), String::new()] {
        let out = run(own(&bad)).await;
        assert_eq!(
            out.code, 1,
            "the own host without the right secret: {out:?}"
        );
    }
    // The access log names the libp2p peer (ctl's own id), not an address.
    let log = std::fs::read_to_string(p.dir.join("daemon.log")).unwrap_or_default();
    assert!(
        log.lines()
            .any(|l| l.contains("restapilog: 12D3KooW") && l.contains(" - alice [")),
        "no access log line naming a peer id:\n{}",
        p.log_tail()
    );
}
