//! Query strings as upstream reads them (Go's `url.Values`: first value wins) and the
//! path parameters every route validates (CIDs, peer IDs, pin options), with upstream's
//! 400 messages.

use ipfs_cluster_api as api;

use crate::http::reply::ApiError;

/// Decoded query parameters plus the raw string (pin options are parsed from it).
#[derive(Debug, Default, Clone)]
pub struct Query {
    raw: String,
    params: api::QueryParams,
}

impl Query {
    pub fn parse(q: Option<&str>) -> Self {
        let raw = q.unwrap_or("").to_string();
        Self {
            params: api::QueryParams::parse(&raw),
            raw,
        }
    }

    /// The first value of `key`, or "".
    pub fn get(&self, key: &str) -> &str {
        self.params.get(key)
    }

    /// The raw query string.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// Only the exact string `true` turns a flag on (upstream's `local=true`).
    pub fn is_true(&self, key: &str) -> bool {
        self.get(key) == "true"
    }

    /// Pin options with upstream's 400 messages.
    pub fn pin_options(&self) -> Result<api::PinOptions, ApiError> {
        api::PinOptions::from_query(&self.raw).map_err(|e| ApiError::bad_request(e.0))
    }
}

/// `{hash}` path parameter: 400 `error decoding Cid: ...` when it is not a CID.
pub fn cid_param(s: &str) -> Result<api::Cid, ApiError> {
    cid::Cid::try_from(s).map(api::Cid::from).map_err(|e| {
        ApiError::bad_request(format!(
            "error decoding Cid: {}",
            api::go_cid_error(s, &e.to_string())
        ))
    })
}

/// `{peer}` path parameter: 400 `error decoding Peer ID: ...`.
pub fn peer_param(s: &str) -> Result<String, ApiError> {
    api::parse_peer_id(s).map_err(|e| {
        ApiError::bad_request(format!(
            "error decoding Peer ID: {}",
            api::go_peer_id_error(s, &e.to_string())
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_and_errors() {
        let q = Query::parse(Some("local=true&local=false&x=1"));
        assert!(q.is_true("local"));
        assert!(!Query::parse(Some("local=True")).is_true("local"));
        assert_eq!(q.get("missing"), "");
        let e = Query::parse(Some("replication-min=x"))
            .pin_options()
            .unwrap_err();
        assert_eq!(
            (e.status().as_u16(), e.message.as_str()),
            (400, "parameter replication-min invalid")
        );
        assert!(cid_param("nope")
            .unwrap_err()
            .message
            .starts_with("error decoding Cid: "));
        assert!(peer_param("nope")
            .unwrap_err()
            .message
            .starts_with("error decoding Peer ID: "));
        assert_eq!(
            cid_param("bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi")
                .unwrap()
                .to_string(),
            "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
        );
    }
}
