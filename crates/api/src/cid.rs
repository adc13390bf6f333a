//! CIDs and peer IDs as upstream puts them on the wire. `Cid` is a validated CID kept as
//! its canonical text (v0 base58btc `Qm…`, v1 base32 `b…`), so a bad CID is an error at
//! the edge and printing one is a copy: listings print millions of CIDs that the consensus
//! already normalized, and a parse-then-re-encode per item was ~8 % of the gateway's CPU.
//! Text already in canonical v1 form (what the consensus stores) is validated by a direct
//! base32 decode and a check of the binary layout, without allocating or re-encoding;
//! anything else goes through the `cid` crate's full parser and is re-encoded. The fast
//! path accepts a subset of what the full parser accepts, with the same result (tested
//! against it), so validation is the same for user input and for state data.
//! Peer IDs stay plain strings in the API types; `parse_peer_id` validates and
//! canonicalises them (base58btc, also accepting the CID form `bafz…`/`k51…`).
use std::fmt;
use std::str::FromStr;

use multiaddr::{Multiaddr, PeerId, Protocol};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Error, PathError};

/// Multicodec of a libp2p public key, the codec a peer ID in CID form carries.
const LIBP2P_KEY_CODEC: u64 = 0x72;

/// Longest canonical text of a `cid::Cid` (64-byte digests): version (1 byte) + codec and
/// multihash code varints (10 bytes each at most) + size (1) + digest (64) = 86 bytes,
/// 138 base32 characters plus the `b` prefix.
const MAX_TEXT: usize = 139;
/// Longest binary CID the fast path decodes (86 bytes, see `MAX_TEXT`).
const MAX_BYTES: usize = 86;

/// A CID whose canonical text does not fit a [`Cid`] (`cid::Cid` holds 64-byte digests at
/// most, so only text that is no CID of the `cid` crate gets here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("CID text longer than {MAX_TEXT} characters")]
struct TooLong;

/// A validated CID, held as its canonical text. Equality and hashing are those of the CID
/// (the canonical text is unique per CID); ordering is by canonical text.
#[derive(Clone, Copy)]
pub struct Cid {
    len: u8,
    text: [u8; MAX_TEXT],
}

impl Cid {
    /// Parses and validates a CID in any form the `cid` crate accepts (also `/ipfs/<cid>`);
    /// it prints in canonical form.
    pub fn parse(s: &str) -> Result<Cid, Error> {
        if let Some(c) = canonical_v1(s).or_else(|| canonical_v0(s)) {
            return Ok(c);
        }
        let invalid = |reason: String| Error::InvalidCid {
            input: s.to_string(),
            reason,
        };
        let c = cid::Cid::try_from(s).map_err(|e| invalid(e.to_string()))?;
        Cid::from_text(&c.to_string()).map_err(|e| invalid(e.to_string()))
    }

    /// The canonical text (`Qm…` or `b…`).
    pub fn as_str(&self) -> &str {
        // Only ever filled from ASCII text (base58btc / base32 alphabets).
        std::str::from_utf8(&self.text[..self.len as usize]).unwrap_or_default()
    }

    /// The CID as the `cid` crate's type (parses the stored text).
    pub fn to_cid(&self) -> cid::Cid {
        // The text was validated when this value was built; a failure here would be a bug
        // in this module, reported as the default CID rather than a panic.
        cid::Cid::try_from(self.as_str()).unwrap_or_default()
    }

    fn from_text(canonical: &str) -> Result<Cid, TooLong> {
        let b = canonical.as_bytes();
        if b.len() > MAX_TEXT {
            return Err(TooLong);
        }
        let mut text = [0u8; MAX_TEXT];
        text[..b.len()].copy_from_slice(b);
        Ok(Cid {
            len: b.len() as u8,
            text,
        })
    }
}

/// Base32 (RFC 4648, lowercase) value of each byte; `0xff` = not in the alphabet.
const BASE32_LOWER: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 26 {
        t[b'a' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'2' as usize + i] = 26 + i as u8;
        i += 1;
    }
    t
};

/// `s` as a `Cid` when it is already the canonical text of a CIDv1: `b` + lowercase
/// base32 without padding or stray trailing bits, decoding to version 1, codec and
/// multihash code as minimal varints, a digest size of at most 64 and exactly that many
/// digest bytes. Those are exactly the bytes the `cid` crate writes for the CID it reads
/// from them, so the text is what it would print. `None` (including rarer shapes such as
/// 10-byte varints) sends the caller to the full parser.
fn canonical_v1(s: &str) -> Option<Cid> {
    let body = s.as_bytes().strip_prefix(b"b")?;
    if s.len() > MAX_TEXT {
        return None;
    }
    let mut bytes = [0u8; MAX_BYTES];
    let mut n = 0;
    let (mut acc, mut bits) = (0u32, 0u32);
    for &ch in body {
        let v = BASE32_LOWER[ch as usize];
        if v == 0xff {
            return None;
        }
        acc = (acc << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            *bytes.get_mut(n)? = (acc >> bits) as u8;
            n += 1;
            acc &= (1 << bits) - 1;
        }
    }
    // Canonical base32: the leftover bits are fewer than 5 and all zero.
    if bits >= 5 || acc != 0 {
        return None;
    }
    let mut rest = &bytes[..n];
    if minimal_varint(&mut rest)? != 1 {
        return None;
    }
    minimal_varint(&mut rest)?; // codec
    minimal_varint(&mut rest)?; // multihash code
    let size = minimal_varint(&mut rest)?;
    if size > 64 || rest.len() as u64 != size {
        return None;
    }
    Cid::from_text(s).ok()
}

/// Base58btc (Bitcoin alphabet) value of each byte; `0xff` = not in the alphabet.
const BASE58: [u8; 256] = {
    let alphabet = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < alphabet.len() {
        t[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    t
};

/// `s` as a `Cid` when it is a CIDv0 in its only text form: `Qm` + 44 base58btc characters
/// decoding to exactly 34 bytes `0x12 0x20 <32-byte sha2-256 digest>`. Base58 without
/// leading `1`s is a bijection with integers without leading zero bytes, so such text is
/// what the `cid` crate prints for the CID it parses from it. The full parser's generic
/// base58 decode costs ~0.7 µs per CID; this one multiplies 32-bit limbs by 58^5 per
/// five characters.
fn canonical_v0(s: &str) -> Option<Cid> {
    let b = s.as_bytes();
    if b.len() != 46 || !b.starts_with(b"Qm") {
        return None;
    }
    // little-endian 32-bit limbs; 9 hold 288 bits, the CID needs 272
    let mut limbs = [0u32; 9];
    for chunk in b.chunks(5) {
        let (mut add, mut mul) = (0u64, 1u64);
        for &ch in chunk {
            let v = BASE58[ch as usize];
            if v == 0xff {
                return None;
            }
            add = add * 58 + u64::from(v);
            mul *= 58;
        }
        let mut carry = add;
        for limb in limbs.iter_mut() {
            let t = u64::from(*limb) * mul + carry;
            *limb = t as u32;
            carry = t >> 32;
        }
        if carry != 0 {
            return None;
        }
    }
    // the top limb holds bytes 0..2 of 36: two zero bytes, then 0x12 0x20
    if limbs[8] != 0x1220 {
        return None;
    }
    Cid::from_text(s).ok()
}

/// Reads an unsigned varint of at most 9 bytes in its shortest form from the front of `b`.
fn minimal_varint(b: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..9 {
        let byte = *b.get(i)?;
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if byte == 0 && i > 0 {
                return None;
            }
            *b = &b[i + 1..];
            return Some(v);
        }
    }
    None
}

impl PartialEq for Cid {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Cid {}

impl PartialOrd for Cid {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Cid {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl std::hash::Hash for Cid {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.as_str().hash(h)
    }
}

impl From<cid::Cid> for Cid {
    fn from(c: cid::Cid) -> Self {
        // Every cid::Cid (64-byte digests at most) fits MAX_TEXT.
        let text = c.to_string();
        Cid::from_text(&text).unwrap_or(Cid {
            len: 0,
            text: [0; MAX_TEXT],
        })
    }
}

impl From<Cid> for cid::Cid {
    fn from(c: Cid) -> Self {
        c.to_cid()
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
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Cid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cid({})", self.as_str())
    }
}

impl Serialize for Cid {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
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

/// go-multibase's prefix characters (the first character of a multibase string).
fn is_multibase_prefix(c: char) -> bool {
    matches!(
        c,
        '\0' | '0'
            | '7'
            | '9'
            | 'f'
            | 'F'
            | 'b'
            | 'B'
            | 'c'
            | 'C'
            | 'v'
            | 'V'
            | 't'
            | 'T'
            | 'h'
            | 'k'
            | 'K'
            | 'z'
            | 'Z'
            | 'm'
            | 'M'
            | 'u'
            | 'U'
            | '\u{1F680}'
    )
}

fn base58_ok(s: &str) -> bool {
    s.bytes()
        .all(|b| b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz".contains(&b))
}

/// Go's `%q` of a string (strconv.Quote) for the ASCII text paths are made of.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// boxo's `path.NewPath` (upstream v1.1.6's server side): `/ipfs/<cid>[/…]`,
/// `/ipld/<cid>[/…]` or `/ipns/<name>[/…]`, cleaned as Go's `path.Clean`; errors in
/// boxo's words (`invalid path "x": path does not have enough components`).
pub fn boxo_path(s: &str) -> Result<String, PathError> {
    let mut segs: Vec<&str> = Vec::new();
    for part in s.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                segs.pop();
            }
            p => segs.push(p),
        }
    }
    if !s.starts_with('/') || segs.len() < 2 {
        return Err(PathError::TooFewComponents { path: go_quote(s) });
    }
    let mut cleaned = format!("/{}", segs.join("/"));
    if s.ends_with('/') {
        cleaned.push('/');
    }
    match segs[0] {
        "ipfs" | "ipld" => {
            ::cid::Cid::try_from(segs[1]).map_err(|e| PathError::InvalidCid {
                path: go_quote(s),
                reason: go_cid_error(segs[1], &e.to_string()),
            })?;
            Ok(cleaned)
        }
        "ipns" => Ok(cleaned),
        other => Err(PathError::UnknownNamespace {
            path: go_quote(s),
            namespace: go_quote(other),
        }),
    }
}

/// Upstream's `pathOrCidPath`: a path as boxo reads it, else `/ipfs/<s>`; the error is the
/// one for `s` itself.
pub fn path_or_cid_path(s: &str) -> Result<String, PathError> {
    boxo_path(s).or_else(|e| boxo_path(&format!("/ipfs/{s}")).map_err(|_| e))
}

/// The text go-cid's `Decode` gives for a string that is not a CID (`invalid cid: …`),
/// so users see upstream's words: too short, a 46-character `Qm…` that is not base58, or
/// an unknown multibase prefix. Past those checks the reason found here (`fallback`) is
/// used, as the precise Go text depends on the decoder that failed.
pub fn go_cid_error(s: &str, fallback: &str) -> String {
    let reason = if s.len() < 2 {
        "cid too short".to_string()
    } else if s.len() == 46 && s.starts_with("Qm") {
        if base58_ok(s) {
            fallback.to_string()
        } else {
            "input isn't valid multihash".to_string()
        }
    } else if !s.chars().next().is_some_and(is_multibase_prefix) {
        "selected encoding not supported".to_string()
    } else {
        fallback.to_string()
    };
    format!("invalid cid: {reason}")
}

/// go-libp2p `peer.Decode`'s error text (`failed to parse peer ID: …`): base58 for
/// `Qm…`/`1…`, otherwise a CID as go-cid reads it.
pub fn go_peer_id_error(s: &str, fallback: &str) -> String {
    let reason = if s.starts_with("Qm") || s.starts_with('1') {
        if base58_ok(s) {
            fallback.to_string()
        } else {
            "input isn't valid multihash".to_string()
        }
    } else {
        go_cid_error(s, fallback)
    };
    format!("failed to parse peer ID: {reason}")
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
    #[test]
    fn go_error_texts() {
        let e = |s| go_cid_error(s, "other");
        assert_eq!(e("notacid"), "invalid cid: selected encoding not supported");
        assert_eq!(e("Qmbad"), "invalid cid: selected encoding not supported");
        assert_eq!(e("x"), "invalid cid: cid too short");
        assert_eq!(
            e("QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbd0"),
            "invalid cid: input isn't valid multihash"
        );
        assert_eq!(e("bafyno"), "invalid cid: other");
        assert_eq!(
            go_peer_id_error("notapeer", "other"),
            "failed to parse peer ID: invalid cid: selected encoding not supported"
        );
        assert_eq!(
            go_peer_id_error("12D3Koo0", "other"),
            "failed to parse peer ID: input isn't valid multihash"
        );
    }

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

    /// The full parser alone (the `cid` crate, then its canonical text): the oracle.
    fn slow_parse(s: &str) -> Option<String> {
        cid::Cid::try_from(s).ok().map(|c| c.to_string())
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    fn random_cid(r: &mut Rng) -> cid::Cid {
        let codecs = [0x55, 0x70, 0x71, 0x72, 0x0129, 0xb220, u64::MAX >> 1];
        let codec = codecs[(r.next() % codecs.len() as u64) as usize];
        let size = [0usize, 1, 20, 32, 32, 48, 64][(r.next() % 7) as usize];
        let digest: Vec<u8> = (0..size).map(|_| r.next() as u8).collect();
        let code = [0x12, 0x13, 0xb220, 0x00, u64::MAX >> 1][(r.next() % 5) as usize];
        let mh = cid::multihash::Multihash::<64>::wrap(code, &digest).unwrap();
        if r.next().is_multiple_of(4) && code == 0x12 && size == 32 {
            cid::Cid::new_v0(mh).unwrap()
        } else {
            cid::Cid::new_v1(codec, mh)
        }
    }

    #[test]
    fn fast_path_agrees_with_full_parser() {
        let mut r = Rng(0x9e37_79b9_7f4a_7c15);
        let alphabet = b"abcdefghijklmnopqrstuvwxyz234567ABQm01=/";
        for _ in 0..20_000 {
            let c = random_cid(&mut r);
            let canonical = c.to_string();
            let got = Cid::parse(&canonical).unwrap();
            assert_eq!(got.as_str(), canonical);
            assert_eq!(got.to_cid(), c);
            assert_eq!(Cid::from(c), got);
            if c.version() == cid::Version::V1 {
                assert!(canonical_v1(&canonical).is_some(), "{canonical}");
            }
            // other encodings and corruptions: same verdict and text as the full parser
            let mut variants = vec![
                c.to_string_of_base(cid::multibase::Base::Base58Btc)
                    .unwrap_or_default(),
                c.to_string_of_base(cid::multibase::Base::Base32Upper)
                    .unwrap_or_default(),
                format!("/ipfs/{canonical}"),
                canonical[..canonical.len() - 1].to_string(),
                format!("{canonical}a"),
                format!("{canonical}q"),
            ];
            let mut bytes = canonical.clone().into_bytes();
            let i = (r.next() as usize) % bytes.len();
            bytes[i] = alphabet[(r.next() as usize) % alphabet.len()];
            variants.push(String::from_utf8(bytes).unwrap());
            // and one in the version / codec / multihash header, where varints live
            let mut bytes = canonical.clone().into_bytes();
            let i = 1 + (r.next() as usize) % 24.min(bytes.len() - 1);
            bytes[i] = alphabet[(r.next() as usize) % 32];
            variants.push(String::from_utf8(bytes).unwrap());
            for v in variants {
                let fast = Cid::parse(&v).ok().map(|c| c.as_str().to_string());
                assert_eq!(fast, slow_parse(&v), "input {v:?}");
            }
        }
    }

    #[test]
    fn v0_fast_path_agrees_with_full_parser() {
        let mut r = Rng(0x1234_5678_9abc_def1);
        let alphabet = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz0OIl+";
        for i in 0..20_000 {
            let mut digest = [0u8; 32];
            for d in digest.iter_mut() {
                *d = r.next() as u8;
            }
            // extremes of the digest range too
            if i == 0 {
                digest = [0; 32];
            } else if i == 1 {
                digest = [0xff; 32];
            }
            let mh = cid::multihash::Multihash::<64>::wrap(0x12, &digest).unwrap();
            let c = cid::Cid::new_v0(mh).unwrap();
            let text = c.to_string();
            let fast = canonical_v0(&text).expect("canonical v0 takes the fast path");
            assert_eq!(fast.as_str(), text);
            assert_eq!(fast.to_cid(), c);
            let mut variants = Vec::new();
            for _ in 0..3 {
                let mut bytes = text.clone().into_bytes();
                let k = (r.next() as usize) % bytes.len();
                bytes[k] = alphabet[(r.next() as usize) % alphabet.len()];
                variants.push(String::from_utf8(bytes).unwrap());
            }
            variants.push(text[..45].to_string());
            variants.push(format!("{text}1"));
            for v in variants {
                let got = Cid::parse(&v).ok().map(|c| c.as_str().to_string());
                assert_eq!(got, slow_parse(&v), "input {v:?}");
            }
        }
        // 46 characters from `Qm` that are not a sha2-256 multihash
        for v in [
            "Qmzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
            "Qm1111111111111111111111111111111111111111111",
            "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbd1",
        ] {
            let got = Cid::parse(v).ok().map(|c| c.as_str().to_string());
            assert_eq!(got, slow_parse(v), "input {v:?}");
        }
    }

    #[test]
    fn fast_path_edges() {
        // v0 bytes behind a `b` prefix are a v0 CID: printed as Qm…
        let v0 = cid::Cid::try_from(V0).unwrap();
        let b = cid::multibase::encode(cid::multibase::Base::Base32Lower, v0.to_bytes());
        assert_eq!(Cid::parse(&b).unwrap().as_str(), V0);
        assert!(canonical_v1(&b).is_none());
        // trailing bytes after a complete CID: accepted by the full parser, re-encoded
        let v1 = cid::Cid::try_from("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")
            .unwrap();
        let mut long = v1.to_bytes();
        long.push(7);
        let t = cid::multibase::encode(cid::multibase::Base::Base32Lower, &long);
        assert!(canonical_v1(&t).is_none());
        assert_eq!(Cid::parse(&t).ok().map(|c| c.to_string()), slow_parse(&t));
        for bad in [
            "",
            "b",
            "ba",
            "bafy",
            "b!!",
            "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zz",
        ] {
            assert_eq!(
                Cid::parse(bad).ok().map(|c| c.to_string()),
                slow_parse(bad),
                "{bad:?}"
            );
        }
        let max = cid::Cid::new_v1(
            u64::MAX >> 1,
            cid::multihash::Multihash::<64>::wrap(u64::MAX >> 1, &[0xff; 64]).unwrap(),
        );
        let s = max.to_string();
        assert!(s.len() <= MAX_TEXT, "{}", s.len());
        assert_eq!(Cid::parse(&s).unwrap().as_str(), s);
        assert_eq!(std::mem::size_of::<Cid>(), MAX_TEXT + 1);
        // 10-byte varints are left to the full parser
        let huge = cid::Cid::new_v1(
            u64::MAX,
            cid::multihash::Multihash::<64>::wrap(u64::MAX, &[1; 32]).unwrap(),
        );
        let s = huge.to_string();
        assert!(canonical_v1(&s).is_none());
        assert_eq!(Cid::parse(&s).unwrap().as_str(), s);
        // a varint with a needless zero continuation byte is not canonical
        let mut b = vec![0x01, 0xd5, 0x00];
        b.extend([0x12, 0x20]);
        b.extend([7u8; 32]);
        let t = cid::multibase::encode(cid::multibase::Base::Base32Lower, &b);
        assert!(canonical_v1(&t).is_none());
        assert_eq!(Cid::parse(&t).ok().map(|c| c.to_string()), slow_parse(&t));
    }

    #[test]
    fn cid_json_is_the_text() {
        let c = Cid::parse(V0).unwrap();
        assert_eq!(serde_json::to_string(&c).unwrap(), format!("\"{V0}\""));
        let back: Cid = serde_json::from_str(&format!("\"{V0}\"")).unwrap();
        assert_eq!(back, c);
        assert_eq!(format!("{c:?}"), format!("Cid({V0})"));
    }

    #[test]
    fn paths_as_boxo_reads_them() {
        let cid = "bafkqaaa";
        assert_eq!(path_or_cid_path(cid).unwrap(), format!("/ipfs/{cid}"));
        assert_eq!(
            path_or_cid_path(&format!("//ipfs/./{cid}/a/../b/")).unwrap(),
            format!("/ipfs/{cid}/b/")
        );
        assert_eq!(
            path_or_cid_path("/ipns/example.org").unwrap(),
            "/ipns/example.org"
        );
        assert_eq!(
            path_or_cid_path("notacid").unwrap_err().to_string(),
            "invalid path \"notacid\": path does not have enough components"
        );
        assert_eq!(
            path_or_cid_path("").unwrap_err().to_string(),
            "invalid path \"\": path does not have enough components"
        );
        assert_eq!(
            path_or_cid_path("/ipfs/notacid").unwrap_err().to_string(),
            "invalid path \"/ipfs/notacid\": invalid cid: selected encoding not supported"
        );
        assert_eq!(
            path_or_cid_path("/foo/bar").unwrap_err().to_string(),
            "invalid path \"/foo/bar\": unknown namespace: \"foo\""
        );
    }
}
