//! Real Kubo nodes for tests and benchmarks. Every node is started through
//! `deploy/local/kubo.sh start` (the one place that knows the pinned version and how a
//! loopback test node is configured: test profile, no bootstrap peers, no DHT, no MDNS),
//! in its own process group, with its repo and log in the caller's folder. A node can be
//! stopped (SIGTERM), killed (SIGKILL) and started again on the same repo and ports.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
    time::Duration,
};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::Full;

use crate::{free_port, repo_root, send, wait_for, Proc};

/// The script that installs and starts Kubo.
pub fn kubo_script() -> PathBuf {
    repo_root().join("deploy/local/kubo.sh")
}

/// The Kubo binary every node runs (resolved once per process by `kubo.sh path`, which
/// installs the pinned version into the cache folder when it is missing).
pub fn kubo_bin() -> Result<PathBuf> {
    static BIN: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = Command::new(kubo_script())
            .arg("path")
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("running {}: {e}", kubo_script().display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} path failed ({}): Kubo is needed by this test; run `make kubo` (needs Go >= 1.26)",
                kubo_script().display(),
                out.status
            ));
        }
        Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

/// A Kubo daemon on loopback ports; its process group is killed on drop.
pub struct KuboNode {
    /// Holds `ipfs-repo/` and `ipfs.log`.
    pub dir: PathBuf,
    pub api_port: u16,
    pub swarm_port: u16,
    /// The node's libp2p peer id.
    pub id: String,
    /// The network namespace the daemon runs in (its API is reachable only there).
    pub netns: Option<String>,
    proc: Option<Proc>,
}

impl KuboNode {
    /// A new node on free ports, its repo in `dir/ipfs-repo`; waits until its API answers.
    pub async fn start(dir: &Path) -> Result<Self> {
        Self::start_on(dir, free_port(), free_port()).await
    }

    /// A node on the given ports (a repo already in `dir` is reused).
    pub async fn start_on(dir: &Path, api_port: u16, swarm_port: u16) -> Result<Self> {
        Self::start_with(dir, api_port, swarm_port, None).await
    }

    /// A new node on free ports inside network namespace `ns` (see `Netns`); every
    /// method of the node reaches its API from inside that namespace.
    pub async fn start_in_netns(dir: &Path, ns: &str) -> Result<Self> {
        Self::start_with(dir, free_port(), free_port(), Some(ns.to_string())).await
    }

    async fn start_with(
        dir: &Path,
        api_port: u16,
        swarm_port: u16,
        netns: Option<String>,
    ) -> Result<Self> {
        let mut n = Self {
            dir: dir.to_path_buf(),
            api_port,
            swarm_port,
            id: String::new(),
            netns,
            proc: None,
        };
        n.restart().await?;
        Ok(n)
    }

    /// One request to the node's API, from inside its namespace when it has one.
    async fn send(&self, req: hyper::Request<Full<Bytes>>) -> Result<(u16, String)> {
        match &self.netns {
            None => send(req).await,
            Some(ns) => crate::in_netns_async(ns, move || send(req)).await?,
        }
    }

    async fn post(&self, url: &str) -> Result<(u16, String)> {
        let req = hyper::Request::post(url).body(Full::new(Bytes::new()))?;
        self.send(req).await
    }

    /// The command that (inits once and) runs the daemon of the repo in `dir` in the
    /// foreground, output appended to `dir/ipfs.log`, run through `wrap` when it is not
    /// empty (e.g. `["ip", "netns", "exec", "ns1"]`); for callers that wait for readiness
    /// themselves.
    pub fn command(dir: &Path, api_port: u16, swarm_port: u16, wrap: &[&str]) -> Result<Command> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("ipfs.log"))
            .with_context(|| format!("opening {}", dir.join("ipfs.log").display()))?;
        let mut cmd = match wrap.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(kubo_script());
                c
            }
            None => Command::new(kubo_script()),
        };
        cmd.arg("start")
            .arg(dir.join("ipfs-repo"))
            .arg(api_port.to_string())
            .arg(swarm_port.to_string())
            .env("KUBO_BIN", kubo_bin()?)
            .env("GOLOG_LOG_LEVEL", "error")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        Ok(cmd)
    }

    /// Starts the daemon again on the same repo and ports (after `stop` or `kill`).
    pub async fn restart(&mut self) -> Result<()> {
        if self.proc.is_some() {
            bail!("the IPFS node in {} is already running", self.dir.display());
        }
        std::fs::create_dir_all(&self.dir)?;
        let wrap: Vec<&str> = match &self.netns {
            Some(ns) => vec!["ip", "netns", "exec", ns],
            None => vec![],
        };
        let mut cmd = Self::command(&self.dir, self.api_port, self.swarm_port, &wrap)?;
        self.proc = Some(Proc::spawn("ipfs", &mut cmd)?);
        let url = format!("{}/api/v0/id", self.api_url());
        wait_for(Duration::from_secs(60), || async {
            matches!(self.post(&url).await, Ok((200, _)))
        })
        .await
        .with_context(|| format!("Kubo did not answer; log: {}", self.log_path().display()))?;
        let (_, body) = self.post(&url).await?;
        let v: serde_json::Value = serde_json::from_str(&body)?;
        self.id = v["ID"].as_str().context("no ID from ipfs id")?.to_string();
        Ok(())
    }

    /// SIGTERM and wait (SIGKILL after 30 s).
    pub async fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let p = tokio::task::spawn_blocking(move || {
                if p.terminate(Duration::from_secs(30)).is_none() {
                    p.kill_group();
                }
                p
            })
            .await;
            drop(p);
        }
    }

    /// SIGKILL of the daemon's process group (a crash); the repo lock dies with it.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill_group();
        }
    }

    /// Sets a Kubo config key to a JSON value (`ipfs config --json KEY VALUE`) and restarts
    /// the daemon so it takes effect.
    pub async fn set_config(&mut self, key: &str, json_value: &str) -> Result<()> {
        self.stop().await;
        let out = Command::new(kubo_bin()?)
            .args(["config", "--json", key, json_value])
            .env("IPFS_PATH", self.dir.join("ipfs-repo"))
            .stdin(Stdio::null())
            .output()
            .context("running ipfs config")?;
        if !out.status.success() {
            bail!(
                "ipfs config --json {key} {json_value}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        self.restart().await
    }

    pub fn is_running(&self) -> bool {
        self.proc.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(|p| p.pid())
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("ipfs.log")
    }

    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    /// The RPC API as a multiaddr (what `ipfshttp.node_multiaddress` takes).
    pub fn multiaddr(&self) -> String {
        format!("/ip4/127.0.0.1/tcp/{}", self.api_port)
    }

    /// The swarm address other nodes dial, with the peer id.
    pub fn swarm_multiaddr(&self) -> String {
        format!("/ip4/127.0.0.1/tcp/{}/p2p/{}", self.swarm_port, self.id)
    }

    /// `ipfs add` of some bytes (not pinned); returns the CID.
    pub async fn add(&self, data: &[u8]) -> Result<String> {
        self.add_many(&[data.to_vec()], false)
            .await?
            .pop()
            .context("no CID from add")
    }

    /// `ipfs add` of several files in one request (no pin, CIDv0 as Kubo's default); returns
    /// their CIDs in order. With `only_hash` nothing is stored: the CIDs are valid but no
    /// node has the blocks.
    pub async fn add_many(&self, files: &[Vec<u8>], only_hash: bool) -> Result<Vec<String>> {
        let boundary = "----testkitboundary";
        let mut body = Vec::new();
        for (i, data) in files.iter().enumerate() {
            body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f{i}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes());
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let req = hyper::Request::post(format!(
            "{}/api/v0/add?pin=false&only-hash={only_hash}",
            self.api_url()
        ))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(Full::new(Bytes::from(body)))?;
        let (status, text) = self.send(req).await?;
        if status != 200 {
            bail!("ipfs add: {status} {text}");
        }
        let mut cids = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line)?;
            if let Some(h) = v["Hash"].as_str() {
                cids.push(h.to_string());
            }
        }
        if cids.len() != files.len() {
            bail!(
                "ipfs add: {} files sent, {} CIDs back: {text}",
                files.len(),
                cids.len()
            );
        }
        Ok(cids)
    }

    /// The recursive pins the daemon holds (CIDs as Kubo prints them).
    pub async fn pins(&self) -> Result<Vec<String>> {
        let (status, text) = self
            .post(&format!("{}/api/v0/pin/ls?type=recursive", self.api_url()))
            .await?;
        if status != 200 {
            bail!("pin/ls: {status} {text}");
        }
        let v: serde_json::Value = serde_json::from_str(&text)?;
        Ok(v["Keys"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default())
    }

    /// `swarm/connect` to another node (so content can move between the two).
    pub async fn connect(&self, other: &KuboNode) -> Result<()> {
        let url = format!(
            "{}/api/v0/swarm/connect?arg={}",
            self.api_url(),
            other.swarm_multiaddr()
        );
        let (status, text) = self.post(&url).await?;
        if status != 200 {
            bail!("swarm/connect: {status} {text}");
        }
        Ok(())
    }

    /// The peer ids this node is connected to.
    pub async fn swarm_peers(&self) -> Result<Vec<String>> {
        let url = format!("{}/api/v0/swarm/peers", self.api_url());
        let (status, text) = self.post(&url).await?;
        if status != 200 {
            bail!("swarm/peers: {status} {text}");
        }
        let v: serde_json::Value = serde_json::from_str(&text)?;
        Ok(v["Peers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p["Peer"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }
}
