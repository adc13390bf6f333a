//! UnixFS DAG building as Kubo's `ipfs add` does it, so CIDs match for the same
//! parameters: fixed-size chunks (default 256 KiB), balanced layout (174 links per node),
//! dag-pb leaves (CIDv0 default) or raw leaves, CIDv0/v1, sha2-256, and basic directories.
//! Blocks are handed to a sink as they are made, so memory stays at one chunk plus one
//! row of links per tree level.

use bytes::{Bytes, BytesMut};

/// Kubo's balanced layout: links per internal node.
pub const MAX_LINKS: usize = 174;
/// Kubo refuses chunks above 1 MiB (blocks must fit bitswap's limit).
pub const MAX_CHUNK: usize = 1 << 20;

const DAG_PB: u64 = 0x70;
const RAW: u64 = 0x55;
const SHA2_256: u64 = 0x12;

/// How blocks are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DagParams {
    pub chunk_size: usize,
    pub raw_leaves: bool,
    pub cid_version: u64,
}

impl Default for DagParams {
    fn default() -> Self {
        Self {
            chunk_size: 262_144,
            raw_leaves: false,
            cid_version: 0,
        }
    }
}

/// A finished block.
#[derive(Debug, Clone)]
pub struct Block {
    pub cid: cid::Cid,
    pub data: Bytes,
}

/// A link to a finished node: its CID, cumulative DAG size and UnixFS file size.
#[derive(Debug, Clone)]
pub struct Link {
    pub cid: cid::Cid,
    pub tsize: u64,
    pub filesize: u64,
}

fn varint(buf: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            buf.push(b);
            return;
        }
        buf.push(b | 0x80);
    }
}

fn field_bytes(buf: &mut Vec<u8>, field: u64, data: &[u8]) {
    varint(buf, field << 3 | 2);
    varint(buf, data.len() as u64);
    buf.extend_from_slice(data);
}

fn field_varint(buf: &mut Vec<u8>, field: u64, v: u64) {
    varint(buf, field << 3);
    varint(buf, v);
}

fn sha256_cid(version: u64, codec: u64, data: &[u8]) -> cid::Cid {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let mh = cid::multihash::Multihash::<64>::wrap(SHA2_256, digest.as_ref())
        .expect("a sha2-256 digest fits");
    if version == 0 && codec == DAG_PB {
        cid::Cid::new_v0(mh).expect("sha2-256 dag-pb is a valid CIDv0")
    } else {
        cid::Cid::new_v1(codec, mh)
    }
}

/// UnixFS `Data` message: Type, Data, filesize, blocksizes (proto2, as go-unixfs writes it).
fn unixfs_data(
    kind: u64,
    data: Option<&[u8]>,
    filesize: Option<u64>,
    blocksizes: &[u64],
) -> Vec<u8> {
    let mut b = Vec::new();
    field_varint(&mut b, 1, kind);
    if let Some(d) = data {
        field_bytes(&mut b, 2, d);
    }
    if let Some(f) = filesize {
        field_varint(&mut b, 3, f);
    }
    for s in blocksizes {
        field_varint(&mut b, 4, *s);
    }
    b
}

/// A dag-pb node: links (Hash, Name, Tsize) first, then Data, as the canonical encoding.
fn pb_node(links: &[(&str, &Link)], data: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    for (name, l) in links {
        let mut lb = Vec::new();
        field_bytes(&mut lb, 1, &l.cid.to_bytes());
        field_bytes(&mut lb, 2, name.as_bytes());
        field_varint(&mut lb, 3, l.tsize);
        field_bytes(&mut b, 2, &lb);
    }
    field_bytes(&mut b, 1, data);
    b
}

const UNIXFS_DIRECTORY: u64 = 1;
const UNIXFS_FILE: u64 = 2;
const UNIXFS_SYMLINK: u64 = 4;

impl DagParams {
    fn pb_block(&self, bytes: Vec<u8>) -> Block {
        let cid = sha256_cid(self.cid_version, DAG_PB, &bytes);
        Block {
            cid,
            data: Bytes::from(bytes),
        }
    }

    fn leaf(&self, chunk: &[u8]) -> (Block, Link) {
        if self.raw_leaves {
            let cid = sha256_cid(1, RAW, chunk);
            let link = Link {
                cid,
                tsize: chunk.len() as u64,
                filesize: chunk.len() as u64,
            };
            return (
                Block {
                    cid,
                    data: Bytes::copy_from_slice(chunk),
                },
                link,
            );
        }
        let data = (!chunk.is_empty()).then_some(chunk);
        let node = pb_node(
            &[],
            &unixfs_data(UNIXFS_FILE, data, Some(chunk.len() as u64), &[]),
        );
        let block = self.pb_block(node);
        let link = Link {
            cid: block.cid,
            tsize: block.data.len() as u64,
            filesize: chunk.len() as u64,
        };
        (block, link)
    }

    fn internal(&self, children: &[Link]) -> (Block, Link) {
        let filesize: u64 = children.iter().map(|c| c.filesize).sum();
        let sizes: Vec<u64> = children.iter().map(|c| c.filesize).collect();
        let links: Vec<(&str, &Link)> = children.iter().map(|c| ("", c)).collect();
        let block = self.pb_block(pb_node(
            &links,
            &unixfs_data(UNIXFS_FILE, None, Some(filesize), &sizes),
        ));
        let tsize = block.data.len() as u64 + children.iter().map(|c| c.tsize).sum::<u64>();
        let link = Link {
            cid: block.cid,
            tsize,
            filesize,
        };
        (block, link)
    }

    /// A UnixFS symlink node whose data is the target path.
    pub fn symlink(&self, target: &str) -> (Block, Link) {
        let block = self.pb_block(pb_node(
            &[],
            &unixfs_data(UNIXFS_SYMLINK, Some(target.as_bytes()), None, &[]),
        ));
        let link = Link {
            cid: block.cid,
            tsize: block.data.len() as u64,
            filesize: 0,
        };
        (block, link)
    }

    /// A basic UnixFS directory over named entries (sorted by name, as go-merkledag does).
    pub fn directory(&self, entries: &[(String, Link)]) -> (Block, Link) {
        let mut sorted: Vec<&(String, Link)> = entries.iter().collect();
        sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let links: Vec<(&str, &Link)> = sorted.iter().map(|(n, l)| (n.as_str(), l)).collect();
        let block = self.pb_block(pb_node(
            &links,
            &unixfs_data(UNIXFS_DIRECTORY, None, None, &[]),
        ));
        let tsize = block.data.len() as u64 + entries.iter().map(|(_, l)| l.tsize).sum::<u64>();
        let link = Link {
            cid: block.cid,
            tsize,
            filesize: 0,
        };
        (block, link)
    }
}

/// Builds one file: feed bytes, get blocks as they are completed, then `finish`.
pub struct FileBuilder {
    params: DagParams,
    pending: BytesMut,
    /// levels[0] = leaves waiting for a parent, levels[1] = level-1 nodes, ...
    levels: Vec<Vec<Link>>,
    leaves: u64,
}

impl FileBuilder {
    pub fn new(params: DagParams) -> Self {
        Self {
            params,
            pending: BytesMut::new(),
            levels: vec![Vec::new()],
            leaves: 0,
        }
    }

    /// Adds data; returns the blocks completed by it (in the order they must be stored).
    pub fn push(&mut self, mut data: &[u8]) -> Vec<Block> {
        let mut out = Vec::new();
        let cs = self.params.chunk_size;
        while !data.is_empty() {
            let take = (cs - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() == cs {
                let chunk = self.pending.split().freeze();
                self.add_leaf(&chunk, &mut out);
            }
        }
        out
    }

    fn add_leaf(&mut self, chunk: &[u8], out: &mut Vec<Block>) {
        let (block, link) = self.params.leaf(chunk);
        out.push(block);
        self.leaves += 1;
        self.push_link(0, link, out);
    }

    /// Adds a link to a level. A full row of MAX_LINKS becomes a parent only once a
    /// further link arrives (a file of exactly MAX_LINKS leaves has them all under the
    /// root), cascading upwards.
    fn push_link(&mut self, level: usize, link: Link, out: &mut Vec<Block>) {
        if self.levels.len() == level {
            self.levels.push(Vec::new());
        }
        self.levels[level].push(link);
        if self.levels[level].len() > MAX_LINKS {
            let extra = self.levels[level].pop().expect("len > MAX_LINKS");
            let full: Vec<Link> = std::mem::replace(&mut self.levels[level], vec![extra]);
            let (b, l) = self.params.internal(&full);
            out.push(b);
            self.push_link(level + 1, l, out);
        }
    }

    /// Completes the file: the remaining blocks and the root link.
    pub fn finish(mut self) -> (Vec<Block>, Link) {
        let mut out = Vec::new();
        if !self.pending.is_empty() || self.leaves == 0 {
            let chunk = self.pending.split().freeze();
            self.add_leaf(&chunk, &mut out);
        }
        // A single leaf is the root. Otherwise close every level bottom-up.
        if self.levels.len() == 1 && self.levels[0].len() == 1 {
            let root = self.levels[0].pop().expect("one leaf");
            return (out, root);
        }
        let mut level = 0;
        loop {
            let row = std::mem::take(&mut self.levels[level]);
            let is_top = level + 1 == self.levels.len();
            if !row.is_empty() {
                let (b, l) = self.params.internal(&row);
                out.push(b);
                if is_top {
                    return (out, l);
                }
                self.push_link(level + 1, l, &mut out);
            }
            level += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(data: &[u8], p: DagParams) -> (Vec<Block>, Link) {
        let mut f = FileBuilder::new(p);
        let mut blocks = f.push(data);
        let (more, root) = f.finish();
        blocks.extend(more);
        (blocks, root)
    }

    #[test]
    fn known_kubo_cids() {
        let (_, root) = add(b"", DagParams::default());
        assert_eq!(
            root.cid.to_string(),
            "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
        );
        let (_, root) = add(b"hello world\n", DagParams::default());
        assert_eq!(
            root.cid.to_string(),
            "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
        );
        let (_, dir) = DagParams::default().directory(&[]);
        assert_eq!(
            dir.cid.to_string(),
            "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
        );
        let p = DagParams {
            cid_version: 1,
            raw_leaves: true,
            ..Default::default()
        };
        let (blocks, root) = add(b"hello world\n", p);
        assert_eq!(blocks.len(), 1);
        assert_eq!(root.cid.codec(), RAW);
    }

    #[test]
    fn balanced_shape() {
        let p = DagParams {
            chunk_size: 4,
            ..Default::default()
        };
        // 174 leaves: all under one root.
        let (blocks, root) = add(&vec![7u8; 4 * MAX_LINKS], p);
        assert_eq!(blocks.len(), MAX_LINKS + 1);
        assert_eq!(root.filesize, 4 * MAX_LINKS as u64);
        // 175 leaves: root over [node(174 leaves), node(1 leaf)].
        let (blocks, root) = add(&vec![7u8; 4 * (MAX_LINKS + 1)], p);
        assert_eq!(blocks.len(), MAX_LINKS + 1 + 3);
        let top = blocks.last().unwrap();
        assert_eq!(top.cid, root.cid);
        assert_eq!(
            root.tsize,
            blocks.iter().map(|b| b.data.len() as u64).sum::<u64>()
        );
        // Same bytes, same CID, whatever the feeding pattern.
        let mut f = FileBuilder::new(p);
        let mut n = 0;
        for piece in vec![7u8; 4 * (MAX_LINKS + 1)].chunks(3) {
            n += f.push(piece).len();
        }
        let (more, root2) = f.finish();
        assert_eq!((n + more.len(), root2.cid), (blocks.len(), root.cid));
    }

    /// Expected CIDs from Kubo 0.43.0 (`ipfs add -n` with `--chunker=size-N`,
    /// `--cid-version`, `--raw-leaves`; checked again when Kubo's version changes). The
    /// multi-process tests also compare `/add` with the live Kubo node's own add.
    #[test]
    fn matches_kubo() {
        let a: Vec<u8> = (0..262_144 * 3 + 1000).map(|i| (i % 251) as u8).collect();
        let b: Vec<u8> = (0..1024 * 200 + 17)
            .map(|i| ((i * 7) % 253) as u8)
            .collect();
        let k = |chunk_size, cid_version, raw_leaves| DagParams {
            chunk_size,
            cid_version,
            raw_leaves,
        };
        let cases = [
            (
                k(262_144, 0, false),
                "QmaMuznfvPDxKQmt58AWynv98rzyDT2nwQb4mafGJEmKGf",
                "QmdFjoyFcVSojneSnfx7t22jZuhP9kKFtK2pZj2EGoJ1o1",
            ),
            (
                k(262_144, 1, true),
                "zdj7WZ8qgtk2XsRYWZePBQUa5sAX3cqZBLcU1e6vitgFh4SX3",
                "zb2rhodmMkrDtBWozM9YTRvXpVCnThQc3WZkmJzKPR5iRMkDT",
            ),
            (
                k(1024, 0, false),
                "QmXbohREPFNgPUTfX8Jiaio72wjBAaqx29Wvw4NVrfFM3u",
                "QmUjrhKYBXjDu2GUZw4rAr3Loawp8pMt8DWfCqC5rV5mEe",
            ),
            (
                k(1024, 1, true),
                "zdj7WZBJE1WNPczX8YAndUUpDerQkzPyoyte442rxN8cddUyk",
                "zdj7Weuy4e6iuqmCBcCAttmX3T8LaPFEH1GTRD48iQnVqKs9t",
            ),
            (
                k(1024, 0, true),
                "QmULa6cMiaEPXy6wodgp9frjczG8T54YJPyVUnZVPNyUwM",
                "QmbmLbKQe5V4HbGKULRRDuW1x65WH2Cn8mKnboxa18MYsE",
            ),
        ];
        for (p, want_a, want_b) in cases {
            assert_eq!(
                add(&a, p).1.cid,
                cid::Cid::try_from(want_a).unwrap(),
                "{p:?} a"
            );
            assert_eq!(
                add(&b, p).1.cid,
                cid::Cid::try_from(want_b).unwrap(),
                "{p:?} b"
            );
        }
        // `ipfs add -n -r d` with d/x.txt = "hello\n", d/sub/y.txt = "world\n".
        let p = DagParams::default();
        let (_, x) = add(b"hello\n", p);
        let (_, y) = add(b"world\n", p);
        assert_eq!(
            x.cid.to_string(),
            "QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN"
        );
        let (_, sub) = p.directory(&[("y.txt".into(), y)]);
        assert_eq!(
            sub.cid.to_string(),
            "QmeJT5xC6bnZacuKAKBuWJcGcM5BK9J66bB36GyhTRPafq"
        );
        let (_, d) = p.directory(&[("x.txt".into(), x), ("sub".into(), sub)]);
        assert_eq!(
            d.cid.to_string(),
            "QmQ8YpKXWj8X64mETDUJF6ZUXipFNyyQYhYK5ZvWHZZHhg"
        );
    }

    #[test]
    fn three_levels_when_two_overflow() {
        let p = DagParams {
            chunk_size: 1,
            raw_leaves: true,
            cid_version: 1,
        };
        let n = MAX_LINKS * MAX_LINKS + 1;
        let (blocks, root) = add(&vec![1u8; n], p);
        // leaves + 174 full level-1 nodes + 1 partial + level-2: full + partial + root.
        assert_eq!(blocks.len(), n + MAX_LINKS + 1 + 2 + 1);
        assert_eq!(root.filesize, n as u64);
        let (_, root_full) = add(&vec![1u8; MAX_LINKS * MAX_LINKS], p);
        assert_eq!(root_full.filesize, (MAX_LINKS * MAX_LINKS) as u64);
    }
}
