//! One cluster shared by every test of a test binary (tests/behaviours.rs on raft,
//! tests/behaviours_crdt.rs on crdt). Starting a cluster costs 20–40 s, so it is started
//! once, on its own thread and runtime, kept in a static and taken in turns through a
//! mutex ([`with_shared`]); every test first restarts the peers that are not running, and
//! a test that stops peers restarts them before it returns. The cluster is never dropped:
//! the [`Reaper`] ends its process groups and removes its folder when the binary exits.
//! Also the REST helpers those tests share (NDJSON lists, the statuses of a global pin
//! info, unique content).

use std::{
    collections::BTreeMap,
    future::Future,
    pin::Pin,
    process::Command,
    sync::{Mutex, MutexGuard, OnceLock},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::{get_json, http, wait_for, Cluster, KuboNode, PeerDir, Reaper};

/// Where a test binary keeps its shared cluster (or why it did not start).
pub type SharedCell<C> = OnceLock<std::result::Result<Mutex<C>, String>>;

/// A test body: borrows the locked cluster for the length of its future.
pub type Body<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;

/// How a test binary starts its shared cluster (run once, on its own thread).
pub type Start<C> = fn() -> Pin<Box<dyn Future<Output = Result<C>>>>;

/// A started cluster watched by its reaper, with what "all peers up" means for it.
pub struct SharedCluster {
    kit: Cluster,
    reaper: Reaper,
    /// How long every peer may take to see all members healthy.
    whole_within: Duration,
    /// A metric every peer must have from every peer before the cluster is ready (crdt:
    /// allocations need the peers' `freespace`).
    ready_metric: Option<&'static str>,
}

impl std::ops::Deref for SharedCluster {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        &self.kit
    }
}

impl std::ops::DerefMut for SharedCluster {
    fn deref_mut(&mut self) -> &mut Cluster {
        &mut self.kit
    }
}

/// The runtime each test body (and the cluster's start) runs on.
pub fn shared_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime for the shared cluster")
}

/// Runs one test body on a fresh runtime with the shared cluster locked (started on first
/// use with `start`, on its own thread) and all its peers up.
pub fn with_shared<C, F>(cell: &'static SharedCell<C>, start: Start<C>, f: F)
where
    C: std::ops::DerefMut<Target = SharedCluster> + Send + 'static,
    F: for<'a> FnOnce(&'a mut C) -> Body<'a>,
{
    let c = cell.get_or_init(|| {
        std::thread::spawn(move || {
            shared_rt()
                .block_on(start())
                .map(Mutex::new)
                .map_err(|e| format!("{e:#}"))
        })
        .join()
        .unwrap_or_else(|_| Err("the cluster start panicked".into()))
    });
    let mut c: MutexGuard<'static, C> = match c {
        Ok(m) => m.lock().unwrap_or_else(|e| e.into_inner()),
        Err(e) => panic!("the shared cluster did not start: {e}"),
    };
    shared_rt().block_on(async {
        c.ensure_all_up().await.expect("restoring the peers");
        f(&mut c).await
    });
}

impl SharedCluster {
    /// Takes over a started cluster: its reaper, then waits until every peer sees all
    /// members healthy (within `whole_within`) and has `ready_metric` from every peer.
    pub async fn start(
        kit: Cluster,
        whole_within: Duration,
        ready_metric: Option<&'static str>,
    ) -> Result<Self> {
        let reaper = Reaper::start(kit.dir())?;
        let c = SharedCluster {
            kit,
            reaper,
            whole_within,
            ready_metric,
        };
        c.save_pgids();
        c.wait_ready().await?;
        Ok(c)
    }

    /// How many peers the cluster has.
    pub fn n(&self) -> usize {
        self.peers.len()
    }

    /// Peer `i`'s Kubo node.
    pub fn node(&self, i: usize) -> &KuboNode {
        self.kit.ipfs_of(i)
    }

    /// Every peer's Kubo node, by peer index.
    pub fn nodes(&self) -> Vec<&KuboNode> {
        (0..self.n()).map(|i| self.node(i)).collect()
    }

    /// Writes the live process groups for the reaper.
    pub fn save_pgids(&self) {
        let kubo = self.nodes().into_iter().filter_map(|n| n.pid());
        let peers = self.procs.iter().flatten().map(|p| p.pid());
        self.reaper.set(kubo.chain(peers).collect::<Vec<_>>());
    }

    async fn wait_ready(&self) -> Result<()> {
        self.wait_whole().await?;
        if let Some(m) = self.ready_metric {
            self.kit.wait_metric(m).await?;
        }
        Ok(())
    }

    /// Every peer sees all members without errors.
    pub async fn wait_whole(&self) -> Result<()> {
        let n = self.n();
        for i in 0..n {
            let url = format!("{}/peers", self.rest(i));
            wait_for(self.whole_within, || async {
                match ndjson("GET", &url).await {
                    Ok(v) => {
                        v.len() == n
                            && v.iter()
                                .all(|p| p["error"].as_str().unwrap_or("").is_empty())
                    }
                    Err(_) => false,
                }
            })
            .await
            .with_context(|| {
                format!(
                    "peer {i} does not see {n} healthy peers; /peers: {:?}",
                    last_peers(&self.peers[i])
                )
            })?;
        }
        Ok(())
    }

    /// Restarts (plain `daemon`: it resumes its state) every peer that is not running.
    pub async fn ensure_all_up(&mut self) -> Result<()> {
        let mut restarted = false;
        for i in 0..self.n() {
            let alive = self.procs[i]
                .as_mut()
                .is_some_and(|p| p.try_wait().is_none());
            if !alive {
                self.procs[i] = None;
                self.procs[i] = Some(self.peers[i].start(&[]).await?);
                restarted = true;
            }
        }
        self.save_pgids();
        if restarted {
            self.wait_ready().await?;
        }
        Ok(())
    }

    /// SIGTERM (clean stop) or SIGKILL of peer `i`'s launcher and all its services (one
    /// process group); waits until the group is gone.
    pub async fn down(&mut self, i: usize, sig: &str) {
        let p = self.procs[i].take().expect("peer running");
        let pgid = p.pid();
        let _ = Command::new("kill")
            .args([&format!("-{sig}"), "--", &format!("-{pgid}")])
            .status();
        drop(p); // reaps the launcher (and TERM/KILLs what is left of the group)
        let _ = wait_for(Duration::from_secs(20), || async {
            !Command::new("kill")
                .args(["-0", "--", &format!("-{pgid}")])
                .stderr(std::process::Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        })
        .await;
        self.save_pgids();
    }

    /// Unpins everything in peer 0's state (a 404 is fine: already gone).
    pub async fn unpin_all(&self) {
        let pins = ndjson("GET", &format!("{}/allocations", self.rest(0)))
            .await
            .expect("allocations");
        for p in &pins {
            let cid = p["cid"].as_str().unwrap();
            let (st, body) = http("DELETE", &format!("{}/pins/{cid}", self.rest(0)), None)
                .await
                .unwrap();
            assert!(st == 200 || st == 404, "cleanup unpin {cid}: {st} {body}");
        }
    }

    /// Waits until no peer tracks anything.
    pub async fn wait_nothing_tracked(&self) {
        for i in 0..self.n() {
            let url = format!("{}/pins?local=true", self.rest(i));
            wait_for(Duration::from_secs(60), || async {
                matches!(ndjson("GET", &url).await, Ok(v) if v.is_empty())
            })
            .await
            .unwrap_or_else(|_| panic!("peer {i} still tracks pins after cleanup"));
        }
    }

    /// Pins `cid` through peer `i` (asserting a 200) and returns the pin.
    pub async fn pin(&self, i: usize, cid: &str, query: &str) -> Value {
        let (st, body) = http(
            "POST",
            &format!("{}/pins/{cid}?{query}", self.rest(i)),
            None,
        )
        .await
        .unwrap();
        assert_eq!(
            st,
            200,
            "pin {cid} through peer {i}: {body}\n{}",
            self.logs()
        );
        serde_json::from_str(&body).unwrap()
    }

    /// Peer `i`'s global status of `cid`.
    pub async fn status(&self, i: usize, cid: &str) -> Value {
        get_json(&format!("{}/pins/{cid}", self.rest(i)))
            .await
            .unwrap()
    }

    /// Waits until Status(cid) on peer i shows `n` peers, every one `want`.
    pub async fn wait_status_n(
        &self,
        i: usize,
        cid: &str,
        want: &str,
        n: usize,
        within: Duration,
    ) -> Value {
        let url = format!("{}/pins/{cid}", self.rest(i));
        let ok = wait_for(within, || async {
            match get_json(&url).await {
                Ok(v) => statuses(&v).len() == n && statuses(&v).iter().all(|s| s == want),
                Err(_) => false,
            }
        })
        .await;
        let v = self.status(i, cid).await;
        assert!(ok.is_ok(), "{cid} is not {want} on {n} peers: {v:#}");
        v
    }

    /// Waits until Status(cid) on peer i shows every peer in `want`.
    pub async fn wait_status(&self, i: usize, cid: &str, want: &str, within: Duration) -> Value {
        self.wait_status_n(i, cid, want, self.n(), within).await
    }

    /// A valid CID whose blocks nobody has (pinning it always fails with the pin timeout).
    pub async fn error_cid(&self) -> String {
        self.node(0)
            .add_many(&[unique("nobody has this")], true)
            .await
            .unwrap()
            .remove(0)
    }

    /// Content that every IPFS node has locally (so pins succeed at once).
    pub async fn good_cids(&self, files: &[Vec<u8>]) -> Vec<String> {
        let mut cids = None;
        for n in self.nodes() {
            let c = n.add_many(files, false).await.unwrap();
            if let Some(prev) = &cids {
                assert_eq!(prev, &c);
            }
            cids = Some(c);
        }
        cids.unwrap()
    }
}

/// What `/peers` answered last (for failure messages).
fn last_peers(p: &PeerDir) -> String {
    let url = format!("{}/peers", p.rest_url());
    std::thread::spawn(move || {
        shared_rt()
            .block_on(http("GET", &url, None))
            .map(|(s, b)| format!("{s} {b}"))
            .unwrap_or_else(|e| e.to_string())
    })
    .join()
    .unwrap_or_default()
}

/// Unique bytes for test content.
pub fn unique(tag: &str) -> Vec<u8> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{tag} {n} {t} {}\n", std::process::id()).into_bytes()
}

/// An NDJSON (or empty 204) response as a list of objects.
pub async fn ndjson(method: &str, url: &str) -> Result<Vec<Value>> {
    let (st, body) = http(method, url, None).await?;
    if st != 200 && st != 204 {
        bail!("{method} {url}: {st} {body}");
    }
    body.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("bad NDJSON line {l}")))
        .collect()
}

/// Every peer's status in a GlobalPinInfo.
pub fn statuses(gpi: &Value) -> Vec<String> {
    gpi["peer_map"]
        .as_object()
        .map(|m| {
            m.values()
                .map(|p| p["status"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// peer -> (peername, status, ipfs id) of a GlobalPinInfo, without timestamps.
pub fn shape(gpi: &Value) -> BTreeMap<String, (String, String, String)> {
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    gpi["peer_map"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, p)| {
                    (
                        k.clone(),
                        (s(&p["peername"]), s(&p["status"]), s(&p["ipfs_peer_id"])),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}
