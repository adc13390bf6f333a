//! Consensus figures: commit throughput and p50/p99 latency on a 3-peer cluster with 32
//! concurrent clients (in-process router instead of the transport), and restart-to-ready
//! time and memory with a large pinset.
//!
//! `cargo run -p ipfs-cluster-consensus --features test-doubles --example bench -- [PINS_FOR_COMMITS] [PINS_FOR_RESTART]`
//! (defaults 2000 and 100000).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use ipfs_cluster_consensus::{
    local_router::LocalRouter,
    node::{Forward, Node, Options},
    raft::command::{PinBytes, PinOp},
};
use ipfs_cluster_proto::types::v1::{Pin, PinOptions, PinType};

fn cid_n(i: u32) -> String {
    let mut d = [0u8; 32];
    d[..4].copy_from_slice(&i.to_be_bytes());
    let mh = cid::multihash::Multihash::<64>::wrap(0x12, &d).expect("32-byte digest fits");
    cid::Cid::new_v1(0x55, mh).to_string()
}

fn pin(cid: String) -> Pin {
    Pin {
        cid,
        r#type: PinType::Data as i32,
        max_depth: -1,
        options: Some(PinOptions {
            replication_factor_min: -1,
            replication_factor_max: -1,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn opts(peer: &str, dir: &std::path::Path, peers: &[&str]) -> Options {
    let mut o = Options::new(peer, dir.join(peer));
    o.heartbeat_timeout = Duration::from_millis(500);
    o.election_timeout = Duration::from_millis(1000);
    o.init_peerset = peers.iter().map(|s| s.to_string()).collect();
    o
}

async fn wait_leader(n: &Node) -> anyhow::Result<()> {
    n.raft
        .wait(Some(Duration::from_secs(30)))
        .metrics(|m| m.current_leader.is_some(), "leader")
        .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,openraft=error".into()),
        )
        .init();
    let args: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let commits = *args.first().unwrap_or(&2000);
    let big = *args.get(1).unwrap_or(&100_000);
    let dir = tempfile::tempdir()?;

    // 1. Commit throughput and latency, 3 peers, 32 clients through random peers.
    let peers = ["peerA", "peerB", "peerC"];
    let router = LocalRouter::default();
    let mut nodes = vec![];
    for p in peers {
        let n = Node::start(opts(p, dir.path(), &peers), Arc::new(router.clone())).await?;
        router.insert(p, n.clone());
        nodes.push(n);
    }
    for n in &nodes {
        wait_leader(n).await?;
    }
    let start = Instant::now();
    let mut tasks = vec![];
    for c in 0..32u32 {
        let nodes = nodes.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = vec![];
            let mut i = c;
            while i < commits {
                let t = Instant::now();
                nodes[(i % 3) as usize]
                    .pin(pin(cid_n(i)))
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                lat.push(t.elapsed());
                i += 32;
            }
            anyhow::Ok(lat)
        }));
    }
    let mut lat = vec![];
    for t in tasks {
        lat.extend(t.await??);
    }
    let total = start.elapsed();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "commits: {} pins in {:.2?} = {:.0} pins/s; latency p50 {:.2?}, p99 {:.2?} (3 peers, 32 clients, in-process router, {} build)",
        lat.len(),
        total,
        lat.len() as f64 / total.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    for n in &nodes {
        n.raft.shutdown().await?;
    }
    router.clear();
    drop(nodes);

    // 2. Restart-to-ready with a large pinset.
    let router = LocalRouter::default();
    let one = opts("solo", dir.path(), &[]);
    let n = Node::start(one.clone(), Arc::new(router.clone())).await?;
    wait_leader(&n).await?;
    let fill = Instant::now();
    let mut i = 0;
    while i < big {
        let batch: Vec<PinBytes> = (i..(i + 5000).min(big))
            .map(|k| PinBytes::encode(&pin(cid_n(k))))
            .collect();
        n.commit(Forward::Op(PinOp::PinBatch(batch)))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        i += 5000;
    }
    println!("filled {big} pins in {:.2?}", fill.elapsed());
    n.raft.shutdown().await?;
    drop(n);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before = rss_kib();
    let t = Instant::now();
    let n = Node::start(one, Arc::new(router.clone())).await?;
    wait_leader(&n).await?;
    let probe = n
        .get(&cid_n(big / 2))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let ready = t.elapsed();
    anyhow::ensure!(probe.is_some(), "pin missing after restart");
    let st = n.store.applied_state().await?;
    println!(
        "restart with {} pins: ready (store open + raft started + leader + first read) in {:.2?}; RSS grew by {} KiB",
        st.pins,
        ready,
        rss_kib().saturating_sub(rss_before)
    );
    n.raft.shutdown().await?;
    Ok(())
}
