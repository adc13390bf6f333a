//! Random CIDs (CIDv1, raw codec, sha2-256 of random bytes): valid for every parser, yet
//! nothing any IPFS node can fetch, so the benchmarks measure the cluster, not IPFS; and
//! random inline CIDs, which any IPFS node pins at once (the ingest run's self-check).

use rand::RngCore;
use sha2::{Digest, Sha256};

const RAW: u64 = 0x55;
const SHA2_256: u64 = 0x12;

/// A fresh random CIDv1 (base32, `bafkrei…`).
pub fn random_cid() -> String {
    let mut data = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut data);
    let digest = Sha256::digest(data);
    let mh =
        cid::multihash::Multihash::<64>::wrap(SHA2_256, &digest).expect("a 32-byte digest fits");
    cid::Cid::new_v1(RAW, mh).to_string()
}

/// A fresh random inline CIDv1 (raw codec, identity multihash of 32 random bytes,
/// `bafkqa…`): the block is the CID itself, so an IPFS node pins it at once without
/// fetching anything. The ingest benchmark uses these so it can check that every
/// acknowledged pin really ends up pinned on IPFS.
pub fn random_inline_cid() -> String {
    let mut data = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut data);
    let mh = cid::multihash::Multihash::<64>::wrap(IDENTITY, &data).expect("32 bytes fit");
    cid::Cid::new_v1(RAW, mh).to_string()
}

const IDENTITY: u64 = 0x00;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_cids_parse_and_differ() {
        let a = random_cid();
        let b = random_cid();
        assert_ne!(a, b);
        let c: cid::Cid = a.parse().unwrap();
        assert_eq!(c.codec(), RAW);
        assert_eq!(c.version(), cid::Version::V1);
        assert_eq!(c.hash().code(), 0x12);
        assert!(a.starts_with("bafkrei"), "{a}");
        let i: cid::Cid = random_inline_cid().parse().unwrap();
        assert_eq!(
            (i.codec(), i.hash().code(), i.hash().size()),
            (RAW, IDENTITY, 32)
        );
        assert_ne!(random_inline_cid(), random_inline_cid());
    }
}
