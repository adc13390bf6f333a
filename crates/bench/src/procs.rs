//! Processes the benchmark starts (its Kubo node comes from the test kit): whole peers through the real
//! `ipfs-cluster-service` launcher (every port picked free and passed as upstream's env
//! overrides), the hello-world server; plus resident-memory readings from /proc.
//! Everything started here is in its own process group and killed on drop.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::load;

/// A free loopback port outside the kernel's ephemeral range (see `ipfs_cluster_config::ports`).
pub fn free_port() -> Result<u16> {
    Ok(ipfs_cluster_config::ports::free_loopback_port()?)
}

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A child in its own process group; the group gets SIGTERM (then SIGKILL) on drop.
pub struct Proc {
    child: Child,
}

impl Proc {
    pub fn spawn(what: &str, cmd: &mut Command) -> Result<Self> {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0).stdin(Stdio::null());
        let child = cmd.spawn().with_context(|| format!("starting {what}"))?;
        Ok(Self { child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM to the process only (as an operator or systemd would), then wait.
    pub fn terminate(&mut self, within: Duration) -> Result<()> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let until = Instant::now() + within;
        while Instant::now() < until {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        bail!(
            "process {} did not exit within {within:?} of SIGTERM",
            self.pid()
        )
    }

    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exited() {
            return;
        }
        let pgid = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &pgid]).status();
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if self.exited() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &pgid]).status();
        let _ = self.child.wait();
    }
}

/// Polls `f` every `every` until it is true; returns the time it took.
pub async fn wait_until<F, Fut>(within: Duration, every: Duration, mut f: F) -> Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t0 = Instant::now();
    loop {
        if f().await {
            return Ok(t0.elapsed());
        }
        if t0.elapsed() > within {
            bail!("condition not met within {within:?}");
        }
        tokio::time::sleep(every).await;
    }
}

/// Polls `GET /id` at `addr` until it answers 200 or `proc` exits (whoever's peer it is:
/// ours or upstream's); the time it took, or an error after `within`.
pub async fn poll_id(addr: SocketAddr, proc: &mut Proc, within: Duration) -> Result<Duration> {
    wait_until(within, Duration::from_millis(5), || {
        let exited = proc.exited();
        async move {
            exited
                || matches!(
                    load::get(addr, "/id", Duration::from_secs(5)).await,
                    Ok((200, _))
                )
        }
    })
    .await
}

/// Whether `GET /peers` at `addr` lists exactly `n` peers (one JSON object per line).
pub async fn lists_peers(addr: SocketAddr, n: usize, timeout: Duration) -> bool {
    match load::get(addr, "/peers", timeout).await {
        Ok((200, b)) => b.split(|&c| c == b'\n').filter(|l| !l.is_empty()).count() == n,
        _ => false,
    }
}

async fn tcp_open(addr: SocketAddr) -> bool {
    tokio::net::TcpStream::connect(addr).await.is_ok()
}

/// One peer's config folder (made by the real `init`) and its ports.
pub struct PeerDir {
    pub dir: PathBuf,
    pub bin_dir: PathBuf,
    env: Vec<(String, String)>,
    pub rest: u16,
    pub swarm: u16,
    pub consensus: u16,
    /// (service, internal gRPC port) in the launcher's start order.
    pub internal: Vec<(&'static str, u16)>,
}

impl PeerDir {
    pub fn init(bin_dir: &Path, dir: &Path, ipfs_api: &str, secret: &str) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let p = |_: ()| free_port();
        let (rest, pinsvc, proxy, swarm) = (p(())?, p(())?, p(())?, p(())?);
        let (transport, consensus, connector, gateway) = (p(())?, p(())?, p(())?, p(())?);
        let t = |port: u16| format!("/ip4/127.0.0.1/tcp/{port}");
        let env: Vec<(String, String)> = [
            ("CLUSTER_RESTAPI_HTTPLISTENMULTIADDRESS", t(rest)),
            ("CLUSTER_PINSVCAPI_HTTPLISTENMULTIADDRESS", t(pinsvc)),
            ("CLUSTER_IPFSPROXY_LISTENMULTIADDRESS", t(proxy)),
            ("CLUSTER_IPFSPROXY_NODEMULTIADDRESS", ipfs_api.to_string()),
            ("CLUSTER_IPFSHTTP_NODEMULTIADDRESS", ipfs_api.to_string()),
            ("CLUSTER_LISTENMULTIADDRESS", t(swarm)),
            ("CLUSTER_INTERNAL_TRANSPORTLISTENMULTIADDRESS", t(transport)),
            ("CLUSTER_INTERNAL_CONSENSUSLISTENMULTIADDRESS", t(consensus)),
            (
                "CLUSTER_INTERNAL_IPFSCONNECTORLISTENMULTIADDRESS",
                t(connector),
            ),
            ("CLUSTER_INTERNAL_GATEWAYLISTENMULTIADDRESS", t(gateway)),
            ("CLUSTER_SECRET", secret.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let out = Command::new(bin_dir.join("ipfs-cluster-service"))
            .arg("--config")
            .arg(dir)
            .arg("init")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .output()
            .context("running ipfs-cluster-service init")?;
        if !out.status.success() {
            bail!("init failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            bin_dir: bin_dir.to_path_buf(),
            env,
            rest,
            swarm,
            consensus,
            internal: vec![
                ("transport", transport),
                ("consensus", consensus),
                ("ipfs-connector", connector),
                ("gateway", gateway),
            ],
        })
    }

    pub fn rest_addr(&self) -> SocketAddr {
        loopback(self.rest)
    }

    /// Starts the launcher (no waiting).
    pub fn spawn(&self, extra: &[&str]) -> Result<Proc> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("daemon.log"))?;
        Proc::spawn(
            "ipfs-cluster-service daemon",
            Command::new(self.bin_dir.join("ipfs-cluster-service"))
                .arg("--config")
                .arg(&self.dir)
                .arg("daemon")
                .args(extra)
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                // BENCH_PEER_LOG: the peers' RUST_LOG (e.g. the consensus write path's
                // debug timings) when a run is being diagnosed; warn otherwise.
                .env(
                    "RUST_LOG",
                    std::env::var("BENCH_PEER_LOG").unwrap_or_else(|_| "warn".into()),
                )
                .stdout(log.try_clone()?)
                .stderr(log),
        )
    }

    /// Waits until `GET /id` answers 200; returns how long that took from now.
    pub async fn wait_ready(&self, proc: &mut Proc, within: Duration) -> Result<Duration> {
        let addr = self.rest_addr();
        // Stops early when the launcher exits (a peer that cannot start is not waited for).
        let r = poll_id(addr, proc, within).await;
        match r {
            Ok(_) if proc.exited() => bail!(
                "peer {} exited before it was ready; log tail:\n{}",
                self.dir.display(),
                self.log_tail()
            ),
            Ok(d) => Ok(d),
            Err(_) => bail!(
                "peer {} not ready within {within:?} (exited: {}); log tail:\n{}",
                self.dir.display(),
                proc.exited(),
                self.log_tail()
            ),
        }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    pub fn token(&self) -> Result<ipfs_cluster_proto::InternalToken> {
        Ok(ipfs_cluster_proto::InternalToken::load(
            &self.dir.join("internal.token"),
        )?)
    }
}

/// VmRSS of a process in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The direct children of `pid`: (pid, executable basename).
pub fn children(pid: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(child) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // pid (comm) state ppid …; comm may hold spaces, so split after the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let ppid: Option<u32> = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok());
        if ppid == Some(pid) {
            let name = std::fs::read(format!("/proc/{child}/cmdline"))
                .ok()
                .and_then(|c| {
                    c.split(|&b| b == 0)
                        .next()
                        .map(|a| String::from_utf8_lossy(a).into_owned())
                })
                .map(|a| a.rsplit('/').next().unwrap_or(&a).to_string())
                .unwrap_or_default();
            out.push((child, name));
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

/// CPU time (user + system) a process has used so far, in seconds.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // after the comm: state(0) ppid(1) … utime(11) stime(12)
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0) // USER_HZ is 100 on Linux
}

/// Polls every `(name, port)` until it accepts TCP (every 5 ms, up to `within`); returns
/// how long after the call each one started listening (None = never within the limit).
pub async fn listen_times(
    ports: &[(&'static str, u16)],
    within: Duration,
) -> Vec<(&'static str, Option<Duration>)> {
    let t0 = Instant::now();
    let polls = ports.iter().map(|&(name, port)| async move {
        let r = wait_until(within, Duration::from_millis(5), || async {
            tcp_open(loopback(port)).await
        })
        .await
        .ok()
        .map(|_| t0.elapsed());
        (name, r)
    });
    futures::future::join_all(polls).await
}
