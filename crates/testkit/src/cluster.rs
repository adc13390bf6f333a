//! Whole clusters for the multi-process tests: N peers through the real launcher on
//! loopback, each with the shared short timings, sharing one Kubo node (these tests are
//! about the cluster, not about moving content), plus the probes every such test asks
//! (members, leader, state, logs). Peer 0 bootstraps, the others `--bootstrap` it (all at
//! once or one at a time), or every peer is its own one-peer cluster. With network
//! namespaces (`Cluster::start_in_netns`) each peer and its own Kubo node run in the peer's
//! namespace, so a test can cut a peer off the network (`Netns::isolate`).

use std::{
    collections::{BTreeMap, HashSet},
    future::Future,
    time::Duration,
};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::{
    get_json, http, in_netns_async, init_named_peer, init_peer_on, join_all, wait_for, IpfsNode,
    Netns, PeerDir, Proc,
};

/// The cluster secret of every test cluster.
pub const TEST_SECRET: &str = "2b3c5e1f9b2d4a6c8e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d";

/// Timings as upstream's test harness, slowed a little for 2 shared cores.
pub fn short_timings() -> Vec<(&'static str, String)> {
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

/// `ipfs-cluster-service init` of a test peer named after its folder, with the test
/// secret and extra env overrides baked into service.json.
pub fn init_test_peer(
    dir: &std::path::Path,
    ipfs_api: &str,
    extra: &[(&str, String)],
) -> Result<PeerDir> {
    init_named_peer(dir, ipfs_api, TEST_SECRET, extra)
}

/// The test's temporary folder; `KEEP_TEST_DIRS=1` keeps it (with every peer's logs and
/// stores) after the test, for a post-mortem.
pub fn test_dir() -> Result<tempfile::TempDir> {
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
pub fn problems(p: &PeerDir) -> String {
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

/// The panic messages in a peer's log (a service's thread panicked), with the line after.
pub fn panics(p: &PeerDir) -> String {
    let text = std::fs::read_to_string(p.dir.join("daemon.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    for (k, l) in lines.iter().enumerate() {
        if l.contains("panicked at") {
            out.push_str(&format!("{}: PANIC {l}\n", p.dir.display()));
            if let Some(next) = lines.get(k + 1) {
                out.push_str(&format!("    {next}\n"));
            }
        }
    }
    out
}

/// A running peer's cluster peer id (`GET /id`).
pub async fn peer_id(p: &PeerDir) -> Result<String> {
    let v = get_json(&format!("{}/id", p.rest_url())).await?;
    Ok(v["id"].as_str().context("no id")?.to_string())
}

/// The peer ids `GET /peers` lists without an error (a JSON stream of objects).
pub async fn members(url: &str) -> Vec<String> {
    peers_listed(url, false).await
}

/// Every peer id `GET /peers` lists, also the entries carrying an error (a member that is
/// down is still a member).
pub async fn peerset(url: &str) -> Vec<String> {
    peers_listed(url, true).await
}

async fn peers_listed(url: &str, with_errors: bool) -> Vec<String> {
    match http("GET", url, None).await {
        Ok((200, body)) => serde_json::Deserializer::from_str(&body)
            .into_iter::<Value>()
            .filter_map(|v| v.ok())
            .flat_map(|v| match v {
                Value::Array(a) => a,
                v => vec![v],
            })
            .filter(|v| with_errors || v["error"].as_str().unwrap_or("").is_empty())
            .filter_map(|v| v["id"].as_str().map(str::to_string))
            .collect(),
        _ => vec![],
    }
}

/// The strings of a JSON array (empty for anything else).
pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs one test body on its own runtime, one such test at a time in a test binary: each
/// starts a whole cluster and the machine has 2 shared cores.
pub fn one_at_a_time<F: Future<Output = ()>>(f: F) {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// How the peers of a new cluster come together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Join {
    /// Peers 1.. `--bootstrap` peer 0 all at once.
    AllAtOnce,
    /// Peers 1.. `--bootstrap` peer 0 one after the other, each once peer 0 counts it.
    OneByOne,
}

/// Where a test cluster's peers and their Kubo nodes run.
pub enum Layout {
    /// On loopback, one Kubo node for all peers (tests about the cluster, not content).
    SharedIpfs,
    /// On loopback, each peer with its own Kubo node (content moves between nodes).
    OwnIpfs,
    /// Each peer and its own Kubo node in the peer's network namespace.
    Netns(Netns),
}

/// N peers of one test cluster, their daemons (None while stopped), the Kubo node(s).
pub struct Cluster {
    pub peers: Vec<PeerDir>,
    pub ids: Vec<String>,
    pub procs: Vec<Option<Proc>>,
    /// The Kubo node of every peer, or of peer 0 when the others have their own.
    pub ipfs: IpfsNode,
    /// The Kubo nodes of peers 1.. when each peer has its own (network namespaces).
    pub other_ipfs: Vec<IpfsNode>,
    /// The peers' network namespaces, when they run in some; after the processes.
    pub netns: Option<Netns>,
    // Last: removed after every process is gone.
    pub(crate) _tmp: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Stop peers first (their Proc drops end the process groups), then IPFS.
        self.procs.clear();
    }
}

impl Cluster {
    /// `n` peers with the short timings; peer 0 starts alone and, when `first_pin` is
    /// given, pins it (replicated everywhere) before the others join it. Returns once every
    /// peer sees `n` members.
    pub async fn start(n: usize, join: Join, first_pin: Option<&str>) -> Result<Self> {
        Self::start_with(n, join, first_pin, |_| vec![]).await
    }

    /// `start`, with extra env overrides for peer `i` from `extra(i)`.
    pub async fn start_with(
        n: usize,
        join: Join,
        first_pin: Option<&str>,
        extra: impl Fn(usize) -> Vec<(&'static str, String)>,
    ) -> Result<Self> {
        Self::start_laid_out(Layout::SharedIpfs, n, join, first_pin, extra).await
    }

    /// `start_with`, peer `i` and its own Kubo node inside `net.ns(i)`, the REST API and
    /// the cluster swarm on `net.ip(i)` (reachable from the test until the peer is cut
    /// off), everything else on the namespace's loopback.
    pub async fn start_in_netns(
        net: Netns,
        n: usize,
        join: Join,
        extra: impl Fn(usize) -> Vec<(&'static str, String)>,
    ) -> Result<Self> {
        Self::start_laid_out(Layout::Netns(net), n, join, None, extra).await
    }

    /// N peers placed as `layout` says; otherwise as `start_with`.
    pub async fn start_laid_out(
        layout: Layout,
        n: usize,
        join: Join,
        first_pin: Option<&str>,
        extra: impl Fn(usize) -> Vec<(&'static str, String)>,
    ) -> Result<Self> {
        let tmp = test_dir()?;
        let (netns, own_ipfs) = match layout {
            Layout::SharedIpfs => (None, false),
            Layout::OwnIpfs => (None, true),
            Layout::Netns(net) => (Some(net), true),
        };
        let mut nodes = if own_ipfs {
            let dirs: Vec<_> = (0..n)
                .map(|i| tmp.path().join(format!("ipfs_{i}")))
                .collect();
            let ns = |i: usize| netns.as_ref().map(|net| net.ns(i).to_string());
            let starts = dirs.iter().enumerate().map(|(i, d)| {
                let ns = ns(i);
                async move {
                    match ns {
                        Some(ns) => IpfsNode::start_in_netns(d, &ns).await,
                        None => IpfsNode::start(d).await,
                    }
                }
            });
            join_all(starts)
                .await
                .into_iter()
                .collect::<Result<Vec<_>>>()?
        } else {
            vec![IpfsNode::start(tmp.path()).await?]
        };
        let peers: Vec<PeerDir> = (0..n)
            .map(|i| {
                // The name first: `extra` may override it.
                let mut env = vec![("CLUSTER_PEERNAME", format!("peer_{i}"))];
                env.extend(short_timings());
                env.extend(extra(i));
                let node = &nodes[if own_ipfs { i } else { 0 }];
                let host = netns
                    .as_ref()
                    .map(|net| net.ip(i))
                    .unwrap_or_else(|| "127.0.0.1".into());
                let dir = tmp.path().join(format!("peer_{i}"));
                let mut p = init_peer_on(&dir, &node.multiaddr(), TEST_SECRET, &env, &host)?;
                if let Some(net) = &netns {
                    p.wrap = net.wrap(i);
                }
                Ok(p)
            })
            .collect::<Result<_>>()?;
        let ipfs = nodes.remove(0);
        let other_ipfs = nodes;
        let p0 = peers[0].start(&[]).await?;
        let id0 = peer_id(&peers[0]).await?;
        if let Some(first) = first_pin {
            let url = format!("{}/pins/{first}", peers[0].rest_url());
            let (st, body) = http("POST", &url, None).await?;
            if st != 200 {
                bail!("pin {first} on peer 0 before the joins: {st} {body}");
            }
        }
        let boot = peers[0].swarm_addr(&id0);
        let mut procs = vec![Some(p0)];
        let args = ["--bootstrap", boot.as_str()];
        match join {
            Join::OneByOne => {
                for (k, p) in peers[1..].iter().enumerate() {
                    procs.push(Some(p.start(&args).await?));
                    let url = format!("{}/peers", peers[0].rest_url());
                    wait_for(Duration::from_secs(60), || async {
                        members(&url).await.len() == k + 2
                    })
                    .await
                    .with_context(|| format!("peer {} did not join", k + 1))?;
                }
            }
            Join::AllAtOnce => {
                for p in join_all(peers[1..].iter().map(|p| p.start(&args))).await {
                    procs.push(Some(p?));
                }
            }
        }
        let mut ids = vec![id0];
        for p in &peers[1..] {
            ids.push(peer_id(p).await?);
        }
        let c = Cluster {
            peers,
            ids,
            procs,
            ipfs,
            other_ipfs,
            netns,
            _tmp: tmp,
        };
        for i in 0..n {
            let url = format!("{}/peers", c.rest(i));
            wait_for(Duration::from_secs(90), || async {
                members(&url).await.len() == n
            })
            .await
            .with_context(|| {
                format!(
                    "peer {i} does not see {n} peers; log:\n{}",
                    problems(&c.peers[i])
                )
            })?;
        }
        Ok(c)
    }

    /// `n` peers, each started on its own (no `--bootstrap`): `n` one-peer clusters. Peers
    /// 1.. know peer 0's address (`cluster.peer_addresses`), as upstream's test puts the
    /// others in peer 0's peerstore, so their hosts connect.
    pub async fn independent(n: usize) -> Result<Self> {
        let tmp = test_dir()?;
        let ipfs = IpfsNode::start(tmp.path()).await?;
        let env = short_timings();
        let p0 = init_test_peer(&tmp.path().join("peer_0"), &ipfs.multiaddr(), &env)?;
        let id0 = identity_id(&p0.dir)?;
        let boot = format!("/ip4/127.0.0.1/tcp/{}/p2p/{id0}", p0.ports.swarm);
        let mut env_rest = env.clone();
        env_rest.push(("CLUSTER_PEERADDRESSES", boot));
        let mut peers = vec![p0];
        for i in 1..n {
            peers.push(init_test_peer(
                &tmp.path().join(format!("peer_{i}")),
                &ipfs.multiaddr(),
                &env_rest,
            )?);
        }
        let mut procs = Vec::new();
        for p in join_all(peers.iter().map(|p| p.start(&[]))).await {
            procs.push(Some(p?));
        }
        let mut ids = Vec::new();
        for p in &peers {
            ids.push(peer_id(p).await?);
        }
        Ok(Cluster {
            peers,
            ids,
            procs,
            ipfs,
            other_ipfs: vec![],
            netns: None,
            _tmp: tmp,
        })
    }

    /// Peer `i`'s Kubo node (the shared one unless each peer has its own).
    pub fn ipfs_of(&self, i: usize) -> &IpfsNode {
        match i {
            0 => &self.ipfs,
            i => self.other_ipfs.get(i - 1).unwrap_or(&self.ipfs),
        }
    }

    /// Where the cluster's temporary folder is.
    pub fn dir(&self) -> &std::path::Path {
        self._tmp.path()
    }

    pub fn rest(&self, i: usize) -> String {
        self.peers[i].rest_url()
    }

    /// Warnings and errors of every peer, and any panic of one of their services.
    pub fn logs(&self) -> String {
        let l: Vec<String> = self
            .peers
            .iter()
            .map(|p| format!("{}{}", panics(p), problems(p)))
            .collect();
        l.join("\n----\n")
    }

    /// The leader's peer id as peer `i`'s consensus service sees it (upstream's REST API
    /// does not expose it).
    /// Asked inside the peer's namespace when it has one (internal gRPC is loopback-only).
    pub async fn leader(&self, i: usize) -> Result<String> {
        let p = &self.peers[i];
        let token = ipfs_cluster_proto::auth::InternalToken::load(&p.dir.join("internal.token"))?;
        let addr: std::net::SocketAddr = format!("127.0.0.1:{}", p.ports.consensus).parse()?;
        let ask = move || async move {
            let mut c = ipfs_cluster_proto::client::consensus(addr, &token);
            c.leader(ipfs_cluster_proto::consensus::v1::LeaderRequest {})
                .await
                .map(|r| r.into_inner().peer_id)
        };
        Ok(match &self.netns {
            None => ask().await?,
            Some(net) => in_netns_async(net.ns(i), ask).await??,
        })
    }

    /// The index of the peer every peer in `on` names as the leader, once they agree on
    /// one that is not in `except` (e.g. a leader that was just cut off).
    pub async fn agreed_leader(
        &self,
        on: &[usize],
        except: &[usize],
        within: Duration,
    ) -> Result<usize> {
        let found = std::sync::Mutex::new(None);
        wait_for(within, || async {
            let mut named = Vec::new();
            for &i in on {
                named.push(self.leader(i).await.unwrap_or_default());
            }
            let agreed = !named[0].is_empty() && named.iter().all(|l| *l == named[0]);
            let leader = self.ids.iter().position(|id| *id == named[0]);
            let ok = agreed && leader.is_some_and(|l| !except.contains(&l));
            if ok {
                *found.lock().unwrap() = leader;
            }
            ok
        })
        .await
        .with_context(|| {
            format!(
                "peers {on:?} do not agree on a leader outside {except:?}\n{}",
                self.logs()
            )
        })?;
        Ok(found.into_inner().unwrap().expect("set when agreed"))
    }

    /// Peer `i`'s whole state (`GET /allocations?filter=all`): cid -> sorted allocations.
    pub async fn state(&self, i: usize) -> Result<BTreeMap<String, Vec<String>>> {
        let url = format!("{}/allocations?filter=all", self.rest(i));
        let (st, body) = http("GET", &url, None).await?;
        // An empty stream is answered with 204 and no body, as upstream.
        if st == 204 {
            return Ok(BTreeMap::new());
        }
        if st != 200 {
            bail!("GET /allocations on peer {i}: {st} {body}");
        }
        let mut out = BTreeMap::new();
        for v in serde_json::Deserializer::from_str(&body).into_iter::<Value>() {
            let items = match v? {
                Value::Array(a) => a,
                v => vec![v],
            };
            for p in items {
                let mut a = strings(&p["allocations"]);
                a.sort();
                out.insert(p["cid"].as_str().context("pin without cid")?.to_string(), a);
            }
        }
        Ok(out)
    }

    /// Waits until every listed peer's state equals `want` (cid -> allocations), or fails
    /// naming the differences.
    pub async fn wait_states(&self, on: &[usize], want: &BTreeMap<String, Vec<String>>) {
        self.wait_holds(on, want, &HashSet::new()).await
    }

    /// Waits until every listed peer's state holds `want` (cid -> allocations) and nothing
    /// else but CIDs in `maybe` (writes whose answer was an error may still have committed).
    pub async fn wait_holds(
        &self,
        on: &[usize],
        want: &BTreeMap<String, Vec<String>>,
        maybe: &HashSet<String>,
    ) {
        let fits = |got: &BTreeMap<String, Vec<String>>| {
            want.iter().all(|(k, v)| got.get(k) == Some(v))
                && got
                    .keys()
                    .all(|k| want.contains_key(k) || maybe.contains(k))
        };
        for &i in on {
            let ok = wait_for(Duration::from_secs(60), || async {
                self.state(i).await.map(|s| fits(&s)).unwrap_or(false)
            })
            .await;
            if ok.is_err() {
                let got = match self.state(i).await {
                    Ok(g) => g,
                    Err(e) => panic!("peer {i}'s state: {e:#}"),
                };
                let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
                let extra: Vec<_> = got
                    .keys()
                    .filter(|k| !want.contains_key(*k) && !maybe.contains(*k))
                    .collect();
                let differ: Vec<_> = want
                    .iter()
                    .filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v))
                    .map(|(k, _)| k)
                    .collect();
                panic!(
                    "peer {i}'s state differs: {} missing {missing:?}, {} extra {extra:?}, allocations differ for {differ:?}\nlogs:\n{}",
                    missing.len(),
                    extra.len(),
                    self.logs()
                );
            }
        }
    }

    /// Waits until each listed peer sees `n` members without errors.
    pub async fn wait_members(&self, on: &[usize], n: usize) {
        for &i in on {
            let url = format!("{}/peers", self.rest(i));
            wait_for(Duration::from_secs(60), || async {
                members(&url).await.len() == n
            })
            .await
            .unwrap_or_else(|_| panic!("peer {i} does not see {n} peers\n{}", self.logs()));
        }
    }

    /// Waits until every peer holds the `metric` (e.g. "freespace") of every peer: the
    /// allocator needs them on whichever peer leads, so a pin right after start-up could
    /// otherwise miss a peer that just joined.
    pub async fn wait_metric(&self, metric: &str) -> Result<()> {
        let n = self.peers.len();
        for i in 0..n {
            let url = format!("{}/monitor/metrics/{metric}", self.rest(i));
            wait_for(Duration::from_secs(60), || async {
                matches!(get_json(&url).await, Ok(Value::Array(a)) if a.len() == n)
            })
            .await
            .with_context(|| format!("peer {i} does not hold {n} {metric} metrics"))?;
        }
        Ok(())
    }

    /// Waits until peer `i`'s launcher has exited; its exit status.
    pub async fn wait_exit(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if let Some(st) = self.procs[i].as_mut().and_then(|p| p.try_wait()) {
                self.procs[i] = None;
                return Some(st);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        None
    }

    /// SIGTERM peer `i`'s launcher and wait for it to exit.
    pub fn stop(&mut self, i: usize) {
        let p = self.procs[i].as_mut().expect("peer already stopped");
        let st = p.terminate(Duration::from_secs(60));
        assert!(
            st.is_some(),
            "peer {i} did not stop on SIGTERM\n{}",
            problems(&self.peers[i])
        );
        self.procs[i] = None;
    }

    /// The pid of peer `i`'s current consensus service (from the launcher's log).
    pub fn consensus_pid(&self, i: usize) -> Result<u32> {
        let log = std::fs::read_to_string(self.peers[i].dir.join("daemon.log"))?;
        log.lines()
            .filter(|l| l.contains("service started") && l.contains("service=\"consensus\""))
            .filter_map(|l| l.rsplit("pid=").next()?.trim().parse().ok())
            .next_back()
            .context("no consensus pid in the launcher's log")
    }
}

/// The peer id written by `init` in a peer folder's identity.json.
pub fn identity_id(dir: &std::path::Path) -> Result<String> {
    let text = std::fs::read_to_string(dir.join("identity.json"))?;
    let v: Value = serde_json::from_str(&text)?;
    Ok(v["id"]
        .as_str()
        .context("identity.json has no id")?
        .to_string())
}
