//! The one error of the HTTP APIs (the gateway's REST API and Pinning Services API, and
//! the IPFS proxy): an [`ErrorCode`], which decides the HTTP status, and the message, with
//! the body each API sends it in, byte for byte as upstream does: REST's
//! `{"code":<status>,"message":...}`, the Pinning Services API's
//! `{"error":{"reason":...}}` and Kubo's `{"Message":...,"Code":0,"Type":"error"}` for the
//! proxy. Each server only wraps the body in its own response type.

use http::StatusCode;
use serde::Serialize;

use crate::error_code::{ErrorCode, ServiceError};

/// Upstream's `state.ErrNotFound` text: the one message its REST API answers with a 404
/// on its own ([`ApiError::internal`]).
pub const NOT_IN_PINSET: &str = "pin is not part of the pinset";

/// An HTTP API error: what kind it is and the text the client reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// Upstream's automatic code: 404 for exactly [`NOT_IN_PINSET`], else 500.
    pub fn internal(message: impl Into<String>) -> Self {
        let message = message.into();
        let code = if message == NOT_IN_PINSET {
            ErrorCode::NotFound
        } else {
            ErrorCode::Internal
        };
        Self { code, message }
    }

    /// A domain error as the API reports it: its code and its text.
    pub fn from_service(e: &(impl ServiceError + ?Sized)) -> Self {
        Self::new(e.error_code(), e.to_string())
    }

    pub fn status(&self) -> StatusCode {
        self.code.http_status()
    }

    /// The REST API's body (upstream's `api.Error` through `json.Encoder`): compact JSON
    /// and a newline.
    pub fn rest_body(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Body<'a> {
            code: u16,
            message: &'a str,
        }
        json_line(&Body {
            code: self.status().as_u16(),
            message: &self.message,
        })
    }

    /// The Pinning Services API's body: `{"error":{"reason":<message>}}` and a newline.
    pub fn pinsvc_body(&self) -> Vec<u8> {
        json_line(&ipfs_cluster_api::PsaError::new(self.message.clone()))
    }

    /// The IPFS proxy's body, Kubo's error shape (upstream's `ipfsErrorResponder`:
    /// `json.Marshal`, no newline).
    pub fn kubo_body(&self) -> Vec<u8> {
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Body<'a> {
            message: &'a str,
            code: u8,
            #[serde(rename = "Type")]
            kind: &'a str,
        }
        serde_json::to_vec(&Body {
            message: &self.message,
            code: 0,
            kind: "error",
        })
        .unwrap_or_default()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

fn json_line<T: Serialize>(v: &T) -> Vec<u8> {
    // Serializing these plain structs of strings and numbers cannot fail.
    let mut out = serde_json::to_vec(v).unwrap_or_default();
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_upstreams() {
        let e = ApiError::internal(NOT_IN_PINSET);
        assert_eq!(e.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            e.rest_body(),
            b"{\"code\":404,\"message\":\"pin is not part of the pinset\"}\n"
        );
        let e = ApiError::new(ErrorCode::NotFound, "pin not found");
        assert_eq!(
            e.pinsvc_body(),
            b"{\"error\":{\"reason\":\"pin not found\"}}\n"
        );
        let e = ApiError::new(ErrorCode::Forbidden, "a \"quoted\" path");
        assert_eq!(
            e.kubo_body(),
            b"{\"Message\":\"a \\\"quoted\\\" path\",\"Code\":0,\"Type\":\"error\"}"
        );
        assert_eq!(e.status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn only_the_exact_text_is_an_automatic_404() {
        assert_eq!(
            ApiError::internal("x").status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            ApiError::internal(format!("{NOT_IN_PINSET}!")).code,
            ErrorCode::Internal
        );
        assert_eq!(ApiError::bad_request("x").status(), StatusCode::BAD_REQUEST);
    }
}
