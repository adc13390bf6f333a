//! The peer's consensus service started alone, for the offline state commands: upstream
//! reads and writes the raft folder directly while the daemon is stopped; we run our own
//! `ipfs-cluster-consensus` on its configured internal address (nothing else of the peer
//! runs), talk to it over the internal gRPC contract, and stop it again.

use std::{
    collections::VecDeque,
    path::Path,
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use ipfs_cluster_config::Peer;
use ipfs_cluster_proto::{client::ConsensusClient, consensus::v1::LeaderRequest};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

use crate::supervisor::healthy;

const BINARY: &str = "ipfs-cluster-consensus";
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const LOG_TAIL: usize = 20;

pub struct OfflineConsensus {
    child: Child,
    pub client: ConsensusClient,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl OfflineConsensus {
    /// Starts the consensus binary from `bin_dir` for the peer and waits until it is healthy.
    pub async fn start(peer: &Peer, bin_dir: &Path) -> Result<Self> {
        let addr = peer.config.internal.consensus_addr()?;
        if healthy(addr).await {
            bail!(
                "a consensus service already answers on {addr}: this peer's services are running (perhaps under systemd); stop them before running state commands"
            );
        }
        let bin = bin_dir.join(BINARY);
        if !bin.exists() {
            bail!(
                "service binary {} not found; build the workspace (`make build`) or set IPFS_CLUSTER_BIN_DIR",
                bin.display()
            );
        }
        let mut cmd = Command::new(&bin);
        cmd.arg("--config")
            .arg(&peer.dir)
            // Offline: never leave the cluster (and back the state up) when we stop it.
            .env("CLUSTER_LEAVEONSHUTDOWN", "false")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let log = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(stderr) = child.stderr.take() {
            let log = log.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::debug!(target: "consensus", "{line}");
                    let mut l = log.lock().unwrap();
                    if l.len() == LOG_TAIL {
                        l.pop_front();
                    }
                    l.push_back(line);
                }
            });
        }
        let mut me = Self {
            child,
            client: ipfs_cluster_proto::client::consensus(addr, &peer.token),
            log,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = me.child.try_wait()? {
                tokio::time::sleep(Duration::from_millis(100)).await;
                bail!(
                    "the consensus service failed to start ({status}): {}",
                    me.last_error()
                );
            }
            if healthy(addr).await {
                tracing::debug!(%addr, "offline consensus service ready");
                return Ok(me);
            }
            if Instant::now() > deadline {
                let _ = me.child.kill().await;
                bail!(
                    "the consensus service did not become ready on {addr} within {READY_TIMEOUT:?}: {}",
                    me.last_error()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The service's last `error:` line, else its last log lines.
    fn last_error(&self) -> String {
        let l = self.log.lock().unwrap();
        if let Some(e) = l.iter().rev().find_map(|s| s.strip_prefix("error: ")) {
            return e.to_string();
        }
        l.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// Waits until raft has a leader (needed before any write such as Import).
    pub async fn wait_leader(&mut self, within: Duration) -> Result<String> {
        let deadline = Instant::now() + within;
        loop {
            let last = match self.client.leader(LeaderRequest {}).await {
                Ok(r) => return Ok(r.into_inner().peer_id),
                Err(e) => e.message().to_string(),
            };
            if Instant::now() > deadline {
                bail!(
                    "the consensus service found no raft leader within {within:?} ({last}). Running alone it can only lead when this peer's raft state (or consensus.raft.init_peerset) names no other peer: run `ipfs-cluster-service state cleanup` and empty init_peerset, import here, start this peer and join the others with `daemon --bootstrap`"
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGTERM, then SIGKILL after `STOP_TIMEOUT`. Errors when it did not exit cleanly.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(Ok(st)) if st.success() => Ok(()),
            Ok(Ok(st)) => bail!(
                "the consensus service exited with {st} while stopping: {}",
                self.last_error()
            ),
            Ok(Err(e)) => Err(e).context("waiting for the consensus service"),
            Err(_) => {
                let _ = self.child.kill().await;
                bail!("the consensus service did not stop within {STOP_TIMEOUT:?}; killed it")
            }
        }
    }
}
