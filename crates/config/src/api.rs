//! The `api` section: REST API, Pinning Service API (same keys) and the IPFS proxy.
//! Presence of a component enables it, as upstream.

use std::collections::BTreeMap;

use libp2p::Multiaddr;
use serde_json::Value;

use crate::{
    json::{ma, ma1, Obj, Out, Result},
    ConfigError, GoDuration,
};

/// `api.restapi` and `api.pinsvcapi` (upstream api/common jsonConfig).
#[derive(Debug, Clone, PartialEq)]
pub struct RestApiConfig {
    pub http_listen_multiaddress: Vec<Multiaddr>,
    /// Relative paths resolve against the config folder. Omitted from JSON when empty.
    pub ssl_cert_file: String,
    pub ssl_key_file: String,
    pub read_timeout: GoDuration,
    pub read_header_timeout: GoDuration,
    pub write_timeout: GoDuration,
    pub idle_timeout: GoDuration,
    pub max_header_bytes: i64,
    pub libp2p_listen_multiaddress: Vec<Multiaddr>,
    pub id: String,
    pub private_key: String,
    /// None = authentication off (`null` in JSON).
    pub basic_auth_credentials: Option<BTreeMap<String, String>>,
    /// Ours, not upstream's: users of `basic_auth_credentials` that may only read (GET and
    /// HEAD; `POST /token` gives them read-scoped tokens). Written only when not empty.
    pub read_only_users: Vec<String>,
    pub http_log_file: String,
    pub headers: BTreeMap<String, Vec<String>>,
    pub cors_allowed_origins: Vec<String>,
    pub cors_allowed_methods: Vec<String>,
    pub cors_allowed_headers: Vec<String>,
    pub cors_exposed_headers: Vec<String>,
    pub cors_allow_credentials: bool,
    pub cors_max_age: GoDuration,
    /// Ours, not upstream's: open connections served at once; more are closed at accept
    /// (so idle or slow clients cannot exhaust file descriptors and memory). Written to
    /// service.json only when changed from the default.
    pub max_connections: u32,
    /// Ours: the largest `POST /add` request body, in bytes (413 beyond; also bounds what
    /// one add spools to the temp folder). Written to service.json only when changed.
    pub max_add_bytes: u64,
}

pub const DEFAULT_MAX_HEADER_BYTES: i64 = 4096;
/// 32 GiB: far above a typical add, far below a disk.
pub const DEFAULT_MAX_ADD_BYTES: u64 = 32 << 30;
pub const DEFAULT_MAX_CONNECTIONS: u32 = 1024;

impl RestApiConfig {
    pub fn default_restapi() -> Self {
        Self::with_listen("/ip4/127.0.0.1/tcp/9094")
    }

    pub fn default_pinsvcapi() -> Self {
        Self::with_listen("/ip4/127.0.0.1/tcp/9097")
    }

    fn with_listen(addr: &str) -> Self {
        RestApiConfig {
            http_listen_multiaddress: ma(&[addr]),
            ssl_cert_file: String::new(),
            ssl_key_file: String::new(),
            read_timeout: GoDuration::ZERO,
            read_header_timeout: GoDuration::from_secs(5),
            write_timeout: GoDuration::ZERO,
            idle_timeout: GoDuration::from_secs(120),
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            libp2p_listen_multiaddress: Vec::new(),
            id: String::new(),
            private_key: String::new(),
            basic_auth_credentials: None,
            read_only_users: Vec::new(),
            http_log_file: String::new(),
            headers: BTreeMap::new(),
            cors_allowed_origins: vec!["*".into()],
            cors_allowed_methods: vec!["GET".into()],
            cors_allowed_headers: Vec::new(),
            cors_exposed_headers: [
                "Content-Type",
                "X-Stream-Output",
                "X-Chunked-Output",
                "X-Content-Length",
            ]
            .map(String::from)
            .to_vec(),
            cors_allow_credentials: true,
            cors_max_age: GoDuration::ZERO,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_add_bytes: DEFAULT_MAX_ADD_BYTES,
        }
    }

    /// Upstream quirk kept: the CORS keys, `basic_auth_credentials`, `headers` and
    /// `http_log_file` are taken from JSON as they are (missing = empty/false), the rest
    /// keep their defaults when missing or empty.
    pub(crate) fn from_obj(mut o: Obj, d: RestApiConfig) -> Result<Self> {
        let http_listen_multiaddress = match o.maddrs("http_listen_multiaddress")? {
            Some(v) => v,
            None => d.http_listen_multiaddress.clone(),
        };
        let mut max_header_bytes = o.int_or("max_header_bytes", 0)?;
        if max_header_bytes == 0 {
            max_header_bytes = DEFAULT_MAX_HEADER_BYTES;
        }
        let cfg = RestApiConfig {
            http_listen_multiaddress,
            ssl_cert_file: o.string("ssl_cert_file")?.unwrap_or_default(),
            ssl_key_file: o.string("ssl_key_file")?.unwrap_or_default(),
            read_timeout: o.dur_or("read_timeout", d.read_timeout)?,
            read_header_timeout: o.dur_or("read_header_timeout", d.read_header_timeout)?,
            write_timeout: o.dur_or("write_timeout", d.write_timeout)?,
            idle_timeout: o.dur_or("idle_timeout", d.idle_timeout)?,
            max_header_bytes,
            libp2p_listen_multiaddress: o.maddrs("libp2p_listen_multiaddress")?.unwrap_or_default(),
            id: o.string("id")?.unwrap_or_default(),
            private_key: o.string("private_key")?.unwrap_or_default(),
            basic_auth_credentials: o.str_map("basic_auth_credentials")?,
            read_only_users: o.strings("read_only_users")?.unwrap_or_default(),
            http_log_file: o.string("http_log_file")?.unwrap_or_default(),
            headers: o.str_list_map("headers")?.unwrap_or_default(),
            cors_allowed_origins: o.strings("cors_allowed_origins")?.unwrap_or_default(),
            cors_allowed_methods: o.strings("cors_allowed_methods")?.unwrap_or_default(),
            cors_allowed_headers: o.strings("cors_allowed_headers")?.unwrap_or_default(),
            cors_exposed_headers: o.strings("cors_exposed_headers")?.unwrap_or_default(),
            cors_allow_credentials: o.bool("cors_allow_credentials")?,
            cors_max_age: o.dur_or("cors_max_age", GoDuration::ZERO)?,
            max_connections: match o.uint_or("max_connections", 0)? {
                0 => d.max_connections,
                n => u32::try_from(n).map_err(|_| {
                    ConfigError::invalid(
                        "max_connections",
                        format!("must be at most {}, got {n}", u32::MAX),
                    )
                })?,
            },
            max_add_bytes: match o.uint_or("max_add_bytes", 0)? {
                0 => d.max_add_bytes,
                n => n,
            },
        };
        o.finish();
        Ok(cfg)
    }

    pub(crate) fn to_value(&self) -> Value {
        let mut o = Out::default();
        o.maddrs("http_listen_multiaddress", &self.http_listen_multiaddress);
        if !self.ssl_cert_file.is_empty() {
            o.put("ssl_cert_file", self.ssl_cert_file.clone());
        }
        if !self.ssl_key_file.is_empty() {
            o.put("ssl_key_file", self.ssl_key_file.clone());
        }
        o.dur("read_timeout", self.read_timeout)
            .dur("read_header_timeout", self.read_header_timeout)
            .dur("write_timeout", self.write_timeout)
            .dur("idle_timeout", self.idle_timeout)
            .put("max_header_bytes", self.max_header_bytes);
        if !self.libp2p_listen_multiaddress.is_empty() {
            o.maddrs(
                "libp2p_listen_multiaddress",
                &self.libp2p_listen_multiaddress,
            );
        }
        if !self.id.is_empty() {
            o.put("id", self.id.clone());
        }
        if !self.private_key.is_empty() {
            o.put("private_key", self.private_key.clone());
        }
        let auth = match &self.basic_auth_credentials {
            None => Value::Null,
            Some(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
            ),
        };
        let headers: serde_json::Map<String, Value> = self
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    Value::Array(v.iter().map(|s| Value::String(s.clone())).collect()),
                )
            })
            .collect();
        o.put("basic_auth_credentials", auth);
        if !self.read_only_users.is_empty() {
            o.strings("read_only_users", &self.read_only_users);
        }
        o.put("http_log_file", self.http_log_file.clone())
            .put("headers", Value::Object(headers))
            .strings("cors_allowed_origins", &self.cors_allowed_origins)
            .strings("cors_allowed_methods", &self.cors_allowed_methods)
            .strings("cors_allowed_headers", &self.cors_allowed_headers)
            .strings("cors_exposed_headers", &self.cors_exposed_headers)
            .put("cors_allow_credentials", self.cors_allow_credentials)
            .dur("cors_max_age", self.cors_max_age);
        if self.max_connections != DEFAULT_MAX_CONNECTIONS {
            o.put("max_connections", self.max_connections);
        }
        if self.max_add_bytes != DEFAULT_MAX_ADD_BYTES {
            o.put("max_add_bytes", self.max_add_bytes);
        }
        o.done()
    }

    pub(crate) fn validate(&self, section: &str) -> Result<()> {
        let bad =
            |k: &str, msg: String| Err(ConfigError::invalid(format!("api.{section}.{k}"), msg));
        if self.max_header_bytes < DEFAULT_MAX_HEADER_BYTES {
            return bad(
                "max_header_bytes",
                format!(
                    "must be at least {DEFAULT_MAX_HEADER_BYTES}, got {}",
                    self.max_header_bytes
                ),
            );
        }
        if let Some(m) = &self.basic_auth_credentials {
            if m.is_empty() {
                return bad(
                    "basic_auth_credentials",
                    "should be null or have at least one entry".into(),
                );
            }
        }
        for u in &self.read_only_users {
            if !self
                .basic_auth_credentials
                .as_ref()
                .is_some_and(|m| m.contains_key(u))
            {
                return bad(
                    "read_only_users",
                    format!("{u:?} is not a user of basic_auth_credentials; add it there (with a password) or remove it from read_only_users"),
                );
            }
        }
        if self.ssl_cert_file.is_empty() != self.ssl_key_file.is_empty() {
            return bad(
                "ssl_cert_file",
                "and ssl_key_file must be set together (or both left empty)".into(),
            );
        }
        let libp2p_parts = [
            !self.libp2p_listen_multiaddress.is_empty(),
            !self.id.is_empty(),
            !self.private_key.is_empty(),
        ];
        if libp2p_parts.iter().any(|b| *b) && !libp2p_parts.iter().all(|b| *b) {
            return bad(
                "libp2p_listen_multiaddress",
                "id and private_key must all be set, or none of them".into(),
            );
        }
        if self.http_listen_multiaddress.is_empty() && self.libp2p_listen_multiaddress.is_empty() {
            return bad("http_listen_multiaddress", "neither the libp2p nor the HTTP endpoints are enabled; set an address or remove the section".into());
        }
        Ok(())
    }
}

/// `api.ipfsproxy`.
#[derive(Debug, Clone, PartialEq)]
pub struct IpfsProxyConfig {
    pub listen_multiaddress: Vec<Multiaddr>,
    pub node_multiaddress: Multiaddr,
    pub node_https: bool,
    /// "" = log through tracing; relative paths resolve against the config folder.
    pub log_file: String,
    pub read_timeout: GoDuration,
    pub read_header_timeout: GoDuration,
    pub write_timeout: GoDuration,
    pub idle_timeout: GoDuration,
    pub max_header_bytes: i64,
    pub extract_headers_extra: Vec<String>,
    pub extract_headers_path: String,
    pub extract_headers_ttl: GoDuration,
}

const DEFAULT_EXTRACT_PATH: &str = "/api/v0/version";

impl Default for IpfsProxyConfig {
    fn default() -> Self {
        IpfsProxyConfig {
            listen_multiaddress: ma(&["/ip4/127.0.0.1/tcp/9095"]),
            node_multiaddress: ma1("/ip4/127.0.0.1/tcp/5001"),
            node_https: false,
            log_file: String::new(),
            read_timeout: GoDuration::ZERO,
            read_header_timeout: GoDuration::from_secs(5),
            write_timeout: GoDuration::ZERO,
            idle_timeout: GoDuration::from_secs(60),
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            extract_headers_extra: Vec::new(),
            extract_headers_path: DEFAULT_EXTRACT_PATH.to_string(),
            extract_headers_ttl: GoDuration::from_secs(300),
        }
    }
}

impl IpfsProxyConfig {
    pub(crate) fn from_obj(mut o: Obj) -> Result<Self> {
        let d = IpfsProxyConfig::default();
        let listen_multiaddress = match o.maddrs("listen_multiaddress")? {
            Some(v) if !v.is_empty() => v,
            _ => d.listen_multiaddress.clone(),
        };
        let mut max_header_bytes = o.int_or("max_header_bytes", 0)?;
        if max_header_bytes == 0 {
            max_header_bytes = DEFAULT_MAX_HEADER_BYTES;
        }
        let cfg = IpfsProxyConfig {
            listen_multiaddress,
            node_multiaddress: o.maddr_or("node_multiaddress", "/ip4/127.0.0.1/tcp/5001")?,
            node_https: o.bool("node_https")?,
            log_file: o.string("log_file")?.unwrap_or_default(),
            read_timeout: o.dur_or("read_timeout", d.read_timeout)?,
            read_header_timeout: o.dur_or("read_header_timeout", d.read_header_timeout)?,
            write_timeout: o.dur_or("write_timeout", d.write_timeout)?,
            idle_timeout: o.dur_or("idle_timeout", d.idle_timeout)?,
            max_header_bytes,
            extract_headers_extra: o.strings("extract_headers_extra")?.unwrap_or_default(),
            extract_headers_path: o.string_or("extract_headers_path", DEFAULT_EXTRACT_PATH)?,
            extract_headers_ttl: o.dur_or("extract_headers_ttl", d.extract_headers_ttl)?,
        };
        o.finish();
        Ok(cfg)
    }

    pub(crate) fn to_value(&self) -> Value {
        let d = IpfsProxyConfig::default();
        let mut o = Out::default();
        o.maddrs("listen_multiaddress", &self.listen_multiaddress)
            .maddr("node_multiaddress", &self.node_multiaddress);
        if self.node_https {
            o.put("node_https", true);
        }
        o.put("log_file", self.log_file.clone())
            .dur("read_timeout", self.read_timeout)
            .dur("read_header_timeout", self.read_header_timeout)
            .dur("write_timeout", self.write_timeout)
            .dur("idle_timeout", self.idle_timeout)
            .put("max_header_bytes", self.max_header_bytes);
        if !self.extract_headers_extra.is_empty() {
            o.strings("extract_headers_extra", &self.extract_headers_extra);
        }
        if self.extract_headers_path != d.extract_headers_path {
            o.put("extract_headers_path", self.extract_headers_path.clone());
        }
        if self.extract_headers_ttl != d.extract_headers_ttl {
            o.dur("extract_headers_ttl", self.extract_headers_ttl);
        }
        o.done()
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.max_header_bytes < DEFAULT_MAX_HEADER_BYTES {
            return Err(ConfigError::invalid(
                "api.ipfsproxy.max_header_bytes",
                format!(
                    "must be at least {DEFAULT_MAX_HEADER_BYTES}, got {}",
                    self.max_header_bytes
                ),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ApiConfig {
    pub restapi: Option<RestApiConfig>,
    pub pinsvcapi: Option<RestApiConfig>,
    pub ipfsproxy: Option<IpfsProxyConfig>,
}

impl ApiConfig {
    pub fn default_for_init() -> Self {
        ApiConfig {
            restapi: Some(RestApiConfig::default_restapi()),
            pinsvcapi: Some(RestApiConfig::default_pinsvcapi()),
            ipfsproxy: Some(IpfsProxyConfig::default()),
        }
    }

    pub(crate) fn from_obj(mut o: Obj) -> Result<Self> {
        let ipfsproxy = o
            .obj("ipfsproxy")?
            .map(IpfsProxyConfig::from_obj)
            .transpose()?;
        let pinsvcapi = o
            .obj("pinsvcapi")?
            .map(|x| RestApiConfig::from_obj(x, RestApiConfig::default_pinsvcapi()))
            .transpose()?;
        let restapi = o
            .obj("restapi")?
            .map(|x| RestApiConfig::from_obj(x, RestApiConfig::default_restapi()))
            .transpose()?;
        o.finish();
        Ok(ApiConfig {
            restapi,
            pinsvcapi,
            ipfsproxy,
        })
    }

    /// Components in upstream's (alphabetical) order.
    pub(crate) fn to_value(&self) -> Value {
        let mut o = Out::default();
        if let Some(p) = &self.ipfsproxy {
            o.put("ipfsproxy", p.to_value());
        }
        if let Some(p) = &self.pinsvcapi {
            o.put("pinsvcapi", p.to_value());
        }
        if let Some(r) = &self.restapi {
            o.put("restapi", r.to_value());
        }
        o.done()
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if let Some(r) = &self.restapi {
            r.validate("restapi")?;
        }
        if let Some(r) = &self.pinsvcapi {
            r.validate("pinsvcapi")?;
        }
        if let Some(p) = &self.ipfsproxy {
            p.validate()?;
        }
        Ok(())
    }
}
