//! The libp2p host: TCP with DNS resolution (+ pnet when a secret is set) + noise + yamux,
//! identify, ping, gossipsub and the peer-call protocol. One task owns the swarm; everything else talks
//! to it through a bounded command queue (`HostHandle`).

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    path::PathBuf,
    sync::{Arc, RwLock},
    time::Duration,
};

use bytes::Bytes;
use futures::StreamExt;
use ipfs_cluster_proto::transport::v1::{BroadcastMessage, PeerEntry, WireRequest, WireResponse};
use ipfs_cluster_runtime::{ErrorCode, ServiceError};
use libp2p::{
    core::{
        muxing::StreamMuxerBox,
        transport::{Boxed, TransportError},
        ConnectedPoint,
    },
    dns, gossipsub, identify, identity,
    multiaddr::Protocol,
    noise, ping,
    pnet::PreSharedKey,
    request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel},
    swarm::{
        dial_opts::{DialOpts, PeerCondition},
        ConnectionId, DialError, NetworkBehaviour, SwarmEvent,
    },
    tcp, Multiaddr, PeerId, Swarm, Transport,
};
use tokio::sync::{broadcast, mpsc, oneshot};
use tonic::Status;

use crate::{
    announce::Announce,
    bandwidth::{Bandwidth, CountingMuxer},
    first_bytes::FirstBytesCheck,
    inbound::Inbound,
    options::Limits,
    peerstore::{self, Peerstore},
    wire::{status_response, WireCodec, CALL_PROTOCOL},
};

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot build the libp2p host: {0}")]
    Build(String),
    #[error("cluster.listen_multiaddress has no TCP address we can use (got {0}); QUIC is not supported, add e.g. /ip4/0.0.0.0/tcp/9096")]
    NoListenAddress(String),
    #[error("cannot listen on {addr}: {reason} (is another cluster peer running? change cluster.listen_multiaddress)")]
    Listen { addr: Multiaddr, reason: String },
}

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub gossipsub: gossipsub::Behaviour,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub calls: request_response::Behaviour<WireCodec>,
    /// Raw streams (`/libp2p-http`, see http_tunnel.rs).
    pub streams: libp2p_stream::Behaviour,
}

/// TCP that resolves `/dns`, `/dns4`, `/dns6` and `/dnsaddr` names when dialling (as
/// upstream's go-libp2p does), with the system's resolver configuration (`/etc/resolv.conf`
/// and the hosts file; in a container that is the runtime's DNS, so compose service names
/// work). Without a readable resolver configuration only the hosts file and `localhost`
/// resolve, and the reason is logged once.
fn dns_tcp() -> dns::tokio::Transport<tcp::tokio::Transport> {
    match dns::tokio::Transport::system(ipfs_cluster_p2p::tcp()) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the system's DNS configuration (/etc/resolv.conf): /dns4, /dns6, /dns and /dnsaddr addresses resolve through the hosts file only; fix the resolver configuration or use /ip4 or /ip6 addresses");
            dns::tokio::Transport::custom(
                ipfs_cluster_p2p::tcp(),
                dns::ResolverConfig::default(),
                dns::ResolverOpts::default(),
            )
        }
    }
}

/// TCP (+ DNS) -> [pnet] -> multistream-select -> noise -> yamux (the shared stack,
/// `ipfs_cluster_p2p::secured`), with every substream's bytes counted into `bw`.
fn build_transport(
    key: &identity::Keypair,
    secret: Option<[u8; 32]>,
    bw: Arc<Bandwidth>,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, noise::Error> {
    // FirstBytesCheck: a wrong/missing secret fails at the first received byte, not at the
    // connection timeout (see first_bytes.rs).
    let secured = ipfs_cluster_p2p::secured(dns_tcp(), key, secret, FirstBytesCheck::new)?;
    Ok(Transport::map(secured, move |(p, m), _| {
        (p, StreamMuxerBox::new(CountingMuxer::new(m, bw.clone())))
    })
    .boxed())
}

/// True for addresses we cannot use (QUIC/UDP, websockets we do not speak).
fn unsupported(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| {
        matches!(
            p,
            Protocol::Udp(_)
                | Protocol::Quic
                | Protocol::QuicV1
                | Protocol::Ws(_)
                | Protocol::Wss(_)
        )
    })
}

/// Addresses worth remembering for a peer: dialable TCP (by IP or DNS name) or a
/// `/dnsaddr` name (resolved to such addresses when dialled), not 0.0.0.0/::.
fn dialable(addr: &Multiaddr) -> bool {
    !unsupported(addr)
        && !addr.iter().any(|p| match p {
            Protocol::Ip4(ip) => ip.is_unspecified(),
            Protocol::Ip6(ip) => ip.is_unspecified(),
            _ => false,
        })
        && addr
            .iter()
            .any(|p| matches!(p, Protocol::Tcp(_) | Protocol::Dnsaddr(_)))
}

/// Loopback IPs, and the `localhost` names every resolver maps to them (RFC 6761).
fn is_loopback(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_loopback(),
        Protocol::Ip6(ip) => ip.is_loopback(),
        Protocol::Dns(h) | Protocol::Dns4(h) | Protocol::Dns6(h) => {
            let h = h.trim_end_matches('.').to_ascii_lowercase();
            h == "localhost" || h.ends_with(".localhost")
        }
        _ => false,
    })
}

fn strip_p2p(addr: &Multiaddr) -> Multiaddr {
    addr.iter()
        .filter(|p| !matches!(p, Protocol::P2p(_)))
        .collect()
}

enum Command {
    Call {
        peer: PeerId,
        req: WireRequest,
        /// Addresses to try besides those in the address book (e.g. from consensus).
        extra: Vec<Multiaddr>,
        reply: oneshot::Sender<Result<WireResponse, CommandError>>,
    },
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<PeerId, CommandError>>,
    },
    Disconnect {
        peer: PeerId,
        forget: bool,
        reply: oneshot::Sender<()>,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerEntry>>,
    },
    Publish {
        topic: String,
        data: Bytes,
        reply: oneshot::Sender<Result<(), CommandError>>,
    },
    Subscribe {
        topic: String,
        reply: oneshot::Sender<Result<broadcast::Receiver<BroadcastMessage>, CommandError>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

struct Shared {
    listen: RwLock<Vec<Multiaddr>>,
    /// What we tell others (announce filter applied to `listen`), without /p2p.
    announced: RwLock<Vec<Multiaddr>>,
    /// Peers with at least one open connection (read by callers without a round trip to
    /// the swarm task).
    connected: RwLock<HashSet<PeerId>>,
}

/// A cheap, cloneable handle to the running host.
#[derive(Clone)]
pub struct HostHandle {
    cmd: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    pub local_peer_id: PeerId,
    /// Hex PSK fingerprint; "" on an open network.
    pub psk_fingerprint: String,
    pub limits: Limits,
    /// Bytes by libp2p protocol (bandwidth.rs).
    pub bandwidth: Arc<Bandwidth>,
    /// Opens/accepts raw libp2p streams (http_tunnel.rs).
    pub streams: libp2p_stream::Control,
}

/// Why a command to the libp2p host failed. The gRPC service answers it with the status
/// its [`ErrorCode`] names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("the transport's libp2p host has stopped")]
    Stopped,
    #[error("peer {peer} did not answer within {timeout:?}")]
    CallTimeout { peer: PeerId, timeout: Duration },
    #[error("peer {0} did not answer in time")]
    NoAnswer(PeerId),
    #[error("peer call to {peer} failed: {error}")]
    CallFailed { peer: PeerId, error: String },
    /// A peer call whose dial failed, in go-libp2p's words (see `go_dial_error`).
    #[error("{0}")]
    DialFailed(String),
    #[error("dial did not finish in time")]
    DialTimeout,
    #[error("{0} is this peer's own address")]
    OwnAddress(Multiaddr),
    #[error("cannot dial {addr}: {error}")]
    Dial { addr: Multiaddr, error: String },
    /// A dial that no retry can fix: the address is our own.
    #[error("cannot connect: {0} (the address is this peer's own; give the address of another cluster peer)")]
    ConnectToSelf(String),
    /// A dial that no retry can fix: no transport of ours speaks the address.
    #[error("cannot connect: {0} (supported: /ip4, /ip6, /dns, /dns4 or /dns6 with /tcp/<port>, and /dnsaddr/<name>; optionally ending in /p2p/<peer id>)")]
    ConnectUnsupported(String),
    /// Refused, timed out, name not resolvable yet, wrong secret: worth a retry.
    #[error("cannot connect: {0} (a different cluster secret shows up as a timeout or a handshake error)")]
    Connect(String),
    #[error("broadcast message of {len} bytes exceeds the limit of {limit} bytes")]
    MessageTooLarge { len: usize, limit: usize },
    #[error("cannot publish on topic {topic}: {error}")]
    Publish { topic: String, error: String },
    #[error("subscribe needs a topic name, e.g. \"monitor.metrics\"")]
    NoTopic,
    #[error("cannot subscribe to topic {topic}: {error}")]
    Subscribe { topic: String, error: String },
}

impl ServiceError for CommandError {
    fn error_code(&self) -> ErrorCode {
        match self {
            CommandError::Stopped
            | CommandError::CallFailed { .. }
            | CommandError::DialFailed(_)
            | CommandError::Connect(_) => ErrorCode::Unavailable,
            CommandError::CallTimeout { .. }
            | CommandError::NoAnswer(_)
            | CommandError::DialTimeout => ErrorCode::Timeout,
            CommandError::OwnAddress(_)
            | CommandError::Dial { .. }
            | CommandError::ConnectToSelf(_)
            | CommandError::ConnectUnsupported(_)
            | CommandError::MessageTooLarge { .. }
            | CommandError::NoTopic => ErrorCode::BadRequest,
            CommandError::Publish { .. } | CommandError::Subscribe { .. } => ErrorCode::Internal,
        }
    }
}

/// The gRPC edge: the service's `?` answers the error's status.
impl From<CommandError> for Status {
    fn from(e: CommandError) -> Self {
        e.to_status()
    }
}

fn gone() -> CommandError {
    CommandError::Stopped
}

impl HostHandle {
    async fn send(&self, c: Command) -> Result<(), CommandError> {
        self.cmd.send(c).await.map_err(|_| gone())
    }

    /// The addresses we announce (`cluster.announce_multiaddress`, else our listen
    /// addresses, minus `no_announce_multiaddress`), each ending in /p2p/<our id>.
    pub fn addresses(&self) -> Vec<Multiaddr> {
        let id = self.local_peer_id;
        self.shared
            .announced
            .read()
            .map(|l| {
                l.iter()
                    .map(|a| a.clone().with(Protocol::P2p(id)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// True while we hold an open connection to `peer`.
    pub fn is_connected(&self, peer: &PeerId) -> bool {
        self.shared
            .connected
            .read()
            .map(|c| c.contains(peer))
            .unwrap_or(false)
    }

    /// The peers we hold an open connection to.
    pub fn connected_peers(&self) -> Vec<PeerId> {
        self.shared
            .connected
            .read()
            .map(|c| c.iter().copied().collect())
            .unwrap_or_default()
    }

    /// A peer call to a remote peer, bounded by `timeout`. `extra` are addresses to dial
    /// besides the address book's when there is no connection yet.
    pub async fn call(
        &self,
        peer: PeerId,
        mut req: WireRequest,
        timeout: Duration,
        extra: Vec<Multiaddr>,
    ) -> Result<WireResponse, CommandError> {
        req.timeout_ms = timeout.as_millis().min(u32::MAX as u128) as u32;
        let fut = async {
            let (tx, rx) = oneshot::channel();
            self.send(Command::Call {
                peer,
                req,
                extra,
                reply: tx,
            })
            .await?;
            rx.await.map_err(|_| gone())?
        };
        tokio::time::timeout(timeout, fut)
            .await
            .unwrap_or_else(|_| Err(CommandError::CallTimeout { peer, timeout }))
    }

    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId, CommandError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Dial { addr, reply: tx }).await?;
        // The swarm's connection timeout bounds the dial; this is a safety net.
        tokio::time::timeout(self.limits.dial_timeout * 2 + Duration::from_secs(1), rx)
            .await
            .map_err(|_| CommandError::DialTimeout)?
            .map_err(|_| gone())?
    }

    pub async fn disconnect(&self, peer: PeerId, forget: bool) -> Result<(), CommandError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Disconnect {
            peer,
            forget,
            reply: tx,
        })
        .await?;
        rx.await.map_err(|_| gone())
    }

    pub async fn peers(&self) -> Result<Vec<PeerEntry>, CommandError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Peers { reply: tx }).await?;
        rx.await.map_err(|_| gone())
    }

    pub async fn publish(&self, topic: String, data: Bytes) -> Result<(), CommandError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Publish {
            topic,
            data,
            reply: tx,
        })
        .await?;
        rx.await.map_err(|_| gone())?
    }

    pub async fn subscribe(
        &self,
        topic: String,
    ) -> Result<broadcast::Receiver<BroadcastMessage>, CommandError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Subscribe { topic, reply: tx }).await?;
        rx.await.map_err(|_| gone())?
    }

    /// Stops the host and writes the peerstore. Idempotent.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Command::Shutdown { reply: tx }).await.is_ok() {
            let _ = rx.await;
        }
    }
}

pub struct HostConfig {
    pub keypair: identity::Keypair,
    pub secret: Option<[u8; 32]>,
    pub listen: Vec<Multiaddr>,
    pub peerstore_file: Option<PathBuf>,
    pub peerstore: Peerstore,
    /// Which addresses we tell others (identify, `addresses()`).
    pub announce: Announce,
    pub limits: Limits,
    pub gossip_heartbeat: Duration,
    pub ping_interval: Duration,
    /// `cluster.peer_addresses` (and `--bootstrap`): the peers dialled again whenever they
    /// are not connected (those with `/p2p/<id>`).
    pub bootstrap: Vec<Multiaddr>,
    /// How often known peers that are not connected are dialled again.
    pub rebootstrap_interval: Duration,
}

/// Builds the host, starts listening (waits for the first listen address) and spawns the
/// swarm task. Must run inside a tokio runtime.
pub async fn start(
    cfg: HostConfig,
    inbound: Arc<Inbound>,
) -> Result<(HostHandle, tokio::task::JoinHandle<()>), HostError> {
    let secret = cfg.secret;
    let psk = secret.map(PreSharedKey::new);
    let local_peer_id = cfg.keypair.public().to_peer_id();
    let limits = cfg.limits.clone();
    let max = limits.max_message_size;
    let max_stream = limits.max_stream_answer.max(max);
    let heartbeat = cfg.gossip_heartbeat;
    let ping_interval = cfg.ping_interval;
    let bandwidth = Bandwidth::new();
    let bw = bandwidth.clone();
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(cfg.keypair)
        .with_tokio()
        .with_other_transport(|key| {
            build_transport(key, secret, bw)
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        })
        .map_err(|e| HostError::Build(e.to_string()))?
        .with_behaviour(|key| {
            let gossipsub = gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Signed(key.clone()),
                gossipsub::ConfigBuilder::default()
                    .heartbeat_interval(heartbeat)
                    .validation_mode(gossipsub::ValidationMode::Strict)
                    // Relayed only once `validate_gossip` accepted it (members' only).
                    .validate_messages()
                    .max_transmit_size(max)
                    .build()?,
            )?;
            let identify = identify::Behaviour::new(
                identify::Config::new("ipfs/0.1.0".into(), key.public())
                    .with_agent_version(format!("ipfs-cluster-rs/{}", ipfs_cluster_proto::VERSION))
                    // Only the announced addresses (our external addresses, set from the
                    // announce filter), as upstream's AddrsFactory.
                    .with_hide_listen_addrs(true),
            );
            let calls = request_response::Behaviour::with_codec(
                WireCodec {
                    max_request: max + 4096,
                    max_response: max_stream + 4096,
                },
                [(CALL_PROTOCOL, ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(limits.max_call_timeout + Duration::from_secs(5))
                    .with_max_concurrent_streams(4096),
            );
            Ok(Behaviour {
                gossipsub,
                identify,
                ping: ping::Behaviour::new(ping::Config::new().with_interval(ping_interval)),
                calls,
                streams: libp2p_stream::Behaviour::new(),
            })
        })
        .map_err(|e| HostError::Build(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .with_connection_timeout(limits.dial_timeout)
        .build();

    let mut listening = 0;
    for addr in &cfg.listen {
        if unsupported(addr) {
            tracing::info!(%addr, "skipping listen address: QUIC/UDP and websockets are not supported by this transport (TCP only, as upstream with a secret)");
            continue;
        }
        swarm
            .listen_on(addr.clone())
            .map_err(|e| HostError::Listen {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
        listening += 1;
    }
    if listening == 0 {
        let all: Vec<String> = cfg.listen.iter().map(|a| a.to_string()).collect();
        return Err(HostError::NoListenAddress(format!("[{}]", all.join(", "))));
    }
    let shared = Arc::new(Shared {
        listen: RwLock::new(vec![]),
        announced: RwLock::new(vec![]),
        connected: RwLock::new(HashSet::new()),
    });
    // Wait for the first listen address so callers can report/dial it right away.
    let first = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::NewListenAddr { address, .. } => return Ok(address),
                SwarmEvent::ListenerClosed {
                    reason: Err(e),
                    addresses,
                    ..
                } => {
                    return Err(HostError::Listen {
                        addr: addresses.first().cloned().unwrap_or_else(Multiaddr::empty),
                        reason: e.to_string(),
                    })
                }
                SwarmEvent::ListenerError { error, .. } => {
                    return Err(HostError::Listen {
                        addr: cfg.listen[0].clone(),
                        reason: error.to_string(),
                    })
                }
                _ => {}
            }
        }
    })
    .await
    .map_err(|_| HostError::Listen {
        addr: cfg.listen[0].clone(),
        reason: "no listen address within 5s".into(),
    })??;
    shared
        .listen
        .write()
        .expect("not poisoned")
        .push(first.clone());
    tracing::info!(peer_id = %local_peer_id, address = %first, "libp2p host listening");
    let open_network = psk.is_none();
    if open_network {
        tracing::warn!("Cluster secret is empty, cluster will start on unprotected network: ANYONE who can reach this port can connect to this peer");
    }

    let (cmd_tx, cmd_rx) = mpsc::channel(1024);
    let (resp_tx, resp_rx) = mpsc::channel(1024);
    let (valid_tx, valid_rx) = mpsc::channel(1024);
    let handle = HostHandle {
        cmd: cmd_tx,
        shared: shared.clone(),
        local_peer_id,
        psk_fingerprint: psk.map(|p| p.fingerprint().to_string()).unwrap_or_default(),
        limits: cfg.limits.clone(),
        bandwidth,
        streams: swarm.behaviour().streams.new_control(),
    };
    let mut task = Task {
        swarm,
        local: local_peer_id,
        shared,
        inbound,
        limits: cfg.limits,
        open_network,
        resp_tx,
        valid_tx,
        pending_calls: HashMap::new(),
        pending_dials: HashMap::new(),
        dial_errors: HashMap::new(),
        inflight: HashMap::new(),
        latency: HashMap::new(),
        conn_addrs: HashMap::new(),
        established: 0,
        loaded: cfg.peerstore.book.keys().copied().collect(),
        dialled: HashSet::new(),
        book: cfg.peerstore.book,
        unnamed: cfg.peerstore.unnamed,
        dirty: false,
        peerstore_file: cfg.peerstore_file,
        topics: HashMap::new(),
        announce: cfg.announce,
        external: Vec::new(),
        priority: cfg
            .bootstrap
            .iter()
            .filter_map(|a| match a.iter().last() {
                Some(Protocol::P2p(p)) if p != local_peer_id && !unsupported(a) => {
                    Some((p, strip_p2p(a)))
                }
                _ => None,
            })
            .collect(),
        rebootstrap_interval: cfg.rebootstrap_interval,
        redials: HashSet::new(),
    };
    task.refresh_announced();
    if task.announce.is_fixed() {
        let announced: Vec<String> = task.external.iter().map(|a| a.to_string()).collect();
        tracing::info!(addresses = %announced.join(", "), "announcing cluster.announce_multiaddress instead of the listen addresses");
    }
    let join = tokio::spawn(task.run(cmd_rx, resp_rx, valid_rx));
    Ok((handle, join))
}

type InboundDone = (PeerId, ResponseChannel<WireResponse>, WireResponse);
type GossipVerdict = (gossipsub::MessageId, PeerId, gossipsub::MessageAcceptance);

struct Task {
    swarm: Swarm<Behaviour>,
    local: PeerId,
    shared: Arc<Shared>,
    inbound: Arc<Inbound>,
    limits: Limits,
    open_network: bool,
    resp_tx: mpsc::Sender<InboundDone>,
    /// Verdicts on received gossip (see `validate_gossip`).
    valid_tx: mpsc::Sender<GossipVerdict>,
    pending_calls: HashMap<OutboundRequestId, oneshot::Sender<Result<WireResponse, CommandError>>>,
    pending_dials: HashMap<ConnectionId, oneshot::Sender<Result<PeerId, CommandError>>>,
    /// The last failed dial of a peer, in go-libp2p's words: a peer call that fails
    /// because its dial failed reports this text (what upstream shows in `peers ls` and
    /// the cluster_error entries of `status`).
    dial_errors: HashMap<PeerId, String>,
    inflight: HashMap<PeerId, usize>,
    latency: HashMap<PeerId, Duration>,
    conn_addrs: HashMap<PeerId, Vec<(ConnectionId, Multiaddr)>>,
    established: usize,
    book: peerstore::Book,
    /// Peerstore lines without /p2p/<id>, until a dial through one tells us the peer.
    unnamed: BTreeSet<Multiaddr>,
    /// Peers in the peerstore file at start, and peers this host connected to through a
    /// dial (bootstrap, `Transport.Dial`): what the file keeps while membership is unknown.
    loaded: HashSet<PeerId>,
    dialled: HashSet<PeerId>,
    dirty: bool,
    peerstore_file: Option<PathBuf>,
    topics: HashMap<String, broadcast::Sender<BroadcastMessage>>,
    announce: Announce,
    /// The announced addresses given to the swarm as external addresses (identify sends
    /// these and no listen address).
    external: Vec<Multiaddr>,
    /// The `cluster.peer_addresses` (and `--bootstrap`) peers with their given address.
    priority: Vec<(PeerId, Multiaddr)>,
    rebootstrap_interval: Duration,
    /// Dials started by `rebootstrap` (logged when they connect).
    redials: HashSet<ConnectionId>,
}

impl Task {
    async fn run(
        mut self,
        mut cmd_rx: mpsc::Receiver<Command>,
        mut resp_rx: mpsc::Receiver<InboundDone>,
        mut valid_rx: mpsc::Receiver<GossipVerdict>,
    ) {
        let mut save_tick = tokio::time::interval(Duration::from_secs(5));
        // The start-up bootstrap (lib.rs) dials first; this one takes over after it.
        let mut rebootstrap_tick = tokio::time::interval_at(
            tokio::time::Instant::now() + self.rebootstrap_interval,
            self.rebootstrap_interval,
        );
        rebootstrap_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let shutdown_reply = loop {
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_event(ev),
                cmd = cmd_rx.recv() => match cmd {
                    None => break None,
                    Some(Command::Shutdown { reply }) => break Some(reply),
                    Some(c) => self.on_command(c),
                },
                Some((id, from, verdict)) = valid_rx.recv() => {
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .gossipsub
                        .report_message_validation_result(&id, &from, verdict);
                }
                Some((peer, channel, resp)) = resp_rx.recv() => {
                    if let Some(n) = self.inflight.get_mut(&peer) {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            self.inflight.remove(&peer);
                        }
                    }
                    if self.swarm.behaviour_mut().calls.send_response(channel, resp).is_err() {
                        tracing::debug!(%peer, "peer-call answer dropped: the caller went away");
                    }
                }
                _ = save_tick.tick() => {
                    if self.dirty {
                        self.save_peerstore().await;
                    }
                }
                _ = rebootstrap_tick.tick() => self.rebootstrap(),
            }
        };
        self.save_peerstore().await;
        tracing::info!("libp2p host stopped");
        if let Some(r) = shutdown_reply {
            let _ = r.send(());
        }
    }

    /// Writes the peerstore file with the addresses of current cluster members only
    /// (docs/security.md, hole 7: strangers that connected are neither written nor re-dialled at
    /// the next start; a removed member drops out). When membership cannot be read, the
    /// file is left as it is and the save retried at the next tick.
    async fn save_peerstore(&mut self) {
        self.dirty = false;
        let Some(path) = self.peerstore_file.clone() else {
            return;
        };
        let keep = match self
            .inbound
            .trust
            .peerstore_members(Duration::from_millis(500))
            .await
        {
            Some(members) => members,
            None => {
                // Membership unknown (staging, or consensus already stopped on the way
                // out): keep what the file had and the peers this host dialled on purpose
                // (peer_addresses, --bootstrap), never a peer that only connected to us.
                tracing::debug!("cluster membership not known: the peerstore keeps dialled and already stored peers only");
                self.dirty = true;
                std::sync::Arc::new(self.dialled.union(&self.loaded).copied().collect())
            }
        };
        let store = Peerstore {
            book: members_only(&self.book, &keep),
            unnamed: self.unnamed.clone(),
        };
        let me = self.local;
        let res = tokio::task::spawn_blocking(move || {
            peerstore::save(&path, &store, &me).map_err(|e| (path, e))
        })
        .await;
        if let Ok(Err((path, e))) = res {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the peerstore file");
        }
    }

    /// Recomputes what we announce from the listen addresses and syncs the swarm's
    /// external addresses (what identify tells others) and `Shared::announced`.
    fn refresh_announced(&mut self) {
        let listen = self
            .shared
            .listen
            .read()
            .map(|l| l.clone())
            .unwrap_or_default();
        let mut now: Vec<Multiaddr> = Vec::new();
        for a in self.announce.addresses(&listen) {
            let a = strip_p2p(&a);
            if !now.contains(&a) {
                now.push(a);
            }
        }
        for a in &self.external {
            if !now.contains(a) {
                self.swarm.remove_external_address(a);
            }
        }
        for a in &now {
            if !self.external.contains(a) {
                self.swarm.add_external_address(a.clone());
            }
        }
        if let Ok(mut s) = self.shared.announced.write() {
            *s = now.clone();
        }
        self.external = now;
    }

    /// Dials every known cluster peer that is not connected (upstream's `reBootstrap`):
    /// the `peer_addresses`/`--bootstrap` peers, the peerstore file's, and those dialled on
    /// purpose (`Transport.Dial`), at the addresses the book holds for them. A connection
    /// that closed (the other side crashed, was stopped, or its transport restarted) is
    /// otherwise opened again only if that side dials us, and while it is not, no gossip
    /// (metrics, crdt heads) flows between the two peers.
    fn rebootstrap(&mut self) {
        let mut known: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
        for (p, a) in &self.priority {
            known.entry(*p).or_default().push(a.clone());
        }
        for p in self.dialled.iter().chain(self.loaded.iter()) {
            known.entry(*p).or_default();
        }
        for (peer, given) in known {
            if peer == self.local || self.swarm.is_connected(&peer) {
                continue;
            }
            let mut addrs: Vec<Multiaddr> = self
                .book
                .get(&peer)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default();
            for a in given {
                if !addrs.contains(&a) {
                    addrs.push(a);
                }
            }
            if addrs.is_empty() {
                continue;
            }
            let opts = DialOpts::peer_id(peer)
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .addresses(addrs)
                .build();
            let id = opts.connection_id();
            if self.swarm.dial(opts).is_ok() {
                tracing::debug!(%peer, "dialling a known cluster peer that is not connected");
                self.redials.insert(id);
            }
        }
    }

    fn remember(&mut self, peer: PeerId, addr: &Multiaddr) {
        if peer == self.local || !dialable(addr) {
            return;
        }
        if self.book.entry(peer).or_default().insert(strip_p2p(addr)) {
            self.dirty = true;
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Call {
                peer,
                req,
                extra,
                reply,
            } => {
                let mut addrs: Vec<Multiaddr> = self
                    .book
                    .get(&peer)
                    .map(|s| s.iter().cloned().collect())
                    .unwrap_or_default();
                for a in extra {
                    let a = strip_p2p(&a);
                    if dialable(&a) && !addrs.contains(&a) {
                        addrs.push(a);
                    }
                }
                let id = self
                    .swarm
                    .behaviour_mut()
                    .calls
                    .send_request_with_addresses(&peer, req, addrs);
                self.pending_calls.insert(id, reply);
            }
            Command::Dial { addr, reply } => {
                let opts = match addr.iter().last() {
                    Some(Protocol::P2p(peer)) => {
                        if peer == self.local {
                            let _ = reply.send(Err(CommandError::OwnAddress(addr)));
                            return;
                        }
                        DialOpts::peer_id(peer)
                            .condition(PeerCondition::Disconnected)
                            .addresses(vec![strip_p2p(&addr)])
                            .build()
                    }
                    _ => DialOpts::unknown_peer_id().address(addr.clone()).build(),
                };
                let conn = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        self.pending_dials.insert(conn, reply);
                    }
                    Err(DialError::DialPeerConditionFalse(_)) => {
                        // Already connected: remember the address and report success.
                        if let Some(Protocol::P2p(peer)) = addr.iter().last() {
                            self.dialled.insert(peer);
                            self.remember(peer, &addr);
                            let _ = reply.send(Ok(peer));
                        }
                    }
                    Err(e) => {
                        let _ = reply.send(Err(CommandError::Dial {
                            addr,
                            error: e.to_string(),
                        }));
                    }
                }
            }
            Command::Disconnect {
                peer,
                forget,
                reply,
            } => {
                let _ = self.swarm.disconnect_peer_id(peer);
                if forget {
                    // Nor dialled again (rebootstrap).
                    self.dialled.remove(&peer);
                    self.loaded.remove(&peer);
                    self.priority.retain(|(p, _)| *p != peer);
                    if self.book.remove(&peer).is_some() {
                        self.dirty = true;
                    }
                }
                let _ = reply.send(());
            }
            Command::Peers { reply } => {
                let peers = self
                    .swarm
                    .connected_peers()
                    .map(|p| {
                        let mut addrs: Vec<String> = match self.book.get(p) {
                            Some(s) if !s.is_empty() => s.iter().map(|a| a.to_string()).collect(),
                            _ => self
                                .conn_addrs
                                .get(p)
                                .map(|v| v.iter().map(|(_, a)| a.to_string()).collect())
                                .unwrap_or_default(),
                        };
                        addrs.sort();
                        addrs.dedup();
                        PeerEntry {
                            peer_id: p.to_string(),
                            addresses: addrs,
                            latency_ns: self
                                .latency
                                .get(p)
                                .map(|d| d.as_nanos() as i64)
                                .unwrap_or(0),
                        }
                    })
                    .collect();
                let _ = reply.send(peers);
            }
            Command::Publish { topic, data, reply } => {
                let res = if data.len() > self.limits.max_message_size {
                    Err(CommandError::MessageTooLarge {
                        len: data.len(),
                        limit: self.limits.max_message_size,
                    })
                } else {
                    match self
                        .swarm
                        .behaviour_mut()
                        .gossipsub
                        .publish(gossipsub::IdentTopic::new(topic.clone()), data.to_vec())
                    {
                        Ok(_) | Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => Ok(()),
                        Err(e) => Err(CommandError::Publish {
                            topic: topic.clone(),
                            error: e.to_string(),
                        }),
                    }
                };
                if res.is_ok() {
                    // gossipsub never echoes our own messages: deliver them locally.
                    if let Some(tx) = self.topics.get(&topic) {
                        let _ = tx.send(BroadcastMessage {
                            topic,
                            from: self.local.to_string(),
                            data: data.to_vec(),
                        });
                    }
                }
                let _ = reply.send(res);
            }
            Command::Subscribe { topic, reply } => {
                if topic.is_empty() {
                    let _ = reply.send(Err(CommandError::NoTopic));
                    return;
                }
                let rx = match self.topics.get(&topic) {
                    Some(tx) => tx.subscribe(),
                    None => {
                        if let Err(e) = self
                            .swarm
                            .behaviour_mut()
                            .gossipsub
                            .subscribe(&gossipsub::IdentTopic::new(topic.clone()))
                        {
                            let _ = reply.send(Err(CommandError::Subscribe {
                                topic,
                                error: e.to_string(),
                            }));
                            return;
                        }
                        let (tx, rx) = broadcast::channel(1024);
                        self.topics.insert(topic, tx);
                        rx
                    }
                };
                let _ = reply.send(Ok(rx));
            }
            Command::Shutdown { .. } => unreachable!("handled in run"),
        }
    }

    fn on_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                if let Ok(mut l) = self.shared.listen.write() {
                    if !l.contains(&address) {
                        l.push(address);
                    }
                }
                self.refresh_announced();
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                if let Ok(mut l) = self.shared.listen.write() {
                    l.retain(|a| *a != address);
                }
                self.refresh_announced();
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                self.established += 1;
                if let Ok(mut c) = self.shared.connected.write() {
                    c.insert(peer_id);
                }
                if self.established > self.limits.max_connections {
                    tracing::warn!(peer = %peer_id, limit = self.limits.max_connections, "too many connections: closing the new one");
                    self.swarm.close_connection(connection_id);
                }
                if self.open_network {
                    tracing::warn!(peer = %peer_id, "new connection on an UNPROTECTED network (empty cluster secret): anyone can connect");
                } else {
                    tracing::debug!(peer = %peer_id, "connected");
                }
                let remote = endpoint.get_remote_address().clone();
                if let ConnectedPoint::Dialer { address, .. } = &endpoint {
                    self.remember(peer_id, address);
                    // An unnamed peerstore address now has its peer: the book holds it.
                    if self.unnamed.remove(&strip_p2p(address)) {
                        self.dirty = true;
                    }
                }
                self.conn_addrs
                    .entry(peer_id)
                    .or_default()
                    .push((connection_id, strip_p2p(&remote)));
                if let Some(reply) = self.pending_dials.remove(&connection_id) {
                    self.dialled.insert(peer_id);
                    let _ = reply.send(Ok(peer_id));
                }
                if self.redials.remove(&connection_id) {
                    tracing::info!(peer = %peer_id, "reconnected to a known cluster peer");
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                self.established = self.established.saturating_sub(1);
                if let Some(v) = self.conn_addrs.get_mut(&peer_id) {
                    v.retain(|(c, _)| *c != connection_id);
                }
                if num_established == 0 {
                    self.conn_addrs.remove(&peer_id);
                    self.latency.remove(&peer_id);
                    if let Ok(mut c) = self.shared.connected.write() {
                        c.remove(&peer_id);
                    }
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                tracing::debug!(peer = ?peer_id, %error, "dial failed");
                self.redials.remove(&connection_id);
                if let Some(p) = peer_id {
                    if self.dial_errors.len() >= 1024 {
                        self.dial_errors.clear();
                    }
                    self.dial_errors.insert(p, go_dial_error(&p, &error));
                }
                if let Some(reply) = self.pending_dials.remove(&connection_id) {
                    let _ = reply.send(Err(dial_error_status(&error)));
                }
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                tracing::info!(from = %send_back_addr, %error, "refused an incoming connection (wrong or missing cluster secret, or not libp2p)");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            })) => {
                self.latency.insert(peer, rtt);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                // A remote machine's loopback addresses are useless to us (and would dial
                // whatever listens on our own loopback): keep them only for local peers.
                let local_peer = self
                    .conn_addrs
                    .get(&peer_id)
                    .is_some_and(|v| v.iter().any(|(_, a)| is_loopback(a)));
                for a in &info.listen_addrs {
                    if local_peer || !is_loopback(a) {
                        self.remember(peer_id, a);
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                message,
                message_id,
                propagation_source,
            })) => {
                self.validate_gossip(message_id, propagation_source, message.source);
                let topic = message.topic.as_str();
                if let Some(tx) = self.topics.get(topic) {
                    let _ = tx.send(BroadcastMessage {
                        topic: topic.to_string(),
                        from: message.source.map(|p| p.to_string()).unwrap_or_default(),
                        data: message.data,
                    });
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Calls(ev)) => self.on_call_event(ev),
            _ => {}
        }
    }

    /// Gossip is relayed to other peers only when its signed author is a cluster member
    /// (docs/security.md): a secret holder's messages reach the peers it is connected to, which
    /// drop them before any service sees them, and go no further. Membership is asked
    /// off the event loop; an unknown membership (consensus down) means not relayed.
    fn validate_gossip(&self, id: gossipsub::MessageId, from: PeerId, author: Option<PeerId>) {
        use gossipsub::MessageAcceptance;
        let trust = self.inbound.trust.clone();
        let tx = self.valid_tx.clone();
        tokio::spawn(async move {
            let verdict = match author {
                None => MessageAcceptance::Reject,
                Some(a) => match trust.is_member(&a).await {
                    Ok(true) => MessageAcceptance::Accept,
                    // The stranger itself sent it: penalise it; a member relaying it (an
                    // older peer) is not penalised.
                    Ok(false) if a == from => MessageAcceptance::Reject,
                    Ok(false) | Err(_) => MessageAcceptance::Ignore,
                },
            };
            if verdict != MessageAcceptance::Accept {
                tracing::debug!(author = ?author, via = %from, "gossip not relayed: its author is not a cluster member");
            }
            let _ = tx.send((id, from, verdict)).await;
        });
    }

    fn on_call_event(&mut self, ev: request_response::Event<WireRequest, WireResponse>) {
        use request_response::{Event, Message};
        match ev {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let n = self.inflight.entry(peer).or_insert(0);
                if *n >= self.limits.max_inbound_calls_per_peer {
                    tracing::warn!(%peer, limit = self.limits.max_inbound_calls_per_peer, service = request.service, method = request.method, "peer-call refused: too many concurrent calls from this peer");
                    let st = Status::resource_exhausted(format!(
                        "too many concurrent peer calls from {peer} (limit {}); retry later",
                        self.limits.max_inbound_calls_per_peer
                    ));
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .calls
                        .send_response(channel, status_response(&st));
                    return;
                }
                *n += 1;
                let inbound = self.inbound.clone();
                let done = self.resp_tx.clone();
                tokio::spawn(async move {
                    let resp = inbound.handle(peer, request).await;
                    let _ = done.send((peer, channel, resp)).await;
                });
            }
            Event::Message {
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(reply) = self.pending_calls.remove(&request_id) {
                    let _ = reply.send(Ok(response));
                }
            }
            Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some(reply) = self.pending_calls.remove(&request_id) {
                    let st = match error {
                        request_response::OutboundFailure::Timeout => CommandError::NoAnswer(peer),
                        request_response::OutboundFailure::DialFailure => CommandError::DialFailed(
                            self.dial_errors.remove(&peer).unwrap_or_else(|| {
                                format!("failed to dial: failed to dial {peer}: all dials failed")
                            }),
                        ),
                        e => CommandError::CallFailed {
                            peer,
                            error: e.to_string(),
                        },
                    };
                    let _ = reply.send(Err(st));
                }
            }
            Event::InboundFailure { peer, error, .. } => {
                tracing::info!(%peer, %error, "dropped a malformed, oversized or unanswered inbound peer call");
            }
            Event::ResponseSent { .. } => {}
        }
    }
}

/// A failed dial as callers see it. Errors that no retry can fix (the address is our own,
/// or no transport of ours speaks it) are INVALID_ARGUMENT; the rest (refused, timed out,
/// name not resolvable yet, wrong secret) are UNAVAILABLE.
fn dial_error_status(error: &DialError) -> CommandError {
    match error {
        DialError::LocalPeerId { .. } => CommandError::ConnectToSelf(error.to_string()),
        DialError::Transport(errs)
            if !errs.is_empty()
                && errs
                    .iter()
                    .all(|(_, e)| matches!(e, TransportError::MultiaddrNotSupported(_))) =>
        {
            CommandError::ConnectUnsupported(error.to_string())
        }
        _ => CommandError::Connect(error.to_string()),
    }
}

/// A failed dial in go-libp2p's words ("failed to dial: failed to dial <peer>: all dials
/// failed" and one `  * [<address>] <reason>` line per address tried), so a peer that is
/// down reads the same in `peers ls` and `status` as with upstream. The reasons are
/// rust-libp2p's (go-libp2p's own vary between "dial backoff" and the socket error).
fn go_dial_error(peer: &PeerId, error: &DialError) -> String {
    let head = format!("failed to dial: failed to dial {peer}");
    match error {
        DialError::Transport(errs) if !errs.is_empty() => {
            let mut s = format!("{head}: all dials failed");
            for (addr, e) in errs {
                let mut addr = addr.clone();
                if matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
                    addr.pop();
                }
                let mut reason = e.to_string();
                let mut src = std::error::Error::source(e);
                while let Some(x) = src {
                    reason = x.to_string();
                    src = x.source();
                }
                s.push_str(&format!("\n  * [{addr}] {reason}"));
            }
            s
        }
        DialError::NoAddresses => format!("{head}: no addresses"),
        other => format!("{head}: {other}"),
    }
}

/// The entries of `book` whose peer is in `members`.
fn members_only(book: &peerstore::Book, members: &HashSet<PeerId>) -> peerstore::Book {
    book.iter()
        .filter(|(p, _)| members.contains(p))
        .map(|(p, a)| (*p, a.clone()))
        .collect()
}

/// Peers to dial at start: `cluster.peer_addresses` first, then the peerstore (its
/// addresses without a peer id last). Addresses no transport of ours speaks (QUIC,
/// websockets) are skipped with a warning.
pub fn bootstrap_targets(
    bootstrap: &[Multiaddr],
    store: &Peerstore,
    local: &PeerId,
) -> Vec<Multiaddr> {
    let mut seen = HashSet::new();
    let mut out: Vec<Multiaddr> = Vec::new();
    let usable = |a: &Multiaddr| {
        if unsupported(a) {
            tracing::warn!(addr = %a, "not dialling this peer address: QUIC/UDP and websockets are not supported (TCP only); use /ip4|ip6|dns|dns4|dns6/<host>/tcp/<port>");
            false
        } else {
            true
        }
    };
    for a in bootstrap {
        if let Some(Protocol::P2p(p)) = a.iter().last() {
            if p == *local || !seen.insert(p) {
                continue;
            }
        }
        if usable(a) && !out.contains(a) {
            out.push(a.clone());
        }
    }
    for (p, addrs) in &store.book {
        if p == local || !seen.insert(*p) {
            continue;
        }
        for a in addrs {
            if usable(a) {
                out.push(a.clone().with(Protocol::P2p(*p)));
            }
        }
    }
    for a in &store.unnamed {
        if usable(a) && !out.contains(a) {
            out.push(a.clone());
        }
    }
    out
}

/// Dials each target until it connects, with exponential backoff (1 s doubling to 60 s).
pub async fn bootstrap(host: HostHandle, targets: Vec<Multiaddr>) {
    let tasks = targets.into_iter().map(|addr| {
        let host = host.clone();
        async move {
            let mut delay = Duration::from_secs(1);
            loop {
                match host.dial(addr.clone()).await {
                    Ok(peer) => {
                        tracing::info!(%peer, %addr, "bootstrap: connected");
                        return;
                    }
                    Err(CommandError::Stopped) => return,
                    Err(e) if e.error_code() == ErrorCode::BadRequest => {
                        tracing::warn!(%addr, error = %e, "bootstrap: not dialling this address");
                        return;
                    }
                    Err(e) => {
                        tracing::info!(%addr, error = %e, retry_in = ?delay, "bootstrap: dial failed");
                    }
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(60));
            }
        }
    });
    futures::future::join_all(tasks).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_filters() {
        let a = |s: &str| s.parse::<Multiaddr>().unwrap();
        assert!(unsupported(&a("/ip4/0.0.0.0/udp/9096/quic-v1")));
        assert!(!unsupported(&a("/ip4/0.0.0.0/tcp/9096")));
        assert!(!dialable(&a("/ip4/0.0.0.0/tcp/9096")));
        assert!(dialable(&a("/ip4/10.0.0.1/tcp/9096")));
        assert!(!dialable(&a("/ip4/10.0.0.1/udp/9096/quic-v1")));
        assert!(is_loopback(&a("/ip4/127.0.0.1/tcp/1")));
        assert!(!is_loopback(&a("/ip4/10.0.0.1/tcp/1")));
        assert!(is_loopback(&a("/dns4/localhost/tcp/1")));
        assert!(is_loopback(&a("/dns/LocalHost./tcp/1")));
        assert!(is_loopback(&a("/dns6/peer.localhost/tcp/1")));
        assert!(!is_loopback(&a("/dns4/cluster0/tcp/1")));
        for d in [
            "/dns4/cluster0/tcp/9096",
            "/dns6/cluster0/tcp/9096",
            "/dns/cluster0.example.org/tcp/9096",
            "/dnsaddr/cluster.example.org",
        ] {
            assert!(dialable(&a(d)), "{d}");
        }
        assert!(!dialable(&a("/dns4/cluster0/udp/9096/quic-v1")));
        let p = PeerId::random();
        assert_eq!(
            strip_p2p(&a(&format!("/ip4/10.0.0.1/tcp/1/p2p/{p}"))),
            a("/ip4/10.0.0.1/tcp/1")
        );
    }

    #[test]
    fn bootstrap_targets_dedupe_and_skip_self() {
        let me = PeerId::random();
        let other = PeerId::random();
        let boot: Vec<Multiaddr> = vec![
            format!("/ip4/10.0.0.1/tcp/9096/p2p/{me}").parse().unwrap(),
            format!("/ip4/10.0.0.2/tcp/9096/p2p/{other}")
                .parse()
                .unwrap(),
        ];
        let mut store = Peerstore::default();
        store
            .book
            .entry(other)
            .or_default()
            .insert("/ip4/10.0.0.3/tcp/9096".parse().unwrap());
        let t = bootstrap_targets(&boot, &store, &me);
        assert_eq!(t, vec![boot[1].clone()]);
    }

    /// peer_addresses and peerstore lines in DNS forms, with and without /p2p/<id>, are
    /// all dialled; duplicates and unusable (QUIC) addresses are not.
    #[test]
    fn bootstrap_targets_take_dns_forms() {
        let me = PeerId::random();
        let other = PeerId::random();
        let a = |s: &str| s.parse::<Multiaddr>().unwrap();
        let boot = vec![
            a("/dns4/cluster0/tcp/9096"),
            a(&format!("/dns6/cluster1/tcp/9096/p2p/{other}")),
            a("/dnsaddr/cluster.example.org"),
            a("/dns4/cluster0/tcp/9096"),
            a("/dns4/cluster9/udp/9096/quic-v1"),
        ];
        let mut store = Peerstore::default();
        store
            .book
            .entry(PeerId::random())
            .or_default()
            .insert(a("/dns/cluster2.example.org/tcp/9096"));
        store.unnamed.insert(a("/dns4/cluster3/tcp/9096"));
        store.unnamed.insert(a("/dns4/cluster0/tcp/9096"));
        let t = bootstrap_targets(&boot, &store, &me);
        let got: Vec<String> = t.iter().map(|m| strip_p2p(m).to_string()).collect();
        assert_eq!(
            got,
            vec![
                "/dns4/cluster0/tcp/9096",
                "/dns6/cluster1/tcp/9096",
                "/dnsaddr/cluster.example.org",
                "/dns/cluster2.example.org/tcp/9096",
                "/dns4/cluster3/tcp/9096",
            ]
        );
    }
}
