//! The two kinds of failure upstream's ctl distinguishes: an API error (printed on
//! stdout as an error block; exit 1 when the request never completed, code 0, else 2) and a
//! local error (printed on stderr as `error <doing>: <err>`; exit 1, 62 on deadline, 125 on
//! cancel).

use serde::{Deserialize, Serialize};

/// An `api.Error` as the Go client builds it: `code` 0 means the request never completed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} ({code})")]
pub struct ApiError {
    #[serde(default)]
    pub code: i64,
    #[serde(default)]
    pub message: String,
}

impl ApiError {
    pub fn transport(message: impl Into<String>) -> Self {
        ApiError {
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
    Api(#[from] ApiError),
    #[error(transparent)]
    Local(#[from] LocalError),
}

impl CtlError {
    pub fn local(doing: impl Into<String>, message: impl std::fmt::Display) -> Self {
        CtlError::Local(LocalError::new(doing, message.to_string()))
    }
}

pub type CtlResult<T> = Result<T, CtlError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_upstream() {
        assert_eq!(ApiError::transport("connection refused").exit_code(), 1);
        assert_eq!(
            ApiError {
                code: 404,
                message: "x".into()
            }
            .exit_code(),
            2
        );
        assert_eq!(
            ApiError {
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
