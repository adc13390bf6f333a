//! The follower's configuration: where its template comes from (upstream's
//! `source`), fetching it, and turning the trusted peers' template into the service.json
//! this follower runs with.
//!
//! Upstream's `init` writes only `{"source": "<url>"}` and every start fetches the
//! configuration from that source. We keep the same `source` key (an upstream follower
//! folder works here) and, at every `run`, write the fetched template's sections beside
//! it, changed for a follower: `cluster.follower_mode` on, the REST API alone on the
//! folder's unix socket `api-socket` (as upstream; no Pinning Services API, no IPFS
//! proxy), our internal endpoints on free loopback ports, metrics and tracing off.
//! The internal ports are kept from one run to the next.

use std::{
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    time::Duration,
};

use ipfs_cluster_config::{Multiaddr, RestApiConfig, ServiceConfig};
use serde_json::Value;

use crate::http::{request, HttpError};

/// Upstream's default gateway for DNSLink and IPFS paths (`--gateway`, `IPFS_GATEWAY`).
pub const DEFAULT_GATEWAY: &str = "127.0.0.1:8080";
/// A template is a small JSON file.
const MAX_TEMPLATE_BYTES: usize = 4 << 20;
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("failed retrieving configuration source ({source_url}): {cause}")]
    Fetch { source_url: String, cause: String },
    #[error("the configuration from {source_url} is not usable: {msg}")]
    Invalid { source_url: String, msg: String },
    #[error("{path}: {msg}")]
    Local { path: PathBuf, msg: String },
    /// No free loopback port for the follower's internal endpoints.
    #[error("cannot find a free port on 127.0.0.1 for the follower's internal endpoints: {0} (free some local ports and run again)")]
    NoFreePort(#[source] std::io::Error),
}

/// Where `init <template>` takes the configuration from, as upstream decides it, plus
/// local files (ours).
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// http:// or https://: fetched as it is.
    Url(String),
    /// /ipfs/… or /ipns/…: fetched through the IPFS gateway.
    IpfsPath { path: String, url: String },
    /// Anything else that names no file: a DNSLink name, fetched as /ipns/<name> through
    /// the gateway (upstream's reading of every argument that is not an http(s) URL).
    DnsLink { name: String, url: String },
    /// An existing file (absolute path).
    File(PathBuf),
}

/// The gateway as a URL prefix: upstream's default `127.0.0.1:8080` has no scheme.
pub fn gateway_url(gateway: &str) -> String {
    let g = gateway.trim_end_matches('/');
    if g.starts_with("http://") || g.starts_with("https://") {
        g.to_string()
    } else {
        format!("http://{g}")
    }
}

impl Source {
    /// Reads `init`'s argument.
    pub fn parse(arg: &str, gateway: &str) -> Source {
        if arg.starts_with("http://") || arg.starts_with("https://") {
            return Source::Url(arg.to_string());
        }
        if arg.starts_with("/ipfs/") || arg.starts_with("/ipns/") {
            return Source::IpfsPath {
                path: arg.to_string(),
                url: format!("{}{arg}", gateway_url(gateway)),
            };
        }
        let p = Path::new(arg);
        if p.is_file() {
            let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
            return Source::File(abs);
        }
        Source::DnsLink {
            name: arg.to_string(),
            url: format!("{}/ipns/{arg}", gateway_url(gateway)),
        }
    }

    /// Reads the `source` stored in service.json (a URL or an absolute file path).
    pub fn from_stored(s: &str) -> Source {
        if s.starts_with('/') {
            Source::File(PathBuf::from(s))
        } else {
            Source::Url(s.to_string())
        }
    }

    /// What service.json's `source` holds.
    pub fn stored(&self) -> String {
        match self {
            Source::Url(u) => u.clone(),
            Source::IpfsPath { url, .. } | Source::DnsLink { url, .. } => url.clone(),
            Source::File(p) => p.display().to_string(),
        }
    }

    /// The template's text.
    pub async fn fetch(&self) -> Result<String, TemplateError> {
        let source_url = self.stored();
        let fail = |cause: String| TemplateError::Fetch {
            source_url: source_url.clone(),
            cause,
        };
        let bytes = match self {
            Source::File(p) => tokio::fs::read(p).await.map_err(|e| fail(e.to_string()))?,
            _ => {
                let (status, body) = request("GET", &source_url, FETCH_TIMEOUT, MAX_TEMPLATE_BYTES)
                    .await
                    .map_err(|e: HttpError| fail(e.to_string()))?;
                if status != 200 {
                    let text = String::from_utf8_lossy(&body);
                    return Err(fail(format!(
                        "HTTP {status}: {}",
                        text.trim().chars().take(200).collect::<String>()
                    )));
                }
                body
            }
        };
        String::from_utf8(bytes).map_err(|_| fail("the answer is not UTF-8 text".into()))
    }
}

/// A free loopback port's address.
fn free_loopback() -> Result<Multiaddr, TemplateError> {
    let port =
        ipfs_cluster_config::ports::free_loopback_port().map_err(TemplateError::NoFreePort)?;
    Ok(Multiaddr::from(IpAddr::V4(Ipv4Addr::LOCALHOST))
        .with(ipfs_cluster_config::Protocol::Tcp(port)))
}

/// The REST API's unix socket in a follower's folder (upstream's `api-socket`).
pub const API_SOCKET: &str = "api-socket";

/// The follower's service.json from the trusted peers' `template`, for the follower
/// folder `dir`. `previous`: the configuration of the last run, whose internal addresses
/// are kept.
pub fn resolve(
    template: &str,
    source: &Source,
    dir: &Path,
    previous: Option<&ServiceConfig>,
) -> Result<Value, TemplateError> {
    let invalid = |msg: String| TemplateError::Invalid {
        source_url: source.stored(),
        msg,
    };
    let mut cfg = ServiceConfig::from_json(template).map_err(|e| invalid(e.to_string()))?;
    if cfg.consensus.crdt.is_none() {
        return Err(invalid(
            "it has no consensus.crdt section: only clusters using crdt consensus can be followed"
                .into(),
        ));
    }
    cfg.cluster.follower_mode = true;
    if cfg.cluster.peername.is_empty() {
        cfg.cluster.peername = hostname();
    }
    // The REST API alone, on the folder's unix socket as upstream's follower, with
    // upstream's defaults (credentials and listeners of the template are the trusted
    // peers' own). CLUSTER_RESTAPI_HTTPLISTENMULTIADDRESS overrides it, as upstream.
    let mut rest = RestApiConfig::default_restapi();
    let socket = dir.join(API_SOCKET);
    rest.http_listen_multiaddress =
        vec![
            ipfs_cluster_config::addr::parse(&format!("/unix{}", socket.display()))
                .map_err(|e| invalid(e.to_string()))?,
        ];
    cfg.api.restapi = Some(rest);
    cfg.api.pinsvcapi = None;
    cfg.api.ipfsproxy = None;
    cfg.observations.metrics.enable_stats = false;
    cfg.observations.tracing.enable_tracing = false;
    cfg.internal = match previous {
        Some(p) => p.internal.clone(),
        None => {
            let mut i = ipfs_cluster_config::InternalConfig::default();
            for a in [
                &mut i.transport_listen_multiaddress,
                &mut i.consensus_listen_multiaddress,
                &mut i.ipfs_connector_listen_multiaddress,
                &mut i.gateway_listen_multiaddress,
            ] {
                *a = free_loopback()?;
            }
            i
        }
    };
    cfg.validate().map_err(|e| invalid(e.to_string()))?;
    let mut v: Value = serde_json::from_str(&cfg.to_json_pretty())
        .map_err(|e| invalid(format!("internal: {e}")))?;
    if let Value::Object(m) = &mut v {
        m.insert("source".into(), Value::String(source.stored()));
    }
    Ok(v)
}

/// The machine's name, as upstream's default peername.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "follower".into())
}

/// The `source` of a follower's service.json, and whether the file also holds the
/// resolved sections of an earlier run.
pub fn read_source(service_json: &Path) -> Result<(Source, bool), TemplateError> {
    let local = |msg: String| TemplateError::Local {
        path: service_json.to_path_buf(),
        msg,
    };
    let text = std::fs::read_to_string(service_json).map_err(|e| local(e.to_string()))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| local(e.to_string()))?;
    let Some(s) = v.get("source").and_then(Value::as_str) else {
        return Err(local(
            "no \"source\" key: this folder was not made by ipfs-cluster-follow init".into(),
        ));
    };
    Ok((Source::from_stored(s), v.get("cluster").is_some()))
}

/// Writes service.json, owner-only (it holds the cluster secret).
pub fn write_service_json(path: &Path, v: &Value) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let text = serde_json::to_string_pretty(v).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_as_upstream_reads_them() {
        assert_eq!(
            Source::parse("https://example.org/s.json", DEFAULT_GATEWAY),
            Source::Url("https://example.org/s.json".into())
        );
        assert_eq!(
            Source::parse("cluster.example.org", DEFAULT_GATEWAY).stored(),
            "http://127.0.0.1:8080/ipns/cluster.example.org"
        );
        assert_eq!(
            Source::parse("/ipfs/bafyabc/service.json", "http://127.0.0.1:9999/").stored(),
            "http://127.0.0.1:9999/ipfs/bafyabc/service.json"
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t.json");
        std::fs::write(&f, "{}").unwrap();
        let s = Source::parse(f.to_str().unwrap(), DEFAULT_GATEWAY);
        assert_eq!(s, Source::File(f.clone()));
        assert_eq!(Source::from_stored(&s.stored()), s);
    }

    fn crdt_template() -> String {
        let mut c = ServiceConfig::default_for_init(
            "trusted",
            ipfs_cluster_config::ClusterSecret::generate(),
        );
        c.consensus = ipfs_cluster_config::ConsensusConfig {
            raft: None,
            crdt: Some(ipfs_cluster_config::CrdtConfig::default()),
        };
        c.to_json_pretty()
    }

    #[test]
    fn a_template_becomes_a_follower_config_and_keeps_its_local_ports() {
        let src = Source::Url("http://x/s.json".into());
        let dir = Path::new("/home/u/.ipfs-cluster-follow/c");
        let v = resolve(&crdt_template(), &src, dir, None).unwrap();
        assert_eq!(v["source"], "http://x/s.json");
        let cfg = ServiceConfig::from_json(&v.to_string()).unwrap();
        assert!(cfg.cluster.follower_mode);
        assert!(cfg.api.pinsvcapi.is_none() && cfg.api.ipfsproxy.is_none());
        let rest = cfg.api.restapi.clone().unwrap().http_listen_multiaddress;
        assert_eq!(
            rest[0].to_string(),
            "/unix/home/u/.ipfs-cluster-follow/c/api-socket"
        );
        assert_ne!(
            cfg.internal.consensus_listen_multiaddress.to_string(),
            "/ip4/127.0.0.1/tcp/9181"
        );
        // A later run keeps the same local addresses.
        let again = resolve(&crdt_template(), &src, dir, Some(&cfg)).unwrap();
        let cfg2 = ServiceConfig::from_json(&again.to_string()).unwrap();
        assert_eq!(cfg2.api.restapi.unwrap().http_listen_multiaddress, rest);
        assert_eq!(cfg2.internal, cfg.internal);
    }

    #[test]
    fn a_raft_template_is_refused() {
        let raft = ServiceConfig::default_for_init(
            "trusted",
            ipfs_cluster_config::ClusterSecret::generate(),
        )
        .to_json_pretty();
        let d = Path::new("/x");
        let e = resolve(&raft, &Source::Url("http://x".into()), d, None).unwrap_err();
        assert!(
            e.to_string().contains("only clusters using crdt consensus"),
            "{e}"
        );
        let e = resolve("{not json", &Source::Url("http://x".into()), d, None).unwrap_err();
        assert!(e.to_string().contains("not usable"), "{e}");
    }
}
