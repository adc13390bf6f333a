//! Wires the pieces of one connector together (Kubo client, tracker and its store,
//! workers, watch follower, informers, gRPC server) so the binary and the tests start the
//! service the same way. The gRPC server (and health) is up as soon as the store is
//! open; catching up with consensus happens in the background.

use std::net::SocketAddr;

use ipfs_cluster_proto::{client, InternalToken};
use ipfs_cluster_runtime::{bind_internal, serve_with, ServeError, ServeOptions};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    kubo,
    service::ConnectorService,
    settings::Settings,
    tracker::{follower, store, Tracker},
    Kubo, Options, Timeouts,
};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Kubo(#[from] kubo::KuboError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("{0}")]
    Proxy(std::io::Error),
    #[error("the ipfs connector store failed ({0}); exiting so the launcher restarts the connector on the reopened store (the watch replays from the last stored index)")]
    StoreFailed(String),
}

/// Heap hygiene for glibc. The store is used from the blocking pool, whose threads each
/// get a malloc arena; after a big import every arena keeps its freed pages (measured at
/// 1M pins: 380 MiB resident for 75 MiB live, `malloc_trim` brought it back to 73 MiB).
/// So the arenas are capped at 2 and freed memory is handed back every few seconds.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod heap {
    extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
        fn malloc_trim(pad: usize) -> i32;
    }
    /// glibc's `M_ARENA_MAX`.
    const M_ARENA_MAX: i32 = -8;

    pub fn limit_arenas() {
        // SAFETY: plain glibc call with a documented parameter; no pointers involved.
        unsafe {
            mallopt(M_ARENA_MAX, 2);
        }
    }
    pub fn trim() {
        // SAFETY: plain glibc call; it only releases free heap pages.
        unsafe {
            malloc_trim(0);
        }
    }
}
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod heap {
    pub fn limit_arenas() {}
    pub fn trim() {}
}

/// How often freed heap memory is handed back to the system.
const HEAP_TRIM_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

async fn heap_trim_loop(shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(HEAP_TRIM_INTERVAL) => {}
        }
        let _ = tokio::task::spawn_blocking(heap::trim).await;
    }
}

/// Builds the Kubo client and the tracker, opening its store (nothing is loaded).
pub fn build_tracker(opts: Options, shutdown: CancellationToken) -> Result<Tracker, RunError> {
    let addr = kubo::parse_node_multiaddress(&opts.node_multiaddress)?;
    let timeouts = Timeouts {
        request: opts.ipfs_request_timeout,
        pin: opts.pin_timeout,
        unpin: opts.unpin_timeout,
        repogc: opts.repogc_timeout,
    };
    let k = Kubo::new(addr, timeouts, opts.unpin_disable);
    let t = Tracker::new(opts, k, shutdown)?;
    if t.is_synced() {
        tracing::info!(
            index = t.last_index(),
            store = %t.store().path().display(),
            "resuming the watch from the stored tracker state"
        );
    } else {
        tracing::info!(
            store = %t.store().path().display(),
            "no tracker state stored yet: taking a full sync from consensus"
        );
    }
    Ok(t)
}

/// Background tasks of a tracker: readiness, workers, watch follower, periodic recover,
/// informers. Returns the follower's handle.
pub fn start_background(
    t: &Tracker,
    consensus: SocketAddr,
    transport: SocketAddr,
    token: &InternalToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(t.clone().readiness_loop());
    t.start_workers();
    tokio::spawn(t.clone().recover_loop(std::time::Duration::from_secs(5)));
    crate::informers::start(t.clone(), client::transport(transport, token));
    crate::swarms::start(
        t.kubo().clone(),
        client::consensus(consensus, token),
        client::transport(transport, token),
        t.opts().peer_id.clone(),
        t.opts().connect_swarms_delay,
        t.inner.shutdown.clone(),
    );
    tokio::spawn(follower::follow(
        t.clone(),
        client::consensus(consensus, token),
    ))
}

/// Serves the connector on `listener` until `shutdown` is cancelled.
pub async fn run_with(
    listener: TcpListener,
    settings: Settings,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    heap::limit_arenas();
    tokio::spawn(heap_trim_loop(shutdown.clone()));
    let t = build_tracker(settings.opts, shutdown.clone())?;
    if let Some(m) = &settings.metrics {
        crate::tracker::prometheus::register(&t, m);
    }
    if let Some(cfg) = settings.proxy {
        let listeners = crate::proxy::server::bind_all(&cfg.listen)
            .await
            .map_err(RunError::Proxy)?;
        let log = crate::proxy::access_log(&cfg)
            .await
            .map_err(RunError::Proxy)?;
        tracing::info!(addrs = ?cfg.listen, ipfs = %cfg.node, "IPFS proxy listening");
        for w in crate::proxy::server::exposure_warnings(&cfg.listen) {
            tracing::warn!("{w}");
        }
        let consensus = client::consensus(settings.consensus_addr, &settings.token);
        let transport = client::transport(settings.transport_addr, &settings.token);
        let proxy = crate::proxy::Proxy::new(cfg, t.kubo().clone(), consensus, transport)
            .map_err(RunError::Proxy)?;
        tokio::spawn(crate::proxy::serve(listeners, proxy, log, shutdown.clone()));
    }
    let follower = start_background(
        &t,
        settings.consensus_addr,
        settings.transport_addr,
        &settings.token,
    );
    // A failed store write: keep answering (statuses, errors) until the disk takes writes
    // again, then stop so the launcher restarts us on a reopened store.
    let failed = {
        let t = t.clone();
        let shutdown = shutdown.clone();
        let dir = t.opts().state_dir.clone();
        tokio::spawn(async move {
            let mut rx = t.inner.store_failed.subscribe();
            let msg = tokio::select! {
                _ = shutdown.cancelled() => return None,
                r = rx.wait_for(|f| f.is_some()) => match r {
                    Ok(m) => m.clone(),
                    Err(_) => return None,
                },
            };
            tracing::error!(dir = %dir.display(), "the ipfs connector store failed; restarting once the folder is writable again");
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = ipfs_cluster_runtime::disk::wait_writable(&dir) => {}
            }
            shutdown.cancel();
            msg
        })
    };
    let svc = ConnectorService::new(t.clone()).into_server();
    let res = serve_with(
        listener,
        settings.token,
        svc,
        shutdown.clone().cancelled_owned(),
        ServeOptions::observed_by(settings.metrics),
    )
    .await;
    shutdown.cancel();
    // The follower may be storing a batch: let it finish, then close the store cleanly
    // (waits for any read in progress) so the next start needs no repair.
    let _ = follower.await;
    t.store().close();
    if let Ok(Some(msg)) = failed.await {
        return Err(RunError::StoreFailed(msg));
    }
    Ok(res?)
}

/// Binds the internal address and serves.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<(), RunError> {
    let listener = bind_internal(settings.connector_addr, settings.allow_remote_internal).await?;
    tracing::info!(addr = %settings.connector_addr, ipfs = %settings.opts.node_multiaddress, "ipfs connector listening");
    run_with(listener, settings, shutdown).await
}
