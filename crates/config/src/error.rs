//! One error type for everything this crate loads or writes. Every message names the file,
//! key or environment variable at fault and, where there is one, the fix.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}{}", path.display(), hint_init(source))]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: invalid JSON: {source}", path.display())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// A key of service.json has a bad value or fails validation. `key` is the dotted path
    /// (`cluster.connection_manager.low_water`).
    #[error("service.json: {key}: {msg}")]
    Invalid { key: String, msg: String },
    /// A bad value in an environment variable override.
    #[error("environment variable {var}: {msg}")]
    Env { var: String, msg: String },
    #[error("invalid duration \"{value}\": {reason} (use Go syntax such as \"500ms\", \"1m30s\", \"2h0m0s\")")]
    Duration { value: String, reason: String },
    #[error("{0}")]
    Secret(String),
    #[error("{}: {msg}", path.display())]
    Identity { path: PathBuf, msg: String },
    #[error("invalid multiaddress \"{addr}\": {msg}")]
    Addr { addr: String, msg: String },
    #[error(transparent)]
    Token(#[from] ipfs_cluster_proto::TokenError),
    #[error("{} already exists; use --force to overwrite", path.display())]
    Exists { path: PathBuf },
    #[error("{0}")]
    Unsupported(String),
}

fn hint_init(e: &std::io::Error) -> &'static str {
    if e.kind() == std::io::ErrorKind::NotFound {
        " (run `ipfs-cluster-service init` first, or point --config / IPFS_CLUSTER_PATH at the right folder)"
    } else {
        ""
    }
}

impl ConfigError {
    pub(crate) fn invalid(key: impl Into<String>, msg: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            msg: msg.into(),
        }
    }
}
