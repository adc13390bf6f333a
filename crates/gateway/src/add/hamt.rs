//! HAMT-sharded UnixFS directories, as boxo makes them when a directory grows too big
//! for one block, so a large directory added through `/add` gets the CID that upstream's
//! adder (boxo v0.39.0) and Kubo 0.43.0 (boxo v0.42.1, same code) give it.
//!
//! The rule (boxo `ipld/unixfs/io/directory.go`, default `SizeEstimationLinks`): a
//! directory is sharded when the sum over its entries of `len(name) + len(cid bytes)` is
//! strictly greater than `HAMTShardingSize` (256 KiB); exactly at it stays basic. boxo
//! switches back to a basic directory only when removals or smaller replacements bring the
//! estimate down again, which an add never does (a subdirectory's link is only ever
//! replaced by one of the same CID length), so the final form depends only on the final
//! entries, and insertions into boxo's HAMT give one canonical trie whatever their order.
//!
//! The shard layout (boxo `ipld/unixfs/hamt`): fanout 256, so each level takes the next
//! byte of the name's murmur3-x64-64 hash (seed 0, the first half of x64_128 written big
//! endian; multicodec 0x22). A slot holding one entry links to it under `XX` + name (`XX`
//! the slot index in two uppercase hex digits); a slot holding several links to a child
//! shard under `XX` alone. Links are in slot order. The node's UnixFS data is type
//! HAMTShard, the slot bitfield (go-bitfield: big endian, leading zero bytes dropped),
//! hashType 0x22 and fanout 256.

use crate::add::dag::{Block, DagError, DagParams, Link};

/// boxo's `HAMTShardingSize`: above this estimate a directory is sharded.
pub const SHARDING_SIZE: usize = 256 * 1024;
/// boxo's `DefaultShardWidth`.
pub const FANOUT: usize = 256;
/// Multicodec of murmur3-x64-64, the hash boxo shards names with.
pub const HASH_MURMUR3: u64 = 0x22;

/// A 64-bit name hash gives at most this many levels of 8 bits.
const MAX_DEPTH: usize = 8;

/// boxo's legacy size estimate of a directory (`SizeEstimationLinks`).
pub fn estimate<'a>(entries: impl IntoIterator<Item = (&'a str, usize)>) -> usize {
    entries
        .into_iter()
        .map(|(name, cid_len)| name.len() + cid_len)
        .sum()
}

/// Whether boxo would make a directory of this estimate a HAMT.
pub fn needs_sharding(estimate: usize) -> bool {
    estimate > SHARDING_SIZE
}

/// The murmur3-x64-64 hash of a name, as the 8 bytes boxo reads bits from.
pub fn hash(name: &str) -> [u8; 8] {
    let mut src = name.as_bytes();
    // Reading from a slice cannot fail; a failure would only give a zero hash.
    let h = murmur3::murmur3_x64_128(&mut src, 0).unwrap_or(0);
    (h as u64).to_be_bytes()
}

/// go-bitfield's `Bytes()` of a fanout-256 bitfield with the given slots set.
fn bitfield(slots: impl IntoIterator<Item = usize>) -> Vec<u8> {
    let mut bf = [0u8; FANOUT / 8];
    for i in slots {
        bf[FANOUT / 8 - 1 - i / 8] |= 1 << (i % 8);
    }
    let first = bf.iter().position(|b| *b != 0).unwrap_or(bf.len());
    bf[first..].to_vec()
}

/// The order boxo lists a sharded directory's entries in (its trie walk: slot order at
/// every level, which is the order of the names' hashes).
pub fn listing_order<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut v: Vec<(&str, [u8; 8])> = names.into_iter().map(|n| (n, hash(n))).collect();
    v.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(b.0)));
    v.into_iter().map(|(n, _)| n).collect()
}

/// A UnixFS directory over named entries, as boxo's adder makes it: a basic directory,
/// or a shard trie when the entries exceed boxo's sharding threshold. Returns every
/// block, the root last.
pub fn directory(
    params: &DagParams,
    entries: &[(String, Link)],
) -> Result<(Vec<Block>, Link), DagError> {
    let estimate = estimate(
        entries
            .iter()
            .map(|(n, l)| (n.as_str(), l.cid.encoded_len())),
    );
    if needs_sharding(estimate) {
        return build(params, entries);
    }
    let (block, link) = params.basic_directory(entries);
    Ok((vec![block], link))
}

/// Builds the shard trie over `entries` (names unique); returns every shard block (children
/// before their parent, the root last) and the root's link.
pub fn build(
    params: &DagParams,
    entries: &[(String, Link)],
) -> Result<(Vec<Block>, Link), DagError> {
    let mut hashed: Vec<(&str, [u8; 8], &Link)> = entries
        .iter()
        .map(|(n, l)| (n.as_str(), hash(n), l))
        .collect();
    hashed.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(b.0)));
    if let Some(w) = hashed.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(DagError::DuplicateEntry(w[0].0.to_string()));
    }
    let mut blocks = Vec::new();
    let root = shard(params, &hashed, 0, &mut blocks)?;
    Ok((blocks, root))
}

/// One shard at `depth` over entries sorted by hash (so each slot's entries are adjacent).
fn shard(
    params: &DagParams,
    entries: &[(&str, [u8; 8], &Link)],
    depth: usize,
    blocks: &mut Vec<Block>,
) -> Result<Link, DagError> {
    let mut links: Vec<(String, Link)> = Vec::new();
    let mut slots = Vec::new();
    let mut rest = entries;
    while let Some(first) = rest.first() {
        let slot = first.1[depth];
        let n = rest.iter().take_while(|e| e.1[depth] == slot).count();
        let (group, tail) = rest.split_at(n);
        rest = tail;
        slots.push(slot as usize);
        if let [(name, _, link)] = group {
            links.push((format!("{slot:02X}{name}"), (*link).clone()));
            continue;
        }
        if depth + 1 >= MAX_DEPTH {
            return Err(DagError::ShardTooDeep(
                group.iter().map(|e| e.0.to_string()).collect(),
            ));
        }
        let child = shard(params, group, depth + 1, blocks)?;
        links.push((format!("{slot:02X}"), child));
    }
    let (block, link) = params.hamt_node(&links, &bitfield(slots), HASH_MURMUR3, FANOUT as u64);
    blocks.push(block);
    Ok(link)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// github.com/spaolacci/murmur3 v1.1.0 `New64()`, `Write(name)`, `Sum(nil)`, as boxo
    /// calls it (computed with that Go module).
    #[test]
    fn murmur3_matches_go() {
        let cases = [
            ("", "0000000000000000"),
            ("a", "85555565f6597889"),
            ("hello", "cbd8a7b341bd9b02"),
            ("file-00001.txt", "f713ed954b320baa"),
            ("0123456789abcdef", "4be06d94cf4ad1a7"),
            ("0123456789abcdefX", "cdebd2acb570d6f7"),
            (
                "a much longer name with spaces and ünïcode.bin",
                "131d11e0dc78b2e8",
            ),
        ];
        for (name, want) in cases {
            let got: String = hash(name).iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(got, want, "{name:?}");
        }
    }

    /// go-bitfield: bit i is bit i%8 of byte len-1-i/8; `Bytes()` drops leading zeros.
    #[test]
    fn bitfield_layout() {
        assert_eq!(bitfield([0]), vec![1]);
        assert_eq!(bitfield([0, 9]), vec![2, 1]);
        assert_eq!(bitfield([255]).len(), 32);
        assert_eq!(bitfield([255])[0], 0x80);
        assert_eq!(bitfield(0..FANOUT), vec![0xff; 32]);
        assert!(bitfield([]).is_empty());
    }

    #[test]
    fn threshold_is_strictly_greater() {
        assert!(!needs_sharding(SHARDING_SIZE));
        assert!(needs_sharding(SHARDING_SIZE + 1));
        assert_eq!(estimate([("ab", 34), ("c", 36)]), 73);
    }

    #[test]
    fn listing_follows_the_hashes() {
        // hello cb…, a 85…, file-00001.txt f7…
        assert_eq!(
            listing_order(["hello", "file-00001.txt", "a"]),
            vec!["a", "hello", "file-00001.txt"]
        );
    }

    /// The files of `tests/hamt_kubo.rs`'s threshold cases: `n` one-chunk files named
    /// with exactly `len` bytes (the last `len + extra`).
    fn fixed_entries(p: DagParams, n: usize, len: usize, extra: usize) -> Vec<(String, Link)> {
        (0..n)
            .map(|i| {
                let want = if i + 1 == n { len + extra } else { len };
                let mut name = format!("f{i:05}-");
                while name.len() < want {
                    name.push((b'a' + (name.len() % 26) as u8) as char);
                }
                let mut f = crate::add::dag::FileBuilder::new(p);
                f.push(format!("entry {i}\n").as_bytes()).unwrap();
                let (_, link) = f.finish().unwrap();
                (name, link)
            })
            .collect()
    }

    /// Links of a dag-pb node as (name, CID bytes), and its Data field.
    fn pb_links(block: &[u8]) -> (Vec<(String, Vec<u8>)>, Vec<u8>) {
        fn varint(b: &[u8], i: &mut usize) -> u64 {
            let (mut v, mut shift) = (0u64, 0);
            loop {
                let byte = b[*i];
                *i += 1;
                v |= u64::from(byte & 0x7f) << shift;
                if byte < 0x80 {
                    return v;
                }
                shift += 7;
            }
        }
        fn fields(b: &[u8]) -> Vec<(u64, Vec<u8>)> {
            let (mut i, mut out) = (0, Vec::new());
            while i < b.len() {
                let key = varint(b, &mut i);
                if key & 7 == 0 {
                    let v = varint(b, &mut i);
                    out.push((key >> 3, v.to_be_bytes().to_vec()));
                } else {
                    let len = varint(b, &mut i) as usize;
                    out.push((key >> 3, b[i..i + len].to_vec()));
                    i += len;
                }
            }
            out
        }
        let mut links = Vec::new();
        let mut data = Vec::new();
        for (f, v) in fields(block) {
            if f == 2 {
                let lf = fields(&v);
                let hash = lf.iter().find(|x| x.0 == 1).unwrap().1.clone();
                let name = lf.iter().find(|x| x.0 == 2).unwrap().1.clone();
                links.push((String::from_utf8(name).unwrap(), hash));
            } else if f == 1 {
                data = v;
            }
        }
        (links, data)
    }

    /// Kubo 0.43.0 `ipfs add -r -n` of these directories (the threshold cases of
    /// `tests/hamt_kubo.rs`, which also compares them live): exactly at 256 KiB stays a
    /// basic directory, one byte more is a HAMT.
    #[test]
    fn threshold_vectors_from_kubo() {
        let v0 = DagParams::default();
        let v1 = DagParams {
            cid_version: 1,
            raw_leaves: true,
            ..Default::default()
        };
        let cases = [
            (v0, 30, 0, "QmY6uPZNvDhKB2XbqWAkjCfPVbCmYWQ9ZiMt26HaKA9hyp"),
            (v0, 30, 1, "QmXU8VpZbPVM5qFJd7adTqXfcwEYXqc1L4x1yL9aXhkzMq"),
            (
                v1,
                28,
                0,
                "bafybeieai2lw4vkhs6nutljjz4sdov5bw3xkivzbbgbsnvon7oj6njbl7u",
            ),
            (
                v1,
                28,
                1,
                "bafybeihehicrzukfj62mdq2niivlwodfgtuvptqctxadcf6l7pi3mjgsui",
            ),
        ];
        for (p, len, extra, want) in cases {
            let entries = fixed_entries(p, 4096, len, extra);
            let (blocks, root) = directory(&p, &entries).unwrap();
            assert_eq!(root.cid.to_string(), want, "{len}+{extra}");
            assert_eq!(blocks.len() > 1, extra > 0, "sharded only above");
            assert_eq!(blocks.last().unwrap().cid, root.cid, "root last");
            assert_eq!(
                root.tsize,
                blocks.iter().map(|b| b.data.len() as u64).sum::<u64>()
                    + entries.iter().map(|(_, l)| l.tsize).sum::<u64>(),
                "tsize: every shard block plus the entries"
            );
        }
    }

    /// The layout of a sharded root: slot-prefixed names in slot order, sub-shards named
    /// by their slot alone, each entry's hash byte matching its slot, and the UnixFS data.
    #[test]
    fn shard_layout() {
        let p = DagParams::default();
        let entries = fixed_entries(p, 4096, 30, 1);
        let (blocks, root) = directory(&p, &entries).unwrap();
        let (links, data) = pb_links(&blocks.last().unwrap().data);
        assert_eq!(root.cid, blocks.last().unwrap().cid);
        // Type 5, Data = bitfield, hashType 0x22, fanout 256.
        let mut want = vec![0x08, 0x05, 0x12];
        let bf = bitfield(
            links
                .iter()
                .map(|(n, _)| usize::from_str_radix(&n[..2], 16).unwrap()),
        );
        want.push(bf.len() as u8);
        want.extend_from_slice(&bf);
        want.extend_from_slice(&[0x28, 0x22, 0x30, 0x80, 0x02]);
        assert_eq!(data, want);
        let slots: Vec<&str> = links.iter().map(|(n, _)| &n[..2]).collect();
        let mut sorted = slots.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(slots, sorted, "one link per slot, in slot order");
        assert!(slots.iter().all(|s| s
            .chars()
            .all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c))));
        let (mut leaves, mut subs) = (0, 0);
        for (name, _) in &links {
            if name.len() == 2 {
                subs += 1;
            } else {
                leaves += 1;
                let slot = u8::from_str_radix(&name[..2], 16).unwrap();
                assert_eq!(hash(&name[2..])[0], slot, "{name}");
            }
        }
        // 4096 names in 256 slots: most slots hold several (sub-shards).
        assert!(
            subs > 200 && subs + leaves == links.len(),
            "{subs} {leaves}"
        );
        // Every entry is reachable exactly once through the shards.
        let by_cid: std::collections::HashMap<Vec<u8>, &Block> =
            blocks.iter().map(|b| (b.cid.to_bytes(), b)).collect();
        let mut found = Vec::new();
        let mut todo = vec![root.cid.to_bytes()];
        while let Some(c) = todo.pop() {
            for (name, cid) in pb_links(&by_cid[&c].data).0 {
                if name.len() == 2 {
                    todo.push(cid);
                } else {
                    found.push(name[2..].to_string());
                }
            }
        }
        found.sort();
        let mut names: Vec<String> = entries.iter().map(|(n, _)| n.clone()).collect();
        names.sort();
        assert_eq!(found, names);
    }

    #[test]
    fn same_hash_twice_is_an_error() {
        let p = DagParams::default();
        let mut entries = fixed_entries(p, 2, 10, 0);
        entries[1].0 = entries[0].0.clone();
        assert!(build(&p, &entries)
            .unwrap_err()
            .to_string()
            .contains("given twice"));
        // Two names whose 64-bit hashes are equal (crafted here; murmur3 is not
        // collision-resistant): an error as boxo's, not a panic.
        let same = [7u8; 8];
        let hashed = [("x", same, &entries[0].1), ("y", same, &entries[1].1)];
        let err = shard(&p, &hashed, 0, &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("sharded directory too deep"), "{err}");
    }
}
