//! A module of tests/compat.rs (not a test target of its own): the ctl's edges, judged by
//! upstream. What a REST API with Basic Auth answers to no, wrong and right credentials,
//! what each ctl prints when nothing listens or its global options are bad, `--host`
//! fail-over to the next address, and the REST API reached over the cluster host's
//! `/libp2p-http` with the secret. These were hand-written expectations in a golden test
//! before; here upstream's binaries give the answer.
//!
//! One peer per implementation (its own Kubo node), each with
//! `api.restapi.basic_auth_credentials = {"alice": "s3cret"}`:
//! - (a) upstream's ctl against our API vs against upstream's;
//! - (b) our ctl against upstream's API vs upstream's ctl there;
//! - (c) our ctl vs upstream's ctl with no server at all (a closed port, bad options).

use super::*;

const USER: &str = "alice:s3cret";

/// One peer of `which` with Basic Auth on its REST API.
async fn auth_side(t: &Tools, which: Impl, root: &Path) -> Result<Side> {
    let base = root.join(format!("edges-{}", which.label()));
    let ipfs_dir = base.join("ipfs");
    std::fs::create_dir_all(&ipfs_dir)?;
    let kubo = KuboNode::start(&ipfs_dir).await?;
    let dir = base.join("peer");
    let ports = PeerPorts::pick();
    init_peer(t, which, &dir, &ports, &kubo.multiaddr())?;
    edit_json(&dir.join("service.json"), |v| {
        v["cluster"]["peername"] = Value::String("peer_0".into());
        v["api"]["restapi"]["basic_auth_credentials"] = serde_json::json!({"alice": "s3cret"});
    })?;
    let peer = Peer {
        id: identity_id(&dir)?,
        dir,
        ports,
        ipfs_id: kubo.id.clone(),
    };
    let proc = spawn_daemon(t, which, &peer, &[]).await?;
    Ok(Side {
        which,
        peers: vec![peer],
        procs: vec![Some(proc)],
        _kubos: vec![kubo],
    })
}

/// Runs `program` with exactly `args` (no `--host` added), in `cwd` with `stdin` fed,
/// and normalises for one side.
async fn run_raw(program: PathBuf, args: Vec<String>, norm: &Norm, io: &Io) -> Out {
    let (stdin, cwd) = (io.stdin.clone(), io.cwd.clone());
    let o = tokio::task::spawn_blocking(move || {
        run_blocking_fed(&program, &args, Some(&cwd), stdin.as_deref())
    })
    .await
    .unwrap();
    normalise_out(norm, &o, false)
}

/// (a): upstream's ctl against our API vs against upstream's, `args` filled per side.
/// Returns upstream's output there, for (b).
async fn upstream_ctl_on_both(
    t: &Tools,
    r: &mut Report,
    sides: (&Side, &Side),
    c: &Case,
    args: impl Fn(&Side) -> Vec<String>,
    norm: impl Fn(&Side) -> Norm,
    io: &Io,
) -> Out {
    let (ours, up) = sides;
    let o_up = run_raw(t.ctl(Impl::Upstream), args(up), &norm(up), io).await;
    let o_ours = run_raw(t.ctl(Impl::Upstream), args(ours), &norm(ours), io).await;
    r.count("ctl edge cases, upstream ctl against both APIs");
    r.cov.note(&c.args);
    compare_outs(
        r,
        &format!("ctl[upstream→api] {}", c.args.join(" ")),
        &o_ours,
        &o_up,
    );
    o_up
}

/// Where a ctl runs and what it reads on stdin.
struct Io {
    cwd: PathBuf,
    stdin: Option<Vec<u8>>,
}

/// `--host` of a side's REST API, or of its cluster host over libp2p.
fn rest_host(s: &Side) -> String {
    format!("/ip4/127.0.0.1/tcp/{}", s.peers[0].ports.rest)
}

fn p2p_host(s: &Side) -> String {
    format!(
        "/ip4/127.0.0.1/tcp/{}/p2p/{}",
        s.peers[0].ports.swarm, s.peers[0].id
    )
}

/// `{host}` and `{p2p}` in a case filled for one side.
fn fill(c: &Case, s: &Side) -> Vec<String> {
    c.args
        .iter()
        .map(|a| {
            a.replace("{host}", &rest_host(s))
                .replace("{p2p}", &p2p_host(s))
        })
        .collect()
}

/// `fill`, then the CIDs of the pin cases.
fn fill_cids(c: &Case, s: &Side, cids: &[String]) -> Vec<String> {
    Vars { side: s, cids }.fill(&fill(c, s))
}

pub(super) async fn edge_checks(t: &Tools, root: &Path, r: &mut Report) {
    let (ours, up) = tokio::join!(
        auth_side(t, Impl::Ours, root),
        auth_side(t, Impl::Upstream, root)
    );
    let (ours, up) = (
        ours.expect("our auth peer"),
        up.expect("upstream's auth peer"),
    );
    let (n_ours, n_up) = (Norm::of(&ours), Norm::of(&up));
    let closed = free_port();
    let closed_host = format!("/ip4/127.0.0.1/tcp/{closed}");
    let secret = TEST_SECRET.to_string();
    let wrong_secret = "a1".repeat(32);

    // Against a REST API with Basic Auth (and the cluster host over libp2p-http): (a) and
    // (b). The closed port leads a `--host` list to show the fail-over.
    let files = root.join("edges-files");
    std::fs::create_dir_all(files.join("d/sub")).expect("edges files");
    std::fs::write(files.join("f1"), b"hello\n").expect("edges files");
    std::fs::write(files.join("d/a"), b"file a\n").expect("edges files");
    std::fs::write(files.join("d/sub/b"), b"file b\n").expect("edges files");
    let io = Io {
        cwd: files.clone(),
        stdin: None,
    };
    let with_server = [
        case("--host {host} id"),
        case("--host {host} --https id"),
        case("--host {host} --https --no-check-certificate id"),
        case("--host {host} --enc json id"),
        case("--host {host} --force-http --basic-auth alice:wrong id"),
        case("--host {host} --basic-auth alice:s3cret id"),
        case("--host {host} --force-http --basic-auth alice:s3cret version"),
        case("--host {host} --force-http --basic-auth alice:s3cret --enc json peers ls"),
        case("--host {host} --force-http --basic-auth alice:s3cret peers rm notapeer"),
        case("--host {host} --force-http --basic-auth alice:s3cret pin ls"),
        case("--host {host} --force-http --basic-auth alice id"),
        case(&format!(
            "--host {closed_host},{{host}} --force-http --basic-auth alice:s3cret version"
        )),
        case(&format!(
            "--host {{p2p}} --secret {secret} --force-http --basic-auth {USER} id"
        )),
        case(&format!("--host {{p2p}} --secret {secret} id")),
    ];
    // Adding with credentials: from stdin, quiet forms, JSON without streaming.
    let auth = "--host {host} --force-http --basic-auth alice:s3cret";
    let adds = [
        (case(&format!("{auth} add -")), Some(&b"from stdin\n"[..])),
        (case(&format!("{auth} add --quiet -r d")), None),
        (case(&format!("{auth} add --quieter -r d")), None),
        (case(&format!("{auth} add --no-stream -r d")), None),
        (
            case(&format!("{auth} --enc json add --no-stream --quieter -r d")),
            None,
        ),
        (case(&format!("{auth} --enc json add f1")), None),
        (case(&format!("{auth} add d")), None),
    ];
    // Both allocators need their peer's freespace metric before the first add (upstream
    // answers 500 "failed to put block on all destinations" without it).
    let metric = case(&format!("{auth} --enc json health metrics freespace"));
    for side in [&ours, &up] {
        let ok = wait_for(Duration::from_secs(60), || async {
            let o = run_raw(
                t.ctl(Impl::Upstream),
                fill(&metric, side),
                &Norm::default(),
                &io,
            )
            .await;
            o.stdout.contains("\"peer\"")
        })
        .await;
        assert!(ok.is_ok(), "{}: no freespace metric", side.which.label());
    }
    let cases = with_server
        .iter()
        .map(|c| (c.clone(), None))
        .chain(adds.iter().cloned());
    for (c, stdin) in cases {
        let io = Io {
            cwd: io.cwd.clone(),
            stdin: stdin.map(<[u8]>::to_vec),
        };
        let c = &c;
        let o_up = upstream_ctl_on_both(t, r, (&ours, &up), c, |s| fill(c, s), Norm::of, &io).await;
        // (b) our ctl against upstream's.
        let b_ours = run_raw(t.ctl(Impl::Ours), fill(c, &up), &Norm::of(&up), &io).await;
        r.count("ctl edge cases, our ctl against upstream's API");
        compare_outs(
            r,
            &format!("ctl[ctl→upstream] {}", c.args.join(" ")),
            &b_ours,
            &o_up,
        );
    }

    // Pins with credentials: waits that time out, filters, local status, update, unpin.
    // Same CIDs on both sides: identity CIDs IPFS pins at once, and `{cid3}` that no IPFS
    // node has (only its hash was computed), so pinning it never finishes.
    let mut cids: Vec<String> = (0..3).map(|_| random_cid()).collect();
    let nobody_has = ours._kubos[0]
        .add_many(&[content(99, 2000)], true)
        .await
        .expect("only-hash add");
    cids.extend(nobody_has);
    let pins = [
        case(&format!("{auth} pin add --wait {{cid0}}")),
        case(&format!("{auth} pin add --wait --wait-timeout 2s {{cid3}}")),
        case(&format!("{auth} status --filter error,queued")),
        case(&format!("{auth} status --local {{cid0}}")),
        case(&format!("{auth} pin update --wait {{cid0}} {{cid1}}")),
        case(&format!("{auth} pin rm {{cid1}}")),
        case(&format!("{auth} pin rm --no-status {{cid3}}")),
        case(&format!("{auth} health alerts")),
    ];
    for c in &pins {
        upstream_ctl_on_both(
            t,
            r,
            (&ours, &up),
            c,
            |s| fill_cids(c, s, &cids),
            |s| Norm::of(s).with_cids(&cids),
            &io,
        )
        .await;
    }

    // The REST API itself without credentials, and with a token route it does not have
    // credentials for: status and body compared.
    for (method, path) in [
        ("GET", "/id".to_string()),
        ("GET", "/pins".to_string()),
        ("POST", format!("/pins/{}", cids[2])),
        ("DELETE", format!("/pins/{}", cids[0])),
        ("POST", "/token".to_string()),
        ("GET", "/health".to_string()),
    ] {
        let call = |s: &Side| format!("{}{path}", s.peers[0].rest());
        let (st_up, body_up) = rest_call(&call(&up), method, None).await;
        let (st_ours, body_ours) = rest_call(&call(&ours), method, None).await;
        r.count("rest requests without credentials");
        let key = format!("rest {method} {path} without credentials");
        r.differ(
            format!("{key} | status"),
            &st_ours.to_string(),
            &st_up.to_string(),
        );
        r.differ_text(
            format!("{key} | body"),
            &n_ours.with_cids(&cids).text(&body_ours),
            &n_up.with_cids(&cids).text(&body_up),
        );
    }

    // No server, or options refused before any request: (c).
    let no_server = [
        case("--version"),
        case(&format!("--host {closed_host} id")),
        case(&format!("--host {closed_host} --enc json version")),
        case(&format!("--host {closed_host} --enc xml id")),
        case("--host foo id"),
        case("--host /ip4/127.0.0.1/tcp/notaport id"),
        case(&format!("--host {closed_host} --secret zz id")),
        case(&format!(
            "--host {closed_host} --basic-auth alice:s3cret id"
        )),
        case(&format!("--host {closed_host} --timeout bogus id")),
    ];
    let none = Norm::default();
    for c in &no_server {
        let o_up = run_raw(t.ctl(Impl::Upstream), c.args.clone(), &none, &io).await;
        let o_ours = run_raw(t.ctl(Impl::Ours), c.args.clone(), &none, &io).await;
        r.count("ctl edge cases, no server");
        r.cov.note(&c.args);
        compare_outs(
            r,
            &format!("ctl[ctl→nothing] {}", c.args.join(" ")),
            &o_ours,
            &o_up,
        );
    }

    // libp2p-http with the wrong secret: no connection on either side. The dial error's
    // details are libp2p's own words (Go's and rust-libp2p's differ); what must agree is
    // that nothing answers: upstream's `Code: 0` connection error and exit 1.
    let c = case(&format!(
        "--host {{p2p}} --secret {wrong_secret} --force-http --basic-auth {USER} id"
    ));
    for (ctl_of, api, norm, label) in [
        (Impl::Upstream, &ours, &n_ours, "upstream→api"),
        (Impl::Ours, &up, &n_up, "ctl→upstream"),
        (Impl::Upstream, &up, &n_up, "upstream→upstream"),
    ] {
        let o = run_raw(t.ctl(ctl_of), fill(&c, api), norm, &io).await;
        r.count("ctl edge cases, wrong secret over libp2p-http");
        let first = o.stdout.lines().take(2).collect::<Vec<_>>().join("\n");
        r.differ(
            format!("ctl[{label}] --host {{p2p}} --secret <wrong> id | exit code, first lines"),
            &format!("{} {first}", o.code),
            "1 An error occurred:\n  Code: 0",
        );
    }
    drop((ours, up));
}
