//! CAR uploads (`POST /add?format=car`), read before anything is stored: the gateway's
//! streaming `car::CarReader` gets the body in chunks of a fuzzed size, as the request
//! body arrives, and is drained the way the add handler drains it (header first, then
//! every complete block); `car::unixfs_size` runs on each block as for the reply's size.
//! Every block handed out matches its CID (`car::verify`), the header's roots come first,
//! and no more block bytes come out than went in.
//!
//! Input: byte 0 picks the chunk size; if bit 0x80 of byte 1 is set, the rest is not sent
//! as is but framed into a CAR whose block CIDs are computed (sha2-256, so the fuzzer gets
//! past the hash check into the later frames): `[codec byte][len byte][block]...`.
#![no_main]

use cid::{multihash::Multihash, Cid};
use ipfs_cluster_gateway::add::car::{unixfs_size, verify, CarReader};
use libfuzzer_sys::fuzz_target;

const CODECS: [u64; 4] = [0x55, 0x70, 0x71, 0x0129];

fn uvarint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A CARv1 with the given blocks; the first block's CID is the root.
fn framed(spec: &[u8]) -> Vec<u8> {
    let mut blocks = Vec::new();
    let mut rest = spec;
    while rest.len() >= 2 {
        let codec = CODECS[rest[0] as usize % CODECS.len()];
        let len = (rest[1] as usize).min(rest.len() - 2);
        let block = &rest[2..2 + len];
        rest = &rest[2 + len..];
        let digest = ring::digest::digest(&ring::digest::SHA256, block);
        let mh = Multihash::<64>::wrap(0x12, digest.as_ref()).unwrap();
        blocks.push((Cid::new_v1(codec, mh), block.to_vec()));
    }
    let root = blocks
        .first()
        .map(|b| b.0)
        .unwrap_or_else(|| Cid::new_v1(0x55, Multihash::<64>::wrap(0x00, b"").unwrap()));
    // {"roots": [tag42(bytes(0x00 ++ cid))], "version": 1} in DAG-CBOR.
    let cid = root.to_bytes();
    let mut h = vec![0xa2, 0x65];
    h.extend_from_slice(b"roots");
    h.extend_from_slice(&[0x81, 0xd8, 0x2a, 0x58, (cid.len() + 1) as u8, 0x00]);
    h.extend_from_slice(&cid);
    h.push(0x67);
    h.extend_from_slice(b"version");
    h.push(0x01);
    let mut car = Vec::new();
    uvarint(h.len() as u64, &mut car);
    car.extend_from_slice(&h);
    for (cid, data) in blocks {
        let c = cid.to_bytes();
        uvarint((c.len() + data.len()) as u64, &mut car);
        car.extend_from_slice(&c);
        car.extend_from_slice(&data);
    }
    car
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let body = match rest.split_first() {
        Some((&mode, spec)) if mode & 0x80 != 0 => framed(spec),
        _ => rest.to_vec(),
    };
    let chunk = usize::from(chunk).max(1);
    let mut r = CarReader::default();
    let mut have_roots = false;
    let mut out = 0usize;
    let mut failed = false;
    'feed: for piece in body.chunks(chunk) {
        r.feed(piece);
        if !have_roots {
            match r.header() {
                Ok(Some(roots)) => {
                    have_roots = true;
                    let _ = roots.len();
                }
                Ok(None) => continue,
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    failed = true;
                    break 'feed;
                }
            }
        }
        loop {
            match r.block() {
                Ok(Some((cid, block))) => {
                    verify(&cid, &block).expect("a block handed out matches its CID");
                    out += block.len();
                    let _ = unixfs_size(&cid, &block);
                }
                Ok(None) => break,
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    failed = true;
                    break 'feed;
                }
            }
        }
    }
    assert!(out <= body.len(), "more block bytes out than body bytes in");
    if !failed {
        assert!(r.leftover() <= body.len());
    }
});
