//! `ipfs-cluster-follow`: the binary as users run it.
//!
//! * `follow_cli_says_what_upstream_says`: help texts, the first-start and
//!   not-initialized messages, missing-URL and usage errors, compared with upstream's
//!   v1.1.6 binary run the same way (each in its own empty HOME).
//! * `followers_pin_what_the_trusted_peers_write`: two trusted crdt peers of ours and two
//!   followers made by `ipfs-cluster-follow <name> init <template>` (one template a local
//!   file, the other an /ipfs/ path fetched through the follower's Kubo gateway; a third
//!   init from an http URL is checked too) and
//!   `run`; with replication -1 both followers pin every pin on their own Kubo node,
//!   `list` shows them `pinned`, `info` says the peer and IPFS are online, a write
//!   through a follower's REST API is refused, and a stopped follower's `list` reads
//!   its pinset from disk (`offline`).

use std::{path::Path, process::Command, time::Duration};

use ipfs_cluster_tests::*;
use serde_json::Value;

fn upstream_follow() -> Option<std::path::PathBuf> {
    let out = Command::new(repo_root().join("deploy/local/upstream.sh"))
        .arg("path")
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    let bin = std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        .join("ipfs-cluster-follow");
    (out.status.success() && bin.exists()).then_some(bin)
}

/// Runs `bin args` with HOME=`home` (no IPFS_CLUSTER_PATH); (code, stdout, stderr) with
/// `home` replaced by `$HOME`.
fn run_in(bin: &Path, home: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin)
        .args(args)
        .env("HOME", home)
        .env_remove("IPFS_CLUSTER_PATH")
        .env_remove("IPFS_GATEWAY")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let h = home.display().to_string();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).replace(&h, "$HOME"),
        String::from_utf8_lossy(&out.stderr).replace(&h, "$HOME"),
    )
}

#[test]
fn follow_cli_says_what_upstream_says() {
    let Some(up) = upstream_follow() else {
        skip(
            "follow_cli_says_what_upstream_says",
            "upstream's ipfs-cluster-follow is not installed: run `make upstream`",
        );
        return;
    };
    let ours = bin("ipfs-cluster-follow");
    let tmp = tempfile::tempdir().unwrap();
    let cases: &[&[&str]] = &[
        &["--help"],
        &["-h"],
        &["help"],
        &["--version"],
        &[],
        &["c1", "--help"],
        &["c1", "help"],
        &["c1", "info", "--help"],
        &["c1", "init", "--help"],
        &["c1", "run", "--help"],
        &["c1", "list", "--help"],
        &["c1"],
        &["c1", "info"],
        &["c1", "init"],
        &["c1", "run"],
        &["c1", "list"],
        &["c1", "whatever"],
        &["--bogus"],
        &["c1", "info", "--bogus"],
        &["c1", "run", "--init"],
        &["--config"],
        &["c1", "--bogus"],
        &["c1", "init", "--gateway"],
        &["c1", "list", "--bogus"],
    ];
    let mut usage_errors = 0;
    for (n, args) in cases.iter().enumerate() {
        let (uh, oh) = (
            tmp.path().join(format!("u{n}")),
            tmp.path().join(format!("o{n}")),
        );
        std::fs::create_dir_all(&uh).unwrap();
        std::fs::create_dir_all(&oh).unwrap();
        let u = run_in(&up, &uh, args);
        let o = run_in(&ours, &oh, args);
        assert_eq!(
            (&o.1, &o.2),
            (&u.1, &u.2),
            "ipfs-cluster-follow {args:?}: ours (stdout, stderr) vs upstream's"
        );
        // Usage mistakes included: upstream exits 0 after `Incorrect Usage: ...`.
        assert_eq!(o.0, u.0, "ipfs-cluster-follow {args:?}: exit code");
        if u.1.starts_with("Incorrect Usage:") {
            usage_errors += 1;
            assert_eq!(o.0, 0, "{args:?}: upstream exits 0 after a usage mistake");
        }
    }
    assert!(
        usage_errors >= 5,
        "only {usage_errors} cases were usage mistakes for upstream"
    );
    // A second init of the same name is refused with upstream's words.
    let tpl = tmp.path().join("template.json");
    std::fs::write(&tpl, "{}").unwrap();
    let (uh, oh) = (tmp.path().join("ur"), tmp.path().join("or"));
    for h in [&uh, &oh] {
        std::fs::create_dir_all(h.join(".ipfs-cluster-follow/c2")).unwrap();
    }
    let u = run_in(&up, &uh, &["c2", "init", tpl.to_str().unwrap()]);
    let o = run_in(&ours, &oh, &["c2", "init", tpl.to_str().unwrap()]);
    assert_eq!((o.0, &o.1, &o.2), (u.0, &u.1, &u.2), "init over a folder");

    // A source that does not answer: init succeeds as upstream's (ours notes that `run`
    // fetches it, on stderr), then info says so in upstream's words.
    let dead = format!("http://127.0.0.1:{}/service.json", free_port());
    let u = run_in(&up, &uh, &["c3", "init", &dead]);
    let o = run_in(&ours, &oh, &["c3", "init", &dead]);
    assert_eq!(
        (o.0, &o.1),
        (u.0, &u.1),
        "init from a source that does not answer"
    );
    assert!(o.2.contains("fetches it at every start"), "{}", o.2);
    let u = run_in(&up, &uh, &["c3", "info"]);
    let o = run_in(&ours, &oh, &["c3", "info"]);
    assert_eq!(
        (o.0, &o.1),
        (u.0, &u.1),
        "info with a source that does not answer"
    );
    let u = run_in(&up, &uh, &[]);
    let o = run_in(&ours, &oh, &[]);
    assert_eq!(
        (o.0, &o.1, &o.2),
        (u.0, &u.1, &u.2),
        "the list of followed clusters"
    );
}

fn follow(base: &Path, args: &[&str], env: &[(&str, String)]) -> (i32, String, String) {
    let mut cmd = Command::new(bin("ipfs-cluster-follow"));
    cmd.arg("--config").arg(base).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.stdin(std::process::Stdio::null()).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One request to a follower's REST API where its service.json puts it: its unix socket
/// (`/unix/<folder>/api-socket`, as upstream's follower) or TCP. None when it does not
/// answer.
async fn follower_request(dir: &Path, method: &str, uri: &str) -> Option<(u16, String)> {
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("service.json")).ok()?).ok()?;
    let l = &v["api"]["restapi"]["http_listen_multiaddress"];
    let a = l.as_str().or_else(|| l[0].as_str())?.to_string();
    let Some(path) = a.strip_prefix("/unix") else {
        let port = a.rsplit('/').next()?;
        return http(method, &format!("http://127.0.0.1:{port}{uri}"), None)
            .await
            .ok();
    };
    let stream = tokio::net::UnixStream::connect(path).await.ok()?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .ok()?;
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "localhost")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .ok()?;
    let resp = tokio::time::timeout(Duration::from_secs(60), send.send_request(req))
        .await
        .ok()?
        .ok()?;
    let status = resp.status().as_u16();
    use http_body_util::BodyExt;
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

struct Follower {
    base: std::path::PathBuf,
    ipfs: IpfsNode,
    proc: Option<Proc>,
    log: std::path::PathBuf,
}

impl Follower {
    fn dir(&self) -> std::path::PathBuf {
        self.base.join("testcluster")
    }

    fn env(&self, swarm: u16) -> Vec<(&'static str, String)> {
        vec![
            (
                "CLUSTER_LISTENMULTIADDRESS",
                format!("/ip4/127.0.0.1/tcp/{swarm}"),
            ),
            ("CLUSTER_IPFSHTTP_NODEMULTIADDRESS", self.ipfs.multiaddr()),
            ("RUST_LOG", peer_log_filter()),
        ]
    }

    fn start(&mut self, swarm: u16) {
        let log = std::fs::File::create(&self.log).unwrap();
        let mut cmd = Command::new(bin("ipfs-cluster-follow"));
        cmd.arg("--config")
            .arg(&self.base)
            .args(["testcluster", "run"])
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in self.env(swarm) {
            cmd.env(k, v);
        }
        self.proc = Some(Proc::spawn("ipfs-cluster-follow", &mut cmd).unwrap());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

#[test]
fn followers_pin_what_the_trusted_peers_write() {
    one_at_a_time(async {
        let c = Cluster::start_crdt(2, |_, ids| Some(vec![ids[0].clone(), ids[1].clone()]))
            .await
            .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        // The template the trusted peers publish: peer 0's service.json naming both
        // trusted peers' addresses.
        let mut tpl: Value = serde_json::from_str(
            &std::fs::read_to_string(c.peers[0].dir.join("service.json")).unwrap(),
        )
        .unwrap();
        tpl["cluster"]["peer_addresses"] = Value::Array(
            (0..2)
                .map(|i| Value::String(c.peers[i].swarm_addr(&c.ids[i])))
                .collect(),
        );
        let tpl_text = serde_json::to_string_pretty(&tpl).unwrap();
        let tpl_file = tmp.path().join("template.json");
        std::fs::write(&tpl_file, &tpl_text).unwrap();

        let mut followers = Vec::new();
        for f in 0..2 {
            let mut ipfs = IpfsNode::start(&tmp.path().join(format!("ipfs_f{f}")))
                .await
                .unwrap();
            if f == 1 {
                // The second template comes from IPFS, through this node's gateway.
                let gw = free_port();
                ipfs.set_config("Addresses.Gateway", &format!("\"/ip4/127.0.0.1/tcp/{gw}\""))
                    .await
                    .unwrap();
                let cid = ipfs.add(tpl_text.as_bytes()).await.unwrap();
                let base = tmp.path().join(format!("follow_{f}"));
                let (rc, out, err) = follow(
                    &base,
                    &["testcluster", "init", &format!("/ipfs/{cid}")],
                    &[("IPFS_GATEWAY", format!("127.0.0.1:{gw}"))],
                );
                assert_eq!(rc, 0, "init from /ipfs/{cid}: {out}{err}");
                assert!(
                    out.contains(&format!("/ipfs/{cid} will be fetched using the local IPFS daemon's gateway (127.0.0.1:{gw})")),
                    "{out}"
                );
                followers.push((base, ipfs));
            } else {
                let base = tmp.path().join(format!("follow_{f}"));
                let (rc, out, err) = follow(
                    &base,
                    &["testcluster", "init", tpl_file.to_str().unwrap()],
                    &[],
                );
                assert_eq!(rc, 0, "init from a file: {out}{err}");
                let dir = base.join("testcluster");
                assert_eq!(
                    out,
                    format!(
                        "Identity written to {0}/identity.json.\nConfiguration written to {0}/service.json.\nCluster \"testcluster\" follower peer initialized.\n\nYou can now use \"ipfs-cluster-follow testcluster run\" to start a follower peer for this cluster.\n(Remember to start your IPFS daemon before)\n",
                        dir.display()
                    )
                );
                followers.push((base, ipfs));
            }
        }
        let mut fs: Vec<Follower> = followers
            .into_iter()
            .enumerate()
            .map(|(i, (base, ipfs))| Follower {
                log: tmp.path().join(format!("follow_{i}.log")),
                base,
                ipfs,
                proc: None,
            })
            .collect();
        for f in &fs {
            f.ipfs.connect(&c.ipfs).await.unwrap();
        }
        // A template from an http URL: fetched at init, `info` says it is available.
        let port = serve_json(tpl_text.clone()).await;
        let url = format!("http://127.0.0.1:{port}/service.json");
        let by_url = tmp.path().join("follow_url");
        let (rc, out, err) = follow(&by_url, &["viaurl", "init", &url], &[]);
        assert_eq!(rc, 0, "init from {url}: {out}{err}");
        let written: Value = serde_json::from_str(
            &std::fs::read_to_string(by_url.join("viaurl/service.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(written["source"], url.as_str());
        assert_eq!(written["cluster"]["follower_mode"], true, "{written}");
        let (rc, out, err) = follow(&by_url, &["viaurl", "info"], &[]);
        assert_eq!(rc, 0, "{err}");
        assert!(
            out.contains(&format!("Config source URL: Available ({url})"))
                && out.contains("Cluster Peer online: false"),
            "{out}"
        );

        // Listed by name.
        let (rc, out, _) = follow(&fs[0].base, &[], &[]);
        assert_eq!(rc, 0);
        assert!(out.contains("ipfs-cluster-follow \"testcluster\""), "{out}");

        // One pin before the followers start, one after.
        let before = c.ipfs.add(b"follower content before").await.unwrap();
        let (st, body) = http(
            "POST",
            &format!("{}/pins/{before}?name=first", c.rest(0)),
            None,
        )
        .await
        .unwrap();
        assert_eq!(st, 200, "{body}");
        let swarm: Vec<u16> = (0..2).map(|_| free_port()).collect();
        for (i, f) in fs.iter_mut().enumerate() {
            f.start(swarm[i]);
        }
        for f in &fs {
            let dir = f.dir();
            wait_for(Duration::from_secs(120), || async {
                matches!(follower_request(&dir, "GET", "/id").await, Some((200, _)))
            })
            .await
            .unwrap_or_else(|_| panic!("follower did not start:\n{}", f.log()));
        }
        let after = c.ipfs.add(b"follower content after").await.unwrap();
        let (st, body) = http("POST", &format!("{}/pins/{after}", c.rest(1)), None)
            .await
            .unwrap();
        assert_eq!(st, 200, "{body}");

        for f in &fs {
            for cid in [&before, &after] {
                wait_for(Duration::from_secs(90), || async {
                    f.ipfs.pins().await.unwrap_or_default().contains(cid)
                })
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "{cid} not pinned on a follower's Kubo node\n{}\n{}",
                        f.log(),
                        c.logs()
                    )
                });
            }
            let base = f.base.clone();
            wait_for(Duration::from_secs(60), || {
                let base = base.clone();
                let (before, after) = (before.clone(), after.clone());
                async move {
                    let (rc, out, _) = follow(&base, &["testcluster", "list"], &[]);
                    rc == 0
                        && out
                            .lines()
                            .any(|l| l == format!("{:<20} {before} first", "pinned"))
                        && out
                            .lines()
                            .any(|l| l.starts_with("pinned ") && l.contains(&after))
                }
            })
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "list does not show both pins pinned: {:?}",
                    follow(&f.base, &["testcluster", "list"], &[])
                )
            });
            let (rc, out, err) = follow(&f.base, &["testcluster", "info"], &f.env(0));
            assert_eq!(rc, 0, "{err}");
            assert!(
                out.contains("Cluster Peer online: true\nIPFS peer online: true"),
                "{out}"
            );
            // A write from the follower is refused.
            assert!(
                f.dir().join("api-socket").exists(),
                "upstream's REST socket"
            );
            let (st, body) = follower_request(&f.dir(), "POST", &format!("/pins/{}", random_cid()))
                .await
                .unwrap();
            assert!(
                st >= 400
                    && body.contains(
                        "this peer is configured to be in follower mode. Write operations are disabled"
                    ),
                "{st} {body}"
            );
        }
        // The trusted peers' pinset: the two pins, nothing else.
        for i in 0..2 {
            let s = c.state(i).await.unwrap();
            assert_eq!(s.len(), 2, "{s:?}");
        }

        // A stopped follower lists its pinset from disk.
        let mut p = fs[0].proc.take().unwrap();
        assert!(
            p.terminate(Duration::from_secs(30)).is_some(),
            "{}",
            fs[0].log()
        );
        let (rc, out, err) = follow(&fs[0].base, &["testcluster", "list"], &[]);
        assert_eq!(rc, 0, "{err}");
        assert!(
            out.lines()
                .any(|l| l == format!("{:<20} {before} first", "offline")),
            "{out}"
        );
        assert!(out.contains(&after), "{out}");
    });
}

/// Pins (cid -> pinned?) a follower's REST API reports for itself, or None when it does
/// not answer.
async fn local_statuses(dir: &Path) -> Option<std::collections::BTreeMap<String, bool>> {
    let (st, body) = follower_request(dir, "GET", "/pins?local=true").await?;
    if st == 204 {
        return Some(Default::default());
    }
    if st != 200 {
        return None;
    }
    let mut out = std::collections::BTreeMap::new();
    for v in serde_json::Deserializer::from_str(&body).into_iter::<Value>() {
        let v = v.ok()?;
        let items = match v {
            Value::Array(a) => a,
            v => vec![v],
        };
        for g in items {
            let pinned = g["peer_map"]
                .as_object()
                .and_then(|m| m.values().next())
                .is_some_and(|i| i["status"] == "pinned");
            out.insert(g["cid"].as_str()?.to_string(), pinned);
        }
    }
    Some(out)
}

/// The last `max` bytes of `s` (at a char boundary).
fn tail(s: &str, max: usize) -> &str {
    let mut i = s.len().saturating_sub(max);
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

/// Scale (not in `make test`; run with `cargo test -p ipfs-cluster-tests --test follow
/// -- --ignored many_followers --nocapture`, `FOLLOWERS=N` (default 10) and `PINS=M`
/// (default 100)): 3 trusted crdt peers, N `ipfs-cluster-follow` followers sharing one
/// Kubo node. Once every follower runs, M pins of real content are made through the
/// trusted peers; prints how long until every follower holds the whole pinset, and until
/// every follower reports every pin `pinned`. The figures are in docs/benchmarks.md.
/// Every 30 s it prints where each follower that is not done stands; `FOLLOWER_LOG` sets
/// the followers' RUST_LOG and `FOLLOWER_LOG_DIR` keeps their logs (and, on failure, the
/// trusted peers').
#[test]
#[ignore]
fn many_followers_reach_the_full_pinset() {
    let n: usize = std::env::var("FOLLOWERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let pins: usize = std::env::var("PINS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    one_at_a_time(async move {
        let c = Cluster::start_crdt(3, |_, ids| Some(ids.to_vec()))
            .await
            .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let mut tpl: Value = serde_json::from_str(
            &std::fs::read_to_string(c.peers[0].dir.join("service.json")).unwrap(),
        )
        .unwrap();
        tpl["cluster"]["peer_addresses"] = Value::Array(
            (0..3)
                .map(|i| Value::String(c.peers[i].swarm_addr(&c.ids[i])))
                .collect(),
        );
        let tpl_file = tmp.path().join("template.json");
        std::fs::write(&tpl_file, serde_json::to_string_pretty(&tpl).unwrap()).unwrap();
        let shared = IpfsNode::start(&tmp.path().join("ipfs_followers"))
            .await
            .unwrap();
        shared.connect(&c.ipfs).await.unwrap();

        // FOLLOWER_LOG (default "warn") is the followers' RUST_LOG; FOLLOWER_LOG_DIR keeps
        // their logs after the test (default: the test's temporary folder).
        let log_filter = std::env::var("FOLLOWER_LOG").unwrap_or_else(|_| "warn".into());
        let log_dir = std::env::var("FOLLOWER_LOG_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|_| tmp.path().to_path_buf());
        std::fs::create_dir_all(&log_dir).unwrap();
        let mut fs = Vec::new();
        for f in 0..n {
            let base = tmp.path().join(format!("follow_{f}"));
            let (rc, out, err) = follow(
                &base,
                &["testcluster", "init", tpl_file.to_str().unwrap()],
                &[],
            );
            assert_eq!(rc, 0, "init: {out}{err}");
            let log = log_dir.join(format!("follow_{f}.log"));
            let logf = std::fs::File::create(&log).unwrap();
            let mut cmd = Command::new(bin("ipfs-cluster-follow"));
            cmd.arg("--config")
                .arg(&base)
                .args(["testcluster", "run"])
                .env(
                    "CLUSTER_LISTENMULTIADDRESS",
                    format!("/ip4/127.0.0.1/tcp/{}", free_port()),
                )
                .env("CLUSTER_IPFSHTTP_NODEMULTIADDRESS", shared.multiaddr())
                .env("RUST_LOG", &log_filter)
                .stdin(std::process::Stdio::null())
                .stdout(logf.try_clone().unwrap())
                .stderr(logf);
            let proc = Proc::spawn("ipfs-cluster-follow", &mut cmd).unwrap();
            fs.push((base.join("testcluster"), proc, log));
        }

        let t0 = std::time::Instant::now();
        for (dir, _, log) in &fs {
            wait_for(Duration::from_secs(600), || async {
                matches!(follower_request(dir, "GET", "/id").await, Some((200, _)))
            })
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "a follower did not start:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                )
            });
        }
        let startup = t0.elapsed();

        // The pinset, written once every follower runs.
        let files: Vec<Vec<u8>> = (0..pins)
            .map(|i| format!("many followers {i} {:?}", std::time::SystemTime::now()).into_bytes())
            .collect();
        let cids = c.ipfs.add_many(&files, false).await.unwrap();
        let started = std::time::Instant::now();
        // 32 writes in flight, spread over the trusted peers (as the ingest benchmark).
        use futures::StreamExt;
        let urls: Vec<String> = cids
            .iter()
            .enumerate()
            .map(|(k, cid)| format!("{}/pins/{cid}", c.rest(k % 3)))
            .collect();
        let mut writes = futures::stream::iter(urls)
            .map(|url| async move { http("POST", &url, None).await })
            .buffer_unordered(32);
        while let Some(res) = writes.next().await {
            let (st, body) = res.unwrap();
            assert_eq!(st, 200, "{body}");
        }
        drop(writes);
        let written = started.elapsed();
        let all: std::collections::BTreeSet<String> = cids.iter().cloned().collect();

        let mut synced_at = vec![None; n];
        let mut pinned_at = vec![None; n];
        // What each follower last answered (for the failure message): pins held and
        // pinned, or that its API did not answer.
        let mut last_seen = vec![String::from("no answer yet"); n];
        let limit = 900 + pins as u64 / 10;
        let deadline = std::time::Instant::now() + Duration::from_secs(limit);
        let mut last_report = std::time::Instant::now();
        while pinned_at.iter().any(Option::is_none) {
            if std::time::Instant::now() >= deadline
                && std::env::var_os("FOLLOWER_LOG_DIR").is_some()
            {
                for (i, p) in c.peers.iter().enumerate() {
                    let _ = std::fs::copy(
                        p.dir.join("daemon.log"),
                        log_dir.join(format!("trusted_{i}.log")),
                    );
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not every follower got the pinset within {limit} s: synced {synced_at:?} pinned {pinned_at:?}\nlast seen (of {pins} pins): {last_seen:?}\n{}",
                // The logs of the followers that are not done (the others are noise).
                fs.iter()
                    .zip(&pinned_at)
                    .filter(|(_, done)| done.is_none())
                    .map(|((_, _, l), _)| format!(
                        "{}:\n{}",
                        l.display(),
                        tail(&std::fs::read_to_string(l).unwrap_or_default(), 4000)
                    ))
                    .collect::<Vec<_>>()
                    .join("\n---\n")
            );
            for (i, (dir, _, _)) in fs.iter().enumerate() {
                if pinned_at[i].is_some() {
                    continue;
                }
                let Some(s) = local_statuses(dir).await else {
                    last_seen[i] = "its REST API did not answer GET /pins?local=true".into();
                    continue;
                };
                let held: std::collections::BTreeSet<String> = s.keys().cloned().collect();
                // The pinset in its consensus store (GET /allocations) tells a follower
                // whose crdt store is behind from one whose pin tracker is.
                let in_state = match follower_request(dir, "GET", "/allocations").await {
                    Some((200, body)) => serde_json::Deserializer::from_str(&body)
                        .into_iter::<Value>()
                        .filter_map(|v| v.ok())
                        .flat_map(|v| match v {
                            Value::Array(a) => a,
                            v => vec![v],
                        })
                        .filter(|p| p["cid"].as_str().is_some_and(|c| all.contains(c)))
                        .count()
                        .to_string(),
                    Some((204, _)) => "0".into(),
                    _ => "?".into(),
                };
                last_seen[i] = format!(
                    "{in_state} in its state, {} held, {} pinned",
                    held.intersection(&all).count(),
                    s.values().filter(|p| **p).count()
                );
                if synced_at[i].is_none() && held == all {
                    synced_at[i] = Some(started.elapsed());
                }
                if held == all && s.values().all(|p| *p) {
                    pinned_at[i] = Some(started.elapsed());
                }
            }
            // Progress (seen with --nocapture): who is not done yet, and where it stands.
            if last_report.elapsed() >= Duration::from_secs(30) {
                last_report = std::time::Instant::now();
                let behind: Vec<String> = (0..n)
                    .filter(|&i| pinned_at[i].is_none())
                    .map(|i| format!("follower {i}: {}", last_seen[i]))
                    .collect();
                println!(
                    "{:.0}s after the first pin: {} of {n} followers done; {}",
                    started.elapsed().as_secs_f64(),
                    n - behind.len(),
                    behind.join("; ")
                );
            }
            // Each poll lists every follower's whole pinset: poll less often when it is big.
            tokio::time::sleep(Duration::from_millis(500 + pins as u64 / 10)).await;
        }
        let max = |v: &[Option<Duration>]| v.iter().flatten().max().copied().unwrap_or_default();
        println!(
            "FOLLOWERS={n} PINS={pins}: followers up in {:.1}s; pins written in {:.1}s; every follower held the pinset after {:.1}s and reported every pin pinned after {:.1}s (from the first pin; {:.1}s and {:.1}s after the last)",
            startup.as_secs_f64(),
            written.as_secs_f64(),
            max(&synced_at).as_secs_f64(),
            max(&pinned_at).as_secs_f64(),
            max(&synced_at).saturating_sub(written).as_secs_f64(),
            max(&pinned_at).saturating_sub(written).as_secs_f64(),
        );
        // The trusted peers' pinset is what they wrote.
        for i in 0..3 {
            assert_eq!(c.state(i).await.unwrap().len(), pins);
        }
    });
}
