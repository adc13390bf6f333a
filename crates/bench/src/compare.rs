//! Side by side with upstream: the same workloads, the same load
//! generator and the same settings against our peers (raft) and upstream v1.1.6 peers
//! (raft and crdt), in one run on one machine, each peer with its own Kubo node. Every
//! row is printed as `ours / upstream = ratio` and compared with the target.

use std::{
    collections::HashSet,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use ipfs_cluster_testkit::KuboNode;

use crate::{
    cids::random_inline_cid,
    load,
    procs::{self, PeerDir, Proc},
    suite::{self, Fill, SECRET},
    upstream::{self, Mode, UpstreamPeer},
};

/// An implementation under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Impl {
    /// Ours (raft, the only mode we have)
    Ours,
    /// Upstream v1.1.6 with `--consensus raft`
    UpstreamRaft,
    /// Upstream v1.1.6 with `--consensus crdt` (its default), batching on
    UpstreamCrdt,
}

impl Impl {
    pub fn label(self) -> &'static str {
        match self {
            Impl::Ours => "ours",
            Impl::UpstreamRaft => "upstream raft",
            Impl::UpstreamCrdt => "upstream crdt",
        }
    }
    fn mode(self) -> Option<Mode> {
        match self {
            Impl::Ours => None,
            Impl::UpstreamRaft => Some(Mode::Raft),
            Impl::UpstreamCrdt => Some(Mode::Crdt),
        }
    }
}

/// A group of figures `--workloads` selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// The whole-peer figures of ours against their absolute targets (the `## Whole peer`
    /// block); `issue10` is its former name
    #[value(name = "whole-peer", alias = "issue10")]
    WholePeer,
    /// Cold start of a whole peer, and its resident memory idle
    Cold,
    /// REST ingest, 1 and 3 peers: to acknowledged, and to `pinned` on every Kubo
    Ingest,
    /// `ipfs-cluster-ctl peers ls` and `status <cid>` latency on 3 peers
    Ctl,
    /// At each pinset size: `GET /allocations`, `GET /pins`, restart-to-ready after a clean
    /// stop and after SIGKILL, resident memory
    State,
    /// `POST /add` of one 100 MB file and of 10,000 small files (wrapped in a directory) on
    /// one peer, beside Kubo's own `ipfs add` of the same data
    Add,
}

pub struct Options {
    pub bin_dir: PathBuf,
    pub upstream_dir: Option<PathBuf>,
    pub impls: Vec<Impl>,
    pub workloads: Vec<Workload>,
    pub conns: usize,
    pub duration: Duration,
    pub sizes: Vec<u64>,
    pub cold_starts: usize,
    pub ctl_reps: usize,
    /// Cluster sizes of the ingest rows (the cost curve: 1, 3, 5, 7).
    pub ingest_peers: Vec<usize>,
    pub fill: Fill,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Better {
    Higher,
    Lower,
}

/// The target for a row, as a bound on `ours / upstream`.
#[derive(Clone, Copy)]
enum Target {
    /// A bound per upstream mode.
    Each { raft: f64, crdt: f64 },
    /// A bound against upstream's better mode.
    Best(f64),
}

impl Target {
    fn nothing_worse() -> Self {
        Target::Each {
            raft: 1.0,
            crdt: 1.0,
        }
    }
}

struct Row {
    what: String,
    unit: &'static str,
    better: Better,
    target: Target,
    values: Vec<(Impl, f64)>,
    /// Extra per-implementation detail (p99, items, …), shown in the details table.
    detail: Vec<(Impl, String)>,
}

impl Row {
    fn value(&self, i: Impl) -> Option<f64> {
        self.values.iter().find(|(j, _)| *j == i).map(|x| x.1)
    }

    /// `ours / upstream` for each upstream mode present.
    fn ratios(&self) -> Vec<(Impl, f64)> {
        let Some(ours) = self.value(Impl::Ours) else {
            return vec![];
        };
        [Impl::UpstreamRaft, Impl::UpstreamCrdt]
            .into_iter()
            .filter_map(|u| self.value(u).map(|v| (u, ours / v)))
            .collect()
    }

    fn target_text(&self) -> String {
        let op = match self.better {
            Better::Higher => "≥",
            Better::Lower => "≤",
        };
        match self.target {
            Target::Each { raft, crdt } if raft == crdt => format!("{op} {}", fmt_ratio(raft)),
            Target::Each { raft, crdt } => {
                format!(
                    "{op} {} raft, {op} {} crdt",
                    fmt_ratio(raft),
                    fmt_ratio(crdt)
                )
            }
            Target::Best(b) => format!("{op} {} of upstream's best", fmt_ratio(b)),
        }
    }

    /// None when no upstream value is there to compare with.
    fn met(&self) -> Option<bool> {
        let ours = self.value(Impl::Ours)?;
        let ok = |ratio: f64, bound: f64| match self.better {
            Better::Higher => ratio >= bound,
            Better::Lower => ratio <= bound,
        };
        match self.target {
            Target::Each { raft, crdt } => {
                let r = self.ratios();
                if r.is_empty() {
                    return None;
                }
                Some(r.iter().all(|(u, ratio)| {
                    ok(*ratio, if *u == Impl::UpstreamRaft { raft } else { crdt })
                }))
            }
            Target::Best(b) => {
                let ups = [Impl::UpstreamRaft, Impl::UpstreamCrdt]
                    .into_iter()
                    .filter_map(|u| self.value(u));
                let best = match self.better {
                    Better::Higher => {
                        ups.fold(None, |a: Option<f64>, v| Some(a.map_or(v, |a| a.max(v))))
                    }
                    Better::Lower => {
                        ups.fold(None, |a: Option<f64>, v| Some(a.map_or(v, |a| a.min(v))))
                    }
                }?;
                Some(ok(ours / best, b))
            }
        }
    }

    /// `what: ours 5200 / upstream raft 310 = 16.8×; ours 5200 / upstream crdt 900 = 5.78×`
    fn line(&self) -> String {
        let ours = self.value(Impl::Ours);
        let mut parts = Vec::new();
        for (u, ratio) in self.ratios() {
            parts.push(format!(
                "ours {} / {} {} = {}",
                fmt_val(ours.unwrap_or(f64::NAN)),
                u.label(),
                fmt_val(self.value(u).unwrap_or(f64::NAN)),
                fmt_ratio(ratio)
            ));
        }
        if parts.is_empty() {
            parts = self
                .values
                .iter()
                .map(|(i, v)| format!("{} {}", i.label(), fmt_val(*v)))
                .collect();
        }
        let verdict = match self.met() {
            Some(true) => format!(" (target {}: met)", self.target_text()),
            Some(false) => format!(" (target {}: MISSED)", self.target_text()),
            None => String::new(),
        };
        format!(
            "{} [{}]: {}{verdict}",
            self.what,
            self.unit,
            parts.join("; ")
        )
    }
}

fn fmt_val(v: f64) -> String {
    if !v.is_finite() {
        "–".into()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn fmt_ratio(r: f64) -> String {
    if !r.is_finite() {
        "–".into()
    } else if r >= 10.0 {
        format!("{r:.0}×")
    } else {
        format!("{r:.2}×")
    }
}

#[derive(Default)]
pub struct Comparison {
    rows: Vec<Row>,
    pub notes: Vec<String>,
    pub versions: String,
}

impl Comparison {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        what: impl Into<String>,
        unit: &'static str,
        better: Better,
        target: Target,
        imp: Impl,
        value: f64,
        detail: impl Into<String>,
    ) {
        let what = what.into();
        let i = match self.rows.iter().position(|r| r.what == what) {
            Some(i) => i,
            None => {
                self.rows.push(Row {
                    what,
                    unit,
                    better,
                    target,
                    values: vec![],
                    detail: vec![],
                });
                self.rows.len() - 1
            }
        };
        let r = &mut self.rows[i];
        r.values.push((imp, value));
        let d = detail.into();
        if !d.is_empty() {
            r.detail.push((imp, d));
        }
    }

    /// One line per row, `ours / upstream = ratio` (the console output).
    pub fn lines(&self) -> Vec<String> {
        self.rows.iter().map(Row::line).collect()
    }

    /// The markdown table of the generated block.
    pub fn table(&self, impls: &[Impl]) -> String {
        let ups: Vec<Impl> = impls.iter().copied().filter(|i| *i != Impl::Ours).collect();
        let mut head = "| workload | unit |".to_string();
        let mut sep = "|---|---|".to_string();
        for i in impls {
            head.push_str(&format!(" {} |", i.label()));
            sep.push_str("---|");
        }
        if impls.contains(&Impl::Ours) {
            for u in &ups {
                head.push_str(&format!(" ours / {} |", u.label()));
                sep.push_str("---|");
            }
        }
        head.push_str(" target | |");
        sep.push_str("---|---|");
        let mut out = vec![head, sep];
        for r in &self.rows {
            let mut line = format!("| {} | {} |", r.what, r.unit);
            for i in impls {
                line.push_str(&format!(
                    " {} |",
                    r.value(*i).map(fmt_val).unwrap_or_else(|| "–".into())
                ));
            }
            if impls.contains(&Impl::Ours) {
                let ratios = r.ratios();
                for u in &ups {
                    line.push_str(&format!(
                        " {} |",
                        ratios
                            .iter()
                            .find(|(j, _)| j == u)
                            .map(|(_, x)| fmt_ratio(*x))
                            .unwrap_or_else(|| "–".into())
                    ));
                }
            }
            let verdict = match r.met() {
                Some(true) => "met",
                Some(false) => "**missed**",
                None => "",
            };
            line.push_str(&format!(" {} | {verdict} |", r.target_text()));
            out.push(line);
        }
        let details: Vec<String> = self
            .rows
            .iter()
            .flat_map(|r| {
                r.detail
                    .iter()
                    .map(move |(i, d)| format!("- {} — {}: {d}", r.what, i.label()))
            })
            .collect();
        if !details.is_empty() {
            out.push(String::new());
            out.push("Details:".into());
            out.push(String::new());
            out.extend(details);
        }
        out.join("\n")
    }
}

/// How often an upstream peer panicked at start and was started again (see `Peer::start`).
static UPSTREAM_START_PANICS: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// How long a peer may take to exit after SIGTERM before it is killed.
const STOP_LIMIT: Duration = Duration::from_secs(120);

/// Peers that did not exit within `STOP_LIMIT` of SIGTERM (which, and their last log line).
static STOP_HANGS: std::sync::Mutex<Vec<(Impl, String)>> = std::sync::Mutex::new(Vec::new());

/// One peer of either implementation, with its own Kubo node.
struct Peer {
    imp: Impl,
    kind: Kind,
    ipfs: KuboNode,
    proc: Option<Proc>,
}

enum Kind {
    Ours(PeerDir),
    Up(UpstreamPeer),
}

impl Peer {
    async fn new(imp: Impl, opts: &Options, up_dir: &Path, dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir.join("ipfs"))?;
        let ipfs = KuboNode::start(&dir.join("ipfs"))
            .await
            .with_context(|| format!("starting the Kubo node of {}", dir.display()))?;
        let kind = match imp.mode() {
            None => Kind::Ours(PeerDir::init(
                &opts.bin_dir,
                &dir.join("peer"),
                &ipfs.multiaddr(),
                SECRET,
            )?),
            Some(mode) => Kind::Up(UpstreamPeer::init(
                up_dir,
                &dir.join("peer"),
                mode,
                &ipfs.multiaddr(),
                SECRET,
            )?),
        };
        Ok(Self {
            imp,
            kind,
            ipfs,
            proc: None,
        })
    }

    fn rest_addr(&self) -> SocketAddr {
        match &self.kind {
            Kind::Ours(p) => p.rest_addr(),
            Kind::Up(p) => p.rest_addr(),
        }
    }

    fn ctl(&self, opts: &Options, up_dir: &Path) -> PathBuf {
        match self.kind {
            Kind::Ours(_) => opts.bin_dir.join("ipfs-cluster-ctl"),
            Kind::Up(_) => up_dir.join("ipfs-cluster-ctl"),
        }
    }

    /// Starts the peer (joining `bootstrap` when given) and waits for `GET /id` 200;
    /// returns the time from spawn to ready.
    async fn start(&mut self, bootstrap: Option<&str>, within: Duration) -> Result<Duration> {
        if self.proc.is_some() {
            bail!("{} peer already running", self.imp.label());
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let t0 = Instant::now();
            let mut proc = match &self.kind {
                Kind::Ours(p) => match bootstrap {
                    Some(b) => p.spawn(&["--bootstrap", b])?,
                    None => p.spawn(&[])?,
                },
                Kind::Up(p) => p.spawn(bootstrap)?,
            };
            let r = match &self.kind {
                Kind::Ours(p) => p.wait_ready(&mut proc, within).await,
                Kind::Up(p) => p.wait_ready(&mut proc, within).await,
            };
            // Upstream v1.1.6 can panic at start when a REST request arrives before its
            // RPC client is set (go-libp2p-gorpc `Client.makeCall` on a nil client): the
            // readiness poll triggers it as any health check would. Counted, reported,
            // and the start is measured again.
            if let (Err(e), Kind::Up(_)) = (&r, &self.kind) {
                if attempt < 4 && proc.exited() && e.to_string().contains("panic:") {
                    UPSTREAM_START_PANICS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    eprintln!(
                        "bench: {} peer panicked at start (upstream's startup race); starting it again",
                        self.imp.label()
                    );
                    continue;
                }
            }
            self.proc = Some(proc);
            r?;
            return Ok(t0.elapsed());
        }
    }

    async fn bootstrap_addr(&self) -> Result<String> {
        match &self.kind {
            Kind::Ours(p) => suite::bootstrap_addr(p).await,
            Kind::Up(p) => Ok(p.bootstrap_addr()),
        }
    }

    /// SIGTERM to the launcher / daemon and wait for its exit; returns how long it took.
    /// A peer still running `STOP_LIMIT` after the SIGTERM is killed (SIGKILL of its
    /// process tree), reported in the notes with the end of its log, and the run goes on:
    /// a stop that hangs is a finding, not a reason to lose every other figure.
    async fn stop(&mut self) -> Result<Duration> {
        let t0 = Instant::now();
        if let Some(mut p) = self.proc.take() {
            if let Err(e) = p.terminate(STOP_LIMIT) {
                let tail = self.log_tail();
                let tail: Vec<&str> = tail.lines().rev().take(5).collect();
                eprintln!(
                    "bench: {} peer: {e:#}; killing it. Its log ends:\n{}",
                    self.imp.label(),
                    tail.iter().rev().copied().collect::<Vec<_>>().join("\n")
                );
                suite::kill_tree(&mut p)
                    .await
                    .with_context(|| format!("killing the {} peer", self.imp.label()))?;
                STOP_HANGS.lock().unwrap().push((
                    self.imp,
                    tail.first().map(|l| l.to_string()).unwrap_or_default(),
                ));
            }
        }
        Ok(t0.elapsed())
    }

    /// SIGKILL of the peer's whole process tree at once; waits until it is gone.
    async fn kill(&mut self) -> Result<()> {
        if let Some(p) = self.proc.as_mut() {
            suite::kill_tree(p).await?;
        }
        self.proc = None;
        Ok(())
    }

    /// VmRSS of the whole peer: the launcher (or upstream's one process) and its children.
    fn rss_kib(&self) -> u64 {
        let Some(p) = &self.proc else { return 0 };
        procs::rss_kib(p.pid()).unwrap_or(0)
            + procs::children(p.pid())
                .iter()
                .filter_map(|(pid, _)| procs::rss_kib(*pid))
                .sum::<u64>()
    }

    fn log_tail(&self) -> String {
        match &self.kind {
            Kind::Ours(p) => p.log_tail(),
            Kind::Up(p) => p.log_tail(),
        }
    }

    /// Makes the (single, running) peer's pinset `n` pins: ours through
    /// `Consensus.Import`, upstream through `state import` with the peer stopped (both
    /// replace the pinset), or both through `POST /pins` (adds `add` pins). Returns the
    /// time and how.
    async fn fill(
        &mut self,
        n: u64,
        add: u64,
        fill: Fill,
        conns: usize,
        tmp: &Path,
    ) -> Result<(Duration, String)> {
        match (fill, &self.kind) {
            (Fill::Rest, _) => {
                let d = suite::rest_fill(self.rest_addr(), add, conns).await?;
                Ok((
                    d,
                    format!("`POST /pins/{{cid}}` ×{add}, {conns} connections"),
                ))
            }
            (Fill::Import, Kind::Ours(p)) => {
                let d = suite::import(p, n).await?;
                Ok((d, "`Consensus.Import` (peer running)".into()))
            }
            (Fill::Import, Kind::Up(_)) => {
                let file = tmp.join(format!("export-{n}.ndjson"));
                upstream::write_export(&file, n)?;
                let t0 = Instant::now();
                self.stop().await?;
                let Kind::Up(p) = &self.kind else {
                    unreachable!()
                };
                p.state_import(&file, Duration::from_secs(3600)).await?;
                let _ = std::fs::remove_file(&file);
                self.start(None, Duration::from_secs(600)).await?;
                Ok((
                    t0.elapsed(),
                    "`ipfs-cluster-service state import` (stop, import, start)".into(),
                ))
            }
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // The peer first (it talks to its Kubo), then the Kubo node (its own drop).
        self.proc.take();
    }
}

/// Starts `n` peers of `imp`, the others joining the first; waits until each lists `n`
/// peers.
async fn cluster(
    imp: Impl,
    n: usize,
    opts: &Options,
    up_dir: &Path,
    root: &Path,
) -> Result<Vec<Peer>> {
    let mut peers = Vec::new();
    for i in 0..n {
        peers.push(Peer::new(imp, opts, up_dir, &root.join(format!("p{i}"))).await?);
    }
    peers[0].start(None, Duration::from_secs(120)).await?;
    let boot = peers[0].bootstrap_addr().await?;
    for p in peers.iter_mut().skip(1) {
        p.start(Some(&boot), Duration::from_secs(120)).await?;
    }
    for p in &peers {
        let a = p.rest_addr();
        procs::wait_until(Duration::from_secs(120), Duration::from_millis(200), || {
            procs::lists_peers(a, n, Duration::from_secs(10))
        })
        .await
        .with_context(|| {
            format!(
                "{} peer at {a} does not list {n} peers within 120 s; log:\n{}",
                imp.label(),
                p.log_tail()
            )
        })?;
    }
    Ok(peers)
}

/// Waits until every CID of `want` is a recursive pin on every Kubo node; fails after 60 s
/// without progress. Returns how long it took.
async fn wait_pinned(peers: &[Peer], want: &HashSet<String>) -> Result<Duration> {
    let t0 = Instant::now();
    let mut done = vec![false; peers.len()];
    let (mut best, mut progress_at) = (0usize, Instant::now());
    loop {
        let mut total = 0;
        for (i, p) in peers.iter().enumerate() {
            if done[i] {
                total += want.len();
                continue;
            }
            let have: HashSet<String> = p.ipfs.pins().await?.into_iter().collect();
            let n = want.iter().filter(|c| have.contains(*c)).count();
            done[i] = n == want.len();
            total += n;
        }
        if done.iter().all(|d| *d) {
            return Ok(t0.elapsed());
        }
        if total > best {
            (best, progress_at) = (total, Instant::now());
        }
        if progress_at.elapsed() > Duration::from_secs(60) {
            bail!(
                "{}: {} of {} acknowledged pins pinned on the {} Kubo nodes, no progress for 60 s",
                peers[0].imp.label(),
                total,
                want.len() * peers.len(),
                peers.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn cids(acked: &[String]) -> HashSet<String> {
    acked
        .iter()
        .map(|p| p.strip_prefix("/pins/").unwrap_or(p).to_string())
        .collect()
}

/// Runs `ctl` `reps` times with `args` against `addr`; returns the sorted wall times.
async fn ctl_times(
    ctl: &Path,
    addr: SocketAddr,
    args: &[&str],
    reps: usize,
) -> Result<Vec<Duration>> {
    let host = format!("/ip4/127.0.0.1/tcp/{}", addr.port());
    let mut out = Vec::new();
    for _ in 0..reps {
        let t0 = Instant::now();
        let mut cmd = tokio::process::Command::new(ctl);
        cmd.args(["--host", &host])
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let o = tokio::time::timeout(Duration::from_secs(30), cmd.output())
            .await
            .with_context(|| {
                format!(
                    "{} {} did not finish within 30 s",
                    ctl.display(),
                    args.join(" ")
                )
            })?
            .with_context(|| format!("running {}", ctl.display()))?;
        let d = t0.elapsed();
        if !o.status.success() {
            bail!(
                "{} --host {host} {} failed: {}",
                ctl.display(),
                args.join(" "),
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
        out.push(d);
    }
    out.sort();
    Ok(out)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

pub async fn run(opts: &Options) -> Result<Comparison> {
    let mut cmp = Comparison::default();
    let has = |w: Workload| opts.workloads.contains(&w);
    let up_dir = if opts.impls.iter().any(|i| *i != Impl::Ours) {
        upstream::bin_dir(opts.upstream_dir.as_deref())?
    } else {
        PathBuf::new()
    };
    cmp.versions = format!(
        "ours {} (raft); upstream {}; Kubo {}",
        env!("CARGO_PKG_VERSION"),
        if up_dir.as_os_str().is_empty() {
            "not run".to_string()
        } else {
            format!("v{}", upstream::version(&up_dir))
        },
        kubo_version()
    );
    let tmp = tempfile::Builder::new()
        .prefix("ipfs-cluster-bench-cmp")
        .tempdir()?;
    // BENCH_KEEP=1 keeps the peers' folders (configs, daemon.log) for a diagnosis.
    let tmp = if std::env::var_os("BENCH_KEEP").is_some() {
        let kept = tmp.keep();
        eprintln!("bench: keeping the peers' folders in {}", kept.display());
        Keep::Kept(kept)
    } else {
        Keep::Temp(tmp)
    };
    if opts.impls.contains(&Impl::Ours)
        && opts.bin_dir.components().any(|c| c.as_os_str() == "debug")
    {
        cmp.notes.push(format!(
            "ours ran from a debug build ({}): its figures say nothing about ours; `make bench` uses the release build.",
            opts.bin_dir.display()
        ));
    }
    // Root CIDs of the add workload per implementation: they must be the same.
    let mut roots: Vec<(Impl, &'static str, String)> = Vec::new();
    if has(Workload::Add) {
        eprintln!("bench: Kubo's own `ipfs add` of the add workload's data");
        kubo_add_reference(&mut cmp, opts, &tmp.path().join("kubo-ref")).await?;
    }
    for &imp in &opts.impls {
        let root = tmp.path().join(imp.label().replace(' ', "-"));
        std::fs::create_dir_all(&root)?;
        if has(Workload::Cold) {
            eprintln!("bench: {}: cold start ×{}", imp.label(), opts.cold_starts);
            cold(&mut cmp, imp, opts, &up_dir, &root.join("cold")).await?;
        }
        if has(Workload::Ingest) || has(Workload::Ctl) {
            ingest_and_ctl(
                &mut cmp,
                imp,
                opts,
                &up_dir,
                &root.join("ingest"),
                has(Workload::Ingest),
                has(Workload::Ctl),
            )
            .await?;
        }
        if has(Workload::State) && !opts.sizes.is_empty() {
            state(&mut cmp, imp, opts, &up_dir, &root.join("state")).await?;
        }
        if has(Workload::Add) {
            eprintln!("bench: {}: add", imp.label());
            add(&mut cmp, imp, opts, &up_dir, &root.join("add"), &mut roots).await?;
        }
        // Each implementation's folders go as soon as it is done (disk is shared), unless
        // they are kept for a diagnosis.
        if matches!(tmp, Keep::Temp(_)) {
            let _ = std::fs::remove_dir_all(&root);
        }
    }
    let panics = UPSTREAM_START_PANICS.load(std::sync::atomic::Ordering::Relaxed);
    if panics > 0 {
        cmp.notes.push(format!(
            "upstream peers panicked {panics} time(s) at start (a REST request before its RPC client is set: nil `go-libp2p-gorpc` client in `makeCall`); each was started again and only the successful start is measured."
        ));
    }
    for (imp, last) in STOP_HANGS.lock().unwrap().iter() {
        cmp.notes.push(format!(
            "a {} peer did not exit within {} s of SIGTERM and was killed (its stop time in the row is the limit; its last log line: `{}`).",
            imp.label(),
            STOP_LIMIT.as_secs(),
            last.replace('`', "'")
        ));
    }
    for what in ["big", "small"] {
        let mut seen: Vec<&(Impl, &str, String)> = roots.iter().filter(|r| r.1 == what).collect();
        seen.dedup_by(|a, b| a.2 == b.2);
        if seen.len() > 1 {
            cmp.notes.push(format!(
                "the add workload's {what} data got different root CIDs: {}",
                seen.iter()
                    .map(|(i, _, c)| format!("{} {c}", i.label()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    Ok(cmp)
}

fn kubo_version() -> String {
    ipfs_cluster_testkit::kubo_bin()
        .ok()
        .and_then(|b| {
            std::process::Command::new(b)
                .arg("version")
                .stdin(Stdio::null())
                .output()
                .ok()
        })
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .trim_start_matches("ipfs version ")
                .to_string()
        })
        .unwrap_or_else(|| "unknown".into())
}

async fn cold(
    cmp: &mut Comparison,
    imp: Impl,
    opts: &Options,
    up_dir: &Path,
    root: &Path,
) -> Result<()> {
    let mut times = Vec::new();
    let mut idle = 0;
    for i in 0..opts.cold_starts {
        let mut p = Peer::new(imp, opts, up_dir, &root.join(format!("c{i}"))).await?;
        times.push(p.start(None, Duration::from_secs(120)).await?);
        if i + 1 == opts.cold_starts {
            tokio::time::sleep(Duration::from_secs(3)).await;
            idle = p.rss_kib();
        }
    }
    times.sort();
    let med = times[times.len() / 2];
    cmp.push(
        "cold start of a whole peer to `GET /id` 200 (median)",
        "ms",
        Better::Lower,
        Target::Each {
            raft: 0.5,
            crdt: 0.5,
        },
        imp,
        ms(med),
        format!(
            "runs {} ms",
            times
                .iter()
                .map(|d| format!("{:.0}", ms(*d)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    cmp.push(
        "resident memory of a whole peer, idle (3 s after ready, no pins)",
        "MiB",
        Better::Lower,
        Target::nothing_worse(),
        imp,
        mib(idle),
        "",
    );
    Ok(())
}

/// The run's folder: removed at the end, or kept (`BENCH_KEEP`).
enum Keep {
    Temp(tempfile::TempDir),
    Kept(PathBuf),
}

impl Keep {
    fn path(&self) -> &Path {
        match self {
            Keep::Temp(t) => t.path(),
            Keep::Kept(p) => p,
        }
    }
}

async fn ingest_and_ctl(
    cmp: &mut Comparison,
    imp: Impl,
    opts: &Options,
    up_dir: &Path,
    root: &Path,
    ingest: bool,
    ctl: bool,
) -> Result<()> {
    let mut sizes: Vec<usize> = if ingest {
        opts.ingest_peers.clone()
    } else {
        vec![]
    };
    if ctl && !sizes.contains(&3) {
        sizes.push(3);
    }
    for &n in &sizes {
        let noun = if n == 1 { "peer" } else { "peers" };
        eprintln!("bench: {}: {n} {noun}", imp.label());
        let peers = cluster(imp, n, opts, up_dir, &root.join(format!("n{n}"))).await?;
        let addrs: Vec<SocketAddr> = peers.iter().map(Peer::rest_addr).collect();
        if ingest && opts.ingest_peers.contains(&n) {
            // Warm-up, then wait until the warm-up pins are on every Kubo, so the
            // measured run starts with empty queues.
            let warm = load::run(
                &addrs,
                opts.conns,
                Duration::from_secs(1),
                u64::MAX,
                suite::pins_request(),
            )
            .await?;
            wait_pinned(&peers, &cids(&warm.acked)).await?;
            let r = load::run(
                &addrs,
                opts.conns,
                opts.duration,
                u64::MAX,
                suite::pins_request(),
            )
            .await?;
            let catch_up = wait_pinned(&peers, &cids(&r.acked)).await?;
            let pinned_rate = r.ok as f64 / (r.elapsed + catch_up).as_secs_f64();
            // The ingest targets are for 1 and 3 peers; the other sizes (the cost
            // curve) must be no worse than upstream.
            let (t_ack, t_pin) = match n {
                1 => (Target::Best(5.0), Target::nothing_worse()),
                3 => (
                    Target::Each {
                        raft: 10.0,
                        crdt: 3.0,
                    },
                    Target::nothing_worse(),
                ),
                _ => (Target::nothing_worse(), Target::nothing_worse()),
            };
            cmp.push(
                format!(
                    "REST ingest, {n} {noun}, {} connections, to acknowledged",
                    opts.conns
                ),
                "pins/s",
                Better::Higher,
                t_ack,
                imp,
                r.rate(),
                format!(
                    "p50 {:.1} ms, p99 {:.1} ms, {} ok, {} errors{}",
                    r.pct_ms(0.5),
                    r.pct_ms(0.99),
                    r.ok,
                    r.errors,
                    r.first_error
                        .as_deref()
                        .map(|e| format!(
                            " (first: `{}`)",
                            e.replace('|', "/").chars().take(120).collect::<String>()
                        ))
                        .unwrap_or_default()
                ),
            );
            cmp.push(
                format!(
                    "REST ingest, {n} {noun}, {} connections, to `pinned` on every Kubo",
                    opts.conns
                ),
                "pins/s",
                Better::Higher,
                t_pin,
                imp,
                pinned_rate,
                format!(
                    "the last pin reached every Kubo {:.1} s after the run",
                    catch_up.as_secs_f64()
                ),
            );
        }
        if ctl && n == 3 {
            let cid = random_inline_cid();
            let (st, body) =
                load::post(addrs[0], &format!("/pins/{cid}"), Duration::from_secs(30)).await?;
            if !(200..300).contains(&st) {
                bail!(
                    "{}: POST /pins/{cid}: {st} {}",
                    imp.label(),
                    String::from_utf8_lossy(&body)
                );
            }
            wait_pinned(&peers, &[cid.clone()].into_iter().collect()).await?;
            let c = peers[0].ctl(opts, up_dir);
            for (what, args) in [
                ("peers ls", vec!["peers", "ls"]),
                ("status <cid>", vec!["status", cid.as_str()]),
            ] {
                // One unmeasured call (page cache), then the measured ones.
                ctl_times(&c, addrs[0], &args, 1).await?;
                let t = ctl_times(&c, addrs[0], &args, opts.ctl_reps).await?;
                let med = t[t.len() / 2];
                cmp.push(
                    format!(
                        "`ipfs-cluster-ctl {what}` on 3 peers (median of {})",
                        opts.ctl_reps
                    ),
                    "ms",
                    Better::Lower,
                    Target::nothing_worse(),
                    imp,
                    ms(med),
                    format!(
                        "min {:.1} ms, max {:.1} ms (process start included)",
                        ms(t[0]),
                        ms(t[t.len() - 1])
                    ),
                );
            }
        }
        drop(peers);
    }
    Ok(())
}

async fn state(
    cmp: &mut Comparison,
    imp: Impl,
    opts: &Options,
    up_dir: &Path,
    root: &Path,
) -> Result<()> {
    let mut p = Peer::new(imp, opts, up_dir, root).await?;
    p.start(None, Duration::from_secs(120)).await?;
    let addr = p.rest_addr();
    let limit = Duration::from_secs(900);
    let mut filled = 0u64;
    for &n in &opts.sizes {
        eprintln!("bench: {}: pinset of {n}", imp.label());
        let add = n.saturating_sub(filled);
        let (took, how) = p.fill(n, add, opts.fill, opts.conns, root).await?;
        filled = n;
        let alloc = load::stream_lines(addr, "/allocations", limit).await?;
        if alloc.items != n {
            bail!(
                "{}: GET /allocations streamed {} items, the pinset holds {n}",
                imp.label(),
                alloc.items
            );
        }
        // GET /pins lists what the pin tracker knows: list again until it has them all.
        let t_fill = Instant::now();
        let mut pins = load::stream_lines(addr, "/pins", limit).await?;
        while pins.items < n && t_fill.elapsed() < Duration::from_secs(300) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            pins = load::stream_lines(addr, "/pins", limit).await?;
        }
        if pins.items < n {
            cmp.notes.push(format!(
                "{}: `GET /pins` listed {} of {n} pins 300 s after the fill.",
                imp.label(),
                pins.items
            ));
        }
        let rss_full = p.rss_kib();
        let listing = Target::Each {
            raft: 5.0,
            crdt: 5.0,
        };
        cmp.push(
            format!("`GET /allocations` at {n} pins"),
            "items/s",
            Better::Higher,
            listing,
            imp,
            alloc.rate(),
            format!(
                "{:.2} s, {:.1} MB; pinset built by {how} in {:.1} s",
                alloc.elapsed.as_secs_f64(),
                alloc.bytes as f64 / 1e6,
                took.as_secs_f64()
            ),
        );
        cmp.push(
            format!("`GET /pins` (status of everything) at {n} pins"),
            "items/s",
            Better::Higher,
            listing,
            imp,
            pins.rate(),
            format!(
                "{} items in {:.2} s",
                pins.items,
                pins.elapsed.as_secs_f64()
            ),
        );

        // Clean stop, then start: ready when `/id` is 200 and `/allocations` streams.
        let stop = p.stop().await?;
        let ready = restart_ready(&mut p).await?;
        check_count(&p, n, "the clean restart").await?;
        let restart = Target::Each {
            raft: 0.2,
            crdt: 0.2,
        };
        cmp.push(
            format!("restart-to-ready at {n} pins after a clean stop"),
            "ms",
            Better::Lower,
            restart,
            imp,
            ms(ready),
            format!("stop took {:.0} ms", ms(stop)),
        );
        p.kill().await?;
        let crash = restart_ready(&mut p).await?;
        check_count(&p, n, "the SIGKILL restart").await?;
        cmp.push(
            format!("restart-to-ready at {n} pins after SIGKILL"),
            "ms",
            Better::Lower,
            restart,
            imp,
            ms(crash),
            "",
        );
        let half = if n >= 1_000_000 { 0.5 } else { 1.0 };
        cmp.push(
            format!("resident memory of a whole peer at {n} pins"),
            "MiB",
            Better::Lower,
            Target::Each {
                raft: half,
                crdt: half,
            },
            imp,
            mib(rss_full.max(p.rss_kib())),
            format!(
                "after the listings {:.1} MiB, after the restarts {:.1} MiB",
                mib(rss_full),
                mib(p.rss_kib())
            ),
        );
    }
    Ok(())
}

/// Starts the (stopped) peer; ready = `GET /id` 200 and `GET /allocations` streams a line.
async fn restart_ready(p: &mut Peer) -> Result<Duration> {
    let t0 = Instant::now();
    p.start(None, Duration::from_secs(600)).await?;
    let addr = p.rest_addr();
    procs::wait_until(
        Duration::from_secs(600),
        Duration::from_millis(5),
        || async {
            load::first_line(addr, "/allocations", Duration::from_secs(30))
                .await
                .is_ok()
        },
    )
    .await
    .with_context(|| {
        format!(
            "{}: GET /allocations did not stream after the restart",
            p.imp.label()
        )
    })?;
    Ok(t0.elapsed())
}

async fn check_count(p: &Peer, n: u64, after: &str) -> Result<()> {
    let l = load::stream_lines(p.rest_addr(), "/allocations", Duration::from_secs(900)).await?;
    if l.items != n {
        bail!(
            "{}: after {after} GET /allocations streamed {} items, expected {n}",
            p.imp.label(),
            l.items
        );
    }
    Ok(())
}

/// The add workload's data, the same bytes on every implementation (so the same CIDs):
/// one 100 MB file, and 10,000 files of 4 KiB; deterministic (sha2-256 counter stream).
const BIG_BYTES: usize = 100 * 1000 * 1000;
const SMALL_FILES: usize = 10_000;
const SMALL_BYTES: usize = 4096;

fn det_bytes(seed: u64, len: usize) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut out = Vec::with_capacity(len + 32);
    let mut i = 0u64;
    while out.len() < len {
        let mut h = Sha256::new();
        h.update(seed.to_le_bytes());
        h.update(i.to_le_bytes());
        out.extend_from_slice(&h.finalize());
        i += 1;
    }
    out.truncate(len);
    out
}

/// A multipart/form-data body with one part per file (`f00000`, …).
fn multipart(files: &[Vec<u8>]) -> (String, bytes::Bytes) {
    let boundary = "----ipfsclusterbenchboundary";
    let mut body = Vec::with_capacity(files.iter().map(|f| f.len() + 160).sum());
    for (i, data) in files.iter().enumerate() {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f{i:05}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (
        format!("multipart/form-data; boundary={boundary}"),
        bytes::Bytes::from(body),
    )
}

/// POSTs `body` to `path` and reads the whole answer; returns (status, body, time).
async fn post_body(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    body: bytes::Bytes,
    timeout: Duration,
) -> Result<(u16, bytes::Bytes, Duration)> {
    use http_body_util::{BodyExt, Full};
    let t0 = Instant::now();
    let fut = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = hyper::Request::post(path)
            .header("host", addr.to_string())
            .header("content-type", content_type)
            .body(Full::new(body))?;
        let resp = send.send_request(req).await?;
        let status = resp.status().as_u16();
        let b = resp.into_body().collect().await?.to_bytes();
        Ok::<_, anyhow::Error>((status, b))
    };
    let (st, b) = tokio::time::timeout(timeout, fut)
        .await
        .with_context(|| format!("POST {path} to {addr} did not finish within {timeout:?}"))??;
    Ok((st, b, t0.elapsed()))
}

/// The last NDJSON line's `field` (the root of an add).
fn last_field(body: &[u8], field: &str) -> Option<String> {
    body.split(|&b| b == b'\n')
        .rev()
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .filter_map(|l| serde_json::from_slice::<serde_json::Value>(l).ok())
        .find_map(|v| v.get(field).and_then(|c| c.as_str().map(str::to_string)))
}

fn add_data() -> (Vec<u8>, Vec<Vec<u8>>) {
    let big = det_bytes(1, BIG_BYTES);
    let small = (0..SMALL_FILES)
        .map(|i| det_bytes(1000 + i as u64, SMALL_BYTES))
        .collect();
    (big, small)
}

/// Kubo's own `ipfs add` (HTTP API, pinned) of the same data on a fresh node: the bound
/// both implementations add through.
async fn kubo_add_reference(cmp: &mut Comparison, _opts: &Options, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let kubo = KuboNode::start(dir)
        .await
        .context("starting the reference Kubo node")?;
    let addr = procs::loopback(kubo.api_port);
    let (big, small) = add_data();
    let limit = Duration::from_secs(900);
    let (ct, body) = multipart(std::slice::from_ref(&big));
    let (st, b, t_big) =
        post_body(addr, "/api/v0/add?pin=true&quieter=true", &ct, body, limit).await?;
    if st != 200 {
        bail!("Kubo add of 100 MB: {st} {}", String::from_utf8_lossy(&b));
    }
    let big_root = last_field(&b, "Hash").unwrap_or_default();
    let (ct, body) = multipart(&small);
    let (st, b, t_small) = post_body(
        addr,
        "/api/v0/add?pin=true&quieter=true&wrap-with-directory=true",
        &ct,
        body,
        limit,
    )
    .await?;
    if st != 200 {
        bail!(
            "Kubo add of {SMALL_FILES} files: {st} {}",
            String::from_utf8_lossy(&b)
        );
    }
    let small_root = last_field(&b, "Hash").unwrap_or_default();
    cmp.notes.push(format!(
        "Kubo's own `ipfs add` (HTTP API `/api/v0/add`, pinned, fresh node) of the same data: 100 MB file {:.1} MB/s (root {big_root}); {SMALL_FILES} × {SMALL_BYTES} B files wrapped in a directory {:.0} files/s (root {small_root}).",
        BIG_BYTES as f64 / 1e6 / t_big.as_secs_f64(),
        SMALL_FILES as f64 / t_small.as_secs_f64()
    ));
    Ok(())
}

async fn add(
    cmp: &mut Comparison,
    imp: Impl,
    opts: &Options,
    up_dir: &Path,
    root: &Path,
    roots: &mut Vec<(Impl, &'static str, String)>,
) -> Result<()> {
    let mut p = Peer::new(imp, opts, up_dir, root).await?;
    p.start(None, Duration::from_secs(120)).await?;
    let addr = p.rest_addr();
    let (big, small) = add_data();
    let limit = Duration::from_secs(900);
    let (ct, body) = multipart(std::slice::from_ref(&big));
    drop(big);
    let (st, b, t) = post_body(addr, "/add", &ct, body, limit).await?;
    if !(200..300).contains(&st) {
        bail!(
            "{}: POST /add of 100 MB: {st} {}",
            imp.label(),
            String::from_utf8_lossy(&b)
        );
    }
    let r = last_field(&b, "cid").unwrap_or_default();
    cmp.push(
        "`POST /add` of one 100 MB file, 1 peer (added and pinned)",
        "MB/s",
        Better::Higher,
        Target::nothing_worse(),
        imp,
        BIG_BYTES as f64 / 1e6 / t.as_secs_f64(),
        format!("{:.2} s, root {r}", t.as_secs_f64()),
    );
    roots.push((imp, "big", r));
    let (ct, body) = multipart(&small);
    drop(small);
    let (st, b, t) = post_body(addr, "/add?wrap-with-directory=true", &ct, body, limit).await?;
    if !(200..300).contains(&st) {
        bail!(
            "{}: POST /add of {SMALL_FILES} files: {st} {}",
            imp.label(),
            String::from_utf8_lossy(&b)
        );
    }
    let r = last_field(&b, "cid").unwrap_or_default();
    cmp.push(
        format!("`POST /add` of {SMALL_FILES} files of {SMALL_BYTES} B (one directory), 1 peer"),
        "files/s",
        Better::Higher,
        Target::nothing_worse(),
        imp,
        SMALL_FILES as f64 / t.as_secs_f64(),
        format!("{:.2} s, root {r}", t.as_secs_f64()),
    );
    roots.push((imp, "small", r));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(better: Better, target: Target, values: &[(Impl, f64)]) -> Row {
        Row {
            what: "w".into(),
            unit: "u",
            better,
            target,
            values: values.to_vec(),
            detail: vec![],
        }
    }

    /// Ratios are ours / upstream; a rate target is a lower bound per mode.
    #[test]
    fn per_mode_targets_bound_each_ratio() {
        let t = Target::Each {
            raft: 10.0,
            crdt: 3.0,
        };
        let r = row(
            Better::Higher,
            t,
            &[
                (Impl::Ours, 3000.0),
                (Impl::UpstreamRaft, 300.0),
                (Impl::UpstreamCrdt, 1000.0),
            ],
        );
        assert_eq!(
            r.ratios(),
            vec![(Impl::UpstreamRaft, 10.0), (Impl::UpstreamCrdt, 3.0)]
        );
        assert_eq!(r.met(), Some(true));
        let r = row(
            Better::Higher,
            t,
            &[(Impl::Ours, 2999.0), (Impl::UpstreamCrdt, 1000.0)],
        );
        assert_eq!(r.met(), Some(false));
        assert!(r.line().contains("MISSED"), "{}", r.line());
    }

    /// "≥ 5× upstream's best" compares with the better mode; times are upper bounds.
    #[test]
    fn best_mode_and_lower_is_better() {
        let r = row(
            Better::Higher,
            Target::Best(5.0),
            &[
                (Impl::Ours, 1000.0),
                (Impl::UpstreamRaft, 100.0),
                (Impl::UpstreamCrdt, 250.0),
            ],
        );
        assert_eq!(r.met(), Some(false));
        let r = row(
            Better::Lower,
            Target::Each {
                raft: 0.2,
                crdt: 0.2,
            },
            &[(Impl::Ours, 100.0), (Impl::UpstreamRaft, 600.0)],
        );
        assert_eq!(r.met(), Some(true));
        // Without an upstream value there is nothing to judge.
        let r = row(Better::Lower, Target::nothing_worse(), &[(Impl::Ours, 1.0)]);
        assert_eq!(r.met(), None);
    }
}
