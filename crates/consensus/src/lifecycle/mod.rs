//! A raft peer's lifecycle around its raft folder, from start to exit:
//!
//! * at start ([`StartPlan::prepare`]): the `raft.removed` marker (a peer that left
//!   starts again only with `--bootstrap`), the `raft.joining` marker (a join through
//!   `--bootstrap` that has not completed is resumed after a restart, with or without the
//!   flag; stale once the store is gone), the `raft.staging` marker (a peer reset to be
//!   added by another cluster's leader waits for it), and the backup of the old state
//!   before a `--bootstrap` join, as upstream;
//! * while running ([`run`]): the join through `--bootstrap`, retried with backoff
//!   (`join::join_until`), the end of staging once a leader added this peer, and the
//!   first of: the stop signal, this peer removed, a reset to be added, a failed join,
//!   raft's core stopped on a storage error (then the exit waits until the disk takes
//!   writes again, so a full disk is no crash loop);
//! * at the end: leave the cluster when `leave_on_shutdown`, then back the state up and
//!   write `raft.removed` when this peer is no longer a member ([`mark_left`]), or back it
//!   up, write `raft.staging` and exit with [`RESTART_STAGING_EXIT`] to be added to
//!   another cluster ([`stage_for_add`]).
//!
//! The markers' names and the backups' rotation are the runtime's `peer_folder` (the
//! launcher's `state` commands use the same).

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::Context as _;
use ipfs_cluster_config::Peer;
use ipfs_cluster_observability::Metrics;
use ipfs_cluster_proto::{client::TransportClient, transport::v1::DialRequest};
use ipfs_cluster_runtime::peer_folder::{self, joining_marker, removed_marker, staging_marker};
use tokio_util::sync::CancellationToken;

pub mod join;

use join::{Attempt, Joined};

use crate::{
    node::{Node, Options, RESTART_STAGING_EXIT},
    prometheus,
    raft::{network::TransportCarrier, store},
    service::ConsensusService,
};

/// `--bootstrap` values (and a marker's) as checked multiaddr strings.
pub fn bootstrap_addresses(raw: &[String], own: &str) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for s in raw.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let a = ipfs_cluster_config::addr::parse_peer_address(s)
            .map_err(|e| anyhow::anyhow!("--bootstrap: {e}"))?;
        if ipfs_cluster_config::addr::peer_id(&a).is_some_and(|p| p.to_string() == own) {
            anyhow::bail!("--bootstrap: {s} is this peer's own address; give the address of a peer of the cluster to join");
        }
        out.push(a.to_string());
    }
    Ok(out)
}

/// Moves the raft folder to a rotated backup (`raft.old.0`) when it exists.
pub fn backup_dir(dir: &Path, keep: u32) -> anyhow::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let backup = peer_folder::move_to_backup(dir, keep)?;
    tracing::info!(backup = %backup.display(), "raft state moved to a backup");
    Ok(())
}

/// What a start found in the raft folder's markers and prepared there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartPlan {
    pub raft_dir: PathBuf,
    /// `--bootstrap`, checked (empty: none given).
    pub bootstrap: Vec<String>,
    /// A join through `--bootstrap` started before a restart and not completed.
    pub unfinished_join: bool,
    /// The addresses of that join (none in a marker written by an older version).
    pub resume_through: Vec<String>,
    /// This peer gave its one-peer cluster up to be added to another one: it waits.
    pub awaiting_add: bool,
    /// Raft starts in staging (not bootstrapping a cluster of its own).
    pub staging: bool,
}

impl StartPlan {
    /// Reads the markers and prepares the folder for this start: refuses a removed peer
    /// without `--bootstrap`; with it, forgets the removed and staging markers, backs the
    /// old state up (`keep` backups) and writes the joining marker with the addresses.
    pub fn prepare(
        raft_dir: &Path,
        bootstrap: Vec<String>,
        peer_id: &str,
        keep: u32,
    ) -> anyhow::Result<StartPlan> {
        let marker = removed_marker(raft_dir);
        if marker.exists() {
            if bootstrap.is_empty() {
                anyhow::bail!(
                    "this peer left or was removed from its cluster (marker {}); start it with --bootstrap <peer multiaddr> to join a cluster again, or delete that file to start a new cluster (`ipfs-cluster-service state cleanup` does)",
                    marker.display()
                );
            }
            std::fs::remove_file(&marker)
                .with_context(|| format!("removing {}", marker.display()))?;
        }
        let joining = joining_marker(raft_dir);
        // After `state cleanup` (no store any more) the marker is stale: a new start is wanted.
        if joining.exists() && !raft_dir.join(store::DB_FILE).exists() {
            let _ = std::fs::remove_file(&joining);
        }
        let unfinished_join = bootstrap.is_empty() && joining.exists();
        let resume_through = if unfinished_join {
            let text = std::fs::read_to_string(&joining)
                .with_context(|| format!("reading {}", joining.display()))?;
            bootstrap_addresses(&join::marker_addresses(&text), peer_id)
                .with_context(|| format!("the join marker {}", joining.display()))?
        } else {
            Vec::new()
        };
        let staging_file = staging_marker(raft_dir);
        if !bootstrap.is_empty() {
            let _ = std::fs::remove_file(&staging_file);
        }
        let awaiting_add = bootstrap.is_empty() && !unfinished_join && staging_file.exists();
        let mut staging = awaiting_add;
        if !bootstrap.is_empty() {
            // Upstream wipes (backs up) local raft state and starts in staging mode.
            if raft_dir.join(store::DB_FILE).exists() {
                backup_dir(raft_dir, keep)?;
            }
            staging = true;
            if let Some(parent) = joining.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            std::fs::write(&joining, join::marker_text(&bootstrap))
                .with_context(|| format!("writing {}", joining.display()))?;
        } else if unfinished_join {
            staging = true;
        }
        Ok(StartPlan {
            raft_dir: raft_dir.to_path_buf(),
            bootstrap,
            unfinished_join,
            resume_through,
            awaiting_add,
            staging,
        })
    }

    /// Once raft started (`initialized`: it has a membership): the addresses to join
    /// through (empty: no join). An unfinished join is over when a leader added this peer
    /// meanwhile, else resumed; an error when it cannot be (no addresses in its marker).
    pub fn join_through(&self, initialized: bool) -> anyhow::Result<Vec<String>> {
        if !self.unfinished_join {
            return Ok(self.bootstrap.clone());
        }
        let joining = joining_marker(&self.raft_dir);
        if initialized {
            tracing::info!("resuming: a leader added this peer before its join call returned");
            let _ = std::fs::remove_file(&joining);
            return Ok(self.bootstrap.clone());
        }
        if self.resume_through.is_empty() {
            anyhow::bail!(
                "this peer's join through --bootstrap never completed (marker {}); start it with --bootstrap <peer multiaddr> again, or delete that file to start a new cluster",
                joining.display()
            );
        }
        tracing::info!(
            marker = %joining.display(),
            through = %self.resume_through.join(","),
            "resuming this peer's unfinished join (started with --bootstrap before a restart)"
        );
        Ok(self.resume_through.clone())
    }
}

/// This peer is no longer a member: back its state up and write the removed marker
/// (without it a restart would bootstrap a new one-peer cluster).
pub async fn mark_left(raft_dir: &Path, keep: u32) -> anyhow::Result<()> {
    // Give the store's last handles a moment to close, then back the state up.
    tokio::time::sleep(Duration::from_millis(200)).await;
    backup_dir(raft_dir, keep)?;
    let marker = removed_marker(raft_dir);
    std::fs::write(&marker, b"this peer left or was removed from its cluster\n")
        .with_context(|| format!("writing {}", marker.display()))?;
    Ok(())
}

/// A leader of another cluster is adding this one-peer cluster: mark staging, then back
/// the state up (as `--bootstrap` does). The marker first: a restart between the two must
/// not bootstrap a new cluster. Returns where the state went.
pub async fn stage_for_add(raft_dir: &Path, keep: u32, leader: &str) -> anyhow::Result<PathBuf> {
    let staging = staging_marker(raft_dir);
    std::fs::write(
        &staging,
        format!("this peer waits to be added to the cluster of {leader}\n"),
    )
    .with_context(|| format!("writing {}", staging.display()))?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    backup_dir(raft_dir, keep)?;
    Ok(peer_folder::backup_path(raft_dir))
}

/// Removes the staging marker once raft is initialized (a leader added this peer).
fn spawn_staging_done(node: Arc<Node>, marker: PathBuf) {
    tokio::spawn(async move {
        let since = tokio::time::Instant::now();
        let mut warned = since;
        loop {
            if warned.elapsed() >= Duration::from_secs(60) {
                warned = tokio::time::Instant::now();
                tracing::warn!(
                    marker = %marker.display(),
                    waiting_s = since.elapsed().as_secs(),
                    "still waiting in staging to be added by another cluster's leader: add this peer again there (POST /peers), or delete the marker and restart to run a cluster of its own (the old state is in the raft.old.* backups)"
                );
            }
            match node.raft.is_initialized().await {
                Ok(true) => {
                    let _ = std::fs::remove_file(&marker);
                    tracing::info!("added to the cluster by its leader; staging is over");
                    return;
                }
                Ok(false) => {}
                Err(_) => return,
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
}

/// One join attempt through `addr`: dial it with the transport (which resolves DNS names
/// and, without `/p2p/<id>`, learns the peer id from the connection), then ask that peer
/// to add us.
async fn join_once(node: &Node, transport: &TransportClient, addr: String) -> Attempt {
    let mut t = transport.clone();
    let peer = match t
        .dial(DialRequest {
            multiaddr: addr.clone(),
        })
        .await
    {
        Ok(r) => r.into_inner().peer_id,
        // The transport says no dial can ever work (not a multiaddr it speaks, our own).
        Err(e) if e.code() == tonic::Code::InvalidArgument => {
            return Attempt::Unusable(format!("dialing: {}", e.message()))
        }
        Err(e) => return Attempt::Failed(format!("dialing: {}", e.message())),
    };
    match node.join_via(&peer).await {
        Ok(()) => Attempt::Joined(peer),
        Err(e) => Attempt::Failed(format!("joining through {peer}: {}", e.message())),
    }
}

/// How long a joining consensus waits for its join before it reports ready anyway (the
/// join is retried in the background; a bootstrap peer that is down must not keep the
/// whole peer from starting, as the launcher gives each service 60 s).
const JOIN_READY_WAIT: Duration = Duration::from_secs(10);

/// Reports SERVING once the join completed (this peer is a voter of the cluster and holds
/// its log, so its members include the peers that will call it) or after
/// [`JOIN_READY_WAIT`], whichever comes first.
fn spawn_ready_when_joined(
    node: Arc<Node>,
    health: ipfs_cluster_runtime::HealthHandle,
    joined: tokio::sync::oneshot::Receiver<()>,
) {
    tokio::spawn(async move {
        match tokio::time::timeout(JOIN_READY_WAIT, joined).await {
            Ok(Ok(())) => {
                tracing::info!(members = node.member_ids().len(), "joined the cluster; consensus reports ready");
            }
            Ok(Err(_)) => {}
            Err(_) => tracing::warn!(
                wait_s = JOIN_READY_WAIT.as_secs(),
                "the join through --bootstrap has not completed yet; consensus reports ready and keeps trying in the background"
            ),
        }
        // A core stopped on a storage error stays NOT_SERVING (see `run`).
        if node.fatal().borrow().is_none() {
            health
                .set::<ipfs_cluster_proto::consensus::v1::consensus_server::ConsensusServer<
                    ConsensusService,
                >>(true)
                .await;
        }
    });
}

/// Joins through `through` in the background, retried with backoff until it works; the
/// joining marker goes once joined, a join that can never work is sent on `fail`.
fn spawn_join(
    node: Arc<Node>,
    transport: TransportClient,
    through: Vec<String>,
    joining: PathBuf,
    fail: tokio::sync::mpsc::Sender<String>,
    joined: tokio::sync::oneshot::Sender<()>,
) {
    tokio::spawn(async move {
        let res = join::join_until(
            &through,
            join::Backoff::default(),
            |addr| join_once(&node, &transport, addr),
            || async { node.raft.is_initialized().await.unwrap_or(false) },
        )
        .await;
        match res {
            Ok(how) => {
                if how == Joined::AlreadyMember {
                    tracing::info!("a leader added this peer; the join is complete");
                }
                let _ = std::fs::remove_file(&joining);
                let _ = joined.send(());
            }
            Err(e) => {
                let _ = fail.send(e.to_string()).await;
            }
        }
    });
}

/// Runs a raft peer from its folder's markers to its exit (see the module's top):
/// `transport` the local transport service, `opts` from service.json, `bootstrap` checked, `keep` raft backups, `stop` the service's stop
/// signal. Exits the process with [`RESTART_STAGING_EXIT`] after a reset to be added.
pub async fn run(
    peer: &Peer,
    transport: TransportClient,
    mut opts: Options,
    bootstrap: Vec<String>,
    keep: u32,
    prom: Option<Arc<Metrics>>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let cfg = &peer.config;
    let peer_id = opts.peer_id.clone();
    let raft_dir = opts.data_dir.clone();
    let consensus_addr = cfg.internal.consensus_addr()?;

    let plan = StartPlan::prepare(&raft_dir, bootstrap, &peer_id, keep)?;
    opts.staging = opts.staging || plan.staging;
    let leave = opts.leave_on_shutdown;

    // Bind first so a taken port fails before raft starts.
    let listener =
        ipfs_cluster_runtime::bind_internal(consensus_addr, cfg.internal.allow_remote_internal)
            .await?;
    let carrier = Arc::new(TransportCarrier {
        client: transport.clone(),
    });
    let node = Node::start(opts, carrier).await?;
    let initialized = if plan.unfinished_join {
        node.raft
            .is_initialized()
            .await
            .map_err(|e| anyhow::anyhow!("raft: {e}"))?
    } else {
        false
    };
    let join_through = match plan.join_through(initialized) {
        Ok(t) => t,
        Err(e) => {
            let _ = node.raft.shutdown().await;
            return Err(e);
        }
    };
    let staging = staging_marker(&raft_dir);
    if plan.awaiting_add {
        tracing::info!(
            marker = %staging.display(),
            "this peer gave its one-peer cluster up to be added to another cluster; waiting in staging for that cluster's leader (delete the marker to start a new cluster instead)"
        );
        spawn_staging_done(node.clone(), staging.clone());
    }
    node.spawn_background();
    if let Some(m) = &prom {
        prometheus::register(m, node.clone());
    }
    // The peer monitor: every peer's latest metrics, for allocation.
    let monitor_node = node.clone();
    ipfs_cluster_runtime::monitor::follow_peer_metrics(transport.clone(), move |m| {
        monitor_node.peer_metrics.add(m)
    });
    tracing::info!(peer = %peer_id, addr = %consensus_addr, raft_dir = %raft_dir.display(), "consensus service ready");

    let (fail_tx, mut fail_rx) = tokio::sync::mpsc::channel::<String>(1);
    // A joiner reports ready once joined (or after JOIN_READY_WAIT, the join going on in
    // the background): the launcher starts the other services and answers `/id` only
    // then, so a peer that says it is up is a member its cluster's calls reach.
    let health = if join_through.is_empty() {
        ipfs_cluster_runtime::HealthHandle::new()
    } else {
        let health = ipfs_cluster_runtime::HealthHandle::not_serving_at_start::<
            ipfs_cluster_proto::consensus::v1::consensus_server::ConsensusServer<ConsensusService>,
        >()
        .await;
        let (joined_tx, joined_rx) = tokio::sync::oneshot::channel();
        spawn_join(
            node.clone(),
            transport.clone(),
            join_through,
            joining_marker(&raft_dir),
            fail_tx,
            joined_tx,
        );
        spawn_ready_when_joined(node.clone(), health.clone(), joined_rx);
        health
    };

    let mut removed = node.removed();
    let mut fatal = node.fatal();
    let mut reset = node.reset_requested();
    let mut reset_for = None;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(ipfs_cluster_runtime::serve_with(
        listener,
        peer.token.clone(),
        ConsensusService::new(node.clone()).into_server(),
        async {
            let _ = stop_rx.await;
        },
        ipfs_cluster_runtime::ServeOptions::observed_by(prom).with_health(health.clone()),
    ));
    // SIGTERM, SIGINT, SIGHUP or the launcher gone (the runtime's stop signal), seen by
    // both waits below.
    let mut failure = None;
    let was_removed = tokio::select! {
        _ = stop.cancelled() => false,
        _ = removed.wait_for(|r| *r) => true,
        Ok(by) = reset.wait_for(|r| r.is_some()) => { reset_for = by.clone(); false }
        Some(e) = fail_rx.recv() => { failure = Some(e); false }
        Ok(msg) = fatal.wait_for(|f| f.is_some()) => {
            failure = msg.clone();
            false
        }
    };
    if node.fatal().borrow().is_some() {
        // Raft's core stopped (a storage write failed). Writes are refused with that error
        // meanwhile; exit (non-zero, the launcher restarts us on a reopened store) once the
        // disk takes writes again, so a full disk does not turn into a crash loop that makes
        // the launcher give up.
        tracing::error!(dir = %raft_dir.display(), "raft stopped on a storage error; exiting once the raft folder is writable again");
        // Health checks (the launcher's watch, grpcurl) see it meanwhile.
        health
            .set::<ipfs_cluster_proto::consensus::v1::consensus_server::ConsensusServer<ConsensusService>>(false)
            .await;
        tokio::select! {
            _ = ipfs_cluster_runtime::disk::wait_writable(&raft_dir) => {}
            _ = stop.cancelled() => {}
        }
    }
    tracing::info!("consensus service shutting down");
    let mut left = false;
    if leave && !was_removed && failure.is_none() && reset_for.is_none() {
        match tokio::time::timeout(Duration::from_secs(20), node.leave()).await {
            Ok(Ok(())) => left = true,
            Ok(Err(e)) => tracing::warn!(error = %e.message(), "leaving the cluster"),
            Err(_) => tracing::warn!("leaving the cluster timed out"),
        }
    }
    let _ = stop_tx.send(());
    // Open Watch streams keep a graceful stop waiting; a reset for being added restarts at
    // once (the leader's PrepareAdd answer went out before the reset was signalled).
    let grace = if reset_for.is_some() {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(5)
    };
    let _ = tokio::time::timeout(grace, server).await;
    if let Err(e) = node.raft.shutdown().await {
        tracing::warn!(error = %e, "raft shutdown");
    }
    drop(node);
    if was_removed || left {
        mark_left(&raft_dir, keep).await?;
        eprintln!("this peer is no longer a cluster member; raft state backed up, exiting");
    }
    if let Some(e) = failure {
        anyhow::bail!(e);
    }
    if let Some(leader) = reset_for {
        // Back the state up, mark staging, and ask the launcher for a restart now.
        let backup = stage_for_add(&raft_dir, keep, &leader).await?;
        eprintln!(
            "this peer's one-peer cluster was backed up to {} so that {leader} can add it to its cluster; restarting empty (exit code {RESTART_STAGING_EXIT})",
            backup.display()
        );
        std::process::exit(RESTART_STAGING_EXIT);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: &str = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";
    const OTHER: &str =
        "/ip4/127.0.0.1/tcp/9096/p2p/12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK";

    /// A peer folder with a raft folder holding a (fake) store when `with_store`.
    fn folder(with_store: bool) -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let raft = tmp.path().join("raft");
        std::fs::create_dir_all(&raft).unwrap();
        if with_store {
            std::fs::write(raft.join(store::DB_FILE), b"state").unwrap();
        }
        (tmp, raft)
    }

    fn boot() -> Vec<String> {
        bootstrap_addresses(&[OTHER.to_string()], OWN).unwrap()
    }

    #[test]
    fn bootstrap_addresses_are_checked() {
        assert_eq!(boot(), [OTHER]);
        assert!(bootstrap_addresses(&[" ".into()], OWN).unwrap().is_empty());
        assert!(bootstrap_addresses(&["not an address".into()], OWN).is_err());
        let own = format!("/ip4/127.0.0.1/tcp/9096/p2p/{OWN}");
        let e = bootstrap_addresses(&[own], OWN).unwrap_err().to_string();
        assert!(e.contains("this peer's own address"), "{e}");
    }

    #[test]
    fn a_plain_start_bootstraps() {
        let (_tmp, raft) = folder(true);
        let plan = StartPlan::prepare(&raft, vec![], OWN, 2).unwrap();
        assert!(!plan.staging && !plan.unfinished_join && !plan.awaiting_add);
        assert!(plan.join_through(false).unwrap().is_empty());
        assert!(raft.join(store::DB_FILE).exists(), "the state stays");
    }

    #[test]
    fn a_removed_peer_starts_only_with_bootstrap() {
        let (_tmp, raft) = folder(false);
        std::fs::write(removed_marker(&raft), b"left\n").unwrap();
        let e = StartPlan::prepare(&raft, vec![], OWN, 2).unwrap_err();
        assert!(e.to_string().contains("left or was removed"), "{e}");
        assert!(removed_marker(&raft).exists());
        let plan = StartPlan::prepare(&raft, boot(), OWN, 2).unwrap();
        assert!(plan.staging);
        assert!(!removed_marker(&raft).exists());
    }

    #[test]
    fn bootstrap_backs_up_the_state_and_writes_the_joining_marker() {
        let (_tmp, raft) = folder(true);
        std::fs::write(staging_marker(&raft), b"staging\n").unwrap();
        let plan = StartPlan::prepare(&raft, boot(), OWN, 2).unwrap();
        assert!(plan.staging && !plan.unfinished_join && !plan.awaiting_add);
        assert!(
            !raft.join(store::DB_FILE).exists(),
            "the old state moved away"
        );
        assert!(peer_folder::backup_slot(&raft, 0)
            .join(store::DB_FILE)
            .exists());
        assert!(!staging_marker(&raft).exists());
        let text = std::fs::read_to_string(joining_marker(&raft)).unwrap();
        assert_eq!(join::marker_addresses(&text), [OTHER]);
        assert_eq!(plan.join_through(false).unwrap(), [OTHER]);
    }

    #[test]
    fn an_unfinished_join_resumes_or_is_over() {
        let (_tmp, raft) = folder(true);
        std::fs::write(joining_marker(&raft), join::marker_text(&boot())).unwrap();
        let plan = StartPlan::prepare(&raft, vec![], OWN, 2).unwrap();
        assert!(plan.staging && plan.unfinished_join);
        assert_eq!(plan.resume_through, [OTHER]);
        assert!(raft.join(store::DB_FILE).exists(), "no backup on a resume");
        assert_eq!(plan.join_through(false).unwrap(), [OTHER]);
        assert!(joining_marker(&raft).exists());
        // A leader added this peer meanwhile: nothing to join, the marker goes.
        assert!(plan.join_through(true).unwrap().is_empty());
        assert!(!joining_marker(&raft).exists());
    }

    #[test]
    fn an_unfinished_join_without_addresses_cannot_resume() {
        let (_tmp, raft) = folder(true);
        std::fs::write(joining_marker(&raft), b"joining\n").unwrap();
        let plan = StartPlan::prepare(&raft, vec![], OWN, 2).unwrap();
        assert!(plan.unfinished_join && plan.resume_through.is_empty());
        let e = plan.join_through(false).unwrap_err().to_string();
        assert!(e.contains("never completed"), "{e}");
    }

    #[test]
    fn a_joining_marker_without_a_store_is_stale() {
        let (_tmp, raft) = folder(false);
        std::fs::write(joining_marker(&raft), join::marker_text(&boot())).unwrap();
        let plan = StartPlan::prepare(&raft, vec![], OWN, 2).unwrap();
        assert!(!plan.unfinished_join && !plan.staging);
        assert!(!joining_marker(&raft).exists());
    }

    #[test]
    fn a_staging_marker_waits_to_be_added() {
        let (_tmp, raft) = folder(false);
        std::fs::write(staging_marker(&raft), b"staging\n").unwrap();
        let plan = StartPlan::prepare(&raft, vec![], OWN, 2).unwrap();
        assert!(plan.awaiting_add && plan.staging);
        assert!(plan.join_through(false).unwrap().is_empty());
        assert!(
            staging_marker(&raft).exists(),
            "removed once added, not at start"
        );
    }

    #[tokio::test]
    async fn leaving_backs_up_and_marks_removed() {
        let (_tmp, raft) = folder(true);
        mark_left(&raft, 2).await.unwrap();
        assert!(removed_marker(&raft).exists());
        assert!(peer_folder::backup_slot(&raft, 0)
            .join(store::DB_FILE)
            .exists());
        assert!(StartPlan::prepare(&raft, vec![], OWN, 2).is_err());
    }

    #[tokio::test]
    async fn a_reset_to_be_added_backs_up_and_marks_staging() {
        let (_tmp, raft) = folder(true);
        let backup = stage_for_add(&raft, 2, "12D3KooWleader").await.unwrap();
        assert_eq!(backup, peer_folder::backup_path(&raft));
        assert!(backup.join(store::DB_FILE).exists());
        let text = std::fs::read_to_string(staging_marker(&raft)).unwrap();
        assert!(text.contains("12D3KooWleader"), "{text}");
        let plan = StartPlan::prepare(&raft, vec![], OWN, 2).unwrap();
        assert!(plan.awaiting_add && plan.staging);
    }
}
