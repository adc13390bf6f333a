//! Multiaddress helpers shared by the services: turning the listen/dial multiaddresses of
//! service.json into socket addresses, host:port pairs, or Unix socket paths.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
};

use libp2p::multiaddr::{Multiaddr, Protocol};

use crate::ConfigError;

fn err(a: &Multiaddr, msg: &str) -> ConfigError {
    ConfigError::Addr {
        addr: a.to_string(),
        msg: msg.to_string(),
    }
}

/// `/ip4/<a>/tcp/<port>` or `/ip6/<a>/tcp/<port>` -> a socket address.
pub fn to_socket_addr(a: &Multiaddr) -> Result<SocketAddr, ConfigError> {
    let mut it = a.iter();
    let ip: IpAddr = match it.next() {
        Some(Protocol::Ip4(ip)) => ip.into(),
        Some(Protocol::Ip6(ip)) => ip.into(),
        _ => {
            return Err(err(
                a,
                "expected /ip4/<address>/tcp/<port> or /ip6/<address>/tcp/<port>",
            ))
        }
    };
    let port = match it.next() {
        Some(Protocol::Tcp(p)) => p,
        _ => return Err(err(a, "expected /tcp/<port> after the IP address")),
    };
    if let Some(extra) = it.next() {
        return Err(err(
            a,
            &format!(
                "unexpected trailing component {extra} (expected /ip4|ip6/<address>/tcp/<port>)"
            ),
        ));
    }
    Ok(SocketAddr::new(ip, port))
}

/// `/ip4|ip6|dns|dns4|dns6/<host>/tcp/<port>` -> ("host", port). IPv6 hosts come back bare
/// (no brackets).
pub fn to_host_port(a: &Multiaddr) -> Result<(String, u16), ConfigError> {
    let mut it = a.iter();
    let host = match it.next() {
        Some(Protocol::Ip4(ip)) => ip.to_string(),
        Some(Protocol::Ip6(ip)) => ip.to_string(),
        Some(Protocol::Dns(h)) | Some(Protocol::Dns4(h)) | Some(Protocol::Dns6(h)) => h.to_string(),
        _ => {
            return Err(err(
                a,
                "expected /ip4, /ip6, /dns, /dns4 or /dns6 followed by /tcp/<port>",
            ))
        }
    };
    let port = match it.next() {
        Some(Protocol::Tcp(p)) => p,
        _ => return Err(err(a, "expected /tcp/<port> after the host")),
    };
    if let Some(extra) = it.next() {
        return Err(err(a, &format!("unexpected trailing component {extra}")));
    }
    Ok((host, port))
}

/// `/unix/<path>` -> the socket path (e.g. an IPFS node_multiaddress of
/// `/unix/var/run/ipfs.sock`); None for any other address.
pub fn unix_path(a: &Multiaddr) -> Option<PathBuf> {
    let mut it = a.iter();
    match (it.next(), it.next()) {
        (Some(Protocol::Unix(p)), None) => {
            let p = p.to_string();
            Some(PathBuf::from(if p.starts_with('/') {
                p
            } else {
                format!("/{p}")
            }))
        }
        _ => None,
    }
}

/// True for `/…/udp/…/quic` or `/quic-v1` addresses (kept in configs for drop-in
/// compatibility; our transport has no QUIC and ignores them).
pub fn is_quic(a: &Multiaddr) -> bool {
    a.iter()
        .any(|p| matches!(p, Protocol::Quic | Protocol::QuicV1))
}

/// The `/p2p/<peer id>` component, if present.
pub fn peer_id(a: &Multiaddr) -> Option<libp2p::PeerId> {
    a.iter().find_map(|p| match p {
        Protocol::P2p(id) => Some(id),
        _ => None,
    })
}

/// What [`check_peer_address`] accepts, for error messages.
pub const PEER_ADDRESS_FORMS: &str = "expected /ip4|ip6|dns|dns4|dns6/<host>/tcp/<port> or /dnsaddr/<name>, optionally ending in /p2p/<peer id> (e.g. /dns4/cluster0/tcp/9096 or /ip4/10.0.0.2/tcp/9096/p2p/12D3KooW…; QUIC and websockets are not supported)";

/// Checks that `a` is an address the transport can dial to reach a cluster peer (what
/// `daemon --bootstrap` and `init --peers` take): `/ip4|ip6|dns|dns4|dns6/<host>/tcp/<port>`
/// or `/dnsaddr/<name>`, optionally ending in `/p2p/<peer id>`. Without the peer id the
/// transport learns it from the connection.
pub fn check_peer_address(a: &Multiaddr) -> Result<(), ConfigError> {
    let mut it = a.iter();
    let head = match it.next() {
        Some(Protocol::Ip4(_) | Protocol::Ip6(_))
        | Some(Protocol::Dns(_) | Protocol::Dns4(_) | Protocol::Dns6(_)) => {
            matches!(it.next(), Some(Protocol::Tcp(_)))
        }
        Some(Protocol::Dnsaddr(_)) => true,
        _ => false,
    };
    let tail_ok = matches!(
        (it.next(), it.next()),
        (None, _) | (Some(Protocol::P2p(_)), None)
    );
    if head && tail_ok {
        Ok(())
    } else {
        Err(err(a, PEER_ADDRESS_FORMS))
    }
}

/// [`parse`] then [`check_peer_address`]: for `--bootstrap` and `--peers` values.
pub fn parse_peer_address(s: &str) -> Result<Multiaddr, ConfigError> {
    let a = parse(s.trim())?;
    check_peer_address(&a)?;
    Ok(a)
}

/// Parses a multiaddress string with an error naming it. `/unix/<path>` takes the whole
/// rest as the path, as Go does (rust-multiaddr would stop at the first `/`).
pub fn parse(s: &str) -> Result<Multiaddr, ConfigError> {
    if let Some(path) = s.strip_prefix("/unix/") {
        if path.is_empty() {
            return Err(ConfigError::Addr {
                addr: s.to_string(),
                msg: "empty unix socket path".into(),
            });
        }
        return Ok(Multiaddr::empty().with(Protocol::Unix(path.to_string().into())));
    }
    s.parse().map_err(|e| ConfigError::Addr {
        addr: s.to_string(),
        msg: format!("{e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn socket_addrs() {
        assert_eq!(
            to_socket_addr(&m("/ip4/127.0.0.1/tcp/9094")).unwrap(),
            "127.0.0.1:9094".parse().unwrap()
        );
        assert_eq!(
            to_socket_addr(&m("/ip6/::1/tcp/80")).unwrap(),
            "[::1]:80".parse().unwrap()
        );
        assert!(to_socket_addr(&m("/dns4/localhost/tcp/80")).is_err());
        assert!(to_socket_addr(&m("/ip4/0.0.0.0/udp/9096/quic"))
            .unwrap_err()
            .to_string()
            .contains("/tcp/<port>"));
        assert!(to_socket_addr(&m("/ip4/1.2.3.4/tcp/1/ws")).is_err());
    }

    #[test]
    fn host_ports_and_unix() {
        assert_eq!(
            to_host_port(&m("/dns4/ipfs0/tcp/5001")).unwrap(),
            ("ipfs0".to_string(), 5001)
        );
        assert_eq!(
            to_host_port(&m("/ip6/::1/tcp/5001")).unwrap(),
            ("::1".to_string(), 5001)
        );
        assert!(to_host_port(&m("/unix/x.sock")).is_err());
        let u = parse("/unix/var/run/ipfs.sock").unwrap();
        assert_eq!(unix_path(&u), Some(PathBuf::from("/var/run/ipfs.sock")));
        assert_eq!(u.to_string(), "/unix/var/run/ipfs.sock");
        assert_eq!(unix_path(&m("/ip4/127.0.0.1/tcp/5001")), None);
        assert!(is_quic(&m("/ip4/0.0.0.0/udp/9096/quic")));
        assert!(!is_quic(&m("/ip4/0.0.0.0/tcp/9096")));
        let e = parse("/ip4/nope").unwrap_err().to_string();
        assert!(e.starts_with("invalid multiaddress \"/ip4/nope\""), "{e}");
    }

    /// `--bootstrap` / `--peers` forms: every DNS protocol, with and without the peer id.
    #[test]
    fn peer_addresses_in_dns_forms() {
        let id = "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo";
        for ok in [
            "/dns4/cluster0/tcp/9096".to_string(),
            format!("/dns4/cluster0/tcp/9096/p2p/{id}"),
            "/dns6/cluster0/tcp/9096".to_string(),
            format!("/dns6/cluster0/tcp/9096/p2p/{id}"),
            "/dns/cluster0.example.org/tcp/9096".to_string(),
            format!("/dns/cluster0.example.org/tcp/9096/p2p/{id}"),
            "/dnsaddr/cluster.example.org".to_string(),
            format!("/dnsaddr/cluster.example.org/p2p/{id}"),
            "/ip4/10.0.0.2/tcp/9096".to_string(),
            format!("/ip6/::1/tcp/9096/p2p/{id}"),
            format!(" /dns4/localhost/tcp/9096/p2p/{id} "),
        ] {
            let a = parse_peer_address(&ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(a.to_string(), ok.trim());
        }
        for bad in [
            "/dns4/cluster0",
            "/dns4/cluster0/udp/9096/quic-v1",
            "/ip4/10.0.0.2/udp/9096/quic",
            "/dns4/cluster0/tcp/9096/ws",
            &format!("/p2p/{id}"),
            &format!("/dns4/cluster0/tcp/9096/p2p/{id}/p2p/{id}"),
            "/unix/tmp/x.sock",
        ] {
            let e = parse_peer_address(bad).unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("/dns4"), "{bad}: {e}");
        }
        let e = parse_peer_address("cluster0:9096").unwrap_err().to_string();
        assert!(e.contains("cluster0:9096"), "{e}");
    }
}
