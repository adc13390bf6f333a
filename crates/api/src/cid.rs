//! CIDs and peer IDs as upstream puts them on the wire. `Cid` wraps the `cid` crate so a
//! bad CID is an error at the edge and prints in canonical form (v0 base58btc `Qm…`, v1
//! base32 `b…`). Peer IDs stay plain strings in the API types; `parse_peer_id` validates
//! and canonicalises them (base58btc, also accepting the CID form `bafz…`/`k51…`).
use std::fmt;
use std::str::FromStr;

use multiaddr::{Multiaddr, PeerId, Protocol};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// Multicodec of a libp2p public key, the codec a peer ID in CID form carries.
const LIBP2P_KEY_CODEC: u64 = 0x72;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cid(cid::Cid);

impl Cid {
    pub fn parse(s: &str) -> Result<Cid, Error> {
        cid::Cid::try_from(s)
            .map(Cid)
            .map_err(|e| Error::InvalidCid {
                input: s.to_string(),
                reason: e.to_string(),
            })
    }
    pub fn inner(&self) -> &cid::Cid {
        &self.0
    }
}

impl From<cid::Cid> for Cid {
    fn from(c: cid::Cid) -> Self {
        Cid(c)
    }
}

impl From<Cid> for cid::Cid {
    fn from(c: Cid) -> Self {
        c.0
    }
}

impl FromStr for Cid {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cid::parse(s)
    }
}

impl fmt::Display for Cid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for Cid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cid({})", self.0)
    }
}

impl Serialize for Cid {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cid {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Cid::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// "" is no CID (proto's convention for an optional CID).
pub(crate) fn optional_cid(s: &str) -> Result<Option<Cid>, Error> {
    if s.is_empty() {
        Ok(None)
    } else {
        Cid::parse(s).map(Some)
    }
}

/// Validates a peer ID and returns its canonical base58btc form. Accepts base58btc
/// (`12D3KooW…`, `Qm…`) and the CID form (`bafz…`, `k51…`, codec libp2p-key).
pub fn parse_peer_id(s: &str) -> Result<String, Error> {
    let err = |reason: String| Error::InvalidPeerId {
        input: s.to_string(),
        reason,
    };
    if s.is_empty() {
        return Err(err("empty".into()));
    }
    if let Ok(p) = PeerId::from_str(s) {
        return Ok(p.to_base58());
    }
    let c = cid::Cid::try_from(s)
        .map_err(|_| err("neither a base58btc peer ID nor a CID with codec libp2p-key".into()))?;
    if c.codec() != LIBP2P_KEY_CODEC {
        return Err(err(format!(
            "CID codec is 0x{:x}, a peer ID needs libp2p-key (0x72)",
            c.codec()
        )));
    }
    PeerId::from_multihash(*c.hash())
        .map(|p| p.to_base58())
        .map_err(|_| err("multihash is not a valid peer ID".into()))
}

/// Parses a multiaddress, naming the input in the error.
pub fn parse_multiaddr(s: &str) -> Result<Multiaddr, Error> {
    Multiaddr::from_str(s).map_err(|e| Error::InvalidMultiaddr {
        input: s.to_string(),
        reason: e.to_string(),
    })
}

/// The peer ID of the last `/p2p/<id>` component, if any.
pub fn multiaddr_peer_id(ma: &Multiaddr) -> Option<String> {
    ma.iter().fold(None, |acc, p| match p {
        Protocol::P2p(id) => Some(id.to_base58()),
        _ => acc,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const V0: &str = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG";
    const PEER: &str = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";

    #[test]
    fn cid_canonical_forms() {
        let c = Cid::parse(V0).unwrap();
        assert_eq!(c.to_string(), V0);
        let v1 = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";
        assert_eq!(Cid::parse(v1).unwrap().to_string(), v1);
        // base58 CIDv1 is printed in base32, as Go does
        let b58 = "zdj7WWeQ43G6JJvLWQWZpyHuAMq6uYWRjkBXFad11vE2LHhQ7";
        assert!(Cid::parse(b58).unwrap().to_string().starts_with('b'));
    }

    #[test]
    fn bad_cid_is_error() {
        let e = Cid::parse("sync").unwrap_err();
        assert!(e.to_string().starts_with("invalid CID \"sync\""), "{e}");
        assert!(serde_json::from_str::<Cid>("\"QmNope\"").is_err());
        assert!(serde_json::from_str::<Cid>("null").is_err());
        assert_eq!(serde_json::from_str::<Option<Cid>>("null").unwrap(), None);
    }

    #[test]
    fn peer_ids() {
        assert_eq!(parse_peer_id(PEER).unwrap(), PEER);
        // CID form of the same peer ID
        let p = PeerId::from_str(PEER).unwrap();
        let c = cid::Cid::new_v1(LIBP2P_KEY_CODEC, *p.as_ref());
        assert_eq!(parse_peer_id(&c.to_string()).unwrap(), PEER);
        assert!(parse_peer_id("").is_err());
        assert!(parse_peer_id("12D3nope").is_err());
        // Qm… is a sha2-256 multihash: a valid (RSA-style) peer ID
        assert_eq!(parse_peer_id(V0).unwrap(), V0);
        let e = parse_peer_id("bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi")
            .unwrap_err();
        assert!(e.to_string().contains("libp2p-key"), "{e}");
    }

    #[test]
    fn multiaddr_peer() {
        let ma = parse_multiaddr(&format!("/ip4/127.0.0.1/tcp/4001/p2p/{PEER}")).unwrap();
        assert_eq!(multiaddr_peer_id(&ma).as_deref(), Some(PEER));
        let ma = parse_multiaddr("/ip4/127.0.0.1/tcp/4001").unwrap();
        assert_eq!(multiaddr_peer_id(&ma), None);
        assert!(parse_multiaddr("/ip4/999.0.0.1").is_err());
    }
}
