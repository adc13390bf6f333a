//! Wires the pieces of one connector together (Kubo client, tracker, workers, watch
//! follower, state file, informers, gRPC server) so the binary and the tests start the
//! service the same way.

use std::net::SocketAddr;

use ipfs_cluster_proto::{bind_internal, client, serve, InternalToken, ServeError};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    follower, kubo, service::ConnectorService, settings::Settings, statefile, tracker::Tracker,
    Kubo, Options, Timeouts,
};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Kubo(#[from] kubo::KuboError),
    #[error(transparent)]
    StateFile(#[from] statefile::StateFileError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("{0}")]
    Proxy(std::io::Error),
}

/// Builds the Kubo client and the tracker, loading the persisted state.
pub fn build_tracker(opts: Options, shutdown: CancellationToken) -> Result<Tracker, RunError> {
    let addr = kubo::parse_node_multiaddress(&opts.node_multiaddress)?;
    let timeouts = Timeouts {
        request: opts.ipfs_request_timeout,
        pin: opts.pin_timeout,
        unpin: opts.unpin_timeout,
        repogc: opts.repogc_timeout,
    };
    let k = Kubo::new(addr, timeouts, opts.unpin_disable);
    let state_path = statefile::path_in(&opts.state_dir);
    let loaded = statefile::load(&state_path)?;
    let t = Tracker::new(opts, k, shutdown);
    if let Some((index, pins)) = loaded {
        tracing::info!(
            index,
            pins = pins.len(),
            "resuming from the persisted tracker state"
        );
        t.load_state(index, pins);
    }
    Ok(t)
}

/// Background tasks of a tracker: readiness, workers, watch follower, state writer,
/// periodic recover. Returns the state writer's handle (it saves a last time on shutdown).
pub fn start_background(
    t: &Tracker,
    consensus: SocketAddr,
    transport: SocketAddr,
    token: &InternalToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(t.clone().readiness_loop());
    t.start_workers();
    tokio::spawn(follower::follow(
        t.clone(),
        client::consensus(consensus, token),
    ));
    tokio::spawn(t.clone().recover_loop(std::time::Duration::from_secs(5)));
    crate::informers::start(t.clone(), client::transport(transport, token));
    tokio::spawn(statefile::writer_loop(
        t.clone(),
        statefile::path_in(&t.opts().state_dir),
    ))
}

/// Serves the connector on `listener` until `shutdown` is cancelled.
pub async fn run_with(
    listener: TcpListener,
    settings: Settings,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let t = build_tracker(settings.opts, shutdown.clone())?;
    if let Some(cfg) = settings.proxy {
        let listeners = crate::proxy_server::bind_all(&cfg.listen)
            .await
            .map_err(RunError::Proxy)?;
        let log = crate::proxy::access_log(&cfg)
            .await
            .map_err(RunError::Proxy)?;
        tracing::info!(addrs = ?cfg.listen, ipfs = %cfg.node, "IPFS proxy listening");
        let consensus = client::consensus(settings.consensus_addr, &settings.token);
        let transport = client::transport(settings.transport_addr, &settings.token);
        let proxy = crate::proxy::Proxy::new(cfg, t.kubo().clone(), consensus, transport)
            .map_err(RunError::Proxy)?;
        tokio::spawn(crate::proxy::serve(listeners, proxy, log, shutdown.clone()));
    }
    let writer = start_background(
        &t,
        settings.consensus_addr,
        settings.transport_addr,
        &settings.token,
    );
    let svc = ConnectorService::new(t).into_server();
    let res = serve(
        listener,
        settings.token,
        svc,
        shutdown.clone().cancelled_owned(),
    )
    .await;
    shutdown.cancel();
    let _ = writer.await;
    Ok(res?)
}

/// Binds the internal address and serves.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<(), RunError> {
    let listener = bind_internal(settings.connector_addr, settings.allow_remote_internal).await?;
    tracing::info!(addr = %settings.connector_addr, ipfs = %settings.opts.node_multiaddress, "ipfs connector listening");
    run_with(listener, settings, shutdown).await
}
