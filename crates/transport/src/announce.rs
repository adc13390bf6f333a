//! Which of our addresses we tell other peers (identify, our ID's `addresses`, the
//! addresses a joiner sends to the cluster): upstream's `AddrsFactory` from
//! `cluster.announce_multiaddress` / `cluster.no_announce_multiaddress`.
//!
//! * `announce_multiaddress` non-empty: exactly those (e.g. `/dns4/cluster0/tcp/9096` for a
//!   peer behind NAT or in a container); else every address we listen on.
//! * then drop every address equal to an entry of `no_announce_multiaddress`, or whose IP
//!   lies inside an `/ip4/<net>/ipcidr/<bits>` (or `/ip6/…`) entry.

use std::net::IpAddr;

use libp2p::{multiaddr::Protocol, Multiaddr};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Announce {
    announce: Vec<Multiaddr>,
    deny_exact: Vec<Multiaddr>,
    /// (network, prefix length) from `/ipX/<net>/ipcidr/<bits>` entries.
    deny_nets: Vec<(IpAddr, u8)>,
}

/// `/ip4/<net>/ipcidr/<bits>` or `/ip6/<net>/ipcidr/<bits>` -> (net, bits); None for any
/// other address (or a prefix longer than the address).
fn mask(a: &Multiaddr) -> Option<(IpAddr, u8)> {
    let mut it = a.iter();
    let (ip, max) = match it.next()? {
        Protocol::Ip4(ip) => (IpAddr::V4(ip), 32),
        Protocol::Ip6(ip) => (IpAddr::V6(ip), 128),
        _ => return None,
    };
    match (it.next(), it.next()) {
        (Some(Protocol::Ipcidr(bits)), None) if bits <= max => Some((ip, bits)),
        _ => None,
    }
}

fn in_net(ip: IpAddr, (net, bits): (IpAddr, u8)) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let m = u32::MAX.checked_shl(32 - bits as u32).unwrap_or(0);
            u32::from(ip) & m == u32::from(net) & m
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let m = u128::MAX.checked_shl(128 - bits as u32).unwrap_or(0);
            u128::from(ip) & m == u128::from(net) & m
        }
        _ => false,
    }
}

impl Announce {
    pub fn new(announce: Vec<Multiaddr>, no_announce: Vec<Multiaddr>) -> Self {
        let mut out = Announce {
            announce,
            ..Default::default()
        };
        for a in no_announce {
            match mask(&a) {
                Some(m) => out.deny_nets.push(m),
                None => out.deny_exact.push(a),
            }
        }
        out
    }

    /// True when `announce_multiaddress` replaces the listen addresses.
    pub fn is_fixed(&self) -> bool {
        !self.announce.is_empty()
    }

    fn denied(&self, a: &Multiaddr) -> bool {
        if self.deny_exact.contains(a) {
            return true;
        }
        let ip = match a.iter().next() {
            Some(Protocol::Ip4(ip)) => IpAddr::V4(ip),
            Some(Protocol::Ip6(ip)) => IpAddr::V6(ip),
            _ => return false,
        };
        self.deny_nets.iter().any(|n| in_net(ip, *n))
    }

    /// The addresses to tell others, given the ones we listen on.
    pub fn addresses(&self, listen: &[Multiaddr]) -> Vec<Multiaddr> {
        let from = if self.announce.is_empty() {
            listen
        } else {
            &self.announce
        };
        let mut out: Vec<Multiaddr> = Vec::new();
        for a in from {
            if !self.denied(a) && !out.contains(a) {
                out.push(a.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    fn ms(v: &[&str]) -> Vec<Multiaddr> {
        v.iter().map(|s| m(s)).collect()
    }

    #[test]
    fn no_configuration_announces_what_we_listen_on() {
        let listen = ms(&["/ip4/127.0.0.1/tcp/9096", "/ip4/10.0.0.5/tcp/9096"]);
        assert_eq!(Announce::default().addresses(&listen), listen);
        assert!(!Announce::default().is_fixed());
    }

    #[test]
    fn announce_replaces_the_listen_addresses() {
        let a = Announce::new(
            ms(&[
                "/dns4/cluster0/tcp/9096",
                "/dns6/cluster0/tcp/9096",
                "/dns/c0/tcp/1",
            ]),
            vec![],
        );
        assert!(a.is_fixed());
        assert_eq!(
            a.addresses(&ms(&["/ip4/127.0.0.1/tcp/9096"])),
            ms(&[
                "/dns4/cluster0/tcp/9096",
                "/dns6/cluster0/tcp/9096",
                "/dns/c0/tcp/1"
            ])
        );
        let a = Announce::new(ms(&["/dnsaddr/cluster.example.org"]), vec![]);
        assert_eq!(a.addresses(&[]), ms(&["/dnsaddr/cluster.example.org"]));
    }

    #[test]
    fn no_announce_drops_exact_matches_and_masked_networks() {
        let listen = ms(&[
            "/ip4/127.0.0.1/tcp/9096",
            "/ip4/10.1.2.3/tcp/9096",
            "/ip4/192.168.1.7/tcp/9096",
            "/ip6/::1/tcp/9096",
            "/ip6/fd00::7/tcp/9096",
        ]);
        let a = Announce::new(
            vec![],
            ms(&[
                "/ip4/127.0.0.1/tcp/9096",
                "/ip4/10.0.0.0/ipcidr/8",
                "/ip6/fd00::/ipcidr/8",
            ]),
        );
        assert_eq!(
            a.addresses(&listen),
            ms(&["/ip4/192.168.1.7/tcp/9096", "/ip6/::1/tcp/9096"])
        );
        // Applied to announce_multiaddress too; DNS names are never masked.
        let a = Announce::new(
            ms(&["/dns4/cluster0/tcp/9096", "/ip4/10.9.9.9/tcp/9096"]),
            ms(&["/ip4/10.0.0.0/ipcidr/8", "/dns4/other/tcp/9096"]),
        );
        assert_eq!(a.addresses(&listen), ms(&["/dns4/cluster0/tcp/9096"]));
        // /ipcidr/0 masks every address of that family; /32 exactly one.
        let a = Announce::new(vec![], ms(&["/ip4/0.0.0.0/ipcidr/0"]));
        assert_eq!(
            a.addresses(&listen),
            ms(&["/ip6/::1/tcp/9096", "/ip6/fd00::7/tcp/9096"])
        );
        let a = Announce::new(vec![], ms(&["/ip4/10.1.2.3/ipcidr/32"]));
        assert_eq!(a.addresses(&listen).len(), 4);
    }
}
