//! One peer's on-disk state as every service sees it: the config folder with service.json,
//! identity.json, the internal token and the peerstore. `Peer::load` is what each service
//! binary calls at start; `init` is what `ipfs-cluster-service init` calls.

use std::{
    fs,
    path::{Path, PathBuf},
};

use ipfs_cluster_proto::InternalToken;
use libp2p::{Multiaddr, PeerId};

use crate::{
    addr, cluster::hostname, identity::write_private, ClusterSecret, ConfigError, Identity,
    ServiceConfig,
};

pub const SERVICE_JSON: &str = "service.json";
pub const IDENTITY_JSON: &str = "identity.json";
pub const DEFAULT_PEERSTORE: &str = "peerstore";

type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

fn env_lookup(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

/// `--config` flag > `$IPFS_CLUSTER_PATH` > `$HOME/.ipfs-cluster`.
pub fn resolve_config_dir(flag: Option<&Path>) -> PathBuf {
    resolve_config_dir_from(flag, &env_lookup)
}

pub(crate) fn resolve_config_dir_from(flag: Option<&Path>, lookup: Lookup) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    if let Some(p) = lookup("IPFS_CLUSTER_PATH").filter(|s| !s.is_empty()) {
        return PathBuf::from(p);
    }
    let home = lookup("HOME")
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".ipfs-cluster")
}

fn under(dir: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

#[derive(Debug, Clone)]
pub struct Peer {
    pub dir: PathBuf,
    pub config: ServiceConfig,
    pub identity: Identity,
    pub token: InternalToken,
}

impl Peer {
    /// Reads service.json (+ `CLUSTER_*` env overrides, then validation), identity.json
    /// (`CLUSTER_ID` / `CLUSTER_PRIVATEKEY` override it) and the internal token file.
    pub fn load(dir: &Path) -> Result<Peer, ConfigError> {
        Self::load_from(dir, &env_lookup)
    }

    /// `load` with an explicit environment lookup.
    pub fn load_from(dir: &Path, lookup: Lookup) -> Result<Peer, ConfigError> {
        let path = dir.join(SERVICE_JSON);
        let text = fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let mut config = ServiceConfig::from_json(&text).map_err(|e| match e {
            ConfigError::Json { source, .. } => ConfigError::Json {
                path: path.clone(),
                source,
            },
            other => other,
        })?;
        config.apply_env_from(lookup)?;
        config.validate()?;
        if config.cluster.secret.is_none() {
            tracing::warn!(
                "cluster secret is empty: the cluster will start on an UNPROTECTED network, any peer can join; set cluster.secret (64 hex characters) in {}",
                path.display()
            );
        }
        let identity = match (lookup("CLUSTER_ID"), lookup("CLUSTER_PRIVATEKEY")) {
            (id, Some(key)) if !key.is_empty() => {
                let what = Path::new("environment (CLUSTER_ID / CLUSTER_PRIVATEKEY)");
                match id.filter(|s| !s.is_empty()) {
                    Some(id) => Identity::from_strings(&id, &key, what)?,
                    None => Identity::from_private_key_base64(&key, what)?,
                }
            }
            _ => load_identity_or_legacy(dir, &text)?,
        };
        let token_path = under(dir, &config.internal.token_file);
        let token = if token_path.exists() {
            InternalToken::load(&token_path)?
        } else {
            // A folder made by upstream's `init` has no internal token (upstream is one
            // process): create it, so upstream's folders run unchanged (drop-in).
            let t = InternalToken::generate();
            write_private(&token_path, t.as_str().as_bytes())?;
            tracing::info!(path = %token_path.display(), "created the internal token (this folder had none: made by upstream's init?)");
            t
        };
        Ok(Peer {
            dir: dir.to_path_buf(),
            config,
            identity,
            token,
        })
    }

    /// The peerstore file: `cluster.peerstore_file` (relative to the folder) or `peerstore`.
    pub fn peerstore_path(&self) -> PathBuf {
        let f = &self.config.cluster.peerstore_file;
        under(&self.dir, if f.is_empty() { DEFAULT_PEERSTORE } else { f })
    }

    /// A service's data folder inside the config folder (`data_dir("raft")`).
    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The raft folder: `consensus.raft.data_folder` or `<config dir>/raft`.
    pub fn raft_dir(&self) -> PathBuf {
        match self
            .config
            .consensus
            .raft
            .as_ref()
            .map(|r| r.data_folder.as_str())
        {
            Some(f) if !f.is_empty() => under(&self.dir, f),
            _ => self.data_dir("raft"),
        }
    }

    pub fn token_path(&self) -> PathBuf {
        under(&self.dir, &self.config.internal.token_file)
    }

    /// Resolves a path from the config (log files, TLS files) against the folder.
    pub fn resolve(&self, p: &str) -> PathBuf {
        under(&self.dir, p)
    }
}

/// identity.json, or (legacy upstream layout) `cluster.id` / `cluster.private_key` from
/// service.json, in which case identity.json is written from them, as upstream does.
fn load_identity_or_legacy(dir: &Path, service_text: &str) -> Result<Identity, ConfigError> {
    let path = dir.join(IDENTITY_JSON);
    if path.exists() {
        return Identity::load(&path);
    }
    let v: serde_json::Value = serde_json::from_str(service_text).unwrap_or_default();
    let key = v
        .pointer("/cluster/private_key")
        .and_then(|x| x.as_str())
        .unwrap_or_default();
    if key.is_empty() {
        return Identity::load(&path); // reports the missing file with the init hint
    }
    let id = v
        .pointer("/cluster/id")
        .and_then(|x| x.as_str())
        .unwrap_or_default();
    let ident = Identity::from_strings(id, key, &dir.join(SERVICE_JSON))?;
    ident.save(&path)?;
    tracing::info!(
        "moved the legacy identity in service.json to {}",
        path.display()
    );
    Ok(ident)
}

/// Reads a peerstore file: one multiaddress per line; blank lines and lines not starting
/// with `/` are ignored; bad addresses are skipped with a warning.
pub fn read_peerstore(path: &Path) -> Result<Vec<Multiaddr>, ConfigError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let mut out = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| l.starts_with('/')) {
        match addr::parse(line) {
            Ok(a) => out.push(a),
            Err(e) => tracing::warn!("{}: skipping {e}", path.display()),
        }
    }
    Ok(out)
}

/// Writes a peerstore file (one address per line).
pub fn write_peerstore(path: &Path, addrs: &[Multiaddr]) -> Result<(), ConfigError> {
    let mut text = String::new();
    for a in addrs {
        text.push_str(&a.to_string());
        text.push('\n');
    }
    fs::write(path, text).map_err(|source| ConfigError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    pub force: bool,
    pub peername: Option<String>,
    /// None: `CLUSTER_SECRET` from the environment, else a random one.
    pub secret: Option<ClusterSecret>,
    /// Written to the peerstore; for raft their peer IDs also form `init_peerset`. Any
    /// form the transport dials (`/ip4`, `/ip6`, `/dns`, `/dns4`, `/dns6` with `/tcp`, or
    /// `/dnsaddr`); an address without `/p2p/<id>` goes to the peerstore only (as upstream,
    /// which skips it for the peerset), and the report says so.
    pub peers: Vec<Multiaddr>,
    /// "raft" (or "") or "crdt".
    pub consensus: String,
    /// Upstream's `init --randomports`: every listening TCP port (cluster swarm, REST,
    /// pinning service, proxy, and our four internal endpoints) is replaced by a port that
    /// is free now, so several peers can be initialised side by side on one host.
    pub random_ports: bool,
}

#[derive(Debug, Clone)]
pub struct InitReport {
    pub service_json: PathBuf,
    pub identity_json: PathBuf,
    pub token_file: PathBuf,
    pub peerstore: Option<PathBuf>,
    pub peer_id: PeerId,
    /// True when the secret was generated here (not given by flag or CLUSTER_SECRET).
    pub secret_generated: bool,
    /// Things the user should know about what was written (one line each).
    pub notes: Vec<String>,
}

impl std::fmt::Display for InitReport {
    /// What `ipfs-cluster-service init` prints: one line per file written.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "configuration written to {}",
            self.service_json.display()
        )?;
        if self.secret_generated {
            writeln!(f, "  (with a new random cluster secret; give the same secret to every peer of this cluster)")?;
        }
        writeln!(
            f,
            "new identity written to {} (peer ID {})",
            self.identity_json.display(),
            self.peer_id
        )?;
        write!(f, "internal token written to {}", self.token_file.display())?;
        if let Some(p) = &self.peerstore {
            write!(f, "\npeerstore written to {}", p.display())?;
        }
        for n in &self.notes {
            write!(f, "\nnote: {n}")?;
        }
        Ok(())
    }
}

/// Creates a peer's config folder: service.json (env overrides baked in, as upstream),
/// identity.json (new Ed25519 key), the internal token (0600) and, with `peers`, the
/// peerstore. Refuses to overwrite any of them unless `force`.
pub fn init(dir: &Path, opts: &InitOptions) -> Result<InitReport, ConfigError> {
    init_from(dir, opts, &env_lookup)
}

/// Replaces the TCP port of one multiaddr (`/ip4|ip6/<ip>/tcp/<port>…`) by the first of
/// `run` consecutive free ports, outside the kernel's ephemeral range (see [`crate::ports`]:
/// a port from that range may be taken by any outbound connection before the service binds
/// it); other addresses (unix sockets, DNS names) are left as they are.
fn randomize_port(a: &mut Multiaddr, run: u16) -> Result<(), ConfigError> {
    use libp2p::multiaddr::Protocol;
    let mut ip = None;
    let mut out = Multiaddr::empty();
    for p in a.iter() {
        match p {
            Protocol::Ip4(v) => {
                ip = Some(std::net::IpAddr::V4(v));
                out.push(p);
            }
            Protocol::Ip6(v) => {
                ip = Some(std::net::IpAddr::V6(v));
                out.push(p);
            }
            Protocol::Tcp(_) if ip.is_some() => {
                let ip = ip.expect("checked by the guard");
                let port = crate::ports::free_listen_ports_in_a_row(ip, run).map_err(|e| {
                    ConfigError::Invalid {
                        key: "--randomports".into(),
                        msg: format!("cannot find a free TCP port on {ip}: {e}"),
                    }
                })?;
                out.push(Protocol::Tcp(port));
            }
            other => out.push(other),
        }
    }
    *a = out;
    Ok(())
}

/// `init --randomports`: every listening TCP port of the configuration gets a free one,
/// the metrics endpoints included (`prometheus_endpoint` P gets four free ports P..P+3,
/// one per service, used once `enable_stats` is on).
fn randomize_ports(config: &mut ServiceConfig) -> Result<(), ConfigError> {
    for a in &mut config.cluster.listen_multiaddress {
        randomize_port(a, 1)?;
    }
    for api in [&mut config.api.restapi, &mut config.api.pinsvcapi]
        .into_iter()
        .flatten()
    {
        for a in &mut api.http_listen_multiaddress {
            randomize_port(a, 1)?;
        }
    }
    if let Some(p) = &mut config.api.ipfsproxy {
        for a in &mut p.listen_multiaddress {
            randomize_port(a, 1)?;
        }
    }
    let i = &mut config.internal;
    for a in [
        &mut i.transport_listen_multiaddress,
        &mut i.consensus_listen_multiaddress,
        &mut i.ipfs_connector_listen_multiaddress,
        &mut i.gateway_listen_multiaddress,
    ] {
        randomize_port(a, 1)?;
    }
    for a in [
        &mut i.transport_metrics_multiaddress,
        &mut i.consensus_metrics_multiaddress,
        &mut i.ipfs_connector_metrics_multiaddress,
        &mut i.gateway_metrics_multiaddress,
    ]
    .into_iter()
    .flatten()
    {
        randomize_port(a, 1)?;
    }
    randomize_port(&mut config.observations.metrics.prometheus_endpoint, 4)?;
    Ok(())
}

/// `init` with an explicit environment lookup.
pub fn init_from(
    dir: &Path,
    opts: &InitOptions,
    lookup: Lookup,
) -> Result<InitReport, ConfigError> {
    let crdt = match opts.consensus.as_str() {
        "raft" | "" => false,
        "crdt" => true,
        other => {
            return Err(ConfigError::Unsupported(format!(
                "unknown consensus {other:?}; use --consensus raft or --consensus crdt"
            )))
        }
    };
    let mut init_peerset = Vec::new();
    let mut notes = Vec::new();
    for a in &opts.peers {
        addr::check_peer_address(a)?;
        match addr::peer_id(a) {
            Some(id) => {
                if !init_peerset.contains(&id) {
                    init_peerset.push(id);
                }
            }
            None => notes.push(format!(
                "{a} has no /p2p/<peer id>: it is in the peerstore (dialled at start) but not in consensus.raft.init_peerset; to make this peer a member of that peer's cluster start it with `daemon --bootstrap {a}`, or give the address with /p2p/<peer id>"
            )),
        }
    }

    let env_secret = lookup("CLUSTER_SECRET").is_some();
    let secret_generated = opts.secret.is_none() && !env_secret;
    let secret = opts.secret.unwrap_or_else(ClusterSecret::generate);
    let mut config =
        ServiceConfig::default_for_init(opts.peername.as_deref().unwrap_or(&hostname()), secret);
    if crdt {
        // As upstream's `init --consensus crdt`: only the crdt section, with its defaults.
        config.consensus = crate::ConsensusConfig {
            raft: None,
            crdt: Some(crate::CrdtConfig::default()),
        };
    }
    config.apply_env_from(lookup)?;
    // Flags beat the environment.
    if let Some(name) = &opts.peername {
        config.cluster.peername = name.clone();
    }
    if let Some(s) = opts.secret {
        config.cluster.secret = s;
    }
    if opts.random_ports {
        randomize_ports(&mut config)?;
    }
    if let Some(r) = config.consensus.raft.as_mut() {
        for id in &init_peerset {
            if !r.init_peerset.contains(id) {
                r.init_peerset.push(*id);
            }
        }
    }
    config.validate()?;

    let service_json = dir.join(SERVICE_JSON);
    let identity_json = dir.join(IDENTITY_JSON);
    let token_file = under(dir, &config.internal.token_file);
    let peerstore = (!opts.peers.is_empty()).then(|| {
        let f = &config.cluster.peerstore_file;
        under(dir, if f.is_empty() { DEFAULT_PEERSTORE } else { f })
    });
    if !opts.force {
        for p in [
            Some(&service_json),
            Some(&identity_json),
            Some(&token_file),
            peerstore.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            if p.exists() {
                return Err(ConfigError::Exists { path: p.clone() });
            }
        }
    }
    fs::create_dir_all(dir).map_err(|source| ConfigError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let identity = Identity::generate();
    // service.json holds the cluster secret: owner-only, like identity.json.
    write_private(&service_json, config.to_json_pretty().trim_end().as_bytes())?;
    identity.save(&identity_json)?;
    write_private(&token_file, InternalToken::generate().as_str().as_bytes())?;
    if let Some(p) = &peerstore {
        write_peerstore(p, &opts.peers)?;
    }
    Ok(InitReport {
        service_json,
        identity_json,
        token_file,
        peerstore,
        peer_id: identity.peer_id,
        secret_generated,
        notes,
    })
}
