//! The commands: list the followed clusters, `info`, `init`, `run` and `list`, with
//! upstream's words (cmd/ipfs-cluster-follow/commands.go). A follower is one of our
//! crdt peers in `follower_mode`, run by the same launcher as `ipfs-cluster-service
//! daemon` (the four services, from the folder of this executable).

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{anyhow, Context, Result};
use ipfs_cluster_config::{Identity, Peer, ServiceConfig};
use serde_json::Value;

use crate::{
    cli::PROGRAM,
    http::request,
    template::{read_source, resolve, write_service_json, Source},
};

/// A command's failure that upstream reports with exit code 1; `msg` (possibly empty)
/// goes to stderr.
#[derive(Debug, thiserror::Error)]
#[error("{msg}")]
pub struct Exit {
    pub msg: String,
}

fn exit(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Exit { msg: msg.into() })
}

pub const SERVICE_JSON: &str = "service.json";
pub const IDENTITY_JSON: &str = "identity.json";

/// `<base>/<name>` and its service.json and identity.json, absolute.
pub struct Paths {
    pub dir: PathBuf,
    pub service_json: PathBuf,
    pub identity_json: PathBuf,
}

impl Paths {
    pub fn new(base: &Path, name: &str) -> Result<Paths> {
        let base = std::path::absolute(base)
            .map_err(|e| exit(format!("error getting absolute path for {name}: {e}")))?;
        let dir = base.join(name);
        Ok(Paths {
            service_json: dir.join(SERVICE_JSON),
            identity_json: dir.join(IDENTITY_JSON),
            dir,
        })
    }

    /// Upstream: the folder exists.
    pub fn initialized(&self) -> bool {
        self.dir.exists()
    }
}

fn print_first_start() {
    let p = PROGRAM;
    print!(
        "\nNo clusters configured yet!\n \nIf this is the first time you are running {p},\nbe sure to check out the usage documentation. Here are some\nexamples to get you going:\n\n$ {p} --help                     - general description and usage help\n$ {p} <clusterName> --help       - Help and subcommands for the <clusterName>'s follower peer\n$ {p} <clusterName> info --help  - Help for the \"info\" subcommand (same for others).\n"
    );
}

fn print_not_initialized(name: &str) {
    print!(
        "\nThis cluster peer has not been initialized.\n\nTry running \"{PROGRAM} {name} init <config-url>\" first.\n"
    );
}

/// No cluster name: the folders under `base` that hold a service.json.
pub fn list_clusters(base: &Path) -> Result<()> {
    let base = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
    let entries = match std::fs::read_dir(&base) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            print_first_start();
            return Ok(());
        }
        Err(e) => return Err(exit(format!("reading {}: {e}", base.display()))),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(SERVICE_JSON).is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    if names.is_empty() {
        print_first_start();
        return Ok(());
    }
    println!(
        "Configurations found for {} follower peers. For info and help, try running:\n",
        names.len()
    );
    for n in &names {
        println!("{PROGRAM} \"{n}\"");
    }
    println!("\nTip: \"{PROGRAM} --help\" for help and examples.");
    Ok(())
}

/// Where a follower's REST API answers.
enum Rest {
    /// A base URL (`http://host:port`).
    Tcp(String),
    /// A unix socket (upstream's follower: `<folder>/api-socket`).
    Unix(PathBuf),
}

impl Rest {
    async fn get(
        &self,
        uri: &str,
        timeout: Duration,
        limit: usize,
    ) -> Result<(u16, Vec<u8>), crate::http::HttpError> {
        match self {
            Rest::Tcp(base) => request("GET", &format!("{base}{uri}"), timeout, limit).await,
            Rest::Unix(p) => crate::http::request_unix("GET", p, uri, timeout, limit).await,
        }
    }
}

/// The REST API address of a follower (its service.json, environment applied, so
/// CLUSTER_RESTAPI_HTTPLISTENMULTIADDRESS counts as upstream's client reads it).
fn rest_url(peer: &Peer) -> Option<Rest> {
    let a = peer
        .config
        .api
        .restapi
        .as_ref()?
        .http_listen_multiaddress
        .first()?;
    if let Some(p) = ipfs_cluster_config::addr::unix_path(a) {
        return Some(Rest::Unix(p));
    }
    let (host, port) = ipfs_cluster_config::addr::to_host_port(a).ok()?;
    let host = if host == "0.0.0.0" {
        "127.0.0.1".to_string()
    } else if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    Some(Rest::Tcp(format!("http://{host}:{port}")))
}

/// The IPFS daemon's API as a base URL: the follower's `ipfshttp.node_multiaddress`,
/// else upstream's default (with CLUSTER_IPFSHTTP_NODEMULTIADDRESS applied).
fn ipfs_url(peer: Option<&Peer>) -> Option<String> {
    let a = match peer {
        Some(p) => p.config.ipfs_connector.ipfshttp.node_multiaddress.clone(),
        None => {
            let s = std::env::var("CLUSTER_IPFSHTTP_NODEMULTIADDRESS")
                .unwrap_or_else(|_| "/ip4/127.0.0.1/tcp/5001".into());
            ipfs_cluster_config::addr::parse(&s).ok()?
        }
    };
    let (host, port) = ipfs_cluster_config::addr::to_host_port(&a).ok()?;
    Some(format!("http://{host}:{port}"))
}

async fn ipfs_online(peer: Option<&Peer>) -> bool {
    let Some(u) = ipfs_url(peer) else {
        return false;
    };
    matches!(
        request(
            "POST",
            &format!("{u}/api/v0/id"),
            Duration::from_secs(5),
            1 << 20
        )
        .await,
        Ok((200, _))
    )
}

async fn peer_online(peer: Option<&Peer>) -> bool {
    let Some(r) = peer.and_then(rest_url) else {
        return false;
    };
    matches!(
        r.get("/version", Duration::from_secs(5), 1 << 20).await,
        Ok((200, _))
    )
}

/// `<name> info` (and `<name>` alone, which then prints the cluster help).
pub async fn info(base: &Path, name: &str) -> Result<()> {
    let paths = Paths::new(base, name)?;
    if !paths.initialized() {
        print_not_initialized(name);
        return Err(exit(""));
    }
    let source = match read_source(&paths.service_json) {
        Ok((s, _)) => s,
        Err(e) => {
            return Err(exit(format!(
                "reading the configurations in {}: {e}",
                paths.dir.display()
            )))
        }
    };
    let url = match source.fetch().await {
        Ok(_) => format!("Available ({})", source.stored()),
        Err(_) => format!(
            "failed retrieving configuration source ({})",
            source.stored()
        ),
    };
    println!("Information about follower peer for Cluster \"{name}\":\n");
    println!("Config folder: {}", paths.dir.display());
    println!("Config source URL: {url}");
    let peer = Peer::load(&paths.dir).ok();
    println!("Cluster Peer online: {}", peer_online(peer.as_ref()).await);
    println!("IPFS peer online: {}", ipfs_online(peer.as_ref()).await);
    Ok(())
}

/// `<name> init <template>`; with `ignore_reinit` (run --init) an existing folder is
/// kept.
pub async fn init(
    base: &Path,
    name: &str,
    template: Option<&str>,
    gateway: &str,
    ignore_reinit: bool,
) -> Result<()> {
    let Some(template) = template.filter(|t| !t.is_empty()) else {
        return Err(exit("configuration URL not provided"));
    };
    let paths = Paths::new(base, name)?;
    if paths.initialized() {
        if ignore_reinit {
            println!("Configuration for this cluster already exists. Skipping initialization.");
            println!(
                "If you wish to re-initialize, simply delete {}\n",
                paths.dir.display()
            );
            return Ok(());
        }
        eprintln!("Configuration for this cluster already exists.");
        eprint!(
            "Please delete {} if you wish to re-initialize.",
            paths.dir.display()
        );
        return Err(exit(""));
    }
    let source = Source::parse(template, gateway);
    match &source {
        Source::DnsLink { name: dns, .. } => {
            println!("{dns} will be assumed to be an DNSLink-powered address: /ipns/{dns}.");
            println!("It will be resolved using the local IPFS daemon's gateway ({gateway}).");
            println!(
                "If this is not the case, specify the full url starting with http:// or https://."
            );
            println!("(You can override the gateway URL by setting IPFS_GATEWAY)");
            println!();
        }
        Source::IpfsPath { path, .. } => {
            println!("{path} will be fetched using the local IPFS daemon's gateway ({gateway}).");
            println!("(You can override the gateway URL by setting IPFS_GATEWAY)");
            println!();
        }
        Source::Url(_) | Source::File(_) => {}
    }
    // Fetched now when possible, so that a wrong template is refused here; otherwise
    // (IPFS not running yet, the server down) `run` fetches it, as upstream always does.
    let resolved = match source.fetch().await {
        Ok(text) => {
            Some(resolve(&text, &source, &paths.dir, None).map_err(|e| exit(e.to_string()))?)
        }
        Err(e) => {
            eprintln!("note: {e}; \"{PROGRAM} {name} run\" fetches it at every start");
            None
        }
    };
    let made = async {
        std::fs::create_dir_all(&paths.dir)
            .with_context(|| format!("creating {}", paths.dir.display()))?;
        let identity = Identity::generate();
        identity
            .save(&paths.identity_json)
            .map_err(|e| anyhow!("error saving {}: {e}", paths.identity_json.display()))?;
        println!("Identity written to {}.", paths.identity_json.display());
        let v = resolved.unwrap_or_else(|| {
            let mut m = serde_json::Map::new();
            m.insert("source".into(), Value::String(source.stored()));
            Value::Object(m)
        });
        write_service_json(&paths.service_json, &v)
            .map_err(|e| anyhow!("saving {}: {e}", paths.service_json.display()))?;
        // Our services' internal gRPC token (upstream has no internal endpoints).
        let token = paths
            .dir
            .join(ipfs_cluster_config::InternalConfig::default().token_file);
        let secret = ipfs_cluster_proto::InternalToken::generate();
        ipfs_cluster_config::write_private(&token, secret.as_str().as_bytes())
            .map_err(|e| anyhow!("saving {}: {e}", token.display()))?;
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if let Err(e) = made {
        let _ = std::fs::remove_dir_all(&paths.dir);
        return Err(exit(e.to_string()));
    }
    println!("Configuration written to {}.", paths.service_json.display());
    println!("Cluster \"{name}\" follower peer initialized.\n");
    println!("You can now use \"{PROGRAM} {name} run\" to start a follower peer for this cluster.");
    println!("(Remember to start your IPFS daemon before)");
    Ok(())
}

/// Fetches the source and writes the follower's service.json for this run; when the
/// source cannot be fetched, an earlier run's configuration is used (with a warning).
async fn refresh_config(paths: &Paths) -> Result<()> {
    let (source, resolved_before) = read_source(&paths.service_json).map_err(|e| {
        exit(format!(
            "reading the configurations in {}: {e}",
            paths.dir.display()
        ))
    })?;
    let previous = if resolved_before {
        std::fs::read_to_string(&paths.service_json)
            .ok()
            .and_then(|t| ServiceConfig::from_json(&t).ok())
    } else {
        None
    };
    match source.fetch().await {
        Ok(text) => {
            let v = resolve(&text, &source, &paths.dir, previous.as_ref()).map_err(|e| {
                exit(format!(
                    "reading the configurations in {}: {e}",
                    paths.dir.display()
                ))
            })?;
            write_service_json(&paths.service_json, &v)
                .map_err(|e| exit(format!("saving {}: {e}", paths.service_json.display())))?;
        }
        Err(e) if previous.is_some() => {
            tracing::warn!(error = %e, "using the configuration fetched at an earlier start");
        }
        Err(e) => {
            return Err(exit(format!(
                "reading the configurations in {}: {e}",
                paths.dir.display()
            )))
        }
    }
    Ok(())
}

/// `<name> run [--init <template>]`: the follower peer in the foreground until a signal.
pub async fn run(base: &Path, name: &str, init_url: Option<&str>, gateway: &str) -> Result<()> {
    if let Some(u) = init_url {
        init(base, name, Some(u), gateway, true).await?;
    }
    let paths = Paths::new(base, name)?;
    if !paths.initialized() {
        print_not_initialized(name);
        return Err(exit(""));
    }
    println!("Starting the IPFS Cluster follower peer for \"{name}\".\nCTRL-C to stop it.");
    println!("Checking if IPFS is online (will wait for 2 minutes)...");
    let before = Peer::load(&paths.dir).ok();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while !ipfs_online(before.as_ref()).await {
        if tokio::time::Instant::now() >= deadline {
            return Err(exit("timed out waiting for IPFS to be available"));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    refresh_config(&paths).await?;
    // Follower mode is forced (as upstream) by CLUSTER_FOLLOWERMODE=true, set in `main`
    // for the services this process starts, whatever service.json says.
    Peer::load(&paths.dir).map_err(|e| {
        exit(format!(
            "reading the configurations in {}: {e}",
            paths.dir.display()
        ))
    })?;
    ipfs_cluster_service::run_daemon(ipfs_cluster_service::DaemonOptions {
        config_dir: paths.dir.clone(),
        bootstrap: Vec::new(),
        leave: false,
        bin_dir: None,
    })
    .await
    .map_err(|e| exit(format!("{e:#}")))
}

fn print_pin(cid: &str, status: &str, name: &str, err: &str) {
    let name = if err.is_empty() {
        name.to_string()
    } else {
        format!("{name} ({err})")
    };
    println!("{status:<20} {cid} {name}");
}

/// Every JSON value of a body that is a stream of objects or one array of them.
fn values(body: &[u8]) -> Result<Vec<Value>, serde_json::Error> {
    let mut out = Vec::new();
    for v in serde_json::Deserializer::from_slice(body).into_iter::<Value>() {
        match v? {
            Value::Array(a) => out.extend(a),
            v => out.push(v),
        }
    }
    Ok(out)
}

/// `<name> list`: the pins with their status on this peer when it runs, else the pinset
/// on disk marked `offline`.
pub async fn list(base: &Path, name: &str) -> Result<()> {
    let paths = Paths::new(base, name)?;
    if !paths.initialized() {
        print_not_initialized(name);
        return Err(exit(""));
    }
    let peer = Peer::load(&paths.dir).ok();
    if let Some(rest) = peer.as_ref().and_then(rest_url) {
        match rest
            .get("/pins?local=true", Duration::from_secs(300), 1 << 30)
            .await
        {
            Ok((200, body)) => {
                for gpi in values(&body).map_err(|e| exit(format!("reading the pins: {e}")))? {
                    let cid = gpi["cid"].as_str().unwrap_or_default();
                    let pin_name = gpi["name"].as_str().unwrap_or_default();
                    let info = gpi["peer_map"]
                        .as_object()
                        .and_then(|m| m.values().next())
                        .cloned()
                        .unwrap_or(Value::Null);
                    print_pin(
                        cid,
                        info["status"].as_str().unwrap_or_default(),
                        pin_name,
                        info["error"].as_str().unwrap_or_default(),
                    );
                }
                return Ok(());
            }
            Ok((204, _)) => return Ok(()),
            Ok((code, body)) => {
                let msg = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v["message"].as_str().map(str::to_string))
                    .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
                return Err(exit(format!(
                    "The Peer API seems to be running but returned with code {code}: {msg}"
                )));
            }
            // Not running: read the state on disk.
            Err(_) => {}
        }
    }
    if peer.is_none() {
        // Never started: no state yet.
        return Ok(());
    }
    let tmp = tempfile::NamedTempFile::new().context("creating a temporary file")?;
    ipfs_cluster_service::state::export(
        &ipfs_cluster_service::StateOptions {
            config_dir: paths.dir.clone(),
            bin_dir: None,
        },
        Some(tmp.path()),
    )
    .await
    .map_err(|e| exit(format!("error obtaining the pinset: {e:#}")))?;
    let text = std::fs::read(tmp.path()).context("reading the exported pinset")?;
    for p in values(&text).map_err(|e| exit(format!("error obtaining the pinset: {e}")))? {
        print_pin(
            p["cid"].as_str().unwrap_or_default(),
            "offline",
            p["name"].as_str().unwrap_or_default(),
            "",
        );
    }
    Ok(())
}
