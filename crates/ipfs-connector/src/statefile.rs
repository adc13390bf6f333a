//! The tracker's persisted view of the pinset (`ipfs-connector-state.bin` in the config
//! dir): the last applied watch index plus the pins as of that index, so a restart
//! resumes the watch stream where it stopped instead of needing a full sync. Written
//! atomically (temp file + fsync + rename), at most once a second while changes flow.

use std::{
    io::{Read, Write},
    path::{Path, PathBuf},
    time::Duration,
};

use ipfs_cluster_proto::types::v1::Pin;
use prost::Message;

use crate::tracker::Tracker;

pub const FILE_NAME: &str = "ipfs-connector-state.bin";
const MAGIC: &[u8; 8] = b"IPCTRK1\n";

#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is corrupt ({reason}); delete it and the connector will take a full sync from consensus")]
    Corrupt { path: String, reason: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

pub fn path_in(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// Loads (index, pins); Ok(None) when the file does not exist.
pub fn load(path: &Path) -> Result<Option<(u64, Vec<Pin>)>, StateFileError> {
    let p = path.display().to_string();
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StateFileError::Read { path: p, source }),
    };
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)
        .map_err(|source| StateFileError::Read {
            path: p.clone(),
            source,
        })?;
    let corrupt = |reason: String| StateFileError::Corrupt {
        path: p.clone(),
        reason,
    };
    if buf.len() < 16 || &buf[..8] != MAGIC {
        return Err(corrupt("bad header".into()));
    }
    let index = u64::from_le_bytes(buf[8..16].try_into().expect("8 bytes"));
    let mut rest = &buf[16..];
    let mut pins = Vec::new();
    while !rest.is_empty() {
        let pin = Pin::decode_length_delimited(&mut rest)
            .map_err(|e| corrupt(format!("pin {}: {e}", pins.len())))?;
        pins.push(pin);
    }
    Ok(Some((index, pins)))
}

pub fn save(path: &Path, index: u64, pins: &[Pin]) -> Result<(), StateFileError> {
    let err = |source| StateFileError::Write {
        path: path.display().to_string(),
        source,
    };
    let mut buf = Vec::with_capacity(16 + pins.len() * 64);
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&index.to_le_bytes());
    for p in pins {
        p.encode_length_delimited(&mut buf).expect("Vec grows");
    }
    let tmp = path.with_extension("bin.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(&buf).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Writes the tracker's mirror whenever it changes (debounced to once a second) and a
/// last time at shutdown.
pub async fn writer_loop(tracker: Tracker, path: PathBuf) {
    let inner = tracker.inner.clone();
    let mut last_written: Option<u64> = None;
    loop {
        let stop = tokio::select! {
            _ = inner.shutdown.cancelled() => true,
            _ = inner.dirty.notified() => false,
        };
        if !stop {
            tokio::select! {
                _ = inner.shutdown.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        if let Some((index, pins)) = tracker.snapshot() {
            let p = path.clone();
            let n = pins.len();
            match tokio::task::spawn_blocking(move || save(&p, index, &pins)).await {
                Ok(Ok(())) => {
                    if last_written != Some(index) {
                        tracing::debug!(index, pins = n, "tracker state saved");
                    }
                    last_written = Some(index);
                }
                Ok(Err(e)) => tracing::error!("{e}"),
                Err(e) => tracing::error!("state file writer task failed: {e}"),
            }
        }
        if stop || inner.shutdown.is_cancelled() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let p = path_in(dir.path());
        assert!(load(&p).unwrap().is_none());
        let pins = vec![
            Pin {
                cid: "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o".into(),
                max_depth: -1,
                ..Default::default()
            },
            Pin {
                cid: "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH".into(),
                allocations: vec!["12D3KooWx".into()],
                ..Default::default()
            },
        ];
        save(&p, 42, &pins).unwrap();
        let (i, back) = load(&p).unwrap().unwrap();
        assert_eq!(i, 42);
        assert_eq!(back, pins);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes.truncate(bytes.len() - 3);
        std::fs::write(&p, &bytes).unwrap();
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("corrupt") && e.contains("delete it"), "{e}");
        std::fs::write(&p, b"garbage").unwrap();
        assert!(load(&p).is_err());
    }
}
