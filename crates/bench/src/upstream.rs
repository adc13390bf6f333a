//! Upstream IPFS Cluster v1.1.6 peers (the Go implementation we replace) for the side-by-side
//! figures: `ipfs-cluster-service -c DIR init --consensus raft|crdt`, then the
//! generated `service.json` rewritten to free loopback ports, the benchmark's secret, this
//! peer's own Kubo node, and (crdt) the batching settings upstream recommends for
//! throughput. The binaries come from `deploy/local/upstream.sh` (pinned, built from the Go
//! module proxy into a cache folder). Every process is in its own group and killed on drop
//! (`procs::Proc`).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::procs::{self, free_port, loopback, Proc};

/// The upstream release the comparison runs (deploy/local/upstream.sh pins the same).
pub const UPSTREAM_VERSION: &str = "1.1.6";

/// crdt batching for throughput: upstream's operators' published production setting
/// ("commits every 300 items or 10 seconds", ipfscluster.io, *State of the clusters:
/// January 2022*); batching is off by default (`max_batch_size` 0). `max_queue_size` is
/// upstream's default (50,000), written out so the config says it.
pub const CRDT_MAX_BATCH_SIZE: u64 = 300;
pub const CRDT_MAX_BATCH_AGE: &str = "10s";
pub const CRDT_MAX_QUEUE_SIZE: u64 = 50_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Raft,
    Crdt,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Raft => "raft",
            Mode::Crdt => "crdt",
        }
    }
}

/// The folder with upstream's binaries: `dir` when given, else `deploy/local/upstream.sh
/// path` (which installs them when missing; needs Go).
pub fn bin_dir(dir: Option<&Path>) -> Result<PathBuf> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => {
            let script = ipfs_cluster_testkit::repo_root().join("deploy/local/upstream.sh");
            let out = Command::new(&script)
                .arg("path")
                .stdin(Stdio::null())
                .stderr(Stdio::inherit())
                .output()
                .with_context(|| format!("running {}", script.display()))?;
            if !out.status.success() {
                bail!(
                    "{} path failed ({}): upstream IPFS Cluster v{UPSTREAM_VERSION} is needed for the side-by-side figures; run `make upstream` (needs Go >= 1.26) or pass --impl ours",
                    script.display(),
                    out.status
                );
            }
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        }
    };
    for b in ["ipfs-cluster-service", "ipfs-cluster-ctl"] {
        if !dir.join(b).exists() {
            bail!(
                "{} has no {b}: run `make upstream` or pass --upstream-dir",
                dir.display()
            );
        }
    }
    Ok(dir)
}

/// `ipfs-cluster-service --version` of the binaries in `bin_dir`, e.g. "1.1.6".
pub fn version(bin_dir: &Path) -> String {
    Command::new(bin_dir.join("ipfs-cluster-service"))
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .and_then(|s| s.rsplit(' ').next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

/// One upstream peer's config folder and ports.
pub struct UpstreamPeer {
    pub dir: PathBuf,
    pub bin_dir: PathBuf,
    pub rest: u16,
    pub swarm: u16,
    pub id: String,
}

impl UpstreamPeer {
    /// `init --consensus MODE` in `dir`, then `service.json` set to free loopback ports,
    /// `secret`, the Kubo API `ipfs_api` (multiaddr) and, for crdt, batching.
    pub fn init(
        bin_dir: &Path,
        dir: &Path,
        mode: Mode,
        ipfs_api: &str,
        secret: &str,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let out = Command::new(bin_dir.join("ipfs-cluster-service"))
            .arg("-c")
            .arg(dir)
            .args(["init", "--consensus", mode.as_str()])
            .stdin(Stdio::null())
            .output()
            .context("running upstream ipfs-cluster-service init")?;
        if !out.status.success() {
            bail!(
                "upstream init in {} failed: {}",
                dir.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let (rest, swarm, proxy, pinsvc) = (free_port()?, free_port()?, free_port()?, free_port()?);
        let t = |port: u16| format!("/ip4/127.0.0.1/tcp/{port}");
        let path = dir.join("service.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let mut c: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        let set = |c: &mut serde_json::Value, ptr: &str, v: serde_json::Value| -> Result<()> {
            *c.pointer_mut(ptr).with_context(|| {
                format!(
                    "upstream's service.json has no {ptr} (not v{UPSTREAM_VERSION}?): {}",
                    path.display()
                )
            })? = v;
            Ok(())
        };
        use serde_json::json;
        set(&mut c, "/cluster/secret", json!(secret))?;
        set(&mut c, "/cluster/listen_multiaddress", json!([t(swarm)]))?;
        set(&mut c, "/cluster/peername", json!(dir_name(dir)))?;
        set(
            &mut c,
            "/api/restapi/http_listen_multiaddress",
            json!(t(rest)),
        )?;
        set(
            &mut c,
            "/api/ipfsproxy/listen_multiaddress",
            json!(t(proxy)),
        )?;
        set(&mut c, "/api/ipfsproxy/node_multiaddress", json!(ipfs_api))?;
        set(
            &mut c,
            "/api/pinsvcapi/http_listen_multiaddress",
            json!(t(pinsvc)),
        )?;
        set(
            &mut c,
            "/ipfs_connector/ipfshttp/node_multiaddress",
            json!(ipfs_api),
        )?;
        if mode == Mode::Crdt {
            set(
                &mut c,
                "/consensus/crdt/batching",
                json!({
                    "max_batch_size": CRDT_MAX_BATCH_SIZE,
                    "max_batch_age": CRDT_MAX_BATCH_AGE,
                    "max_queue_size": CRDT_MAX_QUEUE_SIZE,
                }),
            )?;
        }
        std::fs::write(&path, serde_json::to_string_pretty(&c)?)
            .with_context(|| format!("writing {}", path.display()))?;
        let ident: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("identity.json"))?)
                .context("upstream identity.json is not JSON")?;
        let id = ident["id"]
            .as_str()
            .context("upstream identity.json has no id")?
            .to_string();
        Ok(Self {
            dir: dir.to_path_buf(),
            bin_dir: bin_dir.to_path_buf(),
            rest,
            swarm,
            id,
        })
    }

    pub fn rest_addr(&self) -> SocketAddr {
        loopback(self.rest)
    }

    /// The libp2p address other peers `--bootstrap` to.
    pub fn bootstrap_addr(&self) -> String {
        format!("/ip4/127.0.0.1/tcp/{}/p2p/{}", self.swarm, self.id)
    }

    /// Starts `daemon` (no waiting), optionally `--bootstrap ADDR`; output to daemon.log.
    pub fn spawn(&self, bootstrap: Option<&str>) -> Result<Proc> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("daemon.log"))?;
        let mut cmd = Command::new(self.bin_dir.join("ipfs-cluster-service"));
        cmd.arg("-c").arg(&self.dir).arg("daemon");
        if let Some(b) = bootstrap {
            cmd.args(["--bootstrap", b]);
        }
        cmd.env("GOLOG_LOG_LEVEL", "warn")
            .stdout(log.try_clone()?)
            .stderr(log);
        Proc::spawn("upstream ipfs-cluster-service daemon", &mut cmd)
    }

    /// Waits until `GET /id` answers 200 (the same readiness as ours); stops early when
    /// the daemon exits.
    pub async fn wait_ready(&self, proc: &mut Proc, within: Duration) -> Result<Duration> {
        let addr = self.rest_addr();
        let r = procs::poll_id(addr, proc, within).await;
        match r {
            Ok(_) if proc.exited() => bail!(
                "upstream peer {} exited before it was ready; log tail:\n{}",
                self.dir.display(),
                self.log_tail()
            ),
            Ok(d) => Ok(d),
            Err(_) => bail!(
                "upstream peer {} not ready within {within:?}; log tail:\n{}",
                self.dir.display(),
                self.log_tail()
            ),
        }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// `state import -f FILE` (the peer must be stopped): how upstream's users load a
    /// pinset in bulk (backups, migrations). Returns how long it took.
    pub async fn state_import(&self, file: &Path, within: Duration) -> Result<Duration> {
        let t0 = Instant::now();
        let mut cmd = tokio::process::Command::new(self.bin_dir.join("ipfs-cluster-service"));
        cmd.arg("-c")
            .arg(&self.dir)
            .args(["state", "import", "-f"])
            .arg(file)
            .env("GOLOG_LOG_LEVEL", "warn")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let out = tokio::time::timeout(within, cmd.output())
            .await
            .with_context(|| {
                format!(
                    "upstream state import in {} did not finish within {within:?}",
                    self.dir.display()
                )
            })?
            .context("running upstream state import")?;
        if !out.status.success() {
            bail!(
                "upstream state import in {} failed: {}",
                self.dir.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(t0.elapsed())
    }
}

fn dir_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "peer".into())
}

/// Writes `n` random pins (CIDv1 raw sha2-256, never fetchable) as the NDJSON `state
/// export` format upstream's `state import` reads; returns the CIDs' count.
pub fn write_export(path: &Path, n: u64) -> Result<()> {
    use std::io::Write;
    let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = std::io::BufWriter::new(f);
    let ts = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    for _ in 0..n {
        writeln!(
            w,
            r#"{{"replication_factor_min":-1,"replication_factor_max":-1,"name":"","mode":"recursive","shard_size":0,"user_allocations":null,"expire_at":"0001-01-01T00:00:00Z","metadata":null,"pin_update":null,"origins":[],"cid":"{}","type":"pin","allocations":[],"max_depth":-1,"reference":null,"timestamp":"{ts}"}}"#,
            crate::cids::random_cid()
        )?;
    }
    w.flush()?;
    Ok(())
}
