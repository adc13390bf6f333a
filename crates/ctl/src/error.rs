//! The two kinds of failure upstream's ctl distinguishes: a REST API error (printed on
//! stdout as an error block; exit 1 when the request never completed, code 0, else 2) and a
//! local error (printed on stderr as `error <doing>: <err>`; exit 1, 62 on deadline, 125 on
//! cancel).

use serde::{Deserialize, Serialize};

/// What the REST API (or reaching it) failed with, as the Go client's `api.Error`: `code`
/// is the HTTP status, 0 when the request never completed. Not the services' own
/// `ipfs_cluster_runtime::ApiError`, which builds those answers on the gateway's side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} ({code})")]
pub struct RestError {
    #[serde(default)]
    pub code: i64,
    #[serde(default)]
    pub message: String,
}

impl RestError {
    pub fn transport(message: impl Into<String>) -> Self {
        RestError {
            code: 0,
            message: message.into(),
        }
    }

    /// Exit code upstream uses for this error.
    pub fn exit_code(&self) -> i32 {
        if self.code == 0 {
            1
        } else {
            2
        }
    }
}

/// A local failure: `error <doing>: <message>` on stderr.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("error {doing}: {message}")]
pub struct LocalError {
    pub doing: String,
    pub message: String,
    pub exit_code: i32,
}

impl LocalError {
    pub fn new(doing: impl Into<String>, message: impl Into<String>) -> Self {
        LocalError {
            doing: doing.into(),
            message: message.into(),
            exit_code: 1,
        }
    }

    /// `context deadline exceeded` (exit 62), as when `--wait-timeout` expires.
    pub fn deadline(doing: impl Into<String>) -> Self {
        LocalError {
            doing: doing.into(),
            message: "context deadline exceeded".into(),
            exit_code: 62,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error(transparent)]
    Rest(#[from] RestError),
    #[error(transparent)]
    Local(#[from] LocalError),
}

impl CtlError {
    pub fn local(doing: impl Into<String>, message: impl std::fmt::Display) -> Self {
        CtlError::Local(LocalError::new(doing, message.to_string()))
    }
}

pub type CtlResult<T> = Result<T, CtlError>;

/// An argument the ctl refuses before calling the API, in the words upstream's ctl (Go's
/// go-cid, go-path, go-libp2p) uses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    /// Not a CID: go-cid's text (`invalid cid: …`, from `api::go_cid_error`).
    #[error("{0}")]
    Cid(String),
    #[error("invalid path \"{0}\": path does not have enough components")]
    PathTooShort(String),
    #[error("invalid path \"{0}\": path does not begin with '/'")]
    PathNoSlash(String),
    #[error("invalid path \"{0}\": not enough path components")]
    PathNoCid(String),
    #[error("invalid path \"{path}\": unknown namespace \"{namespace}\"")]
    PathNamespace { path: String, namespace: String },
    /// A path whose CID is not one: the path and go-cid's text.
    #[error("invalid path \"{path}\": {cid}")]
    PathCid { path: String, cid: String },
    /// go-multihash's `FromB58String` for any base58 failure.
    #[error("input isn't valid multihash")]
    PeerNotBase58,
    #[error("can't convert CID of type {0:#x} to a peer ID")]
    PeerCidCodec(u64),
    #[error("{0}")]
    PeerMultihash(String),
    #[error("invalid multihash code {0:#x} for a peer ID")]
    PeerHashCode(u64),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_upstream() {
        assert_eq!(RestError::transport("connection refused").exit_code(), 1);
        assert_eq!(
            RestError {
                code: 404,
                message: "x".into()
            }
            .exit_code(),
            2
        );
        assert_eq!(
            RestError {
                code: 500,
                message: "x".into()
            }
            .exit_code(),
            2
        );
        assert_eq!(LocalError::new("parsing cid", "bad").exit_code, 1);
        assert_eq!(LocalError::deadline("waiting for pin status").exit_code, 62);
    }

    #[test]
    fn local_error_text() {
        assert_eq!(
            LocalError::new("", "need at least one path").to_string(),
            "error : need at least one path"
        );
        assert_eq!(
            LocalError::deadline("waiting for pin status").to_string(),
            "error waiting for pin status: context deadline exceeded"
        );
    }
}
