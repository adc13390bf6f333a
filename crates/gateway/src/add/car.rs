//! `POST /add?format=car`: reading a CARv1 upload as it streams in. The header's
//! DAG-CBOR `{roots, version}` is decoded by a minimal CBOR reader (only what a CAR
//! header holds), then each `varint | CID | block` frame is checked (the block must hash
//! to its CID) and handed back; add.rs stores it through the ipfs connectors and pins the
//! single root. Bounded: a header over 64 KiB or a block over [`MAX_BLOCK`] is refused.

use bytes::{Buf, BytesMut};
use cid::Cid;

/// Kubo's hard block limit with `allow-big-block` off is 1 MiB; we accept up to 4 MiB.
pub const MAX_BLOCK: usize = 4 << 20;
const MAX_HEADER: usize = 64 << 10;
#[cfg(test)]
const SHA2_256: u64 = 0x12;
const IDENTITY: u64 = 0x00;

/// Why a CAR upload was refused; the texts are the ones an add's stream ends with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CarError {
    #[error("CAR: malformed varint")]
    Varint,
    #[error("CAR: {what} of {len} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge {
        what: &'static str,
        len: usize,
        limit: usize,
    },
    #[error("CAR: bad block CID: {0}")]
    BlockCid(String),
    #[error("CAR: block {cid} uses hash function 0x{code:x}, which this gateway cannot verify (supported: the sha2, sha3, keccak, shake-256, blake2, blake3 functions IPFS stores)")]
    UnknownHash { cid: Cid, code: u64 },
    #[error("CAR: block {0} does not match its CID (corrupt CAR)")]
    Corrupt(Cid),
    #[error("CAR: block {cid} has codec 0x{codec:x}, which IPFS cannot store here (raw, dag-pb, dag-cbor, dag-json, cbor, json)")]
    Codec { cid: Cid, codec: u64 },
    /// A header that is not the DAG-CBOR a CAR header is (`truncated CBOR`, `roots is
    /// not an array`...).
    #[error("CAR header: {0}")]
    Header(&'static str),
    #[error("CAR header: bad root CID: {0}")]
    RootCid(String),
    #[error("CAR header is not a CBOR map (is this a CAR file?)")]
    NotAMap,
    /// go-car v0.6.3's words (upstream's CAR reader).
    #[error("invalid car version: {0}")]
    Version(u64),
}

/// Kubo's `cid-codec` name for a codec we can store, or None.
pub fn codec_name(codec: u64) -> Option<&'static str> {
    Some(match codec {
        0x55 => "raw",
        0x70 => "dag-pb",
        0x71 => "dag-cbor",
        0x0129 => "dag-json",
        0x51 => "cbor",
        0x0200 => "json",
        _ => return None,
    })
}

/// Incremental CAR reader: feed bytes, take header then blocks.
#[derive(Default)]
pub struct CarReader {
    buf: BytesMut,
    roots: Option<Vec<Cid>>,
}

fn uvarint(b: &[u8]) -> Result<Option<(u64, usize)>, CarError> {
    let mut v: u64 = 0;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((v, i + 1)));
        }
    }
    if b.len() >= 10 {
        Err(CarError::Varint)
    } else {
        Ok(None)
    }
}

impl CarReader {
    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// One complete length-prefixed frame, if buffered.
    fn frame(&mut self, limit: usize, what: &'static str) -> Result<Option<BytesMut>, CarError> {
        let Some((len, n)) = uvarint(&self.buf)? else {
            return Ok(None);
        };
        let len = len as usize;
        if len > limit {
            return Err(CarError::FrameTooLarge { what, len, limit });
        }
        if self.buf.len() < n + len {
            return Ok(None);
        }
        self.buf.advance(n);
        Ok(Some(self.buf.split_to(len)))
    }

    /// The roots, once the header has arrived.
    pub fn header(&mut self) -> Result<Option<&[Cid]>, CarError> {
        if self.roots.is_none() {
            let Some(h) = self.frame(MAX_HEADER, "the header")? else {
                return Ok(None);
            };
            self.roots = Some(parse_header(&h)?);
        }
        Ok(self.roots.as_deref())
    }

    /// The next verified block, if buffered (call after `header` returned the roots).
    pub fn block(&mut self) -> Result<Option<(Cid, Vec<u8>)>, CarError> {
        let Some(f) = self.frame(MAX_BLOCK + 128, "a block")? else {
            return Ok(None);
        };
        let mut cur = std::io::Cursor::new(&f[..]);
        let cid = Cid::read_bytes(&mut cur).map_err(|e| CarError::BlockCid(e.to_string()))?;
        let data = f[cur.position() as usize..].to_vec();
        verify(&cid, &data)?;
        Ok(Some((cid, data)))
    }

    /// Bytes left over (a truncated frame at the end of the upload).
    pub fn leftover(&self) -> usize {
        self.buf.len()
    }
}

/// The block must hash to its CID (identity, or a function of `dag::HashFn` at its
/// full length).
pub fn verify(cid: &Cid, data: &[u8]) -> Result<(), CarError> {
    let mh = cid.hash();
    let ok = match (mh.code(), crate::add::dag::HashFn::from_code(mh.code())) {
        (IDENTITY, _) => mh.digest() == data,
        (_, Some(f)) => f.digest(data) == mh.digest(),
        (code, None) => return Err(CarError::UnknownHash { cid: *cid, code }),
    };
    if !ok {
        return Err(CarError::Corrupt(*cid));
    }
    if codec_name(cid.codec()).is_none() {
        return Err(CarError::Codec {
            cid: *cid,
            codec: cid.codec(),
        });
    }
    Ok(())
}

// ---- minimal CBOR (what a CARv1 header holds) ----------------------------------------

struct Cbor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cbor<'a> {
    fn byte(&mut self) -> Result<u8, CarError> {
        let v = *self
            .b
            .get(self.pos)
            .ok_or(CarError::Header("truncated CBOR"))?;
        self.pos += 1;
        Ok(v)
    }

    fn head(&mut self) -> Result<(u8, u64), CarError> {
        let first = self.byte()?;
        let (major, ai) = (first >> 5, first & 0x1f);
        let n = match ai {
            0..=23 => ai as u64,
            24 => self.byte()? as u64,
            25..=27 => {
                let len = 1usize << (ai - 24);
                let mut v = 0u64;
                for _ in 0..len {
                    v = (v << 8) | self.byte()? as u64;
                }
                v
            }
            _ => return Err(CarError::Header("indefinite-length CBOR is not DAG-CBOR")),
        };
        Ok((major, n))
    }

    fn bytes(&mut self, n: u64) -> Result<&'a [u8], CarError> {
        let n = n as usize;
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or(CarError::Header("truncated CBOR"))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn skip(&mut self, depth: usize) -> Result<(), CarError> {
        if depth > 16 {
            return Err(CarError::Header("CBOR nested too deeply"));
        }
        let (major, n) = self.head()?;
        match major {
            0 | 1 | 7 => {}
            2 | 3 => {
                self.bytes(n)?;
            }
            4 => {
                for _ in 0..n {
                    self.skip(depth + 1)?;
                }
            }
            5 => {
                // n comes from the upload: n * 2 may overflow (each item read consumes
                // a byte, so the loop ends at the header's end anyway).
                for _ in 0..n.saturating_mul(2) {
                    self.skip(depth + 1)?;
                }
            }
            _ => self.skip(depth + 1)?, // 6: a tag and its item
        }
        Ok(())
    }

    fn cid(&mut self) -> Result<Cid, CarError> {
        let (major, tag) = self.head()?;
        if (major, tag) != (6, 42) {
            return Err(CarError::Header("a root is not a CID (CBOR tag 42)"));
        }
        let (major, n) = self.head()?;
        if major != 2 {
            return Err(CarError::Header("a root CID is not a byte string"));
        }
        let raw = self.bytes(n)?;
        match raw.split_first() {
            Some((0, rest)) => Cid::try_from(rest).map_err(|e| CarError::RootCid(e.to_string())),
            _ => Err(CarError::Header(
                "a root CID lacks the 0x00 multibase prefix",
            )),
        }
    }
}

fn parse_header(h: &[u8]) -> Result<Vec<Cid>, CarError> {
    let mut c = Cbor { b: h, pos: 0 };
    let (major, n) = c.head()?;
    if major != 5 {
        return Err(CarError::NotAMap);
    }
    let mut roots = None;
    let mut version = None;
    for _ in 0..n {
        let (major, len) = c.head()?;
        if major != 3 {
            return Err(CarError::Header("a map key is not a string"));
        }
        match c.bytes(len)? {
            b"roots" => {
                let (major, count) = c.head()?;
                if major != 4 {
                    return Err(CarError::Header("roots is not an array"));
                }
                let mut v = Vec::new();
                for _ in 0..count.min(1024) {
                    v.push(c.cid()?);
                }
                roots = Some(v);
            }
            b"version" => {
                let (major, v) = c.head()?;
                if major != 0 {
                    return Err(CarError::Header("version is not an integer"));
                }
                version = Some(v);
            }
            _ => c.skip(0)?,
        }
    }
    // go-car v0.6.3's words (upstream's CAR reader); a missing key decodes as zero/empty.
    match version.unwrap_or(0) {
        1 => {}
        v => return Err(CarError::Version(v)),
    }
    Ok(roots.unwrap_or_default())
}

/// The UnixFS file size of a dag-pb node (field Data → unixfs.Data.filesize), if any.
pub fn unixfs_size(cid: &Cid, block: &[u8]) -> u64 {
    fn field(mut b: &[u8], want: u64) -> Option<Result<&[u8], u64>> {
        while !b.is_empty() {
            let (key, n) = uvarint(b).ok()??;
            b = &b[n..];
            match key & 7 {
                0 => {
                    let (v, n) = uvarint(b).ok()??;
                    b = &b[n..];
                    if key >> 3 == want {
                        return Some(Err(v));
                    }
                }
                2 => {
                    let (len, n) = uvarint(b).ok()??;
                    let end = n.checked_add(len as usize).filter(|e| *e <= b.len())?;
                    if key >> 3 == want {
                        return Some(Ok(&b[n..end]));
                    }
                    b = &b[end..];
                }
                _ => return None,
            }
        }
        None
    }
    if cid.codec() != 0x70 {
        return 0;
    }
    match field(block, 1) {
        Some(Ok(data)) => match field(data, 3) {
            Some(Err(size)) => size,
            _ => 0,
        },
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: usize, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn car(roots: &[Cid], blocks: &[(Cid, Vec<u8>)]) -> Vec<u8> {
        // {"roots": [tag42(h'00'+cid)...], "version": 1}
        let mut h = vec![0xa2, 0x65];
        h.extend_from_slice(b"roots");
        h.push(0x80 | roots.len() as u8);
        for r in roots {
            let b = r.to_bytes();
            h.extend_from_slice(&[0xd8, 42, 0x58, (b.len() + 1) as u8, 0]);
            h.extend_from_slice(&b);
        }
        h.push(0x67);
        h.extend_from_slice(b"version");
        h.push(0x01);
        let mut out = Vec::new();
        varint(h.len(), &mut out);
        out.extend(h);
        for (c, d) in blocks {
            let cb = c.to_bytes();
            varint(cb.len() + d.len(), &mut out);
            out.extend(cb);
            out.extend(d);
        }
        out
    }

    fn raw_cid(data: &[u8]) -> Cid {
        let d = ring::digest::digest(&ring::digest::SHA256, data);
        Cid::new_v1(
            0x55,
            cid::multihash::Multihash::wrap(SHA2_256, d.as_ref()).unwrap(),
        )
    }

    #[test]
    fn reads_header_and_verified_blocks_byte_by_byte() {
        let a = b"hello car".to_vec();
        let ca = raw_cid(&a);
        let bytes = car(&[ca], &[(ca, a.clone())]);
        let mut r = CarReader::default();
        let mut got = Vec::new();
        for b in &bytes {
            r.feed(&[*b]);
            if r.header().unwrap().is_some() {
                if let Some(x) = r.block().unwrap() {
                    got.push(x);
                }
            }
        }
        assert_eq!(r.header().unwrap().unwrap(), &[ca]);
        assert_eq!(got, vec![(ca, a)]);
        assert_eq!(r.leftover(), 0);
    }

    #[test]
    fn refuses_corrupt_blocks_and_bad_headers() {
        let ca = raw_cid(b"x");
        let bytes = car(&[ca], &[(ca, b"y".to_vec())]);
        let mut r = CarReader::default();
        r.feed(&bytes);
        r.header().unwrap();
        assert!(r
            .block()
            .unwrap_err()
            .to_string()
            .contains("does not match"));
        let mut r = CarReader::default();
        r.feed(&[3, 0x01, 0x02, 0x03]);
        assert!(r
            .header()
            .unwrap_err()
            .to_string()
            .contains("not a CBOR map"));
    }

    #[test]
    fn unixfs_file_size() {
        // PBNode{Data: unixfs.Data{Type: File(2), Data: "abc", filesize: 3}}
        let unixfs = [0x08, 0x02, 0x12, 0x03, b'a', b'b', b'c', 0x18, 0x03];
        let mut node = vec![0x0a, unixfs.len() as u8];
        node.extend_from_slice(&unixfs);
        let d = ring::digest::digest(&ring::digest::SHA256, &node);
        let c =
            Cid::new_v0(cid::multihash::Multihash::wrap(SHA2_256, d.as_ref()).unwrap()).unwrap();
        assert_eq!(unixfs_size(&c, &node), 3);
    }

    /// tests/fuzz `car_upload` corpus regress_huge_map_in_header: a header value announcing
    /// a map of 2^64-1 pairs is an error (truncated CBOR), not an overflow of `n * 2`.
    #[test]
    fn huge_map_length_in_header_is_an_error() {
        let h = b"\xa1\x63abc\xbb\xff\xff\xff\xff\xff\xff\xff\xff";
        let mut r = CarReader::default();
        r.feed(&[h.len() as u8]);
        r.feed(h);
        assert!(r
            .header()
            .unwrap_err()
            .to_string()
            .contains("truncated CBOR"));
    }
}
