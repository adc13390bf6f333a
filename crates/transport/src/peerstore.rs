//! The `peerstore` file (upstream pstoremgr format): one multiaddr per line, normally
//! ending in `/p2p/<id>`; blank lines and lines not starting with `/` are ignored. Written
//! atomically (temp file + rename), peers sorted, each peer's addresses sorted as strings.
//!
//! DNS addresses (`/dns`, `/dns4`, `/dns6`, `/dnsaddr`) are kept as written: the host
//! resolves them each time it dials, so a peer whose IP changes (a container restarted
//! under the same name) is still found. As upstream, when a peer has any DNS address only
//! those are written back.
//!
//! A line without `/p2p/<id>` (e.g. `/dns4/cluster0/tcp/9096`, as an operator writes it)
//! is kept as an *unnamed* address: dialled at start, and replaced by the same address
//! with the peer id once a dial through it tells us who answers. Upstream drops such
//! lines (it cannot import a peer without an id); we can dial them because our host
//! accepts an unknown peer id and learns it from the connection.

use std::{
    collections::{BTreeMap, BTreeSet},
    io,
    path::Path,
};

use libp2p::{multiaddr::Protocol, Multiaddr, PeerId};

/// Known addresses per peer (without the trailing /p2p part).
pub type Book = BTreeMap<PeerId, BTreeSet<Multiaddr>>;

/// The file's content: addresses by peer, and addresses whose peer is not known yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peerstore {
    pub book: Book,
    /// Lines without `/p2p/<id>`.
    pub unnamed: BTreeSet<Multiaddr>,
}

/// Splits `/…/p2p/<id>` into the peer and the address before it.
pub fn split_p2p(addr: &Multiaddr) -> Option<(PeerId, Multiaddr)> {
    let mut a = addr.clone();
    match a.pop() {
        Some(Protocol::P2p(id)) => Some((id, a)),
        _ => None,
    }
}

/// True for addresses naming a host by DNS (`/dns`, `/dns4`, `/dns6`, `/dnsaddr`).
pub fn is_dns(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| {
        matches!(
            p,
            Protocol::Dns(_) | Protocol::Dns4(_) | Protocol::Dns6(_) | Protocol::Dnsaddr(_)
        )
    })
}

/// Parses the file's text; lines that are not multiaddrs (or carry `/p2p` anywhere but at
/// the end) are logged and skipped.
pub fn parse(text: &str) -> Peerstore {
    let mut store = Peerstore::default();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if !line.starts_with('/') {
            continue;
        }
        let addr = match line.parse::<Multiaddr>() {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(
                    line = n + 1,
                    text = line,
                    error = %e,
                    "peerstore: skipping a line that is not a multiaddr (e.g. /ip4/10.0.0.2/tcp/9096/p2p/<peer id> or /dns4/cluster0/tcp/9096)"
                );
                continue;
            }
        };
        match split_p2p(&addr) {
            Some((peer, rest)) if !rest.is_empty() => {
                store.book.entry(peer).or_default().insert(rest);
            }
            _ if addr.iter().any(|p| matches!(p, Protocol::P2p(_))) => tracing::warn!(
                line = n + 1,
                text = line,
                "peerstore: skipping a line with no address before /p2p/<peer id>, or /p2p/<peer id> not at the end"
            ),
            _ => {
                store.unnamed.insert(addr);
            }
        }
    }
    store
}

/// The file's text: for each peer (but `exclude`) its DNS addresses if it has any, else all
/// of them, each with `/p2p/<id>`; then the unnamed addresses.
pub fn render(store: &Peerstore, exclude: &PeerId) -> String {
    let mut out = String::new();
    for (peer, addrs) in &store.book {
        if peer == exclude {
            continue;
        }
        let dns = addrs.iter().any(is_dns);
        let mut lines: Vec<String> = addrs
            .iter()
            .filter(|a| !dns || is_dns(a))
            .map(|a| format!("{a}/p2p/{peer}"))
            .collect();
        lines.sort();
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
    }
    let mut unnamed: Vec<String> = store.unnamed.iter().map(|a| a.to_string()).collect();
    unnamed.sort();
    for l in unnamed {
        out.push_str(&l);
        out.push('\n');
    }
    out
}

/// Loads the file; a missing file is an empty peerstore.
pub fn load(path: &Path) -> io::Result<Peerstore> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(parse(&t)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Peerstore::default()),
        Err(e) => Err(e),
    }
}

/// Writes the file atomically (blocking: call through spawn_blocking on the runtime).
pub fn save(path: &Path, store: &Peerstore, exclude: &PeerId) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, render(store, exclude))?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn roundtrip_skips_junk_and_self() {
        let a = PeerId::random();
        let me = PeerId::random();
        let text = format!(
            "/ip4/10.0.0.2/tcp/9096/p2p/{a}\n\n# comment\n/ip4/10.0.0.1/tcp/9096/p2p/{a}\n/garbage\n/p2p/{a}\n/ip4/127.0.0.1/tcp/1/p2p/{me}\n"
        );
        let store = parse(&text);
        assert_eq!(store.book[&a].len(), 2);
        assert!(store.unnamed.is_empty(), "{:?}", store.unnamed);
        let out = render(&store, &me);
        assert_eq!(
            out,
            format!("/ip4/10.0.0.1/tcp/9096/p2p/{a}\n/ip4/10.0.0.2/tcp/9096/p2p/{a}\n")
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("peerstore");
        assert!(load(&p).unwrap().book.is_empty());
        save(&p, &store, &me).unwrap();
        let back = load(&p).unwrap();
        assert_eq!(back.book[&a], store.book[&a]);
        assert!(
            !back.book.contains_key(&me),
            "our own addresses were written"
        );
    }

    /// Every DNS form, with and without the peer id, is read, kept and written back.
    #[test]
    fn dns_forms_with_and_without_peer_id() {
        let a = PeerId::random();
        let b = PeerId::random();
        let me = PeerId::random();
        let text = format!(
            "/dns4/cluster0/tcp/9096/p2p/{a}\n\
             /dns6/cluster0/tcp/9096/p2p/{a}\n\
             /ip4/172.18.0.2/tcp/9096/p2p/{a}\n\
             /dns/cluster1.example.org/tcp/9096/p2p/{b}\n\
             /dnsaddr/cluster.example.org/p2p/{b}\n\
             /dns4/cluster2/tcp/9096\n\
             /dnsaddr/bootstrap.example.org\n\
             /ip4/10.0.0.9/tcp/9096\n"
        );
        let store = parse(&text);
        assert_eq!(
            store.book[&a],
            BTreeSet::from([
                m("/dns4/cluster0/tcp/9096"),
                m("/dns6/cluster0/tcp/9096"),
                m("/ip4/172.18.0.2/tcp/9096")
            ])
        );
        assert_eq!(
            store.book[&b],
            BTreeSet::from([
                m("/dns/cluster1.example.org/tcp/9096"),
                m("/dnsaddr/cluster.example.org")
            ])
        );
        assert_eq!(
            store.unnamed,
            BTreeSet::from([
                m("/dns4/cluster2/tcp/9096"),
                m("/dnsaddr/bootstrap.example.org"),
                m("/ip4/10.0.0.9/tcp/9096")
            ])
        );
        // a's IP address is dropped on write: it has DNS addresses (as upstream).
        let out = render(&store, &me);
        assert!(!out.contains("172.18.0.2"), "{out}");
        assert!(
            out.contains(&format!("/dns4/cluster0/tcp/9096/p2p/{a}\n")),
            "{out}"
        );
        assert!(
            out.contains(&format!("/dnsaddr/cluster.example.org/p2p/{b}\n")),
            "{out}"
        );
        assert!(out.contains("/dns4/cluster2/tcp/9096\n"), "{out}");
        assert!(out.contains("/dnsaddr/bootstrap.example.org\n"), "{out}");
        let again = parse(&out);
        assert_eq!(again.unnamed, store.unnamed);
        assert_eq!(again.book[&b], store.book[&b]);
        assert_eq!(again.book[&a].len(), 2);
    }

    #[test]
    fn dns_detection() {
        assert!(is_dns(&m("/dns4/cluster0/tcp/9096")));
        assert!(is_dns(&m("/dns6/cluster0/tcp/9096")));
        assert!(is_dns(&m("/dns/cluster0/tcp/9096")));
        assert!(is_dns(&m("/dnsaddr/cluster0")));
        assert!(!is_dns(&m("/ip4/10.0.0.1/tcp/9096")));
    }
}
