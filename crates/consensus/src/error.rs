//! The consensus service's domain error. The node (raft and crdt mode), the raft network
//! and the membership logic return it; only the gRPC service (`service`,
//! `crdt_mode::service`) turns it into a `tonic::Status`, with the code its kind names
//! ([`ServiceError`]). The texts are what the gateway passes through to REST clients:
//! they are kept word for word.

use ipfs_cluster_runtime::{ErrorCode, ServiceError};

use crate::{allocate::AllocError, pinning::PinError};

/// Why a consensus operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsensusError {
    /// Upstream's `state.ErrNotFound` (the gateway answers it with a 404).
    #[error("pin is not part of the pinset")]
    NotInPinset,
    /// The service is stopping; the caller may retry on its restart.
    #[error("the consensus service is shutting down; retry")]
    ShuttingDown,
    /// A pin refused by upstream's rules.
    #[error(transparent)]
    Pin(#[from] PinError),
    /// No allocation is possible for a pin.
    #[error(transparent)]
    Alloc(#[from] AllocError),
    /// The request cannot be served as sent (a bad pin object, an undecodable raft
    /// message or forward): INVALID_ARGUMENT.
    #[error("{0}")]
    BadRequest(String),
    /// The caller may not do this (a raft call from a non-member, a foreign leader, an
    /// untrusted peer): PERMISSION_DENIED.
    #[error("{0}")]
    Forbidden(String),
    /// Not in this state (follower mode, unpin disabled, a membership change that does
    /// not apply): FAILED_PRECONDITION.
    #[error("{0}")]
    FailedPrecondition(String),
    /// No leader, no quorum, a lost leadership or a stopped raft core: retry later
    /// (UNAVAILABLE).
    #[error("{0}")]
    Unavailable(String),
    /// A queue is full (the crdt store's write queue): RESOURCE_EXHAUSTED.
    #[error("{0}")]
    Busy(String),
    /// A call this peer does not route: UNIMPLEMENTED.
    #[error("{0}")]
    Unimplemented(String),
    /// A failure of this peer (its store, an encoding): INTERNAL.
    #[error("{0}")]
    Internal(String),
    /// What another peer (the leader a write was forwarded to) or the local transport
    /// answered, with the gRPC code it came with.
    #[error("{message}")]
    Remote { code: tonic::Code, message: String },
}

impl ConsensusError {
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::BadRequest(message.into())
    }
    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::Forbidden(message.into())
    }
    pub fn failed_precondition(message: impl Into<String>) -> Self {
        Self::FailedPrecondition(message.into())
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable(message.into())
    }
    pub fn resource_exhausted(message: impl Into<String>) -> Self {
        Self::Busy(message.into())
    }
    pub fn unimplemented(message: impl Into<String>) -> Self {
        Self::Unimplemented(message.into())
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal(message.into())
    }

    /// An error another peer answered, with its gRPC code, and this peer's text for it.
    pub fn new(code: tonic::Code, message: impl Into<String>) -> Self {
        Self::Remote {
            code,
            message: message.into(),
        }
    }

    /// An error another peer answered as a gRPC code and its message (a forwarded write's
    /// result).
    pub fn remote(code: i32, message: impl Into<String>) -> Self {
        Self::Remote {
            code: tonic::Code::from_i32(code),
            message: message.into(),
        }
    }

    /// The text callers read (its `Display`).
    pub fn message(&self) -> String {
        self.to_string()
    }

    /// The gRPC code this error is answered with (and travels with between peers).
    pub fn code(&self) -> tonic::Code {
        match self {
            Self::Remote { code, .. } => *code,
            e => e.error_code().grpc_code(),
        }
    }
}

impl ServiceError for ConsensusError {
    fn error_code(&self) -> ErrorCode {
        match self {
            Self::NotInPinset => ErrorCode::NotFound,
            Self::ShuttingDown | Self::Unavailable(_) => ErrorCode::Unavailable,
            Self::Pin(e) => e.error_code(),
            Self::Alloc(e) => e.error_code(),
            Self::BadRequest(_) => ErrorCode::BadRequest,
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::FailedPrecondition(_) => ErrorCode::FailedPrecondition,
            Self::Busy(_) => ErrorCode::TooManyRequests,
            Self::Unimplemented(_) => ErrorCode::Unimplemented,
            Self::Internal(_) => ErrorCode::Internal,
            Self::Remote { code, .. } => ErrorCode::from_grpc(*code),
        }
    }

    /// A remote error keeps the exact code it came with.
    fn to_status(&self) -> tonic::Status {
        tonic::Status::new(self.code(), self.to_string())
    }
}

/// The gRPC edge: a handler's `?` answers the error's status.
impl From<ConsensusError> for tonic::Status {
    fn from(e: ConsensusError) -> Self {
        e.to_status()
    }
}

/// A status received from a gRPC call (the local transport, another peer's service).
impl From<tonic::Status> for ConsensusError {
    fn from(s: tonic::Status) -> Self {
        Self::Remote {
            code: s.code(),
            message: s.message().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_keep_their_codes_and_texts() {
        let s = tonic::Status::from(ConsensusError::NotInPinset);
        assert_eq!(
            (s.code(), s.message()),
            (tonic::Code::NotFound, "pin is not part of the pinset")
        );
        let s = tonic::Status::from(ConsensusError::resource_exhausted("queue full"));
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        let s = tonic::Status::from(ConsensusError::ShuttingDown);
        assert_eq!(s.code(), tonic::Code::Unavailable);
        // A code no variant names survives the trip through another peer.
        let e = ConsensusError::from(tonic::Status::new(tonic::Code::Aborted, "x"));
        assert_eq!(tonic::Status::from(e.clone()).code(), tonic::Code::Aborted);
        assert_eq!(ConsensusError::remote(e.code() as i32, "x"), e);
    }
}
