// The 5-peer cluster harness shared (through include!) by tests/behaviours_membership.rs
// and tests/consensus_cluster.rs; it uses the items those files import.
const SECRET: &str = "2b3c5e1f9b2d4a6c8e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d";

/// `ipfs-cluster-service init` with extra env overrides baked into service.json.
fn init_peer(dir: &Path, ipfs_api: &str, extra: &[(&str, String)]) -> Result<PeerDir> {
    let ports = PeerPorts::pick();
    let mut cmd = Command::new(bin("ipfs-cluster-service"));
    cmd.arg("--config").arg(dir).arg("init");
    cmd.envs(ports.env(ipfs_api));
    cmd.env("CLUSTER_SECRET", SECRET);
    cmd.env("CLUSTER_PEERNAME", dir.file_name().unwrap());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let out = cmd.output()?;
    if !out.status.success() {
        bail!("init failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(PeerDir {
        dir: dir.to_path_buf(),
        ports,
        ipfs_api: ipfs_api.to_string(),
    })
}

/// The test's temporary folder; `KEEP_TEST_DIRS=1` keeps it (with every peer's logs and
/// stores) after the test, for a post-mortem.
fn test_dir() -> Result<tempfile::TempDir> {
    let keep = std::env::var_os("KEEP_TEST_DIRS").is_some();
    let t = tempfile::Builder::new()
        .prefix("ipfs-cluster-test")
        .disable_cleanup(keep)
        .tempdir()?;
    if keep {
        eprintln!("KEEP_TEST_DIRS: keeping {}", t.path().display());
    }
    Ok(t)
}

/// A random, valid CIDv1 (raw codec, identity multihash of 20 random bytes).
fn random_cid() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut bytes = vec![0x01, 0x55, 0x00, 20];
    while bytes.len() < 24 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos(),
        );
        bytes.extend_from_slice(&h.finish().to_le_bytes());
    }
    bytes.truncate(24);
    format!("b{}", base32(&bytes))
}

fn base32(data: &[u8]) -> String {
    const A: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let (mut out, mut buf, mut bits) = (String::new(), 0u32, 0);
    for &b in data {
        buf = (buf << 8) | b as u32;
        bits += 8;
        while bits >= 5 {
            out.push(A[((buf >> (bits - 5)) & 31) as usize] as char);
            bits -= 5;
        }
    }
    if bits > 0 {
        out.push(A[((buf << (5 - bits)) & 31) as usize] as char);
    }
    out
}

async fn futures_join_all<F: std::future::Future>(fs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = fs.collect();
    let mut out = Vec::new();
    // Started concurrently: each `start` polls its own readiness.
    let mut pinned: Vec<_> = handles.into_iter().map(Box::pin).collect();
    let mut done: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if done[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => done[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    for d in done {
        out.push(d.unwrap());
    }
    out
}

/// The warnings and errors of a peer's log (launcher and services), for failure messages.
fn problems(p: &PeerDir) -> String {
    let text = std::fs::read_to_string(p.dir.join("daemon.log")).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| {
            (l.contains("WARN") || l.contains("ERROR") || l.contains("error"))
                && !l.contains("metric expired")
        })
        .collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

async fn peer_id(p: &PeerDir) -> Result<String> {
    let v = get_json(&format!("{}/id", p.rest_url())).await?;
    Ok(v["id"].as_str().context("no id")?.to_string())
}

/// Peer ids listed by `GET /peers` (a JSON stream of objects, one per line).
async fn members(url: &str) -> Vec<String> {
    match http("GET", url, None).await {
        Ok((200, body)) => serde_json::Deserializer::from_str(&body)
            .into_iter::<Value>()
            .filter_map(|v| v.ok())
            .flat_map(|v| match v {
                Value::Array(a) => a,
                v => vec![v],
            })
            .filter(|v| v["error"].as_str().unwrap_or("").is_empty())
            .filter_map(|v| v["id"].as_str().map(str::to_string))
            .collect(),
        _ => vec![],
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// One test at a time: each starts its own cluster and the machine has 2 shared cores.
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run<F: std::future::Future<Output = ()>>(f: F) {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Timings as §8's harness, slowed a little for 2 shared cores.
fn env() -> Vec<(&'static str, String)> {
    vec![
        ("CLUSTER_MONITORPINGINTERVAL", "3s".into()),
        ("CLUSTER_DISK_METRICTTL", "10s".into()),
        ("CLUSTER_BALANCED_ALLOCATEBY", "freespace".into()),
        ("CLUSTER_PEERWATCHINTERVAL", "1s".into()),
        ("CLUSTER_RAFT_WAITFORLEADERTIMEOUT", "15s".into()),
        ("CLUSTER_RAFT_COMMITRETRIES", "2".into()),
        ("CLUSTER_RAFT_COMMITRETRYDELAY", "200ms".into()),
    ]
}

struct Cluster {
    peers: Vec<PeerDir>,
    ids: Vec<String>,
    procs: Vec<Option<Proc>>,
    _ipfs: IpfsNode,
    // Last: removed after every process is gone.
    _tmp: tempfile::TempDir,
}
