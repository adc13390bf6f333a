//! The blocks of one `POST /add`, kept in a temp file until the pin's allocations are
//! known. Upstream asks the allocator first and sends every block to every allocated
//! peer; our consensus allocates only when pinning, so the adder stores blocks on the
//! local peer, pins, then replays this spool to the allocated peers it has not reached.
//! On disk so a large add costs bounded memory; the file is removed on drop.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};

/// Largest block we accept back from the file (chunks are at most 1 MiB plus a header).
const MAX_RECORD: usize = 4 << 20;

/// Write and read buffer: one blocking file operation per MiB, not per 8 KiB (an add of
/// many small files pushes two small writes per block).
const BUFFER: usize = 1 << 20;

pub struct Spool {
    file: BufWriter<tokio::fs::File>,
    path: tempfile::TempPath,
    blocks: usize,
    written: u64,
    max_bytes: u64,
}

impl Spool {
    /// A new spool in the system temp folder that refuses to grow past `max_bytes`
    /// (`BodyLimits::spool_max`: an add cannot fill the temp folder beyond its own size).
    pub async fn new(max_bytes: u64) -> io::Result<Self> {
        let (f, path) = tempfile::NamedTempFile::new()?.into_parts();
        Ok(Self {
            file: BufWriter::with_capacity(BUFFER, tokio::fs::File::from_std(f)),
            path,
            blocks: 0,
            written: 0,
            max_bytes,
        })
    }

    /// Appends one block: CID bytes and data, each length-prefixed.
    pub async fn push(&mut self, cid: &cid::Cid, data: &[u8]) -> io::Result<()> {
        let c = cid.to_bytes();
        let record = 8 + c.len() as u64 + data.len() as u64;
        if self.written + record > self.max_bytes {
            return Err(io::Error::other(format!(
                "the add spool in the temp folder would exceed {} bytes (api.restapi.max_add_bytes and its overhead)",
                self.max_bytes
            )));
        }
        self.written += record;
        self.file.write_u32(c.len() as u32).await?;
        self.file.write_all(&c).await?;
        self.file.write_u32(data.len() as u32).await?;
        self.file.write_all(data).await?;
        self.blocks += 1;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.blocks
    }

    pub fn is_empty(&self) -> bool {
        self.blocks == 0
    }

    /// Finishes writing and reads the blocks back in the order they were pushed.
    pub async fn replay(mut self) -> io::Result<Replay> {
        self.file.flush().await?;
        let f = tokio::fs::File::open(&self.path).await?;
        Ok(Replay {
            file: BufReader::with_capacity(BUFFER, f),
            _path: self.path,
        })
    }
}

pub struct Replay {
    file: BufReader<tokio::fs::File>,
    _path: tempfile::TempPath,
}

impl Replay {
    /// The next block, or None at the end.
    pub async fn next(&mut self) -> io::Result<Option<(cid::Cid, Vec<u8>)>> {
        let clen = match self.file.read_u32().await {
            Ok(n) => n as usize,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        };
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
        if clen > 256 {
            return Err(bad("add spool: corrupt CID length"));
        }
        let mut c = vec![0; clen];
        self.file.read_exact(&mut c).await?;
        let cid = cid::Cid::try_from(c.as_slice()).map_err(|_| bad("add spool: corrupt CID"))?;
        let dlen = self.file.read_u32().await? as usize;
        if dlen > MAX_RECORD {
            return Err(bad("add spool: corrupt block length"));
        }
        let mut d = vec![0; dlen];
        self.file.read_exact(&mut d).await?;
        Ok(Some((cid, d)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CIDv1 raw with a made-up sha2-256 digest (the spool does not check it).
    fn hash(n: u8) -> cid::Cid {
        let mh = cid::multihash::Multihash::<64>::wrap(0x12, &[n; 32]).unwrap();
        cid::Cid::new_v1(0x55, mh)
    }

    #[tokio::test]
    async fn round_trip_in_order() {
        let mut s = Spool::new(u64::MAX).await.unwrap();
        s.push(&hash(1), b"one").await.unwrap();
        s.push(&hash(2), &vec![7u8; 300_000]).await.unwrap();
        s.push(&hash(3), b"").await.unwrap();
        assert_eq!(s.len(), 3);
        let mut r = s.replay().await.unwrap();
        let (c, d) = r.next().await.unwrap().unwrap();
        assert_eq!((c, d.as_slice()), (hash(1), &b"one"[..]));
        let (c, d) = r.next().await.unwrap().unwrap();
        assert_eq!((c, d.len()), (hash(2), 300_000));
        let (c, d) = r.next().await.unwrap().unwrap();
        assert_eq!((c, d.len()), (hash(3), 0));
        assert!(r.next().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn the_spool_is_bounded() {
        // Each record is 8 bytes of lengths, the CID (36 bytes here) and the data.
        let mut s = Spool::new(2 * (8 + 36 + 100)).await.unwrap();
        s.push(&hash(1), &[1; 100]).await.unwrap();
        s.push(&hash(2), &[2; 100]).await.unwrap();
        let e = s.push(&hash(3), &[3]).await.unwrap_err();
        assert!(e.to_string().contains("max_add_bytes"), "{e}");
        assert_eq!(s.len(), 2, "the refused block was not written");
    }
}
