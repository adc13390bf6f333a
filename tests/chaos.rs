//! Fault injection (docs/chaos.md): real clusters (one Kubo node per peer, every peer started
//! by the real launcher) under a steady stream of pins and unpins of identity-hash CIDs
//! while services are SIGKILLed, peers SIGSTOPped, IPFS nodes stopped or killed, the network is
//! partitioned with network namespaces, and the disk fills up or a store file is truncated.
//! After every run an independent checker (public REST API + the IPFS nodes' pin/ls only)
//! proves no acknowledged pin was lost, no acknowledged unpin came back, all peers agree
//! and every allocated IPFS node holds its pins.
//!
//! The short versions run in `make test` (one at a time: `SERIAL`); `long_run` (ignored) is
//! the long version that `deploy/local/chaos.sh` drives through `CHAOS_*` variables.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use ipfs_cluster_tests::*;

/// The fault tests start whole clusters: run them one after another on this small machine.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Random numbers without a dependency (xorshift64*); the seed is printed so a run can be
/// repeated with `CHAOS_SEED`.
mod rng {
    use std::sync::atomic::{AtomicU64, Ordering};

    pub struct Rng(AtomicU64, u64);

    impl Rng {
        pub fn new(seed: u64) -> Self {
            Self(AtomicU64::new(seed | 1), seed)
        }

        /// The seed it started from (CHAOS_SEED repeats it).
        pub fn seed(&self) -> u64 {
            self.1
        }

        pub fn from_env() -> Self {
            let seed = std::env::var("CHAOS_SEED")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| {
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_nanos() as u64
                        ^ ((std::process::id() as u64) << 32)
                });
            println!("chaos: seed {seed} (repeat with CHAOS_SEED={seed})");
            Self::new(seed)
        }

        pub fn next(&self) -> u64 {
            let mut x = self.0.load(Ordering::Relaxed);
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0.store(x, Ordering::Relaxed);
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        pub fn below(&self, n: u64) -> u64 {
            self.next() % n.max(1)
        }

        pub fn millis(&self, lo: u64, hi: u64) -> std::time::Duration {
            std::time::Duration::from_millis(lo + self.below(hi - lo + 1))
        }
    }
}
use rng::Rng;

/// CIDv1, raw codec, identity multihash of random bytes: `bafkq…`. IPFS "has" every block
/// of such a CID (the data is in the CID), so pinning never fetches anything.
fn identity_cid(rng: &Rng) -> String {
    let mut data = [0u8; 16];
    for chunk in data.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next().to_le_bytes()[..chunk.len()]);
    }
    let mut bytes = vec![0x01, 0x55, 0x00, data.len() as u8];
    bytes.extend_from_slice(&data);
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::from("b");
    let (mut buf, mut bits) = (0u32, 0u32);
    for b in bytes {
        buf = (buf << 8) | b as u32;
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buf >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buf << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// How the test reaches a peer's HTTP endpoints: directly on loopback, or from inside the
/// peer's network namespace (curl under `ip netns exec`; no address in the host namespace).
#[derive(Clone, Debug)]
enum Access {
    Host,
    Ns(String),
}

impl Access {
    async fn req(&self, method: &str, url: &str, within: Duration) -> Result<(u16, String)> {
        match self {
            Access::Host => tokio::time::timeout(within, http(method, url, None))
                .await
                .with_context(|| format!("{method} {url}: no answer within {within:?}"))?,
            Access::Ns(ns) => {
                let out = tokio::process::Command::new("ip")
                    .args(["netns", "exec", ns, "curl", "-sS", "-m"])
                    .arg(within.as_secs().max(1).to_string())
                    .args(["-X", method, "-w", "\n%{http_code}", url])
                    .stdin(Stdio::null())
                    .kill_on_drop(true)
                    .output()
                    .await?;
                if !out.status.success() {
                    bail!(
                        "{method} {url} in {ns}: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
                Ok((code.trim().parse()?, body.to_string()))
            }
        }
    }

    /// `ip netns exec NS` prefix for a process started in this place.
    fn command(&self, program: &Path) -> Command {
        match self {
            Access::Host => Command::new(program),
            Access::Ns(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(program);
                c
            }
        }
    }
}

/// Stops a process off the runtime (Proc's methods sleep).
async fn stop_proc(mut p: Proc, sig: &'static str, within: Duration) {
    let _ = tokio::task::spawn_blocking(move || {
        if sig == "TERM" {
            p.terminate(within);
        } else {
            kill_group(p.pid(), sig);
            let until = Instant::now() + within;
            while p.try_wait().is_none() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        drop(p);
    })
    .await;
}

/// Whether a process still exists and has not exited. Every thread counts: after a SIGKILL
/// the main thread can be a zombie while other threads still tear down and hold the file
/// table (and so the listening sockets); a peer started again in that window found its
/// transport port "already in use" (the 2026-12-07 5-peer run).
fn alive(pid: u32) -> bool {
    let running = |stat: &str| {
        stat.rsplit_once(')')
            .map(|(_, r)| r.trim_start())
            .is_some_and(|r| !r.starts_with('Z') && !r.starts_with('X'))
    };
    match std::fs::read_dir(format!("/proc/{pid}/task")) {
        Ok(tasks) => tasks
            .flatten()
            .any(|t| std::fs::read_to_string(t.path().join("stat")).is_ok_and(|st| running(&st))),
        Err(_) => std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|st| running(&st)),
    }
}

fn kill_group(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([format!("-{sig}"), "--".into(), format!("-{pid}")])
        .status();
}

/// A Kubo node (the test kit's launcher) we can stop, kill and start again on the same
/// repo and ports, inside the peer's network namespace when it has one.
struct Ipfs {
    dir: PathBuf,
    ports: [u16; 2],
    access: Access,
    /// The address its swarm listens on (127.0.0.1, or the peer's namespace address).
    ip: String,
    /// Its libp2p peer id (known after the first start).
    id: String,
    proc: Option<Proc>,
}

impl Ipfs {
    fn new(dir: &Path, access: Access, ip: String) -> Self {
        Self {
            dir: dir.to_path_buf(),
            ports: [free_port(), free_port()],
            access,
            ip,
            id: String::new(),
            proc: None,
        }
    }

    /// Where other IPFS nodes dial it.
    fn swarm_addr(&self) -> String {
        format!("/ip4/{}/tcp/{}/p2p/{}", self.ip, self.ports[1], self.id)
    }

    /// `ipfs add` of `data` (CIDv1, not pinned) on this node; returns the CID. The blocks
    /// exist only here until another node fetches them.
    async fn add(access: &Access, api: &str, data: Vec<u8>) -> Result<String> {
        use tokio::io::AsyncWriteExt;
        let url = format!("{api}/api/v0/add?pin=false&cid-version=1&quieter=true");
        let mut cmd = match access {
            Access::Host => tokio::process::Command::new("curl"),
            Access::Ns(ns) => {
                let mut c = tokio::process::Command::new("ip");
                c.args(["netns", "exec", ns, "curl"]);
                c
            }
        };
        let mut child = cmd
            .args(["-sS", "-m", "30", "-X", "POST", "-F", "file=@-", &url])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let mut stdin = child.stdin.take().context("curl stdin")?;
        stdin.write_all(&data).await?;
        drop(stdin);
        let out = child.wait_with_output().await?;
        let text = String::from_utf8_lossy(&out.stdout);
        let v: serde_json::Value = serde_json::from_str(text.lines().last().unwrap_or(""))
            .with_context(|| {
                format!(
                    "ipfs add on {api}: {text} {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )
            })?;
        Ok(v["Hash"]
            .as_str()
            .with_context(|| format!("ipfs add on {api}: {v}"))?
            .to_string())
    }

    fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports[0])
    }

    fn multiaddr(&self) -> String {
        format!("/ip4/127.0.0.1/tcp/{}", self.ports[0])
    }

    async fn start(&mut self) -> Result<()> {
        let wrap: Vec<&str> = match &self.access {
            Access::Host => vec![],
            Access::Ns(ns) => vec!["ip", "netns", "exec", ns],
        };
        let mut cmd = KuboNode::command(&self.dir, self.ports[0], self.ports[1], &wrap)?;
        cmd.env("KUBO_SWARM_IP", &self.ip);
        self.proc = Some(Proc::spawn("ipfs", &mut cmd)?);
        let url = format!("{}/api/v0/id", self.api_url());
        let access = self.access.clone();
        let id = Arc::new(Mutex::new(String::new()));
        wait_for(Duration::from_secs(120), || {
            let (access, url, id) = (access.clone(), url.clone(), id.clone());
            async move {
                match access.req("POST", &url, Duration::from_secs(5)).await {
                    Ok((200, body)) => {
                        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                        *id.lock().unwrap() = v["ID"].as_str().unwrap_or_default().to_string();
                        true
                    }
                    _ => false,
                }
            }
        })
        .await
        .with_context(|| {
            format!(
                "IPFS node did not answer; log: {}",
                self.dir.join("ipfs.log").display()
            )
        })?;
        self.id = id.lock().unwrap().clone();
        Ok(())
    }

    /// Connects this node to the others (as peering or a DHT would after a restart): real
    /// content moves between IPFS nodes only over such connections. Best effort: a node
    /// that is down connects to this one when it starts again.
    async fn connect_to(&self, others: &[String]) {
        for addr in others {
            let url = format!("{}/api/v0/swarm/connect?arg={addr}", self.api_url());
            let _ = self.access.req("POST", &url, Duration::from_secs(10)).await;
        }
    }

    /// SIGTERM: a clean stop.
    async fn stop(&mut self) {
        if let Some(p) = self.proc.take() {
            stop_proc(p, "TERM", Duration::from_secs(30)).await;
        }
    }

    /// SIGKILL: a crash (Kubo's repo lock dies with the process).
    async fn kill(&mut self) {
        if let Some(p) = self.proc.take() {
            stop_proc(p, "KILL", Duration::from_secs(30)).await;
        }
    }
}

/// One cluster peer: its folder, its daemon (the launcher and its four services, one
/// process group), its IPFS node, and how to reach it.
struct Peer {
    name: String,
    pd: PeerDir,
    /// Where its processes run (the host, or its network namespace).
    access: Access,
    /// How clients reach its REST API, and its URL (loopback, or its namespace address
    /// through the test's link into the switch).
    client: Access,
    rest_url: String,
    /// Its consensus service's metrics endpoint (`/metrics`, who leads), when enabled.
    metrics_url: Option<String>,
    /// Its tmpfs (its config/data folder lives inside), for the full-disk fault.
    mnt: Option<PathBuf>,
    /// Where daemon.log goes (outside a tmpfs data folder).
    log: PathBuf,
    /// Extra environment for the daemon (e.g. the namespace's swarm address).
    env: Vec<(String, String)>,
    daemon: Option<Proc>,
    ipfs: Ipfs,
    id: String,
    swarm: String,
    /// Kill times of each service since the daemon started (the launcher gives up after 5
    /// restarts of one service within 120 s).
    kills: HashMap<&'static str, Vec<Instant>>,
}

impl Peer {
    fn rest(&self) -> String {
        self.rest_url.clone()
    }

    fn spawn_daemon(&self, extra: &[&str]) -> Result<Proc> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut cmd = self.access.command(&bin("ipfs-cluster-service"));
        cmd.arg("--config")
            .arg(&self.pd.dir)
            .arg("daemon")
            .args(extra)
            .env("RUST_LOG", ipfs_cluster_testkit::peer_log_filter())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        Proc::spawn(&format!("{} daemon", self.name), &mut cmd)
    }

    async fn start(&mut self, extra: &[&str]) -> Result<()> {
        let mut p = self.spawn_daemon(extra)?;
        let url = format!("{}/id", self.rest());
        let access = self.client.clone();
        let ok = wait_for(Duration::from_secs(120), || {
            let (access, url) = (access.clone(), url.clone());
            async move {
                matches!(
                    access.req("GET", &url, Duration::from_secs(5)).await,
                    Ok((200, _))
                )
            }
        })
        .await;
        if ok.is_err() {
            let exited = p.try_wait();
            stop_proc(p, "KILL", Duration::from_secs(5)).await;
            bail!(
                "{} did not become ready (exit: {exited:?}); log:\n{}",
                self.name,
                self.log_tail()
            );
        }
        self.daemon = Some(p);
        self.kills.clear();
        Ok(())
    }

    async fn ready(&self, within: Duration) -> Result<()> {
        let url = format!("{}/id", self.rest());
        wait_for(within, || {
            let (access, url) = (self.client.clone(), url.clone());
            async move {
                matches!(
                    access.req("GET", &url, Duration::from_secs(5)).await,
                    Ok((200, _))
                )
            }
        })
        .await
        .with_context(|| {
            format!(
                "{} REST API is not back; log:\n{}",
                self.name,
                self.log_tail()
            )
        })
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn daemon_pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Proc::pid)
    }

    /// The PID of one of the launcher's service processes (a child running that binary).
    fn service_pid(&self, binary: &str) -> Option<u32> {
        let daemon = self.daemon_pid()?;
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|s| s.parse::<u32>().ok());
            if ppid != Some(daemon) {
                continue;
            }
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
            if String::from_utf8_lossy(argv0).ends_with(binary) {
                return Some(pid);
            }
        }
        None
    }
}

/// Pins and unpins sent by the workload and what the cluster answered.
#[derive(Default)]
struct Ledger {
    /// cid → the state the cluster acknowledged last (`Some(true)` pinned, `Some(false)`
    /// unpinned), or `None` while the last operation on it is in doubt (error or no answer).
    cids: Mutex<BTreeMap<String, Entry>>,
    sent: AtomicU64,
    acked: AtomicU64,
    failed: AtomicU64,
    /// The first error answers seen, to show what clients were told.
    samples: Mutex<Vec<String>>,
    /// Acknowledged pins whose first unpin was answered 404 "not part of the pinset": the
    /// pin was gone before anyone unpinned it, i.e. lost.
    lost_on_unpin: Mutex<Vec<String>>,
    /// The replication factor the pins were sent with (`replication_factor_min`; 0 = every
    /// peer): the checker wants each pin on at least that many IPFS nodes.
    rmin: usize,
    /// Set while a majority of the peers is down on purpose: failed writes then count as
    /// `refused_quorum` (expected refusals, still resolved and checked like any other).
    quorum_down: AtomicBool,
    refused_quorum: AtomicU64,
    /// Pins of real content (blocks added to one IPFS node, fetched by the others).
    content_pins: AtomicU64,
    /// The allocations each acknowledged pin was answered with (sorted), to count the pins
    /// the cluster re-allocated afterwards (repinning).
    first_allocations: Mutex<HashMap<String, Vec<String>>>,
    /// crdt mode: writes converge instead of being linearised, so a pin acknowledged by
    /// one peer may not have reached another yet, where an unpin would rightly answer
    /// "not part of the pinset". The workload unpins through the peer that acknowledged
    /// the pin (read your writes), which keeps an unpin's 404 a proof of loss.
    crdt: bool,
    /// crdt mode: cid → the REST URL of the peer that acknowledged its pin.
    acked_via: Mutex<HashMap<String, String>>,
}

#[derive(Clone, Debug)]
struct Entry {
    acked: Option<bool>,
    /// The operation in doubt: true pin, false unpin.
    intended: bool,
}

impl Ledger {
    fn note_error(&self, what: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        if self.quorum_down.load(Ordering::Relaxed) {
            self.refused_quorum.fetch_add(1, Ordering::Relaxed);
        }
        let mut s = self.samples.lock().unwrap();
        if s.len() < 8 {
            s.push(what);
        }
    }

    /// One pin or unpin through `peer`; updates the ledger with the answer. An unpin is
    /// only sent for a CID `reserve_unpin` took.
    async fn op(&self, access: &Access, rest: &str, cid: &str, pin: bool) -> Option<bool> {
        let method = if pin { "POST" } else { "DELETE" };
        if pin {
            self.cids.lock().unwrap().insert(
                cid.to_string(),
                Entry {
                    acked: None,
                    intended: true,
                },
            );
        }
        self.sent.fetch_add(1, Ordering::Relaxed);
        let r = access
            .req(
                method,
                &format!("{rest}/pins/{cid}"),
                Duration::from_secs(25),
            )
            .await;
        let acked = |l: &Self| {
            l.acked.fetch_add(1, Ordering::Relaxed);
            l.cids.lock().unwrap().insert(
                cid.to_string(),
                Entry {
                    acked: Some(pin),
                    intended: pin,
                },
            );
            Some(pin)
        };
        match r {
            Ok((st, body)) if (200..300).contains(&st) => {
                if pin {
                    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                    if let Some(a) = v["allocations"].as_array() {
                        let mut a: Vec<String> = a
                            .iter()
                            .filter_map(|x| x.as_str().map(str::to_string))
                            .collect();
                        a.sort();
                        self.first_allocations
                            .lock()
                            .unwrap()
                            .insert(cid.to_string(), a);
                    }
                    if self.crdt {
                        self.acked_via
                            .lock()
                            .unwrap()
                            .insert(cid.to_string(), rest.to_string());
                    }
                }
                acked(self)
            }
            // The first unpin of an acknowledged pin cannot meet "not part of the pinset"
            // unless the pin was lost: count it, never accept it as a successful unpin.
            Ok((404, body)) if !pin => {
                self.lost_on_unpin.lock().unwrap().push(format!(
                    "{cid}: DELETE via {rest} answered 404 {}",
                    body.trim()
                ));
                self.cids.lock().unwrap().insert(
                    cid.to_string(),
                    Entry {
                        acked: Some(false),
                        intended: false,
                    },
                );
                None
            }
            Ok((st, body)) => {
                self.note_error(format!("{method} via {rest}: {st} {}", body.trim()));
                None
            }
            Err(e) => {
                self.note_error(format!("{method} via {rest}: {e:#}"));
                None
            }
        }
    }

    /// Takes an acknowledged-pinned CID for an unpin (marked in doubt at once, so no other
    /// worker picks it too), or None when there is none.
    fn reserve_unpin(&self, rng: &Rng) -> Option<String> {
        let mut cids = self.cids.lock().unwrap();
        let pinned: Vec<&String> = cids
            .iter()
            .filter(|(_, e)| e.acked == Some(true))
            .map(|(c, _)| c)
            .collect();
        if pinned.is_empty() {
            return None;
        }
        let cid = pinned[rng.below(pinned.len() as u64) as usize].clone();
        cids.insert(
            cid.clone(),
            Entry {
                acked: None,
                intended: false,
            },
        );
        Some(cid)
    }
}

/// Pins new CIDs and unpins some acknowledged ones through random peers until `stop`.
async fn workload(
    targets: Vec<(Access, String)>,
    ledger: Arc<Ledger>,
    rng: Arc<Rng>,
    stop: Arc<AtomicBool>,
) {
    workload_with(targets, ledger, rng, stop, true, Vec::new()).await
}

/// `workload`, back to back when `pause` is false (the load phase's connections), and with
/// 1 pin in 20 of real content when `ipfs` lists the IPFS nodes (access, API URL): random
/// bytes added (not pinned) to one node, then pinned through the cluster, so the allocated
/// peers' nodes must fetch the blocks from it.
async fn workload_with(
    targets: Vec<(Access, String)>,
    ledger: Arc<Ledger>,
    rng: Arc<Rng>,
    stop: Arc<AtomicBool>,
    pause: bool,
    ipfs: Vec<(Access, String)>,
) {
    while !stop.load(Ordering::Relaxed) {
        let (access, rest) = &targets[rng.below(targets.len() as u64) as usize];
        let unpin_candidate = if rng.below(10) < 3 {
            ledger.reserve_unpin(&rng)
        } else {
            None
        };
        let answered = match unpin_candidate {
            Some(cid) => {
                // crdt: through the peer that acknowledged the pin (see `Ledger::crdt`).
                let via = ledger.acked_via.lock().unwrap().get(&cid).cloned();
                let (access, rest) = via
                    .and_then(|v| targets.iter().find(|(_, r)| *r == v))
                    .map(|t| (&t.0, &t.1))
                    .unwrap_or((access, rest));
                ledger.op(access, rest, &cid, false).await.is_some()
            }
            None if !ipfs.is_empty() && rng.below(20) == 0 => {
                let (ia, api) = &ipfs[rng.below(ipfs.len() as u64) as usize];
                let len = 1024 + rng.below(300 * 1024) as usize;
                let data: Vec<u8> = (0..len.div_ceil(8))
                    .flat_map(|_| rng.next().to_le_bytes())
                    .take(len)
                    .collect();
                // An IPFS node that is down now is no client's choice: skip.
                match Ipfs::add(ia, api, data).await {
                    Ok(cid) => {
                        ledger.content_pins.fetch_add(1, Ordering::Relaxed);
                        ledger.op(access, rest, &cid, true).await.is_some()
                    }
                    Err(_) => true,
                }
            }
            None => ledger
                .op(access, rest, &identity_cid(&rng), true)
                .await
                .is_some(),
        };
        if pause {
            tokio::time::sleep(rng.millis(20, 120)).await;
        } else if !answered {
            // A client whose peer is down (refused at once) tries again a moment later
            // rather than spinning.
            tokio::time::sleep(rng.millis(100, 400)).await;
        }
    }
}

/// Resolves every operation left in doubt by repeating it until the cluster answers
/// definitively (pin: 2xx; unpin: 2xx, or 404 "not part of the pinset").
async fn settle_in_doubt(
    ledger: &Ledger,
    targets: &[(Access, String)],
    within: Duration,
) -> Result<usize> {
    let doubtful: Vec<(String, bool)> = ledger
        .cids
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, e)| e.acked.is_none())
        .map(|(c, e)| (c.clone(), e.intended))
        .collect();
    let until = Instant::now() + within;
    for (i, (cid, pin)) in doubtful.iter().enumerate() {
        let mut last: String;
        loop {
            let (access, rest) = &targets[i % targets.len()];
            let method = if *pin { "POST" } else { "DELETE" };
            match access
                .req(
                    method,
                    &format!("{rest}/pins/{cid}"),
                    Duration::from_secs(25),
                )
                .await
            {
                Ok((st, _)) if (200..300).contains(&st) || (!pin && st == 404) => {
                    ledger.cids.lock().unwrap().insert(
                        cid.clone(),
                        Entry {
                            acked: Some(*pin),
                            intended: *pin,
                        },
                    );
                    break;
                }
                Ok((st, body)) => last = format!("{st} {body}"),
                Err(e) => last = format!("{e:#}"),
            }
            if Instant::now() > until {
                bail!("the cluster never answered {method} {cid} definitively: {last}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Ok(doubtful.len())
}

/// The independent checker: only the peers' public REST API and the IPFS nodes' pin/ls.
mod checker {
    use super::*;

    #[derive(Debug, Default)]
    pub struct Report {
        pub sent: u64,
        pub acknowledged: u64,
        pub failed: u64,
        pub resolved_in_doubt: usize,
        pub pinned: usize,
        /// Acknowledged pins missing from the final state, plus those an unpin found gone.
        pub lost: usize,
        /// The part of `lost` found by an unpin's 404.
        pub lost_on_unpin: usize,
        pub resurrected: usize,
        pub unknown: usize,
        pub ipfs_missing: usize,
        /// Pins of ours an IPFS node holds although the cluster does not allocate them to
        /// it (an acknowledged unpin left on IPFS).
        pub ipfs_extra: usize,
        /// Pins held by fewer IPFS nodes than the replication factor asked (`rmin`; every
        /// peer when 0), or allocated to fewer peers than that.
        pub under_replicated: usize,
        /// Pins whose final allocations differ from those their pin was answered with
        /// (re-allocated by repinning); a figure, not a failure.
        pub reallocated: usize,
        pub faults: u64,
    }

    impl Report {
        /// Nothing lost, resurrected, unknown, missing or extra.
        pub fn clean(&self) -> bool {
            self.lost
                + self.resurrected
                + self.unknown
                + self.ipfs_missing
                + self.ipfs_extra
                + self.under_replicated
                == 0
        }
    }

    impl std::fmt::Display for Report {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(
                f,
                "checker: sent={} acknowledged={} failed_or_in_doubt={} resolved_after={} final_pins={} lost={} lost_on_unpin={} resurrected={} unknown={} ipfs_missing={} ipfs_extra={} under_replicated={} reallocated={} faults_injected={}",
                self.sent, self.acknowledged, self.failed, self.resolved_in_doubt, self.pinned,
                self.lost, self.lost_on_unpin, self.resurrected, self.unknown, self.ipfs_missing,
                self.ipfs_extra, self.under_replicated, self.reallocated, self.faults
            )
        }
    }

    /// A peer as the checker sees it: its REST API, its IPFS API, and how to reach both.
    pub struct Target {
        pub access: Access,
        pub rest: String,
        pub ipfs_access: Access,
        pub ipfs: String,
    }

    /// `GET /allocations?filter=all`: cid → sorted allocations ([] = every peer).
    pub async fn allocations(t: &Target) -> Result<BTreeMap<String, Vec<String>>> {
        let (st, text) = t
            .access
            .req(
                "GET",
                &format!("{}/allocations?filter=all", t.rest),
                Duration::from_secs(30),
            )
            .await?;
        if st != 200 {
            bail!("GET {}/allocations: {st} {text}", t.rest);
        }
        let mut out = BTreeMap::new();
        for v in serde_json::Deserializer::from_str(&text).into_iter::<serde_json::Value>() {
            let v = v.with_context(|| format!("GET {}/allocations: not JSON", t.rest))?;
            let items = match v {
                serde_json::Value::Array(a) => a,
                other => vec![other],
            };
            for p in items {
                let Some(cid) = p["cid"].as_str() else {
                    bail!("GET {}/allocations: stream error {p}", t.rest);
                };
                let mut allocs: Vec<String> = p["allocations"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                allocs.sort();
                out.insert(cid.to_string(), allocs);
            }
        }
        Ok(out)
    }

    /// The recursive pins of a target's IPFS node (base32).
    pub async fn ipfs_pinned(t: &Target) -> Result<BTreeSet<String>> {
        let url = format!("{}/api/v0/pin/ls?type=recursive&cid-base=base32", t.ipfs);
        let (st, text) = t
            .ipfs_access
            .req("POST", &url, Duration::from_secs(30))
            .await?;
        if st != 200 {
            bail!("pin/ls on {}: {st} {text}", t.ipfs);
        }
        let v: serde_json::Value = serde_json::from_str(&text)?;
        Ok(v["Keys"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default())
    }

    /// Waits (bounded) for the peers to agree and the IPFS nodes to hold their pins, then
    /// compares everything with what clients were told; fails unless the report is clean.
    pub async fn check(
        targets: &[Target],
        ledger: &Ledger,
        resolved: usize,
        faults: u64,
    ) -> Result<Report> {
        check_within(targets, ledger, resolved, faults, Duration::from_secs(120)).await
    }

    /// `check`, waiting at most `settle` for the IPFS nodes.
    pub async fn check_within(
        targets: &[Target],
        ledger: &Ledger,
        resolved: usize,
        faults: u64,
        settle: Duration,
    ) -> Result<Report> {
        let (report, examples) = inspect(targets, ledger, resolved, faults, settle).await?;
        if !report.clean() {
            bail!("{report}\n{}", examples.join("\n"));
        }
        Ok(report)
    }

    /// The counts behind `check` (and examples of each finding), waiting at most `settle`
    /// for the IPFS nodes; an error only when the peers cannot be read or never agree.
    pub async fn inspect(
        targets: &[Target],
        ledger: &Ledger,
        resolved: usize,
        faults: u64,
        settle: Duration,
    ) -> Result<(Report, Vec<String>)> {
        // Every peer's cluster peer id, to map allocations to IPFS nodes.
        let mut ids = Vec::new();
        for t in targets {
            let (st, text) = t
                .access
                .req("GET", &format!("{}/id", t.rest), Duration::from_secs(30))
                .await?;
            if st != 200 {
                bail!("GET {}/id: {st} {text}", t.rest);
            }
            let v: serde_json::Value = serde_json::from_str(&text)?;
            ids.push(v["id"].as_str().context("no id in /id")?.to_string());
        }

        // 1. All peers agree (followers may lag a little: bounded wait).
        let until = Instant::now() + Duration::from_secs(90);
        let state = loop {
            let mut states = Vec::new();
            let mut err = None;
            for t in targets {
                match allocations(t).await {
                    Ok(s) => states.push(s),
                    Err(e) => err = Some(e),
                }
            }
            if err.is_none() && states.windows(2).all(|w| w[0] == w[1]) {
                break states.swap_remove(0);
            }
            if Instant::now() > until {
                if let Some(e) = err {
                    bail!("a peer cannot list its allocations: {e:#}");
                }
                let mut diff = String::new();
                for (i, s) in states.iter().enumerate() {
                    let only: Vec<_> = s
                        .iter()
                        .filter(|(k, v)| states[0].get(*k) != Some(v))
                        .take(3)
                        .collect();
                    diff.push_str(&format!(
                        "\n  peer {i}: {} pins; differing from peer 0: {only:?}",
                        s.len()
                    ));
                }
                bail!("the peers do not agree on the pinset after 90 s:{diff}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };

        // 2. Nothing acknowledged is lost, nothing acknowledged as unpinned came back.
        let mut report = Report {
            sent: ledger.sent.load(Ordering::Relaxed),
            acknowledged: ledger.acked.load(Ordering::Relaxed),
            failed: ledger.failed.load(Ordering::Relaxed),
            resolved_in_doubt: resolved,
            pinned: state.len(),
            faults,
            ..Default::default()
        };
        let cids = ledger.cids.lock().unwrap().clone();
        let mut examples = Vec::new();
        for (cid, e) in &cids {
            match e.acked {
                Some(true) if !state.contains_key(cid) => {
                    report.lost += 1;
                    examples.push(format!("lost {cid}"));
                }
                Some(false) if state.contains_key(cid) => {
                    report.resurrected += 1;
                    examples.push(format!("came back {cid}"));
                }
                None => bail!("checker called with {cid} still in doubt"),
                _ => {}
            }
        }
        for cid in state.keys() {
            if !cids.contains_key(cid) {
                report.unknown += 1;
                examples.push(format!("never sent {cid}"));
            }
        }
        {
            let first = ledger.first_allocations.lock().unwrap();
            report.reallocated = state
                .iter()
                .filter(|(c, a)| first.get(*c).is_some_and(|f| f != *a))
                .count();
        }
        for l in ledger.lost_on_unpin.lock().unwrap().iter() {
            report.lost += 1;
            report.lost_on_unpin += 1;
            examples.push(format!("lost (found by an unpin) {l}"));
        }

        // 3. Every allocated peer's IPFS node holds the pin once statuses settle.
        let wanted: Vec<BTreeSet<String>> = ids
            .iter()
            .map(|id| {
                state
                    .iter()
                    .filter(|(_, a)| a.is_empty() || a.contains(id))
                    .map(|(c, _)| c.clone())
                    .collect()
            })
            .collect();
        // ... and no IPFS node holds a pin of ours that is not allocated to it.
        // ... and each pin is on at least `rmin` IPFS nodes (every node when 0).
        let need = if ledger.rmin == 0 {
            targets.len()
        } else {
            ledger.rmin.min(targets.len())
        };
        let until = Instant::now() + settle;
        loop {
            let (mut missing, mut extra) = (0, 0);
            let mut first = None;
            let mut first_extra = None;
            let mut holders: HashMap<&String, usize> = HashMap::new();
            for (t, want) in targets.iter().zip(&wanted) {
                match ipfs_pinned(t).await {
                    Ok(have) => {
                        for c in state.keys() {
                            if have.contains(c) {
                                *holders.entry(c).or_default() += 1;
                            }
                        }
                        let m: Vec<_> = want.difference(&have).collect();
                        if first.is_none() {
                            first = m.first().map(|c| (t.rest.clone(), (*c).clone()));
                        }
                        missing += m.len();
                        let x: Vec<_> = have
                            .iter()
                            .filter(|c| cids.contains_key(*c) && !want.contains(*c))
                            .collect();
                        if first_extra.is_none() {
                            first_extra = x.first().map(|c| (t.rest.clone(), (*c).clone()));
                        }
                        extra += x.len();
                    }
                    Err(_) => missing += want.len(),
                }
            }
            report.ipfs_missing = missing;
            report.ipfs_extra = extra;
            let under: Vec<&String> = state
                .iter()
                .filter(|(c, a)| {
                    holders.get(c).copied().unwrap_or(0) < need || (!a.is_empty() && a.len() < need)
                })
                .map(|(c, _)| c)
                .collect();
            report.under_replicated = under.len();
            if missing == 0 && extra == 0 && under.is_empty() {
                break;
            }
            if Instant::now() > until {
                if let Some((rest, cid)) = first {
                    let t = targets.iter().find(|t| t.rest == rest).unwrap();
                    let status = t
                        .access
                        .req(
                            "GET",
                            &format!("{rest}/pins/{cid}"),
                            Duration::from_secs(30),
                        )
                        .await
                        .map(|(_, b)| b)
                        .unwrap_or_else(|e| e.to_string());
                    examples.push(format!("IPFS of {rest} lacks {cid}; status: {status}"));
                }
                if let Some(cid) = under.first() {
                    examples.push(format!(
                        "{cid} is on {} IPFS nodes, allocated to {:?}; at least {need} wanted",
                        holders.get(cid).copied().unwrap_or(0),
                        state[*cid]
                    ));
                }
                if let Some((rest, cid)) = first_extra {
                    examples.push(format!(
                        "IPFS of {rest} still pins {cid}, which the cluster does not allocate to it"
                    ));
                }
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }

        println!("{report}");
        Ok((report, examples))
    }
}

/// The fault kinds. The first four take one peer (or its IPFS node) down; `Overlap`,
/// `LeaderKill` and `QuorumLoss` take several down at once; `Partition` needs the peers in
/// network namespaces and `FullDisk` their folders on a tmpfs (see `Mix`).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    KillService,
    KillPeer,
    StopCont,
    KillIpfs,
    /// ⌊(n−1)/2⌋ peers down at once, each stopped, crashed or its IPFS node killed.
    Overlap,
    /// The raft leader crashed while a follower is stopped.
    LeaderKill,
    /// A majority stopped or crashed under load (writes refused until it is back).
    QuorumLoss,
    /// 1 to ⌊(n−1)/2⌋ peers cut off the network for a few seconds.
    Partition,
    /// A peer's disk full for a few seconds.
    FullDisk,
}

/// How one peer is taken down in a compound fault.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Down {
    Stop,
    Crash,
    IpfsKill,
}

/// What was injected (the results file's figures). Every part of a compound fault counts
/// as one fault of its kind, and as `overlapping` when another was active at the same time.
#[derive(Debug, Default, Clone)]
struct FaultStats {
    by_kind: BTreeMap<&'static str, u64>,
    overlapping: u64,
    leader_kills: u64,
    quorum_losses: u64,
}

const FAULT_KINDS: [&str; 8] = [
    "kill_service",
    "kill_peer",
    "stop",
    "ipfs_term",
    "ipfs_kill",
    "partition",
    "full_disk",
    "truncated_store",
];

impl FaultStats {
    fn add(&mut self, kind: &'static str) {
        *self.by_kind.entry(kind).or_default() += 1;
    }
}

impl std::fmt::Display for FaultStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for k in FAULT_KINDS {
            write!(f, "{k}={} ", self.by_kind.get(k).copied().unwrap_or(0))?;
        }
        write!(
            f,
            "overlapping={} leader_kills={} quorum_losses={}",
            self.overlapping, self.leader_kills, self.quorum_losses
        )
    }
}

const SERVICE_BINS: [(&str, &str); 4] = [
    ("transport", "ipfs-cluster-transport"),
    ("consensus", "ipfs-cluster-consensus"),
    ("ipfs-connector", "ipfs-cluster-ipfs-connector"),
    ("gateway", "ipfs-cluster-gateway"),
];

/// Peer i's config/data folder, given its temp folder.
type PeerDirFn = Box<dyn Fn(usize, &Path) -> PathBuf>;

/// Where a cluster's peers live and how they are configured.
struct Layout {
    /// Where peer i's processes run.
    access: Box<dyn Fn(usize) -> Access>,
    /// Peer i's address: its cluster swarm address, and with `on_ip` also its REST API's
    /// and its IPFS node's swarm address.
    ip: Box<dyn Fn(usize) -> String>,
    /// Peer i's config/data folder, given its temp folder.
    peer_dir: PeerDirFn,
    /// The REST API on 0.0.0.0, reached by the test at `ip(i)` (namespaces with a link from
    /// the host), and the IPFS node's swarm on `ip(i)`.
    on_ip: bool,
    /// Extra service.json overrides (CLUSTER_* variables) for every peer.
    env: Vec<(String, String)>,
    /// Metrics endpoints on (the test asks the consensus who leads).
    metrics: bool,
    /// `init --consensus crdt` peers (each listing the others in `peer_addresses`, heads
    /// rebroadcast every 2 s) instead of raft.
    crdt: bool,
}

impl Layout {
    fn loopback() -> Self {
        Self {
            access: Box::new(|_| Access::Host),
            ip: Box::new(|_| "127.0.0.1".into()),
            peer_dir: Box::new(|_, d| d.join("peer")),
            on_ip: false,
            env: Vec::new(),
            metrics: false,
            crdt: false,
        }
    }

    /// `loopback`, crdt peers.
    fn loopback_crdt() -> Self {
        Self {
            crdt: true,
            ..Self::loopback()
        }
    }
}

/// crdt peers rebroadcast their heads every 2 s (upstream's default is 1 min): a peer that
/// was down or cut off catches up within seconds of coming back.
const CRDT_ENV: [(&str, &str); 1] = [("CLUSTER_CRDT_REBROADCASTINTERVAL", "2s")];

/// A cluster of N peers on loopback or in namespaces.
struct Cluster {
    /// crdt consensus (no leader, no quorum: writes are taken by any live peer).
    crdt: bool,
    peers: Vec<Peer>,
    faults: u64,
    stats: FaultStats,
    /// The workload's ledger while faults run (quorum losses mark it).
    ledger: Option<Arc<Ledger>>,
    /// The namespaces (partitions) and tmpfs mounts (full disks) of a mixed run; dropped
    /// after the peers.
    net: Option<Netns>,
    disks: Vec<Tmpfs>,
    _mnt_root: Option<tempfile::TempDir>,
    _tmp: tempfile::TempDir,
}

impl Cluster {
    /// Starts N IPFS nodes and N peers (peer 0 first, the others `--bootstrap` it).
    /// `access(i)` says where peer i lives; `swarm_ip(i)` its cluster swarm address.
    async fn start(
        n: usize,
        access: impl Fn(usize) -> Access + 'static,
        swarm_ip: impl Fn(usize) -> String + 'static,
    ) -> Result<Self> {
        Self::start_in(n, access, swarm_ip, |_, d| d.join("peer")).await
    }

    /// As `start`, with peer i's config/data folder at `peer_dir(i, its temp folder)`.
    async fn start_in(
        n: usize,
        access: impl Fn(usize) -> Access + 'static,
        swarm_ip: impl Fn(usize) -> String + 'static,
        peer_dir: impl Fn(usize, &Path) -> PathBuf + 'static,
    ) -> Result<Self> {
        Self::start_layout(
            n,
            Layout {
                access: Box::new(access),
                ip: Box::new(swarm_ip),
                peer_dir: Box::new(peer_dir),
                ..Layout::loopback()
            },
        )
        .await
    }

    async fn start_layout(n: usize, l: Layout) -> Result<Self> {
        // KEEP_TEST_DIRS=1 keeps every peer's folder (daemon.log, stores) for a post-mortem.
        let tmp = ipfs_cluster_testkit::test_dir()?;
        let secret = "c4".repeat(32);
        let mut ipfs_nodes = Vec::new();
        let mut starts = Vec::new();
        for i in 0..n {
            let dir = tmp.path().join(format!("n{i}"));
            std::fs::create_dir_all(&dir)?;
            let ip = if l.on_ip {
                (l.ip)(i)
            } else {
                "127.0.0.1".into()
            };
            let mut node = Ipfs::new(&dir, (l.access)(i), ip);
            starts.push(tokio::spawn(async move {
                let r = node.start().await;
                (node, r)
            }));
        }
        for s in starts {
            let (node, r) = s.await?;
            ipfs_nodes.push(node);
            r?;
        }
        let addrs: Vec<String> = ipfs_nodes.iter().map(Ipfs::swarm_addr).collect();
        for node in &ipfs_nodes {
            node.connect_to(&addrs).await;
        }
        let mut peers = Vec::new();
        for (i, ipfs) in ipfs_nodes.into_iter().enumerate() {
            let dir = tmp.path().join(format!("n{i}"));
            let mut pd = if l.crdt {
                let extra: Vec<(&str, String)> =
                    CRDT_ENV.iter().map(|(k, v)| (*k, v.to_string())).collect();
                init_crdt_peer(&(l.peer_dir)(i, &dir), &ipfs.multiaddr(), &extra)?
            } else {
                PeerDir::init(&(l.peer_dir)(i, &dir), &ipfs.multiaddr(), Some(&secret))?
            };
            pd.ports = PeerPorts::pick();
            let ip = (l.ip)(i);
            let swarm = format!("/ip4/{ip}/tcp/{}", pd.ports.swarm);
            let mut env: Vec<(String, String)> = pd
                .ports
                .env(&ipfs.multiaddr())
                .into_iter()
                .filter(|(k, _)| {
                    k != "CLUSTER_LISTENMULTIADDRESS"
                        && !(l.on_ip && k == "CLUSTER_RESTAPI_HTTPLISTENMULTIADDRESS")
                })
                .collect();
            env.push(("CLUSTER_LISTENMULTIADDRESS".into(), swarm.clone()));
            let (client, rest_url) = if l.on_ip {
                env.push((
                    "CLUSTER_RESTAPI_HTTPLISTENMULTIADDRESS".into(),
                    format!("/ip4/0.0.0.0/tcp/{}", pd.ports.rest),
                ));
                (Access::Host, format!("http://{ip}:{}", pd.ports.rest))
            } else {
                ((l.access)(i), pd.rest_url())
            };
            let mut metrics_url = None;
            if l.metrics {
                let m = |p: u16| format!("/ip4/127.0.0.1/tcp/{p}");
                let consensus = free_port();
                env.push(("CLUSTER_METRICS_ENABLESTATS".into(), "true".into()));
                env.push(("CLUSTER_METRICS_PROMETHEUSENDPOINT".into(), m(free_port())));
                for (key, port) in [
                    ("TRANSPORT", free_port()),
                    ("CONSENSUS", consensus),
                    ("IPFSCONNECTOR", free_port()),
                    ("GATEWAY", free_port()),
                ] {
                    env.push((
                        format!("CLUSTER_INTERNAL_{key}METRICSMULTIADDRESS"),
                        m(port),
                    ));
                }
                metrics_url = Some(format!("http://127.0.0.1:{consensus}/metrics"));
            }
            env.extend(l.env.iter().cloned());
            if l.crdt {
                env.extend(CRDT_ENV.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            }
            peers.push(Peer {
                name: format!("peer{i}"),
                access: (l.access)(i),
                client,
                rest_url,
                metrics_url,
                mnt: None,
                log: dir.join("daemon.log"),
                env,
                daemon: None,
                ipfs,
                id: String::new(),
                swarm,
                kills: HashMap::new(),
                pd,
            });
        }
        if l.crdt {
            // crdt has no join: every peer lists the others' addresses, so a restarted
            // peer (no --bootstrap) meets them again.
            let mut addrs = Vec::new();
            for p in &peers {
                addrs.push(format!("{}/p2p/{}", p.swarm, identity_id(&p.pd.dir)?));
            }
            for (i, p) in peers.iter().enumerate() {
                let others: Vec<serde_json::Value> = addrs
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, a)| serde_json::Value::String(a.clone()))
                    .collect();
                edit_service_json(&p.pd.dir, |v| {
                    v["cluster"]["peer_addresses"] = serde_json::Value::Array(others);
                })?;
            }
        }
        let mut c = Cluster {
            crdt: l.crdt,
            peers,
            faults: 0,
            stats: FaultStats::default(),
            ledger: None,
            net: None,
            disks: Vec::new(),
            _mnt_root: None,
            _tmp: tmp,
        };
        let mut boot = String::new();
        for i in 0..n {
            let args: Vec<&str> = if i == 0 {
                vec![]
            } else {
                vec!["--bootstrap", &boot]
            };
            c.peers[i].start(&args).await?;
            let (_, text) = c.peers[i]
                .client
                .req(
                    "GET",
                    &format!("{}/id", c.peers[i].rest()),
                    Duration::from_secs(10),
                )
                .await?;
            let v: serde_json::Value = serde_json::from_str(&text)?;
            c.peers[i].id = v["id"].as_str().context("no id")?.to_string();
            if i == 0 {
                boot = format!("{}/p2p/{}", c.peers[0].swarm, c.peers[0].id);
            }
        }
        c.wait_members(Duration::from_secs(120)).await?;
        Ok(c)
    }

    /// Every peer lists all N peers without errors.
    async fn wait_members(&self, within: Duration) -> Result<()> {
        let n = self.peers.len();
        for p in &self.peers {
            let url = format!("{}/peers", p.rest());
            wait_for(within, || {
                let (access, url) = (p.client.clone(), url.clone());
                async move {
                    match access.req("GET", &url, Duration::from_secs(20)).await {
                        Ok((200, body)) => {
                            let vals: Vec<serde_json::Value> =
                                serde_json::Deserializer::from_str(&body)
                                    .into_iter()
                                    .filter_map(Result::ok)
                                    .collect();
                            vals.len() == n
                                && vals
                                    .iter()
                                    .all(|v| v["error"].as_str().unwrap_or("").is_empty())
                        }
                        _ => false,
                    }
                }
            })
            .await
            .with_context(|| {
                format!(
                    "{} does not see {n} healthy peers; log:\n{}",
                    p.name,
                    p.log_tail()
                )
            })?;
        }
        Ok(())
    }

    fn targets(&self) -> Vec<(Access, String)> {
        self.peers
            .iter()
            .map(|p| (p.client.clone(), p.rest()))
            .collect()
    }

    /// The IPFS nodes' APIs as the workload adds content to them: (where, URL).
    fn ipfs_apis(&self) -> Vec<(Access, String)> {
        self.peers
            .iter()
            .map(|p| (p.access.clone(), p.ipfs.api_url()))
            .collect()
    }

    fn checker_targets(&self) -> Vec<checker::Target> {
        self.peers
            .iter()
            .map(|p| checker::Target {
                access: p.client.clone(),
                rest: p.rest(),
                ipfs_access: p.access.clone(),
                ipfs: p.ipfs.api_url(),
            })
            .collect()
    }

    /// The peer whose consensus says it leads (metrics endpoint), if one answers so.
    async fn leader(&self) -> Option<usize> {
        for (i, p) in self.peers.iter().enumerate() {
            let Some(url) = &p.metrics_url else { continue };
            if let Ok((200, text)) = p.access.req("GET", url, Duration::from_secs(5)).await {
                if text.lines().any(|l| {
                    l.starts_with("ipfscluster_raft_is_leader") && l.trim_end().ends_with(" 1")
                }) {
                    return Some(i);
                }
            }
        }
        None
    }

    /// `k` distinct random peers.
    fn pick(&self, rng: &Rng, k: usize) -> Vec<usize> {
        let mut all: Vec<usize> = (0..self.peers.len()).collect();
        let mut out = Vec::new();
        while out.len() < k && !all.is_empty() {
            out.push(all.swap_remove(rng.below(all.len() as u64) as usize));
        }
        out
    }

    /// Starts peer i's IPFS node again and reconnects it to the other nodes.
    async fn restart_ipfs(&mut self, i: usize) -> Result<()> {
        self.peers[i].ipfs.start().await?;
        let others: Vec<String> = self
            .peers
            .iter()
            .enumerate()
            .filter(|(j, p)| *j != i && p.ipfs.proc.is_some())
            .map(|(_, p)| p.ipfs.swarm_addr())
            .collect();
        self.peers[i].ipfs.connect_to(&others).await;
        Ok(())
    }

    /// Takes peer i down one way (part of a compound fault).
    async fn take_down(&mut self, i: usize, how: Down) -> Result<()> {
        let p = &mut self.peers[i];
        match how {
            Down::Stop => {
                println!("chaos: SIGSTOP {}", p.name);
                kill_group(p.daemon_pid().context("peer not running")?, "STOP");
                self.stats.add("stop");
            }
            Down::Crash => {
                crash(p).await?;
                self.stats.add("kill_peer");
            }
            Down::IpfsKill => {
                println!("chaos: SIGKILL the IPFS node of {}", p.name);
                p.ipfs.kill().await;
                self.stats.add("ipfs_kill");
            }
        }
        self.faults += 1;
        Ok(())
    }

    /// Undoes `take_down` and waits until the peer serves again.
    async fn bring_up(&mut self, i: usize, how: Down) -> Result<()> {
        match how {
            Down::Stop => {
                let p = &self.peers[i];
                kill_group(p.daemon_pid().context("peer not running")?, "CONT");
                p.ready(Duration::from_secs(120)).await
            }
            Down::Crash => self.peers[i].start(&[]).await,
            Down::IpfsKill => self.restart_ipfs(i).await,
        }
    }

    /// Takes `set` down (each its way), waits `hold`, brings them all back (stopped peers
    /// first, so a crashed one restarts into a cluster that has its quorum when it can).
    async fn down_together(&mut self, set: &[(usize, Down)], hold: Duration) -> Result<()> {
        for &(i, how) in set {
            self.take_down(i, how).await?;
        }
        if set.len() > 1 {
            self.stats.overlapping += set.len() as u64;
        }
        tokio::time::sleep(hold).await;
        let mut order = set.to_vec();
        order.sort_by_key(|(_, how)| *how != Down::Stop);
        for (i, how) in order {
            self.bring_up(i, how).await?;
        }
        Ok(())
    }

    fn random_down(rng: &Rng) -> Down {
        [Down::Stop, Down::Crash, Down::IpfsKill][rng.below(3) as usize]
    }

    /// Injects one fault of `kind` and waits until every peer it touched serves again.
    async fn inject(&mut self, kind: Fault, rng: &Rng) -> Result<()> {
        let n = self.peers.len();
        let i = rng.below(n as u64) as usize;
        match kind {
            Fault::KillService => self.inject_service_kill(i, rng).await,
            Fault::KillPeer => self.inject_peer_kill(i).await,
            Fault::StopCont => {
                let hold = rng.millis(2000, 8000);
                self.down_together(&[(i, Down::Stop)], hold).await
            }
            Fault::KillIpfs => {
                // Half clean stops, half crashes (Kubo's repo lock dies with the process).
                let p = &mut self.peers[i];
                if rng.next().is_multiple_of(2) {
                    println!("chaos: SIGTERM the IPFS node of {}", p.name);
                    p.ipfs.stop().await;
                    self.stats.add("ipfs_term");
                } else {
                    println!("chaos: SIGKILL the IPFS node of {}", p.name);
                    p.ipfs.kill().await;
                    self.stats.add("ipfs_kill");
                }
                self.faults += 1;
                tokio::time::sleep(rng.millis(500, 3000)).await;
                self.restart_ipfs(i).await
            }
            Fault::Overlap => {
                let k = ((n - 1) / 2).max(1);
                let set: Vec<(usize, Down)> = self
                    .pick(rng, k)
                    .into_iter()
                    .map(|i| (i, Self::random_down(rng)))
                    .collect();
                println!("chaos: overlapping faults {set:?}");
                self.down_together(&set, rng.millis(2000, 8000)).await
            }
            Fault::LeaderKill => {
                // During an election no peer leads: ask again for a few seconds.
                let mut leader = None;
                for _ in 0..10 {
                    leader = self.leader().await;
                    if leader.is_some() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                let l = match leader {
                    Some(l) => {
                        self.stats.leader_kills += 1;
                        l
                    }
                    None => {
                        println!("chaos: no peer says it leads; a random peer instead (not counted as a leader crash)");
                        i
                    }
                };
                let f = (l + 1 + rng.below(n as u64 - 1) as usize) % n;
                println!(
                    "chaos: the leader {} crashed while {} is stopped",
                    self.peers[l].name, self.peers[f].name
                );
                self.take_down(f, Down::Stop).await?;
                self.take_down(l, Down::Crash).await?;
                self.stats.overlapping += 2;
                tokio::time::sleep(rng.millis(1000, 4000)).await;
                if n >= 5 {
                    // A majority is up: the old leader rejoins with the follower still stopped.
                    self.bring_up(l, Down::Crash).await?;
                    self.bring_up(f, Down::Stop).await
                } else {
                    self.bring_up(f, Down::Stop).await?;
                    self.bring_up(l, Down::Crash).await
                }
            }
            Fault::QuorumLoss => {
                let m = n / 2 + 1;
                let set: Vec<(usize, Down)> = self
                    .pick(rng, m)
                    .into_iter()
                    .map(|i| {
                        let how = if rng.next().is_multiple_of(2) {
                            Down::Stop
                        } else {
                            Down::Crash
                        };
                        (i, how)
                    })
                    .collect();
                println!("chaos: quorum lost: {set:?}");
                self.stats.quorum_losses += 1;
                let ledger = self.ledger.clone();
                if let Some(l) = &ledger {
                    l.quorum_down.store(true, Ordering::Relaxed);
                }
                let r = self.down_together(&set, rng.millis(5000, 10000)).await;
                if let Some(l) = &ledger {
                    l.quorum_down.store(false, Ordering::Relaxed);
                }
                r?;
                // Regained: the cluster acknowledges writes again.
                if let Some(l) = &ledger {
                    let before = l.acked.load(Ordering::Relaxed);
                    wait_for(Duration::from_secs(120), || async {
                        l.acked.load(Ordering::Relaxed) > before
                    })
                    .await
                    .context("no write acknowledged within 120 s after the quorum came back")?;
                }
                Ok(())
            }
            Fault::Partition => {
                let k = 1 + rng.below(((n - 1) / 2).max(1) as u64) as usize;
                let set = self.pick(rng, k);
                let net = self.net.as_ref().context("partitions need namespaces")?;
                println!("chaos: partition: {set:?} cut off");
                for &i in &set {
                    net.isolate(i, true)?;
                    self.stats.add("partition");
                    self.faults += 1;
                }
                if k > 1 {
                    self.stats.overlapping += k as u64;
                }
                tokio::time::sleep(rng.millis(3000, 10000)).await;
                for &i in &set {
                    net.isolate(i, false)?;
                }
                println!("chaos: partition healed");
                for &i in &set {
                    self.peers[i].ready(Duration::from_secs(120)).await?;
                }
                Ok(())
            }
            Fault::FullDisk => self.inject_full_disk(i, rng).await,
        }
    }

    /// Kill times of `service` on peer i within the launcher's window.
    fn recent_kills(&self, i: usize, service: &str) -> usize {
        let now = Instant::now();
        self.peers[i].kills.get(service).map_or(0, |v| {
            v.iter()
                .filter(|t| now.duration_since(**t) < Duration::from_secs(125))
                .count()
        })
    }

    async fn inject_service_kill(&mut self, i: usize, rng: &Rng) -> Result<()> {
        let candidates: Vec<_> = SERVICE_BINS
            .iter()
            .filter(|(name, _)| self.recent_kills(i, name) < 3)
            .collect();
        if candidates.is_empty() {
            // This peer's restart budget is used up: crash the whole peer instead.
            return self.inject_peer_kill(i).await;
        }
        let (name, binary) = *candidates[rng.below(candidates.len() as u64) as usize];
        let p = &self.peers[i];
        // A service the launcher is restarting (e.g. after a full disk) is back shortly.
        let mut pid = None;
        let _ = wait_for(Duration::from_secs(60), || {
            let found = p.service_pid(binary);
            pid = found;
            std::future::ready(found.is_some())
        })
        .await;
        let pid = pid.with_context(|| {
            format!(
                "{}: no running {name} service; log:\n{}",
                p.name,
                p.log_tail()
            )
        })?;
        println!("chaos: SIGKILL {} {name} (pid {pid})", p.name);
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        self.peers[i]
            .kills
            .entry(name)
            .or_default()
            .push(Instant::now());
        self.faults += 1;
        self.stats.add("kill_service");
        let p = &self.peers[i];
        wait_for(Duration::from_secs(90), || async {
            p.service_pid(binary).is_some_and(|new| new != pid)
        })
        .await
        .with_context(|| {
            format!(
                "the launcher did not restart {} {name}; log:\n{}",
                p.name,
                p.log_tail()
            )
        })?;
        p.ready(Duration::from_secs(90)).await
    }

    async fn inject_peer_kill(&mut self, i: usize) -> Result<()> {
        crash(&mut self.peers[i]).await?;
        self.faults += 1;
        self.stats.add("kill_peer");
        self.peers[i].start(&[]).await
    }

    /// Peer i's disk full for a few seconds: its tmpfs filled up, then freed. The consensus
    /// (and the connector, when it hit the error) exit once their folder takes writes again
    /// and the launcher restarts them, so this counts against the launcher's restart
    /// budget: a peer without budget left is crashed whole instead.
    async fn inject_full_disk(&mut self, i: usize, rng: &Rng) -> Result<()> {
        let i = (0..self.peers.len())
            .map(|d| (i + d) % self.peers.len())
            .find(|&j| {
                self.recent_kills(j, "consensus") < 3 && self.recent_kills(j, "ipfs-connector") < 3
            });
        let Some(i) = i else {
            let j = rng.below(self.peers.len() as u64) as usize;
            return self.inject_peer_kill(j).await;
        };
        let mnt = self.peers[i]
            .mnt
            .clone()
            .context("full disks need the peers' folders on a tmpfs")?;
        let filler = mnt.join("filler");
        let f2 = filler.clone();
        let bytes = tokio::task::spawn_blocking(move || fill(&f2)).await??;
        println!(
            "chaos: disk of {} full ({bytes} filler bytes)",
            self.peers[i].name
        );
        self.faults += 1;
        self.stats.add("full_disk");
        let now = Instant::now();
        for s in ["consensus", "ipfs-connector"] {
            self.peers[i].kills.entry(s).or_default().push(now);
        }
        tokio::time::sleep(rng.millis(2000, 5000)).await;
        std::fs::remove_file(&filler)?;
        let p = &self.peers[i];
        tokio::time::sleep(Duration::from_secs(2)).await;
        wait_for(Duration::from_secs(90), || async {
            SERVICE_BINS.iter().all(|(_, b)| p.service_pid(b).is_some())
        })
        .await
        .with_context(|| {
            format!(
                "{}: a service is not back after the full disk; log:\n{}",
                p.name,
                p.log_tail()
            )
        })?;
        p.ready(Duration::from_secs(90)).await
    }

    /// Injects faults of the given kinds until `count` faults or `until`.
    async fn fault_loop(
        &mut self,
        kinds: &[Fault],
        rng: &Rng,
        count: u64,
        until: Instant,
    ) -> Result<()> {
        let start = self.faults;
        while self.faults - start < count && Instant::now() < until {
            let kind = kinds[rng.below(kinds.len() as u64) as usize];
            self.inject(kind, rng).await?;
            tokio::time::sleep(rng.millis(200, 1500)).await;
        }
        Ok(())
    }

    async fn shutdown(&mut self) {
        if let Some(net) = &self.net {
            for i in 0..self.peers.len() {
                let _ = net.isolate(i, false);
            }
        }
        for p in &mut self.peers {
            if let Some(d) = p.daemon.take() {
                kill_group(d.pid(), "CONT");
                stop_proc(d, "TERM", Duration::from_secs(15)).await;
            }
            p.ipfs.stop().await;
        }
    }
}

/// SIGKILL of a peer's daemon process group (launcher and services); returns once the
/// services have exited (and freed their ports).
async fn crash(p: &mut Peer) -> Result<()> {
    println!(
        "chaos: SIGKILL the whole {} (launcher and services)",
        p.name
    );
    let services: Vec<u32> = SERVICE_BINS
        .iter()
        .filter_map(|(_, b)| p.service_pid(b))
        .collect();
    let d = p.daemon.take().context("peer not running")?;
    stop_proc(d, "KILL", Duration::from_secs(10)).await;
    // The services die with the launcher but may take a moment to exit (and free their
    // ports) on a loaded machine: a start before that fails with "address already in use".
    wait_for(Duration::from_secs(30), || async {
        services.iter().all(|pid| !alive(*pid))
    })
    .await
    .context("the killed peer's services did not exit")
}

/// What a run adds to the basic workload and faults (`long_run`'s CHAOS_* variables).
#[derive(Clone, Debug, Default)]
struct Mix {
    /// `replication_factor_min/max` (0: every peer), with repinning enabled.
    replication: usize,
    /// Peers in network namespaces: partitions become one of the faults.
    netns: bool,
    /// Peers' folders on tmpfs mounts: full disks become one of the faults.
    disks: bool,
    /// 1 pin in 20 of real content.
    content: bool,
    /// Seconds of the load phase (32 connections back to back) at the start of the faults.
    load_secs: u64,
    /// Compound faults (several peers down at once, leader crashes, quorum losses).
    overlap: bool,
    /// crdt consensus (CHAOS_CONSENSUS=crdt): no leader to crash and no quorum to lose,
    /// so those two compound faults are left out (several peers down at once stays).
    crdt: bool,
}

impl Mix {
    fn from_env() -> Self {
        Self {
            replication: env_u64("CHAOS_REPLICATION", 0) as usize,
            netns: env_u64("CHAOS_NETNS", 0) == 1,
            disks: env_u64("CHAOS_DISKS", 0) == 1,
            content: env_u64("CHAOS_CONTENT", 0) == 1,
            load_secs: env_u64("CHAOS_LOAD_SECONDS", 0),
            overlap: env_u64("CHAOS_OVERLAP", 1) == 1,
            crdt: match std::env::var("CHAOS_CONSENSUS").as_deref() {
                Ok("crdt") => true,
                Ok("raft") | Ok("") | Err(_) => false,
                Ok(other) => panic!("CHAOS_CONSENSUS={other}: raft or crdt"),
            },
        }
    }

    fn kinds(&self, n: usize) -> Vec<Fault> {
        let mut k = vec![
            Fault::KillService,
            Fault::KillService,
            Fault::KillService,
            Fault::KillPeer,
            Fault::StopCont,
            Fault::KillIpfs,
            Fault::KillIpfs,
        ];
        if self.overlap && n >= 3 {
            k.extend([Fault::Overlap, Fault::Overlap]);
            if !self.crdt {
                k.extend([Fault::LeaderKill, Fault::QuorumLoss]);
            }
        }
        if self.netns {
            k.extend([Fault::Partition, Fault::Partition]);
        }
        if self.disks {
            k.push(Fault::FullDisk);
        }
        k
    }
}

/// Figures of one run beyond the checker's.
struct RunStats {
    stats: FaultStats,
    refused_quorum: u64,
    content_pins: u64,
    load_ops: u64,
    load_acked: u64,
    load_secs: f64,
}

impl std::fmt::Display for RunStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} refused_quorum={} content_pins={} load_seconds={:.0} load_ops={} load_acked={} load_rate={:.1}",
            self.stats,
            self.refused_quorum,
            self.content_pins,
            self.load_secs,
            self.load_ops,
            self.load_acked,
            if self.load_secs > 0.0 {
                self.load_acked as f64 / self.load_secs
            } else {
                0.0
            }
        )
    }
}

/// A workload running in the background while faults are injected, then the checker.
async fn run_with_faults(
    c: Cluster,
    kinds: &[Fault],
    count: u64,
    duration: Duration,
    rng: Arc<Rng>,
) -> Result<checker::Report> {
    run_mixed(c, kinds, count, duration, rng, &Mix::default())
        .await
        .map(|(r, _)| r)
}

/// `run_with_faults` with what `mix` adds (replication factor in the ledger, real content,
/// the load phase).
async fn run_mixed(
    mut c: Cluster,
    kinds: &[Fault],
    count: u64,
    duration: Duration,
    rng: Arc<Rng>,
    mix: &Mix,
) -> Result<(checker::Report, RunStats)> {
    let ledger = Arc::new(Ledger {
        rmin: mix.replication,
        crdt: c.crdt,
        ..Default::default()
    });
    c.ledger = Some(ledger.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let content = if mix.content {
        c.ipfs_apis()
    } else {
        Vec::new()
    };
    let workers: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(workload_with(
                c.targets(),
                ledger.clone(),
                rng.clone(),
                stop.clone(),
                true,
                content.clone(),
            ))
        })
        .collect();
    // The load phase: 32 connections back to back (the ingest benchmark's), during faults.
    let load = (mix.load_secs > 0).then(|| {
        let load_stop = Arc::new(AtomicBool::new(false));
        let loaders: Vec<_> = (0..32)
            .map(|_| {
                tokio::spawn(workload_with(
                    c.targets(),
                    ledger.clone(),
                    rng.clone(),
                    load_stop.clone(),
                    false,
                    Vec::new(),
                ))
            })
            .collect();
        let (ledger, secs) = (ledger.clone(), mix.load_secs);
        tokio::spawn(async move {
            let (s0, a0, t0) = (
                ledger.sent.load(Ordering::Relaxed),
                ledger.acked.load(Ordering::Relaxed),
                Instant::now(),
            );
            tokio::time::sleep(Duration::from_secs(secs)).await;
            let (s1, a1, t1) = (
                ledger.sent.load(Ordering::Relaxed),
                ledger.acked.load(Ordering::Relaxed),
                t0.elapsed(),
            );
            load_stop.store(true, Ordering::Relaxed);
            for l in loaders {
                let _ = l.await;
            }
            println!(
                "chaos: load phase: {} requests, {} acknowledged in {:.0} s",
                s1 - s0,
                a1 - a0,
                t1.as_secs_f64()
            );
            (s1 - s0, a1 - a0, t1.as_secs_f64())
        })
    });
    let faults = c
        .fault_loop(kinds, &rng, count, Instant::now() + duration)
        .await;
    // Let the workload run a little on the recovered cluster, then stop it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await?;
    }
    let (load_ops, load_acked, load_secs) = match load {
        Some(l) => l.await?,
        None => (0, 0, 0.0),
    };
    let settle = if mix.content || mix.replication > 0 {
        Duration::from_secs(300)
    } else {
        Duration::from_secs(120)
    };
    let result = async {
        faults?;
        c.wait_members(Duration::from_secs(120)).await?;
        if c.crdt {
            // An operation in doubt is repeated through any peer: first let the peers
            // converge, so that peer answers from the same pinset as the others.
            converge(&c.checker_targets(), Duration::from_secs(120)).await?;
        }
        let resolved = settle_in_doubt(&ledger, &c.targets(), Duration::from_secs(120)).await?;
        println!(
            "chaos: sample errors clients saw: {:#?}",
            ledger.samples.lock().unwrap()
        );
        checker::check_within(&c.checker_targets(), &ledger, resolved, c.faults, settle).await
    }
    .await;
    if result.is_err() {
        for p in &c.peers {
            eprintln!("--- {} log tail:\n{}", p.name, p.log_tail());
        }
        // Keep the whole logs for the diagnosis (the cluster's folder goes with it).
        let keep = std::env::temp_dir().join(format!("chaos-logs-{}", std::process::id()));
        if std::fs::create_dir_all(&keep).is_ok() {
            for p in &c.peers {
                let _ = std::fs::copy(&p.log, keep.join(format!("{}.log", p.name)));
            }
            eprintln!("chaos: the peers' logs are in {}", keep.display());
        }
    }
    c.shutdown().await;
    let stats = RunStats {
        stats: c.stats.clone(),
        refused_quorum: ledger.refused_quorum.load(Ordering::Relaxed),
        content_pins: ledger.content_pins.load(Ordering::Relaxed),
        load_ops,
        load_acked,
        load_secs,
    };
    println!("chaos: {stats}");
    result.map(|r| (r, stats))
}

/// Waits until every peer lists the same pinset (crdt: writes converge).
async fn converge(targets: &[checker::Target], within: Duration) -> Result<()> {
    let until = Instant::now() + within;
    loop {
        let mut states = Vec::new();
        for t in targets {
            if let Ok(s) = checker::allocations(t).await {
                states.push(s);
            }
        }
        if states.len() == targets.len() && states.windows(2).all(|w| w[0] == w[1]) {
            return Ok(());
        }
        if Instant::now() > until {
            bail!("the crdt peers did not converge on one pinset within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The cluster of a mixed run: loopback, or in namespaces (with a link from the host so
/// the load reaches the REST APIs directly), peers' folders on tmpfs mounts when asked,
/// the replication factor and repinning, and metrics on (to find the leader).
async fn mixed_cluster(n: usize, mix: &Mix) -> Result<Cluster> {
    let tag = format!("cx{}", std::process::id());
    let net = if mix.netns {
        Some(Netns::create_with(&tag, n, "10.79.0", true).context(
            "CHAOS_NETNS=1 needs network namespaces (ip netns, root); unset it to run on loopback",
        )?)
    } else {
        None
    };
    let (mnt_root, disks) = if mix.disks {
        let root = tempfile::tempdir()?;
        let mut disks = Vec::new();
        for i in 0..n {
            disks.push(
                Tmpfs::mount(&root.path().join(format!("d{i}")), "256m")
                    .context("CHAOS_DISKS=1 needs tmpfs mounts (root); unset it to run without")?,
            );
        }
        (Some(root), disks)
    } else {
        (None, Vec::new())
    };
    let mut env = Vec::new();
    if mix.replication > 0 {
        for k in [
            "CLUSTER_REPLICATIONFACTORMIN",
            "CLUSTER_REPLICATIONFACTORMAX",
        ] {
            env.push((k.to_string(), mix.replication.to_string()));
        }
        env.push(("CLUSTER_DISABLEREPINNING".into(), "false".into()));
        // A dead peer's metrics expire in seconds, so re-allocation happens during faults.
        env.push(("CLUSTER_MONITORPINGINTERVAL".into(), "5s".into()));
    }
    let ns: Vec<String> = net.as_ref().map(|n| n.peers.clone()).unwrap_or_default();
    let netns = mix.netns;
    let mounts: Vec<PathBuf> = disks.iter().map(|d| d.0.clone()).collect();
    let mounts2 = mounts.clone();
    let layout = Layout {
        access: Box::new(move |i| match ns.get(i) {
            Some(ns) => Access::Ns(ns.clone()),
            None => Access::Host,
        }),
        ip: Box::new(move |i| {
            if netns {
                format!("10.79.0.{}", i + 1)
            } else {
                "127.0.0.1".into()
            }
        }),
        peer_dir: Box::new(move |i, d| match mounts2.get(i) {
            Some(m) => m.join("peer"),
            None => d.join("peer"),
        }),
        on_ip: mix.netns,
        env,
        // Raft: the consensus's metrics say who leads (leader crashes).
        metrics: !mix.crdt,
        crdt: mix.crdt,
    };
    let mut c = Cluster::start_layout(n, layout).await?;
    for (p, m) in c.peers.iter_mut().zip(&mounts) {
        p.mnt = Some(m.clone());
    }
    c.net = net;
    c.disks = disks;
    c._mnt_root = mnt_root;
    Ok(c)
}

async fn loopback_cluster(n: usize) -> Result<Cluster> {
    Cluster::start(n, |_| Access::Host, |_| "127.0.0.1".to_string()).await
}

async fn loopback_crdt_cluster(n: usize) -> Result<Cluster> {
    Cluster::start_layout(n, Layout::loopback_crdt()).await
}

#[test]
fn checker_identity_cids_are_well_formed() {
    let rng = Rng::new(7);
    let c = identity_cid(&rng);
    // 4 header bytes + 16 data bytes = 160 bits = 32 base32 characters.
    assert!(c.starts_with("bafkqae"), "{c}");
    assert_eq!(c.len(), 33);
    assert_ne!(c, identity_cid(&rng));
}

/// Negative controls: a one-peer cluster broken on purpose in each way the checker claims
/// to detect, each of which it must count (and then fail the check):
/// - an acknowledged pin removed behind the cluster's back (internal `Consensus.Unpin`):
///   `lost`;
/// - another such pin, then unpinned by the workload: the DELETE meets 404, which must
///   count as `lost_on_unpin`, never as a successful unpin (the old checker's blind spot);
/// - a pin that was never sent, added internally (`Consensus.Pin`): `unknown`;
/// - an acknowledged pin unpinned directly on the IPFS node: `ipfs_missing`;
/// - an acknowledged unpin whose CID is pinned again directly on the IPFS node:
///   `ipfs_extra`.
#[test]
fn checker_detects_each_breakage() {
    let _g = serial();
    runtime().block_on(async {
        let rng = Rng::new(0x5eed);
        let mut c = loopback_cluster(1).await.unwrap();
        // The connector's first periodic recover runs 5 s after it starts (then every
        // pin_recover_interval, 12 min) and would repair the IPFS breakage below.
        let first_recover_done = Instant::now() + Duration::from_secs(8);
        let p = &c.peers[0];
        let (access, rest) = (p.access.clone(), p.rest());
        let ledger = Ledger::default();
        let cids: Vec<String> = (0..5).map(|_| identity_cid(&rng)).collect();
        for cid in &cids {
            assert_eq!(ledger.op(&access, &rest, cid, true).await, Some(true));
        }
        let token = ipfs_cluster_proto::auth::InternalToken::load(&p.pd.dir.join("internal.token"))
            .unwrap();
        let mut consensus = ipfs_cluster_proto::client::consensus(
            format!("127.0.0.1:{}", p.pd.ports.consensus)
                .parse()
                .unwrap(),
            &token,
        );
        use ipfs_cluster_proto::{consensus::v1 as cpb, types::v1 as tpb};
        for cid in &cids[..2] {
            consensus
                .unpin(cpb::UnpinRequest { cid: cid.clone() })
                .await
                .expect("internal unpin");
        }
        // The workload unpins the second one: 404 from a pin that was acknowledged.
        let taken = loop {
            let c = ledger.reserve_unpin(&rng).unwrap();
            if c == cids[1] {
                break c;
            }
            // Not this one: put it back as it was.
            ledger.cids.lock().unwrap().insert(
                c,
                Entry {
                    acked: Some(true),
                    intended: true,
                },
            );
        };
        assert_eq!(ledger.op(&access, &rest, &taken, false).await, None);
        let never_sent = identity_cid(&rng);
        consensus
            .pin(cpb::PinRequest {
                pin: Some(tpb::Pin {
                    cid: never_sent.clone(),
                    r#type: tpb::PinType::Data as i32,
                    max_depth: -1,
                    ..Default::default()
                }),
            })
            .await
            .expect("internal pin");
        let ipfs = p.ipfs.api_url();
        let kubo = |path: String| {
            let access = access.clone();
            async move {
                let (st, body) = access.req("POST", &path, Duration::from_secs(10)).await?;
                anyhow::ensure!(st == 200, "{path}: {st} {body}");
                Ok(())
            }
        };
        // Unpinned behind the cluster's back on IPFS (once the connector pinned it).
        let targets = c.checker_targets();
        wait_for(Duration::from_secs(30), || async {
            checker::ipfs_pinned(&targets[0])
                .await
                .is_ok_and(|have| cids[2..].iter().all(|c| have.contains(c)))
        })
        .await
        .expect("the connector pinned the control pins");
        tokio::time::sleep_until(first_recover_done.into()).await;
        kubo(format!("{ipfs}/api/v0/pin/rm?arg={}", cids[2]))
            .await
            .unwrap();
        // An acknowledged unpin, then pinned again on IPFS directly.
        let c4 = ledger.reserve_unpin(&rng);
        let c4 = match c4 {
            Some(c) if c == cids[4] => c,
            other => {
                // Put any other choice back and take the one this control needs.
                if let Some(o) = other {
                    ledger.cids.lock().unwrap().insert(
                        o,
                        Entry {
                            acked: Some(true),
                            intended: true,
                        },
                    );
                }
                ledger.cids.lock().unwrap().insert(
                    cids[4].clone(),
                    Entry {
                        acked: None,
                        intended: false,
                    },
                );
                cids[4].clone()
            }
        };
        assert_eq!(ledger.op(&access, &rest, &c4, false).await, Some(false));
        wait_for(Duration::from_secs(30), || async {
            checker::ipfs_pinned(&targets[0])
                .await
                .is_ok_and(|have| !have.contains(&c4))
        })
        .await
        .expect("the connector unpinned the control unpin");
        kubo(format!("{ipfs}/api/v0/pin/add?arg={c4}"))
            .await
            .unwrap();

        let (r, examples) = checker::inspect(&targets, &ledger, 0, 0, Duration::from_secs(5))
            .await
            .unwrap();
        println!("negative controls: {r}\n{}", examples.join("\n"));
        assert!(r.lost >= 2, "{r}");
        assert!(r.lost_on_unpin >= 1, "{r}");
        assert!(r.unknown >= 1, "{r}");
        assert!(r.ipfs_missing >= 1, "{r}");
        assert!(r.ipfs_extra >= 1, "{r}");
        // The pin removed on the only IPFS node is on 0 < 1 nodes.
        assert!(r.under_replicated >= 1, "{r}");
        assert!(!r.clean());
        assert!(
            checker::check_within(&targets, &ledger, 0, 0, Duration::from_secs(5))
                .await
                .is_err(),
            "the check passed a broken cluster"
        );
        c.shutdown().await;
    });
}

/// (a) random services of random peers SIGKILLed (the launcher restarts them), whole
/// peers SIGKILLed and their daemon restarted.
#[test]
fn kill_services_and_peers_under_load() {
    let _g = serial();
    runtime().block_on(async {
        let rng = Arc::new(Rng::from_env());
        let c = loopback_cluster(3).await.unwrap();
        let r = run_with_faults(
            c,
            &[
                Fault::KillService,
                Fault::KillService,
                Fault::KillService,
                Fault::KillPeer,
            ],
            8,
            Duration::from_secs(60),
            rng,
        )
        .await
        .unwrap();
        assert!(r.faults >= 4 && r.acknowledged > 0, "{r}");
    });
}

/// `kill_services_and_peers_under_load` on a crdt cluster: services and whole
/// peers SIGKILLed and peers SIGSTOPped under the workload, then the same checker (no
/// acknowledged pin lost, no acknowledged unpin back, all peers agree, IPFS nodes hold
/// their pins). crdt has no leader and no quorum: those faults do not apply.
#[test]
fn crdt_kill_and_stop_peers_under_load() {
    let _g = serial();
    runtime().block_on(async {
        let rng = Arc::new(Rng::from_env());
        let c = loopback_crdt_cluster(3).await.unwrap();
        let r = run_with_faults(
            c,
            &[
                Fault::KillService,
                Fault::KillService,
                Fault::KillPeer,
                Fault::StopCont,
            ],
            8,
            Duration::from_secs(50),
            rng,
        )
        .await
        .unwrap();
        assert!(r.faults >= 4 && r.acknowledged > 0, "{r}");
    });
}

/// (b) a peer SIGSTOPped and SIGCONTed; (d) a peer's IPFS node stopped and restarted.
#[test]
fn stop_peers_and_restart_ipfs_under_load() {
    let _g = serial();
    runtime().block_on(async {
        let rng = Arc::new(Rng::from_env());
        let c = loopback_cluster(3).await.unwrap();
        let r = run_with_faults(
            c,
            &[Fault::StopCont, Fault::KillIpfs],
            6,
            Duration::from_secs(60),
            rng,
        )
        .await
        .unwrap();
        assert!(r.faults >= 3 && r.acknowledged > 0, "{r}");
    });
}

/// The long version for `deploy/local/chaos.sh`: CHAOS_PEERS peers, until CHAOS_FAULTS
/// faults (or CHAOS_SECONDS), with what the `Mix` variables add (CHAOS_REPLICATION,
/// CHAOS_NETNS, CHAOS_DISKS, CHAOS_CONTENT, CHAOS_LOAD_SECONDS, CHAOS_OVERLAP).
#[test]
#[ignore = "long run: deploy/local/chaos.sh (make chaos)"]
fn long_run() {
    let _g = serial();
    runtime().block_on(async {
        let n = env_u64("CHAOS_PEERS", 3) as usize;
        let count = env_u64("CHAOS_FAULTS", 200);
        let secs = env_u64("CHAOS_SECONDS", 3600);
        let mix = Mix::from_env();
        let rng = Arc::new(Rng::from_env());
        let t0 = Instant::now();
        let c = mixed_cluster(n, &mix).await.unwrap();
        let kinds = mix.kinds(n);
        let (r, stats) = run_mixed(c, &kinds, count, Duration::from_secs(secs), rng.clone(), &mix)
            .await
            .unwrap();
        // One line for deploy/local/chaos.sh's results file (then the checker's line).
        println!(
            "CHAOS-RESULT seed={} consensus={} peers={n} replication={} netns={} disks={} content={} faults={} {stats} seconds={:.0}",
            rng.seed(),
            if mix.crdt { "crdt" } else { "raft" },
            mix.replication,
            mix.netns as u8,
            mix.disks as u8,
            mix.content as u8,
            r.faults,
            t0.elapsed().as_secs_f64()
        );
        println!("{r}");
    });
}

/// Network namespaces for a real partition: a "switch" namespace holding a bridge, and one
/// namespace per peer joined to it by a veth pair (10.77.0.(i+1)/24). Nothing is added to
/// the host's namespace. Dropping it deletes the namespaces (and with them the veths).
struct Netns {
    switch: String,
    peers: Vec<String>,
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running ip")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Netns {
    fn create(tag: &str, n: usize) -> Result<Self> {
        Self::create_with(tag, n, "10.77.0", false)
    }

    /// Peers at `{prefix}.(i+1)/24`; with `host_link` the host gets `{prefix}.254` on a veth
    /// into the switch, so the test reaches the peers without `ip netns exec` (the veth
    /// goes away with the switch namespace).
    fn create_with(tag: &str, n: usize, prefix: &str, host_link: bool) -> Result<Self> {
        let mut net = Netns {
            switch: format!("{tag}-sw"),
            peers: Vec::new(),
        };
        ip(&["netns", "add", &net.switch])?;
        ip(&["-n", &net.switch, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &net.switch, "link", "set", "br0", "up"])?;
        for i in 0..n {
            let ns = format!("{tag}-p{i}");
            ip(&["netns", "add", &ns])?;
            net.peers.push(ns.clone());
            let port = format!("s{i}");
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n",
                &ns,
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                &port,
                "netns",
                &net.switch,
            ])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{prefix}.{}/24", i + 1),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &net.switch, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", &net.switch, "link", "set", &port, "up"])?;
        }
        if host_link {
            let host = format!("{tag}h");
            ip(&[
                "link",
                "add",
                &host,
                "type",
                "veth",
                "peer",
                "name",
                "host",
                "netns",
                &net.switch,
            ])?;
            ip(&["addr", "add", &format!("{prefix}.254/24"), "dev", &host])?;
            ip(&["link", "set", &host, "up"])?;
            ip(&["-n", &net.switch, "link", "set", "host", "master", "br0"])?;
            ip(&["-n", &net.switch, "link", "set", "host", "up"])?;
        }
        Ok(net)
    }

    /// Cuts peer i off the others (its switch port down), or reconnects it.
    fn isolate(&self, i: usize, cut: bool) -> Result<()> {
        ip(&[
            "-n",
            &self.switch,
            "link",
            "set",
            &format!("s{i}"),
            if cut { "down" } else { "up" },
        ])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in self.peers.iter().chain(std::iter::once(&self.switch)) {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// (c) A real partition: a follower (peer 2, joined last) is cut off: it refuses writes with
/// an error (not a hang), the majority keeps committing, and after healing it catches up.
#[test]
fn partition_minority_refuses_majority_commits() {
    partition_run(&[2]);
}

/// (c) The same with the leader cut off (peer 0, the founding peer, leads after start-up),
/// then a follower: the isolated leader must refuse writes too, the other two elect a new
/// leader and keep committing.
#[test]
fn partition_isolated_leader_refuses_majority_commits() {
    partition_run(&[0, 2]);
}

/// Cuts off each peer of `minorities` in turn under a majority workload, then checks.
fn partition_run(minorities: &[usize]) {
    let _g = serial();
    let tag = format!("chaos{}", std::process::id());
    let net = match Netns::create(&tag, 3) {
        Ok(n) => n,
        Err(e) => {
            skip(
                "chaos partition",
                &format!("network namespaces are not available here: {e:#}"),
            );
            return;
        }
    };
    runtime().block_on(async {
        let rng = Arc::new(Rng::from_env());
        let ns = net.peers.clone();
        let mut c = Cluster::start(
            3,
            move |i| Access::Ns(ns[i].clone()),
            |i| format!("10.77.0.{}", i + 1),
        )
        .await
        .unwrap();
        let ledger = Arc::new(Ledger::default());
        let result = async {
            for &minority in minorities {
                let majority: Vec<(Access, String)> = c
                    .targets()
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| *i != minority)
                    .map(|(_, t)| t)
                    .collect();
                let stop = Arc::new(AtomicBool::new(false));
                let worker = tokio::spawn(workload(
                    majority,
                    ledger.clone(),
                    rng.clone(),
                    stop.clone(),
                ));
                println!("chaos: partition: peer{minority} cut off from the other two");
                net.isolate(minority, true)?;
                c.faults += 1;

                // The minority refuses a write with an error answer (curl gives up after 60 s).
                let m = &c.peers[minority];
                let cid = identity_cid(&rng);
                ledger.cids.lock().unwrap().insert(
                    cid.clone(),
                    Entry {
                        acked: None,
                        intended: true,
                    },
                );
                ledger.sent.fetch_add(1, Ordering::Relaxed);
                let t0 = Instant::now();
                let (st, body) = m
                    .client
                    .req(
                        "POST",
                        &format!("{}/pins/{cid}", m.rest()),
                        Duration::from_secs(60),
                    )
                    .await
                    .context("the minority did not answer a write (hang)")?;
                println!(
                    "chaos: minority write answered in {:?}: {st} {}",
                    t0.elapsed(),
                    body.trim()
                );
                if (200..300).contains(&st) {
                    bail!("the minority acknowledged a write while cut off: {st} {body}");
                }
                ledger.note_error(format!("minority: {st} {}", body.trim()));
                let v: serde_json::Value =
                    serde_json::from_str(&body).context("error body is not JSON")?;
                if v["message"].as_str().unwrap_or("").is_empty() {
                    bail!("the minority's error has no message: {body}");
                }

                // The majority keeps committing.
                let before = ledger.acked.load(Ordering::Relaxed);
                wait_for(Duration::from_secs(90), || async {
                    ledger.acked.load(Ordering::Relaxed) >= before + 10
                })
                .await
                .context("the majority did not commit 10 pins while partitioned")?;

                net.isolate(minority, false)?;
                println!("chaos: partition healed");
                stop.store(true, Ordering::Relaxed);
                worker.await?;
                c.wait_members(Duration::from_secs(120)).await?;
            }
            let resolved = settle_in_doubt(&ledger, &c.targets(), Duration::from_secs(120)).await?;
            checker::check(&c.checker_targets(), &ledger, resolved, c.faults).await
        }
        .await;
        if result.is_err() {
            for p in &c.peers {
                eprintln!("--- {} log tail:\n{}", p.name, p.log_tail());
            }
        }
        c.shutdown().await;
        let r = result.unwrap();
        assert_eq!(r.faults, minorities.len() as u64);
    });
    drop(net);
}

/// A tmpfs mounted for the test; unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Result<Self> {
        std::fs::create_dir_all(at)?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()?;
        if !out.status.success() {
            bail!(
                "mount tmpfs: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(Self(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes to `path` until the file system says it is full.
fn fill(path: &Path) -> Result<u64> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    let mut written = 0u64;
    for size in [1 << 20, 4096, 1] {
        let buf = vec![0xa5u8; size];
        while f.write_all(&buf).and_then(|_| f.sync_data()).is_ok() {
            written += size as u64;
        }
    }
    Ok(written)
}

/// Disk faults (1): the peer's folder on a full 20 MB tmpfs: pins fail with a clear error,
/// the peer keeps running, and pins succeed again once space is freed; nothing acknowledged
/// is lost, also across a restart.
#[test]
fn full_disk_gives_errors_then_recovers() {
    let _g = serial();
    let mnt_root = tempfile::tempdir().unwrap();
    let mnt = mnt_root.path().join("data");
    let fs = match Tmpfs::mount(&mnt, "20m") {
        Ok(m) => m,
        Err(e) => {
            skip(
                "chaos full disk",
                &format!("cannot mount a tmpfs here: {e:#}"),
            );
            return;
        }
    };
    runtime().block_on(async {
        let mnt2 = mnt.clone();
        let mut c = Cluster::start_in(
            1,
            |_| Access::Host,
            |_| "127.0.0.1".into(),
            move |_, _| mnt2.join("peer"),
        )
        .await
        .unwrap();
        let rng = Rng::from_env();
        let ledger = Ledger::default();
        let result = async {
            let (access, rest) = c.targets().remove(0);
            for _ in 0..5 {
                ledger
                    .op(&access, &rest, &identity_cid(&rng), true)
                    .await
                    .context("pin before the disk is full")?;
            }
            let filler = mnt.join("filler");
            let n = fill(&filler)?;
            c.faults += 1;
            println!("chaos: disk full after {n} filler bytes");

            // Pins now fail with an error answer; give the store a few tries to use up any
            // space it had reserved.
            let mut refusal = None;
            for _ in 0..50 {
                let cid = identity_cid(&rng);
                if ledger.op(&access, &rest, &cid, true).await.is_none() {
                    refusal = ledger.samples.lock().unwrap().last().cloned();
                    break;
                }
            }
            let refusal = refusal.context("pins kept succeeding on a full disk")?;
            println!("chaos: pin on a full disk answered: {refusal}");
            if !refusal.to_lowercase().contains("space") {
                bail!("the error does not say the disk is full: {refusal}");
            }
            let p = &mut c.peers[0];
            if let Some(st) = p.daemon.as_mut().and_then(Proc::try_wait) {
                bail!(
                    "the daemon exited on a full disk: {st}; log:\n{}",
                    p.log_tail()
                );
            }
            p.ready(Duration::from_secs(30)).await?;

            // Space back: pins succeed again (bounded wait, no restart).
            std::fs::remove_file(&filler)?;
            let until = Instant::now() + Duration::from_secs(90);
            while ledger
                .op(&access, &rest, &identity_cid(&rng), true)
                .await
                .is_none()
            {
                if Instant::now() > until {
                    // Diagnose for the report: does a daemon restart cure it?
                    let last = ledger.samples.lock().unwrap().last().cloned();
                    let d = c.peers[0].daemon.take().unwrap();
                    stop_proc(d, "TERM", Duration::from_secs(20)).await;
                    let restarted = c.peers[0].start(&[]).await;
                    let after = match restarted {
                        Ok(()) => {
                            let ok = ledger
                                .op(&access, &rest, &identity_cid(&rng), true)
                                .await
                                .is_some();
                            let check = match settle_in_doubt(
                                &ledger,
                                &c.targets(),
                                Duration::from_secs(60),
                            )
                            .await
                            {
                                Ok(n) => checker::check(&c.checker_targets(), &ledger, n, c.faults)
                                    .await
                                    .map(|r| r.to_string())
                                    .unwrap_or_else(|e| format!("{e:#}")),
                                Err(e) => format!("{e:#}"),
                            };
                            format!(
                                "after a daemon restart a pin {} and {check}",
                                if ok { "succeeds" } else { "fails too" }
                            )
                        }
                        Err(e) => format!("the daemon does not restart: {e:#}"),
                    };
                    bail!(
                        "pins still fail 90 s after space was freed: {last:?}; {after}; log:\n{}",
                        c.peers[0].log_tail()
                    );
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            for _ in 0..5 {
                ledger
                    .op(&access, &rest, &identity_cid(&rng), true)
                    .await
                    .context("pin after space was freed")?;
            }
            let resolved = settle_in_doubt(&ledger, &c.targets(), Duration::from_secs(60)).await?;
            checker::check(&c.checker_targets(), &ledger, resolved, c.faults).await?;

            // And across a restart.
            let d = c.peers[0].daemon.take().unwrap();
            stop_proc(d, "TERM", Duration::from_secs(20)).await;
            c.peers[0].start(&[]).await?;
            checker::check(&c.checker_targets(), &ledger, resolved, c.faults).await
        }
        .await;
        if result.is_err() {
            eprintln!("--- log tail:\n{}", c.peers[0].log_tail());
        }
        c.shutdown().await;
        result.unwrap();
    });
    drop(fs);
}

/// Disk faults (2): `raft/consensus.redb` truncated while the peer is stopped: the daemon
/// refuses to start with an error naming the file (never a silent empty pinset).
#[test]
fn truncated_store_fails_start_naming_the_file() {
    let _g = serial();
    runtime().block_on(async {
        let mut c = loopback_cluster(1).await.unwrap();
        let rng = Rng::from_env();
        let ledger = Ledger::default();
        let (access, rest) = c.targets().remove(0);
        for _ in 0..5 {
            assert!(ledger
                .op(&access, &rest, &identity_cid(&rng), true)
                .await
                .is_some());
        }
        let d = c.peers[0].daemon.take().unwrap();
        stop_proc(d, "TERM", Duration::from_secs(20)).await;
        let store = c.peers[0].pd.dir.join("raft/consensus.redb");
        let len = std::fs::metadata(&store).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&store)
            .unwrap()
            .set_len(len / 2)
            .unwrap();

        let p = &c.peers[0];
        let mut d = p.spawn_daemon(&[]).unwrap();
        let until = Instant::now() + Duration::from_secs(90);
        let status = loop {
            if let Some(st) = d.try_wait() {
                break st;
            }
            assert!(
                Instant::now() < until,
                "the daemon kept running on a truncated store; log:\n{}",
                p.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let log = std::fs::read_to_string(&p.log).unwrap();
        let last = log
            .lines()
            .rev()
            .find(|l| l.contains("error"))
            .unwrap_or("")
            .to_string();
        println!("chaos: start on a truncated store: {status}; {last}");
        assert!(!status.success(), "exit status {status}");
        assert!(
            last.contains("consensus.redb"),
            "the error does not name the file:\n{}",
            p.log_tail()
        );
        drop(d);
        c.shutdown().await;
    });
}
