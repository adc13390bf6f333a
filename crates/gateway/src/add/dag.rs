//! UnixFS DAG building as Kubo's `ipfs add` does it, so CIDs match for the same
//! parameters: the chunkers of `chunker.rs` (size, rabin, buzhash), the balanced layout
//! (174 links per node) and the trickle layout (174 leaves, then 4 subtrees per depth),
//! dag-pb leaves (CIDv0 default) or raw leaves, CIDv0/v1, the multihash functions Kubo
//! stores blocks for, and directories (basic, or HAMT-sharded past boxo's threshold:
//! `hamt.rs`). Blocks are handed to a sink as they are made, so memory stays at one
//! chunk plus one row of links per tree level.

use bytes::Bytes;

use crate::add::chunker::{ChunkerError, ChunkerSpec, Splitter, BLOCK_SIZE_LIMIT};

/// Kubo's balanced and trickle layouts: links per internal node.
pub const MAX_LINKS: usize = 174;
/// Trickle: subtrees of each depth under a node.
const DEPTH_REPEAT: usize = 4;

const DAG_PB: u64 = 0x70;
const RAW: u64 = 0x55;

/// A multihash function for `hash=` (go-multihash's names; only those Kubo's blockstore
/// accepts, so every block we make can be stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashFn {
    Sha1,
    Sha2_256,
    Sha2_512,
    Sha3_224,
    Sha3_256,
    Sha3_384,
    Sha3_512,
    Keccak256,
    Keccak512,
    Shake256,
    DblSha2_256,
    Blake3,
    /// blake2b with this many output bytes (20..=64).
    Blake2b(u8),
    Blake2s256,
}

/// Why a DAG cannot be built: its parameters (in upstream's words where upstream has
/// them), its chunker, or its directory entries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DagError {
    #[error("bad CID Version: unknown CID version: {0}")]
    CidVersion(i32),
    #[error("a CIDv0 can only use sha2-256; with hash={0} use cid-version=1")]
    CidV0Hash(String),
    #[error("cannot wrap a CAR file upload")]
    WrapCar,
    #[error("hash function name not known")]
    UnknownHash,
    #[error("hash function {0} cannot be used to add content (IPFS does not store blocks hashed with it): use sha2-256, sha2-512, sha3-224/256/384/512, keccak-256/512, shake-256, dbl-sha2-256, sha1, blake3, blake2b-160..512 or blake2s-256")]
    UnusableHash(String),
    #[error(transparent)]
    Chunker(#[from] ChunkerError),
    #[error("directory entry {0:?} given twice")]
    DuplicateEntry(String),
    /// boxo: "sharded directory too deep" (two names with the same 64-bit hash).
    #[error("sharded directory too deep: the names {0:?} have the same murmur3 hash")]
    ShardTooDeep(Vec<String>),
}

impl HashFn {
    /// By go-multihash name, case-insensitively. Unknown names get upstream's text;
    /// names go-multihash knows but Kubo refuses or nobody implements get our own.
    pub fn from_name(name: &str) -> Result<Self, DagError> {
        let n = name.to_ascii_lowercase();
        Ok(match n.as_str() {
            "sha1" => Self::Sha1,
            "sha2-256" => Self::Sha2_256,
            "sha2-512" => Self::Sha2_512,
            "sha3-224" => Self::Sha3_224,
            "sha3-256" => Self::Sha3_256,
            "sha3-384" => Self::Sha3_384,
            "sha3" | "sha3-512" => Self::Sha3_512,
            "keccak-256" => Self::Keccak256,
            "keccak-512" => Self::Keccak512,
            "shake-256" => Self::Shake256,
            "dbl-sha2-256" => Self::DblSha2_256,
            "blake3" => Self::Blake3,
            "blake2s-256" => Self::Blake2s256,
            _ => {
                if let Some(bits) = n
                    .strip_prefix("blake2b-")
                    .and_then(|b| b.parse::<u32>().ok())
                {
                    if bits % 8 == 0 && (160..=512).contains(&bits) {
                        return Ok(Self::Blake2b((bits / 8) as u8));
                    }
                }
                let known = matches!(
                    n.as_str(),
                    "identity"
                        | "md5"
                        | "keccak-224"
                        | "keccak-384"
                        | "shake-128"
                        | "x11"
                        | "murmur3-x64-64"
                        | "sha2-256-trunc254-padded"
                        | "poseidon-bls12_381-a2-fc1"
                ) || n.starts_with("blake2b-")
                    || n.starts_with("blake2s-");
                if known {
                    return Err(DagError::UnusableHash(name.to_string()));
                }
                return Err(DagError::UnknownHash);
            }
        })
    }

    /// The go-multihash name (what Kubo's `block/put?mhtype=` takes).
    pub fn name(self) -> String {
        match self {
            Self::Sha1 => "sha1".into(),
            Self::Sha2_256 => "sha2-256".into(),
            Self::Sha2_512 => "sha2-512".into(),
            Self::Sha3_224 => "sha3-224".into(),
            Self::Sha3_256 => "sha3-256".into(),
            Self::Sha3_384 => "sha3-384".into(),
            Self::Sha3_512 => "sha3-512".into(),
            Self::Keccak256 => "keccak-256".into(),
            Self::Keccak512 => "keccak-512".into(),
            Self::Shake256 => "shake-256".into(),
            Self::DblSha2_256 => "dbl-sha2-256".into(),
            Self::Blake3 => "blake3".into(),
            Self::Blake2b(n) => format!("blake2b-{}", n as u32 * 8),
            Self::Blake2s256 => "blake2s-256".into(),
        }
    }

    /// The function of a multihash code, when it is one of ours.
    pub fn from_code(code: u64) -> Option<Self> {
        Some(match code {
            0x11 => Self::Sha1,
            0x12 => Self::Sha2_256,
            0x13 => Self::Sha2_512,
            0x14 => Self::Sha3_512,
            0x15 => Self::Sha3_384,
            0x16 => Self::Sha3_256,
            0x17 => Self::Sha3_224,
            0x19 => Self::Shake256,
            0x1b => Self::Keccak256,
            0x1d => Self::Keccak512,
            0x1e => Self::Blake3,
            0x56 => Self::DblSha2_256,
            0xb260 => Self::Blake2s256,
            c if (0xb214..=0xb240).contains(&c) => Self::Blake2b((c - 0xb200) as u8),
            _ => return None,
        })
    }

    /// The multicodec code.
    pub fn code(self) -> u64 {
        match self {
            Self::Sha1 => 0x11,
            Self::Sha2_256 => 0x12,
            Self::Sha2_512 => 0x13,
            Self::Sha3_512 => 0x14,
            Self::Sha3_384 => 0x15,
            Self::Sha3_256 => 0x16,
            Self::Sha3_224 => 0x17,
            Self::Shake256 => 0x19,
            Self::Keccak256 => 0x1b,
            Self::Keccak512 => 0x1d,
            Self::Blake3 => 0x1e,
            Self::DblSha2_256 => 0x56,
            Self::Blake2b(n) => 0xb200 + n as u64,
            Self::Blake2s256 => 0xb260,
        }
    }

    /// The digest at the function's default length (go-multihash `Sum(data, code, -1)`).
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        use sha2::Digest;
        match self {
            Self::Sha1 => sha1::Sha1::digest(data).to_vec(),
            Self::Sha2_256 => ring::digest::digest(&ring::digest::SHA256, data)
                .as_ref()
                .to_vec(),
            Self::Sha2_512 => ring::digest::digest(&ring::digest::SHA512, data)
                .as_ref()
                .to_vec(),
            Self::Sha3_224 => sha3::Sha3_224::digest(data).to_vec(),
            Self::Sha3_256 => sha3::Sha3_256::digest(data).to_vec(),
            Self::Sha3_384 => sha3::Sha3_384::digest(data).to_vec(),
            Self::Sha3_512 => sha3::Sha3_512::digest(data).to_vec(),
            Self::Keccak256 => sha3::Keccak256::digest(data).to_vec(),
            Self::Keccak512 => sha3::Keccak512::digest(data).to_vec(),
            Self::Shake256 => {
                use sha3::digest::{ExtendableOutput, Update, XofReader};
                let mut h = sha3::Shake256::default();
                h.update(data);
                let mut out = vec![0u8; 64];
                h.finalize_xof().read(&mut out);
                out
            }
            Self::DblSha2_256 => {
                let once = ring::digest::digest(&ring::digest::SHA256, data);
                ring::digest::digest(&ring::digest::SHA256, once.as_ref())
                    .as_ref()
                    .to_vec()
            }
            Self::Blake3 => blake3::hash(data).as_bytes().to_vec(),
            Self::Blake2b(n) => {
                use blake2::digest::{Update, VariableOutput};
                let mut h = blake2::Blake2bVar::new(n as usize).expect("20..=64 bytes");
                h.update(data);
                let mut out = vec![0u8; n as usize];
                h.finalize_variable(&mut out).expect("sized buffer");
                out
            }
            Self::Blake2s256 => blake2::Blake2s256::digest(data).to_vec(),
        }
    }
}

/// How file chunks are arranged under the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    #[default]
    Balanced,
    Trickle,
}

/// How blocks are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DagParams {
    pub chunker: ChunkerSpec,
    pub raw_leaves: bool,
    pub cid_version: u64,
    pub hash: HashFn,
    pub layout: Layout,
}

impl Default for DagParams {
    fn default() -> Self {
        Self {
            chunker: ChunkerSpec::default(),
            raw_leaves: false,
            cid_version: 0,
            hash: HashFn::Sha2_256,
            layout: Layout::Balanced,
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

fn make_cid(hash: HashFn, version: u64, codec: u64, data: &[u8]) -> cid::Cid {
    let mh = cid::multihash::Multihash::<64>::wrap(hash.code(), &hash.digest(data))
        .expect("digests are at most 64 bytes");
    if version == 0 && codec == DAG_PB && hash == HashFn::Sha2_256 {
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

const UNIXFS_RAW: u64 = 0;
const UNIXFS_DIRECTORY: u64 = 1;
const UNIXFS_FILE: u64 = 2;
const UNIXFS_SYMLINK: u64 = 4;
const UNIXFS_HAMT_SHARD: u64 = 5;

impl DagParams {
    fn pb_block(&self, bytes: Vec<u8>) -> Block {
        let cid = make_cid(self.hash, self.cid_version, DAG_PB, &bytes);
        Block {
            cid,
            data: Bytes::from(bytes),
        }
    }

    /// A leaf over one chunk: raw, or a dag-pb UnixFS node of `kind` (File in the
    /// balanced layout, Raw in the trickle one, as boxo makes them).
    fn leaf(&self, chunk: &[u8], kind: u64) -> (Block, Link) {
        if self.raw_leaves {
            let cid = make_cid(self.hash, 1, RAW, chunk);
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
        let node = pb_node(&[], &unixfs_data(kind, data, Some(chunk.len() as u64), &[]));
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

    /// A basic UnixFS directory over named entries (links sorted by name, as go-merkledag
    /// does); `hamt::directory` chooses it or a HAMT shard trie, as boxo's adder does.
    pub fn basic_directory(&self, entries: &[(String, Link)]) -> (Block, Link) {
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

    /// One HAMT shard node: `links` already named and in slot order, `bitfield` the
    /// slots in use (go-bitfield bytes). UnixFS data: Type, Data, hashType, fanout.
    pub(crate) fn hamt_node(
        &self,
        links: &[(String, Link)],
        bitfield: &[u8],
        hash_type: u64,
        fanout: u64,
    ) -> (Block, Link) {
        let mut data = Vec::new();
        field_varint(&mut data, 1, UNIXFS_HAMT_SHARD);
        if !bitfield.is_empty() {
            field_bytes(&mut data, 2, bitfield);
        }
        field_varint(&mut data, 5, hash_type);
        field_varint(&mut data, 6, fanout);
        let named: Vec<(&str, &Link)> = links.iter().map(|(n, l)| (n.as_str(), l)).collect();
        let block = self.pb_block(pb_node(&named, &data));
        let tsize = block.data.len() as u64 + links.iter().map(|(_, l)| l.tsize).sum::<u64>();
        let link = Link {
            cid: block.cid,
            tsize,
            filesize: 0,
        };
        (block, link)
    }

    /// The byte length of the CIDs these parameters give dag-pb nodes (directories), which
    /// is what a subdirectory adds to its parent's sharding estimate.
    pub fn dag_pb_cid_len(&self) -> usize {
        make_cid(self.hash, self.cid_version, DAG_PB, b"").encoded_len()
    }
}

/// Builds one file: feed bytes, get blocks as they are completed, then `finish`.
pub struct FileBuilder {
    params: DagParams,
    splitter: Splitter,
    shape: Shape,
    leaves: u64,
}

enum Shape {
    /// levels[0] = leaves waiting for a parent, levels[1] = level-1 nodes, ...
    Balanced { levels: Vec<Vec<Link>> },
    /// The open trickle nodes, root first.
    Trickle { stack: Vec<TrickleNode> },
}

/// A trickle node being filled: its leaves (up to MAX_LINKS), then subtrees of depth
/// 1, 2, ... (DEPTH_REPEAT of each) up to `max_depth` (None for the root: unbounded).
struct TrickleNode {
    links: Vec<Link>,
    max_depth: Option<usize>,
    /// Depth and index of the next subtree to add.
    depth: usize,
    repeat: usize,
}

impl TrickleNode {
    fn new(max_depth: Option<usize>) -> Self {
        Self {
            links: Vec::new(),
            max_depth,
            depth: 1,
            repeat: 0,
        }
    }
}

impl FileBuilder {
    pub fn new(params: DagParams) -> Self {
        let shape = match params.layout {
            Layout::Balanced => Shape::Balanced {
                levels: vec![Vec::new()],
            },
            Layout::Trickle => Shape::Trickle {
                stack: vec![TrickleNode::new(None)],
            },
        };
        Self {
            params,
            splitter: Splitter::new(params.chunker),
            shape,
            leaves: 0,
        }
    }

    /// Adds data; returns the blocks completed by it (in the order they must be stored).
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<Block>, DagError> {
        let mut chunks = Vec::new();
        self.splitter.push(data, &mut chunks)?;
        let mut out = Vec::new();
        for c in chunks {
            self.add_leaf(&c, &mut out)?;
        }
        Ok(out)
    }

    fn add_leaf(&mut self, chunk: &[u8], out: &mut Vec<Block>) -> Result<(), DagError> {
        if chunk.len() > BLOCK_SIZE_LIMIT {
            return Err(ChunkerError::ObjectTooLarge.into());
        }
        self.leaves += 1;
        match &mut self.shape {
            Shape::Balanced { levels } => {
                let (block, link) = self.params.leaf(chunk, UNIXFS_FILE);
                out.push(block);
                balanced_push(&self.params, levels, 0, link, out);
            }
            Shape::Trickle { stack } => {
                let (block, link) = self.params.leaf(chunk, UNIXFS_RAW);
                out.push(block);
                trickle_place(&self.params, stack, link, out);
            }
        }
        Ok(())
    }

    /// Completes the file: the remaining blocks and the root link.
    pub fn finish(mut self) -> Result<(Vec<Block>, Link), DagError> {
        let mut out = Vec::new();
        let mut chunks = Vec::new();
        self.splitter.finish(&mut chunks);
        for c in chunks {
            self.add_leaf(&c, &mut out)?;
        }
        let root = match self.shape {
            Shape::Balanced { ref mut levels } => {
                if self.leaves == 0 {
                    // An empty file is one empty leaf.
                    let (block, link) = self.params.leaf(&[], UNIXFS_FILE);
                    out.push(block);
                    link
                } else {
                    balanced_finish(&self.params, levels, &mut out)
                }
            }
            Shape::Trickle { mut stack } => loop {
                let node = stack.pop().expect("the root stays until the end");
                let (b, l) = self.params.internal(&node.links);
                out.push(b);
                match stack.last_mut() {
                    Some(parent) => trickle_attach(parent, l),
                    None => break l,
                }
            },
        };
        Ok((out, root))
    }
}

/// Adds a link to a balanced level. A full row of MAX_LINKS becomes a parent only once a
/// further link arrives (a file of exactly MAX_LINKS leaves has them all under the root),
/// cascading upwards.
fn balanced_push(
    params: &DagParams,
    levels: &mut Vec<Vec<Link>>,
    level: usize,
    link: Link,
    out: &mut Vec<Block>,
) {
    if levels.len() == level {
        levels.push(Vec::new());
    }
    levels[level].push(link);
    if levels[level].len() > MAX_LINKS {
        let extra = levels[level].pop().expect("len > MAX_LINKS");
        let full: Vec<Link> = std::mem::replace(&mut levels[level], vec![extra]);
        let (b, l) = params.internal(&full);
        out.push(b);
        balanced_push(params, levels, level + 1, l, out);
    }
}

fn balanced_finish(params: &DagParams, levels: &mut Vec<Vec<Link>>, out: &mut Vec<Block>) -> Link {
    // A single leaf is the root. Otherwise close every level bottom-up.
    if levels.len() == 1 && levels[0].len() == 1 {
        return levels[0].pop().expect("one leaf");
    }
    let mut level = 0;
    loop {
        let row = std::mem::take(&mut levels[level]);
        let is_top = level + 1 == levels.len();
        if !row.is_empty() {
            let (b, l) = params.internal(&row);
            out.push(b);
            if is_top {
                return l;
            }
            balanced_push(params, levels, level + 1, l, out);
        }
        level += 1;
    }
}

/// A finished subtree joins its parent, which moves on to its next subtree slot.
fn trickle_attach(parent: &mut TrickleNode, link: Link) {
    parent.links.push(link);
    parent.repeat += 1;
    if parent.repeat == DEPTH_REPEAT {
        parent.repeat = 0;
        parent.depth += 1;
    }
}

/// Where boxo's recursive trickle builder would put the next leaf: the open node takes
/// leaves until it has MAX_LINKS; then it opens its next subtree, or, when it has all
/// the subtrees its depth allows, it is complete and its parent continues.
fn trickle_place(
    params: &DagParams,
    stack: &mut Vec<TrickleNode>,
    leaf: Link,
    out: &mut Vec<Block>,
) {
    loop {
        let top = stack.last_mut().expect("the root stays until the end");
        if top.links.len() < MAX_LINKS {
            top.links.push(leaf);
            return;
        }
        match top.max_depth {
            Some(max) if top.depth >= max => {
                let done = stack.pop().expect("non-empty");
                let (b, l) = params.internal(&done.links);
                out.push(b);
                trickle_attach(stack.last_mut().expect("a subtree has a parent"), l);
            }
            _ => {
                let depth = top.depth;
                stack.push(TrickleNode::new(Some(depth)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(data: &[u8], p: DagParams) -> (Vec<Block>, Link) {
        let mut f = FileBuilder::new(p);
        let mut blocks = f.push(data).unwrap();
        let (more, root) = f.finish().unwrap();
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
        let (_, dir) = crate::add::hamt::directory(&DagParams::default(), &[]).unwrap();
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
            chunker: ChunkerSpec::Size(4),
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
            n += f.push(piece).unwrap().len();
        }
        let (more, root2) = f.finish().unwrap();
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
            chunker: ChunkerSpec::Size(chunk_size),
            cid_version,
            raw_leaves,
            ..Default::default()
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
        let (_, sub) = crate::add::hamt::directory(&p, &[("y.txt".into(), y)]).unwrap();
        assert_eq!(
            sub.cid.to_string(),
            "QmeJT5xC6bnZacuKAKBuWJcGcM5BK9J66bB36GyhTRPafq"
        );
        let (_, d) =
            crate::add::hamt::directory(&p, &[("x.txt".into(), x), ("sub".into(), sub)]).unwrap();
        assert_eq!(
            d.cid.to_string(),
            "QmQ8YpKXWj8X64mETDUJF6ZUXipFNyyQYhYK5ZvWHZZHhg"
        );
    }

    /// The harness's deterministic content (tests/compat.rs `content`).
    fn lcg_content(seed: u64, len: usize) -> Vec<u8> {
        let step = |x: u64| {
            x.wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407)
        };
        let mut x = step(seed);
        (0..len)
            .map(|_| {
                x = step(x);
                (x >> 33) as u8
            })
            .collect()
    }

    /// Expected CIDs from Kubo 0.43.0 `ipfs add -n` of 600 000 LCG bytes (the same
    /// content as the compat harness, where upstream v1.1.6 gave the same CIDs) with the
    /// layouts, chunkers and hash functions beyond size/sha2-256.
    #[test]
    fn matches_kubo_layouts_chunkers_hashes() {
        let data = lcg_content(7, 600_000);
        let p = |chunker: &str, layout: Layout, v: u64, raw: bool, hash: &str| DagParams {
            chunker: ChunkerSpec::parse(chunker).unwrap(),
            raw_leaves: raw,
            cid_version: v,
            hash: HashFn::from_name(hash).unwrap(),
            layout,
        };
        use Layout::{Balanced as B, Trickle as T};
        let cases = [
            (p("", T, 0, false, "sha2-256"), "Qmeqip43g73thEyR32KCTWKedJLLEWkJZQPA6E1ptS3TyV"),
            (p("rabin", B, 0, false, "sha2-256"), "QmQNafeMKTweGGBRaCwYeMLkdfxyFuwCJgFRs4D7GMRamq"),
            (p("rabin-16-32-64", B, 0, false, "sha2-256"), "QmW9gihL65pTbF6xQiDftdP5ntUQovcTGMpiAk3EyeGFrD"),
            (p("buzhash", B, 0, false, "sha2-256"), "QmZ2xMDpWjsT5NFWK1W7TB7zSTJvRb88G1fEXvWZdRgGHy"),
            (p("", B, 1, true, "blake2b-256"), "bafykbzacebhwlhuv434rc7dd4wweqfzsqskhlffo24a4hv6kwgot5nzql6exq"),
            (p("size-64", T, 0, false, "sha2-256"), "QmR5VJF7MP7QYLRTMs9ne6teRLuB191T7ck8BS7PHRtmJr"),
            (p("size-64", T, 0, true, "sha2-256"), "Qmen5JsZK91tt4VvPHebkcHLdVk6WGzx29XWxRGQUR1zGu"),
            (p("size-64", T, 1, true, "sha3-256"), "bafybmie2pkrctctxftmte3yoxcgohbknfg2re5rikp75ldjl4hrknr7uqi"),
            (p("", B, 1, false, "sha2-512"), "bafybgqhncuimoitgwpmfqd7nhy5lfm35jrs7t3ydcb4psv3dkxslucxb6fx5m33tvqxkiuxfxalcz2y27jkscfi7zkuvr76tkfrfdigk2x6lw"),
            (p("rabin-100000", B, 1, true, "blake3"), "bafyb4idlonykrgmulupmpbmn2saspbw2h3dmke3qq5r5eoro4ynnmgthfy"),
            (p("size-100000", B, 1, true, "keccak-256"), "bafybwifllr7er3j4papmbm52jrqdkyehcas5jlkivtio2pqywsci5gch2a"),
            (p("", B, 1, true, "shake-256"), "bafybsqfcylvk7pqp7dceelsqzaemipwrqkxylg6cus7rqhcnf7srutzla2ohysqie4llv64k2sydzx22p54ztx55w23nczwyvbzdswh6mwqsy"),
            (p("", B, 1, true, "dbl-sha2-256"), "bafyfmicbywidptpbfimczex6apktuxo47m2d6u56tfoffc7hbisw6io5ty"),
            (p("", B, 1, true, "blake2b-160"), "bafyjjzaccthcieavh3ceyiz6csf2xepkpec2l53lm4"),
            (p("", B, 1, true, "blake2s-256"), "bafyobzaceahx6snbgp73y67wvogawhwvh45z4kkmjcyusji5fu7nicpi7y2gc"),
            (p("", B, 1, true, "sha1"), "bafybcffw3e5mmwjneiimd2xs6gelynxfbrac7lq"),
            (p("", B, 1, true, "sha3-224"), "bafybohb3hc6j6xnsnrnag7d4jqhqazrasjciimxzczh2g3iku3nq"),
            (p("", T, 1, true, "sha3-384"), "bafybkmehyrbqb4gppzprtsbo2dp5tz2tarnv35o3nfx6og5w6qndzxoyuvc5rct7gfvxj6hlenzov3tdlo7a"),
            (p("", B, 1, true, "sha3"), "bafybiqc6x6x6qtlg3tgo2igrhtqu6w4bkx67pbrrdt5fmzyjfj2sqna7to3k3swftd3uirahjbbxkmj56wxxhpnwvzgd2geywynf5sbqx62co"),
            (p("", B, 1, true, "keccak-512"), "bafyb2qdwz5ipvzz6ouuprpwtgvxcfzmtgvvhoppqrhhd3g2qyewopohtr5cbjxqt6jceiwqjwmdy35u4mxxcjgk7vburqxlr44sh24bg5ena2"),
        ];
        for (params, want) in cases {
            let (blocks, root) = add(&data, params);
            assert_eq!(root.cid.to_string(), want, "{params:?}");
            assert_eq!(
                root.tsize,
                blocks.iter().map(|b| b.data.len() as u64).sum::<u64>(),
                "{params:?}: tsize is the DAG's size"
            );
        }
        // Edge cases: empty and one-chunk files in trickle; buzhash on zeros.
        let t = p("", T, 0, false, "sha2-256");
        assert_eq!(
            add(b"", t).1.cid.to_string(),
            "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
        );
        let raw_t = DagParams {
            raw_leaves: true,
            ..t
        };
        assert_eq!(
            add(b"", raw_t).1.cid.to_string(),
            "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
        );
        assert_eq!(
            add(b"hello\n", t).1.cid.to_string(),
            "QmcFUHo1DBpydnTSeuXszKgQqnXQCJq6Wu1BUdzEfuRahM"
        );
        let zeros = vec![0u8; 1_200_000];
        let bz = p("buzhash", B, 0, false, "sha2-256");
        assert_eq!(
            add(&zeros, bz).1.cid.to_string(),
            "QmcUXNS4MkgkPBr5FHtNNvzGm4QzwhZT8nW8QKVxNSZEH4"
        );
        let bz_raw = DagParams {
            raw_leaves: true,
            ..bz
        };
        assert_eq!(
            add(&zeros, bz_raw).1.cid.to_string(),
            "Qma51NvkazAqKBB1TBGMtwbPCW8YnTh6UtzfowKEmGouXz"
        );
    }

    #[test]
    fn hash_names() {
        assert_eq!(
            HashFn::from_name("BLAKE2B-256").unwrap(),
            HashFn::Blake2b(32)
        );
        assert_eq!(
            HashFn::from_name("nope").unwrap_err().to_string(),
            "hash function name not known"
        );
        assert!(HashFn::from_name("md5")
            .unwrap_err()
            .to_string()
            .contains("cannot be used"));
        assert!(HashFn::from_name("blake2b-128")
            .unwrap_err()
            .to_string()
            .contains("cannot be used"));
        for name in [
            "sha1",
            "sha2-512",
            "sha3-256",
            "keccak-512",
            "shake-256",
            "dbl-sha2-256",
            "blake3",
            "blake2b-160",
            "blake2b-512",
            "blake2s-256",
        ] {
            let h = HashFn::from_name(name).unwrap();
            assert_eq!(h.name(), name);
            assert_eq!(HashFn::from_code(h.code()), Some(h));
        }
    }

    #[test]
    fn three_levels_when_two_overflow() {
        let p = DagParams {
            chunker: ChunkerSpec::Size(1),
            raw_leaves: true,
            cid_version: 1,
            ..Default::default()
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
