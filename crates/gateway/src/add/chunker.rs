//! Content splitters of `ipfs add` (`chunker=`): fixed size, Rabin fingerprints and
//! buzhash, cutting at exactly the byte offsets Kubo's and upstream's chunkers cut at
//! (boxo's `chunk` package; its Rabin splitter is the restic-derived chunker with IPFS's
//! polynomial). A different cut gives different CIDs, so every constant and every quirk
//! of those state machines (the skipped prefix, the seeded window, the 32-byte buzhash
//! window) is kept. Splitters are fed incrementally, so memory stays at one chunk.

use bytes::{Bytes, BytesMut};

/// Kubo's default chunk size (`size-262144`).
pub const DEFAULT_SIZE: usize = 262_144;
/// The largest chunk a chunker may be configured for: bitswap's 2 MiB block limit less
/// 256 bytes of UnixFS framing (boxo's `ChunkSizeLimit`).
pub const CHUNK_SIZE_LIMIT: usize = 2 * 1024 * 1024 - 256;
/// A leaf larger than this is refused while building (boxo's `BlockSizeLimit`).
pub const BLOCK_SIZE_LIMIT: usize = 2 * 1024 * 1024;

/// A parsed `chunker=` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkerSpec {
    Size(usize),
    Rabin { min: u64, avg: u64, max: u64 },
    Buzhash,
}

impl Default for ChunkerSpec {
    fn default() -> Self {
        Self::Size(DEFAULT_SIZE)
    }
}

/// A chunker string boxo's `chunk.FromString` refuses, in its words (plus the rabin
/// average this gateway refuses, and the chunk over the size limit a chunker met).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkerError {
    #[error("strconv.Atoi: parsing {0:?}: invalid syntax")]
    Syntax(String),
    #[error("strconv.Atoi: parsing {0:?}: value out of range")]
    OutOfRange(String),
    #[error("chunker parameters may not exceed the maximum chunk size of {max}", max = CHUNK_SIZE_LIMIT)]
    OverMaximum,
    #[error("incorrect chunker string format (expected size-{{size}})")]
    SizeFormat,
    #[error("chunker size must be greater than 0")]
    SizeZero,
    #[error("unrecognized chunker option: {0}")]
    Unknown(String),
    #[error("rabin-{0}: the average size must be at least 48 (its minimum, a third of it, must be at least 16)")]
    RabinAverageTooSmall(i64),
    /// A rabin part with the wrong label (`first label must be min`...).
    #[error("{0}")]
    RabinLabel(&'static str),
    #[error("rabin min must be greater than 16")]
    RabinMinTooSmall,
    #[error("incorrect format: rabin-min must be smaller than rabin-avg")]
    RabinMinOverAvg,
    #[error("incorrect format: rabin-avg must be smaller than rabin-max")]
    RabinAvgOverMax,
    #[error("incorrect format (expected 'rabin' 'rabin-[avg]' or 'rabin-[min]-[avg]-[max]'")]
    RabinFormat,
    #[error("object size limit exceeded")]
    ObjectTooLarge,
}

fn atoi(s: &str) -> Result<i64, ChunkerError> {
    // Go's strconv.Atoi accepts an optional sign and decimal digits only.
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ChunkerError::Syntax(s.to_string()));
    }
    s.parse::<i64>()
        .map_err(|_| ChunkerError::OutOfRange(s.to_string()))
}

impl ChunkerSpec {
    /// Parses a chunker string as boxo's `chunk.FromString` does, with its error texts.
    pub fn parse(s: &str) -> Result<Self, ChunkerError> {
        if s.is_empty() || s == "default" {
            return Ok(Self::default());
        }
        let name = s.split('-').next().unwrap_or("");
        match name {
            "size" => {
                let parts: Vec<&str> = s.split('-').collect();
                if parts.len() != 2 {
                    return Err(ChunkerError::SizeFormat);
                }
                let size = atoi(parts[1])?;
                if size <= 0 {
                    return Err(ChunkerError::SizeZero);
                }
                if size > CHUNK_SIZE_LIMIT as i64 {
                    return Err(ChunkerError::OverMaximum);
                }
                Ok(Self::Size(size as usize))
            }
            "buzhash" => Ok(Self::Buzhash),
            "rabin" => Self::parse_rabin(s),
            _ => Err(ChunkerError::Unknown(s.to_string())),
        }
    }

    fn parse_rabin(s: &str) -> Result<Self, ChunkerError> {
        let parts: Vec<&str> = s.split('-').collect();
        let labelled = |part: &str, label: &str, err: &'static str| -> Result<i64, ChunkerError> {
            let sub: Vec<&str> = part.split(':').collect();
            if sub.len() > 1 && sub[0] != label {
                return Err(ChunkerError::RabinLabel(err));
            }
            atoi(sub[sub.len() - 1])
        };
        match parts.len() {
            1 => Ok(Self::rabin_avg(DEFAULT_SIZE as u64)),
            2 => {
                let avg = atoi(parts[1])?;
                if (avg as f32 * 1.5) as i64 > CHUNK_SIZE_LIMIT as i64 {
                    return Err(ChunkerError::OverMaximum);
                }
                if avg < 48 {
                    // boxo would take min = avg/3 < 16, wrap its skip counter around and
                    // make the whole file one chunk; refuse instead of buffering it all.
                    return Err(ChunkerError::RabinAverageTooSmall(avg));
                }
                Ok(Self::rabin_avg(avg as u64))
            }
            4 => {
                let min = labelled(parts[1], "min", "first label must be min")?;
                if min < 16 {
                    return Err(ChunkerError::RabinMinTooSmall);
                }
                let avg = labelled(parts[2], "avg", "second label must be avg")?;
                let max = labelled(parts[3], "max", "final label must be max")?;
                if min >= avg {
                    return Err(ChunkerError::RabinMinOverAvg);
                }
                if avg >= max {
                    return Err(ChunkerError::RabinAvgOverMax);
                }
                if max > CHUNK_SIZE_LIMIT as i64 {
                    return Err(ChunkerError::OverMaximum);
                }
                Ok(Self::Rabin {
                    min: min as u64,
                    avg: avg as u64,
                    max: max as u64,
                })
            }
            _ => Err(ChunkerError::RabinFormat),
        }
    }

    fn rabin_avg(avg: u64) -> Self {
        Self::Rabin {
            min: avg / 3,
            avg,
            max: avg + avg / 2,
        }
    }
}

/// Splits a stream into chunks; feed with `push`, end with `finish`.
pub struct Splitter {
    kind: Kind,
}

enum Kind {
    Size { size: usize, pending: BytesMut },
    Rabin(Box<Rabin>),
    Buzhash { pending: Vec<u8> },
}

impl Splitter {
    pub fn new(spec: ChunkerSpec) -> Self {
        let kind = match spec {
            ChunkerSpec::Size(size) => Kind::Size {
                size,
                pending: BytesMut::new(),
            },
            ChunkerSpec::Rabin { min, avg, max } => {
                Kind::Rabin(Box::new(Rabin::new(min, avg, max)))
            }
            ChunkerSpec::Buzhash => Kind::Buzhash {
                pending: Vec::new(),
            },
        };
        Self { kind }
    }

    /// Adds data; completed chunks are appended to `out`.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<Bytes>) -> Result<(), ChunkerError> {
        match &mut self.kind {
            Kind::Size { size, pending } => {
                while !data.is_empty() {
                    let take = (*size - pending.len()).min(data.len());
                    pending.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if pending.len() == *size {
                        out.push(pending.split().freeze());
                    }
                }
                Ok(())
            }
            Kind::Rabin(r) => r.push(data, out),
            Kind::Buzhash { pending } => {
                pending.extend_from_slice(data);
                while pending.len() >= BUZ_MAX {
                    let cut = buzhash_cut(&pending[..BUZ_MAX]);
                    out.push(Bytes::copy_from_slice(&pending[..cut]));
                    pending.drain(..cut);
                }
                Ok(())
            }
        }
    }

    /// The end of the stream: the last chunks (none for empty input).
    pub fn finish(&mut self, out: &mut Vec<Bytes>) {
        match &mut self.kind {
            Kind::Size { pending, .. } => {
                if !pending.is_empty() {
                    out.push(pending.split().freeze());
                }
            }
            Kind::Rabin(r) => {
                if !r.buf.is_empty() {
                    out.push(Bytes::from(std::mem::take(&mut r.buf)));
                }
            }
            Kind::Buzhash { pending } => {
                while pending.len() >= BUZ_MIN {
                    let cut = buzhash_cut(pending);
                    out.push(Bytes::copy_from_slice(&pending[..cut]));
                    pending.drain(..cut);
                }
                if !pending.is_empty() {
                    out.push(Bytes::from(std::mem::take(pending)));
                }
            }
        }
    }
}

// --- Rabin -------------------------------------------------------------------------------

/// IPFS's irreducible polynomial of degree 53 for Rabin fingerprints.
const RABIN_POL: u64 = 17_437_180_132_763_653;
const WINDOW: usize = 16;

fn deg(x: u64) -> i32 {
    63 - x.leading_zeros() as i32
}

/// x mod d over GF(2).
fn pol_mod(mut x: u64, d: u64) -> u64 {
    if x == 0 {
        return 0;
    }
    let dd = deg(d);
    while deg(x) >= dd {
        x ^= d << (deg(x) - dd);
    }
    x
}

fn append_byte(hash: u64, b: u8, pol: u64) -> u64 {
    pol_mod((hash << 8) | b as u64, pol)
}

struct Tables {
    out: [u64; 256],
    modt: [u64; 256],
}

fn tables() -> &'static Tables {
    static T: std::sync::OnceLock<Tables> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        let mut t = Tables {
            out: [0; 256],
            modt: [0; 256],
        };
        for b in 0..256usize {
            let mut h = append_byte(0, b as u8, RABIN_POL);
            for _ in 0..WINDOW - 1 {
                h = append_byte(h, 0, RABIN_POL);
            }
            t.out[b] = h;
        }
        let k = deg(RABIN_POL);
        for b in 0..256u64 {
            t.modt[b as usize] = pol_mod(b << k, RABIN_POL) | (b << k);
        }
        t
    })
}

struct Rabin {
    tables: &'static Tables,
    shift: u32,
    min: u64,
    max: u64,
    mask: u64,
    window: [u8; WINDOW],
    wpos: usize,
    digest: u64,
    /// Bytes of the current chunk.
    count: u64,
    /// Bytes still to take before the fingerprint starts (min - window).
    pre: u64,
    buf: Vec<u8>,
}

impl Rabin {
    fn new(min: u64, avg: u64, max: u64) -> Self {
        // uint(math.Log2(avg)): the floor of log2 for the sizes a chunker can have.
        let pow = 63 - avg.max(1).leading_zeros();
        let mut r = Self {
            tables: tables(),
            shift: (deg(RABIN_POL) - 8) as u32,
            min,
            max,
            mask: (1u64 << pow) - 1,
            window: [0; WINDOW],
            wpos: 0,
            digest: 0,
            count: 0,
            pre: 0,
            buf: Vec::new(),
        };
        r.reset();
        r
    }

    fn reset(&mut self) {
        self.window = [0; WINDOW];
        self.digest = 0;
        self.wpos = 0;
        self.count = 0;
        self.slide(1);
        self.pre = self.min.wrapping_sub(WINDOW as u64);
    }

    #[inline]
    fn slide(&mut self, b: u8) {
        let out = self.window[self.wpos];
        self.window[self.wpos] = b;
        self.digest ^= self.tables.out[out as usize];
        self.wpos = (self.wpos + 1) % WINDOW;
        let index = (self.digest >> self.shift) as usize;
        self.digest <<= 8;
        self.digest |= b as u64;
        self.digest ^= self.tables.modt[index & 0xff];
    }

    fn push(&mut self, data: &[u8], out: &mut Vec<Bytes>) -> Result<(), ChunkerError> {
        let mut start = 0;
        let mut i = 0;
        while i < data.len() {
            if self.pre > 0 {
                // Skipped bytes count but do not enter the fingerprint.
                let n = (self.pre.min((data.len() - i) as u64)) as usize;
                self.pre -= n as u64;
                self.count += n as u64;
                i += n;
                continue;
            }
            self.slide(data[i]);
            self.count += 1;
            i += 1;
            if self.count < self.min {
                continue;
            }
            if self.digest & self.mask == 0 || self.count >= self.max {
                self.buf.extend_from_slice(&data[start..i]);
                start = i;
                out.push(Bytes::from(std::mem::take(&mut self.buf)));
                self.reset();
            }
        }
        self.buf.extend_from_slice(&data[start..]);
        if self.buf.len() > BLOCK_SIZE_LIMIT {
            return Err(ChunkerError::ObjectTooLarge);
        }
        Ok(())
    }
}

// --- buzhash -----------------------------------------------------------------------------

const BUZ_MIN: usize = 128 << 10;
const BUZ_MAX: usize = 512 << 10;
const BUZ_MASK: u32 = (1 << 17) - 1;

/// Where boxo's buzhash cuts `buf` (at least BUZ_MIN bytes, at most BUZ_MAX).
fn buzhash_cut(buf: &[u8]) -> usize {
    let mut state: u32 = 0;
    for &b in &buf[BUZ_MIN - 32..BUZ_MIN] {
        state = state.rotate_left(1) ^ BYTEHASH[b as usize];
    }
    let max = buf.len() - 32 - 1;
    let mut i = BUZ_MIN - 32;
    while i <= max {
        if state & BUZ_MASK == 0 {
            break;
        }
        state = state.rotate_left(1) ^ BYTEHASH[buf[i] as usize] ^ BYTEHASH[buf[i + 32] as usize];
        i += 1;
    }
    i + 32
}

/// The buzhash byte table of go-ipfs-chunker / boxo (MIT or Apache-2.0): fixed random
/// values that define where buzhash cuts, so they must be these exact numbers.
#[rustfmt::skip]
static BYTEHASH: [u32; 256] = [
    0x6236e7d5, 0x10279b0b, 0x72818182, 0xdc526514, 0x2fd41e3d, 0x777ef8c8,
    0x83ee5285, 0x2c8f3637, 0x2f049c1a, 0x57df9791, 0x9207151f, 0x9b544818,
    0x74eef658, 0x2028ca60, 0x0271d91a, 0x27ae587e, 0xecf9fa5f, 0x236e71cd,
    0xf43a8a2e, 0x0bb13380, 0x9e57912c, 0x89a26cdb, 0x9fcf3d71, 0xa86da6f1,
    0x9c49f376, 0x346aecc7, 0xf094a9ee, 0xea99e9cb, 0xb01713c6, 0x088acffb,
    0x2960a0fb, 0x344a626c, 0x7ff22a46, 0x6d7a1aa5, 0x6a714916, 0x41d454ca,
    0x8325b830, 0x0b65f563, 0x447fecca, 0xf9d0ea5e, 0xc1d9d3d4, 0xcb5ec574,
    0x55aae902, 0x86edc0e7, 0x0d3a9e33, 0xe70dc1e1, 0xe3c5f639, 0x9b43140a,
    0xc6490ac5, 0x5e4030fb, 0x8e976dd5, 0xa87468ea, 0xf830ef6f, 0xcc1ed5a5,
    0x611f4e78, 0xddd11905, 0xf2613904, 0x566c67b9, 0x905a5ccc, 0x7b37b3a4,
    0x4b53898a, 0x6b8fd29d, 0xaad81575, 0x511be414, 0x3cfac1e7, 0x8029a179,
    0xd40efeda, 0x07380e02, 0xdc9beffd, 0x2d049082, 0x99bc7831, 0xff5002a8,
    0x21ce7646, 0x01cd049b, 0x0f43994f, 0xc3c6c5a5, 0xbbda5f50, 0x0ec15ec7,
    0x9adb19b6, 0x0c1e80b9, 0xb9b52968, 0xae162419, 0x2542b405, 0x91a42e9d,
    0x6be0f668, 0x6ed7a6b9, 0xbc2777b4, 0xe162ce56, 0x4266aad5, 0x60fdb704,
    0x66f832a5, 0x9595f6ca, 0xfee83ced, 0x55228d99, 0x12bf0e28, 0x66896459,
    0x0789afda, 0x0282baa8, 0x2367a343, 0x591491b0, 0x2ff1a4b1, 0x410739b6,
    0x9b7055a0, 0x2e0eb229, 0x24fc8252, 0x3327d3df, 0xb0782669, 0x1c62e069,
    0x7f503101, 0xf50593ae, 0xd9eb275d, 0xe00eb678, 0x5917ccde, 0x97b9660a,
    0xdd06202d, 0xed229e22, 0xa9c735bf, 0xd6316fe6, 0x6fc72e4c, 0x0206dfa2,
    0xd6b15c5a, 0x69d87b49, 0x09c97745, 0x13445d61, 0x35a975aa, 0x859aa9b9,
    0x65380013, 0xd1fb6391, 0xc29255fd, 0x784a3b91, 0xb9e74c26, 0x63ce4d40,
    0xc07cbe9e, 0xe6e4529e, 0x0fb3632f, 0x9438d9c9, 0x682f94a8, 0xf8fd4611,
    0x257ec1ed, 0x475ce3d6, 0x60ee2db1, 0x2afab002, 0x2b9e4878, 0x86b340de,
    0x1482fdca, 0xfe41b3bf, 0xd4a412b0, 0xe09db98c, 0xc1af5d53, 0x7e55e25f,
    0xd3346b38, 0xb7a12cbd, 0x9c6827ba, 0x71f78bee, 0x8c3a0f52, 0x150491b0,
    0xf26de912, 0x233e3a4e, 0xd309ebba, 0xa0a9e0ff, 0xca2b5921, 0xeeb9893c,
    0x33829e88, 0x9870cc2a, 0x23c4b9d0, 0xeba32ea3, 0xbdac4d22, 0x3bc8c44c,
    0x1e8d0397, 0xf9327735, 0x783b009f, 0x0eb83742, 0x2621dc71, 0xed017d03,
    0x5c760aa1, 0x5a69814b, 0x96e3047f, 0xa93c9cde, 0x615c86f5, 0xb4322aa5,
    0x4225534d, 0x0d2e2de3, 0xccfccc4b, 0x0bac2a57, 0xf0a06d04, 0xbc78d737,
    0xf2d1f766, 0xf5a7953c, 0xbcdfda85, 0x5213b7d5, 0xbce8a328, 0xd38f5f18,
    0xdb094244, 0xfe571253, 0x317fa7ee, 0x4a324f43, 0x3ffc39d9, 0x51b3fa8e,
    0x7a4bee9f, 0x78bbc682, 0x9f5c0350, 0x02fe286c, 0x245ab686, 0xed6bf7d7,
    0x0ac4988a, 0x3fe010fa, 0xc65fe369, 0xa45749cb, 0x2b84e537, 0xde9ff363,
    0x20540f9a, 0xaa8c9b34, 0x5bc476b3, 0x1d574bd7, 0x929100ad, 0x4721de4d,
    0x27df1b05, 0x58b18546, 0xb7e76764, 0xdf904e58, 0x97af57a1, 0xbd4dc433,
    0xa6256dfd, 0xf63998f3, 0xf1e05833, 0xe20acf26, 0xf57fd9d6, 0x90300b4d,
    0x89df4290, 0x68d01cbc, 0xcf893ee3, 0xcc42a046, 0x778e181b, 0x67265c76,
    0xe981a4c4, 0x82991da1, 0x708f7294, 0xe6e2ae62, 0xfc441870, 0x95e1b0b6,
    0x0445f825, 0x5a93b47f, 0x5e9cf4be, 0x84da71e7, 0x9d9582b0, 0x9bf835ef,
    0x591f61e2, 0x43325985, 0x5d2de32e, 0x8d8fbf0f, 0x95b30f38, 0x07ad5b6e,
    0x4e934edf, 0x3cd4990e, 0x9053e259, 0x5c41857d,
];

#[cfg(test)]
mod tests {
    use super::*;

    fn split(spec: ChunkerSpec, data: &[u8], piece: usize) -> Vec<usize> {
        let mut s = Splitter::new(spec);
        let mut out = Vec::new();
        for p in data.chunks(piece.max(1)) {
            s.push(p, &mut out).unwrap();
        }
        s.finish(&mut out);
        assert_eq!(out.concat(), data, "chunks must reassemble the input");
        out.iter().map(|c| c.len()).collect()
    }

    fn lcg(len: usize) -> Vec<u8> {
        let mut x: u64 = 42;
        (0..len)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (x >> 33) as u8
            })
            .collect()
    }

    #[test]
    fn parse_like_boxo() {
        use ChunkerSpec::*;
        assert_eq!(ChunkerSpec::parse("").unwrap(), Size(262_144));
        assert_eq!(ChunkerSpec::parse("size-10").unwrap(), Size(10));
        assert_eq!(ChunkerSpec::parse("buzhash").unwrap(), Buzhash);
        assert_eq!(
            ChunkerSpec::parse("rabin").unwrap(),
            Rabin {
                min: 87_381,
                avg: 262_144,
                max: 393_216
            }
        );
        assert_eq!(
            ChunkerSpec::parse("rabin-min:16-avg:32-max:64").unwrap(),
            Rabin {
                min: 16,
                avg: 32,
                max: 64
            }
        );
        let err = |s| ChunkerSpec::parse(s).unwrap_err().to_string();
        assert_eq!(err("nonsense"), "unrecognized chunker option: nonsense");
        assert_eq!(err("size-0"), "chunker size must be greater than 0");
        assert_eq!(err("size-x"), "strconv.Atoi: parsing \"x\": invalid syntax");
        assert_eq!(
            err("size-1-2"),
            "incorrect chunker string format (expected size-{size})"
        );
        assert_eq!(
            err("size-3000000"),
            "chunker parameters may not exceed the maximum chunk size of 2096896"
        );
        assert_eq!(err("rabin-8-32-64"), "rabin min must be greater than 16");
        assert_eq!(
            err("rabin-32-32-64"),
            "incorrect format: rabin-min must be smaller than rabin-avg"
        );
        assert_eq!(
            err("rabin-1-2"),
            "incorrect format (expected 'rabin' 'rabin-[avg]' or 'rabin-[min]-[avg]-[max]'"
        );
        assert!(err("rabin-10").contains("at least 48"));
    }

    #[test]
    fn every_splitter_is_independent_of_how_it_is_fed() {
        let data = lcg(1_500_000);
        for spec in [
            ChunkerSpec::Size(1000),
            ChunkerSpec::parse("rabin").unwrap(),
            ChunkerSpec::parse("rabin-16-32-64").unwrap(),
            ChunkerSpec::Buzhash,
        ] {
            let a = split(spec, &data, 1 << 20);
            assert_eq!(a, split(spec, &data, 65_536), "{spec:?}");
            assert_eq!(a, split(spec, &data, 7_777), "{spec:?}");
            if let ChunkerSpec::Rabin { min, max, .. } = spec {
                let (last, body) = a.split_last().unwrap();
                assert!(body.iter().all(|n| *n as u64 >= min && *n as u64 <= max));
                assert!(*last as u64 <= max);
            }
        }
        assert!(split(ChunkerSpec::Buzhash, b"", 1).is_empty());
    }
}
