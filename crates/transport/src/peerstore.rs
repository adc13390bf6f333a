//! The `peerstore` file (upstream pstoremgr format): one multiaddr ending in `/p2p/<id>`
//! per line; blank lines and lines not starting with `/` are ignored. Written atomically
//! (temp file + rename), peers sorted, each peer's addresses sorted as strings.

use std::{
    collections::{BTreeMap, BTreeSet},
    io,
    path::Path,
};

use libp2p::{multiaddr::Protocol, Multiaddr, PeerId};

/// Known addresses per peer (without the trailing /p2p part).
pub type Book = BTreeMap<PeerId, BTreeSet<Multiaddr>>;

/// Splits `/…/p2p/<id>` into the peer and the address before it.
pub fn split_p2p(addr: &Multiaddr) -> Option<(PeerId, Multiaddr)> {
    let mut a = addr.clone();
    match a.pop() {
        Some(Protocol::P2p(id)) => Some((id, a)),
        _ => None,
    }
}

/// Parses the file's text; bad lines are logged and skipped.
pub fn parse(text: &str) -> Book {
    let mut book = Book::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if !line.starts_with('/') {
            continue;
        }
        match line.parse::<Multiaddr>().ok().and_then(|a| split_p2p(&a)) {
            Some((peer, addr)) => {
                book.entry(peer).or_default().insert(addr);
            }
            None => tracing::warn!(
                line = n + 1,
                text = line,
                "peerstore: skipping a line that is not a multiaddr ending in /p2p/<peer id>"
            ),
        }
    }
    book
}

pub fn render(book: &Book, exclude: &PeerId) -> String {
    let mut out = String::new();
    for (peer, addrs) in book {
        if peer == exclude {
            continue;
        }
        let mut lines: Vec<String> = addrs.iter().map(|a| format!("{a}/p2p/{peer}")).collect();
        lines.sort();
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
    }
    out
}

/// Loads the file; a missing file is an empty book.
pub fn load(path: &Path) -> io::Result<Book> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(parse(&t)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Book::new()),
        Err(e) => Err(e),
    }
}

/// Writes the file atomically (blocking: call through spawn_blocking on the runtime).
pub fn save(path: &Path, book: &Book, exclude: &PeerId) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, render(book, exclude))?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_skips_junk_and_self() {
        let a = PeerId::random();
        let me = PeerId::random();
        let text = format!(
            "/ip4/10.0.0.2/tcp/9096/p2p/{a}\n\n# comment\n/ip4/10.0.0.1/tcp/9096/p2p/{a}\n/ip4/1.2.3.4/tcp/1\n/garbage\n/ip4/127.0.0.1/tcp/1/p2p/{me}\n"
        );
        let book = parse(&text);
        assert_eq!(book[&a].len(), 2);
        let out = render(&book, &me);
        assert_eq!(
            out,
            format!("/ip4/10.0.0.1/tcp/9096/p2p/{a}\n/ip4/10.0.0.2/tcp/9096/p2p/{a}\n")
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("peerstore");
        assert!(load(&p).unwrap().is_empty());
        save(&p, &book, &me).unwrap();
        assert_eq!(load(&p).unwrap()[&a], book[&a]);
    }
}
