//! Errors of this crate. Parse errors name the bad input and what was expected. (The
//! REST error body, upstream's `api.Error`, is `ipfs_cluster_runtime::ApiError`'s.)

/// Why a value could not be built from a string, JSON or a proto message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("invalid CID {input:?}: {reason}")]
    InvalidCid { input: String, reason: String },
    #[error("invalid peer ID {input:?}: {reason}")]
    InvalidPeerId { input: String, reason: String },
    #[error("invalid multiaddress {input:?}: {reason}")]
    InvalidMultiaddr { input: String, reason: String },
    #[error("invalid time {input:?}: {reason} (expected RFC 3339, e.g. 2024-05-01T10:20:30Z)")]
    InvalidTime { input: String, reason: String },
    #[error("invalid {field} in proto message: {reason}")]
    InvalidProto { field: &'static str, reason: String },
}

/// A pin-option query string was rejected. The text is upstream's 400 message, word for word.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

/// A path boxo's `path.NewPath` rejects, in boxo's words (`invalid path "x": path does not
/// have enough components`). `path` and `namespace` are quoted as Go's `%q` does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("invalid path {path}: path does not have enough components")]
    TooFewComponents { path: String },
    #[error("invalid path {path}: {reason}")]
    InvalidCid { path: String, reason: String },
    #[error("invalid path {path}: unknown namespace: {namespace}")]
    UnknownNamespace { path: String, namespace: String },
}

/// The `status` filter of the Pinning Services API's `GET /pins` names no known status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no valid filter")]
pub struct NoValidFilter;
