//! Errors of this crate, plus `ApiError`, the `{"code","message"}` body every REST error
//! carries (upstream api.Error). Parse errors name the bad input and what was expected.
use serde::{Deserialize, Serialize};

use crate::de::nullable;

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

/// Upstream's error body: `{"code":404,"message":"pin is not part of the pinset"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    #[serde(default, deserialize_with = "nullable")]
    pub code: i32,
    #[serde(default, deserialize_with = "nullable")]
    pub message: String,
}

impl ApiError {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, message)
    }
    pub fn not_implemented(message: impl Into<String>) -> Self {
        Self::new(501, message)
    }
}

/// How the Go client prints an error: `<message> (<code>)`.
impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for ApiError {}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        ApiError::bad_request(e.0)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError::bad_request(e.to_string())
    }
}
