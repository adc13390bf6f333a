//! The per-peer internal token. `init` writes it (mode 0600, with the other private files
//! of ipfs-cluster-config); every service reads it, and every internal gRPC call carries
//! it as `authorization: Bearer <token>`. A local process that cannot read the file
//! controls nothing.

use std::{fmt, fs, path::Path};

use rand::RngCore;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("internal token file {path}: {source} (run `ipfs-cluster-service init` to create it)")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("internal token file {path} is empty or not 64 hex characters; delete it and run `ipfs-cluster-service init --force`")]
    Malformed { path: String },
}

/// A 32-byte random secret, hex encoded. Debug output never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct InternalToken(String);

impl fmt::Debug for InternalToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InternalToken(..)")
    }
}

impl InternalToken {
    pub fn generate() -> Self {
        let mut b = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut b);
        Self(hex::encode(b))
    }

    /// Parses a token as stored in the file (surrounding whitespace ignored).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        (s.len() == 64 && s.bytes().all(|c| c.is_ascii_hexdigit()))
            .then(|| Self(s.to_ascii_lowercase()))
    }

    pub fn load(path: &Path) -> Result<Self, TokenError> {
        let text = fs::read_to_string(path).map_err(|source| TokenError::Read {
            path: path.display().to_string(),
            source,
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(m) = fs::metadata(path) {
                if m.permissions().mode() & 0o077 != 0 {
                    tracing::warn!(path = %path.display(), "internal token file is readable by other users; run chmod 600 on it");
                }
            }
        }
        Self::parse(&text).ok_or_else(|| TokenError::Malformed {
            path: path.display().to_string(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value of the `authorization` header that carries this token.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.0)
    }

    /// Constant-time check of an `authorization` header value.
    pub fn matches_header(&self, value: &[u8]) -> bool {
        let Some(given) = value.strip_prefix(b"Bearer ") else {
            return false;
        };
        let want = self.0.as_bytes();
        if given.len() != want.len() {
            return false;
        }
        given
            .iter()
            .zip(want)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_reads_what_init_writes() {
        // `ipfs-cluster-service init` writes the token and a newline, mode 0600
        // (ipfs-cluster-config's tests check the mode).
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("internal.token");
        let t = InternalToken::generate();
        fs::write(&p, format!("{}\n", t.as_str())).unwrap();
        assert_eq!(InternalToken::load(&p).unwrap(), t);
    }

    #[test]
    fn header_check() {
        let t = InternalToken::generate();
        assert!(t.matches_header(t.bearer().as_bytes()));
        assert!(!t.matches_header(t.as_str().as_bytes()));
        assert!(!t.matches_header(b"Bearer 00"));
        assert!(!t.matches_header(InternalToken::generate().bearer().as_bytes()));
    }

    #[test]
    fn malformed_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        fs::write(&p, "abc").unwrap();
        let e = InternalToken::load(&p).unwrap_err().to_string();
        assert!(e.contains("not 64 hex characters"), "{e}");
        let e = InternalToken::load(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("ipfs-cluster-service init"), "{e}");
    }
}
