//! The cluster secret: upstream stores it as bare hex (32 bytes), while libp2p's
//! `PreSharedKey::from_str` expects a swarm.key file, so we decode it ourselves.

use libp2p::pnet::PreSharedKey;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("cluster secret is not hex: {0} (cluster.secret must be 64 hex characters, e.g. from `od -vN 32 -An -tx1 /dev/urandom | tr -d ' \\n'`)")]
    NotHex(String),
    #[error("input secret is {0} bytes, cluster secret should be 32 (64 hex characters)")]
    WrongLength(usize),
}

/// Parses `cluster.secret`. `Ok(None)` = empty secret = open network.
pub fn parse_secret(hex_secret: &str) -> Result<Option<[u8; 32]>, SecretError> {
    let s = hex_secret.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let bytes = hex::decode(s).map_err(|e| SecretError::NotHex(e.to_string()))?;
    let key: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| SecretError::WrongLength(bytes.len()))?;
    Ok(Some(key))
}

/// The libp2p pre-shared key for a 32-byte secret.
pub fn psk(key: [u8; 32]) -> PreSharedKey {
    PreSharedKey::new(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hex_and_rejects_bad_input() {
        let ok = "0A".repeat(32);
        assert_eq!(parse_secret(&ok).unwrap(), Some([0x0a; 32]));
        assert_eq!(parse_secret("  ").unwrap(), None);
        assert_eq!(
            parse_secret("abcd").unwrap_err(),
            SecretError::WrongLength(2)
        );
        assert!(matches!(
            parse_secret(&"zz".repeat(32)),
            Err(SecretError::NotHex(_))
        ));
    }

    #[test]
    fn fingerprint_is_stable_hex() {
        let fp = psk([1; 32]).fingerprint().to_string();
        assert_eq!(fp.len(), 32);
        assert_ne!(fp, psk([2; 32]).fingerprint().to_string());
    }
}
