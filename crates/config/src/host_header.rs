//! The `Host` check shared by every HTTP endpoint that listens on loopback (REST API,
//! Pinning Services API, IPFS proxy): a page on a domain that resolves to 127.0.0.1 (DNS
//! rebinding) necessarily sends its own domain name in `Host`, while local clients use
//! `localhost` or an address. Endpoints bound beyond loopback take any name.

/// The host name of a `Host` value (`name`, `name:port`, `[v6]:port`, bare v6), lower-case,
/// without a trailing dot.
pub fn host_name(host: &str) -> String {
    let h = host.trim();
    let name = if let Some(rest) = h.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        match h.rsplit_once(':') {
            // One colon: name:port. More: an unbracketed IPv6 literal.
            Some((n, _)) if !n.contains(':') => n,
            _ => h,
        }
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// A `Host` a loopback-only endpoint does not answer to (DNS rebinding).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Host {host:?} refused: this endpoint listens on loopback only and answers only to localhost or an IP address (protection against DNS rebinding); use e.g. http://127.0.0.1:<port>")]
pub struct RefusedHost {
    pub host: String,
}

/// `Ok` when an endpoint whose listen addresses are all loopback (`loopback_only`) may
/// answer a request with this `Host` (None: no Host, e.g. HTTP/1.0); the error says why not.
pub fn check_loopback_host(host: Option<&str>, loopback_only: bool) -> Result<(), RefusedHost> {
    let (Some(host), true) = (host, loopback_only) else {
        return Ok(());
    };
    let name = host_name(host);
    if name == "localhost" || name.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    Err(RefusedHost {
        host: host.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_endpoints_answer_only_to_loopback_names() {
        for ok in [
            "127.0.0.1:9094",
            "localhost:9094",
            "LOCALHOST",
            "[::1]:9094",
            "::1",
            "10.0.0.5",
            "localhost.",
        ] {
            assert!(check_loopback_host(Some(ok), true).is_ok(), "{ok}");
        }
        for bad in ["evil.example:9094", "evil.example", "127.0.0.1.nip.io:9094"] {
            let e = check_loopback_host(Some(bad), true)
                .unwrap_err()
                .to_string();
            assert!(e.contains("DNS rebinding"), "{e}");
        }
        assert!(check_loopback_host(Some("cluster.example"), false).is_ok());
        assert!(check_loopback_host(None, true).is_ok());
    }
}
