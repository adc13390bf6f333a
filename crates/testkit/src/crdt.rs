//! crdt-mode clusters (`init --consensus crdt`): every peer with its own Kubo node (the
//! Kubo nodes connected to each other), each peer's `cluster.peer_addresses` listing the
//! others so the hosts meet without `--bootstrap`, the crdt section edited per peer
//! (`trusted_peers` needs the peer ids, known only after init).

use std::time::Duration;

use anyhow::{bail, Result};
use serde_json::Value;

use crate::{
    bin, identity_id, join_all, peer_id, short_timings, test_dir, Cluster, IpfsNode, PeerDir,
    PeerPorts, TEST_SECRET,
};

/// Short crdt timings for tests: heads rebroadcast every 2s (a restarted peer catches up
/// within seconds).
pub fn crdt_timings() -> Vec<(&'static str, String)> {
    vec![("CLUSTER_CRDT_REBROADCASTINTERVAL", "2s".into())]
}

/// `ipfs-cluster-service init --consensus crdt` in `dir` on free ports.
pub fn init_crdt_peer(
    dir: &std::path::Path,
    ipfs_api: &str,
    extra: &[(&str, String)],
) -> Result<PeerDir> {
    let ports = PeerPorts::pick();
    let mut cmd = std::process::Command::new(bin("ipfs-cluster-service"));
    cmd.arg("--config")
        .arg(dir)
        .arg("init")
        .arg("--consensus")
        .arg("crdt");
    cmd.envs(ports.env(ipfs_api));
    cmd.env("CLUSTER_SECRET", TEST_SECRET);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let out = cmd.output()?;
    if !out.status.success() {
        bail!(
            "init --consensus crdt failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(PeerDir::new(dir, ports, ipfs_api))
}

/// Reads, changes and writes a peer's service.json (read by the daemon at start).
pub fn edit_service_json(dir: &std::path::Path, f: impl FnOnce(&mut Value)) -> Result<()> {
    let p = dir.join("service.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&p)?)?;
    f(&mut v);
    std::fs::write(&p, serde_json::to_string_pretty(&v)?)?;
    Ok(())
}

impl Cluster {
    /// `n` crdt peers, started at once. `trusted(i, ids)`: peer `i`'s `trusted_peers`
    /// (`None` keeps `["*"]`). Returns once the peers are started (each REST API
    /// answers); the caller waits for the peerset it expects.
    pub async fn start_crdt(
        n: usize,
        trusted: impl Fn(usize, &[String]) -> Option<Vec<String>>,
    ) -> Result<Self> {
        Self::start_crdt_with(n, trusted, |_, _| {}).await
    }

    /// `start_crdt`, with `edit(i, service.json)` applied to each peer's config before it
    /// starts (e.g. `cluster.follower_mode` on some of them).
    pub async fn start_crdt_with(
        n: usize,
        trusted: impl Fn(usize, &[String]) -> Option<Vec<String>>,
        edit: impl Fn(usize, &mut Value),
    ) -> Result<Self> {
        Self::start_crdt_env(n, trusted, &[], edit).await
    }

    /// `start_crdt_with`, with `env` overrides (e.g. timings) baked into every peer's
    /// service.json at init, after the test kit's own.
    pub async fn start_crdt_env(
        n: usize,
        trusted: impl Fn(usize, &[String]) -> Option<Vec<String>>,
        env: &[(&'static str, String)],
        edit: impl Fn(usize, &mut Value),
    ) -> Result<Self> {
        let extra_env = env;
        let tmp = test_dir()?;
        let starts = (0..n).map(|i| {
            let d = tmp.path().join(format!("ipfs_{i}"));
            async move { IpfsNode::start(&d).await }
        });
        let mut nodes = join_all(starts)
            .await
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        for i in 1..n {
            for j in 0..i {
                nodes[i].connect(&nodes[j]).await?;
            }
        }
        let mut peers = Vec::new();
        let mut ids = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            let mut env = vec![("CLUSTER_PEERNAME", format!("peer_{i}"))];
            env.extend(short_timings());
            env.extend(crdt_timings());
            env.extend(extra_env.iter().cloned());
            let dir = tmp.path().join(format!("peer_{i}"));
            let p = init_crdt_peer(&dir, &node.multiaddr(), &env)?;
            ids.push(identity_id(&p.dir)?);
            peers.push(p);
        }
        for (i, p) in peers.iter().enumerate() {
            let others: Vec<Value> = (0..n)
                .filter(|j| *j != i)
                .map(|j| Value::String(peers[j].swarm_addr(&ids[j])))
                .collect();
            let t = trusted(i, &ids);
            edit_service_json(&p.dir, |v| {
                v["cluster"]["peer_addresses"] = Value::Array(others);
                if let Some(t) = t {
                    v["consensus"]["crdt"]["trusted_peers"] =
                        Value::Array(t.into_iter().map(Value::String).collect());
                }
                edit(i, v);
            })?;
        }
        let mut procs = Vec::new();
        for p in join_all(peers.iter().map(|p| p.start(&[]))).await {
            procs.push(Some(p?));
        }
        for (i, p) in peers.iter().enumerate() {
            let id = peer_id(p).await?;
            if id != ids[i] {
                bail!(
                    "peer {i} answers as {id}, its identity.json says {}",
                    ids[i]
                );
            }
        }
        let ipfs = nodes.remove(0);
        Ok(Cluster {
            peers,
            ids,
            procs,
            ipfs,
            other_ipfs: nodes,
            netns: None,
            _tmp: tmp,
        })
    }

    /// Starts peer `i` again (after `stop`) and waits until its REST API answers.
    pub async fn restart(&mut self, i: usize) -> Result<()> {
        let p = self.peers[i].start(&[]).await?;
        self.procs[i] = Some(p);
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok(())
    }
}
