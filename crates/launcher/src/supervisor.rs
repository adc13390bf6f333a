//! Starting and supervising the four services of one peer.
//!
//! Order: transport, consensus, ipfs connector, gateway (each waits for the previous to be
//! healthy, so dependencies are up first). A service that dies before it is ready makes the
//! whole daemon exit non-zero with that service's own error line. A service that dies later
//! is restarted with backoff (at most `MAX_RESTARTS` within `RESTART_WINDOW`, then the
//! daemon gives up and stops the others). SIGINT/SIGTERM stop the services in reverse order.

use std::io::Write as _;
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context, Result};
use ipfs_cluster_config::Peer;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

/// One service of a peer: its name in logs, its binary, and where its gRPC endpoint is.
#[derive(Clone, Copy, Debug)]
pub struct ServiceSpec {
    pub name: &'static str,
    pub binary: &'static str,
    pub addr: fn(&Peer) -> Result<SocketAddr, ipfs_cluster_config::ConfigError>,
}

pub const SERVICES: [ServiceSpec; 4] = [
    ServiceSpec {
        name: "transport",
        binary: "ipfs-cluster-transport",
        addr: |p| p.config.internal.transport_addr(),
    },
    ServiceSpec {
        name: "consensus",
        binary: "ipfs-cluster-consensus",
        addr: |p| p.config.internal.consensus_addr(),
    },
    ServiceSpec {
        name: "ipfs-connector",
        binary: "ipfs-cluster-ipfs-connector",
        addr: |p| p.config.internal.ipfs_connector_addr(),
    },
    ServiceSpec {
        name: "gateway",
        binary: "ipfs-cluster-gateway",
        addr: |p| p.config.internal.gateway_addr(),
    },
];

const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_RESTARTS: usize = 5;
/// Exit code of the consensus service asking for an immediate restart in staging (the
/// peer folder layout both share).
const CONSENSUS_RESTART_STAGING: i32 = ipfs_cluster_runtime::peer_folder::RESTART_STAGING_EXIT;
const RESTART_WINDOW: Duration = Duration::from_secs(120);
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// Bound on one health check (connect + handshake + call).
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

pub struct DaemonOptions {
    pub config_dir: PathBuf,
    /// Multiaddrs of cluster peers to join through (`--bootstrap`).
    pub bootstrap: Vec<String>,
    /// Force `leave_on_shutdown`.
    pub leave: bool,
    /// Where the service binaries are (default: beside this executable).
    pub bin_dir: Option<PathBuf>,
}

struct Running {
    spec: ServiceSpec,
    child: Child,
    last_error: Arc<Mutex<Option<String>>>,
    restarts: Vec<Instant>,
}

/// The folder holding the service binaries: `$IPFS_CLUSTER_BIN_DIR`, else beside this exe.
pub fn default_bin_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("IPFS_CLUSTER_BIN_DIR") {
        return Ok(PathBuf::from(d));
    }
    let exe = std::env::current_exe().context("cannot find this executable's path")?;
    Ok(exe.parent().map(Path::to_path_buf).unwrap_or_default())
}

/// `--bootstrap` values, trimmed and checked before anything starts: each must be an
/// address the transport can dial (any DNS form, `/p2p/<id>` optional) and not this peer's
/// own. A bad one would otherwise only show as a join retried forever.
pub fn check_bootstrap(addrs: &[String], own_peer_id: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for s in addrs.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let a = ipfs_cluster_config::addr::parse_peer_address(s)
            .map_err(|e| anyhow!("--bootstrap: {e}"))?;
        if ipfs_cluster_config::addr::peer_id(&a).is_some_and(|p| p.to_string() == own_peer_id) {
            bail!("--bootstrap: {s} is this peer's own address; give the address of a peer of the cluster to join");
        }
        out.push(a.to_string());
    }
    Ok(out)
}

pub async fn run_daemon(mut opts: DaemonOptions) -> Result<()> {
    // Load and validate once here so a bad config gives one clear line before anything starts.
    let peer = Peer::load(&opts.config_dir)?;
    opts.bootstrap = check_bootstrap(&opts.bootstrap, &peer.identity.peer_id.to_string())?;
    let lock = crate::lock::lock_config_dir(&opts.config_dir)?;

    let bin_dir = match &opts.bin_dir {
        Some(d) => d.clone(),
        None => default_bin_dir()?,
    };
    for spec in SERVICES {
        let p = bin_dir.join(spec.binary);
        if !p.exists() {
            bail!("service binary {} not found; build the workspace (`make build`) or set IPFS_CLUSTER_BIN_DIR", p.display());
        }
    }

    // SIGTERM, SIGINT and also SIGHUP (a closed terminal or SSH session, many stop
    // scripts): stop the services cleanly instead of dying and leaving them behind.
    let mut signals = ipfs_cluster_runtime::shutdown::StopSignals::new()?;
    let mut running: Vec<Running> = Vec::new();

    for spec in SERVICES {
        let addr = (spec.addr)(&peer)?;
        let started = tokio::select! {
            r = start_and_wait(&bin_dir, &opts, spec, addr, true) => r,
            reason = signals.recv() => Err(anyhow!("interrupted by {reason} during start-up")),
        };
        match started {
            Ok(r) => running.push(r),
            Err(e) => {
                stop_all(&mut running).await;
                return Err(e);
            }
        }
    }
    let rest = peer
        .config
        .api
        .restapi
        .as_ref()
        .map(|r| {
            r.http_listen_multiaddress
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_else(|| "disabled".into());
    tracing::info!(peer = %peer.identity.peer_id, rest_api = %rest, "IPFS Cluster peer ready");
    let watch = spawn_health_watch(&peer)?;
    let _ = writeln!(std::io::stderr(), "**IPFS Cluster is READY**");

    let outcome = loop {
        tokio::select! {
            reason = signals.recv() => break Ok(reason.as_str()),
            (idx, status) = wait_any(&mut running) => {
                let r = &mut running[idx];
                if r.spec.name == "consensus" && status.success() {
                    // Consensus exits 0 only when this peer is no longer a cluster member
                    // (removed, or left): the whole peer shuts down, as upstream.
                    break Ok("removal from the cluster");
                }
                if r.spec.name == "consensus" && status.code() == Some(CONSENSUS_RESTART_STAGING) {
                    // Not a crash: consensus gave its one-peer cluster up to be added to
                    // another cluster and must come back at once, empty (staging).
                    tracing::info!(service = r.spec.name, state = "restarting", "consensus restarts empty to be added to another cluster");
                    let spec = r.spec;
                    let addr = (spec.addr)(&peer)?;
                    match start_and_wait(&bin_dir, &opts, spec, addr, false).await {
                        Ok(mut fresh) => {
                            fresh.restarts = std::mem::take(&mut running[idx].restarts);
                            running[idx] = fresh;
                            continue;
                        }
                        Err(e) => break Err(e),
                    }
                }
                let why = r.last_error.lock().unwrap().clone().unwrap_or_else(|| format!("exited with {status}"));
                let now = Instant::now();
                r.restarts.retain(|t| now.duration_since(*t) < RESTART_WINDOW);
                if r.restarts.len() >= MAX_RESTARTS {
                    break Err(anyhow!("{} service keeps failing ({} restarts in {:?}); last error: {why}", r.spec.name, MAX_RESTARTS, RESTART_WINDOW));
                }
                let backoff = Duration::from_millis(500 * (1 << r.restarts.len().min(5)));
                tracing::warn!(service = r.spec.name, state = "restarting", error = %why, ?backoff, "service stopped unexpectedly; restarting");
                tokio::time::sleep(backoff).await;
                let spec = r.spec;
                let addr = (spec.addr)(&peer)?;
                match start_and_wait(&bin_dir, &opts, spec, addr, false).await {
                    Ok(mut fresh) => {
                        fresh.restarts = std::mem::take(&mut running[idx].restarts);
                        fresh.restarts.push(now);
                        running[idx] = fresh;
                    }
                    Err(e) => {
                        // A restart that fails (e.g. its port is briefly held elsewhere) is
                        // one more failed attempt, not the end of the peer: the old child
                        // stays in place as exited, so the next turn of the loop tries
                        // again with a longer backoff until the restart budget is spent.
                        let r = &mut running[idx];
                        r.restarts.push(now);
                        *r.last_error.lock().unwrap() = Some(format!("{e:#}"));
                        tracing::warn!(service = spec.name, state = "restarting", error = %format!("{e:#}"), "restart failed; trying again");
                    }
                }
            }
        }
    };
    if let Ok(sig) = &outcome {
        tracing::info!("{sig}: stopping the services");
    }
    watch.abort();
    stop_all(&mut running).await;
    drop(lock);
    outcome.map(|_| ())
}

/// `first` is false for restarts after a crash: those resume the local state and do not
/// join again through `--bootstrap`.
async fn start_and_wait(
    bin_dir: &Path,
    opts: &DaemonOptions,
    spec: ServiceSpec,
    addr: SocketAddr,
    first: bool,
) -> Result<Running> {
    let mut cmd = Command::new(bin_dir.join(spec.binary));
    cmd.arg("--config")
        .arg(&opts.config_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        // The service stops by itself if we die without stopping it (SIGKILL, a crash).
        .env(
            ipfs_cluster_runtime::shutdown::LAUNCHER_PID_ENV,
            std::process::id().to_string(),
        )
        .kill_on_drop(true);
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        // The services' logs go through our pipe; keep them free of colour codes.
        cmd.env("NO_COLOR", "1");
    }
    // Joining and leaving are the consensus service's business.
    if spec.name == "consensus" {
        if first && !opts.bootstrap.is_empty() {
            cmd.arg("--bootstrap").arg(opts.bootstrap.join(","));
        }
        if opts.leave {
            cmd.arg("--leave");
        }
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", spec.binary))?;
    tracing::info!(
        service = spec.name,
        state = "starting",
        pid = child.id(),
        "service started"
    );
    let last_error = Arc::new(Mutex::new(None));
    if let Some(stderr) = child.stderr.take() {
        let last = last_error.clone();
        let name = spec.name;
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(msg) = line.strip_prefix("error: ") {
                    *last.lock().unwrap() = Some(msg.to_string());
                }
                // Never panic on a closed terminal or pipe: the reader must keep draining
                // the service's stderr, or the service blocks on its next log line.
                let _ = writeln!(std::io::stderr(), "[{name}] {line}");
            }
        });
    }

    let started = Instant::now();
    let deadline = started + READY_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            // Give the stderr reader a moment to see the last line.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let why = last_error
                .lock()
                .unwrap()
                .clone()
                .unwrap_or_else(|| format!("exited with {status}"));
            bail!("{} service failed to start: {why}", spec.name);
        }
        if healthy(addr).await {
            tracing::info!(service = spec.name, state = "ready", %addr, "service ready");
            return Ok(Running {
                spec,
                child,
                last_error,
                restarts: Vec::new(),
            });
        }
        if Instant::now() > deadline {
            let _ = child.kill().await;
            bail!(
                "{} service did not become ready on {addr} within {:?}",
                spec.name,
                READY_TIMEOUT
            );
        }
        // A service is usually ready within tens of milliseconds and the four start one
        // after the other: a coarse poll would add up to its interval per service to the
        // peer's start (it was 100 ms, a third of the whole cold start).
        tokio::time::sleep(ready_poll_pause(started.elapsed())).await;
    }
}

/// How long to wait before the next readiness check of a service started `since` ago:
/// 5 ms during its first second, then 50 ms.
fn ready_poll_pause(since: Duration) -> Duration {
    if since < Duration::from_secs(1) {
        Duration::from_millis(5)
    } else {
        Duration::from_millis(50)
    }
}

/// Logs every change of a service's health (`state=unhealthy` / `state=ready`) while the
/// peer runs, so a hung service shows in the launcher's log even when its process lives.
///
/// Each service has its own loop: a check that hangs (a frozen process still accepts TCP
/// connections in the kernel's backlog, then never answers the HTTP/2 handshake) costs at
/// most `HEALTH_TIMEOUT` and delays no other service, so a hung service is reported within
/// one interval plus one timeout. Aborting the returned task stops every loop.
fn spawn_health_watch(peer: &Peer) -> Result<tokio::task::JoinHandle<()>> {
    let mut addrs = Vec::new();
    for spec in SERVICES {
        addrs.push((spec.name, (spec.addr)(peer)?));
    }
    Ok(tokio::spawn(async move {
        let mut loops = tokio::task::JoinSet::new();
        for (name, addr) in addrs {
            loops.spawn(watch_one(name, addr));
        }
        // The loops never end; this task is aborted at shutdown, which aborts the set.
        while loops.join_next().await.is_some() {}
    }))
}

async fn watch_one(name: &'static str, addr: SocketAddr) {
    let mut up = true;
    let mut tick = tokio::time::interval(HEALTH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = healthy(addr).await;
        if now != up {
            if now {
                tracing::info!(service = name, state = "ready", %addr, "service healthy again");
            } else {
                tracing::warn!(service = name, state = "unhealthy", %addr, "service stopped answering its health check");
            }
            up = now;
        }
    }
}

/// gRPC health check (no token needed) of a local service. A fresh connection each time
/// (a cached one could be stuck on a dead process); connecting, the HTTP/2 handshake and the
/// call together are bounded by `HEALTH_TIMEOUT`.
pub async fn healthy(addr: SocketAddr) -> bool {
    let check = async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .ok()?
            .connect_timeout(HEALTH_TIMEOUT)
            .timeout(HEALTH_TIMEOUT)
            .connect()
            .await
            .ok()?;
        let req = HealthCheckRequest {
            service: String::new(),
        };
        HealthClient::new(channel).check(req).await.ok()
    };
    matches!(
        tokio::time::timeout(HEALTH_TIMEOUT, check).await,
        Ok(Some(resp)) if resp.get_ref().status == ServingStatus::Serving as i32
    )
}

async fn wait_any(running: &mut [Running]) -> (usize, std::process::ExitStatus) {
    loop {
        for (i, r) in running.iter_mut().enumerate() {
            if let Ok(Some(st)) = r.child.try_wait() {
                return (i, st);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// SIGTERM each service in reverse start order; SIGKILL after `STOP_TIMEOUT`.
async fn stop_all(running: &mut Vec<Running>) {
    while let Some(mut r) = running.pop() {
        if let Some(pid) = r.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        match tokio::time::timeout(STOP_TIMEOUT, r.child.wait()).await {
            Ok(_) => tracing::info!(service = r.spec.name, state = "stopped", "stopped"),
            Err(_) => {
                tracing::warn!(
                    service = r.spec.name,
                    "did not stop within {:?}; killing it",
                    STOP_TIMEOUT
                );
                let _ = r.child.kill().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--bootstrap` takes every DNS form with and without the peer id (the compose file's
    /// `/dns4/cluster0/tcp/9096` among them) and refuses, naming the value, what cannot work.
    #[test]
    fn bootstrap_values_are_checked_before_start() {
        let me = ipfs_cluster_config::Identity::generate()
            .peer_id
            .to_string();
        let other = ipfs_cluster_config::Identity::generate()
            .peer_id
            .to_string();
        let good = vec![
            "/dns4/cluster0/tcp/9096".to_string(),
            format!(" /dns4/localhost/tcp/9096/p2p/{other}"),
            "/dns6/cluster0/tcp/9096".to_string(),
            format!("/dns/cluster0.example.org/tcp/9096/p2p/{other}"),
            "/dnsaddr/cluster.example.org".to_string(),
            format!("/ip4/10.0.0.2/tcp/9096/p2p/{other}"),
            "".to_string(),
        ];
        let got = check_bootstrap(&good, &me).unwrap();
        assert_eq!(got.len(), 6);
        assert_eq!(got[1], format!("/dns4/localhost/tcp/9096/p2p/{other}"));
        for (bad, want) in [
            ("cluster0:9096".to_string(), "cluster0:9096"),
            (
                "/dns4/cluster0/udp/9096/quic-v1".to_string(),
                "/dnsaddr/<name>",
            ),
            (format!("/dns4/localhost/tcp/9096/p2p/{me}"), "own address"),
        ] {
            let e = check_bootstrap(std::slice::from_ref(&bad), &me)
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("--bootstrap: ") && e.contains(&bad) && e.contains(want),
                "{bad}: {e}"
            );
        }
    }
}
