// The 5-peer cluster harness shared (through include!) by tests/behaviours_membership.rs
// and tests/consensus_cluster.rs; it uses the items those files import.
const SECRET: &str = "2b3c5e1f9b2d4a6c8e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d";

/// `ipfs-cluster-service init` with extra env overrides baked into service.json.
fn init_peer(dir: &Path, ipfs_api: &str, extra: &[(&str, String)]) -> Result<PeerDir> {
    init_named_peer(dir, ipfs_api, SECRET, extra)
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
