//! The cluster secret: 32 bytes shared by every peer, written as 64 hex characters in
//! `cluster.secret` and used as the libp2p private-network pre-shared key. An empty secret
//! means an open network (allowed upstream, with a loud warning at load time).

use std::fmt;

use rand::RngCore;

use crate::ConfigError;

/// `None` = no secret (open network).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct ClusterSecret(pub Option<[u8; 32]>);

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(_) => f.write_str("ClusterSecret(..)"),
            None => f.write_str("ClusterSecret(none)"),
        }
    }
}

impl ClusterSecret {
    /// Parses the hex form ("" = no secret). Upper and lower case are both accepted.
    pub fn from_hex(s: &str) -> Result<Self, ConfigError> {
        if s.is_empty() {
            return Ok(ClusterSecret(None));
        }
        if s.len() != 64 {
            return Err(ConfigError::Secret(format!(
                "cluster secret must be 64 hex characters, got {} (generate one with `od -vN 32 -An -tx1 /dev/urandom | tr -d ' \\n'`, or leave it empty for an open network)",
                s.chars().count()
            )));
        }
        if let Some((i, c)) = s.char_indices().find(|(_, c)| !c.is_ascii_hexdigit()) {
            return Err(ConfigError::Secret(format!(
                "cluster secret contains a non-hex character {c:?} at position {}; it must be 64 characters from 0-9a-f",
                i + 1
            )));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)
            .map_err(|e| ConfigError::Secret(format!("cluster secret: {e}")))?;
        Ok(ClusterSecret(Some(out)))
    }

    /// Same as `from_hex` (for `--custom-secret` style flags).
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        Self::from_hex(s)
    }

    /// Lower-case hex, or "" for no secret.
    pub fn to_hex(&self) -> String {
        self.0.map(hex::encode).unwrap_or_default()
    }

    /// 32 fresh random bytes.
    pub fn generate() -> Self {
        let mut b = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut b);
        ClusterSecret(Some(b))
    }

    pub fn is_none(&self) -> bool {
        self.0.is_none()
    }

    /// The raw 32 bytes (the libp2p pre-shared key), if any.
    pub fn bytes(&self) -> Option<&[u8; 32]> {
        self.0.as_ref()
    }
}

impl std::str::FromStr for ClusterSecret {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        Self::from_hex(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_roundtrip_and_empty() {
        let s = ClusterSecret::generate();
        assert_eq!(s.to_hex().len(), 64);
        assert_eq!(ClusterSecret::from_hex(&s.to_hex()).unwrap(), s);
        assert_eq!(
            ClusterSecret::from_hex(&s.to_hex().to_uppercase()).unwrap(),
            s
        );
        assert!(ClusterSecret::from_hex("").unwrap().is_none());
        assert_eq!(ClusterSecret(None).to_hex(), "");
        assert_ne!(ClusterSecret::generate(), s);
    }

    #[test]
    fn bad_secrets_name_the_problem() {
        let e = ClusterSecret::from_hex("0123456789ab")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("cluster secret must be 64 hex characters, got 12"),
            "{e}"
        );
        let bad = format!("{}zz", "a".repeat(62));
        let e = ClusterSecret::from_hex(&bad).unwrap_err().to_string();
        assert!(
            e.contains("contains a non-hex character 'z' at position 63"),
            "{e}"
        );
        let g = ClusterSecret::generate();
        assert!(!format!("{g:?}").contains(&g.to_hex()[..8]));
    }
}
