//! One error model for every service, after quickwit's `ServiceErrorCode`: each service
//! keeps its failures in a domain error enum (thiserror) that says which [`ErrorCode`]
//! each one is ([`ServiceError`]). The code decides the gRPC status at the service's
//! edge ([`ServiceError::to_status`]) and, on the other side, what a caller makes of a
//! status it received ([`ErrorCode::from_grpc`], [`ErrorCode::http_status`]), so no
//! caller has to read an error's text.

use http::StatusCode;

/// What kind of failure an error is, independent of the transport that carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The request is wrong (a bad CID, option or message): INVALID_ARGUMENT, 400.
    BadRequest,
    /// The caller may not do this: PERMISSION_DENIED, 403.
    Forbidden,
    /// The caller did not prove who it is: UNAUTHENTICATED, 401.
    Unauthenticated,
    /// The thing asked for is not there (a pin outside the pinset): NOT_FOUND, 404.
    NotFound,
    /// The state does not allow it now (not synced yet, follower mode, unpin disabled):
    /// FAILED_PRECONDITION, 412.
    FailedPrecondition,
    /// A dependency cannot be reached (the IPFS daemon, a leader): UNAVAILABLE, 503.
    Unavailable,
    /// It did not finish in time: DEADLINE_EXCEEDED, 504.
    Timeout,
    /// It was given up (shutdown, a newer operation): CANCELLED, 503.
    Cancelled,
    /// This peer does not do that: UNIMPLEMENTED, 501.
    Unimplemented,
    /// Anything else, a failure of this peer: INTERNAL, 500.
    Internal,
    /// HTTP only (no service answers a gRPC call with it): a request body over the
    /// configured limit, 413 (RESOURCE_EXHAUSTED if it ever crossed gRPC).
    PayloadTooLarge,
    /// HTTP only: the client did not send its request body in time, 408 (DEADLINE_EXCEEDED
    /// if it ever crossed gRPC).
    RequestTimeout,
    /// HTTP only: the HTTP server behind a proxy (Kubo behind the IPFS proxy) did not
    /// answer, 502 (UNAVAILABLE if it ever crossed gRPC).
    BadGateway,
    /// Too much at once (a full write queue, too many failed logins from one client):
    /// RESOURCE_EXHAUSTED, 429.
    TooManyRequests,
}

impl ErrorCode {
    /// The gRPC code a service answers with.
    pub fn grpc_code(self) -> tonic::Code {
        match self {
            ErrorCode::BadRequest => tonic::Code::InvalidArgument,
            ErrorCode::Forbidden => tonic::Code::PermissionDenied,
            ErrorCode::Unauthenticated => tonic::Code::Unauthenticated,
            ErrorCode::NotFound => tonic::Code::NotFound,
            ErrorCode::FailedPrecondition => tonic::Code::FailedPrecondition,
            ErrorCode::Unavailable => tonic::Code::Unavailable,
            ErrorCode::Timeout => tonic::Code::DeadlineExceeded,
            ErrorCode::Cancelled => tonic::Code::Cancelled,
            ErrorCode::Unimplemented => tonic::Code::Unimplemented,
            ErrorCode::Internal => tonic::Code::Internal,
            ErrorCode::PayloadTooLarge | ErrorCode::TooManyRequests => {
                tonic::Code::ResourceExhausted
            }
            ErrorCode::RequestTimeout => tonic::Code::DeadlineExceeded,
            ErrorCode::BadGateway => tonic::Code::Unavailable,
        }
    }

    /// The code of a gRPC status a service received: the inverse of [`Self::grpc_code`]
    /// for the codes a service answers with; the other gRPC codes are `Internal`.
    pub fn from_grpc(code: tonic::Code) -> Self {
        match code {
            tonic::Code::InvalidArgument => ErrorCode::BadRequest,
            tonic::Code::PermissionDenied => ErrorCode::Forbidden,
            tonic::Code::Unauthenticated => ErrorCode::Unauthenticated,
            tonic::Code::NotFound => ErrorCode::NotFound,
            tonic::Code::FailedPrecondition => ErrorCode::FailedPrecondition,
            tonic::Code::Unavailable => ErrorCode::Unavailable,
            tonic::Code::DeadlineExceeded => ErrorCode::Timeout,
            tonic::Code::Cancelled => ErrorCode::Cancelled,
            tonic::Code::Unimplemented => ErrorCode::Unimplemented,
            tonic::Code::ResourceExhausted => ErrorCode::TooManyRequests,
            _ => ErrorCode::Internal,
        }
    }

    /// The HTTP status that says the same. Upstream's REST API answers 500 for most
    /// failures of the peer behind it; its callers decide which codes keep their own
    /// status (the gateway: `NotFound` and `Unimplemented`).
    pub fn http_status(self) -> StatusCode {
        match self {
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
            ErrorCode::Unavailable | ErrorCode::Cancelled => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::Unimplemented => StatusCode::NOT_IMPLEMENTED,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::BadGateway => StatusCode::BAD_GATEWAY,
        }
    }
}

/// A service's domain error: its text is what callers see, its code what they act on.
pub trait ServiceError: std::error::Error {
    fn error_code(&self) -> ErrorCode;

    /// The gRPC status a service answers with (at its gRPC edge only).
    fn to_status(&self) -> tonic::Status {
        tonic::Status::new(self.error_code().grpc_code(), self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The codes a service answers a gRPC call with.
    const GRPC: [ErrorCode; 11] = [
        ErrorCode::BadRequest,
        ErrorCode::Forbidden,
        ErrorCode::Unauthenticated,
        ErrorCode::NotFound,
        ErrorCode::FailedPrecondition,
        ErrorCode::Unavailable,
        ErrorCode::Timeout,
        ErrorCode::Cancelled,
        ErrorCode::Unimplemented,
        ErrorCode::Internal,
        ErrorCode::TooManyRequests,
    ];

    #[test]
    fn every_code_survives_the_grpc_round_trip() {
        for c in GRPC {
            assert_eq!(ErrorCode::from_grpc(c.grpc_code()), c, "{c:?}");
        }
    }

    #[test]
    fn http_statuses_are_errors_and_not_found_is_404() {
        let http_only = [
            ErrorCode::PayloadTooLarge,
            ErrorCode::RequestTimeout,
            ErrorCode::BadGateway,
        ];
        for c in GRPC.into_iter().chain(http_only) {
            let s = c.http_status();
            assert!(s.is_client_error() || s.is_server_error(), "{c:?}: {s}");
        }
        assert_eq!(ErrorCode::NotFound.http_status(), StatusCode::NOT_FOUND);
        assert_eq!(
            ErrorCode::Internal.http_status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            ErrorCode::from_grpc(tonic::Code::Unknown),
            ErrorCode::Internal
        );
    }

    #[derive(Debug, thiserror::Error)]
    #[error("pin is not part of the pinset")]
    struct Missing;
    impl ServiceError for Missing {
        fn error_code(&self) -> ErrorCode {
            ErrorCode::NotFound
        }
    }

    #[test]
    fn a_domain_error_becomes_its_status() {
        let s = Missing.to_status();
        assert_eq!(s.code(), tonic::Code::NotFound);
        assert_eq!(s.message(), "pin is not part of the pinset");
    }
}
