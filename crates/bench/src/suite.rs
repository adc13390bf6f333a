//! The whole-peer scenarios, in one run so the hello-
//! world ceiling and the peers are measured by the same generator on the same machine
//! state. Each scenario adds figures (compared with their targets) and detail lines.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use ipfs_cluster_proto::types::v1::{Pin, PinOptions, PinType};

use crate::{
    cids::{random_cid, random_inline_cid},
    load::{self, LoadResult, MakeRequest},
    procs::{self, loopback, PeerDir, Proc},
};

pub struct Options {
    pub bin_dir: PathBuf,
    pub conns: usize,
    pub duration: Duration,
    pub sizes: Vec<u64>,
    pub budget: Duration,
    pub cold_starts: usize,
    /// How the big pinsets are built.
    pub fill: Fill,
}

/// How the listing / restart / memory pinsets are built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Fill {
    /// `Consensus.Import` (gRPC client stream, internal token): fast, the default.
    Import,
    /// `POST /pins/{cid}` through the REST API, as users do: slow (1M pins take about as
    /// many seconds as the ingest rate says), so a separate mode.
    Rest,
}

/// A figure compared with its target.
pub struct Figure {
    pub id: &'static str,
    pub what: String,
    pub value: String,
    pub target: String,
    /// None = no target (informative figure).
    pub met: Option<bool>,
}

#[derive(Default)]
pub struct Results {
    pub figures: Vec<Figure>,
    /// Markdown blocks with the raw measurements.
    pub details: Vec<String>,
    pub notes: Vec<String>,
}

impl Results {
    fn fig(
        &mut self,
        id: &'static str,
        what: impl Into<String>,
        value: impl Into<String>,
        target: impl Into<String>,
        met: Option<bool>,
    ) {
        self.figures.push(Figure {
            id,
            what: what.into(),
            value: value.into(),
            target: target.into(),
            met,
        });
    }
}

pub const SECRET: &str = "be5cbe5cbe5cbe5cbe5cbe5cbe5cbe5cbe5cbe5cbe5cbe5cbe5cbe5cbe5cbe5c";

pub fn pins_request() -> MakeRequest {
    Arc::new(|_| {
        (
            hyper::Method::POST,
            format!("/pins/{}", random_inline_cid()),
        )
    })
}

fn load_row(name: &str, r: &LoadResult) -> String {
    format!(
        "| {name} | {:.0} | {:.2} | {:.2} | {} | {} |{}",
        r.rate(),
        r.pct_ms(0.50),
        r.pct_ms(0.99),
        r.ok,
        r.errors,
        r.first_error
            .as_deref()
            .map(|e| format!(
                " first error: `{}`",
                e.replace('|', "/").chars().take(160).collect::<String>()
            ))
            .unwrap_or_default()
    )
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// CPU seconds used so far by each service of these launchers, summed by binary name.
pub fn service_cpu(launchers: &[&Proc]) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for l in launchers {
        for (pid, name) in procs::children(l.pid()) {
            let c = procs::cpu_secs(pid).unwrap_or(0.0);
            match out.iter_mut().find(|(n, _)| *n == name) {
                Some(e) => e.1 += c,
                None => out.push((name, c)),
            }
        }
    }
    out
}

pub fn cpu_delta(before: &[(String, f64)], after: &[(String, f64)], secs: f64) -> String {
    after
        .iter()
        .map(|(n, a)| {
            let b = before
                .iter()
                .find(|(m, _)| m == n)
                .map(|x| x.1)
                .unwrap_or(0.0);
            format!(
                "{} {:.0} %",
                n.trim_start_matches("ipfs-cluster-"),
                (a - b) / secs * 100.0
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// RSS of the launcher's children (the four services), by binary name.
fn service_rss(launcher: &Proc) -> Vec<(String, u64)> {
    procs::children(launcher.pid())
        .into_iter()
        .filter_map(|(pid, name)| procs::rss_kib(pid).map(|k| (name, k)))
        .collect()
}

pub async fn run(opts: &Options) -> Result<Results> {
    let t_start = Instant::now();
    let mut res = Results::default();
    let tmp = tempfile::Builder::new()
        .prefix("ipfs-cluster-bench")
        .tempdir()?;
    let root = tmp.path();

    eprintln!("bench: starting Kubo (shared by every peer; random CIDs are never fetched)");
    std::fs::create_dir_all(root.join("ipfs"))?;
    let ipfs = start_ipfs(&root.join("ipfs")).await?;
    let ipfs_ma = ipfs.multiaddr();

    // 7 + 5 (idle): cold starts of fresh peers.
    eprintln!("bench: cold start ×{}", opts.cold_starts);
    let mut colds = Vec::new();
    let mut idle_rss: Vec<(String, u64)> = Vec::new();
    for i in 0..opts.cold_starts {
        let peer = PeerDir::init(
            &opts.bin_dir,
            &root.join(format!("cold{i}")),
            &ipfs_ma,
            SECRET,
        )?;
        let mut proc = peer.spawn(&[])?;
        let d = peer.wait_ready(&mut proc, Duration::from_secs(60)).await?;
        colds.push(d);
        if i + 1 == opts.cold_starts {
            // "Idle": ready, no pins, no requests; give the services a moment to settle.
            tokio::time::sleep(Duration::from_secs(3)).await;
            idle_rss = service_rss(&proc);
        }
        drop(proc);
    }
    colds.sort();
    let cold_med = colds[colds.len() / 2];
    res.fig(
        "7",
        "cold start of a whole peer (launcher + 4 services) to `GET /id` 200, median",
        format!("{:.0} ms", cold_med.as_secs_f64() * 1000.0),
        "< 1000 ms",
        Some(cold_med < Duration::from_secs(1)),
    );
    res.details.push(format!(
        "Cold starts (fresh `init`, then `daemon` until `GET /id` is 200, polled every 5 ms): {} ms.",
        colds.iter().map(|d| format!("{:.0}", d.as_secs_f64() * 1000.0)).collect::<Vec<_>>().join(", ")
    ));
    let mut rows = vec![
        "| service | RSS idle (MiB) |".to_string(),
        "|---|---|".to_string(),
    ];
    for (name, kib) in &idle_rss {
        rows.push(format!("| {name} | {:.1} |", mib(*kib)));
        if name != "ipfs-cluster-service" {
            res.fig(
                "5",
                format!("RSS idle: {name}"),
                format!("{:.1} MiB", mib(*kib)),
                "< 30 MB",
                Some(*kib * 1024 < 30_000_000),
            );
        }
    }
    res.details.push(format!(
        "Resident memory (VmRSS from /proc/PID/status) 3 s after ready, no pins:\n\n{}",
        rows.join("\n")
    ));

    // 1: ingest, hello-world ceiling, 1 peer, 3 peers.
    eprintln!("bench: ingest (hello-world ceiling)");
    let hello_port = procs::free_port()?;
    let _hello = Proc::spawn(
        "hello-world server",
        Command::new(std::env::current_exe()?).args(["hello", "--port", &hello_port.to_string()]),
    )?;
    let hello_addr = loopback(hello_port);
    procs::wait_until(
        Duration::from_secs(10),
        Duration::from_millis(10),
        || async { tokio::net::TcpStream::connect(hello_addr).await.is_ok() },
    )
    .await
    .context("hello-world server did not listen")?;
    let warm = Duration::from_secs(1);
    load::run(&[hello_addr], opts.conns, warm, u64::MAX, pins_request()).await?;
    let hello = load::run(
        &[hello_addr],
        opts.conns,
        opts.duration,
        u64::MAX,
        pins_request(),
    )
    .await?;
    drop(_hello);

    eprintln!("bench: ingest, 1 peer");
    let dirs: Vec<PeerDir> = (0..3)
        .map(|i| PeerDir::init(&opts.bin_dir, &root.join(format!("p{i}")), &ipfs_ma, SECRET))
        .collect::<Result<_>>()?;
    let mut p0 = dirs[0].spawn(&[])?;
    dirs[0].wait_ready(&mut p0, Duration::from_secs(60)).await?;
    let a0 = dirs[0].rest_addr();
    let mut acked: Vec<String> = Vec::new();
    acked.extend(
        load::run(&[a0], opts.conns, warm, u64::MAX, pins_request())
            .await?
            .acked,
    );
    let c0 = service_cpu(&[&p0]);
    let one = load::run(&[a0], opts.conns, opts.duration, u64::MAX, pins_request()).await?;
    acked.extend(one.acked.iter().cloned());
    let cpu_one = cpu_delta(&c0, &service_cpu(&[&p0]), one.elapsed.as_secs_f64());

    eprintln!("bench: ingest, 3 peers");
    let boot = bootstrap_addr(&dirs[0]).await?;
    let mut p1 = dirs[1].spawn(&["--bootstrap", &boot])?;
    dirs[1].wait_ready(&mut p1, Duration::from_secs(60)).await?;
    let mut p2 = dirs[2].spawn(&["--bootstrap", &boot])?;
    dirs[2].wait_ready(&mut p2, Duration::from_secs(60)).await?;
    wait_members(&dirs).await?;
    let addrs: Vec<_> = dirs.iter().map(PeerDir::rest_addr).collect();
    acked.extend(
        load::run(&addrs, opts.conns, warm, u64::MAX, pins_request())
            .await?
            .acked,
    );
    let c0 = service_cpu(&[&p0, &p1, &p2]);
    let three = load::run(&addrs, opts.conns, opts.duration, u64::MAX, pins_request()).await?;
    let cpu_three = cpu_delta(
        &c0,
        &service_cpu(&[&p0, &p1, &p2]),
        three.elapsed.as_secs_f64(),
    );
    acked.extend(three.acked.iter().cloned());
    eprintln!("bench: checking the {} acknowledged pins", acked.len());
    check_ingest(&mut res, &addrs, &ipfs, &acked).await?;
    drop((p2, p1, p0));

    res.details.push(format!(
        "REST pin ingest, {} keep-alive connections, {:.0} s each after a 1 s warm-up, `POST /pins/{{random CIDv1}}`; \
         3 peers: connection i talks to peer i mod 3. Latency = request sent → whole 2xx answer read.\n\n\
         | target | req/s | p50 ms | p99 ms | ok | errors |\n|---|---|---|---|---|---|\n{}\n{}\n{}\n\n\
         CPU used by the services during the run (100 % = one core; 3 peers: summed over peers): \
         1 peer: {cpu_one}; 3 peers: {cpu_three}.",
        opts.conns,
        opts.duration.as_secs_f64(),
        load_row("hello-world hyper (ceiling)", &hello),
        load_row("1 peer", &one),
        load_row("3 peers (round-robin)", &three),
    ));
    let ratio = one.rate() / hello.rate();
    res.fig(
        "1",
        "ingest, 1 peer, 32 clients",
        format!(
            "{:.0} pins/s (p50 {:.1} ms, p99 {:.1} ms) = {:.1} % of hello-world {:.0} req/s",
            one.rate(),
            one.pct_ms(0.5),
            one.pct_ms(0.99),
            ratio * 100.0,
            hello.rate()
        ),
        "≥ 50 % of hello-world",
        Some(ratio >= 0.5 && one.errors == 0),
    );
    res.fig(
        "1",
        "ingest, 3 peers, 32 clients",
        format!(
            "{:.0} pins/s (p50 {:.1} ms, p99 {:.1} ms)",
            three.rate(),
            three.pct_ms(0.5),
            three.pct_ms(0.99)
        ),
        "≥ 2000 pins/s",
        Some(three.rate() >= 2000.0 && three.errors == 0),
    );

    // 3, 4, 5 with a big state: a fresh single peer filled through Consensus.Import.
    let big = PeerDir::init(&opts.bin_dir, &root.join("big"), &ipfs_ma, SECRET)?;
    let mut bp = big.spawn(&[])?;
    big.wait_ready(&mut bp, Duration::from_secs(60)).await?;
    let mut import_secs_per_pin = None::<f64>;
    let mut filled = 0u64;
    for &n in &opts.sizes {
        let spent = t_start.elapsed();
        if let Some(per) = import_secs_per_pin {
            // import + two listings + restart, roughly 2× the import alone
            let need = Duration::from_secs_f64(per * n as f64 * 2.0);
            if spent + need > opts.budget {
                res.notes.push(format!(
                    "{n} pins skipped: at the measured import rate it needs ≈ {:.0} s, over the remaining budget ({:.0} s of --budget-secs {}).",
                    need.as_secs_f64(),
                    opts.budget.saturating_sub(spent).as_secs_f64(),
                    opts.budget.as_secs()
                ));
                continue;
            }
        }
        // Import replaces the pinset (it clears first); REST pins add to it, so the pinset
        // grows from the previous size to n.
        let (imp, how, add) = match opts.fill {
            Fill::Import => {
                eprintln!("bench: importing {n} pins");
                let d = import(&big, n).await?;
                (
                    d,
                    "`Consensus.Import` (gRPC client stream, internal token)",
                    n,
                )
            }
            Fill::Rest => {
                let add = n.saturating_sub(filled);
                eprintln!("bench: pinning {add} pins through REST (to {n})");
                let d = rest_fill(big.rest_addr(), add, opts.conns).await?;
                (
                    d,
                    "`POST /pins/{cid}` through the REST API (`--fill rest`)",
                    add,
                )
            }
        };
        filled = n;
        import_secs_per_pin = Some(imp.as_secs_f64() / add.max(1) as f64);
        res.details.push(format!(
            "Filled the pinset to {n} pins ({add} added) with {how}: {:.1} s ({:.0} pins/s).",
            imp.as_secs_f64(),
            add as f64 / imp.as_secs_f64()
        ));
        big_state(&mut res, &big, &mut bp, n).await?;
    }
    drop(bp);
    drop(ipfs);
    Ok(res)
}

/// SIGKILLs the launcher and its services together, waits until all are gone, starts the
/// peer again and waits for `GET /id`; returns when the new launcher was started.
async fn crash_restart(peer: &PeerDir, proc: &mut Proc) -> Result<Instant> {
    kill_tree(proc).await?;
    let t0 = Instant::now();
    *proc = peer.spawn(&[])?;
    peer.wait_ready(proc, Duration::from_secs(300)).await?;
    Ok(t0)
}

/// SIGKILL to a process and its direct children at once (a power cut, the OOM killer);
/// returns when all of them are gone (their sockets closed).
pub async fn kill_tree(proc: &mut Proc) -> Result<()> {
    let mut pids: Vec<u32> = procs::children(proc.pid())
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    pids.push(proc.pid());
    let _ = Command::new("kill")
        .arg("-KILL")
        .args(pids.iter().map(u32::to_string))
        .status();
    // Gone: no /proc entry, or a zombie whose every thread has exited (a killed process
    // group leader shows `Z` while its other threads are still exiting, and its sockets
    // are closed only when the last one is gone).
    let gone = |pid: &u32| {
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|st| {
                st.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(true);
        let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| d.count())
            .unwrap_or(0);
        zombie && threads <= 1
    };
    procs::wait_until(Duration::from_secs(10), Duration::from_millis(5), || {
        let dead = proc.exited() && pids.iter().all(gone);
        async move { dead }
    })
    .await
    .context("the peer's processes did not die within 10 s of SIGKILL")?;
    Ok(())
}

/// The ingest run checks its own results. Every acknowledged
/// `POST /pins/{cid}` must be in every peer's `GET /allocations` at once (an answer means
/// committed), and pinned on IPFS once the connectors have worked through their queues
/// (inline CIDs: Kubo pins them without fetching). The run fails otherwise; it also fails
/// when the IPFS side makes no progress for a minute.
async fn check_ingest(
    res: &mut Results,
    addrs: &[std::net::SocketAddr],
    ipfs: &ipfs_cluster_testkit::KuboNode,
    acked: &[String],
) -> Result<()> {
    let want: HashSet<&str> = acked
        .iter()
        .map(|p| p.strip_prefix("/pins/").unwrap_or(p))
        .collect();
    if want.len() != acked.len() {
        bail!(
            "ingest: {} acknowledged requests but {} distinct CIDs (a random CID repeated?)",
            acked.len(),
            want.len()
        );
    }
    let limit = Duration::from_secs(600);
    for addr in addrs {
        let have: HashSet<String> = load::stream_field(*addr, "/allocations", "cid", limit)
            .await?
            .into_iter()
            .collect();
        let missing = missing(&want, &have);
        if !missing.is_empty() {
            bail!(
                "ingest self-check: {} of {} acknowledged pins are missing from GET /allocations on {addr} (e.g. {:?})",
                missing.len(),
                want.len(),
                missing.iter().take(3).collect::<Vec<_>>()
            );
        }
    }
    let t0 = Instant::now();
    let (mut best, mut progress_at) = (0usize, Instant::now());
    let missing = loop {
        let pinned: HashSet<String> = ipfs.pins().await?.into_iter().collect();
        let missing = missing(&want, &pinned);
        if missing.is_empty() {
            break missing;
        }
        let done = want.len() - missing.len();
        if done > best {
            (best, progress_at) = (done, Instant::now());
        }
        if progress_at.elapsed() > Duration::from_secs(60)
            || t0.elapsed() > Duration::from_secs(1800)
        {
            break missing;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    if !missing.is_empty() {
        bail!(
            "ingest self-check: {} of {} acknowledged pins are not pinned on IPFS after {:.0} s (no progress for 60 s; e.g. {:?})",
            missing.len(),
            want.len(),
            t0.elapsed().as_secs_f64(),
            &missing[..missing.len().min(3)]
        );
    }
    res.fig(
        "1",
        "ingest self-check: acknowledged pins in `/allocations` of every peer and pinned on IPFS",
        format!(
            "{} of {} (IPFS caught up {:.1} s after the run)",
            want.len(),
            want.len(),
            t0.elapsed().as_secs_f64()
        ),
        "all",
        Some(true),
    );
    Ok(())
}

/// The acknowledged CIDs absent from `have`, sorted.
fn missing<'a>(want: &HashSet<&'a str>, have: &HashSet<String>) -> Vec<&'a str> {
    let mut m: Vec<&str> = want
        .iter()
        .filter(|c| !have.contains(**c))
        .copied()
        .collect();
    m.sort_unstable();
    m
}

/// Fills `n` more pins through `POST /pins/{random CID}` (the same generator as the ingest
/// figure); requests that fail are made again, so exactly `n` are acknowledged.
pub async fn rest_fill(addr: std::net::SocketAddr, n: u64, conns: usize) -> Result<Duration> {
    let t0 = Instant::now();
    let mut done = 0u64;
    let make: MakeRequest = Arc::new(|_| (hyper::Method::POST, format!("/pins/{}", random_cid())));
    while done < n {
        let r = load::run(
            &[addr],
            conns.max(1),
            Duration::from_secs(3600),
            n - done,
            make.clone(),
        )
        .await?;
        if r.ok == 0 {
            bail!(
                "REST fill of {addr}: no pin acknowledged in a round ({} errors; first: {})",
                r.errors,
                r.first_error.unwrap_or_default()
            );
        }
        done += r.ok;
    }
    Ok(t0.elapsed())
}

pub async fn import(peer: &PeerDir, n: u64) -> Result<Duration> {
    let token = peer.token()?;
    let mut client = ipfs_cluster_proto::client::consensus(loopback(peer.consensus), &token);
    let now = chrono::Utc::now().timestamp();
    let pins = (0..n).map(move |_| Pin {
        cid: random_cid(),
        r#type: PinType::Data as i32,
        max_depth: -1,
        options: Some(PinOptions {
            replication_factor_min: -1,
            replication_factor_max: -1,
            ..Default::default()
        }),
        timestamp: now,
        ..Default::default()
    });
    let t0 = Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(1800),
        client.import(tokio_stream::iter(pins)),
    )
    .await
    .context("Consensus.Import did not finish within 30 min")?
    .context("Consensus.Import")?
    .into_inner();
    if r.imported != n {
        bail!("Consensus.Import imported {} pins, sent {n}", r.imported);
    }
    Ok(t0.elapsed())
}

async fn big_state(res: &mut Results, peer: &PeerDir, proc: &mut Proc, n: u64) -> Result<()> {
    let addr = peer.rest_addr();
    let limit = Duration::from_secs(600);
    let t_import = Instant::now();
    eprintln!("bench: listing {n}");
    let alloc = load::stream_lines(addr, "/allocations", limit).await?;
    if alloc.items != n {
        bail!(
            "GET /allocations streamed {} items, the state holds {n}",
            alloc.items
        );
    }
    // The ipfs connector learns the imported pins from the consensus watch at its own
    // pace: list again until it tracks all of them, so the figure is a full listing.
    let mut local = load::stream_lines(addr, "/pins?local=true", limit).await?;
    while local.items < n && t_import.elapsed() < Duration::from_secs(300) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        local = load::stream_lines(addr, "/pins?local=true", limit).await?;
    }
    let caught_up = t_import.elapsed().saturating_sub(local.elapsed);
    let rss = service_rss(proc);

    let at_1m = n >= 1_000_000;
    res.fig(
        "3",
        format!("`GET /allocations` at {n} pins"),
        format!(
            "{:.0} items/s ({:.2} s, {:.1} MB)",
            alloc.rate(),
            alloc.elapsed.as_secs_f64(),
            alloc.bytes as f64 / 1e6
        ),
        "≥ 500000 items/s at 1M",
        at_1m.then_some(alloc.rate() >= 500_000.0),
    );
    res.fig(
        "3",
        format!("`GET /pins?local=true` at {n} pins"),
        format!(
            "{:.0} items/s ({} items, {:.2} s; the connector tracked them all {:.1} s after the import)",
            local.rate(),
            local.items,
            local.elapsed.as_secs_f64(),
            caught_up.as_secs_f64()
        ),
        "–",
        None,
    );

    eprintln!("bench: restart with {n}");
    let t_stop = Instant::now();
    proc.terminate(Duration::from_secs(60))?;
    let stop = t_stop.elapsed();
    let t0 = Instant::now();
    *proc = peer.spawn(&[])?;
    let listens = procs::listen_times(&peer.internal, Duration::from_secs(300));
    let (listens, ready) = tokio::join!(listens, peer.wait_ready(proc, Duration::from_secs(300)));
    ready?;
    let id_ready = t0.elapsed();
    let listens = listens
        .iter()
        .map(|(n, d)| match d {
            Some(d) => format!("{n} {:.0} ms", d.as_secs_f64() * 1000.0),
            None => format!("{n} never"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    res.details.push(format!(
        "Restart with {n} pins: stop (SIGTERM → launcher exit) {:.0} ms; after the start, each service's internal gRPC port accepted connections at: {listens}; `GET /id` 200 at {:.0} ms.",
        stop.as_secs_f64() * 1000.0,
        id_ready.as_secs_f64() * 1000.0
    ));
    procs::wait_until(
        Duration::from_secs(300),
        Duration::from_millis(5),
        || async {
            load::first_line(addr, "/allocations", Duration::from_secs(30))
                .await
                .is_ok()
        },
    )
    .await
    .context("GET /allocations did not stream after the restart")?;
    let ready = t0.elapsed();
    let after = load::stream_lines(addr, "/allocations", limit).await?;
    if after.items != n {
        bail!(
            "after the restart GET /allocations streamed {} items, expected {n}",
            after.items
        );
    }
    let rss_after = service_rss(proc);

    res.fig(
        "4",
        format!(
            "restart-to-ready at {n} pins (SIGTERM → start → `/id` 200 and `/allocations` streams)"
        ),
        format!(
            "{:.0} ms (`/id` at {:.0} ms; stop took {:.0} ms)",
            ready.as_secs_f64() * 1000.0,
            id_ready.as_secs_f64() * 1000.0,
            stop.as_secs_f64() * 1000.0
        ),
        "< 2000 ms at 1M",
        at_1m.then_some(ready < Duration::from_secs(2)),
    );

    // Crash recovery: SIGKILL the launcher and every service at once (a power cut, the
    // OOM killer), then start again and measure the same readiness, with the whole pinset.
    eprintln!("bench: crash restart (SIGKILL) with {n}");
    let crash_start = crash_restart(peer, proc).await?;
    procs::wait_until(
        Duration::from_secs(300),
        Duration::from_millis(5),
        || async {
            load::first_line(addr, "/allocations", Duration::from_secs(30))
                .await
                .is_ok()
        },
    )
    .await
    .context("GET /allocations did not stream after the crash restart")?;
    let crash_ready = crash_start.elapsed();
    let after_crash = load::stream_lines(addr, "/allocations", limit).await?;
    if after_crash.items != n {
        bail!(
            "after the SIGKILL restart GET /allocations streamed {} items, expected {n}: pins lost in the crash",
            after_crash.items
        );
    }
    res.fig(
        "4",
        format!(
            "restart-to-ready at {n} pins after SIGKILL of the launcher and its services (crash recovery)"
        ),
        format!("{:.0} ms, {} pins listed after", crash_ready.as_secs_f64() * 1000.0, after_crash.items),
        "< 2000 ms at 1M",
        at_1m.then_some(crash_ready < Duration::from_secs(2)),
    );

    let mut rows = vec![
        format!("| service | RSS after listing {n} pins (MiB) | RSS after restart (MiB) |"),
        "|---|---|---|".to_string(),
    ];
    for (name, kib) in &rss {
        let a = rss_after
            .iter()
            .find(|(n2, _)| n2 == name)
            .map(|x| x.1)
            .unwrap_or(0);
        rows.push(format!("| {name} | {:.1} | {:.1} |", mib(*kib), mib(a)));
        if name.ends_with("consensus") {
            res.fig(
                "5",
                format!("RSS consensus at {n} pins"),
                format!("{:.1} MiB", mib(*kib.max(&a))),
                "< 256 MB at 1M",
                at_1m.then_some(*kib.max(&a) * 1024 < 256_000_000),
            );
        } else if name != "ipfs-cluster-service" {
            res.fig(
                "5",
                format!("RSS {name} at {n} pins"),
                format!("{:.1} MiB", mib(*kib.max(&a))),
                "–",
                None,
            );
        }
    }
    res.details.push(format!(
        "Resident memory with {n} pins:\n\n{}",
        rows.join("\n")
    ));
    Ok(())
}

pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map(|k| format!("{:.1} GiB", k as f64 / 1048576.0))
        .unwrap_or_else(|| "unknown".into());
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!(
        "{nproc} CPUs ({cpu}), {mem} RAM, kernel {}",
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    )
}

/// For profiling by hand: `peers` peers (plus Kubo; the first holds `n` imported pins,
/// the others join it), kept running until SIGINT/SIGTERM, with the REST addresses and
/// service PIDs printed.
pub async fn hold(opts: &Options, n: u64, peers: usize) -> Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("ipfs-cluster-bench-hold")
        .tempdir()?;
    let root = tmp.path();
    std::fs::create_dir_all(root.join("ipfs"))?;
    let ipfs = start_ipfs(&root.join("ipfs")).await?;
    let dirs: Vec<PeerDir> = (0..peers.max(1))
        .map(|i| {
            PeerDir::init(
                &opts.bin_dir,
                &root.join(format!("peer{i}")),
                &ipfs.multiaddr(),
                SECRET,
            )
        })
        .collect::<Result<_>>()?;
    let mut first = dirs[0].spawn(&[])?;
    dirs[0]
        .wait_ready(&mut first, Duration::from_secs(60))
        .await?;
    if n > 0 {
        let d = import(&dirs[0], n).await?;
        eprintln!("imported {n} pins in {:.1} s", d.as_secs_f64());
    }
    let mut procs_ = vec![first];
    if dirs.len() > 1 {
        let boot = bootstrap_addr(&dirs[0]).await?;
        for d in &dirs[1..] {
            let mut p = d.spawn(&["--bootstrap", &boot])?;
            d.wait_ready(&mut p, Duration::from_secs(60)).await?;
            procs_.push(p);
        }
        wait_members(&dirs).await?;
    }
    for (d, proc) in dirs.iter().zip(&procs_) {
        println!("rest {}", d.rest_addr());
        for (pid, name) in procs::children(proc.pid()) {
            println!("pid {pid} {name}");
        }
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    drop(procs_);
    drop(ipfs);
    Ok(())
}

/// The libp2p multiaddr other peers `--bootstrap` to (peer must be running).
pub async fn bootstrap_addr(peer: &PeerDir) -> Result<String> {
    let id = load::get(peer.rest_addr(), "/id", Duration::from_secs(5)).await?;
    let id: serde_json::Value = serde_json::from_slice(&id.1)?;
    Ok(format!(
        "/ip4/127.0.0.1/tcp/{}/p2p/{}",
        peer.swarm,
        id["id"].as_str().context("GET /id has no id")?
    ))
}

/// Waits until every peer's `GET /peers` lists all of them.
async fn wait_members(dirs: &[PeerDir]) -> Result<()> {
    let n = dirs.len();
    for d in dirs {
        let a = d.rest_addr();
        procs::wait_until(Duration::from_secs(60), Duration::from_millis(100), || {
            procs::lists_peers(a, n, Duration::from_secs(5))
        })
        .await
        .with_context(|| {
            format!(
                "peer {} does not list {n} peers; log:\n{}",
                d.dir.display(),
                d.log_tail()
            )
        })?;
    }
    Ok(())
}

/// The Kubo node every benchmark peer shares (the test kit's launcher).
async fn start_ipfs(dir: &Path) -> Result<ipfs_cluster_testkit::KuboNode> {
    std::fs::create_dir_all(dir)?;
    ipfs_cluster_testkit::KuboNode::start(dir).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ingest self-check names exactly the acknowledged pins a listing lacks.
    #[test]
    fn self_check_reports_each_missing_pin() {
        let want: HashSet<&str> = ["a", "b", "c"].into_iter().collect();
        let have: HashSet<String> = ["a".to_string(), "x".to_string()].into_iter().collect();
        assert_eq!(missing(&want, &have), vec!["b", "c"]);
        let all: HashSet<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        assert!(missing(&want, &all).is_empty());
    }
}
